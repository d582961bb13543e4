"""Forecast flow: apply the newest stored model of a project to its newest processed data.

The data stages run first (each reused when its inputs are unchanged), so the input window is built from the
newest frame the project's sources give; the forecast is written in original units as Parquet and the
canonical CSV through the ``predictions`` gate."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import InteractionOptions, Produced, data_stages, default_partition, run_recorded
from flows.summary import RunSummary
from tasks.context import RunContext
from tasks.forecast import find_model, run_forecast
from zeitflow.config import PipelineConfig
from zeitflow.errors import ParameterError
from zeitflow.version import code_version


@flow(name="forecast", log_prints=False)
def forecast(config: PipelineConfig, model: str | None = None, partition: str | None = None,
             interaction: InteractionOptions | None = None) -> RunSummary:
    """Forecast with the newest model (or the newest model named ``model``) of ``config.project``."""
    if config.dataset is None:
        raise ParameterError("MISSING_PARAMETER", f"project {config.project!r} has no dataset section: the "
                             "forecast needs its windows", details={"errors": [
                                 {"loc": "dataset", "code": "MISSING_PARAMETER", "message": "add a dataset"}]})
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version())
    dataset = config.dataset

    def stages(cfg: PipelineConfig, run: RunContext, options: InteractionOptions) -> Produced:
        record = find_model(run, model)
        outputs = data_stages(cfg.model_copy(update={"dataset": None, "training": None}), run, options)
        return Produced(outputs=[*outputs, run_forecast(outputs[-1], record, dataset, run)])

    return run_recorded(stages, config, ctx, "forecast", default_partition(partition), interaction)
