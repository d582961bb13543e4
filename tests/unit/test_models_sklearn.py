"""scikit-learn forecasters svr_direct, svr_mimo and linear (stages.md §9.1, §9.3-§9.5: M1, M4)."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

import zeitflow.models as models
from tests.models.tmy3 import tmy3_slice
from zeitflow.errors import ModelError
from zeitflow.models import sklearn as skm
from zeitflow.models.sklearn import LinearForecaster, SvrDirectForecaster, SvrMimoForecaster
from zeitflow.reports import ProgressEvent

KINDS = ("svr_direct", "svr_mimo", "linear")


def _random(n: int = 64, n_in: int = 5, c_in: int = 4, n_out: int = 3, c_out: int = 2, seed: int = 0
            ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in, c_in)), rng.normal(size=(n, n_out, c_out))


def _code(exc: pytest.ExceptionInfo[ModelError]) -> str:
    return exc.value.code


# ------------------------------------------------------------------------------------------------
# worked examples
# ------------------------------------------------------------------------------------------------


def test_m1_linear_recovers_an_exact_relation() -> None:
    X = np.array([[1.0, 2.0], [2.0, 3.0], [3.0, 5.0], [4.0, 4.0]]).reshape(4, 2, 1)
    Y = np.array([5.0, 8.0, 13.0, 12.0]).reshape(4, 1, 1)
    model = models.build({"kind": "linear"})
    assert isinstance(model, LinearForecaster)
    history = model.fit(X, Y)
    regression = model.estimators[0]
    assert regression.coef_.reshape(-1) == pytest.approx([1.0, 2.0], abs=1e-9)
    assert float(np.ravel(regression.intercept_)[0]) == pytest.approx(0.0, abs=1e-9)
    prediction = model.predict(np.array([[[5.0], [6.0]]]))
    assert prediction.shape == (1, 1, 1) and prediction.dtype == np.float64
    assert prediction[0, 0, 0] == pytest.approx(17.0, abs=1e-9)
    assert history.epochs[0].loss == pytest.approx(0.0, abs=1e-18)


@pytest.mark.parametrize("kind", KINDS)
def test_m4_shape_contract(kind: str) -> None:
    X, Y = _random()
    model = models.build({"kind": kind})
    model.fit(X, Y)
    prediction = model.predict(X)
    assert prediction.shape == (64, 3, 2)
    assert prediction.dtype == np.float64
    assert np.isfinite(prediction).all()
    shape = model.shape
    assert shape is not None and (shape.n_in, shape.c_in, shape.n_out, shape.c_out) == (5, 4, 3, 2)


# ------------------------------------------------------------------------------------------------
# real data: the TMY3 slice, n_in != n_out and c_in != c_out
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tmy3():
    return tmy3_slice(n_in=6, n_out=3, inputs=("temperature", "ghi", "humidity"),
                      outputs=("temperature", "dew_point"), days=21)


@pytest.mark.parametrize("kind", KINDS)
def test_tmy3_unequal_shapes(kind: str, tmy3) -> None:
    assert tmy3.X_train.shape[1:] == (6, 3) and tmy3.Y_train.shape[1:] == (3, 2)
    model = models.build({"kind": kind})
    history = model.fit(tmy3.X_train, tmy3.Y_train, tmy3.X_val, tmy3.Y_val,
                        input_features=tmy3.dataset.input_features, output_features=tmy3.dataset.output_features)
    prediction = model.predict(tmy3.X_test)
    assert prediction.shape == (tmy3.X_test.shape[0], 3, 2)
    assert model.shape is not None and model.shape.output_features == ["temperature", "dew_point"]
    # history: one entry, loss = train MSE and val_loss = val MSE, both on scaled data
    assert len(history.epochs) == 1 and history.epochs_run == 1 and history.best_epoch == 1
    entry = history.epochs[0]
    assert entry.epoch == 1 and entry.seconds >= 0
    assert entry.loss == pytest.approx(float(np.mean((model.predict(tmy3.X_train) - tmy3.Y_train) ** 2)),
                                       rel=1e-12)
    assert entry.val_loss == pytest.approx(float(np.mean((model.predict(tmy3.X_val) - tmy3.Y_val) ** 2)),
                                           rel=1e-12)
    assert history.warnings == []


def test_tmy3_linear_beats_persistence_in_original_units(tmy3) -> None:
    model = models.build({"kind": "linear"})
    model.fit(tmy3.X_train, tmy3.Y_train)
    predicted = tmy3.scalers.inverse_transform_Y(model.predict(tmy3.X_test))
    truth = tmy3.parts.test.Y
    last_temperature = tmy3.parts.test.X[:, -1, 0]
    linear_mae = np.abs(predicted[:, :, 0] - truth[:, :, 0]).mean()
    persistence_mae = np.abs(last_temperature[:, None] - truth[:, :, 0]).mean()
    assert linear_mae < persistence_mae


# ------------------------------------------------------------------------------------------------
# persistence of models and determinism
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_predict_bit_identical(kind: str, tmp_path: Path, tmy3) -> None:
    model = models.build({"kind": kind, "name": f"{kind}-a"})
    model.fit(tmy3.X_train, tmy3.Y_train, input_features=tmy3.dataset.input_features,
              output_features=tmy3.dataset.output_features)
    expected = model.predict(tmy3.X_test)
    target = tmp_path / "saved"
    model.save(target)
    assert sorted(p.name for p in target.iterdir()) == ["model.joblib", "model.json"]
    sidecar = json.loads((target / "model.json").read_text())
    assert sidecar["kind"] == kind and sidecar["name"] == f"{kind}-a"
    assert sidecar["shape"]["input_features"] == tmy3.dataset.input_features
    loaded = models.load(target)
    assert type(loaded) is type(model)
    assert loaded.load_warnings == []
    assert np.array_equal(loaded.predict(tmy3.X_test), expected)
    assert loaded.shape == model.shape and loaded.best_epoch == 1


@pytest.mark.parametrize("kind", KINDS)
def test_same_seed_gives_identical_predictions(kind: str) -> None:
    X, Y = _random(seed=3)
    first = models.build({"kind": kind, "seed": 11})
    second = models.build({"kind": kind, "seed": 11})
    first.fit(X, Y)
    second.fit(X, Y)
    assert np.array_equal(first.predict(X), second.predict(X))


def test_refit_replaces_the_previous_fit() -> None:
    model = models.build({"kind": "svr_direct"})
    model.fit(*_random(n_out=3, c_out=2))
    model.fit(*_random(n=20, n_in=2, c_in=1, n_out=1, c_out=1, seed=1))
    assert len(model.estimators) == 1
    assert model.predict(np.zeros((4, 2, 1))).shape == (4, 1, 1)


# ------------------------------------------------------------------------------------------------
# structure of the SVR kinds
# ------------------------------------------------------------------------------------------------


def test_svr_direct_fits_one_pipeline_per_step_and_channel() -> None:
    X, Y = _random(n=40, n_in=4, c_in=2, n_out=3, c_out=2, seed=5)
    model = models.build({"kind": "svr_direct", "svr_kernel": "rbf", "c": 3.0, "epsilon": 0.05})
    model.fit(X, Y)
    assert isinstance(model, SvrDirectForecaster)
    assert len(model.estimators) == 6
    for pipeline in model.estimators:
        assert isinstance(pipeline, Pipeline)
        scaler, svr = (step for _, step in pipeline.steps)
        assert isinstance(scaler, StandardScaler) and isinstance(svr, SVR)
        assert (svr.kernel, svr.C, svr.epsilon, svr.degree, svr.gamma) == ("rbf", 3.0, 0.05, 3, "scale")
        assert pipeline.n_features_in_ == 8
    # estimator k * c_out + j is the independent model of Y[:, k, j]
    flat = X.reshape(40, 8)
    prediction = model.predict(X)
    for k in range(3):
        for j in range(2):
            reference = make_pipeline(StandardScaler(), SVR(kernel="rbf", C=3.0, epsilon=0.05, gamma="scale"))
            reference.fit(flat, Y[:, k, j])
            assert np.array_equal(prediction[:, k, j], reference.predict(flat))
            assert np.array_equal(model.estimators[k * 2 + j].predict(flat), prediction[:, k, j])
    assert not np.array_equal(prediction[:, 2, 1], prediction[:, 2, 0])


def _mimo_rows(X: np.ndarray, taus: list[float]) -> np.ndarray:
    """The svr_mimo design written out sample by sample (the library builds it vectorised)."""
    rows = [np.append(X[s].reshape(-1), tau) for s in range(X.shape[0]) for tau in taus]
    return np.array(rows)


def test_svr_mimo_fits_one_shared_pipeline_per_channel() -> None:
    X, Y = _random(n=30, n_in=3, c_in=2, n_out=3, c_out=2, seed=6)
    model = models.build({"kind": "svr_mimo", "svr_kernel": "rbf"})
    model.fit(X, Y)
    assert isinstance(model, SvrMimoForecaster)
    assert len(model.estimators) == 2
    for pipeline in model.estimators:
        assert pipeline.n_features_in_ == 3 * 2 + 1
        scaler = pipeline.steps[0][1]
        # tau = 0, 0.5, 1 for each sample: mean 0.5, population variance 1/6
        assert scaler.mean_[-1] == pytest.approx(0.5, rel=1e-12)
        assert scaler.var_[-1] == pytest.approx(1 / 6, rel=1e-12)
    rows = _mimo_rows(X, [0.0, 0.5, 1.0])
    reference = make_pipeline(StandardScaler(), SVR(kernel="rbf", C=1.0, epsilon=0.1, gamma="scale"))
    reference.fit(rows, Y[:, :, 1].reshape(-1))
    assert np.array_equal(model.predict(X)[:, :, 1], reference.predict(rows).reshape(30, 3))


def test_svr_mimo_with_one_step_uses_tau_zero() -> None:
    X, Y = _random(n=25, n_in=2, c_in=2, n_out=1, c_out=3, seed=7)
    model = models.build({"kind": "svr_mimo"})
    model.fit(X, Y)
    assert np.array_equal(skm.step_positions(1), [0.0])
    assert skm.step_positions(5).tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert len(model.estimators) == 3
    for pipeline in model.estimators:
        scaler = pipeline.steps[0][1]
        assert scaler.mean_[-1] == 0.0 and scaler.var_[-1] == 0.0
    rows = _mimo_rows(X, [0.0])
    reference = make_pipeline(StandardScaler(), SVR(kernel="poly", C=1.0, epsilon=0.1, degree=3, gamma="scale"))
    reference.fit(rows, Y[:, 0, 2])
    assert np.array_equal(model.predict(X)[:, 0, 2], reference.predict(rows))


def test_large_svr_problem_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    assert skm.LARGE_SVR_ROWS == 50_000
    X, Y = _random(n=10, n_in=2, c_in=1, n_out=3, c_out=1, seed=8)
    monkeypatch.setattr(skm, "LARGE_SVR_ROWS", 30)  # 10 samples * 3 steps = 30 rows: not above
    assert models.build({"kind": "svr_mimo"}).fit(X, Y).warnings == []
    monkeypatch.setattr(skm, "LARGE_SVR_ROWS", 29)
    warnings = models.build({"kind": "svr_mimo"}).fit(X, Y).warnings
    assert [w.code for w in warnings] == ["LARGE_SVR_PROBLEM"]
    assert warnings[0].examples == [{"rows": 30, "samples": 10, "n_out": 3}]


@pytest.mark.parametrize("kind, total", [("svr_direct", 6), ("svr_mimo", 2), ("linear", 1)])
def test_progress_per_sub_model(kind: str, total: int) -> None:
    events: list[ProgressEvent] = []
    model = models.build({"kind": kind, "name": "m7"})
    model.fit(*_random(n=20), progress=events.append)
    assert [(e.stage, e.unit, e.done, e.total, e.message) for e in events] == [
        ("train", "model", k, total, "m7") for k in range(1, total + 1)
    ]


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_shape_mismatch(kind: str) -> None:
    X, Y = _random(n=12)
    model = models.build({"kind": kind})
    with pytest.raises(ModelError) as info:
        model.fit(X.reshape(12, -1), Y)
    assert _code(info) == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        model.fit(X, Y[:11])
    assert _code(info) == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        model.fit(X, Y, X[:3], Y[:3, :2])
    assert _code(info) == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        model.fit(X, Y, input_features=["a", "b"])
    assert _code(info) == "SHAPE_MISMATCH"
    model.fit(X, Y)
    for bad in (np.zeros((2, 4, 4)), np.zeros((2, 5, 3)), np.zeros((2, 20)), np.zeros((2, 5, 4, 1))):
        with pytest.raises(ModelError) as info:
            model.predict(bad)
        assert _code(info) == "SHAPE_MISMATCH"


@pytest.mark.parametrize("kind", KINDS)
def test_non_finite_input(kind: str) -> None:
    X, Y = _random(n=12)
    model = models.build({"kind": kind})
    bad_X = X.copy()
    bad_X[3, 1, 2] = np.nan
    bad_Y = Y.copy()
    bad_Y[0, 0, 0] = np.inf
    for args in ((bad_X, Y), (X, bad_Y), (X, Y, bad_X, Y)):
        with pytest.raises(ModelError) as info:
            model.fit(*args)
        assert _code(info) == "NON_FINITE_INPUT"
    model.fit(X, Y)
    with pytest.raises(ModelError) as info:
        model.predict(bad_X)
    assert _code(info) == "NON_FINITE_INPUT"


@pytest.mark.parametrize("kind", KINDS)
def test_not_fitted(kind: str, tmp_path: Path) -> None:
    model = models.build({"kind": kind})
    with pytest.raises(ModelError) as info:
        model.predict(np.zeros((1, 5, 4)))
    assert _code(info) == "NOT_FITTED"
    with pytest.raises(ModelError) as info:
        model.save(tmp_path / "m")
    assert _code(info) == "NOT_FITTED"
    assert not (tmp_path / "m" / "model.json").exists()


def test_failed_fit_leaves_the_model_unfitted() -> None:
    X, Y = _random(n=12)
    model = models.build({"kind": "linear"})
    model.fit(X, Y)
    with pytest.raises(ModelError):
        model.fit(X, Y, output_features=["only-one"])
    with pytest.raises(ModelError) as info:
        model.predict(X)
    assert _code(info) == "NOT_FITTED"


def test_fit_aborted_midway_leaves_the_model_unfitted() -> None:
    X, Y = _random(n=12)
    model = models.build({"kind": "svr_direct"})
    model.fit(X, Y)

    def stop_at_second(event: ProgressEvent) -> None:
        if event.done == 2:
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        model.fit(X, Y, progress=stop_at_second)
    assert model.estimators == []
    with pytest.raises(ModelError) as info:
        model.predict(X)
    assert _code(info) == "NOT_FITTED"


@pytest.fixture
def saved_linear(tmp_path: Path) -> Path:
    model = models.build({"kind": "linear"})
    model.fit(*_random(n=16))
    return model.save(tmp_path / "linear")


def test_load_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError) as info:
        models.load(tmp_path / "nowhere")
    assert _code(info) == "MODEL_FILE_INVALID"
    assert str(tmp_path / "nowhere") in info.value.message


def test_load_corrupted_joblib_file(saved_linear: Path) -> None:
    path = saved_linear / "model.joblib"
    path.write_bytes(b"this is not a joblib pickle")
    with pytest.raises(ModelError) as info:
        models.load(saved_linear)
    assert _code(info) == "MODEL_FILE_INVALID"
    assert str(path) in info.value.message


def test_load_truncated_joblib_file(saved_linear: Path) -> None:
    path = saved_linear / "model.joblib"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelError) as info:
        models.load(saved_linear)
    assert _code(info) == "MODEL_FILE_INVALID" and str(path) in info.value.message


def test_load_joblib_of_another_kind(saved_linear: Path) -> None:
    joblib.dump({"format": "zeitflow.sklearn/1", "kind": "svr_mimo", "estimators": [None]},
                saved_linear / "model.joblib")
    with pytest.raises(ModelError) as info:
        models.load(saved_linear)
    assert _code(info) == "MODEL_FILE_INVALID"


def test_load_model_file_with_other_shapes(tmp_path: Path) -> None:
    small = models.build({"kind": "svr_direct"})
    small.fit(*_random(n=12, n_out=2, c_out=2))
    small.save(tmp_path / "small")
    large = models.build({"kind": "svr_direct"})
    large.fit(*_random(n=12, n_out=3, c_out=2))
    large.save(tmp_path / "large")
    (tmp_path / "large" / "model.joblib").write_bytes((tmp_path / "small" / "model.joblib").read_bytes())
    with pytest.raises(ModelError) as info:
        models.load(tmp_path / "large")
    assert _code(info) == "MODEL_FILE_INVALID"


def test_load_missing_model_json_or_model_file(saved_linear: Path) -> None:
    (saved_linear / "model.joblib").unlink()
    with pytest.raises(ModelError) as info:
        models.load(saved_linear)
    assert _code(info) == "MODEL_FILE_INVALID" and "model.joblib" in info.value.message
    (saved_linear / "model.json").unlink()
    with pytest.raises(ModelError) as info:
        models.load(saved_linear)
    assert _code(info) == "MODEL_FILE_INVALID" and "model.json" in info.value.message


def test_save_writes_no_temporary_files(saved_linear: Path) -> None:
    assert sorted(p.name for p in saved_linear.iterdir()) == ["model.joblib", "model.json"]


# ------------------------------------------------------------------------------------------------
# property: linear recovers an exact linear map
# ------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_in=st.integers(1, 4), c_in=st.integers(1, 3), n_out=st.integers(1, 4),
       c_out=st.integers(1, 3))
def test_linear_recovers_any_exact_linear_map(seed: int, n_in: int, c_in: int, n_out: int, c_out: int) -> None:
    rng = np.random.default_rng(seed)
    p, q = n_in * c_in, n_out * c_out
    weights = rng.uniform(-3, 3, size=(p, q))
    intercept = rng.uniform(-5, 5, size=q)
    X = rng.normal(size=(p + 10, n_in, c_in))
    Y = (X.reshape(p + 10, p) @ weights + intercept).reshape(p + 10, n_out, c_out)
    model = models.build({"kind": "linear"})
    model.fit(X, Y)
    X_new = rng.normal(size=(7, n_in, c_in))
    expected = (X_new.reshape(7, p) @ weights + intercept).reshape(7, n_out, c_out)
    np.testing.assert_allclose(model.predict(X_new), expected, rtol=0, atol=1e-6)
