"""Quote handling of the load stage (stages.md §1.4 step 2: RFC 4180 quoting).

A double quote opens a quoted field only at the start of a field (line start or right after the
delimiter); elsewhere it is a literal character. Block cuts, line counts and records all use the
same quote state machine (``zeitflow.stages.load_csv.QuoteRuns``), so a quoted field never
depends on where a block ends. Expectations are computed by hand unless a property says otherwise.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import LoadError
from zeitflow.options.load import LoadOptions
from zeitflow.stages import load_csv as lc
from zeitflow.stages.load import LoadResult, read_raw


def load(data: str | bytes, _chunk_rows: int | None = None, **options: object) -> LoadResult:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return read_raw(raw, LoadOptions(**options), _chunk_rows=_chunk_rows)


def values(result: LoadResult, column: str) -> list[float | None]:
    return [None if math.isnan(v) else v for v in result.frame[column].tolist()]


def records(lines: list[str], delimiter: str = ";") -> list[tuple[int, int, str, int | None]]:
    return [(r.first, r.last, r.text, r.open_quote) for r in lc.iter_records(lines, 1, delimiter)]


def stamps(n: int, start: int = 0) -> list[str]:
    """``n`` distinct minute stamps from 2024-01-01 00:00 on."""
    return [f"2024-01-{1 + m // 1440:02d} {(m // 60) % 24:02d}:{m % 60:02d}" for m in range(start, start + n)]


class ReadOnly:
    """A stream without readline/readinto: the reader takes its generic buffered path."""

    def __init__(self, data: bytes, piece: int = 1000) -> None:
        self._inner = io.BytesIO(data)
        self._piece = piece

    def read(self, n: int = -1) -> bytes:
        return self._inner.read(min(n, self._piece) if n > 0 else n)


# --------------------------------------------------------------------------------------------
# The state machine on records
# --------------------------------------------------------------------------------------------


def test_quoted_field_with_delimiter_and_line_break_is_one_record() -> None:
    lines = ['a;"x;y', 'z";1', "b;2"]
    assert records(lines) == [(1, 2, 'a;"x;y\nz";1', None), (3, 3, "b;2", None)]
    assert lc.split_fields('a;"x;y\nz";1', ";") == ["a", "x;y\nz", "1"]


def test_doubled_quotes_stay_inside_the_field() -> None:
    # `""` inside a quoted field is an escaped quote: the field goes on past the line end.
    assert records(['t;"a""', 'b";1', "u;2"]) == [(1, 2, 't;"a""\nb";1', None), (3, 3, "u;2", None)]
    assert lc.split_fields('t;"a""\nb";1', ";") == ["t", 'a"\nb', "1"]
    # `"say ""hi"""`: open, text, escaped quote, text, escaped quote, close.
    assert records(['t;"say ""hi""";1', "u;2"]) == [(1, 1, 't;"say ""hi""";1', None), (2, 2, "u;2", None)]
    assert lc.split_fields('t;"say ""hi""";1', ";") == ["t", 'say "hi"', "1"]
    # An empty quoted field `""` opens and closes at once.
    assert records(['t;"";1', "u;2"]) == [(1, 1, 't;"";1', None), (2, 2, "u;2", None)]


def test_stray_quote_inside_an_unquoted_field_is_literal() -> None:
    lines = ["Zeit;temp;load", '2024-01-01 00:00;0"5;0', "2024-01-01 01:00;1;2"]
    assert records(lines) == [(1, 1, lines[0], None), (2, 2, lines[1], None), (3, 3, lines[2], None)]
    assert lc.split_fields(lines[1], ";") == ["2024-01-01 00:00", '0"5', "0"]
    # After a closing quote the rest of the field is text, and quotes in it are literal too.
    assert records(['"a"b"c;1', "d;2"]) == [(1, 1, '"a"b"c;1', None), (2, 2, "d;2", None)]
    # A quote after a blank is not at the field start.
    assert records(['t; "a;b', "u;2"]) == [(1, 1, 't; "a;b', None), (2, 2, "u;2", None)]


def test_the_delimiter_decides_where_a_field_starts() -> None:
    lines = ['a,"b;c', 'd",e']
    # Under ',' the quote opens a field that the quote on line 2 closes: one record.
    assert records(lines, ",") == [(1, 2, 'a,"b;c\nd",e', None)]
    # Under ';' both quotes are inside unquoted fields: two records.
    assert records(lines, ";") == [(1, 1, lines[0], None), (2, 2, lines[1], None)]


def test_a_closing_quote_at_a_line_start_or_after_a_delimiter() -> None:
    # `"a;` opens at the line start and the `;` is text; the quote at the start of line 2 closes.
    assert records(['"a;', '";1', "b;2"]) == [(1, 2, '"a;\n";1', None), (3, 3, "b;2", None)]
    assert lc.split_fields('"a;\n";1', ";") == ["a;\n", "1"]


