"""The ``zeitflow`` command. ``run CONFIG`` validates the project file, runs the pipeline flow
(on the ephemeral Prefect API unless PREFECT_API_URL is set) and prints a summary; with
``--json`` the last printed line is the JSON summary. Exit codes: 0 success, 2 usage or input
errors (bad config, bad data), 1 internal, storage or quality-gate failures, or a model that failed or
timed out (the other models are still stored and listed)."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from zeitflow.errors import InputError, ParameterError, ZeitflowError, exit_code_for

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

# No telemetry leaves the machine unless the user opts in explicitly.
_OFFLINE_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",  # Keras fits run in child processes; their C++ INFO/ERROR noise is not ours
}


def _offline_environment() -> None:
    for key, value in _OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    for name in ("prefect.flow_runs", "prefect.task_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoTracebackForInputErrors) for f in logger.filters):
            logger.addFilter(_NoTracebackForInputErrors())


class _NoTracebackForInputErrors(logging.Filter):
    """Prefect logs a run's exception with its traceback; for bad input or parameters (exit code 2) the coded
    message says everything, so the traceback is dropped from the log line (the message stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, InputError | ParameterError):
            record.exc_info = None
            record.exc_text = None
        return True


def _fail(exc: BaseException, as_json: bool) -> None:
    code = exit_code_for(exc)
    if isinstance(exc, ZeitflowError):
        payload: dict[str, Any] = {"status": "failed", **exc.to_dict()}
        typer.echo(f"error: {exc.code}: {exc.message}", err=True)
        if exc.hint:
            typer.echo(f"hint: {exc.hint}", err=True)
        for item in exc.details.get("errors", [])[1:]:
            typer.echo(f"  {item['loc']}: {item['code']}: {item['message']}", err=True)
    else:
        payload = {"status": "failed", "error": type(exc).__name__, "code": "INTERNAL_ERROR", "message": str(exc)}
        typer.echo(f"internal error: {type(exc).__name__}: {exc}", err=True)
    if as_json:
        typer.echo(json.dumps(payload, default=str, ensure_ascii=False))
    raise typer.Exit(code)


def _details_line(stage: str, details: dict[str, Any]) -> str:
    """One readable line of the stage-specific figures (the JSON summary has them all)."""
    if stage == "clean":
        flagged = ", ".join(f"{k}={v}" for k, v in details.get("flagged_by_step", {}).items()) or "none"
        return (f"flagged by step: {flagged}; removed {details.get('values_removed_total', 0)}, "
                f"filled {details.get('values_filled_total', 0)}")
    if stage == "cloud":
        r2 = details.get("r2")
        r2_text = f"{r2:.4f}" if isinstance(r2, float) else "n/a"
        return (f"{details.get('target')} on {details.get('predictor')}: {details.get('equation')}, "
                f"R2={r2_text}, inside {details.get('n_inside')}, outside {details.get('n_outside')}")
    if stage == "dataset":
        samples = details.get("samples", {})
        dropped = {k: v for k, v in details.get("dropped_by_reason", {}).items() if v}
        return (f"samples train/val/test {samples.get('train')}/{samples.get('val')}/{samples.get('test')}, "
                f"X {details.get('x_shape')}, Y {details.get('y_shape')}, dropped {dropped or 'none'}")
    if stage in {"resample", "align"}:
        return f"grid {details.get('grid_start')} .. {details.get('grid_end')}, step {details.get('step_minutes')} min"
    return ""


def _number(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(f"project {summary['project']}  run {summary['run_id']}  status {summary['status']}")
    for stage in summary["stages"]:
        dropped = ", ".join(f"{k}={v}" for k, v in stage["dropped"].items()) or "none"
        reused = " (reused)" if stage["reused"] else ""
        typer.echo(
            f"  {stage['stage']:<8} {stage['output']:<24} rows {stage['rows_in']} -> {stage['rows_out']}"
            f"  dropped: {dropped}  {stage['first_utc']} .. {stage['last_utc']}{reused}"
        )
        columns = stage["columns"]
        more = f" (+{len(columns) - 8} more)" if len(columns) > 8 else ""
        typer.echo(f"           channels: {', '.join(columns[:8])}{more}")
        line = _details_line(stage["stage"], stage.get("details") or {})
        if line:
            typer.echo(f"           {line}")
        typer.echo(f"           -> {stage['uri']}")
    reference = (summary.get("evaluation") or {}).get("reference_baseline", "persistence")
    for model in summary.get("models", []):
        if model["status"] != "completed":
            error = model.get("error") or {}
            typer.echo(f"  model    {model['name']:<24} {model['status'].upper()}: {error.get('code', '')} "
                       f"{error.get('message', '')}")
            continue
        mae = ", ".join(f"{ch}={v:.4g}" if v is not None else f"{ch}=n/a" for ch, v in model["val_mae"].items())
        reused = " (reused)" if model["reused"] else f" in {model['fit_seconds']:.1f} s"
        typer.echo(f"  model    {model['name']:<24} {model['kind']}: validation MAE {mae}; "
                   f"epochs {model['epochs_run']}, best {model['best_epoch']}{reused}")
        typer.echo(f"           -> {model['uri']}")
        for channel, m in (model.get("metrics") or {}).items():
            figures = ", ".join(f"{k.upper()} {_number(m.get(k))}" for k in ("mae", "rmse", "wape", "mase"))
            typer.echo(f"           test {channel} (n_avg {m.get('n_avg')}): {figures}, "
                       f"skill vs {reference} {_number(m.get('skill_mae'))}")
    typer.echo(f"outputs under {summary['storage_root']}; metadata in {summary['metadata_url']}")
    evaluation = summary.get("evaluation")
    if evaluation:
        uri = evaluation["report_uri"]
        typer.echo(f"report: {uri.removeprefix('file://') if uri.startswith('file://') else uri}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="project YAML file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config key: a.b=c")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON summary as the last line")] = False,
) -> None:
    """Run every pipeline stage that exists on the project CONFIG."""
    _offline_environment()
    from zeitflow.config import load_config

    try:
        project = load_config(config, set_ or [])
    except ZeitflowError as exc:
        _fail(exc, as_json)
    from flows.pipeline import pipeline

    state = pipeline(project, return_state=True)
    try:
        summary = state.result(raise_on_failure=True)
    except BaseException as exc:  # the flow's own exception, re-raised by Prefect
        _fail(exc, as_json)
    data = summary.model_dump(mode="json")
    _print_summary(data)
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, sort_keys=True))
    if any(m["status"] != "completed" for m in data.get("models", [])):
        raise typer.Exit(1)  # the other models are stored; a failed or timed-out model is still a failure


