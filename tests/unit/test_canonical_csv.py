"""Canonical CSV (stages.md §0.4): exact bytes of a hand-written example, the round trip as a property, the strict
reader's errors with their line and column, UNSORTED_INPUT, and formula-injection neutralisation."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import FrameError, LoadError, ParameterError
from zeitflow.io.canonical_csv import read_csv, to_csv_bytes, write_csv

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
nan = math.nan


def frame(times: list[str], **columns: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True, format="ISO8601"), name="utc").as_unit("ns")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}, index=index)


def example() -> pd.DataFrame:
    f = frame(["2024-01-01 00:00:00", "2024-01-01 00:00:00.5", "2024-01-01 00:15:00"],
              P=[0.1, nan, -1.5], **{"-5 cm": [1e-07, 3.0, nan], "=A1+1": [-2.0, 12.5, 0.0]})
    return f


EXAMPLE_BYTES = (
    b"UTC;P;'-5 cm;'=A1+1\n"
    b"2024-01-01 00:00:00.000000;0.1;1e-07;-2.0\n"
    b"2024-01-01 00:00:00.500000;;3.0;12.5\n"
    b"2024-01-01 00:15:00.000000;-1.5;;0.0\n"
)


def load_error(data: bytes) -> LoadError:
    with pytest.raises(LoadError) as info:
        read_csv(data)
    return info.value


# ---- export: exact bytes ----------------------------------------------------------------------------------


def test_exact_bytes_of_hand_written_example() -> None:
    assert to_csv_bytes(example()) == EXAMPLE_BYTES


def test_exact_bytes_with_decimals() -> None:
    assert to_csv_bytes(example(), decimals=2) == (
        b"UTC;P;'-5 cm;'=A1+1\n"
        b"2024-01-01 00:00:00.000000;0.10;0.00;-2.00\n"
        b"2024-01-01 00:00:00.500000;;3.00;12.50\n"
        b"2024-01-01 00:15:00.000000;-1.50;;0.00\n"
    )
    assert to_csv_bytes(example(), decimals=0).splitlines()[2] == b"2024-01-01 00:00:00.500000;;3;12"


def test_whole_seconds_have_no_fraction_and_no_bom() -> None:
    data = to_csv_bytes(frame(["2024-01-01 00:00:00", "2024-06-30 23:59:59"], x=[1.0, 2.25]))
    assert data == b"UTC;x\n2024-01-01 00:00:00;1.0\n2024-06-30 23:59:59;2.25\n"
    assert not data.startswith(b"\xef\xbb\xbf")
    assert b"\r" not in data


def test_shortest_round_trip_values() -> None:
    values = [0.1, 1 / 3, 1e-07, 1e16, 5e-324, 1.7976931348623157e308, -0.0, 123456789.0]
    f = frame([f"2024-01-01 00:00:{i:02d}" for i in range(len(values))], v=values)
    cells = [line.split(b";")[1].decode() for line in to_csv_bytes(f).splitlines()[1:]]
    assert cells == [repr(v) for v in values]
    assert [float(c) for c in cells] == values


def test_formula_headers_are_neutralised_but_numeric_cells_are_not() -> None:
    f = frame(["2024-01-01"], **{"=cmd": [-1.5], "+x": [1.0], "-5 cm": [-2.0], "@y": [3.0], "a-b": [-4.0]})
    header, row = to_csv_bytes(f).decode().splitlines()
    assert header == "UTC;'=cmd;'+x;'-5 cm;'@y;a-b"
    assert row == "2024-01-01 00:00:00;-1.5;1.0;-2.0;3.0;-4.0"
    back, _ = read_csv(to_csv_bytes(f))
    assert list(back.columns) == ["=cmd", "+x", "-5 cm", "@y", "a-b"]


def test_header_fields_with_separator_quotes_or_line_breaks_are_quoted() -> None:
    f = frame(["2024-01-01"], **{"a;b": [1.0], 'say "hi"': [2.0], "two\nlines": [3.0], "cr\rx": [4.0]})
    data = to_csv_bytes(f)
    assert data.startswith(b'UTC;"a;b";"say ""hi""";"two\nlines";"cr\rx"\n')
    back, _ = read_csv(data)
    assert list(back.columns) == list(f.columns)


