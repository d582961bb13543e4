"""Ingest flow: load, resample and clean every source of a project for one partition (the
scheduled and backfilled unit)."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, default_partition, ingest_stages, resolve_config, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="ingest", log_prints=False)
def ingest(config: PipelineConfig | None = None, config_file: str | None = None, overrides: list[str] | None = None,
           partition: str | None = None, interaction: InteractionOptions | None = None) -> RunSummary:
    """Load, resample and clean the rows of one partition (a UTC day ``YYYY-MM-DD``, an hour or a window;
    default: the day of the scheduled start time, none for an ad hoc run). Outputs are content-addressed in a
    ``partition-<key>/`` folder, so a re-run of a partition rewrites its own identical bytes and upserts the
    same rows. A threshold left open in the config pauses the run for input (UI or API)."""
    project = resolve_config(config, config_file, overrides)
    window = default_partition(partition)
    ctx = RunContext.for_config(project, str(uuid.uuid4()), code_version(), partition=window)
    return run_recorded(ingest_stages, project, ctx, "ingest", window, interaction)
