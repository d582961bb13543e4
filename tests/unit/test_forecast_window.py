"""Forecast input side (zeitflow.stages.forecast): ``input_window`` reproduces ``build_windows`` rows (plain,
calendar features, averaging, gap limits), ``latest_reference`` on the input-only grid of §7.4 (worked example
W1 of §7.7), NaN tails, NO_SAMPLES, and ``forecast_frame`` over two output channels with different horizons."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from zeitflow.errors import ModelError, WindowError
from zeitflow.frame import validate_frame
from zeitflow.options.windows import WindowOptions
from zeitflow.stages.forecast import InputWindow, forecast_frame, input_window, latest_reference
from zeitflow.stages.windows import build_windows

DAY = pd.Timestamp("2024-01-01", tz="UTC")
nan = math.nan


def ts(hhmm: str) -> pd.Timestamp:
    return pd.Timestamp(f"2024-01-01 {hhmm}", tz="UTC")


def regular(values, step_minutes: float = 15, start: pd.Timestamp = DAY) -> pd.Series:
    values = np.asarray(values, dtype=np.float64)
    index = pd.DatetimeIndex(start + pd.to_timedelta(np.arange(values.size) * step_minutes, unit="min"), name="utc")
    return pd.Series(values, index=index.as_unit("ns"))


def w1_channels() -> tuple[pd.Series, pd.Series]:
    """W1 of §7.7: P 0 … 24 and Q 100 … 124 on 15-minute rows, 2024-01-01 00:00 … 06:00."""
    return regular(np.arange(25.0)), regular(100 + np.arange(25.0))


def w1_options(**extra) -> WindowOptions:
    return WindowOptions(**{"n_in": 5, "n_out": 5, "stride_minutes": 60, **extra})


def assert_rows_match(inputs: dict[str, pd.Series], outputs: dict[str, pd.Series], options: WindowOptions) -> int:
    """``input_window`` at every dataset reference equals that dataset's X row (bit for bit)."""
    ds = build_windows(inputs, outputs, options)
    for i, r in enumerate(ds.reference_times):
        window = input_window(inputs, options, reference=r, outputs=list(outputs))
        assert window.reference_time == r
        assert window.input_features == ds.input_features
        assert window.calendar_features == ds.calendar_features
        np.testing.assert_array_equal(window.X, ds.X[i:i + 1])
        for name in outputs:
            np.testing.assert_array_equal(window.output_offsets_minutes[name], ds.output_offsets_minutes[name])
            expected = r + pd.to_timedelta(ds.output_offsets_minutes[name], unit="min")
            assert list(window.output_times[name]) == list(expected)
    return ds.n_samples


# ---- input_window == build_windows rows ----------------------------------------------------------------------


def test_input_window_equals_dataset_rows_w1() -> None:
    P, Q = w1_channels()
    assert assert_rows_match({"P": P}, {"Q": Q}, w1_options()) == 5
    assert assert_rows_match({"P": P}, {"Q": Q}, w1_options(stride_minutes=15)) == 17


def test_input_window_equals_dataset_rows_with_calendar_features() -> None:
    P, Q = w1_channels()
    tf = {"day": {"enabled": True, "horizon_start_hours": -1, "horizon_end_hours": 0, "local_time": False},
          "week": {"enabled": True}, "holiday": {"enabled": True}}
    options = w1_options(time_features=tf)
    assert assert_rows_match({"P": P}, {"Q": Q}, options) == 5
    window = input_window({"P": P}, options, reference=ts("03:00"), outputs=["Q"])
    assert window.X.shape == (1, 5, 1 + 2 + 2 + 1)
    assert window.input_features == ["P", "W_sin", "W_cos", "D_sin", "D_cos", "H"]


