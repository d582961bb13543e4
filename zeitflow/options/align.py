"""Options of the align stage (stages.md §4.3).

Per-channel and per-source overrides are the ``ColumnMethod`` of resample (§2.3), reused
unchanged: ``methods`` maps a channel name or a source name to one. Grid fields behave exactly as
in ``ResampleOptions``: durations are checked on integer nanoseconds (§0.5), datetimes must be
tz-aware and are stored in UTC so the same instant in two zones hashes alike (§0.6), and a grid
that already exceeds 5,000,000 points between given ``start`` and ``end`` is rejected at
validation with ``PARAM_COMPARISON_FAILED``.

Predecessor parameter names (``timeStepSize``, ``offset``, ``startTime``, ``endTime``,
``intrpl_max``, ``decimalPrecision``) are accepted as aliases and renamed, so they do not change
``parameters_hash``; giving a name and its alias together is ``MUTUALLY_EXCLUSIVE``. Predecessor
method spellings (``intrpl``, ``nearest (mean)``, ``nearest (max. delta)``) are normalised.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from pydantic import (
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from zeitflow.options.base import Options, check_choice, param_error
from zeitflow.options.common import as_minutes, as_utc, check_decimals, recode_missing, rename_aliases
from zeitflow.options.resample import (
    DEFAULT_MAX_GAP_MINUTES,
    MAX_GAP_MAX_MINUTES,
    STEP_MAX_NS,
    STEP_MIN_NS,
    ColumnMethod,
    ResolvedMethod,
    check_grid_relations,
    method_entries,
    normalise_method,
)
from zeitflow.stages.grid import NS_PER_MINUTE, GridRule, minutes_to_ns

__all__ = ["RANGE_MODES", "AlignOptions", "ColumnMethod", "ResolvedMethod"]

RANGE_MODES: Final = ("intersection", "union")

# Predecessor parameter names (§4.3) -> Zeitflow names.
_ALIASES: Final = MappingProxyType({
    "timeStepSize": "step_minutes",
    "offset": "offset_minutes",
    "startTime": "start",
    "endTime": "end",
    "intrpl_max": "max_gap_minutes",
    "decimalPrecision": "decimals",
})
_STEP_HINT: Final = (
    "step_minutes is required: the grid step in minutes, 1/60 <= step_minutes <= 1440 (predecessor: timeStepSize)"
)


def _in_ns_range(name: str, value: float, low_ns: int, high_ns: int, allowed: str, predecessor: str) -> float:
    """PARAM_NOT_FINITE / PARAM_OUT_OF_RANGE, comparing ``round(value · 60 · 10⁹)`` with the limits."""
    if not math.isfinite(value):
        raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
    if not low_ns <= minutes_to_ns(value) <= high_ns:
        raise param_error(
            "PARAM_OUT_OF_RANGE",
            f"{name}={value!r} is out of range: allowed {allowed} (predecessor: {predecessor})",
        )
    return value


class AlignOptions(Options):
    """How ``align`` brings several sources onto one grid (§4.3; grid rule §2.4, methods §2.5).

    ``methods`` keys name a channel or a source. An entry under a source name applies to every
    channel of that source, unless the name is also a channel name (then it is that channel's
    entry). A channel entry overrides a source entry field by field; fields left unset inherit
    ``default_method``, ``max_gap_minutes`` and ``decimals``.
    """

    step_minutes: float
    offset_minutes: float = 0.0
    anchor: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    range_mode: str = "intersection"
    methods: dict[str, ColumnMethod] = Field(default_factory=dict)
    default_method: str | None = None
    max_gap_minutes: float = DEFAULT_MAX_GAP_MINUTES
    decimals: int | None = None

    # -- names: predecessor aliases, unknown keys, MISSING_PARAMETER ----------------------------

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _ALIASES, set(cls.model_fields))

    @model_validator(mode="wrap")
    @classmethod
    def _coded_missing(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(data)
        except ValidationError as exc:
            raise recode_missing(exc, {"step_minutes": _STEP_HINT}) from None

    # -- single fields -------------------------------------------------------------------------

    @field_validator("step_minutes", "offset_minutes", "max_gap_minutes", mode="before")
    @classmethod
    def _floats(cls, value: Any, info: Any) -> Any:
        if value is None:  # None means the documented default (§0.6); step_minutes has none
            if info.field_name == "step_minutes":
                raise param_error("MISSING_PARAMETER", _STEP_HINT)
            return 0.0 if info.field_name == "offset_minutes" else DEFAULT_MAX_GAP_MINUTES
        return as_minutes(info.field_name, value)

    @field_validator("step_minutes")
    @classmethod
    def _step(cls, value: float) -> float:
        return _in_ns_range("step_minutes", value, STEP_MIN_NS, STEP_MAX_NS, "1/60 <= step_minutes <= 1440",
                            "timeStepSize")

    @field_validator("offset_minutes")
    @classmethod
    def _offset(cls, value: float) -> float:
        if not math.isfinite(value):
            raise param_error("PARAM_NOT_FINITE", f"offset_minutes={value} is not finite")
        if not math.isfinite(value * NS_PER_MINUTE):  # the phase is taken from round(minutes · 60 · 10⁹)
            raise param_error("PARAM_OUT_OF_RANGE",
                              f"offset_minutes={value!r} is out of range: its nanoseconds overflow a float "
                              "(predecessor: offset)")
        return value

    @field_validator("max_gap_minutes")
    @classmethod
    def _max_gap(cls, value: float) -> float:
        return _in_ns_range("max_gap_minutes", value, 0, MAX_GAP_MAX_MINUTES * NS_PER_MINUTE,
                            f"0 <= max_gap_minutes <= {MAX_GAP_MAX_MINUTES}", "intrpl_max")

    @field_validator("anchor", "start", "end")
    @classmethod
    def _instants(cls, value: datetime | None, info: Any) -> datetime | None:
        return as_utc(info.field_name, value)

    @field_validator("range_mode", mode="before")
    @classmethod
    def _range_mode(cls, value: Any) -> Any:
        if value is None:
            return "intersection"
        if not isinstance(value, str):
            raise param_error("INVALID_CHOICE",
                              f"range_mode={value!r} is not allowed: choose one of {list(RANGE_MODES)}")
        text = value.strip()
        check_choice("range_mode", text, RANGE_MODES)
        return text

    @field_validator("default_method", mode="before")
    @classmethod
    def _default_method(cls, value: Any) -> Any:
        return normalise_method("default_method", value, required=False)

    @field_validator("decimals", mode="before")
    @classmethod
    def _decimals(cls, value: Any) -> Any:
        return check_decimals(value)

    @field_validator("methods", mode="before")
    @classmethod
    def _methods(cls, value: Any) -> Any:
        return method_entries("methods", value, "channel or source name")

    # -- relations -----------------------------------------------------------------------------

    @model_validator(mode="after")
    def _relations(self) -> AlignOptions:
        check_grid_relations(self, start_end_note=" (predecessor: startTime, endTime)")
        return self

    # -- derived -------------------------------------------------------------------------------

    def grid_rule(self) -> GridRule:
        """The requested grid (§2.4): step, phase and anchor in integer ns."""
        return GridRule.from_parameters(self.step_minutes, self.offset_minutes, self.anchor)

    def entries_for(self, source: str, channel: str, channels: Collection[str]) -> list[ColumnMethod]:
        """The ``methods`` entries that apply to ``channel`` of ``source``, weakest first: the source
        entry (only if ``source`` is no name in ``channels``, the channels of every source), then the
        channel entry."""
        entries = []
        if source not in channels and source in self.methods:
            entries.append(self.methods[source])
        if channel in self.methods:
            entries.append(self.methods[channel])
        return entries

    def method_for(self, source: str, channel: str, channels: Collection[str]) -> ResolvedMethod:
        """Method, gap limit and rounding for ``channel`` of ``source``: the defaults, overridden by
        the source entry, overridden by the channel entry. ``method`` is None if none is set."""
        resolved = ResolvedMethod(method=self.default_method, max_gap_minutes=self.max_gap_minutes,
                                  decimals=self.decimals)
        for entry in self.entries_for(source, channel, channels):
            resolved = entry.resolve(resolved.method, resolved.max_gap_minutes, resolved.decimals)
        return resolved

