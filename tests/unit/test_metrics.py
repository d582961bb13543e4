"""Metric functions (stages.md §10.1): worked examples E1 and E2, the zero and NaN rules of every metric,
agreement with scikit-learn, and agreement of the batched ``all_metrics`` with the scalar functions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
    r2_score,
    root_mean_squared_error,
)

from zeitflow.errors import EvaluationError
from zeitflow.evaluation import metrics as M
from zeitflow.evaluation.metrics import MetricResult, all_metrics, seasonal_scale

EXACT = {"rel": 1e-12, "abs": 1e-12}
TEN_DIGITS = {"rel": 0, "abs": 1e-10}
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
nan = math.nan

E1_Y = [2.0, 0.0, 4.0, 5.0]
E1_P = [1.0, 1.0, 4.0, 7.0]
E1_TRAIN = [1.0, 3.0, 2.0, 4.0, 3.0, 5.0]
SCALAR = {"mae": M.mae, "mse": M.mse, "rmse": M.rmse, "mape": M.mape, "smape": M.smape, "wape": M.wape, "r2": M.r2}

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_nan = st.one_of(finite, st.just(nan))


# ------------------------------------------------------------------------------------------------
# E1 and E2
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, exact, printed", [
    ("mae", 1.0, 1.0),
    ("mse", 1.5, 1.5),
    ("rmse", math.sqrt(1.5), 1.2247448714),
    ("mape", 30.0, 30.0),
    ("smape", 75.0, 75.0),
    ("wape", 400 / 11, 36.3636363636),
    ("r2", 1 - 6 / 14.75, 0.5932203390),
])
def test_e1_metric_values(name: str, exact: float, printed: float) -> None:
    result = SCALAR[name](E1_Y, E1_P)
    assert result.value == pytest.approx(exact, **EXACT)
    assert result.value == pytest.approx(printed, **TEN_DIGITS)
    assert result.reason is None and result.nan_dropped == 0


def test_e1_mape_excludes_the_zero_target() -> None:
    assert M.mape(E1_Y, E1_P) == MetricResult(pytest.approx(30.0, **EXACT), 3, 0, 1, None)


def test_e1_other_metrics_use_all_four_pairs() -> None:
    for name, function in SCALAR.items():
        if name != "mape":
            result = function(E1_Y, E1_P)
            assert (result.n, result.excluded) == (4, 0), name


@pytest.mark.parametrize("normalizer, divisor, printed", [
    ("mean", 2.75, 0.4453617714),
    ("range", 5.0, 0.2449489743),
    ("std", math.sqrt(3.6875), 0.6377928041),
])
def test_e1_nrmse(normalizer: str, divisor: float, printed: float) -> None:
    result = M.nrmse(E1_Y, E1_P, normalizer=normalizer)
    assert result.value == pytest.approx(math.sqrt(1.5) / divisor, **EXACT)
    assert result.value == pytest.approx(printed, **TEN_DIGITS)
    assert result.reason is None


def test_e1_nrmse_default_is_mean() -> None:
    assert M.nrmse(E1_Y, E1_P).value == pytest.approx(M.nrmse(E1_Y, E1_P, "mean").value, **EXACT)


def test_e1_std_normaliser_is_the_population_std() -> None:
    assert math.sqrt(3.6875) == pytest.approx(1.9202864370, **TEN_DIGITS)
    assert math.sqrt(3.6875) == pytest.approx(float(np.std(E1_Y)), **EXACT)


@pytest.mark.parametrize("m, scale, expected", [(1, 1.6, 0.625), (2, 1.0, 1.0)])
def test_e1_mase(m: int, scale: float, expected: float) -> None:
    assert seasonal_scale(E1_TRAIN, m).value == pytest.approx(scale, **EXACT)
    result = M.mase(E1_Y, E1_P, E1_TRAIN, m)
    assert result.value == pytest.approx(expected, **EXACT)
    assert (result.n, result.reason) == (4, None)


def test_e2_zero_target_and_nonzero_forecast() -> None:
    y, p = [0.0, 1.0], [0.0, 3.0]
    assert M.smape(y, p).value == pytest.approx(50.0, **EXACT)
    mape = M.mape(y, p)
    assert mape.value == pytest.approx(200.0, **EXACT)
    assert (mape.excluded, mape.n) == (1, 1)
    assert M.wape(y, p).value == pytest.approx(200.0, **EXACT)


def test_e2_all_targets_zero() -> None:
    y, p = [0.0, 0.0], [1.0, 0.0]
    mape = M.mape(y, p)
    assert math.isnan(mape.value) and mape.reason == "all targets are zero"
    assert (mape.n, mape.excluded) == (0, 2)
    wape = M.wape(y, p)
    assert math.isnan(wape.value) and wape.reason == "sum of |y| is zero"
    assert M.smape(y, p).value == pytest.approx(100.0, **EXACT)


# ------------------------------------------------------------------------------------------------
# zero and NaN rules
# ------------------------------------------------------------------------------------------------


def test_mape_counts_zero_targets_among_valid_pairs_only() -> None:
    result = M.mape([0.0, 0.0, 2.0, nan, 4.0], [1.0, 5.0, 1.0, 3.0, 5.0])
    assert (result.n, result.excluded, result.nan_dropped) == (2, 2, 1)
    assert result.value == pytest.approx(100 * (0.5 + 0.25) / 2, **EXACT)


def test_mape_has_no_epsilon_division() -> None:
    result = M.mape([0.0, 1e-300], [1.0, 0.0])
    assert result.value == pytest.approx(100.0, **EXACT)


def test_smape_zero_zero_term_counts_as_zero_and_stays_in_the_mean() -> None:
    result = M.smape([0.0, 2.0], [0.0, 0.0])
    assert result.value == pytest.approx(100.0, **EXACT)  # terms 0 and 2
    assert (result.n, result.excluded) == (2, 0)
    assert M.smape([0.0, 0.0], [0.0, 0.0]).value == 0.0


@PROPERTY
@given(st.lists(st.tuples(finite, finite), min_size=1, max_size=30))
def test_smape_lies_between_0_and_200(pairs: list[tuple[float, float]]) -> None:
    y, p = zip(*pairs, strict=True)
    result = M.smape(y, p)
    assert result.reason is None
    assert 0.0 <= result.value <= 200.0


def test_smape_reaches_200_for_opposite_signs() -> None:
    assert M.smape([1.0, -3.0], [-1.0, 3.0]).value == pytest.approx(200.0, **EXACT)


def test_wape_pools_errors_over_the_sum_of_targets() -> None:
    assert M.wape([1.0, -3.0], [2.0, -1.0]).value == pytest.approx(100 * 3 / 4, **EXACT)


@pytest.mark.parametrize("normalizer, y, reason", [
    ("mean", [0.0, 0.0, 0.0], "mean of |y| is zero"),
    ("range", [3.0, 3.0, 3.0], "range of y is zero"),
    ("std", [3.0, 3.0, 3.0], "std of y is zero"),
    ("std", [0.1, 0.1, 0.1], "std of y is zero"),
])
def test_nrmse_zero_normaliser_is_nan_with_a_reason(normalizer: str, y: list[float], reason: str) -> None:
    result = M.nrmse(y, [1.0, 2.0, 3.0], normalizer=normalizer)
    assert math.isnan(result.value) and result.reason == reason


def test_nrmse_mean_uses_the_absolute_mean() -> None:
    # mean(y) = 0 but mean(|y|) = 2: the predecessor's signed mean would divide by zero
    result = M.nrmse([-2.0, 2.0], [-1.0, 1.0])
    assert result.value == pytest.approx(1.0 / 2.0, **EXACT)


def test_nrmse_rejects_an_unknown_normaliser() -> None:
    with pytest.raises(ValueError, match="normalizer"):
        M.nrmse(E1_Y, E1_P, normalizer="max")


def test_mase_skips_nan_training_differences() -> None:
    scale = seasonal_scale([1.0, 3.0, nan, 4.0, 6.0], 1)
    assert scale.value == pytest.approx(2.0, **EXACT)
    assert (scale.n, scale.nan_dropped) == (2, 2)
    assert M.mase([0.0], [3.0], [1.0, 3.0, nan, 4.0, 6.0], 1).value == pytest.approx(1.5, **EXACT)


@pytest.mark.parametrize("train, m, reason", [
    ([2.0, 2.0, 2.0], 1, "training scale is zero"),
    ([1.0, 2.0, 1.0, 2.0], 2, "training scale is zero"),
    ([1.0, 2.0], 2, "training series too short"),
    ([1.0], 1, "training series too short"),
    ([], 1, "training series too short"),
    ([1.0, nan, nan], 1, "no valid training pairs"),
])
def test_mase_without_a_scale_is_nan_with_a_reason(train: list[float], m: int, reason: str) -> None:
    result = M.mase([1.0, 2.0], [2.0, 2.0], train, m)
    assert math.isnan(result.value) and result.reason == reason
    assert result.n == 2


def test_mase_without_valid_test_pairs_says_so() -> None:
    result = M.mase([nan], [1.0], E1_TRAIN, 1)
    assert math.isnan(result.value) and result.reason == "no valid pairs"


@pytest.mark.parametrize("m", [0, -1, 1.5, True])
def test_mase_rejects_a_bad_lag(m: object) -> None:
    with pytest.raises(ValueError, match="m="):
        M.mase(E1_Y, E1_P, E1_TRAIN, m)  # type: ignore[arg-type]


def test_r2_needs_two_pairs() -> None:
    result = M.r2([1.0, nan], [2.0, 1.0])
    assert math.isnan(result.value) and result.reason == "fewer than 2 pairs"
    assert (result.n, result.nan_dropped) == (1, 1)


@pytest.mark.parametrize("y", [[3.0, 3.0, 3.0], [0.1, 0.1, 0.1], [1e-300, 1e-300]])
def test_r2_constant_target(y: list[float]) -> None:
    result = M.r2(y, [1.0] * len(y))
    assert math.isnan(result.value) and result.reason == "constant target"


def test_r2_can_be_negative() -> None:
    assert M.r2([1.0, 2.0], [2.0, 1.0]).value == pytest.approx(1 - 2 / 0.5, **EXACT)


def test_nan_pairs_are_dropped_and_counted() -> None:
    y = [1.0, nan, 3.0, nan, 5.0]
    p = [2.0, 2.0, nan, nan, 5.0]
    for name, function in SCALAR.items():
        result = function(y, p)
        assert result.nan_dropped == 3, name
    assert M.mae(y, p) == MetricResult(pytest.approx(0.5, **EXACT), 2, 3, 0, None)
    assert M.mse(y, p).value == pytest.approx(0.5, **EXACT)


@pytest.mark.parametrize("name", [*SCALAR, "nrmse", "mase"])
def test_no_valid_pair_gives_the_common_reason(name: str) -> None:
    y, p = [nan, 1.0], [2.0, nan]
    result = M.mase(y, p, E1_TRAIN, 1) if name == "mase" else M.nrmse(y, p) if name == "nrmse" else \
        SCALAR[name](y, p)
    assert math.isnan(result.value) and result.reason == "no valid pairs"
    assert (result.n, result.nan_dropped) == (0, 2)


def test_empty_input_has_no_valid_pairs() -> None:
    assert M.mae([], []) == MetricResult(pytest.approx(nan, nan_ok=True), 0, 0, 0, "no valid pairs")


def test_inputs_are_flattened_in_c_order() -> None:
    y = np.arange(12.0).reshape(3, 2, 2)
    p = y + np.linspace(-1, 1, 12).reshape(3, 2, 2) ** 3
    for function in SCALAR.values():
        assert function(y, p).value == pytest.approx(function(y.ravel(), p.ravel()).value, **EXACT)
    assert M.mase(y, p, y[:, :, 0], 1).value == pytest.approx(
        M.mase(y, p, y[:, :, 0].ravel(order="C"), 1).value, **EXACT)


def test_shape_mismatch_raises() -> None:
    with pytest.raises(EvaluationError) as info:
        M.mae([1.0, 2.0], [1.0, 2.0, 3.0])
    assert info.value.code == "SHAPE_MISMATCH"


def test_metric_result_is_frozen() -> None:
    result = M.mae(E1_Y, E1_P)
    with pytest.raises(AttributeError):
        result.value = 2.0  # type: ignore[misc]


# ------------------------------------------------------------------------------------------------
# scikit-learn cross-check and the batched helper
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
def test_agrees_with_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(2, 40)), int(rng.integers(1, 6)))
    y = rng.normal(loc=rng.uniform(-5, 5), scale=rng.uniform(0.1, 10), size=shape)
    p = y + rng.normal(scale=rng.uniform(0.01, 3), size=shape)
    flat_y, flat_p = y.ravel(), p.ravel()
    assert M.mae(y, p).value == pytest.approx(mean_absolute_error(flat_y, flat_p), **EXACT)
    assert M.mse(y, p).value == pytest.approx(mean_squared_error(flat_y, flat_p), **EXACT)
    assert M.rmse(y, p).value == pytest.approx(root_mean_squared_error(flat_y, flat_p), **EXACT)
    assert M.mape(y, p).value == pytest.approx(100 * mean_absolute_percentage_error(flat_y, flat_p), **EXACT)
    assert M.r2(y, p).value == pytest.approx(r2_score(flat_y, flat_p), **EXACT)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, **EXACT)


@PROPERTY
@given(st.integers(1, 4).flatmap(lambda groups: st.integers(0, 8).flatmap(lambda size: st.tuples(
    st.lists(st.lists(maybe_nan, min_size=size, max_size=size), min_size=groups, max_size=groups),
    st.lists(st.lists(maybe_nan, min_size=size, max_size=size), min_size=groups, max_size=groups),
))), st.sampled_from(M.NORMALIZERS))
def test_all_metrics_equals_the_scalar_functions_per_group(data: tuple[list, list], normalizer: str) -> None:
    y, p = (np.array(side, dtype=np.float64) for side in data)
    scale = seasonal_scale(E1_TRAIN, 1)
    batch = all_metrics(y, p, normalizer=normalizer, mase_scale=scale)
    for g in range(y.shape[0]):
        expected = {**{name: f(y[g], p[g]) for name, f in SCALAR.items()},
                    "nrmse": M.nrmse(y[g], p[g], normalizer), "mase": M.mase(y[g], p[g], E1_TRAIN, 1)}
        for name, result in expected.items():
            got = batch.result(name, g)
            assert _same(got.value, result.value), (name, g, got, result)
            assert (got.n, got.nan_dropped, got.excluded, got.reason) == \
                (result.n, result.nan_dropped, result.excluded, result.reason), (name, g)


def test_all_metrics_without_a_training_scale() -> None:
    batch = all_metrics(E1_Y, E1_P)
    assert math.isnan(batch.values["mase"][0]) and batch.reasons["mase"][0] == "no training series"
    assert batch.values["mae"][0] == 1.0 and batch.mape_excluded[0] == 1


def test_all_metrics_passes_the_scale_reason_on() -> None:
    batch = all_metrics([[1.0, 2.0], [3.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]], mase_scale=seasonal_scale([5.0], 1))
    assert list(batch.reasons["mase"]) == ["training series too short"] * 2


def test_all_metrics_rejects_three_dimensions() -> None:
    with pytest.raises(EvaluationError) as info:
        all_metrics(np.zeros((1, 2, 3)), np.zeros((1, 2, 3)))
    assert info.value.code == "SHAPE_MISMATCH"
