"""Validation of the ``dataset`` section of a project (DatasetConfig in PipelineConfig)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zeitflow.config import (
    DatasetConfig,
    ScalingOptions,
    SplitOptions,
    TimeFeatureOptions,
    WindowOptions,
    load_config,
    parse_config,
)
from zeitflow.errors import ParameterError

REPO = Path(__file__).resolve().parents[2]


def _config(dataset: dict[str, Any] | None, sources: int = 1, align: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"project": "p", "sources": [{"name": f"s{i}", "path": "x.csv"} for i in range(sources)]}
    if align:
        data["align"] = {"step_minutes": 60}
    if dataset is not None:
        data["dataset"] = dataset
    return data


WINDOWS = {"n_in": 4, "n_out": 2, "stride_minutes": 60, "inputs_spec": {"a": None, "b": None},
           "outputs_spec": {"a": {"horizon_start_hours": 1, "horizon_end_hours": 2}}}


def test_dataset_defaults_and_channels() -> None:
    config = parse_config(_config({"windows": WINDOWS}))
    dataset = config.dataset
    assert isinstance(dataset, DatasetConfig) and isinstance(dataset.windows, WindowOptions)
    assert dataset.name == "dataset"
    assert dataset.input_channels == ["a", "b"] and dataset.output_channels == ["a"]
    assert dataset.split == SplitOptions() and dataset.scaling == ScalingOptions()
    assert dataset.windows.inputs_spec["a"].horizon_start_hours == -1.0


def test_dataset_is_optional() -> None:
    assert parse_config(_config(None)).dataset is None


@pytest.mark.parametrize("key", ["inputs_spec", "outputs_spec"])
def test_empty_channel_specs_are_missing_parameters(key: str) -> None:
    windows = {**WINDOWS, key: {}}
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"windows": windows}))
    assert info.value.code == "MISSING_PARAMETER"
    assert f"windows.{key}" in info.value.message
    assert info.value.details["errors"][0]["loc"] == "dataset"


def test_windows_are_required() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"name": "d"}))
    assert info.value.details["errors"][0]["loc"].startswith("dataset.windows")


def test_invalid_dataset_name() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"name": "../x", "windows": WINDOWS}))
    assert info.value.code == "INVALID_NAME"
    assert info.value.details["errors"][0]["loc"] == "dataset.name"


def test_several_sources_need_align() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"windows": WINDOWS}, sources=2))
    assert info.value.code == "MISSING_PARAMETER" and "dataset" in info.value.message
    assert parse_config(_config({"windows": WINDOWS}, sources=2, align=True)).dataset is not None


def test_nested_options_are_validated_with_their_codes() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"windows": WINDOWS, "split": {"train_fraction": "0.7", "val_fraction": "0.2",
                                                             "test_fraction": "0.2"}}))
    assert info.value.code == "PARAM_COMPARISON_FAILED"
    with pytest.raises(ParameterError) as info:
        parse_config(_config({"windows": {**WINDOWS, "time_features": {"holiday_country": "XX"}}}))
    assert info.value.code == "UNKNOWN_HOLIDAY_COUNTRY"


def test_tmy3_example_dataset_section() -> None:
    config = load_config(REPO / "examples" / "tmy3_greensboro.yaml")
    dataset = config.dataset
    assert dataset.input_channels == ["temperature", "ghi", "humidity"]
    assert dataset.output_channels == ["temperature"]
    assert dataset.windows.n_in == 24 and dataset.windows.n_out == 24 and dataset.windows.stride_minutes == 60
    assert isinstance(dataset.windows.time_features, TimeFeatureOptions)
    assert dataset.windows.time_features.holiday_country == "US"
    assert [str(dataset.split.fraction(f)) for f in ("train_fraction", "val_fraction", "test_fraction")] == [
        "7/10", "1/5", "1/10"]
