"""Canonical CSV import/export (stages.md §0.4): the predecessor's ``;``-separated intermediate format.

The writer produces UTF-8 without BOM, ``\\n`` line ends, the header ``UTC;<channel>;...`` and naive UTC
timestamps (``%Y-%m-%d %H:%M:%S``, or ``%Y-%m-%d %H:%M:%S.%f`` for the whole column when any stamp has a
sub-second part). Values are the shortest round-trip text of a float64 (Python ``repr``) or exactly
``decimals`` decimals; NaN is the empty string. A header field starting with ``=``, ``+``, ``-`` or ``@`` gets a
leading ``'`` (spreadsheet formula injection); numeric cells are never altered.

The reader is strict: it requires ``;`` and the first header ``UTC``, and reports the 1-based physical line and
the column of the first bad cell. Data rows are split by pyarrow's CSV parser (quoting off, one row per line)
and validated and converted column-wise with Arrow kernels, so there is no Python loop over rows.

Decisions where §0.4 leaves room:
- Header fields that hold ``;``, ``"``, ``\\r`` or ``\\n`` are quoted (RFC 4180), and the reader parses the
  header with the same rules. Data cells are never quoted; a ``"`` in a data cell makes it non-numeric.
- Numbers must match ``[+-]?(digits[.digits]|.digits)([eE][+-]?digits)?``; ``inf``, whitespace, ``1_000`` and a
  decimal comma are rejected, and so is a number outside the float64 range (it would become ±inf).
- A UTF-8 BOM and ``\\r\\n`` line ends are accepted on read. Every line, blank ones included, is a row, except
  a single final line end.
- A channel name that itself starts with ``'`` followed by ``=``, ``+``, ``-`` or ``@`` loses that ``'`` on the
  way back, as §0.4 prescribes; such names do not round-trip.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from zeitflow.errors import FrameError, LoadError, ParameterError
from zeitflow.frame import INDEX_NAME, validate_frame
from zeitflow.io.artifacts import write_bytes
from zeitflow.reports import MAX_EXAMPLES, ReportWarning

__all__ = ["NA_TOKENS", "SEPARATOR", "TIME_HEADER", "read_csv", "to_csv_bytes", "write_csv"]

SEPARATOR: Final = ";"
TIME_HEADER: Final = "UTC"
NA_TOKENS: Final = ("", "nan", "NaN", "None", "null")
FORMULA_PREFIXES: Final = ("=", "+", "-", "@")
_BOM: Final = b"\xef\xbb\xbf"
_NEEDS_QUOTES: Final = (SEPARATOR, '"', "\r", "\n")
_NUMBER_RE: Final = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_TIME_RE: Final = r"^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?$"
_NS_PER_US: Final = 1_000
_NS_PER_S: Final = 1_000_000_000
# microsecond bounds of datetime64[ns] (NaT is int64 min)
_US_MIN: Final = -((-(np.iinfo(np.int64).min + 1)) // _NS_PER_US)
_US_MAX: Final = np.iinfo(np.int64).max // _NS_PER_US
_BLOCK_SIZE: Final = 1 << 22
_RAW_SHOWN: Final = 60

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes] | IO[str]
Target = str | os.PathLike[str] | IO[bytes] | IO[str]


# ------------------------------------------------------------------------------------------------
# Export
# ------------------------------------------------------------------------------------------------


def to_csv_bytes(frame: pd.DataFrame, decimals: int | None = None) -> bytes:
    """The canonical CSV of ``frame`` as UTF-8 bytes (§0.4); ``decimals`` fixes the number of decimals."""
    validate_frame(frame, "canonical CSV export")
    digits = _check_decimals(decimals)
    times = _format_times(np.asarray(frame.index.asi8, dtype=np.int64))
    columns = [_format_values(frame[name].to_numpy(dtype=np.float64), digits) for name in frame.columns]
    header = SEPARATOR.join(_header_field(f) for f in [TIME_HEADER, *(_neutralise(str(c)) for c in frame.columns)])
    body = "\n".join(map(SEPARATOR.join, zip(times, *columns, strict=True)))
    return (header + "\n" + (body + "\n" if body else "")).encode("utf-8")


def write_csv(frame: pd.DataFrame, target: Target, decimals: int | None = None) -> None:
    """Write the canonical CSV of ``frame`` to a path (atomically: temporary file, then ``os.replace``) or to
    an open binary or text file object (text objects should be opened with ``newline=""``)."""
    data = to_csv_bytes(frame, decimals)
    if isinstance(target, str | os.PathLike):
        write_bytes(Path(target), data)
    elif isinstance(target, io.TextIOBase):
        target.write(data.decode("utf-8"))
    else:
        target.write(data)  # type: ignore[arg-type]


def _check_decimals(decimals: int | None) -> int | None:
    if decimals is None:
        return None
    if isinstance(decimals, bool) or not isinstance(decimals, int | np.integer):
        message = f"decimals={decimals!r} is not an integer: give an int >= 0 or None (shortest round-trip)"
        raise ParameterError("PARAM_NOT_INTEGER", message,
                             details={"errors": [{"loc": ["decimals"], "code": "PARAM_NOT_INTEGER",
                                                  "message": message}]})
    if decimals < 0:
        message = f"decimals={decimals!r} is out of range: allowed decimals >= 0 (or None: shortest round-trip)"
        raise ParameterError("PARAM_OUT_OF_RANGE", message,
                             details={"errors": [{"loc": ["decimals"], "code": "PARAM_OUT_OF_RANGE",
                                                  "message": message}]})
    return int(decimals)


def _format_times(ns: np.ndarray) -> list[str]:
    """Naive UTC text of the index; microseconds for the whole column when any stamp has a sub-second part."""
    sub_us = np.flatnonzero(ns % _NS_PER_US)
    if sub_us.size:
        stamp = pd.Timestamp(int(ns[sub_us[0]]), unit="ns", tz="UTC").isoformat()
        raise FrameError(
            "INVALID_FRAME",
            f"canonical CSV export: the timestamp {stamp} has a sub-microsecond part, which the CSV format "
            f"(%Y-%m-%d %H:%M:%S.%f) cannot hold; {sub_us.size} timestamp(s) are affected",
            details={"frame": "canonical CSV export", "rule": "csv_sub_microsecond", "timestamp": stamp,
                     "count": int(sub_us.size)},
        )
    unit = "us" if np.any(ns % _NS_PER_S) else "s"
    text = np.ascontiguousarray(np.datetime_as_string(ns.view("datetime64[ns]"), unit=unit))
    if text.size:  # 'YYYY-MM-DDTHH:MM:SS' → 'YYYY-MM-DD HH:MM:SS': overwrite the code point at position 10
        text.view(np.uint32).reshape(text.size, -1)[:, 10] = ord(" ")
    return text.tolist()


def _format_values(values: np.ndarray, digits: int | None) -> np.ndarray:
    """Cell texts of one channel: ``repr`` (shortest round trip) or fixed decimals; NaN → empty string.

    Each distinct bit pattern is formatted once (measured data repeat values a lot); bit patterns rather than
    values, so that -0.0 keeps its sign."""
    bits, inverse = np.unique(values.view(np.int64), return_inverse=True)
    fmt = float.__repr__ if digits is None else f"{{:.{digits}f}}".format
    texts = np.array(list(map(fmt, bits.view(np.float64).tolist())), dtype=object)
    texts[np.isnan(bits.view(np.float64))] = ""
    return texts[inverse.reshape(-1)]


def _neutralise(name: str) -> str:
    """Prefix a header starting with ``=``, ``+``, ``-`` or ``@`` with ``'`` (formula injection)."""
    return "'" + name if name.startswith(FORMULA_PREFIXES) else name