def test_input_window_equals_dataset_rows_with_averaging_and_gap_limit() -> None:
    P, Q = w1_channels()
    R = regular([1.0, 2.0, nan, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0], step_minutes=45)  # 00:00 … 06:00, NaN at 01:30
    options = w1_options(stride_minutes=15, inputs_spec={"P": {"average_over_horizon": True},
                                                         "R": {"max_gap_minutes": 45}},
                         outputs_spec={"Q": {"horizon_start_hours": 0, "horizon_end_hours": 2}})
    n = assert_rows_match({"P": P, "R": R}, {"Q": Q}, options)
    assert n > 0
    window = input_window({"P": P, "R": R}, options, reference=ts("03:30"), outputs=["Q"])
    np.testing.assert_array_equal(window.X[0, :, 0], np.full(5, (10 + 11 + 12 + 13) / 4))  # rows 02:30 … 03:15
    with pytest.raises(WindowError) as info:  # the first time of the 02:00 window, 01:00, has the NaN 01:30 as q
        input_window({"P": P, "R": R}, options, reference=ts("02:00"))
    details = info.value.details
    assert (details["channel"], details["timestamp"], details["reason"]) == ("R", "2024-01-01T01:00:00Z",
                                                                              "nan_neighbour")


def test_input_window_defaults_to_latest_reference_and_reports_output_times() -> None:
    P, _ = w1_channels()
    options = w1_options(outputs_spec={"Q": {}})
    window = input_window({"P": P}, options)
    assert isinstance(window, InputWindow)
    assert window.reference_time == ts("06:00")
    np.testing.assert_array_equal(window.X[0, :, 0], [20, 21, 22, 23, 24])
    assert window.output_features == ["Q"]
    assert list(window.output_times["Q"]) == [ts("06:00"), ts("06:15"), ts("06:30"), ts("06:45"), ts("07:00")]
    assert str(window.output_times["Q"].dtype) == "datetime64[ns, UTC]"
    np.testing.assert_array_equal(window.output_offsets_minutes["Q"], [0, 15, 30, 45, 60])
    np.testing.assert_array_equal(window.input_offsets_minutes["P"], [-60, -45, -30, -15, 0])


# ---- latest_reference ------------------------------------------------------------------------------------------


def test_latest_reference_w1_uses_inputs_only() -> None:
    # By hand: P spans 00:00 … 06:00 with horizon −1 … 0 h, so R_start = 00:00 + 1 h = 01:00 and
    # R_end = 06:00 − 0 h = 06:00 (inputs only). base = floor_hour(01:00) − 1 h + 0 = 00:00; with stride 60 the
    # references are 01:00 … 06:00, and the window of 06:00 (05:00, 05:15, …, 06:00 → P = 20 … 24) is valid.
    # With the output Q (horizon 0 … 1 h) the range would stop at 06:00 − 1 h = 05:00, as build_windows does.
    P, Q = w1_channels()
    assert latest_reference({"P": P}, w1_options()) == ts("06:00")
    assert build_windows({"P": P}, {"Q": Q}, w1_options()).reference_times[-1] == ts("05:00")
    assert latest_reference({"P": P}, w1_options(stride_minutes=50)) == ts("05:50")  # 00:00 + 7·50 min


def test_nan_at_the_end_moves_the_latest_reference_back() -> None:
    values = np.arange(25.0)
    values[-1] = nan  # last non-NaN value at 05:45
    P = regular(values)
    assert latest_reference({"P": P}, w1_options()) == ts("05:00")
    assert latest_reference({"P": P}, w1_options(stride_minutes=15)) == ts("05:45")


def test_invalid_last_window_searches_backwards() -> None:
    values = np.arange(25.0)
    values[22] = nan  # 05:30 lies inside the window of 06:00 (an exact hit on NaN)
    P = regular(values)
    assert latest_reference({"P": P}, w1_options()) == ts("05:00")
    with pytest.raises(WindowError) as info:
        input_window({"P": P}, w1_options(), reference=ts("06:00"))
    err = info.value
    assert err.code == "NO_SAMPLES"
    assert err.details["channel"] == "P" and err.details["timestamp"] == "2024-01-01T05:30:00Z"
    assert err.details["reason"] == "nan_neighbour"
    assert "'P'" in err.message and "2024-01-01T05:30:00Z" in err.message


def test_latest_reference_is_the_minimum_over_input_channels() -> None:
    P, _ = w1_channels()
    S = regular(np.arange(17.0))  # ends at 04:00
    assert latest_reference({"P": P, "S": S}, w1_options()) == ts("04:00")
    shifted = w1_options(inputs_spec={"S": {"horizon_start_hours": -2, "horizon_end_hours": -1}})
    assert latest_reference({"P": P, "S": S}, shifted) == ts("05:00")


