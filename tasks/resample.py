"""The resample task: one stage output onto a regular grid, through the ``resampled`` gate."""

from __future__ import annotations

from typing import Any

from prefect import task

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import (
    OutputSlot,
    StageOutput,
    cached_output,
    claim,
    naming_source,
    output_slot,
    persist_output,
    remove_slot,
    reuse_output,
    run_gated,
    slot_identity,
)
from zeitflow.io.artifacts import read_frame
from zeitflow.options.resample import ResampleOptions
from zeitflow.stages.resample import ResampleReport, gate_parameters, resample

STAGE = "resample"
SUITE = "resampled"


def _slot(source: str, input_output: StageOutput, options: ResampleOptions, ctx: RunContext) -> OutputSlot:
    return output_slot(ctx, STAGE, source, options.parameters_hash(), [["frame", input_output.ref.sha256]])


def _identity(source: str, input_output: StageOutput, options: ResampleOptions, ctx: RunContext) -> CacheIdentity:
    return slot_identity(ctx, _slot(source, input_output, options, ctx))


@task(name="resample", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def resample_output(source: str, input_output: StageOutput, options: ResampleOptions, ctx: RunContext) -> StageOutput:
    """Resample one stage output (read by reference, checksum verified) and persist the grid frame."""
    slot = claim(ctx, _slot(source, input_output, options, ctx))
    reused = reuse_output(ctx, slot)
    if reused is not None:
        return reused
    frame = read_frame(input_output.ref.uri, expected_sha256=input_output.ref.sha256,
                       storage_options=ctx.storage_options())
    progress = ProgressReporter(f"resample {source}")
    with naming_source(source):
        result = resample(frame, options, progress=progress)
    output = persist_output(ctx, slot, result.frame, result.report.model_dump(mode="json"))
    progress.finish()
    return output


resample_output.on_rollback(remove_slot)


def _gate_parameters(output: StageOutput) -> dict[str, Any]:
    return gate_parameters(ResampleReport.model_validate(output.report))


def run_resample(source: str, input_output: StageOutput, options: ResampleOptions, ctx: RunContext) -> StageOutput:
    """Resample through the ``resampled`` gate (one transaction; see ``run_gated``)."""
    return run_gated(lambda: cached_output(resample_output, source, input_output, options, ctx), SUITE,
                     _gate_parameters, ctx)
