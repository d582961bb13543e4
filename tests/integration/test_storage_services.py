"""Artifact store on a real S3 server (moto, server mode) and metadata store on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import os
import tempfile
import threading
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from botocore.config import Config
from sqlalchemy import inspect, text
from sqlalchemy.engine import make_url

from zeitflow.errors import StorageError
from zeitflow.io import artifacts
from zeitflow.io.artifacts import ArtifactStore, DataRef, read_frame, write_frame
from zeitflow.io.metadata import Base, MetadataStore
from zeitflow.settings import Settings, storage_options_for

PARAMS = "a" * 64


def make_frame() -> pd.DataFrame:
    index = pd.date_range("2024-10-27 00:00", periods=12, freq="15min", tz="UTC", name="utc").as_unit("ns")
    values = np.arange(12, dtype=np.float64) / 4
    values[[2, 7]] = np.nan
    return pd.DataFrame({"Temperatur [°C]": values, "p [hPa]": values[::-1] * 100}, index=index)


@pytest.fixture
def s3_client(s3_endpoint: str):
    return boto3.client(
        "s3", endpoint_url=s3_endpoint,
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required"),
    )


@pytest.fixture
def s3_root(s3_bucket: str, request: pytest.FixtureRequest) -> str:
    return f"s3://{s3_bucket}/{request.node.name}"


def object_keys(client, bucket: str, prefix: str) -> list[str]:
    response = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return sorted(item["Key"] for item in response.get("Contents", []))


# ---- S3 -------------------------------------------------------------------------------------


def test_settings_pick_up_the_s3_endpoint(s3_endpoint: str) -> None:
    options = storage_options_for("s3://zeitflow-test/x", Settings())
    assert options["endpoint_url"] == s3_endpoint
    assert options["config_kwargs"]["s3"] == {"addressing_style": "path"}


def test_s3_frame_round_trip_and_identical_bytes(s3_root: str, s3_client, s3_bucket: str,
                                                 tmp_path: Path) -> None:
    store = ArtifactStore(s3_root)
    frame = make_frame()
    uri = store.key_for("proj", "resample", PARAMS, "b" * 64)
    ref = store.write_frame(frame, uri, stage="resample", parameters_hash=PARAMS)
    assert ref.uri == uri and uri.startswith("s3://zeitflow-test/")
    pd.testing.assert_frame_equal(store.read_frame(uri, ref.sha256), frame)
    pd.testing.assert_frame_equal(read_frame(uri, ref.sha256), frame)  # module function, options from env

    body = s3_client.get_object(Bucket=s3_bucket, Key=uri.split("/", 3)[3])["Body"].read()
    assert hashlib.sha256(body).hexdigest() == ref.sha256 and len(body) == ref.size_bytes

    again = write_frame(frame, store.key_for("proj", "resample", PARAMS, "c" * 64), stage="resample",
                        parameters_hash=PARAMS, storage_options=storage_options_for(uri))
    local = write_frame(frame, str(tmp_path / "part.parquet"), stage="resample", parameters_hash=PARAMS)
    assert again.sha256 == ref.sha256 == local.sha256
    assert store.get_bytes(again.uri) == body == (tmp_path / "part.parquet").read_bytes()
    assert DataRef.from_json(ref.to_json()) == ref


def test_s3_exists_delete_not_found_checksum(s3_root: str) -> None:
    store = ArtifactStore(s3_root)
    uri = store.uri("docs", "report.json")
    assert not store.exists(uri)
    with pytest.raises(StorageError) as info:
        store.get_bytes(uri)
    assert info.value.code == "OBJECT_NOT_FOUND"
    written = store.write_json({"b": 1, "a": [1.5, None]}, uri)
    assert store.exists(uri)
    assert store.read_json(uri, written.sha256) == {"a": [1.5, None], "b": 1}
    with pytest.raises(StorageError) as info:
        store.read_json(uri, "0" * 64)
    assert info.value.code == "CHECKSUM_MISMATCH"
    store.delete(uri)
    store.delete(uri)
    assert not store.exists(uri)
    with pytest.raises(StorageError) as info:
        store.read_frame(store.uri("missing.parquet"))
    assert info.value.code == "OBJECT_NOT_FOUND"


def test_s3_failed_local_step_uploads_nothing(s3_root: str, s3_client, s3_bucket: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(s3_root)
    uri = store.key_for("proj", "clean", PARAMS, "d" * 64)
    uploads: list[str] = []
    fs = store_fs(uri)
    original_put_file = fs.put_file

    def counting_put_file(lpath, rpath, *args, **kwargs):
        uploads.append(rpath)
        return original_put_file(lpath, rpath, *args, **kwargs)

    def half_write(table: object, sink: io.RawIOBase) -> None:
        sink.write(b"PAR1 partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs, "put_file", counting_put_file)
    marker = store.uri("marker.json")
    store.write_json({"ok": True}, marker)
    assert len(uploads) == 1  # the patch sits where uploads happen
    monkeypatch.setattr(artifacts, "_write_table", half_write)
    before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(StorageError) as info:
        store.write_frame(make_frame(), uri, stage="clean", parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED"
    assert len(uploads) == 1
    assert not store.exists(uri)
    assert object_keys(s3_client, s3_bucket, s3_root.split("/", 3)[3]) == [marker.split("/", 3)[3]]
    new_entries = set(os.listdir(tempfile.gettempdir())) - before
    assert {name for name in new_entries if "zeitflow-upload" in name} == set()


def test_s3_failed_upload_leaves_no_object(s3_root: str, s3_client, s3_bucket: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store = ArtifactStore(s3_root)
    uri = store.key_for("proj", "clean", PARAMS, "e" * 64)

    def failing_put_file(lpath, rpath, *args, **kwargs):
        raise ConnectionResetError(104, "Connection reset by peer")

    monkeypatch.setattr(store_fs(uri), "put_file", failing_put_file)
    with pytest.raises(StorageError) as info:
        store.write_frame(make_frame(), uri, stage="clean", parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED" and info.value.transient
    monkeypatch.undo()
    assert not store.exists(uri)
    assert object_keys(s3_client, s3_bucket, s3_root.split("/", 3)[3]) == []


def test_s3_missing_bucket_is_write_failed(s3_endpoint: str) -> None:
    store = ArtifactStore("s3://no-such-bucket-zeitflow/prefix")
    uri = store.key_for("proj", "load", PARAMS, "f" * 64)
    with pytest.raises(StorageError) as info:
        store.write_frame(make_frame(), uri, stage="load", parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED"
    assert not store.exists(uri)


def test_s3_unreachable_endpoint_is_transient(s3_bucket: str) -> None:
    options = storage_options_for("s3://x", Settings(s3_endpoint_url="http://127.0.0.1:9"))
    options["config_kwargs"] = {**options["config_kwargs"], "retries": {"max_attempts": 1},
                                "connect_timeout": 2}
    options["skip_instance_cache"] = True
    with pytest.raises(StorageError) as info:
        read_frame(f"s3://{s3_bucket}/nothing.parquet", storage_options=options)
    assert info.value.code == "READ_FAILED" and info.value.transient


def store_fs(uri: str):
    """The (cached) fsspec instance the store uses for ``uri``; fsspec mirrors sync methods per
    instance, so patches go on the instance."""
    fs, _ = artifacts._resolve(uri, None)
    return fs


# ---- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def pg_store(postgres_url: str) -> MetadataStore:
    store = MetadataStore(postgres_url)
    store.migrate()
    yield store
    with store.engine.begin() as connection:
        for table in ("channel_stats", "stage_outputs", "metric_tables", "models", "datasets", "runs",
                      "projects", "backfill_runs", "backfills"):
            connection.execute(text(f'DELETE FROM "{table}"'))
    store.dispose()


def make_ref() -> DataRef:
    return DataRef(uri="s3://zeitflow-test/p/resample/h/i/part.parquet", sha256="c" * 64, size_bytes=99,
                   rows=12, columns=["Temperatur [°C]", "p [hPa]"], stage="resample", parameters_hash=PARAMS)


def test_postgres_migrate_and_upserts_give_one_row(pg_store: MetadataStore, postgres_url: str) -> None:
    assert pg_store.engine.dialect.name == "postgresql"
    assert pg_store.url.drivername == "postgresql+psycopg"
    pg_store.migrate()  # idempotent
    assert pg_store.current_revision() == "0002"
    assert {"projects", "runs", "stage_outputs", "channel_stats", "datasets", "models", "metric_tables",
            "backfills"} <= set(inspect(pg_store.engine).get_table_names())
    with pg_store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []

    project = pg_store.upsert_project("demo", {"a": 1})
    assert pg_store.upsert_project("demo", {"a": 2}) == project
    run1 = pg_store.start_run("ingest", project_id=project, partition="2024-10-27")
    run2 = pg_store.start_run("ingest", project_id=project, partition="2024-10-27")
    t0 = dt.datetime(2024, 10, 27, tzinfo=dt.UTC)
    stats = [{"channel": "Temperatur [°C]", "rows": 12, "numeric": 10, "min": 0.0, "max": float("nan")}]
    first = pg_store.record_stage_output(run1, "resample", "frame", make_ref(), t0, t0, "i" * 64, "v1",
                                         {"x": float("nan")}, stats)
    second = pg_store.record_stage_output(run2, "resample", "frame", make_ref(), t0, t0, "i" * 64, "v1",
                                          {"x": 1}, stats + [{"channel": "p [hPa]", "rows": 12}])
    assert first == second
    assert pg_store.count_stage_outputs(stage="resample") == 1
    found = pg_store.find_stage_output("resample", PARAMS, "i" * 64, "v1", "frame")
    assert found.run_id == run2 and found.report == {"x": 1} and found.first_utc == t0
    assert [s["channel"] for s in pg_store.get_channel_stats(first)] == ["Temperatur [°C]", "p [hPa]"]
    with pg_store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM projects WHERE name = 'demo'")).scalar() == 1
    assert pg_store.delete_stage_output(first)
    assert pg_store.count_stage_outputs(stage="resample") == 0 and pg_store.get_channel_stats(first) == []
    pg_store.finish_run(run2, "completed")
    assert pg_store.get_run(run2).status == "completed"


def test_postgres_concurrent_migrate_and_upserts(postgres_url: str, pg_store: MetadataStore) -> None:
    stores = [MetadataStore(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []
    run_id = pg_store.start_run("ingest")

    def work(store: MetadataStore) -> None:
        try:
            store.migrate()
            for _ in range(5):
                store.record_stage_output(run_id, "load", "frame", make_ref(), None, None, "i", "v", {}, [])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.dispose()
    assert errors == []
    assert pg_store.count_stage_outputs(stage="load") == 1


def test_postgres_password_never_in_messages(postgres_url: str) -> None:
    url = make_url(postgres_url)
    real = url.password
    assert real
    wrong = "Wr0ng-Pa55word-xyz"
    for candidate, secret in ((url.set(password=wrong), wrong), (url.set(database="does_not_exist"), real)):
        store = MetadataStore(candidate)
        with pytest.raises(StorageError) as info:
            store.migrate()
        assert info.value.code == "WRITE_FAILED"
        text_seen = "\n".join([str(info.value), repr(info.value), repr(info.value.details),
                               str(info.value.__cause__), repr(info.value.__cause__)])
        assert secret not in text_seen
        assert "***" in info.value.message
        assert secret not in repr(store)
        store.dispose()
