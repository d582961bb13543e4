"""Bad resample and clean parameters are rejected while the config is validated, before any data
is read, with a ParameterError naming the parameter."""

from __future__ import annotations

import pytest

from zeitflow.config import parse_config
from zeitflow.errors import ParameterError


def _config(resample: dict, clean: dict | None = None) -> dict:
    source = {"name": "s", "path": "/nonexistent/never-read.csv", "resample": resample}
    if clean is not None:
        source["clean"] = clean
    return {"project": "p", "sources": [source]}


GOOD = {"step_minutes": 15, "method": "mean"}


@pytest.mark.parametrize("resample, code, loc, words", [
    ({**GOOD, "step_minutes": 0}, "PARAM_OUT_OF_RANGE", "sources.0.resample.step_minutes", "step_minutes=0"),
    ({**GOOD, "step_minutes": 1441}, "PARAM_OUT_OF_RANGE", "sources.0.resample.step_minutes", "1440"),
    ({**GOOD, "method": "median"}, "INVALID_CHOICE", "sources.0.resample.method", "median"),
    ({**GOOD, "max_gap_minutes": -1}, "PARAM_OUT_OF_RANGE", "sources.0.resample.max_gap_minutes", "max_gap_minutes"),
    ({**GOOD, "step_minutes": 1 / 60, "start": "2000-01-01T00:00:00Z", "end": "2020-01-01T00:00:00Z"},
     "PARAM_COMPARISON_FAILED", "sources.0.resample", "5,000,000"),
])
def test_resample_parameters(resample: dict, code: str, loc: str, words: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config(resample))
    first = info.value.details["errors"][0]
    assert (info.value.code, first["code"]) == (code, code)
    assert first["loc"] == loc
    assert words.replace(",", "") in info.value.message.replace(",", "")


def test_stl_period_must_be_a_whole_number_of_grid_steps() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config({**GOOD, "step_minutes": 7}, {"stl": {"period_hours": 24, "threshold": 3}}))
    assert info.value.code == "STL_PERIOD_NOT_ALIGNED"
    assert "stl.period_hours" in info.value.message and "step_minutes" in info.value.message


def test_clean_requires_a_grid() -> None:
    source = {"name": "s", "path": "x.csv", "clean": {"value_max": 3}}
    with pytest.raises(ParameterError) as info:
        parse_config({"project": "p", "sources": [source]})
    assert info.value.code == "MISSING_PARAMETER" and "resample" in info.value.message


def test_aliases_of_the_predecessor_are_normalised() -> None:
    config = parse_config(_config({"step_minutes": 10, "method": "nearest (mean)"}, {"gap_max_minutes": 30}))
    assert config.sources[0].resample.method == "nearest_mean"
