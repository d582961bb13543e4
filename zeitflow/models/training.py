"""Fit one model on a split dataset and predict its validation and test samples (stages.md §9).

``fit_and_predict`` is what a training task runs, in its own thread or in a dedicated spawned process: it
builds the forecaster, fits it on the scaled training split (baselines: the original-unit split), saves it to
a local directory and returns the history and the validation and test predictions in **original units**
(learnable kinds are inverse-transformed with the output scalers, §9.1). Everything it takes and returns
pickles, so the same call works across a process boundary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zeitflow.errors import ModelError
from zeitflow.models import build
from zeitflow.models.base import TrainingHistory
from zeitflow.models.baselines import persistence, seasonal_naive
from zeitflow.options.models import BASELINE_KINDS
from zeitflow.reports import ProgressCallback
from zeitflow.stages.scaling import ScalerSet

__all__ = ["SplitArrays", "TrainingData", "TrainingOutcome", "fit_and_predict", "mae_per_channel"]


@dataclass(frozen=True)
class SplitArrays:
    """One split in original units, with its reference times."""

    X: np.ndarray
    Y: np.ndarray
    reference_times: pd.DatetimeIndex


@dataclass(frozen=True)
class TrainingData:
    """Everything a fit needs: the three splits (original units), the fitted scalers, the feature names and,
    for ``seasonal_naive``, the output series and the output window offsets."""

    train: SplitArrays
    val: SplitArrays
    test: SplitArrays
    scalers_json: str
    input_features: list[str]
    output_features: list[str]
    output_offsets_minutes: dict[str, list[float]]
    output_series: dict[str, pd.Series] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingOutcome:
    """The history and the original-unit predictions of the validation and test splits."""

    history: TrainingHistory
    predictions: dict[str, np.ndarray]


def mae_per_channel(y_true: np.ndarray, y_pred: np.ndarray, channels: list[str]) -> dict[str, float | None]:
    """Mean absolute error per output channel over all samples and steps, ignoring NaN pairs
    (None when a channel has no finite pair, e.g. an unavailable baseline value everywhere)."""
    out: dict[str, float | None] = {}
    for j, name in enumerate(channels):
        diff = np.abs(y_true[:, :, j] - y_pred[:, :, j])
        finite = diff[np.isfinite(diff)]
        out[name] = float(finite.mean()) if finite.size else None
    return out


def _baseline_predictions(spec: Any, data: TrainingData, part: SplitArrays) -> np.ndarray:
    if spec.kind == "persistence":
        return persistence(part.X, data.input_features, data.output_features, n_out=part.Y.shape[1])
    return seasonal_naive(part.reference_times, data.output_series, data.output_offsets_minutes, spec.season_hours)


def fit_and_predict(spec: Mapping[str, Any] | Any, data: TrainingData, directory: str | Path,
                    progress: ProgressCallback | None = None) -> TrainingOutcome:
    """Fit ``spec`` on ``data``, save it into ``directory`` and predict the validation and test splits."""
    model = build(spec)
    scalers = ScalerSet.from_json(data.scalers_json)
    features = {"input_features": data.input_features, "output_features": data.output_features}
    if model.kind in BASELINE_KINDS:
        history = model.fit(data.train.X, data.train.Y, progress=progress, **features)
        predictions = {name: _baseline_predictions(model.spec, data, part)
                       for name, part in (("val", data.val), ("test", data.test))}
    else:
        has_val = len(data.val.X) > 0
        history = model.fit(
            scalers.transform_X(data.train.X), scalers.transform_Y(data.train.Y),
            scalers.transform_X(data.val.X) if has_val else None,
            scalers.transform_Y(data.val.Y) if has_val else None,
            progress=progress, **features,
        )
        predictions = {}
        for name, part in (("val", data.val), ("test", data.test)):
            if len(part.X) == 0:
                predictions[name] = np.empty((0, *part.Y.shape[1:]), dtype=np.float64)
                continue
            predictions[name] = scalers.inverse_transform_Y(model.predict(scalers.transform_X(part.X)))
    model.save(directory)
    for name, array in predictions.items():
        expected = getattr(data, name).Y.shape
        if array.shape != expected:
            raise ModelError("SHAPE_MISMATCH", f"{model.name}: {name} predictions have shape {array.shape}, "
                             f"expected {expected}", details={"model": model.name, "split": name})
    return TrainingOutcome(history=history, predictions=predictions)


def apply_model(directory: str | Path, X: np.ndarray, reference_times: pd.DatetimeIndex, scalers_json: str,
                output_offsets_minutes: Mapping[str, Any], output_series: Mapping[str, pd.Series],
                progress: ProgressCallback | None = None) -> np.ndarray:
    """Predictions in original units of the model saved in ``directory`` for the original-unit inputs ``X``:
    learnable kinds see scaled X and their output is inverse-transformed; baselines work in original units."""
    from zeitflow.models import load

    model = load(directory)
    if model.kind == "seasonal_naive":
        return model.predict_context(reference_times, output_series,  # type: ignore[attr-defined]
                                     {k: list(v) for k, v in output_offsets_minutes.items()})
    if model.kind in BASELINE_KINDS:
        return model.predict(X)
    scalers = ScalerSet.from_json(scalers_json)
    return scalers.inverse_transform_Y(model.predict(scalers.transform_X(X)))
