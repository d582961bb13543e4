"""Input side of applying a stored model to the newest data (architecture §1, ``flows/forecast.py``).

``latest_reference`` finds the newest reference time whose input windows are complete and valid,
``input_window`` builds the one-sample X of that reference exactly as ``build_windows`` builds a dataset row
(§7.4 window times, §7.5 values, calendar columns), and ``forecast_frame`` turns a model's Y back into a
canonical frame at the output window times. Pure: no I/O, no Prefect.

Decisions where §7 leaves room:
- The reference grid is §7.4's with R_start and R_end taken over the **input** channels only (the outputs are the
  future): base = floor_hour(R_start) − 1 h + ``offset_minutes``, references base + k·stride, R_start ≤ r ≤ R_end,
  where R_end = min over inputs of (last non-NaN timestamp − horizon end). Inputs that share no range raise
  ``NO_COMMON_RANGE`` (as in ``build_windows``); a range without any valid window raises ``NO_SAMPLES``.
- The search runs backwards from R_end over the whole range, one vectorised chunk of ``options.chunk_size``
  references at a time, and stops at the first chunk that holds a valid reference.
- An explicit ``reference`` need not lie on the grid; a naive one is read as UTC (as ``values_at`` does).
- The output channels are ``outputs`` when given, else the keys of ``options.outputs_spec``; each uses its
  resolved spec (the role default when it has none).
- ``forecast_frame`` raises ``ModelError`` ``SHAPE_MISMATCH`` when Y does not fit the window (§9.1) and
  ``WindowError`` ``COLUMN_NOT_FOUND`` for an output feature without window times.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd

from zeitflow.errors import ModelError, WindowError
from zeitflow.frame import INDEX_NAME, validate_frame
from zeitflow.options.windows import WindowOptions
from zeitflow.stages.grid import NS_PER_MINUTE, iso
from zeitflow.stages.windows import (
    _OK,
    _REASON_CODE,
    DROP_REASONS,
    FeaturesFn,
    _calendar_plan,
    _calendar_values,
    _Channel,
    _channel,
    _channel_window,
    _check_names,
    _default_features,
    _reference_times,
    _utc_ns,
    window_offsets_ns,
)

__all__ = ["InputWindow", "forecast_frame", "input_window", "latest_reference"]

_REASON_NAME: Final = {code: name for name, code in _REASON_CODE.items()}


@dataclass(frozen=True, eq=False)
class InputWindow:
    """One model input (X of shape (1, n_in, c_in), original units) at ``reference_time``, and the times at which
    each output channel's forecast values lie (r + the §7.4 output offsets)."""

    X: np.ndarray
    reference_time: pd.Timestamp
    input_features: list[str]
    output_times: dict[str, pd.DatetimeIndex]
    output_offsets_minutes: dict[str, np.ndarray]
    input_offsets_minutes: dict[str, np.ndarray] = field(default_factory=dict)
    calendar_features: list[str] = field(default_factory=list)

    @property
    def output_features(self) -> list[str]:
        """Output channel names, in the order of ``output_times``."""
        return list(self.output_times)


def _input_channels(inputs: Mapping[str, pd.Series], options: WindowOptions) -> list[_Channel]:
    _check_names("input", inputs, options.inputs_spec)
    return [_channel("input", k, s, options.spec_for("input", k), options.n_in) for k, s in inputs.items()]


def _latest(channels: list[_Channel], options: WindowOptions) -> int:
    """Newest reference (int ns) on the input-only grid whose input windows are all valid."""
    if not channels:
        raise WindowError("COLUMN_NOT_FOUND", "the latest reference needs at least one input channel",
                          details={"role": "input"})
    r_start, r_end, refs = _reference_times(channels, options)
    drops = {c.key: dict.fromkeys(DROP_REASONS, 0) for c in channels}
    chunk = options.chunk_size
    for stop in range(refs.size, 0, -chunk):
        block = refs[max(0, stop - chunk):stop]
        keep = np.ones(block.size, dtype=bool)
        reasons = [_channel_window(c, block)[1] for c in channels]
        for reason in reasons:
            keep &= (reason == _OK).all(axis=1)
        if keep.any():
            return int(block[np.flatnonzero(keep)[-1]])
        for c, reason in zip(channels, reasons, strict=True):
            for name, code in _REASON_CODE.items():
                drops[c.key][name] += int((reason == code).any(axis=1).sum())
    drops = {key: {r: n for r, n in reasons.items() if n} for key, reasons in drops.items()}
    raise WindowError(
        "NO_SAMPLES",
        f"none of the {refs.size} reference times between {iso(r_start)} and {iso(r_end)} has complete valid "
        "input windows",
        details={"references_total": int(refs.size), "range_start": iso(r_start), "range_end": iso(r_end),
                 "samples_dropped_by_channel": drops},
    )


def latest_reference(inputs: Mapping[str, pd.Series], options: WindowOptions) -> pd.Timestamp:
    """The newest reference time r (UTC) on the §7.4 grid of the inputs whose input windows all end at or before
    their channel's last non-NaN timestamp and hold only valid values (§7.5)."""
    return pd.Timestamp(_latest(_input_channels(inputs, options), options), unit="ns", tz="UTC")


