"""Stage composition shared by the flows: which stages run, in which order, for a project."""

from __future__ import annotations

from collections.abc import Callable

from prefect.runtime import deployment, flow_run
from pydantic import BaseModel, Field

from flows.fanout import train_stage
from flows.progress import RunProgress, data_stage_count
from flows.summary import RunSummary, StageSummary
from tasks.align import run_align
from tasks.clean import run_clean
from tasks.cloud import run_cloud
from tasks.context import RunContext
from tasks.dataset import run_dataset
from tasks.evaluate import EvaluationOutcome, evaluate_run
from tasks.load import run_load
from tasks.publish import publish_supabase
from tasks.resample import run_resample
from tasks.runs import close_run, open_run
from tasks.stage import StageOutput
from tasks.train import ModelOutcome
from zeitflow.config import PipelineConfig, SourceConfig, load_config, parse_config
from zeitflow.errors import ParameterError, ZeitflowError
from zeitflow.io import supabase
from zeitflow.io.metadata import mask_url
from zeitflow.partitions import parse_partition, partition_of


class InteractionOptions(BaseModel):
    """How long a paused run waits for a threshold, and how often it checks (stages.md §3.9)."""

    threshold_timeout_minutes: int = Field(60, ge=1, le=10_080)
    poll_seconds: int = Field(10, ge=1, le=300)


def default_partition(partition: str | None, unit: str = "day") -> str | None:
    """The partition given, else the day (or hour) of the run's scheduled start time when the run was
    scheduled by a deployment; never ``now()`` at deploy time. An ad hoc run without one covers all data."""
    if partition:
        parse_partition(partition)
        return partition
    if deployment.id is None:
        return None
    scheduled = flow_run.scheduled_start_time
    return partition_of(scheduled, unit) if scheduled else None


def resolve_config(config: PipelineConfig | None, config_file: str | None,
                   overrides: list[str] | None) -> PipelineConfig:
    """The project of a flow run: ``config`` itself, or the YAML at ``config_file`` (relative paths from the
    working directory, i.e. the repository root for deployments), with ``overrides`` (``a.b=c``) applied."""
    if (config is None) == (config_file is None):
        code = "MISSING_PARAMETER" if config is None else "MUTUALLY_EXCLUSIVE"
        raise ParameterError(code, "give exactly one of config (the project as a mapping) and config_file "
                             "(a project YAML path)", details={"errors": [
                                 {"loc": "config", "code": code, "message": "config or config_file"}]})
    if config_file is not None:
        return load_config(config_file, overrides or [])
    if overrides:
        return parse_config(config.model_dump(mode="json"), overrides)
    return config


def ingest_source(source: SourceConfig, ctx: RunContext, interaction: InteractionOptions,
                  progress: RunProgress) -> list[StageOutput]:
    """load -> resample -> clean for one source, each stage through its gate."""
    outputs = [run_load(source, ctx)]
    progress.stage_done()
    if source.resample is not None:
        outputs.append(run_resample(source.name, outputs[-1], source.resample, ctx))
        progress.stage_done()
    if source.clean is not None:
        outputs.append(run_clean(source.name, outputs[-1], source.clean, ctx,
                                 timeout_minutes=interaction.threshold_timeout_minutes,
                                 poll_seconds=interaction.poll_seconds))
        progress.stage_done()
    return outputs


def data_stages(config: PipelineConfig, ctx: RunContext, interaction: InteractionOptions,
                progress: RunProgress) -> list[StageOutput]:
    """Ingest every source, then align the last output of each source, fit the cloud and build the dataset
    (from the cloud output, else the aligned frame, else the single source's last output)."""
    outputs: list[StageOutput] = []
    last: dict[str, StageOutput] = {}
    for source in config.sources:
        produced = ingest_source(source, ctx, interaction, progress)
        outputs.extend(produced)
        last[source.name] = produced[-1]
    frame: StageOutput | None = next(iter(last.values())) if len(last) == 1 else None
    if config.align is not None:
        aligned = run_align(last, config.align, ctx)
        outputs.append(aligned)
        progress.stage_done()
        frame = aligned
        if config.cloud is not None:
            frame = run_cloud(aligned, config.cloud, ctx)
            outputs.append(frame)
            progress.stage_done()
    if config.dataset is not None:
        if frame is None:  # PipelineConfig rejects this; kept for configs built without validation
            raise ParameterError("MISSING_PARAMETER", "dataset needs one frame: add an align section",
                                 details={"errors": [{"loc": "dataset", "code": "MISSING_PARAMETER",
                                                      "message": "several sources and no align"}]})
        outputs.append(run_dataset(frame, config.dataset, ctx))
        progress.stage_done()
    return outputs


