"""Ingest flow: load every source of a project for one partition (the scheduled unit)."""

from __future__ import annotations

import uuid

from prefect import flow
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from flows.summary import RunSummary, StageSummary
from tasks.clean import run_clean
from tasks.context import RunContext
from tasks.load import run_load
from tasks.resample import run_resample
from tasks.runs import close_run, open_run
from tasks.stage import StageOutput
from zeitflow.config import PipelineConfig, SourceConfig
from zeitflow.errors import ZeitflowError
from zeitflow.io.metadata import mask_url
from zeitflow.version import code_version


def default_partition(partition: str | None) -> str | None:
    """The partition given, else the run's scheduled start date; never ``now()`` at deploy time."""
    if partition:
        return partition
    scheduled = flow_run.scheduled_start_time
    return scheduled.date().isoformat() if scheduled else None


class InteractionOptions(BaseModel):
    """How long a paused run waits for a threshold, and how often it checks (stages.md §3.9)."""

    threshold_timeout_minutes: int = Field(60, ge=1, le=10_080)
    poll_seconds: int = Field(10, ge=1, le=300)


def run_source(source: SourceConfig, ctx: RunContext, interaction: InteractionOptions) -> list[StageOutput]:
    """load -> resample -> clean for one source, each stage through its gate."""
    outputs = [run_load(source, ctx)]
    if source.resample is not None:
        outputs.append(run_resample(source.name, outputs[-1], source.resample, ctx))
    if source.clean is not None:
        outputs.append(run_clean(source.name, outputs[-1], source.clean, ctx,
                                 timeout_minutes=interaction.threshold_timeout_minutes,
                                 poll_seconds=interaction.poll_seconds))
    return outputs


def run_stages(config: PipelineConfig, ctx: RunContext, flow_name: str, partition: str | None,
               interaction: InteractionOptions | None = None) -> RunSummary:
    """Open the run, run the stages, close the run with its final status (shared by flows)."""
    open_run(config, ctx, flow_name, partition)
    stages: list[StageSummary] = []
    try:
        for source in config.sources:
            stages.extend(StageSummary.of(o) for o in run_source(source, ctx, interaction or InteractionOptions()))
    except ZeitflowError as exc:
        close_run(ctx, "failed", exc.code, exc.message[:2000])
        raise
    except BaseException as exc:
        close_run(ctx, "failed", type(exc).__name__, str(exc)[:2000])
        raise
    close_run(ctx, "completed")
    return RunSummary(
        project=config.project, run_id=ctx.run_id, flow=flow_name, partition=partition, status="completed",
        storage_root=ctx.storage_root, metadata_url=mask_url(ctx.metadata_url), stages=stages,
    )


@flow(name="ingest", log_prints=False)
def ingest(config: PipelineConfig, partition: str | None = None,
           interaction: InteractionOptions | None = None) -> RunSummary:
    """Load, resample and clean the project's sources for one partition; outputs are
    content-addressed, so a re-run of the same partition rewrites identical bytes and upserts the
    same rows. A threshold left open in the config pauses the run for input (UI or REST API)."""
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_stages(config, ctx, "ingest", default_partition(partition), interaction)
