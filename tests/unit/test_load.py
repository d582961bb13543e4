"""The load stage (stages.md §1): worked examples L1-L6, encodings, delimiters, decimal
conventions, header and metadata detection, column selection, values, duplicates, merge,
independence of the block size, and the three real files."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import LoadError
from zeitflow.frame import validate_frame
from zeitflow.options.load import LoadOptions
from zeitflow.reports import ProgressEvent
from zeitflow.stages import load_csv
from zeitflow.stages.load import LoadResult, merge, read_raw

REAL = Path(__file__).resolve().parents[2] / "examples" / "data"
HOUR_NS = 3_600_000_000_000


def load(data: str | bytes, _chunk_rows: int | None = None, **options: object) -> LoadResult:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return read_raw(raw, LoadOptions(**options), _chunk_rows=_chunk_rows)


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(s, tz="UTC") for s in stamps], name="utc").as_unit("ns")


def values(result: LoadResult, column: str | None = None) -> list[float]:
    series = result.frame[column] if column else result.frame.iloc[:, 0]
    return series.tolist()


def same(actual: list[float], expected: list[float]) -> bool:
    return len(actual) == len(expected) and all(
        (math.isnan(a) and math.isnan(e)) or a == e for a, e in zip(actual, expected, strict=True)
    )


# --------------------------------------------------------------------------------------------
# Worked examples (§1.11)
# --------------------------------------------------------------------------------------------

L1 = "Zeit;Leistung [kW]\n01.02.2024 00:00;1,5\n01.02.2024 00:15;n/a\n01.02.2024 00:30;2,25\n01.02.2024 00:45;abc\n"


def test_l1_decimal_comma_german_dates_local_time() -> None:
    result = load(L1, timezone="Europe/Vienna")
    frame, report = result.frame, result.report
    validate_frame(frame, "L1")
    assert frame.index.equals(utc("2024-01-31 23:00", "2024-01-31 23:15", "2024-01-31 23:30", "2024-01-31 23:45"))
    assert same(values(result), [1.5, math.nan, 2.25, math.nan])
    source = report.sources[0]
    assert (source.delimiter, source.header, source.header_line, source.decimal) == (";", True, 1, ",")
    assert (source.decimal_comma_fields, source.decimal_point_fields) == (2, 0)
    assert source.datetime_format == "%d.%m.%Y %H:%M"
    assert source.dayfirst_applied is True
    channel = report.channels["Leistung [kW]"]
    assert (channel.values, channel.numeric, channel.missing, channel.non_numeric) == (4, 2, 1, 1)
    assert channel.non_numeric_examples == [{"line": 5, "column": "Leistung [kW]", "raw": "abc"}]
    assert channel.numeric_share_percent == 50.0
    assert (report.rows_in, report.rows_out) == (4, 4)
    assert "AMBIGUOUS_DAY_MONTH" in [w.code for w in report.warnings]


def test_l1_month_first() -> None:
    result = load(L1, timezone="Europe/Vienna", dayfirst=False)
    assert result.frame.index[0] == pd.Timestamp("2024-01-01 23:00", tz="UTC")


def test_l2_fall_back_infer_and_policies() -> None:
    text = "t;v\n" + "".join(f"2024-10-27 {w};{i}\n" for i, w in enumerate(
        ["01:30", "02:00", "02:30", "02:00", "02:30", "03:00"], start=1))
    inferred = load(text, timezone="Europe/Vienna")
    assert inferred.frame.index.equals(utc("2024-10-26 23:30", "2024-10-27 00:00", "2024-10-27 00:30",
                                           "2024-10-27 01:00", "2024-10-27 01:30", "2024-10-27 02:00"))
    assert values(inferred) == [1, 2, 3, 4, 5, 6]
    s = inferred.report.sources[0]
    assert (s.ambiguous_earliest, s.ambiguous_latest) == (2, 2)
    dropped = load(text, timezone="Europe/Vienna", ambiguous="drop")
    assert dropped.frame.index.equals(utc("2024-10-26 23:30", "2024-10-27 02:00"))
    assert values(dropped) == [1, 6] and dropped.report.sources[0].ambiguous_dropped == 4
    earliest = load(text, timezone="Europe/Vienna", ambiguous="earliest")
    assert earliest.frame.index.equals(utc("2024-10-26 23:30", "2024-10-27 00:00", "2024-10-27 00:30",
                                           "2024-10-27 02:00"))
    assert values(earliest) == [1, 2, 3, 6] and earliest.report.duplicate_rows_removed == 2
    latest = load(text, timezone="Europe/Vienna", ambiguous="latest")
    assert latest.frame.index.equals(utc("2024-10-26 23:30", "2024-10-27 01:00", "2024-10-27 01:30",
                                         "2024-10-27 02:00"))
    assert values(latest) == [1, 2, 3, 6]


def test_l3_spring_forward() -> None:
    text = "t;v\n2024-03-31 01:45;1\n2024-03-31 02:15;2\n2024-03-31 03:45;3\n"
    shifted = load(text, timezone="Europe/Vienna")
    assert shifted.frame.index.equals(utc("2024-03-31 00:45", "2024-03-31 01:15", "2024-03-31 01:45"))
    assert shifted.report.sources[0].nonexistent_shifted == 1
    dropped = load(text, timezone="Europe/Vienna", nonexistent="drop")
    assert len(dropped.frame) == 2 and dropped.report.sources[0].nonexistent_dropped == 1


def test_l4_date_and_time_columns_with_24_00() -> None:
    result = load("Datum;Uhrzeit;Wert\n31.12.2023;23:00;1\n31.12.2023;24:00;2\n01.01.2024;00:30;3\n",
                  date_column="Datum", time_of_day_column="Uhrzeit", timezone="UTC")
    assert result.frame.index.equals(utc("2023-12-31 23:00", "2024-01-01 00:00", "2024-01-01 00:30"))
    assert values(result) == [1.0, 2.0, 3.0]
    assert list(result.frame.columns) == ["Wert"]
    assert result.report.sources[0].dayfirst_applied is False


L5 = "ts,value\n1704067200000,1.0\n1704067200000,3.0\n1704067260000,2.0\n"


@pytest.mark.parametrize("policy, first", [("mean", 2.0), ("first", 1.0), ("last", 3.0)])
def test_l5_epoch_milliseconds_and_duplicates(policy: str, first: float) -> None:
    result = load(L5, duplicates=policy)
    assert result.frame.index.equals(utc("2024-01-01 00:00", "2024-01-01 00:01"))
    assert values(result) == [first, 2.0]
    source = result.report.sources[0]
    assert (source.datetime_format, source.decimal, source.decimal_source) == ("epoch_ms", ".", "delimiter")
    assert source.duplicate_rows_removed == 1 and result.report.duplicate_rows_removed == 1


def test_l5_raise() -> None:
    with pytest.raises(LoadError) as info:
        load(L5, duplicates="raise")
    assert info.value.code == "DUPLICATE_TIMESTAMPS"
    assert "2024-01-01T00:00:00Z" in info.value.message and "lines 2, 3" in info.value.message


L6_A = "t;v\n2024-01-01 00:00;1\n2024-01-01 00:15;2\n2024-01-01 00:30;3\n"
L6_B = "t;v\n2024-01-01 00:15;2\n2024-01-01 00:30;3.5\n2024-01-01 00:45;4\n"


@pytest.mark.parametrize("policy, at_0030", [("first", 3.0), ("last", 3.5), ("mean", 3.25)])
def test_l6_merge(policy: str, at_0030: float) -> None:
    expected_index = utc("2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30", "2024-01-01 00:45")
    merged = merge([load(L6_A), load(L6_B)], duplicates=policy)
    via_read = read_raw([L6_A.encode(), L6_B.encode()], LoadOptions(duplicates=policy))
    for result in (merged, via_read):
        assert result.frame.index.equals(expected_index)
        assert values(result) == [1.0, 2.0, at_0030, 4.0]
        assert (result.report.exact_duplicates_removed, result.report.conflicting_duplicates) == (1, 1)
        assert result.report.duplicate_rows_removed == 1
        assert len(result.report.sources) == 2 and result.report.rows_in == 6 and result.report.rows_out == 4


def test_l6_merge_raise_on_conflict_only() -> None:
    with pytest.raises(LoadError) as info:
        merge([load(L6_A), load(L6_B)], duplicates="raise")
    assert info.value.code == "DUPLICATE_TIMESTAMPS" and "2024-01-01T00:30:00Z" in info.value.message
    exact_only = merge([load(L6_A), load(L6_A)], duplicates="raise")
    assert values(exact_only) == [1.0, 2.0, 3.0] and exact_only.report.exact_duplicates_removed == 3


# --------------------------------------------------------------------------------------------
# Encodings (§1.4 step 1)
# --------------------------------------------------------------------------------------------

TEXT = "Zeit;Temp [°C]\n2024-01-01 00:00;1,5\n2024-01-01 01:00;-2,5\n"


@pytest.mark.parametrize("raw, encoding, source", [
    (b"\xef\xbb\xbf" + TEXT.encode("utf-8"), "utf-8", "bom"),
    (b"\xff\xfe" + TEXT.encode("utf-16-le"), "utf-16-le", "bom"),
    (b"\xfe\xff" + TEXT.encode("utf-16-be"), "utf-16-be", "bom"),
    (TEXT.encode("utf-8"), "utf-8", "detected"),
    (TEXT.encode("cp1252"), "cp1252", "detected"),
])
def test_encodings(raw: bytes, encoding: str, source: str) -> None:
    result = read_raw(raw)
    report = result.report.sources[0]
    assert (report.encoding, report.encoding_source) == (encoding, source)
    assert list(result.frame.columns) == ["Temp [°C]"]  # BOM removed, degree sign decoded
    assert values(result) == [1.5, -2.5]


def test_latin1_is_the_last_resort() -> None:
    raw = TEXT.encode("cp1252") + b"2024-01-01 02:00;\x81\n"  # 0x81 is undefined in cp1252
    result = read_raw(raw)
    assert result.report.sources[0].encoding == "latin-1"
    channel = result.report.channels["Temp [°C]"]
    assert channel.non_numeric == 1 and channel.non_numeric_examples[0]["line"] == 4


def test_explicit_encoding() -> None:
    result = read_raw(TEXT.encode("utf-16-le"), LoadOptions(encoding="utf-16-le"))
    assert (result.report.sources[0].encoding, result.report.sources[0].encoding_source) == ("utf-16-le", "option")
    assert values(result) == [1.5, -2.5]
    result = read_raw(TEXT.encode("cp1252"), LoadOptions(encoding="latin-1"))
    assert list(result.frame.columns) == ["Temp [°C]"]


# --------------------------------------------------------------------------------------------
# Delimiters, fields and quoting (§1.4 steps 2-3, 5)
# --------------------------------------------------------------------------------------------


def test_tab_and_comma_are_detected() -> None:
    tab = load("t\tv\n2024-01-01 00:00\t1.5\n2024-01-01 01:00\t2\n")
    assert tab.report.sources[0].delimiter == "\t" and values(tab) == [1.5, 2.0]
    comma = load("t,v\n2024-01-01 00:00,1.5\n2024-01-01 01:00,2\n")
    assert comma.report.sources[0].delimiter == "," and comma.report.sources[0].decimal_source == "delimiter"
    assert values(comma) == [1.5, 2.0]


def test_semicolon_wins_ties_and_largest_count_wins() -> None:
    # ';' and ',' both give two fields on every line: ';' comes first.
    tie = load("a;b\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2,5\n2024-01-01 02:00;3,5\n"
               "2024-01-01 03:00;4,5\n2024-01-01 04:00;5,5\n")
    assert tie.report.sources[0].delimiter == ";" and tie.report.sources[0].delimiter_source == "detected"
    assert values(tie) == [1.5, 2.5, 3.5, 4.5, 5.5]
    wide = load("t,a,b\n2024-01-01 00:00,1;2,3\n2024-01-01 01:00,4;5,6\n")
    assert wide.report.sources[0].delimiter == "," and list(wide.frame.columns) == ["a", "b"]
    assert wide.report.channels["a"].non_numeric == 2


def test_explicit_delimiter_overrides_detection() -> None:
    result = load("t,a;b\n2024-01-01 00:00,1;2\n2024-01-01 01:00,3;4\n", delimiter=";", time_column=0,
                  datetime_format="%Y-%m-%d %H:%M,%S", value_columns=["b"])
    report = result.report.sources[0]
    assert (report.delimiter, report.delimiter_source) == (";", "option")
    assert result.frame.index.equals(utc("2024-01-01 00:00:01", "2024-01-01 01:00:03"))
    assert values(result) == [2.0, 4.0]
    tab = load("t\tv\n2024-01-01 00:00\t1,5\n", delimiter="\t")
    assert values(tab) == [1.5]


def test_rfc4180_quoting_and_stripping() -> None:
    text = ('"Zeit";"Wert; mit Semikolon";"B"\n'
            '"2024-01-01 00:00";" 1,5 ";"a ""quoted"" text"\n'
            '  2024-01-01 01:00  ;  2,5  ;7\n'
            '"2024-01-01 02:00";"3,5";"multi\nline"\n'
            '2024-01-01 03:00;4,5;8\n')
    result = load(text)
    assert list(result.frame.columns) == ["Wert; mit Semikolon", "B"]
    assert values(result, "Wert; mit Semikolon") == [1.5, 2.5, 3.5, 4.5]
    b = result.report.channels["B"]
    assert b.non_numeric == 2
    assert b.non_numeric_examples == [
        {"line": 2, "column": "B", "raw": 'a "quoted" text'},
        {"line": 4, "column": "B", "raw": "multi\nline"},
    ]
    assert result.report.sources[0].lines_read == 6


def test_crlf_and_missing_final_newline() -> None:
    result = load("t;v\r\n2024-01-01 00:00;1\r\n\r\n2024-01-01 01:00;x\r\n2024-01-01 02:00;3")
    assert values(result) == [1.0, pytest.approx(math.nan, nan_ok=True), 3.0]
    source = result.report.sources[0]
    assert source.blank_lines == 1 and source.lines_read == 5
    assert result.report.channels["v"].non_numeric_examples[0]["line"] == 4


def test_bad_lines_are_skipped_and_counted_with_examples() -> None:
    rows = [f"2024-01-01 {h:02d}:00;{h};{h * 10}" for h in range(20)]
    rows[3] = "2024-01-01 03:00;3"  # too few fields
    rows[6] = "2024-01-01 06:00;6;60;x"  # an extra non-empty field
    rows[8] = "2024-01-01 08:00;8;80;;"  # trailing delimiters: accepted
    result = load("t;a;b\n" + "\n".join(rows) + "\n")
    source = result.report.sources[0]
    assert source.bad_lines == 2
    assert source.bad_line_examples == [{"line": 5, "raw": "2024-01-01 03:00;3"},
                                        {"line": 8, "raw": "2024-01-01 06:00;6;60;x"}]
    assert values(result, "b")[:8] == [0, 10, 20, 40, 50, 70, 80, 90]
    assert (result.report.rows_in, result.report.rows_out) == (18, 18)


def test_blank_lines_are_ignored_everywhere_and_counted() -> None:
    result = load("\n  \nt;v\n\n2024-01-01 00:00;1\n \t \n2024-01-01 01:00;2\n\n")
    source = result.report.sources[0]
    assert source.blank_lines == 5 and source.header_line == 3
    assert values(result) == [1.0, 2.0]


# --------------------------------------------------------------------------------------------
# Header and metadata lines (§1.4 step 4)
# --------------------------------------------------------------------------------------------

DATA_ROWS = "".join(f"2024-01-01 {h:02d}:00;{h};{h + 0.5}\n" for h in range(20))


def test_metadata_lines_before_the_header() -> None:
    result = load("Logger 7;Seriennummer 0815\nZeit;A;B\n" + DATA_ROWS)
    source = result.report.sources[0]
    assert (source.header, source.header_line, source.metadata_lines) == (True, 2, 1)
    assert source.metadata_examples == ["Logger 7;Seriennummer 0815"]
    assert list(result.frame.columns) == ["A", "B"] and values(result, "A") == list(range(20))


def test_metadata_examples_are_truncated() -> None:
    long = "x" * 300
    result = load(f"{long}\nZeit;A;B\n" + DATA_ROWS)
    assert result.report.sources[0].metadata_examples == [long[:200]]


def test_no_header_gives_positional_names() -> None:
    auto = load(DATA_ROWS)
    assert (auto.report.sources[0].header, list(auto.frame.columns)) == (False, ["1", "2"])
    explicit = load(DATA_ROWS, header="no", value_columns=["2"])
    assert list(explicit.frame.columns) == ["2"] and values(explicit) == [h + 0.5 for h in range(20)]


def test_header_yes_takes_the_first_line_even_if_numeric() -> None:
    result = load("Zeit;2023;2024\n" + DATA_ROWS, header="yes")
    assert list(result.frame.columns) == ["2023", "2024"] and len(result.frame) == 20
    auto = load("Zeit;2023;2024\n" + DATA_ROWS)
    assert auto.report.sources[0].header is False  # numeric fields: not a header, it is a data-like line
    assert auto.report.sources[0].unparseable_time == 1 and len(auto.frame) == 20


def test_predecessor_header_and_boolean_aliases() -> None:
    assert LoadOptions(header="nein").header == "no" and LoadOptions(header="ja").header == "yes"
    assert LoadOptions(dayfirst="nein").dayfirst is False


def test_empty_and_duplicate_header_names() -> None:
    result = load("t;v;v;;v\n" + "".join(f"2024-01-01 {h:02d}:00;1;2;3;4\n" for h in range(3)))
    assert list(result.frame.columns) == ["v", "v.1", "column_3", "v.2"]
    assert result.report.sources[0].renamed_duplicate_headers == [
        {"column": 2, "name": "v", "renamed": "v.1"}, {"column": 4, "name": "v", "renamed": "v.2"}]


def test_skip_rows() -> None:
    result = load("garbage line\n;;;\nt;v\n2024-01-01 00:00;1\n", skip_rows=2)
    source = result.report.sources[0]
    assert (source.header_line, source.metadata_lines, source.lines_read) == (3, 0, 4)
    assert values(result) == [1.0]


# --------------------------------------------------------------------------------------------
# Columns (§1.4 step 6)
# --------------------------------------------------------------------------------------------

WIDE = "Zeit;A;B;C;Leer\n" + "".join(f"2024-01-01 {h:02d}:00;{h};{10 * h};{100 * h};\n" for h in range(3))


def test_default_value_columns_drop_empty_columns() -> None:
    result = load(WIDE)
    assert list(result.frame.columns) == ["A", "B", "C"]
    assert result.report.sources[0].empty_columns_dropped == ["Leer"]


def test_a_column_of_missing_markers_is_not_empty() -> None:
    result = load("Zeit;A;B\n" + "".join(f"2024-01-01 00:{m:02d};{m};n/a\n" for m in range(30)), _chunk_rows=7)
    assert list(result.frame.columns) == ["A", "B"] and result.report.sources[0].empty_columns_dropped == []
    assert np.isnan(result.frame["B"]).all() and result.report.channels["B"].missing == 30


def test_select_by_name_and_index_in_the_given_order_with_rename() -> None:
    by_name = load(WIDE, value_columns=["C", "A"], rename={"C": "c [kW]"})
    assert list(by_name.frame.columns) == ["c [kW]", "A"]
    assert values(by_name, "c [kW]") == [0, 100, 200]
    by_index = load(WIDE, time_column=0, value_columns=[2, 1])
    assert list(by_index.frame.columns) == ["B", "A"]


def test_time_column_elsewhere() -> None:
    result = load("A;Zeit;B\n1;2024-01-01 00:00;2\n3;2024-01-01 01:00;4\n", time_column="Zeit")
    assert list(result.frame.columns) == ["A", "B"] and values(result, "B") == [2.0, 4.0]
    by_index = load("A;Zeit;B\n1;2024-01-01 00:00;2\n3;2024-01-01 01:00;4\n", time_column=1)
    assert by_index.frame.equals(result.frame)


def test_explicit_empty_column_is_kept_with_warning() -> None:
    result = load(WIDE, value_columns=["A", "Leer"])
    assert list(result.frame.columns) == ["A", "Leer"]
    assert np.isnan(result.frame["Leer"]).all()
    assert [w.code for w in result.report.warnings] == ["EMPTY_COLUMN"]


def test_rename_collision_gets_a_suffix() -> None:
    result = load(WIDE, value_columns=["A", "B"], rename={"A": "B"})
    assert list(result.frame.columns) == ["B", "B.1"]
    assert values(result, "B") == [0, 1, 2] and values(result, "B.1") == [0, 10, 20]


def test_part_columns() -> None:
    text = "J;M;T;h;min;Wert\n2023;12;31;23;0;1\n2023;12;31;24;0;2\n2024;1;1;0;30;3\n"
    result = load(text, part_columns={"year": "J", "month": "M", "day": "T", "hour": "h", "minute": "min"})
    assert result.frame.index.equals(utc("2023-12-31 23:00", "2024-01-01 00:00", "2024-01-01 00:30"))
    assert list(result.frame.columns) == ["Wert"]


# --------------------------------------------------------------------------------------------
# Decimal separator and values (§1.4 steps 7-8)
# --------------------------------------------------------------------------------------------


def test_decimal_ambiguous_warning_and_grouped_thousands() -> None:
    result = load("t;v\n2024-01-01 00:00;1.234,5\n2024-01-01 01:00;2,5\n2024-01-01 02:00;1.5\n")
    source = result.report.sources[0]
    assert (source.decimal, source.decimal_comma_fields, source.decimal_point_fields) == (",", 2, 1)
    assert values(result) == [1234.5, 2.5, 1.5]  # '1.5' has no comma: it stays a point decimal
    assert result.report.channels["v"].thousands_grouped == 1
    warning = next(w for w in result.report.warnings if w.code == "DECIMAL_AMBIGUOUS")
    assert warning.examples == [{"comma_fields": 2, "point_fields": 1}]


def test_point_decimal_wins_ties() -> None:
    result = load("t;v\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2.5\n")
    assert result.report.sources[0].decimal == "." and same(values(result), [math.nan, 2.5])


@pytest.mark.parametrize("thousands, decimal, cell, expected", [
    (".", ",", "1.234.567,5", 1234567.5),
    (",", ".", "1,234,567.5", 1234567.5),
    (" ", ",", "1 234 567,5", 1234567.5),  # a space implies no decimal: detected from '2,5'
    ("'", ".", "1'234'567.5", 1234567.5),
])
def test_thousands_separators(thousands: str, decimal: str, cell: str, expected: float) -> None:
    other = "2,5" if decimal == "," else "2.5"
    result = load(f"t;v\n2024-01-01 00:00;{cell}\n2024-01-01 01:00;-12\n2024-01-01 02:00;{other}\n",
                  thousands=thousands)
    assert result.report.sources[0].decimal == decimal
    assert values(result) == [expected, -12.0, 2.5]


def test_explicit_decimal() -> None:
    result = load("t;v\n2024-01-01 00:00;1,5\n2024-01-01 01:00;2,5\n", decimal=",")
    assert result.report.sources[0].decimal_source == "option" and values(result) == [1.5, 2.5]


def test_number_forms() -> None:
    cells = ["+5", "5.", ".5", "-1.5e-3", "1E+3", " 7 ", "inf", "NAN", "-inf", "1e999", "0x10", "1_000", "١"]
    text = "t;v\n" + "".join(f"2024-01-01 00:{i:02d};{c}\n" for i, c in enumerate(cells))
    result = load(text)
    expected = [5.0, 5.0, 0.5, -0.0015, 1000.0, 7.0] + [math.nan] * 7
    assert same(values(result), expected)
    channel = result.report.channels["v"]
    assert (channel.numeric, channel.non_numeric, channel.missing) == (6, 7, 0)
    assert [e["raw"] for e in channel.non_numeric_examples] == ["inf", "NAN", "-inf", "1e999", "0x10"]


def test_na_values() -> None:
    text = ("t;v\n2024-01-01 00:00;-9999\n2024-01-01 01:00; -9999 \n2024-01-01 02:00;n/a\n2024-01-01 03:00;\n"
            "2024-01-01 04:00;-9999.0\n")
    default = load(text)
    assert same(values(default), [-9999.0, -9999.0, math.nan, math.nan, -9999.0])
    assert default.report.channels["v"].missing == 2
    custom = load(text, na_values=["-9999", ""])
    assert same(values(custom), [math.nan] * 4 + [-9999.0])
    channel = custom.report.channels["v"]
    assert (channel.missing, channel.non_numeric, channel.non_numeric_examples[0]["raw"]) == (3, 1, "n/a")


def test_formula_injection_text_is_never_kept() -> None:
    text = "t;v\n2024-01-01 00:00;=cmd|' /C calc'!A0\n2024-01-01 01:00;\"@SUM(A1:A2)\"\n2024-01-01 02:00;2\n"
    result = load(text)
    assert result.frame["v"].dtype == np.float64
    assert same(values(result), [math.nan, math.nan, 2.0])
    assert result.report.channels["v"].non_numeric_examples[0] == {
        "line": 2, "column": "v", "raw": "=cmd|' /C calc'!A0"}


def test_a_one_megabyte_field_is_non_numeric_with_a_short_example() -> None:
    big = "9" * 1_000_000 + "x"
    result = load(f"t;v\n2024-01-01 00:00;1\n2024-01-01 01:00;{big}\n2024-01-01 02:00;3\n")
    assert same(values(result), [1.0, math.nan, 3.0])
    example = result.report.channels["v"].non_numeric_examples[0]
    assert example["line"] == 3 and len(example["raw"]) == 200


# --------------------------------------------------------------------------------------------
# Time, order and duplicates (§1.4 steps 9-11, §1.7)
# --------------------------------------------------------------------------------------------


def test_unparseable_times_are_dropped_with_examples() -> None:
    rows = [f"2024-01-01 {h:02d}:00;{h}" for h in range(20)]
    rows[4] = "2024-01-01 24:30;4"
    rows[7] = "kaputt;7"
    result = load("t;v\n" + "\n".join(rows) + "\n")
    source = result.report.sources[0]
    assert source.unparseable_time == 2
    assert source.unparseable_time_examples == [{"line": 6, "raw": "2024-01-01 24:30"}, {"line": 9, "raw": "kaputt"}]
    assert len(result.frame) == 18 and result.report.rows_in == 20


def test_aware_offsets_and_timezone() -> None:
    result = load("t;v\n2024-01-01T00:00:00+01:00;1\n2024-01-01T00:30:00Z;2\n2024-01-01 02:00;3\n",
                  timezone="Europe/Vienna")
    assert result.frame.index.equals(utc("2023-12-31 23:00", "2024-01-01 00:30", "2024-01-01 01:00"))
    s = result.report.sources[0]
    assert (s.aware_rows, s.naive_rows) == (2, 1)


def test_unsorted_rows_are_sorted_stably() -> None:
    result = load("t;v\n2024-01-01 02:00;3\n2024-01-01 00:00;1\n2024-01-01 01:00;2\n2024-01-01 00:00;9\n")
    assert values(result) == [1.0, 2.0, 3.0] and result.report.duplicate_rows_removed == 1
    last = load("t;v\n2024-01-01 02:00;3\n2024-01-01 00:00;1\n2024-01-01 01:00;2\n2024-01-01 00:00;9\n",
                duplicates="last")
    assert values(last) == [9.0, 2.0, 3.0]


def test_duplicate_policies_per_channel() -> None:
    text = "t;a;b\n2024-01-01 00:00;1;\n2024-01-01 00:00;3;4\n2024-01-01 00:00;;8\n2024-01-01 01:00;5;6\n"
    first = load(text)
    assert same(values(first, "a"), [1.0, 5.0]) and same(values(first, "b"), [math.nan, 6.0])
    last = load(text, duplicates="last")
    assert same(values(last, "a"), [math.nan, 5.0]) and same(values(last, "b"), [8.0, 6.0])
    mean = load(text, duplicates="mean")
    assert values(mean, "a") == [2.0, 5.0] and values(mean, "b") == [6.0, 6.0]
    assert mean.report.duplicate_rows_removed == 2


def test_merge_with_a_channel_missing_in_one_source() -> None:
    a = "t;x;y\n2024-01-01 00:00;1;10\n2024-01-01 01:00;2;20\n"
    b = "t;x\n2024-01-01 01:00;2\n2024-01-01 02:00;3\n"
    for policy in ("first", "last", "mean"):
        result = read_raw([a.encode(), b.encode()], LoadOptions(duplicates=policy))
        assert values(result, "x") == [1.0, 2.0, 3.0]
        assert same(values(result, "y"), [10.0, 20.0, math.nan])  # b's missing y never overrides a's 20
        assert result.report.exact_duplicates_removed == 1 and result.report.conflicting_duplicates == 0
    warning = next(w for w in result.report.warnings if w.code == "CHANNEL_MISSING_IN_SOURCE")
    assert warning.examples == [{"column": "y"}]


def test_merge_exact_duplicates_count_nan_as_equal() -> None:
    a = "t;v;w\n2024-01-01 00:00;1;\n2024-01-01 01:00;2;5\n"
    b = "t;v;w\n2024-01-01 00:00;1;\n2024-01-01 02:00;3;6\n"
    result = read_raw([a.encode(), b.encode()], LoadOptions(duplicates="raise"))
    assert result.report.exact_duplicates_removed == 1 and len(result.frame) == 3


def test_sources_are_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text(L6_A, encoding="utf-8")
    before = path.read_bytes()
    read_raw([path, path])
    assert path.read_bytes() == before


# --------------------------------------------------------------------------------------------
# Sources, report, progress
# --------------------------------------------------------------------------------------------


def test_source_kinds(tmp_path: Path) -> None:
    path = tmp_path / "werte.csv"
    path.write_bytes(L6_A.encode())
    expected = load(L6_A).frame
    for source in (path, str(path), f"file://{path}", io.BytesIO(L6_A.encode()), L6_A.encode(),
                   bytearray(L6_A.encode())):
        result = read_raw(source)
        assert result.frame.equals(expected)
    with open(path, "rb") as handle:
        assert read_raw(handle).report.sources[0].source == str(path)
    assert read_raw(path).report.sources[0].source == str(path)


def test_fsspec_memory_url() -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/zeitflow-test/a.csv", L6_A.encode())
    try:
        result = read_raw("memory://zeitflow-test/a.csv")
        assert values(result) == [1.0, 2.0, 3.0]
        assert result.report.sources[0].source == "memory://zeitflow-test/a.csv"
    finally:
        fs.rm("/zeitflow-test/a.csv")


def test_report_is_json_and_carries_parameters_and_step_statistics() -> None:
    text = "t;v\n" + "".join(f"2024-01-01 00:{m:02d}:{s:02d};{i}\n" for i, (m, s) in enumerate(
        [(0, 0), (7, 30), (15, 0), (22, 30), (45, 0)]))
    options = LoadOptions()
    result = read_raw(text.encode(), options)
    report = result.report
    data = json.loads(report.model_dump_json())
    assert data["stage"] == "load" and data["parameters_hash"] == options.parameters_hash()
    assert data["parameters"]["delimiter"] == ";" and data["parameters"]["decimal"] == "."
    assert data["parameters"]["datetime_format"] == "iso"
    assert (report.first_utc, report.last_utc) == ("2024-01-01T00:00:00Z", "2024-01-01T00:45:00Z")
    step = report.step_statistics
    assert (step.rows, step.step_median_minutes, step.step_min_minutes, step.step_max_minutes) == (5, 7.5, 7.5, 22.5)
    assert step.step_mean_minutes == 11.25 and step.offset_minutes == 0.0 and step.regular is False
    assert step.channels["v"].numeric == 5 and step.channels["v"].numeric_share_percent == 100.0
    assert report.columns_out == ["v"] and report.duration_seconds >= 0


def test_step_statistics_offset_is_exact() -> None:
    result = load("t;v\n2024-01-01 00:02:30;1\n2024-01-01 00:12:30;2\n2024-01-01 00:22:30;3\n")
    step = result.report.step_statistics
    assert step.step_median_minutes == 10.0 and step.offset_minutes == 2.5 and step.regular is True


def test_progress_events() -> None:
    events: list[ProgressEvent] = []
    read_raw([L6_A.encode(), L6_B.encode()], progress=events.append)
    units = [e.unit for e in events]
    assert units.count("file") == 2 and "chunk" in units
    assert any(e.message.startswith("merged") for e in events)
    assert all(e.stage == "load" for e in events)


# --------------------------------------------------------------------------------------------
# Results do not depend on the block size (§1.8)
# --------------------------------------------------------------------------------------------


def _fingerprint(result: LoadResult) -> tuple:
    source = result.report.sources[0]
    frame = result.frame
    return (
        frame.index.asi8.tolist(),
        {c: [None if math.isnan(v) else v for v in frame[c].tolist()] for c in frame.columns},
        source.model_dump(exclude={"warnings", "source"}),
        result.report.duplicate_rows_removed,
    )


_cell = st.one_of(
    st.integers(-999, 999).map(str),
    st.floats(-1e4, 1e4, allow_nan=False).map(lambda v: f"{v:.2f}".replace(".", ",")),
    st.sampled_from(["", "n/a", "abc", "1.234,5", '"7,5"', " 8 "]),
)
_row = st.one_of(
    st.tuples(st.integers(0, 30), _cell, _cell).map(
        lambda t: f"2024-10-27 {t[0] // 12:02d}:{(t[0] % 12) * 5 + 1:02d};{t[1]};{t[2]}"),
    st.sampled_from(["", "   ", "2024-10-27 02:30;1", '"2024-10-27 02:40";"4,5";"multi\nline"',
                     "2024-10-27 02:10;3;4;;", "2024-10-27 02:20;5;6;7"]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, min_size=1, max_size=60), chunk=st.integers(1, 12),
       ambiguous=st.sampled_from(["infer", "earliest", "drop"]), duplicates=st.sampled_from(["first", "last", "mean"]))
def test_results_do_not_depend_on_chunk_rows(rows: list[str], chunk: int, ambiguous: str, duplicates: str) -> None:
    # 50 regular rows first keep the detection stable (delimiter, decimal, > 90 % parseable times).
    lines = [f"2024-10-26 {i // 60:02d}:{i % 60:02d};{i},5;{i}" for i in range(50)] + ["kaputt;1;2"] + rows
    data = ("Zeit;A;B\n" + "\n".join(lines) + "\n").encode()
    options = LoadOptions(timezone="Europe/Vienna", ambiguous=ambiguous, duplicates=duplicates)
    whole = read_raw(data, options)
    small = read_raw(data, options, _chunk_rows=chunk)
    assert _fingerprint(small) == _fingerprint(whole)
    # The validated minimum cannot express small blocks; model_construct bypasses it here only.
    constructed = LoadOptions.model_construct(**{**options.model_dump(), "chunk_rows": chunk})
    assert _fingerprint(read_raw(data, constructed)) == _fingerprint(whole)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_block_boundaries_of_the_reader(monkeypatch: pytest.MonkeyPatch, encoding: str) -> None:
    rows = []
    for i in range(3000):
        stamp = f"2024-01-{1 + i // 1440:02d} {(i // 60) % 24:02d}:{i % 60:02d}"
        if i % 97 == 5:
            rows.append("")
        if i % 211 == 7:
            rows.append(f'"{stamp}";"{i},5";"über\nzwei Zeilen"')
        elif i % 307 == 11:
            rows.append(f"{stamp};{i}")
        else:
            rows.append(f"{stamp};{i},25;{i % 7}")
    text = "Zeit;Wert [°C];B\r\n" + "\r\n".join(rows) + "\r\n"
    raw = text.encode(encoding)
    whole = read_raw(raw)
    monkeypatch.setattr(load_csv, "SAMPLE_BYTES", 512)
    small = read_raw(raw, _chunk_rows=37)
    assert _fingerprint(small) == _fingerprint(whole)

    class ReadOnly:  # a stream without readline/readinto takes the generic buffered path
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._inner.read(min(n, 1000) if n > 0 else n)

    assert _fingerprint(read_raw(ReadOnly(raw), _chunk_rows=37)) == _fingerprint(whole)
    source = whole.report.sources[0]
    assert source.bad_lines == 10 and source.blank_lines == 31
    assert whole.report.channels["B"].non_numeric == 15  # the two-line quoted texts


# --------------------------------------------------------------------------------------------
# The real files
# --------------------------------------------------------------------------------------------


def test_tmy3_typical_year() -> None:
    options = LoadOptions(
        date_column="Date (MM/DD/YYYY)", time_of_day_column="Time (HH:MM)", timezone="Etc/GMT+5",
        coerce_year=2021, value_columns=["GHI (W/m^2)", "Dry-bulb (C)", "RHum (%)", "Pressure (mbar)"],
    )
    result = read_raw(REAL / "tmy3_greensboro.csv", options)
    frame = result.frame
    assert len(frame) == 8760
    assert frame.index[0] == pd.Timestamp("2021-01-01 06:00", tz="UTC")
    assert frame.index[-1] == pd.Timestamp("2022-01-01 05:00", tz="UTC")
    assert (np.diff(frame.index.asi8) == HOUR_NS).all()
    source = result.report.sources[0]
    assert (source.header, source.header_line, source.metadata_lines) == (True, 2, 1)
    assert source.metadata_examples[0].startswith('723170,"GREENSBORO PIEDMONT TRIAD INT"')
    assert (source.delimiter, source.encoding) == (",", "utf-8")
    assert source.coerced_year_rows == 8760 and source.unparseable_time == 0
    assert frame["Dry-bulb (C)"].iloc[0] == 10.0
    assert frame["Dry-bulb (C)"].min() == -16.7 and frame["Dry-bulb (C)"].max() == 35.6
    assert result.report.step_statistics.regular is True


def test_tmy3_default_selection_keeps_every_non_empty_column() -> None:
    options = LoadOptions(date_column="Date (MM/DD/YYYY)", time_of_day_column="Time (HH:MM)",
                          timezone="Etc/GMT+5", coerce_year=2021)
    result = read_raw(REAL / "tmy3_greensboro.csv", options)
    assert result.frame.shape == (8760, 69)
    letters = [c for c, r in result.report.channels.items() if r.non_numeric == 8760]
    assert len(letters) == 15 and "Dry-bulb source" in letters  # flags such as 'A', 'E', '?'
    assert result.report.channels["PresWth (METAR code)"].numeric == 8760


def test_payerne_one_minute_export() -> None:
    result = read_raw(REAL / "payerne_2016-06_1min_de.csv", LoadOptions(timezone="Europe/Zurich"))
    frame = result.frame
    assert len(frame) == 43200
    assert frame.index[0] == pd.Timestamp("2016-06-01 00:00", tz="UTC")
    assert frame.index[-1] == pd.Timestamp("2016-06-30 23:59", tz="UTC")
    assert "Temperatur [°C]" in frame.columns
    source = result.report.sources[0]
    assert (source.encoding, source.decimal, source.delimiter) == ("cp1252", ",", ";")
    assert source.datetime_format == "%d.%m.%Y %H:%M:%S"
    assert frame["Temperatur [°C]"].iloc[0] == 9.3 and frame["rel. Feuchte [%]"].iloc[0] == 100.5
    assert frame["GHI [W/m2]"].max() == 1404.0 and frame["GHI [W/m2]"].min() == -1.0
    channels = result.report.channels
    assert channels["DNI [W/m2]"].missing == 1289 and channels["GHI [W/m2]"].missing == 4
    assert channels["Temperatur [°C]"].non_numeric == 0


def test_payerne_ten_minute_file() -> None:
    result = read_raw(REAL / "payerne_2016-06_10min_temperature.csv")
    assert len(result.frame) == 4320
    assert result.frame.index[0] == pd.Timestamp("2016-06-01 00:00", tz="UTC")
    assert result.frame.index[-1] == pd.Timestamp("2016-06-30 23:50", tz="UTC")
    assert list(result.frame.columns) == ["Temperatur [°C]"]
