"""Prepare flow: the ingest stages (reused when already done), then align and cloud."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, all_stages, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.version import code_version


@flow(name="prepare", log_prints=False)
def prepare(config: PipelineConfig, interaction: InteractionOptions | None = None) -> RunSummary:
    """Several channels on one grid and the cloud regression between two of them."""
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_recorded(all_stages, config, ctx, "prepare", None, interaction)
