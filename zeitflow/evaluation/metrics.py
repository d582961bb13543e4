"""Forecast error metrics (stages.md §10.1), in the style of darts' ``metrics``: one function per metric, each
documenting its formula and its rule for zeros and NaN.

Every function flattens ``y_true`` and ``y_pred`` in C order (sample-major), drops the pairs in which either
side is NaN (counted in ``nan_dropped``) and returns a ``MetricResult``. A value is NaN only together with a
``reason``; with no valid pair at all the reason is always ``"no valid pairs"``. There is no epsilon division
anywhere: a zero denominator gives NaN and says so.

``all_metrics`` computes every metric at once for many groups of pairs (the rows of 2-D arrays), sharing the
masks and sums; the scalar functions are the one-group case of the same code, so both always agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np
from numpy.typing import ArrayLike

from zeitflow.errors import EvaluationError

__all__ = [
    "ALL_TARGETS_ZERO", "CONSTANT_TARGET", "FEWER_THAN_2_PAIRS", "METRIC_NAMES", "NORMALIZERS", "NO_TRAINING_SERIES",
    "NO_VALID_PAIRS", "NO_VALID_TRAINING_PAIRS", "SUM_ABS_ZERO", "TRAINING_SCALE_ZERO", "TRAINING_TOO_SHORT",
    "MetricArrays", "MetricResult", "all_metrics", "mae", "mape", "mase", "mse", "normalizer_zero_reason", "nrmse",
    "r2", "rmse", "seasonal_scale", "smape", "wape",
]

NO_VALID_PAIRS: Final = "no valid pairs"
ALL_TARGETS_ZERO: Final = "all targets are zero"
SUM_ABS_ZERO: Final = "sum of |y| is zero"
FEWER_THAN_2_PAIRS: Final = "fewer than 2 pairs"
CONSTANT_TARGET: Final = "constant target"
TRAINING_TOO_SHORT: Final = "training series too short"
NO_VALID_TRAINING_PAIRS: Final = "no valid training pairs"
TRAINING_SCALE_ZERO: Final = "training scale is zero"
NO_TRAINING_SERIES: Final = "no training series"
NORMALIZERS: Final = ("mean", "range", "std")
_NORMALIZER_ZERO: Final = {"mean": "mean of |y| is zero", "range": "range of y is zero", "std": "std of y is zero"}
#: Metric columns of the evaluation tables, in table order.
METRIC_NAMES: Final = ("mae", "mse", "rmse", "mape", "smape", "wape", "nrmse", "mase", "r2")


@dataclass(frozen=True)
class MetricResult:
    """One metric value: ``n`` pairs used, ``nan_dropped`` pairs with a NaN side, ``excluded`` pairs removed by
    the metric's own rule (MAPE: zero targets), and ``reason`` whenever ``value`` is NaN (else None)."""

    value: float
    n: int
    nan_dropped: int
    excluded: int = 0
    reason: str | None = None


@dataclass(frozen=True)
class MetricArrays:
    """``all_metrics`` for G groups: per metric a float64 value array and an object array of reasons (None
    where the value is a number), plus per group the valid pairs ``n``, ``nan_dropped`` and MAPE's
    ``mape_excluded`` (zero targets)."""

    values: dict[str, np.ndarray]
    reasons: dict[str, np.ndarray]
    n: np.ndarray
    nan_dropped: np.ndarray
    mape_excluded: np.ndarray

    def result(self, metric: str, group: int = 0) -> MetricResult:
        """The ``MetricResult`` of one metric and group (MAPE's ``n`` counts the non-zero targets only)."""
        excluded = int(self.mape_excluded[group]) if metric == "mape" else 0
        return MetricResult(float(self.values[metric][group]), int(self.n[group]) - excluded,
                            int(self.nan_dropped[group]), excluded, self.reasons[metric][group])


def normalizer_zero_reason(normalizer: str) -> str:
    """The reason of an NRMSE whose normaliser N is zero."""
    return _NORMALIZER_ZERO[normalizer]


# ------------------------------------------------------------------------------------------------
# shared statistics of groups of pairs
# ------------------------------------------------------------------------------------------------


