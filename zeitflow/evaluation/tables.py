"""Evaluation tables (stages.md §10.2): ``evaluate`` turns test truth and forecasts into the ``overall``,
``per_step`` and ``reasons`` tables of every averaging level, and ``EvaluationTables`` serialises them.

All metrics are computed in original units on pooled pairs with ``zeitflow.evaluation.metrics.all_metrics``,
vectorised over samples and blocks: the only Python loops run over models, channels and averaging levels.

Decisions where §10.2 leaves room:
- ``channel_steps_minutes`` is looked up as ``output:<channel>`` (the key ``build_windows`` uses) and then as the
  plain channel name, so any object with the three dataset attributes works.
- The skill reference is *unavailable* when ``unavailable`` names it (its reason is used as is, e.g.
  ``SEASON_SHORTER_THAN_HORIZON``) or when ``predictions`` has no entry for it.
- A ``mase_season_steps`` key that is not an output channel raises ``COLUMN_NOT_FOUND``, so that a misspelt
  channel cannot silently fall back to the default lag.
- MASE uses the same training scale at every averaging level and block (the scale of the raw training series).
- In Parquet, NaN metric values are stored as nulls (as in frames, §0.3); reading back gives NaN again.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from numpy.typing import ArrayLike

from zeitflow.errors import EvaluationError, StorageError
from zeitflow.evaluation.metrics import METRIC_NAMES, TRAINING_TOO_SHORT, MetricResult, all_metrics, seasonal_scale
from zeitflow.io.artifacts import PARQUET_COMPRESSION, write_bytes
from zeitflow.options.base import canonical_json
from zeitflow.options.evaluation import EvaluationOptions
from zeitflow.reports import ProgressCallback, ProgressEvent, emit
from zeitflow.stages.grid import minutes_to_ns

__all__ = [
    "IRREGULAR_SERIES", "NO_COMMON_SKILL_PAIRS", "NO_TRAINING_SAMPLES", "OVERALL_COLUMNS", "PER_STEP_COLUMNS",
    "REASONS_COLUMNS", "REFERENCE_MAE_ZERO", "STAGE", "DatasetMeta", "EvaluationTables", "MaseScale",
    "default_season_steps", "evaluate",
]

STAGE: Final = "evaluation"
IRREGULAR_SERIES: Final = "IRREGULAR_SERIES"
NO_TRAINING_SAMPLES: Final = "no training samples"
NO_COMMON_SKILL_PAIRS: Final = "no pair valid for truth, model and reference"
REFERENCE_MAE_ZERO: Final = "reference MAE is zero"
NS_PER_DAY: Final = 86_400 * 10**9
FORMAT: Final = "zeitflow.evaluation/1"
TABLE_NAMES: Final = ("overall", "per_step", "reasons")

_VALUE_COLUMNS: Final = ("n_pairs", "mae", "mse", "rmse", "mape", "mape_excluded", "smape", "wape", "nrmse", "mase",
                         "r2", "skill_mae")
OVERALL_COLUMNS: Final = ("model", "channel", "n_avg", "delta_minutes", *_VALUE_COLUMNS)
PER_STEP_COLUMNS: Final = ("model", "channel", "n_avg", "step", "lead_start_minutes", "lead_end_minutes",
                           *_VALUE_COLUMNS)
REASONS_COLUMNS: Final = ("model", "channel", "n_avg", "step", "metric", "reason")
_REASON_METRICS: Final = (*METRIC_NAMES, "skill_mae")
_STRING_COLUMNS: Final = frozenset({"model", "channel", "metric", "reason"})
_INT_COLUMNS: Final = frozenset({"n_avg", "n_pairs", "mape_excluded", "step"})


class DatasetMeta(Protocol):
    """What ``evaluate`` reads from a ``WindowedDataset``."""

    output_features: list[str]
    output_offsets_minutes: Mapping[str, ArrayLike]
    channel_steps_minutes: Mapping[str, float]


@dataclass(frozen=True)
class MaseScale:
    """The MASE scale of one output channel: the training-span restriction (``rows``, ``step_minutes``), the
    lag ``m`` and ``scale`` (a ``seasonal_scale`` result; its ``reason`` explains a NaN)."""

    rows: int
    step_minutes: float | None
    m: int | None
    scale: MetricResult


# ------------------------------------------------------------------------------------------------
# the tables
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class EvaluationTables:
    """``overall`` (one row per model, channel, n_avg), ``per_step`` (… and block ``step``), ``reasons`` (one row
    per NaN metric value, ``step`` null for overall rows) and ``omitted_levels`` (§10.2). ``models`` and
    ``channels`` keep the evaluated names in table order; ``mase_scales`` documents each channel's MASE scale."""

    overall: pd.DataFrame
    per_step: pd.DataFrame
    reasons: pd.DataFrame
    omitted_levels: list[int]
    models: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    mase_scales: dict[str, MaseScale] = field(default_factory=dict)

    def overall_for(self, model: str, channel: str) -> pd.DataFrame:
        """The "rows = levels" view of one model and channel: ``overall`` filtered on both."""
        for kind, name, known in (("model", model, self.models), ("channel", channel, self.channels)):
            if name not in known:
                raise EvaluationError("COLUMN_NOT_FOUND", f"{kind} {name!r} was not evaluated; known: {list(known)}",
                                      details={kind: name, "known": list(known)})
        rows = (self.overall["model"] == model) & (self.overall["channel"] == channel)
        return self.overall.loc[rows].reset_index(drop=True)

    # ---- serialisation ----

    def to_parquet_bytes(self) -> dict[str, bytes]:
        """``{"overall.parquet": …, "per_step.parquet": …, "reasons.parquet": …}``: deterministic Parquet bytes
        (own schema without pandas metadata; the ``zeitflow`` metadata entry carries ``omitted_levels``)."""
        meta = {"format": FORMAT, "omitted_levels": [int(n) for n in self.omitted_levels],
                "models": list(self.models), "channels": list(self.channels)}
        out: dict[str, bytes] = {}
        for name in TABLE_NAMES:
            sink = io.BytesIO()
            table = _arrow_table(getattr(self, name), {**meta, "table": name})
            pq.write_table(table, sink, compression=PARQUET_COMPRESSION, write_statistics=True, store_schema=True)
            out[f"{name}.parquet"] = sink.getvalue()
        return out

    def to_parquet(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        """Write the three tables into ``directory``, each atomically (``zeitflow.io.artifacts.write_bytes``);
        returns the paths keyed by file name. A failed write raises ``StorageError`` ``WRITE_FAILED``."""
        folder = Path(directory)
        payloads = self.to_parquet_bytes()
        for name, data in payloads.items():
            write_bytes(folder / name, data)
        return {name: folder / name for name in payloads}

    @classmethod
    def from_parquet_bytes(cls, files: Mapping[str, bytes]) -> EvaluationTables:
        """Inverse of ``to_parquet_bytes`` (the MASE scale details are not stored and come back empty)."""
        frames: dict[str, pd.DataFrame] = {}
        meta: dict[str, Any] = {}
        for name in TABLE_NAMES:
            table = pq.read_table(io.BytesIO(files[f"{name}.parquet"]))
            meta = json.loads((table.schema.metadata or {}).get(b"zeitflow", b"{}"))
            frames[name] = _typed(table.to_pandas(), _columns_of(name))
        return cls(frames["overall"], frames["per_step"], frames["reasons"], list(meta.get("omitted_levels", [])),
                   tuple(meta.get("models", ())), tuple(meta.get("channels", ())))

    @classmethod
    def read_parquet(cls, directory: str | os.PathLike[str]) -> EvaluationTables:
        """Read the three files written by ``to_parquet``."""
        folder = Path(directory)
        try:
            files = {f"{name}.parquet": (folder / f"{name}.parquet").read_bytes() for name in TABLE_NAMES}
        except FileNotFoundError as exc:
            raise StorageError("OBJECT_NOT_FOUND", f"{exc.filename} does not exist",
                               details={"uri": str(exc.filename)}) from exc
        return cls.from_parquet_bytes(files)

    def to_json(self) -> dict[str, Any]:
        """``{"overall": [...], "per_step": [...], "reasons": [...], "omitted_levels": [...]}`` of plain Python
        values (records in table order), NaN and null as ``None``."""
        return {
            "overall": _records(self.overall), "per_step": _records(self.per_step),
            "reasons": _records(self.reasons), "omitted_levels": [int(n) for n in self.omitted_levels],
        }

    def summary(self, n_avg: int | None = None) -> dict[str, dict[str, dict[str, float | int | None]]]:
        """Per model and channel: ``mae``, ``rmse``, ``wape``, ``mase``, ``skill_mae``, ``n_avg`` and ``n_pairs``
        at level ``n_avg`` (default: the smallest level evaluated, i.e. 1), NaN as ``None``."""
        levels = sorted({int(n) for n in self.overall["n_avg"]})
        if n_avg is None:
            if not levels:
                return {model: {channel: {} for channel in self.channels} for model in self.models}
            n_avg = levels[0]
        elif n_avg not in levels:
            raise ValueError(f"n_avg={n_avg!r} was not evaluated; evaluated levels: {levels}")
        rows = self.overall.loc[self.overall["n_avg"] == n_avg]
        out: dict[str, dict[str, dict[str, float | int | None]]] = {}
        for record in _records(rows):
            out.setdefault(str(record["model"]), {})[str(record["channel"])] = {
                "mae": record["mae"], "rmse": record["rmse"], "wape": record["wape"], "mase": record["mase"],
                "skill_mae": record["skill_mae"], "n_avg": record["n_avg"], "n_pairs": record["n_pairs"],
            }
        return out


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _columns_of(name: str) -> tuple[str, ...]:
    return {"overall": OVERALL_COLUMNS, "per_step": PER_STEP_COLUMNS, "reasons": REASONS_COLUMNS}[name]


def _arrow_type(column: str) -> pa.DataType:
    if column in _STRING_COLUMNS:
        return pa.string()
    return pa.int64() if column in _INT_COLUMNS else pa.float64()


def _arrow_table(frame: pd.DataFrame, meta: dict[str, Any]) -> pa.Table:
    """An Arrow table with our own schema (no pandas metadata, no index), so the bytes are deterministic."""
    fields = [pa.field(c, _arrow_type(c), nullable=(c == "step" or _arrow_type(c) == pa.float64()))
              for c in frame.columns]
    arrays = []
    for column in frame.columns:
        kind = _arrow_type(column)
        if kind == pa.string():
            arrays.append(pa.array(frame[column].astype(object).tolist(), type=kind))
        elif column == "step" and isinstance(frame[column].dtype, pd.Int64Dtype):
            arrays.append(pa.array(frame[column].to_numpy(dtype=np.float64, na_value=np.nan), from_pandas=True)
                          .cast(kind))
        else:
            arrays.append(pa.array(frame[column].to_numpy(), type=kind, from_pandas=True))
    schema = pa.schema(fields, metadata={b"zeitflow": canonical_json(meta).encode("utf-8")})
    return pa.Table.from_arrays(arrays, schema=schema)


def _typed(frame: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """A table with the canonical dtypes: str names, int64 counts, float64 metrics, and ``step`` as nullable
    Int64 in ``reasons`` (null for overall rows)."""
    data: dict[str, Any] = {}
    for column in columns:
        values = frame[column]
        if column in _STRING_COLUMNS:
            data[column] = pd.Series(values.to_numpy(dtype=object), dtype="str")
        elif column == "step" and columns == REASONS_COLUMNS:
            data[column] = pd.Series(values, dtype="Int64")
        elif column in _INT_COLUMNS:
            data[column] = pd.Series(np.asarray(values, dtype=np.int64))
        else:
            data[column] = pd.Series(np.asarray(values, dtype=np.float64))
    return pd.DataFrame(data, columns=list(columns)).reset_index(drop=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values: str, int, float; NaN and missing as None."""
    columns: dict[str, list[Any]] = {}
    for column in frame.columns:
        series = frame[column]
        if column in _STRING_COLUMNS:
            columns[column] = [str(v) for v in series.to_numpy(dtype=object)]
        elif isinstance(series.dtype, pd.Int64Dtype):
            columns[column] = [None if v is pd.NA else int(v) for v in series.astype(object)]
        elif column in _INT_COLUMNS:
            columns[column] = [int(v) for v in series.to_numpy(dtype=np.int64)]
        else:
            columns[column] = [None if math.isnan(v) else float(v) for v in series.to_numpy(dtype=np.float64)]
    names = list(frame.columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*(columns[c] for c in names), strict=True)]


# ------------------------------------------------------------------------------------------------
# input checks
# ------------------------------------------------------------------------------------------------


def _shape_error(message: str, **details: Any) -> EvaluationError:
    return EvaluationError("SHAPE_MISMATCH", message, details=details)


def _utc_ns(index: Any, what: str) -> np.ndarray:
    """Integer UTC nanoseconds of a datetime index (naive values are read as UTC)."""
    try:
        times = pd.DatetimeIndex(index)
    except (TypeError, ValueError) as exc:
        raise _shape_error(f"{what} must be datetimes: {exc}", what=what) from exc
    times = times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")
    return np.asarray(times[~times.isna()].as_unit("ns").asi8, dtype=np.int64)


def _channel_step(steps: Mapping[str, float], channel: str) -> float:
    for key in (f"output:{channel}", channel):
        if key in steps:
            return float(steps[key])
    raise _shape_error(f"channel_steps_minutes has no entry for output channel {channel!r}", channel=channel,
                       known=sorted(steps))


def _offsets(dataset: DatasetMeta, channel: str, n_out: int) -> np.ndarray:
    if channel not in dataset.output_offsets_minutes:
        raise _shape_error(f"output_offsets_minutes has no entry for output channel {channel!r}", channel=channel)
    offsets = np.asarray(dataset.output_offsets_minutes[channel], dtype=np.float64).reshape(-1)
    if offsets.size != n_out:
        raise _shape_error(f"output channel {channel!r} has {offsets.size} window offsets but the truth has "
                           f"n_out={n_out} steps", channel=channel, offsets=int(offsets.size), n_out=n_out)
    return offsets


def _check_inputs(y_true: ArrayLike, predictions: Mapping[str, ArrayLike], features: list[str]
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    truth = np.asarray(y_true, dtype=np.float64)
    if truth.ndim != 3:
        raise _shape_error(f"y_true must have shape (n_test, n_out, c_out); got {truth.shape}",
                           y_true=list(truth.shape))
    if truth.shape[0] == 0:
        raise EvaluationError("NO_TEST_SAMPLES", "there are no test samples to evaluate",
                              details={"y_true": list(truth.shape)})
    if truth.shape[2] != len(features):
        raise _shape_error(f"y_true has {truth.shape[2]} output channels but the dataset has {len(features)}: "
                           f"{features}", y_true=list(truth.shape), output_features=features)
    forecasts: dict[str, np.ndarray] = {}
    for name, values in predictions.items():
        forecast = np.asarray(values, dtype=np.float64)
        if forecast.shape != truth.shape:
            raise _shape_error(f"the forecast of model {name!r} has shape {forecast.shape} but y_true has shape "
                               f"{truth.shape}", model=name, prediction=list(forecast.shape),
                               y_true=list(truth.shape))
        forecasts[str(name)] = forecast
    return truth, forecasts


# ------------------------------------------------------------------------------------------------
# MASE scale (§10.1)
# ------------------------------------------------------------------------------------------------


def default_season_steps(step_ns: int) -> int:
    """One day in steps, rounded half up, at least 1: ⌊(2·86,400·10⁹ + step_ns) / (2·step_ns)⌋."""
    return max(1, (2 * NS_PER_DAY + step_ns) // (2 * step_ns))


def _mase_scale(series: pd.Series, channel: str, start_ns: int | None, end_ns: int | None,
                season_steps: int | None) -> MaseScale:
    """Restrict ``series`` to [start_ns, end_ns] (integer ns, inclusive), check regularity, derive m and the
    scale; every failure becomes a NaN scale with its reason."""
    if not isinstance(series, pd.Series) or not isinstance(series.index, pd.DatetimeIndex):
        raise _shape_error(f"train_series[{channel!r}] must be a pandas Series with a DatetimeIndex",
                           channel=channel)
    times = _utc_ns(series.index, f"the index of train_series[{channel!r}]")
    values = series.to_numpy(dtype=np.float64)
    if start_ns is None or end_ns is None:
        return MaseScale(0, None, None, MetricResult(math.nan, 0, 0, 0, NO_TRAINING_SAMPLES))
    inside = (times >= start_ns) & (times <= end_ns)
    times, values = times[inside], values[inside]
    if times.size < 2:
        return MaseScale(int(times.size), None, None, MetricResult(math.nan, 0, 0, 0, TRAINING_TOO_SHORT))
    steps = np.diff(times)
    step_ns = int(steps[0])
    if step_ns <= 0 or not bool((steps == step_ns).all()):
        return MaseScale(int(times.size), None, None, MetricResult(math.nan, 0, 0, 0, IRREGULAR_SERIES))
    m = season_steps if season_steps is not None else default_season_steps(step_ns)
    return MaseScale(int(times.size), step_ns / 60e9, m, seasonal_scale(values, m))


# ------------------------------------------------------------------------------------------------
# evaluate
# ------------------------------------------------------------------------------------------------


def _blocks(values: np.ndarray, n_avg: int) -> np.ndarray:
    """(n, n_out) → (n, n_blocks): the mean over each block of ``n_avg`` steps (NaN if any value is NaN); the
    steps after the last whole block are unused."""
    if n_avg == 1:
        return values
    n, n_out = values.shape
    n_blocks = n_out // n_avg
    return values[:, :n_blocks * n_avg].reshape(n, n_blocks, n_avg).mean(axis=2)


def _skill(truth: np.ndarray, model: np.ndarray, reference: np.ndarray | None,
           unavailable: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Per group (row of 2-D arrays): 1 − MAE_model / MAE_reference over the pairs valid for all three."""
    groups = truth.shape[0]
    reasons = np.full(groups, None, dtype=object)
    if reference is None:
        reasons[:] = unavailable
        return np.full(groups, np.nan), reasons
    valid = ~(np.isnan(truth) | np.isnan(model) | np.isnan(reference))
    n = valid.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        mae_model = np.where(valid, np.abs(truth - model), 0.0).sum(axis=1) / n
        mae_reference = np.where(valid, np.abs(truth - reference), 0.0).sum(axis=1) / n
        value = 1.0 - mae_model / mae_reference
    no_pairs, zero = n == 0, mae_reference == 0
    reasons[zero] = REFERENCE_MAE_ZERO
    reasons[no_pairs] = NO_COMMON_SKILL_PAIRS
    return np.where(no_pairs | zero, np.nan, value), reasons


class _Columns:
    """Column-wise row accumulator: arrays are appended per chunk and concatenated once."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self.data: dict[str, list[np.ndarray]] = {name: [] for name in names}

    def add(self, size: int, **columns: Any) -> None:
        for name, value in columns.items():
            self.data[name].append(np.full(size, value, dtype=object) if isinstance(value, str) else value)

    def frame(self) -> pd.DataFrame:
        merged = {name: np.concatenate(parts) if parts else np.array([], dtype=object)
                  for name, parts in self.data.items()}
        return _typed(pd.DataFrame(merged), self.names)


class _Tables:
    """The rows of ``overall``, ``per_step`` and ``reasons``, added per (model, channel, n_avg) in table order."""

    def __init__(self) -> None:
        self.overall = _Columns(OVERALL_COLUMNS)
        self.per_step = _Columns(PER_STEP_COLUMNS)
        self.reasons = _Columns(REASONS_COLUMNS)

    def add(self, model: str, channel: str, n_avg: int, truth: np.ndarray, forecast: np.ndarray,
            reference: np.ndarray | None, reference_reason: str | None, normalizer: str, scale: MetricResult,
            delta_minutes: float, offsets: np.ndarray) -> None:
        """One overall row over all (sample, block) pairs, sample-major, and one per-step row per block;
        ``truth``, ``forecast`` and ``reference`` are block means of shape (n_test, n_blocks)."""
        n_blocks = truth.shape[1]
        steps = np.arange(n_blocks)
        pooled = (truth.reshape(1, -1), forecast.reshape(1, -1),
                  None if reference is None else reference.reshape(1, -1))
        by_block = (np.ascontiguousarray(truth.T), np.ascontiguousarray(forecast.T),
                    None if reference is None else np.ascontiguousarray(reference.T))
        for is_overall, (t, p, r) in ((True, pooled), (False, by_block)):
            metrics = all_metrics(t, p, normalizer=normalizer, mase_scale=scale)
            skill, skill_reasons = _skill(t, p, r, reference_reason)
            size = t.shape[0]
            common = dict(model=model, channel=channel, n_avg=np.full(size, n_avg, dtype=np.int64),
                          n_pairs=metrics.n, mape_excluded=metrics.mape_excluded, skill_mae=skill,
                          **{name: metrics.values[name] for name in METRIC_NAMES})
            if is_overall:
                self.overall.add(size, delta_minutes=np.full(size, delta_minutes * n_avg), **common)
                group_steps = np.full(size, np.nan)
            else:
                self.per_step.add(size, step=steps, lead_start_minutes=offsets[steps * n_avg],
                                  lead_end_minutes=offsets[(steps + 1) * n_avg - 1], **common)
                group_steps = steps.astype(np.float64)
            reasons = np.stack([*(metrics.reasons[name] for name in METRIC_NAMES), skill_reasons], axis=1)
            group, metric = np.nonzero(reasons != None)  # noqa: E711 - elementwise test for None
            self.reasons.add(group.size, model=model, channel=channel, n_avg=np.full(group.size, n_avg, dtype=np.int64),
                             step=group_steps[group], metric=np.asarray(_REASON_METRICS, dtype=object)[metric],
                             reason=reasons[group, metric])


def evaluate(y_true: ArrayLike, predictions: Mapping[str, ArrayLike], dataset: DatasetMeta,
             train_series: Mapping[str, pd.Series], options: EvaluationOptions, *,
             train_reference_times: ArrayLike, unavailable: Mapping[str, str] | None = None,
             progress: ProgressCallback | None = None) -> EvaluationTables:
    """Metric tables of every model, output channel and averaging level n_avg = 1 … ``options.levels`` (§10.2).

    ``y_true`` and each forecast have shape (n_test, n_out, c_out), in original units; ``predictions`` keeps the
    model order of the tables. ``train_series`` holds each output channel's series, which is restricted to the
    training span of ``train_reference_times`` for the MASE scale. ``unavailable`` maps a baseline the caller
    could not compute to its reason; skill relative to it is NaN with that reason. ``progress`` receives one
    ``model`` event per evaluated model (§12).

    Raises ``EvaluationError``: ``SHAPE_MISMATCH`` (shapes, feature list, missing ``train_series`` entry),
    ``NO_TEST_SAMPLES`` (n_test = 0) and ``COLUMN_NOT_FOUND`` (a ``mase_season_steps`` key that is not an output
    channel)."""
    features = [str(f) for f in dataset.output_features]
    truth, forecasts = _check_inputs(y_true, predictions, features)
    n_test, n_out, _ = truth.shape
    offsets = {channel: _offsets(dataset, channel, n_out) for channel in features}
    deltas = {channel: _channel_step(dataset.channel_steps_minutes, channel) for channel in features}
    missing = [channel for channel in features if channel not in train_series]
    if missing:
        raise _shape_error(f"train_series has no entry for the output channels {missing}", missing=missing,
                           output_features=features)
    season_steps = dict(options.mase_season_steps or {})
    unknown = [key for key in season_steps if key not in features]
    if unknown:
        raise EvaluationError("COLUMN_NOT_FOUND", f"mase_season_steps names {unknown}, which are not output "
                              f"channels {features}", details={"unknown": unknown, "output_features": features})

    reference_times = _utc_ns(train_reference_times, "train_reference_times")
    scales: dict[str, MaseScale] = {}
    for channel in features:
        first, last = (minutes_to_ns(float(offsets[channel][0])), minutes_to_ns(float(offsets[channel][-1])))
        span = (int(reference_times.min()) + first, int(reference_times.max()) + last) if reference_times.size \
            else (None, None)
        scales[channel] = _mase_scale(train_series[channel], channel, *span, season_steps.get(channel))

    reference_name = options.reference_baseline
    unavailable = dict(unavailable or {})
    reference_reason = unavailable.get(reference_name)
    if reference_reason is None and reference_name not in forecasts:
        reference_reason = f"reference baseline {reference_name!r} was not computed"

    levels = [n for n in range(1, options.levels + 1) if n_out // n >= 1]
    omitted = [n for n in range(1, options.levels + 1) if n_out // n < 1]
    # channel-major copies, so that block means and group sums run over contiguous memory
    truth_c = np.ascontiguousarray(truth.transpose(2, 0, 1))
    forecasts_c = {name: np.ascontiguousarray(f.transpose(2, 0, 1)) for name, f in forecasts.items()}
    shared = {(j, n): (_blocks(truth_c[j], n), None if reference_reason is not None
                       else _blocks(forecasts_c[reference_name][j], n))
              for j in range(len(features)) for n in levels}

    tables = _Tables()
    for done, (model, forecast) in enumerate(forecasts_c.items(), start=1):
        for j, channel in enumerate(features):
            for n_avg in levels:
                t, r = shared[(j, n_avg)]
                tables.add(model, channel, n_avg, t, _blocks(forecast[j], n_avg), r, reference_reason,
                           options.nrmse_normalizer, scales[channel].scale, deltas[channel], offsets[channel])
        emit(progress, ProgressEvent(STAGE, "model", done, len(forecasts_c), f"evaluated {model}"))

    return EvaluationTables(tables.overall.frame(), tables.per_step.frame(), tables.reasons.frame(), omitted,
                            tuple(forecasts), tuple(features), scales)
