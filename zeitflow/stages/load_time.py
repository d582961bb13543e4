"""Time parsing and time-zone handling of the load stage (stages.md §1.5, §1.6, §1.8).

Pure and vectorised: texts are grouped by their *layout* (length plus the positions of digits and
the non-digit characters), one regular expression is matched per layout, and the digits of every row
of that layout are read as integer columns of a byte matrix. Rows are never looped over in Python.
A block whose texts all have one fixed-width layout of ``%Y %m %d [%H %M [%S]]`` (ISO, or a format
without the day/month question) is first offered to pyarrow's ISO 8601 cast, which is taken only
when it provably gives the same wall times; any other block takes the exact path ("Fast path").

``zeitflow.stages.load`` drives this module: :func:`detect_time_format` on the head sample, one
:class:`TimeParser` per source fed block by block, then :func:`localize` on the whole column.
"""

from __future__ import annotations

import itertools
import mmap
import re
import time as _time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from zeitflow.errors import LoadError
from zeitflow.reports import MAX_EXAMPLES, ReportWarning

__all__ = [
    "PARTS_FORMAT",
    "Localized",
    "ParsedTimes",
    "TimeFormat",
    "TimeParser",
    "combine_date_time",
    "detect_time_format",
    "localize",
    "parses_as_time",
]

NS_PER_S = 1_000_000_000
NS_PER_MIN = 60 * NS_PER_S
NS_PER_H = 3600 * NS_PER_S
NS_PER_DAY = 86_400 * NS_PER_S

SAMPLE_ROWS = 1000
MIN_SHARE = 0.9
MAX_TEXT_BYTES = 64  # longer texts cannot match any supported layout
YEAR_MIN, YEAR_MAX = 1678, 2261  # whole years representable as int64 nanoseconds
EPOCH_MS_LIMIT, EPOCH_LIMIT = 1e11, 1e14

_DIM = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_DATE_DIRECTIVES = set("YyGmdjbBh")
_TIME_ONLY = re.compile(r"\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?(\s*[AaPp][Mm])?")


# ---------------------------------------------------------------------------------------------
# Public data classes
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimeFormat:
    """A chosen datetime format.

    ``kind`` is ``iso``, ``strptime``, ``compact``, ``daymonth``, ``epoch_s``, ``epoch_ms`` (or
    ``parts`` for part columns); ``format`` is the reported ``datetime_format`` (for ``daymonth`` the
    day-first spelling until the whole column has decided the order). ``explicit`` is True when the
    user gave the format: then ``%S`` does not implicitly accept a fraction (strptime semantics).
    """

    kind: str
    format: str
    explicit: bool = field(default=False, repr=False)


PARTS_FORMAT = TimeFormat("parts", "parts")
"""Format to pass to :class:`TimeParser` when times come from part columns (``add_parts``)."""


@dataclass
class ParsedTimes:
    """Parsed time column of one source, in file order (one entry per row given to the parser)."""

    wall_ns: np.ndarray
    aware: np.ndarray
    valid: np.ndarray
    unparseable_examples: list[dict]
    unparseable_count: int
    coerced_year_rows: int
    dayfirst_applied: bool
    datetime_format: str
    warnings: list[ReportWarning]


@dataclass
class Localized:
    """Result of :func:`localize`: UTC nanoseconds, rows kept, DST counts and warnings."""

    utc_ns: np.ndarray
    keep: np.ndarray
    counts: dict[str, int]
    warnings: list[ReportWarning]


# ---------------------------------------------------------------------------------------------
# Format specifications (regular expressions over bytes)
# ---------------------------------------------------------------------------------------------

_Z = rb"(?P<z>[Zz]|(?P<zs>[+-])(?P<zh>\d{2}):?(?P<zm>\d{2}))"
_ISO_RE = (
    rb"(?P<Y>\d{4})-(?P<m>\d{2})-(?P<d>\d{2})"
    rb"(?:[Tt ](?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?" + _Z + rb"?)?"
)
_EPOCH_RE = rb"(?P<es>[+-]?)(?=\.?\d)(?P<ei>\d*)(?:\.(?P<ef>\d*))?"
_FRACTION = rb"(?:\.(?P<f>\d{1,9}))?"

_DIRECTIVE_RE: dict[str, bytes] = {
    "Y": rb"(?P<Y>\d{4})",
    "y": rb"(?P<y>\d{2})",
    "m": rb"(?P<m>\d{1,2})",
    "d": rb"(?P<d>\d{1,2})",
    "H": rb"(?P<H>\d{1,2})",
    "I": rb"(?P<I>\d{1,2})",
    "M": rb"(?P<M>\d{1,2})",
    "S": rb"(?P<S>\d{1,2})",
    "f": rb"(?P<f>\d{1,9})",
    "p": rb"(?P<p>[AaPp][Mm])",
    "z": _Z,
    "%": rb"%",
}


@dataclass(frozen=True)
class _Spec:
    """A compiled format: a bytes regex with named groups, or ``regex=None`` for the pandas path."""

    kind: str
    format: str
    regex: re.Pattern[bytes] | None
    daymonth: bool = False
    epoch_unit: int = 0  # nanoseconds per epoch unit
    aware_fallback: bool = False


def _strptime_regex(fmt: str, *, fraction: bool, daymonth: bool, fixed: bool) -> re.Pattern[bytes] | None:
    """Translate a strptime format into a bytes regex; None if it uses a directive not handled here."""
    out: list[bytes] = []
    i = 0
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            if i + 1 >= len(fmt) or fmt[i + 1] not in _DIRECTIVE_RE:
                return None
            d = fmt[i + 1]
            part = _DIRECTIVE_RE[d]
            if fixed and d in "mdHMS":
                part = part.replace(rb"\d{1,2}", rb"\d{2}")
            if daymonth and d in "dm":
                part = part.replace(b"?P<d>", b"?P<a>") if d == "d" else part.replace(b"?P<m>", b"?P<b>")
            if fraction and d == "S":
                part += _FRACTION
            out.append(part)
            i += 2
        elif ch.isspace():
            while i < len(fmt) and fmt[i].isspace():
                i += 1
            out.append(rb"\s+")
        else:
            out.append(re.escape(ch).encode("utf-8"))
            i += 1
    try:
        regex = re.compile(b"".join(out), re.IGNORECASE)
    except re.error:
        return None
    groups = regex.groupindex
    has_date = ("Y" in groups or "y" in groups) and (("m" in groups and "d" in groups) or daymonth)
    if not has_date or ("I" in groups) != ("p" in groups) or ("H" in groups and "I" in groups):
        return None
    if "f" in groups and "S" not in groups:
        return None
    return regex


def _auto_formats() -> list[tuple[str, str]]:
    """Candidates 1-4 of §1.5 in order: (kind, format)."""
    out = [("iso", "iso")]
    out += [("strptime", f"%Y/%m/%d{t}") for t in (" %H:%M:%S", " %H:%M", "")]
    out += [("compact", f) for f in ("%Y%m%d%H%M%S", "%Y%m%d%H%M", "%Y%m%d")]
    times = ("", " %H:%M:%S", " %H:%M", " %I:%M:%S %p", " %I:%M %p")
    for sep in ".", "/", "-":
        for year in "%Y", "%y":
            out += [("daymonth", f"%d{sep}%m{sep}{year}{t}") for t in times]
    return out


