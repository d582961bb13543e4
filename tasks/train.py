"""The training task: one coarse task per model spec (stages.md §9, architecture §5-6).

It reads the gated dataset by reference (npz, sidecar and scalers, checksums verified), splits it as the
dataset stage did, fits the model (in a dedicated spawned process for Keras kinds, see ``tasks.isolation``),
and stores the model under a deterministic key::

    {root}/{project}/models/{spec_hash}/{inputs_hash}/{name}/model.keras | model.joblib, model.json,
                                                              history.json, predictions.npz, result.json

``inputs_hash`` covers the dataset's checksums, the dataset options and the code version, so a re-run with
the same inputs reuses the stored model. ``result.json`` is written last: a model counts as stored only when
it exists, and a failed upload removes whatever it had written. The ``models`` row is written after the files.
"""

from __future__ import annotations

import io
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger
from prefect.runtime import task_run
from pydantic import BaseModel

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.isolation import run_isolated
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import StageOutput, artifact_key, call_cached, retry_transient
from zeitflow.config import DatasetConfig, TrainingConfig
from zeitflow.errors import ModelError
from zeitflow.io.artifacts import read_frame
from zeitflow.models.base import SIDECAR
from zeitflow.models.training import SplitArrays, TrainingData, TrainingOutcome, fit_and_predict, mae_per_channel
from zeitflow.options.base import sha256_json
from zeitflow.stages.scaling import split
from zeitflow.stages.windows import WindowedDataset

STAGE = "models"
RESULT = "result.json"
HISTORY = "history.json"
PREDICTIONS = "predictions.npz"


class ModelOutcome(BaseModel):
    """What one training task produced (or why it did not); ``metrics`` are the test metrics per output
    channel at the first averaging level (MAE, RMSE, WAPE, MASE, skill vs the reference baseline), filled in
    by the evaluation."""

    name: str
    kind: str
    status: str
    reused: bool = False
    uri: str | None = None
    model_id: str | None = None
    epochs_run: int | None = None
    best_epoch: int | None = None
    fit_seconds: float | None = None
    val_mae: dict[str, float | None] = {}
    test_mae: dict[str, float | None] = {}
    metrics: dict[str, dict[str, Any]] = {}
    error: dict[str, Any] | None = None


def model_prefix(ctx: RunContext, spec: Any, dataset: StageOutput, dataset_config: DatasetConfig) -> str:
    """The deterministic folder of one model: spec hash, then a hash of its inputs and the code version."""
    inputs = [["dataset", dataset.ref.sha256], ["npz", dataset.report["npz_sha256"]],
              ["dataset_parameters", dataset_config.parameters_hash()], ["code_version", ctx.code_version]]
    key = ctx.artifacts().key_for(ctx.project, STAGE, spec.parameters_hash(), sha256_json(inputs),
                                  f"{spec.model_name}/{RESULT}")
    return key.removesuffix(f"/{RESULT}")


def training_data(ctx: RunContext, dataset: StageOutput, source: StageOutput, dataset_config: DatasetConfig,
                  needs_series: bool) -> TrainingData:
    """The dataset's splits in original units, its scalers and (for ``seasonal_naive``) the output series."""
    store = ctx.artifacts()
    report = dataset.report
    npz = store.get_bytes(report["npz_uri"], expected_sha256=report["npz_sha256"])
    windowed = WindowedDataset.from_bytes(npz, store.get_bytes(report["sidecar_uri"]))
    parts = split(windowed, dataset_config.split)
    series = {}
    if needs_series:
        frame = read_frame(source.ref.uri, expected_sha256=source.ref.sha256, storage_options=ctx.storage_options())
        series = {c: frame[c] for c in windowed.output_features}
    return TrainingData(
        **{name: SplitArrays(part.X, part.Y, part.reference_times)
           for name, part in (("train", parts.train), ("val", parts.val), ("test", parts.test))},
        scalers_json=store.get_bytes(report["scalers_uri"]).decode("utf-8"),
        input_features=list(windowed.input_features), output_features=list(windowed.output_features),
        output_offsets_minutes={k: [float(v) for v in vs] for k, vs in windowed.output_offsets_minutes.items()},
        output_series=series,
    )


