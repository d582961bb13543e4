"""The ``Forecaster`` contract every model kind implements (stages.md §9.1), its training history,
shape checks and the ``model.json`` sidecar (§9.4).

A forecaster maps X (n, n_in, c_in) to Y (n, n_out, c_out), both scaled (baselines: original units).
``fit`` records the fitted shapes and feature names; ``predict`` checks X against them; ``save`` writes the
model file and ``model.json`` into a directory, each file atomically (temporary name, then ``os.replace``).
"""

from __future__ import annotations

import json
import platform
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from zeitflow.errors import ModelError
from zeitflow.io.artifacts import write_bytes
from zeitflow.reports import ProgressCallback, ReportWarning

__all__ = [
    "SIDECAR", "EpochRecord", "FittedShape", "Forecaster", "TrainingHistory",
    "check_predict_input", "check_training_arrays", "library_versions", "read_sidecar",
]

SIDECAR = "model.json"
FORMAT = "zeitflow.model/1"


class EpochRecord(BaseModel):
    """One training epoch (or the single fit of a non-Keras model)."""

    model_config = ConfigDict(extra="forbid")

    epoch: int
    loss: float | None
    val_loss: float | None = None
    seconds: float


class TrainingHistory(BaseModel):
    """Per-epoch loss, val_loss and seconds, with the restored best epoch and the epochs run (§9.1)."""

    model_config = ConfigDict(extra="forbid")

    epochs: list[EpochRecord] = Field(default_factory=list)
    best_epoch: int | None = None
    epochs_run: int = 0
    warnings: list[ReportWarning] = Field(default_factory=list)


class FittedShape(BaseModel):
    """The shapes and feature names a forecaster was fitted on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_in: int
    c_in: int
    n_out: int
    c_out: int
    input_features: list[str]
    output_features: list[str]


def library_versions() -> dict[str, str]:
    """Versions of Python, numpy and scikit-learn, plus Keras/TensorFlow when they are already imported
    (a model that never built a Keras model must not import TensorFlow just to name its version)."""
    import sys

    import sklearn

    versions = {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}
    for module, key in (("keras", "keras"), ("tensorflow", "tensorflow")):
        loaded = sys.modules.get(module)
        if loaded is not None and hasattr(loaded, "__version__"):
            versions[key] = loaded.__version__
    return versions


def _check_array(name: str, array: Any, rank: int = 3) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        array = np.asarray(array, dtype=np.float64)
    if array.ndim != rank:
        raise ModelError("SHAPE_MISMATCH", f"{name} must have rank {rank} (samples, steps, channels); "
                         f"got shape {tuple(array.shape)}", details={"array": name, "shape": list(array.shape)})
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise ModelError("SHAPE_MISMATCH", f"{name} has an empty axis: shape {tuple(array.shape)}",
                         details={"array": name, "shape": list(array.shape)})
    array = array.astype(np.float64, copy=False)
    bad = ~np.isfinite(array)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise ModelError("NON_FINITE_INPUT", f"{name} holds {int(bad.sum())} non-finite values; the first at "
                         f"[sample, step, channel] = {first}",
                         details={"array": name, "count": int(bad.sum()), "first": first})
    return array


def check_training_arrays(X: Any, Y: Any, X_val: Any = None, Y_val: Any = None
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Rank 3, finite, matching sample counts; validation arrays (both or neither) match the training shapes."""
    X = _check_array("X_train", X)
    Y = _check_array("Y_train", Y)
    if X.shape[0] != Y.shape[0]:
        raise ModelError("SHAPE_MISMATCH", f"X_train has {X.shape[0]} samples but Y_train has {Y.shape[0]}",
                         details={"x_shape": list(X.shape), "y_shape": list(Y.shape)})
    if (X_val is None) != (Y_val is None):
        raise ModelError("SHAPE_MISMATCH", "give both X_val and Y_val, or neither")
    if X_val is None:
        return X, Y, None, None
    X_val = _check_array("X_val", X_val)
    Y_val = _check_array("Y_val", Y_val)
    if X_val.shape[0] != Y_val.shape[0] or X_val.shape[1:] != X.shape[1:] or Y_val.shape[1:] != Y.shape[1:]:
        raise ModelError("SHAPE_MISMATCH", f"validation shapes X {tuple(X_val.shape)}, Y {tuple(Y_val.shape)} do "
                         f"not match training shapes X {tuple(X.shape)}, Y {tuple(Y.shape)}",
                         details={"x_val_shape": list(X_val.shape), "y_val_shape": list(Y_val.shape)})
    return X, Y, X_val, Y_val


