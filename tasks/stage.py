"""The parts every stage shares: the output record passed between tasks, the quality-gate task,
the metadata registration task, report publishing, and the transient-retry rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pandas as pd
from prefect import Task, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import TaskRun
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.transactions import Transaction, get_transaction, transaction
from pydantic import BaseModel

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.retrying import retries_in_body
from zeitflow.errors import InputError, StorageError
from zeitflow.io.artifacts import DataRef, read_frame, read_json, write_frame, write_json
from zeitflow.io.metadata import MetadataStore
from zeitflow.options.base import sha256_json
from zeitflow.quality import gate_error, validate_frame_quality
from zeitflow.stats import channel_stats


class OutputSlot(BaseModel):
    """Where one stage output goes: its content-addressed object and report keys."""

    stage: str
    output_name: str
    params_hash: str
    inputs_hash: str
    uri: str
    report_uri: str


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


def output_slot(ctx: RunContext, stage: str, output_name: str, params_hash: str,
                inputs: list[list[str]]) -> OutputSlot:
    """The deterministic keys of an output, from its options hash and its inputs
    (``[[input_name, sha256], ...]`` in the order the stage receives them, §13); a partitioned run's outputs
    go into a ``partition-<key>/`` folder, so re-running a partition rewrites that partition only."""
    inputs_hash = sha256_json(inputs)
    store = ctx.artifacts()
    window = ctx.window()
    folder = f"partition-{window.key}/" if window is not None else ""
    return OutputSlot(
        stage=stage, output_name=output_name, params_hash=params_hash, inputs_hash=inputs_hash,
        uri=store.key_for(ctx.project, stage, params_hash, inputs_hash, f"{folder}{output_name}.parquet"),
        report_uri=store.key_for(ctx.project, stage, params_hash, inputs_hash, f"{folder}{output_name}.report.json"),
    )


def claim_slot(ctx: RunContext, stage: str, output_name: str, params_hash: str,
               inputs: list[list[str]]) -> OutputSlot:
    """``output_slot``, registered with the running task's transaction so a rollback removes it."""
    return claim(ctx, output_slot(ctx, stage, output_name, params_hash, inputs))


def claim(ctx: RunContext, slot: OutputSlot) -> OutputSlot:
    """Register ``slot`` with the running task's transaction so a rollback removes its objects."""
    txn = get_transaction()
    if txn is not None:
        txn.set("slot", slot)
        txn.set("run_context", ctx)
    return slot


def slot_identity(ctx: RunContext, slot: OutputSlot, *extra_uris: str) -> CacheIdentity:
    """The cache identity of a stage output: its deterministic keys (which already name the storage root,
    project, stage, options hash, input checksums and partition) and the objects a cached result needs."""
    return CacheIdentity(key_parts=[slot.uri, slot.report_uri], code_version=ctx.code_version,
                         required_uris=[slot.uri, slot.report_uri, *extra_uris], storage_root=ctx.storage_root,
                         storage_options=ctx.storage_options())


def call_cached(stage_task: Task, *args: Any) -> tuple[Any, bool]:
    """Call a cached stage task and say whether Prefect served it from its cache (a *Cached* state)."""
    state = stage_task(*args, return_state=True)
    return state.result(), state.name == "Cached"


def cached_output(stage_task: Task, *args: Any) -> StageOutput:
    """A stage task's output, marked ``reused`` when it came from Prefect's cache."""
    output, cached = call_cached(stage_task, *args)
    return output.model_copy(update={"reused": True}) if cached else output


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def reuse_output(ctx: RunContext, slot: OutputSlot) -> StageOutput | None:
    """The registered output for the same inputs, options and code version, if its objects exist."""
    metadata = ctx.metadata()
    try:
        known = metadata.find_stage_output(slot.stage, slot.params_hash, slot.inputs_hash, ctx.code_version,
                                           slot.output_name)
    finally:
        metadata.dispose()
    store = ctx.artifacts()
    if known is None or not store.exists(slot.uri) or not store.exists(slot.report_uri):
        return None
    get_run_logger().info("%s %s: reusing %s", slot.stage, slot.output_name, slot.uri)
    return StageOutput(
        stage=slot.stage, output_name=slot.output_name, ref=known.ref, inputs_hash=slot.inputs_hash,
        first_utc=_iso(known.first_utc), last_utc=_iso(known.last_utc),
        report=read_json(slot.report_uri, storage_options=ctx.storage_options()), report_uri=slot.report_uri,
        channel_stats=known.channel_stats, reused=True,
    )


