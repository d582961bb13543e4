"""Interactive thresholds: a clean with no STL threshold pauses the flow run, publishes the score
plot, receives the threshold through the Prefect API and completes; outputs stay consistent."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import StateType
from prefect.flow_runs import resume_flow_run

from flows.compose import InteractionOptions
from flows.ingest import ingest
from zeitflow.config import load_config, parse_config
from zeitflow.errors import CleanError
from zeitflow.io.artifacts import read_frame

STEP = pd.Timedelta(minutes=15)


def _write_series(path: Path) -> None:
    """Four days of a daily cycle on a 15-minute grid with one spike of +8 at a known instant."""
    index = pd.date_range("2024-05-01", periods=4 * 96, freq=STEP, tz="UTC")
    phase = 2 * np.pi * np.arange(index.size) / 96
    values = 15 + 5 * np.sin(phase) + 0.1 * np.cos(7 * phase)
    values[200] += 8.0
    lines = ["time;temp [°C]"] + [f"{t:%Y-%m-%d %H:%M:%S};{v:.4f}" for t, v in zip(index, values, strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _config(tmp_path: Path, threshold: float | None) -> dict:
    data = tmp_path / "series.csv"
    _write_series(data)
    stl = {"period_hours": 24} | ({"threshold": threshold} if threshold is not None else {})
    return {
        "project": "interactive",
        "sources": [{
            "name": "s", "path": str(data),
            "resample": {"step_minutes": 15, "method": "mean"},
            "clean": {"rule_set": "anomaly", "gap_max_minutes": 30, "stl": stl},
        }],
    }


def _paused_run_id(timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PAUSED]))))
            if runs:
                return str(runs[0].id)
            time.sleep(0.5)
    pytest.fail("the flow run never paused")


def test_flow_pauses_for_stl_threshold_and_resumes_through_the_api(tmp_path: Path, storage_env: Path) -> None:
    config = parse_config(_config(tmp_path, None))
    result: dict = {}

    def target() -> None:
        result["state"] = ingest(config,
                                 interaction=InteractionOptions(threshold_timeout_minutes=5, poll_seconds=1),
                                 return_state=True)

    worker = threading.Thread(target=target)
    worker.start()
    run_id = _paused_run_id()
    # The score plot and its summary are stored before the pause.
    assert list(storage_env.rglob("*-stl.png"))
    resume_flow_run(run_id, run_input={"threshold": 3.0, "skip": False})
    worker.join(timeout=180)
    assert not worker.is_alive()
    summary = result["state"].result()
    clean = summary.stages[-1]
    assert clean.stage == "clean"
    channel = clean.details["channels"]["temp [°C]"]
    assert channel["flagged"]["stl"] >= 1
    # Same answer given up front: the same bytes (resume equals a single call, §3.9).
    unattended = ingest(parse_config(_config(tmp_path, 3.0))).stages[-1]
    frame_interactive = read_frame(clean.uri, expected_sha256=clean.sha256)
    frame_unattended = read_frame(unattended.uri, expected_sha256=unattended.sha256)
    pd.testing.assert_frame_equal(frame_interactive, frame_unattended)
    spike = pd.Timestamp("2024-05-01", tz="UTC") + 200 * STEP
    assert frame_interactive.loc[spike, "temp [°C]"] < 15 + 5 + 1  # the +8 spike is gone (filled)


def test_unanswered_threshold_fails_the_run_with_threshold_timeout(tmp_path: Path, storage_env: Path) -> None:
    config = parse_config(_config(tmp_path, None))
    with pytest.raises(CleanError) as info:
        ingest(config, interaction=InteractionOptions(threshold_timeout_minutes=1, poll_seconds=5))
    assert info.value.code == "THRESHOLD_TIMEOUT"
    assert "temp [°C]" in info.value.message
    assert not list(storage_env.rglob("clean/*/*/*.parquet"))  # nothing written for the stage


def test_payerne_example_resamples_to_15_minutes_and_cleans(examples_dir: Path, storage_env: Path) -> None:
    summary = ingest(load_config(examples_dir / "payerne_15min_clean.yaml"))
    load, resampled, cleaned = summary.stages
    assert (load.rows_out, resampled.rows_in, resampled.rows_out, cleaned.rows_out) == (43200, 43200, 2880, 2880)
    assert resampled.details["grid_start"] == "2016-06-01T00:00:00Z"
    assert resampled.details["step_minutes"] == 15.0
    flagged = cleaned.details["channels"]["Temperatur [°C]"]["flagged"]
    assert set(flagged) >= {"constant", "value_min", "value_max", "sbad_a", "sbad_b", "stl"}
    assert cleaned.gate["success"] and resampled.gate["success"]
    frame = read_frame(cleaned.uri, expected_sha256=cleaned.sha256)
    assert (frame.index.to_series().diff().dropna() == STEP).all()
