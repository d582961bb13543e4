"""The evaluation task (stages.md §10-§11): metric tables of every trained model and the baselines on the
test split, the result plots, one self-contained ``report.html``, and every result file of §11.1 under
``{root}/{project}/runs/{run_id}/`` with its ``manifest.json``; ``metric_tables`` rows per model.

Everything is computed from stored objects (the dataset, the frame it was built from, each model's stored
test predictions and history), so the task is a pure function of references and can be retried."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import flow_run
from pydantic import BaseModel

from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.stage import StageOutput, artifact_key, retry_transient
from tasks.train import HISTORY, PREDICTIONS, RESULT, ModelOutcome
from zeitflow.config import PipelineConfig
from zeitflow.errors import EvaluationError
from zeitflow.evaluation import EvaluationTables, evaluate
from zeitflow.evaluation.plots import loss_plot, metric_vs_horizon_plot, plot_name, test_samples_plot
from zeitflow.evaluation.report import render_html, write_run_results
from zeitflow.io.artifacts import read_frame
from zeitflow.io.metadata import mask_url
from zeitflow.models.base import library_versions
from zeitflow.models.baselines import missing_baselines
from zeitflow.options.models import KERAS_KINDS
from zeitflow.reports import ProgressEvent
from zeitflow.stages.scaling import ScalerSet, split
from zeitflow.stages.windows import WindowedDataset

STAGE = "evaluate"
TABLES = ("overall", "per_step", "reasons")


class EvaluationOutcome(BaseModel):
    """Where the run's results are and the headline metrics (first averaging level) per model and channel."""

    run_folder: str
    report_uri: str
    manifest_uri: str
    metrics: dict[str, dict[str, dict[str, Any]]]
    reference_baseline: str
    baselines: dict[str, str | None]
    omitted_levels: list[int]


def _check_names(config: PipelineConfig, models: list[str], windowed: WindowedDataset) -> None:
    """ReportOptions may only name channels and models of this run (§11.4: COLUMN_NOT_FOUND)."""
    report = config.training.report
    known = {"input_channels": [f for f in windowed.input_features if f not in windowed.calendar_features],
             "output_channels": list(windowed.output_features), "forecast_models": models}
    for field, allowed in known.items():
        wrong = [n for n in getattr(report, field) or [] if n not in allowed]
        if wrong:
            raise EvaluationError("COLUMN_NOT_FOUND", f"report.{field} names {wrong[0]!r}, which is not part of "
                                  f"this run (known: {allowed})", details={"field": field, "missing": wrong,
                                                                            "available": allowed})