def check_predict_input(X: Any, shape: FittedShape | None, kind: str) -> np.ndarray:
    """X for ``predict``: fitted first (NOT_FITTED), rank 3, finite, the fitted (n_in, c_in)."""
    if shape is None:
        raise ModelError("NOT_FITTED", f"{kind}: call fit before predict or save")
    X = _check_array("X", X)
    if X.shape[1:] != (shape.n_in, shape.c_in):
        raise ModelError("SHAPE_MISMATCH", f"{kind}: X has (n_in, c_in) = {tuple(X.shape[1:])}, but the model was "
                         f"fitted on ({shape.n_in}, {shape.c_in})",
                         details={"shape": list(X.shape), "fitted": [shape.n_in, shape.c_in]})
    return X


def read_sidecar(directory: str | Path) -> dict[str, Any]:
    """The ``model.json`` of a saved model, or MODEL_FILE_INVALID naming what is wrong."""
    path = Path(directory) / SIDECAR
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError("MODEL_FILE_INVALID", f"{path}: no {SIDECAR} (not a saved model directory)",
                         details={"path": str(path)}) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError("MODEL_FILE_INVALID", f"{path}: unreadable {SIDECAR}: {exc}",
                         details={"path": str(path)}) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT or not {"kind", "spec", "shape"} <= set(data):
        raise ModelError("MODEL_FILE_INVALID", f"{path}: not a {FORMAT} sidecar (format, kind, spec and shape "
                         "required)",
                         details={"path": str(path)})
    return data


class Forecaster(ABC):
    """One model of a kind: ``fit`` on scaled arrays, ``predict`` scaled arrays, ``save`` to a directory."""

    kind: ClassVar[str]
    model_file: ClassVar[str]

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.shape: FittedShape | None = None
        self.best_epoch: int | None = None
        self.load_warnings: list[ReportWarning] = []

    @property
    def name(self) -> str:
        """The spec's name, else its kind."""
        return self.spec.model_name

    def _record_shape(self, X: np.ndarray, Y: np.ndarray, input_features: list[str] | None,
                      output_features: list[str] | None) -> None:
        inputs = list(input_features) if input_features is not None else [f"x{i}" for i in range(X.shape[2])]
        outputs = list(output_features) if output_features is not None else [f"y{j}" for j in range(Y.shape[2])]
        if len(inputs) != X.shape[2] or len(outputs) != Y.shape[2]:
            raise ModelError("SHAPE_MISMATCH", f"{self.kind}: {len(inputs)} input and {len(outputs)} output feature "
                             f"names for arrays with {X.shape[2]} and {Y.shape[2]} channels",
                             details={"input_features": inputs, "output_features": outputs})
        self.shape = FittedShape(n_in=X.shape[1], c_in=X.shape[2], n_out=Y.shape[1], c_out=Y.shape[2],
                                 input_features=inputs, output_features=outputs)

    @abstractmethod
    def fit(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None, *, progress: ProgressCallback | None = None,
            input_features: list[str] | None = None, output_features: list[str] | None = None
            ) -> TrainingHistory:
        """Fit on (n, n_in, c_in) -> (n, n_out, c_out) arrays; return the history."""

    @abstractmethod
    def predict(self, X: np.ndarray) -> np.ndarray:
        """Float64 predictions of shape (n, n_out, c_out)."""

    @abstractmethod
    def _save_model_file(self, directory: Path) -> None:
        """Write ``self.model_file`` into ``directory`` atomically."""

    @abstractmethod
    def _load_model_file(self, directory: Path) -> None:
        """Restore the fitted state from ``self.model_file`` in ``directory``."""

    def save(self, directory: str | Path) -> Path:
        """Write the model file and ``model.json`` (kind, spec, shapes, features, best epoch, versions)."""
        if self.shape is None:
            raise ModelError("NOT_FITTED", f"{self.kind}: call fit before predict or save")
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        self._save_model_file(target)
        sidecar = {
            "format": FORMAT, "kind": self.kind, "name": self.name, "spec": self.spec.model_dump(mode="json"),
            "model_file": self.model_file, "shape": self.shape.model_dump(mode="json"),
            "best_epoch": self.best_epoch, "versions": library_versions(),
        }
        write_bytes(target / SIDECAR, json.dumps(sidecar, indent=2, sort_keys=True).encode("utf-8"))
        return target

    def restore(self, directory: Path, sidecar: dict[str, Any]) -> None:
        """Load the fitted state written by ``save`` (called by ``zeitflow.models.load``)."""
        if not (directory / self.model_file).is_file():
            raise ModelError("MODEL_FILE_INVALID", f"{directory}: {self.model_file} is missing",
                             details={"path": str(directory / self.model_file)})
        try:
            self.shape = FittedShape.model_validate(sidecar["shape"])
        except ValidationError as exc:
            raise ModelError("MODEL_FILE_INVALID", f"{directory / SIDECAR}: invalid shape: {exc.errors()[0]['msg']}",
                             details={"path": str(directory / SIDECAR)}) from exc
        self.best_epoch = sidecar.get("best_epoch")
        self._load_model_file(directory)