def _groups(y_true: ArrayLike, y_pred: ArrayLike, *, flatten: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both sides as float64 arrays of shape (groups, pairs); ``flatten`` makes one group in C order."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    if t.shape != p.shape:
        raise EvaluationError("SHAPE_MISMATCH", f"y_true has shape {t.shape} but y_pred has shape {p.shape}",
                              details={"y_true": list(t.shape), "y_pred": list(p.shape)})
    if flatten:
        return t.reshape(1, -1), p.reshape(1, -1)
    if t.ndim == 1:
        return t.reshape(1, -1), p.reshape(1, -1)
    if t.ndim != 2:
        raise EvaluationError("SHAPE_MISMATCH", f"all_metrics needs 1-D or 2-D (groups, pairs) arrays; got "
                              f"shape {t.shape}", details={"shape": list(t.shape)})
    return t, p


class _Pairs:
    """Masked pair statistics per group (row). Invalid pairs hold 0 in ``y``, ``p`` and ``e`` so that plain
    row sums run over the valid pairs only; every statistic is computed once, on first use."""

    def __init__(self, y_true: np.ndarray, y_pred: np.ndarray) -> None:
        self.valid = ~(np.isnan(y_true) | np.isnan(y_pred))
        self.n = self.valid.sum(axis=1)
        self.nan_dropped = y_true.shape[1] - self.n
        self.y = np.where(self.valid, y_true, 0.0)
        self.p = np.where(self.valid, y_pred, 0.0)
        self.e = self.y - self.p
        self.empty = self.n == 0

    def mean_of(self, total: np.ndarray, count: np.ndarray | None = None) -> np.ndarray:
        """total / count (default n), NaN where the count is 0."""
        count = self.n if count is None else count
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1), np.nan)

    @cached_property
    def abs_e(self) -> np.ndarray:
        return np.abs(self.e)

    @cached_property
    def sum_abs_e(self) -> np.ndarray:
        return self.abs_e.sum(axis=1)

    @cached_property
    def sum_sq_e(self) -> np.ndarray:
        return np.square(self.e).sum(axis=1)

    @cached_property
    def sum_abs_y(self) -> np.ndarray:
        return np.abs(self.y).sum(axis=1)

    @cached_property
    def y_range(self) -> np.ndarray:
        high = np.where(self.valid, self.y, -np.inf).max(axis=1, initial=-np.inf)
        low = np.where(self.valid, self.y, np.inf).min(axis=1, initial=np.inf)
        return np.where(self.empty, np.nan, high - low)

    @cached_property
    def ss_y(self) -> np.ndarray:
        """Σ(y − ȳ)², two-pass, and exactly 0 when all valid y are equal (range 0)."""
        mean = self.mean_of(self.y.sum(axis=1))
        centred = np.where(self.valid, self.y - np.nan_to_num(mean)[:, None], 0.0)
        return np.where(self.y_range == 0, 0.0, np.square(centred).sum(axis=1))

    @cached_property
    def nonzero(self) -> np.ndarray:
        return self.valid & (self.y != 0)


