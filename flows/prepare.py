"""Prepare flow: the ingest stages (reused when already done), then align and cloud."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, all_stages, resolve_config, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="prepare", log_prints=False)
def prepare(config: PipelineConfig | None = None, config_file: str | None = None, overrides: list[str] | None = None,
            interaction: InteractionOptions | None = None) -> RunSummary:
    """Several channels on one grid and the cloud regression between two of them."""
    project = resolve_config(config, config_file, overrides)
    ctx = RunContext.for_config(project, str(uuid.uuid4()), code_version())
    return run_recorded(all_stages, project, ctx, "prepare", None, interaction)
