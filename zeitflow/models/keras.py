"""Keras forecasters (stages.md §9.3): ``dense``, ``cnn``, ``lstm`` and the autoregressive ``ar_lstm``.

TensorFlow and Keras are imported lazily, inside the functions that build, train, load or run a model
(§9.1): importing this module imports neither. Each ``fit`` seeds Keras and enables TensorFlow op
determinism immediately before its model is built; that state is process-global, so run a Keras fit
only in a process in which no other Keras model is built or trained at the same time (§0.9).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import zipfile
from abc import abstractmethod
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from zeitflow.errors import ModelError
from zeitflow.models.base import (
    SIDECAR,
    EpochRecord,
    Forecaster,
    TrainingHistory,
    check_predict_input,
    check_training_arrays,
)
from zeitflow.reports import ProgressCallback, ProgressEvent, ReportWarning, emit

__all__ = ["FORECASTERS", "ArLstmForecaster", "CnnForecaster", "DenseForecaster", "KerasForecaster",
           "LstmForecaster"]

ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
"""The timestamp of every member of a saved ``model.keras``, so the same weights give the same bytes."""

PREDICT_BATCH = 1024
"""Batch size of ``predict``; it does not change the predictions, only the memory held at once."""


def _make_reproducible(path: Path) -> None:
    """Rewrite a ``.keras`` archive without what depends on the moment or the process: Keras stamps
    ``date_saved`` into ``metadata.json``, the wall clock into the weights member and memory addresses into
    ``config.json``, so two saves of identical weights would differ in bytes."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode("utf-8")
            elif info.filename == "config.json":
                data = json.dumps(_renumber_shared_objects(json.loads(data), {})).encode("utf-8")
            fixed = zipfile.ZipInfo(info.filename, date_time=ZIP_EPOCH)
            fixed.compress_type, fixed.external_attr = info.compress_type, info.external_attr
            archive.writestr(fixed, data)


def _renumber_shared_objects(value: Any, numbers: dict[int, int]) -> Any:
    """Replace each ``shared_object_id`` (a Python ``id()``, i.e. a memory address) by its order of first
    appearance: objects shared in the model stay shared, and the config no longer depends on the process."""
    if isinstance(value, dict):
        return {key: (numbers.setdefault(item, len(numbers) + 1) if key == "shared_object_id"
                      else _renumber_shared_objects(item, numbers)) for key, item in value.items()}
    if isinstance(value, list):
        return [_renumber_shared_objects(item, numbers) for item in value]
    return value


def _output_head(keras: Any, n_out: int, c_out: int) -> list[Any]:
    """The common head: Dense(n_out·c_out) with zero-initialised kernel and bias, reshaped to (n_out, c_out)."""
    return [keras.layers.Dense(n_out * c_out, kernel_initializer="zeros", bias_initializer="zeros", name="output"),
            keras.layers.Reshape((n_out, c_out), name="reshape")]


