"""Windowed datasets (stages.md §7): ``build_windows`` turns channels into supervised samples and
``values_at`` gives the linearly transferred value of a series at arbitrary instants.

Everything is vectorised: per reference chunk, the window times of a channel are one broadcast
``refs[:, None] + offsets[None, :]``, located with one ``searchsorted``, and validated with masks. There is no
Python loop over references or steps (only over chunks and channels). Times are integer nanoseconds (§0.5).

Decisions where §7 leaves room:
- Per-channel report entries (drops, bridged gaps, steps, first/last) are keyed ``input:<name>`` /
  ``output:<name>``, so a channel used in both roles is reported per role (as the scalers of §8.2 are keyed).
- A sample is counted under every reason that occurs in a channel's window (one count per sample, channel and
  reason). Per value the reasons are exclusive, in the order ``no_neighbour`` > ``nan_neighbour`` >
  ``gap_exceeded``; ``empty_average`` applies to averaged windows only.
- Calendar features (§7.5) are computed by ``features(times) -> DataFrame`` (the §6.1 columns). By default this
  is ``zeitflow.stages.features.time_features(times, options.time_features)``, imported lazily. Without
  ``options.time_features`` there are no calendar columns and ``features`` is ignored.
- ``values_at`` reads naive ``times`` (e.g. numpy ``datetime64``) as UTC; aware ones are converted to UTC.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import Field

from zeitflow.errors import StorageError, WindowError
from zeitflow.frame import validate_frame
from zeitflow.io.artifacts import write_bytes
from zeitflow.options.windows import NS_PER_HOUR, ChannelWindowSpec, WindowOptions, hours_to_ns
from zeitflow.reports import ProgressCallback, ProgressEvent, ReportWarning, StageReport, emit
from zeitflow.stages.grid import NS_PER_MINUTE, iso, minutes_to_ns

__all__ = [
    "CALENDAR_COMPONENTS", "DROP_REASONS", "WindowReport", "WindowValues", "WindowedDataset", "build_windows",
    "values_at", "window_offsets_ns",
]

STAGE: Final = "windows"
FORMAT: Final = "zeitflow.windows/1"
DROP_REASONS: Final = ("nan_neighbour", "gap_exceeded", "empty_average", "no_neighbour")
_OK, _NO_NEIGHBOUR, _NAN, _GAP, _EMPTY = 0, 1, 2, 3, 4
_REASON_CODE: Final = {"no_neighbour": _NO_NEIGHBOUR, "nan_neighbour": _NAN, "gap_exceeded": _GAP,
                       "empty_average": _EMPTY}
# (attribute of TimeFeatureOptions, columns in §6.1 order)
CALENDAR_COMPONENTS: Final = (
    ("year", ("Y_sin", "Y_cos")), ("month", ("M_sin", "M_cos")), ("week", ("W_sin", "W_cos")),
    ("day", ("D_sin", "D_cos")), ("holiday", ("H",)),
)
_EPOCH_ZIP: Final = (1980, 1, 1, 0, 0, 0)

FeaturesFn = Callable[[pd.DatetimeIndex], pd.DataFrame]


# ------------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowValues:
    """``values_at`` result, aligned with ``times``: NaN in ``values`` wherever ``valid`` is false;
    ``bracket_gap_minutes`` is t_q − t_p (0 for an exact hit, NaN without a neighbour)."""

    values: np.ndarray
    valid: np.ndarray
    bracket_gap_minutes: np.ndarray


class WindowReport(StageReport):
    """§7.5 report; per-channel dicts are keyed ``input:<name>`` / ``output:<name>``."""

    stage: str = STAGE
    range_start: str = ""
    range_end: str = ""
    references_total: int = 0
    samples_kept: int = 0
    samples_dropped: int = 0
    samples_dropped_by_channel: dict[str, dict[str, int]] = Field(default_factory=dict)
    bridged_large_gap: dict[str, int] = Field(default_factory=dict)
    channel_steps_minutes: dict[str, float] = Field(default_factory=dict)
    channel_first: dict[str, str] = Field(default_factory=dict)
    channel_last: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class WindowedDataset:
    """Samples of §7.2: X (n, n_in, c_in), Y (n, n_out, c_out), reference times and names.

    ``input_offsets_minutes`` / ``output_offsets_minutes`` map each channel (plain name) to its window offsets
    t_k − r; calendar columns are the trailing ``calendar_features`` of ``input_features``."""

    X: np.ndarray
    Y: np.ndarray
    reference_times: pd.DatetimeIndex
    input_features: list[str]
    output_features: list[str]
    input_offsets_minutes: dict[str, np.ndarray]
    output_offsets_minutes: dict[str, np.ndarray]
    channel_steps_minutes: dict[str, float]
    report: WindowReport
    calendar_features: list[str] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        """Number of samples (the predecessor's ``n_dat``)."""
        return int(self.X.shape[0])

    # ---- persistence (§0.1, §7.2): compressed .npz + canonical JSON sidecar, deterministic bytes ----

    def to_bytes(self) -> tuple[bytes, bytes]:
        """(npz bytes, JSON bytes); the same dataset always gives the same bytes."""
        npz = _npz_bytes({
            "X": np.ascontiguousarray(self.X, dtype=np.float64),
            "Y": np.ascontiguousarray(self.Y, dtype=np.float64),
            "reference_times_ns": np.asarray(self.reference_times.asi8, dtype=np.int64),
        })
        meta = {
            "format": FORMAT,
            "npz_sha256": hashlib.sha256(npz).hexdigest(),
            "shapes": {"X": list(self.X.shape), "Y": list(self.Y.shape)},
            "input_features": list(self.input_features),
            "output_features": list(self.output_features),
            "calendar_features": list(self.calendar_features),
            "input_offsets_minutes": {k: [float(x) for x in v] for k, v in self.input_offsets_minutes.items()},
            "output_offsets_minutes": {k: [float(x) for x in v] for k, v in self.output_offsets_minutes.items()},
            "channel_steps_minutes": {k: float(v) for k, v in self.channel_steps_minutes.items()},
            "report": self.report.model_dump(mode="json"),
        }
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        return npz, text.encode("utf-8")

    def save(self, path: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write ``<path>.npz`` and ``<path>.json`` atomically (temporary name, then rename)."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        npz, meta = self.to_bytes()
        targets = (base.with_name(base.name + ".npz"), base.with_name(base.name + ".json"))
        for target, data in zip(targets, (npz, meta), strict=True):
            write_bytes(target, data)
        return targets

    @classmethod
    def from_bytes(cls, npz: bytes, meta: bytes) -> WindowedDataset:
        """Inverse of ``to_bytes``; a sidecar that does not match the arrays raises ``StorageError``."""
        info = json.loads(meta.decode("utf-8"))
        if info.get("format") != FORMAT:
            raise StorageError("READ_FAILED", f"unknown windowed-dataset format {info.get('format')!r}")
        digest = hashlib.sha256(npz).hexdigest()
        if digest != info.get("npz_sha256"):
            raise StorageError("CHECKSUM_MISMATCH", "the .npz does not match its JSON sidecar",
                               details={"expected": info.get("npz_sha256"), "actual": digest})
        with np.load(io.BytesIO(npz), allow_pickle=False) as arrays:
            X, Y, ref = arrays["X"], arrays["Y"], arrays["reference_times_ns"]
        index = pd.DatetimeIndex(pd.to_datetime(ref, unit="ns", utc=True), name="utc_ref").as_unit("ns")
        return cls(
            X=X, Y=Y, reference_times=index,
            input_features=list(info["input_features"]), output_features=list(info["output_features"]),
            input_offsets_minutes={k: np.asarray(v, dtype=np.float64)
                                   for k, v in info["input_offsets_minutes"].items()},
            output_offsets_minutes={k: np.asarray(v, dtype=np.float64)
                                    for k, v in info["output_offsets_minutes"].items()},
            channel_steps_minutes={k: float(v) for k, v in info["channel_steps_minutes"].items()},
            report=WindowReport.model_validate(info["report"]),
            calendar_features=list(info.get("calendar_features", [])),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> WindowedDataset:
        """Read ``<path>.npz`` and ``<path>.json`` written by ``save``."""
        base = Path(path)
        if base.suffix in (".npz", ".json"):
            base = base.with_suffix("")
        try:
            npz = base.with_name(base.name + ".npz").read_bytes()
            meta = base.with_name(base.name + ".json").read_bytes()
        except FileNotFoundError as exc:
            raise StorageError("OBJECT_NOT_FOUND", f"{exc.filename} does not exist") from exc
        return cls.from_bytes(npz, meta)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Like ``np.savez_compressed`` but with a fixed zip timestamp, so the bytes are reproducible."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_EPOCH_ZIP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            with archive.open(info, "w", force_zip64=True) as handle:
                np.lib.format.write_array(handle, array, allow_pickle=False)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------
# Value transfer (§7.5)
# ------------------------------------------------------------------------------------------------


def _transfer(idx: np.ndarray, vals: np.ndarray, t: np.ndarray, max_gap_ns: int | None,
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(values, reason codes, bracket gap ns, exact-hit mask) at the instants ``t`` (int64 ns)."""
    n = idx.size
    q = np.searchsorted(idx, t, side="left")  # first row with time >= t
    qc = np.minimum(q, n - 1)
    exact = (q < n) & (idx[qc] == t)
    p = np.where(exact, q, q - 1)  # last row with time <= t
    pc = np.maximum(p, 0)
    no_neighbour = (p < 0) | (q >= n)
    tp, tq = idx[pc], idx[qc]
    vp, vq = vals[pc], vals[qc]
    gap = tq - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        interpolated = vp + (vq - vp) * (t - tp).astype(np.float64) / np.where(gap > 0, gap, 1).astype(np.float64)
    values = np.where(exact, vp, interpolated)
    reason = np.zeros(t.shape, dtype=np.int8)
    if max_gap_ns is not None:
        reason[~exact & (gap > max_gap_ns)] = _GAP
    reason[np.isnan(vp) | (~exact & np.isnan(vq))] = _NAN
    reason[no_neighbour] = _NO_NEIGHBOUR
    values[reason != _OK] = np.nan
    gap = np.where(exact, 0, gap)
    return values, reason, gap, exact


def _utc_ns(times: Any) -> np.ndarray:
    index = pd.DatetimeIndex(times)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)


def _series_arrays(name: str, series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Validated (index ns, float64 values) of one channel (§0.3 rules; ``FrameError`` otherwise)."""
    if not isinstance(series, pd.Series):
        validate_frame(series, name)  # raises INVALID_FRAME naming the type
    index = series.index
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        index = index.tz_convert("UTC").as_unit("ns")
    frame = pd.DataFrame({name: series.to_numpy()}, index=index)
    frame.index.name = "utc"
    validate_frame(frame, name)
    return np.asarray(frame.index.asi8, dtype=np.int64), frame[name].to_numpy(dtype=np.float64)


def values_at(series: pd.Series, times: Any, max_gap_minutes: float | None = None) -> WindowValues:
    """Linearly transferred values of ``series`` at ``times`` (§7.5): exact hits as they are, otherwise
    interpolation between the neighbours p (≤ t) and q (≥ t); a NaN or missing neighbour, or (with
    ``max_gap_minutes``) a bracket t_q − t_p > max gap, makes the value invalid."""
    idx, vals = _series_arrays(str(series.name) if series.name is not None else "series", series)
    t = _utc_ns(times)
    max_gap_ns = None if max_gap_minutes is None else minutes_to_ns(max_gap_minutes)
    if idx.size == 0:
        nan = np.full(t.shape, np.nan)
        return WindowValues(nan, np.zeros(t.shape, dtype=bool), nan.copy())
    values, reason, gap, _ = _transfer(idx, vals, t, max_gap_ns)
    gap_minutes = gap.astype(np.float64) / NS_PER_MINUTE
    gap_minutes[reason == _NO_NEIGHBOUR] = np.nan
    return WindowValues(values, reason == _OK, gap_minutes)


def _large_gap_threshold2(idx: np.ndarray) -> int | None:
    """2 × median of the consecutive index differences (NaN rows included), as an exact int; None below 2 rows."""
    diffs = np.diff(idx)
    m = diffs.size
    if m == 0:
        return None
    half = m // 2
    if m % 2:
        return 2 * int(np.partition(diffs, half)[half])
    part = np.partition(diffs, (half - 1, half))
    return int(part[half - 1]) + int(part[half])


def window_offsets_ns(hs_ns: int, he_ns: int, n: int) -> np.ndarray:
    """Offsets t_k − r of §7.4 in exact integer arithmetic: N ≥ 2 gives hs + ⌊(2k(he−hs) + N−1) / (2(N−1))⌋,
    N = 1 gives [he]."""
    if n == 1:
        return np.array([he_ns], dtype=np.int64)
    span = he_ns - hs_ns
    return np.array([hs_ns + (2 * k * span + (n - 1)) // (2 * (n - 1)) for k in range(n)], dtype=np.int64)


# ------------------------------------------------------------------------------------------------
# build_windows (§7.4-§7.5)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Channel:
    role: str
    name: str
    idx: np.ndarray
    vals: np.ndarray
    spec: ChannelWindowSpec
    hs: int
    he: int
    n: int
    offsets: np.ndarray
    first: int
    last: int
    max_gap: int | None
    large2: int | None
    regular_step: int | None  # the constant step (ns) of a strictly regular index, else None
    clean_sum: np.ndarray  # for averages: non-NaN values (NaN → 0) plus a trailing 0
    count_cum: np.ndarray  # for averages: cumulative count of non-NaN rows, with a leading 0

    @property
    def key(self) -> str:
        return f"{self.role}:{self.name}"


def _regular_step(idx: np.ndarray) -> int | None:
    """The step of an index whose consecutive differences are all equal (and positive), else None."""
    if idx.size < 2:
        return None
    step = int(idx[1] - idx[0])
    if step <= 0 or int(idx[-1] - idx[0]) != step * (idx.size - 1):
        return None
    return step if bool((np.diff(idx) == step).all()) else None


def _channel(role: str, name: str, series: pd.Series, spec: ChannelWindowSpec, n: int) -> _Channel:
    idx, vals = _series_arrays(name, series)
    numeric = np.flatnonzero(~np.isnan(vals))
    if numeric.size == 0:
        raise WindowError("NO_NUMERIC_DATA", f"{role} channel {name!r} has no non-NaN value",
                          details={"channel": name, "role": role, "rows": int(idx.size)})
    hs, he = spec.horizon_ns()
    ok = ~np.isnan(vals)
    averaged = spec.average_over_horizon
    return _Channel(
        role=role, name=name, idx=idx, vals=vals, spec=spec, hs=hs, he=he, n=n,
        offsets=window_offsets_ns(hs, he, n), first=int(idx[numeric[0]]), last=int(idx[numeric[-1]]),
        max_gap=None if spec.max_gap_minutes is None else minutes_to_ns(spec.max_gap_minutes),
        large2=_large_gap_threshold2(idx), regular_step=_regular_step(idx),
        clean_sum=np.append(np.where(ok, vals, 0.0), 0.0) if averaged else np.empty(0),
        count_cum=np.concatenate(([0], np.cumsum(ok, dtype=np.int64))) if averaged else np.empty(0, np.int64),
    )


def _channel_window(ch: _Channel, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values (m, N), reason codes (m, N), bridged-large-gap per reference (m,)) of one channel; the values may be
    a read-only view of the channel's array (callers copy them)."""
    m = refs.size
    if ch.spec.average_over_horizon:
        lo = np.searchsorted(ch.idx, refs + ch.hs, side="left")
        hi = np.searchsorted(ch.idx, refs + ch.he, side="left")
        count = ch.count_cum[hi] - ch.count_cum[lo]
        bounds = np.empty(2 * m, dtype=np.intp)
        bounds[0::2], bounds[1::2] = lo, hi
        sums = np.add.reduceat(ch.clean_sum, bounds)[0::2] if m else np.empty(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(count > 0, sums / np.maximum(count, 1), np.nan)
        values = np.repeat(mean[:, None], ch.n, axis=1)
        reason = np.repeat(np.where(count > 0, _OK, _EMPTY).astype(np.int8)[:, None], ch.n, axis=1)
        return values, reason, np.zeros(m, dtype=bool)
    rows = _grid_rows(ch, refs)
    if rows is not None:
        return _gather_window(ch, *rows)
    t = (refs[:, None] + ch.offsets[None, :]).ravel()
    values, reason, gap, exact = _transfer(ch.idx, ch.vals, t, ch.max_gap)
    if ch.large2 is None:
        bridged = np.zeros(m, dtype=bool)
    else:
        bridged = (~exact & (reason == _OK) & (2 * gap > ch.large2)).reshape(m, ch.n).any(axis=1)
    return values.reshape(m, ch.n), reason.reshape(m, ch.n), bridged


def _grid_rows(ch: _Channel, refs: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(row of each reference, row offset of each window step) when every window instant lies exactly on a row
    of a regular index, else None.

    Then every instant is an exact hit: ``_transfer`` would return the row's own value, a NaN reason where that
    value is NaN, a zero bracket gap and no bridged gap, so the window is a plain gather of rows (as
    ``sliding_window_view`` takes it) with the same values and reasons."""
    step = ch.regular_step
    if step is None or refs.size == 0:
        return None
    rel = refs - ch.idx[0]
    if np.any(ch.offsets % step) or np.any(rel % step):
        return None
    ref_rows = rel // step
    offset_rows = ch.offsets // step
    lowest = int(ref_rows.min()) + int(offset_rows.min())
    highest = int(ref_rows.max()) + int(offset_rows.max())
    if lowest < 0 or highest >= ch.idx.size:
        return None
    return ref_rows, offset_rows


def _constant_step(rows: np.ndarray) -> int | None:
    """The non-negative constant difference of ``rows`` (0 for a single row), else None."""
    if rows.size < 2:
        return 0
    diffs = np.diff(rows)
    first = int(diffs[0])
    return first if first >= 0 and bool((diffs == first).all()) else None


def _gather_window(ch: _Channel, ref_rows: np.ndarray, offset_rows: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_channel_window`` for windows whose instants are all exact hits at rows ``ref_rows + offset_rows``.

    When both are evenly spaced (references always are) the values are a read-only strided view of the
    channel (no copy: the caller copies them once, into X or Y), else an indexed gather."""
    along, across = _constant_step(ref_rows), _constant_step(offset_rows)
    if along is not None and across is not None:
        base = ch.vals[int(ref_rows[0]) + int(offset_rows[0]):]
        size = base.itemsize
        # The last element reached is ref_rows[-1] + offset_rows[-1] <= highest < len(vals) (``_grid_rows``).
        values = np.lib.stride_tricks.as_strided(base, shape=(ref_rows.size, offset_rows.size),
                                                 strides=(along * size, across * size), writeable=False)
    else:
        values = ch.vals[ref_rows[:, None] + offset_rows[None, :]]
    reason = np.isnan(values).view(np.int8)
    reason *= np.int8(_NAN)  # True (1) -> _NAN, False stays _OK (0)
    return values, reason, np.zeros(ref_rows.size, dtype=bool)


def _reference_times(channels: list[_Channel], options: WindowOptions) -> tuple[int, int, np.ndarray]:
    r_start = max(c.first - c.hs for c in channels)
    r_end = min(c.last - c.he for c in channels)
    if r_start > r_end:
        ranges = {c.key: {"first": iso(c.first), "last": iso(c.last),
                          "horizon_hours": [c.spec.horizon_start_hours, c.spec.horizon_end_hours]} for c in channels}
        late = max(channels, key=lambda c: c.first - c.hs)
        early = min(channels, key=lambda c: c.last - c.he)
        raise WindowError(
            "NO_COMMON_RANGE",
            f"the channels share no reference range: R_start={iso(r_start)} (set by {late.key}, data from "
            f"{iso(late.first)}) > R_end={iso(r_end)} (set by {early.key}, data until {iso(early.last)}); the "
            "series is too short for the requested horizons",
            details={"range_start": iso(r_start), "range_end": iso(r_end), "channels": ranges},
        )
    stride = minutes_to_ns(options.stride_minutes)
    base = (r_start // NS_PER_HOUR) * NS_PER_HOUR - NS_PER_HOUR + minutes_to_ns(options.offset_minutes)
    k0 = -((base - r_start) // stride)  # ceil
    k1 = (r_end - base) // stride
    count = max(0, k1 - k0 + 1)
    refs = base + (k0 + np.arange(count, dtype=np.int64)) * stride
    return r_start, r_end, refs


def _calendar_plan(options: WindowOptions) -> list[tuple[str, tuple[str, ...], np.ndarray]]:
    """(mode, columns, offsets ns) per enabled calendar component, in §6.1 order."""
    tf = options.time_features
    plan: list[tuple[str, tuple[str, ...], np.ndarray]] = []
    if tf is None:
        return plan
    for attr, columns in CALENDAR_COMPONENTS:
        comp = getattr(tf, attr)
        if not comp.enabled:
            continue
        if comp.mode == "current":
            plan.append(("current", columns, np.zeros(options.n_in, dtype=np.int64)))
        else:
            offsets = window_offsets_ns(hours_to_ns(comp.horizon_start_hours), hours_to_ns(comp.horizon_end_hours),
                                        options.n_in)
            plan.append(("horizon", columns, offsets))
    return plan


def _calendar_values(plan: list[tuple[str, tuple[str, ...], np.ndarray]], refs: np.ndarray, n_in: int,
                     features: FeaturesFn) -> np.ndarray:
    """(m, n_in, n_calendar) calendar values; one ``features`` call per distinct set of window offsets."""
    out = np.empty((refs.size, n_in, sum(len(c) for _, c, _ in plan)), dtype=np.float64)
    cache: dict[bytes, pd.DataFrame] = {}
    col = 0
    for mode, columns, offsets in plan:
        key = offsets.tobytes() if mode == "horizon" else b"current"
        if key not in cache:
            flat = refs if mode == "current" else (refs[:, None] + offsets[None, :]).ravel()
            cache[key] = features(pd.DatetimeIndex(pd.to_datetime(flat, unit="ns", utc=True)))
        frame = cache[key]
        for name in columns:
            values = frame[name].to_numpy(dtype=np.float64)
            out[:, :, col] = values[:, None] if mode == "current" else values.reshape(refs.size, n_in)
            col += 1
    return out


def _default_features(options: WindowOptions) -> FeaturesFn:
    from zeitflow.stages.features import time_features  # lazy: the features module is optional here

    tf = options.time_features
    return lambda times: time_features(times, tf)


def _check_names(role: str, channels: Mapping[str, pd.Series], specs: Mapping[str, ChannelWindowSpec]) -> None:
    missing = [k for k in specs if k not in channels]
    if missing:
        raise WindowError("COLUMN_NOT_FOUND",
                          f"{role}s_spec names {missing[0]!r}, which is not an {role} channel; {role}s: "
                          f"{list(channels)}", details={"role": role, "missing": missing,
                                                       "available": list(channels)})


def build_windows(
    inputs: Mapping[str, pd.Series], outputs: Mapping[str, pd.Series], options: WindowOptions, *,
    features: FeaturesFn | None = None, progress: ProgressCallback | None = None,
) -> WindowedDataset:
    """Supervised samples (§7): per reference time, n_in input values per input channel (then calendar
    columns) and n_out output values per output channel; samples with any invalid value are dropped and
    counted. ``features(times)`` overrides the calendar computation (default: ``time_features``)."""
    started = time.perf_counter()
    _check_names("input", inputs, options.inputs_spec)
    _check_names("output", outputs, options.outputs_spec)
    if not outputs:
        raise WindowError("COLUMN_NOT_FOUND", "no output channel given", details={"role": "output"})
    plan = _calendar_plan(options)
    if not inputs and not plan:
        raise WindowError("COLUMN_NOT_FOUND", "no input channel given and no calendar feature enabled",
                          details={"role": "input"})
    chans_in = [_channel("input", k, s, options.spec_for("input", k), options.n_in) for k, s in inputs.items()]
    chans_out = [_channel("output", k, s, options.spec_for("output", k), options.n_out) for k, s in outputs.items()]
    channels = chans_in + chans_out
    r_start, r_end, refs = _reference_times(channels, options)
    calendar_columns = [c for _, cols, _ in plan for c in cols]
    if plan and features is None:
        features = _default_features(options)

    total = int(refs.size)
    c_in = len(chans_in) + len(calendar_columns)
    X = np.empty((total, options.n_in, c_in), dtype=np.float64)
    Y = np.empty((total, options.n_out, len(chans_out)), dtype=np.float64)
    kept_refs = np.empty(total, dtype=np.int64)
    drops = {c.key: dict.fromkeys(DROP_REASONS, 0) for c in channels}
    bridged = {c.key: 0 for c in channels}
    kept = 0
    chunk = options.chunk_size
    n_chunks = max(1, -(-total // chunk))
    for i, start in enumerate(range(0, total, chunk)):
        refs_c = refs[start:start + chunk]
        results = [_channel_window(c, refs_c) for c in channels]
        keep = np.ones(refs_c.size, dtype=bool)
        for _, reason, _ in results:
            keep &= (reason == _OK).all(axis=1)
        for c, (_, reason, bridge) in zip(channels, results, strict=True):
            dropped_reason = reason[~keep]
            for name, code in _REASON_CODE.items():
                drops[c.key][name] += int((dropped_reason == code).any(axis=1).sum())
            bridged[c.key] += int(bridge[keep].sum())
        k = int(keep.sum())
        every = k == refs_c.size  # no sample dropped: copy the windows without a boolean gather
        for j, (values, _, _) in enumerate(results[:len(chans_in)]):
            X[kept:kept + k, :, j] = values if every else values[keep]
        for j, (values, _, _) in enumerate(results[len(chans_in):]):
            Y[kept:kept + k, :, j] = values if every else values[keep]
        if plan and k:
            X[kept:kept + k, :, len(chans_in):] = _calendar_values(plan, refs_c[keep], options.n_in, features)
        kept_refs[kept:kept + k] = refs_c[keep]
        kept += k
        emit(progress, ProgressEvent(STAGE, "chunk", i + 1, n_chunks, f"references {start + refs_c.size}/{total}",
                                     {"samples_kept": float(kept)}))
    if plan:
        emit(progress, ProgressEvent(STAGE, "phase", 1, 1, "calendar features"))

    drops = {key: {r: n for r, n in reasons.items() if n} for key, reasons in drops.items()}
    if kept == 0:
        worst = max(drops.items(), key=lambda item: sum(item[1].values()), default=(None, {}))
        cause = (f"; most drops: {worst[0]} ({', '.join(f'{r} {n}' for r, n in worst[1].items())})"
                 if worst[0] is not None else "")
        raise WindowError(
            "NO_SAMPLES", f"none of the {total} reference times between {iso(r_start)} and {iso(r_end)} yields a "
            f"valid sample{cause}", details={"references_total": total, "samples_dropped_by_channel": drops},
        )
    if kept < total:
        X, Y, kept_refs = X[:kept].copy(), Y[:kept].copy(), kept_refs[:kept].copy()

    steps = {c.key: _step_minutes(c) for c in channels}
    input_features = [c.name for c in chans_in] + calendar_columns
    output_features = [c.name for c in chans_out]
    report = WindowReport(
        rows_in=total, rows_out=kept,
        columns_out=[f"input:{f}" for f in input_features] + [f"output:{f}" for f in output_features],
        parameters=options.model_copy(update={
            "inputs_spec": {c.name: c.spec for c in chans_in}, "outputs_spec": {c.name: c.spec for c in chans_out},
        }).model_dump(mode="json"), parameters_hash=options.parameters_hash(),
        duration_seconds=time.perf_counter() - started, warnings=_warnings(chans_in, chans_out),
        range_start=iso(r_start), range_end=iso(r_end), references_total=total, samples_kept=kept,
        samples_dropped=total - kept, samples_dropped_by_channel=drops, bridged_large_gap=bridged,
        channel_steps_minutes=steps, channel_first={c.key: iso(c.first) for c in channels},
        channel_last={c.key: iso(c.last) for c in channels},
    )
    index = pd.DatetimeIndex(pd.to_datetime(kept_refs, unit="ns", utc=True), name="utc_ref").as_unit("ns")
    return WindowedDataset(
        X=X, Y=Y, reference_times=index, input_features=input_features, output_features=output_features,
        input_offsets_minutes={c.name: c.offsets / NS_PER_MINUTE for c in chans_in},
        output_offsets_minutes={c.name: c.offsets / NS_PER_MINUTE for c in chans_out},
        channel_steps_minutes=steps, report=report, calendar_features=calendar_columns,
    )


def _step_minutes(c: _Channel) -> float:
    """δ_c of §7.4 in minutes (reported only, never used to build times)."""
    span = (c.spec.horizon_end_hours - c.spec.horizon_start_hours) * 60.0  # type: ignore[operator]
    return span / (c.n - 1) if c.n >= 2 else span


def _warnings(chans_in: list[_Channel], chans_out: list[_Channel]) -> list[ReportWarning]:
    out = {c.name: c for c in chans_out}
    visible = [{"column": c.name, "raw": f"output starts at {out[c.name].hs / NS_PER_HOUR} h, input ends at "
                f"{c.he / NS_PER_HOUR} h"} for c in chans_in if c.name in out and out[c.name].hs < c.he]
    if not visible:
        return []
    return [ReportWarning(
        code="TARGET_VISIBLE_IN_INPUT",
        message="a channel is input and output, and its output window starts before its input window ends",
        count=len(visible), examples=visible[:5],
    )]
