"""Options of the load stage (stages.md §1.3)."""

from __future__ import annotations

import codecs
import math
import zoneinfo
from typing import Any

from pydantic import Field, field_validator, model_validator

from zeitflow.options.base import Options, check_choice, check_range, param_error
from zeitflow.options.common import as_int

DEFAULT_NA_VALUES: tuple[str, ...] = ("", "nan", "NaN", "NA", "N/A", "n/a", "null", "NULL", "None", "-", "#N/A")
DELIMITERS = ("auto", ",", ";", "\t")
DECIMALS = ("auto", ".", ",")
THOUSANDS = (".", ",", " ", "'")
HEADERS = ("auto", "yes", "no")
BAD_LINES = ("skip", "error")
AMBIGUOUS = ("infer", "earliest", "latest", "drop", "raise")
NONEXISTENT = ("shift_forward", "drop", "raise")
DUPLICATES = ("first", "last", "mean", "raise")
DATETIME_KEYWORDS = ("iso", "epoch_s", "epoch_ms")
PART_KEYS = ("year", "month", "day", "hour", "minute", "second")
PART_REQUIRED = ("year", "month", "day")
CHUNK_ROWS_MIN = 10_000
CHUNK_ROWS_MAX = 50_000_000

# Predecessor spellings (§0.6, §14) accepted as aliases.
_TRUE = ("ja", "Ja", "JA")
_FALSE = ("nein", "Nein", "NEIN")
_DELIMITER_ALIASES = {"tab": "\t", "\\t": "\t", "TAB": "\t"}

ColumnRef = str | int


def _as_bool(name: str, value: Any) -> Any:
    """Map the predecessor's 'ja'/'nein' onto true/false; other values go to pydantic."""
    if isinstance(value, str):
        if value.strip() in _TRUE:
            return True
        if value.strip() in _FALSE:
            return False
    return value


