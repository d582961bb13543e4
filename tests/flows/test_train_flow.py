"""Training end to end on the TMY3 example: models fanned out in parallel, validation MAE in original units,
the model store (files, ``models`` rows, load-and-predict equal to the trained model), reuse on a re-run, a
hard timeout that stops one model while the others finish, and the Dask task runner."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest

from flows.pipeline import pipeline
from flows.train import train
from zeitflow import models
from zeitflow.config import load_config
from zeitflow.errors import ParameterError
from zeitflow.io.metadata import MetadataStore
from zeitflow.stages.scaling import ScalerSet, split
from zeitflow.stages.windows import WindowedDataset

SMALL = ('training={"models": [{"kind": "linear"}, {"kind": "persistence"}, '
         '{"kind": "dense", "layers": 1, "units": 16, "epochs": 3}]}')


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _models(storage: Path) -> MetadataStore:
    return MetadataStore(f"sqlite:///{storage / 'zeitflow.db'}")


def test_tmy3_trains_four_models_in_parallel(examples_dir: Path, storage_env: Path) -> None:
    """The example's linear, dense, lstm and persistence: every one stored, dense or lstm beats persistence."""
    config = load_config(examples_dir / "tmy3_greensboro.yaml")
    summary = pipeline(config)
    by_name = {m.name: m for m in summary.models}
    assert set(by_name) == {"linear", "dense", "lstm", "persistence"}
    assert all(m.status == "completed" and not m.reused for m in by_name.values())
    for m in by_name.values():
        assert set(m.val_mae) == {"temperature"} and 0 < m.val_mae["temperature"] < 20
    best_learned = min(by_name["dense"].val_mae["temperature"], by_name["lstm"].val_mae["temperature"])
    assert best_learned < by_name["persistence"].val_mae["temperature"]
    assert 1 <= by_name["dense"].epochs_run <= 30 and by_name["dense"].best_epoch <= by_name["dense"].epochs_run

    store = _models(storage_env)
    try:
        assert store.count_models(run_id=summary.run_id) == 4
        latest = store.latest_model(config.project, "dense")
        assert latest is not None and latest.uri == by_name["dense"].uri and latest.kind == "dense"
    finally:
        store.dispose()

    # Load every stored model and predict the validation split: equal to what training predicted.
    dataset_stage = next(s for s in summary.stages if s.stage == "dataset")
    details = dataset_stage.details
    dataset = WindowedDataset.load(_local(details["npz_uri"]))
    parts = split(dataset, config.dataset.split)
    scalers = ScalerSet.from_json(_local(details["scalers_uri"]).read_text())
    for m in by_name.values():
        folder = _local(m.uri)
        result = json.loads((folder / "result.json").read_text())
        assert result["model_sha256"] and (folder / result["model_file"]).is_file()
        stored = np.load(io.BytesIO((folder / "predictions.npz").read_bytes()))["val_pred"]
        model = models.load(folder)
        if m.kind == "persistence":
            again = model.predict(parts.val.X)
        else:
            again = scalers.inverse_transform_Y(model.predict(scalers.transform_X(parts.val.X)))
        np.testing.assert_allclose(again, stored, rtol=0, atol=1e-6 * max(1.0, float(np.abs(stored).max())))
        history = json.loads((folder / "history.json").read_text())
        assert history["epochs_run"] == m.epochs_run

    # A re-run reuses every model (same dataset, specs and code version) and records rows for the new run.
    again = pipeline(config)
    assert all(m.reused and m.status == "completed" for m in again.models)
    assert {m.uri for m in again.models} == {m.uri for m in summary.models}


