"""Validation helpers shared by the options modules (stages.md §0.6): predecessor-name renaming,
'ja'/'nein' booleans, integer / float / decimals checks, UTC datetimes and MISSING_PARAMETER
recoding. Every helper raises the same coded errors, with the same messages, in every module."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import InitErrorDetails

from zeitflow.options.base import check_range, param_error

__all__ = [
    "DECIMALS_MAX", "as_bool", "as_decimals", "as_float", "as_int", "as_minutes", "as_utc", "check_decimals", "iso_z",
    "recode_missing", "rename_aliases",
]

DECIMALS_MAX: Final = 15

_TRUE: Final = frozenset({"ja", "yes", "true"})
_FALSE: Final = frozenset({"nein", "no", "false"})


def rename_aliases(cls_name: str, data: Any, aliases: Mapping[str, str], known: set[str]) -> Any:
    """Map predecessor names onto field names, then reject unknown keys (UNKNOWN_PARAMETER).

    A name given together with its predecessor spelling raises MUTUALLY_EXCLUSIVE; anything but a
    dict is passed on to pydantic unchanged."""
    if not isinstance(data, dict):
        return data
    out: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, value in data.items():
        target = aliases.get(key, key) if isinstance(key, str) else key
        if target in out:
            raise param_error(
                "MUTUALLY_EXCLUSIVE", f"{origin[target]!r} and {key!r} both set {target}; give only one of them"
            )
        out[target] = value
        origin[target] = key
    unknown = [k for k in out if k not in known]
    if unknown:
        raise param_error(
            "UNKNOWN_PARAMETER",
            f"unknown parameter {origin.get(unknown[0], unknown[0])!r} for {cls_name}; known: {sorted(known)}",
        )
    return out


def as_bool(value: Any) -> Any:
    """'ja'/'nein' (yes/no, true/false in any case) -> bool; other values go to pydantic."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    return value


def as_int(name: str, value: Any) -> Any:
    """Reject booleans and non-integral numbers with PARAM_NOT_INTEGER / PARAM_NOT_FINITE."""
    if isinstance(value, bool):
        raise param_error("PARAM_NOT_INTEGER", f"{name}={value!r} is not an integer")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
        if not value.is_integer():
            raise param_error("PARAM_NOT_INTEGER", f"{name}={value!r} is not an integer")
        return int(value)
    return value


def as_float(name: str, value: Any) -> Any:
    """Reject booleans (pydantic reads True as 1.0) and non-finite floats (PARAM_NOT_FINITE)."""
    if isinstance(value, bool):
        raise param_error("float_type", f"{name}={value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
    return value


def as_minutes(name: str, value: Any) -> Any:
    """``as_float`` for a number of minutes: the boolean message says "is not a number of minutes"."""
    if isinstance(value, bool):
        raise param_error("float_type", f"{name}={value!r} is not a number of minutes")
    if isinstance(value, float) and not math.isfinite(value):
        raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
    return value


def as_decimals(value: Any) -> Any:
    """``'full'`` (any case) means full precision (None, §0.9); otherwise ``as_int('decimals', value)``.
    The range 0-15 is left to the caller."""
    if isinstance(value, str) and value.strip().lower() == "full":
        return None
    return as_int("decimals", value)


def check_decimals(value: Any) -> Any:
    """``as_decimals`` plus the range check 0 <= decimals <= 15 (predecessor: decimalPrecision)."""
    value = as_decimals(value)
    if isinstance(value, int):
        check_range("decimals", value, 0, DECIMALS_MAX, predecessor="decimalPrecision")
    return value


def as_utc(name: str, value: datetime | None) -> datetime | None:
    """Reject naive datetimes (PARAM_NOT_TZ_AWARE); convert aware ones to ``timezone.utc``."""
    if value is None:
        return None
    if value.tzinfo is None or value.utcoffset() is None:
        raise param_error(
            "PARAM_NOT_TZ_AWARE",
            f"{name}={value.isoformat()} has no time zone: give an offset or 'Z', e.g. {value.isoformat()}Z",
        )
    utc = value.astimezone(UTC)
    return datetime(utc.year, utc.month, utc.day, utc.hour, utc.minute, utc.second, utc.microsecond, tzinfo=UTC)


def iso_z(value: datetime) -> str:
    """ISO 8601 text of ``value`` with ``+00:00`` written as ``Z`` (for messages and reports)."""
    return value.isoformat().replace("+00:00", "Z")


def recode_missing(exc: ValidationError, hints: Mapping[str, str]) -> ValidationError:
    """The same errors, with pydantic's ``missing`` for a top-level field named in ``hints`` recoded
    as MISSING_PARAMETER with that hint (§2.3); every other error keeps its type and message."""
    line_errors: list[InitErrorDetails] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        if err["type"] == "missing" and len(loc) == 1 and loc[0] in hints:
            error = param_error("MISSING_PARAMETER", hints[str(loc[0])])
        else:
            error = param_error(err["type"], err["msg"])
        line_errors.append({"type": error, "loc": loc, "input": err.get("input")})
    return ValidationError.from_exception_data(exc.title, line_errors)
