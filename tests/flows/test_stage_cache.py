"""Prefect caching of the stage tasks (architecture §2): a re-run with the same inputs, options and code is
served from Prefect's cache (task runs in a *Cached* state), a record whose objects were deleted is expired
and the stage recomputed, and a stage whose gate failed leaves no record behind."""

from __future__ import annotations

from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from sqlalchemy import text

from flows.ingest import ingest
from flows.pipeline import pipeline
from zeitflow.config import load_config
from zeitflow.errors import DataQualityError
from zeitflow.io.metadata import MetadataStore


def _flow_run_ids(root: Path) -> list[str]:
    """Flow-run ids of the project's runs, oldest first."""
    store = MetadataStore(f"sqlite:///{root / 'zeitflow.db'}")
    try:
        with store.engine.connect() as conn:
            return [r[0] for r in conn.execute(text("SELECT flow_run_id FROM runs ORDER BY started_at")).all()]
    finally:
        store.dispose()


def _states(flow_run_id: str) -> dict[str, list[str]]:
    """State names of the flow run's task runs by task name (the run-name suffix removed)."""
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    states: dict[str, list[str]] = {}
    for run in runs:
        states.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name)
    return states


def test_rerun_is_served_from_the_cache_and_deleted_objects_are_recomputed(examples_dir: Path,
                                                                           storage_env: Path) -> None:
    config = load_config(examples_dir / "payerne_15min_clean.yaml")
    first = ingest(config)
    assert not any(s.reused for s in first.stages)
    second = ingest(config)
    assert all(s.reused for s in second.stages)
    assert [(s.uri, s.sha256) for s in second.stages] == [(s.uri, s.sha256) for s in first.stages]
    first_run, second_run = _flow_run_ids(storage_env)
    assert set(_states(first_run)["load"]) == {"Completed"}
    cached = _states(second_run)
    for task in ("load", "resample", "clean", "quality-gate"):
        assert set(cached[task]) == {"Cached"}, (task, cached)
    assert set(cached["register-output"]) == {"Completed"}  # rows are upserted for every run

    # The resample output is deleted by hand: its record is expired, resample runs again and writes the same
    # bytes; load before it and clean after it (same input checksum) are still cached.
    resampled = next(s for s in first.stages if s.stage == "resample")
    Path(resampled.uri.removeprefix("file://")).unlink()
    third = ingest(config)
    assert [(s.uri, s.sha256) for s in third.stages] == [(s.uri, s.sha256) for s in first.stages]
    assert Path(resampled.uri.removeprefix("file://")).is_file()
    states = _states(_flow_run_ids(storage_env)[-1])
    assert set(states["load"]) == {"Cached"} and set(states["clean"]) == {"Cached"}
    assert set(states["resample"]) == {"Completed"}


def test_a_failed_gate_leaves_no_cache_record(examples_dir: Path, storage_env: Path) -> None:
    """The load task's record commits with its gate's transaction: a failed gate rolls the load task back
    (its task run ends RolledBack), so the second run computes load again instead of a Cached state, and
    fails the same way."""
    config = load_config(examples_dir / "payerne_1min.yaml", ["sources.0.gate.value_max=1000"])
    for _ in range(2):
        with pytest.raises(DataQualityError):
            pipeline(config)
    for flow_run_id in _flow_run_ids(storage_env):
        assert set(_states(flow_run_id)["load"]) == {"RolledBack"}