class Produced(BaseModel):
    """What the stages of a run produced: stage outputs, and the trained models when there was training."""

    outputs: list[StageOutput]
    models: list[ModelOutcome] = Field(default_factory=list)
    evaluation: EvaluationOutcome | None = None


def ingest_stages(config: PipelineConfig, ctx: RunContext, interaction: InteractionOptions,
                  progress: RunProgress) -> Produced:
    """Every source through its ingest stages."""
    return Produced(outputs=[o for source in config.sources
                             for o in ingest_source(source, ctx, interaction, progress)])


def all_stages(config: PipelineConfig, ctx: RunContext, interaction: InteractionOptions,
               progress: RunProgress) -> Produced:
    """Every data stage (ingest, align, cloud, dataset), without training."""
    return Produced(outputs=data_stages(config, ctx, interaction, progress))


def pipeline_stages(config: PipelineConfig, ctx: RunContext, interaction: InteractionOptions,
                    progress: RunProgress) -> Produced:
    """Every data stage, then the training fan-out when the project has a training section."""
    outputs = data_stages(config, ctx, interaction, progress)
    if config.training is None:
        return Produced(outputs=outputs)
    dataset, source = outputs[-1], outputs[-2]  # data_stages appends the dataset right after its input frame
    models = train_stage(dataset, source, config, ctx)
    progress.models_done()
    if not any(m.status == "completed" for m in models):
        return Produced(outputs=outputs, models=models)
    evaluation = evaluate_run(outputs, models, config, ctx)
    models = [m.model_copy(update={"metrics": evaluation.metrics.get(m.name, {})}) for m in models]
    if supabase.enabled():
        summary = {"run_id": ctx.run_id, "project": config.project, "flow": "pipeline", "status": "completed",
                   "models": [m.model_dump(mode="json") for m in models],
                   "evaluation": evaluation.model_dump(mode="json")}
        publish_supabase(summary, f"{evaluation.run_folder}/metrics/overall.parquet", ctx)
    return Produced(outputs=outputs, models=models, evaluation=evaluation)


Stages = Callable[[PipelineConfig, RunContext, InteractionOptions, RunProgress], Produced]


def run_recorded(stages: Stages, config: PipelineConfig, ctx: RunContext, flow_name: str,
                 partition: str | None, interaction: InteractionOptions | None, *,
                 stage_count: int | None = None, training: bool | None = None) -> RunSummary:
    """Open the run row, run the stages with the run's progress artifact, close the row with the final
    status. ``stage_count`` and ``training`` size the progress weights (default: from the config)."""
    open_run(config, ctx, flow_name, partition)
    progress = RunProgress(f"{flow_name} {config.project}" + (f" partition {partition}" if partition else ""),
                           data_stage_count(config) if stage_count is None else stage_count,
                           config.training is not None if training is None else training)
    try:
        produced = stages(config, ctx, interaction or InteractionOptions(), progress)
    except ZeitflowError as exc:
        close_run(ctx, "failed", exc.code, exc.message[:2000])
        raise
    except BaseException as exc:
        close_run(ctx, "failed", type(exc).__name__, str(exc)[:2000])
        raise
    close_run(ctx, "completed")
    progress.finish()
    return RunSummary(
        project=config.project, run_id=ctx.run_id, flow=flow_name, partition=partition, status="completed",
        storage_root=ctx.storage_root, metadata_url=mask_url(ctx.metadata_url),
        stages=[StageSummary.of(o) for o in produced.outputs], models=produced.models,
        evaluation=produced.evaluation,
    )
