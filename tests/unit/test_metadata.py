"""Metadata store on SQLite: migrations, idempotent upserts, rollback deletes, masked passwords."""

from __future__ import annotations

import datetime as dt
import socket
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from zeitflow.errors import ParameterError, StorageError
from zeitflow.io.artifacts import DataRef
from zeitflow.io.metadata import Base, MetadataStore, normalize_url

TABLES = {"projects", "runs", "stage_outputs", "channel_stats", "datasets", "models", "metric_tables",
          "backfills", "backfill_runs"}
T0 = dt.datetime(2024, 3, 31, 0, 0, tzinfo=dt.UTC)
T1 = dt.datetime(2024, 3, 31, 1, 10, tzinfo=dt.UTC)


def make_ref(sha: str = "c" * 64, rows: int = 8) -> DataRef:
    return DataRef(uri="file:///data/p/resample/h/i/part.parquet", sha256=sha, size_bytes=1234, rows=rows,
                   columns=["Temperatur [°C]", "load"], stage="resample", parameters_hash="h" * 64)


STATS = [
    {"channel": "Temperatur [°C]", "rows": 8, "numeric": 6, "numeric_share_percent": 75.0, "min": -3.25,
     "max": 8.0, "step_median_minutes": 10.0, "step_min_minutes": 10.0, "step_max_minutes": 10.0,
     "offset_minutes": 0.0},
    {"channel": "load", "rows": 8, "numeric": 0, "numeric_share_percent": 0.0, "min": float("nan"),
     "max": None},
]


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    metadata = MetadataStore(f"sqlite:///{tmp_path}/meta/zeitflow.db")
    metadata.migrate()
    yield metadata
    metadata.dispose()


def record(store: MetadataStore, run_id: str, *, sha: str = "c" * 64, stats: list[dict] | None = None,
           report: dict | None = None) -> str:
    return store.record_stage_output(
        run_id, "resample", "frame", make_ref(sha), T0, T1, "i" * 64, "v1",
        report if report is not None else {"rows_in": 8, "warnings": []},
        STATS if stats is None else stats,
    )


def test_migrate_creates_all_tables_and_is_idempotent(store: MetadataStore) -> None:
    store.migrate()
    assert store.current_revision() == "0002"
    names = set(inspect(store.engine).get_table_names())
    assert names >= TABLES and "alembic_version" in names
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_upsert_project_twice_gives_one_row(store: MetadataStore) -> None:
    first = store.upsert_project("demo", {"sources": ["a.csv"]})
    second = store.upsert_project("demo", {"sources": ["a.csv", "b.csv"]})
    assert first == second and len(first) == 36
    with store.engine.connect() as connection:
        rows = connection.execute(text("SELECT id, config FROM projects")).all()
    assert len(rows) == 1
    assert store.upsert_project("other", None) != first


def test_runs_start_finish_get(store: MetadataStore) -> None:
    project = store.upsert_project("demo", {})
    run_id = store.start_run("ingest", project_id=project, partition="2024-03-31", flow_run_id="fr-1",
                             parameters={"when": T0, "x": float("inf")}, parameters_hash="p" * 64,
                             code_version="v1")
    assert store.start_run("ingest", project_id=project, run_id=run_id) == run_id  # upsert on id
    run = store.get_run(run_id)
    assert run is not None and run.status == "running" and run.finished_at is None
    assert run.started_at.tzinfo is not None
    store.finish_run(run_id, "failed", error_code="WRITE_FAILED", error_message="disk full")
    run = store.get_run(run_id)
    assert (run.status, run.error_code, run.error_message) == ("failed", "WRITE_FAILED", "disk full")
    assert run.finished_at is not None and run.finished_at.utcoffset() == dt.timedelta(0)
    assert store.get_run("00000000-0000-0000-0000-000000000000") is None
    with pytest.raises(StorageError) as info:
        store.finish_run("00000000-0000-0000-0000-000000000000", "completed")
    assert info.value.code == "OBJECT_NOT_FOUND"
    with pytest.raises(ParameterError) as perr:
        store.finish_run(run_id, "done")
    assert perr.value.code == "INVALID_CHOICE"


