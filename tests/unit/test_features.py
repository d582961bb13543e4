"""Calendar features (stages.md §6): worked examples T1–T3 (absolute 1e-9), options validation and predecessor
aliases, local-time formulas (leap years, days in month, Monday = 0, local clock across DST), holidays by country
and subdivision, the unit circle property, and independence of the process time zone."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zeitflow.errors import ParameterError
from zeitflow.options.base import to_parameter_error
from zeitflow.options.features import (
    ComponentOptions,
    DayOptions,
    HolidayOptions,
    MonthOptions,
    TimeFeatureOptions,
    WeekOptions,
    YearOptions,
)
from zeitflow.reports import ProgressEvent
from zeitflow.stages.features import holiday_dates, time_features

REPO = Path(__file__).resolve().parents[2]
TOL = 1e-9
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
ALL_COLUMNS = ["Y_sin", "Y_cos", "M_sin", "M_cos", "W_sin", "W_cos", "D_sin", "D_cos", "H"]
SINCOS = ("year", "month", "week", "day")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def utc(*stamps: str) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([pd.Timestamp(s, tz="UTC") for s in stamps]).as_unit("ns")


def options(local: bool = False, timezone: str = "UTC", holiday: bool = True, **extra) -> TimeFeatureOptions:
    """All components enabled, with the same ``local_time`` for every one of them."""
    comps = {name: {"enabled": True, "local_time": local} for name in SINCOS}
    if holiday:
        comps["holiday"] = {"enabled": True, "local_time": local}
    return TimeFeatureOptions(**comps, timezone=timezone, **extra)


def holiday_only(country: str = "AT", subdivision: str | None = None, local: bool = False,
                 timezone: str = "UTC", **extra) -> TimeFeatureOptions:
    return TimeFeatureOptions(holiday={"enabled": True, "local_time": local}, holiday_country=country,
                              holiday_subdivision=subdivision, timezone=timezone, **extra)


def h_at(opts: TimeFeatureOptions, *stamps: str) -> list[float]:
    return time_features(utc(*stamps), opts)["H"].tolist()


def phase(sin: float, cos: float) -> float:
    """φ in [0, 1) from sin(2πφ) and cos(2πφ)."""
    return (math.atan2(sin, cos) / (2 * math.pi)) % 1.0


def codes(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


def expect_code(code: str, data: dict) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        TimeFeatureOptions.model_validate(data)
    assert codes(info.value)[0] == code, info.value
    return info.value


# --------------------------------------------------------------------------------------------
# worked examples §6.4
# --------------------------------------------------------------------------------------------


def test_t1_utc_mode_2024_01_01() -> None:
    row = time_features(utc("2024-01-01 00:00:00"), options(local=False)).iloc[0]
    expected = {
        "D_sin": 0.0, "D_cos": 1.0,
        "W_sin": -0.4338837391, "W_cos": -0.9009688679,
        "M_sin": -0.1030313790, "M_cos": 0.9946781062,
        "Y_sin": -0.0086011059, "Y_cos": 0.9999630098,
    }
    for column, value in expected.items():
        assert row[column] == pytest.approx(value, abs=TOL), column
    assert phase(row["W_sin"], row["W_cos"]) == pytest.approx(4 / 7, abs=TOL)
    assert phase(row["M_sin"], row["M_cos"]) == pytest.approx(0.9835728953, abs=TOL)
    assert phase(row["Y_sin"], row["Y_cos"]) == pytest.approx(0.9986310746, abs=TOL)


def test_t2_local_mode_vienna_spring_forward() -> None:
    row = time_features(utc("2024-03-31 01:30:00"), options(local=True, timezone="Europe/Vienna")).iloc[0]
    expected = {
        "D_sin": 0.7933533403, "D_cos": 0.6087614290,
        "W_sin": -0.6937610560, "W_cos": 0.7202052465,
        "M_sin": -0.1722618660, "M_cos": 0.9850511913,
        "Y_sin": 0.9997297957, "Y_cos": 0.0232451195,
    }
    for column, value in expected.items():
        assert row[column] == pytest.approx(value, abs=TOL), column
    assert phase(row["D_sin"], row["D_cos"]) == pytest.approx(3.5 / 24, abs=TOL)  # local clock, not 2.5 h elapsed
    assert phase(row["W_sin"], row["W_cos"]) == pytest.approx(531_000 / 604_800, abs=TOL)
    assert phase(row["M_sin"], row["M_cos"]) == pytest.approx(2_604_600 / 2_678_400, abs=TOL)
    assert phase(row["Y_sin"], row["Y_cos"]) == pytest.approx(7_788_600 / 31_622_400, abs=TOL)


def test_t2_same_instant_utc_mode_day() -> None:
    row = time_features(utc("2024-03-31 01:30:00"), options(local=False, timezone="Europe/Vienna")).iloc[0]
    assert row["D_sin"] == pytest.approx(0.3826834324, abs=TOL)
    assert row["D_cos"] == pytest.approx(0.9238795325, abs=TOL)
    assert phase(row["D_sin"], row["D_cos"]) == pytest.approx(0.0625, abs=TOL)


def test_t3_holidays_at() -> None:
    at_utc = holiday_only("AT")
    assert h_at(at_utc, "2024-12-25 10:00", "2024-12-24 10:00", "2024-12-24 23:30") == [1.0, 0.0, 0.0]
    at_local = holiday_only("AT", local=True, timezone="Europe/Vienna")
    assert h_at(at_local, "2024-12-24 23:30") == [1.0]  # 2024-12-25 00:30 in Vienna
    assert h_at(at_utc, "2025-10-26 12:00") == [1.0]  # National Day, a Sunday
    assert h_at(holiday_only("AT", holiday_exclude_sundays=True), "2025-10-26 12:00") == [0.0]


# --------------------------------------------------------------------------------------------
# holidays
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("country", ["AT", "DE"])
def test_christmas_is_a_holiday(country: str) -> None:
    assert h_at(holiday_only(country), "2024-12-25 12:00") == [1.0]


def test_epiphany_in_bavaria_but_not_in_germany() -> None:
    assert h_at(holiday_only("DE", "BY"), "2024-01-06 12:00") == [1.0]
    assert h_at(holiday_only("DE"), "2024-01-06 12:00") == [0.0]
    assert h_at(holiday_only("DE", "Bayern"), "2024-01-06 12:00") == [1.0]  # alias of BY


def test_selected_country_is_used() -> None:
    """The predecessor always used Austria; here the country decides."""
    days = ("2024-10-03 12:00", "2024-10-26 12:00")  # German Unity Day, Austrian National Day
    assert h_at(holiday_only("DE"), *days) == [1.0, 0.0]
    assert h_at(holiday_only("AT"), *days) == [0.0, 1.0]


def test_holiday_is_pointwise_across_new_year() -> None:
    """An observed day moved into the previous year counts whichever years are present."""
    opts = holiday_only("US")
    assert h_at(opts, "2021-12-31 12:00") == [1.0]  # New Year 2022 (a Saturday), observed on Friday
    many = pd.date_range("2021-12-30 12:00", periods=5, freq="D", tz="UTC").as_unit("ns")
    assert time_features(many, opts)["H"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0]  # 2022-01-01 itself too


def test_holiday_dates_are_dates_and_exclude_sundays() -> None:
    dates = holiday_dates(holiday_only("AT"), [2025])
    assert dates.dtype == np.dtype("datetime64[D]")
    assert np.datetime64("2025-10-26") in dates
    without = holiday_dates(holiday_only("AT", holiday_exclude_sundays=True), [2025])
    assert np.datetime64("2025-10-26") not in without
    assert set(without.tolist()) == {d for d in dates.tolist() if d.weekday() != 6}
    assert holiday_dates(holiday_only("AT"), []).size == 0


# --------------------------------------------------------------------------------------------
# local-time formulas
# --------------------------------------------------------------------------------------------


def test_day_follows_local_clock_across_dst_fall_back() -> None:
    times = pd.date_range("2024-10-26 21:00", "2024-10-27 23:45", freq="15min", tz="UTC").as_unit("ns")
    frame = time_features(times, TimeFeatureOptions(day={"enabled": True}, timezone="Europe/Vienna"))
    vienna = ZoneInfo("Europe/Vienna")
    for t, (s, c) in zip(times, frame[["D_sin", "D_cos"]].to_numpy(), strict=True):
        local = t.to_pydatetime().astimezone(vienna)
        expected = (local.hour * 3600 + local.minute * 60 + local.second) / 86_400
        assert s == pytest.approx(math.sin(2 * math.pi * expected), abs=TOL), t
        assert c == pytest.approx(math.cos(2 * math.pi * expected), abs=TOL), t
    # 02:30 CEST and 02:30 CET are one hour apart but show the same clock time
    twice = time_features(utc("2024-10-27 00:30", "2024-10-27 01:30"),
                          TimeFeatureOptions(day={"enabled": True}, timezone="Europe/Vienna"))
    np.testing.assert_array_equal(twice.iloc[0].to_numpy(), twice.iloc[1].to_numpy())
    assert phase(*twice.iloc[0]) == pytest.approx(2.5 / 24, abs=TOL)


@pytest.mark.parametrize("monday_local", ["2024-01-01 00:00", "2024-07-01 00:00", "2024-10-28 00:00"])
def test_week_monday_midnight_local_is_phase_zero(monday_local: str) -> None:
    instant = pd.Timestamp(monday_local, tz="Europe/Vienna").tz_convert("UTC")
    frame = time_features(pd.DatetimeIndex([instant]),
                          TimeFeatureOptions(week={"enabled": True, "local_time": True}, timezone="Europe/Vienna"))
    assert frame["W_sin"].iloc[0] == pytest.approx(0.0, abs=TOL)
    assert frame["W_cos"].iloc[0] == pytest.approx(1.0, abs=TOL)
    sunday_late = time_features(pd.DatetimeIndex([instant - pd.Timedelta(hours=1)]),
                                TimeFeatureOptions(week={"enabled": True, "local_time": True},
                                                   timezone="Europe/Vienna"))
    assert phase(*sunday_late.iloc[0]) == pytest.approx(1 - 1 / 168, abs=TOL)


def test_week_utc_mode_thursday_is_phase_zero() -> None:
    frame = time_features(utc("1970-01-01", "2024-01-04"), TimeFeatureOptions(week={"enabled": True}))
    np.testing.assert_allclose(frame["W_sin"], [0.0, 0.0], atol=TOL)
    np.testing.assert_allclose(frame["W_cos"], [1.0, 1.0], atol=TOL)


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2024-12-31 12:00", 365.5 / 366),  # leap year
    ("2023-12-31 12:00", 364.5 / 365),
    ("2024-03-01 00:00", 60 / 366),
    ("2023-03-01 00:00", 59 / 365),
    ("2025-01-01 00:00", 0.0),
])
def test_year_local_uses_leap_years(stamp: str, expected: float) -> None:
    frame = time_features(utc(stamp), TimeFeatureOptions(year={"enabled": True, "local_time": True}))
    assert phase(*frame.iloc[0]) == pytest.approx(expected, abs=TOL)


@pytest.mark.parametrize(("stamp", "expected"), [
    ("2024-02-29 12:00", 28.5 / 29),
    ("2023-02-28 12:00", 27.5 / 28),
    ("2024-04-30 06:00", 29.25 / 30),
    ("2024-01-31 18:00", 30.75 / 31),
    ("2024-05-01 00:00", 0.0),
])
def test_month_local_uses_days_in_month(stamp: str, expected: float) -> None:
    frame = time_features(utc(stamp), TimeFeatureOptions(month={"enabled": True, "local_time": True}))
    assert phase(*frame.iloc[0]) == pytest.approx(expected, abs=TOL)


def test_local_year_and_month_use_local_date() -> None:
    """2024-12-31 23:30Z is already 2025-01-01 00:30 in Vienna."""
    opts = TimeFeatureOptions(year={"enabled": True, "local_time": True}, month={"enabled": True, "local_time": True},
                              timezone="Europe/Vienna")
    row = time_features(utc("2024-12-31 23:30"), opts).iloc[0]
    assert phase(row["Y_sin"], row["Y_cos"]) == pytest.approx(1800 / (365 * 86_400), abs=TOL)
    assert phase(row["M_sin"], row["M_cos"]) == pytest.approx(1800 / (31 * 86_400), abs=TOL)


def test_fractional_seconds_are_kept() -> None:
    frame = time_features(utc("2024-01-01 00:00:00.5"), TimeFeatureOptions(day={"enabled": True, "local_time": False}))
    assert frame["D_sin"].iloc[0] == pytest.approx(math.sin(2 * math.pi * 0.5 / 86_400), abs=1e-15)


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------

TIMEZONES = ["UTC", "Europe/Vienna", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Pacific/Chatham"]
NS_1900 = int(pd.Timestamp("1900-01-01", tz="UTC").value)
NS_2200 = int(pd.Timestamp("2200-01-01", tz="UTC").value)


@PROPERTY
@given(
    ns=st.lists(st.integers(NS_1900, NS_2200), min_size=1, max_size=30),
    local=st.booleans(),
    timezone=st.sampled_from(TIMEZONES),
)
def test_unit_circle_and_holiday_flag(ns: list[int], local: bool, timezone: str) -> None:
    frame = time_features(pd.DatetimeIndex(np.array(ns, dtype="datetime64[ns]"), tz="UTC"),
                          options(local=local, timezone=timezone))
    assert list(frame.columns) == ALL_COLUMNS
    for prefix in "YMWD":
        norm = frame[f"{prefix}_sin"].to_numpy() ** 2 + frame[f"{prefix}_cos"].to_numpy() ** 2
        np.testing.assert_allclose(norm, 1.0, rtol=0, atol=1e-12)
    assert set(frame["H"].unique()) <= {0.0, 1.0}


@PROPERTY
@given(ns=st.lists(st.integers(NS_1900, NS_2200), min_size=1, max_size=30))
def test_local_day_in_utc_equals_utc_day(ns: list[int]) -> None:
    times = pd.DatetimeIndex(np.array(ns, dtype="datetime64[ns]"), tz="UTC")
    local = time_features(times, TimeFeatureOptions(day={"enabled": True, "local_time": True}, timezone="UTC"))
    plain = time_features(times, TimeFeatureOptions(day={"enabled": True, "local_time": False}))
    np.testing.assert_allclose(local.to_numpy(), plain.to_numpy(), rtol=0, atol=TOL)


_TZ_SCRIPT = """
import json, sys
import pandas as pd
from zeitflow.options.features import TimeFeatureOptions
from zeitflow.stages.features import time_features
times = pd.DatetimeIndex(json.loads(sys.argv[1]))
out = {}
for local in (False, True):
    comps = {n: {"enabled": True, "local_time": local} for n in ("year", "month", "week", "day", "holiday")}
    frame = time_features(times, TimeFeatureOptions(**comps, timezone="Europe/Vienna"))
    out[str(local)] = frame.to_numpy().tolist()
