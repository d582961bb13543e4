"""Backfills against a real deployment stack (Prefect server on PostgreSQL, ``prefect deploy --all``, process
workers on ``zeitflow-process``):

(a) 5 daily partitions of ``ingest/ingest-daily`` with ``max_active=2``: 5 runs complete, never more than 2 at
    once; again: nothing submitted; one partition's outputs deleted and its run marked failed:
    ``reprocess="failed"`` re-runs exactly that one; ``dry_run`` lists partitions and submits nothing.
(b) two workers on one pool share a backfill of 6 partitions (each runs at least one), artifacts on S3.
"""

from __future__ import annotations

import secrets
import shutil
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.backfill import backfill, run_backfill
from tests.prefect_stack import POOL, REPO, DeploymentStack, create_database, deployment_stack, drop_database
from zeitflow.io.metadata import MetadataStore

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEPLOYMENT = "ingest/ingest-daily"
PROJECT = "payerne-10min-temperature"
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
DAYS = ["2016-06-01", "2016-06-02", "2016-06-03", "2016-06-04", "2016-06-05"]


@pytest.fixture(scope="module")
def metadata_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the workers' (and the backfill's) metadata store."""
    url = create_database(postgres_url, "zeitflow_backfill")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' artifact root for (a) (a local folder: one machine)."""
    return tmp_path_factory.mktemp("backfill-storage")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, storage: Path,
          metadata_url: str) -> Iterator[DeploymentStack]:
    env = {"ZEITFLOW_STORAGE_ROOT": f"file://{storage}", "ZEITFLOW_METADATA_URL": metadata_url}
    with deployment_stack(tmp_path_factory.mktemp("backfill-stack"), postgres_url, workers=1, env=env) as started:
        yield started


@pytest.fixture
def api(stack: DeploymentStack, monkeypatch: pytest.MonkeyPatch) -> Iterator[DeploymentStack]:
    """This process talks to the stack's API, from the repository root (where config_file paths resolve)."""
    monkeypatch.chdir(REPO)
    with temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
        yield stack


def _runs(stack: DeploymentStack, deployment_id: str) -> list[dict[str, Any]]:
    return stack.request("POST", "/flow_runs/filter",
                         json={"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200})


def _max_overlap(runs: list[dict[str, Any]]) -> int:
    """The most runs that were running at the same instant, from their start and end times."""
    events: list[tuple[datetime, int]] = []
    for run in runs:
        events.append((datetime.fromisoformat(run["start_time"]), 1))
        events.append((datetime.fromisoformat(run["end_time"]), -1))
    events.sort(key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def _partition_files(storage: Path, partition: str) -> list[Path]:
    return sorted(p for p in (storage / PROJECT).rglob(f"partition-{partition}/*") if p.is_file())


def test_backfill_five_days_then_nothing_then_reprocess_failed_then_dry_run(
    api: DeploymentStack, storage: Path, metadata_url: str
) -> None:
    stack = api
    deployment_id = stack.deployment("ingest", "ingest-daily")["id"]

    # 1. five partitions, at most two at once, inside the backfill flow (artifacts)
    result = backfill(DEPLOYMENT, DAYS[0], DAYS[-1], max_active=2, metadata_url=metadata_url, timeout=600)
    assert result.states == dict.fromkeys(DAYS, "completed"), f"{result.outcomes}\n{stack.logs()}"
    assert result.submitted == DAYS and result.skipped == {} and result.failed == []
    runs = [stack.request("GET", f"/flow_runs/{result.flow_runs[d]}") for d in DAYS]
    assert [r["parameters"]["partition"] for r in runs] == DAYS
    assert [r["idempotency_key"] for r in runs] == [f"backfill:{DEPLOYMENT}:{d}" for d in DAYS]
    assert all(r["state"]["type"] == "COMPLETED" and r["work_pool_name"] == POOL for r in runs)
    assert _max_overlap(runs) <= 2
    for day in DAYS:
        assert _partition_files(storage, day), f"no outputs of {day} under {storage}"

    store = MetadataStore(metadata_url)
    try:
        assert store.partition_statuses(PROJECT, "ingest", DAYS) == dict.fromkeys(DAYS, "completed")
        record = store.get_backfill(result.backfill_id)
        assert record is not None and record.status == "completed" and record.deployment == DEPLOYMENT
        assert (record.start, record.end, record.reprocess, record.max_active) == (DAYS[0], DAYS[-1], "none", 2)
        assert [(r.partition, r.status, r.flow_run_id) for r in record.partitions] == [
            (d, "completed", result.flow_runs[d]) for d in DAYS]
        assert [row["partition"] for row in record.runs] == DAYS
    finally:
        store.dispose()

    backfill_runs = stack.request("POST", "/flow_runs/filter",
                                  json={"flows": {"name": {"any_": ["backfill"]}}, "limit": 10})
    assert len(backfill_runs) == 1
    artifacts = stack.artifacts(backfill_runs[0]["id"])
    progress = [a for a in artifacts if a["type"] == "progress"]
    assert progress and float(progress[-1]["data"]) == 100.0
    table = [a for a in artifacts if a["type"] == "table"]
    assert table and table[0]["key"] == "backfill-ingest-ingest-daily"

    # 2. again: every partition is completed, nothing is submitted
    count = len(_runs(stack, deployment_id))
    again = run_backfill(DEPLOYMENT, DAYS[0], DAYS[-1], max_active=2, metadata_url=metadata_url, timeout=300)
    assert again.submitted == [] and set(again.skipped) == set(DAYS) and again.failed == []
    assert len(_runs(stack, deployment_id)) == count

    # 3. one partition lost and marked failed: reprocess=failed re-runs exactly that one
    lost = DAYS[2]
    for folder in {p.parent for p in _partition_files(storage, lost)}:
        shutil.rmtree(folder)
    assert _partition_files(storage, lost) == []
    store = MetadataStore(metadata_url)
    try:
        store.mark_partition_failed(PROJECT, "ingest", lost)
    finally:
        store.dispose()
    redo = run_backfill(DEPLOYMENT, DAYS[0], DAYS[-1], reprocess="failed", max_active=2, metadata_url=metadata_url,
                        timeout=300)
    assert redo.submitted == [lost] and redo.states == {lost: "completed"}, f"{redo.outcomes}\n{stack.logs()}"
    assert set(redo.skipped) == set(DAYS) - {lost}
    rerun = stack.request("GET", f"/flow_runs/{redo.flow_runs[lost]}")
    assert rerun["id"] != result.flow_runs[lost]
    assert rerun["idempotency_key"] == f"backfill:{DEPLOYMENT}:{lost}:{redo.backfill_id}"
    assert len(_runs(stack, deployment_id)) == count + 1
    assert _partition_files(storage, lost), f"{lost} was not written again"
    store = MetadataStore(metadata_url)
    try:
        assert store.partition_statuses(PROJECT, "ingest", DAYS) == dict.fromkeys(DAYS, "completed")
    finally:
        store.dispose()

    # 4. dry run: lists the partitions (reprocess=all plans all five) and submits nothing
    dry = run_backfill(DEPLOYMENT, DAYS[0], DAYS[-1], reprocess="all", dry_run=True, reverse=True,
                       metadata_url=metadata_url)
    assert dry.dry_run and dry.backfill_id is None
    assert dry.partitions == DAYS[::-1] and dry.submitted == DAYS[::-1] and dry.states == {}
    assert [o.action for o in dry.outcomes] == ["planned"] * 5
    assert len(_runs(stack, deployment_id)) == count + 1

    # 5. the same through the command line: `zeitflow backfill ... --dry-run --json` lists and submits nothing
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "PREFECT_API_URL": stack.api_url, "ZEITFLOW_METADATA_URL": metadata_url}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "zeitflow"), "backfill", DEPLOYMENT, "--start", DAYS[0], "--end", DAYS[-1],
         "--reprocess", "failed", "--dry-run", "--json"], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = json.loads(done.stdout.strip().splitlines()[-1])
    assert listed["partitions"] == DAYS and listed["submitted"] == [] and set(listed["skipped"]) == set(DAYS)
    assert "5 partitions, would submit 0, skipped 5" in done.stdout
    assert len(_runs(stack, deployment_id)) == count + 1


