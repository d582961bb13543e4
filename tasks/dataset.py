"""The dataset task (stages.md §6-§8): windows over the last frame of the pipeline, split and scalers,
through the ``windows`` and ``features`` gates, registered in ``stage_outputs`` and ``datasets``.

Design. A windowed dataset is 3-D and lives in a ``.npz`` plus a JSON sidecar, but the shared stage
machinery (``persist_output``, ``quality_gate``, ``reuse_output``, ``stage_outputs``) works on one canonical
frame per output. So the slot's main object is the dataset's *tabular view*: one row per kept sample,
indexed ``utc`` = its reference time, with a ``split`` code (0 train, 1 val, 2 test) and, per feature of X
and Y, its min and max over the sample's window (``input:<feature>:min``/``:max``). That view is what the
gates validate (read back from storage, checksum verified) and what the ``stage_outputs`` row points at.
The dataset itself is written as side objects next to it, each registered with ``claim_extra`` before it is
written, so a failed gate or registration removes every one (``remove_slot``):

* ``<name>.npz`` and ``<name>.json``: ``WindowedDataset.to_bytes`` (the sidecar holds the npz sha256);
* ``<name>.scalers.json``: ``ScalerSet.to_json`` fitted on the split;
* ``<name>.violin-<role>-<feature>.png``: one violin plot per feature, linked as Prefect artifacts.

The report (``<name>.report.json``) lists these URIs and the window, split and scaling reports. A re-run
with the same input frame, options and code version reuses the output when the view, the report, the npz,
the sidecar and the scalers all exist. The ``datasets`` row (natural key run and name) is written last in
the transaction, after both gates passed; a reused dataset that already has its row is not recorded again.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from prefect import task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.transactions import transaction

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import (
    OutputSlot,
    StageOutput,
    artifact_key,
    cached_output,
    claim,
    claim_extra,
    output_slot,
    persist_output,
    publish_report,
    quality_gate,
    register_output,
    remove_slot,
    reuse_output,
    slot_identity,
)
from zeitflow.config import DatasetConfig
from zeitflow.errors import WindowError
from zeitflow.evaluation.plots import plot_name
from zeitflow.frame import INDEX_NAME
from zeitflow.io.artifacts import read_frame
from zeitflow.stages.dataset_plots import violin_plots
from zeitflow.stages.scaling import fit_scalers, split
from zeitflow.stages.windows import DROP_REASONS, WindowedDataset, build_windows

STAGE = "dataset"
WINDOWS_SUITE = "windows"
FEATURES_SUITE = "features"
SPLITS = ("train", "val", "test")


def _base(uri: str) -> str:
    return uri.removesuffix(".parquet")


def _object_uris(uri: str) -> dict[str, str]:
    base = _base(uri)
    return {"npz_uri": f"{base}.npz", "sidecar_uri": f"{base}.json", "scalers_uri": f"{base}.scalers.json"}


def _violin_uri(uri: str, key: str) -> str:
    role, _, name = key.partition(":")
    return f"{_base(uri)}.{plot_name(f'violin-{role}', name)}"


def _check_channels(frame: pd.DataFrame, spec: DatasetConfig) -> None:
    for role, names in (("input", spec.input_channels), ("output", spec.output_channels)):
        missing = [n for n in names if n not in frame.columns]
        if missing:
            raise WindowError(
                "COLUMN_NOT_FOUND", f"dataset {spec.name!r}: {role} channel {missing[0]!r} is not a channel of the "
                f"input frame (channels: {list(frame.columns)})",
                details={"role": role, "missing": missing, "available": list(frame.columns)},
            )


def samples_view(dataset: WindowedDataset, split_codes: np.ndarray) -> pd.DataFrame:
    """The tabular view the gates validate: per sample its split and per feature its window min and max."""
    columns: dict[str, np.ndarray] = {"split": split_codes.astype(np.float64)}
    for role, names, array in (("input", dataset.input_features, dataset.X),
                               ("output", dataset.output_features, dataset.Y)):
        for j, name in enumerate(names):
            columns[f"{role}:{name}:min"] = array[:, :, j].min(axis=1)
            columns[f"{role}:{name}:max"] = array[:, :, j].max(axis=1)
    index = pd.DatetimeIndex(dataset.reference_times, name=INDEX_NAME)
    return pd.DataFrame(columns, index=index)


def _dropped_by_reason(by_channel: dict[str, dict[str, int]]) -> dict[str, int]:
    """Samples dropped per reason, summed over channels (a sample may count under several channels)."""
    out = dict.fromkeys(DROP_REASONS, 0)
    for reasons in by_channel.values():
        for reason, count in reasons.items():
            out[reason] = out.get(reason, 0) + int(count)
    return out


def _reusable(ctx: RunContext, output: StageOutput) -> bool:
    store = ctx.artifacts()
    uris = [output.report.get(k) for k in ("npz_uri", "sidecar_uri", "scalers_uri")]
    uris += list(output.report.get("violin_uris", {}).values())
    return all(u and store.exists(u) for u in uris)


def _slot(input_output: StageOutput, spec: DatasetConfig, ctx: RunContext) -> OutputSlot:
    return output_slot(ctx, STAGE, spec.name, spec.parameters_hash(), [["frame", input_output.ref.sha256]])


def _identity(input_output: StageOutput, spec: DatasetConfig, ctx: RunContext) -> CacheIdentity:
    slot = _slot(input_output, spec, ctx)
    return slot_identity(ctx, slot, *_object_uris(slot.uri).values())


@task(name="dataset", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def build_dataset(input_output: StageOutput, spec: DatasetConfig, ctx: RunContext) -> StageOutput:
    """Windows, split and scalers over the input frame (read by reference, checksum verified)."""
    slot = claim(ctx, _slot(input_output, spec, ctx))
    uris = _object_uris(slot.uri)
    for uri in uris.values():
        claim_extra(uri)
    reused = reuse_output(ctx, slot)
    if reused is not None:
        for uri in reused.report.get("violin_uris", {}).values():
            claim_extra(uri)
        if _reusable(ctx, reused):
            return reused
    frame = read_frame(input_output.ref.uri, expected_sha256=input_output.ref.sha256,
                       storage_options=ctx.storage_options())
    _check_channels(frame, spec)
    progress = ProgressReporter(f"dataset {spec.name}")
    dataset = build_windows({c: frame[c] for c in spec.input_channels}, {c: frame[c] for c in spec.output_channels},
                            spec.windows, progress=progress)
    parts = split(dataset, spec.split, progress=progress)
    scalers = fit_scalers(parts, spec.scaling, spec.windows.time_features, progress=progress)
    codes = np.empty(dataset.n_samples, dtype=np.float64)
    for code, part in enumerate((parts.train, parts.val, parts.test)):
        codes[part.indices] = code

    store = ctx.artifacts()
    npz, sidecar = dataset.to_bytes()
    npz_info = store.put_bytes(uris["npz_uri"], npz)
    store.put_bytes(uris["sidecar_uri"], sidecar)
    store.put_bytes(uris["scalers_uri"], scalers.to_json().encode("utf-8"))
    violin_uris: dict[str, str] = {}
    for key, png in violin_plots(dataset).items():
        uri = _violin_uri(slot.uri, key)
        claim_extra(uri)
        store.put_bytes(uri, png)
        violin_uris[key] = uri

    windows = dataset.report
    n_train, n_val, n_test = parts.counts
    report: dict[str, Any] = {
        "stage": STAGE, "name": spec.name, "rows_in": len(frame), "rows_out": dataset.n_samples,
        "input_channels": spec.input_channels, "output_channels": spec.output_channels,
        "n_in": spec.windows.n_in, "n_out": spec.windows.n_out,
        "stride_minutes": spec.windows.stride_minutes, "offset_minutes": spec.windows.offset_minutes,
        "x_shape": list(dataset.X.shape), "y_shape": list(dataset.Y.shape),
        "input_features": list(dataset.input_features), "output_features": list(dataset.output_features),
        "calendar_features": list(dataset.calendar_features),
        "samples": {"train": n_train, "val": n_val, "test": n_test, "total": dataset.n_samples},
        "references_total": windows.references_total, "samples_dropped": windows.samples_dropped,
        "dropped_by_reason": _dropped_by_reason(windows.samples_dropped_by_channel),
        "dropped_by_channel": windows.samples_dropped_by_channel,
        "npz_sha256": npz_info.sha256, "violin_uris": violin_uris, **uris,
        "warnings": [w.model_dump(mode="json") for w in (*windows.warnings, *scalers.report.warnings)],
        "windows": windows.model_dump(mode="json"), "split": parts.report.model_dump(mode="json"),
        "scaling": scalers.report.model_dump(mode="json"),
    }
    output = persist_output(ctx, slot, samples_view(dataset, codes), report)
    progress.finish()
    return output


build_dataset.on_rollback(remove_slot)


def _windows_parameters(output: StageOutput) -> dict[str, Any]:
    channels = list(output.ref.columns)
    return {"channels": channels, "window_columns": [c for c in channels if c != "split"],
            "n_samples": output.report["samples"]["total"]}


def _features_parameters(output: StageOutput) -> dict[str, Any]:
    calendar = output.report["calendar_features"]
    periodic = [f"input:{f}:{s}" for f in calendar if f != "H" for s in ("min", "max")]
    holiday = [f"input:H:{s}" for s in ("min", "max")] if "H" in calendar else []
    return {"periodic_columns": periodic, "holiday_columns": holiday, "calendar_columns": periodic + holiday}


@task(name="register-dataset", cache_policy=NO_CACHE)
@retries_in_body
def register_dataset(output: StageOutput, spec: DatasetConfig, source: StageOutput, ctx: RunContext) -> str | None:
    """Upsert the ``datasets`` row of a gated dataset; a reused dataset keeps the row it already has."""
    report = output.report
    store = ctx.metadata()
    try:
        if output.reused and store.count_datasets(name=spec.name, uri=report["npz_uri"]) > 0:
            return None
        tf = spec.windows.time_features
        return store.record_dataset(
            run_id=ctx.run_id, name=spec.name, input_channels=spec.input_channels,
            output_channels=spec.output_channels, n_in=spec.windows.n_in, n_out=spec.windows.n_out,
            stride_minutes=spec.windows.stride_minutes, offset_minutes=spec.windows.offset_minutes,
            window_options=spec.windows.model_dump(mode="json"),
            time_feature_options=tf.model_dump(mode="json") if tf is not None else None,
            n_samples=report["samples"]["total"], n_train=report["samples"]["train"],
            n_val=report["samples"]["val"], n_test=report["samples"]["test"],
            reference_start=output.first_utc, reference_end=output.last_utc,
            source_output_ids=[source.output_id], uri=report["npz_uri"], sha256=report["npz_sha256"],
        )
    finally:
        store.dispose()


def publish_dataset(output: StageOutput) -> None:
    """Violin plots as link artifacts, and a table of split counts and drop reasons."""
    report = output.report
    for key, uri in report.get("violin_uris", {}).items():
        create_link_artifact(uri, link_text=f"violin {key}", key=artifact_key(STAGE, output.output_name, "violin", key),
                             description=f"distribution of {key} over every sample and step")
    rows = [{"kind": "split", "name": k, "samples": v} for k, v in report["samples"].items()]
    rows += [{"kind": "dropped", "name": k, "samples": v} for k, v in report["dropped_by_reason"].items()]
    create_table_artifact(rows, key=artifact_key(STAGE, output.output_name, "samples"),
                          description=f"dataset {output.output_name}: samples per split and dropped samples by reason")


def run_dataset(input_output: StageOutput, spec: DatasetConfig, ctx: RunContext) -> StageOutput:
    """Build, gate (``windows``, then ``features`` when calendar features exist) and register the dataset as
    one transaction: a failed gate or registration removes every object and row (see ``run_gated``)."""
    with transaction():
        output = cached_output(build_dataset, input_output, spec, ctx)
        gate = quality_gate(output, WINDOWS_SUITE, _windows_parameters(output), ctx)
        if output.report["calendar_features"]:
            features = quality_gate(output, FEATURES_SUITE, _features_parameters(output), ctx)
            gate = {**gate, "features": features}
        output = register_output(output.model_copy(update={"gate": gate}), ctx)
        register_dataset(output, spec, input_output, ctx)
    publish_report(output)
    publish_dataset(output)
    return output