def test_sub_microsecond_timestamp_is_rejected_naming_it() -> None:
    index = pd.DatetimeIndex([pd.Timestamp("2024-01-01", tz="UTC"),
                              pd.Timestamp("2024-01-01 00:00:01.000000500", tz="UTC")], name="utc").as_unit("ns")
    f = pd.DataFrame({"x": [1.0, 2.0]}, index=index)
    with pytest.raises(FrameError) as info:
        to_csv_bytes(f)
    assert info.value.code == "INVALID_FRAME"
    assert "2024-01-01T00:00:01.000000500" in info.value.message
    assert info.value.details["timestamp"] == "2024-01-01T00:00:01.000000500+00:00"


def test_invalid_frame_is_rejected_before_writing(tmp_path: Path) -> None:
    f = example()
    f.index.name = "time"
    target = tmp_path / "out.csv"
    with pytest.raises(FrameError):
        write_csv(f, target)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("decimals", "code"), [(-1, "PARAM_OUT_OF_RANGE"), (1.5, "PARAM_NOT_INTEGER"),
                                                 (True, "PARAM_NOT_INTEGER")])
def test_bad_decimals(decimals: object, code: str) -> None:
    with pytest.raises(ParameterError) as info:
        to_csv_bytes(example(), decimals=decimals)  # type: ignore[arg-type]
    assert info.value.code == code


def test_write_targets_path_binary_and_text(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.csv"
    write_csv(example(), target)
    assert target.read_bytes() == EXAMPLE_BYTES
    write_csv(example(), str(target), decimals=2)  # overwrite atomically
    assert target.read_bytes() == to_csv_bytes(example(), decimals=2)
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.csv"]
    binary = io.BytesIO()
    write_csv(example(), binary)
    assert binary.getvalue() == EXAMPLE_BYTES
    text = io.StringIO(newline="")
    write_csv(example(), text)
    assert text.getvalue().encode("utf-8") == EXAMPLE_BYTES


def test_empty_frame_round_trips() -> None:
    f = frame([], a=[], b=[])
    assert to_csv_bytes(f) == b"UTC;a;b\n"
    back, warnings = read_csv(b"UTC;a;b\n")
    pd.testing.assert_frame_equal(back, f)
    assert warnings == []


# ---- round trip ---------------------------------------------------------------------------------------------

_US_LIMIT = (2**63 - 1) // 1000
channel_names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=8).filter(
    lambda s: not (s.startswith("'") and s[1:2] in ("=", "+", "-", "@")))


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    whole_seconds = draw(st.booleans())
    lo, hi = (-_US_LIMIT // 1_000_000 + 1, _US_LIMIT // 1_000_000) if whole_seconds else (-_US_LIMIT + 1, _US_LIMIT)
    stamps = sorted(draw(st.lists(st.integers(lo, hi), unique=True, max_size=12)))
    ns = np.asarray(stamps, dtype=np.int64) * (1_000_000_000 if whole_seconds else 1_000)
    names = draw(st.lists(channel_names, min_size=1, max_size=4, unique=True))
    floats = st.floats(allow_nan=True, allow_infinity=False, allow_subnormal=True)
    columns = {n: draw(st.lists(floats, min_size=len(ns), max_size=len(ns))) for n in names}
    index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name="utc").as_unit("ns")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}, index=index)


@PROPERTY
@given(frames())
def test_round_trip_write_read_is_exact(f: pd.DataFrame) -> None:
    back, warnings = read_csv(to_csv_bytes(f))
    assert warnings == []
    assert list(back.columns) == list(f.columns)
    assert back.index.equals(f.index) and str(back.index.dtype) == "datetime64[ns, UTC]"
    assert back.index.name == "utc"
    for name in f.columns:
        a, b = f[name].to_numpy(), back[name].to_numpy()
        assert b.dtype == np.float64
        assert np.array_equal(np.isnan(a), np.isnan(b))
        ok = ~np.isnan(a)
        assert np.array_equal(a[ok].view(np.int64), b[ok].view(np.int64))  # bit-exact, -0.0 included