def _baselines(config: PipelineConfig, windowed: WindowedDataset, test: Any, frame: pd.DataFrame,
               taken: set[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The evaluation's own baselines (§10.2) that no configured model already provides, or their reasons."""
    options = config.training.evaluation
    return missing_baselines(
        options.baselines, taken, X_test=test.X, n_out=test.Y.shape[1], reference_times=test.reference_times,
        input_features=windowed.input_features, output_features=windowed.output_features,
        output_offsets_minutes={k: [float(v) for v in vs] for k, vs in windowed.output_offsets_minutes.items()},
        output_series={c: frame[c] for c in windowed.output_features}, season_hours=options.season_hours)


def _predictions_long(tables_models: dict[str, np.ndarray], truth: np.ndarray, windowed: WindowedDataset,
                      references: pd.DatetimeIndex) -> pd.DataFrame:
    """``predictions/test.parquet`` (§11.1): one row per model, reference, channel and step."""
    n, n_out, _ = truth.shape
    frames = []
    for model, pred in tables_models.items():
        for j, channel in enumerate(windowed.output_features):
            leads = np.asarray(windowed.output_offsets_minutes[channel], dtype=np.float64)
            frames.append(pd.DataFrame({
                "utc_ref": np.repeat(references.as_unit("ns"), n_out), "model": model, "channel": channel,
                "step": np.tile(np.arange(n_out, dtype=np.int64), n), "lead_minutes": np.tile(leads, n),
                "y_true": truth[:, :, j].reshape(-1), "y_pred": pred[:, :, j].reshape(-1),
            }))
    return pd.concat(frames, ignore_index=True)


def _parquet(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False, default=str).encode()


def _masked_config(config: PipelineConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    if data.get("storage", {}).get("metadata_url"):
        data["storage"]["metadata_url"] = mask_url(data["storage"]["metadata_url"])
    return data


def _stage_counts(outputs: list[StageOutput]) -> list[dict[str, Any]]:
    return [{"stage": o.stage, "output": o.output_name, "rows_in": o.report.get("rows_in"),
             "rows_out": o.report.get("rows_out", o.ref.rows), "gate": (o.gate or {}).get("suite"),
             "gate_success": (o.gate or {}).get("success"), "reused": o.reused} for o in outputs]


def _model_section(outcome: ModelOutcome, tables: EvaluationTables | None, plots: dict[str, bytes],
                   baselines: list[str]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    reasons: list[dict[str, Any]] = []
    if tables is not None and outcome.status == "completed":
        keep = tables.overall["model"].isin([outcome.name, *baselines])
        rows = tables.overall[keep].replace({np.nan: None}).to_dict("records")
        reasons = tables.reasons[tables.reasons["model"] == outcome.name].replace({np.nan: None}).to_dict("records")
    return {"name": outcome.name, "kind": outcome.kind, "status": outcome.status, "overall_rows": rows,
            "plots": plots, "reasons": reasons, "error": outcome.error}


@task(name="evaluate", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def evaluate_run(outputs: list[StageOutput], models: list[ModelOutcome], config: PipelineConfig,
                 ctx: RunContext) -> EvaluationOutcome:
    """Metric tables, plots, report and result files of one training run."""
    logger = get_run_logger()
    progress = ProgressReporter("evaluation and report")
    dataset, source = outputs[-1], outputs[-2]
    store = ctx.artifacts()
    report = dataset.report
    windowed = WindowedDataset.from_bytes(store.get_bytes(report["npz_uri"], expected_sha256=report["npz_sha256"]),
                                          store.get_bytes(report["sidecar_uri"]))
    scalers_json = store.get_bytes(report["scalers_uri"])
    scalers = ScalerSet.from_json(scalers_json)
    parts = split(windowed, config.dataset.split)
    test = parts.test
    if len(test) == 0:
        raise EvaluationError("NO_TEST_SAMPLES", f"dataset {config.dataset.name!r} has no test samples; raise "
                              "dataset.split.test_fraction", details={"samples": report["samples"]})
    frame = read_frame(source.ref.uri, expected_sha256=source.ref.sha256, storage_options=ctx.storage_options())
    done = [m for m in models if m.status == "completed"]
    _check_names(config, [m.name for m in models], windowed)

    predictions: dict[str, np.ndarray] = {}
    histories: dict[str, dict[str, Any]] = {}
    model_files: dict[str, dict[str, bytes]] = {}
    for m in done:
        result = json.loads(store.get_bytes(f"{m.uri}/{RESULT}"))
        files = {name: store.get_bytes(f"{m.uri}/{name}") for name in result["files"]}
        model_files[m.name] = {k: v for k, v in files.items() if k not in (HISTORY, PREDICTIONS)}
        predictions[m.name] = np.load(io.BytesIO(files[PREDICTIONS]))["test_pred"]
        histories[m.name] = json.loads(files[HISTORY])
    extra, unavailable = _baselines(config, windowed, test, frame, set(predictions))
    predictions.update(extra)
    progress(ProgressEvent(STAGE, "phase", 1, 4, "predictions collected"))

    options = config.training.evaluation
    tables = evaluate(test.Y, predictions, windowed, {c: frame[c] for c in windowed.output_features}, options,
                      train_reference_times=parts.train.reference_times, unavailable=unavailable)
    progress(ProgressEvent(STAGE, "phase", 2, 4, "metric tables"))

    report_options = config.training.report
    baselines = [b for b in options.baselines if b in extra]
    plots: dict[str, bytes] = {}
    sections: list[dict[str, Any]] = []
    chosen = report_options.forecast_models
    for m in models:
        own: dict[str, bytes] = {}
        if m.status == "completed" and (chosen is None or m.name in chosen):
            own["test_samples"] = test_samples_plot(
                m.name, reference_times=test.reference_times, X=test.X, Y_true=test.Y, Y_pred=predictions[m.name],
                input_features=windowed.input_features, output_features=windowed.output_features,
                input_offsets_minutes=windowed.input_offsets_minutes,
                output_offsets_minutes=windowed.output_offsets_minutes, options=report_options, scalers=scalers)
            if m.kind in KERAS_KINDS:
                own["loss"] = loss_plot(m.name, histories[m.name])
            for channel in windowed.output_features:
                own[f"metric_vs_horizon_{channel}"] = metric_vs_horizon_plot(
                    tables.per_step[tables.per_step["model"].isin([m.name, *baselines])], channel)
        for key, png in own.items():
            if key == "test_samples":
                plots[f"plots/{plot_name('test_samples', m.name)}"] = png
            elif key == "loss":
                plots[f"plots/{plot_name('loss', m.name)}"] = png
        sections.append(_model_section(m, tables, own, baselines))
    for channel in windowed.output_features:
        plots[f"plots/{plot_name('metric_vs_horizon', channel)}"] = metric_vs_horizon_plot(tables.per_step, channel)
    violins = {key: store.get_bytes(uri) for key, uri in report.get("violin_uris", {}).items()}
    for key, png in violins.items():
        role, _, name = key.partition(":")
        plots[f"plots/{plot_name(f'violin_{role}', name)}"] = png
    stage_plots = {f"{o.stage} {o.output_name}": store.get_bytes(o.report["plot_uri"])
                   for o in outputs if o.report.get("plot_uri") and o.report["plot_uri"].endswith(".png")}
    for key, png in stage_plots.items():
        plots[f"plots/{plot_name('stage', key)}"] = png
    progress(ProgressEvent(STAGE, "phase", 3, 4, "plots"))

    config_json = {
        "config": _masked_config(config), "code_version": ctx.code_version, "libraries": library_versions(),
        "seeds": {m.model_name: m.seed for m in config.training.models} | {"split": config.dataset.split.seed,
                                                                             "report": report_options.seed},
        "stages": [{"stage": o.stage, "output": o.output_name, "uri": o.ref.uri, "sha256": o.ref.sha256,
                    "parameters_hash": o.ref.parameters_hash} for o in outputs],
    }
    dataset_summary = {"name": config.dataset.name, "samples": report["samples"],
                       "input_features": list(windowed.input_features),
                       "output_features": list(windowed.output_features),
                       "reference_start": dataset.first_utc, "reference_end": dataset.last_utc,
                       "window": report.get("windows", {})}
    files: dict[str, bytes] = {
        "config.json": _json(config_json), "dataset/summary.json": _json(dataset_summary),
        "scalers.json": scalers_json, **plots,
        **{f"metrics/{name}": data for name, data in tables.to_parquet_bytes().items()},
        "metrics/metrics.json": _json(tables.to_json()),
        "predictions/test.parquet": _parquet(_predictions_long(predictions, test.Y, windowed, test.reference_times)),
        **{f"history/{name}.json": _json(h) for name, h in histories.items()},
        **{f"models/{name}/{file}": data for name, fs in model_files.items() for file, data in fs.items()},
    }
    if report_options.keep_dataset:
        files["dataset/dataset.npz"] = store.get_bytes(report["npz_uri"])
        files["dataset/dataset.json"] = store.get_bytes(report["sidecar_uri"])
    files["report.html"] = render_html(
        run_id=ctx.run_id, flow_run_id=str(flow_run.id) if flow_run.id else None,
        created_at=pd.Timestamp.now(tz="UTC").isoformat(), code_version=ctx.code_version,
        config=config_json["config"], stage_counts=_stage_counts(outputs), dataset_summary=dataset_summary,
        violins=violins, models=sections, omitted_levels=tables.omitted_levels, stage_plots=stage_plots,
    ).encode("utf-8")
    root = store.uri(ctx.project)
    manifest = write_run_results(root, ctx.run_id, files=files, storage_options=ctx.storage_options())
    folder = f"{root}/runs/{ctx.run_id}"
    sha = {entry.path: entry.sha256 for entry in manifest.files}

    summary = tables.summary()
    metadata = ctx.metadata()
    try:
        for m in done:
            for table in TABLES:
                metadata.record_metric_table(
                    m.model_id, table, f"{folder}/metrics/{table}.parquet", sha[f"metrics/{table}.parquet"],
                    json_uri=f"{folder}/metrics/metrics.json", summary=summary.get(m.name) if table == "overall"
                    else None)
    finally:
        metadata.dispose()

    for name in [*(m.name for m in done), *baselines]:
        rows = tables.overall[tables.overall["model"] == name].replace({np.nan: None}).to_dict("records")
        create_table_artifact(rows, key=artifact_key("metrics", name), description=f"overall metrics of {name}")
    report_uri = f"{folder}/report.html"
    create_link_artifact(report_uri, link_text="report.html", key=artifact_key("report", config.project),
                         description=f"HTML report of run {ctx.run_id}")
    lines = [f"### evaluation of run {ctx.run_id}", "", f"- report: {report_uri}",
             *[f"- {model} `{ch}`: MAE {v['mae']}, RMSE {v['rmse']}, skill {v['skill_mae']}"
               for model, chans in summary.items() for ch, v in chans.items()]]
    create_markdown_artifact("\n".join(lines), key=artifact_key("evaluation", config.project),
                             description="headline metrics at the first averaging level")
    progress.finish()
    logger.info("report written: %s (%s files)", report_uri, len(manifest.files))
    return EvaluationOutcome(run_folder=folder, report_uri=report_uri, manifest_uri=f"{folder}/manifest.json",
                             metrics=summary, reference_baseline=options.reference_baseline,
                             baselines={b: unavailable.get(b) for b in options.baselines},
                             omitted_levels=tables.omitted_levels)