def test_timeout_stops_one_model_while_the_others_finish(examples_dir: Path, storage_env: Path) -> None:
    config = load_config(examples_dir / "tmy3_greensboro.yaml", [
        'training={"models": [{"kind": "linear"}, {"kind": "persistence"}, '
        '{"kind": "lstm", "name": "slow", "units": 64, "epochs": 2000, "patience": 100}], '
        '"model_timeouts_minutes": {"slow": 0.25}}'])
    summary = train(config)
    by_name = {m.name: m for m in summary.models}
    assert by_name["slow"].status == "timed_out"
    assert by_name["slow"].error["code"] == "TRAINING_TIMEOUT"
    assert by_name["slow"].error["details"]["timeout_seconds"] == 15.0
    assert by_name["linear"].status == by_name["persistence"].status == "completed"
    assert not list(storage_env.rglob("slow/*")), "a timed-out model leaves no files"
    store = _models(storage_env)
    try:
        assert store.count_models(run_id=summary.run_id) == 2
        assert store.count_models(run_id=summary.run_id, name="slow") == 0
    finally:
        store.dispose()


def test_dask_task_runner_trains_two_models(examples_dir: Path, storage_env: Path) -> None:
    import distributed
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        config = load_config(examples_dir / "tmy3_greensboro.yaml", [
            'training={"models": [{"kind": "linear"}, {"kind": "dense", "layers": 1, "units": 8, "epochs": 2}], '
            f'"task_runner": "dask", "dask_address": "{cluster.scheduler_address}"}}'])
        with distributed.get_task_stream(client) as stream:
            summary = train(config)
        assert [m.status for m in summary.models] == ["completed", "completed"]
        ran = [item["key"] for item in stream.data]
        assert sum(str(key).startswith("train_model-") for key in ran) == 2, ran


def test_train_flow_needs_a_training_section(examples_dir: Path, storage_env: Path) -> None:
    with pytest.raises(ParameterError, match="no training section"):
        train(load_config(examples_dir / "tmy3_greensboro.yaml", ["training=null"]))


def test_small_models_through_the_pipeline_cli(examples_dir: Path, storage_env: Path) -> None:
    """``zeitflow run --json`` lists every model's validation MAE in original units."""
    from typer.testing import CliRunner

    from zeitflow.cli import app

    result = CliRunner().invoke(app, ["run", str(examples_dir / "tmy3_greensboro.yaml"), "--set", SMALL, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output.strip().splitlines()[-1])
    maes = {m["name"]: m["val_mae"]["temperature"] for m in summary["models"]}
    assert set(maes) == {"linear", "persistence", "dense"} and all(v > 0 for v in maes.values())
    assert "validation MAE temperature=" in result.output


def test_forecast_applies_the_newest_model_to_the_newest_data(examples_dir: Path, storage_env: Path) -> None:
    """Train small models, then forecast with the newest dense (applied in its own process) and with persistence:
    24 hourly temperatures after the last complete input window, in original units, Parquet and CSV."""
    from flows.forecast import forecast
    from zeitflow.io.artifacts import read_frame
    from zeitflow.io.canonical_csv import read_csv

    config = load_config(examples_dir / "tmy3_greensboro.yaml", [SMALL])
    pipeline(config)
    summary = forecast(config, model="dense")
    stage = summary.stages[-1]
    assert stage.stage == "forecast" and stage.gate["success"]
    details = stage.details
    assert details["model"] == "dense" and details["output_features"] == ["temperature"]
    frame = read_frame(stage.uri, expected_sha256=stage.sha256)
    assert len(frame) == 24 and list(frame.columns) == ["temperature"]
    reference = frame.index[0] - np.timedelta64(1, "h")
    assert details["reference_time"].startswith(reference.strftime("%Y-%m-%dT%H:%M"))
    assert frame["temperature"].between(-30, 45).all()
    csv, warnings = read_csv(_local(details["csv_uri"]))
    assert not warnings
    np.testing.assert_array_equal(csv.to_numpy(), frame.to_numpy())

    persisted = forecast(config, model="persistence").stages[-1]
    last = read_frame(persisted.uri, expected_sha256=persisted.sha256)["temperature"]
    assert last.nunique() == 1  # the last input temperature, repeated over the horizon


def test_forecast_without_a_model_fails_with_no_model(examples_dir: Path, storage_env: Path) -> None:
    from flows.forecast import forecast
    from zeitflow.errors import ModelError

    with pytest.raises(ModelError, match="NO_MODEL"):
        forecast(load_config(examples_dir / "tmy3_greensboro.yaml", ["training=null"]))
