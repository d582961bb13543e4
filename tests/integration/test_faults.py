"""Fault injection with real services (issue 9): the S3 server (SeaweedFS, whose data persists on disk) is
killed in the middle of a stage write and restarted, and the PostgreSQL metadata server is restarted in the
middle of a run. The pipeline (``zeitflow run`` in process, under a Prefect test harness) either completes,
after the stage or the metadata store retried, or fails cleanly. Either way, the store must be consistent
afterwards:

- no partial or temporary object and no open multipart upload;
- every ``stage_outputs`` row names an object that exists, with the row's sha256 and size, and there is
  exactly one row per (stage, output);
- every stage object has its row (a failed stage leaves neither);
- the ``runs`` row is finished (``completed`` or ``failed``), never left ``running``.

The faults are real: the S3 server process group gets SIGKILL, so the real botocore client meets a refused
or reset connection; PostgreSQL is stopped with ``pg_ctl stop -m fast``, which terminates the open session
("terminating connection due to administrator command"). Only the *moment* is chosen by a wrapper: the
upload of one chosen object (``S3FileSystem._put_file``, the single upload step of the atomic writer) or
the ``stage_outputs`` upsert of one chosen stage (an SQLAlchemy ``after_cursor_execute`` hook).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import s3fs
from sqlalchemy import create_engine, event, text

from tests.prefect_stack import create_database, drop_database
from tests.services import BUCKET, PostgresCluster, SeaweedFS, postgres_cluster, start_seaweedfs
from zeitflow.errors import StorageError, exit_code_for
from zeitflow.io import artifacts
from zeitflow.io.artifacts import ArtifactStore, read_frame
from zeitflow.io.metadata import MetadataStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "payerne_15min_clean.yaml"  # load, resample, clean: one output each
PROJECT = "payerne-15min-clean"
STAGES = ("load", "resample", "clean")


# --------------------------------------------------------------------------------------------
# Services and environment


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """A SeaweedFS server of its own (it is killed and restarted by the tests)."""
    with start_seaweedfs(BUCKET, tmp_path_factory.mktemp("weed")) as server:
        yield server


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster of its own (it is restarted by the tests)."""
    with postgres_cluster(tmp_path_factory.mktemp("pg-faults")) as handle:
        yield handle


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    """Flows run in this process: reuse an active Prefect API (the flow tests' session harness), else start a
    test harness for this module."""
    from prefect.settings import PREFECT_API_URL

    if PREFECT_API_URL.value():
        yield
        return
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=90):
        yield


@pytest.fixture(autouse=True)
def fresh_s3_instances() -> Iterator[None]:
    """fsspec caches S3 filesystems and binds their sync methods (``put_file``) to the async ones at creation:
    drop the cached instances around each test so that a patched ``_put_file`` applies, and only in its test."""
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def metadata_url(cluster: PostgresCluster) -> Iterator[str]:
    """A fresh metadata database for one test."""
    url = create_database(cluster.url, "zf_faults")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture
