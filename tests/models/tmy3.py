"""A small real training set for model tests: the first weeks of the TMY3 Greensboro example, windowed,
split and scaled exactly as the pipeline does (stages §6-§8)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from zeitflow.config import load_config
from zeitflow.options.scaling import ScalingOptions, SplitOptions
from zeitflow.options.windows import WindowOptions
from zeitflow.stages.load import read_raw
from zeitflow.stages.scaling import ScalerSet, SplitDataset, fit_scalers, split
from zeitflow.stages.windows import WindowedDataset, build_windows

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tmy3_greensboro.yaml"


@cache
def tmy3_frame() -> pd.DataFrame:
    """The whole TMY3 example as a canonical hourly frame (8760 rows)."""
    config = load_config(EXAMPLE)
    source = config.sources[0]
    return read_raw(source.path, source.load).frame


@dataclass(frozen=True)
class Slice:
    """Windowed, split and scaled arrays of a TMY3 slice."""

    dataset: WindowedDataset
    parts: SplitDataset
    scalers: ScalerSet
    X_train: np.ndarray
    Y_train: np.ndarray
    X_val: np.ndarray
    Y_val: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray


def tmy3_slice(n_in: int = 6, n_out: int = 3, inputs: tuple[str, ...] = ("temperature", "ghi", "humidity"),
               outputs: tuple[str, ...] = ("temperature", "dew_point"), days: int = 21) -> Slice:
    """``days`` days of hourly TMY3 data: n_in hourly inputs (r - n_in + 1 h ... r) -> n_out hourly outputs
    (r + 1 h ... r + n_out h), split 70/20/10 chronologically and MinMax-scaled on the training split."""
    frame = tmy3_frame().iloc[: days * 24]
    spec_in = {c: {"horizon_start_hours": -(n_in - 1), "horizon_end_hours": 0} if n_in > 1
               else {"horizon_start_hours": 0, "horizon_end_hours": 0} for c in inputs}
    spec_out = {c: {"horizon_start_hours": 1, "horizon_end_hours": n_out} if n_out > 1
                else {"horizon_start_hours": 1, "horizon_end_hours": 1} for c in outputs}
    options = WindowOptions(n_in=n_in, n_out=n_out, stride_minutes=60, inputs_spec=spec_in, outputs_spec=spec_out)
    dataset = build_windows({c: frame[c] for c in inputs}, {c: frame[c] for c in outputs}, options)
    parts = split(dataset, SplitOptions())
    scalers = fit_scalers(parts, ScalingOptions())
    return Slice(
        dataset=dataset, parts=parts, scalers=scalers,
        X_train=scalers.transform_X(parts.train.X), Y_train=scalers.transform_Y(parts.train.Y),
        X_val=scalers.transform_X(parts.val.X), Y_val=scalers.transform_Y(parts.val.Y),
        X_test=scalers.transform_X(parts.test.X), Y_test=scalers.transform_Y(parts.test.Y),
    )