def persist_output(ctx: RunContext, slot: OutputSlot, frame: pd.DataFrame, report: dict[str, Any]) -> StageOutput:
    """Write the frame and its report atomically under the slot's keys and describe the output."""
    ref = write_frame(frame, slot.uri, stage=slot.stage, parameters_hash=slot.params_hash,
                      storage_options=ctx.storage_options())
    write_json(report, slot.report_uri, storage_options=ctx.storage_options())
    get_run_logger().info("%s %s: %s rows, %s channels -> %s", slot.stage, slot.output_name, len(frame),
                          frame.shape[1], slot.uri)
    return StageOutput(
        stage=slot.stage, output_name=slot.output_name, ref=ref, inputs_hash=slot.inputs_hash,
        first_utc=frame.index[0].isoformat() if len(frame) else None,
        last_utc=frame.index[-1].isoformat() if len(frame) else None,
        report=report, report_uri=slot.report_uri, channel_stats=channel_stats(frame),
    )


def claim_extra(uri: str) -> None:
    """Register a side object (e.g. a plot) of the running task's output for removal on rollback."""
    txn = get_transaction()
    if txn is not None:
        txn.set("extra_uris", [*txn.get("extra_uris", []), uri])


def remove_slot(txn: Transaction) -> None:
    """Rollback hook body: delete the slot's objects, its side objects and any metadata row
    pointing at them."""
    slot: OutputSlot | None = txn.get("slot", None)
    if slot is None:
        return
    ctx: RunContext = txn.get("run_context")
    store = ctx.artifacts()
    for uri in [slot.uri, slot.report_uri, *txn.get("extra_uris", [])]:
        store.delete(uri)
    metadata = ctx.metadata()
    try:
        metadata.delete_stage_outputs_at(slot.uri)
    finally:
        metadata.dispose()


def run_gated(compute: Callable[[], StageOutput], suite: str,
              gate_parameters: Callable[[StageOutput], dict[str, Any]], ctx: RunContext) -> StageOutput:
    """Compute, gate and register one output as one transaction: a failed gate or registration rolls
    the object and its metadata row back (the compute task's ``on_rollback`` hook), and the compute task's
    cache record is written only when the whole transaction commits."""
    with transaction():
        output = compute()
        gate = quality_gate(output, suite, gate_parameters(output), ctx)
        output = register_output(output.model_copy(update={"gate": gate}), ctx)
    publish_report(output)
    return output


def retry_transient(task: Task, task_run: TaskRun, state: State) -> bool:
    """Retry only transient storage faults (WRITE_FAILED, READ_FAILED); never bad data or gates."""
    try:
        state.result()
    except StorageError as exc:
        return exc.transient
    except Exception:
        return False
    return False


@contextmanager
def naming_source(source: str) -> Iterator[None]:
    """Prefix an input error of a per-source stage with the source's name (§0.7: messages name the source),
    unless it already carries one; the error keeps its class, code, details and hint."""
    try:
        yield
    except InputError as exc:
        if "source" in exc.details:
            raise
        raise type(exc)(exc.code, f"source {source!r}: {exc.message}", details={**exc.details, "source": source},
                        hint=exc.hint) from exc


def artifact_key(*parts: str) -> str:
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
    key = artifact_key(output.stage, output.output_name, "report")
    create_markdown_artifact("\n".join(lines), key=key, description=f"{output.stage} report")
    create_table_artifact(output.channel_stats, key=artifact_key(output.stage, output.output_name, "channels"),
                          description=f"{output.stage} channel statistics")


def _gate_identity(output: StageOutput, suite: str, parameters: dict[str, Any], ctx: RunContext) -> CacheIdentity:
    """A gate's verdict depends on the object's bytes, the suite, its parameters and the code version."""
    return CacheIdentity(key_parts=[suite, output.ref.uri, output.ref.sha256, sha256_json(parameters)],
                         code_version=ctx.code_version, required_uris=[output.ref.uri],
                         storage_root=ctx.storage_root, storage_options=ctx.storage_options())


@task(name="quality-gate", cache_policy=stage_cache(_gate_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
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
            key=artifact_key("gate", suite, output.output_name, "failures"),
            description=f"Failed expectations of {suite} for {output.output_name}",
        )
        raise gate_error(result, f"{output.stage} output {output.output_name!r}")
    logger.info("gate %s passed for %s (%s expectations)", suite, output.output_name, result.evaluated)
    return {"suite": suite, "success": True, "evaluated": result.evaluated}


@task(name="register-output", cache_policy=NO_CACHE)
@retries_in_body
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