def s3_env(seaweed: SeaweedFS, metadata_url: str, monkeypatch: pytest.MonkeyPatch,
           request: pytest.FixtureRequest) -> str:
    """Artifacts on SeaweedFS under a prefix of this test, metadata in PostgreSQL; returns the root."""
    if not seaweed.is_running():  # a failed test may have left it down
        seaweed.start()
    prefix = f"{request.node.name.replace('[', '-').replace(']', '')}-{secrets.token_hex(3)}"
    root = f"s3://{seaweed.bucket}/{prefix}"
    monkeypatch.setenv("ZEITFLOW_STORAGE_ROOT", root)
    monkeypatch.setenv("ZEITFLOW_METADATA_URL", metadata_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "ZEITFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return root


@pytest.fixture
def local_env(metadata_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Artifacts on local disk, metadata in PostgreSQL; returns the storage folder."""
    folder = tmp_path / "storage"
    folder.mkdir()
    monkeypatch.setenv("ZEITFLOW_STORAGE_ROOT", f"file://{folder}")
    monkeypatch.setenv("ZEITFLOW_METADATA_URL", metadata_url)
    return folder


def run_pipeline() -> tuple[dict[str, Any], BaseException | None]:
    """The pipeline flow on CONFIG in this process, as ``zeitflow run`` runs it: (the JSON summary, None) when
    it completed, ({}, the flow's exception) when it failed."""
    from flows.pipeline import pipeline
    from zeitflow.config import load_config

    state = pipeline(load_config(CONFIG), return_state=True)
    try:
        summary = state.result(raise_on_failure=True)
    except BaseException as exc:  # the flow's own exception, re-raised by Prefect
        return {}, exc
    return summary.model_dump(mode="json"), None


# --------------------------------------------------------------------------------------------
# Consistency checks


def _check_object(name: str, data: bytes) -> None:
    """A stored object is complete: readable in its own format."""
    if name.endswith(".parquet"):
        pq.read_table(io.BytesIO(data))
    elif name.endswith(".json"):
        json.loads(data.decode("utf-8"))
    else:
        pytest.fail(f"unexpected object {name}")


def _rows(metadata_url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, int]]:
    """(stage_outputs rows, runs rows, channel_stats count per stage_output id)."""
    engine = create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            outputs = [dict(r) for r in conn.execute(text(
                "SELECT id, stage, output_name, uri, sha256, size_bytes, columns FROM stage_outputs")).mappings()]
            runs = [dict(r) for r in conn.execute(text(
                "SELECT id, status, error_code, error_message, finished_at FROM runs")).mappings()]
            stats = dict(conn.execute(text(
                "SELECT stage_output_id, count(*) FROM channel_stats GROUP BY stage_output_id")).all())
    finally:
        engine.dispose()
    return outputs, runs, stats


def check_consistent(objects: dict[str, bytes], metadata_url: str, root: str, *, run_status: str,
                     committed: set[str]) -> list[dict[str, Any]]:
    """The store after a run (see the module docstring). ``objects``: every object under ``root``
    (uri -> bytes); ``committed``: the stages that must have their output (object, report and row);
    no other stage may have anything. Returns the ``stage_outputs`` rows."""
    for uri, data in objects.items():
        name = uri.rsplit("/", 1)[-1]
        assert not name.startswith(".") and not name.endswith(".tmp") and "zeitflow-upload" not in uri, uri
        _check_object(name, data)

    outputs, runs, stats = _rows(metadata_url)
    assert [r["status"] for r in runs] == [run_status], runs
    assert runs[0]["finished_at"] is not None
    keys = [(r["stage"], r["output_name"]) for r in outputs]
    assert len(keys) == len(set(keys)), f"duplicate stage_outputs rows: {keys}"
    assert {r["stage"] for r in outputs} == committed
    for row in outputs:
        assert row["uri"].startswith(root + "/"), row["uri"]
        data = objects.get(row["uri"])
        assert data is not None, f"dangling stage_outputs row: {row['uri']} has no object"
        assert hashlib.sha256(data).hexdigest() == row["sha256"] and len(data) == row["size_bytes"], row["uri"]
        assert stats.get(row["id"], 0) == len(row["columns"]), "channel statistics not exactly one per column"

    registered = {r["uri"] for r in outputs}
    parquet = {u for u in objects if u.endswith(".parquet")}
    reports = {u for u in objects if u.endswith(".report.json")}
    assert parquet == registered, f"objects without a row: {sorted(parquet - registered)}"
    assert reports == {u.removesuffix(".parquet") + ".report.json" for u in registered}
    assert set(objects) == parquet | reports
    for stage in set(STAGES) - committed:
        assert not [u for u in objects if f"/{PROJECT}/{stage}/" in u], f"{stage} left objects behind"
    return outputs


def s3_objects(seaweed: SeaweedFS, root: str) -> dict[str, bytes]:
    """Every object under ``root`` (an ``s3://bucket/prefix``), and no open multipart upload there."""
    client = seaweed.client()
    prefix = root.split("/", 3)[3] + "/"
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=seaweed.bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=prefix).get("Uploads", [])
    assert uploads == [], f"open multipart uploads: {uploads}"
    return {f"s3://{seaweed.bucket}/{key}": client.get_object(Bucket=seaweed.bucket, Key=key)["Body"].read()
            for key in keys}


def local_objects(folder: Path) -> dict[str, bytes]:
    return {f"file://{p}": p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
            and p.name != "zeitflow.db"}


# --------------------------------------------------------------------------------------------
# S3 faults: the server is killed while a stage object is being uploaded


class UploadFault:
    """Wraps ``S3FileSystem._put_file`` (the atomic writer's one upload step). When the upload of a matching
    object starts, the S3 server is killed (SIGKILL) and the real upload runs against the dead server; once
    it has failed, the server is restarted (same ports, same data). ``times`` uploads are hit that way.
    ``keep_down=True`` leaves the server down after the first hit instead."""

    def __init__(self, seaweed: SeaweedFS, match: Callable[[str], bool], times: int, keep_down: bool = False):
        self.seaweed, self.match, self.times, self.keep_down = seaweed, match, times, keep_down
        self.attempts: list[tuple[str, str]] = []  # (key, "failed: ..." or "stored") of every matching upload
        self.real = s3fs.S3FileSystem._put_file

    def install(self, monkeypatch: pytest.MonkeyPatch) -> UploadFault:
        fault = self

        async def put_file(fs: s3fs.S3FileSystem, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> Any:
            if not fault.match(rpath):
                return await fault.real(fs, lpath, rpath, *args, **kwargs)
            hit = len(fault.attempts) < fault.times
            if hit:
                fault.seaweed.kill()
            try:
                result = await fault.real(fs, lpath, rpath, *args, **kwargs)
            except Exception as exc:
                fault.attempts.append((rpath, f"failed: {type(exc).__name__}"))
                raise
            else:
                fault.attempts.append((rpath, "stored"))
                return result
            finally:
                if hit and not fault.keep_down:
                    await asyncio.to_thread(fault.seaweed.start)

        monkeypatch.setattr(s3fs.S3FileSystem, "_put_file", put_file)
        s3fs.S3FileSystem.clear_instance_cache()  # instances bind put_file when created
        return self


def one_try_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore tries each request once (instead of ``S3_CLIENT_DEFAULTS``' 3): a request to the dead server
    fails at once, which keeps the tests that fail many requests quick."""
    monkeypatch.setitem(artifacts.S3_CLIENT_DEFAULTS, "retries", {"mode": "standard", "total_max_attempts": 1})


def _is(stage: str, suffix: str) -> Callable[[str], bool]:
    return lambda rpath: f"/{PROJECT}/{stage}/" in rpath and rpath.endswith(suffix)


@pytest.mark.parametrize("target", ["parquet", "report"])
def test_s3_killed_during_a_stage_write_then_restarted_the_stage_retries_and_completes(
        prefect_harness: None, seaweed: SeaweedFS, s3_env: str, metadata_url: str, target: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server dies as the resample output's Parquet (or, once the Parquet is stored, its report) is
    uploaded. The upload fails with a real connection error (transient ``WRITE_FAILED``), the server comes
    back, the resample task's retry writes both objects again and the run completes: one object per key,
    one row per output, every row matching its object."""
    suffix = ".parquet" if target == "parquet" else ".report.json"
    fault = UploadFault(seaweed, _is("resample", suffix), times=1).install(monkeypatch)
    starts = seaweed.starts

    summary, error = run_pipeline()

    assert error is None, repr(error)
    assert summary["status"] == "completed"
    assert [s["stage"] for s in summary["stages"]] == list(STAGES)
    assert seaweed.starts == starts + 1, "the server was not killed and restarted"
    assert [outcome.split(":")[0] for _, outcome in fault.attempts] == ["failed", "stored"], fault.attempts
    objects = s3_objects(seaweed, s3_env)
    rows = check_consistent(objects, metadata_url, s3_env, run_status="completed", committed=set(STAGES))
    by_stage = {r["stage"]: r for r in rows}
    for stage in summary["stages"]:
        assert (stage["uri"], stage["sha256"]) == (by_stage[stage["stage"]]["uri"], by_stage[stage["stage"]]["sha256"])
        read_frame(stage["uri"], expected_sha256=stage["sha256"])  # readable, checksum verified


def test_s3_dying_at_every_write_of_a_stage_fails_cleanly_with_write_failed(
        prefect_harness: None, seaweed: SeaweedFS, s3_env: str, metadata_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server dies at every upload of the resample output (it is back in between, so the retried task
    gets as far as the upload again): the task runs three times, then the run fails with the transient
    ``WRITE_FAILED`` naming the object's key. Nothing of resample (or of clean, which never ran) is stored or
    registered; the load stage's object and row are intact; the run row is ``failed``."""
    one_try_per_request(monkeypatch)
    fault = UploadFault(seaweed, _is("resample", ".parquet"), times=10).install(monkeypatch)

    _, error = run_pipeline()

    assert isinstance(error, StorageError), repr(error)
    assert error.code == "WRITE_FAILED" and error.transient and exit_code_for(error) == 1
    keys = {key for key, _ in fault.attempts}
    assert len(fault.attempts) == 3 and len(keys) == 1, fault.attempts  # first try and two retries
    assert all(outcome.startswith("failed") for _, outcome in fault.attempts)
    uri = f"s3://{keys.pop()}"
    assert error.details["uri"] == uri and uri in error.message
    objects = s3_objects(seaweed, s3_env)
    check_consistent(objects, metadata_url, s3_env, run_status="failed", committed={"load"})
    _, runs, _ = _rows(metadata_url)
    assert runs[0]["error_code"] == "WRITE_FAILED"


def test_s3_down_for_the_rest_of_the_run_fails_cleanly(
        prefect_harness: None, seaweed: SeaweedFS, s3_env: str, metadata_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 server dies as the resample output is uploaded and stays down until the run has ended: every
    retry fails too (reading the input or writing the output, both transient), the run fails with a transient
    ``StorageError`` within bounded time and the run row is ``failed``. After a restart the store holds the
    load stage only."""
    fault = UploadFault(seaweed, _is("resample", ".parquet"), times=1, keep_down=True).install(monkeypatch)
    started = time.monotonic()
    try:
        _, error = run_pipeline()
    finally:
        seaweed.start()
    assert time.monotonic() - started < 120
    assert isinstance(error, StorageError), repr(error)
    assert error.code in ("WRITE_FAILED", "READ_FAILED") and error.transient, error
    assert fault.attempts and fault.attempts[0][1].startswith("failed")
    assert error.details["uri"].startswith(s3_env + "/")
    check_consistent(s3_objects(seaweed, s3_env), metadata_url, s3_env, run_status="failed", committed={"load"})


def test_s3_killed_during_a_multipart_upload_leaves_no_object(
        seaweed: SeaweedFS, s3_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large object goes up in parts. The server is killed after the first part: the write fails with the
    transient ``WRITE_FAILED``, s3fs cannot abort the upload (the server is down), and after the restart there
    is no object under the key, neither complete nor partial. An earlier version of the object is kept. The
    unfinished multipart upload stays on the server until a lifecycle rule (or ``abort``) removes it: it is
    not an object and is never read."""
    store = ArtifactStore(s3_env)
    uri = store.uri("big", "blob.bin")
    previous = store.put_bytes(uri, b"previous version")
    real_put, real_call = s3fs.S3FileSystem._put_file, s3fs.S3FileSystem._call_s3
    parts: list[int] = []

    async def put_file(fs: s3fs.S3FileSystem, lpath: str, rpath: str, *args: Any, **kwargs: Any) -> Any:
        # S3's smallest part, one at a time: a 12 MiB object goes up in 3 parts, in order
        kwargs.update(chunksize=5 * 2**20, max_concurrency=1)
        return await real_put(fs, lpath, rpath, *args, **kwargs)

    async def call_s3(fs: s3fs.S3FileSystem, method: str, *args: Any, **kwargs: Any) -> Any:
        result = await real_call(fs, method, *args, **kwargs)
        if method == "upload_part":
            parts.append(kwargs["PartNumber"])
            if len(parts) == 1:
                seaweed.kill()
        return result

    one_try_per_request(monkeypatch)
    payload = os.urandom(12 * 2**20)
    with monkeypatch.context() as patch:
        patch.setattr(s3fs.S3FileSystem, "_put_file", put_file)
        patch.setattr(s3fs.S3FileSystem, "_call_s3", call_s3)
        s3fs.S3FileSystem.clear_instance_cache()  # instances bind put_file when created
        try:
            with pytest.raises(StorageError) as info:
                store.put_bytes(uri, payload)
        finally:
            seaweed.start()
    s3fs.S3FileSystem.clear_instance_cache()
    assert info.value.code == "WRITE_FAILED" and info.value.transient and uri in info.value.message
    assert parts == [1], parts  # the server died after the first part
    client = seaweed.client()
    key = uri.split("/", 3)[3]
    assert client.get_object(Bucket=seaweed.bucket, Key=key)["Body"].read() == b"previous version"
    assert store.get_bytes(uri, previous.sha256) == b"previous version"
    # the unfinished upload (if the server kept it) is not an object; clean it up as a lifecycle rule would
    for upload in client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=key).get("Uploads", []):
        client.abort_multipart_upload(Bucket=seaweed.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    assert client.list_multipart_uploads(Bucket=seaweed.bucket, Prefix=key).get("Uploads", []) == []


# --------------------------------------------------------------------------------------------
# PostgreSQL faults: the server is restarted while a stage output is being registered


class RegistrationFault:
    """Hooks the ``stage_outputs`` upsert of one stage. Right after the upsert ran (inside its transaction,
    before the channel statistics and the commit), ``action`` stops or restarts the PostgreSQL server,
    which terminates the session. Counts the upserts of that stage."""

    def __init__(self, stage: str, action: Callable[[], None]):
        self.stage, self.action = stage, action
        self.upserts = 0
        self.calls = 0
        self.fired = False
        self.real = MetadataStore.record_stage_output

    def install(self, monkeypatch: pytest.MonkeyPatch) -> RegistrationFault:
        fault = self

        def record_stage_output(store: MetadataStore, *args: Any, **kwargs: Any) -> str:
            if kwargs.get("stage") != fault.stage:
                return fault.real(store, *args, **kwargs)
            fault.calls += 1

            def after(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
                if statement.lstrip().upper().startswith("INSERT INTO STAGE_OUTPUTS"):
                    fault.upserts += 1
                    if not fault.fired:
                        fault.fired = True
                        fault.action()

            event.listen(store.engine, "after_cursor_execute", after)
            try:
                return fault.real(store, *args, **kwargs)
            finally:
                event.remove(store.engine, "after_cursor_execute", after)

        monkeypatch.setattr(MetadataStore, "record_stage_output", record_stage_output)
        return self


def _postmaster_started(url: str) -> Any:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT pg_postmaster_start_time()")).scalar_one()
    finally:
        engine.dispose()


def test_postgres_restarted_while_a_stage_output_is_registered_the_store_retries_and_the_run_completes(
        prefect_harness: None, cluster: PostgresCluster, local_env: Path, metadata_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL restarts (``pg_ctl restart -m fast``) in the middle of the transaction that registers the
    resample output: after the upsert, before the channel statistics and the commit. The session is
    terminated, the transaction is lost on the server, and the metadata store runs the whole transaction
    again on a new connection (no task retry needed). The run completes with one row per output, exactly one
    set of channel statistics, and the run row ``completed``."""
    before = _postmaster_started(metadata_url)
    fault = RegistrationFault("resample", cluster.restart).install(monkeypatch)

    summary, error = run_pipeline()

    assert error is None, repr(error)
    assert summary["status"] == "completed"
    assert fault.fired and _postmaster_started(metadata_url) > before, "the server was not restarted"
    assert fault.calls == 1, "the store itself should have retried, without a task retry"
    assert fault.upserts == 2, "the interrupted transaction was not run again"
    root = f"file://{local_env}"
    check_consistent(local_objects(local_env), metadata_url, root, run_status="completed", committed=set(STAGES))


def test_postgres_down_longer_than_the_store_retries_the_task_retry_completes(
        prefect_harness: None, cluster: PostgresCluster, local_env: Path, metadata_url: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL stops in the middle of the resample registration and comes back 3 s later, longer than the
    store's own retry budget (set to 1 s here). The store gives up with the transient ``WRITE_FAILED``, the
    register task runs its body again in the same attempt (1 s, then 4 s later; a task-level retry would roll
    the stage back, see ``tasks/retrying.py``) and succeeds once the server is back, and the run completes
    with a consistent store."""
    monkeypatch.setenv("ZEITFLOW_METADATA_RETRY_SECONDS", "1")
    restarted = threading.Event()

    def stop_then_start_later() -> None:
        cluster.stop()

        def start() -> None:
            time.sleep(3)
            cluster.start()
            restarted.set()

        threading.Thread(target=start, daemon=True).start()

    fault = RegistrationFault("resample", stop_then_start_later).install(monkeypatch)
    try:
        summary, error = run_pipeline()
    finally:
        restarted.wait(timeout=60)
        if not cluster.is_running():
            cluster.start()

    assert error is None, repr(error)
    assert summary["status"] == "completed"
    assert fault.fired and fault.calls >= 2, "the register task was not retried"
    root = f"file://{local_env}"
    check_consistent(local_objects(local_env), metadata_url, root, run_status="completed", committed=set(STAGES))


def test_metadata_store_rides_over_restarts_between_and_during_operations(
        cluster: PostgresCluster, metadata_url: str) -> None:
    """One store (one engine, one pool) across restarts: a pooled connection killed by a restart is replaced
    before use (``pool_pre_ping``); an operation that starts while the server is down waits for it within the
    retry budget; when the server stays down, the operation fails with the transient ``READ_FAILED`` naming
    the operation, never the password."""
    store = MetadataStore(metadata_url, retry_seconds=15)
    try:
        store.migrate()
        run_id = store.start_run("pipeline")
        cluster.restart()
        assert store.get_run(run_id).status == "running"  # stale pooled connection replaced

        cluster.stop()
        starter = threading.Timer(1.5, cluster.start)
        starter.start()
        try:
            store.finish_run(run_id, "completed")  # waits for the server within the retry budget
        finally:
            starter.join()
        assert store.get_run(run_id).status == "completed"

        quick = MetadataStore(metadata_url, retry_seconds=1)
        cluster.stop()
        try:
            started = time.monotonic()
            with pytest.raises(StorageError) as info:
                quick.get_run(run_id)
            assert time.monotonic() - started < 5
        finally:
            cluster.start()
            quick.dispose()
        error = info.value
        assert error.code == "READ_FAILED" and error.transient
        assert "reading a run failed after" in error.message and error.details["attempts"] >= 2
        assert cluster.password not in f"{error.message} {error.details} {error!r}"
        assert store.get_run(run_id).status == "completed"
    finally:
        store.dispose()
