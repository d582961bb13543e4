"""Partitions: the time window a scheduled or backfilled run processes (architecture §5-6).

A partition is given as text and always means a half-open UTC window [start, end):

* ``YYYY-MM-DD``: one UTC day (the unit of ``ingest-daily`` and of date backfills);
* ``YYYY-MM-DDTHH``: one UTC hour (the unit of ``forecast-hourly``);
* ``START/END``: any window between two ISO 8601 instants with an explicit offset (``Z`` or ``±HH:MM``).

Its ``key`` is safe as a storage path segment (``[A-Za-z0-9_.-]`` only), so a partition can never escape its
folder. Anything else is ``ParameterError`` ``INVALID_PARTITION``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Final

import pandas as pd
from pydantic import BaseModel, ConfigDict

from zeitflow.errors import ParameterError

__all__ = ["Partition", "parse_partition", "partition_of", "partitions_between"]

_DAY: Final = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HOUR: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}$")
_INSTANT: Final = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$")
UNITS: Final = ("day", "hour")


class Partition(BaseModel):
    """One partition: its text, a path-safe key, and its UTC window [start, end)."""

    model_config = ConfigDict(frozen=True)

    text: str
    key: str
    start: datetime
    end: datetime

    def contains(self, index: pd.DatetimeIndex) -> pd.Series | object:
        """Boolean mask of the stamps of ``index`` inside [start, end)."""
        start, end = pd.Timestamp(self.start), pd.Timestamp(self.end)
        return (index >= start) & (index < end)


def _error(text: object, why: str) -> ParameterError:
    return ParameterError(
        "INVALID_PARTITION",
        f"partition={text!r} is not a partition: {why}; give YYYY-MM-DD (a UTC day), YYYY-MM-DDTHH (a UTC hour) "
        "or START/END (two ISO instants with an offset, e.g. 2016-06-01T00:00Z/2016-06-01T06:00Z)",
        details={"errors": [{"loc": "partition", "code": "INVALID_PARTITION", "message": why}]},
    )


def _instant(text: str, whole: str) -> datetime:
    if not _INSTANT.fullmatch(text):
        raise _error(whole, f"{text!r} is not an ISO instant with an offset")
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _error(whole, str(exc)) from None
    return value.astimezone(UTC)


def parse_partition(text: str) -> Partition:
    """The partition ``text`` names, or ``INVALID_PARTITION`` (control characters, paths and other forms
    included)."""
    if not isinstance(text, str) or not text or len(text) > 64:
        raise _error(text, "expected 1-64 characters of text")
    try:
        if _DAY.fullmatch(text):
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return Partition(text=text, key=text, start=start, end=start + timedelta(days=1))
        if _HOUR.fullmatch(text):
            start = datetime.fromisoformat(f"{text}:00:00+00:00")
            return Partition(text=text, key=text, start=start, end=start + timedelta(hours=1))
    except ValueError as exc:
        raise _error(text, str(exc)) from None
    first, sep, last = text.partition("/")
    if not sep:
        raise _error(text, "unknown form")
    start, end = _instant(first, text), _instant(last, text)
    if end <= start:
        raise _error(text, "the end must be after the start")
    key = f"{start:%Y%m%dT%H%M%S}Z-{end:%Y%m%dT%H%M%S}Z"
    return Partition(text=text, key=key, start=start, end=end)


def partition_of(instant: datetime, unit: str = "day") -> str:
    """The day or hour partition that contains ``instant`` (a scheduled start time, say)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}")
    moment = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
    return f"{moment:%Y-%m-%d}" if unit == "day" else f"{moment:%Y-%m-%dT%H}"


def partitions_between(start: str, end: str, unit: str = "day") -> list[str]:
    """Every day (or hour) partition from ``start`` to ``end``, both included, given as partitions of that
    unit (``2016-06-01``, ``2016-06-05``)."""
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {UNITS}")
    first, last = parse_partition(start), parse_partition(end)
    step = timedelta(days=1) if unit == "day" else timedelta(hours=1)
    if first.end - first.start != step or last.end - last.start != step:
        raise _error(f"{start}..{end}", f"both ends must be {unit} partitions")
    if last.start < first.start:
        raise _error(f"{start}..{end}", "the end is before the start")
    count = int((last.start - first.start) / step) + 1
    return [partition_of(first.start + i * step, unit) for i in range(count)]
