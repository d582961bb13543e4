"""Options of the resample stage (stages.md §2.3) and the per-channel ``ColumnMethod`` that
align (§4.3) reuses.

Durations are checked on integer nanoseconds (§0.5), so ``step_minutes=1/60`` is exactly the
lower limit. Datetimes must be tz-aware and are stored in UTC (``datetime.timezone.utc``) so the
same instant in two zones hashes alike (§0.6). A required field that is absent raises
``MISSING_PARAMETER`` (not pydantic's ``missing``).

The grid-size limit (§2.4) depends on the data range, so the stage raises ``GRID_TOO_LARGE`` at
run time. When both ``start`` and ``end`` are given, the grid can never be larger than the
aligned points in [start, end]; if that already exceeds the limit, validation fails with
``PARAM_COMPARISON_FAILED`` naming ``start``/``end``/``step_minutes``, before any data is read.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Final

from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_minutes, as_utc, check_decimals, iso_z, recode_missing
from zeitflow.stages.grid import MAX_GRID_POINTS, NS_PER_MINUTE, GridRule, minutes_to_ns, to_ns

__all__ = [
    "INTERPOLATION_METHODS", "METHODS", "METHOD_ALIASES", "WINDOW_METHODS", "ColumnMethod", "ResampleOptions",
    "ResolvedMethod", "normalise_method",
]

METHODS: Final = ("mean", "interpolate", "nearest", "nearest_mean", "nearest_max_delta")
WINDOW_METHODS: Final = ("mean", "nearest", "nearest_mean")
INTERPOLATION_METHODS: Final = ("interpolate", "nearest_max_delta")
# Predecessor spellings (§0.6, §14).
METHOD_ALIASES: Final = {
    "intrpl": "interpolate",
    "nearest (mean)": "nearest_mean",
    "nearest (max. delta)": "nearest_max_delta",
}
STEP_MIN_NS: Final = 1_000_000_000  # 1/60 minute
STEP_MAX_NS: Final = 1440 * NS_PER_MINUTE
MAX_GAP_MAX_MINUTES: Final = 525_600
DEFAULT_MAX_GAP_MINUTES: Final = 60.0

_PREDECESSOR: Final = {
    "step_minutes": "tss", "offset_minutes": "offset", "anchor": "anchorTime", "method": "mode",
    "max_gap_minutes": "intrplMax", "decimals": "decimalPrecision",
}
_REQUIRED_HINTS: Final = {
    "step_minutes": "step_minutes is required: the grid step in minutes, 1/60 <= step_minutes <= 1440 "
                    "(predecessor: tss)",
    "method": f"method is required: one of {list(METHODS)} (predecessor: mode)",
}


def normalise_method(name: str, value: Any, *, required: bool) -> Any:
    """Map predecessor spellings onto the snake_case names; reject unknown names (INVALID_CHOICE)
    and an empty or absent method where one is required (MISSING_PARAMETER)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise param_error("MISSING_PARAMETER", f"{name}={value!r} is empty: choose one of {list(METHODS)}")
        return None
    if not isinstance(value, str):
        raise param_error("INVALID_CHOICE", f"{name}={value!r} is not allowed: choose one of {list(METHODS)}")
    text = value.strip()
    text = METHOD_ALIASES.get(text, text)
    check_choice(name, text, METHODS)
    return text


def _check_max_gap(value: float | None) -> float | None:
    """0 <= max_gap_minutes <= 525,600, compared in integer ns."""
    if value is None:
        return None
    check_range("max_gap_minutes", value, -math.inf, math.inf)  # finiteness
    if not 0 <= minutes_to_ns(value) <= MAX_GAP_MAX_MINUTES * NS_PER_MINUTE:
        raise param_error(
            "PARAM_OUT_OF_RANGE",
            f"max_gap_minutes={value!r} is out of range: allowed 0 <= max_gap_minutes <= {MAX_GAP_MAX_MINUTES} "
            "(predecessor: intrplMax)",
        )
    return value


