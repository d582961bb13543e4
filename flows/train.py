"""Training flow: the data stages (reused when already done), then one training task per model spec,
fanned out through the configured task runner (``flows.fanout``)."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, pipeline_stages, resolve_config, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from zeitflow.config import PipelineConfig
from zeitflow.errors import ParameterError
from zeitflow.version import code_version


@flow(name="train", log_prints=False)
def train(config: PipelineConfig | None = None, config_file: str | None = None, overrides: list[str] | None = None,
          interaction: InteractionOptions | None = None) -> RunSummary:
    """Every data stage of the project, then the configured models on its dataset."""
    config = resolve_config(config, config_file, overrides)
    if config.training is None:
        raise ParameterError("MISSING_PARAMETER", f"project {config.project!r} has no training section",
                             details={"errors": [{"loc": "training", "code": "MISSING_PARAMETER",
                                                  "message": "add training.models"}]})
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    return run_recorded(pipeline_stages, config, ctx, "train", None, interaction)
