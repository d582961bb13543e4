"""The load task: raw files -> canonical frame -> one Parquet object, with the ``raw_loaded`` gate."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.transactions import Transaction, get_transaction, transaction

from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.stage import StageOutput, publish_report, quality_gate, register_output, retry_transient
from zeitflow.config import SourceConfig
from zeitflow.errors import LoadError, StorageError
from zeitflow.io.artifacts import read_json, write_frame, write_json
from zeitflow.options.base import sha256_json
from zeitflow.stages.load import read_raw
from zeitflow.stats import channel_stats

STAGE = "load"
SUITE = "raw_loaded"
_HASH_BLOCK = 8 * 1024 * 1024

# Report fields that count data rows removed on the way from the files to the frame: per source
# (lines that never became rows), then the totals of the duplicate policy and the merge.
SOURCE_DROP_REASONS = ("bad_lines", "unparseable_time", "ambiguous_dropped", "nonexistent_dropped")
TOTAL_DROP_REASONS = ("duplicate_rows_removed", "exact_duplicates_removed")


def source_sha256(path: str) -> str:
    """sha256 of a source's bytes, streamed in blocks (the stage's input identity)."""
    digest = hashlib.sha256()
    try:
        with fsspec.open(path, "rb") as handle:
            while block := handle.read(_HASH_BLOCK):
                digest.update(block)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise LoadError("SOURCE_NOT_FOUND", f"source {path!r} does not exist or is not a readable file ({exc})",
                        details={"source": path}) from None
    except OSError as exc:
        raise StorageError("READ_FAILED", f"cannot read source {path!r}: {exc}", details={"source": path}) from exc
    return digest.hexdigest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def dropped_rows(report: dict[str, Any]) -> dict[str, int]:
    """Rows dropped by reason for a load report (zero counts omitted), each row counted once."""
    totals: dict[str, int] = {}
    for reason in SOURCE_DROP_REASONS:
        count = sum(int(source.get(reason) or 0) for source in report.get("sources", []))
        if count:
            totals[reason] = count
    for reason in TOTAL_DROP_REASONS:
        count = int(report.get(reason) or 0)
        if count:
            totals[reason] = count
    return totals


@task(name="load", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def load_source(source: SourceConfig, ctx: RunContext) -> StageOutput:
    """Read one source (or merge its exports), write the frame atomically and return its reference.
    An output already registered for the same inputs, options and code is reused, not recomputed."""
    logger = get_run_logger()
    paths = source.paths()
    shas = [source_sha256(p) for p in paths]
    names = ["source"] if len(paths) == 1 else [f"source:{i}" for i in range(len(paths))]
    inputs_hash = sha256_json([[n, s] for n, s in zip(names, shas, strict=True)])
    params_hash = source.load.parameters_hash()
    store = ctx.artifacts()
    uri = store.key_for(ctx.project, STAGE, params_hash, inputs_hash, f"{source.name}.parquet")
    report_uri = store.key_for(ctx.project, STAGE, params_hash, inputs_hash, f"{source.name}.report.json")
    txn = get_transaction()
    if txn is not None:
        txn.set("uris", [uri, report_uri])
        txn.set("run_context", ctx)

    metadata = ctx.metadata()
    try:
        known = metadata.find_stage_output(STAGE, params_hash, inputs_hash, ctx.code_version, source.name)
    finally:
        metadata.dispose()
    if known is not None and store.exists(uri) and store.exists(report_uri):
        logger.info("load %s: reusing %s", source.name, uri)
        report = read_json(report_uri, storage_options=ctx.storage_options())
        return StageOutput(
            stage=STAGE, output_name=source.name, ref=known.ref, inputs_hash=inputs_hash,
            first_utc=_iso(known.first_utc), last_utc=_iso(known.last_utc), report=report, report_uri=report_uri,
            channel_stats=known.channel_stats, reused=True,
        )

    progress = ProgressReporter(f"load {source.name}")
    result = read_raw(paths[0] if len(paths) == 1 else paths, source.load, progress=progress)
    frame = result.frame
    ref = write_frame(frame, uri, stage=STAGE, parameters_hash=params_hash,
                      storage_options=ctx.storage_options())
    report = result.report.model_dump(mode="json")
    write_json(report, report_uri, storage_options=ctx.storage_options())
    progress.finish()
    logger.info("load %s: %s rows, %s channels -> %s", source.name, len(frame), frame.shape[1], uri)
    return StageOutput(
        stage=STAGE, output_name=source.name, ref=ref, inputs_hash=inputs_hash,
        first_utc=frame.index[0].isoformat() if len(frame) else None,
        last_utc=frame.index[-1].isoformat() if len(frame) else None,
        report=report, report_uri=report_uri, channel_stats=channel_stats(frame),
    )


@load_source.on_rollback
def _remove_output(txn: Transaction) -> None:
    """Undo a load whose gate or registration failed: no object, no report, no row remain."""
    ctx: RunContext = txn.get("run_context")
    store = ctx.artifacts()
    for uri in txn.get("uris"):
        store.delete(uri)
    metadata = ctx.metadata()
    try:
        metadata.delete_stage_outputs_at(txn.get("uris")[0])
    finally:
        metadata.dispose()


def gate_parameters(source: SourceConfig, output: StageOutput) -> dict[str, Any]:
    """Fill the parameter-dependent expectations of ``raw_loaded`` from the source's options."""
    return {"channels": list(output.ref.columns), "columns": ["utc", *output.ref.columns],
            "value_min": source.gate.value_min, "value_max": source.gate.value_max}


def run_load(source: SourceConfig, ctx: RunContext) -> StageOutput:
    """Load, gate and register one source as one transaction: a failed gate or registration rolls
    the object and its metadata row back."""
    with transaction():
        output = load_source(source, ctx)
        gate = quality_gate(output, SUITE, gate_parameters(source, output), ctx)
        output = register_output(output.model_copy(update={"gate": gate}), ctx)
    publish_report(output)
    return output