def _spec_for(fmt: TimeFormat) -> _Spec:
    """Compile a :class:`TimeFormat`."""
    kind = fmt.kind
    if kind == "iso":
        return _Spec(kind, "iso", re.compile(_ISO_RE))
    if kind in ("epoch_s", "epoch_ms"):
        unit = NS_PER_S if kind == "epoch_s" else 1_000_000
        return _Spec(kind, kind, re.compile(_EPOCH_RE), epoch_unit=unit)
    if kind == "parts":
        return _Spec(kind, fmt.format, None)
    if kind not in ("strptime", "compact", "daymonth"):
        raise ValueError(f"unknown TimeFormat kind {kind!r}")
    regex = _strptime_regex(
        fmt.format, fraction=not fmt.explicit, daymonth=kind == "daymonth", fixed=kind == "compact"
    )
    if regex is None and kind != "strptime":
        raise ValueError(f"cannot compile {fmt!r}")
    aware = "%z" in fmt.format or "%Z" in fmt.format
    return _Spec(kind, fmt.format, regex, daymonth=kind == "daymonth", aware_fallback=aware)


_AUTO_SPECS: tuple[_Spec, ...] = tuple(_spec_for(TimeFormat(k, f)) for k, f in _auto_formats())
_EPOCH_SPEC = _spec_for(TimeFormat("epoch_s", "epoch_s"))


# ---------------------------------------------------------------------------------------------
# Layouts: group texts by length and digit/non-digit pattern
# ---------------------------------------------------------------------------------------------


@dataclass
class _Group:
    """Rows sharing one layout. ``rows`` None means every row of the block (the only group)."""

    rows: np.ndarray | None
    mat: np.ndarray  # (k, L) uint8, or the parent matrix when ``local`` is set
    local: np.ndarray | None
    rep: bytes

    def matrix(self) -> np.ndarray:
        return self.mat if self.local is None else self.mat[self.local]


def _to_arrow(texts: Any) -> pa.Array:
    """Any array of str (numpy object/U/StringDType, pyarrow) as a pyarrow string array without nulls."""
    if isinstance(texts, pa.ChunkedArray):
        arr = texts.combine_chunks()
    elif isinstance(texts, pa.Array):
        arr = texts
    else:
        a = np.asarray(texts)
        if a.dtype.kind not in "OUS":
            a = a.astype(object)
        if a.dtype.kind == "S":
            a = a.astype("U")
        arr = pa.array(a, type=pa.string(), from_pandas=True)
    if pa.types.is_large_string(arr.type) or pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    if arr.null_count:
        arr = pc.fill_null(arr, "")
    return arr


def _buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets int64 of length n+1, data uint8) of a pyarrow string array."""
    n = len(arr)
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets, data


def _layout(arr: pa.Array) -> list[_Group]:
    """Group the rows of ``arr`` by layout; empty and over-long texts belong to no group."""
    n = len(arr)
    if n == 0:
        return []
    offsets, data = _buffers(arr)
    starts = offsets[:-1]
    lens = np.diff(offsets)
    groups: list[_Group] = []
    lmin, lmax = int(lens.min()), int(lens.max())
    if lmin == lmax and 0 < lmin <= MAX_TEXT_BYTES:
        mat = data[starts[0] : starts[0] + n * lmin].reshape(n, lmin)
        _split_patterns(mat, None, groups)
        return groups
    counts = np.bincount(np.minimum(lens, MAX_TEXT_BYTES + 1), minlength=MAX_TEXT_BYTES + 2)
    for length in np.flatnonzero(counts[1 : MAX_TEXT_BYTES + 1]) + 1:
        rows = np.flatnonzero(lens == length)
        sub_offsets, sub_data = _buffers(arr.take(pa.array(rows)))  # contiguous copy of those rows
        mat = sub_data[sub_offsets[0] : sub_offsets[0] + rows.size * length].reshape(rows.size, length)
        _split_patterns(mat, rows, groups)
    return groups


def _split_patterns(mat: np.ndarray, rows: np.ndarray | None, groups: list[_Group]) -> None:
    """Split rows of equal length into groups of identical digit/non-digit pattern."""
    k, length = mat.shape
    tmpl = mat[0].copy()
    digit = (tmpl - 48) < 10
    tmpl[digit] = 48
    lim = np.where(digit, 9, 0).astype(np.uint8)
    bad = np.flatnonzero(((mat - tmpl) > lim).ravel()) // length
    if bad.size == 0:
        groups.append(_Group(rows, mat, None, mat[0].tobytes()))
        return
    bad = bad[np.r_[True, bad[1:] != bad[:-1]]]
    good = np.ones(k, dtype=bool)
    good[bad] = False
    first = np.flatnonzero(good)
    groups.append(_Group(rows[first] if rows is not None else first, mat, first, mat[0].tobytes()))
    sub = mat[bad]
    pattern = np.where((sub - 48) < 10, np.uint8(48), sub)
    keys = np.ascontiguousarray(pattern).view(np.dtype((np.void, length))).ravel()
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    for part in np.split(order, bounds):
        local = bad[part]
        groups.append(_Group(rows[local] if rows is not None else local, mat, local, mat[local[0]].tobytes()))


# ---------------------------------------------------------------------------------------------
# Tokenising: layouts -> integer components
# ---------------------------------------------------------------------------------------------


def _num(mat: np.ndarray, s: int, e: int, dtype: type = np.int32) -> np.ndarray:
    """Decimal value of the ASCII digit columns ``s:e`` of ``mat``."""
    v = mat[:, s].astype(dtype)
    v -= 48
    for j in range(s + 1, e):
        v *= 10
        v += mat[:, j]
        v -= 48
    return v


def _is_leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * ((m + 9) % 12) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (m <= 2), m, d


def _date_tables() -> tuple[np.ndarray, np.ndarray]:
    """Flat (year, month) tables for years YEAR_MIN..YEAR_MAX: days in month, and days since
    1970-01-01 of the month's first day. Month column 0 stands for an invalid month (0 days)."""
    years = np.arange(YEAR_MIN, YEAR_MAX + 1, dtype=np.int64)
    leap = np.array([_is_leap(int(y)) for y in years])
    dim = np.zeros((years.size, 13), dtype=np.int32)
    dim[:, 1:] = _DIM[1:]
    dim[:, 2] += leap
    months = np.arange(1, 13, dtype=np.int64)
    first = np.zeros((years.size, 13), dtype=np.int64)
    first[:, 1:] = _days_from_civil(years[:, None], months[None, :], np.ones((1, 12), dtype=np.int64))
    return dim.ravel(), first.ravel()


_DIM_FLAT, _FIRST_FLAT = _date_tables()


