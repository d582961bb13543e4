"""The load stage's fast paths (stages.md §1.5, §1.8): pyarrow's ISO 8601 cast for fixed-width
time stamps and the streaming shortcuts (line ranges, mapped columns, sliced checks). Every test
compares a fast result with what the exact path gives for the same input: same frame, same report."""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import LoadError
from zeitflow.options.load import LoadOptions
from zeitflow.stages import load as ld
from zeitflow.stages import load_csv as lc
from zeitflow.stages import load_time as lt
from zeitflow.stages.load import LoadResult, read_raw, step_statistics
from zeitflow.stages.load_time import TimeFormat, TimeParser, localize

SRC = "fast.csv"


# --------------------------------------------------------------------------------------------
# Helpers: the exact path on demand, a spy on the fast path
# --------------------------------------------------------------------------------------------


@contextmanager
def exact_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Within the block, no TimeParser takes the fast path."""
    with monkeypatch.context() as m:
        m.setattr(lt, "_fast_plan", lambda spec, coerce_year: None)
        yield


@contextmanager
def fast_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """Counts the blocks the fast path took (``taken``) and handed to the exact path (``passed``)."""
    counts = {"taken": 0, "passed": 0}
    real = lt._fast_wall

    def spy(arr: pa.Array, plan: Any) -> np.ndarray | None:
        out = real(arr, plan)
        counts["taken" if out is not None else "passed"] += 1
        return out

    with monkeypatch.context() as m:
        m.setattr(lt, "_fast_wall", spy)
        yield counts


def report_of(result: LoadResult) -> dict[str, Any]:
    report = result.report.model_dump(mode="json")
    report.pop("duration_seconds")
    return report


def assert_same_result(fast: LoadResult, exact: LoadResult) -> None:
    assert fast.frame.index.equals(exact.frame.index)
    assert fast.frame.index.dtype == exact.frame.index.dtype and fast.frame.index.name == exact.frame.index.name
    assert list(fast.frame.columns) == list(exact.frame.columns)
    assert fast.frame.equals(exact.frame)
    assert report_of(fast) == report_of(exact)


def read_both(monkeypatch: pytest.MonkeyPatch, data: bytes, chunk_rows: int | None = None,
              **options: Any) -> tuple[LoadResult, LoadResult, dict[str, int]]:
    """(fast-path result, exact-path result, fast-path block counts)."""
    with fast_spy(monkeypatch) as counts:
        fast = read_raw(data, LoadOptions(**options), _chunk_rows=chunk_rows)
    with exact_path(monkeypatch):
        exact = read_raw(data, LoadOptions(**options), _chunk_rows=chunk_rows)
    return fast, exact, counts


def raise_both(monkeypatch: pytest.MonkeyPatch, data: bytes, chunk_rows: int | None = None,
               **options: Any) -> tuple[LoadError, LoadError]:
    with pytest.raises(LoadError) as fast:
        read_raw(data, LoadOptions(**options), _chunk_rows=chunk_rows)
    with exact_path(monkeypatch), pytest.raises(LoadError) as exact:
        read_raw(data, LoadOptions(**options), _chunk_rows=chunk_rows)
    return fast.value, exact.value


def parse_blocks(fmt: TimeFormat, texts: list[str], sizes: list[int], *, coerce_year: int | None = None,
                 fast: bool = True) -> lt.ParsedTimes:
    parser = TimeParser(fmt, dayfirst=True, coerce_year=coerce_year, source=SRC, capacity=3)
    if not fast:
        parser._fast = None
    lines = np.arange(2, 2 + len(texts), dtype=np.int64)
    start = 0
    for size in sizes:
        parser.add(pa.array(texts[start: start + size], pa.string()), lines[start: start + size])
        start += size
    return parser.finish()


def assert_same_parse(fast: lt.ParsedTimes, exact: lt.ParsedTimes) -> None:
    assert np.array_equal(fast.wall_ns, exact.wall_ns)
    assert np.array_equal(fast.valid, exact.valid)
    assert np.array_equal(fast.aware, exact.aware)
    assert fast.wall_ns.dtype == exact.wall_ns.dtype == np.int64
    assert fast.valid.dtype == exact.valid.dtype == bool and fast.aware.dtype == bool
    for name in ("unparseable_examples", "unparseable_count", "coerced_year_rows", "dayfirst_applied",
                 "datetime_format", "warnings"):
        assert getattr(fast, name) == getattr(exact, name), name


def stamps(n: int, fmt: str = "%Y-%m-%d %H:%M:%S", start: str = "2024-03-30 22:00:00", step_s: int = 60) -> list[str]:
    times = pd.date_range(start, periods=n, freq=f"{step_s}s")
    return list(times.strftime(fmt))


# --------------------------------------------------------------------------------------------
# Which formats have a fast path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "length"), [
    (TimeFormat("iso", "iso"), None),
    (TimeFormat("iso", "iso", explicit=True), None),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), 19),
    (TimeFormat("strptime", "%Y-%m-%dT%H:%M", explicit=True), 16),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), 19),
    (TimeFormat("strptime", "%H:%M %d.%m.%Y", explicit=True), 16),
    (TimeFormat("strptime", "%Y/%m/%d %H:%M:%S"), 19),
    (TimeFormat("strptime", "%Y/%m/%d"), 10),
    (TimeFormat("compact", "%Y%m%d%H%M%S"), 14),
    (TimeFormat("compact", "%Y%m%d"), 8),
])
def test_formats_with_a_fast_path(fmt: TimeFormat, length: int | None) -> None:
    plan = lt._fast_plan(lt._spec_for(fmt), None)
    assert plan is not None
    if length is None:
        assert plan.runs is None and 13 not in plan.lengths and {10, 16, 19, 29} <= plan.lengths
    else:
        assert plan.lengths == {length}


@pytest.mark.parametrize("fmt", [
    TimeFormat("daymonth", "%d.%m.%Y %H:%M:%S"),  # order decided on the whole column (§1.8)
    TimeFormat("epoch_s", "epoch_s"),
    TimeFormat("strptime", "%d.%m.%y %H:%M", explicit=True),
    TimeFormat("strptime", "%Y-%m-%d %H:%M:%S.%f", explicit=True),
    TimeFormat("strptime", "%Y-%m-%d %I:%M %p", explicit=True),
    TimeFormat("strptime", "%Y-%m-%d %H", explicit=True),
    TimeFormat("strptime", "%Y-%m-%d %H:%M:%S%z", explicit=True),
    TimeFormat("strptime", "%Y-%m-%d %H:%M:%S %%", explicit=True),
    TimeFormat("strptime", "%d %B %Y", explicit=True),
])
def test_formats_without_a_fast_path(fmt: TimeFormat) -> None:
    assert lt._fast_plan(lt._spec_for(fmt), None) is None


def test_coerce_year_has_no_fast_path() -> None:
    assert lt._fast_plan(lt._spec_for(TimeFormat("iso", "iso")), 2023) is None
    texts = stamps(50)
    assert_same_parse(parse_blocks(TimeFormat("iso", "iso"), texts, [50], coerce_year=2023),
                      parse_blocks(TimeFormat("iso", "iso"), texts, [50], coerce_year=2023, fast=False))


# --------------------------------------------------------------------------------------------
# TimeParser: fast and exact give the same parse
# --------------------------------------------------------------------------------------------

# (format, text, taken by the fast path)
BOUNDARY_TEXTS = [
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00", True),
    (TimeFormat("iso", "iso"), "2024-01-01T23:59:59", True),
    (TimeFormat("iso", "iso"), "2024-02-29 12:00", True),
    (TimeFormat("iso", "iso"), "2024-02-29", True),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00.5", True),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00.123456789", True),
    (TimeFormat("iso", "iso"), "1678-01-01 00:00:00", True),
    (TimeFormat("iso", "iso"), "2261-12-31 23:59:59", True),
    (TimeFormat("iso", "iso"), "2024-01-01 05", False),  # pyarrow reads an hour alone, §1.5 does not
    (TimeFormat("iso", "iso"), "1677-12-31 23:59:59", False),
    (TimeFormat("iso", "iso"), "2262-01-01 00:00:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 24:00:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 24:00", False),
    (TimeFormat("iso", "iso"), "2023-02-29 00:00:00", False),
    (TimeFormat("iso", "iso"), "2024-13-01 00:00:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:60:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:60", False),
    (TimeFormat("iso", "iso"), "2024-01-01t00:00:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00Z", False),
    (TimeFormat("iso", "iso"), "2024-01-01 05:30+01", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00+01:00", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00.", False),
    (TimeFormat("iso", "iso"), "2024-01-01 00:00:00.1234567891", False),
    (TimeFormat("iso", "iso"), "2024-1-01 00:00:00", False),
    (TimeFormat("iso", "iso"), "", False),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), "2024-06-30 12:34:56", True),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), "2024-06-30T12:34:56", False),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), "2024-06-30\t12:34:56", False),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), "2024-6-30  12:34:56", False),
    (TimeFormat("strptime", "%Y-%m-%d %H:%M:%S", explicit=True), "2024-06-30 24:00:00", False),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "31.12.2024 23:59:59", True),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "1.12.2024  3:59:59", False),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "12.31.2024 23:59:59", False),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "31-12-2024 23:59:59", False),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "3a.12.2024 23:59:59", False),
    (TimeFormat("strptime", "%H:%M %d.%m.%Y", explicit=True), "07:05 29.02.2024", True),
    (TimeFormat("strptime", "%Y/%m/%d %H:%M:%S"), "2024/06/30 12:34:56", True),
    (TimeFormat("strptime", "%Y/%m/%d %H:%M:%S"), "2024/06/30 12:34:56.25", False),
    (TimeFormat("compact", "%Y%m%d%H%M%S"), "20240630123456", True),
    (TimeFormat("compact", "%Y%m%d%H%M%S"), "20240630240000", False),
    (TimeFormat("compact", "%Y%m%d"), "20240229", True),
    (TimeFormat("compact", "%Y%m%d"), "16771231", False),
]


@pytest.mark.parametrize(("fmt", "text", "taken"), BOUNDARY_TEXTS)
def test_boundary_texts(monkeypatch: pytest.MonkeyPatch, fmt: TimeFormat, text: str, taken: bool) -> None:
    texts = [text] * 3
    with fast_spy(monkeypatch) as counts:
        fast = parse_blocks(fmt, texts, [3])
    assert counts == {"taken": int(taken), "passed": int(not taken)}
    assert_same_parse(fast, parse_blocks(fmt, texts, [3], fast=False))


@pytest.mark.parametrize(("fmt", "text", "taken"), [c for c in BOUNDARY_TEXTS if not c[2]])
def test_one_bad_text_sends_its_block_to_the_exact_path(monkeypatch: pytest.MonkeyPatch, fmt: TimeFormat,
                                                        text: str, taken: bool) -> None:
    good = stamps(30, "%Y-%m-%d %H:%M:%S" if fmt.kind == "iso" else fmt.format)
    texts = good[:10] + good[10:20][:4] + [text] + good[15:20] + good[20:]
    with fast_spy(monkeypatch) as counts:
        fast = parse_blocks(fmt, texts, [10, 10, 10])
    assert counts == {"taken": 2, "passed": 1}
    assert_same_parse(fast, parse_blocks(fmt, texts, [10, 10, 10], fast=False))


_FUZZ_FORMATS = [
    (TimeFormat("iso", "iso"), "%Y-%m-%d %H:%M:%S"),
    (TimeFormat("iso", "iso"), "%Y-%m-%dT%H:%M"),
    (TimeFormat("iso", "iso"), "%Y-%m-%d"),
    (TimeFormat("strptime", "%d.%m.%Y %H:%M:%S", explicit=True), "%d.%m.%Y %H:%M:%S"),
    (TimeFormat("strptime", "%Y/%m/%d %H:%M:%S"), "%Y/%m/%d %H:%M:%S"),
    (TimeFormat("compact", "%Y%m%d%H%M%S"), "%Y%m%d%H%M%S"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    choice=st.integers(0, len(_FUZZ_FORMATS) - 1),
    year=st.sampled_from([1677, 1678, 1970, 2024, 2261, 2262]),
    seconds=st.lists(st.integers(0, 400 * 86_400), min_size=1, max_size=12),
    edits=st.lists(st.tuples(st.integers(0, 11), st.integers(0, 30), st.sampled_from(list("0129 -:T.t/+Z"))),
                   max_size=3),
    fraction=st.sampled_from(["", ".5", ".123456789", ".1234567891"]),
    split=st.integers(1, 12),
)
def test_fast_and_exact_parse_agree(choice: int, year: int, seconds: list[int],
                                    edits: list[tuple[int, int, str]], fraction: str, split: int) -> None:
    fmt, pattern = _FUZZ_FORMATS[choice]
    base = pd.Timestamp(year=year, month=1, day=1) if year not in (1677, 2262) else pd.Timestamp("2000-01-01")
    texts = [(base + pd.Timedelta(seconds=s)).strftime(pattern) for s in seconds]
    if year in (1677, 2262):  # outside pandas' range: write the year digits directly
        texts = [str(year) + t[4:] if pattern.startswith("%Y") else t.replace("2000", str(year)) for t in texts]
    if fraction and pattern.endswith("%S"):
        texts = [t + fraction for t in texts]
    for row, pos, ch in edits:
        if row < len(texts) and pos < len(texts[row]):
            texts[row] = texts[row][:pos] + ch + texts[row][pos + 1:]
    sizes = [min(split, len(texts) - i) for i in range(0, len(texts), split)]
    assert_same_parse(parse_blocks(fmt, texts, sizes), parse_blocks(fmt, texts, sizes, fast=False))


def test_parser_stops_trying_when_most_blocks_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every day ends in 24:00 instead of 00:00: every block needs the exact path.
    days = pd.date_range("2024-01-01", periods=12, freq="D")
    texts = [f"{d:%Y-%m-%d} {h:02d}:00:00" for d in days for h in range(1, 25)]
    sizes = [24] * 12
    fmt = TimeFormat("iso", "iso")
    with fast_spy(monkeypatch) as counts:
        parser = TimeParser(fmt, dayfirst=True, coerce_year=None, source=SRC)
        lines = np.arange(2, 2 + len(texts))
        for i in range(12):
            parser.add(pa.array(texts[24 * i: 24 * i + 24]), lines[24 * i: 24 * i + 24])
        fast = parser.finish()
    assert counts == {"taken": 0, "passed": 3} and parser._fast is None
    assert_same_parse(fast, parse_blocks(fmt, texts, sizes, fast=False))
    assert int(fast.valid.sum()) == len(texts)


def test_wall_buffer_grows_past_its_capacity() -> None:
    texts = stamps(1000)
    parser = TimeParser(TimeFormat("iso", "iso"), dayfirst=True, coerce_year=None, source=SRC, capacity=10)
    for i in range(0, 1000, 7):
        parser.add(pa.array(texts[i: i + 7]), np.arange(i + 2, i + 2 + len(texts[i: i + 7])))
    parsed = parser.finish()
    expected = pd.DatetimeIndex(texts).as_unit("ns").asi8
    assert np.array_equal(parsed.wall_ns, expected) and parsed.valid.all() and not parsed.aware.any()


# --------------------------------------------------------------------------------------------
# read_raw: fast and exact give the same frame and report
# --------------------------------------------------------------------------------------------


def _csv(rows: list[str], header: str = "Zeit;A [kW];B") -> bytes:
    return (header + "\n" + "\n".join(rows) + "\n").encode("utf-8")


def _rows(texts: list[str]) -> list[str]:
    return [f"{t};{i % 97},{i % 10};{(i * 7) % 13}" for i, t in enumerate(texts)]


@pytest.mark.parametrize(("pattern", "options"), [
    ("%Y-%m-%d %H:%M:%S", {}),
    ("%Y-%m-%dT%H:%M:%S", {"timezone": "Europe/Berlin", "ambiguous": "infer"}),
    ("%Y-%m-%d %H:%M:%S", {"timezone": "Europe/Berlin", "nonexistent": "drop", "duplicates": "mean"}),
    ("%Y-%m-%d %H:%M:%S", {"datetime_format": "%Y-%m-%d %H:%M:%S", "timezone": "Etc/GMT-1"}),
    ("%d.%m.%Y %H:%M:%S", {"datetime_format": "%d.%m.%Y %H:%M:%S", "timezone": "Europe/Vienna"}),
    ("%Y/%m/%d %H:%M:%S", {}),
    ("%Y%m%d%H%M%S", {}),
])
def test_large_input_in_small_blocks_is_read_as_by_the_exact_path(
    monkeypatch: pytest.MonkeyPatch, pattern: str, options: dict[str, Any]
) -> None:
    # 9000 rows over the spring-forward night of 2024, read in blocks of 997 rows: the special
    # rows send their blocks to the exact path, the other blocks take the fast path.
    times = pd.date_range("2024-03-30 21:00:00", periods=9000, freq="30s")
    rows = _rows(list(times.strftime(pattern)))
    rows[3000] = f"{times[3000].strftime(pattern.replace('%H', '24').replace('%M', '00').replace('%S', '00'))};1,5;2"
    rows[4100] = f"{times[4100].strftime(pattern.replace('%m', '13'))};3;4"  # unparseable time
    rows[5200] = ""  # blank line
    rows[6300] = "kaputt;1"  # bad line
    rows[7400] = f"{times[7400].strftime(pattern)};abc;1"  # non-numeric value
    rows[8000] = rows[7999]  # a duplicate inside a block
    rows[997 * 3] = rows[997 * 3 - 1]  # a duplicate across a block boundary
    fast, exact, counts = read_both(monkeypatch, _csv(rows), chunk_rows=997, **options)
    assert counts["taken"] >= 4 and counts["passed"] >= 2
    assert_same_result(fast, exact)
    source = fast.report.sources[0]
    assert source.unparseable_time == 1 and source.bad_lines == 1 and source.blank_lines == 1
    assert fast.report.channels["A [kW]"].non_numeric == 1


def test_24_00_is_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = stamps(5000, start="2024-01-01 00:00:10", step_s=10)
    rows = _rows(texts)
    rows[2500] = "2024-01-01 24:00:00;7;7"  # 00:00 of the next day, inside the data
    fast, exact, counts = read_both(monkeypatch, _csv(rows), chunk_rows=400)
    assert counts["taken"] >= 5 and counts["passed"] == 1
    assert_same_result(fast, exact)
    assert pd.Timestamp("2024-01-02 00:00", tz="UTC") in fast.frame.index


def test_whole_column_day_month_decision_is_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    # Auto-detected day/month texts keep the exact path; the late 13 decides the order (§1.5).
    texts = [f"{d:%m.%d.%Y %H:%M}" for d in pd.date_range("2024-01-01", periods=3000, freq="h")]
    texts[-1] = "12.13.2024 00:00"
    fast, exact, counts = read_both(monkeypatch, _csv(_rows(texts)), chunk_rows=500)
    assert counts == {"taken": 0, "passed": 0}
    assert_same_result(fast, exact)
    assert fast.report.sources[0].datetime_format == "%m.%d.%Y %H:%M"


def test_errors_are_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = stamps(3000, start="2024-10-26 23:00:00", step_s=60)
    rows = _rows(texts)
    fast, exact = raise_both(monkeypatch, _csv(rows), chunk_rows=300, timezone="Europe/Berlin", ambiguous="raise")
    assert fast.code == exact.code == "AMBIGUOUS_TIME"
    assert fast.message == exact.message and fast.details == exact.details
    rows[2000] = rows[1000]
    fast, exact = raise_both(monkeypatch, _csv(rows), chunk_rows=300, duplicates="raise")
    assert fast.code == exact.code == "DUPLICATE_TIMESTAMPS"
    assert fast.message == exact.message and fast.details == exact.details


def test_unsorted_input_with_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = stamps(4000)
    order = np.random.default_rng(5).permutation(4000)
    base = _rows(texts)
    rows = [base[i] for i in order] + base[:100]
    fast, exact, counts = read_both(monkeypatch, _csv(rows), chunk_rows=512, duplicates="last")
    assert counts["taken"] > 0
    assert_same_result(fast, exact)
    assert fast.report.duplicate_rows_removed == 100


# --------------------------------------------------------------------------------------------
# Streaming shortcuts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [
    0, 5, -1, -10, slice(None), slice(2, 7), slice(7, 2), slice(None, None, 3), slice(8, 1, -2), slice(-4, None),
    np.array([0, 3, 9, -1]), np.array([], dtype=np.int64), np.arange(10) % 3 == 0, [1, 2],
])
def test_line_range_indexes_like_its_array(key: Any) -> None:
    array = np.arange(42, 52, dtype=np.int64)
    lines = ld._LineRange(42, 10)
    got = lines[key]
    expected = array[key]
    if np.ndim(expected) == 0:
        assert isinstance(got, np.integer) and got == expected
    else:
        assert np.array_equal(np.asarray(got), expected) and len(got) == len(expected)
        assert [int(v) for v in got] == expected.tolist()


def test_line_range_behaves_like_an_array() -> None:
    lines = ld._LineRange(7, 4)
    assert lines.size == len(lines) == 4
    assert np.asarray(lines).tolist() == [7, 8, 9, 10] and np.asarray(lines).dtype == np.int64
    assert [int(v) for v in lines] == [7, 8, 9, 10]
    for bad in (4, -5, np.array([4]), np.array([-5])):
        with pytest.raises(IndexError):
            lines[bad]
    with pytest.raises(IndexError):
        lines[np.array([True, False])]


def test_accumulator_keeps_a_range_until_the_first_gap() -> None:
    acc = ld._Accumulator([1], 4)

    def block(first: int, lines: list[int]) -> lc.BlockRows:
        return lc.BlockRows(np.asarray(lines, dtype=np.int64), {}, {1: [np.asarray(lines, dtype=np.float64)]})

    acc.add(block(5, [5, 6, 7]))
    acc.add(block(8, [8, 9]))
    assert acc.lines is None and isinstance(acc.line_numbers(), ld._LineRange)
    assert np.asarray(acc.line_numbers()).tolist() == [5, 6, 7, 8, 9]
    acc.add(block(11, [11, 12, 14]))  # a blank or bad line 10 and 13
    acc.add(block(15, [15] * 0))
    acc.add(block(15, list(range(15, 2000))))
    expected = [5, 6, 7, 8, 9, 11, 12, 14, *range(15, 2000)]
    assert isinstance(acc.line_numbers(), np.ndarray) and acc.line_numbers().tolist() == expected
    assert acc.values[1][: acc.n].tolist() == [float(v) for v in expected]


def test_localize_reads_examples_from_a_line_range() -> None:
    wall = np.array([np.datetime64("2024-10-27T02:30", "ns").astype(np.int64)] * 3)
    aware = np.zeros(3, dtype=bool)
    kwargs = {"timezone": "Europe/Berlin", "ambiguous": "raise", "nonexistent": "raise", "source": SRC}
    with pytest.raises(LoadError) as from_range:
        localize(wall, aware, ld._LineRange(10, 3), **kwargs)
    with pytest.raises(LoadError) as from_array:
        localize(wall, aware, np.arange(10, 13), **kwargs)
    assert from_range.value.message == from_array.value.message and from_range.value.details["lines"] == [10, 11, 12]
    kwargs["ambiguous"] = "infer"
    a = localize(wall, aware, ld._LineRange(10, 3), **kwargs)
    b = localize(wall, aware, np.arange(10, 13), **kwargs)
    assert np.array_equal(a.utc_ns, b.utc_ns) and a.counts == b.counts and a.warnings == b.warnings


@pytest.mark.parametrize("size", [0, 100, 3_000_000])
def test_empty_column(size: int) -> None:
    column = lt.empty_column(size, np.float64)
    assert column.dtype == np.float64 and column.shape == (size,) and column.flags.writeable
    column[:] = 1.5
    assert float(column.sum()) == 1.5 * size
    if size * 8 >= lt._MAPPED_MIN_BYTES:
        assert isinstance(getattr(column.base, "obj", column.base), mmap.mmap)  # its own mapping


def test_frame_index_is_not_copied() -> None:
    utc = np.array([1_700_000_000_000_000_000, 1_700_000_060_000_000_000], dtype=np.int64)
    frame = ld._frame(utc, {"a": np.array([1.0, 2.0])}, SRC)
    assert np.shares_memory(frame.index.asi8, utc)
    assert frame.index.equals(pd.DatetimeIndex(["2023-11-14 22:13:20", "2023-11-14 22:14:20"], tz="UTC",
                                               name="utc").as_unit("ns"))


@pytest.mark.parametrize("text", [
    b"a\nb\nc", b"a\r\nb\r\n", b"a\rb\rc\r", b"\n\n\n", b"x" * 5,
])
def test_count_lines_in_large_buffers(text: bytes) -> None:
    small = lc.count_lines(text)
    big = text * (3 * lc._COUNT_SLICE // len(text) + 7)
    reference = big.count(b"\n") + big.count(b"\r") - big.count(b"\r\n") + (not big.endswith((b"\n", b"\r")))
    assert lc.count_lines(big) == reference
    assert lc.count_lines(bytearray(big)) == reference
    assert small == text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n") + (not text.endswith((b"\n", b"\r")))


@pytest.mark.parametrize("texts", [
    ["2024-01-01 00:00", "2024-01-01 00:15"],
    [" 2024-01-01 0:00", "2024-01-01 00:15"],
    ["2024-01-01 00:00 ", "2024-01-01 00:15"],
    ["2024-01-01 00:0\u00a0", "2024-01-01 00:1\u2003"],
    ["2024-01-01 00:00", "\t2024-01-01 0:15"],
    ["ab", "cd", ""],
    ["  ", "  "],
])
def test_stripped_texts(texts: list[str]) -> None:
    arr = pa.array(texts, pa.string())
    got = lc.stripped(arr)
    assert got.to_pylist() == pc.utf8_trim_whitespace(arr).to_pylist()
    chunked = pa.chunked_array([arr.slice(0, 1), arr.slice(1)])
    assert lc.stripped(chunked).to_pylist() == [t.strip() for t in texts]


def _step_reference(ns: np.ndarray) -> tuple[float, float, float, float | None, bool]:
    diffs = np.diff(ns)
    median = np.median(diffs)
    offset = (int(ns[0]) % int(median)) if float(median).is_integer() else None
    return float(median), float(diffs.min()), float(diffs.max()), offset, bool(diffs.min() == diffs.max())


@pytest.mark.parametrize("ns", [
    np.arange(5) * 600_000_000_000 + 1_700_000_000_000_000_000,
    np.arange(6) * 600_000_000_000 + 1_700_000_000_000_000_123,
    np.array([0, 10, 30, 31, 100], dtype=np.int64) * 1_000_000_000,
    np.array([0, 10, 30, 31], dtype=np.int64) * 1_000_000_000 + 7,
    np.array([5, 9], dtype=np.int64),
])
def test_step_statistics_match_the_full_difference_array(monkeypatch: pytest.MonkeyPatch, ns: np.ndarray) -> None:
    monkeypatch.setattr(ld, "_DIFF_SLICE", 2)
    frame = pd.DataFrame({"a": np.r_[np.nan, np.ones(ns.size - 1)]},
                         index=pd.DatetimeIndex(ns.astype(np.int64), dtype="datetime64[ns, UTC]", name="utc"))
    stats = step_statistics(frame)
    median, lo, hi, offset, regular = _step_reference(ns)
    assert stats.step_median_minutes == median / 60e9
    assert stats.step_min_minutes == lo / 60e9 and stats.step_max_minutes == hi / 60e9
    assert stats.regular is regular and stats.channels["a"].numeric == ns.size - 1
    if offset is not None:
        assert stats.offset_minutes == offset / 60e9


@pytest.mark.parametrize("values", [
    [], [1], [1, 1], [1, 2, 3, 4, 5], [1, 2, 2, 3], [5, 4], [1, 2, 3, 2], [1, 1, 2, 3, 4, 5, 6],
    [1, 2, 3, 4, 5, 6, 6],
])
def test_sliced_order_checks(monkeypatch: pytest.MonkeyPatch, values: list[int]) -> None:
    monkeypatch.setattr(ld, "_DIFF_SLICE", 2)
    a = np.asarray(values, dtype=np.int64)
    assert ld._nondecreasing(a) == bool(a.size < 2 or (np.diff(a) >= 0).all())
    if ld._nondecreasing(a):
        assert ld._has_repeats(a) == bool(a.size > 1 and (np.diff(a) == 0).any())


def test_body_blocks_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    real: Callable[..., Any] = lc.BlockReader.next_block

    def spy(self: lc.BlockReader, target: int) -> Any:
        sizes.append(target)
        return real(self, target)

    monkeypatch.setattr(lc.BlockReader, "next_block", spy)
    monkeypatch.setattr(ld, "BODY_BLOCK_BYTES", 4096)
    data = _csv(_rows(stamps(3000)))
    capped = read_raw(data)
    assert sizes and max(sizes[1:]) == 4096
    monkeypatch.setattr(ld, "BODY_BLOCK_BYTES", 1 << 30)
    assert_same_result(capped, read_raw(data))


def test_reader_reuses_a_block_buffer_only_once_it_is_released() -> None:
    text = b"".join(b"%06d;" % i + b"x" * 40 + b"\n" for i in range(60_000))  # about 2.8 MB
    reader = lc.BlockReader(lc.open_source(text), "auto")
    kept = reader.next_block(100_000)
    assert kept is not None
    kept_copy = bytes(kept.data)
    pieces = [kept_copy]
    second = reader.next_block(100_000)
    assert second is not None and second.data is not kept.data
    pieces.append(bytes(second.data))
    reused_id = id(second.data)
    del second
    third = reader.next_block(100_000)
    assert third is not None and id(third.data) == reused_id  # the released buffer is filled again
    pieces.append(bytes(third.data))
    del third
    while (block := reader.next_block(100_000)) is not None:
        pieces.append(bytes(block.data))
        del block
    assert bytes(kept.data) == kept_copy  # a block still referred to is never overwritten
    assert b"".join(pieces) == text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_mapped_columns_are_private_to_the_process() -> None:
    column = lt.empty_column(3_000_000, np.float64)
    column[:] = 1.0
    pid = os.fork()
    if pid == 0:  # the child writes its copy and leaves at once
        column[:] = 2.0
        os._exit(0)
    os.waitpid(pid, 0)
    assert float(column[0]) == float(column[-1]) == 1.0
