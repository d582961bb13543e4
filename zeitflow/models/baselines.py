"""Baseline forecasters (stages.md §9.3): ``persistence`` and ``seasonal_naive``.

Unlike the learnable kinds, baselines work in **original units**: they read unscaled input windows or the
unscaled output series, and their predictions are compared with the unscaled truth without an inverse
transform. A baseline whose reason applies (``baseline_reason``) is *unavailable*, which is not an error of
the run; calling it anyway raises ``ModelError`` ``BASELINE_UNAVAILABLE`` with ``details["reason"]``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final

import numpy as np
import pandas as pd

from zeitflow.errors import ModelError
from zeitflow.models.base import (
    EpochRecord,
    Forecaster,
    TrainingHistory,
    check_predict_input,
    check_training_arrays,
)
from zeitflow.models.sklearn import dump_joblib, load_joblib
from zeitflow.options.models import MODEL_KINDS
from zeitflow.options.windows import NS_PER_HOUR
from zeitflow.reports import ProgressCallback, ProgressEvent, emit
from zeitflow.stages.grid import NS_PER_MINUTE
from zeitflow.stages.windows import values_at

__all__ = [
    "FORECASTERS", "SEASON_SHORTER_THAN_HORIZON", "TARGET_NOT_IN_INPUTS", "PersistenceForecaster",
    "SeasonalNaiveForecaster", "baseline_reason", "horizon_end_hours", "persistence", "persistence_reason",
    "seasonal_naive", "seasonal_naive_reason",
]

TARGET_NOT_IN_INPUTS: Final = "TARGET_NOT_IN_INPUTS"
SEASON_SHORTER_THAN_HORIZON: Final = "SEASON_SHORTER_THAN_HORIZON"
OUTPUT_SERIES_MISSING: Final = "OUTPUT_SERIES_MISSING"
CONTEXT_REQUIRED: Final = "CONTEXT_REQUIRED"

MODEL_FILE: Final = "model.joblib"
_STATE_FORMAT: Final = "zeitflow.baseline/1"


def _unavailable(kind: str, reason: str, message: str, **details: Any) -> ModelError:
    return ModelError("BASELINE_UNAVAILABLE", f"{kind}: {message}", details={"kind": kind, "reason": reason, **details})


def _hours_ns(hours: float) -> int:
    return round(hours * NS_PER_HOUR)


# ------------------------------------------------------------------------------------------------
# availability
# ------------------------------------------------------------------------------------------------


def persistence_reason(input_features: Sequence[str], output_features: Sequence[str]) -> str | None:
    """``TARGET_NOT_IN_INPUTS`` when some output channel is not an input channel, else None."""
    inputs = set(input_features)
    return TARGET_NOT_IN_INPUTS if any(name not in inputs for name in output_features) else None


def horizon_end_hours(output_offsets_minutes: Mapping[str, Sequence[float]]) -> float:
    """The latest output window offset over all channels, in hours (the output ``horizon_end_hours``)."""
    return max(float(np.max(np.asarray(offsets, dtype=np.float64))) for offsets in output_offsets_minutes.values()
               ) / 60.0


def seasonal_naive_reason(season_hours: float, output_horizon_end_hours: float) -> str | None:
    """``SEASON_SHORTER_THAN_HORIZON`` when reading t_k − season would read after the reference (the future),
    else None. Compared in integer nanoseconds, as window times are built (§7.4)."""
    return SEASON_SHORTER_THAN_HORIZON if _hours_ns(season_hours) < _hours_ns(output_horizon_end_hours) else None


def baseline_reason(kind: str, *, input_features: Sequence[str] | None = None,
                    output_features: Sequence[str] | None = None, season_hours: float | None = None,
                    output_horizon_end_hours: float | None = None,
                    output_offsets_minutes: Mapping[str, Sequence[float]] | None = None) -> str | None:
    """Why the baseline ``kind`` is unavailable for this dataset, or None when it can run (always None for a
    learnable kind). Persistence needs the feature names; seasonal_naive needs ``season_hours`` and either
    ``output_horizon_end_hours`` or ``output_offsets_minutes``."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {list(MODEL_KINDS)}")
    if kind == "persistence":
        if input_features is None or output_features is None:
            raise TypeError("baseline_reason('persistence') needs input_features and output_features")
        return persistence_reason(input_features, output_features)
    if kind == "seasonal_naive":
        if season_hours is None:
            raise TypeError("baseline_reason('seasonal_naive') needs season_hours")
        if output_horizon_end_hours is None:
            if output_offsets_minutes is None:
                raise TypeError("baseline_reason('seasonal_naive') needs output_horizon_end_hours or "
                                "output_offsets_minutes")
            output_horizon_end_hours = horizon_end_hours(output_offsets_minutes)
        return seasonal_naive_reason(season_hours, output_horizon_end_hours)
    return None


