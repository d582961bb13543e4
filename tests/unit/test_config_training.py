"""``TrainingConfig`` in a project: model specs, task runner, isolation and timeouts, with coded errors that
name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeitflow.config import TrainingConfig, load_config
from zeitflow.errors import ParameterError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tmy3_greensboro.yaml"


def _error(overrides: list[str]) -> ParameterError:
    with pytest.raises(ParameterError) as caught:
        load_config(EXAMPLE, overrides)
    return caught.value


def test_example_trains_four_models() -> None:
    training = load_config(EXAMPLE).training
    assert [m.model_name for m in training.models] == ["linear", "dense", "lstm", "persistence"]
    assert training.task_runner == "thread" and training.isolate == "keras"
    assert training.isolated("dense") and training.isolated("lstm") and not training.isolated("linear")
    assert training.timeout_for("dense") == 20 * 60.0


def test_isolate_all_and_per_model_timeouts() -> None:
    training = TrainingConfig(models=[{"kind": "linear"}, {"kind": "svr_direct", "name": "svr"}],
                              isolate="all", timeout_minutes=2, model_timeouts_minutes={"svr": 0.5})
    assert training.isolated("linear") and training.timeout_for("svr") == 30.0 and training.timeout_for("linear") == 120


@pytest.mark.parametrize(("override", "code", "loc"), [
    ('training={"models": []}', "MISSING_PARAMETER", "training"),
    ('training={"models": [{"kind": "dense"}, {"kind": "dense"}]}', "PARAM_COMPARISON_FAILED", "training"),
    ('training={"models": [{"kind": "linear"}], "task_runner": "process"}', "INVALID_CHOICE", "training"),
    ('training={"models": [{"kind": "linear"}], "task_runner": "dask"}', "MISSING_PARAMETER", "training"),
    ('training={"models": [{"kind": "linear"}], "dask_address": "tcp://x:8786"}', "MUTUALLY_EXCLUSIVE", "training"),
    ('training={"models": [{"kind": "linear"}], "isolate": "none"}', "INVALID_CHOICE", "training"),
    ('training={"models": [{"kind": "linear"}], "timeout_minutes": 0}', "PARAM_OUT_OF_RANGE", "training"),
    ('training={"models": [{"kind": "linear"}], "max_workers": 0}', "PARAM_OUT_OF_RANGE", "training"),
    ('training={"models": [{"kind": "linear"}], "model_timeouts_minutes": {"svr": 1}}', "PARAM_COMPARISON_FAILED",
     "training"),
    ('training={"models": [{"kind": "dense", "units": 0}]}', "PARAM_OUT_OF_RANGE", "training.models.0.dense"),
    ('training={"models": [{"kind": "gbm"}]}', "INVALID_CHOICE", "training.models.0"),
])
def test_invalid_training_sections(override: str, code: str, loc: str) -> None:
    error = _error([override])
    assert error.code == code
    assert error.details["errors"][0]["loc"] == loc


def test_training_needs_a_dataset() -> None:
    error = _error(["dataset=null"])
    assert error.code == "MISSING_PARAMETER" and "training needs a dataset" in error.message
