"""Live test of the Supabase REST sink against a real project (architecture §3).

Runs only when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set (also under CI: no local PostgREST
exists, so this skip is the documented exception). The project needs ``sql/supabase_schema.sql``
applied. The test publishes a synthetic run twice (an upsert must not duplicate rows), reads it
back with ``select`` and deletes it again.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from zeitflow.io.supabase import METRICS_TABLE, RUNS_TABLE, SupabaseSettings, publish

pytestmark = pytest.mark.skipif(
    not (os.environ.get("SUPABASE_URL", "").strip() and os.environ.get("SUPABASE_SERVICE_KEY", "").strip()),
    reason="SUPABASE_URL and SUPABASE_SERVICE_KEY are not set (live Supabase test, opt-in)",
)


@pytest.fixture
def client_and_run() -> Iterator[tuple[Any, str]]:
    """A Supabase client from the environment and a fresh run id whose rows are deleted afterwards."""
    from supabase import create_client

    settings = SupabaseSettings()
    assert settings.url is not None and settings.service_key is not None
    client = create_client(settings.url, settings.service_key.get_secret_value())
    run_id = f"pytest-{uuid.uuid4().hex}"
    try:
        yield client, run_id
    finally:
        client.table(METRICS_TABLE).delete().eq("run_id", run_id).execute()
        client.table(RUNS_TABLE).delete().eq("run_id", run_id).execute()


def test_publish_and_read_back(client_and_run: tuple[Any, str]) -> None:
    client, run_id = client_and_run
    summary = {"project": "zeitflow-pytest", "run_id": run_id, "flow": "train", "status": "completed",
               "started_at": "2026-01-02T03:04:05+00:00", "models": [{"name": "dense"}]}
    rows = [{"model": model, "channel": "temp", "n_avg": n_avg, "delta_minutes": 15.0 * n_avg, "n_pairs": 10,
             "mae": 0.5 * n_avg, "mse": 0.25, "rmse": 0.5, "mape": math.nan, "mape_excluded": 1, "smape": 3.0,
             "wape": 2.0, "nrmse": 0.1, "mase": 0.8, "r2": 0.9, "skill_mae": 0.2}
            for model in ("dense", "persistence") for n_avg in (1, 2)]
    assert publish(summary, rows) == 5
    assert publish(summary, rows) == 5  # idempotent upsert

    runs = client.table(RUNS_TABLE).select("*").eq("run_id", run_id).execute().data
    assert len(runs) == 1
    assert runs[0]["project"] == "zeitflow-pytest" and runs[0]["summary"]["models"] == [{"name": "dense"}]
    metrics = client.table(METRICS_TABLE).select("*").eq("run_id", run_id).order("model").order("n_avg").execute().data
    assert len(metrics) == 4
    assert [(m["model"], m["n_avg"]) for m in metrics] == [("dense", 1), ("dense", 2), ("persistence", 1),
                                                           ("persistence", 2)]
    assert metrics[1]["mae"] == pytest.approx(1.0) and metrics[0]["mape"] is None
