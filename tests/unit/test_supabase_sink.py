"""The optional Supabase REST sink (architecture §3): pure request building, dispatch through a
client object, settings from the environment, and the service key kept out of every message."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from zeitflow.errors import ParameterError, StorageError
from zeitflow.io import supabase as sink
from zeitflow.io.supabase import SupabaseSettings, build_requests, enabled, publish

KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoic2VydmljZV9yb2xlIn0.c2lnbmF0dXJl"
URL = "https://abcdefgh.supabase.co"


def summary(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "project": "demo", "run_id": "run-42", "flow": "train", "status": "completed",
        "started_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), "finished_at": "2026-01-02T03:14:05+00:00",
        "metadata_url": "postgresql://zeitflow:pw123@db:5432/zeitflow",
        "models": [{"name": "dense", "status": "completed", "val_mae": {"temp": np.float64(0.5)}}],
    }
    data.update(changes)
    return data


def metric_rows() -> list[dict[str, Any]]:
    rows = []
    for model in ("dense", "persistence"):
        for n_avg in (1, 2):
            rows.append({
                "model": model, "channel": "temp", "n_avg": np.int64(n_avg), "delta_minutes": 15.0 * n_avg,
                "n_pairs": 100, "mae": 0.5, "mse": 0.3, "rmse": math.sqrt(0.3), "mape": math.nan,
                "mape_excluded": 2.0, "smape": 10.0, "wape": 8.0, "nrmse": np.float64(0.2), "mase": float("inf"),
                "r2": 0.9, "skill_mae": math.nan if model == "persistence" else 0.375, "extra": "dropped",
            })
    return rows


class FakeClient:
    """Records ``table(name).upsert(rows, on_conflict=...).execute()`` calls; can fail on a table."""

    def __init__(self, fail_on: str | None = None, message: str = "boom") -> None:
        self.calls: list[tuple[str, list[dict[str, Any]], str]] = []
        self.fail_on = fail_on
        self.message = message

    def table(self, name: str) -> FakeClient._Table:
        return FakeClient._Table(self, name)

    class _Table:
        def __init__(self, client: FakeClient, name: str) -> None:
            self.client, self.name = client, name
            self.pending: tuple[list[dict[str, Any]], str] | None = None

        def upsert(self, rows: list[dict[str, Any]], *, on_conflict: str = "") -> FakeClient._Table:
            self.pending = (rows, on_conflict)
            return self

        def execute(self) -> object:
            if self.name == self.client.fail_on:
                raise RuntimeError(self.client.message)
            assert self.pending is not None
            self.client.calls.append((self.name, *self.pending))
            return object()


def test_build_requests_tables_keys_and_rows() -> None:
    requests = build_requests(summary(), metric_rows())
    assert [r.table for r in requests] == ["zeitflow_runs", "zeitflow_metrics"]
    runs, metrics = requests
    assert runs.on_conflict == ("run_id",) and runs.on_conflict_param == "run_id"
    assert metrics.on_conflict_param == "run_id,model,channel,n_avg"
    (run,) = runs.rows
    assert run["run_id"] == "run-42" and run["project"] == "demo" and run["flow"] == "train"
    assert run["status"] == "completed"
    assert run["started_at"] == "2026-01-02T03:04:05+00:00" and run["finished_at"] == "2026-01-02T03:14:05+00:00"
    assert run["summary"]["models"][0]["val_mae"] == {"temp": 0.5}
    assert run["summary"]["metadata_url"] == "postgresql://zeitflow:***@db:5432/zeitflow"
    assert len(metrics.rows) == 4
    first = metrics.rows[0]
    assert set(first) == {"run_id", "model", "channel", "n_avg", *sink.METRIC_COLUMNS}
    assert first["run_id"] == "run-42" and first["n_avg"] == 1 and type(first["n_avg"]) is int
    assert first["mape"] is None and first["mase"] is None  # NaN and inf -> NULL
    assert first["mape_excluded"] == 2 and type(first["mape_excluded"]) is int
    assert first["skill_mae"] == 0.375 and metrics.rows[2]["skill_mae"] is None
    assert type(first["nrmse"]) is float
    for request in requests:
        json.dumps(request.rows, allow_nan=False)  # strictly JSON-serialisable


def test_build_requests_without_metrics_and_in_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [r.table for r in build_requests(summary(), [])] == ["zeitflow_runs"]
    monkeypatch.setattr(sink, "BATCH_ROWS", 3)
    requests = build_requests(summary(), metric_rows())
    assert [len(r.rows) for r in requests] == [1, 3, 1]


def test_build_requests_rejects_bad_input() -> None:
    with pytest.raises(ParameterError) as info:
        build_requests(summary(run_id=None), [])
    assert info.value.code == "MISSING_PARAMETER"
    rows = metric_rows()
    del rows[1]["channel"]
    with pytest.raises(ParameterError):
        build_requests(summary(), rows)
    with pytest.raises(ValueError, match="repeats"):
        build_requests(summary(), metric_rows() + metric_rows()[:1])


def test_publish_dispatches_every_request() -> None:
    client = FakeClient()
    assert publish(summary(), metric_rows(), client=client) == 5
    assert [(name, len(rows), conflict) for name, rows, conflict in client.calls] == [
        ("zeitflow_runs", 1, "run_id"), ("zeitflow_metrics", 4, "run_id,model,channel,n_avg")]


def test_publish_errors_are_write_failures_without_the_key() -> None:
    settings = SupabaseSettings(url=URL, service_key=KEY)
    client = FakeClient(fail_on="zeitflow_metrics", message=f"401 for apikey={KEY} Authorization: Bearer {KEY}")
    with pytest.raises(StorageError) as info:
        publish(summary(), metric_rows(), settings=settings, client=client)
    exc = info.value
    assert exc.code == "WRITE_FAILED" and exc.transient
    assert exc.details["table"] == "zeitflow_metrics"
    assert KEY not in str(exc) and KEY not in repr(exc) and KEY not in json.dumps(exc.to_dict())
    assert exc.__cause__ is None and exc.__suppress_context__
    assert [name for name, _, _ in client.calls] == ["zeitflow_runs"]


def test_publish_with_a_bad_url_fails_without_the_key() -> None:
    settings = SupabaseSettings(url="not a url", service_key=KEY)
    with pytest.raises(StorageError) as info:
        publish(summary(), [], settings=settings)
    assert info.value.code == "WRITE_FAILED" and KEY not in str(info.value)


def test_publish_needs_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_KEY", raising=False)
    with pytest.raises(ParameterError) as info:
        publish(summary(), [])
    assert info.value.code == "MISSING_PARAMETER"


def test_enabled_and_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_KEY", raising=False)
    assert not enabled()
    monkeypatch.setenv("SUPABASE_URL", URL)
    assert not enabled()
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", "  ")
    assert not enabled()
    monkeypatch.setenv("SUPABASE_SERVICE_KEY", KEY)
    assert enabled()
    settings = SupabaseSettings()
    assert settings.url == URL and settings.service_key is not None
    assert settings.service_key.get_secret_value() == KEY
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.model_dump())):
        assert KEY not in text
