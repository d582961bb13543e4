"""scikit-learn forecasters (stages.md §9.3): ``svr_direct``, ``svr_mimo`` and ``linear``.

Each flattens the input window (n, n_in, c_in) to (n, n_in·c_in) and predicts (n, n_out, c_out) in scaled
units. The fitted estimators are saved with joblib as ``model.joblib`` (temporary file, then ``os.replace``);
scikit-learn models round-trip bit-identically. No kind here imports TensorFlow.
"""

from __future__ import annotations

import io
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Final

import joblib
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from zeitflow.errors import ModelError
from zeitflow.io.artifacts import write_bytes
from zeitflow.models.base import (
    EpochRecord,
    Forecaster,
    TrainingHistory,
    check_predict_input,
    check_training_arrays,
)
from zeitflow.reports import ProgressCallback, ProgressEvent, ReportWarning, emit

__all__ = [
    "FORECASTERS", "LARGE_SVR_ROWS", "LinearForecaster", "SvrDirectForecaster", "SvrMimoForecaster", "dump_joblib",
    "load_joblib", "step_positions",
]

MODEL_FILE: Final = "model.joblib"
LARGE_SVR_ROWS: int = 50_000
_STATE_FORMAT: Final = "zeitflow.sklearn/1"


def dump_joblib(path: Path, obj: Any) -> None:
    """Serialise ``obj`` with joblib and write it atomically (temporary file beside ``path``, then rename)."""
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_joblib(path: Path) -> Any:
    """The object in a joblib file, or MODEL_FILE_INVALID naming the path (missing, truncated or corrupt)."""
    try:
        return joblib.load(path)
    except FileNotFoundError:
        raise ModelError("MODEL_FILE_INVALID", f"{path}: model file is missing", details={"path": str(path)}) from None
    except Exception as exc:  # unpickling can fail with almost any exception type
        raise ModelError("MODEL_FILE_INVALID", f"{path}: unreadable model file: {type(exc).__name__}: {exc}",
                         details={"path": str(path)}) from exc


def step_positions(n_out: int) -> np.ndarray:
    """τ_k = k/(n_out − 1) for k = 0 … n_out−1, and [0] when n_out = 1 (the svr_mimo step feature)."""
    if n_out == 1:
        return np.zeros(1)
    return np.arange(n_out, dtype=np.float64) / (n_out - 1)


def _svr_pipeline(spec: Any) -> Pipeline:
    return make_pipeline(StandardScaler(), SVR(kernel=spec.svr_kernel, C=spec.c, epsilon=spec.epsilon, degree=3,
                                              gamma="scale"))


def _flat(X: np.ndarray) -> np.ndarray:
    return X.reshape(X.shape[0], -1)


def _mse(pred: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean((pred - truth) ** 2))


