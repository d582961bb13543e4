"""The parts every stage shares: the output record passed between tasks, the quality-gate task,
the metadata registration task, report publishing, and the transient-retry rule."""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.transactions import Transaction, get_transaction
from pydantic import BaseModel

from tasks.context import RunContext
from zeitflow.errors import StorageError
from zeitflow.io.artifacts import DataRef, read_frame
from zeitflow.io.metadata import MetadataStore
from zeitflow.quality import gate_error, validate_frame_quality


class StageOutput(BaseModel):
    """One persisted stage output, as tasks pass it on (a reference, never the frame)."""

    stage: str
    output_name: str
    ref: DataRef
    inputs_hash: str
    first_utc: str | None = None
    last_utc: str | None = None
    report: dict[str, Any]
    report_uri: str
    channel_stats: list[dict[str, Any]]
    reused: bool = False
    output_id: str | None = None
    gate: dict[str, Any] | None = None


def retry_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry only transient storage faults (WRITE_FAILED, READ_FAILED); never bad data or gates."""
    try:
        state.result()
    except StorageError as exc:
        return exc.transient
    except Exception:
        return False
    return False


def _artifact_key(*parts: str) -> str:
    """Prefect artifact keys allow lowercase letters, digits and dashes only."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")[:100]


def publish_report(output: StageOutput) -> None:
    """A markdown summary and a table of channel statistics for the stage output."""
    report = output.report
    lines = [
        f"### {output.stage}: {output.output_name}",
        "",
        f"- rows in: {report.get('rows_in')}, rows out: {report.get('rows_out')}",
        f"- output: `{output.ref.uri}` (sha256 `{output.ref.sha256[:16]}…`, {output.ref.size_bytes} bytes)",
        f"- reused: {output.reused}",
    ]
    for warning in report.get("warnings", []):
        lines.append(f"- warning {warning['code']} ({warning.get('count', 1)}): {warning['message']}")
    key = _artifact_key(output.stage, output.output_name, "report")
    create_markdown_artifact("\n".join(lines), key=key, description=f"{output.stage} report")
    create_table_artifact(output.channel_stats, key=_artifact_key(output.stage, output.output_name, "channels"),
                          description=f"{output.stage} channel statistics")


@task(name="quality-gate", cache_policy=NO_CACHE)
def quality_gate(output: StageOutput, suite: str, parameters: dict[str, Any], ctx: RunContext) -> dict[str, Any]:
    """Validate the written object (not an in-memory copy) against a GX suite. A failure publishes
    a table of the failed expectations and raises ``DataQualityError`` (never retried)."""
    frame = read_frame(output.ref.uri, expected_sha256=output.ref.sha256,
                       storage_options=ctx.storage_options())
    result = validate_frame_quality(frame, suite, parameters)
    logger = get_run_logger()
    if not result.success:
        create_table_artifact(
            result.failures_table(),
            key=_artifact_key("gate", suite, output.output_name, "failures"),
            description=f"Failed expectations of {suite} for {output.output_name}",
        )
        raise gate_error(result, f"{output.stage} output {output.output_name!r}")
    logger.info("gate %s passed for %s (%s expectations)", suite, output.output_name, result.evaluated)
    return {"suite": suite, "success": True, "evaluated": result.evaluated}


@task(name="register-output", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def register_output(output: StageOutput, ctx: RunContext) -> StageOutput:
    """Upsert the ``stage_outputs`` row (and its channel statistics) after the object exists."""
    store = ctx.metadata()
    try:
        output_id = store.record_stage_output(
            run_id=ctx.run_id, stage=output.stage, output_name=output.output_name, ref=output.ref,
            first_utc=output.first_utc, last_utc=output.last_utc, inputs_hash=output.inputs_hash,
            code_version=ctx.code_version, report=output.report, channel_stats=output.channel_stats,
        )
    finally:
        store.dispose()
    txn = get_transaction()
    if txn is not None:
        txn.set("output_id", output_id)
        txn.set("metadata_url", ctx.metadata_url)
    return output.model_copy(update={"output_id": output_id})


@register_output.on_rollback
def _unregister(txn: Transaction) -> None:
    store = MetadataStore(txn.get("metadata_url"))
    try:
        store.delete_stage_output(txn.get("output_id"))
    finally:
        store.dispose()
