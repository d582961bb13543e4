"""Optional Supabase REST sink (architecture §3): publishes run summaries and overall metric tables
to a Supabase project through its PostgREST API, for frontends that read Supabase tables.

Enabled only when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set. The service key bypasses
row-level security, so it is used server-side only, held as a ``SecretStr`` and scrubbed from every
error message. Rows are upserted on their natural keys (``sql/supabase_schema.sql``), so re-publishing
a run never duplicates rows. The SQL metadata store stays the system of record; this sink is a copy.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any

from pydantic import BaseModel, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zeitflow.errors import ParameterError, StorageError
from zeitflow.settings import mask_url

__all__ = [
    "METRIC_COLUMNS",
    "METRICS_TABLE",
    "RUNS_TABLE",
    "SupabaseSettings",
    "UpsertRequest",
    "build_requests",
    "enabled",
    "publish",
]

RUNS_TABLE = "zeitflow_runs"
METRICS_TABLE = "zeitflow_metrics"
RUNS_KEY: tuple[str, ...] = ("run_id",)
METRICS_KEY: tuple[str, ...] = ("run_id", "model", "channel", "n_avg")
#: Value columns of ``zeitflow_metrics`` (the §10.2 overall table after its key columns).
METRIC_COLUMNS: tuple[str, ...] = (
    "delta_minutes", "n_pairs", "mae", "mse", "rmse", "mape", "mape_excluded", "smape", "wape", "nrmse",
    "mase", "r2", "skill_mae",
)
_INTEGER_COLUMNS = frozenset({"n_avg", "n_pairs", "mape_excluded"})
#: Rows per upsert call; keeps each PostgREST request small.
BATCH_ROWS = 500

_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|service[_-]?key|access[_-]?key|"
                            r"credential|private[_-]?key)")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)\S+")


class SupabaseSettings(BaseSettings):
    """``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` from the environment (or constructor arguments)."""

    model_config = SettingsConfigDict(env_prefix="SUPABASE_", extra="ignore", frozen=True, populate_by_name=True)

    url: str | None = None
    service_key: SecretStr | None = None

    @field_validator("url", "service_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        return None if isinstance(value, str) and not value.strip() else value

    @property
    def configured(self) -> bool:
        """True when both the URL and the service key are set."""
        return bool(self.url) and self.service_key is not None


def enabled() -> bool:
    """True only when both ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set (non-empty)."""
    try:
        return SupabaseSettings().configured
    except ValueError:
        return False


@dataclass(frozen=True)
class UpsertRequest:
    """One upsert call: target table, JSON-serialisable rows and the conflict (primary key) columns."""

    table: str
    rows: list[dict[str, Any]]
    on_conflict: tuple[str, ...]

    @property
    def on_conflict_param(self) -> str:
        """The comma-separated ``on_conflict`` argument of the PostgREST client."""
        return ",".join(self.on_conflict)


def _missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return not math.isfinite(float(value))
    return type(value).__name__ in {"NAType", "NaTType"}


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value)


def jsonable(value: Any) -> Any:
    """A JSON-serialisable copy: NaN/inf/NA become None, numpy scalars Python numbers, dates ISO
    strings, pydantic models dicts; strings holding a URL get their password masked and values under
    secret-looking keys become ``***``."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): ("***" if _SECRET_KEY_RE.search(str(k)) and not _blank(v) else jsonable(v))
                for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if _missing(value):
        return None
    if isinstance(value, str):
        return mask_url(value) if "://" in value else value
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return jsonable(value.value)
    if hasattr(value, "tolist"):  # numpy arrays and scalars (bool_ included)
        return jsonable(value.tolist())
    return str(value)


def _required_text(row: Mapping[str, Any], key: str, where: str) -> str:
    value = row.get(key)
    if _missing(value) or (isinstance(value, str) and not value):
        raise ParameterError("MISSING_PARAMETER", f"{where} has no {key!r}", details={"parameter": key})
    return str(value)


def _timestamp(summary: Mapping[str, Any], *keys: str) -> str | None:
    for key in keys:
        value = summary.get(key)
        if not _missing(value):
            return value.isoformat() if isinstance(value, datetime | date) else str(value)
    return None


def _metric_value(column: str, value: Any) -> Any:
    value = jsonable(value)
    if value is None:
        return None
    if column in _INTEGER_COLUMNS:
        return int(value)
    return float(value)


def _batches(table: str, rows: list[dict[str, Any]], key: tuple[str, ...]) -> list[UpsertRequest]:
    return [UpsertRequest(table, rows[i:i + BATCH_ROWS], key) for i in range(0, len(rows), BATCH_ROWS)]


def build_requests(summary: Mapping[str, Any], metric_rows: Sequence[Mapping[str, Any]]) -> list[UpsertRequest]:
    """The upserts that publish one run (pure): one ``zeitflow_runs`` row keyed by ``run_id``, then
    the overall metric rows (§10.2) as ``zeitflow_metrics`` keyed by (run_id, model, channel, n_avg),
    in batches of ``BATCH_ROWS``. NaN and infinities become None (SQL NULL). ``summary`` needs
    ``run_id``; ``project``, ``flow``, ``status`` and ``started_at``/``finished_at`` (or
    ``started``/``finished``) are copied when present, and the whole summary goes to ``summary`` jsonb.

    Raises ``ParameterError`` ``MISSING_PARAMETER`` for a missing run id or key column, and
    ``ValueError`` for two metric rows with the same key (PostgREST rejects them in one upsert).
    """
    if isinstance(summary, BaseModel):
        summary = summary.model_dump(mode="json")
    run_id = _required_text(summary, "run_id", "the run summary")
    run_row = {
        "run_id": run_id,
        "project": jsonable(summary.get("project")),
        "flow": jsonable(summary.get("flow")),
        "status": jsonable(summary.get("status")),
        "started_at": _timestamp(summary, "started_at", "started"),
        "finished_at": _timestamp(summary, "finished_at", "finished"),
        "summary": jsonable(summary),
    }
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, int]] = set()
    for position, source in enumerate(metric_rows):
        where = f"metric row {position}"
        n_avg_value = source.get("n_avg")
        if _missing(n_avg_value):
            raise ParameterError("MISSING_PARAMETER", f"{where} has no 'n_avg'", details={"parameter": "n_avg"})
        row: dict[str, Any] = {
            "run_id": run_id,
            "model": _required_text(source, "model", where),
            "channel": _required_text(source, "channel", where),
            "n_avg": int(jsonable(n_avg_value)),
        }
        key = (row["model"], row["channel"], row["n_avg"])
        if key in seen:
            raise ValueError(f"{where} repeats (model, channel, n_avg) = {key}")
        seen.add(key)
        row.update({column: _metric_value(column, source.get(column)) for column in METRIC_COLUMNS})
        rows.append(row)
    return [UpsertRequest(RUNS_TABLE, [run_row], RUNS_KEY), *_batches(METRICS_TABLE, rows, METRICS_KEY)]


def _scrub(text: str, secret: str | None) -> str:
    """``text`` without the service key, JWT-looking tokens or bearer credentials."""
    if secret:
        text = text.replace(secret, "***")
    text = _JWT_RE.sub("***", text)
    return _BEARER_RE.sub(r"\1***", text)


def _failure(what: str, exc: BaseException, secret: str | None, table: str | None = None) -> StorageError:
    message = _scrub(f"{what}: {type(exc).__name__}: {exc}", secret)
    details: dict[str, Any] = {"store": "supabase", "error": type(exc).__name__}
    if table is not None:
        details["table"] = table
    return StorageError("WRITE_FAILED", message, details=details)


def publish(
    summary: Mapping[str, Any],
    metric_rows: Sequence[Mapping[str, Any]],
    settings: SupabaseSettings | None = None,
    client: Any = None,
) -> int:
    """Upsert the run row and its metric rows; returns the number of rows written.

    Uses ``client`` when given (any object with ``table(name).upsert(rows, on_conflict=...).execute()``),
    else ``supabase.create_client(url, key)`` from ``settings`` (default: the environment). Without a
    configured URL and key it raises ``ParameterError`` ``MISSING_PARAMETER``. Every client or HTTP
    failure becomes ``StorageError`` ``WRITE_FAILED`` (transient) with the key scrubbed from the
    message; the original exception is not chained, since its text or arguments may carry the key.
    """
    requests = build_requests(summary, metric_rows)
    secret: str | None = None
    if client is None:
        settings = settings if settings is not None else SupabaseSettings()
        if not settings.configured:
            raise ParameterError(
                "MISSING_PARAMETER", "the Supabase sink needs SUPABASE_URL and SUPABASE_SERVICE_KEY",
                details={"parameter": "SUPABASE_URL, SUPABASE_SERVICE_KEY"},
            )
        url = str(settings.url)
        secret = settings.service_key.get_secret_value() if settings.service_key is not None else ""
        try:
            from supabase import create_client

            client = create_client(url, secret)
        except Exception as exc:  # the client raises its own exception types for bad URLs or keys
            raise _failure(f"cannot create the Supabase client for {url}", exc, secret) from None
    elif settings is not None and settings.service_key is not None:
        secret = settings.service_key.get_secret_value()
    written = 0
    for request in requests:
        try:
            client.table(request.table).upsert(request.rows, on_conflict=request.on_conflict_param).execute()
        except Exception as exc:  # postgrest APIError, httpx errors, ...: all are write failures here
            raise _failure(f"upserting {len(request.rows)} rows into {request.table} failed", exc, secret,
                           request.table) from None
        written += len(request.rows)
    return written