@app.command()
def backfill(
    deployment: Annotated[str, typer.Argument(help="FLOW/DEPLOYMENT, e.g. ingest/ingest-daily")],
    start: Annotated[str, typer.Option("--start", help="first partition (YYYY-MM-DD, or YYYY-MM-DDTHH for hourly)")],
    end: Annotated[str, typer.Option("--end", help="last partition, included")],
    reprocess: Annotated[str, typer.Option("--reprocess", help="none | failed | all")] = "none",
    max_active: Annotated[int, typer.Option("--max-active", help="runs in flight at once (1-64)")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="list the partitions; submit nothing")] = False,
    reverse: Annotated[bool, typer.Option("--reverse", help="newest partition first")] = False,
    config_file: Annotated[str | None, typer.Option("--config-file", help="project YAML passed to every run")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override passed to every run: a.b=c")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON result as the last line")] = False,
) -> None:
    """Submit one run of DEPLOYMENT per partition from --start to --end through the Prefect API
    (PREFECT_API_URL), skipping partitions the metadata store already has; exit 1 if any partition failed."""
    _offline_environment()
    from flows.backfill import backfill as backfill_flow
    from flows.backfill import run_backfill

    options = {"reprocess": reprocess, "max_active": max_active, "reverse": reverse, "config_file": config_file,
               "overrides": set_ or None}
    try:
        if dry_run:  # plans only: no flow run, nothing submitted or recorded
            result = run_backfill(deployment, start, end, dry_run=True, **options)
        else:
            result = backfill_flow(deployment, start, end, return_state=True, **options).result(
                raise_on_failure=True)
    except BaseException as exc:  # a coded error, or the flow's own exception re-raised by Prefect
        _fail(exc, as_json)
    verb = "would submit" if result.dry_run else "submitted"
    typer.echo(f"backfill {result.backfill_id or '(dry run)'} of {deployment} ({result.unit} partitions of "
               f"project {result.project}): {len(result.partitions)} partitions, {verb} {len(result.submitted)}, "
               f"skipped {len(result.skipped)}")
    for partition in result.partitions:
        if partition in result.skipped:
            typer.echo(f"  {partition}  skipped: {result.skipped[partition]}")
        else:
            state_text = "planned" if result.dry_run else result.states.get(partition, "?")
            typer.echo(f"  {partition}  {state_text}  {result.flow_runs.get(partition, '')}")
    if as_json:
        typer.echo(json.dumps(result.model_dump(mode="json"), ensure_ascii=False, sort_keys=True))
    if result.failed:
        raise typer.Exit(1)


@app.command()
def serve(
    limit: Annotated[int | None, typer.Option("--limit", help="at most this many runs at once")] = None,
) -> None:
    """Serve the deployments of prefect.yaml (schedules and parameters from that file) from this process,
    for local use without a work pool; runs execute in the repository root. Stop with Ctrl-C."""
    _offline_environment()
    from deployments.serve import serve_all

    serve_all(limit=limit)


@app.command("check-config")
def check_config(
    config: Annotated[Path, typer.Argument(help="project YAML file")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a config key: a.b=c")] = None,
) -> None:
    """Validate CONFIG (with overrides) without running anything; print the resolved config."""
    from zeitflow.config import load_config

    try:
        project = load_config(config, set_ or [])
    except ZeitflowError as exc:
        _fail(exc, False)
    typer.echo(json.dumps(project.model_dump(mode="json"), indent=2, ensure_ascii=False))


def main() -> None:  # pragma: no cover - console entry point
    """Entry point that keeps tracebacks of unexpected errors out of normal output."""
    sys.exit(app())