def test_two_workers_share_a_backfill_with_artifacts_on_s3(
    tmp_path: Path, postgres_url: str, s3_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    days = [f"2016-06-{d:02d}" for d in range(10, 16)]
    prefix = f"backfill-{secrets.token_hex(4)}"
    metadata_url = create_database(postgres_url, "zeitflow_backfill_s3")
    env = {"ZEITFLOW_STORAGE_ROOT": f"s3://{s3_bucket}/{prefix}", "ZEITFLOW_METADATA_URL": metadata_url,
           "AWS_ENDPOINT_URL": s3_endpoint, **S3_ENV}
    monkeypatch.chdir(REPO)
    try:
        with deployment_stack(tmp_path / "stack", postgres_url, workers=0, env=env) as stack, \
                temporary_settings(updates={PREFECT_API_URL: stack.api_url}):
            # one run at a time per worker, so the second worker gets partitions while the first is busy
            for name in ("worker-a", "worker-b"):
                stack.start_worker(name, ("--limit", "1"))
            stack.wait_for_workers()
            result = run_backfill(DEPLOYMENT, days[0], days[-1], max_active=4, metadata_url=metadata_url,
                                  timeout=600)
            assert result.states == dict.fromkeys(days, "completed"), f"{result.outcomes}\n{stack.logs()}"
            runs = [stack.request("GET", f"/flow_runs/{result.flow_runs[d]}") for d in days]
            ran_by = {r["parameters"]["partition"]: r["labels"].get("prefect.worker.name") for r in runs}
            assert set(ran_by.values()) == {"worker-a", "worker-b"}, ran_by
            assert _max_overlap(runs) <= 4
    finally:
        drop_database(metadata_url)

    fs = s3fs.S3FileSystem(key=S3_ENV["AWS_ACCESS_KEY_ID"], secret=S3_ENV["AWS_SECRET_ACCESS_KEY"],
                           client_kwargs={"endpoint_url": s3_endpoint, "region_name": S3_ENV["AWS_DEFAULT_REGION"]})
    keys = fs.find(f"{s3_bucket}/{prefix}/{PROJECT}/")
    for day in days:
        parquet = [k for k in keys if f"/partition-{day}/" in k and k.endswith(".parquet")]
        assert parquet, f"no parquet of {day} on S3 under {prefix}: {keys[:20]}"