@cache
def _ar_lstm_class() -> type:
    """Define and register the serialisable ``zeitflow>ArLstm`` Keras model once (imports Keras)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="zeitflow", name="ArLstm")
    class ArLstm(keras.Model):
        """Feedback LSTM: a stack of LSTM cells warms up over the inputs and predicts ŷ₁; each ŷ_{k−1} is
        projected linearly to c_in features and fed back through the same cells, with the carried state, for ŷ_k.
        """

        def __init__(self, n_in: int, c_in: int, n_out: int, c_out: int, units: int, layers: int,
                     activation: str, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.n_in, self.c_in, self.n_out, self.c_out = int(n_in), int(c_in), int(n_out), int(c_out)
            self.units, self.n_layers, self.activation = int(units), int(layers), str(activation)
            self.cells = [keras.layers.LSTMCell(self.units, activation=self.activation, name=f"cell_{i}")
                          for i in range(self.n_layers)]
            self.feedback = keras.layers.Dense(self.c_in, activation="linear", name="feedback")
            self.head = keras.layers.Dense(self.c_out, kernel_initializer="zeros", bias_initializer="zeros",
                                           name="output")

        def build(self, input_shape: Any = None) -> None:
            """Create every weight (also those the rollout does not reach, e.g. the feedback when n_out = 1)."""
            width = self.c_in
            for cell in self.cells:
                cell.build((None, width))
                width = self.units
            self.head.build((None, self.units))
            self.feedback.build((None, self.c_out))
            self.built = True

        def _step(self, x: Any, states: list[Any], training: Any) -> tuple[Any, list[Any]]:
            """One time step through the cell stack; returns the top hidden state and the new states."""
            carried = []
            for cell, state in zip(self.cells, states, strict=True):
                x, state = cell(x, state, training=training)
                carried.append(state)
            return x, carried

        def rollout(self, inputs: Any, training: Any = None, feedback_delta: Any = None) -> Any:
            """Warm-up over the n_in steps, then n_out − 1 feedback steps on the model's own predictions.
            ``feedback_delta`` (n_out − 1, c_out), if given, is added to ŷ_k only where it is fed back (tests)."""
            batch = ops.shape(inputs)[0]
            states = [[ops.zeros((batch, self.units), dtype=inputs.dtype),
                       ops.zeros((batch, self.units), dtype=inputs.dtype)] for _ in self.cells]
            h = None
            for t in range(self.n_in):
                h, states = self._step(inputs[:, t, :], states, training)
            prediction = self.head(h)
            predictions = [prediction]
            for k in range(1, self.n_out):
                fed = prediction if feedback_delta is None else prediction + feedback_delta[k - 1]
                h, states = self._step(self.feedback(fed), states, training)
                prediction = self.head(h)
                predictions.append(prediction)
            return ops.stack(predictions, axis=1)

        def call(self, inputs: Any, training: Any = None) -> Any:
            """ŷ of shape (batch, n_out, c_out), without teacher forcing."""
            return self.rollout(inputs, training=training)

        def get_config(self) -> dict[str, Any]:
            """Constructor arguments, so that ``model.keras`` round-trips."""
            config = super().get_config()
            config.update(n_in=self.n_in, c_in=self.c_in, n_out=self.n_out, c_out=self.c_out, units=self.units,
                          layers=self.n_layers, activation=self.activation)
            return config

        @classmethod
        def from_config(cls, config: dict[str, Any]) -> ArLstm:
            """Rebuild from ``get_config``."""
            return cls(**config)

    return ArLstm


def _epoch_recorder(keras: Any, history: TrainingHistory, name: str, total: int,
                    progress: ProgressCallback | None) -> Any:
    """A Keras callback that times each epoch, appends its ``EpochRecord`` to ``history`` and emits one
    ProgressEvent. Only epoch hooks are overridden, so Keras keeps batch hooks asynchronous (no per-batch cost)."""

    class Recorder(keras.callbacks.Callback):
        """Per-epoch timing, loss and val_loss."""

        started = 0.0

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self.started = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            seconds = time.perf_counter() - self.started
            logs = logs or {}
            loss = float(logs["loss"]) if "loss" in logs else None
            val_loss = float(logs["val_loss"]) if "val_loss" in logs else None
            history.epochs.append(EpochRecord(epoch=epoch + 1, loss=loss, val_loss=val_loss, seconds=seconds))
            metrics = {"seconds": seconds}
            if loss is not None:
                metrics["loss"] = loss
            if val_loss is not None:
                metrics["val_loss"] = val_loss
            emit(progress, ProgressEvent(stage="train", unit="epoch", done=epoch + 1, total=total, message=name,
                                         metrics=metrics))

    return Recorder()


def _best_epoch(history: TrainingHistory, validated: bool) -> int | None:
    """The 1-based epoch whose weights the model holds: first minimal finite val_loss, else the last epoch."""
    if not history.epochs:
        return None
    if validated:
        scored = [(r.val_loss, r.epoch) for r in history.epochs if r.val_loss is not None and np.isfinite(r.val_loss)]
        if scored:
            return min(scored)[1]
    return history.epochs[-1].epoch


class KerasForecaster(Forecaster):
    """Common fit/predict/save of the Keras kinds; subclasses build the network in ``_build_network``."""

    model_file: ClassVar[str] = "model.keras"

    def __init__(self, spec: Any) -> None:
        super().__init__(spec)
        self.model: Any = None

    @abstractmethod
    def _build_network(self, keras: Any, n_in: int, c_in: int, n_out: int, c_out: int) -> Any:
        """The uncompiled Keras model for the fitted shapes."""

    def _fit_warnings(self, n_in: int) -> list[ReportWarning]:
        """Warnings about the spec relative to the data (none by default)."""
        return []

    def fit(self, X_train: np.ndarray, Y_train: np.ndarray, X_val: np.ndarray | None = None,
            Y_val: np.ndarray | None = None, *, progress: ProgressCallback | None = None,
            input_features: list[str] | None = None, output_features: list[str] | None = None
            ) -> TrainingHistory:
        """Train with Adam/MSE (RMSE metric), shuffled batches, early stopping on val_loss when validation
        data is given (best weights restored), else all epochs; seeded immediately before the build."""
        X, Y, Xv, Yv = check_training_arrays(X_train, Y_train, X_val, Y_val)
        self.model = None
        self._record_shape(X, Y, input_features, output_features)
        assert self.shape is not None
        n_in, c_in, n_out, c_out = self.shape.n_in, self.shape.c_in, self.shape.n_out, self.shape.c_out
        x32, y32 = np.ascontiguousarray(X, dtype=np.float32), np.ascontiguousarray(Y, dtype=np.float32)
        validation = None if Xv is None or Yv is None else (np.ascontiguousarray(Xv, dtype=np.float32),
                                                            np.ascontiguousarray(Yv, dtype=np.float32))
        history = TrainingHistory(warnings=self._fit_warnings(n_in))

        import keras
        import tensorflow as tf

        spec = self.spec
        keras.utils.set_random_seed(int(spec.seed))
        tf.config.experimental.enable_op_determinism()
        model = self._build_network(keras, n_in, c_in, n_out, c_out)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(spec.learning_rate)), loss="mse",
                      metrics=[keras.metrics.RootMeanSquaredError(name="rmse")])
        callbacks = [_epoch_recorder(keras, history, self.name, int(spec.epochs), progress)]
        if validation is not None:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=int(spec.patience),
                                                           restore_best_weights=True))
        model.fit(x32, y32, validation_data=validation, epochs=int(spec.epochs), batch_size=int(spec.batch_size),
                  shuffle=True, verbose=0, callbacks=callbacks)
        self.model = model
        history.epochs_run = len(history.epochs)
        history.best_epoch = _best_epoch(history, validation is not None)
        self.best_epoch = history.best_epoch
        return history

    def _checked(self, X: np.ndarray) -> np.ndarray:
        """X as contiguous float32 after the fitted-shape and finiteness checks."""
        X = check_predict_input(X, self.shape if self.model is not None else None, self.kind)
        return np.ascontiguousarray(X, dtype=np.float32)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Float64 predictions (n, n_out, c_out) in scaled units."""
        x32 = self._checked(X)
        out = self.model.predict(x32, batch_size=PREDICT_BATCH, verbose=0)
        return np.asarray(out, dtype=np.float64)

    def _save_model_file(self, directory: Path) -> None:
        """``model.keras`` via a temporary ``.keras`` file in ``directory`` and ``os.replace``."""
        if self.model is None:
            raise ModelError("NOT_FITTED", f"{self.kind}: call fit before predict or save")
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{self.model_file}.", suffix=".keras")
        os.close(fd)
        try:
            self.model.save(tmp, overwrite=True)
            _make_reproducible(Path(tmp))
            os.replace(tmp, directory / self.model_file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _load_model_file(self, directory: Path) -> None:
        """Restore the Keras model; an unreadable file is MODEL_FILE_INVALID."""
        import keras

        if self.kind == "ar_lstm":
            _ar_lstm_class()
        path = directory / self.model_file
        try:
            model = keras.models.load_model(path, compile=False)
        except Exception as exc:
            raise ModelError("MODEL_FILE_INVALID", f"{path}: unreadable Keras model file: {exc}",
                             details={"path": str(path)}) from exc
        assert self.shape is not None
        expected = (1, self.shape.n_out, self.shape.c_out)
        try:
            got = tuple(model(np.zeros((1, self.shape.n_in, self.shape.c_in), dtype=np.float32), training=False).shape)
        except Exception as exc:
            raise ModelError("MODEL_FILE_INVALID", f"{path}: the model does not accept the fitted input shape "
                             f"({self.shape.n_in}, {self.shape.c_in}) of {SIDECAR}: {exc}",
                             details={"path": str(path)}) from exc
        if got != expected:
            raise ModelError("MODEL_FILE_INVALID", f"{path}: the model predicts shape {got[1:]}, but {SIDECAR} "
                             f"says ({self.shape.n_out}, {self.shape.c_out})", details={"path": str(path)})
        self.model = model


class DenseForecaster(KerasForecaster):
    """Flatten → ``layers`` × Dense(units, activation) → Dense(n_out·c_out) → Reshape."""

    kind: ClassVar[str] = "dense"

    def _build_network(self, keras: Any, n_in: int, c_in: int, n_out: int, c_out: int) -> Any:
        spec = self.spec
        hidden = [keras.layers.Dense(int(spec.units), activation=spec.activation) for _ in range(int(spec.layers))]
        return keras.Sequential([keras.Input(shape=(n_in, c_in)), keras.layers.Flatten(), *hidden,
                                 *_output_head(keras, n_out, c_out)], name=self.kind)


class CnnForecaster(KerasForecaster):
    """``layers`` × Conv1D(units, kernel_size, "same") over time → Flatten → Dense(n_out·c_out) → Reshape."""

    kind: ClassVar[str] = "cnn"

    def _fit_warnings(self, n_in: int) -> list[ReportWarning]:
        kernel = int(self.spec.kernel_size)
        if kernel <= n_in:
            return []
        return [ReportWarning(code="KERNEL_LARGER_THAN_INPUT", count=1,
                              message=f"{self.name}: kernel_size={kernel} is larger than n_in={n_in}; the "
                                      "convolution sees zero padding beyond the input window",
                              examples=[{"kernel_size": kernel, "n_in": n_in}])]

    def _build_network(self, keras: Any, n_in: int, c_in: int, n_out: int, c_out: int) -> Any:
        spec = self.spec
        convs = [keras.layers.Conv1D(int(spec.units), int(spec.kernel_size), padding="same",
                                     activation=spec.activation) for _ in range(int(spec.layers))]
        return keras.Sequential([keras.Input(shape=(n_in, c_in)), *convs, keras.layers.Flatten(),
                                 *_output_head(keras, n_out, c_out)], name=self.kind)


class LstmForecaster(KerasForecaster):
    """(layers − 1) × LSTM(return_sequences) → LSTM → Dense(n_out·c_out) → Reshape."""

    kind: ClassVar[str] = "lstm"

    def _build_network(self, keras: Any, n_in: int, c_in: int, n_out: int, c_out: int) -> Any:
        spec = self.spec
        layers = int(spec.layers)
        stack = [keras.layers.LSTM(int(spec.units), activation=spec.activation, return_sequences=i < layers - 1)
                 for i in range(layers)]
        return keras.Sequential([keras.Input(shape=(n_in, c_in)), *stack, *_output_head(keras, n_out, c_out)],
                                name=self.kind)


class ArLstmForecaster(KerasForecaster):
    """Autoregressive LSTM (the registered ``zeitflow>ArLstm`` model)."""

    kind: ClassVar[str] = "ar_lstm"

    def _build_network(self, keras: Any, n_in: int, c_in: int, n_out: int, c_out: int) -> Any:
        spec = self.spec
        model = _ar_lstm_class()(n_in=n_in, c_in=c_in, n_out=n_out, c_out=c_out, units=int(spec.units),
                                 layers=int(spec.layers), activation=spec.activation, name=self.kind)
        model.build((None, n_in, c_in))
        return model

    def predict_perturbed(self, X: np.ndarray, step: int, delta: float) -> np.ndarray:
        """Predictions with ``delta`` added to ŷ_step (1-based) where it is fed back to the cells, not to the
        output itself: steps ≤ ``step`` are unchanged, later steps show the feedback. For tests and diagnostics."""
        x32 = self._checked(X)
        assert self.shape is not None
        n_out, c_out = self.shape.n_out, self.shape.c_out
        if not 1 <= step < n_out:
            raise ModelError("SHAPE_MISMATCH", f"{self.kind}: step must be in 1..{n_out - 1}, got {step}",
                             details={"step": step, "n_out": n_out})
        from keras import ops

        offsets = np.zeros((n_out - 1, c_out), dtype=np.float32)
        offsets[step - 1, :] = delta
        out = self.model.rollout(ops.convert_to_tensor(x32), training=False,
                                 feedback_delta=ops.convert_to_tensor(offsets))
        return np.asarray(ops.convert_to_numpy(out), dtype=np.float64)


FORECASTERS: dict[str, type[Forecaster]] = {
    "dense": DenseForecaster, "cnn": CnnForecaster, "lstm": LstmForecaster, "ar_lstm": ArLstmForecaster,
}
