"""End-to-end flow: every stage that exists so far, for one project config."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, pipeline_stages, resolve_config, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="pipeline", log_prints=False)
def pipeline(config: PipelineConfig | None = None, config_file: str | None = None, overrides: list[str] | None = None,
             interaction: InteractionOptions | None = None) -> RunSummary:
    """Run the pipeline for ``config``: load, resample, clean, align, cloud, dataset (each with its gate),
    then train the configured models."""
    project = resolve_config(config, config_file, overrides)
    ctx = RunContext.for_config(project, str(uuid.uuid4()), code_version())
    return run_recorded(pipeline_stages, project, ctx, "pipeline", None, interaction)
