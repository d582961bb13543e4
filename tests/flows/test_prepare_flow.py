"""align + cloud end to end on the bundled Payerne files: two steps (1 and 10 minutes) onto one
15-minute grid, then GHI against temperature with its equation, R² and outside count."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from flows.prepare import prepare
from zeitflow.cli import app
from zeitflow.config import load_config
from zeitflow.io.artifacts import read_frame


def test_align_and_cloud_on_payerne(examples_dir: Path, storage_env: Path) -> None:
    summary = prepare(load_config(examples_dir / "payerne_align_cloud.yaml"))
    stages = {(s.stage, s.output): s for s in summary.stages}
    aligned = stages[("align", "aligned")]
    assert aligned.columns == ["GHI [W/m2]", "rel. Feuchte [%]", "Temperatur [°C]"]
    assert aligned.rows_out == 2880 and aligned.details["step_minutes"] == 15.0
    frame = read_frame(aligned.uri, expected_sha256=aligned.sha256)
    assert frame.index[0] == pd.Timestamp("2016-06-01 00:00", tz="UTC")
    assert (frame.index.to_series().diff().dropna() == pd.Timedelta(minutes=15)).all()
    # Windows are [g - 7.5 min, g + 7.5 min]: the 10-minute file's 00:00 sample (9.43) alone at 00:00,
    # its 00:10 and 00:20 samples (9.9, 10.17) at 00:15.
    assert abs(frame["Temperatur [°C]"].iloc[0] - 9.43) < 1e-9
    assert abs(frame["Temperatur [°C]"].iloc[1] - (9.9 + 10.17) / 2) < 1e-9
    cloud = stages[("cloud", "cloud")]
    assert cloud.details["equation"].startswith("y = ")
    assert 0.0 < cloud.details["r2"] < 1.0
    assert cloud.details["n_inside"] + cloud.details["n_outside"] <= cloud.details["n_matched"]
    assert Path(cloud.details["plot_uri"].removeprefix("file://")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_json_summary_shows_the_cloud(examples_dir: Path, storage_env: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(examples_dir / "payerne_align_cloud.yaml"), "--json"])
    assert result.exit_code == 0, result.output
    cloud = json.loads(result.output.strip().splitlines()[-1])["stages"][-1]
    assert cloud["stage"] == "cloud"
    assert {"equation", "r2", "n_outside"} <= set(cloud["details"])