# ------------------------------------------------------------------------------------------------
# the baseline functions (original units)
# ------------------------------------------------------------------------------------------------


def persistence(X_orig: np.ndarray, input_features: Sequence[str], output_features: Sequence[str], *,
                n_out: int) -> np.ndarray:
    """ŷ[s, k, j] = X_orig[s, n_in − 1, i(j)], i(j) the input channel named like output j, for k < ``n_out``:
    the last unscaled input value of each target, repeated over the horizon. Float64 (n, n_out, c_out).

    ``n_out`` is keyword-only because X carries no horizon length. A target that is not an input raises
    ``BASELINE_UNAVAILABLE`` (reason ``TARGET_NOT_IN_INPUTS``)."""
    X = np.asarray(X_orig, dtype=np.float64)
    if X.ndim != 3 or X.shape[1] == 0 or X.shape[2] != len(input_features):
        raise ModelError("SHAPE_MISMATCH", f"persistence: X_orig must have shape (n, n_in, {len(input_features)}) "
                         f"for the input features {list(input_features)}; got {tuple(X.shape)}",
                         details={"shape": list(X.shape), "input_features": list(input_features)})
    if isinstance(n_out, bool) or not isinstance(n_out, int | np.integer) or n_out < 1:
        raise ModelError("SHAPE_MISMATCH", f"persistence: n_out must be an int >= 1; got {n_out!r}")
    inputs = set(input_features)
    missing = [name for name in output_features if name not in inputs]
    if missing:
        raise _unavailable("persistence", TARGET_NOT_IN_INPUTS, f"output channels {missing} are not input "
                           f"channels {list(input_features)}, so there is no last value to persist",
                           missing=missing)
    first = {name: i for i, name in reversed(list(enumerate(input_features)))}
    columns = np.array([first[name] for name in output_features], dtype=np.intp)
    last = X[:, -1, columns]
    return np.repeat(last[:, np.newaxis, :], int(n_out), axis=1)


def _utc_ns(times: Any) -> np.ndarray:
    index = pd.DatetimeIndex(times)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return np.asarray(index.as_unit("ns").asi8, dtype=np.int64)