def test_unterminated_quote_marks_the_last_record() -> None:
    lines = ["h;v", "t;1", 't;"2', "t;3", "t;4"]
    assert records(lines) == [(1, 1, "h;v", None), (2, 2, "t;1", None), (3, 5, 't;"2\nt;3\nt;4', 3)]
    # `"a""` at the end: the doubled quote is escaped, the field is still open.
    assert records(['t;"a""']) == [(1, 1, 't;"a""', 1)]


def test_ends_inside_quotes_looks_back_past_its_first_window() -> None:
    # 15 kB of empty quoted fields after the opening quote: `""` changes nothing, so the state at
    # the end depends on the quote on line 2, far outside the first window.
    body = b'y;""\n' * 3000
    opened = b'x;"a"\nz;"open\n' + body
    assert lc.ends_inside_quotes(opened, len(opened), (";",))
    assert not lc.ends_inside_quotes(opened, len(opened), (",",))  # under ',' the quotes are literal
    closed = opened + b'q"\n'
    assert not lc.ends_inside_quotes(closed, len(closed), (";",))
    assert lc.ends_inside_quotes(closed, len(closed) - 3, (";",))
    assert not lc.ends_inside_quotes(b'x;"a"\n' + body, 6 + len(body), (";",))


# --------------------------------------------------------------------------------------------
# Block cuts
# --------------------------------------------------------------------------------------------


def test_generic_reader_never_cuts_inside_a_quoted_field() -> None:
    data = b'h;v\n1;"a\nb"\n2;3\n'
    reader = lc.BlockReader(lc.open_source(ReadOnly(data)), "utf-8")
    blocks = []
    while (block := reader.next_block(6)) is not None:
        blocks.append((bytes(block.data), block.first_line))
    # The line end at byte 8 lies inside "a\nb": the cut moves to the end of that record (byte 12).
    assert blocks == [(b"h;v\n", 1), (b'1;"a\nb"\n', 2), (b"2;3\n", 4)]


