"""Load stage (stages.md §1): raw exports -> one canonical frame, with every decision and loss
reported.

``read_raw(source, options)`` reads a path, fsspec URL, bytes, binary file object or a sequence of
these (merged, §1.7). ``merge(results, duplicates)`` merges sources read with different options.
Text reading lives in :mod:`zeitflow.stages.load_csv`, datetime parsing and time zones in
:mod:`zeitflow.stages.load_time`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import LoadError, ParameterError
from zeitflow.frame import INDEX_NAME, empty_frame, validate_frame
from zeitflow.options.base import sha256_json
from zeitflow.options.load import DUPLICATES, ColumnRef, LoadOptions
from zeitflow.reports import MAX_EXAMPLES, ProgressCallback, ProgressEvent, ReportWarning, StageReport, emit
from zeitflow.stages import load_csv as lc
from zeitflow.stages.load_time import (
    PARTS_FORMAT,
    ParsedTimes,
    TimeFormat,
    TimeParser,
    combine_date_time,
    detect_time_format,
    empty_column,
    localize,
    parses_as_time,
)
from zeitflow.stages.steps import ChannelStep, StepInfo

__all__ = [
    "ChannelReport", "LoadReport", "LoadResult", "SourceReport", "StepStatistics", "merge", "read_raw",
    "step_statistics",
]

STAGE = "load"
NS_PER_MINUTE = 60_000_000_000
HEAD_CAP_BYTES = 64 << 20  # samples are taken from at most this much text
BODY_BLOCK_BYTES = 8 << 20  # body blocks hold at most chunk_rows lines and about this much text:
# larger blocks only add page faults (fresh buffers for every block) and cache misses, never speed
_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min
_TIME_CODES = frozenset({"DATETIME_PARSING_ERROR", "COERCE_YEAR_INVALID_DATE", "AMBIGUOUS_TIME", "NONEXISTENT_TIME"})
_UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Etc/Zulu", "Zulu"})


# --------------------------------------------------------------------------------------------
# Reports (§1.9)
# --------------------------------------------------------------------------------------------


class ChannelReport(BaseModel):
    """Value counts of one channel (§1.9)."""

    model_config = ConfigDict(extra="forbid")

    values: int = 0
    numeric: int = 0
    missing: int = 0
    non_numeric: int = 0
    non_numeric_examples: list[dict[str, Any]] = Field(default_factory=list)
    thousands_grouped: int = 0
    numeric_share_percent: float = 0.0


StepStatistics = StepInfo  # the load report names the §4.4 model after its field


class SourceReport(BaseModel):
    """What happened to one source (§1.9)."""

    model_config = ConfigDict(extra="forbid")

    source: str
    encoding: str
    encoding_source: str
    delimiter: str
    delimiter_source: str
    decimal: str
    decimal_source: str
    decimal_comma_fields: int = 0
    decimal_point_fields: int = 0
    header: bool
    header_line: int | None = None
    columns: list[str] = Field(default_factory=list)
    renamed_duplicate_headers: list[dict[str, Any]] = Field(default_factory=list)
    metadata_lines: int = 0
    metadata_examples: list[str] = Field(default_factory=list)
    blank_lines: int = 0
    bad_lines: int = 0
    bad_line_examples: list[dict[str, Any]] = Field(default_factory=list)
    empty_columns_dropped: list[str] = Field(default_factory=list)
    datetime_format: str | None = None
    dayfirst_applied: bool = False
    timezone: str
    aware_rows: int = 0
    naive_rows: int = 0
    lines_read: int = 0
    rows_in: int = 0
    unparseable_time: int = 0
    unparseable_time_examples: list[dict[str, Any]] = Field(default_factory=list)
    coerced_year_rows: int = 0
    ambiguous_earliest: int = 0
    ambiguous_latest: int = 0
    ambiguous_dropped: int = 0
    ambiguous_assumed_earliest: int = 0
    nonexistent_shifted: int = 0
    nonexistent_dropped: int = 0
    duplicate_rows_removed: int = 0
    rows_out: int = 0
    first_utc: str | None = None
    last_utc: str | None = None
    channels: dict[str, ChannelReport] = Field(default_factory=dict)
    warnings: list[ReportWarning] = Field(default_factory=list)


class LoadReport(StageReport):
    """Report of ``read_raw``/``merge``: per-source reports, per-channel counts, totals and the
    step statistics of the output (§1.9). ``duplicate_rows_removed`` is the total over the sources
    and the merge."""

    stage: str = STAGE
    sources: list[SourceReport] = Field(default_factory=list)
    channels: dict[str, ChannelReport] = Field(default_factory=dict)
    duplicate_rows_removed: int = 0
    exact_duplicates_removed: int = 0
    conflicting_duplicates: int = 0
    first_utc: str | None = None
    last_utc: str | None = None
    step_statistics: StepStatistics = Field(default_factory=lambda: StepStatistics(rows=0))


@dataclass(frozen=True)
class LoadResult:
    """The canonical frame and its report."""

    frame: pd.DataFrame
    report: LoadReport


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _iso(ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.ffffff...]Z`` of a UTC instant in ns."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat().replace("+00:00", "Z")


def _minutes(ns: float) -> float:
    return float(ns) / NS_PER_MINUTE


def step_statistics(frame: pd.DataFrame) -> StepStatistics:
    """§4.4 statistics of a canonical frame: exact fractional minutes from integer ns differences."""
    ns = frame.index.asi8
    rows = int(ns.size)
    channels = {}
    for column in frame.columns:
        numeric = rows - int(np.count_nonzero(np.isnan(frame[column].to_numpy(dtype=np.float64))))
        channels[str(column)] = ChannelStep(
            numeric=numeric, numeric_share_percent=round(100.0 * numeric / rows, 2) if rows else 0.0
        )
    stats = StepStatistics(rows=rows, channels=channels)
    if rows == 0:
        return stats
    first, last = int(ns[0]), int(ns[-1])
    stats.first, stats.last = _iso(first), _iso(last)
    if rows < 2:
        return stats
    step_min, step_max = _diff_range(ns)
    # Regular: the median is the one step, as float64 like np.median's. Otherwise the differences
    # are ours to partition in place (no second copy).
    median = (np.float64(step_min) if step_min == step_max
              else np.median(np.diff(ns), overwrite_input=True))
    offset = (first % int(median)) if float(median).is_integer() else math.fmod(first, float(median)) % median
    stats.step_median_minutes = _minutes(median)
    stats.step_min_minutes = _minutes(step_min)
    stats.step_max_minutes = _minutes(step_max)
    stats.step_mean_minutes = _minutes((last - first) / (rows - 1))
    stats.offset_minutes = _minutes(offset) if median > 0 else None
    stats.regular = step_min == step_max
    return stats


_DIFF_SLICE = 1 << 20  # rows differenced at a time (no array of all differences for min and max)


def _diff_range(ns: np.ndarray) -> tuple[int, int]:
    """(min, max) of ``np.diff(ns)`` for at least two rows, in slices."""
    lo = hi = int(ns[1] - ns[0])
    for start in range(0, ns.size - 1, _DIFF_SLICE):
        d = np.diff(ns[start: start + _DIFF_SLICE + 1])
        lo, hi = min(lo, int(d.min())), max(hi, int(d.max()))
    return lo, hi


def _warning(w: Any) -> ReportWarning:
    return w if isinstance(w, ReportWarning) else ReportWarning.model_validate(w)


def _frame(utc: np.ndarray, values: dict[str, np.ndarray], name: str) -> pd.DataFrame:
    """A validated canonical frame from sorted unique UTC ns and float64 columns."""
    if utc.size == 0:
        frame = empty_frame(list(values))
    else:
        # int64 input is read as UTC epoch ns and, unlike naive datetime64 input, not copied
        index = pd.DatetimeIndex(np.asarray(utc, dtype=np.int64), dtype="datetime64[ns, UTC]", name=INDEX_NAME,
                                 copy=False)
        frame = pd.DataFrame(values, index=index, copy=False)
    validate_frame(frame, name)
    return frame


def _group_starts(utc_sorted: np.ndarray) -> np.ndarray:
    """Start index of each run of equal instants in a sorted array."""
    if utc_sorted.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, utc_sorted[1:] != utc_sorted[:-1]])


def _nondecreasing(utc: np.ndarray) -> bool:
    """True if ``utc`` is sorted (checked in slices: no temporary of the array's length)."""
    for start in range(0, utc.size - 1, _DIFF_SLICE):
        part = utc[start: start + _DIFF_SLICE + 1]
        if not bool((part[1:] >= part[:-1]).all()):
            return False
    return True


def _has_repeats(utc_sorted: np.ndarray) -> bool:
    """True if a sorted array holds an instant twice (checked in slices, without the group starts)."""
    for start in range(0, utc_sorted.size - 1, _DIFF_SLICE):
        part = utc_sorted[start: start + _DIFF_SLICE + 1]
        if bool((part[1:] == part[:-1]).any()):
            return True
    return False


def _resolve(
    values: np.ndarray, has: np.ndarray | None, starts: np.ndarray, policy: str
) -> np.ndarray:
    """Per group of equal instants: the first/last value of the rows that have the channel, or the
    mean of their non-NaN values (§1.7). Groups without such rows give NaN."""
    n = values.size
    if has is None:
        has = np.ones(n, dtype=bool)
    if policy == "mean":
        present = has & ~np.isnan(values)
        sums = np.add.reduceat(np.where(present, values, 0.0), starts)
        counts = np.add.reduceat(present.astype(np.int64), starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    positions = np.arange(n, dtype=np.int64)
    if policy == "last":
        pick = np.maximum.reduceat(np.where(has, positions, -1), starts)
        found = pick >= 0
    else:
        pick = np.minimum.reduceat(np.where(has, positions, n), starts)
        found = pick < n
    return np.where(found, values[np.where(found, pick, 0)], np.nan)


def _duplicate_error(utc_sorted: np.ndarray, starts: np.ndarray, where: str, *, source: str,
                     lines: np.ndarray | _LineRange | None = None) -> LoadError:
    sizes = np.diff(np.r_[starts, utc_sorted.size])
    dup_groups = np.flatnonzero(sizes > 1)
    stamps = [_iso(utc_sorted[starts[g]]) for g in dup_groups[:MAX_EXAMPLES]]
    removed = int((sizes[dup_groups] - 1).sum())
    details: dict[str, Any] = {"count": removed, "instants": int(dup_groups.size), "timestamps": stamps}
    text = f"{removed} duplicate row(s) at {dup_groups.size} time stamp(s) {where}; first {stamps}"
    if lines is not None:
        first = lines[starts[dup_groups[0]]: starts[dup_groups[0]] + sizes[dup_groups[0]]]
        details["lines"] = [int(v) for v in first[:MAX_EXAMPLES]]
        text += f" (lines {', '.join(str(int(v)) for v in first[:MAX_EXAMPLES])})"
    return lc.load_error("DUPLICATE_TIMESTAMPS", text + " under duplicates='raise'", source=source, **details)


# --------------------------------------------------------------------------------------------
# One source
# --------------------------------------------------------------------------------------------


class _LineRange:
    """The line numbers ``first, first + 1, ...`` of ``size`` rows from consecutive lines. It is
    indexed like the int64 array it stands for (an int, a slice, an index array or a mask), which
    is built only where a whole array is asked for (``np.asarray``)."""

    __slots__ = ("first", "size")
    lazy_line_numbers = True  # ``localize`` indexes it instead of building the array

    def __init__(self, first: int, size: int) -> None:
        self.first, self.size = int(first), int(size)

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Any:
        return (np.int64(v) for v in range(self.first, self.first + self.size))

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return np.arange(self.first, self.first + self.size, dtype=np.int64).astype(dtype or np.int64, copy=False)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, int | np.integer):
            i = int(key) + (self.size if int(key) < 0 else 0)
            if not 0 <= i < self.size:
                raise IndexError(f"index {int(key)} is out of bounds for {self.size} rows")
            return np.int64(self.first + i)
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step == 1:
                return _LineRange(self.first + start, max(stop - start, 0))
            return np.arange(self.first + start, self.first + stop, step, dtype=np.int64)
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != (self.size,):
                raise IndexError(f"boolean index of shape {index.shape} for {self.size} rows")
            index = np.flatnonzero(index)
        index = index.astype(np.int64, copy=False)
        if index.size and (int(index.min()) < -self.size or int(index.max()) >= self.size):
            raise IndexError(f"index out of bounds for {self.size} rows")
        return self.first + np.where(index < 0, index + self.size, index)


class _Accumulator:
    """Row arrays of one source, filled block by block into arrays sized from an estimate of the
    row count (untouched capacity is never resident), grown geometrically when it is exceeded.
    Line numbers are kept as a range while the rows come from consecutive lines (no bad or blank
    line in between), and as an array from the first gap on."""

    def __init__(self, positions: list[int], capacity: int) -> None:
        self.n = 0
        self.capacity = max(capacity, 1024)
        self.first_line = 0
        self.lines: np.ndarray | None = None  # None: the rows hold lines first_line, first_line + 1, ...
        self.values = {p: empty_column(self.capacity, np.float64) for p in positions}

    def _grow(self, need: int) -> None:
        capacity = max(need, self.capacity * 2)

        def grown(old: np.ndarray) -> np.ndarray:
            new = empty_column(capacity, old.dtype)
            new[: self.n] = old[: self.n]
            return new

        if self.lines is not None:
            self.lines = grown(self.lines)
        self.values = {p: grown(old) for p, old in self.values.items()}
        self.capacity = capacity

    def add(self, rows: lc.BlockRows) -> None:
        m = int(rows.lines.size)
        if m == 0:
            return
        if self.n + m > self.capacity:
            self._grow(self.n + m)
        first, last = int(rows.lines[0]), int(rows.lines[-1])
        if self.n == 0:
            self.first_line = first
        if self.lines is None and (first != self.first_line + self.n or last - first != m - 1):
            self.lines = empty_column(self.capacity, np.int64)  # block lines increase: first gap here
            self.lines[: self.n] = np.arange(self.first_line, self.first_line + self.n, dtype=np.int64)
        if self.lines is not None:
            self.lines[self.n: self.n + m] = rows.lines
        for p, pieces in rows.values.items():
            target = self.values[p]
            pos = self.n
            for piece in pieces:
                target[pos: pos + piece.size] = piece
                pos += piece.size
        self.n += m

    def line_numbers(self) -> np.ndarray | _LineRange:
        """The 1-based physical line of every row."""
        return _LineRange(self.first_line, self.n) if self.lines is None else self.lines[: self.n]


@dataclass
class _SourceData:
    """One source after time handling and its own duplicate policy: sorted unique instants."""

    utc: np.ndarray
    values: dict[str, np.ndarray]
    report: SourceReport


@dataclass
class _Columns:
    """The resolved column selection of a source."""

    time_positions: list[int]
    parts: dict[str, int] | None
    value_positions: list[int]
    explicit: bool
    channel_names: dict[int, str]
    renamed: list[dict[str, Any]] = field(default_factory=list)


def _resolve_columns(options: LoadOptions, layout: lc.Layout, source: str) -> _Columns:
    names, k = layout.names, layout.k

    def position(ref: ColumnRef, what: str) -> int:
        if isinstance(ref, int):
            if ref >= k:
                raise lc.load_error(
                    "INVALID_COLUMN_INDEX",
                    f"column {what}={ref} is out of range: the file has k={k} columns (positions 0-{k - 1})",
                    source=source, column=ref, k=k,
                )
            return ref
        if ref in names:
            return names.index(ref)
        raise lc.load_error(
            "COLUMN_NOT_FOUND", f"column {what}={ref!r} not found; available columns: {names}",
            source=source, column=ref, available=names,
        )

    parts: dict[str, int] | None = None
    if options.part_columns is not None:
        parts = {key: position(ref, f"part_columns.{key}") for key, ref in options.part_columns.items()}
        time_positions = list(dict.fromkeys(parts.values()))
    elif options.date_column is not None and options.time_of_day_column is not None:
        time_positions = [position(options.date_column, "date_column"),
                          position(options.time_of_day_column, "time_of_day_column")]
    else:
        time_positions = [position(options.time_column if options.time_column is not None else 0, "time_column")]
    if options.value_columns is not None:
        value_positions = []
        for i, ref in enumerate(options.value_columns):
            p = position(ref, f"value_columns[{i}]")
            if p in time_positions:
                raise lc.load_error(
                    "COLUMN_NOT_FOUND",
                    f"column value_columns[{i}]={ref!r} is the time column {names[p]!r}; "
                    f"value columns are {[n for j, n in enumerate(names) if j not in time_positions]}",
                    source=source, column=ref,
                )
            if p not in value_positions:
                value_positions.append(p)
        explicit = True
    else:
        value_positions = [p for p in range(k) if p not in time_positions]
        explicit = False
    unknown = [key for key in options.rename if key not in names]
    if unknown:
        raise lc.load_error(
            "COLUMN_NOT_FOUND", f"rename refers to column {unknown[0]!r}, which is not in the file; "
            f"available columns: {names}", source=source, column=unknown[0], available=names,
        )
    channel, renamed = lc.dedupe_names([options.rename.get(names[p], names[p]) for p in value_positions])
    return _Columns(time_positions, parts, value_positions, explicit,
                    dict(zip(value_positions, channel, strict=True)), renamed)


def _read_head(reader: lc.BlockReader, options: LoadOptions, source: str, columns_hint: list[int] | None,
               time_like: Callable[[list[str]], bool]) -> tuple[lc.HeadText, lc.Layout, int]:
    """Read the head in growing blocks until the layout can be decided; also returns the raw
    bytes consumed so far."""
    data = b""
    size = lc.SAMPLE_BYTES
    raw_end = 0
    while True:
        block = reader.next_block(size)
        if block is not None:
            data += block.data
            raw_end = block.raw_end
        eof = reader.exhausted
        head = lc.HeadText.of(data, 1, eof, capped=len(data) >= HEAD_CAP_BYTES)
        try:
            layout = lc.analyse_head(
                head, skip_rows=options.skip_rows, delimiter=options.delimiter, decimal=options.decimal,
                thousands=options.thousands, header=options.header, time_positions=columns_hint,
                source=source, time_like=time_like,
            )
            return head, layout, raw_end
        except lc.NeedMoreHead:
            if eof:  # pragma: no cover - analyse_head decides at the end of the source
                raise
            size = max(size * 2, len(data))


def _time_like(pair: bool) -> Callable[[list[str]], bool]:
    """The §1.4 step 4 check "its time field(s) parse under some candidate format"."""

    def check(fields: list[str]) -> bool:
        if pair and len(fields) == 2:
            joined = combine_date_time(np.array(fields[:1], dtype=object), np.array(fields[1:], dtype=object))
            return bool(joined.size) and parses_as_time(str(joined[0]))
        return any(f and parses_as_time(f) for f in fields)

    return check


def _read_source(
    source: Any, options: LoadOptions, progress: ProgressCallback | None, index: int, total: int,
    *, chunk_rows: int | None = None,
) -> _SourceData:
    """Read, parse, localise and de-duplicate one source (§1.4 steps 1-11)."""
    name = lc.describe_source(source)
    emit(progress, ProgressEvent(STAGE, "file", index, total, f"{name}: started"))
    opened = lc.open_source(source)
    context: dict[str, str] = {}
    try:
        return _read_opened(opened, options, progress, chunk_rows or options.chunk_rows, context)
    except LoadError as exc:
        column = context.get("time_column")
        if column is None or exc.code not in _TIME_CODES or "column" in exc.details:
            raise
        raise LoadError(exc.code, f"{exc.message} (time column {column})",
                        details={**exc.details, "column": column}, hint=exc.hint) from exc
    except ParameterError:
        raise
    except (UnicodeDecodeError, ValueError, pa.ArrowException, IndexError) as exc:
        raise lc.load_error("CSV_PARSING_ERROR", f"the file cannot be parsed: {exc}", source=opened.name) from exc
    finally:
        opened.close()


@dataclass
class _Detected:
    """Everything decided on the head of one source (§1.4 steps 1-7, §1.5 format)."""

    layout: lc.Layout
    cols: _Columns
    decimal: str
    decimal_source: str
    comma_fields: int
    point_fields: int
    fmt: TimeFormat
    pair: bool
    warnings: list[ReportWarning]


def _detect(reader: lc.BlockReader, options: LoadOptions, name: str,
            context: dict[str, str]) -> tuple[lc.HeadText, int, _Detected]:
    """Layout, columns, decimal separator and datetime format from the head."""
    refs = options.time_refs()
    pair = options.date_column is not None and options.part_columns is None
    hint = [r for r in refs if isinstance(r, int)]
    hint_positions = hint if len(hint) == len(refs) and options.part_columns is None else None
    head, layout, head_raw_end = _read_head(reader, options, name, hint_positions, _time_like(pair))
    cols = _resolve_columns(options, layout, name)
    time_names = [layout.names[p] for p in cols.time_positions]
    context["time_column"] = (" + ".join(repr(n) for n in time_names) if cols.parts is None
                              else f"parts {({k: layout.names[p] for k, p in cols.parts.items()})}")
    warnings: list[ReportWarning] = []
    decimal, decimal_source, c_count, p_count = lc.detect_decimal(
        layout.sample, cols.value_positions, decimal=options.decimal, thousands=options.thousands,
        delimiter=layout.delimiter,
    )
    if decimal_source == "detected" and c_count > 0 and p_count > 0:
        warnings.append(ReportWarning(
            code="DECIMAL_AMBIGUOUS",
            message=f"{name}: {c_count} value field(s) look like decimal commas and {p_count} like decimal "
            f"points in the first data lines; decimal {decimal!r} was chosen",
            count=c_count + p_count, examples=[{"comma_fields": c_count, "point_fields": p_count}],
        ))
    if not layout.sample:
        where = f"after the header on line {layout.header_line}" if layout.header else "in the file"
        raise lc.load_error("EMPTY_FILE", f"no data line {where} (line {layout.body_line} is past the end)",
                            source=name, line=layout.body_line)
    if cols.parts is not None:
        fmt = PARTS_FORMAT
    else:
        if pair:
            d, t = cols.time_positions
            samples = combine_date_time(np.array([f[d] for _, f in layout.sample], dtype=object),
                                        np.array([f[t] for _, f in layout.sample], dtype=object))
        else:
            p0 = cols.time_positions[0]
            samples = np.array([f[p0] for _, f in layout.sample], dtype=object)
        fmt = detect_time_format([str(s) for s in samples], options.datetime_format, source=name)
    detected = _Detected(layout, cols, decimal, decimal_source, c_count, p_count, fmt, pair, warnings)
    return head, head_raw_end, detected


def _read_body(
    reader: lc.BlockReader, opened: lc.OpenedSource, head: lc.HeadText, head_raw_end: int, det: _Detected,
    options: LoadOptions, progress: ProgressCallback | None, chunk_rows: int,
) -> tuple[_Accumulator, lc.BodyCounts, TimeParser]:
    """Stream the data lines block by block (§1.8): values into the accumulator, time texts into
    the parser; block text is released before the next block is read."""
    layout, cols, name = det.layout, det.cols, opened.name
    rules = lc.NumberRules(det.decimal, options.thousands, list(options.na_values))
    plan = lc.BodyPlan(
        source=name, delimiter=layout.delimiter, k=layout.k, time_positions=cols.time_positions,
        value_positions=cols.value_positions, value_names=cols.channel_names, rules=rules,
        bad_lines=options.bad_lines, typed=lc.typed_candidates(layout.sample, cols.value_positions, rules),
    )
    # A non-empty field in the head sample is a field of the body too.
    counts = lc.BodyCounts(columns={p: lc.ColumnCounts(nonempty=any(f[p] for _, f in layout.sample))
                                    for p in cols.value_positions})
    body_offset = head.offset_of(layout.body_line)
    body_lines = max(len(head.lines) - (layout.body_line - head.first_line), 1)
    avg_line = max((len(head.data) - body_offset) / body_lines, 2.0)
    target = int(min(max(chunk_rows * avg_line, 256), BODY_BLOCK_BYTES))
    if reader.exhausted:
        estimate = body_lines
    elif opened.size:
        estimate = int((opened.size - head_raw_end) / avg_line * 1.05) + body_lines
    else:
        estimate = 4 * chunk_rows
    acc = _Accumulator(cols.value_positions, estimate)
    parser = TimeParser(det.fmt, dayfirst=options.dayfirst, coerce_year=options.coerce_year, source=name,
                        capacity=estimate)
    block: lc.Block | None = lc.Block(head.data[body_offset:], layout.body_line, head_raw_end)
    while block is not None:
        for piece in lc.split_rows(block, chunk_rows):
            rows = lc.read_block(piece, plan, counts)
            if rows.lines.size:
                if cols.parts is not None:
                    parser.add_parts({key: rows.times[p] for key, p in cols.parts.items()}, rows.lines)
                elif det.pair:
                    d, t = cols.time_positions
                    parser.add(combine_date_time(rows.times[d], rows.times[t]), rows.lines)
                else:
                    parser.add(rows.times[cols.time_positions[0]], rows.lines)
                acc.add(rows)
            del rows, piece  # release the block's text and arrays before the next one is read
            emit(progress, ProgressEvent(STAGE, "chunk", float(block.raw_end), float(opened.size or 0),
                                         f"{name}: {counts.rows} rows", {"rows": float(counts.rows)}))
        block = None
        block = reader.next_block(target)
    if counts.rows == 0:
        where = f"after the header on line {layout.header_line}" if layout.header else "in the file"
        first_bad = counts.bad_examples[0]["line"] if counts.bad_examples else "-"
        raise lc.load_error("EMPTY_FILE", f"no data line {where}; {counts.bad_lines} bad line(s) "
                            f"(first at line {first_bad})", source=name, line=layout.body_line)
    return acc, counts, parser


def _select_channels(
    acc: _Accumulator, counts: lc.BodyCounts, cols: _Columns, name: str, warnings: list[ReportWarning]
) -> tuple[dict[str, np.ndarray], dict[str, lc.ColumnCounts], list[str]]:
    """Channels of the frame: empty default columns are dropped, empty explicit ones kept (§1.4 step 6)."""
    values: dict[str, np.ndarray] = {}
    channel_counts: dict[str, lc.ColumnCounts] = {}
    dropped: list[str] = []
    for p in cols.value_positions:
        channel = cols.channel_names[p]
        col = counts.columns[p]
        column = acc.values.pop(p)[: acc.n]
        if not col.nonempty and not cols.explicit:
            dropped.append(channel)
            continue
        if not col.nonempty:
            warnings.append(ReportWarning(
                code="EMPTY_COLUMN", message=f"{name}: selected column {channel!r} has no non-empty field; "
                "it is kept as all-NaN", count=col.values, examples=[{"column": channel}],
            ))
        values[channel] = column
        channel_counts[channel] = col
    if not values or sum(c.numeric for c in channel_counts.values()) == 0:
        shown = list(values) or dropped
        lines = acc.line_numbers()
        first, last = int(lines[0]), int(lines[-1])
        raise lc.load_error(
            "NO_NUMERIC_DATA", f"no numeric value in column(s) {shown} (data lines {first}-{last})",
            source=name, columns=shown, line=first, hint="check value_columns, decimal and na_values",
        )
    return values, channel_counts, dropped


@dataclass
class _Times:
    """Rows kept after time parsing and the DST policy, in ascending UTC order."""

    utc: np.ndarray
    lines: np.ndarray | _LineRange
    rows: np.ndarray | None  # data-row positions of ``utc`` (None: all rows, in file order)
    kept_by_dst: int
    counts: dict[str, int]


def _to_utc(parsed: ParsedTimes, lines: np.ndarray | _LineRange, options: LoadOptions, name: str,
            warnings: list[ReportWarning]) -> _Times:
    """Drop unparseable rows, localise (§1.6) and sort stably by the UTC instant."""
    valid = np.asarray(parsed.valid, dtype=bool)
    rows = None if bool(valid.all()) else np.flatnonzero(valid)
    wall = parsed.wall_ns if rows is None else parsed.wall_ns[rows]
    aware = parsed.aware if rows is None else parsed.aware[rows]
    lines = lines if rows is None else lines[rows]
    if lines.size == 0:
        examples = parsed.unparseable_examples
        raise lc.load_error(
            "DATETIME_PARSING_ERROR",
            f"no time stamp could be parsed with format {parsed.datetime_format!r}; first failing lines "
            f"{[e.get('line') for e in examples]} ({[e.get('raw') for e in examples]})",
            source=name, examples=examples,
        )
    if options.timezone in _UTC_ZONES:  # nothing is ambiguous or nonexistent: wall time is UTC
        utc = np.asarray(wall, dtype=np.int64)
        keep = None
        aware_rows = int(np.count_nonzero(aware))
        counts = {"aware_rows": aware_rows, "naive_rows": int(utc.size) - aware_rows}
    else:
        loc = localize(wall, aware, lines, timezone=options.timezone, ambiguous=options.ambiguous,
                       nonexistent=options.nonexistent, source=name)
        warnings.extend(_warning(w) for w in loc.warnings)
        keep = np.asarray(loc.keep, dtype=bool)
        utc = np.asarray(loc.utc_ns, dtype=np.int64)
        counts = dict(loc.counts)
    del wall, aware
    kept = int(utc.size)
    if keep is not None and not keep.all():
        index = np.flatnonzero(keep)
        rows = index if rows is None else rows[index]
        utc, lines, kept = utc[index], lines[index], int(index.size)
    if not _nondecreasing(utc):
        order = np.argsort(utc, kind="stable")
        utc, lines = utc[order], lines[order]
        rows = order if rows is None else rows[order]
    return _Times(utc, lines, rows, kept, counts)


def _read_opened(opened: lc.OpenedSource, options: LoadOptions, progress: ProgressCallback | None,
                 chunk_rows: int, context: dict[str, str]) -> _SourceData:
    name = opened.name
    reader = lc.BlockReader(opened, options.encoding)
    head, head_raw_end, det = _detect(reader, options, name, context)
    warnings = det.warnings
    acc, counts, parser = _read_body(reader, opened, head, head_raw_end, det, options, progress, chunk_rows)
    del head
    values, channel_counts, dropped = _select_channels(acc, counts, det.cols, name, warnings)
    lines = acc.line_numbers()
    del acc

    parsed = parser.finish()
    warnings.extend(_warning(w) for w in parsed.warnings)
    times = _to_utc(parsed, lines, options, name, warnings)
    emit(progress, ProgressEvent(STAGE, "phase", 1, 1, f"{name}: time zone converted"))
    if times.rows is not None:  # one column at a time: never two copies of every column
        for channel in values:
            values[channel] = values[channel][times.rows]
    utc = times.utc
    removed = 0
    if _has_repeats(utc):
        starts = _group_starts(utc)
        removed = int(utc.size - starts.size)
        if options.duplicates == "raise":
            raise _duplicate_error(utc, starts, "after conversion to UTC", source=name, lines=times.lines)
        for channel in values:
            values[channel] = _resolve(values[channel], None, starts, options.duplicates)
        utc = utc[starts]
    if all(bool(np.isnan(v).all()) for v in values.values()):
        unparseable = int(parsed.unparseable_count)
        raise lc.load_error(
            "NO_NUMERIC_DATA",
            f"no numeric value is left in column(s) {list(values)}: {counts.rows - int(utc.size)} of "
            f"{counts.rows} data rows (lines {int(lines[0])}-{int(lines[-1])}) were dropped ({unparseable} "
            f"unparseable time(s), {counts.rows - unparseable - times.kept_by_dst} by the DST policy, "
            f"{removed} duplicate(s)) and the rest hold no number",
            source=name, columns=list(values), line=int(lines[0]),
        )

    layout = det.layout
    report = SourceReport(
        source=name, encoding=reader.encoding, encoding_source=reader.encoding_source,
        delimiter=layout.delimiter, delimiter_source=layout.delimiter_source, decimal=det.decimal,
        decimal_source=det.decimal_source, decimal_comma_fields=det.comma_fields,
        decimal_point_fields=det.point_fields, header=layout.header, header_line=layout.header_line,
        columns=list(layout.names), renamed_duplicate_headers=layout.renamed_duplicate_headers + det.cols.renamed,
        metadata_lines=layout.metadata_lines, metadata_examples=layout.metadata_examples,
        blank_lines=layout.blank_lines + counts.blank_lines, bad_lines=counts.bad_lines,
        bad_line_examples=counts.bad_examples, empty_columns_dropped=dropped,
        datetime_format=parsed.datetime_format, dayfirst_applied=bool(parsed.dayfirst_applied),
        timezone=options.timezone, lines_read=reader.lines_read, rows_in=counts.rows,
        unparseable_time=int(parsed.unparseable_count),
        unparseable_time_examples=list(parsed.unparseable_examples)[:MAX_EXAMPLES],
        coerced_year_rows=int(parsed.coerced_year_rows), duplicate_rows_removed=removed,
        rows_out=int(utc.size), first_utc=_iso(utc[0]) if utc.size else None,
        last_utc=_iso(utc[-1]) if utc.size else None,
        channels={c: _channel_report(channel_counts[c]) for c in values}, warnings=warnings,
        **{key: int(times.counts.get(key, 0)) for key in (
            "aware_rows", "naive_rows", "ambiguous_earliest", "ambiguous_latest", "ambiguous_dropped",
            "ambiguous_assumed_earliest", "nonexistent_shifted", "nonexistent_dropped")},
    )
    return _SourceData(utc, values, report)


def _channel_report(c: lc.ColumnCounts) -> ChannelReport:
    return ChannelReport(
        values=c.values, numeric=c.numeric, missing=c.missing, non_numeric=c.non_numeric,
        non_numeric_examples=list(c.examples), thousands_grouped=c.thousands_grouped,
        numeric_share_percent=round(100.0 * c.numeric / c.values, 2) if c.values else 0.0,
    )


# --------------------------------------------------------------------------------------------
# Merge (§1.7)
# --------------------------------------------------------------------------------------------


@dataclass
class _Merged:
    utc: np.ndarray
    values: dict[str, np.ndarray]
    exact_removed: int = 0
    conflicts: int = 0
    removed: int = 0
    warnings: list[ReportWarning] = field(default_factory=list)


def _canonical_bits(values: np.ndarray) -> np.ndarray:
    """int64 keys that are equal exactly when values are equal, NaN counted equal to NaN."""
    v = np.where(np.isnan(values), np.nan, values + 0.0)  # one NaN pattern, -0.0 -> 0.0
    return v.view(np.int64)


def _merge_parts(parts: list[tuple[str, np.ndarray, dict[str, np.ndarray]]], policy: str) -> _Merged:
    """Merge sorted unique sources in the given order (§1.7 steps 1-4)."""
    channels: list[str] = list(dict.fromkeys(c for _, _, vals in parts for c in vals))
    warnings = []
    for name, utc, vals in parts:
        missing = [c for c in channels if c not in vals]
        if missing:
            warnings.append(ReportWarning(
                code="CHANNEL_MISSING_IN_SOURCE",
                message=f"{name}: channel(s) {missing} are missing in this source; they are NaN in its "
                f"{utc.size} row(s) and never override another source's value",
                count=int(utc.size) * len(missing), examples=[{"column": c} for c in missing[:MAX_EXAMPLES]],
            ))
    utc_all = np.concatenate([u for _, u, _ in parts]) if parts else np.zeros(0, np.int64)
    order = np.argsort(utc_all, kind="stable")
    utc_sorted = utc_all[order]
    starts = _group_starts(utc_sorted)

    def column(channel: str) -> tuple[np.ndarray, np.ndarray]:
        vals = np.concatenate([v[channel] if channel in v else np.full(u.size, np.nan) for _, u, v in parts])
        has = np.concatenate([np.full(u.size, channel in v) for _, u, v in parts])
        return vals[order], has[order]

    if starts.size == utc_sorted.size:
        out = {c: column(c)[0] for c in channels}
        return _Merged(utc_sorted, out, warnings=warnings)
    sizes = np.diff(np.r_[starts, utc_sorted.size])
    equal = np.ones(starts.size, dtype=bool)
    for c in channels:
        vals, has = column(c)
        bits = _canonical_bits(vals)
        lo = np.minimum.reduceat(np.where(has, bits, _I64_MAX), starts)
        hi = np.maximum.reduceat(np.where(has, bits, _I64_MIN), starts)
        equal &= (lo == hi) | (lo == _I64_MAX)
    repeated = sizes > 1
    exact = repeated & equal
    conflict = repeated & ~equal
    merged = _Merged(utc_sorted[starts], {}, warnings=warnings)
    merged.exact_removed = int((sizes[exact] - 1).sum())
    merged.conflicts = int(conflict.sum())
    merged.removed = int((sizes[conflict] - 1).sum())
    if policy == "raise" and merged.conflicts:
        conflict_starts = starts[conflict]
        stamps = [_iso(utc_sorted[s]) for s in conflict_starts[:MAX_EXAMPLES]]
        names = [name for name, _, _ in parts]
        raise lc.load_error(
            "DUPLICATE_TIMESTAMPS",
            f"{merged.conflicts} time stamp(s) hold different values in different sources; first {stamps} "
            "under duplicates='raise'",
            source="merge of " + ", ".join(names), count=merged.removed, instants=merged.conflicts,
            timestamps=stamps,
        )
    for c in channels:
        vals, has = column(c)
        first = _resolve(vals, has, starts, "first")
        merged.values[c] = first if policy == "first" else np.where(exact, first,
                                                                    _resolve(vals, has, starts, policy))
    return merged


def _sum_channels(reports: list[SourceReport]) -> dict[str, ChannelReport]:
    out: dict[str, ChannelReport] = {}
    for rep in reports:
        for channel, c in rep.channels.items():
            agg = out.setdefault(channel, ChannelReport())
            agg.values += c.values
            agg.numeric += c.numeric
            agg.missing += c.missing
            agg.non_numeric += c.non_numeric
            agg.thousands_grouped += c.thousands_grouped
            for example in c.non_numeric_examples:
                if len(agg.non_numeric_examples) < MAX_EXAMPLES:
                    agg.non_numeric_examples.append({"source": rep.source, **example}
                                                    if len(reports) > 1 else dict(example))
    for agg in out.values():
        agg.numeric_share_percent = round(100.0 * agg.numeric / agg.values, 2) if agg.values else 0.0
    return out


def _resolved_parameters(options: LoadOptions, reports: list[SourceReport]) -> dict[str, Any]:
    """The options plus the values detected from the data, where all sources agree (§0.8)."""
    params = options.model_dump(mode="json")
    detected = {
        "encoding": {r.encoding for r in reports},
        "delimiter": {r.delimiter for r in reports},
        "decimal": {r.decimal for r in reports},
        "header": {"yes" if r.header else "no" for r in reports},
        "datetime_format": {r.datetime_format for r in reports},
    }
    for key, found in detected.items():
        if params.get(key) in ("auto", None) and len(found) == 1:
            params[key] = next(iter(found))
    params["dayfirst_applied"] = any(r.dayfirst_applied for r in reports)
    return params


def _build_result(
    merged: _Merged, reports: list[SourceReport], *, parameters: dict[str, Any], parameters_hash: str,
    started: float, name: str, extra_warnings: list[ReportWarning] | None = None,
) -> LoadResult:
    frame = _frame(merged.utc, merged.values, name)
    warnings = [w for r in reports for w in r.warnings] + merged.warnings + list(extra_warnings or [])
    report = LoadReport(
        rows_in=sum(r.rows_in for r in reports), rows_out=int(len(frame)), columns_out=list(frame.columns),
        parameters=parameters, parameters_hash=parameters_hash, warnings=warnings, sources=reports,
        channels=_sum_channels(reports),
        duplicate_rows_removed=sum(r.duplicate_rows_removed for r in reports) + merged.removed,
        exact_duplicates_removed=merged.exact_removed, conflicting_duplicates=merged.conflicts,
        first_utc=_iso(merged.utc[0]) if merged.utc.size else None,
        last_utc=_iso(merged.utc[-1]) if merged.utc.size else None,
        step_statistics=step_statistics(frame),
    )
    report.duration_seconds = time.perf_counter() - started
    return LoadResult(frame, report)


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def _is_sequence(source: Any) -> bool:
    return isinstance(source, list | tuple)


def read_raw(
    source: Any, options: LoadOptions | None = None, *, progress: ProgressCallback | None = None,
    _chunk_rows: int | None = None,
) -> LoadResult:
    """Read one raw export, or merge several (a list/tuple of sources), into a canonical frame.

    ``source`` is a path, fsspec URL, ``bytes``, binary file object or a sequence of these. Errors
    are ``LoadError`` with the §1.10 codes; messages name the source and the line or column.
    ``_chunk_rows`` overrides ``options.chunk_rows`` below its validated minimum (tests only).
    """
    started = time.perf_counter()
    options = options if options is not None else LoadOptions()
    sources = list(source) if _is_sequence(source) else [source]
    if not sources:
        raise ParameterError("MISSING_PARAMETER", "read_raw needs at least one source",
                             details={"errors": [{"loc": "source", "code": "MISSING_PARAMETER",
                                                  "message": "no source given"}]})
    parts = [_read_source(s, options, progress, i, len(sources), chunk_rows=_chunk_rows)
             for i, s in enumerate(sources)]
    reports = [p.report for p in parts]
    if len(parts) == 1:
        merged = _Merged(parts[0].utc, parts[0].values)
    else:
        merged = _merge_parts([(p.report.source, p.utc, p.values) for p in parts], options.duplicates)
        emit(progress, ProgressEvent(STAGE, "phase", 1, 1, f"merged {len(parts)} sources"))
    del parts
    return _build_result(
        merged, reports, parameters=_resolved_parameters(options, reports),
        parameters_hash=options.parameters_hash(), started=started, name=reports[0].source,
    )


def merge(
    results: Sequence[LoadResult], duplicates: str = "first", *, progress: ProgressCallback | None = None
) -> LoadResult:
    """Merge sources read with different options (§1.7), in the given order."""
    started = time.perf_counter()
    if duplicates not in DUPLICATES:
        message = f"duplicates={duplicates!r} is not allowed: choose one of {list(DUPLICATES)}"
        raise ParameterError("INVALID_CHOICE", message, details={"errors": [
            {"loc": "duplicates", "code": "INVALID_CHOICE", "message": message}]})
    if not results:
        raise ParameterError("MISSING_PARAMETER", "merge needs at least one result", details={"errors": [
            {"loc": "results", "code": "MISSING_PARAMETER", "message": "no result given"}]})
    parts = []
    reports: list[SourceReport] = []
    for result in results:
        validate_frame(result.frame, "merge input")
        name = ", ".join(r.source for r in result.report.sources) or "<frame>"
        frame = result.frame
        parts.append((name, frame.index.asi8.astype(np.int64),
                      {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}))
        reports.extend(result.report.sources)
    merged = _merge_parts(parts, duplicates)
    emit(progress, ProgressEvent(STAGE, "phase", 1, 1, f"merged {len(parts)} results"))
    parameters = {"duplicates": duplicates, "sources": [r.report.parameters for r in results]}
    parameters_hash = sha256_json({"duplicates": duplicates,
                                   "sources": [r.report.parameters_hash for r in results]})
    prior = sum(r.report.duplicate_rows_removed - sum(s.duplicate_rows_removed for s in r.report.sources)
                for r in results)
    merged.removed += prior
    merged.exact_removed += sum(r.report.exact_duplicates_removed for r in results)
    merged.conflicts += sum(r.report.conflicting_duplicates for r in results)
    return _build_result(merged, reports, parameters=parameters, parameters_hash=parameters_hash,
                         started=started, name="merge")