def test_runs_of_a_dead_process_on_this_host_are_marked_abandoned(store: MetadataStore) -> None:
    """Only ``running`` rows of this project, owned by a process of this host that is gone, become ``failed``
    with RUN_ABANDONED; live owners, other hosts, rows without an owner and finished rows stay as they are."""
    project, other_project = store.upsert_project("demo", {}), store.upsert_project("other", {})
    runs = {
        "dead": store.start_run("pipeline", project_id=project, owner="box:101"),
        "alive": store.start_run("pipeline", project_id=project, owner="box:202"),
        "other-host": store.start_run("pipeline", project_id=project, owner="elsewhere:101"),
        "no-owner": store.start_run("pipeline", project_id=project),
        "finished": store.start_run("pipeline", project_id=project, owner="box:101"),
        "other-project": store.start_run("pipeline", project_id=other_project, owner="box:101"),
        "host-with-colons": store.start_run("pipeline", project_id=project, owner="box:x:101"),
    }
    store.finish_run(runs["finished"], "completed")
    asked: list[int] = []

    def alive(pid: int) -> bool:
        asked.append(pid)
        return pid == 202

    assert store.fail_abandoned_runs(project, "box", alive) == [runs["dead"]]
    assert sorted(asked) == [101, 202]
    dead = store.get_run(runs["dead"])
    assert (dead.status, dead.error_code) == ("failed", "RUN_ABANDONED") and dead.finished_at is not None
    assert dead.owner == "box:101"
    for name in ("alive", "other-host", "no-owner", "other-project", "host-with-colons"):
        assert store.get_run(runs[name]).status == "running", name
    assert store.get_run(runs["finished"]).status == "completed"
    assert store.fail_abandoned_runs(project, "box", alive) == []  # nothing left to mark


def test_record_stage_output_twice_gives_one_row(store: MetadataStore) -> None:
    run1 = store.start_run("ingest")
    run2 = store.start_run("ingest")
    first = record(store, run1)
    created = store.get_stage_output(first).created_at
    second = record(store, run2, stats=STATS[:1], report={"rows_in": 9})
    assert first == second
    assert store.count_stage_outputs() == 1
    assert store.count_stage_outputs("resample", "h" * 64, "i" * 64, "v1", "frame") == 1
    found = store.find_stage_output("resample", "h" * 64, "i" * 64, "v1", "frame")
    assert found is not None
    assert found.run_id == run2  # the last run that produced or confirmed it
    assert found.report == {"rows_in": 9}
    assert found.created_at == created and found.updated_at >= created
    assert (found.first_utc, found.last_utc) == (T0, T1)
    assert found.to_ref() == make_ref()
    assert [s["channel"] for s in store.get_channel_stats(first)] == ["Temperatur [°C]"]
    assert store.find_stage_output("resample", "h" * 64, "i" * 64, "v2", "frame") is None
    other = store.record_stage_output(run1, "resample", "frame", make_ref(), T0, T1, "i" * 64, "v2", {}, [])
    assert other != first and store.count_stage_outputs() == 2
    assert store.count_stage_outputs(run_id=run1) == 1


def test_channel_stats_are_stored_with_nan_as_null(store: MetadataStore) -> None:
    output = record(store, store.start_run("ingest"))
    stats = {s["channel"]: s for s in store.get_channel_stats(output)}
    assert stats["Temperatur [°C]"]["min"] == -3.25 and stats["Temperatur [°C]"]["numeric"] == 6
    assert stats["load"]["min"] is None and stats["load"]["max"] is None
    with pytest.raises(ParameterError):
        record(store, store.start_run("ingest"), stats=[{"channel": "x", "bogus": 1}])


