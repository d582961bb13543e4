"""Options of the evaluation stage (stages.md §10.2): ``EvaluationOptions``.

``levels`` is the largest averaging level n_avg (1-96); ``mase_season_steps`` overrides the MASE seasonal lag m
per output channel, counted in grid steps of the output series (§0.5); ``baselines`` are the baselines the
evaluation task adds as models, and ``reference_baseline`` the one that ``skill_mae`` is relative to, so it must
be one of ``baselines``. ``None`` for any field means its documented default (§0.6).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Final

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_float, as_int

__all__ = ["BASELINE_NAMES", "LEVELS_MAX", "NRMSE_NORMALIZERS", "EvaluationOptions"]

NRMSE_NORMALIZERS: Final = ("mean", "range", "std")
BASELINE_NAMES: Final = ("persistence", "seasonal_naive")
LEVELS_MAX: Final = 96
_DEFAULTS: Final = MappingProxyType({
    "levels": 12, "nrmse_normalizer": "mean", "baselines": list(BASELINE_NAMES), "season_hours": 24.0,
    "reference_baseline": "persistence",
})


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """A stripped enumeration value, or INVALID_CHOICE (also for a value that is not a string)."""
    if not isinstance(value, str):
        raise param_error("INVALID_CHOICE", f"{name}={value!r} is not allowed: choose one of {list(allowed)}")
    value = value.strip()
    check_choice(name, value, allowed)
    return value


class EvaluationOptions(Options):
    """Averaging levels, NRMSE normaliser, MASE season, baselines and the skill reference (§10.2)."""

    levels: int = 12
    nrmse_normalizer: str = "mean"
    mase_season_steps: dict[str, int] | None = None
    baselines: list[str] = list(BASELINE_NAMES)
    season_hours: float = 24.0
    reference_baseline: str = "persistence"

    @field_validator("levels", mode="before")
    @classmethod
    def _levels_in(cls, value: Any) -> Any:
        return _DEFAULTS["levels"] if value is None else as_int("levels", value)

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: int) -> int:
        check_range("levels", value, 1, LEVELS_MAX)
        return value

    @field_validator("nrmse_normalizer", mode="before")
    @classmethod
    def _normalizer(cls, value: Any) -> Any:
        return _DEFAULTS["nrmse_normalizer"] if value is None else _choice("nrmse_normalizer", value,
                                                                            NRMSE_NORMALIZERS)

    @field_validator("mase_season_steps", mode="before")
    @classmethod
    def _season_steps(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        out: dict[Any, Any] = {}
        for key, steps in value.items():
            if not isinstance(key, str) or not key:
                raise param_error("MISSING_PARAMETER", f"mase_season_steps key {key!r} names no channel")
            name = f"mase_season_steps[{key!r}]"
            steps = as_int(name, steps)
            if isinstance(steps, int) and steps < 1:
                raise param_error("PARAM_OUT_OF_RANGE", f"{name}={steps!r} is out of range: allowed {name} >= 1")
            out[key] = steps
        return out

    @field_validator("baselines", mode="before")
    @classmethod
    def _baselines(cls, value: Any) -> Any:
        if value is None:
            return list(BASELINE_NAMES)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list | tuple):
            return value
        names = [_choice("baselines item", item, BASELINE_NAMES) for item in value]
        twice = [name for i, name in enumerate(names) if name in names[:i]]
        if twice:
            raise param_error("INVALID_CHOICE", f"baselines={names!r} lists {twice[0]!r} twice: give each of "
                                                f"{list(BASELINE_NAMES)} at most once")
        return names

    @field_validator("season_hours", mode="before")
    @classmethod
    def _season_in(cls, value: Any) -> Any:
        return _DEFAULTS["season_hours"] if value is None else as_float("season_hours", value)

    @field_validator("season_hours")
    @classmethod
    def _season(cls, value: float) -> float:
        check_range("season_hours", value, 1 / 60, 8760, low_text="1/60")
        return value

    @field_validator("reference_baseline", mode="before")
    @classmethod
    def _reference(cls, value: Any) -> Any:
        return _DEFAULTS["reference_baseline"] if value is None else _choice("reference_baseline", value,
                                                                              BASELINE_NAMES)

    @model_validator(mode="after")
    def _reference_listed(self) -> EvaluationOptions:
        if self.reference_baseline not in self.baselines:
            raise param_error(
                "PARAM_COMPARISON_FAILED",
                f"reference_baseline={self.reference_baseline!r} is not one of baselines={self.baselines!r}: "
                "skill_mae needs its reference baseline to be computed, so add it to baselines",
            )
        return self
