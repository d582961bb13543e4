"""Options of split and scaling (stages.md §8): ``SplitOptions``, ``ChannelScaling`` and ``ScalingOptions``.

Split fractions are exact decimals p / 10^d (§8.1): a decimal string with at most 6 decimals, or a number that
is a multiple of 0.01 (|100·f − round(100·f)| ≤ 1e-9). They are stored and dumped as their shortest decimal
string, so ``0.7``, ``"0.7"`` and ``"0.70"`` hash alike; ``SplitOptions.fraction(name)`` gives the exact
``Fraction``. Predecessor spellings: ``random_dat`` → ``shuffle`` (true means shuffled; ``'ja'``/``'nein'``
accepted), ``skalierung`` → ``scale``, ``skalierungMin``/``skalierungMax`` → ``range_min``/``range_max``.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_bool, as_float, as_int, rename_aliases

__all__ = ["SCALER_FITS", "ChannelScaling", "ScalingOptions", "SplitOptions", "parse_fraction"]

SCALER_FITS: Final = ("train", "all")
MAX_DECIMALS: Final = 6
_SPLIT_NAMES: Final = MappingProxyType({"random_dat": "shuffle"})
_SCALE_NAMES: Final = MappingProxyType({"skalierung": "scale", "skalierungMin": "range_min",
                                        "skalierungMax": "range_max"})
_SPLIT_DEFAULTS: Final = MappingProxyType({"train_fraction": "0.7", "val_fraction": "0.2", "test_fraction": "0.1",
                                           "shuffle": False, "seed": 42})
_SCALE_DEFAULTS: Final = MappingProxyType({"scale": True, "range_min": 0.0, "range_max": 1.0})


def parse_fraction(name: str, value: Any) -> Decimal:
    """The exact decimal of a split fraction (§8.1), or PARAM_OUT_OF_RANGE / PARAM_NOT_FINITE."""
    hint = f"give it as a decimal string with at most {MAX_DECIMALS} decimals, e.g. {name}='0.125'"
    if isinstance(value, bool):
        raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} is not a fraction: {hint}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
        hundredths = round(100 * value)
        if abs(100 * value - hundredths) > 1e-9:
            raise param_error("PARAM_OUT_OF_RANGE",
                              f"{name}={value!r} is not a multiple of 0.01 as a number: {hint}")
        return (Decimal(hundredths) / 100).normalize()
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} is not a decimal: {hint}") from None
        if not number.is_finite():
            raise param_error("PARAM_NOT_FINITE", f"{name}={value!r} is not finite")
        number = number.normalize()
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_DECIMALS:
            raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} has more than {MAX_DECIMALS} decimals")
        return number
    raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} is not a fraction: {hint}")


def _shortest(number: Decimal) -> str:
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


class SplitOptions(Options):
    """Chronological train/val/test split with exact fractions and an optional seeded shuffle (§8.1)."""

    train_fraction: str = "0.7"
    val_fraction: str = "0.2"
    test_fraction: str = "0.1"
    shuffle: bool = False
    seed: int = 42

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _SPLIT_NAMES, set(cls.model_fields))

    @field_validator("train_fraction", "val_fraction", "test_fraction", mode="before")
    @classmethod
    def _fraction(cls, value: Any, info: Any) -> Any:
        if value is None:
            return _SPLIT_DEFAULTS[info.field_name]
        name = info.field_name
        number = parse_fraction(name, value)
        ok = (0 < number <= 1) if name == "train_fraction" else (0 <= number < 1)
        if not ok:
            allowed = "0 < train_fraction <= 1" if name == "train_fraction" else f"0 <= {name} < 1"
            raise param_error("PARAM_OUT_OF_RANGE", f"{name}={value!r} is out of range: allowed {allowed}")
        return _shortest(number)

    @field_validator("shuffle", mode="before")
    @classmethod
    def _shuffle(cls, value: Any) -> Any:
        return as_bool(value) if value is not None else False

    @field_validator("seed", mode="before")
    @classmethod
    def _seed_in(cls, value: Any) -> Any:
        return 42 if value is None else as_int("seed", value)

    @field_validator("seed")
    @classmethod
    def _seed(cls, value: int) -> int:
        check_range("seed", value, 0, math.inf)
        return value

    @model_validator(mode="after")
    def _sum(self) -> SplitOptions:
        total = sum(self.fraction(n) for n in ("train_fraction", "val_fraction", "test_fraction"))
        if total != 1:
            raise param_error(
                "PARAM_COMPARISON_FAILED",
                f"train_fraction={self.train_fraction} + val_fraction={self.val_fraction} + "
                f"test_fraction={self.test_fraction} = {float(total)!r}, but the fractions must sum to exactly 1",
            )
        return self

    def fraction(self, name: str) -> Fraction:
        """The exact value of ``train_fraction`` / ``val_fraction`` / ``test_fraction``."""
        return Fraction(Decimal(getattr(self, name)))


class ChannelScaling(Options):
    """MinMax settings of one channel (§8.2); ``range_min ≥ range_max`` is INVALID_SCALER_RANGE."""

    scale: bool = True
    range_min: float = 0.0
    range_max: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _SCALE_NAMES, set(cls.model_fields))

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, value: Any) -> Any:
        return True if value is None else as_bool(value)

    @field_validator("range_min", "range_max", mode="before")
    @classmethod
    def _floats(cls, value: Any, info: Any) -> Any:
        return _SCALE_DEFAULTS[info.field_name] if value is None else as_float(info.field_name, value)

    @model_validator(mode="after")
    def _range(self) -> ChannelScaling:
        if not self.range_min < self.range_max:
            raise param_error(
                "INVALID_SCALER_RANGE",
                f"range_min={self.range_min!r} must be < range_max={self.range_max!r} "
                "(predecessor: skalierungMin/skalierungMax)",
            )
        return self


class ScalingOptions(Options):
    """Per-column MinMax settings and which samples the scalers see (§8.2).

    Keys of ``channels``: ``input:<name>``, ``output:<name>`` or a plain ``<name>`` for both roles; a prefixed
    key wins over a plain one."""

    channels: dict[str, ChannelScaling] = {}
    scaler_fit: str = "train"

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> Any:
        if value is None:
            return {}
        if isinstance(value, dict):
            for key in value:
                if not isinstance(key, str) or not key or key in ("input:", "output:"):
                    raise param_error("MISSING_PARAMETER", f"channels key {key!r} names no channel")
            return {k: ChannelScaling() if v is None else v for k, v in value.items()}
        return value

    @field_validator("scaler_fit", mode="before")
    @classmethod
    def _fit(cls, value: Any) -> Any:
        if value is None:
            return "train"
        if not isinstance(value, str):
            raise param_error("INVALID_CHOICE", f"scaler_fit={value!r} is not allowed: choose one of "
                                                f"{list(SCALER_FITS)}")
        check_choice("scaler_fit", value.strip(), SCALER_FITS)
        return value.strip()

    def for_column(self, role: str, name: str) -> ChannelScaling:
        """The settings of column ``name`` in ``role``: prefixed key, else plain key, else the defaults."""
        return self.channels.get(f"{role}:{name}") or self.channels.get(name) or ChannelScaling()
