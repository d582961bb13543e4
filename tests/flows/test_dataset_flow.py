"""The dataset stage end to end on the TMY3 example: 24 hourly steps of temperature, GHI and humidity plus
calendar features in, 24 hourly temperatures out; split counts, drop reasons, npz round trip, reuse on a
re-run and a missing channel that leaves nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from flows.pipeline import pipeline
from zeitflow.cli import app
from zeitflow.config import load_config
from zeitflow.errors import DataQualityError, WindowError
from zeitflow.io.artifacts import read_frame
from zeitflow.io.metadata import MetadataStore
from zeitflow.stages.scaling import ScalerSet
from zeitflow.stages.windows import DROP_REASONS, WindowedDataset


def _counts(storage: Path) -> tuple[int, int]:
    store = MetadataStore(f"sqlite:///{storage / 'zeitflow.db'}")
    try:
        return store.count_stage_outputs(stage="dataset"), store.count_datasets(name="temperature_24h")
    finally:
        store.dispose()


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_tmy3_dataset_shapes_splits_reload_and_reuse(examples_dir: Path, storage_env: Path) -> None:
    config = load_config(examples_dir / "tmy3_greensboro.yaml", ["training=null"])
    summary = pipeline(config)
    stage = next(s for s in summary.stages if s.stage == "dataset")
    details = stage.details
    n_time = len(config.dataset.windows.time_features.columns())
    samples = details["samples"]
    n = samples["total"]
    assert n > 8000
    assert details["x_shape"] == [n, 24, 3 + n_time] and details["y_shape"] == [n, 24, 1]
    assert details["n_in"] == 24 and details["n_out"] == 24
    assert samples["train"] + samples["val"] + samples["test"] == n
    assert samples["train"] == (140 * n + 100) // 200 and samples["val"] == (40 * n + 100) // 200
    assert set(details["dropped_by_reason"]) == set(DROP_REASONS)
    assert details["references_total"] == n + details["samples_dropped"]
    assert stage.gate["success"] and stage.gate["features"]["success"]

    npz_uri = details["npz_uri"]
    dataset = WindowedDataset.load(_local(npz_uri))
    assert dataset.X.shape == (n, 24, 3 + n_time) and dataset.Y.shape == (n, 24, 1)
    assert dataset.input_features[:3] == ["temperature", "ghi", "humidity"]
    assert dataset.output_features == ["temperature"]
    # Reloaded arrays equal the tabular view the gates validated, value for value.
    view = read_frame(stage.uri, expected_sha256=stage.sha256)
    assert (view.index == dataset.reference_times).all()
    np.testing.assert_array_equal(view["input:ghi:max"].to_numpy(), dataset.X[:, :, 1].max(axis=1))
    np.testing.assert_array_equal(view["output:temperature:min"].to_numpy(), dataset.Y[:, :, 0].min(axis=1))
    assert np.bincount(view["split"].to_numpy().astype(int)).tolist() == [samples[s] for s in ("train", "val", "test")]
    again = WindowedDataset.from_bytes(*dataset.to_bytes())
    np.testing.assert_array_equal(again.X, dataset.X)
    np.testing.assert_array_equal(again.Y, dataset.Y)
    scalers = ScalerSet.from_json(_local(details["scalers_uri"]).read_text())
    assert len(scalers.inputs) == 3 + n_time and len(scalers.outputs) == 1
    report = json.loads(_local(stage.report_uri).read_text())
    assert all(_local(u).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for u in report["violin_uris"].values())
    assert _counts(storage_env) == (1, 1)

    # A re-run through the CLI reuses the dataset: same object, one stage_outputs row, one datasets row.
    result = CliRunner().invoke(app, ["run", str(examples_dir / "tmy3_greensboro.yaml"), "--set", "training=null",
                                      "--json"])
    assert result.exit_code == 0, result.output
    rerun = json.loads(result.output.strip().splitlines()[-1])["stages"][-1]
    assert rerun["stage"] == "dataset" and rerun["reused"] is True
    assert rerun["sha256"] == stage.sha256 and rerun["details"]["samples"] == samples
    assert rerun["details"]["npz_uri"] == npz_uri
    assert _counts(storage_env) == (1, 1)


def test_missing_channel_fails_with_coded_error_and_leaves_nothing(examples_dir: Path, storage_env: Path) -> None:
    config = load_config(examples_dir / "tmy3_greensboro.yaml",
                         ["training=null", "dataset.windows.inputs_spec.pressure_hpa=null"])
    with pytest.raises(WindowError) as info:
        pipeline(config)
    assert info.value.code == "COLUMN_NOT_FOUND"
    assert "pressure_hpa" in info.value.message and "temperature" in info.value.message
    assert info.value.details["missing"] == ["pressure_hpa"]
    assert not [p for p in (storage_env / "tmy3-greensboro" / "dataset").rglob("*") if p.is_file()]
    assert _counts(storage_env) == (0, 0)


def test_failed_gate_rolls_back_every_object(examples_dir: Path, storage_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import tasks.dataset

    real = tasks.dataset._windows_parameters
    monkeypatch.setattr(tasks.dataset, "_windows_parameters", lambda o: {**real(o), "n_samples": 1})
    with pytest.raises(DataQualityError) as info:
        pipeline(load_config(examples_dir / "tmy3_greensboro.yaml", ["training=null"]))
    assert info.value.code == "GATE_FAILED"
    assert not [p for p in (storage_env / "tmy3-greensboro" / "dataset").rglob("*") if p.is_file()]
    assert _counts(storage_env) == (0, 0)
