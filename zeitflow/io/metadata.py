"""Relational metadata store (stages.md §13, architecture §3): SQLAlchemy 2 models, Alembic
migrations and idempotent upserts keyed by natural keys.

Works on SQLite (default, WAL journal, busy timeout, ``BEGIN IMMEDIATE`` transactions) and on
PostgreSQL (``postgresql+psycopg://``; ``postgresql://`` and ``postgres://`` are rewritten to psycopg),
which is also how a Supabase database is used.

Design choice, ``stage_outputs``: there is exactly one row per stage output, identified by its natural
key (``stage``, ``parameters_hash``, ``inputs_hash``, ``code_version``, ``output_name``), however many
runs produce it. Deterministic keys and bytes make a re-run write the same object, so a second row would
only duplicate the first; ``run_id`` records the last run that produced or confirmed the output and
``updated_at`` when that happened, while ``created_at`` keeps the first registration.

Database errors are raised as ``StorageError`` ``WRITE_FAILED`` / ``READ_FAILED`` with
``details={"store": "metadata", ...}``; a password in the URL never appears in messages or logs.

Transient connection faults (a server restart or failover, a dropped connection, a server that is
starting up or shutting down, a serialization failure or deadlock) are retried inside the store: every
public operation is one transaction, and the whole transaction is run again after a short backoff
(0.25 s, doubling, at most 2 s apart) for up to ``RETRY_SECONDS`` (10 s) in all, or
``ZEITFLOW_METADATA_RETRY_SECONDS`` (0 turns the retry off). Only a database that this process has
already reached is waited for: a wrong URL or a server that was never up fails at once, as before.
Every write is an upsert on a natural key
(or an update, or a delete), so running it again never adds a second row. When the fault persists, the
operation raises the transient ``StorageError`` (``WRITE_FAILED`` / ``READ_FAILED``) naming the operation,
and the Prefect task retries take over. PostgreSQL connections are checked before use (``pool_pre_ping``),
so a connection that died while pooled is replaced rather than failing the next operation.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_jsonable_python
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Connection,
    DateTime,
    Dialect,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, DisconnectionError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.naming import conv

from zeitflow.errors import ParameterError, StorageError
from zeitflow.io.artifacts import DataRef
from zeitflow.settings import mask_url as _mask_url_text

__all__ = [
    "BACKFILL_STATUSES",
    "REPROCESS_CHOICES",
    "RUN_STATUSES",
    "Backfill",
    "BackfillRecord",
    "BackfillRun",
    "BackfillRunRecord",
    "Base",
    "ChannelStat",
    "Dataset",
    "MetadataStore",
    "MetricTable",
    "Model",
    "Project",
    "Run",
    "RunRecord",
    "StageOutput",
    "StageOutputRecord",
    "is_transient_error",
    "mask_url",
    "normalize_url",
]

RUN_STATUSES = ("running", "paused", "completed", "failed", "cancelled")
BACKFILL_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
REPROCESS_CHOICES = ("none", "failed", "all")
CHANNEL_STAT_FIELDS = (
    "rows", "numeric", "numeric_share_percent", "min", "max", "step_median_minutes",
    "step_min_minutes", "step_max_minutes", "offset_minutes",
)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Seconds an operation keeps retrying a transient connection fault (see the module docstring).
RETRY_SECONDS = 10.0
RETRY_SECONDS_ENV = "ZEITFLOW_METADATA_RETRY_SECONDS"
_RETRY_FIRST_DELAY = 0.25
_RETRY_MAX_DELAY = 2.0
#: SQLSTATEs of faults that a new attempt of the whole transaction can get past: connection exceptions
#: (class 08), admin/crash shutdown and "cannot connect now" (57P01-57P03), too many connections (53300),
#: serialization failure (40001) and deadlock (40P01).
_TRANSIENT_SQLSTATES = frozenset({
    "08000", "08001", "08003", "08004", "08006", "08007", "57P01", "57P02", "57P03", "53300", "40001", "40P01",
})
#: Driver messages of the same faults where no SQLSTATE is set (psycopg reports connection failures
#: without one). Authentication failures, unknown databases or hosts and bad URLs are not among them.
_TRANSIENT_MESSAGES = (
    "connection refused",
    "server closed the connection",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "connection reset by peer",
    "connection timeout expired",
    "consuming input failed",
    "the connection is closed",
    "the connection is lost",
    "ssl connection has been closed unexpectedly",
    "no connection to the server",
    "broken pipe",
    "sorry, too many clients already",
)

_log = logging.getLogger(__name__)
_T = TypeVar("_T")
#: Databases (masked URLs) this process has connected to: only their faults are waited for.
_REACHED: set[str] = set()
_clock = time.monotonic  # indirections for tests
_sleep = time.sleep


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def new_id() -> str:
    """A new uuid4 as a 36-character string."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive UTC text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        if hasattr(value, "to_pydatetime"):  # pandas.Timestamp
            value = value.to_pydatetime()
        if not isinstance(value, dt.datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        value = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


#: JSON on SQLite, JSONB on PostgreSQL.
PortableJSON = JSON().with_variant(postgresql.JSONB(), "postgresql")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints the same everywhere."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: PortableJSON, list[Any]: PortableJSON}


def _uuid_pk() -> Mapped[str]:
    return mapped_column(String(36), primary_key=True, default=new_id)


class Project(Base):
    """A named, configured work context (``PipelineConfig``)."""

    __tablename__ = "projects"

    id: Mapped[str] = _uuid_pk()
    name: Mapped[str] = mapped_column(String(200), unique=True)
    config: Mapped[dict[str, Any]] = mapped_column(PortableJSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class Run(Base):
    """One flow run."""

    __tablename__ = "runs"
    __table_args__ = (
        CheckConstraint(f"status IN {RUN_STATUSES}", name="status"),
        Index(None, "flow_name", "partition"),
    )

    id: Mapped[str] = _uuid_pk()
    project_id: Mapped[str | None] = mapped_column(ForeignKey("projects.id", ondelete="SET NULL"), index=True)
    partition: Mapped[str | None] = mapped_column(String(64))
    flow_name: Mapped[str] = mapped_column(String(200))
    flow_run_id: Mapped[str | None] = mapped_column(String(64), index=True)
    deployment: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    finished_at: Mapped[dt.datetime | None]
    parameters: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    parameters_hash: Mapped[str | None] = mapped_column(String(64))
    code_version: Mapped[str | None] = mapped_column(String(100))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    owner: Mapped[str | None] = mapped_column(String(300))


class StageOutput(Base):
    """One persisted stage output (one row per natural key; see the module docstring)."""

    __tablename__ = "stage_outputs"
    __table_args__ = (
        UniqueConstraint("stage", "parameters_hash", "inputs_hash", "code_version", "output_name",
                         name=conv("uq_stage_outputs_natural_key")),
        Index("ix_stage_outputs_cache", "stage", "parameters_hash", "inputs_hash", "code_version"),
    )

    id: Mapped[str] = _uuid_pk()
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    stage: Mapped[str] = mapped_column(String(64))
    output_name: Mapped[str] = mapped_column(String(200))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(BigInteger)
    columns: Mapped[list[Any]] = mapped_column(PortableJSON)
    first_utc: Mapped[dt.datetime | None]
    last_utc: Mapped[dt.datetime | None]
    parameters_hash: Mapped[str] = mapped_column(String(64))
    inputs_hash: Mapped[str] = mapped_column(String(64))
    code_version: Mapped[str] = mapped_column(String(100))
    report: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class ChannelStat(Base):
    """Row statistics of one channel of a stage output."""

    __tablename__ = "channel_stats"

    stage_output_id: Mapped[str] = mapped_column(
        ForeignKey("stage_outputs.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(500), primary_key=True)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    numeric: Mapped[int | None] = mapped_column(BigInteger)
    numeric_share_percent: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    step_median_minutes: Mapped[float | None] = mapped_column(Float)
    step_min_minutes: Mapped[float | None] = mapped_column(Float)
    step_max_minutes: Mapped[float | None] = mapped_column(Float)
    offset_minutes: Mapped[float | None] = mapped_column(Float)


class Dataset(Base):
    """A windowed dataset built in a run."""

    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[str] = _uuid_pk()
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    input_channels: Mapped[list[Any]] = mapped_column(PortableJSON)
    output_channels: Mapped[list[Any]] = mapped_column(PortableJSON)
    n_in: Mapped[int] = mapped_column(Integer)
    n_out: Mapped[int] = mapped_column(Integer)
    stride_minutes: Mapped[float] = mapped_column(Float)
    offset_minutes: Mapped[float] = mapped_column(Float)
    window_options: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    time_feature_options: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)
    n_samples: Mapped[int] = mapped_column(Integer)
    n_train: Mapped[int] = mapped_column(Integer)
    n_val: Mapped[int] = mapped_column(Integer)
    n_test: Mapped[int] = mapped_column(Integer)
    reference_start: Mapped[dt.datetime | None]
    reference_end: Mapped[dt.datetime | None]
    source_output_ids: Mapped[list[Any]] = mapped_column(PortableJSON)
    uri: Mapped[str | None] = mapped_column(Text)
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class Model(Base):
    """A trained model (one per model spec and run)."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[str] = _uuid_pk()
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)
    dataset_id: Mapped[str | None] = mapped_column(ForeignKey("datasets.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]] = mapped_column(PortableJSON)
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    scalers_uri: Mapped[str | None] = mapped_column(Text)
    epochs_run: Mapped[int | None] = mapped_column(Integer)
    best_epoch: Mapped[int | None] = mapped_column(Integer)
    trained_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


class MetricTable(Base):
    """One evaluation table of a model (``overall``, ``per_step``, ``reasons``)."""

    __tablename__ = "metric_tables"
    __table_args__ = (
        UniqueConstraint("model_id", "table"),
        CheckConstraint("\"table\" IN ('overall', 'per_step', 'reasons')", name="table"),
    )

    id: Mapped[str] = _uuid_pk()
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    table: Mapped[str] = mapped_column(String(16))
    uri: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    json_uri: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(PortableJSON)


class Backfill(Base):
    """A backfill request of a deployment over a partition range (no stage data)."""

    __tablename__ = "backfills"
    __table_args__ = (
        CheckConstraint(f"reprocess IN {REPROCESS_CHOICES}", name="reprocess"),
        CheckConstraint(f"status IN {BACKFILL_STATUSES}", name="status"),
    )

    id: Mapped[str] = _uuid_pk()
    deployment: Mapped[str] = mapped_column(String(200), index=True)
    start: Mapped[str] = mapped_column(String(64))
    end: Mapped[str] = mapped_column(String(64))
    reprocess: Mapped[str] = mapped_column(String(16), default="none")
    max_active: Mapped[int] = mapped_column(Integer, default=1)
    reverse: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    finished_at: Mapped[dt.datetime | None]
    runs: Mapped[list[Any]] = mapped_column(PortableJSON, default=list)


class BackfillRun(Base):
    """One partition of a backfill and the flow run submitted for it."""

    __tablename__ = "backfill_runs"

    backfill_id: Mapped[str] = mapped_column(ForeignKey("backfills.id", ondelete="CASCADE"), primary_key=True)
    partition: Mapped[str] = mapped_column(String(64), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(300))
    flow_run_id: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=_utcnow)


# --------------------------------------------------------------------------------------------
# Records returned by the store


class RunRecord(BaseModel):
    """A row of ``runs``."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    project_id: str | None
    partition: str | None
    flow_name: str
    flow_run_id: str | None
    deployment: str | None
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    parameters: dict[str, Any] | None
    parameters_hash: str | None
    code_version: str | None
    error_code: str | None
    error_message: str | None
    owner: str | None = None


class BackfillRunRecord(BaseModel):
    """A row of ``backfill_runs``: one partition of a backfill and the flow run submitted for it."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    backfill_id: str
    partition: str
    idempotency_key: str
    flow_run_id: str | None
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime


class BackfillRecord(BaseModel):
    """A row of ``backfills`` with its ``backfill_runs`` rows (``partitions``, in partition order).
    ``runs`` is the summary the backfill stored when it finished (every partition, skipped ones included)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    deployment: str
    start: str
    end: str
    reprocess: str
    max_active: int
    reverse: bool
    status: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    runs: list[Any]
    partitions: list[BackfillRunRecord] = []


class ModelRecord(BaseModel):
    """One ``models`` row."""

    model_config = ConfigDict(frozen=True)

    id: str
    run_id: str
    dataset_id: str | None
    name: str
    kind: str
    spec: dict[str, Any]
    uri: str
    sha256: str
    scalers_uri: str | None
    epochs_run: int | None
    best_epoch: int | None
    trained_at: dt.datetime


class StageOutputRecord(BaseModel):
    """A row of ``stage_outputs``."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: str
    run_id: str
    stage: str
    output_name: str
    uri: str
    sha256: str
    size_bytes: int
    rows: int
    columns: list[str]
    first_utc: dt.datetime | None
    last_utc: dt.datetime | None
    parameters_hash: str
    inputs_hash: str
    code_version: str
    report: dict[str, Any] | None
    created_at: dt.datetime
    updated_at: dt.datetime
    channel_stats: list[dict[str, Any]] = []

    @property
    def ref(self) -> DataRef:
        """The ``DataRef`` of this output (for a cache hit)."""
        return self.to_ref()

    def to_ref(self) -> DataRef:
        """The ``DataRef`` of this output (for a cache hit)."""
        return DataRef(uri=self.uri, sha256=self.sha256, size_bytes=self.size_bytes, rows=self.rows,
                       columns=list(self.columns), stage=self.stage, parameters_hash=self.parameters_hash)


# --------------------------------------------------------------------------------------------
# Helpers


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; ``postgresql://`` / ``postgres://`` use the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError("invalid metadata database URL (not shown, it may hold a password)") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def mask_url(url: str | URL) -> str:
    """``url`` with its password replaced by ``***`` (for logs, summaries and messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return _mask_url_text(str(url))


def _as_datetime(value: Any) -> Any:
    """Accept ISO 8601 text (e.g. ``Timestamp.isoformat()``) where a datetime is stored."""
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value)
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: pydantic models and datetimes converted, NaN/inf replaced by null."""
    if value is None:
        return None
    plain = to_jsonable_python(value)

    def clean(item: Any) -> Any:
        if isinstance(item, dict):
            return {str(k): clean(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [clean(v) for v in item]
        return _finite(item)

    return clean(plain)


def _number(value: Any) -> Any:
    """Plain Python numbers (numpy scalars converted), non-finite as None."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    return _finite(value)


def is_transient_error(exc: BaseException) -> bool:
    """Whether a database error is a transient connection fault that a new attempt of the whole
    transaction can get past (a restart, a dropped connection, a server starting up or shutting down,
    a serialization failure or deadlock). Constraint violations, bad SQL, authentication failures and
    SQLite's "database is locked" (already waited for by its busy timeout) are not."""
    if isinstance(exc, DisconnectionError):
        return True
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    original = exc.orig if isinstance(exc, DBAPIError) else exc
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate:
        return sqlstate in _TRANSIENT_SQLSTATES
    if not _is_operational(exc) and not _is_operational(original):
        return False
    text = str(original).lower()
    return any(message in text for message in _TRANSIENT_MESSAGES)


def _is_operational(exc: BaseException | None) -> bool:
    """SQLAlchemy's or the driver's OperationalError/InterfaceError (found by name: any DB-API driver)."""
    return exc is not None and any(cls.__name__ in ("OperationalError", "InterfaceError")
                                   for cls in type(exc).__mro__)


def _retry_seconds(value: float | None) -> float:
    if value is not None:
        return max(0.0, float(value))
    text = os.environ.get(RETRY_SECONDS_ENV, "").strip()
    if not text:
        return RETRY_SECONDS
    try:
        return max(0.0, float(text))
    except ValueError:
        _log.warning("%s=%r is not a number of seconds; using %s", RETRY_SECONDS_ENV, text, RETRY_SECONDS)
        return RETRY_SECONDS


class _ConnectionLost(StorageError):
    """A transient connection fault inside one operation (raised by ``_transaction``); the ``_retried``
    wrapper catches it and runs the operation again. Outside such a wrapper it is an ordinary transient
    ``StorageError``."""

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None,
                 hint: str | None = None, action: str = "", detail: str = "") -> None:
        super().__init__(code, message, details=details, hint=hint)
        self.action = action
        self.detail = detail


def _retried(method: Callable[..., _T]) -> Callable[..., _T]:
    """Run the decorated operation (one transaction) again while it fails with a transient connection
    fault, for up to the store's ``retry_seconds``; then raise the transient ``StorageError``. A call made
    from inside another retried operation is not retried on its own (the outer one retries it)."""

    @functools.wraps(method)
    def wrapper(self: MetadataStore, *args: Any, **kwargs: Any) -> _T:
        state = self._retry_state
        if getattr(state, "active", False):
            return method(self, *args, **kwargs)
        state.active = True
        try:
            return self._retrying(lambda: method(self, *args, **kwargs))
        finally:
            state.active = False

    wrapper.__zeitflow_retried__ = True  # type: ignore[attr-defined]
    return wrapper


class MetadataStore:
    """Metadata over SQLAlchemy: ``migrate()`` once, then idempotent upserts and lookups.

    ``retry_seconds`` bounds the retry of transient connection faults per operation (default
    ``ZEITFLOW_METADATA_RETRY_SECONDS`` or ``RETRY_SECONDS``; 0 disables it)."""

    def __init__(self, url: str | URL, *, echo: bool = False, retry_seconds: float | None = None) -> None:
        self.url = normalize_url(url)
        self._password = self.url.password
        self.retry_seconds = _retry_seconds(retry_seconds)
        self._retry_state = threading.local()
        self._reach_key = self.url.render_as_string(hide_password=True)
        self.dialect = self.url.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(f"unsupported metadata backend {self.dialect!r}: use sqlite or postgresql")
        try:
            self.engine = self._create_engine(echo)
        except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
            raise self._error("READ_FAILED", "creating the engine", exc) from None
        event.listen(self.engine, "connect", self._reached)

    def _reached(self, _dbapi_connection: Any, _record: Any) -> None:
        _REACHED.add(self._reach_key)

    # ---- engine -------------------------------------------------------------------------

    def _create_engine(self, echo: bool) -> Engine:
        if self.dialect == "sqlite":
            database = self.url.database
            in_memory = not database or database == ":memory:" or database.startswith("file::memory:")
            kwargs: dict[str, Any] = {"connect_args": {"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000,
                                                       "check_same_thread": False}}
            if in_memory:
                kwargs["poolclass"] = StaticPool
            else:
                Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(self.url, echo=echo, **kwargs)
            self._configure_sqlite(engine, wal=not in_memory)
            return engine
        connect_args: dict[str, Any] = {"connect_timeout": 10}
        if self.url.port == 6543:  # Supabase transaction pooler: no prepared statements
            connect_args["prepare_threshold"] = None
        return create_engine(self.url, echo=echo, pool_pre_ping=True, connect_args=connect_args)

    @staticmethod
    def _configure_sqlite(engine: Engine, *, wal: bool) -> None:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)
            cursor = dbapi_connection.cursor()
            if wal:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Connection) -> None:
            # Take the write lock up front: concurrent writers wait (busy_timeout) instead of failing
            # on a lock upgrade, and DDL (migrations) runs inside the transaction.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    @property
    def masked_url(self) -> str:
        """The URL with its password replaced by ``***``."""
        return self.url.render_as_string(hide_password=True)

    def __repr__(self) -> str:
        return f"MetadataStore({self.masked_url!r})"

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
            raw = self.url.render_as_string(hide_password=False)
            text = text.replace(raw, self.masked_url)
        return text

    def _error(self, code: str, action: str, exc: BaseException) -> StorageError:
        detail = self._scrub(f"{type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")
        detail = detail.strip().splitlines()[0] if detail.strip() else type(exc).__name__
        details = {"store": "metadata", "url": self.masked_url, "action": action, "error": type(exc).__name__}
        message = f"metadata store {self.masked_url}: {action} failed: {detail}"
        if isinstance(exc, SQLAlchemyError) and is_transient_error(exc) and self._reach_key in _REACHED:
            return _ConnectionLost(code, message, details=details, action=action, detail=detail)
        return StorageError(code, message, details=details)

    @contextmanager
    def _transaction(self, code: str, action: str) -> Iterator[Connection]:
        try:
            with self.engine.begin() as connection:
                yield connection
        except SQLAlchemyError as exc:
            error = self._error(code, action, exc)
            if self._password and self._password in f"{exc!r} {exc}":
                raise error from None  # never chain a text that holds the password
            raise error from exc

    def _retrying(self, call: Callable[[], _T]) -> _T:
        """``call()`` (one whole operation), again after a backoff while it raises ``_ConnectionLost``,
        until ``retry_seconds`` have passed; then the transient ``StorageError`` naming the operation."""
        started = _clock()
        delay = _RETRY_FIRST_DELAY
        attempt = 1
        while True:
            try:
                return call()
            except _ConnectionLost as lost:
                elapsed = _clock() - started
                if elapsed + delay > self.retry_seconds:
                    if attempt == 1:
                        raise StorageError(lost.code, lost.message, details=lost.details) from lost.__cause__
                    details = {**lost.details, "attempts": attempt}
                    message = (f"metadata store {self.masked_url}: {lost.action} failed after {attempt} attempts "
                               f"in {elapsed:.1f} s: {lost.detail}")
                    raise StorageError(lost.code, message, details=details) from lost.__cause__
                _log.warning("metadata store %s: %s failed (%s); retrying in %.2f s (attempt %d)",
                             self.masked_url, lost.action, lost.detail, delay, attempt + 1)
            _sleep(delay)
            delay = min(delay * 2, _RETRY_MAX_DELAY)
            attempt += 1

    def _insert(self, table: Any) -> Any:
        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(table)

    def dispose(self) -> None:
        """Close all pooled connections."""
        self.engine.dispose()

    # ---- schema -------------------------------------------------------------------------

    @_retried
    def migrate(self, revision: str = "head") -> None:
        """Run the Alembic migrations up to ``revision`` (idempotent; safe to call concurrently)."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._transaction("WRITE_FAILED", "migration") as connection:
            if self.dialect == "postgresql":
                connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7311452501)")
            config.attributes["connection"] = connection
            command.upgrade(config, revision)

    @_retried
    def current_revision(self) -> str | None:
        """The Alembic revision of the database, or None before ``migrate()``."""
        from alembic.migration import MigrationContext

        with self._transaction("READ_FAILED", "reading the schema revision") as connection:
            return MigrationContext.configure(connection).get_current_revision()

    # ---- projects and runs --------------------------------------------------------------

    @_retried
    def upsert_project(self, name: str, config: Mapping[str, Any] | BaseModel | None = None) -> str:
        """Create or update the project ``name``; returns its id."""
        now = _utcnow()
        table = Project.__table__
        statement = self._insert(table).values(
            id=new_id(), name=name, config=_jsonable(config) or {}, created_at=now, updated_at=now
        )
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.name],
            set_={"config": statement.excluded.config, "updated_at": statement.excluded.updated_at},
        ).returning(table.c.id)
        with self._transaction("WRITE_FAILED", "upserting a project") as connection:
            return connection.execute(statement).scalar_one()

    @_retried
    def start_run(
        self,
        flow_name: str,
        *,
        project_id: str | None = None,
        run_id: str | None = None,
        partition: str | None = None,
        flow_run_id: str | None = None,
        deployment: str | None = None,
        parameters: Mapping[str, Any] | BaseModel | None = None,
        parameters_hash: str | None = None,
        code_version: str | None = None,
        status: str = "running",
        owner: str | None = None,
    ) -> str:
        """Register a run (an upsert on ``id``: starting a run id twice keeps one row); returns its id.
        ``owner`` (``host:pid`` of the flow process) lets ``fail_abandoned_runs`` find it if the process dies."""
        _check_status(status, RUN_STATUSES)
        table = Run.__table__
        values = {
            "id": run_id or new_id(), "project_id": project_id, "partition": partition,
            "flow_name": flow_name, "flow_run_id": flow_run_id, "deployment": deployment,
            "status": status, "started_at": _utcnow(), "finished_at": None,
            "parameters": _jsonable(parameters), "parameters_hash": parameters_hash,
            "code_version": code_version, "error_code": None, "error_message": None, "owner": owner,
        }
        statement = self._insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={k: statement.excluded[k] for k in values if k not in ("id", "started_at")},
        ).returning(table.c.id)
        with self._transaction("WRITE_FAILED", "starting a run") as connection:
            return connection.execute(statement).scalar_one()

    @_retried
    def fail_abandoned_runs(self, project_id: str, host: str, is_alive: Callable[[int], bool]) -> list[str]:
        """Mark ``failed`` (``RUN_ABANDONED``) the project's ``running`` runs owned by a process of ``host``
        that ``is_alive`` says is gone: a flow process killed (SIGKILL, out of memory, power) never closes its
        row. Runs of other hosts, or without an owner, are left alone. Returns the ids marked."""
        table = Run.__table__
        query = select(table.c.id, table.c.owner).where(
            table.c.project_id == project_id, table.c.status == "running", table.c.owner.is_not(None))
        with self._transaction("WRITE_FAILED", "closing abandoned runs") as connection:
            owners = {row.id: row.owner.rpartition(":") for row in connection.execute(query)}
            dead = [run_id for run_id, (owner_host, _, pid) in owners.items()
                    if owner_host == host and pid.isdigit() and not is_alive(int(pid))]
            if dead:
                connection.execute(update(table).where(table.c.id.in_(dead), table.c.status == "running").values(
                    status="failed", finished_at=_utcnow(), error_code="RUN_ABANDONED",
                    error_message="the flow process ended without closing the run (killed or crashed)"))
        return dead

    @_retried
    def finish_run(
        self, run_id: str, status: str, error_code: str | None = None, error_message: str | None = None
    ) -> None:
        """Set the final status (and error) of a run."""
        _check_status(status, RUN_STATUSES)
        finished = None if status in ("running", "paused") else _utcnow()
        statement = (
            update(Run.__table__)
            .where(Run.__table__.c.id == run_id)
            .values(status=status, finished_at=finished, error_code=error_code, error_message=error_message)
        )
        with self._transaction("WRITE_FAILED", "finishing a run") as connection:
            if connection.execute(statement).rowcount == 0:
                raise _not_found("run", run_id)

    @_retried
    def get_run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, or None."""
        with self._transaction("READ_FAILED", "reading a run") as connection:
            query = select(Run.__table__).where(Run.__table__.c.id == run_id)
            row = connection.execute(query).mappings().first()
        return RunRecord.model_validate(dict(row)) if row else None

    @_retried
    def partition_statuses(self, project: str, flow_name: str, partitions: Sequence[str]) -> dict[str, str | None]:
        """The status of the latest run (by ``started_at``) of each partition for this project and flow;
        None for a partition that never ran. Every partition asked for is a key of the result."""
        runs, projects = Run.__table__, Project.__table__
        wanted = list(dict.fromkeys(partitions))
        result: dict[str, str | None] = dict.fromkeys(wanted)
        with self._transaction("READ_FAILED", "reading partition statuses") as connection:
            for first in range(0, len(wanted), 500):
                chunk = wanted[first:first + 500]
                query = (
                    select(runs.c.partition, runs.c.status)
                    .join(projects, projects.c.id == runs.c.project_id)
                    .where(projects.c.name == project, runs.c.flow_name == flow_name, runs.c.partition.in_(chunk))
                    .order_by(runs.c.started_at, runs.c.id)
                )
                for partition, status in connection.execute(query):
                    result[partition] = status  # ascending order: the last one seen is the latest
        return result

    @_retried
    def mark_partition_failed(self, project: str, flow_name: str, partition: str,
                              error_message: str = "marked failed by hand") -> str:
        """Set the latest run of a partition (for this project and flow) to ``failed`` (error code
        ``MARKED_FAILED``), so ``reprocess=failed`` runs it again; returns that run's id. A partition without
        a run is ``OBJECT_NOT_FOUND``."""
        runs, projects = Run.__table__, Project.__table__
        query = (
            select(runs.c.id)
            .join(projects, projects.c.id == runs.c.project_id)
            .where(projects.c.name == project, runs.c.flow_name == flow_name, runs.c.partition == partition)
            .order_by(runs.c.started_at.desc(), runs.c.id.desc())
            .limit(1)
        )
        with self._transaction("WRITE_FAILED", "marking a partition failed") as connection:
            run_id = connection.execute(query).scalar()
            if run_id is None:
                raise StorageError(
                    "OBJECT_NOT_FOUND",
                    f"no {flow_name!r} run of partition {partition!r} in project {project!r}",
                    details={"store": "metadata", "table": "runs", "project": project, "flow_name": flow_name,
                             "partition": partition},
                )
            connection.execute(
                update(runs).where(runs.c.id == run_id).values(
                    status="failed", finished_at=func.coalesce(runs.c.finished_at, _utcnow()),
                    error_code="MARKED_FAILED", error_message=error_message,
                )
            )
        return run_id

    # ---- backfills ----------------------------------------------------------------------

    @_retried
    def start_backfill(self, deployment: str, start: str, end: str, reprocess: str = "none", max_active: int = 1,
                       reverse: bool = False, *, status: str = "running") -> str:
        """Register a backfill of ``deployment`` over ``start``..``end`` (status ``running``); returns its id."""
        _check_choice("reprocess", reprocess, REPROCESS_CHOICES)
        _check_choice("status", status, BACKFILL_STATUSES)
        values = {
            "id": new_id(), "deployment": deployment, "start": start, "end": end, "reprocess": reprocess,
            "max_active": int(max_active), "reverse": bool(reverse), "status": status, "created_at": _utcnow(),
            "finished_at": None, "runs": [],
        }
        table = Backfill.__table__
        # a retried insert (after an ambiguous commit) finds its own row: no second backfill
        statement = self._insert(table).values(**values).on_conflict_do_nothing(index_elements=[table.c.id])
        with self._transaction("WRITE_FAILED", "starting a backfill") as connection:
            connection.execute(statement)
        return values["id"]

    @_retried
    def record_backfill_run(self, backfill_id: str, partition: str, idempotency_key: str,
                            flow_run_id: str | None, status: str) -> None:
        """Record (upsert on ``backfill_id``, ``partition``) the flow run a backfill submitted for a partition
        and its state (a Prefect state type in lower case: ``scheduled``, ``running``, ``completed``,
        ``failed``, ``crashed``, ``cancelled``..., or ``not_submitted``)."""
        now = _utcnow()
        table = BackfillRun.__table__
        values = {"backfill_id": backfill_id, "partition": partition, "idempotency_key": idempotency_key,
                  "flow_run_id": flow_run_id, "status": status[:32], "created_at": now, "updated_at": now}
        statement = self._insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.backfill_id, table.c.partition],
            set_={k: statement.excluded[k] for k in ("idempotency_key", "flow_run_id", "status", "updated_at")},
        )
        with self._transaction("WRITE_FAILED", "recording a backfill run") as connection:
            connection.execute(statement)

    @_retried
    def finish_backfill(self, backfill_id: str, status: str, runs: Sequence[Mapping[str, Any]] | None = None) -> None:
        """Set a backfill's status (``finished_at`` unless ``pending``/``running``) and, if given, its summary of
        every partition (``runs``, JSON)."""
        _check_choice("status", status, BACKFILL_STATUSES)
        table = Backfill.__table__
        values: dict[str, Any] = {"status": status,
                                  "finished_at": None if status in ("pending", "running") else _utcnow()}
        if runs is not None:
            values["runs"] = _jsonable(list(runs))
        with self._transaction("WRITE_FAILED", "finishing a backfill") as connection:
            if connection.execute(update(table).where(table.c.id == backfill_id).values(**values)).rowcount == 0:
                raise _not_found("backfill", backfill_id)

    @_retried
    def get_backfill(self, backfill_id: str) -> BackfillRecord | None:
        """The backfill ``backfill_id`` with its recorded runs, or None."""
        backfills, backfill_runs = Backfill.__table__, BackfillRun.__table__
        with self._transaction("READ_FAILED", "reading a backfill") as connection:
            row = connection.execute(select(backfills).where(backfills.c.id == backfill_id)).mappings().first()
            if row is None:
                return None
            query = (select(backfill_runs).where(backfill_runs.c.backfill_id == backfill_id)
                     .order_by(backfill_runs.c.partition))
            partitions = [BackfillRunRecord.model_validate(dict(r)) for r in connection.execute(query).mappings()]
        return BackfillRecord.model_validate({**dict(row), "runs": row["runs"] or [], "partitions": partitions})

    # ---- stage outputs ------------------------------------------------------------------

    @_retried
    def record_stage_output(
        self,
        run_id: str,
        stage: str,
        output_name: str,
        ref: DataRef,
        first_utc: dt.datetime | str | None,
        last_utc: dt.datetime | str | None,
        inputs_hash: str,
        code_version: str,
        report: Mapping[str, Any] | BaseModel | None,
        channel_stats: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        """Register a written stage output and its channel statistics in one transaction.

        An upsert on the natural key: a re-run updates the row (``run_id``, object fields, report,
        ``updated_at``) and replaces its channel statistics. ``first_utc``/``last_utc`` may be
        datetimes (naive means UTC), pandas Timestamps or ISO 8601 text. Returns the row id.
        """
        first_utc, last_utc = _as_datetime(first_utc), _as_datetime(last_utc)
        now = _utcnow()
        table = StageOutput.__table__
        values = {
            "id": new_id(), "run_id": run_id, "stage": stage, "output_name": output_name,
            "uri": ref.uri, "sha256": ref.sha256, "size_bytes": ref.size_bytes, "rows": ref.rows,
            "columns": list(ref.columns), "first_utc": first_utc, "last_utc": last_utc,
            "parameters_hash": ref.parameters_hash, "inputs_hash": inputs_hash, "code_version": code_version,
            "report": _jsonable(report), "created_at": now, "updated_at": now,
        }
        keep = {"id", "created_at", "stage", "output_name", "parameters_hash", "inputs_hash", "code_version"}
        statement = self._insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.stage, table.c.parameters_hash, table.c.inputs_hash,
                            table.c.code_version, table.c.output_name],
            set_={k: statement.excluded[k] for k in values if k not in keep},
        ).returning(table.c.id)
        stats_rows = [_channel_stat_row(stat) for stat in channel_stats]
        with self._transaction("WRITE_FAILED", "recording a stage output") as connection:
            output_id = connection.execute(statement).scalar_one()
            stats = ChannelStat.__table__
            connection.execute(delete(stats).where(stats.c.stage_output_id == output_id))
            if stats_rows:
                rows = [{**row, "stage_output_id": output_id} for row in stats_rows]
                connection.execute(stats.insert(), rows)
        return output_id

    @_retried
    def delete_stage_output(self, output_id: str) -> bool:
        """Remove a stage output and its channel statistics (rollback); True if a row was removed."""
        stats, outputs = ChannelStat.__table__, StageOutput.__table__
        with self._transaction("WRITE_FAILED", "deleting a stage output") as connection:
            connection.execute(delete(stats).where(stats.c.stage_output_id == output_id))
            return connection.execute(delete(outputs).where(outputs.c.id == output_id)).rowcount > 0

    @_retried
    def delete_stage_outputs_at(self, uri: str) -> int:
        """Remove every stage output stored at ``uri`` and its channel statistics (rollback of an
        object); returns the number of rows removed."""
        stats, outputs = ChannelStat.__table__, StageOutput.__table__
        ids = select(outputs.c.id).where(outputs.c.uri == uri)
        with self._transaction("WRITE_FAILED", "deleting stage outputs") as connection:
            connection.execute(delete(stats).where(stats.c.stage_output_id.in_(ids)))
            return connection.execute(delete(outputs).where(outputs.c.uri == uri)).rowcount

    @_retried
    def find_stage_output(
        self, stage: str, parameters_hash: str, inputs_hash: str, code_version: str, output_name: str
    ) -> StageOutputRecord | None:
        """The stage output with this natural key, or None (cache lookup)."""
        table = StageOutput.__table__
        query = select(table).where(
            table.c.stage == stage, table.c.parameters_hash == parameters_hash,
            table.c.inputs_hash == inputs_hash, table.c.code_version == code_version,
            table.c.output_name == output_name,
        )
        with self._transaction("READ_FAILED", "looking up a stage output") as connection:
            row = connection.execute(query).mappings().first()
            return self._record(connection, row)

    @_retried
    def get_stage_output(self, output_id: str) -> StageOutputRecord | None:
        """The stage output with id ``output_id``, or None."""
        table = StageOutput.__table__
        with self._transaction("READ_FAILED", "reading a stage output") as connection:
            row = connection.execute(select(table).where(table.c.id == output_id)).mappings().first()
            return self._record(connection, row)

    @staticmethod
    def _stats(connection: Connection, output_id: str, columns: Sequence[str] = ()) -> list[dict[str, Any]]:
        table = ChannelStat.__table__
        query = select(table).where(table.c.stage_output_id == output_id)
        rows = [{k: v for k, v in row.items() if k != "stage_output_id"}
                for row in connection.execute(query).mappings()]
        order = {name: i for i, name in enumerate(columns)}
        return sorted(rows, key=lambda r: (order.get(r["channel"], len(order)), r["channel"]))

    def _record(self, connection: Connection, row: Any) -> StageOutputRecord | None:
        if row is None:
            return None
        stats = self._stats(connection, row["id"], row["columns"] or ())
        return StageOutputRecord.model_validate({**dict(row), "channel_stats": stats})

    @_retried
    def count_stage_outputs(
        self,
        stage: str | None = None,
        parameters_hash: str | None = None,
        inputs_hash: str | None = None,
        code_version: str | None = None,
        output_name: str | None = None,
        *,
        run_id: str | None = None,
        uri: str | None = None,
        uri_prefix: str | None = None,
    ) -> int:
        """Number of stage outputs matching every given field (``uri_prefix``: URIs starting with it)."""
        table = StageOutput.__table__
        filters = {"stage": stage, "parameters_hash": parameters_hash, "inputs_hash": inputs_hash,
                   "code_version": code_version, "output_name": output_name, "run_id": run_id, "uri": uri}
        query = select(func.count()).select_from(table)
        for column, value in filters.items():
            if value is not None:
                query = query.where(table.c[column] == value)
        if uri_prefix is not None:
            query = query.where(table.c.uri.startswith(uri_prefix, autoescape=True))
        with self._transaction("READ_FAILED", "counting stage outputs") as connection:
            return int(connection.execute(query).scalar_one())

    # ---- datasets -------------------------------------------------------------------------

    @_retried
    def record_dataset(
        self,
        run_id: str,
        name: str,
        input_channels: Sequence[str],
        output_channels: Sequence[str],
        n_in: int,
        n_out: int,
        stride_minutes: float,
        offset_minutes: float,
        window_options: Mapping[str, Any] | BaseModel,
        time_feature_options: Mapping[str, Any] | BaseModel | None,
        n_samples: int,
        n_train: int,
        n_val: int,
        n_test: int,
        reference_start: dt.datetime | str | None,
        reference_end: dt.datetime | str | None,
        source_output_ids: Sequence[str | None] = (),
        uri: str | None = None,
        sha256: str | None = None,
    ) -> str:
        """Register a windowed dataset built in a run (stages.md §13).

        An upsert on the natural key (``run_id``, ``name``): recording the same dataset name again in
        one run updates the row. ``reference_start``/``reference_end`` may be datetimes (naive means
        UTC), pandas Timestamps or ISO 8601 text. Returns the row id.
        """
        table = Dataset.__table__
        values = {
            "id": new_id(), "run_id": run_id, "name": name, "input_channels": list(input_channels),
            "output_channels": list(output_channels), "n_in": int(n_in), "n_out": int(n_out),
            "stride_minutes": float(stride_minutes), "offset_minutes": float(offset_minutes),
            "window_options": _jsonable(window_options), "time_feature_options": _jsonable(time_feature_options),
            "n_samples": int(n_samples), "n_train": int(n_train), "n_val": int(n_val), "n_test": int(n_test),
            "reference_start": _as_datetime(reference_start), "reference_end": _as_datetime(reference_end),
            "source_output_ids": list(source_output_ids), "uri": uri, "sha256": sha256, "created_at": _utcnow(),
        }
        keep = {"id", "created_at", "run_id", "name"}
        statement = self._insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.name],
            set_={k: statement.excluded[k] for k in values if k not in keep},
        ).returning(table.c.id)
        with self._transaction("WRITE_FAILED", "recording a dataset") as connection:
            return connection.execute(statement).scalar_one()

    @_retried
    def count_datasets(self, **filters: Any) -> int:
        """Number of datasets whose columns equal every given filter (e.g. ``run_id=``, ``name=``, ``uri=``)."""
        table = Dataset.__table__
        unknown = sorted(set(filters) - set(table.c.keys()))
        if unknown:
            raise ValueError(f"unknown datasets column(s): {unknown}")
        query = select(func.count()).select_from(table)
        for column, value in filters.items():
            query = query.where(table.c[column] == value)
        with self._transaction("READ_FAILED", "counting datasets") as connection:
            return int(connection.execute(query).scalar_one())

    @_retried
    def record_model(
        self,
        run_id: str,
        name: str,
        kind: str,
        spec: Mapping[str, Any] | BaseModel,
        uri: str,
        sha256: str,
        dataset_id: str | None = None,
        scalers_uri: str | None = None,
        epochs_run: int | None = None,
        best_epoch: int | None = None,
    ) -> str:
        """Register a trained model (stages.md §13), after its files exist.

        An upsert on the natural key (``run_id``, ``name``): a retried training task updates its row.
        ``uri`` is the model's folder in the artifact store (``model.json`` and the model file inside it)
        and ``sha256`` that of the model file. Returns the row id."""
        table = Model.__table__
        values = {
            "id": new_id(), "run_id": run_id, "dataset_id": dataset_id, "name": name, "kind": kind,
            "spec": _jsonable(spec), "uri": uri, "sha256": sha256, "scalers_uri": scalers_uri,
            "epochs_run": epochs_run, "best_epoch": best_epoch, "trained_at": _utcnow(),
        }
        keep = {"id", "run_id", "name"}
        statement = self._insert(table).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.run_id, table.c.name],
            set_={k: statement.excluded[k] for k in values if k not in keep},
        ).returning(table.c.id)
        with self._transaction("WRITE_FAILED", "recording a model") as connection:
            return connection.execute(statement).scalar_one()

    @_retried
    def latest_model(self, project: str, name: str | None = None) -> ModelRecord | None:
        """The newest trained model of a project (optionally of one model name), by ``trained_at``;
        models of failed or cancelled runs are skipped."""
        models, runs, projects = Model.__table__, Run.__table__, Project.__table__
        query = (
            select(models, runs.c.status.label("run_status"))
            .join(runs, runs.c.id == models.c.run_id)
            .join(projects, projects.c.id == runs.c.project_id)
            .where(projects.c.name == project, runs.c.status.in_(("running", "completed")))
            .order_by(models.c.trained_at.desc(), models.c.id.desc())
            .limit(1)
        )
        if name is not None:
            query = query.where(models.c.name == name)
        with self._transaction("READ_FAILED", "finding the newest model") as connection:
            row = connection.execute(query).mappings().first()
        return None if row is None else ModelRecord.model_validate({k: row[k] for k in ModelRecord.model_fields})

    @_retried
    def record_metric_table(
        self,
        model_id: str,
        table: str,
        uri: str,
        sha256: str,
        json_uri: str | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> str:
        """Register one evaluation table of a model (``overall``, ``per_step`` or ``reasons``, §13), after its
        file exists. An upsert on (``model_id``, ``table``). Returns the row id."""
        if table not in ("overall", "per_step", "reasons"):
            raise ParameterError("INVALID_CHOICE", f"table={table!r} is not allowed: choose one of "
                                 "['overall', 'per_step', 'reasons']", details={"parameter": "table", "value": table})
        metric_tables = MetricTable.__table__
        values = {"id": new_id(), "model_id": model_id, "table": table, "uri": uri, "sha256": sha256,
                  "json_uri": json_uri, "summary": _jsonable(summary)}
        statement = self._insert(metric_tables).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[metric_tables.c.model_id, metric_tables.c.table],
            set_={k: statement.excluded[k] for k in values if k not in {"id", "model_id", "table"}},
        ).returning(metric_tables.c.id)
        with self._transaction("WRITE_FAILED", "recording a metric table") as connection:
            return connection.execute(statement).scalar_one()

    @_retried
    def metric_tables_of(self, model_id: str) -> list[dict[str, Any]]:
        """The ``metric_tables`` rows of a model, ordered by table name."""
        metric_tables = MetricTable.__table__
        query = select(metric_tables).where(metric_tables.c.model_id == model_id).order_by(metric_tables.c.table)
        with self._transaction("READ_FAILED", "reading metric tables") as connection:
            return [dict(row) for row in connection.execute(query).mappings()]

    @_retried
    def find_dataset_id(self, uri: str) -> str | None:
        """The id of the newest ``datasets`` row stored at ``uri`` (the dataset's npz), if any."""
        table = Dataset.__table__
        query = select(table.c.id).where(table.c.uri == uri).order_by(table.c.created_at.desc()).limit(1)
        with self._transaction("READ_FAILED", "finding a dataset") as connection:
            return connection.execute(query).scalar()

    @_retried
    def count_models(self, **filters: Any) -> int:
        """Number of models whose columns equal every given filter (e.g. ``run_id=``, ``name=``)."""
        table = Model.__table__
        unknown = sorted(set(filters) - set(table.c.keys()))
        if unknown:
            raise ValueError(f"unknown models column(s): {unknown}")
        query = select(func.count()).select_from(table)
        for column, value in filters.items():
            query = query.where(table.c[column] == value)
        with self._transaction("READ_FAILED", "counting models") as connection:
            return int(connection.execute(query).scalar_one())

    @_retried
    def get_channel_stats(self, output_id: str) -> list[dict[str, Any]]:
        """The channel statistics of a stage output (in the output's column order)."""
        outputs = StageOutput.__table__
        with self._transaction("READ_FAILED", "reading channel statistics") as connection:
            columns = connection.execute(select(outputs.c.columns).where(outputs.c.id == output_id)).scalar()
            return self._stats(connection, output_id, columns or ())


