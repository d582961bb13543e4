"""Ingest flow: load every source of a project for one partition (the scheduled unit)."""

from __future__ import annotations

import uuid

from prefect import flow
from prefect.runtime import flow_run

from flows.summary import RunSummary, StageSummary
from tasks.context import RunContext
from tasks.load import run_load
from tasks.runs import close_run, open_run
from zeitflow.config import PipelineConfig
from zeitflow.errors import ZeitflowError
from zeitflow.io.metadata import mask_url
from zeitflow.version import code_version


def default_partition(partition: str | None) -> str | None:
    """The partition given, else the run's scheduled start date; never ``now()`` at deploy time."""
    if partition:
        return partition
    scheduled = flow_run.scheduled_start_time
    return scheduled.date().isoformat() if scheduled else None


def run_stages(config: PipelineConfig, ctx: RunContext, flow_name: str, partition: str | None) -> RunSummary:
    """Open the run, run the stages, close the run with its final status (shared by flows)."""
    open_run(config, ctx, flow_name, partition)
    stages: list[StageSummary] = []
    try:
        for source in config.sources:
            stages.append(StageSummary.of(run_load(source, ctx)))
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
def ingest(config: PipelineConfig, partition: str | None = None) -> RunSummary:
    """Load the project's sources for one partition; outputs are content-addressed, so a re-run
    of the same partition rewrites identical bytes and upserts the same rows."""
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_stages(config, ctx, "ingest", default_partition(partition))