class _SklearnForecaster(Forecaster):
    """Shared fit/predict/save logic; subclasses fit their estimators and map flattened windows to outputs."""

    model_file: ClassVar[str] = MODEL_FILE

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.estimators: list[Any] = []

    @abstractmethod
    def _fit_estimators(self, X: np.ndarray, Y: np.ndarray, progress: ProgressCallback | None,
                        warnings: list[ReportWarning]) -> None:
        """Fit ``self.estimators`` on validated arrays (``self.shape`` is already recorded)."""

    @abstractmethod
    def _predict_estimators(self, X: np.ndarray) -> np.ndarray:
        """(n, n_out, c_out) float64 predictions of validated X."""

    @abstractmethod
    def _expected_estimators(self) -> int:
        """How many estimators the fitted shape implies."""

    def _progress(self, progress: ProgressCallback | None, done: int, total: int) -> None:
        emit(progress, ProgressEvent(stage="train", unit="model", done=done, total=total, message=self.name))

    def fit(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None, *, progress: ProgressCallback | None = None,
            input_features: list[str] | None = None, output_features: list[str] | None = None
            ) -> TrainingHistory:
        """Fit on scaled arrays; the history holds one entry: train MSE, val MSE (if given) and the fit time."""
        X, Y, X_val, Y_val = check_training_arrays(X_train, Y_train, X_val, Y_val)
        started = time.perf_counter()
        self.shape, self.estimators, self.best_epoch = None, [], None
        warnings: list[ReportWarning] = []
        try:
            self._record_shape(X, Y, input_features, output_features)
            self._fit_estimators(X, Y, progress, warnings)
        except BaseException:
            self.shape, self.estimators = None, []
            raise
        self.best_epoch = 1
        loss = _mse(self._predict_estimators(X), Y)
        val_loss = None if X_val is None or Y_val is None else _mse(self._predict_estimators(X_val), Y_val)
        seconds = time.perf_counter() - started
        return TrainingHistory(epochs=[EpochRecord(epoch=1, loss=loss, val_loss=val_loss, seconds=seconds)],
                               best_epoch=1, epochs_run=1, warnings=warnings)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Float64 predictions (n, n_out, c_out) in scaled units."""
        X = check_predict_input(X, self.shape, self.kind)
        return self._predict_estimators(X)

    def _save_model_file(self, directory: Path) -> None:
        dump_joblib(directory / self.model_file,
                    {"format": _STATE_FORMAT, "kind": self.kind, "estimators": self.estimators})

    def _load_model_file(self, directory: Path) -> None:
        path = directory / self.model_file
        state = load_joblib(path)
        if (not isinstance(state, dict) or state.get("format") != _STATE_FORMAT or state.get("kind") != self.kind
                or not isinstance(state.get("estimators"), list)
                or len(state["estimators"]) != self._expected_estimators()):
            raise ModelError("MODEL_FILE_INVALID", f"{path}: not a saved {self.kind} model matching the shapes "
                             f"in {directory / 'model.json'}", details={"path": str(path)})
        self.estimators = state["estimators"]

    def _out_shape(self) -> tuple[int, int]:
        assert self.shape is not None
        return self.shape.n_out, self.shape.c_out


class SvrDirectForecaster(_SklearnForecaster):
    """Direct strategy: one StandardScaler+SVR pipeline per (output step k, output channel j), n_out·c_out in
    all; ``estimators[k * c_out + j]`` predicts Y[:, k, j] from the flattened window."""

    kind: ClassVar[str] = "svr_direct"

    def _expected_estimators(self) -> int:
        n_out, c_out = self._out_shape()
        return n_out * c_out

    def _fit_estimators(self, X: np.ndarray, Y: np.ndarray, progress: ProgressCallback | None,
                        warnings: list[ReportWarning]) -> None:
        flat = _flat(X)
        n_out, c_out = self._out_shape()
        total = n_out * c_out
        for index in range(total):
            k, j = divmod(index, c_out)
            self.estimators.append(_svr_pipeline(self.spec).fit(flat, Y[:, k, j]))
            self._progress(progress, index + 1, total)

    def _predict_estimators(self, X: np.ndarray) -> np.ndarray:
        flat = _flat(X)
        n_out, c_out = self._out_shape()
        columns = np.stack([model.predict(flat) for model in self.estimators], axis=1)
        return columns.reshape(X.shape[0], n_out, c_out).astype(np.float64, copy=False)


class SvrMimoForecaster(_SklearnForecaster):
    """One StandardScaler+SVR pipeline per output channel, shared over the horizon: trained on n·n_out rows of
    [flattened window, τ_k] with target Y[:, k, j]; ``estimators[j]`` serves channel j."""

    kind: ClassVar[str] = "svr_mimo"

    def _expected_estimators(self) -> int:
        return self._out_shape()[1]

    def _rows(self, X: np.ndarray) -> np.ndarray:
        """Sample-major rows (s, k) → [x_s, τ_k], shape (n·n_out, n_in·c_in + 1)."""
        n_out = self._out_shape()[0]
        flat = np.repeat(_flat(X), n_out, axis=0)
        tau = np.tile(step_positions(n_out), X.shape[0])
        return np.column_stack([flat, tau])

    def _fit_estimators(self, X: np.ndarray, Y: np.ndarray, progress: ProgressCallback | None,
                        warnings: list[ReportWarning]) -> None:
        rows = self._rows(X)
        c_out = Y.shape[2]
        if rows.shape[0] > LARGE_SVR_ROWS:
            warnings.append(ReportWarning(
                code="LARGE_SVR_PROBLEM", count=c_out,
                message=f"{self.name}: each of the {c_out} svr_mimo models trains on {rows.shape[0]} rows "
                        f"(n·n_out > {LARGE_SVR_ROWS}); SVR cost grows with the square of the rows",
                examples=[{"rows": int(rows.shape[0]), "samples": int(X.shape[0]), "n_out": int(Y.shape[1])}],
            ))
        for j in range(c_out):
            self.estimators.append(_svr_pipeline(self.spec).fit(rows, Y[:, :, j].reshape(-1)))
            self._progress(progress, j + 1, c_out)

    def _predict_estimators(self, X: np.ndarray) -> np.ndarray:
        rows = self._rows(X)
        n_out, _ = self._out_shape()
        columns = np.stack([model.predict(rows) for model in self.estimators], axis=1)
        return columns.reshape(X.shape[0], n_out, len(self.estimators)).astype(np.float64, copy=False)


class LinearForecaster(_SklearnForecaster):
    """One multi-output ordinary least-squares model with intercept from (n, n_in·c_in) to (n, n_out·c_out)."""

    kind: ClassVar[str] = "linear"

    def _expected_estimators(self) -> int:
        return 1

    def _fit_estimators(self, X: np.ndarray, Y: np.ndarray, progress: ProgressCallback | None,
                        warnings: list[ReportWarning]) -> None:
        self.estimators.append(LinearRegression().fit(_flat(X), Y.reshape(Y.shape[0], -1)))
        self._progress(progress, 1, 1)

    def _predict_estimators(self, X: np.ndarray) -> np.ndarray:
        n_out, c_out = self._out_shape()
        flat = np.asarray(self.estimators[0].predict(_flat(X)))
        return flat.reshape(X.shape[0], n_out, c_out).astype(np.float64, copy=False)


FORECASTERS: Final[dict[str, type[Forecaster]]] = {
    cls.kind: cls for cls in (SvrDirectForecaster, SvrMimoForecaster, LinearForecaster)
}
