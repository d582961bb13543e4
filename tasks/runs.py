"""Run bookkeeping in the metadata store: one ``runs`` row per flow run, opened and closed."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import deployment, flow_run

from tasks.context import RunContext
from tasks.stage import retry_transient
from zeitflow.config import PipelineConfig


@task(name="open-run", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def open_run(config: PipelineConfig, ctx: RunContext, flow_name: str, partition: str | None) -> str:
    """Migrate the store if needed, upsert the project and insert the run row (status running)."""
    store = ctx.metadata()
    try:
        store.migrate()
        project_id = store.upsert_project(config.project, config.model_dump(mode="json"))
        store.start_run(
            run_id=ctx.run_id, project_id=project_id, flow_name=flow_name,
            flow_run_id=str(flow_run.id) if flow_run.id else None,
            deployment=deployment.name,
            partition=partition, parameters=config.model_dump(mode="json"),
            parameters_hash=config.parameters_hash(), code_version=ctx.code_version,
        )
    finally:
        store.dispose()
    return ctx.run_id


@task(name="close-run", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def close_run(ctx: RunContext, status: str, error_code: str | None = None,
              error_message: str | None = None) -> None:
    """Set the run's final status and finish time."""
    store = ctx.metadata()
    try:
        store.finish_run(ctx.run_id, status, error_code=error_code, error_message=error_message)
    finally:
        store.dispose()
