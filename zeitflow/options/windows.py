"""Options of the windowed-dataset stage (stages.md §7.3): ``WindowOptions`` and the per-channel
``ChannelWindowSpec``.

Predecessor spellings (§0.6, §14) are accepted and normalised, so ``parameters_hash`` does not depend on them:
``eingabe``/``I_N`` → ``n_in``, ``ausgabe``/``O_N`` → ``n_out``, ``zeitschrittweite``/``DELT`` →
``stride_minutes``, ``offset``/``OFST`` → ``offset_minutes``; per channel ``zeithorizont_start``/``TH_STRT`` →
``horizon_start_hours``, ``zeithorizont_end``/``TH_END`` → ``horizon_end_hours``,
``mittelwertbildung_uber_den_zeithorizont`` → ``average_over_horizon`` (``'ja'``/``'nein'`` accepted),
``intrplMax``/``max_time_span`` → ``max_gap_minutes``. Giving a name and its predecessor spelling together
raises ``MUTUALLY_EXCLUSIVE``.

The two horizon fields of a ``ChannelWindowSpec`` default to ``None``, which means "the role default" (input
−1 … 0 h, output 0 … 1 h). ``WindowOptions`` resolves them when it is validated, so the stored (and hashed)
specs always carry numbers. Horizons are validated against n_in / n_out by ``WindowOptions`` (``INVALID_HORIZON``).
Time arithmetic is on integer nanoseconds (§0.5).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from pydantic import field_validator, model_validator

from zeitflow.options.base import Options, check_range, param_error
from zeitflow.options.common import as_bool, as_float, as_int, rename_aliases
from zeitflow.stages.grid import NS_PER_MINUTE, minutes_to_ns

__all__ = [
    "DEFAULT_HORIZONS", "NS_PER_HOUR", "ChannelWindowSpec", "WindowOptions", "hours_to_ns",
]

NS_PER_HOUR: Final = 3_600_000_000_000
HORIZON_LIMIT_HOURS: Final = 8760.0
STEPS_RANGE: Final = (1, 4096)
CHUNK_RANGE: Final = (1_000, 10_000_000)
STRIDE_MIN_NS: Final = 1_000_000_000  # 1/60 minute
STRIDE_MAX_NS: Final = 10_080 * NS_PER_MINUTE
DEFAULT_HORIZONS: Final = MappingProxyType({"input": (-1.0, 0.0), "output": (0.0, 1.0)})

_WINDOW_NAMES: Final = MappingProxyType({
    "eingabe": "n_in", "I_N": "n_in", "ausgabe": "n_out", "O_N": "n_out",
    "zeitschrittweite": "stride_minutes", "DELT": "stride_minutes", "offset": "offset_minutes",
    "OFST": "offset_minutes",
})
_SPEC_NAMES: Final = MappingProxyType({
    "zeithorizont_start": "horizon_start_hours", "TH_STRT": "horizon_start_hours",
    "zeithorizont_end": "horizon_end_hours", "TH_END": "horizon_end_hours",
    "mittelwertbildung_uber_den_zeithorizont": "average_over_horizon",
    "intrplMax": "max_gap_minutes", "max_time_span": "max_gap_minutes",
})
_PREDECESSOR: Final = MappingProxyType({
    "n_in": "eingabe", "n_out": "ausgabe", "stride_minutes": "zeitschrittweite, DELT", "offset_minutes": "OFST",
    "horizon_start_hours": "zeithorizont_start", "horizon_end_hours": "zeithorizont_end",
})
_WINDOW_DEFAULTS: Final = MappingProxyType({
    "n_in": 13, "n_out": 13, "stride_minutes": 15.0, "offset_minutes": 0.0, "chunk_size": 50_000,
})


def hours_to_ns(hours: float) -> int:
    """``round(hours · 3.6 · 10¹²)`` as an exact int (§0.5)."""
    return round(hours * NS_PER_HOUR)


class ChannelWindowSpec(Options):
    """Horizon, averaging and gap limit of one channel's window (§7.3). ``None`` horizons mean the role default."""

    horizon_start_hours: float | None = None
    horizon_end_hours: float | None = None
    average_over_horizon: bool = False
    max_gap_minutes: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _SPEC_NAMES, set(cls.model_fields))

    @field_validator("horizon_start_hours", "horizon_end_hours", "max_gap_minutes", mode="before")
    @classmethod
    def _floats_in(cls, value: Any, info: Any) -> Any:
        return None if value is None else as_float(info.field_name, value)

    @field_validator("horizon_start_hours", "horizon_end_hours")
    @classmethod
    def _horizon(cls, value: float | None, info: Any) -> float | None:
        check_range(info.field_name, value, -HORIZON_LIMIT_HOURS, HORIZON_LIMIT_HOURS,
                    predecessor=_PREDECESSOR[info.field_name])
        return value

    @field_validator("max_gap_minutes")
    @classmethod
    def _max_gap(cls, value: float | None) -> float | None:
        if value is None:
            return None
        check_range("max_gap_minutes", value, -math.inf, math.inf)
        if minutes_to_ns(value) <= 0:
            raise param_error(
                "PARAM_OUT_OF_RANGE",
                f"max_gap_minutes={value!r} is out of range: allowed max_gap_minutes > 0 (or None: bridge any gap)",
            )
        return value

    @field_validator("average_over_horizon", mode="before")
    @classmethod
    def _average(cls, value: Any) -> Any:
        return False if value is None else as_bool(value)

    @model_validator(mode="after")
    def _relations(self) -> ChannelWindowSpec:
        if self.average_over_horizon and self.max_gap_minutes is not None:
            raise param_error(
                "MUTUALLY_EXCLUSIVE",
                f"max_gap_minutes={self.max_gap_minutes!r} and average_over_horizon=true must not be given "
                "together: an averaged window takes no interpolated values",
            )
        return self

    def resolved(self, role: str) -> ChannelWindowSpec:
        """This spec with ``None`` horizons replaced by the defaults of ``role`` (``input`` / ``output``)."""
        start, end = DEFAULT_HORIZONS[role]
        update = {}
        if self.horizon_start_hours is None:
            update["horizon_start_hours"] = start
        if self.horizon_end_hours is None:
            update["horizon_end_hours"] = end
        return self.model_copy(update=update) if update else self

    def horizon_ns(self) -> tuple[int, int]:
        """(hs_ns, he_ns) of a resolved spec."""
        if self.horizon_start_hours is None or self.horizon_end_hours is None:
            raise ValueError("resolve the spec with .resolved(role) first")
        return hours_to_ns(self.horizon_start_hours), hours_to_ns(self.horizon_end_hours)


