"""flows.backfill.run_backfill against a fake Prefect API (no server): bounded concurrency, failures that do
not stop the others, idempotency keys, reused runs, timeouts, dry runs and what the metadata store records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

import pytest
from prefect.client.schemas.objects import FlowRun
from prefect.exceptions import ObjectNotFound
from prefect.states import Completed, Failed, Running, Scheduled

import flows.backfill as backfill_module
from flows.backfill import run_backfill
from zeitflow.errors import ParameterError
from zeitflow.io.metadata import MetadataStore

DEPLOYMENT = "ingest/ingest-daily"
DAYS = [f"2016-06-{d:02d}" for d in range(1, 8)]


class FakePrefect:
    """Deployments and flow runs in memory. A run is Scheduled when created, Running at the next poll and final
    (``final[partition]``, default completed) at the one after; a repeated idempotency key returns its run."""

    def __init__(self, final: dict[str, str] | None = None, *, stuck: bool = False) -> None:
        self.final = final or {}
        self.stuck = stuck
        self.runs: dict[UUID, FlowRun] = {}
        self.by_key: dict[str, UUID] = {}
        self.created: list[FlowRun] = []
        self.peak = 0
        self.deployments = {DEPLOYMENT: SimpleNamespace(parameters={}, parameter_openapi_schema={
            "properties": {"partition": {}}})}

    # -- what flows.backfill calls
    def __enter__(self) -> FakePrefect:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def read_deployment_by_name(self, name: str) -> Any:
        if name not in self.deployments:
            raise ObjectNotFound(http_exc=Exception("404"))
        return self.deployments[name]

    def run_deployment(self, name: str, parameters: dict[str, Any], idempotency_key: str, timeout: float,
                       as_subflow: bool) -> FlowRun:
        assert timeout == 0 and as_subflow is False and name in self.deployments
        if idempotency_key in self.by_key:
            return self.runs[self.by_key[idempotency_key]]
        run = FlowRun(id=uuid4(), flow_id=uuid4(), name=f"run-{len(self.runs)}", state=Scheduled(),
                      parameters=parameters, idempotency_key=idempotency_key)
        self.runs[run.id] = run
        self.by_key[idempotency_key] = run.id
        self.created.append(run)
        self._measure()
        return run

    def read_flow_runs(self, flow_run_filter: Any, limit: int) -> list[FlowRun]:
        wanted = flow_run_filter.id.any_
        assert len(wanted) <= limit
        for run_id in wanted:
            run = self.runs[run_id]
            if self.stuck or run.state.is_final():
                continue
            if run.state.type.value == "SCHEDULED":
                state = Running()
            else:
                state = Failed() if self.final.get(run.parameters["partition"]) == "failed" else Completed()
            self.runs[run_id] = run.model_copy(update={"state": state})
        self._measure()
        return [self.runs[run_id] for run_id in wanted]

    def _measure(self) -> None:
        self.peak = max(self.peak, sum(not r.state.is_final() for r in self.runs.values()))


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePrefect]:
    prefect = FakePrefect()
    monkeypatch.setattr(backfill_module, "get_client", lambda sync_client=True: prefect)
    monkeypatch.setattr(backfill_module, "run_deployment", prefect.run_deployment)
    yield prefect


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/zeitflow.db"


def backfill(url: str, start: str = DAYS[0], end: str = DAYS[-1], **kwargs: Any):
    return run_backfill(DEPLOYMENT, start, end, project="p", metadata_url=url, poll_seconds=0, **kwargs)


def record_runs(url: str, statuses: dict[str, str]) -> None:
    store = MetadataStore(url)
    try:
        store.migrate()
        project_id = store.upsert_project("p")
        for partition, status in statuses.items():
            store.finish_run(store.start_run("ingest", project_id=project_id, partition=partition), status)
    finally:
        store.dispose()


@pytest.mark.parametrize("max_active", [1, 3, 64])
def test_every_partition_runs_and_at_most_max_active_are_not_final(fake: FakePrefect, store_url: str,
                                                                  max_active: int) -> None:
    result = backfill(store_url, max_active=max_active)
    assert result.states == dict.fromkeys(DAYS, "completed") and result.failed == [] and result.status == "completed"
    assert fake.peak == min(max_active, len(DAYS))
    assert [r.parameters["partition"] for r in fake.created] == DAYS
    assert [r.idempotency_key for r in fake.created] == [f"backfill:{DEPLOYMENT}:{d}" for d in DAYS]
    store = MetadataStore(store_url)
    try:
        record = store.get_backfill(result.backfill_id)
    finally:
        store.dispose()
    assert record.status == "completed" and record.max_active == max_active
    assert [(r.partition, r.status, r.flow_run_id) for r in record.partitions] == [
        (d, "completed", result.flow_runs[d]) for d in DAYS]
    assert [row["partition"] for row in record.runs] == DAYS


def test_reverse_submits_newest_first(fake: FakePrefect, store_url: str) -> None:
    result = backfill(store_url, reverse=True, max_active=2)
    assert [r.parameters["partition"] for r in fake.created] == DAYS[::-1] and result.partitions == DAYS[::-1]


def test_a_failing_partition_does_not_stop_the_others(fake: FakePrefect, store_url: str) -> None:
    fake.final = {DAYS[1]: "failed"}
    result = backfill(store_url, max_active=2)
    assert result.failed == [DAYS[1]] and result.status == "failed"
    assert result.states == {**dict.fromkeys(DAYS, "completed"), DAYS[1]: "failed"}
    store = MetadataStore(store_url)
    try:
        assert store.get_backfill(result.backfill_id).status == "failed"
    finally:
        store.dispose()


def test_completed_partitions_are_skipped_and_failed_ones_rerun_with_their_own_key(fake: FakePrefect,
                                                                                   store_url: str) -> None:
    record_runs(store_url, {**dict.fromkeys(DAYS, "completed"), DAYS[3]: "failed"})
    again = backfill(store_url)
    assert again.submitted == [] and fake.created == [] and again.status == "completed"
    assert again.skipped[DAYS[3]].startswith("latest run failed")
    redo = backfill(store_url, reprocess="failed")
    assert redo.submitted == [DAYS[3]] and redo.states == {DAYS[3]: "completed"}
    assert [r.idempotency_key for r in fake.created] == [f"backfill:{DEPLOYMENT}:{DAYS[3]}:{redo.backfill_id}"]


def test_an_earlier_final_run_for_the_key_is_reused_or_rerun(fake: FakePrefect, store_url: str) -> None:
    fake.final = {DAYS[0]: "failed"}
    first = backfill(store_url, DAYS[0], DAYS[1], max_active=2)  # no runs rows: the fake flows write none
    assert first.states == {DAYS[0]: "failed", DAYS[1]: "completed"}
    again = backfill(store_url, DAYS[0], DAYS[1], max_active=2)  # same first-attempt keys: Prefect's runs
    assert [o.action for o in again.outcomes] == ["reused", "reused"] and len(fake.created) == 2
    assert again.states == first.states and again.flow_runs == first.flow_runs and again.failed == [DAYS[0]]
    fake.final = {}
    redo = backfill(store_url, DAYS[0], DAYS[1], reprocess="failed", max_active=2)
    assert redo.states == {DAYS[0]: "completed", DAYS[1]: "completed"}
    assert [o.action for o in redo.outcomes] == ["submitted", "reused"]
    assert fake.created[-1].idempotency_key == f"backfill:{DEPLOYMENT}:{DAYS[0]}:{redo.backfill_id}"


def test_timeout_stops_submitting_and_records_a_failed_backfill(fake: FakePrefect, store_url: str) -> None:
    fake.stuck = True
    result = run_backfill(DEPLOYMENT, DAYS[0], DAYS[2], project="p", metadata_url=store_url, poll_seconds=0.05,
                          timeout=0.3, max_active=1)
    assert result.timed_out and result.status == "failed"
    assert result.states == {DAYS[0]: "scheduled", DAYS[1]: "not_submitted", DAYS[2]: "not_submitted"}
    assert len(fake.created) == 1 and result.failed == DAYS[:3]


def test_dry_run_submits_and_records_nothing(fake: FakePrefect, store_url: str) -> None:
    result = backfill(store_url, dry_run=True, reverse=True)
    assert result.dry_run and result.backfill_id is None and fake.created == []
    assert result.submitted == DAYS[::-1] and [o.action for o in result.outcomes] == ["planned"] * 7
    assert result.failed == []
    store = MetadataStore(store_url)
    try:
        assert store.current_revision() is None  # not even migrated
        record_runs(store_url, {DAYS[0]: "completed"})
        again = backfill(store_url, dry_run=True)
        assert again.submitted == DAYS[1:] and list(again.skipped) == [DAYS[0]] and fake.created == []
        with store.engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT count(*) FROM backfills").scalar_one() == 0
    finally:
        store.dispose()


def test_parameters_are_checked_before_the_api_is_asked(fake: FakePrefect, store_url: str) -> None:
    cases = [({"reprocess": "some"}, "INVALID_CHOICE"), ({"max_active": 0}, "PARAM_OUT_OF_RANGE"),
             ({"max_active": 65}, "PARAM_OUT_OF_RANGE"), ({"timeout": 0}, "PARAM_OUT_OF_RANGE")]
    for kwargs, code in cases:
        with pytest.raises(ParameterError) as info:
            backfill(store_url, **kwargs)
        assert info.value.code == code
    for name, code in (("ingest", "INVALID_DEPLOYMENT"), ("ingest/nope", "DEPLOYMENT_NOT_FOUND")):
        with pytest.raises(ParameterError) as info:
            run_backfill(name, DAYS[0], DAYS[1], project="p", metadata_url=store_url)
        assert info.value.code == code
    fake.deployments["pipeline/pipeline-adhoc"] = SimpleNamespace(parameters={}, parameter_openapi_schema={
        "properties": {"config_file": {}}})
    with pytest.raises(ParameterError) as info:
        run_backfill("pipeline/pipeline-adhoc", DAYS[0], DAYS[1], project="p", metadata_url=store_url)
    assert info.value.code == "NOT_PARTITIONED"
    with pytest.raises(ParameterError) as info:
        run_backfill(DEPLOYMENT, DAYS[0], DAYS[1], metadata_url=store_url)  # no project, no config
    assert info.value.code == "MISSING_PARAMETER"
    assert fake.created == []


def test_project_comes_from_the_deployments_config_file(fake: FakePrefect, store_url: str,
                                                        examples_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(examples_dir.parent)
    fake.deployments[DEPLOYMENT].parameters = {"config_file": "examples/payerne_10min_temperature.yaml"}
    result = run_backfill(DEPLOYMENT, DAYS[0], DAYS[1], metadata_url=store_url, poll_seconds=0, dry_run=True)
    assert result.project == "payerne-10min-temperature" and result.unit == "day"
    result = run_backfill(DEPLOYMENT, DAYS[0], DAYS[0], metadata_url=store_url, poll_seconds=0,
                          config_file="examples/payerne_15min_clean.yaml", overrides=["description=x"])
    assert fake.created[0].parameters == {"config_file": "examples/payerne_15min_clean.yaml",
                                          "overrides": ["description=x"], "partition": DAYS[0]}
