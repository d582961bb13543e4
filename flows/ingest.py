"""Ingest flow: load, resample and clean every source of a project for one partition (the
scheduled and backfilled unit)."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, default_partition, ingest_stages, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="ingest", log_prints=False)
def ingest(config: PipelineConfig, partition: str | None = None,
           interaction: InteractionOptions | None = None) -> RunSummary:
    """Outputs are content-addressed, so a re-run of the same partition rewrites identical bytes and
    upserts the same rows. A threshold left open in the config pauses the run for input (UI or API)."""
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_recorded(ingest_stages, config, ctx, "ingest", default_partition(partition), interaction)
