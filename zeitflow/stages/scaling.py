"""Split and scaling (stages.md §8): ``split`` cuts a ``WindowedDataset`` into train/val/test with exact
integer counts, and ``fit_scalers`` fits one MinMax scaler per column of X and of Y.

Scaler formula (per column, §8.2), with d = data_max − data_min, or d = 1 when data_max = data_min (the
scikit-learn zero-range rule; such a column adds warning ``CONSTANT_FEATURE``):

    x′ = range_min + ((x − data_min) · (range_max − range_min)) / d
    x  = data_min + ((x′ − range_min) · d) / (range_max − range_min)

No clipping. Unscaled columns (``scale=false``) use the identity. The inverse is exact up to floating-point
rounding: |inverse(transform(x)) − x| ≤ a few ulps of max(|x|, |data_min|, d).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from pydantic import Field

from zeitflow.errors import ScalingError
from zeitflow.options.scaling import ChannelScaling, ScalingOptions, SplitOptions
from zeitflow.reports import ProgressCallback, ProgressEvent, ReportWarning, StageReport, emit

if TYPE_CHECKING:
    from zeitflow.stages.windows import WindowedDataset

__all__ = ["ColumnScaler", "ScalerSet", "ScalingReport", "SplitDataset", "SplitPart", "SplitReport", "fit_scalers",
           "split", "split_counts"]

FORMAT: Final = "zeitflow.scalers/1"
_CALENDAR_COMPONENT: Final = {"Y": "year", "M": "month", "W": "week", "D": "day", "H": "holiday"}
_COLUMN_FIELDS: Final = ("key", "role", "name", "scaled", "data_min", "data_max", "range_min", "range_max",
                         "n_fit")


# ------------------------------------------------------------------------------------------------
# Split (§8.1)
# ------------------------------------------------------------------------------------------------


class SplitReport(StageReport):
    """Counts of the split."""

    stage: str = "split"
    n_samples: int = 0
    n_train: int = 0
    n_val: int = 0
    n_test: int = 0


@dataclass(frozen=True, eq=False)
class SplitPart:
    """One split, in chronological order; ``indices`` point into the dataset's samples."""

    X: np.ndarray
    Y: np.ndarray
    reference_times: pd.DatetimeIndex
    indices: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.size)


@dataclass(frozen=True, eq=False)
class SplitDataset:
    """train / val / test plus the feature names of the dataset."""

    train: SplitPart
    val: SplitPart
    test: SplitPart
    input_features: list[str]
    output_features: list[str]
    calendar_features: list[str] = field(default_factory=list)
    report: SplitReport = field(default_factory=SplitReport)

    @property
    def counts(self) -> tuple[int, int, int]:
        """(n_train, n_val, n_test)."""
        return len(self.train), len(self.val), len(self.test)


def _count(n: int, fraction: Any) -> int:
    """⌊fraction·n + ½⌋ in exact integer arithmetic: ⌊(2·n·p + q) / (2·q)⌋."""
    p, q = fraction.numerator, fraction.denominator
    return (2 * n * p + q) // (2 * q)


def split_counts(n: int, options: SplitOptions) -> tuple[int, int, int]:
    """(n_train, n_val, n_test) of §8.1 step 2-3; raises ``SPLIT_TOO_SMALL``."""
    fractions = [options.fraction(f"{s}_fraction") for s in ("train", "val", "test")]
    n_train, n_val = _count(n, fractions[0]), _count(n, fractions[1])
    n_test = n - n_train - n_val
    if n_test < 0:
        n_val += n_test
        n_test = 0
    counts = (n_train, n_val, n_test)
    if any(f > 0 and c < 1 for f, c in zip(fractions, counts, strict=True)):
        raise ScalingError(
            "SPLIT_TOO_SMALL",
            f"n={n} samples give train/val/test = {n_train}/{n_val}/{n_test}: every split with a positive "
            "fraction needs at least one sample",
            details={"n": n, "n_train": n_train, "n_val": n_val, "n_test": n_test,
                     "fractions": [options.train_fraction, options.val_fraction, options.test_fraction]},
        )
    return counts


def _part(dataset: WindowedDataset, indices: np.ndarray) -> SplitPart:
    indices = np.sort(indices).astype(np.int64)
    return SplitPart(dataset.X[indices], dataset.Y[indices], dataset.reference_times[indices], indices)


def split(dataset: WindowedDataset, options: SplitOptions, *, progress: ProgressCallback | None = None,
          ) -> SplitDataset:
    """Chronological blocks train → val → test, or (``shuffle=true``) blocks of
    ``default_rng(seed).permutation(n)``; each split is returned in chronological order (§8.1)."""
    started = time.perf_counter()
    n = int(dataset.X.shape[0])
    n_train, n_val, n_test = split_counts(n, options)
    order = np.random.default_rng(options.seed).permutation(n) if options.shuffle else np.arange(n)
    parts = (order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:])
    report = SplitReport(
        rows_in=n, rows_out=n, columns_out=["train", "val", "test"], parameters=options.model_dump(mode="json"),
        parameters_hash=options.parameters_hash(), duration_seconds=time.perf_counter() - started,
        n_samples=n, n_train=n_train, n_val=n_val, n_test=n_test,
    )
    emit(progress, ProgressEvent("split", "phase", 1, 1, "split done",
                                 {"n_train": float(n_train), "n_val": float(n_val), "n_test": float(n_test)}))
    return SplitDataset(*(_part(dataset, p) for p in parts), input_features=list(dataset.input_features),
                        output_features=list(dataset.output_features),
                        calendar_features=list(getattr(dataset, "calendar_features", [])), report=report)