def _header_field(name: str) -> str:
    if any(ch in name for ch in _NEEDS_QUOTES):
        return '"' + name.replace('"', '""') + '"'
    return name


def _error(code: str, source: str, message: str, **details: Any) -> LoadError:
    return LoadError(code, f"{source}: {message}", details={"source": source, **details})


def read_csv(source: Source) -> tuple[pd.DataFrame, list[ReportWarning]]:
    """Read a canonical CSV strictly (§0.4) into a canonical frame, with its warnings (``UNSORTED_INPUT``).

    ``source`` is a path, bytes, or an open binary or text file object. Errors are ``LoadError``:
    ``CSV_PARSING_ERROR`` (naming the line and column), ``DUPLICATE_TIMESTAMPS``, ``ENCODING_ERROR`` and
    ``SOURCE_NOT_FOUND``."""
    name, data = _read_source(source)
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    _check_utf8(name, data)
    channels, header_lines, body = _parse_header(name, data)
    table = _split_rows(name, body, len(channels) + 1, header_lines)
    first_line = header_lines + 1
    ns, time_error = _parse_times(table.column(0), first_line)
    values: list[np.ndarray] = []
    errors = [] if time_error is None else [time_error]
    for j, channel in enumerate(channels, start=1):
        column, error = _parse_values(table.column(j), channel, j, first_line)
        values.append(column)
        if error is not None:
            errors.append(error)
    if errors:
        _, _, message, details = min(errors, key=lambda e: (e[0], e[1]))
        raise _error("CSV_PARSING_ERROR", name, message, **details)
    ns, values, warnings = _order_rows(name, ns, values, first_line)
    index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name=INDEX_NAME).as_unit("ns")
    frame = pd.DataFrame(dict(zip(channels, values, strict=True)), index=index)
    validate_frame(frame, name)
    return frame, warnings