def seasonal_naive(reference_times: Any, output_series: Mapping[str, pd.Series],
                   output_offsets_minutes: Mapping[str, Sequence[float]], season_hours: float, *,
                   output_horizon_end_hours: float | None = None,
                   max_gap_minutes: Mapping[str, float | None] | None = None) -> np.ndarray:
    """ŷ[s, k, j] = the value of output channel j at r_s + offset_{j,k} − ``season_hours``, read with
    ``values_at`` (§7.5) from the unscaled output series; invalid values are NaN. Float64 (n, n_out, c_out),
    channels in the order of ``output_offsets_minutes``.

    ``output_horizon_end_hours`` defaults to the latest offset; a season shorter than it raises
    ``BASELINE_UNAVAILABLE`` (reason ``SEASON_SHORTER_THAN_HORIZON``). ``max_gap_minutes`` optionally gives a
    channel's gap limit, as in its window spec."""
    channels = list(output_offsets_minutes)
    if not channels:
        raise ModelError("SHAPE_MISMATCH", "seasonal_naive: output_offsets_minutes names no output channel")
    offsets = {c: np.asarray(output_offsets_minutes[c], dtype=np.float64).reshape(-1) for c in channels}
    lengths = {c: int(v.size) for c, v in offsets.items()}
    if len(set(lengths.values())) != 1 or 0 in lengths.values():
        raise ModelError("SHAPE_MISMATCH", f"seasonal_naive: every output channel needs the same number (>= 1) of "
                         f"offsets; got {lengths}", details={"n_out": lengths})
    end_hours = horizon_end_hours(offsets) if output_horizon_end_hours is None else output_horizon_end_hours
    if seasonal_naive_reason(season_hours, end_hours) is not None:
        raise _unavailable("seasonal_naive", SEASON_SHORTER_THAN_HORIZON,
                           f"season_hours={season_hours} is shorter than the output horizon end {end_hours} h, "
                           "so the seasonal value would lie after the reference time", season_hours=season_hours,
                           horizon_end_hours=end_hours)
    missing = [c for c in channels if c not in output_series]
    if missing:
        raise _unavailable("seasonal_naive", OUTPUT_SERIES_MISSING, f"no output series for channels {missing}",
                           missing=missing)
    refs = _utc_ns(reference_times)
    season_ns = _hours_ns(season_hours)
    gaps = max_gap_minutes or {}
    out = np.empty((refs.size, lengths[channels[0]], len(channels)), dtype=np.float64)
    for j, channel in enumerate(channels):
        offsets_ns = np.round(offsets[channel] * NS_PER_MINUTE).astype(np.int64)
        times = (refs[:, np.newaxis] + (offsets_ns - season_ns)[np.newaxis, :]).reshape(-1)
        result = values_at(output_series[channel], pd.to_datetime(times, unit="ns", utc=True),
                           max_gap_minutes=gaps.get(channel))
        out[:, :, j] = np.where(result.valid, result.values, np.nan).reshape(refs.size, -1)
    return out


# ------------------------------------------------------------------------------------------------
# forecasters
# ------------------------------------------------------------------------------------------------


class _BaselineForecaster(Forecaster):
    """A baseline behind the ``Forecaster`` interface: ``fit`` only records shapes and feature names (it gets
    original-unit arrays); the model file stores them, so ``load`` restores a baseline that predicts alike."""

    model_file: ClassVar[str] = MODEL_FILE

    def fit(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None, *, progress: ProgressCallback | None = None,
            input_features: list[str] | None = None, output_features: list[str] | None = None
            ) -> TrainingHistory:
        """Record (n_in, c_in, n_out, c_out) and the feature names; nothing is learned (loss None)."""
        started = time.perf_counter()
        X, Y, _, _ = check_training_arrays(X_train, Y_train, X_val, Y_val)
        self.shape = None
        self._record_shape(X, Y, input_features, output_features)
        self.best_epoch = 1
        emit(progress, ProgressEvent(stage="train", unit="model", done=1, total=1, message=self.name))
        return TrainingHistory(epochs=[EpochRecord(epoch=1, loss=None, val_loss=None,
                                                   seconds=time.perf_counter() - started)],
                               best_epoch=1, epochs_run=1)

    def _state(self) -> dict[str, Any]:
        assert self.shape is not None
        return {"format": _STATE_FORMAT, "kind": self.kind, "shape": self.shape.model_dump(mode="json"),
                "spec": self.spec.model_dump(mode="json")}

    def _save_model_file(self, directory: Path) -> None:
        dump_joblib(directory / self.model_file, self._state())

    def _load_model_file(self, directory: Path) -> None:
        path = directory / self.model_file
        state = load_joblib(path)
        if not isinstance(state, dict) or state != self._state():
            raise ModelError("MODEL_FILE_INVALID", f"{path}: not the saved {self.kind} baseline described by "
                             f"{directory / 'model.json'}", details={"path": str(path)})


