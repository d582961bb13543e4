"""The load task: raw files -> canonical frame -> one Parquet object, with the ``raw_loaded`` gate."""

from __future__ import annotations

import hashlib
from typing import Any

import fsspec
from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import (
    OutputSlot,
    StageOutput,
    cached_output,
    claim,
    output_slot,
    persist_output,
    remove_slot,
    retry_transient,
    reuse_output,
    run_gated,
    slot_identity,
)
from zeitflow.config import SourceConfig
from zeitflow.errors import LoadError, StorageError
from zeitflow.options.base import sha256_json
from zeitflow.stages.load import read_raw

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


@task(name="source-checksums", retries=2, retry_delay_seconds=[1, 4], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def source_checksums(source: SourceConfig) -> list[str]:
    """sha256 of every file of a source: the load stage's input identity, and so its cache key."""
    return [source_sha256(p) for p in source.paths()]


def _slot(source: SourceConfig, shas: list[str], ctx: RunContext) -> OutputSlot:
    names = ["source"] if len(shas) == 1 else [f"source:{i}" for i in range(len(shas))]
    window = ctx.window()
    params = source.load.parameters_hash() if window is None else sha256_json(
        {"load": source.load.parameters_hash(), "partition": [window.start.isoformat(), window.end.isoformat()]})
    return output_slot(ctx, STAGE, source.name, params, [[n, s] for n, s in zip(names, shas, strict=True)])


def _identity(source: SourceConfig, shas: list[str], ctx: RunContext) -> CacheIdentity:
    return slot_identity(ctx, _slot(source, shas, ctx))


@task(name="load", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def load_source(source: SourceConfig, shas: list[str], ctx: RunContext) -> StageOutput:
    """Read one source (or merge its exports) whose files have the checksums ``shas``, write the frame
    atomically and return its reference. An output already registered for the same inputs, options and code
    is reused, not recomputed."""
    paths = source.paths()
    slot = claim(ctx, _slot(source, shas, ctx))
    reused = reuse_output(ctx, slot)
    if reused is not None:
        return reused
    window = ctx.window()
    progress = ProgressReporter(f"load {source.name}")
    result = read_raw(paths[0] if len(paths) == 1 else paths, source.load, progress=progress)
    frame, report = result.frame, result.report.model_dump(mode="json")
    if window is not None:
        frame = frame[window.contains(frame.index)]
        if frame.empty:
            raise LoadError(
                "EMPTY_PARTITION", f"source {source.name!r} has no rows in partition {window.text} "
                f"[{window.start.isoformat()}, {window.end.isoformat()}); its data span "
                f"{report.get('first_utc')} .. {report.get('last_utc')}",
                details={"source": source.name, "partition": window.text, "rows_loaded": len(result.frame)})
        report = {**report, "partition": window.text, "rows_outside_partition": len(result.frame) - len(frame),
                  "rows_out": len(frame)}
    output = persist_output(ctx, slot, frame, report)
    progress.finish()
    return output


load_source.on_rollback(remove_slot)


def gate_parameters(source: SourceConfig, output: StageOutput) -> dict[str, Any]:
    """Fill the parameter-dependent expectations of ``raw_loaded`` from the source's options."""
    return {"channels": list(output.ref.columns), "columns": ["utc", *output.ref.columns],
            "value_min": source.gate.value_min, "value_max": source.gate.value_max}


def run_load(source: SourceConfig, ctx: RunContext) -> StageOutput:
    """Load one source through its ``raw_loaded`` gate (one transaction; see ``run_gated``)."""
    shas = source_checksums(source)
    return run_gated(lambda: cached_output(load_source, source, shas, ctx), SUITE,
                     lambda out: gate_parameters(source, out), ctx)
