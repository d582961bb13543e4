"""Keras forecasters (stages.md §9.1-§9.5): shapes, training history and progress, persistence, the truly
autoregressive AR-LSTM, seeded determinism (in one process and across processes), early stopping, errors,
and lazy TensorFlow import. Networks are tiny so the module runs in well under a minute and a half on CPU."""

from __future__ import annotations

import json
import math
import multiprocessing
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zeitflow.models as zm
from tests.models.tmy3 import Slice, tmy3_slice
from zeitflow.errors import ModelError
from zeitflow.models.base import TrainingHistory
from zeitflow.options.models import KERAS_KINDS
from zeitflow.reports import ProgressEvent

SMALL = {"units": 8, "layers": 2, "batch_size": 16, "learning_rate": 0.01}
TMY3_EPOCHS = 3


def _random_arrays(n: int = 64, n_in: int = 5, c_in: int = 4, n_out: int = 3, c_out: int = 2,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random X (n, n_in, c_in) and a learnable Y (n, n_out, c_out) built from it."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in, c_in))
    weights = rng.normal(size=(n_in * c_in, n_out * c_out)) / math.sqrt(n_in * c_in)
    Y = np.tanh(X.reshape(n, -1) @ weights).reshape(n, n_out, c_out) + 0.05 * rng.normal(size=(n, n_out, c_out))
    return X, Y


def _fit_predict(kind: str, seed: int = 7, epochs: int = 2) -> np.ndarray:
    """Fit one small model of ``kind`` on fixed random data and return its predictions."""
    X, Y = _random_arrays()
    model = zm.build({"kind": kind, **SMALL, "epochs": epochs, "seed": seed})
    model.fit(X, Y)
    return model.predict(X)


def _fit_in_worker(kind: str) -> np.ndarray:
    """Spawned-process entry point (module level, so it pickles): the same fit as in the parent."""
    return _fit_predict(kind)


# ------------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmy3() -> Slice:
    """Real TMY3 arrays with n_in != n_out and c_in != c_out: 6 steps x 3 inputs -> 3 steps x 2 outputs."""
    return tmy3_slice(n_in=6, n_out=3, inputs=("temperature", "ghi", "humidity"),
                      outputs=("temperature", "dew_point"), days=21)


@pytest.fixture(scope="module")
def trained(tmy3: Slice) -> dict[str, tuple[Any, TrainingHistory, list[ProgressEvent]]]:
    """One model per Keras kind trained on the TMY3 slice with validation data, with its history and events."""
    out = {}
    for kind in KERAS_KINDS:
        events: list[ProgressEvent] = []
        model = zm.build({"kind": kind, **SMALL, "epochs": TMY3_EPOCHS, "patience": 5, "seed": 3,
                          "name": f"tmy3_{kind}"})
        history = model.fit(tmy3.X_train, tmy3.Y_train, tmy3.X_val, tmy3.Y_val, progress=events.append,
                            input_features=list(tmy3.dataset.input_features),
                            output_features=list(tmy3.dataset.output_features))
        out[kind] = (model, history, events)
    return out


# ------------------------------------------------------------------------------------------------
# Shapes, history, progress
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KERAS_KINDS)
def test_m4_shape_contract(kind: str) -> None:
    """M4: n_in=5, c_in=4 -> n_out=3, c_out=2 on 64 seeded samples, one epoch: predictions (64, 3, 2) float64."""
    X, Y = _random_arrays()
    model = zm.build({"kind": kind, "units": 8, "layers": 1, "epochs": 1})
    history = model.fit(X, Y)
    pred = model.predict(X)
    assert pred.shape == (64, 3, 2)
    assert pred.dtype == np.float64
    assert history.epochs_run == 1 and history.best_epoch == 1


