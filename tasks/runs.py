"""Run bookkeeping in the metadata store: one ``runs`` row per flow run, opened and closed."""

from __future__ import annotations

import os
import socket

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import deployment, flow_run

from tasks.context import RunContext
from tasks.stage import retry_transient
from zeitflow.config import PipelineConfig


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (signal 0 checks without signalling)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


@task(name="open-run", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def open_run(config: PipelineConfig, ctx: RunContext, flow_name: str, partition: str | None) -> str:
    """Migrate the store if needed, upsert the project, mark the project's runs whose flow process on this
    host died without closing them as failed, and insert the run row (status running, owned by this
    process)."""
    store = ctx.metadata()
    try:
        store.migrate()
        project_id = store.upsert_project(config.project, config.model_dump(mode="json"))
        abandoned = store.fail_abandoned_runs(project_id, socket.gethostname(), process_alive)
        if abandoned:
            get_run_logger().warning("marked %d run(s) of %s failed (RUN_ABANDONED): their flow process on this "
                                     "host is gone: %s", len(abandoned), config.project, ", ".join(abandoned))
        store.start_run(
            owner=f"{socket.gethostname()}:{os.getpid()}",
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
