"""The metadata store's retry of transient connection faults, without a server: which errors count as
transient, that a retried operation runs its whole transaction again (one row, one set of statistics), that
the retry is bounded and ends in a transient ``StorageError`` naming the operation and never the password,
and the S3 client bounds of the artifact store. The same behaviour against a real PostgreSQL restart is in
``tests/integration/test_faults.py``."""

from __future__ import annotations

import inspect
import socket
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError, ProgrammingError

from zeitflow.errors import StorageError
from zeitflow.io import metadata as metadata_module
from zeitflow.io.artifacts import S3_CLIENT_DEFAULTS, DataRef, with_s3_client_defaults
from zeitflow.io.metadata import RETRY_SECONDS, MetadataStore, is_transient_error

STATS = [{"channel": "Temperatur [°C]", "rows": 8, "min": -3.25, "max": 8.0}, {"channel": "load", "rows": 8}]


def make_ref() -> DataRef:
    return DataRef(uri="file:///data/p/resample/h/i/part.parquet", sha256="c" * 64, size_bytes=1234, rows=8,
                   columns=["Temperatur [°C]", "load"], stage="resample", parameters_hash="h" * 64)


def _op(orig: BaseException, cls: type[DBAPIError] = OperationalError, invalidated: bool = False) -> DBAPIError:
    return cls("SELECT 1", {}, orig, connection_invalidated=invalidated)


REFUSED = ('connection failed: connection to server at "127.0.0.1", port 5432 failed: Connection refused\n'
           "\tIs the server running on that host and accepting TCP/IP connections?")


