"""Cloud stage (stages.md §5): worked examples K1–K4, options validation, runtime errors, pairing by
timestamp, the one band formula, deterministic sampling, interpolation and the cloud plot."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zeitflow.errors import CloudError, FrameError, ParameterError
from zeitflow.options.base import to_parameter_error
from zeitflow.options.cloud import CloudInterpolateOptions, CloudOptions
from zeitflow.reports import ProgressEvent
from zeitflow.stages.cloud import (
    CloudReport,
    InterpolateReport,
    fit_cloud,
    format_equation,
    inside_band,
    interpolate,
    predict,
    tolerance_band,
)
from zeitflow.stages.cloud_plots import cloud_plot, plot_sample

EXACT = {"rel": 1e-12, "abs": 1e-12}
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
BASE = pd.Timestamp("2024-03-01", tz="UTC")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
nan = math.nan


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def utc_index(n: int, step_minutes: float = 15, start: pd.Timestamp = BASE) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(start + pd.to_timedelta(np.arange(n) * step_minutes, unit="min"), name="utc").as_unit("ns")


def series(values, name: str | None = None, index: pd.DatetimeIndex | None = None) -> pd.Series:
    values = np.asarray(values, dtype=np.float64)
    return pd.Series(values, index=utc_index(values.size) if index is None else index, name=name)


def frame_at(samples: list[tuple[str, float]], column: str = "v") -> pd.DataFrame:
    """A one-channel canonical frame from ``("HH:MM[:SS]", value)`` pairs on 2024-03-01 (UTC)."""
    index = pd.DatetimeIndex([pd.Timestamp(f"2024-03-01 {t}", tz="UTC") for t, _ in samples], name="utc").as_unit("ns")
    return pd.DataFrame({column: np.array([v for _, v in samples], dtype=np.float64)}, index=index)


def hhmm(index: pd.DatetimeIndex) -> list[str]:
    return [t.strftime("%H:%M") for t in index]


def k1(**options) -> tuple[pd.Series, pd.Series, CloudOptions]:
    x = series([0, 1, 2, 3, 4], "T_out [°C]")
    y = series([1, 3, 5, 7, 14], "load [kW]")
    return x, y, CloudOptions(min_points=3, **options)


def code_of(exc: pytest.ExceptionInfo[ValidationError]) -> str:
    return exc.value.errors()[0]["type"]


@pytest.fixture(scope="module")
def big_pairs() -> tuple[pd.Series, pd.Series]:
    """250,000 noisy pairs: above the default max_fit_points of 200,000."""
    n = 250_000
    rng = np.random.default_rng(2024)
    x = rng.normal(10.0, 5.0, n)
    y = -3.0 * x + 2.0 + rng.normal(0.0, 4.0, n)
    index = utc_index(n, step_minutes=1)
    return series(x, "T_out [°C]", index), series(y, "load [kW]", index)


# --------------------------------------------------------------------------------------------
# §5.4 worked examples
# --------------------------------------------------------------------------------------------


def test_k1_linear_fit_constant_band():
    x, y, options = k1(tol_constant=1.5)
    result = fit_cloud(x, y, options)
    assert set(result.coefficients) == {"a", "b"}
    assert result.coefficients["a"] == pytest.approx(3.0, **EXACT)
    assert result.coefficients["b"] == pytest.approx(0.0, **EXACT)
    assert result.equation == "y = 3.0000 x + 0.0000"
    assert result.r2 == pytest.approx(0.9, **EXACT)
    assert result.r2_reason is None
    points = result.points
    assert list(points.columns) == ["x", "y", "predicted", "lower", "upper", "inside"]
    assert points.index.name == "utc" and str(points.index.dtype) == "datetime64[ns, UTC]"
    assert points["predicted"].to_numpy() == pytest.approx([0, 3, 6, 9, 12], **EXACT)
    assert (points["y"] - points["predicted"]).to_numpy() == pytest.approx([1, 0, -1, -2, 2], **EXACT)
    assert points["inside"].tolist() == [True, True, True, False, False]
    assert points["inside"].dtype == bool
    assert result.n_outside == 2 and result.n_inside == 3
    np.testing.assert_array_equal(result.filtered_target.to_numpy(), [1, 3, 5, nan, nan])
    assert result.filtered_target.index.equals(y.index) and result.filtered_target.name == y.name
    report = result.report
    assert report.tol_constant_effective == 1.5 and report.tol_default_used is False
    assert report.filtered_values == 2


def test_k1_default_tolerance_is_a_tenth_of_the_range():
    x, y, options = k1()
    result = fit_cloud(x, y, options)
    assert result.report.tol_constant_effective == pytest.approx(1.3, **EXACT)
    assert result.report.tol_default_used is True
    assert result.points["inside"].tolist() == [True, True, True, False, False]
    np.testing.assert_array_equal(result.filtered_target.to_numpy(), [1, 3, 5, nan, nan])


def test_k1_proportional_band():
    x, y, options = k1(tolerance="proportional", tol_relative=0.2)
    result = fit_cloud(x, y, options)
    points = result.points
    width = (points["upper"] - points["predicted"]).to_numpy()
    assert width == pytest.approx([0, 0.6, 1.2, 1.8, 2.4], **EXACT)
    assert points["lower"].to_numpy() == pytest.approx([0, 2.4, 4.8, 7.2, 9.6], **EXACT)
    assert points["upper"].to_numpy() == pytest.approx([0, 3.6, 7.2, 10.8, 14.4], **EXACT)
    assert points["inside"].tolist() == [False, True, True, False, True]  # inside: x ∈ {1, 2, 4}
    assert result.report.tol_constant_effective == 0.0 and result.report.tol_default_used is True
    np.testing.assert_array_equal(result.filtered_target.to_numpy(), [nan, 3, 5, nan, 14])


def test_k2_negative_prediction_band():
    lower, upper = tolerance_band(np.array([-10.0, -10.0]), "proportional", 1.0, 0.1)
    assert lower == pytest.approx([-12, -12], **EXACT) and upper == pytest.approx([-8, -8], **EXACT)
    assert inside_band(np.array([-11.5, -7.9]), lower, upper).tolist() == [True, False]


def test_k2_negative_prediction_through_fit_cloud():
    # the line through the group means gives ŷ = −10 at x = 0 and ŷ = −20 at x = 2
    x = series([0, 0, 0, 0, 2, 2])
    y = series([-11.5, -8.5, -7.9, -12.1, -19, -21])
    result = fit_cloud(x, y, CloudOptions(min_points=3, tolerance="proportional", tol_relative=0.1, tol_constant=1))
    p = result.points
    assert p["predicted"].to_numpy() == pytest.approx([-10] * 4 + [-20] * 2, **EXACT)
    assert p["lower"].to_numpy()[:4] == pytest.approx([-12] * 4, **EXACT)
    assert p["upper"].to_numpy()[:4] == pytest.approx([-8] * 4, **EXACT)
    assert p["inside"].tolist() == [True, True, False, False, True, True]
    # the drawn bounds and the inside test are the same formula
    assert (p["inside"] == ((p["lower"] <= p["y"]) & (p["y"] <= p["upper"]))).all()
    assert (p["lower"] < p["predicted"]).all() and (p["predicted"] < p["upper"]).all()


def test_k3_poly2():
    x = series([-2, -1, 0, 1, 2])
    y = series([13.1, 5.6, 3.6, 3.6, 9.1])
    result = fit_cloud(x, y, CloudOptions(min_points=3, regression="poly2"))
    c = result.coefficients
    assert set(c) == {"c2", "c1", "c0"}
    assert c["c2"] == pytest.approx(2.0, **EXACT)
    assert c["c1"] == pytest.approx(-1.0, **EXACT)
    assert c["c0"] == pytest.approx(3.0, **EXACT)
    residuals = (result.points["y"] - result.points["predicted"]).to_numpy()
    assert residuals == pytest.approx([0.1, -0.4, 0.6, -0.4, 0.1], **EXACT)
    assert result.r2 == pytest.approx(660 / 667, **EXACT)
    assert result.equation == "y = 2.0000 x^2 - 1.0000 x + 3.0000"
    assert result.report.r2 == pytest.approx(660 / 667, **EXACT)


def k4_frame() -> pd.DataFrame:
    return frame_at([("00:00", 10), ("00:15", nan), ("00:30", 16), ("01:30", 40)], column="temp")


def test_k4_interpolation_onto_grid_gap_60():
    result = interpolate(k4_frame(), CloudInterpolateOptions(step_minutes=15, max_gap_minutes=60))
    frame = result.frame
    assert hhmm(frame.index) == ["00:00", "00:15", "00:30", "00:45", "01:00", "01:15", "01:30"]
    assert frame["temp"].to_numpy() == pytest.approx([10, 13, 16, 22, 28, 34, 40], **EXACT)
    report = result.report
    assert report.added_points == 3
    assert report.filled == {"temp": 4} and report.still_missing == {"temp": 0}
    assert report.grid_points == 7 and report.rows_in == 4 and report.rows_out == 7


def test_k4_interpolation_onto_grid_gap_45():
    result = interpolate(k4_frame(), CloudInterpolateOptions(step_minutes=15, max_gap_minutes=45))
    np.testing.assert_array_equal(result.frame["temp"].to_numpy(), [10, 13, 16, nan, nan, nan, 40])
    assert result.report.added_points == 3
    assert result.report.filled == {"temp": 1} and result.report.still_missing == {"temp": 3}
    assert result.report.channels["temp"].nan_gap == 3


# --------------------------------------------------------------------------------------------
# options (§5.2, §5.3)
# --------------------------------------------------------------------------------------------


def test_cloud_options_defaults():
    o = CloudOptions()
    assert (o.regression, o.tolerance, o.tol_constant, o.tol_relative) == ("linear", "constant", None, 0.1)
    assert (o.min_points, o.max_fit_points, o.seed, o.filter_target, o.equation_decimals) == (100, 200_000, 42, True, 4)
    none = CloudOptions(regression=None, tolerance=None, tol_relative=None, min_points=None, max_fit_points=None,
                        seed=None, filter_target=None, equation_decimals=None)
    assert none == o and none.parameters_hash() == o.parameters_hash()


def test_cloud_options_predecessor_names_and_values():
    old = CloudOptions.model_validate({"REG": "lin", "TR": "dep", "TOL_CNT": 1, "TOL_DEP": 0.2})
    new = CloudOptions(regression="linear", tolerance="proportional", tol_constant=1.0, tol_relative=0.2)
    assert old == new and old.parameters_hash() == new.parameters_hash()
    assert CloudOptions(tolerance="cnt").tolerance == "constant"
    assert CloudOptions(regression="poly2").regression == "poly2"
    assert CloudOptions(filter_target="nein").filter_target is False
    assert CloudOptions(filter_target="ja").filter_target is True


@pytest.mark.parametrize("value", [0, 100])
def test_cloud_options_tol_relative_bounds_accepted(value):
    assert CloudOptions(tol_relative=value).tol_relative == value


@pytest.mark.parametrize("kwargs", [
    {"min_points": 3}, {"min_points": 10**9}, {"max_fit_points": 1_000}, {"max_fit_points": 10**7},
    {"equation_decimals": 0}, {"equation_decimals": 12}, {"tol_constant": 0}, {"seed": 0}, {"min_points": 5.0},
])
def test_cloud_options_boundaries_accepted(kwargs):
    CloudOptions(**kwargs)


@pytest.mark.parametrize(("data", "code", "needle"), [
    ({"regression": "poly3"}, "INVALID_CHOICE", "regression='poly3'"),
    ({"regression": "quadratic"}, "INVALID_CHOICE", "['linear', 'poly2']"),
    ({"regression": 2}, "INVALID_CHOICE", "regression=2"),
    ({"REG": "poly"}, "INVALID_CHOICE", "regression"),
    ({"tolerance": "relative"}, "INVALID_CHOICE", "['constant', 'proportional']"),
    ({"TR": "abs"}, "INVALID_CHOICE", "tolerance"),
    ({"tol_constant": -0.1}, "PARAM_OUT_OF_RANGE", "TOL_CNT"),
    ({"tol_relative": -0.1}, "PARAM_OUT_OF_RANGE", "TOL_DEP"),
    ({"tol_relative": 100.5}, "PARAM_OUT_OF_RANGE", "tol_relative=100.5"),
    ({"min_points": 2}, "PARAM_OUT_OF_RANGE", "min_points=2"),
    ({"min_points": 10**9 + 1}, "PARAM_OUT_OF_RANGE", "min_points"),
    ({"max_fit_points": 999}, "PARAM_OUT_OF_RANGE", "max_fit_points=999"),
    ({"max_fit_points": 10**7 + 1}, "PARAM_OUT_OF_RANGE", "max_fit_points"),
    ({"seed": -1}, "PARAM_OUT_OF_RANGE", "seed=-1"),
    ({"equation_decimals": 13}, "PARAM_OUT_OF_RANGE", "equation_decimals=13"),
    ({"equation_decimals": -1}, "PARAM_OUT_OF_RANGE", "equation_decimals"),
    ({"tol_constant": nan}, "PARAM_NOT_FINITE", "tol_constant"),
    ({"tol_relative": math.inf}, "PARAM_NOT_FINITE", "tol_relative"),
    ({"min_points": nan}, "PARAM_NOT_FINITE", "min_points"),
    ({"min_points": 3.5}, "PARAM_NOT_INTEGER", "min_points=3.5"),
    ({"seed": True}, "PARAM_NOT_INTEGER", "seed"),
    ({"equation_decimals": 2.5}, "PARAM_NOT_INTEGER", "equation_decimals"),
    ({"tolerances": "constant"}, "UNKNOWN_PARAMETER", "tolerances"),
    ({"REG": "lin", "regression": "linear"}, "MUTUALLY_EXCLUSIVE", "REG"),
])
def test_cloud_options_validation_codes(data, code, needle):
    with pytest.raises(ValidationError) as exc:
        CloudOptions.model_validate(data)
    assert code_of(exc) == code
    assert needle in exc.value.errors()[0]["msg"]


def test_cloud_options_are_frozen_and_wrap_as_parameter_error():
    with pytest.raises(ValidationError):
        CloudOptions().seed = 1  # type: ignore[misc]
    with pytest.raises(ValidationError) as exc:
        CloudOptions(regression="cubic", tol_relative=-1)
    error = to_parameter_error(exc.value, ("cloud",))
    assert isinstance(error, ParameterError) and error.code == "INVALID_CHOICE"
    assert {e["code"] for e in error.details["errors"]} == {"INVALID_CHOICE", "PARAM_OUT_OF_RANGE"}


def test_interpolate_options_defaults_and_aliases():
    o = CloudInterpolateOptions()
    assert (o.max_gap_minutes, o.columns, o.step_minutes, o.offset_minutes, o.anchor, o.grid_only, o.decimals) == (
        60.0, None, None, 0.0, None, False, None)
    old = CloudInterpolateOptions.model_validate({"max_time_span": 30, "tss": 15, "decimalPrecision": "full"})
    new = CloudInterpolateOptions(max_gap_minutes=30, step_minutes=15)
    assert old == new and old.parameters_hash() == new.parameters_hash()
    assert CloudInterpolateOptions(step_minutes=1 / 60).step_minutes == 1 / 60
    assert CloudInterpolateOptions(max_gap_minutes=525_600, step_minutes=1440).max_gap_minutes == 525_600
    assert CloudInterpolateOptions(max_gap_minutes=0).max_gap_minutes == 0
    assert CloudInterpolateOptions(grid_only="ja", step_minutes=15).grid_only is True
    berlin = datetime.fromisoformat("2024-01-01T01:07:00+01:00")
    a = CloudInterpolateOptions(step_minutes=15, anchor=berlin)
    b = CloudInterpolateOptions(step_minutes=15, anchor=datetime(2024, 1, 1, 0, 7, tzinfo=UTC))
    assert a.parameters_hash() == b.parameters_hash()
    assert a.model_dump(mode="json")["anchor"] == "2024-01-01T00:07:00Z"


@pytest.mark.parametrize(("data", "code", "needle"), [
    ({"max_gap_minutes": -1}, "PARAM_OUT_OF_RANGE", "max_time_span"),
    ({"max_gap_minutes": 525_600.001}, "PARAM_OUT_OF_RANGE", "525600"),
    ({"max_gap_minutes": nan}, "PARAM_NOT_FINITE", "max_gap_minutes"),
    ({"step_minutes": 0}, "PARAM_OUT_OF_RANGE", "1/60 <= step_minutes <= 1440"),
    ({"step_minutes": 1441}, "PARAM_OUT_OF_RANGE", "step_minutes=1441"),
    ({"step_minutes": 15, "offset_minutes": math.inf}, "PARAM_NOT_FINITE", "offset_minutes"),
    ({"step_minutes": 15, "anchor": datetime(2024, 1, 1)}, "PARAM_NOT_TZ_AWARE", "anchor"),
    ({"step_minutes": 15, "anchor": datetime(2024, 1, 1, tzinfo=UTC), "offset_minutes": 5}, "MUTUALLY_EXCLUSIVE",
     "anchor"),
    ({"grid_only": True}, "MISSING_PARAMETER", "step_minutes is required"),
    ({"anchor": datetime(2024, 1, 1, tzinfo=UTC)}, "MISSING_PARAMETER", "step_minutes is required"),
    ({"offset_minutes": 5}, "MISSING_PARAMETER", "step_minutes is required"),
    ({"columns": []}, "MISSING_PARAMETER", "columns"),
    ({"columns": ["a", ""]}, "MISSING_PARAMETER", "columns[1]"),
    ({"columns": ["a", "a"]}, "PARAM_COMPARISON_FAILED", "more than once"),
    ({"decimals": 16}, "PARAM_OUT_OF_RANGE", "decimals=16"),
    ({"decimals": 1.5}, "PARAM_NOT_INTEGER", "decimals"),
    ({"max_gap": 5}, "UNKNOWN_PARAMETER", "max_gap"),
    ({"max_time_span": 5, "max_gap_minutes": 5}, "MUTUALLY_EXCLUSIVE", "max_time_span"),
])
def test_interpolate_options_validation_codes(data, code, needle):
    with pytest.raises(ValidationError) as exc:
        CloudInterpolateOptions.model_validate(data)
    assert code_of(exc) == code
    assert needle in exc.value.errors()[0]["msg"]


# --------------------------------------------------------------------------------------------
# runtime errors of fit_cloud (§5.2)
# --------------------------------------------------------------------------------------------


def test_timestamp_mismatch():
    x = series(np.arange(10.0), "T")
    y = series(np.arange(10.0), "P", utc_index(10, start=BASE + pd.Timedelta(seconds=1)))
    with pytest.raises(CloudError) as exc:
        fit_cloud(x, y, CloudOptions(min_points=3))
    assert exc.value.code == "TIMESTAMP_MISMATCH"
    assert "'T'" in exc.value.message and "'P'" in exc.value.message
    json.dumps(exc.value.to_dict())


def test_insufficient_matching_points_default_minimum_is_100():
    values = np.arange(105.0)
    x_values = values.copy()
    x_values[[3, 10, 20]] = nan
    y_values = values * 2
    y_values[[30, 40, 50]] = nan
    x, y = series(x_values, "T"), series(y_values, "P")
    with pytest.raises(CloudError) as exc:
        fit_cloud(x, y)
    err = exc.value
    assert err.code == "INSUFFICIENT_MATCHING_POINTS"
    assert err.details["n_matched"] == 105 and err.details["nan_pairs_dropped"] == 6 and err.details["n_pairs"] == 99
    assert "105 timestamps matched" in err.message and "6 dropped for NaN" in err.message
    assert "min_points=100" in err.message
    y_values[30] = 60.0  # one NaN pair fewer: exactly 100 pairs are enough
    ok = fit_cloud(x, series(y_values, "P"))
    assert ok.report.n_pairs == 100 and ok.report.nan_pairs_dropped == 5


def test_insufficient_matching_points_when_every_match_has_nan():
    x = series([1.0, nan, 3.0])
    y = series([nan, 2.0, nan])
    with pytest.raises(CloudError) as exc:
        fit_cloud(x, y, CloudOptions(min_points=3))
    assert exc.value.code == "INSUFFICIENT_MATCHING_POINTS"
    assert exc.value.details["n_pairs"] == 0 and exc.value.details["n_matched"] == 3


@pytest.mark.parametrize("role", ["x", "y"])
def test_duplicate_timestamps(role):
    index = utc_index(5)
    index = index.insert(2, index[1])
    duplicated = series(np.arange(6.0), "dup", index)
    plain = series(np.arange(5.0), "plain")
    args = (duplicated, plain) if role == "x" else (plain, duplicated)
    with pytest.raises(CloudError) as exc:
        fit_cloud(*args, CloudOptions(min_points=3))
    assert exc.value.code == "DUPLICATE_TIMESTAMPS"
    assert exc.value.details["channel"] == "dup" and exc.value.details["role"] == role


def test_degenerate_predictor():
    with pytest.raises(CloudError) as exc:
        fit_cloud(series([2, 2, 2, 2]), series([1, 2, 3, 4]), CloudOptions(min_points=3))
    assert exc.value.code == "DEGENERATE_PREDICTOR" and "constant" in exc.value.message
    x, y = series([0, 1, 0, 1, 1]), series([1, 2, 1.5, 3, 2])
    fit_cloud(x, y, CloudOptions(min_points=3))  # two distinct x are enough for a line
    with pytest.raises(CloudError) as exc:
        fit_cloud(x, y, CloudOptions(min_points=3, regression="poly2"))
    assert exc.value.code == "DEGENERATE_PREDICTOR" and "fewer than 3 distinct" in exc.value.message


@pytest.mark.parametrize("role", ["x", "y"])
def test_no_numeric_data(role):
    empty = series([nan, nan, nan, nan], "empty")
    full = series([1, 2, 3, 4], "full")
    args = (empty, full) if role == "x" else (full, empty)
    with pytest.raises(CloudError) as exc:
        fit_cloud(*args, CloudOptions(min_points=3))
    assert exc.value.code == "NO_NUMERIC_DATA" and exc.value.details["channel"] == "empty"
    with pytest.raises(CloudError, match="NO_NUMERIC_DATA"):
        fit_cloud(series([], "x0", utc_index(0)), full, CloudOptions(min_points=3))


@pytest.mark.parametrize("bad", ["naive", "not_series", "inf", "int", "nat"])
def test_invalid_inputs_raise_frame_error(bad):
    good = series([1, 2, 3, 4])
    if bad == "naive":
        other = pd.Series([1.0, 2, 3, 4], index=utc_index(4).tz_localize(None))
    elif bad == "not_series":
        other = good.to_frame()
    elif bad == "inf":
        other = series([1, math.inf, 3, 4])
    elif bad == "int":
        other = pd.Series([1, 2, 3, 4], index=utc_index(4))
    else:
        other = pd.Series([1.0, 2, 3, 4], index=pd.DatetimeIndex([BASE, pd.NaT, BASE, BASE], name="utc"))
    with pytest.raises(FrameError) as exc:
        fit_cloud(good, other, CloudOptions(min_points=3))
    assert exc.value.code == "INVALID_FRAME"


# --------------------------------------------------------------------------------------------
# pairing by timestamp, counts, report
# --------------------------------------------------------------------------------------------


def noisy(n: int = 200, seed: int = 0) -> tuple[pd.Series, pd.Series]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5, 25, n)
    y = 40 - 1.5 * x + rng.normal(0, 2, n)
    return series(x, "T_out [°C]"), series(y, "load [kW]")


def assert_same_fit(a, b):
    assert a.coefficients == b.coefficients and a.equation == b.equation
    assert a.r2 == b.r2
    pd.testing.assert_frame_equal(a.points, b.points)


def test_shuffled_rows_do_not_change_the_fit():
    x, y = noisy()
    reference = fit_cloud(x, y)
    order = np.random.default_rng(5).permutation(len(y))
    shuffled = y.iloc[order]
    result = fit_cloud(x, shuffled)
    assert_same_fit(reference, result)
    # the filtered target stays on its own (shuffled) index, with the same values per timestamp
    assert result.filtered_target.index.equals(shuffled.index)
    pd.testing.assert_series_equal(result.filtered_target.sort_index(), reference.filtered_target)


def test_shifted_rows_pair_by_timestamp_not_position():
    x, y = noisy()
    # one extra target row before the first x timestamp shifts every row position by one
    extra = pd.Series([123.0], index=pd.DatetimeIndex([BASE - pd.Timedelta(minutes=15)], name="utc").as_unit("ns"),
                      name=y.name)
    shifted = pd.concat([extra, y])
    reference, result = fit_cloud(x, y), fit_cloud(x, shifted)
    assert_same_fit(reference, result)
    assert result.report.y_unmatched == 1 and result.report.untested == 1
    assert result.filtered_target.iloc[0] == 123.0  # untested: kept
    positional = np.polyfit(x.to_numpy(), shifted.to_numpy()[: len(x)], 1)
    assert abs(positional[0] - result.coefficients["a"]) > 0.1  # what row pairing would have produced


def test_other_time_zone_and_resolution_pair_by_instant():
    x, y = noisy()
    y_berlin = y.copy()
    y_berlin.index = y.index.tz_convert("Europe/Berlin").as_unit("us")
    reference, result = fit_cloud(x, y), fit_cloud(x, y_berlin)
    assert_same_fit(reference, result)
    assert result.filtered_target.index.equals(y_berlin.index)


@PROPERTY
@given(st.permutations(list(range(12))), st.integers(min_value=0, max_value=11))
def test_property_row_order_never_changes_the_fit(order, drop):
    x, y = noisy(12, seed=3)
    options = CloudOptions(min_points=3, regression="poly2", tolerance="proportional", tol_constant=0.5)
    reference = fit_cloud(x, y, options)
    result = fit_cloud(x.iloc[order], y.iloc[list(reversed(order))], options)
    assert result.coefficients == pytest.approx(reference.coefficients, rel=1e-12, abs=1e-12)
    assert result.points["inside"].tolist() == reference.points["inside"].tolist()
    fewer = fit_cloud(x.drop(x.index[drop]), y, options)
    assert fewer.report.y_unmatched == 1 and fewer.report.untested == 1


def test_counts_with_nan_and_unmatched_rows():
    x, y = noisy(300, seed=9)
    x = x.copy()
    y = y.copy()
    x.iloc[[5, 6, 7]] = nan  # NaN pairs where y has a value: untested
    y.iloc[[10, 11]] = nan  # NaN pairs where x has a value
    y.iloc[7] = nan  # both NaN
    x = x.iloc[:-20]  # 20 target rows without x: untested
    y = y.iloc[3:]  # 3 x rows without y
    result = fit_cloud(x, y, CloudOptions(tol_constant=2.0))
    r = result.report
    assert (r.n_x, r.n_y, r.n_matched) == (280, 297, 277)
    assert (r.x_unmatched, r.y_unmatched) == (3, 20)
    assert r.nan_pairs_dropped == 5 and r.n_pairs == 272
    assert r.n_matched == r.nan_pairs_dropped + r.n_inside + r.n_outside
    assert int(y.notna().sum()) == r.n_inside + r.n_outside + r.untested
    assert r.untested == 2 + 20
    assert len(result.points) == r.n_pairs == r.rows_out and r.rows_in == 280 + 297
    assert int(result.filtered_target.isna().sum()) == int(y.isna().sum()) + r.n_outside
    assert r.fit_points == 272 and r.sampled is False
    json.loads(r.model_dump_json())
    assert r.parameters["tol_constant_effective"] == 2.0 and r.parameters_hash == CloudOptions(
        tol_constant=2.0).parameters_hash()


def test_inputs_are_not_modified_and_filter_target_off():
    x, y = noisy()
    x0, y0 = x.copy(), y.copy()
    result = fit_cloud(x, y, CloudOptions(filter_target=False, tol_constant=1.0))
    pd.testing.assert_series_equal(x, x0)
    pd.testing.assert_series_equal(y, y0)
    assert result.filtered_target is None and result.report.filtered_values == 0
    assert result.report.n_outside > 0


def test_constant_target_gives_nan_r2():
    x, y = series([0, 1, 2, 3]), series([0.1, 0.1, 0.1, 0.1])
    result = fit_cloud(x, y, CloudOptions(min_points=3))
    assert math.isnan(result.r2) and result.r2_reason == "constant target"
    assert result.report.r2 is None and result.report.r2_reason == "constant target"
    json.loads(result.report.model_dump_json())
    assert result.report.tol_constant_effective == 0.0


def test_no_points_inside_is_a_warning():
    x, y = series([0, 1, 2, 3]), series([0, 2, 1, 3])  # ŷ = 0.8 x + 0.3, every |r| ≥ 0.3
    result = fit_cloud(x, y, CloudOptions(min_points=3, tol_constant=0.1))
    assert result.n_inside == 0 and result.n_outside == 4
    codes = [w.code for w in result.report.warnings]
    assert codes == ["NO_POINTS_INSIDE"] and result.report.warnings[0].count == 4
    assert len(result.report.warnings[0].examples) <= 5
    assert result.filtered_target.isna().all()


def test_fit_cloud_progress_events():
    x, y = noisy()
    events: list[ProgressEvent] = []
    fit_cloud(x, y, progress=events.append)
    assert [e.unit for e in events] == ["phase", "phase", "chunk"]
    assert all(e.stage == "cloud" for e in events)
    assert [e.done for e in events] == [1, 2, 3] and events[-1].done == events[-1].total
    assert events[0].metrics["matched"] == 200


# --------------------------------------------------------------------------------------------
# band and equation
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30),
    st.floats(0, 100), st.floats(0, 1e3), st.floats(-2, 2),
)
def test_property_proportional_bounds_and_inside_test_agree(predicted, rel, const, spread):
    p = np.asarray(predicted)
    lower, upper = tolerance_band(p, "proportional", const, rel)
    assert (lower <= p).all() and (p <= upper).all()  # also for negative predictions
    assert inside_band(lower, lower, upper).all() and inside_band(upper, lower, upper).all()
    y = p + spread * (upper - p)  # |spread| ≤ 1 inside, > 1 outside (up to rounding at the edges)
    inside = inside_band(y, lower, upper)
    assert (inside == ((lower <= y) & (y <= upper))).all()
    if abs(spread) < 0.999:
        assert inside.all()


def test_band_formula_constant_and_unknown():
    lower, upper = tolerance_band(np.array([-3.0, 0.0, 5.0]), "constant", 1.5, 99.0)
    assert lower.tolist() == [-4.5, -1.5, 3.5] and upper.tolist() == [-1.5, 1.5, 6.5]
    assert inside_band(np.array([nan]), np.array([0.0]), np.array([1.0])).tolist() == [False]
    with pytest.raises(ValueError):
        tolerance_band(np.array([1.0]), "relative", 0, 0)


@pytest.mark.parametrize(("coefficients", "decimals", "text"), [
    ({"a": 3.0, "b": -1.8e-15}, 4, "y = 3.0000 x + 0.0000"),
    ({"a": -2.0, "b": 1.0}, 4, "y = -2.0000 x + 1.0000"),
    ({"a": -0.00001, "b": -1.0}, 4, "y = 0.0000 x - 1.0000"),
    ({"a": 1.23456, "b": -7.0}, 0, "y = 1 x - 7"),
    ({"c2": 2.0, "c1": -1.0, "c0": 3.0}, 4, "y = 2.0000 x^2 - 1.0000 x + 3.0000"),
    ({"c2": -0.5, "c1": -0.00004, "c0": -12.345678}, 2, "y = -0.50 x^2 + 0.00 x - 12.35"),
    ({"c2": 1e-13, "c1": 2.5, "c0": 0.0}, 12, "y = 0.000000000000 x^2 + 2.500000000000 x + 0.000000000000"),
])
def test_format_equation(coefficients, decimals, text):
    assert format_equation(coefficients, decimals) == text


def test_equation_decimals_option():
    x, y, options = k1(equation_decimals=1)
    assert fit_cloud(x, y, options).equation == "y = 3.0 x + 0.0"


def test_predict_helper_matches_points():
    x, y, options = k1()
    result = fit_cloud(x, y, options)
    assert predict(result.coefficients, x.to_numpy()) == pytest.approx(result.points["predicted"].to_numpy(), **EXACT)


# --------------------------------------------------------------------------------------------
# deterministic sampling above max_fit_points
# --------------------------------------------------------------------------------------------


def test_sampling_above_200000_points_is_deterministic(big_pairs):
    x, y = big_pairs
    first, again, other = fit_cloud(x, y), fit_cloud(x, y), fit_cloud(x, y, CloudOptions(seed=7))
    for r in (first, again, other):
        assert r.report.sampled is True and r.report.fit_points == 200_000
        assert r.report.n_pairs == 250_000 and len(r.points) == 250_000  # predictions use all pairs
    assert first.coefficients == again.coefficients and first.r2 == again.r2
    assert first.coefficients != other.coefficients
    # the sample is exactly default_rng(seed).choice(n, max_fit_points, replace=False) of the time-ordered pairs
    take = np.random.default_rng(42).choice(250_000, 200_000, replace=False)
    slope, intercept = np.polyfit(x.to_numpy()[take], y.to_numpy()[take], 1)
    assert first.coefficients["a"] == pytest.approx(slope, rel=1e-10)
    assert first.coefficients["b"] == pytest.approx(intercept, rel=1e-10)
    # R² over all pairs
    p = first.points
    ss_res = float(((p["y"] - p["predicted"]) ** 2).sum())
    ss_tot = float(((p["y"] - p["y"].mean()) ** 2).sum())
    assert first.r2 == pytest.approx(1 - ss_res / ss_tot, rel=1e-12)


def test_no_sampling_at_the_cap():
    x, y = noisy(1_000)
    result = fit_cloud(x, y, CloudOptions(max_fit_points=1_000))
    assert result.report.sampled is False and result.report.fit_points == 1_000
    x, y = noisy(1_001)
    sampled = fit_cloud(x, y, CloudOptions(max_fit_points=1_000))
    assert sampled.report.sampled is True and sampled.report.fit_points == 1_000
    assert sampled.report.n_pairs == len(sampled.points) == 1_001


# --------------------------------------------------------------------------------------------
# interpolate (§5.3)
# --------------------------------------------------------------------------------------------


def test_interpolate_gap_limit_is_inclusive_and_in_minutes():
    frame = frame_at([("00:00", 0), ("00:20", nan), ("00:40", nan), ("01:00", 60), ("01:30", nan), ("02:01", 121)])
    result = interpolate(frame, CloudInterpolateOptions(max_gap_minutes=60))
    # span 60 min (00:00 → 01:00) is filled; span 61 min (01:00 → 02:01) is not, whatever the row count
    np.testing.assert_array_equal(result.frame["v"].to_numpy(), [0, 20, 40, 60, nan, 121])
    assert result.report.added_points == 0 and result.report.step_minutes is None
    c = result.report.channels["v"]
    assert (c.filled, c.nan_gap, c.still_missing, c.nan_unbracketed) == (2, 1, 1, 0)
    wider = interpolate(frame, CloudInterpolateOptions(max_gap_minutes=61))
    assert wider.frame["v"].iloc[4] == pytest.approx(60 + 61 * 30 / 61, **EXACT)


def test_interpolate_leading_and_trailing_runs_are_not_filled():
    frame = frame_at([("00:00", nan), ("00:10", 1), ("00:20", nan), ("00:30", 3), ("00:40", nan)])
    result = interpolate(frame, CloudInterpolateOptions())
    np.testing.assert_array_equal(result.frame["v"].to_numpy(), [nan, 1, 2, 3, nan])
    c = result.report.channels["v"]
    assert (c.filled, c.nan_unbracketed, c.still_missing) == (1, 2, 2)


def test_interpolate_linear_in_time_not_rows():
    frame = frame_at([("00:00", 0), ("00:01", nan), ("00:30", 30)])
    result = interpolate(frame, CloudInterpolateOptions())
    assert result.frame["v"].iloc[1] == pytest.approx(1.0, **EXACT)  # by rows it would be 15


def test_interpolate_grid_only_and_off_grid_rows():
    frame = frame_at([("00:00", 0), ("00:07", 7), ("00:30", 30)])
    kept = interpolate(frame, CloudInterpolateOptions(step_minutes=15))
    assert hhmm(kept.frame.index) == ["00:00", "00:07", "00:15", "00:30"]
    assert kept.frame["v"].to_numpy() == pytest.approx([0, 7, 15, 30], **EXACT)
    result = interpolate(frame, CloudInterpolateOptions(step_minutes=15, grid_only=True))
    assert hhmm(result.frame.index) == ["00:00", "00:15", "00:30"]
    assert result.frame["v"].to_numpy() == pytest.approx([0, 15, 30], **EXACT)
    r = result.report
    assert r.added_points == 1 and r.off_grid_rows_dropped == 1 and r.rows_out == 3
    assert r.channels["v"].off_grid_values_dropped == 1 and r.channels["v"].filled == 1


def test_interpolate_grid_offset_and_anchor():
    frame = frame_at([("00:00", 0), ("01:00", 60)])
    offset = interpolate(frame, CloudInterpolateOptions(step_minutes=15, offset_minutes=5, grid_only=True))
    assert hhmm(offset.frame.index) == ["00:05", "00:20", "00:35", "00:50"]
    assert offset.frame["v"].to_numpy() == pytest.approx([5, 20, 35, 50], **EXACT)
    assert offset.report.off_grid_rows_dropped == 2 and offset.report.added_points == 4
    anchored = interpolate(frame, CloudInterpolateOptions(step_minutes=15,
                                                          anchor=datetime(2024, 1, 1, 0, 7, tzinfo=UTC)))
    assert hhmm(anchored.frame.index) == ["00:00", "00:07", "00:22", "00:37", "00:52", "01:00"]
    assert anchored.report.anchor == "2024-01-01T00:07:00Z"


def test_interpolate_decimals_round_only_filled_values():
    frame = frame_at([("00:00", 0.123456), ("00:10", nan), ("00:30", 1.0)])
    result = interpolate(frame, CloudInterpolateOptions(decimals=2))
    values = result.frame["v"].to_numpy()
    assert values[0] == 0.123456 and values[2] == 1.0
    assert values[1] == np.round(0.123456 + (1 - 0.123456) / 3, 2)


def test_interpolate_selected_columns_and_passthrough():
    index = pd.DatetimeIndex([BASE + pd.Timedelta(minutes=m) for m in (0, 20, 30, 60)], name="utc").as_unit("ns")
    frame = pd.DataFrame({"a": [1.0, nan, nan, 4.0], "b": [nan, 5.0, nan, nan]}, index=index)
    before = frame.copy()
    result = interpolate(frame, CloudInterpolateOptions(columns=["a"], step_minutes=15))
    pd.testing.assert_frame_equal(frame, before)  # input untouched
    assert hhmm(result.frame.index) == ["00:00", "00:15", "00:20", "00:30", "00:45", "01:00"]
    assert result.frame["a"].to_numpy() == pytest.approx([1, 1.75, 2, 2.5, 3.25, 4], **EXACT)
    np.testing.assert_array_equal(result.frame["b"].to_numpy(), [nan, nan, 5, nan, nan, nan])
    assert list(result.frame.columns) == ["a", "b"] and result.report.columns == ["a"]
    assert set(result.report.filled) == {"a"} and result.report.added_points == 2
    assert result.report.input_first == "2024-03-01T00:00:00Z"
    json.loads(result.report.model_dump_json())
    assert isinstance(result.report, InterpolateReport)


def test_interpolate_progress_events():
    events: list[ProgressEvent] = []
    interpolate(k4_frame(), CloudInterpolateOptions(step_minutes=15), progress=events.append)
    assert [e.unit for e in events] == ["phase", "column"]
    assert events[-1].done == events[-1].total == 2 and events[-1].stage == "cloud_interpolate"


def test_interpolate_errors():
    with pytest.raises(CloudError) as exc:
        interpolate(k4_frame(), CloudInterpolateOptions(columns=["temp", "load"]))
    assert exc.value.code == "COLUMN_NOT_FOUND" and exc.value.details["columns"] == ["load"]
    with pytest.raises(CloudError, match="NO_NUMERIC_DATA"):
        interpolate(frame_at([("00:00", nan), ("00:10", nan)]), CloudInterpolateOptions())
    with pytest.raises(CloudError, match="EMPTY_GRID"):
        interpolate(frame_at([("00:01", 1), ("00:02", 2)]), CloudInterpolateOptions(step_minutes=15))
    long = pd.DataFrame({"v": [1.0, 2.0]}, index=pd.DatetimeIndex([BASE, BASE + pd.Timedelta(days=100)], name="utc"))
    with pytest.raises(CloudError) as exc:
        interpolate(long, CloudInterpolateOptions(step_minutes=1 / 60))
    assert exc.value.code == "GRID_TOO_LARGE"
    unsorted = k4_frame().iloc[::-1]
    with pytest.raises(FrameError):
        interpolate(unsorted, CloudInterpolateOptions())


# --------------------------------------------------------------------------------------------
# plot
# --------------------------------------------------------------------------------------------


def test_cloud_plot_png_deterministic():
    x, y, options = k1(tol_constant=1.5)
    result = fit_cloud(x, y, options)
    first, second = cloud_plot(result), cloud_plot(result)
    assert first.startswith(PNG_MAGIC) and first == second
    again = cloud_plot(fit_cloud(x, y, options))
    assert again == first


def test_cloud_plot_poly2_proportional_and_constant_target():
    x = series([-2, -1, 0, 1, 2])
    y = series([13.1, 5.6, 3.6, 3.6, 9.1])
    result = fit_cloud(x, y, CloudOptions(min_points=3, regression="poly2", tolerance="dep", tol_relative=0.1))
    assert cloud_plot(result, title="poly2").startswith(PNG_MAGIC)
    flat = fit_cloud(series([0, 1, 2, 3]), series([1, 1, 1, 1]), CloudOptions(min_points=3))
    assert cloud_plot(flat).startswith(PNG_MAGIC)


def test_cloud_plot_samples_huge_results_deterministically(big_pairs):
    result = fit_cloud(*big_pairs, CloudOptions(tol_constant=4.0))
    png = cloud_plot(result, max_points=5_000)
    assert png.startswith(PNG_MAGIC) and png == cloud_plot(result, max_points=5_000)
    inside = result.points["inside"].to_numpy()
    rows = plot_sample(inside, 5_000, 42)
    assert rows.size == 5_000 and np.array_equal(rows, plot_sample(inside, 5_000, 42))
    assert not np.array_equal(rows, plot_sample(inside, 5_000, 43))
    assert np.all(np.diff(rows) > 0)
    share = (~inside[rows]).mean()
    assert share == pytest.approx((~inside).mean(), abs=0.01)  # proportional strata
    rare = np.ones(100_000, dtype=bool)
    rare[:50] = False
    assert (~rare[plot_sample(rare, 1_000, 1)]).sum() == 50  # rare outside points are all drawn
    assert np.array_equal(plot_sample(inside[:10], 100, 0), np.arange(10))


def test_cloud_report_is_a_stage_report():
    x, y, options = k1()
    report = fit_cloud(x, y, options).report
    assert isinstance(report, CloudReport) and report.stage == "cloud"
    assert report.equation == "y = 3.0000 x + 0.0000" and set(report.coefficients) == {"a", "b"}