@pytest.mark.parametrize("kind", KERAS_KINDS)
def test_tmy3_trains_with_history_and_progress(kind: str, tmy3: Slice, trained: dict) -> None:
    """Each kind trains on real data (n_in != n_out, c_in != c_out); history and one event per epoch."""
    model, history, events = trained[kind]
    pred = model.predict(tmy3.X_test)
    assert pred.shape == (tmy3.X_test.shape[0], 3, 2)
    assert np.isfinite(pred).all()
    assert 1 <= history.epochs_run <= TMY3_EPOCHS
    assert [r.epoch for r in history.epochs] == list(range(1, history.epochs_run + 1))
    for record in history.epochs:
        assert record.loss is not None and math.isfinite(record.loss)
        assert record.val_loss is not None and math.isfinite(record.val_loss)
        assert record.seconds >= 0
    best = min(history.epochs, key=lambda r: (r.val_loss, r.epoch))
    assert history.best_epoch == best.epoch == model.best_epoch
    assert history.epochs[-1].loss < history.epochs[0].loss or history.epochs_run == 1
    assert len(events) == history.epochs_run
    for i, event in enumerate(events, start=1):
        assert (event.stage, event.unit, event.done, event.total) == ("train", "epoch", i, TMY3_EPOCHS)
        assert event.message == f"tmy3_{kind}"
        assert set(event.metrics) == {"loss", "val_loss", "seconds"}
        assert event.metrics["loss"] == pytest.approx(history.epochs[i - 1].loss)
        assert event.metrics["val_loss"] == pytest.approx(history.epochs[i - 1].val_loss)


# ------------------------------------------------------------------------------------------------
# Persistence
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KERAS_KINDS)
def test_save_load_round_trip(kind: str, tmy3: Slice, trained: dict, tmp_path: Path) -> None:
    """save -> zeitflow.models.load -> predict equals the in-memory predictions within 1e-6 (§9.4)."""
    model, history, _ = trained[kind]
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["model.json", "model.keras"]
    loaded = zm.load(tmp_path / "m")
    assert type(loaded) is type(model)
    assert loaded.load_warnings == []
    np.testing.assert_allclose(loaded.predict(tmy3.X_test), model.predict(tmy3.X_test), rtol=0, atol=1e-6)

    sidecar = json.loads((tmp_path / "m" / "model.json").read_text(encoding="utf-8"))
    assert sidecar["kind"] == kind
    assert sidecar["spec"]["kind"] == kind and sidecar["spec"]["units"] == SMALL["units"]
    assert sidecar["spec"]["name"] == f"tmy3_{kind}"
    assert sidecar["shape"] == {"n_in": 6, "c_in": 3, "n_out": 3, "c_out": 2,
                                "input_features": ["temperature", "ghi", "humidity"],
                                "output_features": ["temperature", "dew_point"]}
    assert sidecar["best_epoch"] == history.best_epoch
    assert {"python", "numpy", "scikit-learn", "keras", "tensorflow"} <= set(sidecar["versions"])


