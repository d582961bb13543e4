"""Calendar features (stages.md §6): sin/cos of the year, month, week and day phase, and the holiday flag.

Everything is computed on integer nanoseconds and vectorised with numpy: φ = (s mod P)/P is reduced before it is
multiplied by 2π (§6.3). Local-time formulas use the local wall clock of ``options.timezone`` (from pandas'
vectorised ``tz_convert``), so on a DST change day D follows the clock. The holiday set depends only on dates,
never on holiday names (those depend on the process locale), and nothing depends on the process time zone.

Mode and horizon are not applied here; ``build_windows`` applies them (§7.5).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final
from zoneinfo import ZoneInfo

import holidays
import numpy as np
import pandas as pd

from zeitflow.options.features import ComponentOptions, TimeFeatureOptions
from zeitflow.reports import ProgressCallback, ProgressEvent, emit

__all__ = ["UTC_PERIODS_S", "holiday_dates", "time_features"]

NS_PER_SECOND: Final = 1_000_000_000
DAY_NS: Final = 86_400 * NS_PER_SECOND
WEEK_NS: Final = 7 * DAY_NS
#: Periods of the UTC-mode formulas in seconds (§6.3).
UTC_PERIODS_S: Final = {"year": 31_557_600, "month": 2_629_800, "week": 604_800, "day": 86_400}
_PREFIX: Final = {"year": "Y", "month": "M", "week": "W", "day": "D"}
_NAT: Final = np.iinfo(np.int64).min
_SUNDAY: Final = 6  # Monday = 0
_THURSDAY: Final = 3  # weekday of the epoch, 1970-01-01


def time_features(
    times: pd.DatetimeIndex | pd.Series | np.ndarray | Sequence[Any],
    options: TimeFeatureOptions,
    *,
    progress: ProgressCallback | None = None,
) -> pd.DataFrame:
    """Evaluate every enabled calendar component at ``times`` (§6.1, §6.3).

    ``times`` is a UTC ``DatetimeIndex`` or a flat array of instants (tz-aware values are converted to UTC; naive
    ones, such as numpy ``datetime64``, are read as UTC). The result has one row per time, the UTC times as index
    ``utc`` (duplicates kept), and float64 columns ``Y_sin, Y_cos, M_sin, M_cos, W_sin, W_cos, D_sin, D_cos, H``
    for the enabled components only. A NaT time gives NaN in every column.
    """
    index = _utc_index(times)
    utc_ns = index.asi8.copy()
    valid = utc_ns != _NAT
    utc_ns[~valid] = 0
    local_ns: np.ndarray | None = None
    if any(comp.enabled and comp.local_time for _, comp in options.components()):
        local_ns = _local_ns(index, options.timezone, valid)

    columns: dict[str, np.ndarray] = {}
    for name, comp in options.components():
        if not comp.enabled:
            continue
        if name == "holiday":
            columns["H"] = _holiday_flag(_days(comp, utc_ns, local_ns), valid, options)
            continue
        s_ns, p_ns = _phase_parts(name, comp, utc_ns, local_ns)
        phi = (s_ns % p_ns).astype(np.float64) / p_ns.astype(np.float64)
        angle = 2.0 * np.pi * phi
        columns[f"{_PREFIX[name]}_sin"] = np.sin(angle)
        columns[f"{_PREFIX[name]}_cos"] = np.cos(angle)

    for values in columns.values():
        values[~valid] = np.nan
    frame = pd.DataFrame(columns, index=index, dtype=np.float64)
    emit(progress, ProgressEvent(stage="features", unit="phase", done=1, total=1, message="calendar features",
                                 metrics={"rows": float(len(index)), "columns": float(len(columns))}))
    return frame


def holiday_dates(options: TimeFeatureOptions, years: Sequence[int] | np.ndarray) -> np.ndarray:
    """Sorted ``datetime64[D]`` holiday dates of ``options.holiday_country`` (and subdivision) in ``years`` (§6.3).

    Public holidays with observed days; Sundays removed when ``holiday_exclude_sundays`` is true. Only the dates are
    used, never the names.
    """
    years = sorted({int(y) for y in years})
    if not years:
        return np.array([], dtype="datetime64[D]")
    calendar = holidays.country_holidays(
        options.holiday_country, subdiv=options.holiday_subdivision, years=years, categories=("public",),
        observed=True,
    )
    dates = np.array(sorted(calendar.keys()), dtype="datetime64[D]")
    if options.holiday_exclude_sundays:
        dates = dates[_weekday(dates.astype(np.int64)) != _SUNDAY]
    return dates


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def _utc_index(times: Any) -> pd.DatetimeIndex:
    """``times`` as a UTC ``DatetimeIndex`` in ns, named ``utc``."""
    if isinstance(times, pd.DatetimeIndex):
        index = times
    else:
        values = times if isinstance(times, pd.Series) else np.asarray(times)
        if values.ndim != 1:
            raise ValueError(f"times must be flat (one dimension), got shape {values.shape}")
        if values.dtype.kind in "biufc":
            raise TypeError(f"times must be datetimes, got dtype {values.dtype}")
        index = pd.DatetimeIndex(pd.to_datetime(values, utc=True))
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").rename("utc")


def _local_ns(index: pd.DatetimeIndex, timezone: str, valid: np.ndarray) -> np.ndarray:
    """Local wall-clock time in ``timezone`` as ns since 1970-01-01 00:00 (local), 0 where the time is NaT."""
    wall = index.tz_convert(ZoneInfo(timezone)).tz_localize(None)
    local = np.asarray(wall.asi8).copy()
    local[~valid] = 0
    return local


def _weekday(days: np.ndarray) -> np.ndarray:
    """Weekday (Monday = 0) of days counted from 1970-01-01 (a Thursday)."""
    return (days + _THURSDAY) % 7


def _phase_parts(
    name: str, comp: ComponentOptions, utc_ns: np.ndarray, local_ns: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """``(s, P)`` in integer ns for component ``name``: UTC formulas or local-time formulas (§6.3)."""
    if not comp.local_time:
        period = np.full(utc_ns.shape, UTC_PERIODS_S[name] * NS_PER_SECOND, dtype=np.int64)
        return utc_ns, period
    assert local_ns is not None
    days = local_ns // DAY_NS
    sod = local_ns - days * DAY_NS  # local clock time of day, fractions included
    if name == "day":
        return sod, np.full(sod.shape, DAY_NS, dtype=np.int64)
    if name == "week":
        return _weekday(days) * DAY_NS + sod, np.full(sod.shape, WEEK_NS, dtype=np.int64)
    date = days.astype("datetime64[D]")
    unit = "datetime64[Y]" if name == "year" else "datetime64[M]"
    period_start = date.astype(unit)
    first = period_start.astype("datetime64[D]")
    length = ((period_start + 1).astype("datetime64[D]") - first).astype(np.int64)  # 365/366 or days in month
    elapsed = (date - first).astype(np.int64)  # day_of_year − 1 or day − 1
    return elapsed * DAY_NS + sod, length * DAY_NS


def _days(comp: ComponentOptions, utc_ns: np.ndarray, local_ns: np.ndarray | None) -> np.ndarray:
    """Calendar date of every time as days since 1970-01-01: the local date with ``local_time``, else the UTC date."""
    ns = local_ns if comp.local_time and local_ns is not None else utc_ns
    return ns // DAY_NS


def _holiday_flag(days: np.ndarray, valid: np.ndarray, options: TimeFeatureOptions) -> np.ndarray:
    """1.0 where the date is a holiday, else 0.0 (§6.3)."""
    if not valid.any():
        return np.zeros(days.shape, dtype=np.float64)
    present = np.unique(days[valid].astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970)
    # Neighbouring years too, so that an observed day moved across New Year is found whichever years are present.
    years = np.unique(np.concatenate([present - 1, present, present + 1]))
    dates = holiday_dates(options, years).astype(np.int64)
    return np.isin(days, dates).astype(np.float64)
