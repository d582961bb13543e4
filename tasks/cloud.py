"""The cloud task: regression of a target channel on a predictor channel of the aligned frame,
with its tolerance band; outside points optionally removed from the target, then optionally
cloud-interpolated onto a grid. The scatter plot is stored with the output and linked."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import (
    OutputSlot,
    StageOutput,
    artifact_key,
    cached_output,
    claim,
    claim_extra,
    output_slot,
    persist_output,
    remove_slot,
    reuse_output,
    run_gated,
    slot_identity,
)
from zeitflow.config import CloudConfig
from zeitflow.errors import CloudError
from zeitflow.io.artifacts import read_frame
from zeitflow.stages.align import AlignReport
from zeitflow.stages.align import gate_parameters as aligned_gate_parameters
from zeitflow.stages.cloud import fit_cloud, interpolate
from zeitflow.stages.cloud_plots import cloud_plot

STAGE = "cloud"
SUITE = "aligned"
OUTPUT = "cloud"


def _plot_uri(uri: str) -> str:
    return uri.removesuffix(".parquet") + ".png"


def _slot(input_output: StageOutput, spec: CloudConfig, ctx: RunContext) -> OutputSlot:
    return output_slot(ctx, STAGE, OUTPUT, spec.parameters_hash(), [["frame", input_output.ref.sha256]])


def _identity(input_output: StageOutput, spec: CloudConfig, ctx: RunContext) -> CacheIdentity:
    slot = _slot(input_output, spec, ctx)
    return slot_identity(ctx, slot, _plot_uri(slot.uri))


@task(name="cloud", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def cloud_output(input_output: StageOutput, spec: CloudConfig, ctx: RunContext) -> StageOutput:
    """Fit the cloud on the aligned frame and persist the (filtered, interpolated) frame and plot."""
    slot = claim(ctx, _slot(input_output, spec, ctx))
    plot_uri = _plot_uri(slot.uri)
    claim_extra(plot_uri)
    reused = reuse_output(ctx, slot)
    if reused is not None:
        return reused
    frame = read_frame(input_output.ref.uri, expected_sha256=input_output.ref.sha256,
                       storage_options=ctx.storage_options())
    for role, column in (("predictor", spec.predictor), ("target", spec.target)):
        if column not in frame.columns:
            raise CloudError(
                "COLUMN_NOT_FOUND", f"cloud {role} {column!r} is not a channel of the aligned frame "
                f"(channels: {list(frame.columns)})", details={"column": column, "role": role},
            )
    progress = ProgressReporter("cloud")
    fit = fit_cloud(frame[spec.predictor], frame[spec.target], spec.fit, progress=progress)
    out = frame.copy()
    if fit.filtered_target is not None:
        out[spec.target] = fit.filtered_target
    interpolated = interpolate(out, spec.interpolate, progress=progress) if spec.interpolate else None
    if interpolated is not None:
        out = interpolated.frame
    ctx.artifacts().put_bytes(plot_uri, cloud_plot(fit))
    report: dict[str, Any] = {
        "stage": STAGE, "rows_in": len(frame), "rows_out": len(out), "columns_out": list(out.columns),
        "predictor": spec.predictor, "target": spec.target, "plot_uri": plot_uri,
        "fit": fit.report.model_dump(mode="json"),
        "interpolate": interpolated.report.model_dump(mode="json") if interpolated else None,
    }
    output = persist_output(ctx, slot, out, report)
    progress.finish()
    return output


cloud_output.on_rollback(remove_slot)


def _gate_parameters(output: StageOutput, aligned: StageOutput) -> dict[str, Any]:
    """The cloud output keeps the aligned grid unless it was interpolated onto another one."""
    interp = output.report.get("interpolate")
    if interp is not None:
        return {"channels": list(output.ref.columns), "grid_start": interp["grid_start"],
                "grid_end": interp["grid_end"], "grid_points": interp["grid_points"]}
    return {**aligned_gate_parameters(AlignReport.model_validate(aligned.report)),
            "channels": list(output.ref.columns)}


def _suite(spec: CloudConfig) -> str:
    """``aligned`` (regular grid) unless interpolation keeps off-grid rows, then ``raw_loaded``."""
    interp = spec.interpolate
    if interp is None or (interp.grid_only and interp.step_minutes is not None):
        return SUITE
    return "raw_loaded"


def _raw_parameters(output: StageOutput) -> dict[str, Any]:
    return {"channels": list(output.ref.columns), "value_min": None, "value_max": None}


def run_cloud(aligned: StageOutput, spec: CloudConfig, ctx: RunContext) -> StageOutput:
    """Cloud regression through its gate: ``aligned`` while the output is on a regular grid."""
    suite = _suite(spec)
    parameters = (lambda o: _gate_parameters(o, aligned)) if suite == SUITE else _raw_parameters
    output = run_gated(lambda: cached_output(cloud_output, aligned, spec, ctx), suite, parameters, ctx)
    create_link_artifact(output.report["plot_uri"], link_text=f"cloud {spec.target} vs {spec.predictor}",
                         key=artifact_key("cloud", "plot"), description=output.report["fit"]["equation"])
    return output
