"""Inputs the load stage must refuse (stages.md §1.10): each raises ``LoadError`` with its
specific code and a message naming the file and the line or column. Invalid options are
rejected with their validation types (§1.3, §0.6)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from zeitflow.errors import LoadError
from zeitflow.options.load import LoadOptions
from zeitflow.stages.load import read_raw

NAME = "messwerte.csv"
GOOD_ROWS = "".join(f"2024-01-01 {h:02d}:00;{h};{h * 2}\n" for h in range(20))


def fail(tmp_path: Path, content: str | bytes, *, name: str = NAME, **options: object) -> LoadError:
    """Write ``content``, read it, and return the LoadError (which must name the file)."""
    path = tmp_path / name
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    with pytest.raises(LoadError) as info:
        read_raw(path, LoadOptions(**options))
    error = info.value
    assert name in error.message, error.message
    assert str(error.details["source"]).endswith(name)
    assert error.to_dict()["code"] == error.code  # JSON-ready
    return error


# -- empty and structureless files ----------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    error = fail(tmp_path, b"")
    assert error.code == "EMPTY_FILE" and "line 1" in error.message


def test_only_blank_lines(tmp_path: Path) -> None:
    error = fail(tmp_path, "\n   \n\t\n")
    assert error.code == "EMPTY_FILE" and "lines 1-3 are blank" in error.message


def test_header_only(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;Wert\n")
    assert error.code == "EMPTY_FILE" and "line 1 " in error.message


def test_header_only_with_header_yes(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;Wert\n\n", header="yes")
    assert error.code == "EMPTY_FILE" and "header on line 1" in error.message


def test_metadata_without_data(tmp_path: Path) -> None:
    error = fail(tmp_path, "Logger;A\nStandort;B\nZeit;Wert\n")
    assert error.code == "EMPTY_FILE" and "lines 1-3" in error.message


def test_skip_rows_past_the_end(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;Wert\n2024-01-01 00:00;1\n", skip_rows=5)
    assert error.code == "EMPTY_FILE" and "skip_rows=5" in error.message and "line 2" in error.message


def test_single_column_file(tmp_path: Path) -> None:
    error = fail(tmp_path, "Wert\n1\n2\n3\n")
    assert error.code == "DELIMITER_NOT_DETECTED" and "lines 1-4" in error.message
    assert [c["k"] for c in error.details["candidates"]] == [1, 1, 1]


def test_single_column_with_explicit_delimiter(tmp_path: Path) -> None:
    error = fail(tmp_path, "Wert\n1\n2\n3\n", delimiter=";")
    assert error.code == "TOO_FEW_COLUMNS" and "lines 1-4" in error.message


# -- encodings -----------------------------------------------------------------------------------


def test_binary_garbage(tmp_path: Path) -> None:
    garbage = np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    error = fail(tmp_path, garbage, name="blob.bin")
    assert error.code == "ENCODING_ERROR" and "line " in error.message and "NUL" in error.message


def test_utf16_without_bom(tmp_path: Path) -> None:
    error = fail(tmp_path, ("Zeit;Wert\n" + GOOD_ROWS).encode("utf-16-le"))
    assert error.code == "ENCODING_ERROR"
    assert "line 1" in error.message and "UTF-16 without BOM" in error.message


def test_undecodable_bytes_after_the_first_mebibyte(tmp_path: Path) -> None:
    head = "Zeit;Wert\n" + "".join(f"2024-01-01 {i // 60 % 24:02d}:{i % 60:02d};{i}\n" for i in range(60_000))
    assert len(head) > (1 << 20)
    raw = head.encode("ascii") + b"2024-01-02 00:00;\xff\n2024-01-02 00:01;2\n"
    error = fail(tmp_path, raw)
    assert error.code == "ENCODING_ERROR"
    offset = len(head) + len("2024-01-02 00:00;")
    assert error.details["byte_offset"] == offset and f"byte offset {offset}" in error.message
    assert error.details["line"] == 60_002 and "line 60002" in error.message


def test_wrong_explicit_encoding(tmp_path: Path) -> None:
    error = fail(tmp_path, ("Zeit;Temp [°C]\n" + GOOD_ROWS).encode("cp1252"), encoding="utf-8")
    assert error.code == "ENCODING_ERROR" and "line 1" in error.message and "byte offset 11" in error.message


# -- fields and columns --------------------------------------------------------------------------


def test_inconsistent_column_counts_with_bad_lines_error(tmp_path: Path) -> None:
    rows = GOOD_ROWS.splitlines()
    rows[3] = "2024-01-01 03:00;3"
    error = fail(tmp_path, "Zeit;A;B\n" + "\n".join(rows) + "\n", bad_lines="error")
    assert error.code == "CSV_PARSING_ERROR"
    assert "line 5: expected 3 fields, found 2" in error.message
    assert (error.details["line"], error.details["expected"], error.details["found"]) == (5, 3, 2)


def test_one_megabyte_line_with_bad_lines_error(tmp_path: Path) -> None:
    rows = GOOD_ROWS.splitlines()
    rows[1] = "2024-01-01 01:00;" + ";".join(["x" * 1000] * 1000)
    error = fail(tmp_path, "Zeit;A;B\n" + "\n".join(rows) + "\n", bad_lines="error")
    assert error.code == "CSV_PARSING_ERROR" and "line 3" in error.message and "found 1001" in error.message
    assert len(error.details["raw"]) == 200


def test_header_longer_than_the_data(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B;C\n" + GOOD_ROWS, header="yes")
    assert error.code == "CSV_PARSING_ERROR" and "line 1" in error.message and "header" in error.message


def test_unknown_value_column(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, value_columns=["A", "Leistung"])
    assert error.code == "COLUMN_NOT_FOUND" and "'Leistung'" in error.message and "['Zeit', 'A', 'B']" in error.message


def test_unknown_time_column(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, time_column="Zeitstempel")
    assert error.code == "COLUMN_NOT_FOUND" and "time_column='Zeitstempel'" in error.message


def test_column_index_out_of_range(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, value_columns=[1, 7])
    assert error.code == "INVALID_COLUMN_INDEX"
    assert "value_columns[1]=7" in error.message and "k=3" in error.message


def test_time_column_given_as_value_column_by_another_reference(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, value_columns=["Zeit", "A"])
    assert error.code == "COLUMN_NOT_FOUND" and "value_columns[0]='Zeit'" in error.message


def test_rename_of_an_unknown_column(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, rename={"C": "c"})
    assert error.code == "COLUMN_NOT_FOUND" and "'C'" in error.message


# -- values --------------------------------------------------------------------------------------


def test_all_values_missing(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01 {h:02d}:00;n/a;-\n" for h in range(5))
    error = fail(tmp_path, "Zeit;A;B\n" + rows)
    assert error.code == "NO_NUMERIC_DATA" and "['A', 'B']" in error.message and "lines 2-6" in error.message


def test_all_value_columns_empty(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + "".join(f"2024-01-01 {h:02d}:00;;\n" for h in range(5)))
    assert error.code == "NO_NUMERIC_DATA" and "['A', 'B']" in error.message


def test_formula_injection_only(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-01 {h:02d}:00;=cmd|' /C calc'!A0\n" for h in range(5))
    error = fail(tmp_path, "Zeit;Wert\n" + rows)
    assert error.code == "NO_NUMERIC_DATA" and "['Wert']" in error.message


def test_formula_injection_becomes_nan_not_text(tmp_path: Path) -> None:
    path = tmp_path / NAME
    path.write_text("Zeit;Wert\n2024-01-01 00:00;=cmd|' /C calc'!A0\n2024-01-01 01:00;+1+2\n"
                    "2024-01-01 02:00;@SUM(1)\n2024-01-01 03:00;4\n", encoding="utf-8")
    result = read_raw(path)
    assert result.frame["Wert"].dtype == np.float64
    assert [math.isnan(v) for v in result.frame["Wert"]] == [True, True, True, False]
    channel = result.report.channels["Wert"]
    assert channel.non_numeric == 3 and channel.non_numeric_examples[0]["raw"] == "=cmd|' /C calc'!A0"


# -- time ----------------------------------------------------------------------------------------


def test_no_parseable_time_stamps(tmp_path: Path) -> None:
    rows = "".join(f"Messung {h};{h}\n" for h in range(20))
    error = fail(tmp_path, "Zeit;Wert\n" + rows)
    assert error.code == "DATETIME_PARSING_ERROR" and "time column 'Zeit'" in error.message
    assert "Messung 0" in error.message


def test_explicit_format_that_matches_no_row(tmp_path: Path) -> None:
    error = fail(tmp_path, "Zeit;A;B\n" + GOOD_ROWS, datetime_format="%d.%m.%Y %H:%M")
    assert error.code == "DATETIME_PARSING_ERROR"
    assert "first failing lines [2, 3, 4, 5, 6]" in error.message and "'Zeit'" in error.message


def test_time_only_values(tmp_path: Path) -> None:
    rows = "".join(f"{h:02d}:00;{h}\n" for h in range(20))
    error = fail(tmp_path, "Uhrzeit;Wert\n" + rows)
    assert error.code == "DATETIME_PARSING_ERROR" and "'Uhrzeit'" in error.message
    assert "Time-only formats are not supported" in error.message


def test_inconsistent_day_month_order(tmp_path: Path) -> None:
    rows = "".join(f"0{d}.01.2024 00:00;{d}\n" for d in range(1, 9))
    rows += "13.01.2024 00:00;13\n01.13.2024 00:00;14\n"
    error = fail(tmp_path, "Zeit;Wert\n" + rows)
    assert error.code == "DATETIME_PARSING_ERROR" and "inconsistent day/month order" in error.message
    assert "line 10" in error.message and "line 11" in error.message


def test_epoch_out_of_range(tmp_path: Path) -> None:
    rows = "".join(f"{1_704_067_200_000_000 + h};{h}\n" for h in range(10))  # microseconds
    error = fail(tmp_path, "ts;v\n" + rows)
    assert error.code == "DATETIME_PARSING_ERROR" and "epoch units" in error.message
    assert "time column 'ts'" in error.message


def test_hour_24_with_minutes(tmp_path: Path) -> None:
    rows = "".join(f"0{d}.01.2024;24:30;{d}\n" for d in range(1, 9))
    error = fail(tmp_path, "Datum;Uhrzeit;Wert\n" + rows, date_column="Datum", time_of_day_column="Uhrzeit")
    assert error.code == "DATETIME_PARSING_ERROR" and "'Datum' + 'Uhrzeit'" in error.message
    assert "24:30" in error.message


def test_coerce_year_on_29_february(tmp_path: Path) -> None:
    rows = "".join(f"02/{d:02d}/1996,12:00,{d}\n" for d in range(25, 30)) + "03/01/1996,12:00,30\n"
    error = fail(tmp_path, "Date,Time,GHI\n" + rows, date_column="Date", time_of_day_column="Time", coerce_year=2021)
    assert error.code == "COERCE_YEAR_INVALID_DATE" and "line 6" in error.message


def test_ambiguous_time_with_raise(tmp_path: Path) -> None:
    rows = "2024-10-27 01:30;1\n2024-10-27 02:00;2\n2024-10-27 02:30;3\n2024-10-27 02:00;4\n2024-10-27 03:00;5\n"
    error = fail(tmp_path, "t;v\n" + rows, timezone="Europe/Vienna", ambiguous="raise")
    assert error.code == "AMBIGUOUS_TIME" and "[3, 4, 5]" in error.message and "'t'" in error.message
    assert error.details["count"] == 3


def test_nonexistent_time_with_raise(tmp_path: Path) -> None:
    rows = "2024-03-31 01:45;1\n2024-03-31 02:15;2\n2024-03-31 03:45;3\n"
    error = fail(tmp_path, "t;v\n" + rows, timezone="Europe/Vienna", nonexistent="raise")
    assert error.code == "NONEXISTENT_TIME" and "[3]" in error.message


def test_duplicate_time_stamps_with_raise(tmp_path: Path) -> None:
    rows = GOOD_ROWS + "2024-01-01 05:00;9;9\n"
    error = fail(tmp_path, "Zeit;A;B\n" + rows, duplicates="raise")
    assert error.code == "DUPLICATE_TIMESTAMPS"
    assert "2024-01-01T05:00:00Z" in error.message and "lines 7, 22" in error.message


def test_duplicates_from_coerce_year_follow_the_policy(tmp_path: Path) -> None:
    rows = "01/01/1990,01:00,1\n01/01/1991,01:00,2\n01/02/1990,01:00,3\n"
    error = fail(tmp_path, "Date,Time,V\n" + rows, date_column="Date", time_of_day_column="Time",
                 coerce_year=2021, duplicates="raise")
    assert error.code == "DUPLICATE_TIMESTAMPS" and "lines 2, 3" in error.message


# -- sources -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        read_raw(tmp_path / "fehlt.csv")
    assert info.value.code == "SOURCE_NOT_FOUND" and "fehlt.csv" in info.value.message


def test_missing_file_url(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        read_raw(f"file://{tmp_path}/fehlt.csv")
    assert info.value.code == "SOURCE_NOT_FOUND" and "fehlt.csv" in info.value.message


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(LoadError) as info:
        read_raw(tmp_path)
    assert info.value.code == "SOURCE_NOT_FOUND" and "directory" in info.value.message


def test_one_bad_source_in_a_merge_names_that_source(tmp_path: Path) -> None:
    good = tmp_path / "gut.csv"
    good.write_text("Zeit;A;B\n" + GOOD_ROWS, encoding="utf-8")
    with pytest.raises(LoadError) as info:
        read_raw([good, tmp_path / "fehlt.csv"])
    assert info.value.code == "SOURCE_NOT_FOUND" and "fehlt.csv" in info.value.message


# -- invalid options (validation types, §1.3) ------------------------------------------------------


@pytest.mark.parametrize("options, code", [
    ({"encoding": "klingon-8"}, "INVALID_CHOICE"),
    ({"delimiter": "|"}, "INVALID_CHOICE"),
    ({"decimal": ";"}, "INVALID_CHOICE"),
    ({"header": "vielleicht"}, "INVALID_CHOICE"),
    ({"bad_lines": "ignore"}, "INVALID_CHOICE"),
    ({"ambiguous": "guess"}, "INVALID_CHOICE"),
    ({"nonexistent": "shift_backward"}, "INVALID_CHOICE"),
    ({"duplicates": "sum"}, "INVALID_CHOICE"),
    ({"datetime_format": "epoch_us"}, "INVALID_CHOICE"),
    ({"thousands": "_"}, "INVALID_CHOICE"),
    ({"decimal": ",", "delimiter": ","}, "PARAM_COMPARISON_FAILED"),
    ({"thousands": ",", "delimiter": ","}, "PARAM_COMPARISON_FAILED"),
    ({"thousands": ".", "delimiter": ","}, "PARAM_COMPARISON_FAILED"),
    ({"thousands": ".", "decimal": "."}, "PARAM_COMPARISON_FAILED"),
    ({"value_columns": ["Zeit"], "time_column": "Zeit"}, "PARAM_COMPARISON_FAILED"),
    ({"value_columns": [0]}, "PARAM_COMPARISON_FAILED"),
    ({"time_column": 0, "date_column": 1, "time_of_day_column": 2}, "MUTUALLY_EXCLUSIVE"),
    ({"time_column": 0, "part_columns": {"year": 1, "month": 2, "day": 3}}, "MUTUALLY_EXCLUSIVE"),
    ({"date_column": "Datum"}, "MISSING_PARAMETER"),
    ({"part_columns": {"year": 0, "month": 1}}, "MISSING_PARAMETER"),
    ({"skip_rows": -1}, "PARAM_OUT_OF_RANGE"),
    ({"skip_rows": 100_001}, "PARAM_OUT_OF_RANGE"),
    ({"chunk_rows": 9_999}, "PARAM_OUT_OF_RANGE"),
    ({"coerce_year": 0}, "PARAM_OUT_OF_RANGE"),
    ({"coerce_year": 2021.5}, "PARAM_NOT_INTEGER"),
    ({"time_column": -1}, "PARAM_OUT_OF_RANGE"),
    ({"timezone": "Mars/Olympus_Mons"}, "UNSUPPORTED_TIMEZONE"),
    ({"seperator": ";"}, "UNKNOWN_PARAMETER"),
])
def test_invalid_options(options: dict, code: str) -> None:
    with pytest.raises(ValidationError) as info:
        LoadOptions(**options)
    errors = info.value.errors()
    assert errors[0]["type"] == code
    first_key = next(iter(options))
    assert first_key in errors[0]["msg"] or first_key in ".".join(map(str, errors[0]["loc"]))


def test_every_row_dropped_by_the_dst_policy(tmp_path: Path) -> None:
    rows = "2024-10-27 02:00;1\n2024-10-27 02:30;2\n2024-10-27 02:15;3\n"
    error = fail(tmp_path, "t;v\n" + rows, timezone="Europe/Vienna", ambiguous="drop")
    assert error.code == "NO_NUMERIC_DATA" and "['v']" in error.message and "lines 2-4" in error.message
    assert "3 of 3 data rows" in error.message