def _invalid_input(c: _Channel, r: int, reason: np.ndarray) -> WindowError:
    bad = np.flatnonzero(reason != _OK)
    k = int(bad[0])
    why = _REASON_NAME[int(reason[k])]
    if c.spec.average_over_horizon:
        where = f"in [{iso(r + c.hs)}, {iso(r + c.he)})"
        stamp = iso(r + c.hs)
    else:
        stamp = iso(r + int(c.offsets[k]))
        where = f"at {stamp}"
    return WindowError(
        "NO_SAMPLES",
        f"input channel {c.name!r} has no valid value {where} ({why}) for the reference {iso(r)}",
        details={"channel": c.name, "reference": iso(r), "timestamp": stamp, "reason": why,
                 "invalid_values": int(bad.size)},
    )


def _times(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name=INDEX_NAME).as_unit("ns")


def input_window(
    inputs: Mapping[str, pd.Series], options: WindowOptions, reference: Any = None, *,
    outputs: Iterable[str] | None = None, features: FeaturesFn | None = None,
) -> InputWindow:
    """X (1, n_in, c_in) at ``reference`` (default: ``latest_reference``), built exactly as a ``build_windows``
    row: channel values by §7.5 (``max_gap_minutes``, averaging) and calendar columns per ``time_features``.
    An invalid input value raises ``WindowError`` ``NO_SAMPLES`` naming the channel and time."""
    channels = _input_channels(inputs, options)
    plan = _calendar_plan(options)
    if not channels and not plan:
        raise WindowError("COLUMN_NOT_FOUND", "no input channel given and no calendar feature enabled",
                          details={"role": "input"})
    r = _latest(channels, options) if reference is None else int(_utc_ns([reference])[0])
    refs = np.array([r], dtype=np.int64)
    calendar_columns = [c for _, cols, _ in plan for c in cols]
    X = np.empty((1, options.n_in, len(channels) + len(calendar_columns)), dtype=np.float64)
    for j, c in enumerate(channels):
        values, reason, _ = _channel_window(c, refs)
        if (reason != _OK).any():
            raise _invalid_input(c, r, reason[0])
        X[:, :, j] = values
    if plan:
        X[:, :, len(channels):] = _calendar_values(plan, refs, options.n_in,
                                                   features if features is not None else _default_features(options))
    names = list(options.outputs_spec) if outputs is None else list(outputs)
    if outputs is not None:
        _check_names("output", dict.fromkeys(names), options.outputs_spec)
    offsets = {}
    for name in names:
        hs, he = options.spec_for("output", name).horizon_ns()
        offsets[name] = window_offsets_ns(hs, he, options.n_out)
    return InputWindow(
        X=X, reference_time=pd.Timestamp(r, unit="ns", tz="UTC"),
        input_features=[c.name for c in channels] + calendar_columns,
        output_times={name: _times(r + off) for name, off in offsets.items()},
        output_offsets_minutes={name: off / NS_PER_MINUTE for name, off in offsets.items()},
        input_offsets_minutes={c.name: c.offsets / NS_PER_MINUTE for c in channels},
        calendar_features=calendar_columns,
    )


def forecast_frame(window: InputWindow, Y: np.ndarray, output_features: Iterable[str]) -> pd.DataFrame:
    """A canonical frame of the forecast ``Y`` (1, n_out, c_out; original units): one column per output
    channel, indexed by the union of the output times, NaN where a channel has no value at a time."""
    features = list(output_features)
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim != 3 or Y.shape[0] != 1 or Y.shape[2] != len(features):
        raise ModelError("SHAPE_MISMATCH", f"the forecast has shape {Y.shape}; expected (1, n_out, "
                         f"{len(features)}) for the output features {features}",
                         details={"shape": list(Y.shape), "output_features": features})
    if len(set(features)) != len(features):
        raise ModelError("SHAPE_MISMATCH", f"the output features {features} are not unique",
                         details={"output_features": features})
    missing = [f for f in features if f not in window.output_times]
    if missing:
        raise WindowError("COLUMN_NOT_FOUND", f"the output feature {missing[0]!r} has no window times; the window "
                          f"has {window.output_features}", details={"missing": missing,
                                                                    "available": window.output_features})
    stamps = [np.asarray(window.output_times[f].asi8, dtype=np.int64) for f in features]
    wrong = [f for f, s in zip(features, stamps, strict=True) if s.size != Y.shape[1]]
    if wrong:
        raise ModelError("SHAPE_MISMATCH", f"the forecast has {Y.shape[1]} steps, but the output window of "
                         f"{wrong[0]!r} has {window.output_times[wrong[0]].size} times",
                         details={"steps": int(Y.shape[1]), "channel": wrong[0]})
    union = np.unique(np.concatenate(stamps)) if stamps else np.empty(0, dtype=np.int64)
    data = np.full((union.size, len(features)), np.nan)
    for j, s in enumerate(stamps):
        data[np.searchsorted(union, s), j] = Y[0, :, j]
    frame = pd.DataFrame(data, index=_times(union), columns=features)
    validate_frame(frame, "forecast")
    return frame
