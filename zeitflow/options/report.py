"""Options of the run results (stages.md §11.4): ``ReportOptions`` for the persisted artefacts and plots.

Predecessor spellings (§0.6, §14) are accepted and normalised, so ``parameters_hash`` does not depend on them:
``y_units='skaliert'`` → ``scaled``, ``shared_axis='gemeinsame Achse'`` → true and ``'separate Achsen'`` → false
(besides ``'ja'``/``'nein'``). ``None`` for a field with a non-None default means that default. Whether the
channel and model names belong to the run is checked when the results are written (``COLUMN_NOT_FOUND``).
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import Any, Final

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_bool, as_int, rename_aliases

__all__ = ["NUM_SAMPLES_RANGE", "SHARED_AXIS_ALIASES", "X_AXES", "Y_UNITS", "Y_UNITS_ALIASES", "ReportOptions"]

X_AXES: Final = ("utc", "step")
Y_UNITS: Final = ("original", "scaled")
Y_UNITS_ALIASES: Final = MappingProxyType({"skaliert": "scaled"})
SHARED_AXIS_ALIASES: Final = MappingProxyType({"gemeinsame achse": True, "separate achsen": False})
NUM_SAMPLES_RANGE: Final = (1, 1000)

_DEFAULTS: Final = MappingProxyType({
    "keep_dataset": True, "num_samples": 17, "x_axis": "utc", "y_units": "original", "shared_axis": False,
    "seed": 42,
})


def _choice(name: str, value: Any, allowed: tuple[str, ...], aliases: MappingProxyType[str, str]) -> Any:
    """None → default; a predecessor spelling → its name; anything else not allowed → INVALID_CHOICE."""
    if value is None:
        return _DEFAULTS[name]
    if not isinstance(value, str):
        raise param_error("INVALID_CHOICE", f"{name}={value!r} is not allowed: choose one of {list(allowed)}")
    text = value.strip()
    text = aliases.get(text, text)
    check_choice(name, text, allowed)
    return text


def _names(name: str, value: list[str] | None) -> list[str] | None:
    """None (= all) or a non-empty list of distinct, non-empty names."""
    if value is None:
        return None
    if not value:
        raise param_error("MISSING_PARAMETER", f"{name}=[] names nothing: give None to use all of them")
    for i, item in enumerate(value):
        if not item:
            raise param_error("MISSING_PARAMETER", f"{name}[{i}] is empty: give a name")
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        raise param_error("PARAM_COMPARISON_FAILED", f"{name} lists {repeated} more than once")
    return value


class ReportOptions(Options):
    """What the results of a training run keep and how the test-sample plots are drawn (§11.1, §11.2)."""

    keep_dataset: bool = True
    num_samples: int = 17
    x_axis: str = "utc"
    y_units: str = "original"
    shared_axis: bool = False
    input_channels: list[str] | None = None
    output_channels: list[str] | None = None
    forecast_models: list[str] | None = None
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, {}, set(cls.model_fields))

    @field_validator("keep_dataset", mode="before")
    @classmethod
    def _keep_dataset(cls, value: Any) -> Any:
        return _DEFAULTS["keep_dataset"] if value is None else as_bool(value)

    @field_validator("shared_axis", mode="before")
    @classmethod
    def _shared_axis(cls, value: Any) -> Any:
        if value is None:
            return _DEFAULTS["shared_axis"]
        if isinstance(value, str):
            text = " ".join(value.split()).lower()
            if text in SHARED_AXIS_ALIASES:
                return SHARED_AXIS_ALIASES[text]
        return as_bool(value)

    @field_validator("x_axis", mode="before")
    @classmethod
    def _x_axis(cls, value: Any) -> Any:
        return _choice("x_axis", value, X_AXES, MappingProxyType({}))

    @field_validator("y_units", mode="before")
    @classmethod
    def _y_units(cls, value: Any) -> Any:
        return _choice("y_units", value, Y_UNITS, Y_UNITS_ALIASES)

    @field_validator("num_samples", "seed", mode="before")
    @classmethod
    def _integers_in(cls, value: Any, info: Any) -> Any:
        return _DEFAULTS[info.field_name] if value is None else as_int(info.field_name, value)

    @field_validator("num_samples")
    @classmethod
    def _num_samples(cls, value: int) -> int:
        check_range("num_samples", value, *NUM_SAMPLES_RANGE)
        return value

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        check_range("seed", value, 0, math.inf)
        return value

    @field_validator("input_channels", "output_channels", "forecast_models")
    @classmethod
    def _lists(cls, value: list[str] | None, info: Any) -> list[str] | None:
        return _names(info.field_name, value)