def _check_ref(name: str, value: Any) -> Any:
    """A column reference: a non-empty name or a position >= 0."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise param_error("PARAM_NOT_INTEGER", f"{name}={value!r} is not a column name or 0-based position")
    if isinstance(value, float):
        value = as_int(name, value)
    if isinstance(value, int):
        check_range(name, value, 0, math.inf, low_text="0")
        return value
    if isinstance(value, str):
        if not value.strip():
            raise param_error("MISSING_PARAMETER", f"{name}={value!r} is empty: give a column name or position")
        return value.strip()
    raise param_error("INVALID_CHOICE", f"{name}={value!r} must be a column name (str) or a 0-based position (int)")


class LoadOptions(Options):
    """How ``read_raw`` turns a raw export into a canonical frame (§1.3)."""

    encoding: str = "auto"
    delimiter: str = "auto"
    decimal: str = "auto"
    thousands: str | None = None
    header: str = "auto"
    skip_rows: int = 0
    bad_lines: str = "skip"
    na_values: list[str] = Field(default_factory=lambda: list(DEFAULT_NA_VALUES))
    time_column: ColumnRef | None = None
    date_column: ColumnRef | None = None
    time_of_day_column: ColumnRef | None = None
    part_columns: dict[str, ColumnRef] | None = None
    value_columns: list[ColumnRef] | None = None
    rename: dict[str, str] = Field(default_factory=dict)
    datetime_format: str | None = None
    dayfirst: bool = True
    coerce_year: int | None = None
    timezone: str = "UTC"
    ambiguous: str = "infer"
    nonexistent: str = "shift_forward"
    duplicates: str = "first"
    chunk_rows: int = 1_000_000

    # -- single fields -------------------------------------------------------------------------

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        if value == "auto":
            return value
        try:
            codecs.lookup(value)
        except LookupError:
            raise param_error(
                "INVALID_CHOICE", f"encoding={value!r} is not allowed: choose 'auto' or a Python codec name"
            ) from None
        return value

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = _DELIMITER_ALIASES.get(value, value)
            check_choice("delimiter", value, DELIMITERS)
        return value

    @field_validator("decimal")
    @classmethod
    def _decimal(cls, value: str) -> str:
        check_choice("decimal", value, DECIMALS)
        return value

    @field_validator("thousands")
    @classmethod
    def _thousands(cls, value: str | None) -> str | None:
        if value is not None:
            check_choice("thousands", value, THOUSANDS)
        return value

    @field_validator("header", mode="before")
    @classmethod
    def _header(cls, value: Any) -> Any:
        value = _as_bool("header", value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, str):
            check_choice("header", value, HEADERS)
        return value

    @field_validator("skip_rows", "chunk_rows", "coerce_year", mode="before")
    @classmethod
    def _integers(cls, value: Any, info: Any) -> Any:
        return as_int(info.field_name, value)

    @field_validator("skip_rows")
    @classmethod
    def _skip_rows(cls, value: int) -> int:
        check_range("skip_rows", value, 0, 100_000)
        return value

    @field_validator("chunk_rows")
    @classmethod
    def _chunk_rows(cls, value: int) -> int:
        check_range("chunk_rows", value, CHUNK_ROWS_MIN, CHUNK_ROWS_MAX)
        return value

    @field_validator("coerce_year")
    @classmethod
    def _coerce_year(cls, value: int | None) -> int | None:
        check_range("coerce_year", value, 1, 9999)
        return value

    @field_validator("bad_lines")
    @classmethod
    def _bad_lines(cls, value: str) -> str:
        check_choice("bad_lines", value, BAD_LINES)
        return value

    @field_validator("ambiguous")
    @classmethod
    def _ambiguous(cls, value: str) -> str:
        check_choice("ambiguous", value, AMBIGUOUS)
        return value

    @field_validator("nonexistent")
    @classmethod
    def _nonexistent(cls, value: str) -> str:
        check_choice("nonexistent", value, NONEXISTENT)
        return value

    @field_validator("duplicates")
    @classmethod
    def _duplicates(cls, value: str) -> str:
        check_choice("duplicates", value, DUPLICATES)
        return value

    @field_validator("dayfirst", mode="before")
    @classmethod
    def _dayfirst(cls, value: Any) -> Any:
        return _as_bool("dayfirst", value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError, OSError):
            raise param_error(
                "UNSUPPORTED_TIMEZONE", f"timezone={value!r} is not a known IANA time zone (e.g. 'Europe/Vienna')"
            ) from None
        return value

    @field_validator("datetime_format")
    @classmethod
    def _datetime_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if "%" not in value and value not in DATETIME_KEYWORDS:
            raise param_error(
                "INVALID_CHOICE",
                f"datetime_format={value!r} is not allowed: give a strptime format (with '%' directives) "
                f"or one of {list(DATETIME_KEYWORDS)}",
            )
        return value

    @field_validator("time_column", "date_column", "time_of_day_column", mode="before")
    @classmethod
    def _refs(cls, value: Any, info: Any) -> Any:
        return _check_ref(info.field_name, value)

    @field_validator("value_columns", mode="before")
    @classmethod
    def _value_columns(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [_check_ref(f"value_columns[{i}]", v) for i, v in enumerate(value)]
        return value

    @field_validator("part_columns", mode="before")
    @classmethod
    def _part_columns(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        unknown = [k for k in value if k not in PART_KEYS]
        if unknown:
            raise param_error(
                "INVALID_CHOICE", f"part_columns key {unknown[0]!r} is not allowed: choose from {list(PART_KEYS)}"
            )
        missing = [k for k in PART_REQUIRED if value.get(k) is None]
        if missing:
            raise param_error(
                "MISSING_PARAMETER",
                f"part_columns is missing {missing}: year, month and day are required (hour, minute, second optional)",
            )
        return {k: _check_ref(f"part_columns.{k}", v) for k, v in value.items() if v is not None}

    @field_validator("rename")
    @classmethod
    def _rename(cls, value: dict[str, str]) -> dict[str, str]:
        for key, target in value.items():
            if not target.strip():
                raise param_error("MISSING_PARAMETER", f"rename[{key!r}]={target!r} is empty: give a channel name")
        targets = list(value.values())
        repeated = sorted({t for t in targets if targets.count(t) > 1})
        if repeated:
            raise param_error("PARAM_COMPARISON_FAILED", f"rename maps several columns onto {repeated}")
        return value

    # -- relations -----------------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _default_time_column(cls, data: Any) -> Any:
        """No time form given means ``time_column = 0`` (resolved here so the hash is stable)."""
        if isinstance(data, dict):
            forms = ("time_column", "date_column", "time_of_day_column", "part_columns")
            if all(data.get(k) is None for k in forms):
                data = {**data, "time_column": 0}
        return data

    @model_validator(mode="after")
    def _relations(self) -> LoadOptions:
        has_single = self.time_column is not None
        has_pair = self.date_column is not None or self.time_of_day_column is not None
        has_parts = self.part_columns is not None
        given = [n for n, g in (("time_column", has_single), ("date_column/time_of_day_column", has_pair),
                                ("part_columns", has_parts)) if g]
        if len(given) > 1:
            raise param_error(
                "MUTUALLY_EXCLUSIVE", f"give only one time form; got {' and '.join(given)}"
            )
        if has_pair and (self.date_column is None or self.time_of_day_column is None):
            missing = "time_of_day_column" if self.time_of_day_column is None else "date_column"
            raise param_error("MISSING_PARAMETER", f"{missing} is required together with the other of "
                                                   "date_column/time_of_day_column")
        if self.decimal == "," and self.delimiter == ",":
            raise param_error("PARAM_COMPARISON_FAILED", "decimal=',' must differ from delimiter=','")
        if self.thousands is not None:
            implied = {".": ",", ",": "."}.get(self.thousands) if self.decimal == "auto" else self.decimal
            if self.thousands == self.decimal:
                raise param_error("PARAM_COMPARISON_FAILED",
                                  f"thousands={self.thousands!r} must differ from decimal={self.decimal!r}")
            if self.thousands == self.delimiter:
                raise param_error("PARAM_COMPARISON_FAILED",
                                  f"thousands={self.thousands!r} must differ from delimiter={self.delimiter!r}")
            if implied is not None and implied == self.delimiter:
                raise param_error(
                    "PARAM_COMPARISON_FAILED",
                    f"thousands={self.thousands!r} implies decimal={implied!r}, which must differ from "
                    f"delimiter={self.delimiter!r}",
                )
        if self.value_columns is not None:
            for ref in self.time_refs():
                if any(type(ref) is type(v) and ref == v for v in self.value_columns):
                    raise param_error(
                        "PARAM_COMPARISON_FAILED",
                        f"value_columns lists the time column {ref!r}; a time column cannot be a value column",
                    )
        return self

    def time_refs(self) -> list[ColumnRef]:
        """The column references of the chosen time form."""
        if self.part_columns is not None:
            return list(self.part_columns.values())
        if self.date_column is not None and self.time_of_day_column is not None:
            return [self.date_column, self.time_of_day_column]
        return [self.time_column if self.time_column is not None else 0]