def _specs(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {k: ChannelWindowSpec() if v is None else v for k, v in value.items()}
    return value


def _time_features(value: Any) -> Any:
    """Validate ``time_features`` with ``TimeFeatureOptions`` (imported lazily; §6.2)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        from zeitflow.options.features import TimeFeatureOptions  # lazy: written in parallel, optional here

        return TimeFeatureOptions.model_validate(dict(value))
    if all(hasattr(value, c) for c in ("year", "month", "week", "day", "holiday")):
        return value
    raise param_error("INVALID_CHOICE", f"time_features={value!r} is not allowed: give TimeFeatureOptions or None")


class WindowOptions(Options):
    """How ``build_windows`` turns channels into samples (§7.3); the predecessor's "Zeitschritte"."""

    n_in: int = 13
    n_out: int = 13
    stride_minutes: float = 15.0
    offset_minutes: float = 0.0
    inputs_spec: dict[str, ChannelWindowSpec] = {}
    outputs_spec: dict[str, ChannelWindowSpec] = {}
    time_features: Any = None
    chunk_size: int = 50_000

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        return rename_aliases(cls.__name__, data, _WINDOW_NAMES, set(cls.model_fields))

    @field_validator("n_in", "n_out", "chunk_size", mode="before")
    @classmethod
    def _integers_in(cls, value: Any, info: Any) -> Any:
        return _WINDOW_DEFAULTS[info.field_name] if value is None else as_int(info.field_name, value)

    @field_validator("n_in", "n_out")
    @classmethod
    def _steps(cls, value: int, info: Any) -> int:
        check_range(info.field_name, value, *STEPS_RANGE, predecessor=_PREDECESSOR[info.field_name])
        return value

    @field_validator("chunk_size")
    @classmethod
    def _chunk(cls, value: int) -> int:
        check_range("chunk_size", value, *CHUNK_RANGE)
        return value

    @field_validator("stride_minutes", "offset_minutes", mode="before")
    @classmethod
    def _floats_in(cls, value: Any, info: Any) -> Any:
        return _WINDOW_DEFAULTS[info.field_name] if value is None else as_float(info.field_name, value)

    @field_validator("stride_minutes")
    @classmethod
    def _stride(cls, value: float) -> float:
        check_range("stride_minutes", value, -math.inf, math.inf)
        if not STRIDE_MIN_NS <= minutes_to_ns(value) <= STRIDE_MAX_NS:
            raise param_error(
                "PARAM_OUT_OF_RANGE",
                f"stride_minutes={value!r} is out of range: allowed 1/60 <= stride_minutes <= 10080 "
                "(predecessor: zeitschrittweite, DELT)",
            )
        return value

    @field_validator("offset_minutes")
    @classmethod
    def _offset(cls, value: float) -> float:
        check_range("offset_minutes", value, -math.inf, math.inf)
        return value

    @field_validator("inputs_spec", "outputs_spec", mode="before")
    @classmethod
    def _specs_in(cls, value: Any) -> Any:
        return _specs(value)

    @field_validator("inputs_spec")
    @classmethod
    def _inputs(cls, value: dict[str, ChannelWindowSpec]) -> dict[str, ChannelWindowSpec]:
        return {k: v.resolved("input") for k, v in value.items()}

    @field_validator("outputs_spec")
    @classmethod
    def _outputs(cls, value: dict[str, ChannelWindowSpec]) -> dict[str, ChannelWindowSpec]:
        return {k: v.resolved("output") for k, v in value.items()}

    @field_validator("time_features", mode="before")
    @classmethod
    def _features(cls, value: Any) -> Any:
        return _time_features(value)

    @model_validator(mode="after")
    def _horizons(self) -> WindowOptions:
        for role, specs, n in (("input", self.inputs_spec, self.n_in), ("output", self.outputs_spec, self.n_out)):
            for name, spec in specs.items():
                hs, he = spec.horizon_ns()
                if he > hs or (he == hs and n == 1 and not spec.average_over_horizon):
                    continue
                n_name = "n_in" if role == "input" else "n_out"
                raise param_error(
                    "INVALID_HORIZON",
                    f"{role}s_spec[{name!r}]: horizon_end_hours={spec.horizon_end_hours!r} must be > "
                    f"horizon_start_hours={spec.horizon_start_hours!r} (equal only with {n_name}=1 and no "
                    f"averaging; {n_name}={n})",
                )
        return self

    def spec_for(self, role: str, channel: str) -> ChannelWindowSpec:
        """The resolved spec of ``channel`` in ``role`` (the role default when it has none)."""
        specs = self.inputs_spec if role == "input" else self.outputs_spec
        spec = specs.get(channel)
        return spec if spec is not None else ChannelWindowSpec().resolved(role)
