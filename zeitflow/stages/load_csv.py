"""Raw text reading for the load stage (stages.md §1.4, §1.8).

Sources are opened, decoded strictly under one encoding and cut into line-aligned UTF-8 blocks.
The layout (delimiter, header, metadata lines, decimal separator) is detected on the head only;
the body is then converted block by block to float64 value arrays plus the stripped time texts
and the 1-based physical line number of every data row. The fast path hands a whole block to
``pyarrow.csv`` with typed columns; any block that the fast path cannot read exactly (blank or
bad lines, non-numeric cells, quoted line breaks) is re-read by a slower path that keeps exact
line numbers, so results never depend on which path or which block size was used.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import io
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from zeitflow.errors import LoadError, StorageError
from zeitflow.reports import MAX_EXAMPLES

SAMPLE_BYTES = 1 << 20  # encoding sample and head block size (§1.4 step 1)
DELIMITER_SAMPLE_LINES = 50  # §1.4 step 3
DATA_SAMPLE_ROWS = 1000  # §1.4 step 7, §1.5
TEXT_LIMIT = 200  # metadata and bad-line examples are truncated to this many characters
ARROW_BLOCK = 1 << 20
_COUNT_SLICE = 1 << 20  # bytes compared at a time when counting line ends
DELIMITER_CANDIDATES = (";", "\t", ",")
WHITESPACE = " \t\r\n\x0b\x0c"  # what makes a line blank (§1.4 step 2)

_EXP = r"(?:[eE][+-]?\d+)?"
NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)" + _EXP  # signed decimal number, optional exponent (unambiguous:
# no catastrophic backtracking on long digit runs)
COMMA_DECIMAL = r"[+-]?(?:\d+|\d{1,3}(?:\.\d{3})+),\d+" + _EXP  # §1.4 step 7, C
GROUPED_COMMA_DECIMAL = r"[+-]?\d{1,3}(?:\.\d{3})+,\d+" + _EXP  # C with grouping points
POINT_DECIMAL = r"[+-]?\d+\.\d+" + _EXP  # §1.4 step 7, P
_NUMBER_RE = re.compile(NUMBER, re.ASCII)
_COMMA_RE = re.compile(COMMA_DECIMAL, re.ASCII)
_POINT_RE = re.compile(POINT_DECIMAL, re.ASCII)

SourceLike = Any  # str | os.PathLike | bytes | bytearray | memoryview | IO[bytes]


def lines_text(first: int, last: int) -> str:
    """``line 3`` or ``lines 3-7``."""
    return f"line {first}" if first == last else f"lines {first}-{last}"


def load_error(code: str, message: str, *, source: str, hint: str | None = None, **details: Any) -> LoadError:
    """A ``LoadError`` whose message starts with the source name and whose details carry it."""
    return LoadError(code, f"{source}: {message}", details={"source": source, **details}, hint=hint)


def is_numeric_text(text: str) -> bool:
    """True if ``text`` parses as a number under either decimal convention (§1.4 step 4)."""
    if _NUMBER_RE.fullmatch(text) or _COMMA_RE.fullmatch(text):
        return True
    return text.count(",") == 1 and "." not in text and _NUMBER_RE.fullmatch(text.replace(",", ".")) is not None


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass
class OpenedSource:
    """An open binary handle with the name used in messages and, when known, its size."""

    name: str
    handle: IO[bytes]
    size: int | None
    owned: bool

    def read(self, n: int) -> bytes:
        """Read up to ``n`` bytes; I/O failures become ``StorageError`` READ_FAILED."""
        try:
            data = self.handle.read(n)
        except OSError as exc:
            raise StorageError("READ_FAILED", f"{self.name}: cannot read: {exc}",
                               details={"source": self.name}) from exc
        if isinstance(data, str):
            raise TypeError(f"{self.name}: a binary file object is required, got a text stream")
        return bytes(data) if data is not None else b""

    @property
    def can_readline(self) -> bool:
        """True if the handle reads one line at a time."""
        return callable(getattr(self.handle, "readline", None))

    def read_into(self, view: memoryview) -> int:
        """Fill ``view`` from the source (fewer bytes only at the end); returns the bytes read."""
        readinto = getattr(self.handle, "readinto", None)
        total = 0
        try:
            while total < len(view):
                if readinto is not None:
                    n = readinto(view[total:]) or 0
                else:
                    chunk = self.handle.read(len(view) - total)
                    if isinstance(chunk, str):
                        raise TypeError(f"{self.name}: a binary file object is required, got a text stream")
                    n = len(chunk) if chunk else 0
                    view[total: total + n] = chunk or b""
                if n == 0:
                    break
                total += n
        except OSError as exc:
            raise StorageError("READ_FAILED", f"{self.name}: cannot read: {exc}",
                               details={"source": self.name}) from exc
        return total

    def readline(self) -> bytes:
        """The rest of the current line (up to and including ``\\n``); b"" at the end."""
        try:
            data = self.handle.readline()
        except OSError as exc:
            raise StorageError("READ_FAILED", f"{self.name}: cannot read: {exc}",
                               details={"source": self.name}) from exc
        return bytes(data) if data else b""

    def close(self) -> None:
        """Close the handle if this object opened it."""
        if self.owned:
            with contextlib.suppress(OSError):
                self.handle.close()


def describe_source(source: SourceLike) -> str:
    """The name of a source as used in messages: path, URL, ``<bytes>`` or the stream's name."""
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    if isinstance(source, str | os.PathLike):
        return os.fspath(source)
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, str | os.PathLike) else "<stream>"


def open_source(source: SourceLike) -> OpenedSource:
    """Open a path, fsspec URL, bytes object or binary file object for reading."""
    name = describe_source(source)
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        return OpenedSource(name, io.BytesIO(data), len(data), True)
    if isinstance(source, str) and "://" in source:
        return _open_url(source)
    if isinstance(source, str | os.PathLike):
        path = Path(os.fspath(source))
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by OpenedSource.close
        except FileNotFoundError:
            raise load_error("SOURCE_NOT_FOUND", "the file does not exist", source=name) from None
        except IsADirectoryError:
            raise load_error("SOURCE_NOT_FOUND", "is a directory, not a file", source=name) from None
        except PermissionError as exc:
            raise load_error("SOURCE_NOT_FOUND", f"cannot be opened: {exc.strerror}", source=name) from None
        except OSError as exc:
            raise StorageError("READ_FAILED", f"{name}: cannot open: {exc}", details={"source": name}) from exc
        try:
            size: int | None = os.fstat(handle.fileno()).st_size
        except OSError:
            size = None
        return OpenedSource(name, handle, size, True)
    if hasattr(source, "read"):
        return OpenedSource(name, source, None, False)
    raise TypeError(
        f"unsupported source type {type(source).__name__}: give a path, URL, bytes or a binary file object"
    )


def _open_url(url: str) -> OpenedSource:
    import fsspec  # imported lazily: only URLs need it

    try:
        opened = fsspec.open(url, "rb")
        handle = opened.open()
    except FileNotFoundError:
        raise load_error("SOURCE_NOT_FOUND", "the object does not exist", source=url) from None
    except (ValueError, ImportError) as exc:
        raise load_error("SOURCE_NOT_FOUND", f"cannot be opened: {exc}", source=url) from None
    except OSError as exc:
        raise StorageError("READ_FAILED", f"{url}: cannot open: {exc}", details={"source": url}) from exc
    try:
        size: int | None = int(opened.fs.size(opened.path))
    except Exception:  # noqa: BLE001 - the size only feeds progress events
        size = None
    return OpenedSource(url, handle, size, True)


