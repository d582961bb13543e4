"""End-to-end flow: every stage that exists so far, for one project config."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, pipeline_stages, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="pipeline", log_prints=False)
def pipeline(config: PipelineConfig, interaction: InteractionOptions | None = None) -> RunSummary:
    """Run the pipeline for ``config``: load, resample, clean, align, cloud, dataset (each with its gate),
    then train the configured models."""
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_recorded(pipeline_stages, config, ctx, "pipeline", None, interaction)