def test_round_trip_through_a_file(tmp_path: Path) -> None:
    target = tmp_path / "x.csv"
    write_csv(example(), target)
    back, warnings = read_csv(target)
    pd.testing.assert_frame_equal(back, example())
    assert warnings == []
    with target.open("rb") as handle:
        pd.testing.assert_frame_equal(read_csv(handle)[0], example())
    with target.open("r", encoding="utf-8", newline="") as handle:
        pd.testing.assert_frame_equal(read_csv(handle)[0], example())


# ---- reader -------------------------------------------------------------------------------------------------


def test_missing_tokens_become_nan() -> None:
    data = b"UTC;a\n" + b"".join(f"2024-01-01 00:0{i}:00;{t}\n".encode() for i, t in
                                 enumerate(["", "nan", "NaN", "None", "null", "-1.5"]))
    back, _ = read_csv(data)
    assert np.isnan(back["a"].to_numpy()[:5]).all()
    assert back["a"].iloc[5] == -1.5


def test_leading_quote_is_stripped_only_before_formula_characters() -> None:
    back, _ = read_csv(b"UTC;'-5 cm;'=x;'+y;'@z;'plain;''-w\n2024-01-01 00:00:00;1;2;3;4;5;6\n")
    assert list(back.columns) == ["-5 cm", "=x", "+y", "@z", "'plain", "''-w"]


def test_both_timestamp_formats_are_accepted() -> None:
    back, _ = read_csv(b"UTC;a\n2024-01-01 00:00:00;1\n2024-01-01 00:00:00.25;2\n2024-01-01 00:00:01.123456;3\n")
    assert list(back.index) == [pd.Timestamp("2024-01-01 00:00:00", tz="UTC"),
                                pd.Timestamp("2024-01-01 00:00:00.25", tz="UTC"),
                                pd.Timestamp("2024-01-01 00:00:01.123456", tz="UTC")]


def test_crlf_and_bom_are_accepted() -> None:
    back, _ = read_csv(b"\xef\xbb\xbfUTC;a\r\n2024-01-01 00:00:00;1.5\r\n")
    assert back["a"].tolist() == [1.5]


@pytest.mark.parametrize("data", [
    b"time;P\n2024-01-01 00:00:00;1\n",
    b"UTC,P\n2024-01-01 00:00:00,1\n",
    b"UTC\n2024-01-01 00:00:00\n",
    b"",
    b"utc;P\n",
])
def test_header_must_be_utc_with_semicolons(data: bytes) -> None:
    err = load_error(data)
    assert err.code == "CSV_PARSING_ERROR"
    assert err.details["line"] == 1
    assert err.details["source"] == "<bytes>"
    assert "line 1" in err.message


def test_header_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(b"Zeit;P\n2024-01-01 00:00:00;1\n")
    with pytest.raises(LoadError) as info:
        read_csv(path)
    assert info.value.code == "CSV_PARSING_ERROR"
    assert str(path) in info.value.message and "line 1" in info.value.message


@pytest.mark.parametrize("cell", ["abc", "1,5", "inf", "-inf", "NAN", " 1", "1_000", "0x10", '"1"', "1e999"])
def test_non_numeric_cell_names_line_and_column(cell: str) -> None:
    data = f"UTC;P;Q\n2024-01-01 00:00:00;1;2\n2024-01-01 00:15:00;3;{cell}\n".encode()
    err = load_error(data)
    assert err.code == "CSV_PARSING_ERROR"
    assert err.details["line"] == 3 and err.details["column"] == "Q" and err.details["field"] == 3
    assert "line 3" in err.message and "'Q'" in err.message


@pytest.mark.parametrize("stamp", ["2024-01-01T00:15:00", "2024-02-30 00:00:00", "2024-1-01 00:00:00",
                                   "2024-01-01 00:15", "2024-01-01 00:15:00+01:00", "2024-01-01 00:15:00.1234567",
                                   "1600-01-01 00:00:00", ""])