class ColumnMethod(Options):
    """Per-channel override of ``method``, ``max_gap_minutes`` and ``decimals`` (§2.3, §4.3).

    A field left unset inherits the stage default. For ``decimals`` an explicit ``None`` (or
    ``'full'``) means full precision and overrides a rounding default, so unset fields are left
    out of ``model_dump`` and the two cases hash differently.
    """

    method: str | None = None
    max_gap_minutes: float | None = None
    decimals: int | None = None

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return normalise_method("method", value, required=False)

    @field_validator("max_gap_minutes", mode="before")
    @classmethod
    def _max_gap_before(cls, value: Any) -> Any:
        return as_minutes("max_gap_minutes", value)

    @field_validator("max_gap_minutes")
    @classmethod
    def _max_gap(cls, value: float | None) -> float | None:
        return _check_max_gap(value)

    @field_validator("decimals", mode="before")
    @classmethod
    def _decimals(cls, value: Any) -> Any:
        return check_decimals(value)

    @model_serializer(mode="wrap")
    def _set_fields_only(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump only real overrides: ``None`` for method/max_gap_minutes (inherit) is left out,
        ``decimals`` is kept whenever it was given, because an explicit None switches rounding off."""
        data = handler(self)
        return {
            k: v for k, v in data.items()
            if v is not None or (k == "decimals" and "decimals" in self.model_fields_set)
        }

    def resolve(self, method: str | None, max_gap_minutes: float, decimals: int | None) -> ResolvedMethod:
        """This override applied on top of the given defaults."""
        fields = self.model_fields_set
        return ResolvedMethod(
            method=self.method if self.method is not None else method,
            max_gap_minutes=self.max_gap_minutes if self.max_gap_minutes is not None else max_gap_minutes,
            decimals=self.decimals if "decimals" in fields else decimals,
        )


class ResolvedMethod(Options):
    """The method settings that apply to one channel after overrides (reported per channel)."""

    method: str | None
    max_gap_minutes: float
    decimals: int | None

    @property
    def max_gap_ns(self) -> int:
        """``max_gap_minutes`` in integer ns."""
        return minutes_to_ns(self.max_gap_minutes)


def method_entries(field: str, value: Any, keys: str) -> Any:
    """Normalise a mapping of per-channel (or per-source) method entries: None means no entries and
    a plain string is short for ``{"method": ...}``; keys must be non-empty names."""
    if value is None:
        return {}
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not key:
                raise param_error("MISSING_PARAMETER", f"{field} key {key!r} must be a non-empty {keys}")
        return {k: {"method": v} if isinstance(v, str) else v for k, v in value.items()}
    return value


def check_grid_relations(options: Any, *, start_end_note: str = "") -> None:
    """Relations between the grid fields of resample and align options: anchor excludes an offset,
    start precedes end, and start/end bounds give at most ``MAX_GRID_POINTS`` grid points."""
    if options.anchor is not None and minutes_to_ns(options.offset_minutes) != 0:
        raise param_error(
            "MUTUALLY_EXCLUSIVE",
            f"anchor={iso_z(options.anchor)} and offset_minutes={options.offset_minutes!r} must not be given "
            "together: the anchor fixes the phase of the grid",
        )
    if options.start is None or options.end is None:
        return
    if options.start > options.end:
        raise param_error(
            "PARAM_COMPARISON_FAILED",
            f"start={iso_z(options.start)} must not be after end={iso_z(options.end)}{start_end_note}",
        )
    points = options.grid_rule().count(to_ns(options.start), to_ns(options.end))
    if points > MAX_GRID_POINTS:
        raise param_error(
            "PARAM_COMPARISON_FAILED",
            f"start={iso_z(options.start)} to end={iso_z(options.end)} with step_minutes={options.step_minutes!r} "
            f"spans {points:,} grid points; at most {MAX_GRID_POINTS:,} are allowed: use a larger step_minutes "
            "or a narrower start/end",
        )


class ResampleOptions(Options):
    """How ``resample`` puts a frame onto a regular grid (§2.3, grid rule §2.4, methods §2.5)."""

    step_minutes: float
    offset_minutes: float = 0.0
    anchor: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    method: str
    max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES
    decimals: int | None = None
    column_methods: dict[str, ColumnMethod] = Field(default_factory=dict)

    # -- required fields: MISSING_PARAMETER instead of pydantic's "missing" ----------------------

    @model_validator(mode="wrap")
    @classmethod
    def _coded_missing(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise recode_missing(exc, _REQUIRED_HINTS) from None

    # -- single fields -------------------------------------------------------------------------

    @field_validator("step_minutes", "offset_minutes", "max_gap_minutes", mode="before")
    @classmethod
    def _floats(cls, value: Any, info: Any) -> Any:
        if value is None:  # None means the documented default (§0.6); step_minutes has none
            if info.field_name == "step_minutes":
                raise param_error("MISSING_PARAMETER", _REQUIRED_HINTS["step_minutes"])
            return 0.0 if info.field_name == "offset_minutes" else DEFAULT_MAX_GAP_MINUTES
        return as_minutes(info.field_name, value)

    @field_validator("step_minutes")
    @classmethod
    def _step(cls, value: float) -> float:
        check_range("step_minutes", value, -math.inf, math.inf)  # finiteness
        if not STEP_MIN_NS <= minutes_to_ns(value) <= STEP_MAX_NS:
            raise param_error(
                "PARAM_OUT_OF_RANGE",
                f"step_minutes={value!r} is out of range: allowed 1/60 <= step_minutes <= 1440 (predecessor: tss)",
            )
        return value

    @field_validator("offset_minutes")
    @classmethod
    def _offset(cls, value: float) -> float:
        check_range("offset_minutes", value, -math.inf, math.inf)
        return value

    @field_validator("max_gap_minutes")
    @classmethod
    def _max_gap(cls, value: float) -> float:
        return _check_max_gap(value)

    @field_validator("anchor", "start", "end")
    @classmethod
    def _instants(cls, value: datetime | None, info: Any) -> datetime | None:
        return as_utc(info.field_name, value)

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        return normalise_method("method", value, required=True)

    @field_validator("decimals", mode="before")
    @classmethod
    def _decimals(cls, value: Any) -> Any:
        return check_decimals(value)

    @field_validator("column_methods", mode="before")
    @classmethod
    def _column_methods(cls, value: Any) -> Any:
        return method_entries("column_methods", value, "channel name")

    # -- relations -----------------------------------------------------------------------------

    @model_validator(mode="after")
    def _relations(self) -> ResampleOptions:
        check_grid_relations(self)
        return self

    # -- derived -------------------------------------------------------------------------------

    def grid_rule(self) -> GridRule:
        """The grid of §2.4 (step, phase, anchor) in integer ns."""
        return GridRule.from_parameters(self.step_minutes, self.offset_minutes, self.anchor)

    def method_for(self, channel: str) -> ResolvedMethod:
        """The method, gap limit and rounding that apply to ``channel``."""
        override = self.column_methods.get(channel)
        if override is None:
            return ResolvedMethod(method=self.method, max_gap_minutes=self.max_gap_minutes, decimals=self.decimals)
        return override.resolve(self.method, self.max_gap_minutes, self.decimals)

