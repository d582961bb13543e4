"""The resample task: one stage output onto a regular grid, through the ``resampled`` gate."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.stage import (
    StageOutput,
    claim_slot,
    naming_source,
    persist_output,
    remove_slot,
    retry_transient,
    reuse_output,
    run_gated,
)
from zeitflow.io.artifacts import read_frame
from zeitflow.options.resample import ResampleOptions
from zeitflow.stages.resample import ResampleReport, gate_parameters, resample

STAGE = "resample"
SUITE = "resampled"


@task(name="resample", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def resample_output(source: str, input_output: StageOutput, options: ResampleOptions, ctx: RunContext) -> StageOutput:
    """Resample one stage output (read by reference, checksum verified) and persist the grid frame."""
    slot = claim_slot(ctx, STAGE, source, options.parameters_hash(), [["frame", input_output.ref.sha256]])
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
    return run_gated(lambda: resample_output(source, input_output, options, ctx), SUITE, _gate_parameters, ctx)
