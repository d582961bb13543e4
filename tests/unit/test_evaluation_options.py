"""``EvaluationOptions`` (stages.md §10.2, §0.6): defaults, ranges and the coded validation errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from zeitflow.options.evaluation import EvaluationOptions

DEFAULTS = {"levels": 12, "nrmse_normalizer": "mean", "mase_season_steps": None,
            "baselines": ["persistence", "seasonal_naive"], "season_hours": 24.0, "reference_baseline": "persistence"}


def codes(**data: Any) -> list[str]:
    with pytest.raises(ValidationError) as info:
        EvaluationOptions(**data)
    return [e["type"] for e in info.value.errors()]


def test_defaults() -> None:
    assert EvaluationOptions().model_dump() == DEFAULTS


def test_none_means_the_default() -> None:
    options = EvaluationOptions(**{k: None for k in DEFAULTS})
    assert options.model_dump() == DEFAULTS
    assert options.parameters_hash() == EvaluationOptions().parameters_hash()


def test_parameters_hash_is_stable_and_sensitive() -> None:
    assert EvaluationOptions(levels=12.0).parameters_hash() == EvaluationOptions().parameters_hash()
    assert EvaluationOptions(levels=6).parameters_hash() != EvaluationOptions().parameters_hash()


def test_frozen() -> None:
    options = EvaluationOptions()
    with pytest.raises(ValidationError):
        options.levels = 3  # type: ignore[misc]


def test_unknown_parameter() -> None:
    assert codes(level=3) == ["UNKNOWN_PARAMETER"]


@pytest.mark.parametrize("value", [1, 96, 4.0])
def test_levels_in_range(value: Any) -> None:
    assert EvaluationOptions(levels=value).levels == int(value)


@pytest.mark.parametrize("value, code", [
    (0, "PARAM_OUT_OF_RANGE"), (97, "PARAM_OUT_OF_RANGE"), (-1, "PARAM_OUT_OF_RANGE"), (2.5, "PARAM_NOT_INTEGER"),
    (True, "PARAM_NOT_INTEGER"), (math.nan, "PARAM_NOT_FINITE"), (math.inf, "PARAM_NOT_FINITE"),
])
def test_levels_rejected(value: Any, code: str) -> None:
    assert codes(levels=value) == [code]


def test_levels_message_names_the_range() -> None:
    with pytest.raises(ValidationError, match=r"levels=0 is out of range: allowed 1 <= levels <= 96"):
        EvaluationOptions(levels=0)


@pytest.mark.parametrize("value", ["mean", "range", "std", " std "])
def test_nrmse_normalizer_choices(value: str) -> None:
    assert EvaluationOptions(nrmse_normalizer=value).nrmse_normalizer == value.strip()


@pytest.mark.parametrize("value", ["max", "", "Mean", 1])
def test_nrmse_normalizer_rejected(value: Any) -> None:
    assert codes(nrmse_normalizer=value) == ["INVALID_CHOICE"]


def test_nrmse_message_lists_the_choices() -> None:
    with pytest.raises(ValidationError, match=r"choose one of \['mean', 'range', 'std'\]"):
        EvaluationOptions(nrmse_normalizer="max")


def test_mase_season_steps_accepted() -> None:
    options = EvaluationOptions(mase_season_steps={"load": 96, "pv [kW]": 1, "x": 4.0})
    assert options.mase_season_steps == {"load": 96, "pv [kW]": 1, "x": 4}


@pytest.mark.parametrize("value, code", [
    ({"load": 0}, "PARAM_OUT_OF_RANGE"), ({"load": -3}, "PARAM_OUT_OF_RANGE"), ({"load": 1.5}, "PARAM_NOT_INTEGER"),
    ({"load": True}, "PARAM_NOT_INTEGER"), ({"load": math.nan}, "PARAM_NOT_FINITE"), ({"": 3}, "MISSING_PARAMETER"),
])
def test_mase_season_steps_rejected(value: dict[str, Any], code: str) -> None:
    assert codes(mase_season_steps=value) == [code]


@pytest.mark.parametrize("value, expected", [
    (["persistence"], ["persistence"]), (["seasonal_naive", "persistence"], ["seasonal_naive", "persistence"]),
    ("persistence", ["persistence"]), (("persistence", " seasonal_naive"), ["persistence", "seasonal_naive"]),
])
def test_baselines_accepted(value: Any, expected: list[str]) -> None:
    assert EvaluationOptions(baselines=value).baselines == expected


@pytest.mark.parametrize("value", [["persistence", "linear"], ["persistence", "persistence"], [3]])
def test_baselines_rejected(value: list[Any]) -> None:
    assert codes(baselines=value) == ["INVALID_CHOICE"]


@pytest.mark.parametrize("value", [1 / 60, 1, 24, 168.5, 8760])
def test_season_hours_in_range(value: float) -> None:
    assert EvaluationOptions(season_hours=value).season_hours == value


@pytest.mark.parametrize("value, code", [
    (0, "PARAM_OUT_OF_RANGE"), (0.016, "PARAM_OUT_OF_RANGE"), (8760.5, "PARAM_OUT_OF_RANGE"),
    (math.nan, "PARAM_NOT_FINITE"), (-math.inf, "PARAM_NOT_FINITE"), (True, "float_type"),
])
def test_season_hours_rejected(value: Any, code: str) -> None:
    assert codes(season_hours=value) == [code]


def test_season_hours_message() -> None:
    with pytest.raises(ValidationError, match=r"allowed 1/60 <= season_hours <= 8760"):
        EvaluationOptions(season_hours=0)


def test_reference_baseline_can_be_seasonal_naive() -> None:
    assert EvaluationOptions(reference_baseline="seasonal_naive").reference_baseline == "seasonal_naive"


@pytest.mark.parametrize("value", ["linear", "Persistence", "", 0])
def test_reference_baseline_must_be_a_baseline_name(value: Any) -> None:
    assert codes(reference_baseline=value) == ["INVALID_CHOICE"]


@pytest.mark.parametrize("data", [
    {"baselines": ["persistence"], "reference_baseline": "seasonal_naive"},
    {"baselines": ["seasonal_naive"]},
    {"baselines": []},
])
def test_reference_baseline_must_be_computed(data: dict[str, Any]) -> None:
    assert codes(**data) == ["PARAM_COMPARISON_FAILED"]
    with pytest.raises(ValidationError, match="add it to baselines"):
        EvaluationOptions(**data)


def test_several_errors_are_reported_together() -> None:
    assert sorted(codes(levels=0, nrmse_normalizer="max", season_hours=0)) == [
        "INVALID_CHOICE", "PARAM_OUT_OF_RANGE", "PARAM_OUT_OF_RANGE"]