def test_saving_twice_gives_the_same_bytes(trained: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two saves of the same weights, seconds apart, are byte-identical: no save time in the archive."""
    import time
    import zipfile

    model, _, _ = trained["dense"]
    model.save(tmp_path / "a")
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 86_400.0)  # Keras stamps the wall clock
    model.save(tmp_path / "b")
    first, second = ((tmp_path / d / "model.keras").read_bytes() for d in ("a", "b"))
    assert first == second
    with zipfile.ZipFile(tmp_path / "a" / "model.keras") as archive:
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert "date_saved" not in json.loads(archive.read("metadata.json"))
        shared = re.findall(r'"shared_object_id": (\d+)', archive.read("config.json").decode())
    # memory addresses replaced by their order of appearance, so another process saves the same config
    assert shared and {int(n) for n in shared} == set(range(1, len(set(shared)) + 1))


def test_load_of_corrupt_model_file_is_model_file_invalid(trained: dict, tmp_path: Path) -> None:
    """A readable sidecar with a garbage model.keras is MODEL_FILE_INVALID naming the file."""
    model, _, _ = trained["dense"]
    model.save(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"not a keras archive")
    with pytest.raises(ModelError) as info:
        zm.load(tmp_path)
    assert info.value.code == "MODEL_FILE_INVALID"
    assert str(tmp_path / "model.keras") in info.value.message


def test_load_of_model_file_with_other_shapes_is_model_file_invalid(trained: dict, tmp_path: Path) -> None:
    """A model.keras that does not fit the sidecar's shapes (swapped in from another model) is rejected."""
    X, Y = _random_arrays()
    small = zm.build({"kind": "dense", "units": 4, "layers": 1, "epochs": 1})
    small.fit(X, Y)
    small.save(tmp_path / "small")
    trained["dense"][0].save(tmp_path / "tmy3")
    (tmp_path / "small" / "model.keras").write_bytes((tmp_path / "tmy3" / "model.keras").read_bytes())
    with pytest.raises(ModelError) as info:
        zm.load(tmp_path / "small")
    assert info.value.code == "MODEL_FILE_INVALID"


def test_load_of_empty_directory_is_model_file_invalid(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        zm.load(tmp_path)
    assert info.value.code == "MODEL_FILE_INVALID"


# ------------------------------------------------------------------------------------------------
# AR-LSTM feedback
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 2])
def test_ar_lstm_feeds_back_its_predictions(step: int, tmy3: Slice, trained: dict) -> None:
    """Perturbing ŷ_step where it is fed back leaves steps <= step unchanged and changes every later step."""
    model, _, _ = trained["ar_lstm"]
    X = tmy3.X_test
    base = model.predict_perturbed(X, step, 0.0)
    np.testing.assert_allclose(base, model.predict(X), rtol=0, atol=1e-6)
    moved = model.predict_perturbed(X, step, 5.0)
    np.testing.assert_array_equal(moved[:, :step], base[:, :step])
    for k in range(step, 3):
        assert np.abs(moved[:, k] - base[:, k]).max() > 1e-6, f"step {k + 1} ignores the fed-back prediction"


