"""Model specs (stages.md §9.2: defaults, predecessor aliases, bounds and codes) and the ``build``/``load``
dispatch of ``zeitflow.models`` (§9.1, §9.4), including that non-Keras kinds never import TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

import zeitflow.models as models
from zeitflow.models.baselines import PersistenceForecaster, SeasonalNaiveForecaster
from zeitflow.models.sklearn import LinearForecaster, SvrDirectForecaster, SvrMimoForecaster
from zeitflow.options.models import (
    ArLstmSpec,
    CnnSpec,
    DenseSpec,
    LinearSpec,
    LstmSpec,
    PersistenceSpec,
    SeasonalNaiveSpec,
    SvrDirectSpec,
    SvrMimoSpec,
    parse_model_spec,
)

REPO = Path(__file__).resolve().parents[2]
KERAS_DEFAULTS = {"name": None, "seed": 42, "layers": 3, "units": 512, "epochs": 20, "activation": "relu",
                  "batch_size": 32, "learning_rate": 0.001, "patience": 2}
SVR_DEFAULTS = {"name": None, "seed": 42, "svr_kernel": "poly", "c": 1.0, "epsilon": 0.1}


def _codes(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        parse_model_spec(data)
    return [e["type"] for e in info.value.errors()]


# ------------------------------------------------------------------------------------------------
# defaults and aliases
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, cls, expected", [
    ("dense", DenseSpec, KERAS_DEFAULTS),
    ("cnn", CnnSpec, {**KERAS_DEFAULTS, "kernel_size": 3}),
    ("lstm", LstmSpec, KERAS_DEFAULTS),
    ("ar_lstm", ArLstmSpec, KERAS_DEFAULTS),
    ("svr_direct", SvrDirectSpec, SVR_DEFAULTS),
    ("svr_mimo", SvrMimoSpec, SVR_DEFAULTS),
    ("linear", LinearSpec, {"name": None, "seed": 42}),
    ("persistence", PersistenceSpec, {"name": None, "seed": 42}),
    ("seasonal_naive", SeasonalNaiveSpec, {"name": None, "seed": 42, "season_hours": 24.0}),
])
def test_defaults_per_kind(kind: str, cls: type, expected: dict[str, Any]) -> None:
    spec = parse_model_spec({"kind": kind})
    assert type(spec) is cls
    assert spec.model_dump() == {**expected, "kind": kind}
    assert spec.model_name == kind
    assert parse_model_spec({"kind": kind, "name": "second"}).model_name == "second"


@pytest.mark.parametrize("mode, kind", [
    ("Dense", "dense"), ("CNN", "cnn"), ("LSTM", "lstm"), ("AR LSTM", "ar_lstm"), ("SVR_dir", "svr_direct"),
    ("SVR_MIMO", "svr_mimo"), ("LIN", "linear"),
])
def test_predecessor_mode_names(mode: str, kind: str) -> None:
    assert parse_model_spec({"MODE": mode}).kind == kind
    assert parse_model_spec({"kind": mode}).kind == kind


def test_predecessor_field_aliases() -> None:
    spec = parse_model_spec({"MODE": "CNN", "LAY": 2, "N": 64, "EP": 5, "ACTF": "TanH", "K": 7})
    assert (spec.kind, spec.layers, spec.units, spec.epochs, spec.activation, spec.kernel_size) == \
        ("cnn", 2, 64, 5, "tanh", 7)
    assert parse_model_spec({"kind": "lstm", "ACTF": "SIGMOID"}).activation == "sigmoid"
    assert parse_model_spec({"kind": "dense", "activation": "Softmax"}).activation == "softmax"
    svr = parse_model_spec({"MODE": "SVR_MIMO", "KERNEL": "RBF", "C": 10, "EPSILON": 0.25})
    assert (svr.kind, svr.svr_kernel, svr.c, svr.epsilon) == ("svr_mimo", "rbf", 10.0, 0.25)


def test_alias_and_canonical_spelling_hash_alike() -> None:
    alias = parse_model_spec({"MODE": "CNN", "LAY": 2, "N": 64, "EP": 5, "ACTF": "TanH", "K": 7})
    canonical = parse_model_spec({"kind": "cnn", "layers": 2, "units": 64, "epochs": 5, "activation": "tanh",
                                  "kernel_size": 7})
    assert alias.parameters_hash() == canonical.parameters_hash()
    assert alias.parameters_hash() != parse_model_spec({"kind": "cnn", "layers": 3, "units": 64, "epochs": 5,
                                                        "activation": "tanh", "kernel_size": 7}).parameters_hash()
    svr_alias = parse_model_spec({"MODE": "SVR_dir", "KERNEL": "Linear", "C": 2, "EPSILON": 0})
    svr = parse_model_spec({"kind": "svr_direct", "svr_kernel": "linear", "c": 2.0, "epsilon": 0.0})
    assert svr_alias.parameters_hash() == svr.parameters_hash()


def test_alias_together_with_its_field_is_mutually_exclusive() -> None:
    assert _codes({"kind": "dense", "LAY": 2, "layers": 3}) == ["MUTUALLY_EXCLUSIVE"]


# ------------------------------------------------------------------------------------------------
# bounds and codes
# ------------------------------------------------------------------------------------------------


_RANGES = [
    ("dense", "layers", 0, 1, 16, 17),
    ("lstm", "units", 0, 1, 4096, 4097),
    ("ar_lstm", "epochs", 0, 1, 2000, 2001),
    ("cnn", "kernel_size", 0, 1, 4096, 4097),
    ("dense", "batch_size", 0, 1, 65_536, 65_537),
    ("dense", "patience", -1, 0, 100, 101),
    ("linear", "seed", -1, 0, 2**32 - 1, None),
    ("svr_direct", "c", 0, 1e-9, 1e6, 1e6 + 1),
    ("svr_mimo", "epsilon", -0.1, 0, 1e6, 1e6 + 1),
    ("seasonal_naive", "season_hours", 1 / 120, 1 / 60, 8760, 8761),
]


@pytest.mark.parametrize("kind, field, low_bad, low_ok, high_ok, high_bad", _RANGES)
def test_bounds_at_both_edges(kind: str, field: str, low_bad: float, low_ok: float, high_ok: float,
                              high_bad: float | None) -> None:
    assert _codes({"kind": kind, field: low_bad}) == ["PARAM_OUT_OF_RANGE"]
    assert getattr(parse_model_spec({"kind": kind, field: low_ok}), field) == low_ok
    assert getattr(parse_model_spec({"kind": kind, field: high_ok}), field) == high_ok
    if high_bad is not None:
        assert _codes({"kind": kind, field: high_bad}) == ["PARAM_OUT_OF_RANGE"]


def test_learning_rate_bounds() -> None:
    assert _codes({"kind": "dense", "learning_rate": 0}) == ["PARAM_OUT_OF_RANGE"]
    assert _codes({"kind": "lstm", "learning_rate": -0.01}) == ["PARAM_OUT_OF_RANGE"]
    assert _codes({"kind": "cnn", "learning_rate": 1.5}) == ["PARAM_OUT_OF_RANGE"]
    assert parse_model_spec({"kind": "dense", "learning_rate": 1}).learning_rate == 1.0
    assert parse_model_spec({"kind": "dense", "learning_rate": 1e-6}).learning_rate == 1e-6


@pytest.mark.parametrize("data", [
    {"kind": "dense", "activation": "gelu"},
    {"kind": "ar_lstm", "ACTF": "leaky_relu"},
    {"kind": "svr_direct", "svr_kernel": "cubic"},
    {"kind": "svr_mimo", "KERNEL": "precomputed"},
    {"kind": "xgboost"},
    {"MODE": "LightGBM"},
    {"kind": 3},
])
def test_invalid_choice(data: dict[str, Any]) -> None:
    assert _codes(data) == ["INVALID_CHOICE"]


@pytest.mark.parametrize("data", [
    {"kind": "dense", "kernel_size": 3},
    {"kind": "dense", "K": 3},
    {"kind": "linear", "season_hours": 24},
    {"kind": "lstm", "svr_kernel": "rbf"},
    {"kind": "svr_mimo", "layers": 2},
    {"kind": "svr_direct", "epochs": 2},
    {"kind": "persistence", "c": 1.0},
    {"kind": "seasonal_naive", "learning_rate": 0.1},
    {"kind": "linear", "typo": 1},
])
def test_field_of_another_kind_is_unknown(data: dict[str, Any]) -> None:
    assert _codes(data) == ["UNKNOWN_PARAMETER"]


@pytest.mark.parametrize("data", [
    {"kind": "dense", "layers": 2.5},
    {"kind": "lstm", "N": 1.5},
    {"kind": "cnn", "kernel_size": True},
    {"kind": "dense", "epochs": False},
    {"kind": "linear", "seed": 4.2},
])
def test_param_not_integer(data: dict[str, Any]) -> None:
    assert _codes(data) == ["PARAM_NOT_INTEGER"]


def test_integral_floats_are_integers() -> None:
    spec = parse_model_spec({"kind": "dense", "layers": 2.0, "units": 64.0})
    assert (spec.layers, spec.units) == (2, 64)
    assert isinstance(spec.layers, int)


def test_missing_kind_and_bad_name() -> None:
    assert _codes({"layers": 2}) == ["MISSING_PARAMETER"]
    assert _codes({"kind": "linear", "name": "has space"}) == ["INVALID_NAME"]
    assert _codes({"kind": "linear", "name": ""}) == ["INVALID_NAME"]


def test_spec_instances_pass_through() -> None:
    spec = SvrMimoSpec(c=5.0)
    assert parse_model_spec(spec) == spec


# ------------------------------------------------------------------------------------------------
# build and load
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, cls", [
    ("svr_direct", SvrDirectForecaster), ("svr_mimo", SvrMimoForecaster), ("linear", LinearForecaster),
    ("persistence", PersistenceForecaster), ("seasonal_naive", SeasonalNaiveForecaster),
])
def test_build_sklearn_and_baseline_kinds(kind: str, cls: type) -> None:
    model = models.build({"kind": kind, "name": f"my-{kind}"})
    assert type(model) is cls and model.kind == kind
    assert model.name == f"my-{kind}" and model.shape is None
    assert model.model_file == "model.joblib"


@pytest.mark.parametrize("mode, kind", [("Dense", "dense"), ("CNN", "cnn"), ("LSTM", "lstm"),
                                        ("AR LSTM", "ar_lstm")])
def test_build_keras_kinds(mode: str, kind: str) -> None:
    from zeitflow.models import keras as keras_models

    model = models.build({"MODE": mode, "EP": 1})
    assert type(model) is keras_models.FORECASTERS[kind]
    assert isinstance(model, models.Forecaster) and model.kind == kind
    assert model.model_file == "model.keras"


def test_build_accepts_a_spec_instance() -> None:
    spec = SeasonalNaiveSpec(season_hours=168)
    model = models.build(spec)
    assert isinstance(model, SeasonalNaiveForecaster) and model.spec.season_hours == 168.0


def test_build_rejects_an_invalid_spec() -> None:
    with pytest.raises(ValidationError):
        models.build({"kind": "linear", "epochs": 3})


def test_load_warns_on_library_version_mismatch(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    X, Y = rng.normal(size=(20, 3, 2)), rng.normal(size=(20, 2, 1))
    model = models.build({"kind": "linear"})
    model.fit(X, Y)
    model.save(tmp_path / "m")
    assert models.load(tmp_path / "m").load_warnings == []
    sidecar_path = tmp_path / "m" / "model.json"
    sidecar = json.loads(sidecar_path.read_text())
    saved_numpy = sidecar["versions"]["numpy"]
    sidecar["versions"]["numpy"] = "0.0.1"
    sidecar["versions"]["scikit-learn"] = "0.0.2"
    sidecar_path.write_text(json.dumps(sidecar))
    loaded = models.load(tmp_path / "m")
    assert [w.code for w in loaded.load_warnings] == ["LIBRARY_VERSION_MISMATCH"]
    warning = loaded.load_warnings[0]
    assert warning.count == 2
    assert {"library": "numpy", "saved": "0.0.1", "now": saved_numpy} in warning.examples
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_sklearn_and_baseline_kinds_do_not_import_tensorflow(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import zeitflow.models as m
        rng = np.random.default_rng(0)
        X, Y = rng.normal(size=(12, 3, 2)), rng.normal(size=(12, 2, 2))
        for i, kind in enumerate(["linear", "svr_direct", "svr_mimo", "persistence", "seasonal_naive"]):
            model = m.build({{"kind": kind}})
            model.fit(X, Y, input_features=["a", "b"], output_features=["a", "b"])
            model.save({str(tmp_path)!r} + f"/{{i}}")
            m.load({str(tmp_path)!r} + f"/{{i}}")
        assert "tensorflow" not in sys.modules, "tensorflow imported"
        assert "keras" not in sys.modules, "keras imported"
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
