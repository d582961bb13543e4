"""Canonical frame invariants (stages.md §0.3) and their check."""

from __future__ import annotations

import numpy as np
import pandas as pd

from zeitflow.errors import FrameError

INDEX_NAME = "utc"
INDEX_DTYPE = "datetime64[ns, UTC]"


def _fail(name: str, rule: str, message: str, **details: object) -> FrameError:
    return FrameError(
        "INVALID_FRAME", f"{name}: {message}", details={"frame": name, "rule": rule, **details}
    )


_SLICE = 1 << 20


def _first_not_increasing(ns: np.ndarray) -> int | None:
    """Position of the first stamp not after its predecessor, checked in slices so that a long
    index needs no full-length temporary."""
    for start in range(0, ns.size - 1, _SLICE):
        stop = min(start + _SLICE, ns.size - 1)
        bad = np.flatnonzero(ns[start + 1 : stop + 1] <= ns[start:stop])
        if bad.size:
            return start + int(bad[0]) + 1
    return None


def validate_frame(frame: pd.DataFrame, name: str) -> None:
    """Raise ``FrameError`` (INVALID_FRAME) naming the violated rule and first offender."""
    if not isinstance(frame, pd.DataFrame):
        raise _fail(name, "type", f"expected a pandas DataFrame, got {type(frame).__name__}")
    index = frame.index
    if not isinstance(index, pd.DatetimeIndex):
        raise _fail(name, "index_type", "the index must be a DatetimeIndex")
    if str(index.dtype) != INDEX_DTYPE:
        raise _fail(name, "index_dtype", f"the index dtype must be {INDEX_DTYPE}, got {index.dtype}")
    if index.name != INDEX_NAME:
        raise _fail(name, "index_name", f"the index must be named {INDEX_NAME!r}, got {index.name!r}")
    if index.hasnans:
        raise _fail(name, "index_nat", "the index contains NaT")
    if len(index) > 1:
        ns = index.asi8
        i = _first_not_increasing(ns)
        if i is not None:
            rule = "index_duplicate" if ns[i] == ns[i - 1] else "index_order"
            raise _fail(
                name, rule, f"the index must be strictly increasing; first offender at {index[i].isoformat()}",
                timestamp=index[i].isoformat(),
            )
    if frame.shape[1] == 0:
        raise _fail(name, "no_columns", "a frame needs at least one channel column")
    seen: set[str] = set()
    for column in frame.columns:
        if not isinstance(column, str) or not column:
            raise _fail(name, "column_name", f"column names must be non-empty strings, got {column!r}",
                        column=str(column))
        if column in seen:
            raise _fail(name, "column_unique", f"duplicate column name {column!r}", column=column)
        seen.add(column)
        dtype = frame[column].dtype
        if dtype != np.float64:
            raise _fail(name, "column_dtype", f"column {column!r} must be float64, got {dtype}", column=column)
        values = frame[column].to_numpy()
        inf = np.isinf(values)
        if inf.any():
            i = int(np.flatnonzero(inf)[0])
            raise _fail(name, "column_inf", f"column {column!r} holds ±inf at {index[i].isoformat()}",
                        column=column, timestamp=index[i].isoformat())


def empty_frame(columns: list[str]) -> pd.DataFrame:
    """A canonical frame with no rows and the given channels."""
    index = pd.DatetimeIndex([], dtype=INDEX_DTYPE, name=INDEX_NAME)
    return pd.DataFrame({c: np.array([], dtype=np.float64) for c in columns}, index=index)
