"""CleanOptions, StlOptions, LstmCleanOptions and ThresholdAnswer (stages.md §3.3, §3.9, §0.6)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from zeitflow.errors import CleanError, ParameterError
from zeitflow.options.base import to_parameter_error
from zeitflow.options.clean import CleanOptions, LstmCleanOptions, StlOptions, ThresholdAnswer
from zeitflow.stages.clean import check_grid_step


def _codes(model: type, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        model.model_validate(data)
    return [e["type"] for e in info.value.errors()]


def test_defaults_follow_the_table() -> None:
    o = CleanOptions()
    assert o.rule_set == "anomaly" and o.columns is None and o.drop_zeros is False
    assert o.sbad_max_iterations == 50 and o.seed == 42 and o.stl is None and o.lstm is None
    for name in ("eq_max_minutes", "value_max", "value_min", "slope_max", "outlier_max_minutes",
                 "gap_max_minutes", "run_min_minutes", "decimals"):
        assert getattr(o, name) is None
    assert StlOptions().model_dump() == {"period_hours": 24.0, "seasonal": 7, "robust": True, "threshold": None}
    assert LstmCleanOptions().model_dump() == {"period_hours": 24.0, "units": 64, "epochs": 20, "batch_size": 16,
                                               "threshold": None}


def test_options_are_frozen_and_hash_is_stable() -> None:
    o = CleanOptions(eq_max_minutes=2)
    with pytest.raises(ValidationError):
        o.eq_max_minutes = 3  # type: ignore[misc]
    assert o.parameters_hash() == CleanOptions(eq_max_minutes=2.0).parameters_hash()
    assert o.parameters_hash() != CleanOptions(eq_max_minutes=3).parameters_hash()


@pytest.mark.parametrize("data, code", [
    ({"eq_max_minutes": 0}, "PARAM_OUT_OF_RANGE"),
    ({"eq_max_minutes": -1}, "PARAM_OUT_OF_RANGE"),
    ({"slope_max": 0, "outlier_max_minutes": 5}, "PARAM_OUT_OF_RANGE"),
    ({"slope_max": 1, "outlier_max_minutes": -0.1}, "PARAM_OUT_OF_RANGE"),
    ({"gap_max_minutes": -1}, "PARAM_OUT_OF_RANGE"),
    ({"run_min_minutes": -1}, "PARAM_OUT_OF_RANGE"),
    ({"decimals": 16}, "PARAM_OUT_OF_RANGE"),
    ({"decimals": -1}, "PARAM_OUT_OF_RANGE"),
    ({"sbad_max_iterations": 0}, "PARAM_OUT_OF_RANGE"),
    ({"sbad_max_iterations": 1001}, "PARAM_OUT_OF_RANGE"),
    ({"seed": -1}, "PARAM_OUT_OF_RANGE"),
    ({"stl": {"period_hours": 0}}, "PARAM_OUT_OF_RANGE"),
    ({"stl": {"seasonal": 1}}, "PARAM_OUT_OF_RANGE"),
    ({"stl": {"seasonal": 8}}, "PARAM_OUT_OF_RANGE"),
    ({"stl": {"threshold": -0.5}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"period_hours": -1}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"units": 0}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"units": 1025}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"epochs": 0}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"epochs": 501}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"batch_size": 0}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"batch_size": 4097}}, "PARAM_OUT_OF_RANGE"),
    ({"lstm": {"threshold": -1}}, "PARAM_OUT_OF_RANGE"),
    ({"value_max": math.inf}, "PARAM_NOT_FINITE"),
    ({"value_min": math.nan}, "PARAM_NOT_FINITE"),
    ({"gap_max_minutes": math.inf}, "PARAM_NOT_FINITE"),
    ({"stl": {"threshold": math.nan}}, "PARAM_NOT_FINITE"),
    ({"decimals": 1.5}, "PARAM_NOT_INTEGER"),
    ({"seed": True}, "PARAM_NOT_INTEGER"),
    ({"lstm": {"epochs": 2.5}}, "PARAM_NOT_INTEGER"),
    ({"value_min": 5, "value_max": 1}, "PARAM_COMPARISON_FAILED"),
    ({"columns": ["a", "a"]}, "PARAM_COMPARISON_FAILED"),
    ({"columns": []}, "MISSING_PARAMETER"),
    ({"slope_max": 5}, "SLOPE_REQUIRES_BOTH"),
    ({"outlier_max_minutes": 5}, "SLOPE_REQUIRES_BOTH"),
    ({"rule_set": "classic", "stl": {}}, "ANOMALY_ONLY"),
    ({"rule_set": "classic", "lstm": {"threshold": 1}}, "ANOMALY_ONLY"),
    ({"rule_set": "fancy"}, "INVALID_CHOICE"),
    ({"eq_max": 2}, "UNKNOWN_PARAMETER"),
    ({"stl": {"periods": 2}}, "UNKNOWN_PARAMETER"),
    ({"lstm": {"layers": 2}}, "UNKNOWN_PARAMETER"),
    ({"eqMax": 2, "eq_max_minutes": 2}, "MUTUALLY_EXCLUSIVE"),
])
def test_validation_codes(data: dict[str, Any], code: str) -> None:
    assert _codes(CleanOptions, data)[0] == code


def test_zero_is_never_off_and_the_message_says_so() -> None:
    with pytest.raises(ValidationError) as info:
        CleanOptions(eq_max_minutes=0)
    message = info.value.errors()[0]["msg"]
    assert "eq_max_minutes=0.0" in message and "None" in message and "eqMax" in message
    # where 0 is inside the range it is a real value
    o = CleanOptions(outlier_max_minutes=0, slope_max=1, gap_max_minutes=0, run_min_minutes=0, value_max=0,
                     value_min=0, decimals=0, seed=0)
    assert o.outlier_max_minutes == 0 and o.gap_max_minutes == 0 and o.run_min_minutes == 0 and o.value_max == 0


def test_both_slope_parameters_together_are_fine() -> None:
    o = CleanOptions(slope_max=5, outlier_max_minutes=5)
    assert (o.slope_max, o.outlier_max_minutes) == (5.0, 5.0)


def test_predecessor_names_and_values_are_normalised() -> None:
    o = CleanOptions.model_validate({
        "eqMax": 2, "elMax": 100, "vMin": 0, "radioValueNull": "ja", "chgMax": 5, "lgMax": 5, "gapMax": 60,
        "lgMin": 3, "decimalPrecision": "full", "lstm": {"neurons": 8, "batchSize": 4},
    })
    assert o.eq_max_minutes == 2 and o.value_max == 100 and o.value_min == 0 and o.drop_zeros is True
    assert o.slope_max == 5 and o.outlier_max_minutes == 5 and o.gap_max_minutes == 60 and o.run_min_minutes == 3
    assert o.decimals is None and o.lstm is not None and (o.lstm.units, o.lstm.batch_size) == (8, 4)
    same = CleanOptions(eq_max_minutes=2, value_max=100, value_min=0, drop_zeros=True, slope_max=5,
                        outlier_max_minutes=5, gap_max_minutes=60, run_min_minutes=3,
                        lstm=LstmCleanOptions(units=8, batch_size=4))
    assert o.parameters_hash() == same.parameters_hash()
    assert CleanOptions(drop_zeros="nein").drop_zeros is False
    assert CleanOptions(el0="Ja").drop_zeros is True
    assert CleanOptions(drop_zeros=None).drop_zeros is False
    assert CleanOptions(dec=3).decimals == 3
    assert StlOptions(robust="nein").robust is False


def test_phases_switch_with_booleans() -> None:
    assert CleanOptions(stl="nein").stl is None
    assert CleanOptions(stl=False, lstm=None).lstm is None
    assert CleanOptions(stl=True).stl == StlOptions()
    assert CleanOptions(lstm="ja").lstm == LstmCleanOptions()


def test_parameter_error_names_the_nested_key() -> None:
    with pytest.raises(ValidationError) as info:
        CleanOptions.model_validate({"stl": {"seasonal": 4}, "decimals": 20})
    err = to_parameter_error(info.value, ("clean",))
    assert isinstance(err, ParameterError)
    locs = {e["loc"]: e["code"] for e in err.details["errors"]}
    assert locs == {"clean.stl.seasonal": "PARAM_OUT_OF_RANGE", "clean.decimals": "PARAM_OUT_OF_RANGE"}


# ---------------------------------------------------------------------------------------------- ThresholdAnswer


def test_threshold_answer_fields_are_all_required() -> None:
    for missing in ("phase", "column", "threshold"):
        data = {"phase": "stl", "column": "x", "threshold": 1.0}
        del data[missing]
        with pytest.raises(ValidationError) as info:
            ThresholdAnswer.model_validate(data)
        assert info.value.errors()[0]["type"] == "MISSING_PARAMETER"
        assert missing in info.value.errors()[0]["msg"]


@pytest.mark.parametrize("data, code", [
    ({"phase": "sbad", "column": "x", "threshold": 1}, "INVALID_CHOICE"),
    ({"phase": 1, "column": "x", "threshold": 1}, "INVALID_CHOICE"),
    ({"phase": "stl", "column": "x", "threshold": -1}, "PARAM_OUT_OF_RANGE"),
    ({"phase": "stl", "column": "x", "threshold": math.inf}, "PARAM_NOT_FINITE"),
    ({"phase": "lstm", "column": "", "threshold": 1}, "MISSING_PARAMETER"),
    ({"phase": "lstm", "column": "x", "threshold": 1, "skip": True}, "UNKNOWN_PARAMETER"),
])
def test_threshold_answer_codes(data: dict[str, Any], code: str) -> None:
    assert _codes(ThresholdAnswer, data)[0] == code


def test_threshold_answer_skip_is_explicit_none_and_frozen() -> None:
    a = ThresholdAnswer(phase="lstm", column="x", threshold=None)
    assert a.threshold is None
    assert ThresholdAnswer(phase="stl", column="x", threshold=0).threshold == 0.0
    with pytest.raises(ValidationError):
        a.threshold = 1.0  # type: ignore[misc]


# ---------------------------------------------------------------------------------------------- grid step pre-check


def test_check_grid_step_before_any_data() -> None:
    stl = CleanOptions(stl={"period_hours": 24})
    check_grid_step(stl, 15)
    check_grid_step(CleanOptions(), 7)  # no phase: nothing to check
    with pytest.raises(CleanError) as info:
        check_grid_step(stl, 7)
    assert info.value.code == "STL_PERIOD_NOT_ALIGNED"
    assert "STL period not an integer number of steps" in info.value.message
    with pytest.raises(CleanError) as info:
        check_grid_step(CleanOptions(stl={"period_hours": 1}), 60)
    assert info.value.code == "STL_PERIOD_OUT_OF_RANGE"
    with pytest.raises(CleanError) as info:
        check_grid_step(CleanOptions(lstm={"period_hours": 1}), 45)  # floor(60/45) = 1 step
    assert info.value.code == "LSTM_PERIOD_OUT_OF_RANGE"
    check_grid_step(CleanOptions(lstm={"period_hours": 1}), 25)  # floor(60/25) = 2: the LSTM needs no alignment
