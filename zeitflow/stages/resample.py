"""Resample stage (stages.md §2): one or several channels of a frame onto one regular grid.

``resample(frame, options)`` builds the grid of §2.4 (:mod:`zeitflow.stages.grid`) and applies
the methods of §2.5 to every channel. Everything is vectorised on int64 ns: window and bracket
rows come from ``searchsorted`` of the grid into the frame's time index (once per grid chunk,
shared by all channels; a channel's missing rows are skipped through its runs of NaN), window
means from per-window ``np.add.reduceat`` (pairwise summation inside each window, so the error
does not grow with the series length as a difference of global cumulative sums would). The only
Python loops run over channels and over grid chunks of at most 1,000,000 points, each chunk
reporting progress (§12).

``resample_columns`` is the kernel over channels sharing one index; align (§4.5 step 5) reuses
it per source with all samples of its channels and the common grid.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import ResampleError
from zeitflow.frame import validate_frame
from zeitflow.options.resample import METHODS, WINDOW_METHODS, ResampleOptions, ResolvedMethod
from zeitflow.reports import ProgressCallback, ProgressEvent, StageReport, emit
from zeitflow.stages.grid import CHUNK_POINTS, GridRange, GridRule, grid_range, iso, minutes_to_ns, to_ns

__all__ = [
    "ChannelResampleReport", "ResampleReport", "ResampleResult", "gate_parameters", "make_grid", "resample",
    "resample_columns",
]

STAGE = "resample"
_OVERFLOW_SCALE = 2.0**-64  # exact power of two: rescues window sums that overflow float64
_BLOCK_WINDOWS = 8_192  # windows per reduceat block in _window_means (rows of a block stay in cache)

# --------------------------------------------------------------------------------------------
# Reports (§2.6)
# --------------------------------------------------------------------------------------------


class ChannelResampleReport(BaseModel):
    """Counts of one channel (§2.6). Counts that do not apply to the method stay 0, so
    ``nan_out == nan_empty_window + nan_gap + nan_no_neighbour`` always holds."""

    model_config = ConfigDict(extra="forbid")

    method: str
    max_gap_minutes: float
    decimals: int | None = None
    samples: int = 0
    values_out: int = 0
    nan_out: int = 0
    exact_hits: int = 0
    nan_empty_window: int = 0
    nan_gap: int = 0
    nan_no_neighbour: int = 0
    boundary_samples: int = 0
    samples_outside_windows: int = Field(
        default=0,
        description="non-NaN samples outside [grid_start - step/2, grid_end + step/2]: no window holds them; "
                    "the interpolation methods use them only as the outer neighbour at the grid ends",
    )


class ResampleReport(StageReport):
    """Report of ``resample`` (§2.6). ``input_first``/``input_last`` are the first and last
    timestamps at which any channel has a value (the instants the grid range starts from);
    ``offset_minutes_effective`` is the grid phase relative to the epoch in [0, step), also when
    an anchor sets it."""

    stage: str = STAGE
    grid_start: str | None = None
    grid_end: str | None = None
    grid_points: int = 0
    step_minutes: float = 0.0
    offset_minutes_effective: float = 0.0
    anchor: str | None = None
    input_first: str | None = None
    input_last: str | None = None
    input_rows: int = 0
    channels: dict[str, ChannelResampleReport] = Field(default_factory=dict)


@dataclass(frozen=True)
class ResampleResult:
    """The resampled frame and its report."""

    frame: pd.DataFrame
    report: ResampleReport


# --------------------------------------------------------------------------------------------
# Grid (§2.4)
# --------------------------------------------------------------------------------------------


def _grid(first_ns: int, last_ns: int, options: ResampleOptions) -> tuple[GridRule, GridRange]:
    rule = options.grid_rule()
    lo = first_ns if options.start is None else max(first_ns, to_ns(options.start))
    hi = last_ns if options.end is None else min(last_ns, to_ns(options.end))
    return rule, grid_range(rule, lo, hi, error=ResampleError)


def make_grid(
    first: datetime | pd.Timestamp, last: datetime | pd.Timestamp, options: ResampleOptions
) -> pd.DatetimeIndex:
    """The grid of §2.4 for data whose first and last values lie at ``first`` and ``last``
    (tz-aware), clipped by ``options.start``/``options.end``. Raises ``ResampleError``
    ``GRID_TOO_LARGE`` (checked before allocating) or ``EMPTY_GRID``."""
    _, grid = _grid(to_ns(first), to_ns(last), options)
    return grid.index()


# --------------------------------------------------------------------------------------------
# Kernel (§2.5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Rows:
    """Where the points of one grid chunk fall in the shared time index (all channels of a frame).

    ``iq``: first row with t ≥ g; ``hit``: that row lies exactly on g; ``lo``/``hi``: the rows
    [lo, hi) of the window [g − step/2, g + step/2]; ``boundary_rows``: rows lying exactly on a
    boundary shared by two grid windows. The window fields are None when no channel needs them.
    """

    k0: int
    k1: int
    iq: np.ndarray
    hit: np.ndarray
    lo: np.ndarray | None
    hi: np.ndarray | None
    boundary_rows: np.ndarray | None


def _search(times: np.ndarray, grid: GridRange, k0: int, k1: int, windows: bool) -> _Rows:
    """``searchsorted`` of one grid chunk into the time index (done once for all channels)."""
    n = times.size
    g = grid.points(k0, k1)
    iq = times.searchsorted(g, "left")
    hit = (iq < n) & (times[np.minimum(iq, n - 1)] == g)
    if not windows:
        return _Rows(k0, k1, iq, hit, None, None, None)
    half = np.int64(grid.step_ns // 2)  # 2·|s − g| ≤ step  ⇔  |s − g| ≤ ⌊step/2⌋ for integer ns
    lo = times.searchsorted(g - half, "left")
    hi = times.searchsorted(g + half, "right")
    boundary_rows = np.empty(0, dtype=np.intp)
    if grid.step_ns % 2 == 0:
        # g_k + step/2 = g_{k+1} − step/2: the first row ≥ that instant is lo_{k+1}; it lies exactly on
        # it iff hi_k > lo_{k+1}. The last grid point has no next window.
        following = np.empty_like(lo)
        following[:-1] = lo[1:]
        following[-1] = times.searchsorted(g[-1] + half, "left")
        shared = hi > following
        if k1 == grid.count:
            shared[-1] = False
        boundary_rows = following[shared]
    return _Rows(k0, k1, iq, hit, lo, hi, boundary_rows)


class _Channel:
    """One channel's values over the shared index. Missing rows are described by their runs,
    built only when a bracket lands on a missing row."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
        self.n = values.size
        missing = np.isnan(values)
        self.missing: np.ndarray | None = missing if missing.any() else None  # None: no row missing
        self.samples = self.n if self.missing is None else self.n - int(np.count_nonzero(missing))
        self._runs: tuple[np.ndarray, np.ndarray] | None = None

    def valid_at(self, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` (all within 0 … n − 1) holds a value."""
        if self.missing is None:
            return np.ones(rows.size, dtype=bool)
        return ~self.missing[rows]

    @property
    def runs(self) -> tuple[np.ndarray, np.ndarray]:
        """Runs of missing rows as sorted ``[start, end)`` row pairs."""
        if self._runs is None:
            assert self.missing is not None
            rows = np.flatnonzero(self.missing)
            breaks = np.flatnonzero(np.diff(rows) != 1)
            starts = rows[np.concatenate(([0], breaks + 1))]
            ends = rows[np.concatenate((breaks, [rows.size - 1]))] + 1
            self._runs = (starts, ends)
        return self._runs

    def _run_of(self, rows: np.ndarray, has: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of the missing run holding each row, and whether the row is missing."""
        starts, ends = self.runs
        j = starts.searchsorted(rows, "right") - 1
        j_c = np.maximum(j, 0)
        return j_c, has & (j >= 0) & (rows < ends[j_c])

    def next_valid(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First valid row ≥ ``rows`` (0 … n) and whether there is one."""
        has = rows < self.n
        if self.missing is None:
            return rows, has
        j, inside = self._run_of(rows, has)
        out = np.where(inside, self.runs[1][j], rows)
        return out, has & (out < self.n)

    def prev_valid(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last valid row ≤ ``rows`` (−1 … n − 1) and whether there is one."""
        has = rows >= 0
        if self.missing is None:
            return rows, has
        j, inside = self._run_of(rows, has)
        out = np.where(inside, self.runs[0][j] - 1, rows)
        return out, has & (out >= 0)


@dataclass
class _Counts:
    """Running counts of one channel over its grid chunks (local to one call)."""

    exact_hits: int = 0
    nan_empty_window: int = 0
    nan_gap: int = 0
    nan_no_neighbour: int = 0
    boundary_samples: int = 0


def _gathered_stats(ch: _Channel, lo: np.ndarray, hi: np.ndarray, *, extremes: bool = True, scale: float = 1.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Sum (times ``scale``), count and, with ``extremes``, min and max of the valid values of rows
    [lo, hi) for a few windows with at least one row: their rows are gathered into one array and
    reduced per window (min/max are NaN for a window without a valid value)."""
    length = hi - lo
    starts = np.zeros(length.size, dtype=np.intp)
    np.cumsum(length[:-1], out=starts[1:])
    rows = np.arange(int(length.sum()), dtype=np.intp) + np.repeat(lo - starts, length)
    values = ch.values[rows]
    ok = ~np.isnan(values)
    summand = np.where(ok, values, 0.0)
    if scale != 1.0:
        summand *= scale
    sums = np.add.reduceat(summand, starts)
    count = np.add.reduceat(ok.view(np.uint8), starts, dtype=np.intp)
    if not extremes:
        return sums, count, None, None
    return sums, count, np.fmin.reduceat(values, starts), np.fmax.reduceat(values, starts)


def _window_means(ch: _Channel, lo: np.ndarray, hi: np.ndarray, counts: _Counts) -> np.ndarray:
    """Mean of the valid values of rows [lo, hi) for every window of a chunk (NaN if none),
    clipped to the window's [min, max].

    One ``reduceat`` over the interleaved bounds (lo₀, hi₀, lo₁, hi₁, …), per block of windows, sums every
    window on its own (NumPy sums each segment pairwise, so the error does not grow with the series length);
    the odd segments are the gaps between windows and are dropped. In a block with missing rows the sum
    runs over the values with those rows set to 0 and the count over the valid rows. The few windows that
    reach the last row are reduced from their gathered rows. The clip removes sub-ulp overshoot, so a
    constant window returns its constant exactly.
    """
    size = lo.size
    count = hi - lo
    sums = np.empty(size)
    mins = np.empty(size)
    maxs = np.empty(size)
    # Windows ending at the last row (a suffix) would need an index == len(values) in reduceat.
    t = int(hi.searchsorted(ch.n, "left"))
    if t > 0:
        # In blocks of windows whose rows stay in the CPU cache for the three passes (sum, min, max); every
        # window is reduced over the same rows in the same order as in one call, so the values are the same.
        for k0 in range(0, t, _BLOCK_WINDOWS):
            k1 = min(k0 + _BLOCK_WINDOWS, t)
            a, b = int(lo[k0]), int(hi[k1 - 1])  # b < n: every index below stays < len(raw)
            raw = ch.values[a : b + 1]
            idx = np.empty(2 * (k1 - k0), dtype=np.intp)
            idx[0::2] = lo[k0:k1] - a
            idx[1::2] = hi[k0:k1] - a
            missing = ch.missing[a : b + 1] if ch.missing is not None else None
            if missing is not None and missing.any():
                # Missing rows add 0 and are not counted: the same sums, in the same order, as reducing each
                # window's gathered valid rows.
                sums[k0:k1] = np.add.reduceat(np.where(missing, 0.0, raw), idx)[0::2]
                valid = np.add.reduceat((~missing).view(np.uint8), idx, dtype=np.intp)[0::2]
                count[k0:k1] = np.where(count[k0:k1] > 0, valid, 0)
            else:
                sums[k0:k1] = np.add.reduceat(raw, idx)[0::2]
            mins[k0:k1] = np.fmin.reduceat(raw, idx)[0::2]  # fmin/fmax skip NaN
            maxs[k0:k1] = np.fmax.reduceat(raw, idx)[0::2]
    tail = t + np.flatnonzero(count[t:] > 0)
    if tail.size:
        sums[tail], count[tail], mins[tail], maxs[tail] = _gathered_stats(ch, lo[tail], hi[tail])
    empty = count == 0
    counts.nan_empty_window += int(np.count_nonzero(empty))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        means = sums / count
        bad = np.flatnonzero(~np.isfinite(means) & ~empty)
        if bad.size:  # |values| near float max: the sum overflowed, the mean does not
            scaled = _gathered_stats(ch, lo[bad], hi[bad], extremes=False, scale=_OVERFLOW_SCALE)[0]
            means[bad] = (scaled / count[bad]) / _OVERFLOW_SCALE
        np.clip(means, mins, maxs, out=means)
    means[empty] = np.nan
    return means


def _chunk(
    times: np.ndarray, ch: _Channel, rows: _Rows, grid: GridRange, method: str, max_gap_ns: int, counts: _Counts
) -> np.ndarray:
    """Values of one grid chunk for one channel (§2.5)."""
    if method in WINDOW_METHODS and rows.boundary_rows is not None:
        counts.boundary_samples += int(np.count_nonzero(ch.valid_at(rows.boundary_rows)))

    if method == "mean":
        assert rows.lo is not None and rows.hi is not None
        counts.exact_hits += int(np.count_nonzero(rows.hit & ch.valid_at(np.minimum(rows.iq, ch.n - 1))))
        return _window_means(ch, rows.lo, rows.hi, counts)

    g = grid.points(rows.k0, rows.k1)
    half = np.int64(grid.step_ns // 2)
    out = np.full(g.size, np.nan)

    # p: last valid sample with s ≤ g; q: first valid sample with s ≥ g
    iq, has_q = ch.next_valid(rows.iq)
    ip, has_p = ch.prev_valid(rows.iq - 1 + rows.hit)
    iq_c = np.minimum(iq, ch.n - 1)
    ip_c = np.maximum(ip, 0)
    sq, sp = times[iq_c], times[ip_c]
    vq, vp = ch.values[iq_c], ch.values[ip_c]
    exact = has_q & (sq == g)
    counts.exact_hits += int(np.count_nonzero(exact))
    # Distances as uint64: exact for any ordered pair of int64 instants (no overflow).
    dq = (sq - g).view(np.uint64)
    dp = (g - sp).view(np.uint64)

    if method in WINDOW_METHODS:  # nearest, nearest_mean
        p_ok = has_p & (sp >= g - half)
        q_ok = has_q & (sq <= g + half)
        take_p = p_ok & (~q_ok | (dp <= dq))  # a tie goes to the earlier sample
        take_q = q_ok & ~take_p
        out[take_p] = vp[take_p]
        out[take_q] = vq[take_q]
        if method == "nearest_mean":
            tie = p_ok & q_ok & (dp == dq) & (dp > 0)
            out[tie] = 0.5 * vp[tie] + 0.5 * vq[tie]  # halving is exact: the rounded midpoint, no overflow
        counts.nan_empty_window += int(np.count_nonzero(~(p_ok | q_ok)))
        return out

    # interpolate, nearest_max_delta: exact hits always win, then the gap limit (§2.5)
    both = has_p & has_q
    inner = both & ~exact
    delta = (sq - sp).view(np.uint64)
    gap = inner & (delta > np.uint64(max_gap_ns))
    ok = inner & ~gap
    counts.nan_no_neighbour += int(np.count_nonzero(~both))
    counts.nan_gap += int(np.count_nonzero(gap))
    out[exact] = vq[exact]
    if method == "interpolate":
        a, b = vp[ok], vq[ok]
        fraction = dp[ok].astype(np.float64) / delta[ok].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            value = a + (b - a) * fraction
            wide = ~np.isfinite(value)  # b − a overflowed (|values| near float max)
            if wide.any():
                value[wide] = a[wide] * (1.0 - fraction[wide]) + b[wide] * fraction[wide]
        value = np.where(a == b, a, value)
        out[ok] = np.clip(value, np.minimum(a, b), np.maximum(a, b))  # rounding stays inside [vp, vq]
    else:  # nearest_max_delta: the strictly closer one; a tie goes to the later sample q
        take_p = ok & (dp < dq)
        take_q = ok & ~take_p
        out[take_p] = vp[take_p]
        out[take_q] = vq[take_q]
    return out


def resample_columns(
    times_ns: np.ndarray,
    columns: Mapping[str, np.ndarray],
    grid: GridRange,
    methods: Mapping[str, ResolvedMethod],
    *,
    chunk_points: int = CHUNK_POINTS,
    on_chunk: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, ChannelResampleReport]]:
    """Resample channels that share one time index onto ``grid`` (§2.5).

    ``times_ns``: strictly increasing int64 ns; ``columns``: float64 arrays of the same length,
    NaN meaning missing (only non-NaN samples are used); ``methods``: the resolved method of every
    column. Returns the grid values per column (NaN where none can be computed, rounded with
    ``numpy.round`` when ``decimals`` is set) and per-column counts. The grid is searched in the
    index once per chunk of at most ``chunk_points`` points for all columns; ``on_chunk(column,
    k0, k1)`` is called after each chunk of each column. Align reuses this per source.
    """
    times = np.asarray(times_ns, dtype=np.int64)
    for name, method in methods.items():
        if method.method not in METHODS:
            raise ValueError(f"column {name!r}: method {method.method!r} is not one of {list(METHODS)}")
    windows = any(methods[c].method in WINDOW_METHODS for c in columns)
    chunks = [_search(times, grid, k0, k1, windows) for k0, k1 in grid.chunks(chunk_points)] if times.size else []
    half = grid.step_ns // 2
    first_row = int(times.searchsorted(grid.start_ns - half, "left"))
    end_row = int(times.searchsorted(grid.end_ns + half, "right"))

    values_out: dict[str, np.ndarray] = {}
    reports: dict[str, ChannelResampleReport] = {}
    for name, column in columns.items():
        method = methods[name]
        ch = _Channel(np.asarray(column, dtype=np.float64))
        out = np.full(grid.count, np.nan)
        counts = _Counts()
        for k0, k1 in grid.chunks(chunk_points):
            if ch.samples == 0:
                if method.method in WINDOW_METHODS:
                    counts.nan_empty_window += k1 - k0
                else:
                    counts.nan_no_neighbour += k1 - k0
            else:
                rows = chunks[k0 // chunk_points]
                out[k0:k1] = _chunk(times, ch, rows, grid, str(method.method), method.max_gap_ns, counts)
            if on_chunk is not None:
                on_chunk(name, k0, k1)
        if method.decimals is not None:
            out = np.round(out, method.decimals)
        outside = first_row + (ch.n - end_row)
        if ch.missing is not None:
            outside -= int(np.count_nonzero(ch.missing[:first_row]) + np.count_nonzero(ch.missing[end_row:]))
        produced = int(np.count_nonzero(~np.isnan(out)))
        values_out[name] = out
        reports[name] = ChannelResampleReport(
            method=str(method.method), max_gap_minutes=method.max_gap_minutes, decimals=method.decimals,
            samples=ch.samples, values_out=produced, nan_out=grid.count - produced,
            exact_hits=counts.exact_hits, nan_empty_window=counts.nan_empty_window, nan_gap=counts.nan_gap,
            nan_no_neighbour=counts.nan_no_neighbour, boundary_samples=counts.boundary_samples,
            samples_outside_windows=outside,
        )
        del ch
    return values_out, reports


# --------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------


def resample(
    frame: pd.DataFrame, options: ResampleOptions, *, progress: ProgressCallback | None = None
) -> ResampleResult:
    """Resample every channel of ``frame`` onto the grid of ``options`` (§2).

    Pure: the input is validated (``FrameError``; a UTC index of another resolution is converted
    to ns first) and never modified. Raises ``ResampleError`` ``COLUMN_NOT_FOUND`` (a
    ``column_methods`` key that is no channel), ``NO_NUMERIC_DATA``, ``EMPTY_GRID`` or
    ``GRID_TOO_LARGE``. Emits one ``chunk`` progress event per grid chunk per channel.
    """
    started = time.perf_counter()
    index = frame.index if isinstance(frame, pd.DataFrame) else None
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None and index.unit != "ns":
        frame = frame.set_axis(index.as_unit("ns"), axis=0)  # §0.3: other resolutions become ns on entry
    validate_frame(frame, "resample input")
    channels = [str(c) for c in frame.columns]
    missing = [c for c in options.column_methods if c not in channels]
    if missing:
        raise ResampleError(
            "COLUMN_NOT_FOUND",
            f"column_methods names {missing} but the frame has no such channel; channels: {channels}",
            details={"columns": missing, "available": channels},
        )
    times = frame.index.asi8
    columns = {c: frame[c].to_numpy(dtype=np.float64) for c in channels}
    first, last = _value_range(times, columns)
    if first is None or last is None:
        raise ResampleError(
            "NO_NUMERIC_DATA",
            f"the frame has no numeric value in any channel ({len(frame)} rows, channels {channels})",
            details={"rows": len(frame), "columns": channels},
        )
    rule, grid = _grid(first, last, options)
    methods = {c: options.method_for(c) for c in channels}

    total = float(grid.n_chunks(CHUNK_POINTS) * len(channels))
    done = 0

    def on_chunk(channel: str, k0: int, k1: int) -> None:
        nonlocal done
        done += 1
        emit(progress, ProgressEvent(
            STAGE, "chunk", float(done), total, f"{channel}: grid points {k0}-{k1 - 1} of {grid.count}",
            {"points": float(k1 - k0)},
        ))

    out, reports = resample_columns(times, columns, grid, methods, chunk_points=CHUNK_POINTS, on_chunk=on_chunk)
    result = pd.DataFrame(out, index=grid.index(), columns=channels)
    parameters = options.model_dump(mode="json")
    parameters["offset_minutes_effective"] = rule.offset_minutes_effective
    parameters["column_methods_resolved"] = {c: m.model_dump(mode="json") for c, m in methods.items()}
    report = ResampleReport(
        rows_in=len(frame), rows_out=grid.count, columns_out=channels, parameters=parameters,
        parameters_hash=options.parameters_hash(),
        grid_start=iso(grid.start_ns), grid_end=iso(grid.end_ns), grid_points=grid.count,
        step_minutes=rule.step_minutes, offset_minutes_effective=rule.offset_minutes_effective,
        anchor=None if rule.anchor_ns is None else parameters["anchor"],
        input_first=iso(first), input_last=iso(last), input_rows=len(frame), channels=reports,
        duration_seconds=time.perf_counter() - started,
    )
    return ResampleResult(frame=result, report=report)


def gate_parameters(report: ResampleReport) -> dict[str, Any]:
    """Parameters of the ``resampled`` quality-gate suite for an output with this report.

    ``grid_end`` is derived from ``grid_start``, ``grid_points`` and the requested step (not read
    from the output), so the suite checks that consecutive stamps are exactly the step apart.
    """
    if report.grid_start is None or report.grid_points < 1:
        raise ValueError("the report has no grid")
    start_ns = to_ns(pd.Timestamp(report.grid_start))
    end_ns = start_ns + (report.grid_points - 1) * minutes_to_ns(report.step_minutes)
    return {
        "channels": list(report.columns_out),
        "grid_start": report.grid_start,
        "grid_end": iso(end_ns),
        "grid_points": report.grid_points,
    }


def _value_range(times: np.ndarray, values: dict[str, np.ndarray]) -> tuple[int | None, int | None]:
    """First and last timestamp (ns) at which any channel has a value; (None, None) if none has."""
    first: int | None = None
    last: int | None = None
    for column in values.values():
        if column.size == 0:
            continue
        if np.isnan(column[0]) or np.isnan(column[-1]):
            valid = ~np.isnan(column)
            if not valid.any():
                continue
            i0, i1 = int(np.argmax(valid)), column.size - 1 - int(np.argmax(valid[::-1]))
        else:  # the common case needs no pass over the column
            i0, i1 = 0, column.size - 1
        t0, t1 = int(times[i0]), int(times[i1])
        first = t0 if first is None else min(first, t0)
        last = t1 if last is None else max(last, t1)
    return first, last