def _fit(spec: Any, data: TrainingData, directory: Path, training: TrainingConfig) -> tuple[TrainingOutcome, float]:
    reporter = ProgressReporter(f"train {spec.model_name}")
    timeout = training.timeout_for(spec.model_name)
    started = time.monotonic()
    if training.isolated(spec.kind):
        outcome = run_isolated(fit_and_predict, (spec.model_dump(mode="json"), data, str(directory)),
                               label=spec.model_name, timeout_seconds=timeout, on_event=reporter)
    else:
        outcome = fit_and_predict(spec, data, directory, progress=reporter)
    elapsed = time.monotonic() - started
    if elapsed > timeout:
        raise ModelError("TRAINING_TIMEOUT", f"{spec.model_name}: took {elapsed:.1f} s, over its timeout of "
                         f"{timeout:.1f} s (fitted in the task's thread, so it could not be stopped earlier); "
                         "nothing of this model was stored",
                         details={"model": spec.model_name, "timeout_seconds": timeout,
                                  "elapsed_seconds": round(elapsed, 3)})
    reporter.finish()
    return outcome, elapsed


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _upload(ctx: RunContext, prefix: str, directory: Path, extra: dict[str, bytes], result: dict[str, Any]) -> str:
    """Upload the saved model files and extras, then ``result.json``; on failure remove what was written.
    Returns the sha256 of the model file."""
    store = ctx.artifacts()
    written: list[str] = []
    model_sha = ""
    model_file = json.loads((directory / SIDECAR).read_text(encoding="utf-8"))["model_file"]
    try:
        files = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
        for name, data in {**files, **extra}.items():
            uri = f"{prefix}/{name}"
            info = store.put_bytes(uri, data)
            written.append(uri)
            if name == model_file:
                model_sha = info.sha256
        result = {**result, "model_file": model_file, "model_sha256": model_sha,
                  "files": sorted([*files, *extra])}
        store.put_bytes(f"{prefix}/{RESULT}", json.dumps(result, indent=2, sort_keys=True).encode("utf-8"))
    except BaseException:
        for uri in written:
            store.delete(uri)
        raise
    return model_sha


def _stored_result(ctx: RunContext, prefix: str) -> dict[str, Any] | None:
    store = ctx.artifacts()
    uri = f"{prefix}/{RESULT}"
    if not store.exists(uri):
        return None
    result = json.loads(store.get_bytes(uri))
    if result.get("code_version") != ctx.code_version:
        return None
    if not all(store.exists(f"{prefix}/{name}") for name in result.get("files", [])):
        return None
    return result


def _publish(name: str, result: dict[str, Any]) -> None:
    epochs = result["history"]["epochs"]
    create_table_artifact(
        [{"epoch": e["epoch"], "loss": e["loss"], "val_loss": e["val_loss"], "seconds": round(e["seconds"], 3)}
         for e in epochs],
        key=artifact_key("train", name, "history"), description=f"{name}: loss and val_loss per epoch")
    lines = [f"### model {name} ({result['kind']})", "",
             f"- epochs run: {result['history']['epochs_run']}, best epoch: {result['history']['best_epoch']}",
             f"- fit seconds: {result['fit_seconds']:.2f}",
             *[f"- validation MAE `{ch}`: {v}" for ch, v in result["val_mae"].items()]]
    create_markdown_artifact("\n".join(lines), key=artifact_key("train", name, "summary"),
                             description=f"training summary of {name}")


def _run_name() -> str:
    return f"train-{task_run.parameters['spec'].model_name}"


