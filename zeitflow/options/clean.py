"""Options of the clean stage (stages.md §3.3, §3.8) and the interactive ``ThresholdAnswer`` (§3.9).

Every step is switched off by ``None`` (or ``false`` for ``drop_zeros``); the number 0 is never a
synonym for "off" (§0.6): where 0 is outside a parameter's range it is rejected with
``PARAM_OUT_OF_RANGE`` and a hint to use ``None``. Predecessor spellings (§14) are accepted:
parameter names such as ``eqMax``/``gapMax``/``lgMin``, ``'ja'``/``'nein'`` for booleans and
``'full'`` for ``decimals=None``. They are normalised, so ``parameters_hash`` does not depend on them.

The STL period check needs the grid step, which belongs to the data, not to these options: it is a
runtime check (``CleanError`` ``STL_PERIOD_NOT_ALIGNED``, §3.8). The task layer can run it before
any data is read with ``zeitflow.stages.clean.check_grid_step(options, step_minutes)``.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Literal

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_bool, as_decimals, as_int, rename_aliases

__all__ = [
    "PHASES", "RULE_SETS", "CleanOptions", "LstmCleanOptions", "StlOptions", "ThresholdAnswer",
]

RULE_SETS = ("classic", "anomaly")
PHASES = ("stl", "lstm")

# Predecessor parameter names (§3.3 and §14) -> Zeitflow names.
_CLEAN_ALIASES = MappingProxyType({
    "eqMax": "eq_max_minutes",
    "elMax": "value_max",
    "vMax": "value_max",
    "elMin": "value_min",
    "vMin": "value_min",
    "radioValueNull": "drop_zeros",
    "el0": "drop_zeros",
    "chgMax": "slope_max",
    "lgMax": "outlier_max_minutes",
    "gapMax": "gap_max_minutes",
    "lgMin": "run_min_minutes",
    "decimalPrecision": "decimals",
    "dec": "decimals",
})
_LSTM_ALIASES = MappingProxyType({"neurons": "units", "batchSize": "batch_size"})

_OFF_HINT = "; use None (not 0) to switch the step off"


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _finite(name: str, value: float | None) -> None:
    if value is not None and not math.isfinite(value):
        raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")


def _positive(name: str, value: float | None, hint: str = "") -> None:
    """``value`` must be finite and > 0 (None passes)."""
    if value is None:
        return
    _finite(name, value)
    if not value > 0:
        raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} is out of range: allowed 0 < {name}{hint}")


def _non_negative(name: str, value: float | None) -> None:
    """``value`` must be finite and >= 0 (None passes)."""
    check_range(name, value, 0, math.inf, low_text="0")


def _phase_options(value: Any) -> Any:
    """``false``/'nein' switch an optional phase off (None); ``true``/'ja' use its defaults."""
    value = as_bool(value)
    if value is False:
        return None
    if value is True:
        return {}
    return value


# ------------------------------------------------------------------------------------------------
# STL and LSTM phase options (§3.3)
# ------------------------------------------------------------------------------------------------


class StlOptions(Options):
    """STL residual phase of the anomaly rule set (§3.8)."""

    period_hours: float = 24.0
    seasonal: int = 7
    robust: bool = True
    threshold: float | None = None

    @field_validator("seasonal", mode="before")
    @classmethod
    def _seasonal_int(cls, value: Any) -> Any:
        return as_int("seasonal", value)

    @field_validator("robust", mode="before")
    @classmethod
    def _robust(cls, value: Any) -> Any:
        return as_bool(value)

    @field_validator("period_hours")
    @classmethod
    def _period(cls, value: float) -> float:
        _positive("stl.period_hours", value)
        return value

    @field_validator("seasonal")
    @classmethod
    def _seasonal(cls, value: int) -> int:
        check_range("stl.seasonal", value, 3, math.inf)
        if value % 2 == 0:
            raise param_error(
                "PARAM_OUT_OF_RANGE", f"stl.seasonal={value} is out of range: allowed odd integers >= 3"
            )
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        _non_negative("stl.threshold", value)
        return value


class LstmCleanOptions(Options):
    """LSTM forecast-error phase of the anomaly rule set (§3.8)."""

    period_hours: float = 24.0
    units: int = 64
    epochs: int = 20
    batch_size: int = 16
    threshold: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _LSTM_ALIASES, set(cls.model_fields))

    @field_validator("units", "epochs", "batch_size", mode="before")
    @classmethod
    def _integers(cls, value: Any, info: Any) -> Any:
        return as_int(f"lstm.{info.field_name}", value)

    @field_validator("period_hours")
    @classmethod
    def _period(cls, value: float) -> float:
        _positive("lstm.period_hours", value)
        return value

    @field_validator("units")
    @classmethod
    def _units(cls, value: int) -> int:
        check_range("lstm.units", value, 1, 1024, predecessor="neurons")
        return value

    @field_validator("epochs")
    @classmethod
    def _epochs(cls, value: int) -> int:
        check_range("lstm.epochs", value, 1, 500)
        return value

    @field_validator("batch_size")
    @classmethod
    def _batch_size(cls, value: int) -> int:
        check_range("lstm.batch_size", value, 1, 4096, predecessor="batchSize")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        _non_negative("lstm.threshold", value)
        return value


# ------------------------------------------------------------------------------------------------
# CleanOptions (§3.3)
# ------------------------------------------------------------------------------------------------


class CleanOptions(Options):
    """What ``clean`` removes and fills (§3.3); durations in minutes, slopes in units per minute."""

    rule_set: str = "anomaly"
    columns: list[str] | None = None
    eq_max_minutes: float | None = None
    value_max: float | None = None
    value_min: float | None = None
    drop_zeros: bool = False
    slope_max: float | None = None
    outlier_max_minutes: float | None = None
    gap_max_minutes: float | None = None
    run_min_minutes: float | None = None
    decimals: int | None = None
    sbad_max_iterations: int = 50
    stl: StlOptions | None = None
    lstm: LstmCleanOptions | None = None
    seed: int = 42

    # -- names and single fields ---------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _CLEAN_ALIASES, set(cls.model_fields))

    @field_validator("rule_set")
    @classmethod
    def _rule_set(cls, value: str) -> str:
        check_choice("rule_set", value, RULE_SETS)
        return value

    @field_validator("columns")
    @classmethod
    def _columns(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not value:
            raise param_error("MISSING_PARAMETER", "columns=[] names no channel: give None to clean every channel")
        for i, name in enumerate(value):
            if not name:
                raise param_error("MISSING_PARAMETER", f"columns[{i}] is empty: give a channel name")
        repeated = sorted({c for c in value if value.count(c) > 1})
        if repeated:
            raise param_error("PARAM_COMPARISON_FAILED", f"columns lists {repeated} more than once")
        return value

    @field_validator("drop_zeros", mode="before")
    @classmethod
    def _drop_zeros(cls, value: Any) -> Any:
        value = as_bool(value)
        return False if value is None else value

    @field_validator("decimals", mode="before")
    @classmethod
    def _decimals_in(cls, value: Any) -> Any:
        return as_decimals(value)

    @field_validator("sbad_max_iterations", "seed", mode="before")
    @classmethod
    def _integers(cls, value: Any, info: Any) -> Any:
        return as_int(info.field_name, value)

    @field_validator("stl", "lstm", mode="before")
    @classmethod
    def _phases(cls, value: Any) -> Any:
        return _phase_options(value)

    @field_validator("eq_max_minutes")
    @classmethod
    def _eq_max(cls, value: float | None) -> float | None:
        _positive("eq_max_minutes", value, _OFF_HINT + " (predecessor: eqMax)")
        return value

    @field_validator("slope_max")
    @classmethod
    def _slope_max(cls, value: float | None) -> float | None:
        _positive("slope_max", value, _OFF_HINT + " (predecessor: chgMax)")
        return value

    @field_validator("value_max", "value_min")
    @classmethod
    def _bounds(cls, value: float | None, info: Any) -> float | None:
        _finite(info.field_name, value)
        return value

    @field_validator("outlier_max_minutes", "gap_max_minutes", "run_min_minutes")
    @classmethod
    def _durations(cls, value: float | None, info: Any) -> float | None:
        _non_negative(info.field_name, value)
        return value

    @field_validator("decimals")
    @classmethod
    def _decimals(cls, value: int | None) -> int | None:
        check_range("decimals", value, 0, 15, predecessor="decimalPrecision")
        return value

    @field_validator("sbad_max_iterations")
    @classmethod
    def _iterations(cls, value: int) -> int:
        check_range("sbad_max_iterations", value, 1, 1000)
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        check_range("seed", value, 0, math.inf)
        return value

    # -- relations -----------------------------------------------------------------------------

    @model_validator(mode="after")
    def _relations(self) -> CleanOptions:
        if self.value_min is not None and self.value_max is not None and self.value_min > self.value_max:
            raise param_error(
                "PARAM_COMPARISON_FAILED",
                f"value_min={self.value_min} must not exceed value_max={self.value_max} (predecessor: elMin/elMax)",
            )
        if (self.slope_max is None) != (self.outlier_max_minutes is None):
            given, missing = (("slope_max", "outlier_max_minutes") if self.slope_max is not None
                              else ("outlier_max_minutes", "slope_max"))
            raise param_error(
                "SLOPE_REQUIRES_BOTH",
                f"{given} is set but {missing} is not: slope_max and outlier_max_minutes must be given together "
                "or not at all (predecessor: chgMax/lgMax)",
            )
        if self.rule_set == "classic":
            phases = [name for name in PHASES if getattr(self, name) is not None]
            if phases:
                raise param_error(
                    "ANOMALY_ONLY", f"{' and '.join(phases)} given with rule_set='classic': the STL and LSTM phases "
                                    "exist only in rule_set='anomaly'",
                )
        return self


# ------------------------------------------------------------------------------------------------
# ThresholdAnswer (§3.9)
# ------------------------------------------------------------------------------------------------


class ThresholdAnswer(Options):
    """The answer to a pending ``ThresholdRequest``: ``threshold=None`` skips the phase for the channel.

    All three fields are required; leaving one out raises ``MISSING_PARAMETER`` (skipping is never a
    default). ``threshold`` is in the channel's units (|residual| for STL, absolute error for LSTM).
    """

    phase: Literal["stl", "lstm"]
    column: str
    threshold: float | None

    @model_validator(mode="before")
    @classmethod
    def _required(cls, data: Any) -> Any:
        if isinstance(data, dict):
            missing = [name for name in cls.model_fields if name not in data]
            if missing:
                raise param_error(
                    "MISSING_PARAMETER",
                    f"ThresholdAnswer needs {', '.join(missing)}; give threshold=None explicitly to skip the phase",
                )
        return data

    @field_validator("phase", mode="before")
    @classmethod
    def _phase(cls, value: Any) -> Any:
        if not isinstance(value, str) or value not in PHASES:
            raise param_error("INVALID_CHOICE", f"phase={value!r} is not allowed: choose one of {list(PHASES)}")
        return value

    @field_validator("column")
    @classmethod
    def _column(cls, value: str) -> str:
        if not value:
            raise param_error("MISSING_PARAMETER", "column is empty: give the channel name of the pending request")
        return value

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: float | None) -> float | None:
        _non_negative("threshold", value)
        return value
