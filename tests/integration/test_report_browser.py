"""The run report (stages.md §11.3) in a real browser: headless Chromium opens ``report.html`` from
disk, shows the metric tables and the embedded plots, logs no errors and renders a full-page screenshot."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from tests.browser import chromium_page
from zeitflow.evaluation.report import render_html

EVIL = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned=1">'


def _png(draw: Any, size: tuple[float, float]) -> bytes:
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    draw(figure.add_subplot())
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _report_kwargs() -> dict[str, Any]:
    rng = np.random.default_rng(0)
    lead = np.arange(15, 181, 15)

    def horizon(ax: Any) -> None:
        ax.plot(lead, 0.2 + lead / 400, marker="o", label="dense MAE")
        ax.plot(lead, 0.3 + lead / 300, marker="x", label="persistence MAE")
        ax.set_xlabel("lead (min)")
        ax.legend()

    def loss(ax: Any) -> None:
        ax.plot(np.exp(-np.arange(20) / 5), label="loss")
        ax.plot(np.exp(-np.arange(20) / 6) + 0.05, label="val_loss")
        ax.legend()

    def samples(ax: Any) -> None:
        ax.plot(rng.normal(size=48).cumsum(), marker="o")

    def violin(ax: Any) -> None:
        ax.violinplot([rng.normal(size=200)], showmedians=True)

    rows = []
    for model, scale in (("dense", 1.0), ("persistence", 1.6), ("seasonal_naive", 1.9)):
        for channel in ("temp", EVIL):
            for n_avg in (1, 2, 4):
                rows.append({"model": model, "channel": channel, "n_avg": n_avg, "delta_minutes": 15.0 * n_avg,
                             "n_pairs": 400 // n_avg, "mae": 0.4123 * scale, "mse": 0.25 * scale,
                             "rmse": 0.5 * scale, "mape": math.nan, "mape_excluded": 4, "smape": 11.2,
                             "wape": 9.1, "nrmse": 0.21, "mase": 0.83 * scale, "r2": 0.91 / scale,
                             "skill_mae": 1 - 1 / 1.6 * scale if model != "persistence" else math.nan})
    return {
        "run_id": "run-browser", "flow_run_id": "flow-1", "created_at": "2026-01-02T03:04:05Z",
        "code_version": "0.1.0", "config": {"project": "demo", "models": ["dense"]},
        "stage_counts": [{"stage": "load", "rows_in": 1000, "rows_out": 990,
                          "gate": {"suite": "load", "success": True, "evaluated": 5}}],
        "dataset_summary": {"samples": {"train": 600, "val": 100, "test": 100}},
        "violins": {"violin_input_temp": _png(violin, (3, 6))},
        "models": [
            {"name": "dense", "kind": "dense", "status": "completed", "overall_rows": rows,
             "plots": {"metric_vs_horizon_temp": _png(horizon, (8, 4)), "loss": _png(loss, (8, 4)),
                       "test_samples": _png(samples, (12, 6))},
             "reasons": [{"model": "dense", "channel": "temp", "n_avg": 1, "step": None, "metric": "mape",
                          "reason": "all targets are zero"}],
             "error": None},
            {"name": "lstm", "kind": "lstm", "status": "failed", "overall_rows": [], "plots": {}, "reasons": [],
             "error": {"error": "ModelError", "code": "TRAINING_FAILED", "message": "loss became NaN"}},
        ],
        "omitted_levels": [8],
    }


def test_report_renders_in_chromium(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text(render_html(**_report_kwargs()), encoding="utf-8")
    shot = tmp_path / "report.png"
    with chromium_page() as page:
        page.goto(path.as_uri(), wait_until="load")
        metrics = page.locator("#model-dense table.metrics")
        assert metrics.count() == 2
        metrics.first.wait_for(state="visible")
        assert metrics.first.locator("tbody tr").count() == 9
        plots = page.locator("img.plot")
        assert plots.count() == 4
        for index in range(plots.count()):
            image = plots.nth(index)
            image.scroll_into_view_if_needed()
            assert image.is_visible()
            assert image.evaluate("img => img.complete && img.naturalWidth > 0 && img.naturalHeight > 0")
        assert page.locator("#model-lstm .error").is_visible()
        assert page.evaluate("document.scripts.length") == 0
        assert page.evaluate("window.__pwned === undefined")
        page.screenshot(path=str(shot), full_page=True)
        assert page.errors == []
    assert shot.stat().st_size > 20_000
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