def _date_index(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Index into the date tables (years outside the range are clipped; check them separately)."""
    return np.clip(year - YEAR_MIN, 0, YEAR_MAX - YEAR_MIN) * 13 + np.where(month <= 12, month, 0)


def _dim(year: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Days in the month; 0 for an invalid month, so that ``1 <= day <= _dim`` validates both."""
    return _DIM_FLAT[_date_index(year, month)]


_DTYPES = {"ok": bool, "ok_df": bool, "ok_mf": bool, "aware": bool}


def _extract(mat: np.ndarray, m: re.Match[bytes], spec: _Spec) -> dict[str, np.ndarray]:
    """Components of every row of one layout group (k rows)."""
    k = mat.shape[0]
    rep = m.string

    def span(name: str) -> tuple[int, int] | None:
        if name not in m.re.groupindex:
            return None
        s, e = m.span(name)
        return None if s < 0 else (s, e)

    def num(name: str, dtype: type = np.int32) -> np.ndarray:
        sp = span(name)
        if sp is None or sp[0] == sp[1]:
            return np.zeros(k, dtype=dtype)
        return _num(mat, sp[0], sp[1], dtype)

    out: dict[str, np.ndarray] = {}
    if spec.epoch_unit:
        ok = np.ones(k, dtype=bool)
        sp_i = span("ei")
        n_int = 0 if sp_i is None else sp_i[1] - sp_i[0]
        if n_int > 18:
            out["ok"] = np.zeros(k, dtype=bool)
            out["ns"] = np.zeros(k, dtype=np.int64)
            out["aware"] = np.ones(k, dtype=bool)
            return out
        whole = num("ei", np.int64)
        digits = 9 if spec.epoch_unit == NS_PER_S else 6
        sp_f = span("ef")
        frac = np.zeros(k, dtype=np.int64)
        if sp_f is not None and sp_f[1] > sp_f[0]:
            used = min(sp_f[1] - sp_f[0], digits)
            frac = _num(mat, sp_f[0], sp_f[0] + used, np.int64) * 10 ** (digits - used)
        limit = (2**63 - 1) // spec.epoch_unit - 1
        ok &= whole <= limit
        ns = np.where(ok, whole, 0) * spec.epoch_unit + frac
        sp_s = span("es")
        if sp_s is not None and rep[sp_s[0] : sp_s[1]] == b"-":
            ns = -ns
        out.update(ok=ok, ns=ns, aware=np.ones(k, dtype=bool))
        return out

    if span("Y") is not None:
        year = num("Y")
    else:
        yy = num("y")
        year = yy + 2000 - 100 * (yy >= 69)  # strptime pivot: 69-99 -> 19xx, 00-68 -> 20xx
    ok = (year >= YEAR_MIN) & (year <= YEAR_MAX)
    if span("I") is not None:
        hour12 = num("I")
        ok &= (hour12 >= 1) & (hour12 <= 12)
        sp_p = span("p")
        pm = sp_p is not None and rep[sp_p[0] : sp_p[1]].lower() == b"pm"
        hour = hour12 % 12 + (12 if pm else 0)
    else:
        hour = num("H")
    minute, second = num("M"), num("S")
    sp_f = span("f")
    frac = None if sp_f is None else _num(mat, sp_f[0], sp_f[1]) * 10 ** (9 - (sp_f[1] - sp_f[0]))
    ok &= (minute <= 59) & (second <= 59)
    is24 = (hour == 24) & (minute == 0) & (second == 0)
    if frac is not None:
        is24 &= frac == 0
    ok &= (hour <= 23) | is24
    tod = (hour * 3600 + minute * 60 + second).astype(np.int64) * NS_PER_S
    out["tod"] = tod if frac is None else tod + frac
    if span("z") is not None:
        out["aware"] = np.ones(k, dtype=bool)
        sp_s = span("zs")
        if sp_s is not None:
            zh, zm = num("zh"), num("zm")
            ok &= (zh <= 23) & (zm <= 59)
            sign = -1 if rep[sp_s[0] : sp_s[1]] == b"-" else 1
            out["off"] = (sign * (zh * 3600 + zm * 60)).astype(np.int64) * NS_PER_S
    if spec.daymonth:
        a, b = num("a"), num("b")
        ok_df = ok & (a >= 1) & (a <= _dim(year, b))
        ok_mf = ok & (b >= 1) & (b <= _dim(year, a))
        out.update(year=year, c1=a, c2=b, ok_df=ok_df, ok_mf=ok_mf, ok=ok_df | ok_mf)
    else:
        month, day = num("m"), num("d")
        ok &= (day >= 1) & (day <= _dim(year, month))
        out.update(year=year, c1=month, c2=day, ok=ok)
    return out


def _tokenize(n: int, groups: list[_Group], spec: _Spec) -> dict[str, np.ndarray]:
    """Components of all ``n`` rows under ``spec``; rows in no matching group have ``ok`` False."""
    assert spec.regex is not None
    parts: list[tuple[np.ndarray | None, dict[str, np.ndarray]]] = []
    for g in groups:
        m = spec.regex.fullmatch(g.rep)
        if m is not None:
            parts.append((g.rows, _extract(g.matrix(), m, spec)))
    if len(parts) == 1 and parts[0][0] is None:
        return parts[0][1]
    if spec.epoch_unit:
        required: tuple[str, ...] = ("ok", "ns", "aware")
    elif spec.daymonth:
        required = ("ok", "year", "c1", "c2", "tod", "ok_df", "ok_mf")
    else:
        required = ("ok", "year", "c1", "c2", "tod")
    out = {name: np.zeros(n, dtype=_DTYPES.get(name, np.int64)) for name in required}
    for rows, comp in parts:
        for name, values in comp.items():
            if name not in out:
                out[name] = np.zeros(n, dtype=_DTYPES.get(name, np.int64))
            out[name][rows if rows is not None else slice(None)] = values
    return out


def _to_ns(
    year: np.ndarray, month: np.ndarray, day: np.ndarray, tod: np.ndarray, off: np.ndarray | None,
    ok: np.ndarray,
) -> np.ndarray:
    """Wall (or, with ``off``, UTC) nanoseconds; 0 on rows that are not ok. ``24:00`` rolls over."""
    days = _FIRST_FLAT[_date_index(year, month)] + day - 1
    ns = days * NS_PER_DAY + tod
    if off is not None:
        ns = ns - off
    return np.where(ok, ns, 0)


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------


def _valid_rows(tok: dict[str, np.ndarray], n: int) -> np.ndarray:
    return tok.get("ok", np.zeros(n, dtype=bool))


def parses_as_time(text: str) -> bool:
    """True if the stripped ``text`` parses under some auto-detection candidate of §1.5."""
    try:
        raw = text.strip().encode("utf-8")
        if not raw or len(raw) > MAX_TEXT_BYTES:
            return False
        groups: list[_Group] | None = None
        for spec in (*_AUTO_SPECS, _EPOCH_SPEC):
            assert spec.regex is not None
            if spec.regex.fullmatch(raw) is None:
                continue
            if groups is None:
                groups = [_Group(None, np.frombuffer(raw, dtype=np.uint8).reshape(1, -1), None, raw)]
            if bool(_valid_rows(_tokenize(1, groups, spec), 1)[0]):
                return True
        return False
    except Exception:  # documented as "no exceptions"
        return False


def _parse_error(message: str, *, source: str, **details: Any) -> LoadError:
    return LoadError("DATETIME_PARSING_ERROR", f"{source}: {message}", details={"source": source, **details})


def _explicit_format(datetime_format: str, source: str) -> TimeFormat:
    if datetime_format in ("iso", "epoch_s", "epoch_ms"):
        return TimeFormat(datetime_format, datetime_format, explicit=True)
    try:
        _time.strptime("", datetime_format)
    except ValueError as exc:
        if "does not match format" not in str(exc):
            raise _parse_error(
                f"invalid datetime_format {datetime_format!r}: {exc}", source=source,
                datetime_format=datetime_format,
            ) from None
    except Exception as exc:  # re.error for a repeated directive
        raise _parse_error(
            f"invalid datetime_format {datetime_format!r}: {exc}", source=source,
            datetime_format=datetime_format,
        ) from None
    directives = set(re.findall(r"%(.)", datetime_format.replace("%%", "")))
    if not directives & _DATE_DIRECTIVES:
        raise _parse_error(
            f"datetime_format {datetime_format!r} has no date part: time-only formats are not supported "
            "(use date_column with time_of_day_column)",
            source=source, datetime_format=datetime_format,
        )
    return TimeFormat("strptime", datetime_format, explicit=True)


def detect_time_format(samples: Sequence[str], datetime_format: str | None, *, source: str) -> TimeFormat:
    """Choose the datetime format (§1.5 selection rules) on the first 1,000 rows' time texts.

    ``datetime_format`` None means auto-detection; otherwise it is returned as an explicit format
    (a strptime string or ``iso``/``epoch_s``/``epoch_ms``).
    """
    if datetime_format is not None:
        return _explicit_format(datetime_format, source)
    texts = [str(s).strip() for s in itertools.islice(samples, SAMPLE_ROWS) if s is not None]
    texts = [t for t in texts if t]
    if not texts:
        raise _parse_error("no time text in the first data rows", source=source, examples=[], candidates=[])
    n = len(texts)
    arr = _to_arrow(np.array(texts, dtype=object))
    groups = _layout(arr)
    tried: list[tuple[_Spec, np.ndarray]] = []
    for spec in _AUTO_SPECS:
        ok = _valid_rows(_tokenize(n, groups, spec), n)
        if ok.all():
            return TimeFormat(spec.kind, spec.format)
        tried.append((spec, ok))
    assert _EPOCH_SPEC.regex is not None
    plain = np.array([_EPOCH_SPEC.regex.fullmatch(t.encode("utf-8")) is not None for t in texts])
    if plain.all():
        median = float(np.median(np.abs(np.array(texts, dtype=np.float64))))
        if median < EPOCH_MS_LIMIT:
            return TimeFormat("epoch_s", "epoch_s")
        if median < EPOCH_LIMIT:
            return TimeFormat("epoch_ms", "epoch_ms")
        raise _parse_error(
            f"epoch numbers with median |v| = {median:.6g} >= 1e14: "
            "set datetime_format for other epoch units",
            source=source, median=median, examples=texts[:3],
        )
    best_spec, best_ok = max(tried, key=lambda item: int(item[1].sum()))  # first maximum wins ties
    if best_ok.sum() >= MIN_SHARE * n:
        return TimeFormat(best_spec.kind, best_spec.format)
    failing = [texts[i] for i in np.flatnonzero(~best_ok)[:3]]
    candidates = [{"format": s.format, "parsed": int(ok.sum())} for s, ok in tried]
    candidates.append({"format": "epoch", "parsed": int(plain.sum())})
    hint = ""
    if sum(bool(_TIME_ONLY.fullmatch(t)) for t in texts) >= MIN_SHARE * n:
        hint = " Time-only formats are not supported (use date_column with time_of_day_column)."
    raise _parse_error(
        f"no datetime format parses at least 90 % of the first {n} time texts; first failing texts "
        f"{failing}; candidates tried: " + ", ".join(f"{c['format']} ({c['parsed']}/{n})" for c in candidates)
        + "." + hint,
        source=source, examples=failing, candidates=candidates, sample_size=n,
    )


# ---------------------------------------------------------------------------------------------
# Date + time combination
# ---------------------------------------------------------------------------------------------


def combine_date_time(dates: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Date field up to its first space or ``T``, a space, then the time field (§1.5).

    Rows with an empty date or time give ``''``.
    """
    d = _to_arrow(dates)
    t = _to_arrow(times)
    if len(d) != len(t):
        raise ValueError("dates and times must have the same length")
    d_offsets, d_data = _buffers(d)
    used = d_data[d_offsets[0] : d_offsets[-1]]
    if ((used == 32) | (used == 84)).any():  # some date carries " " or "T": cut it there
        d = pc.replace_substring_regex(d, pattern="[ T].*$", replacement="")
        d_offsets, _ = _buffers(d)
    joined = pc.binary_join_element_wise(d, t, " ")
    empty = (np.diff(d_offsets) == 0) | (np.diff(_buffers(t)[0]) == 0)
    if empty.any():
        joined = pc.if_else(pa.array(empty), pa.scalar("", pa.string()), joined)
    return joined.to_numpy(zero_copy_only=False).astype(object, copy=False)


def _swap_day_month(fmt: str) -> str:
    return fmt.replace("%d", "\0").replace("%m", "%d").replace("\0", "%m")


_MAPPED_MIN_BYTES = 1 << 24
_MAP_PRIVATE: int | None = (mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS) if hasattr(mmap, "MAP_ANONYMOUS") else None


def empty_column(size: int, dtype: Any) -> np.ndarray:
    """An uninitialised 1-D array for a large column that is filled block by block.

    Above 16 MiB it lives in its own private anonymous mapping (ordinary process memory, copied
    on write in a forked child), so the kernel's default page policy applies instead of the huge
    pages numpy requests (``MADV_HUGEPAGE``) for large arrays: on the project's VMs huge-page
    faults made the 1 GB load benchmark 1-2 s slower (benchmarks/load.py). Capacity that is never
    written is never resident either way. The mapping is released with the last array that uses it.
    """
    dtype = np.dtype(dtype)
    nbytes = int(size) * dtype.itemsize
    if nbytes < _MAPPED_MIN_BYTES or _MAP_PRIVATE is None:
        return np.empty(size, dtype=dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes, flags=_MAP_PRIVATE), dtype=dtype)


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def _cat_flags(blocks: list[dict[str, Any]], key: str, default: bool) -> np.ndarray:
    """One bool column over the blocks; a block's None stands for ``default`` on all its rows."""
    out = np.full(sum(b["size"] for b in blocks), default, dtype=bool)
    pos = 0
    for b in blocks:
        if b[key] is not None:
            out[pos : pos + b["size"]] = b[key]
        pos += b["size"]
    return out


# ---------------------------------------------------------------------------------------------
# Fast path: fixed-width texts through pyarrow's ISO 8601 cast
# ---------------------------------------------------------------------------------------------
#
# pyarrow casts ``YYYY-MM-DD[ T]hh:mm[:ss[.f]]`` strings to naive nanoseconds an order of magnitude
# faster than the layout tokeniser. Its parser checks every digit position, the separators, month
# 1-12, the day against the month (leap years included), hour <= 23, minute and second <= 59, and
# it rejects zone offsets for a naive target; on any failure the whole cast fails. The fast path
# therefore applies to a block only when every text has one of the lengths below, whose only texts
# pyarrow accepts are exactly the texts that the exact path parses to the same wall time (length 13,
# ``YYYY-MM-DD hh``, is accepted by pyarrow but not by §1.5, so it is never used), and when every
# year lies in YEAR_MIN..YEAR_MAX. Any other block (24:00, an empty or bad text, a zone offset,
# mixed lengths, another year) goes through the exact path unchanged.

_ISO_LENGTHS = frozenset({10, 16, 19, *range(21, 30)})  # date, hh:mm, hh:mm:ss, hh:mm:ss.f{1,9}
_FAST_WIDTH = {"Y": 4, "m": 2, "d": 2, "H": 2, "M": 2, "S": 2}
_YEAR_LO = int.from_bytes(str(YEAR_MIN).encode(), "big")
_YEAR_HI = int.from_bytes(str(YEAR_MAX).encode(), "big")
_TS_NS = pa.timestamp("ns")


@dataclass(frozen=True)
class _FastPlan:
    """How the texts of one format become ISO texts for pyarrow's cast.

    ``runs`` is None when the texts are ISO already (then any length in ``lengths``); otherwise
    the texts have the one length in ``lengths``, ``literals`` are (position, byte) checks of the
    format's literal characters and ``runs`` (source, target, width) copy digit runs into an ISO
    text of ``iso_length`` bytes whose separators are ``consts`` (position, byte).
    """

    lengths: frozenset[int]
    runs: tuple[tuple[int, int, int], ...] | None = None
    literals: tuple[tuple[int, int], ...] = ()
    consts: tuple[tuple[int, int], ...] = ()
    iso_length: int = 0


def _fast_plan(spec: _Spec, coerce_year: int | None) -> _FastPlan | None:
    """The fast-path plan of a format, or None where only the exact path applies: day/month family
    (order decided on the whole column), epoch, parts, ``coerce_year``, or a format with other
    directives than ``%Y %m %d %H %M %S``."""
    if coerce_year is not None or spec.daymonth:
        return None
    if spec.kind == "iso":
        return _FastPlan(_ISO_LENGTHS)
    if spec.kind not in ("strptime", "compact") or spec.regex is None:
        return None
    fields: dict[str, int] = {}
    literals: list[tuple[int, int]] = []
    pos = i = 0
    fmt = spec.format
    while i < len(fmt):
        ch = fmt[i]
        if ch == "%":
            d = fmt[i + 1] if i + 1 < len(fmt) else ""
            if d not in _FAST_WIDTH or d in fields:
                return None
            fields[d] = pos
            pos += _FAST_WIDTH[d]
            i += 2
        elif ch.isspace():  # a whitespace run matches one or more blanks: the fast path wants one space
            while i < len(fmt) and fmt[i].isspace():
                i += 1
            literals.append((pos, 0x20))
            pos += 1
        else:
            if not ch.isascii() or ch.isdigit():
                return None
            literals.append((pos, ord(ch)))
            pos += 1
            i += 1
    keys = set(fields)
    if not ({"Y", "m", "d"} <= keys and keys - {"Y", "m", "d"} in ({"H", "M", "S"}, {"H", "M"}, set())):
        return None
    order = [("Y", 0), ("m", 5), ("d", 8), ("H", 11), ("M", 14), ("S", 17)]
    runs = tuple((fields[d], target, _FAST_WIDTH[d]) for d, target in order if d in fields)
    iso_length = {3: 10, 5: 16, 6: 19}[len(fields)]
    consts = tuple((p, ord(c)) for p, c in ((4, "-"), (7, "-"), (10, " "), (13, ":"), (16, ":")) if p < iso_length)
    return _FastPlan(frozenset({pos}), runs, tuple(literals), consts, iso_length)


def _uniform_length(arr: pa.Array) -> tuple[int, int, np.ndarray] | None:
    """(length, byte offset of the first text, data bytes) when every text has the same length."""
    n = len(arr)
    bufs = arr.buffers()
    if n == 0 or arr.null_count or bufs[2] is None:
        return None
    offsets = np.frombuffer(bufs[1], dtype=np.int32)[arr.offset : arr.offset + n + 1]
    first, end = int(offsets[0]), int(offsets[-1])
    length = (end - first) // n
    if length <= 0 or length * n != end - first:
        return None
    lens = np.diff(offsets)
    if int(lens.min()) != length or int(lens.max()) != length:
        return None
    return length, first, np.frombuffer(bufs[2], dtype=np.uint8)


def _fast_wall(arr: pa.Array, plan: _FastPlan) -> np.ndarray | None:
    """Naive wall ns of every text of ``arr`` through pyarrow, or None if any text needs the exact path."""
    uniform = _uniform_length(arr)
    if uniform is None or uniform[0] not in plan.lengths:
        return None
    length, first, data = uniform
    n = len(arr)
    if plan.runs is None:
        iso, iso_data, iso_length, iso_first = arr, data, length, first
    else:
        if n * plan.iso_length > np.iinfo(np.int32).max:  # pragma: no cover - blocks are far smaller
            return None
        mat = data[first : first + n * length].reshape(n, length)
        for p, byte in plan.literals:
            if not bool((mat[:, p] == byte).all()):
                return None
        iso_length, iso_first = plan.iso_length, 0
        out = np.empty((n, iso_length), dtype=np.uint8)
        for p, byte in plan.consts:
            out[:, p] = byte
        for source, target, width in plan.runs:
            out[:, target : target + width] = mat[:, source : source + width]
        iso_data = out.reshape(-1)
        offsets = np.arange(0, (n + 1) * iso_length, iso_length, dtype=np.int32)
        iso = pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(iso_data)])
    years = np.ndarray((n,), dtype=">u4", buffer=iso_data, offset=iso_first, strides=(iso_length,))
    if int(years.min()) < _YEAR_LO or int(years.max()) > _YEAR_HI:  # digits are checked by the cast
        return None
    try:
        ts = iso.cast(_TS_NS)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if ts.null_count:  # pragma: no cover - a failed cast raises instead
        return None
    return np.frombuffer(ts.buffers()[1], dtype=np.int64, count=n, offset=ts.offset * 8)