def test_delete_stage_output_rolls_back_with_channel_stats(store: MetadataStore) -> None:
    output = record(store, store.start_run("ingest"))
    assert store.delete_stage_output(output) is True
    assert store.delete_stage_output(output) is False
    assert store.count_stage_outputs() == 0
    assert store.get_channel_stats(output) == []
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM channel_stats")).scalar() == 0


def test_foreign_keys_cascade_in_sql(store: MetadataStore) -> None:
    output = record(store, store.start_run("ingest"))
    with store.engine.begin() as connection:
        connection.execute(text("DELETE FROM stage_outputs WHERE id = :id"), {"id": output})
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM channel_stats")).scalar() == 0


def test_failed_record_leaves_no_row(store: MetadataStore) -> None:
    with pytest.raises(StorageError) as info:
        record(store, "no-such-run")  # foreign key violation
    assert info.value.code == "WRITE_FAILED"
    assert info.value.details["store"] == "metadata"
    assert store.count_stage_outputs() == 0
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM channel_stats")).scalar() == 0


def test_concurrent_upserts_keep_one_row(store: MetadataStore) -> None:
    run_id = store.start_run("ingest")
    ids: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                ids.append(record(store, run_id))
                store.upsert_project("demo", {"n": 1})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(ids)) == 1 and store.count_stage_outputs() == 1
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM projects")).scalar() == 1


def test_datetimes_are_utc_aware(store: MetadataStore) -> None:
    naive = dt.datetime(2024, 1, 1, 12, 0)
    berlin = dt.datetime(2024, 1, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    output = store.record_stage_output(store.start_run("x"), "load", "frame", make_ref(), naive, berlin,
                                       "i", "v", None, [])
    found = store.get_stage_output(output)
    assert found.first_utc == found.last_utc == dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC)


