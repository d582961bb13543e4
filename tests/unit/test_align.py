"""Align stage (stages.md §4): worked examples A1-A4, step detection, options validation, runtime
errors, pass-through, bounds, the quality-gate suite and hypothesis properties."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zeitflow.errors import AlignError, FrameError, ParameterError
from zeitflow.frame import empty_frame, validate_frame
from zeitflow.options.align import AlignOptions
from zeitflow.options.base import to_parameter_error
from zeitflow.options.resample import METHODS, ColumnMethod, ResampleOptions, ResolvedMethod
from zeitflow.reports import ProgressEvent
from zeitflow.stages.align import AlignReport, align, detect_step, gate_parameters
from zeitflow.stages.grid import NS_PER_MINUTE
from zeitflow.stages.resample import resample

EXACT = {"rel": 1e-12, "abs": 1e-12}
MIN = NS_PER_MINUTE
DAY = "2024-01-01"
BASE = pd.Timestamp(DAY, tz="UTC").value  # ns
nan = math.nan


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def at(t: str) -> pd.Timestamp:
    return pd.Timestamp(f"{DAY} {t}", tz="UTC")


def frame_at(samples: list[tuple[str, float]], column: str = "x") -> pd.DataFrame:
    """A one-channel canonical frame from ``("HH:MM[:SS]", value)`` pairs on 2024-01-01 (UTC)."""
    index = pd.DatetimeIndex([at(t) for t, _ in samples], name="utc").as_unit("ns")
    return pd.DataFrame({column: np.array([v for _, v in samples], dtype=np.float64)}, index=index)


def frame_ns(times_ns, columns: dict[str, object]) -> pd.DataFrame:
    index = pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]"), name="utc")
    n = len(index)
    data = {k: np.broadcast_to(np.asarray(v, dtype=np.float64), (n,)).copy() for k, v in columns.items()}
    return pd.DataFrame(data, index=index.tz_localize("UTC"))


def regular(start: str, step_minutes: float, count: int, values, column: str) -> pd.DataFrame:
    times = at(start).value + np.arange(count, dtype=np.int64) * round(step_minutes * MIN)
    return frame_ns(times, {column: values})


def a2_sources() -> dict[str, pd.DataFrame]:
    """A2: ``A``/``load`` every 15 min 00:00-02:00 (0 … 8); ``B``/``temp`` every 10 min 00:05-03:05 (5 … 185)."""
    return {
        "A": regular("00:00", 15, 9, np.arange(9.0), "load"),
        "B": regular("00:05", 10, 19, np.arange(5.0, 186.0, 10.0), "temp"),
    }


def stamps(frame: pd.DataFrame) -> list[str]:
    return [t.strftime("%H:%M") for t in frame.index]


def codes(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


def invalid(**kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        AlignOptions.model_validate(kwargs)
    return info.value


def fails(frames, code: str, **options) -> AlignError:
    with pytest.raises(AlignError) as info:
        align(frames, AlignOptions(**options))
    assert info.value.code == code
    json.dumps(info.value.to_dict())
    return info.value


def checked(frames, **options):
    result = align(frames, AlignOptions(**options))
    validate_frame(result.frame, "align output")
    json.loads(result.report.model_dump_json())
    return result


# --------------------------------------------------------------------------------------------
# Worked examples (§4.8)
# --------------------------------------------------------------------------------------------


def test_a1_step_detection() -> None:
    frame = frame_at([("00:00", 1.0), ("00:07:30", nan), ("00:15", 3.0), ("00:22:30", 4.0), ("00:37:30", 5.0)])
    info = detect_step(frame)
    assert info.rows == 5
    assert info.step_median_minutes == 7.5 and info.step_min_minutes == 7.5 and info.step_max_minutes == 15.0
    assert info.step_mean_minutes == 9.375 and info.offset_minutes == 0.0 and info.regular is False
    assert info.channels["x"].numeric == 4 and info.channels["x"].numeric_share_percent == 80.0
    assert (info.first, info.last) == ("2024-01-01T00:00:00Z", "2024-01-01T00:37:30Z")


@pytest.mark.parametrize("method", ["interpolate", "mean"])
def test_a2_intersection_grid_pass_through_and_interpolation(method: str) -> None:
    result = checked(a2_sources(), step_minutes=15, methods={"temp": {"method": method}})
    frame, report = result.frame, result.report
    assert stamps(frame) == ["00:15", "00:30", "00:45", "01:00", "01:15", "01:30", "01:45", "02:00"]
    assert list(frame.columns) == ["load", "temp"]
    assert frame["load"].tolist() == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    np.testing.assert_allclose(frame["temp"].to_numpy(), np.arange(15.0, 121.0, 15.0), rtol=1e-12, atol=1e-12)
    assert (report.common_start, report.common_end) == ("2024-01-01T00:05:00Z", "2024-01-01T02:00:00Z")
    assert (report.grid_start, report.grid_end, report.grid_points) == (
        "2024-01-01T00:15:00Z", "2024-01-01T02:00:00Z", 8)
    assert report.range_mode == "intersection" and report.rows_in == 28 and report.rows_out == 8
    a, b = report.sources["A"], report.sources["B"]
    assert a.passed_through == ["load"] and a.outside_range_rows == 1 and a.missing_grid_points == 0
    assert (a.first, a.last) == ("2024-01-01T00:00:00Z", "2024-01-01T02:00:00Z") and a.on_grid
    assert b.passed_through == [] and b.outside_range_rows is None and b.missing_grid_points is None
    assert b.step.step_median_minutes == 10.0 and b.step.offset_minutes == 5.0 and not b.on_grid
    load, temp = report.channels["load"], report.channels["temp"]
    assert load.passed_through and load.resample is None and load.values_out == 8 and load.source == "A"
    assert not temp.passed_through and temp.resample is not None and temp.resample.method == method
    assert temp.resample.samples == 19 and temp.resample.values_out == 8 and temp.source == "B"


def test_a2_interpolation_at_0030() -> None:
    """00:30 lies between 00:25 (25) and 00:35 (35) and gives 30."""
    frame = checked(a2_sources(), step_minutes=15, methods={"temp": "interpolate"}).frame
    assert frame.loc[at("00:30"), "temp"] == pytest.approx(30.0, **EXACT)


def test_a3_bounds() -> None:
    result = checked(a2_sources(), step_minutes=15, methods={"temp": {"method": "interpolate"}},
                     start="2024-01-01T00:40:00Z", end="2024-01-01T01:20:00Z")
    assert stamps(result.frame) == ["00:45", "01:00", "01:15"]
    assert result.frame["load"].tolist() == [3.0, 4.0, 5.0]
    np.testing.assert_allclose(result.frame["temp"].to_numpy(), [45.0, 60.0, 75.0], rtol=1e-12, atol=1e-12)
    assert (result.report.common_start, result.report.common_end) == ("2024-01-01T00:40:00Z", "2024-01-01T01:20:00Z")
    assert result.report.sources["A"].outside_range_rows == 6  # 00:00-00:30 and 01:30-02:00
    assert result.report.sources["A"].missing_grid_points == 0


def test_a4_missing_method() -> None:
    error = fails(a2_sources(), "METHOD_REQUIRED", step_minutes=15)
    assert "step 10 min, offset 5 min; requested 15 min, offset 0" in error.message
    assert "temp" in error.message and "source B" in error.message and "load" not in error.message
    [item] = error.details["channels"]
    assert item["channel"] == "temp" and item["source"] == "B"
    assert (item["step_minutes"], item["offset_minutes"]) == (10.0, 5.0)
    assert error.details["step_minutes"] == 15.0 and error.hint and "default_method" in error.hint


# --------------------------------------------------------------------------------------------
# detect_step (§4.4)
# --------------------------------------------------------------------------------------------


def test_detect_step_keeps_fractional_minutes() -> None:
    info = detect_step(regular("00:00", 7.5, 9, np.arange(9.0), "x"))
    assert info.step_median_minutes == 7.5 and info.step_min_minutes == 7.5 and info.step_max_minutes == 7.5
    assert info.step_mean_minutes == 7.5 and info.regular is True and info.offset_minutes == 0.0


def test_detect_step_offset_has_seconds() -> None:
    info = detect_step(frame_at([("00:02:30", 1.0), ("00:12:30", 2.0), ("00:22:30", 3.0)]))
    assert info.step_median_minutes == 10.0 and info.offset_minutes == 2.5 and info.regular is True
    info = detect_step(frame_at([("00:00:20", 1.0), ("00:15:20", 2.0)]))
    assert info.offset_minutes == pytest.approx(1 / 3, **EXACT)
    # sub-second offset, 1-second step
    times = BASE + 250_000_000 + np.arange(4) * 1_000_000_000
    assert detect_step(frame_ns(times, {"x": 1.0})).offset_minutes == pytest.approx(0.25 / 60, **EXACT)


def test_detect_step_irregular_and_even_median() -> None:
    info = detect_step(frame_at([("00:00", 1.0), ("00:01", 2.0), ("00:03", 3.0)]))
    assert info.regular is False and info.step_median_minutes == 1.5  # mean of the two middle differences
    assert (info.step_min_minutes, info.step_max_minutes, info.step_mean_minutes) == (1.0, 2.0, 1.5)
    assert info.offset_minutes == 0.0
    # a median of 1.5 ns: the offset is taken exactly on doubled integers
    times = np.array([BASE + 1, BASE + 2, BASE + 4], dtype=np.int64)
    info = detect_step(frame_ns(times, {"x": 1.0}))
    assert info.step_median_minutes == 1.5 / MIN
    assert info.offset_minutes == ((2 * (BASE + 1)) % 3) / (2 * MIN)
    info = detect_step(frame_at([("00:00", 1.0), ("00:05", 2.0), ("00:10", 3.0), ("00:40", 4.0)]))
    assert info.step_median_minutes == 5.0 and info.step_max_minutes == 30.0 and info.regular is False


def test_detect_step_below_two_rows() -> None:
    one = detect_step(frame_at([("00:07", 2.0)]))
    assert one.rows == 1 and one.first == one.last == "2024-01-01T00:07:00Z"
    assert one.step_median_minutes is None and one.step_min_minutes is None and one.step_max_minutes is None
    assert one.step_mean_minutes is None and one.offset_minutes is None and one.regular is None
    assert one.channels["x"].numeric_share_percent == 100.0
    none = detect_step(empty_frame(["x", "y"]))
    assert none.rows == 0 and none.first is None and none.channels["y"].numeric == 0
    assert none.channels["y"].numeric_share_percent == 0.0


def test_detect_step_share_and_validation() -> None:
    frame = frame_ns(BASE + np.arange(3) * MIN, {"a": [1.0, nan, nan], "b": [1.0, 2.0, 3.0]})
    info = detect_step(frame)
    assert info.channels["a"].numeric_share_percent == 33.33 and info.channels["b"].numeric == 3
    with pytest.raises(FrameError):
        detect_step(frame.iloc[::-1])
    micro = frame.set_axis(frame.index.as_unit("us"), axis=0)
    assert detect_step(micro) == info and detect_step(frame, validate=False) == info


# --------------------------------------------------------------------------------------------
# Options (§4.3, §0.6)
# --------------------------------------------------------------------------------------------


def test_option_defaults_and_aliases() -> None:
    options = AlignOptions(step_minutes=15)
    assert (options.offset_minutes, options.anchor, options.start, options.end) == (0.0, None, None, None)
    assert options.range_mode == "intersection" and options.methods == {} and options.default_method is None
    assert options.max_gap_minutes == 60.0 and options.decimals is None
    none = AlignOptions(step_minutes=15, offset_minutes=None, max_gap_minutes=None, range_mode=None, methods=None)
    assert none == options
    legacy = AlignOptions.model_validate({
        "timeStepSize": 15, "offset": 5, "startTime": "2024-01-01T00:00:00Z", "endTime": "2024-01-02T00:00:00Z",
        "intrpl_max": 30, "decimalPrecision": "full", "methods": {"temp": "intrpl"},
        "default_method": "nearest (max. delta)",
    })
    modern = AlignOptions(step_minutes=15, offset_minutes=5, start=datetime(2024, 1, 1, tzinfo=UTC),
                          end=datetime(2024, 1, 2, tzinfo=UTC), max_gap_minutes=30,
                          methods={"temp": {"method": "interpolate"}}, default_method="nearest_max_delta")
    assert legacy == modern and legacy.parameters_hash() == modern.parameters_hash()
    assert AlignOptions(step_minutes=15, default_method="nearest (mean)").default_method == "nearest_mean"
    assert AlignOptions(step_minutes=15, range_mode="union").range_mode == "union"


def test_option_missing_step() -> None:
    exc = invalid()
    assert codes(exc) == ["MISSING_PARAMETER"] and exc.errors()[0]["loc"] == ("step_minutes",)
    assert "(predecessor: timeStepSize)" in exc.errors()[0]["msg"]
    assert codes(invalid(step_minutes=None)) == ["MISSING_PARAMETER"]


def test_option_step_message() -> None:
    exc = invalid(step_minutes=0.0)
    assert exc.errors()[0]["msg"] == (
        "step_minutes=0.0 is out of range: allowed 1/60 <= step_minutes <= 1440 (predecessor: timeStepSize)"
    )


@pytest.mark.parametrize(("field", "value", "code"), [
    ("step_minutes", 0.0, "PARAM_OUT_OF_RANGE"),
    ("step_minutes", 0.0166, "PARAM_OUT_OF_RANGE"),
    ("step_minutes", 1440.0001, "PARAM_OUT_OF_RANGE"),
    ("step_minutes", -15, "PARAM_OUT_OF_RANGE"),
    ("step_minutes", math.nan, "PARAM_NOT_FINITE"),
    ("offset_minutes", math.inf, "PARAM_NOT_FINITE"),
    ("offset_minutes", 1e300, "PARAM_OUT_OF_RANGE"),
    ("max_gap_minutes", -1, "PARAM_OUT_OF_RANGE"),
    ("max_gap_minutes", 525_601, "PARAM_OUT_OF_RANGE"),
    ("max_gap_minutes", math.nan, "PARAM_NOT_FINITE"),
    ("decimals", 16, "PARAM_OUT_OF_RANGE"),
    ("decimals", -1, "PARAM_OUT_OF_RANGE"),
    ("decimals", 1.5, "PARAM_NOT_INTEGER"),
    ("range_mode", "overlap", "INVALID_CHOICE"),
    ("range_mode", 1, "INVALID_CHOICE"),
    ("default_method", "median", "INVALID_CHOICE"),
    ("anchor", "2024-01-01T00:07:00", "PARAM_NOT_TZ_AWARE"),
    ("start", datetime(2024, 1, 1), "PARAM_NOT_TZ_AWARE"),
    ("end", "2024-01-01 00:00", "PARAM_NOT_TZ_AWARE"),
    ("tss", 15, "UNKNOWN_PARAMETER"),
    ("timeStepSize", 15, "MUTUALLY_EXCLUSIVE"),
])
def test_option_validation_codes(field: str, value: object, code: str) -> None:
    exc = invalid(**{"step_minutes": 15, field: value})
    assert codes(exc) == [code]
    if code == "INVALID_CHOICE":
        assert field in exc.errors()[0]["msg"] and ("intersection" in exc.errors()[0]["msg"]
                                                    or str(list(METHODS)) in exc.errors()[0]["msg"])
    error = to_parameter_error(exc)
    assert isinstance(error, ParameterError) and error.code == code


@pytest.mark.parametrize(("field", "value"), [
    ("step_minutes", 1 / 60), ("step_minutes", 1440), ("max_gap_minutes", 0), ("max_gap_minutes", 525_600),
    ("decimals", 0), ("decimals", 15), ("offset_minutes", -1e6),
])
def test_option_limits_accepted(field: str, value: object) -> None:
    AlignOptions.model_validate({"step_minutes": 15, field: value})


def test_option_relations() -> None:
    assert codes(invalid(step_minutes=15, anchor="2024-01-01T00:07:00Z", offset_minutes=5)) == ["MUTUALLY_EXCLUSIVE"]
    AlignOptions(step_minutes=15, anchor="2024-01-01T00:07:00Z", offset_minutes=0)
    exc = invalid(step_minutes=15, start="2024-01-02T00:00:00Z", end="2024-01-01T00:00:00Z")
    assert codes(exc) == ["PARAM_COMPARISON_FAILED"]
    AlignOptions(step_minutes=15, start="2024-01-01T00:00:00Z", end="2024-01-01T00:00:00Z")
    exc = invalid(step_minutes=1 / 60, start="2024-01-01T00:00:00Z", end="2024-03-01T00:00:00Z")
    assert codes(exc) == ["PARAM_COMPARISON_FAILED"] and "5,000,000" in exc.errors()[0]["msg"]


def test_option_methods_entries() -> None:
    exc = invalid(step_minutes=15, methods={"a": {"method": "x", "decimals": 20}})
    assert codes(exc) == ["INVALID_CHOICE", "PARAM_OUT_OF_RANGE"]
    assert exc.errors()[0]["loc"] == ("methods", "a", "method")
    assert codes(invalid(step_minutes=15, methods={"a": {"max_gap_minutes": -1}})) == ["PARAM_OUT_OF_RANGE"]
    assert codes(invalid(step_minutes=15, methods={"a": {"foo": 1}})) == ["UNKNOWN_PARAMETER"]
    assert codes(invalid(step_minutes=15, methods={"": "mean"})) == ["MISSING_PARAMETER"]
    options = AlignOptions(step_minutes=15, methods={"a": "nearest (mean)"})
    assert options.methods["a"] == ColumnMethod(method="nearest_mean")


def test_option_hash_and_frozen() -> None:
    a = AlignOptions(step_minutes=15, anchor="2024-01-01T01:07:00+01:00",
                     start=datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(hours=-5))))
    b = AlignOptions(step_minutes=15, anchor=datetime(2024, 1, 1, 0, 7, tzinfo=UTC), start="2024-03-01T17:00:00Z")
    assert a.anchor is not None and a.anchor.tzinfo is UTC and a.parameters_hash() == b.parameters_hash()
    assert AlignOptions.model_validate(a.model_dump(mode="json")) == a
    with pytest.raises(ValidationError):
        a.step_minutes = 5  # type: ignore[misc]


def test_method_resolution_layers_source_and_channel_keys() -> None:
    options = AlignOptions(step_minutes=15, default_method="mean", max_gap_minutes=90, decimals=3, methods={
        "S": {"method": "interpolate", "max_gap_minutes": 30}, "b": {"decimals": 1}, "T": "nearest",
    })
    channels = {"a", "b", "T", "c"}
    assert options.method_for("S", "a", channels) == ResolvedMethod(method="interpolate", max_gap_minutes=30,
                                                                     decimals=3)
    # the channel key overrides the source key field by field
    assert options.method_for("S", "b", channels) == ResolvedMethod(method="interpolate", max_gap_minutes=30,
                                                                     decimals=1)
    # "T" is a channel name, so it is no source key for source "T"
    assert options.method_for("T", "c", channels) == ResolvedMethod(method="mean", max_gap_minutes=90, decimals=3)
    assert options.entries_for("T", "T", channels) == [ColumnMethod(method="nearest")]
    assert options.entries_for("U", "c", channels) == []


# --------------------------------------------------------------------------------------------
# Runtime errors (§4.7)
# --------------------------------------------------------------------------------------------


def test_duplicate_channel_names_both_sources() -> None:
    frames = {"site1": regular("00:00", 15, 3, 1.0, "temp"), "site2": regular("00:00", 15, 3, 2.0, "temp")}
    error = fails(frames, "DUPLICATE_CHANNEL", step_minutes=15)
    assert "'site1'" in error.message and "'site2'" in error.message and "'temp'" in error.message
    assert error.details["duplicates"] == [{"channel": "temp", "sources": ["site1", "site2"]}]


def test_unknown_methods_key() -> None:
    error = fails(a2_sources(), "COLUMN_NOT_FOUND", step_minutes=15, methods={"humidity": "mean"})
    assert error.details["columns"] == ["humidity"] and "humidity" in error.message
    # source names are valid keys
    checked(a2_sources(), step_minutes=15, methods={"B": "mean"})


def test_no_numeric_data() -> None:
    frames = {**a2_sources(), "C": regular("00:00", 15, 4, nan, "empty")}
    error = fails(frames, "NO_NUMERIC_DATA", step_minutes=15, default_method="mean")
    assert error.details["sources"] == ["C"] and "C" in error.message
    assert fails({"A": empty_frame(["x"])}, "NO_NUMERIC_DATA", step_minutes=15).details["sources"] == ["A"]
    fails({}, "NO_NUMERIC_DATA", step_minutes=15)


def test_no_overlap_names_every_source_and_range() -> None:
    frames = {"early.csv": regular("00:00", 15, 4, 1.0, "a"), "late.csv": regular("02:00", 15, 4, 1.0, "b")}
    error = fails(frames, "EMPTY_COMMON_RANGE", step_minutes=15, default_method="mean")
    assert "early.csv [2024-01-01T00:00:00Z, 2024-01-01T00:45:00Z]" in error.message
    assert "late.csv [2024-01-01T02:00:00Z, 2024-01-01T02:45:00Z]" in error.message
    assert error.details["sources"]["late.csv"] == ["2024-01-01T02:00:00Z", "2024-01-01T02:45:00Z"]
    # the union of the same sources is fine
    result = checked(frames, step_minutes=15, range_mode="union")
    assert result.report.grid_points == 12 and result.frame["a"].isna().sum() == 8


def test_bounds_outside_the_common_range() -> None:
    error = fails(a2_sources(), "EMPTY_COMMON_RANGE", step_minutes=15, default_method="mean",
                  start="2024-01-01T05:00:00Z")
    assert "start=2024-01-01T05:00:00Z" in error.message and error.details["start"] == "2024-01-01T05:00:00Z"


def test_empty_grid() -> None:
    """The common range [00:05, 00:10] with step 15 holds no grid point."""
    frames = {"A": frame_at([("00:00", 1.0), ("00:10", 2.0)], "a"),
              "B": frame_at([("00:05", 1.0), ("00:20", 2.0)], "b")}
    error = fails(frames, "EMPTY_GRID", step_minutes=15, default_method="mean")
    assert error.details["lo"] == "2024-01-01T00:05:00Z" and error.details["hi"] == "2024-01-01T00:10:00Z"


def test_grid_too_large_before_allocation() -> None:
    frames = {"A": frame_ns([BASE, BASE + 60 * 1440 * MIN], {"a": 1.0}),
              "B": frame_ns([BASE, BASE + 61 * 1440 * MIN], {"b": 1.0})}
    error = fails(frames, "GRID_TOO_LARGE", step_minutes=1 / 60, default_method="mean")
    assert error.details["points"] == 60 * 86_400 + 1 and "5,000,000" in error.message


def test_method_required_lists_every_channel() -> None:
    frames = {"A": frame_ns(BASE + np.arange(5) * 7 * MIN, {"a1": 1.0, "a2": 2.0}),
              "B": frame_at([("00:15", 1.0)], "b"), "C": regular("00:00", 15, 3, 1.0, "c")}
    error = fails(frames, "METHOD_REQUIRED", step_minutes=15)
    assert [x["channel"] for x in error.details["channels"]] == ["a1", "a2", "b"]
    # the epoch minute of 2024-01-01 00:00 is 28,401,120 ≡ 6 (mod 7)
    assert "a1 (source A): step 7 min, offset 6 min; requested 15 min, offset 0" in error.message
    assert "b (source B): step unknown (1 row)" in error.message
    assert error.details["channels"][2]["reason"].startswith("fewer than 2 rows")


def test_invalid_frame_names_the_source() -> None:
    frames = a2_sources()
    frames["B"] = frames["B"].iloc[::-1]
    with pytest.raises(FrameError) as info:
        align(frames, AlignOptions(step_minutes=15, default_method="mean"))
    assert "'B'" in info.value.message
    # duplicate timestamps cannot reach the stage: the canonical-frame check rejects them
    frames["B"] = pd.concat([a2_sources()["B"].iloc[:3], a2_sources()["B"].iloc[2:]])
    with pytest.raises(FrameError) as info:
        align(frames, AlignOptions(step_minutes=15, default_method="mean"))
    assert "'B'" in info.value.message and info.value.details["rule"] == "index_duplicate"


# --------------------------------------------------------------------------------------------
# Behaviour
# --------------------------------------------------------------------------------------------


def test_one_minute_and_ten_minute_sources_onto_a_15_minute_grid() -> None:
    """X: 1-minute rows 00:00-01:00 with value = minute; Y: 10-minute rows 00:05-01:35 with value =
    minute. Common range [00:05, 01:00], grid 00:15 … 01:00.

    - X by ``mean`` (source key): the window [g − 7.5, g + 7.5] holds the minutes g − 7 … g + 7, mean g;
      at 01:00 only 00:53 … 01:00 exist, mean (53 + … + 60)/8 = 56.5.
    - Y by ``interpolate`` (source key): 15, 30, 45 and, at 01:00, 55 + (65 − 55)·5/10 = 60, using
      01:05, a sample outside the common range (§4.5 step 5).
    """
    frames = {"X": regular("00:00", 1, 61, np.arange(61.0), "x"),
              "Y": regular("00:05", 10, 10, np.arange(5.0, 96, 10), "y")}
    result = checked(frames, step_minutes=15, methods={"X": "mean", "Y": "interpolate"})
    assert stamps(result.frame) == ["00:15", "00:30", "00:45", "01:00"]
    np.testing.assert_allclose(result.frame["x"].to_numpy(), [15.0, 30.0, 45.0, 56.5], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.frame["y"].to_numpy(), [15.0, 30.0, 45.0, 60.0], rtol=1e-12, atol=1e-12)
    report = result.report
    assert (report.common_start, report.common_end) == ("2024-01-01T00:05:00Z", "2024-01-01T01:00:00Z")
    x, y = report.channels["x"].resample, report.channels["y"].resample
    assert x is not None and y is not None
    assert (x.method, x.samples, x.values_out, x.exact_hits) == ("mean", 61, 4, 4)
    assert (y.method, y.samples, y.values_out, y.exact_hits) == ("interpolate", 10, 4, 2)  # 00:15, 00:45
    assert report.sources["X"].step.step_median_minutes == 1.0 and report.sources["Y"].step.offset_minutes == 5.0
    # default_method instead of methods: neither source is on the grid, both are resampled by mean
    again = checked(frames, step_minutes=15, default_method="mean")
    np.testing.assert_allclose(again.frame["x"].to_numpy(), [15.0, 30.0, 45.0, 56.5], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(again.frame["y"].to_numpy(), [15.0, 30.0, 45.0, 60.0], rtol=1e-12, atol=1e-12)
    assert not again.report.sources["X"].on_grid and not again.report.channels["x"].passed_through


def test_pass_through_with_gaps_nan_and_decimals() -> None:
    times = BASE + np.array([0, 15, 30, 60, 75, 90], dtype=np.int64) * MIN  # 00:45 missing
    frames = {"P": frame_ns(times, {"p": [1.23456, 2.5, nan, 4.44444, 5.0, 6.0], "q": [1.0, 2, 3, 4, 5, 6]}),
              "R": regular("00:10", 5, 16, np.arange(16.0), "r")}
    result = checked(frames, step_minutes=15, default_method="interpolate", decimals=2)
    # common range [00:10, 01:25]: P's rows 00:00 and 01:30 lie outside, 00:45 has no row
    assert stamps(result.frame) == ["00:15", "00:30", "00:45", "01:00", "01:15"]
    p = result.frame["p"].to_numpy()
    assert p[0] == 2.5 and math.isnan(p[1]) and math.isnan(p[2]) and p[3] == 4.44 and p[4] == 5.0
    q = result.frame["q"].to_numpy()
    assert q[[0, 1, 3, 4]].tolist() == [2.0, 3.0, 4.0, 5.0] and math.isnan(q[2])
    source = result.report.sources["P"]
    assert source.passed_through == ["p", "q"] and source.outside_range_rows == 2 and source.missing_grid_points == 1
    assert result.report.channels["p"].values_out == 3 and result.report.channels["p"].nan_out == 2
    assert result.report.channels["p"].decimals == 2
    assert not result.report.channels["r"].passed_through


def test_methods_entries_disable_pass_through_but_default_method_does_not() -> None:
    frames = {"P": frame_ns(BASE + np.arange(5) * 15 * MIN, {"p": [1.0, nan, 3.0, 4.0, 5.0], "q": 1.0})}
    plain = checked(frames, step_minutes=15, default_method="interpolate")
    assert plain.report.sources["P"].passed_through == ["p", "q"] and math.isnan(plain.frame["p"].iloc[1])
    by_channel = checked(frames, step_minutes=15, methods={"p": "interpolate"})
    assert by_channel.report.sources["P"].passed_through == ["q"]
    assert by_channel.frame["p"].iloc[1] == 2.0 and not by_channel.report.channels["p"].passed_through
    by_source = checked(frames, step_minutes=15, methods={"P": "interpolate"})
    assert by_source.report.sources["P"].passed_through == [] and by_source.frame["p"].iloc[1] == 2.0


def test_off_grid_or_other_step_is_not_passed_through() -> None:
    shifted = {"S": frame_ns(BASE + np.array([0, 15, 30, 46, 60]) * MIN, {"s": [1.0, 2, 3, 4, 5]})}
    fails(shifted, "METHOD_REQUIRED", step_minutes=15)  # median 15 min, but 00:46 is off the grid
    coarse = {"C": regular("00:00", 30, 5, [1.0, 2, 3, 4, 5], "c")}  # on the grid, median 30 min
    error = fails(coarse, "METHOD_REQUIRED", step_minutes=15)
    assert error.details["channels"][0]["reason"] == "its median step differs from the requested step"
    result = checked(coarse, step_minutes=15, default_method="interpolate")
    np.testing.assert_allclose(result.frame["c"].to_numpy(), [1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5], **{
        "rtol": 1e-12, "atol": 1e-12})
    # with offset 5 the 15-minute data is off the grid, with the anchor at 00:00 it is on it again
    on = {"O": regular("00:00", 15, 4, 1.0, "o")}
    fails(on, "METHOD_REQUIRED", step_minutes=15, offset_minutes=5)
    assert checked(on, step_minutes=15, anchor="2023-05-05T12:45:00Z").report.channels["o"].passed_through


def test_offset_and_anchor_set_the_phase() -> None:
    frames = {"X": regular("00:02", 1, 40, np.arange(40.0), "x")}
    result = checked(frames, step_minutes=15, offset_minutes=-10, default_method="nearest")
    assert stamps(result.frame) == ["00:05", "00:20", "00:35"] and result.report.offset_minutes_effective == 5.0
    result = checked(frames, step_minutes=15, anchor="2023-12-31T00:07:00Z", default_method="nearest")
    assert stamps(result.frame) == ["00:07", "00:22", "00:37"] and result.report.anchor == "2023-12-31T00:07:00Z"
    assert result.frame["x"].tolist() == [5.0, 20.0, 35.0]


def test_union_range_and_column_order() -> None:
    frames = {
        "late": frame_ns(BASE + np.arange(30, 91, 15) * MIN, {"z": 1.0, "a": 2.0}),
        "early": frame_ns(BASE + np.arange(0, 46, 15) * MIN, {"m": 3.0}),
    }
    result = checked(frames, step_minutes=15, range_mode="union")
    assert list(result.frame.columns) == ["z", "a", "m"] and result.report.columns_out == ["z", "a", "m"]
    assert stamps(result.frame) == ["00:00", "00:15", "00:30", "00:45", "01:00", "01:15", "01:30"]
    assert result.frame["z"].isna().tolist() == [True, True, False, False, False, False, False]
    assert result.report.sources["early"].missing_grid_points == 3
    assert result.report.sources["late"].missing_grid_points == 2
    assert result.report.range_mode == "union"


def test_inputs_are_not_modified_and_other_resolutions_are_accepted() -> None:
    frames = a2_sources()
    copies = {k: v.copy() for k, v in frames.items()}
    micro = {k: v.set_axis(v.index.as_unit("us"), axis=0) for k, v in frames.items()}
    a = checked(frames, step_minutes=15, default_method="interpolate", decimals=1)
    b = checked(micro, step_minutes=15, default_method="interpolate", decimals=1)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    for k in frames:
        pd.testing.assert_frame_equal(frames[k], copies[k])
    a.frame.iloc[0, 0] = -1.0  # the output shares no memory with the inputs
    pd.testing.assert_frame_equal(frames["A"], copies["A"])


def test_report_and_progress() -> None:
    events: list[ProgressEvent] = []
    result = align(a2_sources(), AlignOptions(step_minutes=15, methods={"temp": "interpolate"}),
                   progress=events.append)
    report = result.report
    assert isinstance(report, AlignReport) and report.stage == "align"
    data = json.loads(report.model_dump_json())
    assert data["parameters_hash"] == AlignOptions(step_minutes=15, methods={"temp": "interpolate"}).parameters_hash()
    assert data["parameters"]["passed_through"] == ["load"]
    assert data["parameters"]["methods_resolved"]["temp"]["method"] == "interpolate"
    assert report.columns_out == ["load", "temp"] and report.duration_seconds >= 0
    assert all(e.stage == "align" for e in events)
    messages = [e.message for e in events if e.unit == "file"]
    assert messages[0].startswith("A: inspected (step 15 min, offset 0 min)")
    assert messages[1].startswith("B: inspected (step 10 min, offset 5 min)")
    assert [m for m in messages if "processed" in m] == [
        "A: processed (1 passed through, 0 resampled)", "B: processed (0 passed through, 1 resampled)"]
    assert any(e.unit == "chunk" and e.message.startswith("B/temp") for e in events)
    shares = [e.done / e.total for e in events]
    assert shares == sorted(shares) and shares[-1] == 1.0


def test_gate_parameters_and_suite() -> None:
    from zeitflow.quality import validate_frame_quality

    result = checked(a2_sources(), step_minutes=15, methods={"temp": "interpolate"})
    params = gate_parameters(result.report)
    assert params == {"channels": ["load", "temp"], "grid_start": "2024-01-01T00:15:00Z",
                      "grid_end": "2024-01-01T02:00:00Z", "grid_points": 8}
    good = validate_frame_quality(result.frame, "aligned", params)
    assert good.success, good.failures
    holed = result.frame.drop(result.frame.index[3])
    bad = validate_frame_quality(holed, "aligned", {**params, "grid_points": len(holed)})
    assert {f["expectation"] for f in bad.failures} == {"expect_column_values_to_be_null"}
    assert not validate_frame_quality(result.frame[["load"]], "aligned", params).success


# --------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------

PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(step_s=st.sampled_from([1, 60, 450, 900, 3600]), phase=st.integers(0, 10_000), count=st.integers(1, 40),
       values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=40, max_size=40),
       nans=st.lists(st.booleans(), min_size=40, max_size=40),
       gaps=st.lists(st.booleans(), min_size=40, max_size=40))
def test_a_frame_on_the_grid_is_returned_unchanged(step_s, phase, count, values, nans, gaps) -> None:
    """One source already on the grid comes back as it is, reindexed onto its grid range."""
    step = step_s * 1_000_000_000
    k = np.arange(count)
    keep = ~np.array(gaps[:count]) | (k == 0) | (k == count - 1)
    keep[: count // 2] |= True  # at least half the rows: the median step stays the grid step
    ticks = k[keep]
    times = BASE + (phase // max(step_s, 1) + 1) * step + ticks.astype(np.int64) * step
    column = np.array(values[:count])[keep]
    inner = (ticks != 0) & (ticks != count - 1)
    column[np.array(nans[:count])[keep] & inner] = nan
    frame = frame_ns(times, {"v": column})
    if count >= 2 and detect_step(frame).step_median_minutes != step_s / 60:
        event("skipped: the rows left have a larger median step")
        return  # no pass-through (covered elsewhere)
    options = {"step_minutes": step_s / 60}
    if count < 2:
        options["default_method"] = "nearest"
    result = checked({"s": frame}, **options)
    expected = frame.reindex(result.frame.index)
    pd.testing.assert_frame_equal(result.frame, expected)
    assert result.frame.index[0] == frame.index[0] and result.frame.index[-1] == frame.index[-1]
    if count >= 2:
        assert result.report.channels["v"].passed_through
        assert result.report.sources["s"].missing_grid_points == count - ticks.size


@st.composite
def source(draw, column: str):
    ticks = draw(st.lists(st.integers(0, 600), min_size=1, max_size=25, unique=True))
    times = BASE + np.array(sorted(ticks), dtype=np.int64) * 20_000_000_000  # 20-second units
    values = np.array(draw(st.lists(st.integers(-40, 40), min_size=len(ticks), max_size=len(ticks))), float) / 4
    holes = np.array(draw(st.lists(st.booleans(), min_size=len(ticks), max_size=len(ticks))))
    values[holes & (np.arange(len(ticks)) % 3 == 1)] = nan
    if np.isnan(values).all():
        values[0] = 1.0
    return frame_ns(times, {column: values})


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(a=source("a"), b=source("b"), step_s=st.sampled_from([60, 100, 300, 900]),
       method=st.sampled_from(METHODS), max_gap_min=st.sampled_from([0, 5, 60]))
def test_processed_channels_equal_resample_over_the_common_range(a, b, step_s, method, max_gap_min) -> None:
    """A processed channel is §2.5 applied to all of its samples, on the grid of the common range."""
    options = AlignOptions(step_minutes=step_s / 60, methods={"A": method, "B": method}, max_gap_minutes=max_gap_min)
    try:
        result = align({"A": a, "B": b}, options)
    except AlignError as error:
        assert error.code in ("EMPTY_COMMON_RANGE", "EMPTY_GRID")
        event(error.code)
        return
    lo, hi = pd.Timestamp(result.report.common_start), pd.Timestamp(result.report.common_end)
    for name, frame in (("a", a), ("b", b)):
        expected = resample(frame, ResampleOptions(step_minutes=step_s / 60, method=method, start=lo, end=hi,
                                                   max_gap_minutes=max_gap_min)).frame
        pd.testing.assert_series_equal(result.frame[name], expected[name])