def _check_status(status: str, allowed: tuple[str, ...]) -> None:
    if status not in allowed:
        raise ParameterError(
            "INVALID_CHOICE", f"status={status!r} is not allowed: choose one of {list(allowed)}",
            details={"parameter": "status", "value": status},
        )


def _check_choice(parameter: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ParameterError(
            "INVALID_CHOICE", f"{parameter}={value!r} is not allowed: choose one of {list(allowed)}",
            details={"parameter": parameter, "value": value},
        )


def _not_found(kind: str, key: str) -> StorageError:
    return StorageError("OBJECT_NOT_FOUND", f"no {kind} with id {key!r} in the metadata store",
                        details={"store": "metadata", "table": f"{kind}s", "id": key})


def _channel_stat_row(stat: Mapping[str, Any]) -> dict[str, Any]:
    if "channel" not in stat:
        raise ParameterError("MISSING_PARAMETER", "every channel statistic needs a 'channel'",
                             details={"parameter": "channel"})
    unknown = set(stat) - {"channel", "stage_output_id", *CHANNEL_STAT_FIELDS}
    if unknown:
        raise ParameterError("UNKNOWN_PARAMETER", f"unknown channel statistic fields {sorted(unknown)}",
                             details={"parameter": sorted(unknown)})
    row: dict[str, Any] = {"channel": str(stat["channel"])}
    for field in CHANNEL_STAT_FIELDS:
        row[field] = _number(stat.get(field))
    return row