def test_ar_lstm_loaded_model_keeps_feedback(trained: dict, tmy3: Slice, tmp_path: Path) -> None:
    """The registered AR-LSTM class survives model.keras: the loaded model still rolls out with feedback."""
    model, _, _ = trained["ar_lstm"]
    model.save(tmp_path)
    loaded = zm.load(tmp_path)
    np.testing.assert_allclose(loaded.predict_perturbed(tmy3.X_test, 1, 5.0),
                               model.predict_perturbed(tmy3.X_test, 1, 5.0), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------------
# Determinism
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dense", "lstm"])
def test_same_seed_same_predictions_in_one_process(kind: str) -> None:
    """Two fits run one after another, each seeded before its build, agree within 1e-5; another seed differs."""
    first = _fit_predict(kind, seed=7)
    second = _fit_predict(kind, seed=7)
    other = _fit_predict(kind, seed=8)
    assert np.abs(first).max() > 1e-3, "the model did not train away from its zero-initialised output"
    np.testing.assert_allclose(second, first, rtol=0, atol=1e-5)
    assert np.abs(other - first).max() > 1e-4


def test_same_seed_same_predictions_in_two_spawned_processes() -> None:
    """The same LSTM fit in two fresh spawned processes (and in this one) gives the same predictions."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool_a, context.Pool(1) as pool_b:
        job_a = pool_a.apply_async(_fit_in_worker, ("lstm",))
        job_b = pool_b.apply_async(_fit_in_worker, ("lstm",))
        a, b = job_a.get(timeout=240), job_b.get(timeout=240)
    assert np.abs(a).max() > 1e-3
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_fit_predict("lstm"), a, rtol=0, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Early stopping
# ------------------------------------------------------------------------------------------------


def test_early_stopping_stops_and_restores_best_weights() -> None:
    """Training pulls the outputs towards +1 while validation wants -1, so val_loss rises from epoch 1:
    with patience 0 training stops after epoch 2 and the epoch-1 weights are restored."""
    X, _ = _random_arrays()
    Y = np.ones((64, 3, 2))
    X_val, Y_val = X[:32], -np.ones((32, 3, 2))
    model = zm.build({"kind": "dense", **SMALL, "epochs": 50, "patience": 0})
    history = model.fit(X, Y, X_val, Y_val)
    assert history.epochs_run < 50
    assert history.epochs_run == len(history.epochs) == 2
    assert history.best_epoch == model.best_epoch == 1
    assert history.epochs[1].val_loss > history.epochs[0].val_loss
    restored = float(np.mean((model.predict(X_val) - Y_val) ** 2))
    assert restored == pytest.approx(history.epochs[0].val_loss, rel=1e-4)


def test_without_validation_all_epochs_run() -> None:
    X, _ = _random_arrays()
    events: list[ProgressEvent] = []
    model = zm.build({"kind": "dense", **SMALL, "epochs": 6, "patience": 0})
    history = model.fit(X, np.ones((64, 3, 2)), progress=events.append)
    assert history.epochs_run == 6 and history.best_epoch == 6
    assert all(r.val_loss is None for r in history.epochs)
    assert [e.done for e in events] == [1, 2, 3, 4, 5, 6]
    assert all(set(e.metrics) == {"loss", "seconds"} for e in events)


# ------------------------------------------------------------------------------------------------
# Warnings and errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kernel_size", "warned"), [(7, True), (5, False)])
def test_cnn_kernel_larger_than_input_warns(kernel_size: int, warned: bool) -> None:
    X, Y = _random_arrays()
    model = zm.build({"kind": "cnn", "units": 4, "layers": 1, "epochs": 1, "kernel_size": kernel_size})
    history = model.fit(X, Y)
    codes = [w.code for w in history.warnings]
    assert codes == (["KERNEL_LARGER_THAN_INPUT"] if warned else [])
    assert model.predict(X).shape == (64, 3, 2)


@pytest.mark.parametrize("kind", KERAS_KINDS)
def test_predict_or_save_before_fit_is_not_fitted(kind: str, tmp_path: Path) -> None:
    model = zm.build({"kind": kind})
    with pytest.raises(ModelError) as info:
        model.predict(np.zeros((2, 5, 4)))
    assert info.value.code == "NOT_FITTED"
    with pytest.raises(ModelError) as info:
        model.save(tmp_path)
    assert info.value.code == "NOT_FITTED"


@pytest.mark.parametrize("shape", [(4, 5, 3), (4, 6, 4), (6, 3)])
def test_predict_with_other_shape_is_shape_mismatch(shape: tuple[int, ...], trained: dict) -> None:
    model, _, _ = trained["lstm"]
    with pytest.raises(ModelError) as info:
        model.predict(np.zeros(shape))
    assert info.value.code == "SHAPE_MISMATCH"


def test_fit_with_sample_count_mismatch_is_shape_mismatch() -> None:
    X, Y = _random_arrays()
    with pytest.raises(ModelError) as info:
        zm.build({"kind": "dense"}).fit(X, Y[:-1])
    assert info.value.code == "SHAPE_MISMATCH"


def test_non_finite_inputs_are_rejected(trained: dict, tmy3: Slice) -> None:
    model, _, _ = trained["dense"]
    X = tmy3.X_test.copy()
    X[1, 2, 0] = np.nan
    with pytest.raises(ModelError) as info:
        model.predict(X)
    assert info.value.code == "NON_FINITE_INPUT"
    X_train, Y_train = _random_arrays()
    Y_train[0, 0, 0] = np.inf
    with pytest.raises(ModelError) as info:
        zm.build({"kind": "dense"}).fit(X_train, Y_train)
    assert info.value.code == "NON_FINITE_INPUT"


# ------------------------------------------------------------------------------------------------
# Lazy import
# ------------------------------------------------------------------------------------------------


def test_importing_models_does_not_import_tensorflow() -> None:
    code = ("import sys, zeitflow.models, zeitflow.models.keras; "
            "bad = sorted(m for m in ('tensorflow', 'keras') if m in sys.modules); "
            "assert not bad, bad; "
            "assert set(zeitflow.models.keras.FORECASTERS) == {'dense', 'cnn', 'lstm', 'ar_lstm'}")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
