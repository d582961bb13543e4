"""Backfill planning (architecture §6): which partitions of a range a backfill submits, and why it skips
the others. Pure: no Prefect, no database; ``flows/backfill.py`` feeds it the latest run status of each
partition from the metadata store and submits what it returns.

Reprocess modes, by the status of a partition's latest run in the metadata store (``runs.status``):

============================  ========  ========  ========
latest run                    ``none``  ``failed``  ``all``
============================  ========  ========  ========
no run (never attempted)      submit    submit    submit
``completed``                 skip      skip      submit
``failed`` / ``cancelled``    skip      submit    submit
``running`` / ``paused``      skip      skip      submit
============================  ========  ========  ========

So ``none`` (the default) only fills gaps and a second identical backfill submits nothing, whatever
happened to the first one's runs; ``failed`` retries exactly the partitions whose latest run failed or was
cancelled; ``all`` re-runs every partition, including one that a stale ``running`` row would otherwise
block. Partitions are submitted oldest first, or newest first with ``reverse``.

Idempotency keys: the first attempt of a partition uses ``backfill:{deployment}:{partition}``, so two
backfills racing over the same gap create one flow run per partition. A partition that ran before gets
``backfill:{deployment}:{partition}:{backfill_id}`` instead: Prefect answers a repeated key with the flow run
it already holds for it (the failed one), so re-running needs a key of its own.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import ParameterError
from zeitflow.partitions import parse_partition, partitions_between

__all__ = [
    "MAX_ACTIVE_RANGE",
    "PARTITION_UNITS",
    "REPROCESS_CHOICES",
    "BackfillPlan",
    "backfill_partitions",
    "check_deployment_name",
    "check_max_active",
    "check_reprocess",
    "idempotency_key",
    "plan_backfill",
]

REPROCESS_CHOICES: Final = ("none", "failed", "all")
MAX_ACTIVE_RANGE: Final = (1, 64)
#: The partition unit of each partitioned flow (``ingest-daily`` runs days, ``forecast-hourly`` hours).
PARTITION_UNITS: Final = {"ingest": "day", "forecast": "hour"}
_DEPLOYMENT: Final = re.compile(r"^[^/\s][^/]{0,199}/[^/\s][^/]{0,199}$")
_ONE_DAY: Final = timedelta(days=1)
_RETRY_ON: Final = {"failed": frozenset({"failed", "cancelled"}), "none": frozenset()}


class BackfillPlan(BaseModel):
    """What a backfill does: ``submit`` in submission order, ``skipped`` partition -> why, and ``previous``
    the latest status of each submitted partition that ran before (these need their own idempotency key)."""

    model_config = ConfigDict(frozen=True)

    submit: list[str]
    skipped: dict[str, str] = Field(default_factory=dict)
    previous: dict[str, str] = Field(default_factory=dict)


def _error(code: str, parameter: str, message: str) -> ParameterError:
    return ParameterError(code, message, details={"errors": [{"loc": parameter, "code": code, "message": message}]})


def check_reprocess(reprocess: str) -> str:
    """``reprocess`` if it is one of ``none``, ``failed``, ``all``; else ``INVALID_CHOICE``."""
    if reprocess not in REPROCESS_CHOICES:
        raise _error("INVALID_CHOICE", "reprocess",
                     f"reprocess={reprocess!r} is not allowed: choose one of {list(REPROCESS_CHOICES)}")
    return reprocess


def check_max_active(max_active: int) -> int:
    """``max_active`` if it is an integer in 1-64; else ``PARAM_OUT_OF_RANGE``."""
    low, high = MAX_ACTIVE_RANGE
    if isinstance(max_active, bool) or not isinstance(max_active, int) or not low <= max_active <= high:
        raise _error("PARAM_OUT_OF_RANGE", "max_active",
                     f"max_active={max_active!r} is out of range: allowed {low} <= max_active <= {high}")
    return max_active


def check_deployment_name(deployment: str) -> tuple[str, str]:
    """``(flow name, deployment name)`` of ``flow/deployment``; else ``INVALID_DEPLOYMENT``."""
    if not isinstance(deployment, str) or not _DEPLOYMENT.fullmatch(deployment) \
            or deployment != deployment.strip():
        raise _error("INVALID_DEPLOYMENT", "deployment",
                     f"deployment={deployment!r} is not a deployment name: give FLOW/DEPLOYMENT, "
                     "e.g. ingest/ingest-daily")
    flow_name, name = deployment.split("/")
    return flow_name, name


def backfill_partitions(start: str, end: str, unit: str) -> list[str]:
    """Every ``unit`` partition from ``start`` to ``end``, both included. For hourly flows whole days are
    accepted too: ``2016-06-01``..``2016-06-02`` means every hour of both days."""
    if unit == "hour":
        first, last = parse_partition(start), parse_partition(end)
        if first.end - first.start == _ONE_DAY:
            start = f"{first.start:%Y-%m-%d}T00"
        if last.end - last.start == _ONE_DAY:
            end = f"{last.start:%Y-%m-%d}T23"
    return partitions_between(start, end, unit)


def idempotency_key(deployment: str, partition: str, backfill_id: str | None = None) -> str:
    """``backfill:{deployment}:{partition}`` for a first attempt; with ``backfill_id`` (a partition that
    ran before) ``backfill:{deployment}:{partition}:{backfill_id}``, since Prefect returns the existing
    flow run for a key it has seen."""
    key = f"backfill:{deployment}:{partition}"
    return f"{key}:{backfill_id}" if backfill_id else key


def _skip_reason(status: str, reprocess: str) -> str | None:
    """Why a partition whose latest run has ``status`` is skipped in ``reprocess`` mode (None: submit)."""
    if reprocess == "all":
        return None
    if status in _RETRY_ON[reprocess]:
        return None
    if status == "completed":
        return "already completed"
    if status in ("failed", "cancelled"):
        return f"latest run {status} (use reprocess=failed to run it again)"
    if status in ("running", "paused"):
        return f"a run is in progress ({status}; use reprocess=all to run it again)"
    return f"latest run is {status}"


def plan_backfill(partitions: Sequence[str], statuses: Mapping[str, str | None], reprocess: str = "none",
                  reverse: bool = False) -> BackfillPlan:
    """Plan a backfill over ``partitions`` (oldest first, as ``backfill_partitions`` gives them) from the
    latest run status of each (``None`` or absent: never run), following the module's reprocess table;
    ``reverse`` submits newest first. Duplicate partitions are planned once."""
    check_reprocess(reprocess)
    ordered = list(dict.fromkeys(partitions))
    if reverse:
        ordered.reverse()
    submit: list[str] = []
    skipped: dict[str, str] = {}
    previous: dict[str, str] = {}
    for partition in ordered:
        status = statuses.get(partition)
        if status is None:
            submit.append(partition)
            continue
        reason = _skip_reason(status, reprocess)
        if reason is None:
            submit.append(partition)
            previous[partition] = status
        else:
            skipped[partition] = reason
    return BackfillPlan(submit=submit, skipped=skipped, previous=previous)