def test_url_normalization() -> None:
    assert normalize_url("postgresql://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u:p@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _all_text(exc: BaseException) -> str:
    parts = []
    seen = exc
    while seen is not None:
        parts += [str(seen), repr(seen), repr(getattr(seen, "details", ""))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


def test_password_never_appears_in_errors() -> None:
    secret = "s3cr3t-Pa55word"
    url = f"postgresql://zeitflow:{secret}@127.0.0.1:{_closed_port()}/zeitflow"
    metadata = MetadataStore(url)
    assert secret not in repr(metadata) and secret not in metadata.masked_url
    assert "***" in metadata.masked_url
    for call in (metadata.migrate, lambda: metadata.upsert_project("p", {}), lambda: metadata.get_run("x")):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.code in ("WRITE_FAILED", "READ_FAILED")
        assert info.value.transient
        assert info.value.details["store"] == "metadata"
        assert secret not in _all_text(info.value)
        assert "***" in info.value.message
    with pytest.raises(ValueError) as bad:
        MetadataStore(f"postgresql://zeitflow:{secret}@host:notaport/db")
    assert secret not in _all_text(bad.value)


def test_default_sqlite_location_is_created(tmp_path: Path) -> None:
    metadata = MetadataStore(f"sqlite:///{tmp_path}/a/b/zeitflow.db")
    metadata.migrate()
    assert (tmp_path / "a" / "b" / "zeitflow.db").exists()
    metadata.dispose()


def test_record_carries_ref_and_channel_stats(store: MetadataStore) -> None:
    output = record(store, store.start_run("ingest"))
    found = store.get_stage_output(output)
    assert found.ref == make_ref()
    assert [s["channel"] for s in found.channel_stats] == ["Temperatur [°C]", "load"]  # column order
    assert found.channel_stats[0]["max"] == 8.0 and "stage_output_id" not in found.channel_stats[0]
    assert store.get_stage_output("missing") is None


def test_iso_text_times_are_accepted(store: MetadataStore) -> None:
    stamp = "2024-03-31T00:00:00.000000001+00:00"  # pandas Timestamp.isoformat() with nanoseconds
    output = store.record_stage_output(store.start_run("x"), "load", "frame", make_ref(), stamp,
                                       "2024-03-31T03:10:00+02:00", "i", "v", {}, [])
    found = store.get_stage_output(output)
    assert found.first_utc == T0 and found.last_utc == T1


def test_count_and_delete_by_uri(store: MetadataStore) -> None:
    run_id = store.start_run("x")
    for name, uri in (("a", "s3://b/p_1/a.parquet"), ("b", "s3://b/p_1/b.parquet"), ("c", "s3://b/pX1/c.parquet")):
        ref = make_ref().model_copy(update={"uri": uri})
        store.record_stage_output(run_id, "load", name, ref, None, None, "i", "v", {}, STATS)
    assert store.count_stage_outputs(uri="s3://b/p_1/a.parquet") == 1
    assert store.count_stage_outputs(uri_prefix="s3://b/p_1/") == 2  # '_' is not a wildcard
    assert store.delete_stage_outputs_at("s3://b/p_1/a.parquet") == 1
    assert store.delete_stage_outputs_at("s3://b/p_1/a.parquet") == 0
    assert store.count_stage_outputs() == 2
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM channel_stats")).scalar() == 4


def test_mask_url() -> None:
    from zeitflow.io.metadata import mask_url

    assert mask_url("postgresql://u:topsecret@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def _run(store: MetadataStore, project: str, status: str = "running") -> str:
    import uuid

    run_id = str(uuid.uuid4())
    project_id = store.upsert_project(project, {})
    store.start_run(run_id=run_id, project_id=project_id, flow_name="train", flow_run_id=None, deployment=None,
                    partition=None, parameters={}, parameters_hash="p" * 64, code_version="v1")
    if status != "running":
        store.finish_run(run_id, status)
    return run_id


def test_models_upsert_latest_and_metric_tables(store: MetadataStore) -> None:
    first = _run(store, "alpha", "completed")
    a = store.record_model(first, "dense", "dense", {"kind": "dense"}, "file:///m/dense", "a" * 64,
                           epochs_run=5, best_epoch=3)
    again = store.record_model(first, "dense", "dense", {"kind": "dense"}, "file:///m/dense2", "b" * 64)
    assert again == a and store.count_models(run_id=first) == 1  # natural key (run, name): an upsert
    second = _run(store, "alpha")
    store.record_model(second, "linear", "linear", {"kind": "linear"}, "file:///m/linear", "c" * 64)
    failed = _run(store, "alpha", "failed")
    store.record_model(failed, "lstm", "lstm", {"kind": "lstm"}, "file:///m/lstm", "d" * 64)
    _run(store, "beta")
    latest = store.latest_model("alpha")
    assert latest is not None and latest.name == "linear"  # newest; the failed run's lstm is skipped
    dense = store.latest_model("alpha", "dense")
    assert dense is not None and dense.uri == "file:///m/dense2" and dense.sha256 == "b" * 64
    assert store.latest_model("alpha", "lstm") is None and store.latest_model("beta") is None

    table_id = store.record_metric_table(a, "overall", "file:///r/overall.parquet", "e" * 64,
                                         json_uri="file:///r/metrics.json", summary={"temperature": {"mae": 1.5}})
    assert store.record_metric_table(a, "overall", "file:///r/overall2.parquet", "f" * 64) == table_id
    store.record_metric_table(a, "per_step", "file:///r/per_step.parquet", "0" * 64)
    rows = store.metric_tables_of(a)
    assert [r["table"] for r in rows] == ["overall", "per_step"] and rows[0]["uri"].endswith("overall2.parquet")
    with pytest.raises(ParameterError, match="table='summary'"):
        store.record_metric_table(a, "summary", "file:///x", "1" * 64)


def test_find_dataset_id_by_uri(store: MetadataStore) -> None:
    run_id = _run(store, "alpha")
    dataset_id = store.record_dataset(run_id, "d", ["a"], ["b"], 2, 1, 60.0, 0.0, {}, None, 10, 7, 2, 1, T0, T1,
                                      uri="file:///d.npz", sha256="9" * 64)
    assert store.find_dataset_id("file:///d.npz") == dataset_id and store.find_dataset_id("file:///e.npz") is None
