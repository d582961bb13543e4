"""Metadata store, backfill side (SQLite): partition statuses, marking a partition failed, backfills and
their runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from zeitflow.errors import ParameterError, StorageError
from zeitflow.io.metadata import Backfill, MetadataStore


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    metadata = MetadataStore(f"sqlite:///{tmp_path}/meta/zeitflow.db")
    metadata.migrate()
    yield metadata
    metadata.dispose()


def run(store: MetadataStore, project_id: str, partition: str, status: str, flow_name: str = "ingest") -> str:
    run_id = store.start_run(flow_name, project_id=project_id, partition=partition)
    store.finish_run(run_id, status)
    return run_id


def test_partition_statuses_latest_run_per_partition(store: MetadataStore) -> None:
    project = store.upsert_project("p")
    other = store.upsert_project("q")
    run(store, project, "2016-06-01", "failed")
    run(store, project, "2016-06-01", "completed")
    run(store, project, "2016-06-02", "completed")
    run(store, project, "2016-06-02", "failed")
    run(store, project, "2016-06-03", "completed", flow_name="forecast")
    run(store, other, "2016-06-03", "completed")
    store.start_run("ingest", project_id=project, partition="2016-06-04")  # still running
    statuses = store.partition_statuses("p", "ingest", ["2016-06-01", "2016-06-02", "2016-06-03", "2016-06-04",
                                                        "2016-06-05"])
    assert statuses == {"2016-06-01": "completed", "2016-06-02": "failed", "2016-06-03": None,
                        "2016-06-04": "running", "2016-06-05": None}
    assert store.partition_statuses("q", "ingest", ["2016-06-03"]) == {"2016-06-03": "completed"}
    assert store.partition_statuses("nobody", "ingest", ["2016-06-01"]) == {"2016-06-01": None}
    assert store.partition_statuses("p", "ingest", []) == {}


def test_partition_statuses_many_partitions(store: MetadataStore) -> None:
    project = store.upsert_project("p")
    hours = [f"2016-06-{d:02d}T{h:02d}" for d in range(1, 31) for h in range(24)]  # 720 > one chunk
    run(store, project, hours[-1], "completed", flow_name="forecast")
    statuses = store.partition_statuses("p", "forecast", hours)
    assert len(statuses) == 720 and statuses[hours[-1]] == "completed"
    assert sum(v is not None for v in statuses.values()) == 1


def test_mark_partition_failed_marks_the_latest_run(store: MetadataStore) -> None:
    project = store.upsert_project("p")
    first = run(store, project, "2016-06-03", "completed")
    latest = run(store, project, "2016-06-03", "completed")
    assert store.mark_partition_failed("p", "ingest", "2016-06-03") == latest
    assert store.get_run(latest).status == "failed" and store.get_run(latest).error_code == "MARKED_FAILED"
    assert store.get_run(latest).finished_at is not None
    assert store.get_run(first).status == "completed"
    assert store.partition_statuses("p", "ingest", ["2016-06-03"]) == {"2016-06-03": "failed"}
    with pytest.raises(StorageError) as info:
        store.mark_partition_failed("p", "ingest", "2016-06-09")
    assert info.value.code == "OBJECT_NOT_FOUND"


def test_backfill_lifecycle(store: MetadataStore) -> None:
    backfill_id = store.start_backfill("ingest/ingest-daily", "2016-06-01", "2016-06-05", "failed", 2, True)
    record = store.get_backfill(backfill_id)
    assert record is not None
    assert (record.deployment, record.start, record.end, record.reprocess, record.max_active, record.reverse) == (
        "ingest/ingest-daily", "2016-06-01", "2016-06-05", "failed", 2, True)
    assert record.status == "running" and record.finished_at is None and record.partitions == [] and record.runs == []

    store.record_backfill_run(backfill_id, "2016-06-02", "backfill:ingest/ingest-daily:2016-06-02", "fr-2",
                              "scheduled")
    store.record_backfill_run(backfill_id, "2016-06-01", "backfill:ingest/ingest-daily:2016-06-01", "fr-1",
                              "scheduled")
    store.record_backfill_run(backfill_id, "2016-06-02", "backfill:ingest/ingest-daily:2016-06-02", "fr-2",
                              "completed")
    summary = [{"partition": "2016-06-01", "state": "failed"}, {"partition": "2016-06-02", "state": "completed"},
               {"partition": "2016-06-03", "state": "skipped", "reason": "already completed"}]
    store.finish_backfill(backfill_id, "failed", runs=summary)
    record = store.get_backfill(backfill_id)
    assert record.status == "failed" and record.finished_at is not None and record.runs == summary
    assert [(r.partition, r.flow_run_id, r.status) for r in record.partitions] == [
        ("2016-06-01", "fr-1", "scheduled"), ("2016-06-02", "fr-2", "completed")]
    assert record.partitions[1].updated_at >= record.partitions[1].created_at


def test_backfill_checks(store: MetadataStore) -> None:
    with pytest.raises(ParameterError) as info:
        store.start_backfill("ingest/ingest-daily", "2016-06-01", "2016-06-05", "some")
    assert info.value.code == "INVALID_CHOICE" and info.value.details["parameter"] == "reprocess"
    backfill_id = store.start_backfill("ingest/ingest-daily", "2016-06-01", "2016-06-05")
    with pytest.raises(ParameterError):
        store.finish_backfill(backfill_id, "done")
    with pytest.raises(StorageError) as missing:
        store.finish_backfill("no-such-id", "completed")
    assert missing.value.code == "OBJECT_NOT_FOUND"
    assert store.get_backfill("no-such-id") is None
    with pytest.raises(StorageError) as orphan:  # backfill_runs rows need their backfill (foreign key)
        store.record_backfill_run("no-such-id", "2016-06-01", "k", None, "scheduled")
    assert orphan.value.code == "WRITE_FAILED"


def test_backfill_check_constraints_hold_in_the_database(store: MetadataStore) -> None:
    table = Backfill.__table__
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(table.insert().values(id="x", deployment="d", start="a", end="b", reprocess="some",
                                                 max_active=1, reverse=False, status="running",
                                                 created_at="2024-01-01T00:00:00", runs=[]))