# ------------------------------------------------------------------------------------------------
# Scalers (§8.2)
# ------------------------------------------------------------------------------------------------


class ScalingReport(StageReport):
    """What the scalers were fitted on."""

    stage: str = "scaling"
    scaler_fit: str = "train"
    n_fit_samples: int = 0
    constant_columns: list[str] = Field(default_factory=list)


@dataclass(frozen=True)
class ColumnScaler:
    """MinMax parameters of one column; ``key`` is ``input:<name>`` or ``output:<name>``."""

    key: str
    role: str
    name: str
    scaled: bool
    data_min: float
    data_max: float
    range_min: float
    range_max: float
    n_fit: int

    @property
    def d(self) -> float:
        """data_max − data_min, or 1 for a constant column."""
        return 1.0 if self.data_max == self.data_min else self.data_max - self.data_min


@dataclass(frozen=True, eq=False)
class ScalerSet:
    """Fitted scalers for every column of X (``inputs``) and Y (``outputs``)."""

    scaler_fit: str
    inputs: tuple[ColumnScaler, ...]
    outputs: tuple[ColumnScaler, ...]
    report: ScalingReport = field(default_factory=ScalingReport)

    def _params(self, role: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        cols = self.inputs if role == "input" else self.outputs
        dmin = np.array([c.data_min if c.scaled else 0.0 for c in cols])
        d = np.array([c.d if c.scaled else 1.0 for c in cols])
        rmin = np.array([c.range_min if c.scaled else 0.0 for c in cols])
        r = np.array([c.range_max - c.range_min if c.scaled else 1.0 for c in cols])
        return dmin, d, rmin, r

    def _check(self, array: np.ndarray, role: str) -> np.ndarray:
        array = np.asarray(array, dtype=np.float64)
        expected = len(self.inputs if role == "input" else self.outputs)
        if array.ndim != 3 or array.shape[-1] != expected:
            raise ScalingError(
                "SHAPE_MISMATCH", f"expected a 3-D {'X' if role == 'input' else 'Y'} array with {expected} columns "
                f"on the last axis, got shape {array.shape}",
                details={"role": role, "shape": list(array.shape), "columns": expected},
            )
        return array

    def _forward(self, array: np.ndarray, role: str) -> np.ndarray:
        dmin, d, rmin, r = self._params(role)
        return rmin + ((self._check(array, role) - dmin) * r) / d

    def _inverse(self, array: np.ndarray, role: str) -> np.ndarray:
        dmin, d, rmin, r = self._params(role)
        return dmin + ((self._check(array, role) - rmin) * d) / r

    def transform_X(self, X: np.ndarray) -> np.ndarray:  # noqa: N802, N803
        """Scale X (n, n_in, c_in)."""
        return self._forward(X, "input")

    def transform_Y(self, Y: np.ndarray) -> np.ndarray:  # noqa: N802, N803
        """Scale Y (n, n_out, c_out)."""
        return self._forward(Y, "output")

    def inverse_transform_X(self, X: np.ndarray) -> np.ndarray:  # noqa: N802, N803
        """Back to original units for X."""
        return self._inverse(X, "input")

    def inverse_transform_Y(self, Y: np.ndarray) -> np.ndarray:  # noqa: N802, N803
        """Back to original units for Y (e.g. predictions)."""
        return self._inverse(Y, "output")

    def to_json(self) -> str:
        """Portable JSON of §8.2 (round-trip float precision, deterministic text)."""
        columns = [{f: getattr(c, f) for f in _COLUMN_FIELDS} for c in (*self.inputs, *self.outputs)]
        return json.dumps({"format": FORMAT, "scaler_fit": self.scaler_fit, "columns": columns},
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> ScalerSet:
        """Inverse of ``to_json``; an unknown format or missing/invalid fields raise ``SCALER_FORMAT_INVALID``."""
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ScalingError("SCALER_FORMAT_INVALID", f"scalers are not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            found = data.get("format") if isinstance(data, dict) else None
            raise ScalingError("SCALER_FORMAT_INVALID", f"unknown scaler format {found!r}; expected {FORMAT!r}",
                               details={"format": found})
        if data.get("scaler_fit") not in ("train", "all") or not isinstance(data.get("columns"), list):
            raise ScalingError("SCALER_FORMAT_INVALID", "scalers need 'scaler_fit' and a 'columns' list")
        columns = [_column_from(i, c) for i, c in enumerate(data["columns"])]
        return cls(scaler_fit=data["scaler_fit"], inputs=tuple(c for c in columns if c.role == "input"),
                   outputs=tuple(c for c in columns if c.role == "output"),
                   report=ScalingReport(scaler_fit=data["scaler_fit"]))


def _column_from(i: int, raw: Any) -> ColumnScaler:
    if not isinstance(raw, dict):
        raise ScalingError("SCALER_FORMAT_INVALID", f"columns[{i}] is not an object")
    missing = [f for f in _COLUMN_FIELDS if f not in raw]
    if missing:
        raise ScalingError("SCALER_FORMAT_INVALID", f"columns[{i}] lacks {missing}", details={"missing": missing})
    numbers = ("data_min", "data_max", "range_min", "range_max")
    bad = [f for f in numbers if isinstance(raw[f], bool) or not isinstance(raw[f], int | float)
           or not math.isfinite(raw[f])]
    if (bad or raw["role"] not in ("input", "output") or not isinstance(raw["scaled"], bool)
            or not raw["range_min"] < raw["range_max"] or raw["data_min"] > raw["data_max"]):
        raise ScalingError("SCALER_FORMAT_INVALID", f"columns[{i}] ({raw.get('key')!r}) holds invalid values",
                           details={"column": raw.get("key"), "fields": bad})
    return ColumnScaler(key=str(raw["key"]), role=raw["role"], name=str(raw["name"]), scaled=raw["scaled"],
                        data_min=float(raw["data_min"]), data_max=float(raw["data_max"]),
                        range_min=float(raw["range_min"]), range_max=float(raw["range_max"]), n_fit=int(raw["n_fit"]))


def _calendar_setting(name: str, time_features: Any) -> ChannelScaling:
    """The component's scale/range for a calendar column (both sin and cos use it); defaults without options."""
    if time_features is None:
        return ChannelScaling()
    comp = getattr(time_features, _CALENDAR_COMPONENT[name[0]])
    return ChannelScaling.model_construct(scale=bool(comp.scale), range_min=float(comp.range_min),
                                          range_max=float(comp.range_max))


def _fit_role(role: str, names: list[str], data: np.ndarray, calendar: set[str], options: ScalingOptions,
              time_features: Any) -> tuple[ColumnScaler, ...]:
    n_fit = int(data.shape[0] * data.shape[1])
    flat = data.reshape(-1, data.shape[-1]) if data.size else np.empty((0, len(names)))
    lo, hi = (flat.min(axis=0), flat.max(axis=0)) if flat.shape[0] else (np.zeros(len(names)),) * 2
    out = []
    for j, name in enumerate(names):
        setting = (_calendar_setting(name, time_features) if name in calendar
                   else options.for_column(role, name))
        out.append(ColumnScaler(key=f"{role}:{name}", role=role, name=name, scaled=setting.scale,
                                data_min=float(lo[j]), data_max=float(hi[j]), range_min=setting.range_min,
                                range_max=setting.range_max, n_fit=n_fit))
    return tuple(out)


def fit_scalers(split: SplitDataset, options: ScalingOptions, time_features: Any = None, *,
                progress: ProgressCallback | None = None) -> ScalerSet:
    """One MinMax scaler per column of X and Y (§8.2), fitted on the training split (``scaler_fit="train"``)
    or on every sample (``"all"``, predecessor parity). Calendar columns take ``scale``/``range_*`` from their
    component in ``time_features`` (``TimeFeatureOptions``)."""
    started = time.perf_counter()
    parts = [split.train] if options.scaler_fit == "train" else [split.train, split.val, split.test]
    X = np.concatenate([p.X for p in parts], axis=0)
    Y = np.concatenate([p.Y for p in parts], axis=0)
    calendar = set(split.calendar_features)
    inputs = _fit_role("input", split.input_features, X, calendar, options, time_features)
    outputs = _fit_role("output", split.output_features, Y, set(), options, time_features)
    constant = [c.key for c in (*inputs, *outputs) if c.scaled and c.data_min == c.data_max]
    warnings = [ReportWarning(code="CONSTANT_FEATURE", message="constant column: scaled with d = 1",
                              count=len(constant), examples=[{"column": k} for k in constant[:5]])] if constant else []
    known = {f"input:{n}" for n in split.input_features} | {f"output:{n}" for n in split.output_features}
    known |= set(split.input_features) | set(split.output_features)
    unused = [k for k in options.channels if k not in known]
    if unused:
        warnings.append(ReportWarning(code="UNUSED_SCALING_KEY", message="scaling settings for unknown columns",
                                      count=len(unused), examples=[{"column": k} for k in unused[:5]]))
    report = ScalingReport(
        rows_in=int(X.shape[0]), rows_out=int(X.shape[0]), columns_out=[c.key for c in (*inputs, *outputs)],
        parameters=options.model_dump(mode="json"), parameters_hash=options.parameters_hash(),
        duration_seconds=time.perf_counter() - started, warnings=warnings, scaler_fit=options.scaler_fit,
        n_fit_samples=int(X.shape[0]), constant_columns=constant,
    )
    emit(progress, ProgressEvent("scaling", "phase", 1, 1, "scalers fitted",
                                 {"columns": float(len(inputs) + len(outputs))}))
    return ScalerSet(scaler_fit=options.scaler_fit, inputs=inputs, outputs=outputs, report=report)