def test_line_reader_reads_on_to_the_closing_quote(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lc, "SAMPLE_BYTES", 2)  # the reader starts with 2 bytes, then reads lines
    data = b'h;v\n1;"a\nb"\n2;3\n' + b"4;5\n" * 30_000  # longer than one read-on piece (64 KiB)
    reader = lc.BlockReader(lc.open_source(data), "utf-8")
    first = reader.next_block(6)
    assert first is not None and first.first_line == 1
    # 6 bytes end inside line 2, whose line end lies inside the quoted field: the block goes on
    # past the closing quote on line 3.
    assert bytes(first.data).startswith(b'h;v\n1;"a\nb"\n') and first.data.endswith(b"\n")
    rest = []
    while (block := reader.next_block(6)) is not None:
        rest.append(bytes(block.data))
    assert bytes(first.data) + b"".join(rest) == data
    assert len(first.data) < len(data) and all(r == b"4;5\n" * (len(r) // 4) for r in rest)


def test_split_rows_cuts_at_record_ends() -> None:
    data = b'1;2\n3;"x\ny"\n5;6\n7;8\n'
    block = lc.Block(data, 10, len(data))
    pieces = [(bytes(p.data), p.first_line) for p in lc.split_rows(block, 1)]
    assert pieces == [(b"1;2\n", 10), (b'3;"x\ny"\n', 11), (b"5;6\n", 13), (b"7;8\n", 14)]


# --------------------------------------------------------------------------------------------
# read_raw
# --------------------------------------------------------------------------------------------


def test_quoted_delimiters_and_line_breaks_are_values() -> None:
    text = ("Zeit;A;B\n"
            '2024-01-01 00:00;"1,5";"x;y"\n'
            '2024-01-01 01:00;"2,5";"multi\n'
            'line; with delimiter"\n'
            "2024-01-01 02:00;3,5;7\n")
    result = load(text)
    source = result.report.sources[0]
    assert (source.delimiter, source.decimal, source.lines_read) == (";", ",", 5)
    assert values(result, "A") == [1.5, 2.5, 3.5]
    assert values(result, "B") == [None, None, 7.0]
    assert result.report.channels["B"].non_numeric_examples == [
        {"line": 2, "column": "B", "raw": "x;y"},
        {"line": 3, "column": "B", "raw": "multi\nline; with delimiter"},
    ]


def test_doubled_quotes_are_unescaped() -> None:
    result = load('Zeit;A;B\n2024-01-01 00:00;1;"say ""hi"""\n2024-01-01 01:00;2;"a""\nb"\n2024-01-01 02:00;3;4\n')
    assert values(result, "A") == [1.0, 2.0, 3.0]
    assert result.report.channels["B"].non_numeric_examples == [
        {"line": 2, "column": "B", "raw": 'say "hi"'},
        {"line": 3, "column": "B", "raw": 'a"\nb'},
    ]
    assert result.report.sources[0].lines_read == 5


def test_stray_quote_mid_field_is_a_literal_character() -> None:
    text = "Zeit;temp;load\n" + "".join(f"{s};{i};{2 * i}\n" for i, s in enumerate(stamps(20)))
    text = text.replace("00:05;5;10", '00:05;5"0;10')
    result = load(text)
    assert result.report.sources[0].delimiter == ";" and list(result.frame.columns) == ["temp", "load"]
    temp = values(result, "temp")
    assert len(temp) == 20 and temp[5] is None and temp[:5] == [0.0, 1.0, 2.0, 3.0, 4.0] and temp[19] == 19.0
    assert values(result, "load") == [2.0 * i for i in range(20)]
    assert result.report.channels["temp"].non_numeric_examples == [{"line": 7, "column": "temp", "raw": '5"0'}]


def test_stray_quote_in_the_head_keeps_delimiter_detection() -> None:
    text = "Zeit;temp;load\n" + "".join(f"{s};{i};{i}\n" for i, s in enumerate(stamps(20)))
    text = text.replace("00:00;0;0", '00:00;0"5;0')
    result = load(text)
    source = result.report.sources[0]
    assert (source.delimiter, source.delimiter_source, source.header_line) == (";", "detected", 1)
    assert result.report.channels["temp"].non_numeric == 1 and len(result.frame) == 20


@pytest.mark.parametrize("bad_lines", ["error", "skip"])
def test_unterminated_quote_at_end_of_file_names_its_line(tmp_path: Path, bad_lines: str) -> None:
    path = tmp_path / "open.csv"
    path.write_text("Zeit;A\n2024-01-01 00:00;1\n2024-01-01 01:00;\"2\n2024-01-01 02:00;3\n", encoding="utf-8")
    with pytest.raises(LoadError) as info:
        read_raw(path, LoadOptions(bad_lines=bad_lines))
    assert info.value.code == "CSV_PARSING_ERROR"
    assert str(path) in info.value.message and "line 3" in info.value.message
    assert info.value.details["line"] == 3 and info.value.details["last_line"] == 4


def _open_quote_in_body() -> bytes:
    # 4000 data lines (the head needs about 1050); the quote on line 3001 is never closed.
    rows = [f"{s};{i}" for i, s in enumerate(stamps(4000))]
    rows[2999] = rows[2999].replace(";", ';"')
    return ("Zeit;A\n" + "\n".join(rows) + "\n").encode("utf-8")


@pytest.mark.parametrize("kind", ["lines", "generic", "utf-16"])
def test_unterminated_quote_in_a_body_block(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    data = _open_quote_in_body()
    monkeypatch.setattr(lc, "SAMPLE_BYTES", 512)
    source: object = {"lines": data, "generic": ReadOnly(data), "utf-16": data.decode().encode("utf-16")}[kind]
    with pytest.raises(LoadError) as info:
        read_raw(source, LoadOptions(bad_lines="skip"), _chunk_rows=37)
    assert info.value.code == "CSV_PARSING_ERROR"
    assert "line 3001" in info.value.message and info.value.details["last_line"] == 4001


def _multiline_csv(n: int = 3000) -> tuple[bytes, int]:
    """Every 25th row has a quoted field over three lines; returns the data and that row count."""
    rows, quoted = [], 0
    for i, s in enumerate(stamps(n)):
        if i % 25 == 3:
            rows.append(f'"{s}";"{i},5";"erste; Zeile\nzweite ""Zeile""\ndritte"')
            quoted += 1
        else:
            rows.append(f"{s};{i},5;{i % 7}")
    return ("Zeit;A;B\n" + "\n".join(rows) + "\n").encode("utf-8"), quoted


@pytest.mark.parametrize("chunk", [7, 37])
def test_chunk_boundaries_inside_quoted_multiline_fields(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    data, quoted = _multiline_csv()
    whole = load(data)
    assert len(whole.frame) == 3000 and whole.report.sources[0].lines_read == 1 + 3000 + 2 * quoted
    assert values(whole, "A") == [i + 0.5 for i in range(3000)]
    b = whole.report.channels["B"]
    assert b.non_numeric == quoted == 120
    # Row 3 is on line 5 (header, rows 0-2); row 28 comes after one 3-line row: line 1 + 28 + 1 + 2 = 32.
    assert [e["line"] for e in b.non_numeric_examples] == [5, 32, 59, 86, 113]
    assert b.non_numeric_examples[0]["raw"] == 'erste; Zeile\nzweite "Zeile"\ndritte'
    monkeypatch.setattr(lc, "SAMPLE_BYTES", 512)
    for source in (data, ReadOnly(data, 333), data.decode().encode("utf-16")):
        small = read_raw(source, LoadOptions(), _chunk_rows=chunk)
        assert small.frame.equals(whole.frame)
        assert small.report.channels["B"].model_dump() == b.model_dump()
        assert small.report.sources[0].lines_read == whole.report.sources[0].lines_read


def test_comma_quote_inside_a_semicolon_file(monkeypatch: pytest.MonkeyPatch) -> None:
    # `x,"y` would open a quoted field under ',' (never closed); under ';' it is text. Blocks are
    # cut where every candidate delimiter agrees, so small blocks give the same result.
    rows = [f"{s};{i};x,\"y" if i % 10 == 0 else f"{s};{i};{i}" for i, s in enumerate(stamps(2000))]
    data = ("Zeit;A;B\n" + "\n".join(rows) + "\n").encode("utf-8")
    whole = load(data)
    assert len(whole.frame) == 2000 and whole.report.channels["B"].non_numeric == 200
    monkeypatch.setattr(lc, "SAMPLE_BYTES", 512)
    for source in (data, ReadOnly(data, 257)):
        small = read_raw(source, LoadOptions(), _chunk_rows=13)
        assert small.frame.equals(whole.frame)
        assert small.report.channels["B"].non_numeric == 200


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

_text = st.text(alphabet='ab1;,\t" \n', max_size=8)
_table = st.lists(st.lists(_text, min_size=1, max_size=4), min_size=1, max_size=12)


def _written(table: list[list[str]], delimiter: str) -> str:
    out = io.StringIO()
    csv.writer(out, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL, lineterminator="\n").writerows(table)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(table=_table, delimiter=st.sampled_from(lc.DELIMITER_CANDIDATES))
def test_records_match_the_csv_module(table: list[list[str]], delimiter: str) -> None:
    text = _written(table, delimiter)
    lines = text.split("\n")[:-1]
    parsed = [lc.split_fields(r.text, delimiter) for r in lc.iter_records(lines, 1, delimiter)]
    assert parsed == list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    assert parsed == table
    assert lc.QuoteRuns.scan(text.encode(), (delimiter,)).open_quote(delimiter) is None


_unquoted = st.text(alphabet='ab1 "', max_size=6).filter(lambda f: not f.startswith('"'))


@settings(max_examples=200, deadline=None)
@given(table=st.lists(st.lists(_unquoted, min_size=2, max_size=4), min_size=1, max_size=10),
       delimiter=st.sampled_from(lc.DELIMITER_CANDIDATES))
def test_quotes_inside_unquoted_fields_are_literal(table: list[list[str]], delimiter: str) -> None:
    lines = [delimiter.join(row) for row in table]
    parsed = [lc.split_fields(r.text, delimiter) for r in lc.iter_records(lines, 1, delimiter)]
    assert parsed == table
    assert parsed == list(csv.reader(io.StringIO("\n".join(lines) + "\n", newline=""), delimiter=delimiter))


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(table=_table, delimiter=st.sampled_from(lc.DELIMITER_CANDIDATES), target=st.integers(1, 40),
       piece=st.integers(1, 50))
def test_reader_blocks_hold_whole_records(monkeypatch: pytest.MonkeyPatch, table: list[list[str]], delimiter: str,
                                          target: int, piece: int) -> None:
    monkeypatch.setattr(lc, "SAMPLE_BYTES", 8)  # small first read: the line reader cuts too
    data = _written(table, delimiter).encode()
    whole = [(r.first, r.last, r.text) for r in lc.iter_records(data.decode().split("\n")[:-1], 1, delimiter)]
    for source in (data, ReadOnly(data, piece)):
        reader = lc.BlockReader(lc.open_source(source), "utf-8")
        got, joined = [], b""
        while (block := reader.next_block(target)) is not None:
            joined += bytes(block.data)
            for sub in lc.split_rows(block, 1):
                lines = bytes(sub.data).decode().split("\n")[:-1]
                parts = list(lc.iter_records(lines, sub.first_line, delimiter))
                assert all(r.open_quote is None for r in parts)
                got += [(r.first, r.last, r.text) for r in parts]
        assert joined == data and got == whole


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet='a;,"\n', max_size=300), window=st.integers(1, 64), data=st.data())
def test_windowed_state_equals_a_full_scan(text: str, window: int, data: st.DataObject) -> None:
    raw = text.encode()
    end = data.draw(st.integers(0, len(raw)))
    for d in lc.DELIMITER_CANDIDATES:
        full = lc.QuoteRuns.scan(raw[:end], (d,))
        expected = bool(full.inside[d].size and full.inside[d][-1])
        assert lc.ends_inside_quotes(raw, end, (d,), window=window) == expected
    every = lc.ends_inside_quotes(raw, end, lc.DELIMITER_CANDIDATES, window=window)
    assert every == any(lc.ends_inside_quotes(raw, end, (d,)) for d in lc.DELIMITER_CANDIDATES)
