"""The training fan-out: one training task per model spec, through the configured task runner
(stages.md §9.3, architecture §6), in a subflow so the runner can be chosen per run."""

from __future__ import annotations

from prefect import flow
from prefect.futures import wait
from prefect.task_runners import ThreadPoolTaskRunner

from tasks.context import RunContext
from tasks.stage import StageOutput
from tasks.train import ModelOutcome, train_model
from zeitflow.config import DatasetConfig, PipelineConfig, TrainingConfig
from zeitflow.errors import ModelError, ZeitflowError


def task_runner(training: TrainingConfig):  # noqa: ANN201 - a Prefect TaskRunner
    """Threads (``max_workers`` at a time), or prefect-dask's runner on the cluster at ``dask_address``."""
    if training.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=training.dask_address)
    return ThreadPoolTaskRunner(max_workers=training.max_workers)


def _failed(spec, exc: BaseException) -> ModelOutcome:  # noqa: ANN001
    timed_out = isinstance(exc, ModelError) and exc.code == "TRAINING_TIMEOUT"
    error = exc.to_dict() if isinstance(exc, ZeitflowError) else {"error": type(exc).__name__, "message": str(exc)}
    return ModelOutcome(name=spec.model_name, kind=spec.kind, status="timed_out" if timed_out else "failed",
                        error=error)


@flow(name="fit-models", log_prints=False)
def fit_models(dataset: StageOutput, source: StageOutput, dataset_config: DatasetConfig, training: TrainingConfig,
               ctx: RunContext, dataset_id: str | None = None) -> list[ModelOutcome]:
    """Submit one training task per model spec and wait for all of them. A model that fails or times out is
    reported as such; the others still finish and are stored."""
    futures = [train_model.submit(spec, dataset, source, dataset_config, training, ctx, dataset_id)
               for spec in training.models]
    wait(futures)
    outcomes = []
    for spec, future in zip(training.models, futures, strict=True):
        try:
            outcomes.append(future.result())
        except Exception as exc:  # noqa: BLE001 - one model's failure is reported, not fatal to the others
            outcomes.append(_failed(spec, exc))
    return outcomes


def train_stage(dataset: StageOutput, source: StageOutput, config: PipelineConfig,
                ctx: RunContext) -> list[ModelOutcome]:
    """The training fan-out of ``config.training`` on a gated dataset."""
    assert config.training is not None and config.dataset is not None
    store = ctx.metadata()
    try:
        dataset_id = store.find_dataset_id(dataset.report["npz_uri"])
    finally:
        store.dispose()
    runner = fit_models.with_options(task_runner=task_runner(config.training))
    return runner(dataset, source, config.dataset, config.training, ctx, dataset_id)