class PersistenceForecaster(_BaselineForecaster):
    """``persistence`` as a forecaster, in original units: ``predict(X_orig)`` repeats the last unscaled input
    value of each target channel (matched by the feature names given to ``fit``)."""

    kind: ClassVar[str] = "persistence"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Float64 (n, n_out, c_out) in original units; BASELINE_UNAVAILABLE if a target is not an input."""
        X = check_predict_input(X, self.shape, self.kind)
        assert self.shape is not None
        return persistence(X, self.shape.input_features, self.shape.output_features, n_out=self.shape.n_out)


class SeasonalNaiveForecaster(_BaselineForecaster):
    """``seasonal_naive`` as a forecaster, in original units. Its values come from the output series, not from
    X, so use ``predict_context``; plain ``predict`` raises BASELINE_UNAVAILABLE."""

    kind: ClassVar[str] = "seasonal_naive"

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Always BASELINE_UNAVAILABLE (reason CONTEXT_REQUIRED): the input window does not hold the values."""
        raise _unavailable(self.kind, CONTEXT_REQUIRED, "the seasonal value cannot be computed from X; call "
                           "predict_context(reference_times, output_series, output_offsets_minutes)")

    def predict_context(self, reference_times: Any, output_series: Mapping[str, pd.Series],
                        output_offsets_minutes: Mapping[str, Sequence[float]], *,
                        max_gap_minutes: Mapping[str, float | None] | None = None) -> np.ndarray:
        """Float64 (n, n_out, c_out) in original units, channels in the fitted output order."""
        if self.shape is None:
            raise ModelError("NOT_FITTED", f"{self.kind}: call fit before predict or save")
        missing = [name for name in self.shape.output_features if name not in output_offsets_minutes]
        if missing:
            raise ModelError("SHAPE_MISMATCH", f"{self.kind}: no output offsets for fitted output channels "
                             f"{missing}", details={"missing": missing})
        ordered = {name: output_offsets_minutes[name] for name in self.shape.output_features}
        steps = {name: int(np.asarray(v).size) for name, v in ordered.items()}
        if set(steps.values()) != {self.shape.n_out}:
            raise ModelError("SHAPE_MISMATCH", f"{self.kind}: fitted with n_out = {self.shape.n_out}, got offsets "
                             f"{steps}", details={"n_out": steps, "fitted": self.shape.n_out})
        return seasonal_naive(reference_times, output_series, ordered, self.spec.season_hours,
                              max_gap_minutes=max_gap_minutes)


FORECASTERS: Final[dict[str, type[Forecaster]]] = {
    cls.kind: cls for cls in (PersistenceForecaster, SeasonalNaiveForecaster)
}


def missing_baselines(kinds: Sequence[str], taken: set[str], *, X_test: np.ndarray, n_out: int,
                      reference_times: Any, input_features: Sequence[str], output_features: Sequence[str],
                      output_offsets_minutes: Mapping[str, Sequence[float]], output_series: Mapping[str, pd.Series],
                      season_hours: float) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Test predictions (original units) of the baselines among ``kinds`` that no model in ``taken`` already
    provides (stages.md §10.2), and the reason of each one that is unavailable."""
    predictions: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    for kind in kinds:
        if kind in taken:
            continue
        reason = baseline_reason(kind, input_features=input_features, output_features=output_features,
                                 season_hours=season_hours, output_offsets_minutes=output_offsets_minutes)
        if reason is not None:
            unavailable[kind] = reason
        elif kind == "persistence":
            predictions[kind] = persistence(X_test, input_features, output_features, n_out=n_out)
        else:
            predictions[kind] = seasonal_naive(reference_times, output_series, output_offsets_minutes, season_hours)
    return predictions, unavailable