# --------------------------------------------------------------------------------------------
# Quoting (§1.4 step 2): one state machine for block cuts, line counts and records
# --------------------------------------------------------------------------------------------
#
# RFC 4180 as the pandas C parser, Python's csv module and pyarrow read it: a double quote opens a
# quoted field only at the start of a field (at a line start or right after the delimiter);
# anywhere else it is a literal character. Inside a quoted field a doubled quote is an escaped
# quote and a single one closes the field (what follows it up to the delimiter is kept).
#
# Only the maximal runs of quotes matter, so the machine works on runs, not characters. A run
# of length n moves the one bit of state "inside a quoted field" as follows:
#   - n even: nothing changes (escaped quotes, an empty quoted field, or literal quotes);
#   - n odd at a field start (line start or delimiter before it): the bit toggles (opens a field,
#     or closes one whose text ends with a delimiter or line break);
#   - n odd elsewhere: the bit becomes "outside" (closes a field, or literal quotes).
# The state after a run is therefore the parity of the toggling runs since the last resetting
# run, which numpy computes for all runs at once.

_DQUOTE: Final = 0x22
_LF: Final = 0x0A


def _field_start_table(delimiter: str) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[[_LF, 0x0D, ord(delimiter)]] = True
    table.flags.writeable = False
    return table


_FIELD_START: Final = {d: _field_start_table(d) for d in DELIMITER_CANDIDATES}


@dataclass
class QuoteRuns:
    """The quote runs of ``data[lo:hi]`` and, per delimiter, the state after each run.

    ``inside[d][j]`` is True if the text right after run ``j`` is inside a quoted field under
    delimiter ``d``, for a text whose state at ``lo`` is outside a quoted field (``lo`` is a record
    start, or any point for ``settled``). ``settled[d]`` is True if some run resets the state, so
    that the state at ``hi`` does not depend on the state at ``lo``. Positions are absolute.
    """

    starts: np.ndarray  # int64 position of the first quote of each run
    inside: dict[str, np.ndarray]
    settled: dict[str, bool]
    opener: dict[str, int]  # index of the run that opened the field still open at ``hi`` (-1: none)

    @classmethod
    def scan(cls, data: bytes | bytearray, delimiters: Sequence[str], lo: int = 0, hi: int | None = None) -> QuoteRuns:
        """Run the machine over ``data[lo:hi]``; ``data[lo]`` must not continue a run that starts
        before ``lo``. The byte before ``lo`` (a line start at 0) decides whether a run at ``lo``
        starts a field."""
        hi = len(data) if hi is None else hi
        view = np.frombuffer(data, dtype=np.uint8, count=hi - lo, offset=lo) if hi > lo else np.empty(0, np.uint8)
        q = np.flatnonzero(view == _DQUOTE)
        if q.size == 0:
            del view
            empty = np.empty(0, dtype=bool)
            return cls(q.astype(np.int64) + lo, dict.fromkeys(delimiters, empty), dict.fromkeys(delimiters, False),
                       dict.fromkeys(delimiters, -1))
        first = np.empty(q.size, dtype=bool)
        first[0] = True
        np.not_equal(q[1:], q[:-1] + 1, out=first[1:])
        run_index = np.flatnonzero(first)
        starts = q[run_index]
        odd = (np.diff(np.append(run_index, q.size)) & 1).astype(bool)
        before = np.empty(starts.size, dtype=np.uint8)
        before[starts > 0] = view[starts[starts > 0] - 1]
        if starts[0] == 0:
            before[0] = data[lo - 1] if lo > 0 else _LF
        del view, q, first, run_index
        order = np.arange(starts.size)
        inside: dict[str, np.ndarray] = {}
        settled: dict[str, bool] = {}
        opener: dict[str, int] = {}
        for d in delimiters:
            table = _FIELD_START.get(d)
            at_start = (table if table is not None else _field_start_table(d))[before]
            toggles = np.cumsum(at_start & odd)
            last_reset = np.maximum.accumulate(np.where(odd & ~at_start, order, -1))
            since = toggles - np.where(last_reset >= 0, toggles[np.maximum(last_reset, 0)], 0)
            state = (since & 1).astype(bool)
            inside[d] = state
            settled[d] = bool(last_reset[-1] >= 0)
            opener[d] = -1
            if state[-1]:  # the field is open at hi: it opened at the last run that entered it
                entered = state & ~np.concatenate(([False], state[:-1]))
                opener[d] = int(np.flatnonzero(entered)[-1])
        return cls(starts.astype(np.int64) + lo, inside, settled, opener)

    def inside_at(self, positions: np.ndarray, delimiter: str) -> np.ndarray:
        """Per position (never inside a run, e.g. a line end): inside a quoted field?"""
        index = np.searchsorted(self.starts, positions) - 1
        state = self.inside[delimiter]
        if state.size == 0:
            return np.zeros(len(positions), dtype=bool)
        return (index >= 0) & state[np.maximum(index, 0)]

    def outside_at(self, positions: np.ndarray) -> np.ndarray:
        """Per position: outside a quoted field under every delimiter scanned (a record end)."""
        out = np.ones(len(positions), dtype=bool)
        for d in self.inside:
            out &= ~self.inside_at(positions, d)
        return out

    def open_quote(self, delimiter: str) -> int | None:
        """Position of the quote that opened the field still open at the end, or None."""
        run = self.opener[delimiter]
        return int(self.starts[run]) if run >= 0 else None


def ends_inside_quotes(data: bytes | bytearray, end: int, delimiters: Sequence[str] = DELIMITER_CANDIDATES,
                       *, window: int = 1 << 12) -> bool:
    """True if ``data[:end]``, read from a record start, ends inside a quoted field under one of
    ``delimiters``. Only the text back to the last resetting quote run (normally the closing
    quote of the last quoted field) is scanned."""
    last = data.rfind(b'"', 0, end)
    if last < 0:
        return False
    hi = last + 1  # the state at ``end`` is the state after the last run
    width = window
    while True:
        lo = max(hi - width, 0)
        while lo > 0 and data[lo - 1] == _DQUOTE:  # never start inside a run
            lo -= 1
        runs = QuoteRuns.scan(data, delimiters, lo, hi)
        if lo == 0 or all(runs.settled.values()):
            return any(bool(s[-1]) for s in runs.inside.values() if s.size)
        width *= 8


def record_ends(data: bytes | bytearray, delimiters: Sequence[str] = DELIMITER_CANDIDATES) -> np.ndarray:
    """Positions of the ``\\n`` bytes of ``data`` (read from a record start) that end a record
    under every one of ``delimiters``: a cut there is a record boundary whichever of them the
    source uses."""
    view = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(view == _LF)
    del view
    if data.find(b'"') < 0:
        return ends
    return ends[QuoteRuns.scan(data, delimiters).outside_at(ends)]


def unclosed_quote_error(source: str, line: int, last: int) -> LoadError:
    """CSV_PARSING_ERROR for a quoted field that the end of the file leaves open."""
    return load_error(
        "CSV_PARSING_ERROR",
        f"line {line}: the quoted field opened on line {line} is not closed before the end of the file "
        f"(line {last})",
        source=source, line=line, last_line=last,
        hint='a field that starts with a double quote must end with one; write a quote inside a quoted '
        'field as two quotes ("")',
    )


# --------------------------------------------------------------------------------------------
# Decoding and line-aligned blocks (§1.4 step 1)
# --------------------------------------------------------------------------------------------