def _identity(spec: Any, dataset: StageOutput, source: StageOutput, dataset_config: DatasetConfig,
              training: TrainingConfig, ctx: RunContext) -> CacheIdentity:
    """A fitted model is identified by its folder (spec hash, dataset checksums, code version); a cached
    fit is valid while its ``result.json`` exists (written last, so the files before it do too)."""
    prefix = model_prefix(ctx, spec, dataset, dataset_config)
    return CacheIdentity(key_parts=[prefix], code_version=ctx.code_version, required_uris=[f"{prefix}/{RESULT}"],
                         storage_root=ctx.storage_root, storage_options=ctx.storage_options())


def _fit_run_name() -> str:
    return f"fit-{task_run.parameters['spec'].model_name}"


@task(name="fit-model", task_run_name=_fit_run_name, cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def fit_model(spec: Any, dataset: StageOutput, source: StageOutput, dataset_config: DatasetConfig,
              training: TrainingConfig, ctx: RunContext) -> tuple[dict[str, Any], bool]:
    """Fit one model spec and store it (or find it already stored); returns its ``result.json`` content and
    whether it was already stored."""
    prefix = model_prefix(ctx, spec, dataset, dataset_config)
    result = _stored_result(ctx, prefix)
    if result is not None:
        return result, True
    data = training_data(ctx, dataset, source, dataset_config, spec.kind == "seasonal_naive")
    with tempfile.TemporaryDirectory(prefix=f"zeitflow-{spec.model_name}-") as tmp:
        directory = Path(tmp) / "model"
        outcome, elapsed = _fit(spec, data, directory, training)
        history = outcome.history
        result = {
            "name": spec.model_name, "kind": spec.kind, "spec": spec.model_dump(mode="json"),
            "code_version": ctx.code_version, "fit_seconds": elapsed,
            "history": history.model_dump(mode="json"),
            "val_mae": mae_per_channel(data.val.Y, outcome.predictions["val"], data.output_features),
            "test_mae": mae_per_channel(data.test.Y, outcome.predictions["test"], data.output_features),
            "output_features": data.output_features,
        }
        extra = {HISTORY: history.model_dump_json(indent=2).encode("utf-8"),
                 PREDICTIONS: _npz({f"{k}_pred": v for k, v in outcome.predictions.items()})}
        result["model_sha256"] = _upload(ctx, prefix, directory, extra, result)
    return result, False


@task(name="train-model", task_run_name=_run_name, retries=2, retry_delay_seconds=[1, 4],
      retry_condition_fn=retry_transient, cache_policy=NO_CACHE)
def train_model(spec: Any, dataset: StageOutput, source: StageOutput, dataset_config: DatasetConfig,
                training: TrainingConfig, ctx: RunContext, dataset_id: str | None = None) -> ModelOutcome:
    """Fit one model spec on the dataset (``fit-model``, served from Prefect's cache or the model store when
    already stored), then register its row for this run and publish its summary."""
    logger = get_run_logger()
    prefix = model_prefix(ctx, spec, dataset, dataset_config)
    (result, stored), cached = call_cached(fit_model, spec, dataset, source, dataset_config, training, ctx)
    reused = stored or cached
    store = ctx.metadata()
    try:
        model_id = store.record_model(
            run_id=ctx.run_id, name=spec.model_name, kind=spec.kind, spec=spec.model_dump(mode="json"),
            uri=prefix, sha256=result["model_sha256"], dataset_id=dataset_id,
            scalers_uri=dataset.report["scalers_uri"], epochs_run=result["history"]["epochs_run"],
            best_epoch=result["history"]["best_epoch"],
        )
    finally:
        store.dispose()
    logger.info("model %s (%s) %s: validation MAE %s -> %s", spec.model_name, spec.kind,
                "reused" if reused else f"trained in {result['fit_seconds']:.2f} s", result["val_mae"], prefix)
    _publish(spec.model_name, result)
    return ModelOutcome(
        name=spec.model_name, kind=spec.kind, status="completed", reused=reused, uri=prefix, model_id=model_id,
        epochs_run=result["history"]["epochs_run"], best_epoch=result["history"]["best_epoch"],
        fit_seconds=result["fit_seconds"], val_mae=result["val_mae"], test_mae=result["test_mae"],
    )