@pytest.mark.parametrize(("error", "transient"), [
    (_op(psycopg.errors.AdminShutdown("terminating connection due to administrator command")), True),
    (_op(psycopg.errors.CannotConnectNow("the database system is starting up")), True),
    (_op(psycopg.errors.SerializationFailure("could not serialize access")), True),
    (_op(psycopg.errors.DeadlockDetected("deadlock detected")), True),
    (_op(psycopg.OperationalError(REFUSED)), True),
    (_op(psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly")), True),
    (_op(psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                                  "FATAL:  the database system is shutting down")), True),
    (_op(psycopg.OperationalError("anything"), invalidated=True), True),
    (_op(psycopg.OperationalError('connection failed: connection to server at "127.0.0.1", port 5432 failed: '
                                  'FATAL:  password authentication failed for user "zeitflow"')), False),
    (_op(psycopg.OperationalError('connection failed: FATAL:  database "nope" does not exist')), False),
    (_op(psycopg.errors.UniqueViolation("duplicate key value"), IntegrityError), False),
    (_op(psycopg.errors.UndefinedTable('relation "runs" does not exist'), ProgrammingError), False),
    (_op(sqlite3.OperationalError("database is locked")), False),
    (_op(sqlite3.IntegrityError("UNIQUE constraint failed"), IntegrityError), False),
], ids=lambda value: value if isinstance(value, bool) else type(value.orig).__name__ + ":" + str(value.orig)[:40])
def test_transient_errors(error: DBAPIError, transient: bool) -> None:
    assert is_transient_error(error) is transient


@pytest.fixture
def store(tmp_path: Path) -> MetadataStore:
    metadata = MetadataStore(f"sqlite:///{tmp_path}/zeitflow.db", retry_seconds=5)
    metadata.migrate()  # the process has reached this database, so its faults are waited for
    yield metadata
    metadata.dispose()


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff delays instead of sleeping."""
    delays: list[float] = []
    monkeypatch.setattr(metadata_module, "_sleep", delays.append)
    return delays


def _fail_after_upsert(store: MetadataStore, times: int) -> list[int]:
    """Kill the connection (as a server restart does) right after the stage_outputs upsert, ``times`` times:
    the transaction is then half done and must be run again as a whole."""
    upserts: list[int] = []

    @event.listens_for(store.engine, "after_cursor_execute")
    def after(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.lstrip().upper().startswith("INSERT INTO STAGE_OUTPUTS"):
            upserts.append(1)
            if len(upserts) <= times:
                raise _op(psycopg.errors.AdminShutdown("terminating connection due to administrator command"))

    return upserts


def test_an_interrupted_transaction_is_run_again_as_a_whole(store: MetadataStore, no_sleep: list[float]) -> None:
    run_id = store.start_run("pipeline")
    upserts = _fail_after_upsert(store, times=2)
    output_id = store.record_stage_output(run_id, "resample", "frame", make_ref(), None, None, "i" * 64, "v1",
                                          {"rows_in": 8}, STATS)
    assert len(upserts) == 3 and no_sleep == [0.25, 0.5]
    assert store.count_stage_outputs() == 1
    assert [s["channel"] for s in store.get_channel_stats(output_id)] == ["Temperatur [°C]", "load"]


def test_a_persisting_fault_ends_in_a_transient_error_naming_the_operation(
        store: MetadataStore, no_sleep: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    run_id = store.start_run("pipeline")
    _fail_after_upsert(store, times=1000)
    clock = iter(range(0, 1000))  # each look at the clock is one second later
    monkeypatch.setattr(metadata_module, "_clock", lambda: float(next(clock)))
    with pytest.raises(StorageError) as info:
        store.record_stage_output(run_id, "resample", "frame", make_ref(), None, None, "i" * 64, "v1", {}, STATS)
    error = info.value
    assert type(error) is StorageError and error.code == "WRITE_FAILED" and error.transient
    assert "recording a stage output failed after" in error.message
    assert "terminating connection due to administrator command" in error.message
    assert error.details["attempts"] == 4 and no_sleep == [0.25, 0.5, 1.0]  # 1 s per attempt, 5 s budget
    assert store.count_stage_outputs() == 0  # nothing half-written


def test_other_errors_are_not_retried(store: MetadataStore, no_sleep: list[float]) -> None:
    with pytest.raises(StorageError) as info:
        store.finish_run("no-such-run", "completed")
    assert info.value.code == "OBJECT_NOT_FOUND" and no_sleep == []
    calls: list[int] = []

    @event.listens_for(store.engine, "before_cursor_execute")
    def before(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        calls.append(1)
        raise _op(sqlite3.IntegrityError("UNIQUE constraint failed"), IntegrityError)

    with pytest.raises(StorageError) as info:
        store.upsert_project("p")
    assert info.value.code == "WRITE_FAILED" and calls == [1] and no_sleep == []


def test_retry_seconds_zero_turns_the_retry_off(tmp_path: Path, no_sleep: list[float]) -> None:
    store = MetadataStore(f"sqlite:///{tmp_path}/zeitflow.db", retry_seconds=0)
    try:
        store.migrate()
        run_id = store.start_run("pipeline")
        upserts = _fail_after_upsert(store, times=1)
        with pytest.raises(StorageError) as info:
            store.record_stage_output(run_id, "resample", "frame", make_ref(), None, None, "i" * 64, "v1", {}, STATS)
        assert info.value.transient and "after" not in info.value.message
        assert len(upserts) == 1 and no_sleep == []
    finally:
        store.dispose()


def test_retry_seconds_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/zeitflow.db"
    assert MetadataStore(url).retry_seconds == RETRY_SECONDS
    monkeypatch.setenv("ZEITFLOW_METADATA_RETRY_SECONDS", "2.5")
    assert MetadataStore(url).retry_seconds == 2.5
    assert MetadataStore(url, retry_seconds=1).retry_seconds == 1
    monkeypatch.setenv("ZEITFLOW_METADATA_RETRY_SECONDS", "soon")
    assert MetadataStore(url).retry_seconds == RETRY_SECONDS


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_database_never_reached_fails_at_once_and_a_reached_one_is_waited_for(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A refused connection to a database this process never reached is a wrong URL or a server that is not
    up: no waiting (the task retries decide). Once reached, the same refusal is a restart and is waited for,
    within the budget; the final error never shows the password."""
    secret = "s3cr3t-Pa55word"
    url = f"postgresql://zeitflow:{secret}@127.0.0.1:{_closed_port()}/zeitflow"
    store = MetadataStore(url, retry_seconds=0.6)
    try:
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            store.get_run("x")
        assert time.monotonic() - started < 0.5 and "after" not in info.value.message
        monkeypatch.setattr(metadata_module, "_REACHED", {store.masked_url})
        with pytest.raises(StorageError) as info:
            store.get_run("x")
        error = info.value
        assert error.code == "READ_FAILED" and error.transient
        assert "reading a run failed after 2 attempts" in error.message and "Connection refused" in error.message
        for text in (error.message, str(error.details), repr(error), str(error.__cause__), repr(error.__cause__)):
            assert secret not in text
        assert "***" in error.message
    finally:
        store.dispose()


def test_every_operation_is_retried() -> None:
    """Every public method that opens a transaction carries the retry (a new one must not forget it)."""
    missing = []
    for name, method in inspect.getmembers(MetadataStore, inspect.isfunction):
        if name.startswith("_"):
            continue
        if "self._transaction(" in inspect.getsource(inspect.unwrap(method)) and not getattr(
                method, "__zeitflow_retried__", False):
            missing.append(name)
    assert missing == []
    assert getattr(MetadataStore.record_stage_output, "__zeitflow_retried__", False)


def test_s3_client_defaults_bound_every_request() -> None:
    options = {"config_kwargs": {"s3": {"addressing_style": "path"}, "connect_timeout": 2}, "endpoint_url": "x"}
    bounded = with_s3_client_defaults("s3://bucket/key", options)
    config = bounded["config_kwargs"]
    assert config["connect_timeout"] == 2  # set by the caller: kept
    assert config["read_timeout"] == S3_CLIENT_DEFAULTS["read_timeout"] == 20
    assert config["retries"] == {"mode": "standard", "total_max_attempts": 3}
    assert config["retries"] is not S3_CLIENT_DEFAULTS["retries"]  # botocore rewrites it in place
    assert config["s3"] == {"addressing_style": "path"} and bounded["endpoint_url"] == "x"
    assert options["config_kwargs"] == {"s3": {"addressing_style": "path"}, "connect_timeout": 2}  # not modified
    assert with_s3_client_defaults("file:///tmp/x", {}) == {}
    assert with_s3_client_defaults("s3://b/k", {})["config_kwargs"]["connect_timeout"] == 5