_BOMS = ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def _ascii_compatible(codec: str) -> bool:
    """True if the codec maps every ASCII byte to itself and never uses 0x0A inside a character."""
    if codec.startswith(("utf_16", "utf_32", "utf_7", "iso2022", "hz")):
        return False
    ascii_bytes = bytes(range(128))
    try:
        return ascii_bytes.decode(codec) == ascii_bytes.decode("ascii")
    except (UnicodeDecodeError, LookupError):
        return False


def detect_encoding(sample: bytes, option: str) -> tuple[str, str, int]:
    """``(encoding, encoding_source, bom_length)`` for the first bytes of a source."""
    if option != "auto":
        codec = codecs.lookup(option).name
        if codec == "utf-8" and sample.startswith(codecs.BOM_UTF8):
            return option, "option", len(codecs.BOM_UTF8)
        return option, "option", 0
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding, "bom", len(bom)
    try:
        codecs.getincrementaldecoder("utf-8")("strict").decode(sample, final=False)
        return "utf-8", "detected", 0
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252", "detected", 0
    except UnicodeDecodeError:
        return "latin-1", "detected", 0


def count_lines(data: bytes | bytearray) -> int:
    """Physical lines in ``data``: line ends ``\\n``, ``\\r\\n`` or ``\\r``, plus an unterminated last line."""
    if not data:
        return 0
    if len(data) < _COUNT_SLICE:
        n = data.count(b"\n")
    else:  # numpy counts a byte about three times faster than bytes.count, in cache-sized slices
        view = np.frombuffer(data, dtype=np.uint8)
        n = sum(int(np.count_nonzero(view[i: i + _COUNT_SLICE] == 10)) for i in range(0, view.size, _COUNT_SLICE))
        del view
    if b"\r" in data:
        n += data.count(b"\r") - data.count(b"\r\n")
    if not data.endswith((b"\n", b"\r")):
        n += 1
    return n


@dataclass
class Block:
    """Line-aligned UTF-8 text; ``first_line`` is the 1-based physical line of its first line."""

    data: bytes | bytearray
    first_line: int
    raw_end: int  # raw bytes of the source consumed up to the end of this block
    lines: int = -1  # physical lines in ``data`` (-1: not counted yet)

    def line_count(self) -> int:
        """Physical lines in the block (counted once)."""
        if self.lines < 0:
            self.lines = count_lines(self.data)
        return self.lines


