"""Forecast flow: apply the newest stored model of a project to its newest processed data.

The data stages run first (each reused when its inputs are unchanged), so the input window is built from the
newest frame the project's sources give; the forecast is written in original units as Parquet and the
canonical CSV through the ``predictions`` gate."""

from __future__ import annotations

import uuid

from prefect import flow

from flows.compose import (
    InteractionOptions,
    Produced,
    data_stages,
    default_partition,
    resolve_config,
    run_recorded,
)
from flows.progress import RunProgress, data_stage_count
from flows.summary import RunSummary
from tasks.context import RunContext
from tasks.forecast import find_model, run_forecast
from zeitflow.config import PipelineConfig
from zeitflow.errors import ParameterError
from zeitflow.version import code_version


@flow(name="forecast", log_prints=False)
def forecast(config: PipelineConfig | None = None, config_file: str | None = None,
             overrides: list[str] | None = None, model: str | None = None, partition: str | None = None,
             interaction: InteractionOptions | None = None) -> RunSummary:
    """Forecast with the newest model (or the newest model named ``model``) of the project. With a partition
    (default: the hour of the scheduled start time, none for an ad hoc run) only data before the partition's
    end is used, and the forecast is stored in that partition's folder."""
    config = resolve_config(config, config_file, overrides)
    if config.dataset is None:
        raise ParameterError("MISSING_PARAMETER", f"project {config.project!r} has no dataset section: the "
                             "forecast needs its windows", details={"errors": [
                                 {"loc": "dataset", "code": "MISSING_PARAMETER", "message": "add a dataset"}]})
    window = default_partition(partition, "hour")
    ctx = RunContext.for_config(config, str(uuid.uuid4()), code_version(), partition=window)
    dataset = config.dataset

    def stages(cfg: PipelineConfig, run: RunContext, options: InteractionOptions, progress: RunProgress) -> Produced:
        record = find_model(run, model)
        everything = run.model_copy(update={"partition": None})  # the input window needs the whole history
        outputs = data_stages(cfg.model_copy(update={"dataset": None, "training": None}), everything, options,
                              progress)
        return Produced(outputs=[*outputs, run_forecast(outputs[-1], record, dataset, run)])

    return run_recorded(stages, config, ctx, "forecast", window, interaction,
                        stage_count=data_stage_count(config, with_dataset=False) + 1, training=False)
