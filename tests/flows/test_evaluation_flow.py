"""Evaluation end to end on the TMY3 example (stages.md §10-§11): metric tables of the models and baselines,
every §11.1 result file listed in the manifest with its checksum, ``metric_tables`` rows, the headline metrics
in the JSON summary, a short horizon that keeps the levels that exist, and the real report in headless
Chromium (no console errors, metric table and plots visible, a screenshot)."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from flows.pipeline import pipeline
from tests.browser import chromium_page
from zeitflow.cli import app
from zeitflow.config import load_config
from zeitflow.io.metadata import MetadataStore

MODELS = ('training.models=[{"kind": "linear"}, {"kind": "persistence"}, '
          '{"kind": "dense", "layers": 1, "units": 16, "epochs": 2}]')


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_report_files_tables_rows_and_browser(examples_dir: Path, storage_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(examples_dir / "tmy3_greensboro.yaml"), "--set", MODELS, "--json"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    summary = json.loads(lines[-1])
    report_line = [line for line in lines if line.startswith("report: ")]
    assert report_line and report_line[-1].endswith("report.html")

    # Headline metrics per model and output channel at the first averaging level.
    for model in summary["models"]:
        metrics = model["metrics"]["temperature"]
        assert metrics["n_avg"] == 1 and metrics["n_pairs"] > 0
        for key in ("mae", "rmse", "wape", "mase", "skill_mae"):
            assert isinstance(metrics[key], float), (model["name"], key)
    by_name = {m["name"]: m["metrics"]["temperature"] for m in summary["models"]}
    assert by_name["persistence"]["skill_mae"] == 0.0
    assert by_name["linear"]["skill_mae"] > 0  # linear beats persistence on the 24-hour temperature

    # Every file of §11.1 is in the manifest with its size and sha256.
    evaluation = summary["evaluation"]
    folder = _local(evaluation["run_folder"])
    manifest = json.loads((folder / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    for path in ("config.json", "dataset/summary.json", "dataset/dataset.npz", "scalers.json",
                 "metrics/overall.parquet", "metrics/per_step.parquet", "metrics/reasons.parquet",
                 "metrics/metrics.json", "predictions/test.parquet", "report.html", "history/dense.json",
                 "models/dense/model.keras", "models/dense/model.json", "models/linear/model.joblib",
                 "plots/loss_dense.png", "plots/test_samples_dense.png", "plots/metric_vs_horizon_temperature.png"):
        assert path in listed, path
        data = (folder / path).read_bytes()
        assert listed[path]["size_bytes"] == len(data) and listed[path]["sha256"] == hashlib.sha256(data).hexdigest()
    overall = pd.read_parquet(folder / "metrics" / "overall.parquet")
    assert set(overall["model"]) == {"linear", "persistence", "dense", "seasonal_naive"}
    assert sorted(overall["n_avg"].unique()) == list(range(1, 13))
    predictions = pd.read_parquet(folder / "predictions" / "test.parquet")
    assert set(predictions.columns) == {"utc_ref", "model", "channel", "step", "lead_minutes", "y_true", "y_pred"}
    assert len(predictions) == 4 * 871 * 24
    assert "secret" not in (folder / "config.json").read_text().lower()

    store = MetadataStore(f"sqlite:///{storage_env / 'zeitflow.db'}")
    try:
        dense = store.latest_model("tmy3-greensboro", "dense")
        rows = store.metric_tables_of(dense.id)
        assert [r["table"] for r in rows] == ["overall", "per_step", "reasons"]
        assert rows[0]["summary"]["temperature"]["mae"] == by_name["dense"]["mae"]
        assert rows[0]["sha256"] == listed["metrics/overall.parquet"]["sha256"]
    finally:
        store.dispose()

    with chromium_page() as page:
        page.goto((folder / "report.html").as_uri())
        table = page.locator("table.metrics").first
        table.wait_for(state="visible")
        assert table.is_visible() and "mae" in table.inner_text().lower()
        plots = page.locator("img.plot")
        assert plots.count() >= 5
        first = plots.first
        first.scroll_into_view_if_needed()
        assert first.is_visible() and page.evaluate("img => img.naturalWidth", first.element_handle()) > 0
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 50_000
        assert page.errors == []


def test_short_horizon_keeps_the_levels_that_exist(examples_dir: Path, storage_env: Path) -> None:
    """n_out = 5: levels 1-5 are computed, 6-12 are listed as omitted (the predecessor lost every table)."""
    config = load_config(examples_dir / "tmy3_greensboro.yaml", [
        "dataset.windows.n_out=5", "dataset.windows.outputs_spec.temperature.horizon_end_hours=5",
        'training.models=[{"kind": "linear"}]'])
    summary = pipeline(config)
    evaluation = summary.evaluation
    assert evaluation.omitted_levels == [6, 7, 8, 9, 10, 11, 12]
    folder = _local(evaluation.run_folder)
    overall = pd.read_parquet(io.BytesIO((folder / "metrics" / "overall.parquet").read_bytes()))
    assert sorted(overall["n_avg"].unique()) == [1, 2, 3, 4, 5]
    per_step = pd.read_parquet(folder / "metrics" / "per_step.parquet")
    linear = per_step[(per_step["model"] == "linear") & (per_step["n_avg"] == 2)]
    assert list(linear["step"]) == [0, 1] and list(linear["lead_start_minutes"]) == [60.0, 180.0]