class BlockReader:
    """Cuts a source into line-aligned UTF-8 blocks under one strictly applied encoding."""

    def __init__(self, src: OpenedSource, encoding_option: str) -> None:
        self.src = src
        self.name = src.name
        head = self._read_raw(SAMPLE_BYTES)
        self.encoding, self.encoding_source, bom = detect_encoding(head, encoding_option)
        self.codec = codecs.lookup(self.encoding).name
        self._passthrough = _ascii_compatible(self.codec)
        self._decoder = None if self._passthrough else codecs.getincrementaldecoder(self.codec)("strict")
        self._buf = b""
        self._buf_raw = bom  # raw offset of _buf[0] (pass-through mode)
        self._raw_pos = bom  # raw bytes handed to the buffer so far
        self._line = 1
        self._eof = False
        self._first_text = True
        self._spare: bytearray | None = None  # the last block's buffer (pass-through mode)
        self._append(head[bom:])
        self._check_nul(head[bom:])

    # -- raw input -----------------------------------------------------------------------------

    def _read_raw(self, n: int) -> bytes:
        parts: list[bytes] = []
        got = 0
        while got < n:
            chunk = self.src.read(n - got)
            if not chunk:
                self._eof = True
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def _append(self, raw: bytes) -> None:
        start = self._raw_pos
        self._raw_pos += len(raw)
        if self._passthrough:
            self._buf += raw
            return
        assert self._decoder is not None
        pending = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(raw, final=self._eof)
        except UnicodeDecodeError as exc:
            data = bytes(pending) + raw
            offset = start - len(pending) + exc.start
            prefix = data[: exc.start].decode(self.codec, errors="ignore")
            line = self._line + self._buf.count(b"\n") + prefix.count("\n")
            raise self._encoding_error(offset, line, data[exc.start: exc.end]) from None
        if self._first_text and text:
            text = text.removeprefix("\ufeff")
            self._first_text = False
        self._buf += text.encode("utf-8")

    def _check_nul(self, sample: bytes) -> None:
        if self._passthrough:
            index = sample.find(b"\x00")
            text_before = sample[:index] if index >= 0 else b""
        else:
            index = self._buf.find(b"\x00")
            text_before = self._buf[:index] if index >= 0 else b""
        if index >= 0:
            line = text_before.count(b"\n") + 1
            packed = next((kind for magic, kind in _ARCHIVE_MAGIC if sample.startswith(magic)), None)
            if packed is not None:
                raise load_error(
                    "ENCODING_ERROR",
                    f"line {line}: the text contains NUL characters: the file is {packed}-compressed, not text",
                    source=self.name, line=line, encoding=self.encoding,
                    hint=f"decompress it first (load reads plain text files); it starts with the {packed} signature",
                )
            raise load_error(
                "ENCODING_ERROR",
                f"line {line}: the text contains NUL characters under encoding {self.encoding!r}; it looks like "
                "UTF-16 without BOM; set encoding",
                source=self.name, line=line, encoding=self.encoding,
                hint="set encoding='utf-16-le' (or 'utf-16-be') for UTF-16 files without byte-order mark",
            )

    def _encoding_error(self, offset: int, line: int, raw: bytes) -> LoadError:
        return load_error(
            "ENCODING_ERROR",
            f"line {line}, byte offset {offset}: bytes {raw[:8]!r} cannot be decoded as {self.encoding!r}",
            source=self.name, line=line, byte_offset=offset, encoding=self.encoding,
            hint="set encoding to the file's real encoding, e.g. 'cp1252' or 'latin-1'",
        )

    # -- blocks --------------------------------------------------------------------------------

    def _find_cut(self, target: int) -> int | None:
        """End of the last line before ``target`` (else the first after it) that ends a record
        under every candidate delimiter (the delimiter is not known yet when the head is read)."""
        buf = self._buf
        if not buf:
            return None
        limit = min(len(buf), max(target, 1))
        pos = buf.rfind(b"\n", 0, limit)
        if pos < 0:
            pos = buf.find(b"\n", limit)
        if pos < 0:
            return None
        if buf.find(b'"', 0, pos) < 0 or not ends_inside_quotes(buf, pos):
            return pos + 1
        ends = record_ends(buf)  # the line end lies inside a quoted field: look for another one
        before = int(np.searchsorted(ends, pos)) - 1
        if before >= 0:
            return int(ends[before]) + 1
        return int(ends[0]) + 1 if ends.size else None

    def next_block(self, target: int) -> Block | None:
        """The next block of about ``target`` bytes ending at a line end, or None at the end."""
        if self._passthrough and self.src.can_readline:
            return self._next_by_lines(target)
        while True:
            if not self._eof and len(self._buf) < target:
                self._append(self._read_raw(max(target - len(self._buf), 1 << 16)))
                continue
            cut = self._find_cut(target)
            if cut is None:
                if self._eof:
                    if not self._buf:
                        return None
                    cut = len(self._buf)
                else:
                    self._append(self._read_raw(max(len(self._buf), 1 << 16)))
                    continue
            break
        data, self._buf = self._buf[:cut], self._buf[cut:]
        raw_start = self._buf_raw
        if self._passthrough:
            data = self._validate(data, raw_start)
            self._buf_raw += cut
            raw_end = self._buf_raw
        else:
            raw_end = self._raw_pos - (len(self._buf) if not self._eof else 0)
        first = self._line
        block = Block(data, first, raw_end)
        self._line += block.line_count()
        return block

    def _next_by_lines(self, target: int) -> Block | None:
        """Pass-through mode: read about ``target`` bytes into one buffer, then whole lines up to a
        line end outside quoted fields under every candidate delimiter (no further copy of the block)."""
        leftover = self._buf
        self._buf = b""
        want = 0 if self._eof else max(target - len(leftover), 0)
        data = self._buffer(len(leftover) + want)
        data[: len(leftover)] = leftover
        if want:
            got = self.src.read_into(memoryview(data)[len(leftover):])
            self._raw_pos += got
            if got < want:
                self._eof = True
                del data[len(leftover) + got:]
        while data and not self._eof:
            if data.endswith(b"\n"):
                if b'"' not in data or not ends_inside_quotes(data, len(data)):
                    break
                # inside a quoted field: read on in pieces (a long field, or one never closed)
                tail = self.src.read(max(1 << 16, len(data) // 4))
            else:
                tail = self.src.readline()
            if not tail:
                self._eof = True
                break
            self._raw_pos += len(tail)
            data += tail
        if not data:
            return None
        raw_start = self._buf_raw
        self._buf_raw += len(data)
        block = Block(self._validate(data, raw_start), self._line, self._buf_raw)
        self._line += block.line_count()
        self._spare = data
        return block

    def _buffer(self, size: int) -> bytearray:
        """``size`` bytes to read into: the last block's buffer once nothing else refers to it (its
        block, pieces and pyarrow buffers are gone), else a new one. Reuse spares the zeroing and
        the page faults of a fresh buffer for every block."""
        spare, self._spare = self._spare, None
        alone = bytearray()  # held by its name only: the count of an object nobody else refers to
        if spare is None or sys.getrefcount(spare) > sys.getrefcount(alone):
            return bytearray(size)
        if len(spare) > size:
            del spare[size:]
        elif len(spare) < size:
            spare.extend(bytes(size - len(spare)))
        return spare

    def _validate(self, data: bytes | bytearray, raw_start: int) -> bytes | bytearray:
        if data.isascii():
            return data
        try:
            text = data.decode(self.codec)
        except UnicodeDecodeError as exc:
            line = self._line + data[: exc.start].count(b"\n")
            raise self._encoding_error(raw_start + exc.start, line, data[exc.start: exc.end]) from None
        return data if self.codec == "utf-8" else text.encode("utf-8")

    @property
    def exhausted(self) -> bool:
        """True once every byte of the source has been handed out."""
        return self._eof and not self._buf

    @property
    def lines_read(self) -> int:
        """Physical lines handed out so far."""
        return self._line - 1


# --------------------------------------------------------------------------------------------
# Records and fields (§1.4 step 2)
# --------------------------------------------------------------------------------------------


def split_fields(text: str, delimiter: str) -> list[str]:
    """RFC 4180 fields of one record (quotes removed, doubled quotes unescaped, not stripped)."""
    if '"' not in text:
        return text.split(delimiter)
    try:
        return next(csv.reader([text], delimiter=delimiter, quotechar='"', doublequote=True, strict=False))
    except (csv.Error, StopIteration):
        return _split_slow(text, delimiter)


def _split_slow(text: str, delimiter: str) -> list[str]:
    """A character loop for records the csv module refuses (fields over its size limit)."""
    fields: list[str] = []
    current: list[str] = []
    i, n = 0, len(text)
    quoted = False
    at_start = True
    while i < n:
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < n and text[i + 1] == '"':
                    current.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                current.append(ch)
        elif ch == '"' and at_start:
            quoted = True
        elif ch == delimiter:
            fields.append("".join(current))
            current = []
            at_start = True
            i += 1
            continue
        else:
            current.append(ch)
        at_start = False
        i += 1
    fields.append("".join(current))
    return fields


# Signatures of compressed files that are not text (checked when a NUL byte appears).
_ARCHIVE_MAGIC: Final = ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"),
                         (b"\xfd7zXZ\x00", "xz"), (b"(\xb5/\xfd", "zstd"))

@dataclass
class Record:
    """One logical record: its first and last physical line and its text (lines joined by ``\\n``).
    ``open_quote`` is the line of a quoted field that is still open at the end of the text."""

    first: int
    last: int
    text: str
    open_quote: int | None = None

    @property
    def blank(self) -> bool:
        return self.first == self.last and not self.text.strip(WHITESPACE)


class LineQuotes:
    """The quote runs of consecutive lines (a record start first), for one or more delimiters."""

    def __init__(self, lines: Sequence[str], delimiters: Sequence[str] = DELIMITER_CANDIDATES) -> None:
        self.runs: QuoteRuns | None = None
        self.ends = np.empty(0, dtype=np.int64)
        self._continued: dict[str, tuple[np.ndarray | None, int | None]] = {}
        if not any('"' in line for line in lines):
            return
        data = "\n".join(lines).encode("utf-8")
        view = np.frombuffer(data, dtype=np.uint8)
        self.ends = np.flatnonzero(view == _LF)  # the end of line i is ends[i] (the last line has none)
        del view
        self.runs = QuoteRuns.scan(data, delimiters)

    def continued(self, delimiter: str) -> tuple[np.ndarray | None, int | None]:
        """(per line but the last: does its line end lie inside a quoted field?, index of the line
        where a quoted field opens that the last line leaves open)"""
        if self.runs is None:
            return None, None
        if delimiter not in self._continued:
            opened = self.runs.open_quote(delimiter)
            self._continued[delimiter] = (self.runs.inside_at(self.ends, delimiter),
                                          int(np.searchsorted(self.ends, opened)) if opened is not None else None)
        return self._continued[delimiter]


def iter_records(lines: Sequence[str], first_line: int, delimiter: str,
                 quotes: LineQuotes | None = None) -> Iterator[Record]:
    """Join physical lines into records: a line end inside a quoted field continues the record.
    The last record carries ``open_quote`` if the lines end inside a quoted field."""
    joined, opened = (quotes or LineQuotes(lines, (delimiter,))).continued(delimiter)
    if joined is None:
        for i, text in enumerate(lines):
            yield Record(first_line + i, first_line + i, text)
        return
    n = len(lines)
    i = 0
    for j in (*np.flatnonzero(~joined).tolist(), n - 1):
        if j < i:
            continue
        text = lines[i] if i == j else "\n".join(lines[i: j + 1])
        yield Record(first_line + i, first_line + j, text,
                     first_line + opened if opened is not None and j == n - 1 else None)
        i = j + 1


def fit_fields(fields: list[str], k: int) -> list[str] | None:
    """The ``k`` fields of a record, accepting extra fields only if they are all empty (§1.4 step 5)."""
    if len(fields) == k:
        return fields
    if len(fields) > k and all(not f.strip(WHITESPACE) for f in fields[k:]):
        return fields[:k]
    return None


# --------------------------------------------------------------------------------------------
# Layout detection on the head (§1.4 steps 3-4)
# --------------------------------------------------------------------------------------------


@dataclass
class Layout:
    """What the head tells about a source's structure."""

    delimiter: str
    delimiter_source: str
    k: int
    header: bool
    header_line: int | None
    names: list[str]
    renamed_duplicate_headers: list[dict[str, Any]]
    metadata_lines: int
    metadata_examples: list[str]
    blank_lines: int  # blank lines before ``body_line`` (after skip_rows)
    body_line: int  # first physical line read as data (or blank lines between header and data)
    sample: list[tuple[int, list[str]]]  # (line, stripped fields) of the first data rows


def detect_delimiter(samples: dict[str, list[Record]], candidates: Sequence[str], *, source: str) -> tuple[str, int]:
    """``(delimiter, k)`` by the most frequent field count over the sample (§1.4 step 3); each
    candidate is judged on the records its own quoting gives."""
    results = []
    best: tuple[str, int] | None = None
    for candidate in candidates:
        k, share = _mode_and_share([len(split_fields(r.text, candidate)) for r in samples[candidate]])
        results.append({"delimiter": candidate, "k": k, "share": round(share, 3)})
        if k >= 2 and share >= 0.8 and (best is None or k > best[1]):
            best = (candidate, k)
    if best is None:
        first = min(samples[c][0].first for c in candidates)
        last = max(samples[c][-1].last for c in candidates)
        listing = ", ".join(f"{r['delimiter']!r}: k={r['k']}, share={r['share']}" for r in results)
        raise load_error(
            "DELIMITER_NOT_DETECTED",
            f"{lines_text(first, last)}: no delimiter gives at least 2 columns on 80 % of the lines ({listing})",
            source=source, line=first, candidates=results,
            hint="set delimiter explicitly; a single-column file cannot be loaded",
        )
    return best


def _mode_and_share(counts: list[int]) -> tuple[int, float]:
    """Most frequent count (ties: the larger) and the share of entries equal to it."""
    freq: dict[int, int] = {}
    for c in counts:
        freq[c] = freq.get(c, 0) + 1
    k = max(freq, key=lambda c: (freq[c], c))
    return k, freq[k] / len(counts)


@dataclass
class HeadText:
    """Decoded head lines (without line ends) and the byte offset of each line in the head data."""

    data: bytes
    first_line: int
    lines: list[str]
    offsets: list[int]
    eof: bool  # the whole source is in the head
    capped: bool = False  # the head reached its size limit: samples may be shorter

    @classmethod
    def of(cls, data: bytes, first_line: int, eof: bool, capped: bool = False) -> HeadText:
        raw_lines = data.splitlines(keepends=True)
        offsets = []
        pos = 0
        lines = []
        for raw in raw_lines:
            offsets.append(pos)
            pos += len(raw)
            lines.append(raw.rstrip(b"\r\n").decode("utf-8"))
        offsets.append(pos)
        return cls(data, first_line, lines, offsets, eof, capped)

    def offset_of(self, line: int) -> int:
        """Byte offset in ``data`` where physical ``line`` starts (``len(data)`` past the end)."""
        return self.offsets[min(max(line - self.first_line, 0), len(self.lines))]


def _nonblank(records: _Records, n: int) -> list[Record]:
    """The first ``n`` non-blank records."""
    out: list[Record] = []
    i = 0
    while len(out) < n and (r := records.get(i)) is not None:
        if not r.blank:
            out.append(r)
        i += 1
    return out


class NeedMoreHead(Exception):
    """The head is too short to decide; read more lines and retry."""


class _Records:
    """Records of the head after ``skip_rows``, split into fields on demand."""

    def __init__(self, head: HeadText, start: int, delimiter: str, quotes: LineQuotes) -> None:
        self._iter = iter_records(head.lines[start:], head.first_line + start, delimiter, quotes)
        self.open_index = quotes.continued(delimiter)[1]  # head.lines[start + open_index] opens an unclosed quote
        self.items: list[Record] = []
        self._fields: list[tuple[list[str] | None, list[str]]] = []
        self.done = False

    def get(self, i: int) -> Record | None:
        while len(self.items) <= i and not self.done:
            nxt = next(self._iter, None)
            if nxt is None:
                self.done = True
            else:
                self.items.append(nxt)
        return self.items[i] if i < len(self.items) else None

    def last(self) -> Record | None:
        while self.get(len(self.items)) is not None:
            pass
        return self.items[-1] if self.items else None

    def fields(self, i: int, delim: str, k: int) -> tuple[list[str] | None, list[str]]:
        """(stripped fields fitted to k or None, raw fields) of record ``i``."""
        while len(self._fields) <= i:
            r = self.items[len(self._fields)]
            if r.blank:
                self._fields.append((None, []))
                continue
            raw = split_fields(r.text, delim)
            fitted = fit_fields(raw, k)
            self._fields.append(([f.strip() for f in fitted] if fitted is not None else None, raw))
        return self._fields[i]


def analyse_head(
    head: HeadText,
    *,
    skip_rows: int,
    delimiter: str,
    decimal: str,
    thousands: str | None,
    header: str,
    time_positions: list[int] | None,
    source: str,
    time_like: Callable[[list[str]], bool],
) -> Layout:
    """Detect delimiter, header and metadata lines on the head (raises ``NeedMoreHead``)."""
    start = skip_rows  # index into head.lines
    complete = head.eof or head.capped
    if start >= len(head.lines) and not head.eof:
        raise NeedMoreHead
    candidates = [delimiter] if delimiter != "auto" else [
        c for c in DELIMITER_CANDIDATES if not (c == "," and (decimal == "," or thousands in (",", ".")))]
    quotes = LineQuotes(head.lines[start:], candidates)
    by_delimiter = {c: _Records(head, start, c, quotes) for c in candidates}
    if not head.eof and any(r.open_index is not None for r in by_delimiter.values()):
        raise NeedMoreHead  # the head ends inside a quoted field (possible after skip_rows lines)
    samples = {c: _nonblank(r, DELIMITER_SAMPLE_LINES) for c, r in by_delimiter.items()}
    sample = samples[candidates[0]]
    if not sample:
        if not head.eof:
            raise NeedMoreHead
        last = head.first_line + len(head.lines) - 1
        begin = head.first_line + start
        what = f"{lines_text(begin, last)} {'is' if begin == last else 'are'} blank" if last >= begin else (
            "line 1: the file is empty" if not head.lines else f"line {last} is the last line")
        suffix = f" (after skip_rows={skip_rows})" if start else ""
        raise load_error("EMPTY_FILE", f"no data line: {what}{suffix}", source=source, line=max(last, 1))
    if any(len(s) < DELIMITER_SAMPLE_LINES for s in samples.values()) and not complete:
        raise NeedMoreHead
    if delimiter == "auto":
        delim, k = detect_delimiter(samples, candidates, source=source)
        delimiter_source = "detected"
    else:
        delim = delimiter
        k, _ = _mode_and_share([len(split_fields(r.text, delim)) for r in sample])
        delimiter_source = "option"
        if k < 2:
            raise load_error(
                "TOO_FEW_COLUMNS",
                f"{lines_text(sample[0].first, sample[-1].last)}: most lines have {k} field(s) under delimiter "
                f"{delim!r}; at least 2 (time and value) are needed",
                source=source, line=sample[0].first, k=k, delimiter=delim,
            )
    records = by_delimiter[delim]
    if records.open_index is not None:  # the whole source is in the head, and it ends inside a quote
        raise unclosed_quote_error(source, head.first_line + start + records.open_index,
                                   head.first_line + len(head.lines) - 1)
    if time_positions is not None and any(p >= k for p in time_positions):
        time_positions = None

    def data_like(index: int) -> bool:
        fields = records.fields(index, delim, k)[0]
        if fields is None:
            return False
        if any(is_numeric_text(f) for f in fields):
            return True
        return time_like([fields[p] for p in time_positions] if time_positions is not None else fields)

    header_index: int | None = None
    if header == "auto":
        d_index = None
        i = 0
        while (r := records.get(i)) is not None:
            if not r.blank and data_like(i):
                d_index = i
                break
            i += 1
        if d_index is None:
            if not head.eof:
                raise NeedMoreHead
            first, last = records.items[0].first, records.items[-1].last
            raise load_error(
                "EMPTY_FILE",
                f"no data line: no line of {lines_text(first, last)} has {k} fields with a number or a time",
                source=source, line=last, k=k,
            )
        prev = next((j for j in range(d_index - 1, -1, -1) if not records.items[j].blank), None)
        if prev is not None:
            prev_fields = records.fields(prev, delim, k)[0]
            if prev_fields is not None and not any(is_numeric_text(f) for f in prev_fields):
                header_index = prev
        body_index = header_index + 1 if header_index is not None else d_index
        meta_end = header_index if header_index is not None else d_index
    else:
        first_nonblank = next(j for j, r in enumerate(records.items) if not r.blank)
        meta_end = first_nonblank
        header_index = first_nonblank if header == "yes" else None
        body_index = first_nonblank + 1 if header == "yes" else first_nonblank

    metadata = [r for r in records.items[:meta_end] if not r.blank] if header == "auto" else []
    blank_before = sum(r.last - r.first + 1 for r in records.items[:body_index] if r.blank)
    names, renamed = _header_names(
        (records.items[header_index], *records.fields(header_index, delim, k)) if header_index is not None
        else None, k, source=source,
    )
    body_record = records.get(body_index)
    if body_record is not None:
        body_line = body_record.first
    else:
        last_record = records.last()
        body_line = last_record.last + 1 if last_record is not None else head.first_line + start

    sample_rows: list[tuple[int, list[str]]] = []
    i = body_index
    while len(sample_rows) < DATA_SAMPLE_ROWS and (r := records.get(i)) is not None:
        fields = records.fields(i, delim, k)[0]
        if fields is not None:
            sample_rows.append((r.first, fields))
        i += 1
    if len(sample_rows) < DATA_SAMPLE_ROWS and not complete:
        raise NeedMoreHead
    return Layout(
        delimiter=delim, delimiter_source=delimiter_source, k=k, header=header_index is not None,
        header_line=records.items[header_index].first if header_index is not None else None,
        names=names, renamed_duplicate_headers=renamed,
        metadata_lines=sum(r.last - r.first + 1 for r in metadata),
        metadata_examples=[r.text[:TEXT_LIMIT] for r in metadata[:MAX_EXAMPLES]],
        blank_lines=blank_before, body_line=body_line, sample=sample_rows,
    )


def _header_names(
    entry: tuple[Record, list[str] | None, list[str]] | None, k: int, *, source: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names: stripped header fields, ``column_<pos>`` for empty ones, ``.1``, ``.2`` for repeats."""
    if entry is None:
        return [str(i) for i in range(k)], []
    record, fitted, raw = entry
    fields = fitted if fitted is not None else [f.strip() for f in raw]
    if len(fields) > k:
        raise load_error(
            "CSV_PARSING_ERROR", f"line {record.first}: the header has {len(fields)} fields, expected {k}",
            source=source, line=record.first, expected=k, found=len(fields),
        )
    fields = fields + [""] * (k - len(fields))
    names = [f.strip().strip('"').strip() or f"column_{i}" for i, f in enumerate(fields)]
    return dedupe_names(names)


def dedupe_names(names: list[str]) -> tuple[list[str], list[dict[str, Any]]]:
    """Give repeated names the suffixes ``.1``, ``.2``, ... in order of appearance."""
    seen: set[str] = set(names)
    counts: dict[str, int] = {}
    out: list[str] = []
    renamed: list[dict[str, Any]] = []
    used: set[str] = set()
    for position, name in enumerate(names):
        if name not in used:
            out.append(name)
            used.add(name)
            continue
        n = counts.get(name, 0)
        while True:
            n += 1
            candidate = f"{name}.{n}"
            if candidate not in seen and candidate not in used:
                break
        counts[name] = n
        out.append(candidate)
        used.add(candidate)
        renamed.append({"column": position, "name": name, "renamed": candidate})
    return out, renamed


def detect_decimal(
    sample: list[tuple[int, list[str]]], value_positions: list[int], *, decimal: str, thousands: str | None,
    delimiter: str,
) -> tuple[str, str, int, int]:
    """``(decimal, decimal_source, C, P)`` per §1.4 step 7."""
    if decimal != "auto":
        return decimal, "option", 0, 0
    if thousands in (".", ","):
        return ("," if thousands == "." else "."), "thousands", 0, 0
    if delimiter == ",":
        return ".", "delimiter", 0, 0
    c = p = 0
    for _, fields in sample:
        for pos in value_positions:
            text = fields[pos]
            if _COMMA_RE.fullmatch(text):
                c += 1
            elif _POINT_RE.fullmatch(text):
                p += 1
    return ("," if c > p else "."), "detected", c, p


# --------------------------------------------------------------------------------------------
# Value conversion (§1.4 step 8)
# --------------------------------------------------------------------------------------------


@dataclass
class NumberRules:
    """How value cells become numbers."""

    decimal: str
    thousands: str | None
    na_values: list[str]
    na_numbers: np.ndarray = field(init=False)  # float values of numeric-looking na_values
    na_array: pa.Array = field(init=False)

    def __post_init__(self) -> None:
        self.na_array = pa.array(self.na_values, type=pa.string())
        numbers = []
        for text in self.na_values:
            candidate = text.strip().replace(",", ".") if self.decimal == "," else text.strip()
            if _NUMBER_RE.fullmatch(candidate) or _NUMBER_RE.fullmatch(text.strip()):
                with contextlib.suppress(ValueError):
                    numbers.append(float(candidate))
        self.na_numbers = np.array(numbers, dtype=np.float64)


@dataclass
class ColumnCounts:
    """Per-channel counts of one source (§1.9)."""

    values: int = 0
    numeric: int = 0
    missing: int = 0
    non_numeric: int = 0
    thousands_grouped: int = 0
    nonempty: bool = False
    examples: list[dict[str, Any]] = field(default_factory=list)


def convert_strings(
    texts: pa.Array, lines: np.ndarray, rules: NumberRules, counts: ColumnCounts, column: str
) -> np.ndarray:
    """float64 values of string cells per §1.4 step 8, updating ``counts`` (examples in file order)."""
    n = len(texts)
    s = pc.utf8_trim_whitespace(texts)
    na = pc.is_in(s, value_set=rules.na_array)
    empty = int(pc.sum(pc.equal(pc.binary_length(s), 0)).as_py() or 0)
    t = s
    grouped = None
    if rules.thousands:
        t = pc.replace_substring(t, rules.thousands, "")
    elif rules.decimal == ",":
        grouped = pc.match_substring_regex(t, "^" + GROUPED_COMMA_DECIMAL + "$")
        if pc.any(grouped).as_py():
            t = pc.if_else(grouped, pc.replace_substring(t, ".", ""), t)
        else:
            grouped = None
    if rules.decimal == ",":
        t = pc.replace_substring(t, ",", ".")
    ok = pc.and_(pc.match_substring_regex(t, "^" + NUMBER + "$"), pc.invert(na))
    values = pc.cast(pc.if_else(ok, t, pa.scalar(None, pa.string())), pa.float64())
    values = np.array(pc.fill_null(values, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64, copy=True)
    ok_np = np.asarray(ok.to_numpy(zero_copy_only=False), dtype=bool)
    na_np = np.asarray(na.to_numpy(zero_copy_only=False), dtype=bool)
    overflow = ok_np & ~np.isfinite(values)
    if overflow.any():
        values[overflow] = np.nan
        ok_np &= ~overflow
    bad = ~ok_np & ~na_np
    n_bad = int(bad.sum())
    counts.values += n
    counts.numeric += int(ok_np.sum())
    counts.missing += int(na_np.sum())
    counts.non_numeric += n_bad
    if empty < n:
        counts.nonempty = True
    if grouped is not None:
        counts.thousands_grouped += int((np.asarray(grouped.to_numpy(zero_copy_only=False), dtype=bool)
                                         & ok_np).sum())
    if n_bad and len(counts.examples) < MAX_EXAMPLES:
        for i in np.flatnonzero(bad)[: MAX_EXAMPLES - len(counts.examples)]:
            counts.examples.append({"line": int(lines[i]), "column": column, "raw": s[int(i)].as_py()[:TEXT_LIMIT]})
    return values


def typed_values_ok(chunks: list[np.ndarray], n: int, nulls: int, rules: NumberRules) -> bool:
    """True if a fast typed conversion is exactly what §1.4 step 8 gives (no nan/inf texts, no
    numeric na_values hidden behind surrounding blanks)."""
    if sum(int(np.count_nonzero(np.isfinite(c))) for c in chunks) != n - nulls:
        return False
    return not (rules.na_numbers.size and any(np.isin(c, rules.na_numbers).any() for c in chunks))


# --------------------------------------------------------------------------------------------
# Body blocks (§1.4 step 5, §1.8)
# --------------------------------------------------------------------------------------------


@dataclass
class BodyPlan:
    """Everything the block conversion needs; ``typed`` grows as columns prove non-empty."""

    source: str
    delimiter: str
    k: int
    time_positions: list[int]
    value_positions: list[int]
    value_names: dict[int, str]
    rules: NumberRules
    bad_lines: str
    typed: set[int] = field(default_factory=set)


@dataclass
class BodyCounts:
    """Counts kept while the body is read."""

    blank_lines: int = 0
    bad_lines: int = 0
    bad_examples: list[dict[str, Any]] = field(default_factory=list)
    rows: int = 0
    columns: dict[int, ColumnCounts] = field(default_factory=dict)


@dataclass
class BlockRows:
    """The converted rows of one block."""

    lines: np.ndarray  # int64
    times: dict[int, pa.Array]  # position -> stripped time texts
    values: dict[int, list[np.ndarray]]  # position -> float64 pieces, in row order


_COLUMN_ERROR = re.compile(r"In CSV column #(\d+)")


def _arrow_table(data: bytes, plan: BodyPlan, strings: set[int], *, block_size: int) -> tuple[pa.Table, int]:
    """Parse ``data`` with pyarrow; returns the table and the number of rejected rows."""
    rejected = [0]

    def handler(row: Any) -> str:
        rejected[0] += 1
        return "skip"

    names = [f"f{i}" for i in range(plan.k)]
    types: dict[str, pa.DataType] = {f"f{p}": pa.string() for p in plan.time_positions}
    for p in plan.value_positions:
        types[f"f{p}"] = pa.string() if (p in strings or p not in plan.typed) else pa.float64()
    include = [f"f{p}" for p in (*plan.time_positions, *plan.value_positions)]
    table = pacsv.read_csv(
        pa.BufferReader(data),
        read_options=pacsv.ReadOptions(use_threads=False, block_size=block_size, column_names=names),
        parse_options=pacsv.ParseOptions(delimiter=plan.delimiter, quote_char='"', double_quote=True,
                                         newlines_in_values=False, ignore_empty_lines=True,
                                         invalid_row_handler=handler),
        convert_options=pacsv.ConvertOptions(
            column_types=types, include_columns=include, null_values=plan.rules.na_values,
            strings_can_be_null=False, quoted_strings_can_be_null=False,
            decimal_point=plan.rules.decimal, check_utf8=False,
        ),
    )
    return table, rejected[0]


def _parse(data: bytes, plan: BodyPlan, *, block_size: int) -> tuple[pa.Table, int] | None:
    """Typed parse; a column whose typed conversion fails is re-read as text. None if the text
    itself cannot be parsed this way (e.g. a line longer than the block size)."""
    strings: set[int] = set()
    while True:
        try:
            return _arrow_table(data, plan, strings, block_size=block_size)
        except pa.ArrowInvalid as exc:
            match = _COLUMN_ERROR.search(str(exc))
            position = int(match.group(1)) if match else None
            if position is None or position not in plan.value_positions or position in strings:
                return None
            strings.add(position)
        except pa.ArrowException:
            return None


def _convert_table(
    table: pa.Table, data: bytes, lines: np.ndarray, plan: BodyPlan, counts: BodyCounts, block_size: int
) -> BlockRows:
    """Time texts and float64 values of a parsed block; typed columns that fail the exactness
    checks are re-read as text and converted by ``convert_strings``."""
    values: dict[int, list[np.ndarray]] = {}
    redo: set[int] = set()
    typed_counts: dict[int, tuple[int, int]] = {}
    for p in plan.value_positions:
        column = table.column(f"f{p}")
        if column.type == pa.float64():
            nulls = column.null_count
            chunks = [np.asarray(c.to_numpy(zero_copy_only=False) if c.null_count == 0
                                 else pc.fill_null(c, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64)
                      for c in column.chunks]
            if typed_values_ok(chunks, len(column), nulls, plan.rules):
                values[p] = chunks
                typed_counts[p] = (len(column), nulls)
            else:
                redo.add(p)
    if redo:
        table2, _ = _arrow_table(data, plan, redo, block_size=block_size)
        for p in redo:
            table = table.set_column(table.schema.get_field_index(f"f{p}"), f"f{p}", table2.column(f"f{p}"))
    for p in plan.value_positions:
        col_counts = counts.columns[p]
        if p in values:
            n, nulls = typed_counts[p]
            col_counts.values += n
            col_counts.numeric += n - nulls
            col_counts.missing += nulls
            if n > nulls:
                col_counts.nonempty = True
            continue
        texts = table.column(f"f{p}").combine_chunks()
        values[p] = [_convert_text_column(texts, lines, plan, p, col_counts)]
    times = {p: stripped(table.column(f"f{p}")) for p in plan.time_positions}
    return BlockRows(lines, times, values)


_STRIP_BYTES = np.zeros(256, dtype=bool)
_STRIP_BYTES[: 33] = True  # controls and space
_STRIP_BYTES[0x80:] = True  # possibly Unicode whitespace
_STRIP_BYTES.flags.writeable = False


def stripped(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Stripped texts as one pyarrow string array; trimming is skipped when no text can start or
    end with whitespace (checked on the raw buffers). ``TimeParser`` reads pyarrow arrays."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    n = len(column)
    if n == 0 or column.type != pa.string():
        return pc.utf8_trim_whitespace(column)
    bufs = column.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[column.offset: column.offset + n + 1]
    if bufs[2] is None:
        return column
    data = np.frombuffer(bufs[2], dtype=np.uint8)
    first, end = int(offsets[0]), int(offsets[-1])
    width = (end - first) // n
    if width > 0 and width * n == end - first and bool((np.diff(offsets) == width).all()):
        # texts of one length (e.g. fixed-width time stamps): their first and last bytes are strided views
        texts = data[first: end].reshape(n, width)
        heads, tails = texts[:, 0], texts[:, width - 1]
        if min(int(heads.min()), int(tails.min())) < 33 or max(int(heads.max()), int(tails.max())) >= 0x80:
            return pc.utf8_trim_whitespace(column)  # the bytes that _STRIP_BYTES marks
        return column
    starts, ends = offsets[:-1], offsets[1:]
    nonempty = ends > starts
    if not nonempty.all():
        starts, ends = starts[nonempty], ends[nonempty]
    if _STRIP_BYTES[data[starts]].any() or _STRIP_BYTES[data[ends - 1]].any():
        return pc.utf8_trim_whitespace(column)
    return column


def read_block(block: Block, plan: BodyPlan, counts: BodyCounts) -> BlockRows:
    """Convert one block: the typed pyarrow fast path, else an exact line-by-line path."""
    data = block.data
    n_lines = block.line_count()
    if n_lines == 0:
        return _empty_rows(plan)
    parsed = _parse(data, plan, block_size=ARROW_BLOCK)
    if (parsed is not None and not parsed[1] and parsed[0].num_rows == n_lines
            and not (b'"' in data and ends_inside_quotes(data, len(data), (plan.delimiter,)))):
        # (one row per line; a quote left open on the last line is reported by the exact path)
        lines = np.arange(block.first_line, block.first_line + n_lines, dtype=np.int64)
        counts.rows += n_lines
        return _convert_table(parsed[0], data, lines, plan, counts, ARROW_BLOCK)
    return _read_block_exact(block, plan, counts)


def _empty_rows(plan: BodyPlan) -> BlockRows:
    return BlockRows(np.empty(0, np.int64), {p: pa.array([], pa.string()) for p in plan.time_positions},
                     {p: [] for p in plan.value_positions})


def _bad_line(plan: BodyPlan, counts: BodyCounts, line: int, found: int, text: str) -> None:
    if plan.bad_lines == "error":
        raise load_error(
            "CSV_PARSING_ERROR", f"line {line}: expected {plan.k} fields, found {found}",
            source=plan.source, line=line, expected=plan.k, found=found, raw=text[:TEXT_LIMIT],
        )
    counts.bad_lines += 1
    if len(counts.bad_examples) < MAX_EXAMPLES:
        counts.bad_examples.append({"line": line, "raw": text[:TEXT_LIMIT]})


def _read_block_exact(block: Block, plan: BodyPlan, counts: BodyCounts) -> BlockRows:
    """Line-by-line path: blank and bad lines are found with their physical line numbers."""
    raw_lines = block.data.splitlines()
    if b'"' in block.data:
        return _read_block_quoted(raw_lines, block.first_line, plan, counts)
    delim = plan.delimiter.encode()
    ws = WHITESPACE.encode()
    good: list[bytes] = []
    good_lines: list[int] = []
    for i, raw in enumerate(raw_lines):
        line = block.first_line + i
        if not raw.strip(ws):
            counts.blank_lines += 1
            continue
        found = raw.count(delim) + 1
        if found != plan.k:
            parts = raw.split(delim)
            if found > plan.k and all(not f.decode("utf-8").strip(WHITESPACE) for f in parts[plan.k:]):
                raw = delim.join(parts[: plan.k])
            else:
                _bad_line(plan, counts, line, found, raw.decode("utf-8"))
                continue
        good.append(raw)
        good_lines.append(line)
    if not good:
        return _empty_rows(plan)
    data = b"\n".join(good) + b"\n"
    lines = np.asarray(good_lines, dtype=np.int64)
    size = max(ARROW_BLOCK, len(data) + 1)
    parsed = _parse(data, plan, block_size=size)
    if parsed is None or parsed[1] or parsed[0].num_rows != len(good):
        return _rows_from_fields([r.decode("utf-8").split(plan.delimiter) for r in good], lines, plan, counts)
    counts.rows += len(good)
    return _convert_table(parsed[0], data, lines, plan, counts, size)


def _read_block_quoted(raw_lines: list[bytes], first_line: int, plan: BodyPlan, counts: BodyCounts) -> BlockRows:
    texts = [r.decode("utf-8") for r in raw_lines]
    rows: list[list[str]] = []
    lines: list[int] = []
    for record in iter_records(texts, first_line, plan.delimiter):
        if record.open_quote is not None:
            raise unclosed_quote_error(plan.source, record.open_quote, record.last)
        if record.blank:
            counts.blank_lines += 1
            continue
        fields = split_fields(record.text, plan.delimiter)
        fitted = fit_fields(fields, plan.k)
        if fitted is None:
            _bad_line(plan, counts, record.first, len(fields), record.text)
            continue
        rows.append(fitted)
        lines.append(record.first)
    if not rows:
        return _empty_rows(plan)
    return _rows_from_fields(rows, np.asarray(lines, dtype=np.int64), plan, counts)


def _rows_from_fields(rows: list[list[str]], lines: np.ndarray, plan: BodyPlan, counts: BodyCounts) -> BlockRows:
    counts.rows += len(rows)
    times = {p: pa.array([r[p].strip() for r in rows], type=pa.string()) for p in plan.time_positions}
    values = {}
    for p in plan.value_positions:
        texts = pa.array([r[p] for r in rows], type=pa.string())
        values[p] = [_convert_text_column(texts, lines, plan, p, counts.columns[p])]
    return BlockRows(lines, times, values)


def _convert_text_column(texts: pa.Array, lines: np.ndarray, plan: BodyPlan, p: int,
                         col_counts: ColumnCounts) -> np.ndarray:
    """``convert_strings`` for one column; the next blocks try the typed fast path for it only if
    this block held nothing but plain numbers and missing values."""
    before = (col_counts.non_numeric, col_counts.thousands_grouped)
    values = convert_strings(texts, lines, plan.rules, col_counts, plan.value_names[p])
    if col_counts.nonempty and (col_counts.non_numeric, col_counts.thousands_grouped) == before:
        plan.typed.add(p)
    else:
        plan.typed.discard(p)
    return values


def typed_candidates(sample: list[tuple[int, list[str]]], positions: list[int], rules: NumberRules) -> set[int]:
    """Value columns worth the typed fast path: their non-missing head-sample fields are all plain
    numbers under the chosen decimal separator (others are converted as text from the start)."""
    na = set(rules.na_values)
    out = set()
    for p in positions:
        fields = [f[p] for _, f in sample if f[p] not in na]
        if not fields or any(rules.thousands and rules.thousands in f for f in fields):
            continue
        texts = [f.replace(",", ".") for f in fields] if rules.decimal == "," else fields
        if all(_NUMBER_RE.fullmatch(t) for t in texts):
            out.add(p)
    return out


def split_rows(block: Block, max_lines: int) -> Iterator[Block]:
    """Sub-blocks of at most about ``max_lines`` lines (the head remainder can hold many), cut at
    record ends only (a block starts at a record start)."""
    data = block.data
    if block.line_count() <= max_lines * 3 // 2:
        yield block
        return
    view = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(view == _LF)
    del view
    cuts = record_ends(data) if b'"' in data else ends
    start = 0
    line = block.first_line
    index = max_lines - 1
    while start < len(data):
        if index >= ends.size:
            cut = len(data)
        else:
            j = int(np.searchsorted(cuts, ends[index]))  # the first record end at or after that line end
            cut = int(cuts[j]) + 1 if j < cuts.size else len(data)
        piece = Block(data[start:cut], line, block.raw_end)
        yield piece
        line += piece.line_count()
        start = cut
        index = int(np.searchsorted(ends, cut - 1)) + max_lines
