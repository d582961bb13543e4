"""The machine-readable run summary that flows return and ``zeitflow run --json`` prints."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.evaluate import EvaluationOutcome
from tasks.load import dropped_rows
from tasks.stage import StageOutput
from tasks.train import ModelOutcome


def stage_details(stage: str, report: dict[str, Any]) -> dict[str, Any]:
    """The few stage-specific figures a summary shows: the grid of a resample, flagged and filled
    counts per step and channel of a clean, samples per split and drops by reason of a dataset."""
    if stage == "resample":
        keys = ("grid_start", "grid_end", "grid_points", "step_minutes")
        return {k: report[k] for k in keys if k in report}
    if stage == "clean":
        return {
            "rule_set": report.get("rule_set"),
            "flagged_by_step": report.get("flagged_by_step", {}),
            "values_removed_total": report.get("values_removed_total", 0),
            "values_filled_total": report.get("values_filled_total", 0),
            "channels": {
                name: {"flagged": ch.get("flagged", {}), "filled": ch.get("filled", {}),
                       "nan_before": ch.get("nan_before"), "nan_after": ch.get("nan_after")}
                for name, ch in report.get("channels", {}).items()
            },
        }
    if stage == "cloud":
        fit = report.get("fit", {})
        return {
            "predictor": report.get("predictor"), "target": report.get("target"),
            "equation": fit.get("equation"), "r2": fit.get("r2"), "n_matched": fit.get("n_matched"),
            "n_inside": fit.get("n_inside"), "n_outside": fit.get("n_outside"),
            "filtered_values": fit.get("filtered_values"), "plot_uri": report.get("plot_uri"),
        }
    if stage == "dataset":
        return {
            "name": report.get("name"), "samples": report.get("samples", {}),
            "references_total": report.get("references_total"), "samples_dropped": report.get("samples_dropped"),
            "dropped_by_reason": report.get("dropped_by_reason", {}), "n_in": report.get("n_in"),
            "n_out": report.get("n_out"), "x_shape": report.get("x_shape"), "y_shape": report.get("y_shape"),
            "features": {"inputs": len(report.get("input_channels", [])),
                         "calendar": len(report.get("calendar_features", [])),
                         "outputs": len(report.get("output_features", []))},
            "npz_uri": report.get("npz_uri"), "scalers_uri": report.get("scalers_uri"),
        }
    if stage == "forecast":
        keys = ("model", "kind", "model_uri", "reference_time", "output_features", "csv_uri")
        return {k: report[k] for k in keys if k in report}
    if stage == "align":
        keys = ("grid_start", "grid_end", "grid_points", "step_minutes")
        return {k: report[k] for k in keys if k in report}
    return {}


class StageSummary(BaseModel):
    """Rows in and out, dropped rows by reason and the output of one stage output."""

    stage: str
    output: str
    rows_in: int
    rows_out: int
    dropped: dict[str, int]
    columns: list[str]
    first_utc: str | None
    last_utc: str | None
    uri: str
    sha256: str
    report_uri: str
    reused: bool
    gate: dict[str, Any] | None
    details: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, output: StageOutput) -> StageSummary:
        report = output.report
        return cls(
            stage=output.stage, output=output.output_name,
            rows_in=int(report.get("rows_in", 0)), rows_out=int(report.get("rows_out", output.ref.rows)),
            dropped=dropped_rows(report) if output.stage == "load" else {}, columns=list(output.ref.columns),
            first_utc=output.first_utc, last_utc=output.last_utc, uri=output.ref.uri,
            sha256=output.ref.sha256, report_uri=output.report_uri, reused=output.reused, gate=output.gate,
            details=stage_details(output.stage, report),
        )


class RunSummary(BaseModel):
    """What a flow run produced."""

    project: str
    run_id: str
    flow: str
    partition: str | None = None
    status: str
    storage_root: str
    metadata_url: str
    stages: list[StageSummary] = Field(default_factory=list)
    models: list[ModelOutcome] = Field(default_factory=list)
    evaluation: EvaluationOutcome | None = None