def _finish(values: np.ndarray, rules: list[tuple[np.ndarray, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Apply NaN reasons in priority order (first rule wins) and set those values to NaN."""
    reasons = np.full(values.shape, None, dtype=object)
    undefined = np.zeros(values.shape, dtype=bool)
    for condition, text in reversed(rules):
        reasons[condition] = text
        undefined |= condition
    return np.where(undefined, np.nan, values).astype(np.float64), reasons


def _mae(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    return _finish(s.mean_of(s.sum_abs_e), [(s.empty, NO_VALID_PAIRS)])


def _mse(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    return _finish(s.mean_of(s.sum_sq_e), [(s.empty, NO_VALID_PAIRS)])


def _rmse(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    return _finish(np.sqrt(s.mean_of(s.sum_sq_e)), [(s.empty, NO_VALID_PAIRS)])


def _mape(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    used = s.nonzero.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(s.nonzero, s.abs_e / np.where(s.nonzero, np.abs(s.y), 1.0), 0.0)
    value = 100.0 * s.mean_of(ratios.sum(axis=1), used)
    return _finish(value, [(s.empty, NO_VALID_PAIRS), (used == 0, ALL_TARGETS_ZERO)])


def _smape(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    denominator = np.abs(s.y) + np.abs(s.p)
    positive = denominator > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(positive, 2.0 * s.abs_e / np.where(positive, denominator, 1.0), 0.0)
    return _finish(100.0 * s.mean_of(terms.sum(axis=1)), [(s.empty, NO_VALID_PAIRS)])


def _wape(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    zero = s.sum_abs_y == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 100.0 * s.sum_abs_e / np.where(zero, 1.0, s.sum_abs_y)
    return _finish(value, [(s.empty, NO_VALID_PAIRS), (zero, SUM_ABS_ZERO)])


def _nrmse(s: _Pairs, normalizer: str) -> tuple[np.ndarray, np.ndarray]:
    if normalizer == "mean":
        scale = s.mean_of(s.sum_abs_y)
    elif normalizer == "range":
        scale = s.y_range
    elif normalizer == "std":
        scale = np.sqrt(s.mean_of(s.ss_y))
    else:
        raise ValueError(f"normalizer={normalizer!r} is not allowed: choose one of {list(NORMALIZERS)}")
    zero = scale == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = np.sqrt(s.mean_of(s.sum_sq_e)) / np.where(zero, 1.0, scale)
    return _finish(value, [(s.empty, NO_VALID_PAIRS), (zero, _NORMALIZER_ZERO[normalizer])])


def _r2(s: _Pairs) -> tuple[np.ndarray, np.ndarray]:
    constant = s.ss_y == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        value = 1.0 - s.sum_sq_e / np.where(constant, 1.0, s.ss_y)
    return _finish(value, [(s.empty, NO_VALID_PAIRS), (s.n < 2, FEWER_THAN_2_PAIRS), (constant, CONSTANT_TARGET)])


def _mase(s: _Pairs, scale: MetricResult | None) -> tuple[np.ndarray, np.ndarray]:
    if scale is None:
        scale = MetricResult(float("nan"), 0, 0, 0, NO_TRAINING_SERIES)
    rules = [(s.empty, NO_VALID_PAIRS)]
    if scale.reason is not None:
        return _finish(np.full(s.n.shape, np.nan), [*rules, (np.ones(s.n.shape, dtype=bool), scale.reason)])
    return _finish(s.mean_of(s.sum_abs_e) / scale.value, rules)


def _single(y_true: ArrayLike, y_pred: ArrayLike, metric: str,
            compute: Callable[[_Pairs], tuple[np.ndarray, np.ndarray]]) -> MetricResult:
    s = _Pairs(*_groups(y_true, y_pred, flatten=True))
    values, reasons = compute(s)
    excluded = np.asarray(s.n - s.nonzero.sum(axis=1)) if metric == "mape" else np.zeros_like(s.n)
    arrays = MetricArrays({metric: values}, {metric: reasons}, s.n, s.nan_dropped, excluded)
    return arrays.result(metric)


# ------------------------------------------------------------------------------------------------
# public metric functions
# ------------------------------------------------------------------------------------------------


def mae(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Mean absolute error Σ|e| / n, e = y − ŷ over the n pairs without NaN."""
    return _single(y_true, y_pred, "mae", _mae)


def mse(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Mean squared error Σe² / n over the pairs without NaN."""
    return _single(y_true, y_pred, "mse", _mse)


def rmse(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Root mean squared error √(Σe² / n): the root of the pooled MSE, never a mean of per-group RMSEs."""
    return _single(y_true, y_pred, "rmse", _rmse)


def mape(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Mean absolute percentage error 100 · mean(|e| / |y|) over the valid pairs with y ≠ 0.

    Pairs with y = 0 are excluded and counted in ``excluded`` (``n`` counts the pairs used); if every valid
    target is 0 the value is NaN ("all targets are zero"). No epsilon division."""
    return _single(y_true, y_pred, "mape", _mape)


def smape(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Symmetric MAPE 100 · mean(2|e| / (|y| + |ŷ|)), in [0, 200].

    A term with |y| + |ŷ| = 0 (both zero, a perfect forecast) counts as 0 and stays in the mean."""
    return _single(y_true, y_pred, "smape", _smape)


def wape(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Weighted absolute percentage error 100 · Σ|e| / Σ|y|; NaN if Σ|y| = 0 ("sum of |y| is zero")."""
    return _single(y_true, y_pred, "wape", _wape)


def nrmse(y_true: ArrayLike, y_pred: ArrayLike, normalizer: str = "mean") -> MetricResult:
    """Normalised RMSE rmse / N with N = mean(|y|) (``mean``), max(y) − min(y) (``range``) or the population
    standard deviation of y (``std``), all over the valid pairs. N = 0 gives NaN with a reason naming N."""
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer={normalizer!r} is not allowed: choose one of {list(NORMALIZERS)}")
    return _single(y_true, y_pred, "nrmse", lambda s: _nrmse(s, normalizer))


def r2(y_true: ArrayLike, y_pred: ArrayLike) -> MetricResult:
    """Coefficient of determination 1 − Σe² / Σ(y − ȳ)².

    Fewer than 2 valid pairs give NaN ("fewer than 2 pairs"); a zero denominator, i.e. all valid targets
    equal, gives NaN ("constant target")."""
    return _single(y_true, y_pred, "r2", _r2)


def seasonal_scale(y_train: ArrayLike, m: int) -> MetricResult:
    """The MASE scale mean(|y_train[t] − y_train[t−m]|) over t = m … T−1 (``y_train`` flattened in C order),
    skipping the differences with a NaN side (counted in ``nan_dropped``).

    NaN when T ≤ m ("training series too short"), when every difference has a NaN side ("no valid training
    pairs"), or when the scale is 0 ("training scale is zero"). ``m`` must be an int ≥ 1."""
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or m < 1:
        raise ValueError(f"m={m!r} must be an int >= 1")
    series = np.asarray(y_train, dtype=np.float64).reshape(-1)
    m = int(m)
    if series.size <= m:
        return MetricResult(float("nan"), 0, 0, 0, TRAINING_TOO_SHORT)
    s = _Pairs(series[m:].reshape(1, -1), series[:-m].reshape(1, -1))
    scale = float(s.mean_of(s.sum_abs_e)[0])
    reason = NO_VALID_TRAINING_PAIRS if s.empty[0] else TRAINING_SCALE_ZERO if scale == 0 else None
    return MetricResult(float("nan") if reason else scale, int(s.n[0]), int(s.nan_dropped[0]), 0, reason)


def mase(y_true: ArrayLike, y_pred: ArrayLike, y_train: ArrayLike, m: int) -> MetricResult:
    """Mean absolute scaled error mae / scale, with scale = mean(|y_train[t] − y_train[t−m]|) over
    t = m … T−1 skipping NaN differences (``seasonal_scale``).

    No valid test pair gives "no valid pairs"; otherwise a scale without a difference ("training series too
    short", "no valid training pairs") or equal to 0 ("training scale is zero") gives NaN with that reason."""
    scale = seasonal_scale(y_train, m)
    return _single(y_true, y_pred, "mase", lambda s: _mase(s, scale))


def all_metrics(y_true: ArrayLike, y_pred: ArrayLike, *, normalizer: str = "mean",
                mase_scale: MetricResult | None = None) -> MetricArrays:
    """Every metric of ``METRIC_NAMES`` for each row (group) of 2-D ``(groups, pairs)`` arrays at once; a 1-D
    input is one group. ``mase_scale`` is a ``seasonal_scale`` result (None: MASE is NaN, "no training
    series"). Each group's values equal the scalar functions applied to that row."""
    if normalizer not in NORMALIZERS:
        raise ValueError(f"normalizer={normalizer!r} is not allowed: choose one of {list(NORMALIZERS)}")
    s = _Pairs(*_groups(y_true, y_pred, flatten=False))
    computed = {
        "mae": _mae(s), "mse": _mse(s), "rmse": _rmse(s), "mape": _mape(s), "smape": _smape(s), "wape": _wape(s),
        "nrmse": _nrmse(s, normalizer), "mase": _mase(s, mase_scale), "r2": _r2(s),
    }
    return MetricArrays(
        values={k: v for k, (v, _) in computed.items()}, reasons={k: r for k, (_, r) in computed.items()},
        n=s.n.astype(np.int64), nan_dropped=s.nan_dropped.astype(np.int64),
        mape_excluded=(s.n - s.nonzero.sum(axis=1)).astype(np.int64),
    )
