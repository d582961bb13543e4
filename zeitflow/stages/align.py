"""Align stage (stages.md §4): several sources onto one common grid.

``align(frames, options)`` inspects every source (``detect_step``, §4.4), builds the common range
and the grid of §2.4 on it (:mod:`zeitflow.stages.grid`), passes channels that already lie on the
grid through by reindexing, and resamples every other channel with the resample kernel
(:func:`zeitflow.stages.resample.resample_columns`, §2.5), once per source with all of the
source's samples. All time arithmetic is on UTC int64 ns; the only Python loops run over sources,
channels, grid chunks and fixed-size blocks, never over rows.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import AlignError
from zeitflow.frame import validate_frame
from zeitflow.options.align import AlignOptions
from zeitflow.options.common import iso_z
from zeitflow.options.resample import ResolvedMethod
from zeitflow.reports import ProgressCallback, ProgressEvent, ProgressUnit, StageReport, emit
from zeitflow.stages.grid import CHUNK_POINTS, NS_PER_MINUTE, GridRange, GridRule, grid_range, iso, to_ns
from zeitflow.stages.resample import ChannelResampleReport, _value_range, resample_columns
from zeitflow.stages.resample import gate_parameters as _grid_gate_parameters
from zeitflow.stages.steps import ChannelStep, StepInfo

__all__ = [
    "AlignReport", "AlignResult", "ChannelAlignReport", "ChannelStep", "SourceAlignReport", "StepInfo", "align",
    "detect_step", "gate_parameters",
]

STAGE = "align"
_INSPECT_PERCENT = 10.0  # share of the progress bar for inspecting the sources; processing gets the rest
_BLOCK = 1 << 20  # rows checked at a time by the on-grid test (bounded temporaries)


# --------------------------------------------------------------------------------------------
# Step detection (§4.4)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Steps:
    """Exact step statistics in ns. The median of an even number of differences is the mean of
    the two middle ones, so it is kept doubled (``median2_ns``) to stay an integer."""

    min_ns: int
    max_ns: int
    median2_ns: int
    offset2_ns: int  # 2 · ((first − epoch) mod median)


def _steps(times: np.ndarray) -> _Steps | None:
    """Step statistics of a strictly increasing int64 ns index (None below 2 rows)."""
    n = times.size
    if n < 2:
        return None
    diffs = np.diff(times)
    lo, hi = int(diffs.min()), int(diffs.max())
    m = diffs.size
    if lo == hi:
        median2 = 2 * lo
    elif m % 2:
        diffs.partition(m // 2)  # our own array: partition in place
        median2 = 2 * int(diffs[m // 2])
    else:
        diffs.partition((m // 2 - 1, m // 2))
        median2 = int(diffs[m // 2 - 1]) + int(diffs[m // 2])
    return _Steps(lo, hi, median2, (2 * int(times[0])) % median2)  # Python's % is the mathematical modulo


def _step_info(times: np.ndarray, columns: Mapping[str, np.ndarray], steps: _Steps | None) -> StepInfo:
    rows = int(times.size)
    channels = {}
    for name, values in columns.items():
        numeric = rows - int(np.count_nonzero(np.isnan(values)))
        channels[name] = ChannelStep(
            numeric=numeric, numeric_share_percent=round(100.0 * numeric / rows, 2) if rows else 0.0
        )
    info = StepInfo(rows=rows, channels=channels)
    if rows:
        info.first, info.last = iso(int(times[0])), iso(int(times[-1]))
    if steps is not None:
        # int / int is correctly rounded in Python: 450,000,000,000 ns give exactly 7.5 minutes
        info.step_median_minutes = steps.median2_ns / (2 * NS_PER_MINUTE)
        info.step_min_minutes = steps.min_ns / NS_PER_MINUTE
        info.step_max_minutes = steps.max_ns / NS_PER_MINUTE
        info.step_mean_minutes = (int(times[-1]) - int(times[0])) / ((rows - 1) * NS_PER_MINUTE)
        info.offset_minutes = steps.offset2_ns / (2 * NS_PER_MINUTE)
        info.regular = steps.min_ns == steps.max_ns
    return info


def detect_step(frame: pd.DataFrame, *, validate: bool = True) -> StepInfo:
    """§4.4 statistics of a canonical frame: rows, numeric count and share per channel, first and
    last timestamp, median/min/max/mean step, offset of the first timestamp from the epoch modulo
    the median step, and whether all differences are identical. Raises ``FrameError`` for an
    invalid frame; ``validate=False`` skips that check for a frame known to be canonical (e.g. a
    stage's own validated output)."""
    frame = _as_ns(frame)
    if validate:
        validate_frame(frame, "detect_step input")
    times = frame.index.asi8
    columns = {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
    return _step_info(times, columns, _steps(times))


# --------------------------------------------------------------------------------------------
# Reports (§4.6)
# --------------------------------------------------------------------------------------------


class SourceAlignReport(BaseModel):
    """One source (§4.6): its step statistics, the first and last instants at which any of its
    channels has a value, and, when some of its channels passed through, the rows outside the
    grid range (ignored) and the grid points without a row (NaN)."""

    model_config = ConfigDict(extra="forbid")

    step: StepInfo
    first: str | None = None
    last: str | None = None
    channels: list[str] = Field(default_factory=list)
    on_grid: bool = False
    passed_through: list[str] = Field(default_factory=list)
    outside_range_rows: int | None = None
    missing_grid_points: int | None = None


class ChannelAlignReport(BaseModel):
    """One output channel (§4.6): its source, whether it passed through, the values and NaN it
    has on the grid, and for a processed channel the method used with the counts of §2.6."""

    model_config = ConfigDict(extra="forbid")

    source: str
    passed_through: bool
    decimals: int | None = None
    values_out: int = 0
    nan_out: int = 0
    resample: ChannelResampleReport | None = None


class AlignReport(StageReport):
    """Report of ``align`` (§4.6). ``common_start``/``common_end`` are the common range after
    clipping by ``start``/``end``; ``offset_minutes_effective`` is the grid phase relative to the
    epoch in [0, step), also when an anchor sets it. ``rows_in`` counts the rows of all sources."""

    stage: str = STAGE
    range_mode: str = "intersection"
    common_start: str | None = None
    common_end: str | None = None
    grid_start: str | None = None
    grid_end: str | None = None
    grid_points: int = 0
    step_minutes: float = 0.0
    offset_minutes_effective: float = 0.0
    anchor: str | None = None
    sources: dict[str, SourceAlignReport] = Field(default_factory=dict)
    channels: dict[str, ChannelAlignReport] = Field(default_factory=dict)


@dataclass(frozen=True)
class AlignResult:
    """The aligned frame and its report."""

    frame: pd.DataFrame
    report: AlignReport


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class _Source:
    """One validated source: its index in int64 ns, its channels and what inspection found."""

    name: str
    times: np.ndarray
    columns: dict[str, np.ndarray]
    steps: _Steps | None = None
    info: StepInfo | None = None
    first_ns: int | None = None
    last_ns: int | None = None
    on_grid: bool = False
    passed: list[str] = field(default_factory=list)
    processed: dict[str, ResolvedMethod] = field(default_factory=dict)


def _as_ns(frame: pd.DataFrame) -> pd.DataFrame:
    """§0.3: a UTC index of another resolution becomes ns on entry (the input is not modified)."""
    index = frame.index if isinstance(frame, pd.DataFrame) else None
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None and index.unit != "ns":
        return frame.set_axis(index.as_unit("ns"), axis=0)
    return frame


def _load_sources(frames: Mapping[str, pd.DataFrame]) -> list[_Source]:
    if not isinstance(frames, Mapping):
        raise TypeError(f"frames must be a mapping of source name to frame, got {type(frames).__name__}")
    if not frames:
        raise AlignError("NO_NUMERIC_DATA", "no sources were given: there is nothing to align",
                         details={"sources": []})
    sources = []
    for name, frame in frames.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"source names must be non-empty strings, got {name!r}")
        frame = _as_ns(frame)
        validate_frame(frame, f"align source {name!r}")
        columns = {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
        sources.append(_Source(name=name, times=frame.index.asi8, columns=columns))
    return sources


def _check_channels(sources: list[_Source], options: AlignOptions) -> dict[str, str]:
    """Channel -> source; raises DUPLICATE_CHANNEL and COLUMN_NOT_FOUND (a ``methods`` key that is
    neither a channel nor a source)."""
    owner: dict[str, str] = {}
    duplicates: list[dict[str, str]] = []
    for source in sources:
        for channel in source.columns:
            if channel in owner:
                duplicates.append({"channel": channel, "sources": [owner[channel], source.name]})
            else:
                owner[channel] = source.name
    if duplicates:
        first = duplicates[0]
        raise AlignError(
            "DUPLICATE_CHANNEL",
            f"channel {first['channel']!r} occurs in source {first['sources'][0]!r} and in source "
            f"{first['sources'][1]!r}; channel names must be unique across sources"
            + (f" ({len(duplicates)} duplicates in all)" if len(duplicates) > 1 else ""),
            details={"duplicates": duplicates[:5], "count": len(duplicates)},
            hint="rename the channels at load (LoadOptions column names)",
        )
    names = {s.name for s in sources}
    unknown = [k for k in options.methods if k not in owner and k not in names]
    if unknown:
        raise AlignError(
            "COLUMN_NOT_FOUND",
            f"methods names {unknown}, which is neither a channel nor a source; channels: {list(owner)}, "
            f"sources: {[s.name for s in sources]}",
            details={"columns": unknown, "available": list(owner), "sources": [s.name for s in sources]},
        )
    return owner


def _inspect(source: _Source) -> None:
    """Step statistics and value range of one source (§4.4, §4.5 step 1)."""
    source.steps = _steps(source.times)
    source.info = _step_info(source.times, source.columns, source.steps)
    source.first_ns, source.last_ns = _value_range(source.times, source.columns)


def _all_on_grid(source: _Source, rule: GridRule) -> bool:
    """Whether every timestamp of the source lies on the grid of ``rule`` (exact, in int64 ns)."""
    times, steps = source.times, source.steps
    first = int(times[0])
    if rule.first_at_or_after(first) != first:
        return False
    if steps is not None and steps.min_ns == steps.max_ns:  # regular: one step to check
        return steps.min_ns % rule.step_ns == 0
    step = np.int64(rule.step_ns)
    for k in range(0, times.size, _BLOCK):
        rel = times[k:k + _BLOCK] - np.int64(first)
        # the nearest integer quotient from a float division, then an exact integer check: for an
        # on-grid row the float quotient is within far less than 0.5 of the true one
        k_near = np.rint(rel / float(rule.step_ns)).astype(np.int64)
        if not np.array_equal(k_near * step, rel):
            return False
    return True


def _grid_positions(times: np.ndarray, grid: GridRange) -> np.ndarray:
    """Grid index of each on-grid instant inside the grid range (exact for on-grid instants)."""
    return np.rint((times - np.int64(grid.start_ns)) / float(grid.step_ns)).astype(np.intp)


# --------------------------------------------------------------------------------------------
# Stage
# --------------------------------------------------------------------------------------------


def align(
    frames: Mapping[str, pd.DataFrame], options: AlignOptions, *, progress: ProgressCallback | None = None
) -> AlignResult:
    """Align the channels of several sources onto one grid (§4).

    ``frames`` maps source names to canonical frames; the output has one column per channel, in
    mapping order and then column order. Pure: inputs are validated (``FrameError``) and never
    modified. Raises ``AlignError`` with ``DUPLICATE_CHANNEL``, ``COLUMN_NOT_FOUND``,
    ``NO_NUMERIC_DATA``, ``EMPTY_COMMON_RANGE``, ``EMPTY_GRID``, ``GRID_TOO_LARGE`` or
    ``METHOD_REQUIRED``. Emits ``file`` events per source (inspected, processed) and a ``chunk``
    event per grid chunk of each processed channel; ``done``/``total`` is a percentage.
    """
    started = time.perf_counter()
    sources = _load_sources(frames)
    owner = _check_channels(sources, options)

    for i, source in enumerate(sources):  # 1. per-source analysis
        _inspect(source)
        assert source.info is not None
        metrics = {k: float(v) for k, v in (("rows", source.info.rows),
                                            ("step_median_minutes", source.info.step_median_minutes),
                                            ("offset_minutes", source.info.offset_minutes)) if v is not None}
        emit(progress, ProgressEvent(STAGE, "file", _INSPECT_PERCENT * (i + 1) / len(sources), 100.0,
                                     f"{source.name}: inspected ({_describe(source)})", metrics))
    empty = [s.name for s in sources if s.first_ns is None]
    if empty:
        raise AlignError(
            "NO_NUMERIC_DATA",
            f"source(s) {empty} have no numeric value in any channel "
            f"({', '.join(f'{s.name}: {s.times.size} rows' for s in sources if s.name in empty)})",
            details={"sources": empty},
        )

    lo, hi = _common_range(sources, options)  # 2.
    rule = options.grid_rule()
    grid = grid_range(rule, lo, hi, error=AlignError)  # 3. EMPTY_GRID, GRID_TOO_LARGE

    _plan(sources, options, rule, owner)  # 4.-5. pass-through or method per channel; METHOD_REQUIRED

    units = sum(len(s.passed) + len(s.processed) * grid.n_chunks(CHUNK_POINTS) for s in sources)
    tracker = _Progress(progress, units)
    data = np.empty((len(owner), grid.count), dtype=np.float64)  # one block: the frame takes it without a copy
    row = {channel: j for j, channel in enumerate(owner)}
    channel_reports: dict[str, ChannelAlignReport] = {}
    source_reports: dict[str, SourceAlignReport] = {}
    for source in sources:
        outside = missing = None
        if source.passed:
            outside, missing = _pass_through(source, grid, options.decimals, data, row)
            for channel in source.passed:
                channel_reports[channel] = _channel_report(source.name, data[row[channel]], options.decimals, None)
                tracker.step(f"{source.name}/{channel}: passed through")
        if source.processed:
            out, counts = resample_columns(
                source.times, {c: source.columns[c] for c in source.processed}, grid, source.processed,
                chunk_points=CHUNK_POINTS,
                on_chunk=lambda c, k0, k1, s=source.name: tracker.step(
                    f"{s}/{c}: grid points {k0}-{k1 - 1} of {grid.count}", unit="chunk",
                    metrics={"points": float(k1 - k0)}),
            )
            for channel, values in out.items():
                data[row[channel]] = values
                channel_reports[channel] = _channel_report(
                    source.name, values, source.processed[channel].decimals, counts[channel])
            del out
        tracker.event("file", f"{source.name}: processed ({len(source.passed)} passed through, "
                              f"{len(source.processed)} resampled)")
        assert source.info is not None
        source_reports[source.name] = SourceAlignReport(
            step=source.info, first=iso(source.first_ns) if source.first_ns is not None else None,
            last=iso(source.last_ns) if source.last_ns is not None else None, channels=list(source.columns),
            on_grid=source.on_grid, passed_through=list(source.passed), outside_range_rows=outside,
            missing_grid_points=missing,
        )

    channels = list(owner)
    result = pd.DataFrame(data.T, index=grid.index(), columns=channels, copy=False)
    parameters = options.model_dump(mode="json")
    parameters["offset_minutes_effective"] = rule.offset_minutes_effective
    parameters["methods_resolved"] = {
        c: m.model_dump(mode="json") for s in sources for c, m in s.processed.items()
    }
    parameters["passed_through"] = [c for s in sources for c in s.passed]
    report = AlignReport(
        rows_in=sum(s.times.size for s in sources), rows_out=grid.count, columns_out=channels,
        parameters=parameters, parameters_hash=options.parameters_hash(),
        range_mode=options.range_mode, common_start=iso(lo), common_end=iso(hi),
        grid_start=iso(grid.start_ns), grid_end=iso(grid.end_ns), grid_points=grid.count,
        step_minutes=rule.step_minutes, offset_minutes_effective=rule.offset_minutes_effective,
        anchor=None if rule.anchor_ns is None else parameters["anchor"],
        sources=source_reports, channels={c: channel_reports[c] for c in channels},
        duration_seconds=time.perf_counter() - started,
    )
    return AlignResult(frame=result, report=report)


def _common_range(sources: list[_Source], options: AlignOptions) -> tuple[int, int]:
    """§4.5 step 2: intersection or union of the source ranges, clipped by start/end."""
    firsts = [s.first_ns for s in sources if s.first_ns is not None]
    lasts = [s.last_ns for s in sources if s.last_ns is not None]
    if options.range_mode == "union":
        lo, hi = min(firsts), max(lasts)
    else:
        lo, hi = max(firsts), min(lasts)
    if options.start is not None:
        lo = max(lo, to_ns(options.start))
    if options.end is not None:
        hi = min(hi, to_ns(options.end))
    if lo > hi:
        ranges = {s.name: [iso(s.first_ns), iso(s.last_ns)] for s in sources
                  if s.first_ns is not None and s.last_ns is not None}
        given = {k: iso_z(v) for k, v in (("start", options.start), ("end", options.end)) if v is not None}
        bounds = "".join(f", {k}={v}" for k, v in given.items())
        raise AlignError(
            "EMPTY_COMMON_RANGE",
            f"the sources have no common time range ({options.range_mode}{bounds}): "
            + ", ".join(f"{name} [{a}, {b}]" for name, (a, b) in ranges.items()),
            details={"range_mode": options.range_mode, "sources": ranges,
                     "start": given.get("start"), "end": given.get("end")},
            hint="choose sources that overlap in time, range_mode='union', or other start/end",
        )
    return lo, hi


def _plan(sources: list[_Source], options: AlignOptions, rule: GridRule, owner: Mapping[str, str]) -> None:
    """§4.5 steps 4 and 5: which channels pass through and which method every other channel uses;
    raises METHOD_REQUIRED listing every channel that needs a method and has none."""
    step2 = 2 * rule.step_ns
    lacking: list[dict[str, Any]] = []
    for source in sources:
        explicit = {c: bool(options.entries_for(source.name, c, owner)) for c in source.columns}
        source.on_grid = _all_on_grid(source, rule)
        step_matches = source.steps is not None and source.steps.median2_ns == step2
        for channel in source.columns:
            if source.on_grid and step_matches and not explicit[channel]:
                source.passed.append(channel)
                continue
            method = options.method_for(source.name, channel, owner)
            if method.method is None:
                lacking.append({"channel": channel, "source": source.name, "reason": _why_not(source, step_matches)})
            else:
                source.processed[channel] = method
    if lacking:
        by_name = {s.name: s for s in sources}
        requested = f"requested {rule.step_minutes:g} min, offset {rule.offset_minutes_effective:g}"
        parts = [f"{x['channel']} (source {x['source']}): {_describe(by_name[x['source']])}; {requested}"
                 for x in lacking]
        for item in lacking:
            info = by_name[item["source"]].info
            assert info is not None
            item.update(step_minutes=info.step_median_minutes, offset_minutes=info.offset_minutes)
        raise AlignError(
            "METHOD_REQUIRED",
            f"{len(lacking)} channel(s) are not on the requested grid and have no method: " + "; ".join(parts),
            details={"channels": lacking, "step_minutes": rule.step_minutes,
                     "offset_minutes": rule.offset_minutes_effective},
            hint="give default_method, or a methods entry per channel or source "
                 "(mean, interpolate, nearest, nearest_mean, nearest_max_delta)",
        )


def _why_not(source: _Source, step_matches: bool) -> str:
    """Why a channel without a ``methods`` entry cannot pass through."""
    if source.steps is None:
        return "fewer than 2 rows: no step can be detected"
    reasons = [] if step_matches else ["its median step differs from the requested step"]
    if not source.on_grid:
        reasons.append("some timestamps lie off the requested grid")
    return "; ".join(reasons)


def _describe(source: _Source) -> str:
    """``step 10 min, offset 5 min`` (the detected step and offset of a source)."""
    info = source.info
    if info is None or info.step_median_minutes is None or info.offset_minutes is None:
        rows = 0 if info is None else info.rows
        return f"step unknown ({rows} row{'s' if rows != 1 else ''})"
    return f"step {info.step_median_minutes:g} min, offset {info.offset_minutes:g} min"


def _pass_through(
    source: _Source, grid: GridRange, decimals: int | None, data: np.ndarray, row: Mapping[str, int]
) -> tuple[int, int]:
    """§4.5 step 4: reindex the pass-through channels of an on-grid source onto the grid (rows
    into ``data``). Returns (rows outside the grid range, grid points without a row)."""
    times = source.times
    r0 = int(times.searchsorted(grid.start_ns, "left"))
    r1 = int(times.searchsorted(grid.end_ns, "right"))
    inside = r1 - r0
    dense = inside == grid.count  # every grid point has a row: no reindexing needed
    positions = None if dense else _grid_positions(times[r0:r1], grid)
    for channel in source.passed:
        target = data[row[channel]]
        values = source.columns[channel][r0:r1]
        if dense:
            target[:] = values
        else:
            target.fill(np.nan)
            target[positions] = values
        if decimals is not None:
            np.round(target, decimals, out=target)
    return times.size - inside, grid.count - inside


def _channel_report(
    source: str, values: np.ndarray, decimals: int | None, counts: ChannelResampleReport | None
) -> ChannelAlignReport:
    produced = int(np.count_nonzero(~np.isnan(values)))
    return ChannelAlignReport(source=source, passed_through=counts is None, decimals=decimals, values_out=produced,
                              nan_out=values.size - produced, resample=counts)


@dataclass
class _Progress:
    """Processing progress: ``units`` steps share the part of the bar after inspection."""

    progress: ProgressCallback | None
    units: int
    done: int = 0

    def percent(self) -> float:
        share = self.done / self.units if self.units else 1.0
        return _INSPECT_PERCENT + (100.0 - _INSPECT_PERCENT) * share

    def step(self, message: str, *, unit: ProgressUnit = "column", metrics: dict[str, float] | None = None) -> None:
        self.done += 1
        self.event(unit, message, metrics)

    def event(self, unit: ProgressUnit, message: str, metrics: dict[str, float] | None = None) -> None:
        emit(self.progress, ProgressEvent(STAGE, unit, self.percent(), 100.0, message, metrics or {}))


def gate_parameters(report: AlignReport) -> dict[str, Any]:
    """Parameters of the ``aligned`` quality-gate suite for an output with this report: channels,
    grid start, grid points and the grid end derived from the requested step (as for resample)."""
    return _grid_gate_parameters(report)  # type: ignore[arg-type]  # same grid fields as ResampleReport