def test_no_samples_when_every_reference_hits_a_missing_value() -> None:
    # A logger that drops the value at every full hour: each reference of the stride-60 grid (all at hh:00) has
    # r itself in its window, an exact hit on NaN, so no reference has a complete input window.
    values = np.arange(25.0)
    values[::4] = nan
    P = regular(values)
    with pytest.raises(WindowError) as info:
        latest_reference({"P": P}, w1_options())
    err = info.value
    assert err.code == "NO_SAMPLES"
    assert err.details["references_total"] == 4  # R_start = 00:15 + 1 h, R_end = 05:45: 02:00 … 05:00
    assert err.details["samples_dropped_by_channel"] == {"input:P": {"nan_neighbour": 4}}
    with pytest.raises(WindowError, match="NO_SAMPLES"):
        input_window({"P": P}, w1_options())


def test_errors_for_empty_or_unknown_inputs() -> None:
    P, _ = w1_channels()
    with pytest.raises(WindowError) as info:
        latest_reference({"P": regular([nan, nan])}, w1_options())
    assert info.value.code == "NO_NUMERIC_DATA"
    with pytest.raises(WindowError) as info:
        latest_reference({"P": P}, w1_options(inputs_spec={"X": {}}))
    assert info.value.code == "COLUMN_NOT_FOUND"
    with pytest.raises(WindowError) as info:
        input_window({}, w1_options())
    assert info.value.code == "COLUMN_NOT_FOUND"
    with pytest.raises(WindowError) as info:
        input_window({"P": P}, w1_options(outputs_spec={"Q": {}}), outputs=["R"])
    assert info.value.code == "COLUMN_NOT_FOUND"
    S = regular(np.arange(5.0), start=DAY + pd.Timedelta(hours=10))
    with pytest.raises(WindowError) as info:
        latest_reference({"P": P, "S": S}, w1_options())
    assert info.value.code == "NO_COMMON_RANGE"


# ---- forecast_frame --------------------------------------------------------------------------------------------


def two_output_window() -> InputWindow:
    P, _ = w1_channels()
    options = w1_options(outputs_spec={"Q": {}, "R": {"horizon_start_hours": 0, "horizon_end_hours": 2}})
    return input_window({"P": P}, options)


def test_forecast_frame_two_outputs_with_different_horizons() -> None:
    window = two_output_window()  # r = 06:00; Q every 15 min up to 07:00, R every 30 min up to 08:00
    Y = np.array([[[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0], [5.0, 50.0]]])
    out = forecast_frame(window, Y, ["Q", "R"])
    validate_frame(out, "forecast")
    assert list(out.columns) == ["Q", "R"]
    assert list(out.index) == [ts("06:00"), ts("06:15"), ts("06:30"), ts("06:45"), ts("07:00"), ts("07:30"),
                               ts("08:00")]
    np.testing.assert_array_equal(out["Q"].to_numpy(), [1, 2, 3, 4, 5, nan, nan])
    np.testing.assert_array_equal(out["R"].to_numpy(), [10, nan, 20, nan, 30, 40, 50])
    reordered = forecast_frame(window, Y[:, :, ::-1], ["R", "Q"])
    pd.testing.assert_frame_equal(reordered[["Q", "R"]], out)


def test_forecast_frame_shape_and_name_errors() -> None:
    window = two_output_window()
    with pytest.raises(ModelError) as info:
        forecast_frame(window, np.zeros((1, 5, 1)), ["Q", "R"])
    assert info.value.code == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        forecast_frame(window, np.zeros((1, 4, 2)), ["Q", "R"])
    assert info.value.code == "SHAPE_MISMATCH"
    with pytest.raises(ModelError):
        forecast_frame(window, np.zeros((1, 5, 2)), ["Q", "Q"])
    with pytest.raises(WindowError) as info:
        forecast_frame(window, np.zeros((1, 5, 1)), ["Z"])
    assert info.value.code == "COLUMN_NOT_FOUND"
