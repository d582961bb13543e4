"""Unit tests of the time-parsing half of the load stage (stages.md §1.5, §1.6, §1.8)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import LoadError
from zeitflow.stages.load_time import (
    PARTS_FORMAT,
    ParsedTimes,
    TimeFormat,
    TimeParser,
    combine_date_time,
    detect_time_format,
    localize,
    parses_as_time,
)

SRC = "test.csv"


def ns(text: str) -> int:
    """Nanoseconds since the epoch of a naive ISO text (a hand-written expected value)."""
    return int(np.datetime64(text, "ns").astype(np.int64))


def parse(
    texts: Sequence[str],
    datetime_format: str | None = None,
    *,
    dayfirst: bool = True,
    coerce_year: int | None = None,
    blocks: Sequence[int] | None = None,
    first_line: int = 2,
) -> tuple[TimeFormat, ParsedTimes]:
    """Detect on ``texts`` and parse them in blocks of the given sizes (default: one block)."""
    fmt = detect_time_format(list(texts), datetime_format, source=SRC)
    parser = TimeParser(fmt, dayfirst=dayfirst, coerce_year=coerce_year, source=SRC)
    feed(parser, texts, blocks, first_line)
    return fmt, parser.finish()


def feed(parser: TimeParser, texts: Sequence[str], blocks: Sequence[int] | None, first_line: int = 2) -> None:
    arr = np.array(list(texts), dtype=object)
    lines = np.arange(first_line, first_line + len(arr), dtype=np.int64)
    sizes = list(blocks) if blocks is not None else [len(arr)]
    start = 0
    for size in sizes:
        parser.add(arr[start : start + size], lines[start : start + size])
        start += size
    assert start == len(arr)


def walls(result: ParsedTimes) -> list[int | None]:
    return [int(v) if ok else None for v, ok in zip(result.wall_ns, result.valid, strict=True)]


def run_localize(wall: Sequence[int], *, timezone: str = "Europe/Vienna", ambiguous: str = "infer",
                 nonexistent: str = "shift_forward", aware: Sequence[bool] | None = None):
    w = np.array(wall, dtype=np.int64)
    a = np.zeros(len(w), dtype=bool) if aware is None else np.array(aware, dtype=bool)
    lines = np.arange(2, 2 + len(w), dtype=np.int64)
    return localize(w, a, lines, timezone=timezone, ambiguous=ambiguous, nonexistent=nonexistent, source=SRC)


# --------------------------------------------------------------------------------------------
# Candidate families
# --------------------------------------------------------------------------------------------


def test_iso_variants() -> None:
    fmt, res = parse([
        "2024-03-05T06:07:08",
        "2024-03-05 06:07",
        "2024-03-05 06:07:08.25",
        "2024-03-05",
        "2024-03-05T06:07:08.123456789",
    ])
    assert (fmt.kind, fmt.format) == ("iso", "iso")
    assert walls(res) == [
        ns("2024-03-05T06:07:08"),
        ns("2024-03-05T06:07:00"),
        ns("2024-03-05T06:07:08.250"),
        ns("2024-03-05T00:00:00"),
        ns("2024-03-05T06:07:08.123456789"),
    ]
    assert not res.aware.any()
    assert res.datetime_format == "iso"
    assert res.dayfirst_applied is False
    assert res.warnings == []


def test_iso_offsets_are_aware_and_converted() -> None:
    _, res = parse([
        "2024-06-01T12:00:00Z",
        "2024-06-01T12:00:00+02:00",
        "2024-06-01 12:00+0200",
        "2024-06-01T12:00:00.5-01:30",
        "2024-06-01T12:00:00",
    ])
    assert walls(res) == [
        ns("2024-06-01T12:00:00"),
        ns("2024-06-01T10:00:00"),
        ns("2024-06-01T10:00:00"),
        ns("2024-06-01T13:30:00.5"),
        ns("2024-06-01T12:00:00"),
    ]
    assert res.aware.tolist() == [True, True, True, True, False]
    loc = localize(res.wall_ns, res.aware, np.arange(2, 7), timezone="Europe/Vienna", ambiguous="infer",
                   nonexistent="shift_forward", source=SRC)
    # aware rows pass through; the naive one is CEST (+02:00)
    assert loc.utc_ns.tolist()[:4] == res.wall_ns.tolist()[:4]
    assert int(loc.utc_ns[4]) == ns("2024-06-01T10:00:00")
    assert loc.counts["aware_rows"] == 4
    assert loc.counts["naive_rows"] == 1


def test_ymd_slash_family() -> None:
    fmt, res = parse(["2024/01/02 03:04:05", "2024/1/2 3:04:05.5"])
    assert (fmt.kind, fmt.format) == ("strptime", "%Y/%m/%d %H:%M:%S")
    assert walls(res) == [ns("2024-01-02T03:04:05"), ns("2024-01-02T03:04:05.5")]
    fmt, res = parse(["2024/01/02 03:04", "2024/12/31 23:59"])
    assert fmt.format == "%Y/%m/%d %H:%M"
    assert walls(res) == [ns("2024-01-02T03:04"), ns("2024-12-31T23:59")]
    fmt, res = parse(["2024/01/02"])
    assert fmt.format == "%Y/%m/%d"
    assert walls(res) == [ns("2024-01-02")]


def test_compact_family_exact_lengths() -> None:
    fmt, res = parse(["20240102030405", "20240102030405.5"])
    assert (fmt.kind, fmt.format) == ("compact", "%Y%m%d%H%M%S")
    assert walls(res) == [ns("2024-01-02T03:04:05"), ns("2024-01-02T03:04:05.5")]
    fmt, res = parse(["202401020304"])
    assert fmt.format == "%Y%m%d%H%M"
    assert walls(res) == [ns("2024-01-02T03:04")]
    fmt, res = parse(["20240102", "20241231"])
    assert fmt.format == "%Y%m%d"
    assert walls(res) == [ns("2024-01-02"), ns("2024-12-31")]
    # ten digits are no compact form: a plain number, i.e. epoch seconds
    fmt = detect_time_format(["1704067200"], None, source=SRC)
    assert fmt.kind == "epoch_s"


@pytest.mark.parametrize("sep", [".", "/", "-"])
@pytest.mark.parametrize(
    ("time_text", "time_format", "clock"),
    [
        ("", "", "00:00:00"),
        (" 06:07:08", " %H:%M:%S", "06:07:08"),
        (" 06:07", " %H:%M", "06:07:00"),
        (" 06:07:08 PM", " %I:%M:%S %p", "18:07:08"),
        (" 6:07 AM", " %I:%M %p", "06:07:00"),
    ],
)
def test_daymonth_family(sep: str, time_text: str, time_format: str, clock: str) -> None:
    texts = [f"25{sep}12{sep}2023{time_text}", f"1{sep}2{sep}2024{time_text}"]
    fmt, res = parse(texts)
    assert fmt.kind == "daymonth"
    assert fmt.format == f"%d{sep}%m{sep}%Y{time_format}"
    assert res.datetime_format == f"%d{sep}%m{sep}%Y{time_format}"
    assert res.dayfirst_applied is False  # 25 > 12 forces day-first
    assert walls(res) == [ns(f"2023-12-25T{clock}"), ns(f"2024-02-01T{clock}")]


def test_two_digit_years_follow_strptime_pivot() -> None:
    fmt, res = parse(["31.12.68 10:00", "01.01.69 10:00", "15.06.99 10:00", "15.06.00 10:00"])
    assert fmt.format == "%d.%m.%y %H:%M"
    assert walls(res) == [
        ns("2068-12-31T10:00"), ns("1969-01-01T10:00"), ns("1999-06-15T10:00"), ns("2000-06-15T10:00"),
    ]


def test_twelve_hour_clock() -> None:
    fmt, res = parse(["13/01/2024 12:00 AM", "13/01/2024 12:30 PM", "13/01/2024 1:15 pm", "13/01/2024 11:59 AM"])
    assert fmt.format == "%d/%m/%Y %I:%M %p"
    assert walls(res) == [
        ns("2024-01-13T00:00"), ns("2024-01-13T12:30"), ns("2024-01-13T13:15"), ns("2024-01-13T11:59"),
    ]
    # hour 13 and hour 0 do not exist on a 12-hour clock
    _, res = parse(["13/01/2024 12:00 AM"] * 19 + ["13/01/2024 13:00 PM"])
    assert res.unparseable_count == 1
    assert res.unparseable_examples == [{"line": 21, "raw": "13/01/2024 13:00 PM"}]


def test_fractional_seconds_in_strptime_candidates() -> None:
    fmt, res = parse(["13.01.2024 10:00:00.250", "13.01.2024 10:00:01.5", "13.01.2024 10:00:02"])
    assert fmt.format == "%d.%m.%Y %H:%M:%S"
    assert walls(res) == [ns("2024-01-13T10:00:00.25"), ns("2024-01-13T10:00:01.5"), ns("2024-01-13T10:00:02")]


def test_epoch_seconds() -> None:
    fmt, res = parse(["1704067200", "1704067260.5", "-1.25"])
    assert (fmt.kind, fmt.format) == ("epoch_s", "epoch_s")
    assert walls(res) == [ns("2024-01-01T00:00"), ns("2024-01-01T00:01:00.5"), ns("1969-12-31T23:59:58.75")]
    assert res.aware.all()
    assert res.datetime_format == "epoch_s"


def test_l5_epoch_milliseconds() -> None:
    fmt, res = parse(["1704067200000", "1704067200000", "1704067260000"])
    assert fmt.kind == "epoch_ms"
    assert walls(res) == [ns("2024-01-01T00:00"), ns("2024-01-01T00:00"), ns("2024-01-01T00:01")]
    assert res.aware.all()
    loc = localize(res.wall_ns, res.aware, np.arange(2, 5), timezone="Europe/Vienna", ambiguous="infer",
                   nonexistent="shift_forward", source=SRC)
    assert loc.utc_ns.tolist() == res.wall_ns.tolist()  # epoch is UTC whatever the zone
    assert loc.counts["aware_rows"] == 3


def test_epoch_too_large_asks_for_explicit_unit() -> None:
    with pytest.raises(LoadError) as info:
        detect_time_format(["1704067200000000", "1704067260000000"], None, source=SRC)
    assert info.value.code == "DATETIME_PARSING_ERROR"
    assert "set datetime_format for other epoch units" in info.value.message


# --------------------------------------------------------------------------------------------
# Worked examples L1-L4
# --------------------------------------------------------------------------------------------

L1 = ["01.02.2024 00:00", "01.02.2024 00:15", "01.02.2024 00:30", "01.02.2024 00:45"]


def test_l1_dayfirst_ambiguity_and_vienna() -> None:
    fmt, res = parse(L1)
    assert fmt.format == "%d.%m.%Y %H:%M"
    assert res.dayfirst_applied is True
    assert res.datetime_format == "%d.%m.%Y %H:%M"
    assert [w.code for w in res.warnings] == ["AMBIGUOUS_DAY_MONTH"]
    loc = localize(res.wall_ns, res.aware, np.arange(2, 6), timezone="Europe/Vienna", ambiguous="infer",
                   nonexistent="shift_forward", source=SRC)
    assert loc.utc_ns.tolist() == [
        ns("2024-01-31T23:00"), ns("2024-01-31T23:15"), ns("2024-01-31T23:30"), ns("2024-01-31T23:45"),
    ]
    assert loc.keep.all()


def test_l1_with_dayfirst_false() -> None:
    _, res = parse(L1, dayfirst=False)
    assert res.dayfirst_applied is True
    assert res.datetime_format == "%m.%d.%Y %H:%M"
    assert [w.code for w in res.warnings] == ["AMBIGUOUS_DAY_MONTH"]
    loc = localize(res.wall_ns, res.aware, np.arange(2, 6), timezone="Europe/Vienna", ambiguous="infer",
                   nonexistent="shift_forward", source=SRC)
    assert int(loc.utc_ns[0]) == ns("2024-01-01T23:00")


L2_WALLS = [ns(f"2024-10-27T{t}") for t in ("01:30", "02:00", "02:30", "02:00", "02:30", "03:00")]


def test_l2_infer() -> None:
    loc = run_localize(L2_WALLS, ambiguous="infer")
    assert loc.utc_ns.tolist() == [
        ns("2024-10-26T23:30"), ns("2024-10-27T00:00"), ns("2024-10-27T00:30"),
        ns("2024-10-27T01:00"), ns("2024-10-27T01:30"), ns("2024-10-27T02:00"),
    ]
    assert loc.keep.all()
    assert loc.counts["ambiguous_earliest"] == 2
    assert loc.counts["ambiguous_latest"] == 2
    assert loc.counts["ambiguous_assumed_earliest"] == 0
    assert loc.warnings == []


def test_l2_drop() -> None:
    loc = run_localize(L2_WALLS, ambiguous="drop")
    assert loc.keep.tolist() == [True, False, False, False, False, True]
    assert loc.utc_ns[loc.keep].tolist() == [ns("2024-10-26T23:30"), ns("2024-10-27T02:00")]
    assert loc.counts["ambiguous_dropped"] == 4
    assert loc.counts["ambiguous_earliest"] == 0


def test_l2_earliest() -> None:
    loc = run_localize(L2_WALLS, ambiguous="earliest")
    assert loc.utc_ns.tolist() == [
        ns("2024-10-26T23:30"), ns("2024-10-27T00:00"), ns("2024-10-27T00:30"),
        ns("2024-10-27T00:00"), ns("2024-10-27T00:30"), ns("2024-10-27T02:00"),
    ]
    assert loc.counts["ambiguous_earliest"] == 4


def test_l2_latest() -> None:
    loc = run_localize(L2_WALLS, ambiguous="latest")
    assert loc.utc_ns.tolist() == [
        ns("2024-10-26T23:30"), ns("2024-10-27T01:00"), ns("2024-10-27T01:30"),
        ns("2024-10-27T01:00"), ns("2024-10-27T01:30"), ns("2024-10-27T02:00"),
    ]
    assert loc.counts["ambiguous_latest"] == 4


def test_l2_raise() -> None:
    with pytest.raises(LoadError) as info:
        run_localize(L2_WALLS, ambiguous="raise")
    assert info.value.code == "AMBIGUOUS_TIME"
    assert info.value.details["count"] == 4
    assert info.value.details["lines"] == [3, 4, 5, 6]
    assert info.value.details["source"] == SRC


def test_infer_without_backward_step_assumes_earliest() -> None:
    walls_ = [ns(f"2024-10-27T{t}") for t in ("02:00", "02:20", "02:40", "03:10")]
    loc = run_localize(walls_, ambiguous="infer")
    assert loc.utc_ns.tolist() == [
        ns("2024-10-27T00:00"), ns("2024-10-27T00:20"), ns("2024-10-27T00:40"), ns("2024-10-27T02:10"),
    ]
    assert loc.counts["ambiguous_assumed_earliest"] == 3
    assert loc.counts["ambiguous_earliest"] == 3
    assert [w.code for w in loc.warnings] == ["AMBIGUOUS_NOT_INFERRED"]
    assert loc.warnings[0].count == 3
    assert loc.warnings[0].examples[0] == {"line": 2, "timestamp": "2024-10-27 02:00:00"}


def test_infer_is_decided_per_transition() -> None:
    # 2023: a proper repeated hour; 2024: monotonic, so assumed earliest
    walls_ = [ns(f"2023-10-29T{t}") for t in ("02:30", "02:00", "02:30")]
    walls_ += [ns(f"2024-10-27T{t}") for t in ("02:15", "02:45")]
    loc = run_localize(walls_, ambiguous="infer")
    assert loc.utc_ns.tolist() == [
        ns("2023-10-29T00:30"), ns("2023-10-29T01:00"), ns("2023-10-29T01:30"),
        ns("2024-10-27T00:15"), ns("2024-10-27T00:45"),
    ]
    assert loc.counts["ambiguous_latest"] == 2
    assert loc.counts["ambiguous_earliest"] == 3
    assert loc.counts["ambiguous_assumed_earliest"] == 2


L3_WALLS = [ns(f"2024-03-31T{t}") for t in ("01:45", "02:15", "03:45")]


def test_l3_shift_forward() -> None:
    loc = run_localize(L3_WALLS)
    assert loc.utc_ns.tolist() == [ns("2024-03-31T00:45"), ns("2024-03-31T01:15"), ns("2024-03-31T01:45")]
    assert loc.counts["nonexistent_shifted"] == 1
    assert loc.keep.all()


def test_l3_drop() -> None:
    loc = run_localize(L3_WALLS, nonexistent="drop")
    assert loc.keep.tolist() == [True, False, True]
    assert loc.counts["nonexistent_dropped"] == 1
    assert loc.counts["nonexistent_shifted"] == 0


def test_l3_raise() -> None:
    with pytest.raises(LoadError) as info:
        run_localize(L3_WALLS, nonexistent="raise")
    assert info.value.code == "NONEXISTENT_TIME"
    assert info.value.details["count"] == 1
    assert info.value.details["lines"] == [3]


def test_l4_date_and_time_columns_with_24_00() -> None:
    texts = combine_date_time(
        np.array(["31.12.2023", "31.12.2023", "01.01.2024"], dtype=object),
        np.array(["23:00", "24:00", "00:30"], dtype=object),
    )
    assert texts.tolist() == ["31.12.2023 23:00", "31.12.2023 24:00", "01.01.2024 00:30"]
    fmt, res = parse(list(texts))
    assert fmt.format == "%d.%m.%Y %H:%M"
    assert res.dayfirst_applied is False
    assert res.warnings == []
    loc = localize(res.wall_ns, res.aware, np.arange(2, 5), timezone="UTC", ambiguous="infer",
                   nonexistent="shift_forward", source=SRC)
    assert loc.utc_ns.tolist() == [ns("2023-12-31T23:00"), ns("2024-01-01T00:00"), ns("2024-01-01T00:30")]


# --------------------------------------------------------------------------------------------
# 24:00, invalid dates, day/month order across blocks, coerce_year
# --------------------------------------------------------------------------------------------


def test_24_00_variants() -> None:
    _, res = parse(["2024-02-28T24:00", "2024-02-28 24:00:00", "2024-02-28 24:00:00.000", "2024-02-28 24:00:01",
                    "2024-02-28 24:30"] + ["2024-02-28 10:00"] * 45)
    assert walls(res)[:5] == [ns("2024-02-29"), ns("2024-02-29"), ns("2024-02-29"), None, None]
    assert res.unparseable_count == 2
    assert res.unparseable_examples == [
        {"line": 5, "raw": "2024-02-28 24:00:01"}, {"line": 6, "raw": "2024-02-28 24:30"},
    ]


def test_invalid_dates_are_unparseable_rows() -> None:
    texts = ["31.02.2024 10:00", "29.02.2023 10:00", "29.02.2024 10:00"] + ["15.03.2024 10:00"] * 27
    _, res = parse(texts)
    assert walls(res)[:3] == [None, None, ns("2024-02-29T10:00")]
    assert res.unparseable_count == 2
    assert [e["line"] for e in res.unparseable_examples] == [2, 3]


def test_unparseable_examples_capped_at_five() -> None:
    texts = ["2024-01-01 00:00"] * 95 + ["bad"] * 7
    _, res = parse(texts)
    assert res.unparseable_count == 7
    assert len(res.unparseable_examples) == 5
    assert res.unparseable_examples[0] == {"line": 97, "raw": "bad"}


def test_month_first_detected_on_whole_column() -> None:
    fmt, res = parse(["01/13/2024 10:00", "02/01/2024 10:00"])
    assert fmt.format == "%d/%m/%Y %H:%M"  # day-first spelling until the order is decided
    assert res.datetime_format == "%m/%d/%Y %H:%M"
    assert res.dayfirst_applied is False
    assert res.warnings == []
    assert walls(res) == [ns("2024-01-13T10:00"), ns("2024-02-01T10:00")]


def test_day_month_flag_in_a_later_block_decides() -> None:
    texts = ["01.02.2024 10:00", "03.04.2024 10:00", "05.06.2024 10:00", "02.13.2024 10:00"]
    fmt = detect_time_format(texts[:2], None, source=SRC)  # the head sample alone is ambiguous
    parser = TimeParser(fmt, dayfirst=True, coerce_year=None, source=SRC)
    feed(parser, texts, [2, 1, 1])
    res = parser.finish()
    assert res.datetime_format == "%m.%d.%Y %H:%M"
    assert res.dayfirst_applied is False
    assert walls(res) == [
        ns("2024-01-02T10:00"), ns("2024-03-04T10:00"), ns("2024-05-06T10:00"), ns("2024-02-13T10:00"),
    ]


def test_inconsistent_day_month_across_blocks_raises() -> None:
    texts = ["13.01.2024 10:00", "01.02.2024 10:00", "01.13.2024 10:00"]
    fmt = detect_time_format(texts[:1], None, source=SRC)
    parser = TimeParser(fmt, dayfirst=True, coerce_year=None, source=SRC)
    feed(parser, texts, [1, 1, 1])
    with pytest.raises(LoadError) as info:
        parser.finish()
    assert info.value.code == "DATETIME_PARSING_ERROR"
    assert "inconsistent day/month order" in info.value.message
    assert info.value.details["examples"] == [
        {"line": 2, "raw": "13.01.2024 10:00"}, {"line": 4, "raw": "01.13.2024 10:00"},
    ]


def test_coerce_year_tmy_style() -> None:
    texts = ["01/31/1988 24:00", "02/01/1996 01:00", "12/31/1980 23:00", "12/31/1980 24:00", "03/01/2023 00:00"]
    _, res = parse(texts, coerce_year=2023)
    assert res.datetime_format == "%m/%d/%Y %H:%M"
    assert walls(res) == [
        ns("2023-02-01T00:00"), ns("2023-02-01T01:00"), ns("2023-12-31T23:00"), ns("2024-01-01T00:00"),
        ns("2023-03-01T00:00"),
    ]
    assert res.coerced_year_rows == 4


def test_coerce_year_on_fixed_formats_and_aware_rows() -> None:
    _, res = parse(["1999-12-31T24:00:00+01:00", "2030-06-01T12:00:00"], coerce_year=2021)
    assert walls(res) == [ns("2021-12-31T23:00"), ns("2021-06-01T12:00")]
    assert res.coerced_year_rows == 2


def test_coerce_year_feb_29_on_non_leap_year_raises() -> None:
    texts = ["28.02.2024 10:00", "29.02.2024 10:00", "01.03.2024 10:00"]
    with pytest.raises(LoadError) as info:
        parse(texts, coerce_year=2023)
    assert info.value.code == "COERCE_YEAR_INVALID_DATE"
    assert info.value.details["line"] == 3
    assert "line 3" in info.value.message
    _, res = parse(texts, coerce_year=2020)  # a leap year keeps the day
    assert walls(res)[1] == ns("2020-02-29T10:00")


def test_coerce_year_feb_29_fixed_format_raises() -> None:
    with pytest.raises(LoadError) as info:
        parse(["2024-02-28 10:00", "2024-02-29 10:00"], coerce_year=2023)
    assert info.value.code == "COERCE_YEAR_INVALID_DATE"
    assert info.value.details["line"] == 3


# --------------------------------------------------------------------------------------------
# Selection rules
# --------------------------------------------------------------------------------------------


def test_ninety_percent_rule_accepts_best_candidate() -> None:
    texts = ["2024-01-01 10:00"] * 18 + ["01.01.2024 10:00", "garbage"]
    fmt, res = parse(texts)
    assert fmt.kind == "iso"
    assert res.unparseable_count == 2
    assert res.unparseable_examples == [{"line": 20, "raw": "01.01.2024 10:00"}, {"line": 21, "raw": "garbage"}]


def test_ninety_percent_rule_rejects_below_threshold() -> None:
    texts = ["2024-01-01 10:00"] * 8 + ["x1", "x2", "x3", "x4"]
    with pytest.raises(LoadError) as info:
        detect_time_format(texts, None, source=SRC)
    err = info.value
    assert err.code == "DATETIME_PARSING_ERROR"
    assert err.details["examples"] == ["x1", "x2", "x3"]
    assert err.details["source"] == SRC
    assert err.details["candidates"][0] == {"format": "iso", "parsed": 8}
    assert "x1" in err.message


def test_first_full_candidate_wins_over_partial_earlier_one() -> None:
    fmt = detect_time_format(["2024/01/02 10:00"] * 5, None, source=SRC)
    assert fmt.format == "%Y/%m/%d %H:%M"


def test_empty_samples_are_ignored() -> None:
    fmt = detect_time_format(["", "  ", "2024-01-01"], None, source=SRC)
    assert fmt.kind == "iso"


def test_only_first_thousand_samples_count() -> None:
    fmt = detect_time_format(["2024-01-01 00:00"] * 1000 + ["junk"] * 500, None, source=SRC)
    assert fmt.kind == "iso"


def test_time_only_rejected() -> None:
    with pytest.raises(LoadError) as info:
        detect_time_format(["10:00", "10:15", "10:30"], None, source=SRC)
    assert info.value.code == "DATETIME_PARSING_ERROR"
    assert "Time-only formats are not supported" in info.value.message
    with pytest.raises(LoadError) as info:
        detect_time_format(["10:00"], "%H:%M", source=SRC)
    assert info.value.code == "DATETIME_PARSING_ERROR"
    assert "time-only" in info.value.message


# --------------------------------------------------------------------------------------------
# Explicit formats
# --------------------------------------------------------------------------------------------


def test_explicit_format_applied_to_every_row() -> None:
    texts = ["05.03.2024 10:00", "bad", "06.03.2024 24:00", "07.03.2024 10:00:00"]
    fmt, res = parse(texts, "%d.%m.%Y %H:%M")
    assert (fmt.kind, fmt.format) == ("strptime", "%d.%m.%Y %H:%M")
    assert walls(res) == [ns("2024-03-05T10:00"), None, ns("2024-03-07T00:00"), None]
    assert res.datetime_format == "%d.%m.%Y %H:%M"
    assert res.dayfirst_applied is False


def test_explicit_month_first_format() -> None:
    _, res = parse(["03/05/2024 01:02:03 PM"], "%m/%d/%Y %I:%M:%S %p")
    assert walls(res) == [ns("2024-03-05T13:02:03")]


def test_explicit_seconds_need_explicit_fraction() -> None:
    _, res = parse(["05.03.2024 10:00:00.5"], "%d.%m.%Y %H:%M:%S")
    assert res.unparseable_count == 1
    _, res = parse(["05.03.2024 10:00:00.5"], "%d.%m.%Y %H:%M:%S.%f")
    assert walls(res) == [ns("2024-03-05T10:00:00.5")]


def test_explicit_format_with_offset_directive() -> None:
    _, res = parse(["2024-03-05 10:00 +0100"], "%Y-%m-%d %H:%M %z")
    assert walls(res) == [ns("2024-03-05T09:00")]
    assert res.aware.tolist() == [True]


def test_explicit_general_format_with_month_names_and_24_00() -> None:
    fmt, res = parse(["05 Mar 2024 24:00", "06 Mar 2024 10:30", "06 Mar 2024 24:30"], "%d %b %Y %H:%M")
    assert fmt.format == "%d %b %Y %H:%M"
    assert walls(res) == [ns("2024-03-06T00:00"), ns("2024-03-06T10:30"), None]


def test_explicit_keywords() -> None:
    assert detect_time_format(["x"], "iso", source=SRC).kind == "iso"
    fmt, res = parse(["1704067200000.5", "nope"], "epoch_ms")
    assert fmt.kind == "epoch_ms"
    assert walls(res) == [ns("2024-01-01T00:00:00.0005"), None]
    fmt, res = parse(["1704067200"], "epoch_s")
    assert walls(res) == [ns("2024-01-01")]


def test_explicit_bad_directive_raises() -> None:
    with pytest.raises(LoadError) as info:
        detect_time_format(["x"], "%Y-%Q", source=SRC)
    assert info.value.code == "DATETIME_PARSING_ERROR"


# --------------------------------------------------------------------------------------------
# Helpers: parses_as_time, combine_date_time, part columns
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01 10:00", True),
        (" 01.02.2024 ", True),
        ("13/01/24 1:00 PM", True),
        ("20240101", True),
        ("1704067200", True),
        ("31.02.2024", False),
        ("10:00", False),
        ("Zeit", False),
        ("", False),
        ("2024-01-01 25:00", False),
    ],
)
def test_parses_as_time(text: str, expected: bool) -> None:
    assert parses_as_time(text) is expected


def test_combine_date_time() -> None:
    out = combine_date_time(
        np.array(["2024-01-01T05:00", "2024-01-02 07:00", "", "03.01.2024"], dtype=object),
        np.array(["10:00", "11:00", "12:00", ""], dtype=object),
    )
    assert out.dtype == object
    assert out.tolist() == ["2024-01-01 10:00", "2024-01-02 11:00", "", ""]


def test_add_parts() -> None:
    parser = TimeParser(PARTS_FORMAT, dayfirst=True, coerce_year=None, source=SRC)
    parts = {
        "year": np.array(["2024", "2024", "2024", "2024", "2024"], dtype=object),
        "month": np.array(["1", "12", "13", "2", "2"], dtype=object),
        "day": np.array(["5", "31", "1", "30", "29"], dtype=object),
        "hour": np.array(["10", "24", "0", "0", "24"], dtype=object),
        "second": np.array(["1.5", "0", "0", "0", "1"], dtype=object),
    }
    parser.add_parts(parts, np.arange(2, 7))
    res = parser.finish()
    assert walls(res) == [ns("2024-01-05T10:00:01.5"), ns("2025-01-01T00:00"), None, None, None]
    assert res.unparseable_count == 3
    assert res.unparseable_examples[0] == {"line": 4, "raw": "year=2024 month=13 day=1 hour=0 second=0"}
    assert res.datetime_format == "parts"


def test_add_parts_non_integer_is_unparseable() -> None:
    parser = TimeParser(PARTS_FORMAT, dayfirst=True, coerce_year=2023, source=SRC)
    parser.add_parts(
        {"year": np.array(["2020", "x"], dtype=object), "month": np.array(["7", "7"], dtype=object),
         "day": np.array(["4", "4"], dtype=object)},
        np.array([10, 11]),
    )
    res = parser.finish()
    assert walls(res) == [ns("2023-07-04"), None]
    assert res.coerced_year_rows == 1


# --------------------------------------------------------------------------------------------
# Time zones beyond Europe/Vienna
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "wall", "earliest", "latest"),
    [
        ("Europe/Dublin", "2024-10-27T01:30", "2024-10-27T00:30", "2024-10-27T01:30"),
        ("Australia/Sydney", "2024-04-07T02:30", "2024-04-06T15:30", "2024-04-06T16:30"),
        ("Australia/Lord_Howe", "2024-04-07T01:45", "2024-04-06T14:45", "2024-04-06T15:15"),
        ("America/New_York", "2024-11-03T01:30", "2024-11-03T05:30", "2024-11-03T06:30"),
        ("Europe/Moscow", "2014-10-26T01:30", "2014-10-25T21:30", "2014-10-25T22:30"),
    ],
)
def test_ambiguous_in_other_zones(zone: str, wall: str, earliest: str, latest: str) -> None:
    assert run_localize([ns(wall)], timezone=zone, ambiguous="earliest").utc_ns.tolist() == [ns(earliest)]
    assert run_localize([ns(wall)], timezone=zone, ambiguous="latest").utc_ns.tolist() == [ns(latest)]


@pytest.mark.parametrize(
    ("zone", "wall", "shifted"),
    [
        ("Europe/Dublin", "2024-03-31T01:30", "2024-03-31T01:30"),
        ("Australia/Sydney", "2024-10-06T02:30", "2024-10-05T16:30"),
        ("Australia/Lord_Howe", "2024-10-06T02:15", "2024-10-05T15:45"),
        ("America/New_York", "2024-03-10T02:30", "2024-03-10T07:30"),
        ("Pacific/Apia", "2011-12-30T12:00", "2011-12-30T22:00"),  # a whole day skipped
    ],
)
def test_nonexistent_in_other_zones(zone: str, wall: str, shifted: str) -> None:
    loc = run_localize([ns(wall)], timezone=zone)
    assert loc.utc_ns.tolist() == [ns(shifted)]
    assert loc.counts["nonexistent_shifted"] == 1


def test_utc_and_plain_rows() -> None:
    loc = run_localize([ns("2024-10-27T02:30"), ns("2024-03-31T02:30")], timezone="UTC")
    assert loc.utc_ns.tolist() == [ns("2024-10-27T02:30"), ns("2024-03-31T02:30")]
    assert all(v == 0 for k, v in loc.counts.items() if k != "naive_rows")
    loc = run_localize([ns("1850-01-01T12:00"), ns("2100-07-01T12:00")], timezone="America/New_York")
    assert loc.utc_ns.tolist() == [ns("1850-01-01T16:56:02"), ns("2100-07-01T16:00")]


# --------------------------------------------------------------------------------------------
# Streaming: results never depend on the block split
# --------------------------------------------------------------------------------------------

_daymonth_text = st.builds(
    lambda a, b, y, h, m: f"{a:02d}.{b:02d}.{y} {h:02d}:{m:02d}",
    st.integers(0, 32), st.integers(0, 14), st.sampled_from([2023, 2024]), st.integers(0, 24),
    st.sampled_from([0, 30]),
)
_iso_text = st.builds(
    lambda d, h, z: f"2024-02-{d:02d}T{h:02d}:00{z}",
    st.integers(0, 30), st.integers(0, 24), st.sampled_from(["", "Z", "+01:00", "-0230"]),
)
_noise = st.sampled_from(["", "junk", "1.2.3", "2024-02-30"])


def _outcome(fmt: TimeFormat, texts: list[str], sizes: list[int], coerce_year: int | None):
    parser = TimeParser(fmt, dayfirst=False, coerce_year=coerce_year, source=SRC)
    try:
        feed(parser, texts, sizes)
        res = parser.finish()
    except LoadError as exc:
        return ("error", exc.code, exc.details)
    return (
        walls(res), res.aware[res.valid].tolist(), res.unparseable_count, res.unparseable_examples,
        res.coerced_year_rows, res.dayfirst_applied, res.datetime_format,
        [w.model_dump() for w in res.warnings],
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["daymonth", "iso"]),
    data=st.data(),
    coerce_year=st.sampled_from([None, 2023, 2024]),
)
def test_block_split_does_not_change_results(kind: str, data: st.DataObject, coerce_year: int | None) -> None:
    text = _daymonth_text if kind == "daymonth" else _iso_text
    texts = data.draw(st.lists(st.one_of(text, text, text, _noise), min_size=1, max_size=40))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(texts) - 1)), max_size=6)))
    cuts = [c for c in cuts if c < len(texts)]
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, len(texts)], strict=True)]
    fmt = TimeFormat("daymonth", "%d.%m.%Y %H:%M") if kind == "daymonth" else TimeFormat("iso", "iso")
    assert _outcome(fmt, texts, sizes, coerce_year) == _outcome(fmt, texts, [len(texts)], coerce_year)


def test_add_accepts_unicode_and_arrow_arrays() -> None:
    fmt = detect_time_format(["2024-01-02 03:04"], None, source=SRC)
    expected = [ns("2024-01-02T03:04"), ns("2024-01-03T00:00")]
    for texts in (np.array(["2024-01-02 03:04", "2024-01-02 24:00"]),
                  pa.array(["2024-01-02 03:04", "2024-01-02 24:00"])):
        parser = TimeParser(fmt, dayfirst=True, coerce_year=None, source=SRC)
        parser.add(texts, np.array([5, 6]))
        assert walls(parser.finish()) == expected


def test_years_outside_nanosecond_range_are_unparseable() -> None:
    _, res = parse(["2024-01-01", "1500-01-01", "2300-01-01"] + ["2024-01-02"] * 30)
    assert walls(res)[:3] == [ns("2024-01-01"), None, None]
    _, res = parse(["01 Jan 3000", "01 Jan 2000"], "%d %b %Y")
    assert walls(res) == [None, ns("2000-01-01")]
