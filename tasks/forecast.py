"""The forecast task (architecture §1, ``flows/forecast.py``): apply a stored model to the newest processed
frame and write the forecast in original units as Parquet and the canonical CSV, through the ``predictions``
gate. The model is fetched from the model store into a temporary folder and applied in a spawned process for
Keras kinds (the flow process never imports TensorFlow)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from prefect import task

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.isolation import run_isolated
from tasks.retrying import retries_in_body
from tasks.stage import (
    OutputSlot,
    StageOutput,
    cached_output,
    claim,
    claim_extra,
    output_slot,
    persist_output,
    remove_slot,
    run_gated,
    slot_identity,
)
from zeitflow.config import DatasetConfig
from zeitflow.errors import ModelError
from zeitflow.io.artifacts import read_frame
from zeitflow.io.canonical_csv import to_csv_bytes
from zeitflow.io.metadata import ModelRecord
from zeitflow.models.training import apply_model
from zeitflow.options.base import sha256_json
from zeitflow.options.models import KERAS_KINDS
from zeitflow.stages.forecast import forecast_frame, input_window
from zeitflow.stages.grid import iso

STAGE = "forecast"
SUITE = "predictions"
APPLY_TIMEOUT_SECONDS = 600.0


def find_model(ctx: RunContext, name: str | None) -> ModelRecord:
    """The newest stored model of the project (of ``name`` when given), or ``ModelError`` ``NO_MODEL``."""
    store = ctx.metadata()
    try:
        record = store.latest_model(ctx.project, name)
    finally:
        store.dispose()
    if record is None:
        which = f"model {name!r}" if name else "model"
        raise ModelError("NO_MODEL", f"project {ctx.project!r} has no trained {which} in {store.masked_url}",
                         details={"project": ctx.project, "model": name},
                         hint="run the train flow (or `zeitflow run` with a training section) first")
    return record


def _fetch(ctx: RunContext, record: ModelRecord, target: Path) -> None:
    """Copy the stored model's files (as listed in its ``result.json``) into ``target``, checksums verified."""
    store = ctx.artifacts()
    result = json.loads(store.get_bytes(f"{record.uri}/result.json"))
    target.mkdir(parents=True)
    for name in result["files"]:
        expected = record.sha256 if name == result["model_file"] else None
        (target / name).write_bytes(store.get_bytes(f"{record.uri}/{name}", expected_sha256=expected))


def _slot(frame_output: StageOutput, record: ModelRecord, dataset: DatasetConfig, ctx: RunContext) -> OutputSlot:
    partition = ctx.window()
    params = sha256_json({"model_uri": record.uri, "model_sha256": record.sha256,
                          "windows": dataset.windows.parameters_hash(),
                          "before": partition.end.isoformat() if partition is not None else None})
    return output_slot(ctx, STAGE, record.name, params, [["frame", frame_output.ref.sha256]])


def _csv_uri(slot: OutputSlot) -> str:
    return slot.uri.removesuffix(".parquet") + ".csv"


def _identity(frame_output: StageOutput, record: ModelRecord, dataset: DatasetConfig,
              ctx: RunContext) -> CacheIdentity:
    slot = _slot(frame_output, record, dataset, ctx)
    return slot_identity(ctx, slot, _csv_uri(slot))


@task(name="forecast", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def forecast_output(frame_output: StageOutput, record: ModelRecord, dataset: DatasetConfig,
                    ctx: RunContext) -> StageOutput:
    """Build the newest input window, predict it with the stored model and persist the forecast."""
    partition = ctx.window()
    slot = claim(ctx, _slot(frame_output, record, dataset, ctx))
    csv_uri = _csv_uri(slot)
    claim_extra(csv_uri)
    frame = read_frame(frame_output.ref.uri, expected_sha256=frame_output.ref.sha256,
                       storage_options=ctx.storage_options())
    if partition is not None:  # a backfilled forecast sees only what was known at the partition's end
        frame = frame[frame.index < partition.end]
        if frame.empty:
            raise ModelError("NO_MODEL_INPUT", f"partition {partition.text}: no processed data before "
                             f"{partition.end.isoformat()}", details={"partition": partition.text})
    window = input_window({c: frame[c] for c in dataset.input_channels}, dataset.windows,
                          outputs=dataset.output_channels)
    with tempfile.TemporaryDirectory(prefix="zeitflow-forecast-") as tmp:
        folder = Path(tmp) / "model"
        _fetch(ctx, record, folder)
        sidecar = json.loads((folder / "model.json").read_text(encoding="utf-8"))
        features = sidecar["shape"]["input_features"]
        if features != window.input_features:
            raise ModelError("SHAPE_MISMATCH", f"model {record.name!r} was trained on the input features "
                             f"{features}, but the project's windows give {window.input_features}",
                             details={"model": features, "window": window.input_features})
        scalers = ctx.artifacts().get_bytes(record.scalers_uri).decode("utf-8") if record.scalers_uri else "{}"
        references = pd.DatetimeIndex([window.reference_time], name="utc_ref")
        args = (str(folder), window.X, references, scalers, window.output_offsets_minutes,
                {c: frame[c] for c in dataset.output_channels if c in frame})
        if record.kind in KERAS_KINDS:
            Y = run_isolated(apply_model, args, label=f"forecast-{record.name}", timeout_seconds=APPLY_TIMEOUT_SECONDS)
        else:
            Y = apply_model(*args)
    result = forecast_frame(window, Y, sidecar["shape"]["output_features"])
    ctx.artifacts().put_bytes(csv_uri, to_csv_bytes(result))
    report: dict[str, Any] = {
        "stage": STAGE, "partition": ctx.partition,
        "rows_in": len(frame), "rows_out": len(result), "model": record.name, "kind": record.kind,
        "model_uri": record.uri, "model_id": record.id, "reference_time": iso(window.reference_time.value),
        "input_features": window.input_features, "output_features": list(result.columns), "csv_uri": csv_uri,
        "warnings": [],
    }
    return persist_output(ctx, slot, result, report)


forecast_output.on_rollback(remove_slot)


def gate_parameters(output: StageOutput) -> dict[str, Any]:
    """Channels, first and last forecast time and row count of the written forecast."""
    return {"channels": list(output.ref.columns), "first_utc": output.first_utc, "last_utc": output.last_utc,
            "rows": output.ref.rows}


def run_forecast(frame_output: StageOutput, record: ModelRecord, dataset: DatasetConfig,
                 ctx: RunContext) -> StageOutput:
    """Forecast, gate and register as one transaction (a failed gate removes the Parquet and the CSV)."""
    return run_gated(lambda: cached_output(forecast_output, frame_output, record, dataset, ctx), SUITE,
                     gate_parameters, ctx)