def _read_source(source: Source) -> tuple[str, bytes]:
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        try:
            return str(path), path.read_bytes()
        except FileNotFoundError:
            raise _error("SOURCE_NOT_FOUND", str(path), "the file does not exist") from None
        except IsADirectoryError:
            raise _error("SOURCE_NOT_FOUND", str(path), "is a directory, not a file") from None
        except OSError as exc:
            raise _error("SOURCE_NOT_FOUND", str(path), f"cannot be opened: {exc.strerror}") from None
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>", bytes(source)
    content = source.read()
    name = str(getattr(source, "name", "<stream>"))
    return name, content.encode("utf-8") if isinstance(content, str) else bytes(content)


def _check_utf8(name: str, data: bytes) -> None:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _error("ENCODING_ERROR", name, f"line {line}: the canonical CSV must be UTF-8 ({exc.reason} at "
                     f"byte {exc.start})", line=line, byte=int(exc.start)) from None


def _header_end(data: bytes) -> int:
    """Offset of the ``\\n`` that ends the header record (quotes respected), or ``len(data)``."""
    start, quotes = 0, 0
    pos = data.find(b"\n")
    while pos != -1:
        quotes += data.count(b'"', start, pos)
        if quotes % 2 == 0:
            return pos
        start, pos = pos, data.find(b"\n", pos + 1)
    return len(data)


def _parse_header(name: str, data: bytes) -> tuple[list[str], int, bytes]:
    """(channel names, physical lines of the header, data rows) after checking ``UTC`` and ``;``."""
    end = _header_end(data)
    text = data[:end].decode("utf-8")
    text = text[:-1] if text.endswith("\r") else text
    if not text:
        raise _error("CSV_PARSING_ERROR", name, "line 1: the file is empty; expected the header 'UTC;<channel>;...'",
                     line=1, column=TIME_HEADER)
    try:
        fields = next(csv.reader(io.StringIO(text, newline=""), delimiter=SEPARATOR, quotechar='"', strict=True))
    except csv.Error as exc:
        raise _error("CSV_PARSING_ERROR", name, f"line 1: the header cannot be parsed: {exc}", line=1) from None
    if fields[0] != TIME_HEADER:
        raise _error("CSV_PARSING_ERROR", name, f"line 1: the first header field must be exactly 'UTC' with the "
                     f"delimiter ';', found {_shown(fields[0])}", line=1, column=1, raw=fields[0][:_RAW_SHOWN])
    if len(fields) < 2:
        raise _error("CSV_PARSING_ERROR", name, "line 1: the header has no channel column after 'UTC' (the "
                     "delimiter must be ';')", line=1)
    channels = [f[1:] if f.startswith("'") and f[1:2] in FORMULA_PREFIXES else f for f in fields[1:]]
    seen: set[str] = set()
    for j, channel in enumerate(channels, start=2):
        if not channel:
            raise _error("CSV_PARSING_ERROR", name, f"line 1, field {j}: the channel name is empty", line=1,
                         column=j)
        if channel in seen:
            raise _error("CSV_PARSING_ERROR", name, f"line 1, field {j}: duplicate channel name {channel!r}",
                         line=1, column=channel)
        seen.add(channel)
    return channels, text.count("\n") + 1, data[end + 1:]


def _split_rows(name: str, body: bytes, k: int, header_lines: int) -> pa.Table:
    """All data rows as ``k`` string columns; a row is one physical line and must have exactly ``k`` fields."""
    names = [f"f{i}" for i in range(k)]
    if not body:
        return pa.table({n: pa.array([], pa.string()) for n in names})
    try:
        return pacsv.read_csv(
            io.BytesIO(body),
            read_options=pacsv.ReadOptions(column_names=names, block_size=_BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(delimiter=SEPARATOR, quote_char=False, double_quote=False,
                                             escape_char=False, newlines_in_values=False, ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()), null_values=[],
                                                 strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except pa.ArrowInvalid as exc:
        raise _field_count_error(name, body, k, header_lines, exc) from None


def _field_count_error(name: str, body: bytes, k: int, header_lines: int, exc: Exception) -> LoadError:
    """Locate the first row whose field count is not ``k`` (error path only, so a plain scan)."""
    lines = body.decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for i, line in enumerate(lines):
        found = line.rstrip("\r").count(SEPARATOR) + 1
        if found != k:
            number = header_lines + 1 + i
            return _error("CSV_PARSING_ERROR", name, f"line {number}: expected {k} fields (UTC and {k - 1} "
                          f"channel(s)), found {found}", line=number, expected=k, found=found)
    return _error("CSV_PARSING_ERROR", name, f"the data rows cannot be parsed: {exc}")


def _first_false(mask: pa.ChunkedArray | pa.Array) -> int | None:
    if pc.all(mask).as_py() is not False:
        return None
    return int(np.flatnonzero(~np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))[0])


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= _RAW_SHOWN else raw[:_RAW_SHOWN] + "…")