print(json.dumps(out))
"""


def test_result_does_not_depend_on_process_timezone() -> None:
    stamps = ["2024-03-31T00:30:00Z", "2024-03-31T01:30:00Z", "2024-10-27T00:30:00Z", "2024-10-27T01:30:00Z",
              "2024-12-24T23:30:00Z", "2024-12-25T10:00:00Z", "2025-01-01T03:17:42.25Z"]
    times = pd.DatetimeIndex(stamps).as_unit("ns")
    here = {}
    for local in (False, True):
        comps = {n: {"enabled": True, "local_time": local} for n in ("year", "month", "week", "day", "holiday")}
        here[str(local)] = time_features(times, TimeFeatureOptions(**comps, timezone="Europe/Vienna")).to_numpy()
    env = {**os.environ, "TZ": "Pacific/Chatham", "LANG": "de_AT.UTF-8", "LC_ALL": "",
           "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", _TZ_SCRIPT, json.dumps(stamps)], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=True)
    there = json.loads(result.stdout.strip().splitlines()[-1])
    for key, values in here.items():
        np.testing.assert_array_equal(np.array(there[key], dtype=np.float64), values)


def test_process_timezone_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    times = utc("2024-10-27 00:30", "2024-10-27 01:30", "2024-12-24 23:30")
    opts = options(local=True, timezone="Europe/Vienna")
    before = time_features(times, opts).to_numpy()
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        during = time_features(times, opts).to_numpy()
    finally:
        monkeypatch.undo()
        time.tzset()
    np.testing.assert_array_equal(before, during)


# --------------------------------------------------------------------------------------------
# input and output shape
# --------------------------------------------------------------------------------------------


def test_columns_order_dtype_and_index() -> None:
    times = utc("2024-01-01", "2024-01-01", "2024-06-15 12:00")  # duplicates are kept
    frame = time_features(times, options())
    assert list(frame.columns) == ALL_COLUMNS
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.name == "utc"
    assert str(frame.index.dtype) == "datetime64[ns, UTC]"
    assert frame.index.equals(times)
    only = time_features(times, TimeFeatureOptions(week={"enabled": True}, holiday={"enabled": True}))
    assert list(only.columns) == ["W_sin", "W_cos", "H"]
    assert TimeFeatureOptions(week={"enabled": True}, holiday={"enabled": True}).columns() == ["W_sin", "W_cos", "H"]
    assert time_features(times, TimeFeatureOptions()).shape == (3, 0)


def test_input_forms_agree() -> None:
    stamps = ["2024-03-31 01:30", "2024-12-24 23:30"]
    opts = options(local=True, timezone="Europe/Vienna")
    expected = time_features(utc(*stamps), opts)
    vienna_index = utc(*stamps).tz_convert("Europe/Vienna")
    naive = np.array(stamps, dtype="datetime64[ns]")  # numpy datetime64 is read as UTC
    for given_times in (vienna_index, naive, list(utc(*stamps)), pd.Series(utc(*stamps)),
                        pd.Series(vienna_index), pd.Series(naive),
                        [datetime(2024, 3, 31, 1, 30, tzinfo=UTC), datetime(2024, 12, 24, 23, 30, tzinfo=UTC)],
                        utc(*stamps).as_unit("s")):
        frame = time_features(given_times, opts)
        pd.testing.assert_frame_equal(frame, expected)


def test_nat_gives_nan_and_empty_input() -> None:
    times = pd.DatetimeIndex([pd.Timestamp("2024-12-25", tz="UTC"), pd.NaT]).as_unit("ns")
    frame = time_features(times, options(local=True, timezone="Europe/Vienna"))
    assert frame.iloc[1].isna().all()
    assert frame.iloc[0].notna().all()
    assert frame["H"].iloc[0] == 1.0
    empty = time_features(pd.DatetimeIndex([], tz="UTC"), options())
    assert list(empty.columns) == ALL_COLUMNS and len(empty) == 0


def test_bad_time_inputs() -> None:
    with pytest.raises(ValueError, match="flat"):
        time_features(np.zeros((2, 2), dtype="datetime64[ns]"), options())
    with pytest.raises(TypeError, match="datetimes"):
        time_features(np.arange(3), options())
    with pytest.raises(TypeError, match="datetimes"):
        time_features(pd.Series([1.0, 2.0]), options())


def test_vectorised_benchmark_size() -> None:
    times = pd.date_range("2020-01-01", periods=5_736 * 13, freq="15min", tz="UTC").as_unit("ns")
    opts = options(local=True, timezone="Europe/Vienna")
    start = time.perf_counter()
    frame = time_features(times, opts)
    assert time.perf_counter() - start < 1.0
    assert frame.shape == (5_736 * 13, 9)


def test_progress_event() -> None:
    events: list[ProgressEvent] = []
    time_features(utc("2024-01-01"), options(), progress=events.append)
    assert [(e.stage, e.unit, e.done, e.total) for e in events] == [("features", "phase", 1, 1)]


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "cls", "mode", "start", "local"), [
    ("year", YearOptions, "horizon", -24.0, False),
    ("month", MonthOptions, "horizon", -1.0, False),
    ("week", WeekOptions, "current", -24.0, False),
    ("day", DayOptions, "horizon", -24.0, True),
    ("holiday", HolidayOptions, "current", -100.0, False),
])
def test_component_defaults(name: str, cls: type[ComponentOptions], mode: str, start: float, local: bool) -> None:
    for comp in (getattr(TimeFeatureOptions(), name), getattr(TimeFeatureOptions(**{name: {"enabled": True}}), name)):
        assert isinstance(comp, cls)
        assert (comp.mode, comp.horizon_start_hours, comp.horizon_end_hours) == (mode, start, 0.0)
        assert comp.local_time is local
        assert (comp.scale, comp.range_min, comp.range_max) == (True, 0.0, 1.0)
    assert getattr(TimeFeatureOptions(), name).enabled is False


def test_global_defaults() -> None:
    opts = TimeFeatureOptions()
    assert (opts.timezone, opts.holiday_country, opts.holiday_subdivision, opts.holiday_exclude_sundays) == (
        "UTC", "AT", None, False)
    assert TimeFeatureOptions(timezone=None, holiday_country=None, day=None) == opts


def test_predecessor_spellings_normalise() -> None:
    old = TimeFeatureOptions.model_validate({
        "tag": {"tag": "ja", "datenform": "Aktuelle Zeit", "zeithorizontStart": -48, "zeithorizontEnd": 2,
                "detaillierteBerechnung": "nein", "skalierung": "nein", "skalierungMin": -1, "skalierungMax": 1},
        "jahr": "ja", "woche": {"datenform": "Zeithorizont"},
        "zeitzone": "Europe/Vienna", "land": "de", "holiday_subdivision": "Bayern",
    })
    new = TimeFeatureOptions.model_validate({
        "day": {"enabled": True, "mode": "current", "horizon_start_hours": -48, "horizon_end_hours": 2,
                "local_time": False, "scale": False, "range_min": -1, "range_max": 1},
        "year": {"enabled": True}, "week": {"mode": "horizon"},
        "timezone": "Europe/Vienna", "holiday_country": "DE", "holiday_subdivision": "BY",
    })
    assert old == new
    assert old.parameters_hash() == new.parameters_hash()
    assert TimeFeatureOptions(holiday_country="AUT").holiday_country == "AT"


def test_options_round_trip() -> None:
    opts = TimeFeatureOptions(day={"enabled": True}, holiday={"enabled": True}, holiday_country="DE",
                              holiday_subdivision="BY", timezone="Europe/Berlin")
    assert TimeFeatureOptions.model_validate(opts.model_dump()) == opts
    assert TimeFeatureOptions.model_validate_json(opts.model_dump_json()) == opts


def test_options_are_frozen_and_hash_is_stable() -> None:
    opts = options()
    with pytest.raises(ValidationError):
        opts.timezone = "Europe/Vienna"  # type: ignore[misc]
    assert opts.parameters_hash() == options().parameters_hash()
    assert opts.parameters_hash() != options(timezone="Europe/Vienna").parameters_hash()


@pytest.mark.parametrize(("code", "data"), [
    ("UNKNOWN_PARAMETER", {"colour": "red"}),
    ("UNKNOWN_PARAMETER", {"day": {"colour": "red"}}),
    ("MUTUALLY_EXCLUSIVE", {"land": "DE", "holiday_country": "AT"}),
    ("MUTUALLY_EXCLUSIVE", {"day": {"local_time": True, "detaillierteBerechnung": True}}),
    ("INVALID_CHOICE", {"week": {"mode": "aktuelle zeit"}}),
    ("INVALID_CHOICE", {"week": {"mode": "Current"}}),
    ("INVALID_CHOICE", {"week": {"mode": " horizon"}}),
    ("PARAM_OUT_OF_RANGE", {"day": {"horizon_start_hours": -8760.5}}),
    ("PARAM_OUT_OF_RANGE", {"day": {"horizon_end_hours": 8761}}),
    ("PARAM_NOT_FINITE", {"day": {"horizon_start_hours": math.nan}}),
    ("PARAM_NOT_FINITE", {"day": {"range_max": math.inf}}),
    ("PARAM_NOT_FINITE", {"month": {"range_min": "-inf"}}),
    ("PARAM_COMPARISON_FAILED", {"day": {"horizon_start_hours": 0}}),
    ("PARAM_COMPARISON_FAILED", {"holiday": {"horizon_start_hours": 5, "horizon_end_hours": 1}}),
    ("INVALID_SCALER_RANGE", {"year": {"range_min": 1, "range_max": 1}}),
    ("INVALID_SCALER_RANGE", {"year": {"skalierungMin": 2, "skalierungMax": 1}}),
    ("UNSUPPORTED_TIMEZONE", {"timezone": "Mars/Olympus_Mons"}),
    ("UNSUPPORTED_TIMEZONE", {"timezone": "localtime"}),
    ("UNSUPPORTED_TIMEZONE", {"timezone": "../etc/passwd"}),
    ("UNSUPPORTED_TIMEZONE", {"timezone": ""}),
    ("UNKNOWN_HOLIDAY_COUNTRY", {"holiday_country": "XX"}),
    ("UNKNOWN_HOLIDAY_COUNTRY", {"holiday_country": 40}),
    ("UNKNOWN_HOLIDAY_SUBDIVISION", {"holiday_country": "DE", "holiday_subdivision": "ZZ"}),
    ("UNKNOWN_HOLIDAY_SUBDIVISION", {"holiday_country": "AT", "holiday_subdivision": "BY"}),
])
def test_validation_codes(code: str, data: dict) -> None:
    expect_code(code, data)


def test_messages_name_parameter_value_and_range() -> None:
    err = expect_code("PARAM_OUT_OF_RANGE", {"day": {"horizon_start_hours": -9000}})
    message = err.errors()[0]["msg"]
    assert "day.horizon_start_hours=-9000.0" in message and "-8760" in message and "zeithorizontStart" in message
    assert err.errors()[0]["loc"] == ("day", "horizon_start_hours")
    assert "XX" in expect_code("UNKNOWN_HOLIDAY_COUNTRY", {"land": "XX"}).errors()[0]["msg"]
    sub = expect_code("UNKNOWN_HOLIDAY_SUBDIVISION", {"holiday_country": "DE", "holiday_subdivision": "ZZ"})
    assert "'ZZ'" in sub.errors()[0]["msg"] and "'DE'" in sub.errors()[0]["msg"]
    assert sub.errors()[0]["loc"] == ("holiday_subdivision",)
    assert "Mars/Olympus" in expect_code("UNSUPPORTED_TIMEZONE", {"timezone": "Mars/Olympus"}).errors()[0]["msg"]


def test_horizon_limits_are_inclusive() -> None:
    opts = TimeFeatureOptions(day={"horizon_start_hours": -8760, "horizon_end_hours": 8760})
    assert (opts.day.horizon_start_ns, opts.day.horizon_end_ns) == (-8760 * 3_600_000_000_000, 8760 * 3_600_000_000_000)


def test_parameter_error_carries_codes() -> None:
    with pytest.raises(ValidationError) as info:
        TimeFeatureOptions(holiday_country="XX", day={"range_min": 2})
    error = to_parameter_error(info.value, ("features",))
    assert isinstance(error, ParameterError)
    assert {e["code"] for e in error.details["errors"]} == {"UNKNOWN_HOLIDAY_COUNTRY", "INVALID_SCALER_RANGE"}
    assert error.code == error.details["errors"][0]["code"]


def test_component_instance_gets_component_defaults() -> None:
    opts = TimeFeatureOptions(day=ComponentOptions(enabled=True), week=WeekOptions(enabled=True))
    assert isinstance(opts.day, DayOptions) and opts.day.local_time is True and opts.day.enabled is True
    assert opts.week.mode == "current"
