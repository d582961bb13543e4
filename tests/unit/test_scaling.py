"""Split and scaling (stages.md §8): worked examples S1–S4, exact fractions, seeded shuffle, leakage,
exact inverse, JSON persistence, validation codes and runtime errors."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zeitflow.errors import ScalingError
from zeitflow.options.scaling import ChannelScaling, ScalingOptions, SplitOptions
from zeitflow.reports import ProgressEvent
from zeitflow.stages.scaling import ScalerSet, fit_scalers, split, split_counts
from zeitflow.stages.windows import WindowedDataset, WindowReport

EXACT = {"rel": 1e-12, "abs": 1e-12}
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def dataset(x: np.ndarray, y: np.ndarray | None = None, inputs: list[str] | None = None,
            outputs: list[str] | None = None, calendar: list[str] | None = None) -> WindowedDataset:
    """A WindowedDataset from arrays (n, steps, columns); reference times hourly from 2024-01-01."""
    x = np.asarray(x, dtype=np.float64)
    y = x[:, :1, :1].copy() if y is None else np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="h"),
                             name="utc_ref").as_unit("ns")
    inputs = inputs or [f"in{j}" for j in range(x.shape[2])]
    outputs = outputs or [f"out{j}" for j in range(y.shape[2])]
    return WindowedDataset(X=x, Y=y, reference_times=index, input_features=inputs, output_features=outputs,
                           input_offsets_minutes={}, output_offsets_minutes={}, channel_steps_minutes={},
                           report=WindowReport(), calendar_features=calendar or [])


def column(values) -> np.ndarray:
    """(n, 1, 1) array of one column."""
    return np.asarray(values, dtype=np.float64).reshape(-1, 1, 1)


# --------------------------------------------------------------------------------------------
# S1-S3: scalers
# --------------------------------------------------------------------------------------------


def s1_split():
    # 10 samples, 0.4 / 0.2 / 0.4: train [2, 4, 6, 10], val [0, 20], test [12] * 4
    values = [2, 4, 6, 10, 0, 20, 12, 12, 12, 12]
    ds = dataset(column(values), inputs=["P"], outputs=["P"])
    return split(ds, SplitOptions(train_fraction="0.4", val_fraction="0.2", test_fraction="0.4"))


def test_s1_minmax_range_0_1_and_no_clipping() -> None:
    sp = s1_split()
    assert sp.train.X[:, 0, 0].tolist() == [2, 4, 6, 10]
    scalers = fit_scalers(sp, ScalingOptions())
    col = scalers.inputs[0]
    assert (col.key, col.data_min, col.data_max, col.n_fit) == ("input:P", 2.0, 10.0, 4)
    out = scalers.transform_X(column([6, 12]))
    assert out[0, 0, 0] == pytest.approx(0.5, **EXACT) and out[1, 0, 0] == pytest.approx(1.25, **EXACT)
    assert scalers.inverse_transform_X(column([0.25]))[0, 0, 0] == pytest.approx(4.0, **EXACT)


def test_s1_range_minus_one_one() -> None:
    scalers = fit_scalers(s1_split(), ScalingOptions(channels={"input:P": {"range_min": -1, "range_max": 1}}))
    out = scalers.transform_X(column([6, 4]))
    assert out[0, 0, 0] == pytest.approx(0.0, **EXACT) and out[1, 0, 0] == pytest.approx(-0.5, **EXACT)
    # the output scaler of the same channel is independent and keeps [0, 1]
    assert scalers.outputs[0].range_min == 0.0 and scalers.transform_Y(column([6]))[0, 0, 0] == pytest.approx(0.5)


def test_s2_fit_all_sees_validation_extremes() -> None:
    sp = s1_split()
    assert sorted(sp.val.X[:, 0, 0].tolist()) == [0, 20]
    scalers = fit_scalers(sp, ScalingOptions(scaler_fit="all"))
    assert (scalers.inputs[0].data_min, scalers.inputs[0].data_max) == (0.0, 20.0)
    assert scalers.transform_X(column([6]))[0, 0, 0] == pytest.approx(0.3, **EXACT)


def test_leakage_train_fit_uses_training_rows_only() -> None:
    sp = s1_split()
    train = fit_scalers(sp, ScalingOptions())
    every = fit_scalers(sp, ScalingOptions(scaler_fit="all"))
    for scalers, part in ((train, sp.train.X), (every, np.concatenate([sp.train.X, sp.val.X, sp.test.X]))):
        assert scalers.inputs[0].data_min == part.min() and scalers.inputs[0].data_max == part.max()
    assert (train.inputs[0].data_min, train.inputs[0].data_max) != (every.inputs[0].data_min,
                                                                    every.inputs[0].data_max)
    assert train.report.n_fit_samples == 4 and every.report.n_fit_samples == 10


def test_s3_constant_feature() -> None:
    ds = dataset(column([3, 3, 3, 9]), inputs=["P"])
    sp = split(ds, SplitOptions(train_fraction="0.75", val_fraction="0.25", test_fraction="0"))
    scalers = fit_scalers(sp, ScalingOptions())
    out = scalers.transform_X(column([3, 5]))
    assert out[:, 0, 0].tolist() == [0.0, 2.0]
    assert [w.code for w in scalers.report.warnings] == ["CONSTANT_FEATURE"]
    assert scalers.report.constant_columns == ["input:P", "output:out0"]
    np.testing.assert_array_equal(scalers.inverse_transform_X(out), column([3, 5]))


def test_channel_keys_prefixed_wins_and_scale_false_is_identity() -> None:
    x = np.stack([np.arange(10.0), np.arange(10.0) * 10], axis=-1).reshape(10, 1, 2)
    ds = dataset(x, y=x[:, :, :1], inputs=["A", "B"], outputs=["A"])
    sp = split(ds, SplitOptions())
    opts = ScalingOptions(channels={"A": {"range_min": -1, "range_max": 1}, "output:A": {"scale": False},
                                    "B": {"skalierung": "nein"}, "ghost": {}})
    scalers = fit_scalers(sp, opts)
    assert scalers.inputs[0].range_min == -1 and scalers.inputs[0].scaled
    assert not scalers.outputs[0].scaled and not scalers.inputs[1].scaled
    np.testing.assert_array_equal(scalers.transform_Y(ds.Y), ds.Y)
    np.testing.assert_array_equal(scalers.transform_X(ds.X)[:, :, 1], ds.X[:, :, 1])
    assert "UNUSED_SCALING_KEY" in [w.code for w in scalers.report.warnings]


@dataclass(frozen=True)
class Comp:
    enabled: bool = True
    scale: bool = True
    range_min: float = 0.0
    range_max: float = 1.0


@dataclass(frozen=True)
class FakeTimeFeatures:
    year: Comp = field(default_factory=Comp)
    month: Comp = field(default_factory=Comp)
    week: Comp = field(default_factory=Comp)
    day: Comp = field(default_factory=lambda: Comp(range_min=-1.0, range_max=1.0))
    holiday: Comp = field(default_factory=lambda: Comp(scale=False))


def test_calendar_columns_take_their_component_setting() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(20, 3, 4))
    ds = dataset(x, inputs=["P", "D_sin", "D_cos", "H"], calendar=["D_sin", "D_cos", "H"])
    sp = split(ds, SplitOptions())
    scalers = fit_scalers(sp, ScalingOptions(channels={"D_sin": {"range_min": 5, "range_max": 6}}),
                          time_features=FakeTimeFeatures())
    cols = {c.name: c for c in scalers.inputs}
    assert (cols["D_sin"].range_min, cols["D_cos"].range_max) == (-1.0, 1.0)
    assert not cols["H"].scaled and cols["P"].range_min == 0.0
    default = fit_scalers(sp, ScalingOptions())
    assert all(c.scaled and (c.range_min, c.range_max) == (0.0, 1.0) for c in default.inputs)


# --------------------------------------------------------------------------------------------
# exact inverse and persistence
# --------------------------------------------------------------------------------------------


@PROPERTY
@given(train=st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=30),
       probe=st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=30),
       bounds=st.tuples(st.floats(-10, 10), st.floats(0.001, 10)))
def test_inverse_of_transform_is_identity(train: list[float], probe: list[float], bounds) -> None:
    lo, width = bounds
    n = len(train)
    ds = dataset(column(train), inputs=["P"], outputs=["P"])
    sp = split(ds, SplitOptions(train_fraction="1", val_fraction="0", test_fraction="0"))
    scalers = fit_scalers(sp, ScalingOptions(channels={"P": {"range_min": lo, "range_max": lo + width}}))
    x = column(probe)
    back = scalers.inverse_transform_X(scalers.transform_X(x))
    scale = max(1.0, np.abs(x).max(), abs(min(train)), abs(max(train)))
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12 * scale)
    back_y = scalers.inverse_transform_Y(scalers.transform_Y(x))
    np.testing.assert_allclose(back_y, x, rtol=1e-12, atol=1e-12 * scale)
    assert n == len(sp.train)


def test_json_round_trip_and_format() -> None:
    scalers = fit_scalers(s1_split(), ScalingOptions(channels={"input:P": {"range_min": -1, "range_max": 1}}))
    text = scalers.to_json()
    data = json.loads(text)
    assert data["format"] == "zeitflow.scalers/1" and data["scaler_fit"] == "train"
    assert data["columns"][0] == {"key": "input:P", "role": "input", "name": "P", "scaled": True, "data_min": 2.0,
                                  "data_max": 10.0, "range_min": -1.0, "range_max": 1.0, "n_fit": 4}
    back = ScalerSet.from_json(text)
    assert back.to_json() == text and back.inputs == scalers.inputs and back.outputs == scalers.outputs
    x = column([0.1, 7.3, 1e5])
    np.testing.assert_array_equal(back.transform_X(x), scalers.transform_X(x))


@pytest.mark.parametrize("text", [
    "not json", '{"format": "zeitflow.scalers/2", "scaler_fit": "train", "columns": []}',
    '{"format": "zeitflow.scalers/1", "columns": []}',
    '{"format": "zeitflow.scalers/1", "scaler_fit": "train", "columns": [{"key": "input:P"}]}',
    '{"format": "zeitflow.scalers/1", "scaler_fit": "train", "columns": [{"key": "input:P", "role": "input", '
    '"name": "P", "scaled": true, "data_min": 1, "data_max": 2, "range_min": 1, "range_max": 0, "n_fit": 1}]}',
])
def test_from_json_rejects_bad_input(text: str) -> None:
    with pytest.raises(ScalingError) as exc:
        ScalerSet.from_json(text)
    assert exc.value.code == "SCALER_FORMAT_INVALID"


def test_shape_mismatch() -> None:
    scalers = fit_scalers(s1_split(), ScalingOptions())
    for bad in (np.zeros((2, 1)), np.zeros((2, 1, 2))):
        with pytest.raises(ScalingError) as exc:
            scalers.transform_X(bad)
        assert exc.value.code == "SHAPE_MISMATCH"
    with pytest.raises(ScalingError):
        scalers.inverse_transform_Y(np.zeros((1, 1, 3)))


# --------------------------------------------------------------------------------------------
# S4 and the split
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "expected"), [(15, (11, 3, 1)), (45, (32, 9, 4)), (5736, (4015, 1147, 574)),
                                             (10, (7, 2, 1)), (3, (2, 1, 0))])
def test_s4_split_counts(n: int, expected: tuple[int, int, int]) -> None:
    if expected[2] == 0:
        with pytest.raises(ScalingError) as exc:
            split_counts(n, SplitOptions())
        assert exc.value.code == "SPLIT_TOO_SMALL" and exc.value.details["n"] == n
        return
    assert split_counts(n, SplitOptions()) == expected


def test_s4_n5_raises_split_too_small() -> None:
    with pytest.raises(ScalingError) as exc:
        split(dataset(column(range(5))), SplitOptions())
    assert exc.value.code == "SPLIT_TOO_SMALL"
    assert exc.value.details == {"n": 5, "n_train": 4, "n_val": 1, "n_test": 0,
                                 "fractions": ["0.7", "0.2", "0.1"]}


def test_n_test_negative_reduces_val_and_zero_fraction_may_be_empty() -> None:
    opts = SplitOptions(train_fraction="0.5", val_fraction="0.5", test_fraction="0")
    assert split_counts(3, opts) == (2, 1, 0)  # 1.5 → 2, 1.5 → 2, test −1 → val reduced to 1
    opts = SplitOptions(train_fraction="0.25", val_fraction="0.25", test_fraction="0.5")
    with pytest.raises(ScalingError):  # 1 / 1 / 0, but the test fraction is positive
        split_counts(2, opts)


def test_chronological_split_blocks() -> None:
    ds = dataset(column(range(20)))
    events: list[ProgressEvent] = []
    sp = split(ds, SplitOptions(), progress=events.append)
    assert sp.counts == (14, 4, 2)
    assert sp.train.indices.tolist() == list(range(14)) and sp.test.indices.tolist() == [18, 19]
    assert sp.val.X[:, 0, 0].tolist() == [14, 15, 16, 17]
    assert (sp.val.reference_times == ds.reference_times[14:18]).all()
    assert sp.report.n_train == 14 and events[-1].metrics["n_test"] == 2.0


def test_shuffle_is_seeded_and_each_split_is_chronological() -> None:
    ds = dataset(column(range(100)))
    a = split(ds, SplitOptions(shuffle=True, seed=7))
    b = split(ds, SplitOptions(shuffle="ja", seed=7))
    c = split(ds, SplitOptions(shuffle=True, seed=8))
    perm = np.random.default_rng(7).permutation(100)
    assert a.train.indices.tolist() == sorted(perm[:70].tolist())
    assert a.val.indices.tolist() == sorted(perm[70:90].tolist())
    assert a.test.indices.tolist() == sorted(perm[90:].tolist())
    assert a.train.indices.tolist() == b.train.indices.tolist() != c.train.indices.tolist()
    for part in (a.train, a.val, a.test):
        assert (np.diff(part.reference_times.asi8) > 0).all()
        np.testing.assert_array_equal(part.X[:, 0, 0], part.indices)
    together = np.concatenate([a.train.indices, a.val.indices, a.test.indices])
    assert sorted(together.tolist()) == list(range(100))


@PROPERTY
@given(n=st.integers(1, 5000), train=st.integers(1, 100), val=st.integers(0, 99))
def test_split_counts_property(n: int, train: int, val: int) -> None:
    if train + val > 100:
        return
    opts = SplitOptions(train_fraction=train / 100, val_fraction=val / 100, test_fraction=(100 - train - val) / 100)
    try:
        counts = split_counts(n, opts)
    except ScalingError as exc:
        assert exc.code == "SPLIT_TOO_SMALL"
        return
    assert sum(counts) == n and min(counts) >= 0
    assert counts[0] == (2 * n * train + 100) // 200


# --------------------------------------------------------------------------------------------
# options
# --------------------------------------------------------------------------------------------


def test_fractions_are_exact_and_hash_alike() -> None:
    a, b, c = SplitOptions(train_fraction=0.7), SplitOptions(train_fraction="0.7"), SplitOptions(train_fraction="0.70")
    assert a.train_fraction == b.train_fraction == c.train_fraction == "0.7"
    assert a.parameters_hash() == b.parameters_hash() == c.parameters_hash()
    o = SplitOptions(train_fraction="0.125", val_fraction="0.875", test_fraction=0)
    assert o.test_fraction == "0" and o.fraction("train_fraction") == pytest.approx(0.125)
    assert SplitOptions(train_fraction=1, val_fraction=0, test_fraction=0).train_fraction == "1"
    assert SplitOptions(random_dat="nein").shuffle is False


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"train_fraction": 0.705, "val_fraction": 0.195}, "PARAM_OUT_OF_RANGE"),
    ({"train_fraction": "0.1234567"}, "PARAM_OUT_OF_RANGE"),
    ({"train_fraction": "abc"}, "PARAM_OUT_OF_RANGE"),
    ({"train_fraction": 0, "val_fraction": 0.9}, "PARAM_OUT_OF_RANGE"),
    ({"train_fraction": 1.1}, "PARAM_OUT_OF_RANGE"),
    ({"val_fraction": 1}, "PARAM_OUT_OF_RANGE"),
    ({"test_fraction": -0.1}, "PARAM_OUT_OF_RANGE"),
    ({"train_fraction": math.nan}, "PARAM_NOT_FINITE"),
    ({"train_fraction": "0.6"}, "PARAM_COMPARISON_FAILED"),
    ({"train_fraction": 0.7, "val_fraction": 0.2, "test_fraction": 0.2}, "PARAM_COMPARISON_FAILED"),
    ({"seed": -1}, "PARAM_OUT_OF_RANGE"), ({"seed": 1.5}, "PARAM_NOT_INTEGER"),
    ({"ratio": 1}, "UNKNOWN_PARAMETER"), ({"shuffle": True, "random_dat": True}, "MUTUALLY_EXCLUSIVE"),
])
def test_split_validation_codes(kwargs: dict, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        SplitOptions(**kwargs)
    assert exc.value.errors()[0]["type"] == code
    if code == "PARAM_OUT_OF_RANGE" and kwargs.get("train_fraction") == 0.705:
        assert "'0.125'" in exc.value.errors()[0]["msg"]


@pytest.mark.parametrize(("model", "kwargs", "code"), [
    (ChannelScaling, {"range_min": 1, "range_max": 1}, "INVALID_SCALER_RANGE"),
    (ChannelScaling, {"skalierungMin": 2, "skalierungMax": 1}, "INVALID_SCALER_RANGE"),
    (ChannelScaling, {"range_min": math.inf}, "PARAM_NOT_FINITE"),
    (ChannelScaling, {"minimum": 0}, "UNKNOWN_PARAMETER"),
    (ScalingOptions, {"scaler_fit": "test"}, "INVALID_CHOICE"),
    (ScalingOptions, {"channels": {"P": {"range_min": 3, "range_max": 0}}}, "INVALID_SCALER_RANGE"),
    (ScalingOptions, {"channels": {"input:": {}}}, "MISSING_PARAMETER"),
    (ScalingOptions, {"fit": "all"}, "UNKNOWN_PARAMETER"),
])
def test_scaling_validation_codes(model, kwargs: dict, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        model(**kwargs)
    assert exc.value.errors()[0]["type"] == code


def test_scaling_defaults_and_aliases() -> None:
    o = ScalingOptions()
    assert o.scaler_fit == "train" and o.channels == {}
    c = ChannelScaling(skalierung="ja", skalierungMin=-1, skalierungMax=1)
    assert c == ChannelScaling(scale=True, range_min=-1, range_max=1)
    assert math.isfinite(c.range_max)
