"""Scores of the STL and LSTM phases of the clean stage, and threshold helpers (stages.md §3.8, §3.9).

statsmodels and TensorFlow/Keras are imported lazily, inside the functions that need them (§9.1):
importing this module imports neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

__all__ = [
    "ScoreSummary", "apply_threshold", "lstm_forecast", "round_significant", "score_summary", "stl_decompose",
    "suggest_threshold",
]

MAD_SCALE = 1.4826
MAD_FACTOR = 4.0
SUMMARY_QUANTILES = (0.5, 0.9, 0.99, 0.999)
LSTM_LEARNING_RATE = 0.001


class ScoreSummary(BaseModel):
    """Distribution of the scores of one phase and channel (§3.9): n, quantiles, maximum, and MAD."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int
    q50: float
    q90: float
    q99: float
    q999: float
    max: float
    mad: float

    def table(self) -> list[dict[str, float | int | str]]:
        """Rows ``{statistic, value}`` for a markdown or table artifact."""
        return [{"statistic": k, "value": v} for k, v in self.model_dump().items()]


def apply_threshold(scores: pd.Series, threshold: float | None) -> pd.Series:
    """Flags of §3.8: True iff score > threshold; a NaN score is never flagged; ``None`` flags nothing."""
    values = scores.to_numpy(dtype=np.float64)
    if threshold is None:
        flags = np.zeros(values.size, dtype=bool)
    else:
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold}")
        with np.errstate(invalid="ignore"):
            flags = values > threshold
    return pd.Series(flags, index=scores.index, name=scores.name, dtype=bool)


def round_significant(value: float, digits: int = 4) -> float:
    """``value`` rounded to ``digits`` significant digits (0 stays 0)."""
    if value == 0 or not math.isfinite(value):
        return float(value)
    return float(f"{value:.{digits}g}")


def score_summary(scores: np.ndarray) -> ScoreSummary:
    """n, quantiles 0.5/0.9/0.99/0.999 (numpy's linear method), maximum and MAD of the non-NaN scores."""
    s = scores[~np.isnan(scores)]
    if s.size == 0:
        return ScoreSummary(n=0, q50=0.0, q90=0.0, q99=0.0, q999=0.0, max=0.0, mad=0.0)
    q = np.quantile(s, SUMMARY_QUANTILES)
    median = float(q[0])
    mad = float(np.median(np.abs(s - median)))
    return ScoreSummary(n=int(s.size), q50=median, q90=float(q[1]), q99=float(q[2]), q999=float(q[3]),
                        max=float(s.max()), mad=mad)


def suggest_threshold(summary: ScoreSummary) -> float:
    """median + 4 · 1.4826 · MAD, rounded to 4 significant digits (§3.9)."""
    return round_significant(summary.q50 + MAD_FACTOR * MAD_SCALE * summary.mad)


# ------------------------------------------------------------------------------------------------
# STL
# ------------------------------------------------------------------------------------------------


def stl_decompose(values: np.ndarray, period_steps: int, seasonal: int, robust: bool) -> dict[str, np.ndarray]:
    """statsmodels ``STL(values, period, seasonal, robust)`` with library defaults otherwise (§3.8).

    Returns ``observed``, ``trend``, ``seasonal`` and ``residual`` arrays of the input's length.
    """
    from statsmodels.tsa.seasonal import STL

    fit = STL(np.asarray(values, dtype=np.float64), period=period_steps, seasonal=seasonal, robust=robust).fit()
    return {
        "observed": np.asarray(fit.observed, dtype=np.float64).copy(),
        "trend": np.asarray(fit.trend, dtype=np.float64).copy(),
        "seasonal": np.asarray(fit.seasonal, dtype=np.float64).copy(),
        "residual": np.asarray(fit.resid, dtype=np.float64).copy(),
    }


# ------------------------------------------------------------------------------------------------
# LSTM
# ------------------------------------------------------------------------------------------------


def lstm_forecast(
    values: np.ndarray, period_steps: int, *, units: int, epochs: int, batch_size: int, seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """In-sample one-step forecast of §3.8; element i < ``period_steps`` is NaN.

    MinMax-scales the span to [0, 1], trains Input(p, 1) → LSTM(units, tanh) → Dense(1) with Adam
    (learning rate 0.001) and MSE on every window of p values with the next value as target, shuffled,
    without validation split or early stopping, and inverse-scales the predictions.

    Seeds Keras (``keras.utils.set_random_seed`` and TensorFlow op determinism) immediately before the
    model is built. That state is process-global: call this only in a process in which no other Keras
    model is built or trained at the same time (§0.9).
    """
    import keras
    import tensorflow as tf

    x = np.asarray(values, dtype=np.float64)
    p = int(period_steps)
    lo, hi = float(x.min()), float(x.max())
    scale = hi - lo
    scaled = (x - lo) / scale if scale > 0 else np.zeros_like(x)
    windows = np.lib.stride_tricks.sliding_window_view(scaled[:-1], p)
    inputs = np.ascontiguousarray(windows[:, :, None], dtype=np.float32)
    targets = np.ascontiguousarray(scaled[p:, None], dtype=np.float32)

    class _EpochEnd(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            if on_epoch is not None:
                on_epoch(epoch + 1, float((logs or {}).get("loss", float("nan"))))

    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    model = keras.Sequential([
        keras.Input(shape=(p, 1)),
        keras.layers.LSTM(int(units), activation="tanh"),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=LSTM_LEARNING_RATE), loss="mse")
    model.fit(inputs, targets, epochs=int(epochs), batch_size=int(batch_size), shuffle=True, verbose=0,
              callbacks=[_EpochEnd()])
    predicted = np.asarray(model.predict(inputs, batch_size=int(batch_size), verbose=0), dtype=np.float64)[:, 0]
    del model
    forecast = np.full(x.size, np.nan)
    forecast[p:] = predicted * scale + lo if scale > 0 else lo
    return forecast