def test_bad_timestamp_names_line_and_utc_column(stamp: str) -> None:
    err = load_error(f"UTC;P\n2024-01-01 00:00:00;1\n{stamp};2\n".encode())
    assert err.code == "CSV_PARSING_ERROR"
    assert err.details["line"] == 3 and err.details["column"] == "UTC"


def test_first_error_in_file_order_is_reported() -> None:
    err = load_error(b"UTC;P;Q\n2024-01-01 00:00:00;1;x\nbad;y;2\n")
    assert (err.details["line"], err.details["column"]) == (2, "Q")
    err = load_error(b"UTC;P;Q\n2024-01-01 00:00:00;1;2\nbad;y;2\n")
    assert (err.details["line"], err.details["column"]) == (3, "UTC")


def test_line_numbers_count_physical_header_lines() -> None:
    err = load_error(b'UTC;"two\nlines"\n2024-01-01 00:00:00;1\n2024-01-01 00:15:00;x\n')
    assert err.details["line"] == 4 and err.details["column"] == "two\nlines"


@pytest.mark.parametrize(("row", "found"), [(b"2024-01-01 00:15:00;1;2;3", 4), (b"2024-01-01 00:15:00;1", 2)])
def test_wrong_field_count_names_the_line(row: bytes, found: int) -> None:
    err = load_error(b"UTC;P;Q\n2024-01-01 00:00:00;1;2\n" + row + b"\n2024-01-01 00:30:00;1;2\n")
    assert err.code == "CSV_PARSING_ERROR"
    assert err.details["line"] == 3 and err.details["found"] == found and "line 3" in err.message


def test_blank_line_is_an_error() -> None:
    err = load_error(b"UTC;P\n2024-01-01 00:00:00;1\n\n2024-01-01 00:30:00;1\n")
    assert err.code == "CSV_PARSING_ERROR" and err.details["line"] == 3


def test_duplicate_timestamps() -> None:
    err = load_error(b"UTC;P\n2024-01-01 00:15:00;1\n2024-01-01 00:00:00;2\n2024-01-01 00:15:00;3\n")
    assert err.code == "DUPLICATE_TIMESTAMPS"
    assert err.details["count"] == 1
    assert err.details["lines"] == [2, 4]
    assert err.details["timestamps"] == ["2024-01-01T00:15:00+00:00"]
    assert "lines 2 and 4" in err.message


def test_unsorted_rows_are_sorted_with_warning() -> None:
    data = (b"UTC;P\n2024-01-01 00:30:00;3\n2024-01-01 00:00:00;1\n2024-01-01 00:45:00;4\n"
            b"2024-01-01 00:15:00;2\n")
    back, warnings = read_csv(data)
    assert back["P"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert back.index.is_monotonic_increasing
    [warning] = warnings
    assert warning.code == "UNSORTED_INPUT" and warning.count == 2
    assert [e["line"] for e in warning.examples] == [3, 5]
    assert warning.examples[0]["timestamp"] == "2024-01-01T00:00:00+00:00"


def test_duplicate_or_empty_channel_names() -> None:
    assert load_error(b"UTC;a;a\n").details["line"] == 1
    assert load_error(b"UTC;a;\n").code == "CSV_PARSING_ERROR"


def test_invalid_utf8_and_missing_file(tmp_path: Path) -> None:
    err = load_error(b"UTC;a\n2024-01-01 00:00:00;1\n2024-01-01 00:15:00;\xff\n")
    assert err.code == "ENCODING_ERROR" and err.details["line"] == 3
    with pytest.raises(LoadError) as info:
        read_csv(tmp_path / "absent.csv")
    assert info.value.code == "SOURCE_NOT_FOUND"


def test_result_is_canonical() -> None:
    back, _ = read_csv(EXAMPLE_BYTES)
    assert str(back.index.dtype) == "datetime64[ns, UTC]" and back.index.name == "utc"
    assert all(back[c].dtype == np.float64 for c in back.columns)
    pd.testing.assert_frame_equal(back, example())