_Problem = tuple[int, int, str, dict[str, Any]]


def _problem(row: int, field: int, column: str, first_line: int, raw: str, what: str) -> _Problem:
    line = first_line + row
    return row, field, f"line {line}, column {column!r}: {_shown(raw)} {what}", {
        "line": line, "column": column, "field": field + 1, "raw": raw[:_RAW_SHOWN]}


def _parse_times(column: pa.ChunkedArray, first_line: int) -> tuple[np.ndarray, _Problem | None]:
    """int64 ns of the ``UTC`` column (both formats), and the first bad cell, if any."""
    if len(column) == 0:
        return np.empty(0, dtype=np.int64), None
    shaped = pc.match_substring_regex(column, _TIME_RE)
    raw = column.to_numpy(zero_copy_only=False)
    parsed = pd.DatetimeIndex(pd.to_datetime(raw, format="ISO8601", errors="coerce", utc=True))
    us = np.asarray(parsed.as_unit("us").asi8, dtype=np.int64)
    ok = np.asarray(shaped.to_numpy(zero_copy_only=False), dtype=bool) & ~np.asarray(parsed.isna())
    ok &= (us >= _US_MIN) & (us <= _US_MAX)
    bad = np.flatnonzero(~ok)
    if bad.size:
        i = int(bad[0])
        problem = _problem(i, 0, TIME_HEADER, first_line, str(raw[i]),
                           "is not a timestamp %Y-%m-%d %H:%M:%S[.%f] between 1677-09-22 and 2262-04-11")
        return np.zeros(us.size, dtype=np.int64), problem
    return us * _NS_PER_US, None


_NA_SET: Final = pa.array(NA_TOKENS, pa.string())


def _parse_values(column: pa.ChunkedArray, channel: str, field: int, first_line: int,
                  ) -> tuple[np.ndarray, _Problem | None]:
    """float64 values of one channel column (missing tokens → NaN), and the first bad cell, if any."""
    if len(column) == 0:
        return np.empty(0, dtype=np.float64), None
    missing = pc.is_in(column, value_set=_NA_SET)
    bad = _first_false(pc.or_(missing, pc.match_substring_regex(column, _NUMBER_RE)))
    if bad is not None:
        raw = column[bad].as_py()
        return np.empty(0), _problem(bad, field, channel, first_line, raw, "is not a number (empty, nan, NaN, None "
                                     "and null mean missing)")
    numbers = pc.cast(pc.if_else(missing, pa.scalar(None, pa.string()), column), pa.float64())
    values = np.asarray(pc.fill_null(numbers, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
    inf = np.flatnonzero(np.isinf(values))
    if inf.size:
        i = int(inf[0])
        return values, _problem(i, field, channel, first_line, column[i].as_py(), "is outside the float64 range")
    return values, None


def _order_rows(name: str, ns: np.ndarray, values: list[np.ndarray], first_line: int,
                ) -> tuple[np.ndarray, list[np.ndarray], list[ReportWarning]]:
    """Raise on duplicate timestamps; sort unsorted rows stably and warn ``UNSORTED_INPUT``."""
    if ns.size < 2 or bool(np.all(ns[1:] > ns[:-1])):
        return ns, values, []
    order = np.argsort(ns, kind="stable")
    ordered = ns[order]
    dup = np.flatnonzero(ordered[1:] == ordered[:-1])
    if dup.size:
        stamps = list(dict.fromkeys(_iso(int(t)) for t in ordered[dup[: 10 * MAX_EXAMPLES]]))[:MAX_EXAMPLES]
        a, b = sorted((int(order[dup[0]]) + first_line, int(order[dup[0] + 1]) + first_line))
        raise _error(
            "DUPLICATE_TIMESTAMPS", name,
            f"{dup.size} row(s) repeat an earlier timestamp; the first is {stamps[0]} at lines {a} and {b}",
            count=int(dup.size), timestamps=stamps, lines=[a, b],
        )
    late = np.flatnonzero(ns[1:] < ns[:-1]) + 1
    examples = [{"line": int(i) + first_line, "timestamp": _iso(int(ns[i]))} for i in late[:MAX_EXAMPLES]]
    warning = ReportWarning(
        code="UNSORTED_INPUT",
        message=f"{name}: {late.size} row(s) were earlier than the row before them; the rows were sorted by time",
        count=int(late.size), examples=examples,
    )
    return ordered, [v[order] for v in values], [warning]


def _iso(ns: int) -> str:
    return pd.Timestamp(ns, unit="ns", tz="UTC").isoformat()