# ---------------------------------------------------------------------------------------------
# Streaming parser
# ---------------------------------------------------------------------------------------------

_PART_INT = re.compile(rb"(?P<v>\d{1,9})")
_PART_SECOND = re.compile(rb"(?P<v>\d{1,9})(?:\.(?P<f>\d{1,9}))?")


def _parse_part(texts: Any, n: int, regex: re.Pattern[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(value ns-or-int, ok) of an integer (or seconds, with fraction) part column."""
    arr = _to_arrow(texts)
    if len(arr) != n:
        raise ValueError("part columns must have the same length")
    value = np.zeros(n, dtype=np.int64)
    ok = np.zeros(n, dtype=bool)
    seconds = "f" in regex.groupindex
    for g in _layout(arr):
        m = regex.fullmatch(g.rep)
        if m is None:
            continue
        mat = g.matrix()
        s, e = m.span("v")
        v = _num(mat, s, e).astype(np.int64)
        if seconds:
            v = np.minimum(v, 60) * NS_PER_S
            if m.span("f")[0] >= 0:
                fs, fe = m.span("f")
                v = v + _num(mat, fs, fe) * 10 ** (9 - (fe - fs))
        sel = g.rows if g.rows is not None else slice(None)
        value[sel] = v
        ok[sel] = True
    return value, ok


class TimeParser:
    """Streaming parser: :meth:`add` (or :meth:`add_parts`) once per block in file order, then
    :meth:`finish`. Block text is discarded after tokenising; the day/month order of the
    ``daymonth`` family is decided on the whole column in :meth:`finish` (§1.8)."""

    def __init__(self, fmt: TimeFormat, *, dayfirst: bool, coerce_year: int | None, source: str,
                 capacity: int = 0) -> None:
        """``capacity`` is an estimate of the rows to come: the wall times are written into one
        array of that size (untouched capacity is never resident), grown when it is exceeded."""
        if fmt.kind == "daymonth" and fmt.format.find("%m") < fmt.format.find("%d"):
            fmt = replace(fmt, format=_swap_day_month(fmt.format))  # keep the day-first spelling
        self._fmt = fmt
        self._spec = _spec_for(fmt)
        self._dayfirst = bool(dayfirst)
        self._source = source
        if coerce_year is not None and not (YEAR_MIN <= coerce_year <= YEAR_MAX):
            raise _parse_error(
                f"coerce_year={coerce_year} is outside the representable years {YEAR_MIN}-{YEAR_MAX}",
                source=source, coerce_year=coerce_year,
            )
        self._coerce = coerce_year
        self._blocks: list[dict[str, Any]] = []
        self._capacity = max(int(capacity), 0)
        self._wall: np.ndarray | None = None  # wall ns of the rows so far (all kinds but daymonth)
        self._n = 0
        self._fast = _fast_plan(self._spec, coerce_year)
        self._fast_blocks = self._slow_blocks = 0  # blocks the fast path took / had to hand on
        self._examples: list[dict] = []
        self._coerced = 0
        # day/month bookkeeping (whole column)
        self._flag_a: dict | None = None  # first row with a > 12 (day-first only)
        self._flag_b: dict | None = None  # first row with b > 12 (month-first only)
        self._feb29: dict[str, int] = {}  # first line of a 29 Feb under each order (coerce_year)
        self._dm_examples: list[dict] = []

    # -- blocks ---------------------------------------------------------------------------------

    def add(self, texts: np.ndarray, lines: np.ndarray) -> None:
        """Tokenise one block of stripped time texts with their 1-based physical line numbers."""
        arr = _to_arrow(texts)
        lines = np.asarray(lines, dtype=np.int64)
        n = len(arr)
        if len(lines) != n:
            raise ValueError("texts and lines must have the same length")
        if n == 0:
            return
        if self._fast is not None:
            wall = _fast_wall(arr, self._fast)
            if wall is not None:  # every row parsed, naive: what the exact path gives for this block
                self._fast_blocks += 1
                self._append_wall(wall)
                self._blocks.append({"size": n, "ok": None, "aware": None})
                return
            self._slow_blocks += 1
            if self._slow_blocks > 2 and 4 * self._slow_blocks > self._fast_blocks:
                self._fast = None  # most blocks need the exact path: stop trying (speed only)
        spec = self._spec
        tok = self._fallback(arr) if spec.regex is None else _tokenize(n, _layout(arr), spec)
        ok = _valid_rows(tok, n)
        self._note_bad(ok, lines, lambda idx: [arr[int(i)].as_py() for i in idx])
        if spec.daymonth:
            self._add_daymonth(tok, ok, lines, arr)
        else:
            self._add_fixed(tok, ok, lines)

    def add_parts(self, parts: Mapping[str, np.ndarray], lines: np.ndarray) -> None:
        """Parse one block of part columns (``year``, ``month``, ``day`` required; ``hour``,
        ``minute``, ``second`` optional, missing = 0; ``second`` may be fractional)."""
        missing = [k for k in ("year", "month", "day") if k not in parts]
        if missing:
            raise ValueError(f"part columns missing: {missing}")
        lines = np.asarray(lines, dtype=np.int64)
        n = len(lines)
        if n == 0:
            return
        ok = np.ones(n, dtype=bool)
        comp: dict[str, np.ndarray] = {}
        for key in ("year", "month", "day", "hour", "minute", "second"):
            if key not in parts:
                comp[key] = np.zeros(n, dtype=np.int64)
                continue
            value, good = _parse_part(parts[key], n, _PART_SECOND if key == "second" else _PART_INT)
            comp[key] = value
            ok &= good
        year, month, day = comp["year"], comp["month"], comp["day"]
        hour, minute, second = comp["hour"], comp["minute"], comp["second"]
        ok &= (year >= YEAR_MIN) & (year <= YEAR_MAX) & (month >= 1) & (month <= 12)
        ok &= (day >= 1) & (day <= _dim(year, month)) & (minute <= 59) & (second < 60 * NS_PER_S)
        ok &= (hour <= 23) | ((hour == 24) & (minute == 0) & (second == 0))
        tok = {"year": year, "c1": month, "c2": day, "ok": ok,
               "tod": hour * NS_PER_H + minute * NS_PER_MIN + second}
        keys = [k for k in ("year", "month", "day", "hour", "minute", "second") if k in parts]

        def raw(idx: np.ndarray) -> list[str]:
            cols = {k: _to_arrow(parts[k]) for k in keys}
            return [" ".join(f"{k}={cols[k][int(i)].as_py()}" for k in keys) for i in idx]

        self._note_bad(ok, lines, raw)
        self._add_fixed(tok, ok, lines)

    # -- internals ------------------------------------------------------------------------------

    def _note_bad(self, ok: np.ndarray, lines: np.ndarray, raw_of: Any) -> None:
        bad = np.flatnonzero(~ok)
        need = MAX_EXAMPLES - len(self._examples)
        if need > 0 and bad.size:
            idx = bad[:need]
            raws = raw_of(idx)
            self._examples += [{"line": int(lines[i]), "raw": r} for i, r in zip(idx, raws, strict=True)]

    def _coerce_rows(self, year: np.ndarray, ok: np.ndarray) -> np.ndarray:
        self._coerced += int((ok & (year != self._coerce)).sum())
        return np.where(ok, self._coerce, year)

    def _raise_feb29(self, line: int) -> None:
        raise LoadError(
            "COERCE_YEAR_INVALID_DATE",
            f"{self._source}: line {line}: 29 February does not exist in coerce_year={self._coerce}",
            details={"source": self._source, "line": line, "coerce_year": self._coerce},
        )

    def _add_fixed(self, tok: dict[str, np.ndarray], ok: np.ndarray, lines: np.ndarray) -> None:
        n = len(ok)
        aware = tok.get("aware")
        plus = tok.get("plus", 0)  # fallback path: 24:00 rewritten to 00:00 of the same date
        if "ns" in tok and self._coerce is None:
            wall = np.where(ok, tok["ns"] + plus, 0)
        else:
            if "ns" in tok:  # epoch / fallback with coerce_year: work on the (UTC) calendar date
                days = tok["ns"] // NS_PER_DAY
                year, month, day = _civil_from_days(days)
                tod, off = tok["ns"] - days * NS_PER_DAY + plus, None
            else:
                year, month, day, tod, off = tok["year"], tok["c1"], tok["c2"], tok["tod"], tok.get("off")
            if self._coerce is not None:
                if not _is_leap(self._coerce):
                    feb29 = np.flatnonzero(ok & (month == 2) & (day == 29))
                    if feb29.size:
                        self._raise_feb29(int(lines[feb29[0]]))
                year = self._coerce_rows(year, ok)
            wall = _to_ns(year, month, day, tod, off, ok)
        self._append_wall(wall)
        self._blocks.append({"size": n, "ok": ok, "aware": aware})

    def _append_wall(self, wall: np.ndarray) -> None:
        m = len(wall)
        if self._wall is None or self._n + m > self._wall.size:
            size = max(self._n + m, self._capacity, 2 * (self._wall.size if self._wall is not None else 0))
            grown = empty_column(size, np.int64)
            if self._wall is not None:
                grown[: self._n] = self._wall[: self._n]
            self._wall = grown
        self._wall[self._n : self._n + m] = wall
        self._n += m

    def _add_daymonth(self, tok: dict[str, np.ndarray], ok: np.ndarray, lines: np.ndarray,
                      arr: pa.Array) -> None:
        a, b, ok_df, ok_mf, year = tok["c1"], tok["c2"], tok["ok_df"], tok["ok_mf"], tok["year"]
        if self._flag_a is None:
            hit = np.flatnonzero(ok_df & (a > 12))
            if hit.size:
                self._flag_a = {"line": int(lines[hit[0]]), "raw": arr[int(hit[0])].as_py()}
        if self._flag_b is None:
            hit = np.flatnonzero(ok_mf & (b > 12))
            if hit.size:
                self._flag_b = {"line": int(lines[hit[0]]), "raw": arr[int(hit[0])].as_py()}
        if len(self._dm_examples) < 3:
            good = np.flatnonzero(ok)[: 3 - len(self._dm_examples)]
            self._dm_examples += [{"line": int(lines[i]), "raw": arr[int(i)].as_py()} for i in good]
        if self._coerce is not None:
            if not _is_leap(self._coerce):
                for key, hit in (("df", ok_df & (a == 29) & (b == 2)), ("mf", ok_mf & (a == 2) & (b == 29))):
                    idx = np.flatnonzero(hit)
                    if idx.size and key not in self._feb29:
                        self._feb29[key] = int(lines[idx[0]])
            year = self._coerce_rows(year, ok)
        self._blocks.append({
            "year": year.astype(np.int16),
            "a": np.where(ok, a, 1).astype(np.uint8),
            "b": np.where(ok, b, 1).astype(np.uint8),
            "tod": tok["tod"],
            "ok": ok,
        })

    def _fallback(self, arr: pa.Array) -> dict[str, np.ndarray]:
        """General strptime format through pandas; ``24:00`` rewritten to 00:00 plus one day."""
        pattern = r"(^|[^0-9])24:00((?::00(?:\.0+)?)?)($|[^0-9:.])"
        plus = pc.match_substring_regex(arr, pattern=pattern).to_numpy(zero_copy_only=False)
        fixed = pc.replace_substring_regex(arr, pattern=pattern, replacement=r"\100:00\2\3")
        values = pd.to_datetime(
            pd.Series(fixed.to_numpy(zero_copy_only=False), dtype=object),
            format=self._spec.format, errors="coerce", utc=self._spec.aware_fallback,
        )
        years = values.dt.year
        ok = (values.notna() & (years >= YEAR_MIN) & (years <= YEAR_MAX)).to_numpy(dtype=bool)
        values = values.where(ok)
        ns = values.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
        n = len(arr)
        return {"ok": ok, "ns": np.where(ok, ns, 0), "plus": plus.astype(np.int64) * NS_PER_DAY,
                "aware": np.full(n, self._spec.aware_fallback) & ok}

    # -- result ---------------------------------------------------------------------------------

    def finish(self) -> ParsedTimes:
        """Decide the day/month order (daymonth family), convert, and return the parsed column."""
        warnings: list[ReportWarning] = []
        dayfirst_applied = False
        fmt = self._fmt.format
        if self._spec.daymonth:
            wall, ok, dayfirst, dayfirst_applied = self._finish_daymonth(warnings)
            aware = np.zeros(len(ok), dtype=bool)
            if not dayfirst:
                fmt = _swap_day_month(fmt)
        elif self._blocks and self._wall is not None:
            wall = self._wall[: self._n]
            ok = _cat_flags(self._blocks, "ok", True)
            aware = _cat_flags(self._blocks, "aware", False) & ok
        else:
            wall, ok, aware = np.zeros(0, np.int64), np.zeros(0, bool), np.zeros(0, bool)
        self._blocks = []
        self._wall, self._n = None, 0
        return ParsedTimes(
            wall_ns=wall,
            aware=aware,
            valid=ok,
            unparseable_examples=list(self._examples),
            unparseable_count=int((~ok).sum()),
            coerced_year_rows=self._coerced,
            dayfirst_applied=dayfirst_applied,
            datetime_format=fmt,
            warnings=warnings,
        )

    def _finish_daymonth(self, warnings: list[ReportWarning]) -> tuple[np.ndarray, np.ndarray, bool, bool]:
        if self._flag_a is not None and self._flag_b is not None:
            examples = [self._flag_a, self._flag_b]
            raise LoadError(
                "DATETIME_PARSING_ERROR",
                f"{self._source}: inconsistent day/month order: line {examples[0]['line']} "
                f"({examples[0]['raw']!r}) is only valid day-first, line {examples[1]['line']} "
                f"({examples[1]['raw']!r}) only month-first",
                details={"source": self._source, "examples": examples, "datetime_format": self._fmt.format},
            )
        applied = False
        if self._flag_a is not None:
            dayfirst = True
        elif self._flag_b is not None:
            dayfirst = False
        else:
            dayfirst, applied = self._dayfirst, True
        if self._coerce is not None and ("df" if dayfirst else "mf") in self._feb29:
            self._raise_feb29(self._feb29["df" if dayfirst else "mf"])
        if not self._blocks:
            return np.zeros(0, np.int64), np.zeros(0, bool), dayfirst, applied
        year, a, b_, tod, ok = (_cat([b[k] for b in self._blocks]) for k in ("year", "a", "b", "tod", "ok"))
        year, a, b_ = year.astype(np.int32), a.astype(np.int32), b_.astype(np.int32)
        self._blocks = []
        day, month = (a, b_) if dayfirst else (b_, a)
        ok = ok & (day >= 1) & (day <= _dim(year, month))
        wall = _to_ns(year, month, day, tod, None, ok)
        if applied and ok.any():
            order = "day-first" if dayfirst else "month-first"
            warnings.append(ReportWarning(
                code="AMBIGUOUS_DAY_MONTH",
                message=f"{self._source}: no day or month component exceeds 12; {order} order assumed "
                f"(dayfirst={dayfirst})",
                count=int(ok.sum()),
                examples=self._dm_examples[:MAX_EXAMPLES],
            ))
        return wall, ok, dayfirst, applied


# ---------------------------------------------------------------------------------------------
# Time zones (§1.6)
# ---------------------------------------------------------------------------------------------

_COUNT_KEYS = (
    "ambiguous_earliest", "ambiguous_latest", "ambiguous_dropped", "ambiguous_assumed_earliest",
    "nonexistent_shifted", "nonexistent_dropped", "aware_rows", "naive_rows",
)
_SAFE_LO = int(np.datetime64("1677-09-23T00:00:00", "ns").astype(np.int64))
_SAFE_HI = int(np.datetime64("2262-04-10T00:00:00", "ns").astype(np.int64))


def _offsets(instants: np.ndarray, tz: zoneinfo.ZoneInfo) -> np.ndarray:
    """UTC offset in ns of ``tz`` at each UTC instant (vectorised through pandas)."""
    x = np.clip(instants, _SAFE_LO, _SAFE_HI)
    idx = pd.DatetimeIndex(x.view("datetime64[ns]"), tz="UTC").tz_convert(tz).tz_localize(None)
    return np.asarray(idx, dtype="datetime64[ns]").view(np.int64) - x


def _wall_text(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")).replace("T", " ")


def _dst_error(
    code: str, what: str, rows: np.ndarray, lines: np.ndarray, source: str, option: str
) -> LoadError:
    first = [int(v) for v in lines[rows[:MAX_EXAMPLES]]]
    return LoadError(
        code,
        f"{source}: {rows.size} {what} wall time(s) under {option}='raise'; first lines {first}",
        details={"source": source, "count": int(rows.size), "lines": first},
    )


def localize(
    wall_ns: np.ndarray, aware: np.ndarray, lines: np.ndarray, *, timezone: str, ambiguous: str,
    nonexistent: str, source: str,
) -> Localized:
    """Convert naive wall times of ``timezone`` to UTC ns (§1.6); aware rows pass through.

    Rows must be in file order (``infer`` depends on it) and should all be valid parsed rows.
    A wall time is resolved from the offsets in force one day before and one day after it.
    """
    if ambiguous not in ("infer", "earliest", "latest", "drop", "raise"):
        raise ValueError(f"unknown ambiguous policy {ambiguous!r}")
    if nonexistent not in ("shift_forward", "drop", "raise"):
        raise ValueError(f"unknown nonexistent policy {nonexistent!r}")
    wall = np.asarray(wall_ns, dtype=np.int64)
    aware = np.asarray(aware, dtype=bool)
    if not getattr(lines, "lazy_line_numbers", False):  # else indexed like an array (examples only)
        lines = np.asarray(lines, dtype=np.int64)
    n = len(wall)
    utc = wall.copy()
    keep = np.ones(n, dtype=bool)
    counts = dict.fromkeys(_COUNT_KEYS, 0)
    counts["aware_rows"] = int(aware.sum())
    counts["naive_rows"] = n - counts["aware_rows"]
    warnings: list[ReportWarning] = []
    naive = np.flatnonzero(~aware)
    if naive.size == 0:
        return Localized(utc, keep, counts, warnings)
    tz = zoneinfo.ZoneInfo(timezone)
    w = wall[naive]
    before = _offsets(w - NS_PER_DAY, tz)
    after = _offsets(w + NS_PER_DAY, tz)
    utc[naive] = w - before
    near = np.flatnonzero(before != after)
    if near.size == 0:
        return Localized(utc, keep, counts, warnings)
    wn, ob, oa = w[near], before[near], after[near]
    u_before, u_after = wn - ob, wn - oa
    ok_before = _offsets(u_before, tz) == ob
    ok_after = _offsets(u_after, tz) == oa
    rows = naive[near]
    utc[rows] = np.where(ok_before, u_before, u_after)
    # nonexistent: neither offset reproduces the wall time -> offset before the transition
    gap = ~ok_before & ~ok_after
    gap_rows = rows[gap]
    if gap_rows.size:
        utc[gap_rows] = u_before[gap]
        if nonexistent == "raise":
            raise _dst_error("NONEXISTENT_TIME", "nonexistent", gap_rows, lines, source, "nonexistent")
        if nonexistent == "drop":
            keep[gap_rows] = False
            counts["nonexistent_dropped"] = int(gap_rows.size)
        else:
            counts["nonexistent_shifted"] = int(gap_rows.size)
    amb = ok_before & ok_after
    amb_rows = rows[amb]
    if amb_rows.size:
        early = np.minimum(u_before[amb], u_after[amb])
        late = np.maximum(u_before[amb], u_after[amb])
        wall_amb = wn[amb]
        if ambiguous == "raise":
            raise _dst_error("AMBIGUOUS_TIME", "ambiguous", amb_rows, lines, source, "ambiguous")
        use_late = np.zeros(amb_rows.size, dtype=bool)
        if ambiguous == "latest":
            use_late[:] = True
        elif ambiguous == "drop":
            keep[amb_rows] = False
            counts["ambiguous_dropped"] = int(amb_rows.size)
        elif ambiguous == "infer":
            assumed = _infer(wall_amb, early, late, use_late)
            if assumed.size:
                counts["ambiguous_assumed_earliest"] = int(assumed.size)
                warnings.append(ReportWarning(
                    code="AMBIGUOUS_NOT_INFERRED",
                    message=f"{source}: {assumed.size} ambiguous wall time(s) in {timezone} never step "
                    "backwards within their repeated hour; the earliest offset was assumed",
                    count=int(assumed.size),
                    examples=[{"line": int(lines[amb_rows[i]]), "timestamp": _wall_text(wall_amb[i])}
                              for i in assumed[:MAX_EXAMPLES]],
                ))
        utc[amb_rows] = np.where(use_late, late, early)
        if ambiguous != "drop":
            counts["ambiguous_latest"] = int(use_late.sum())
            counts["ambiguous_earliest"] = int(amb_rows.size - use_late.sum())
    return Localized(utc, keep, counts, warnings)


def _infer(wall: np.ndarray, early: np.ndarray, late: np.ndarray, use_late: np.ndarray) -> np.ndarray:
    """``infer`` per transition (§1.6): sets ``use_late`` in place; returns the rows assumed earliest.

    Rows of one transition are those whose [earliest, latest] instants overlap (they all contain
    the transition instant); the arrays are in file order.
    """
    order = np.argsort(early, kind="stable")
    run_max = np.maximum.accumulate(late[order])
    cluster_sorted = np.r_[0, np.cumsum(early[order][1:] > run_max[:-1])]
    cluster = np.empty_like(cluster_sorted)
    cluster[order] = cluster_sorted
    by_cluster = np.argsort(cluster, kind="stable")  # file order within each transition
    bounds = np.flatnonzero(np.diff(cluster[by_cluster])) + 1
    assumed: list[np.ndarray] = []
    for members in np.split(by_cluster, bounds):  # one iteration per DST transition
        back = np.flatnonzero(wall[members][1:] <= wall[members][:-1])
        if back.size:
            use_late[members[back[0] + 1 :]] = True
        else:
            assumed.append(members)
    return np.sort(np.concatenate(assumed)) if assumed else np.zeros(0, dtype=np.int64)
