"""The align task: the last output of every source onto one common grid, one column per channel,
through the ``aligned`` gate."""

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
    output_slot,
    persist_output,
    remove_slot,
    reuse_output,
    run_gated,
    slot_identity,
)
from zeitflow.io.artifacts import read_frame
from zeitflow.options.align import AlignOptions
from zeitflow.stages.align import AlignReport, align, gate_parameters

STAGE = "align"
SUITE = "aligned"
OUTPUT = "aligned"


def _slot(inputs: dict[str, StageOutput], options: AlignOptions, ctx: RunContext) -> OutputSlot:
    return output_slot(ctx, STAGE, OUTPUT, options.parameters_hash(),
                       [[f"frames:{name}", output.ref.sha256] for name, output in inputs.items()])


def _identity(inputs: dict[str, StageOutput], options: AlignOptions, ctx: RunContext) -> CacheIdentity:
    return slot_identity(ctx, _slot(inputs, options, ctx))


@task(name="align", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def align_outputs(inputs: dict[str, StageOutput], options: AlignOptions, ctx: RunContext) -> StageOutput:
    """Read every source's frame by reference (checksums verified), align them, persist the result."""
    slot = claim(ctx, _slot(inputs, options, ctx))
    reused = reuse_output(ctx, slot)
    if reused is not None:
        return reused
    frames = {name: read_frame(o.ref.uri, expected_sha256=o.ref.sha256, storage_options=ctx.storage_options())
              for name, o in inputs.items()}
    progress = ProgressReporter("align")
    result = align(frames, options, progress=progress)
    output = persist_output(ctx, slot, result.frame, result.report.model_dump(mode="json"))
    progress.finish()
    return output


align_outputs.on_rollback(remove_slot)


def _gate_parameters(output: StageOutput) -> dict[str, Any]:
    return gate_parameters(AlignReport.model_validate(output.report))


def run_align(inputs: dict[str, StageOutput], options: AlignOptions, ctx: RunContext) -> StageOutput:
    """Align through the ``aligned`` gate (one transaction; see ``run_gated``)."""
    return run_gated(lambda: cached_output(align_outputs, inputs, options, ctx), SUITE, _gate_parameters, ctx)
