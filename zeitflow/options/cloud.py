"""Options of the cloud stage (stages.md §5): ``CloudOptions`` for ``fit_cloud`` (§5.2) and
``CloudInterpolateOptions`` for ``interpolate`` (§5.3).

Predecessor spellings (§0.6, §14) are accepted and normalised, so ``parameters_hash`` does not depend on
them: the parameter names ``REG``, ``TR``, ``TOL_CNT``, ``TOL_DEP`` (and ``max_time_span``/``intrplMax``,
``tss``, ``offset``, ``anchorTime``, ``decimalPrecision``/``dec`` for interpolation), the values
``'lin'`` → ``linear``, ``'cnt'`` → ``constant``, ``'dep'`` → ``proportional``, ``'ja'``/``'nein'`` for
booleans and ``'full'`` for ``decimals=None``. Giving a name and its predecessor spelling together raises
``MUTUALLY_EXCLUSIVE``. ``None`` for a field with a documented non-None default means that default (§0.6);
for ``tol_constant`` ``None`` is itself the default (derived from the data, §5.2).

Durations are checked on integer nanoseconds (§0.5). ``offset_minutes``, ``anchor`` and ``grid_only`` only
make sense with a grid, so giving one of them without ``step_minutes`` raises ``MISSING_PARAMETER``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_bool, as_decimals, as_float, as_int, as_utc, iso_z, rename_aliases
from zeitflow.stages.grid import NS_PER_MINUTE, GridRule, minutes_to_ns

__all__ = [
    "REGRESSIONS", "REGRESSION_ALIASES", "TOLERANCES", "TOLERANCE_ALIASES", "CloudInterpolateOptions",
    "CloudOptions",
]

REGRESSIONS: Final = ("linear", "poly2")
TOLERANCES: Final = ("constant", "proportional")
REGRESSION_ALIASES: Final = MappingProxyType({"lin": "linear"})
TOLERANCE_ALIASES: Final = MappingProxyType({"cnt": "constant", "dep": "proportional"})

TOL_RELATIVE_MAX: Final = 100.0
MIN_POINTS_RANGE: Final = (3, 1_000_000_000)
MAX_FIT_POINTS_RANGE: Final = (1_000, 10_000_000)
EQUATION_DECIMALS_MAX: Final = 12
MAX_GAP_MAX_MINUTES: Final = 525_600
STEP_MIN_NS: Final = 1_000_000_000  # 1/60 minute
STEP_MAX_NS: Final = 1440 * NS_PER_MINUTE
DECIMALS_MAX: Final = 15

_DEFAULTS: Final = MappingProxyType({
    "regression": "linear", "tolerance": "constant", "tol_relative": 0.1, "min_points": 100,
    "max_fit_points": 200_000, "seed": 42, "filter_target": True, "equation_decimals": 4,
    "max_gap_minutes": 60.0, "offset_minutes": 0.0, "grid_only": False,
})
_CLOUD_NAMES: Final = MappingProxyType({"REG": "regression", "TR": "tolerance", "TOL_CNT": "tol_constant",
                                        "TOL_DEP": "tol_relative"})
_INTERPOLATE_NAMES: Final = MappingProxyType({
    "max_time_span": "max_gap_minutes", "intrplMax": "max_gap_minutes", "tss": "step_minutes",
    "offset": "offset_minutes", "anchorTime": "anchor", "decimalPrecision": "decimals", "dec": "decimals",
})
_PREDECESSOR: Final = MappingProxyType({
    "regression": "REG", "tolerance": "TR", "tol_constant": "TOL_CNT", "tol_relative": "TOL_DEP",
    "max_gap_minutes": "max_time_span", "step_minutes": "tss", "decimals": "decimalPrecision",
})


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _suffix(name: str) -> str:
    return f" (predecessor: {_PREDECESSOR[name]})" if name in _PREDECESSOR else ""


def _choice(name: str, value: Any, allowed: tuple[str, ...], aliases: Mapping[str, str]) -> Any:
    """None → default; a predecessor spelling → its name; anything else not allowed → INVALID_CHOICE."""
    if value is None:
        return _DEFAULTS[name]
    if not isinstance(value, str):
        raise param_error("INVALID_CHOICE", f"{name}={value!r} is not allowed: choose one of {list(allowed)}")
    text = value.strip()
    text = aliases.get(text, text)
    check_choice(name, text, allowed)
    return text


def _as_bool(name: str, value: Any) -> Any:
    """'ja'/'nein' (yes/no, true/false in any case) → bool; None → the default."""
    return _DEFAULTS[name] if value is None else as_bool(value)


def _minutes_in(name: str, value: float, low_ns: int, high_ns: int, low_text: str, high_text: str) -> float:
    """A finite number of minutes whose integer-ns value lies in [low_ns, high_ns] (§0.5)."""
    check_range(name, value, -math.inf, math.inf)  # finiteness
    if not low_ns <= minutes_to_ns(value) <= high_ns:
        raise param_error(
            "PARAM_OUT_OF_RANGE",
            f"{name}={value!r} is out of range: allowed {low_text} <= {name} <= {high_text}{_suffix(name)}",
        )
    return value


# ------------------------------------------------------------------------------------------------
# fit_cloud (§5.2)
# ------------------------------------------------------------------------------------------------


class CloudOptions(Options):
    """How ``fit_cloud`` fits the regression and builds the tolerance band (§5.2)."""

    regression: str = "linear"
    tolerance: str = "constant"
    tol_constant: float | None = None
    tol_relative: float = 0.1
    min_points: int = 100
    max_fit_points: int = 200_000
    seed: int = 42
    filter_target: bool = True
    equation_decimals: int = 4

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _CLOUD_NAMES, set(cls.model_fields))

    @field_validator("regression", mode="before")
    @classmethod
    def _regression(cls, value: Any) -> Any:
        return _choice("regression", value, REGRESSIONS, REGRESSION_ALIASES)

    @field_validator("tolerance", mode="before")
    @classmethod
    def _tolerance(cls, value: Any) -> Any:
        return _choice("tolerance", value, TOLERANCES, TOLERANCE_ALIASES)

    @field_validator("tol_constant", "tol_relative", mode="before")
    @classmethod
    def _floats_in(cls, value: Any, info: Any) -> Any:
        if value is None:
            return _DEFAULTS.get(info.field_name)  # tol_constant: None is its default
        return as_float(info.field_name, value)

    @field_validator("tol_constant")
    @classmethod
    def _tol_constant(cls, value: float | None) -> float | None:
        check_range("tol_constant", value, 0, math.inf, low_text="0", predecessor="TOL_CNT")
        return value

    @field_validator("tol_relative")
    @classmethod
    def _tol_relative(cls, value: float) -> float:
        check_range("tol_relative", value, 0, TOL_RELATIVE_MAX, predecessor="TOL_DEP")
        return value

    @field_validator("min_points", "max_fit_points", "seed", "equation_decimals", mode="before")
    @classmethod
    def _integers_in(cls, value: Any, info: Any) -> Any:
        if value is None:
            return _DEFAULTS[info.field_name]
        return as_int(info.field_name, value)

    @field_validator("min_points")
    @classmethod
    def _min_points(cls, value: int) -> int:
        check_range("min_points", value, *MIN_POINTS_RANGE)
        return value

    @field_validator("max_fit_points")
    @classmethod
    def _max_fit_points(cls, value: int) -> int:
        check_range("max_fit_points", value, *MAX_FIT_POINTS_RANGE)
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        check_range("seed", value, 0, math.inf)
        return value

    @field_validator("equation_decimals")
    @classmethod
    def _equation_decimals(cls, value: int) -> int:
        check_range("equation_decimals", value, 0, EQUATION_DECIMALS_MAX)
        return value

    @field_validator("filter_target", mode="before")
    @classmethod
    def _filter_target(cls, value: Any) -> Any:
        return _as_bool("filter_target", value)


# ------------------------------------------------------------------------------------------------
# interpolate (§5.3)
# ------------------------------------------------------------------------------------------------


class CloudInterpolateOptions(Options):
    """How ``interpolate`` fills gaps (linear in time, limit in minutes) and adds grid points (§5.3)."""

    max_gap_minutes: float = 60.0
    columns: list[str] | None = None
    step_minutes: float | None = None
    offset_minutes: float = 0.0
    anchor: datetime | None = None
    grid_only: bool = False
    decimals: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _INTERPOLATE_NAMES, set(cls.model_fields))

    @field_validator("max_gap_minutes", "offset_minutes", "step_minutes", mode="before")
    @classmethod
    def _floats_in(cls, value: Any, info: Any) -> Any:
        if value is None:
            return _DEFAULTS.get(info.field_name)  # step_minutes: None means no grid
        return as_float(info.field_name, value)

    @field_validator("max_gap_minutes")
    @classmethod
    def _max_gap(cls, value: float) -> float:
        return _minutes_in("max_gap_minutes", value, 0, MAX_GAP_MAX_MINUTES * NS_PER_MINUTE, "0",
                           f"{MAX_GAP_MAX_MINUTES}")

    @field_validator("step_minutes")
    @classmethod
    def _step(cls, value: float | None) -> float | None:
        if value is None:
            return None
        return _minutes_in("step_minutes", value, STEP_MIN_NS, STEP_MAX_NS, "1/60", "1440")

    @field_validator("offset_minutes")
    @classmethod
    def _offset(cls, value: float) -> float:
        check_range("offset_minutes", value, -math.inf, math.inf)
        return value

    @field_validator("anchor")
    @classmethod
    def _anchor(cls, value: datetime | None) -> datetime | None:
        return as_utc("anchor", value)

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise param_error("MISSING_PARAMETER", "columns=[] names no channel: give None to use every channel")
        for i, name in enumerate(value):
            if not name:
                raise param_error("MISSING_PARAMETER", f"columns[{i}] is empty: give a channel name")
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise param_error("PARAM_COMPARISON_FAILED", f"columns lists {repeated} more than once")
        return value

    @field_validator("grid_only", mode="before")
    @classmethod
    def _grid_only(cls, value: Any) -> Any:
        return _as_bool("grid_only", value)

    @field_validator("decimals", mode="before")
    @classmethod
    def _decimals_in(cls, value: Any) -> Any:
        return as_decimals(value)

    @field_validator("decimals")
    @classmethod
    def _decimals(cls, value: int | None) -> int | None:
        check_range("decimals", value, 0, DECIMALS_MAX, predecessor="decimalPrecision")
        return value

    @model_validator(mode="after")
    def _relations(self) -> CloudInterpolateOptions:
        if self.anchor is not None and minutes_to_ns(self.offset_minutes) != 0:
            raise param_error(
                "MUTUALLY_EXCLUSIVE",
                f"anchor={iso_z(self.anchor)} and offset_minutes={self.offset_minutes!r} must not be given together: "
                "the anchor fixes the phase of the grid",
            )
        if self.step_minutes is None:
            given = [name for name, on in (
                ("offset_minutes", minutes_to_ns(self.offset_minutes) != 0),
                ("anchor", self.anchor is not None),
                ("grid_only", self.grid_only),
            ) if on]
            if given:
                raise param_error(
                    "MISSING_PARAMETER",
                    f"{given[0]} needs a grid: step_minutes is required with {', '.join(given)} "
                    "(allowed 1/60 <= step_minutes <= 1440)",
                )
        return self

    def grid_rule(self) -> GridRule | None:
        """The grid of §2.4 in integer ns, or None without ``step_minutes``."""
        if self.step_minutes is None:
            return None
        return GridRule.from_parameters(self.step_minutes, self.offset_minutes, self.anchor)
