"""Baselines persistence and seasonal_naive (stages.md §9.3, M2, M3): original units, availability reasons,
and the forecaster wrappers with their save/load round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import zeitflow.models as models
from tests.models.tmy3 import tmy3_frame, tmy3_slice
from zeitflow.errors import ModelError
from zeitflow.models.baselines import (
    PersistenceForecaster,
    SeasonalNaiveForecaster,
    baseline_reason,
    horizon_end_hours,
    persistence,
    seasonal_naive,
)


def _half_hourly(start: str = "2024-03-01 00:00", periods: int = 200, name: str = "Q") -> pd.Series:
    """Value at row i is 100 + 2·i, on a 30-minute UTC grid."""
    index = pd.date_range(start, periods=periods, freq="30min", tz="UTC", name="utc")
    return pd.Series(100.0 + 2.0 * np.arange(periods), index=index, name=name)


# ------------------------------------------------------------------------------------------------
# persistence
# ------------------------------------------------------------------------------------------------


def test_m2_persistence_repeats_the_last_value() -> None:
    X = np.array([[[1.0, 7.0], [2.0, 9.0], [3.0, 42.0]]])  # channels P, Q; Q ends at 42
    prediction = persistence(X, ["P", "Q"], ["Q"], n_out=3)
    assert prediction.shape == (1, 3, 1) and prediction.dtype == np.float64
    assert prediction[0, :, 0].tolist() == [42.0, 42.0, 42.0]


def test_persistence_matches_outputs_by_name_not_position() -> None:
    X = np.array([[[1.0, 10.0, 5.0], [2.0, 20.0, 6.0]],
                  [[3.0, 30.0, 7.0], [4.0, 40.0, 8.0]]])  # inputs a, b, c
    prediction = persistence(X, ["a", "b", "c"], ["c", "a"], n_out=2)
    assert prediction.tolist() == [[[6.0, 2.0], [6.0, 2.0]], [[8.0, 4.0], [8.0, 4.0]]]


def test_persistence_target_not_in_inputs() -> None:
    X = np.ones((2, 3, 2))
    assert baseline_reason("persistence", input_features=["P", "Q"], output_features=["Q", "R"]) == \
        "TARGET_NOT_IN_INPUTS"
    assert baseline_reason("persistence", input_features=["P", "Q"], output_features=["Q"]) is None
    with pytest.raises(ModelError) as info:
        persistence(X, ["P", "Q"], ["Q", "R"], n_out=2)
    assert info.value.code == "BASELINE_UNAVAILABLE"
    assert info.value.details["reason"] == "TARGET_NOT_IN_INPUTS" and info.value.details["missing"] == ["R"]


def test_persistence_shape_checks() -> None:
    with pytest.raises(ModelError) as info:
        persistence(np.ones((2, 3)), ["P"], ["P"], n_out=1)
    assert info.value.code == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        persistence(np.ones((2, 3, 2)), ["P"], ["P"], n_out=1)
    assert info.value.code == "SHAPE_MISMATCH"
    with pytest.raises(ModelError) as info:
        persistence(np.ones((2, 3, 1)), ["P"], ["P"], n_out=0)
    assert info.value.code == "SHAPE_MISMATCH"


def test_persistence_on_tmy3_is_the_last_input_temperature() -> None:
    data = tmy3_slice(n_in=6, n_out=3, inputs=("ghi", "temperature", "humidity"), outputs=("temperature",))
    X_test = data.parts.test.X
    prediction = persistence(X_test, data.dataset.input_features, data.dataset.output_features, n_out=3)
    assert prediction.shape == (X_test.shape[0], 3, 1)
    for k in range(3):
        assert np.array_equal(prediction[:, k, 0], X_test[:, 5, 1])
    # the last input time is the reference time itself: the frame's temperature there
    frame = tmy3_frame()
    expected = frame["temperature"].loc[data.parts.test.reference_times].to_numpy()
    assert np.array_equal(prediction[:, 0, 0], expected)


# ------------------------------------------------------------------------------------------------
# seasonal naive
# ------------------------------------------------------------------------------------------------


def test_m3_seasonal_naive_reads_one_season_back() -> None:
    series = _half_hourly()
    refs = pd.DatetimeIndex(["2024-03-02 06:00", "2024-03-03 12:30"], tz="UTC")
    prediction = seasonal_naive(refs, {"Q": series}, {"Q": [0.0, 30.0, 60.0]}, 24.0)
    assert prediction.shape == (2, 3, 1) and prediction.dtype == np.float64
    # r - 24 h = 2024-03-01 06:00 is row 12 -> 124, 126, 128; 2024-03-02 12:30 is row 73 -> 246, 248, 250
    assert prediction[:, :, 0].tolist() == [[124.0, 126.0, 128.0], [246.0, 248.0, 250.0]]
    assert prediction[0, :, 0].tolist() == series.loc[refs[0] - pd.Timedelta(hours=24) + pd.to_timedelta(
        [0, 30, 60], unit="min")].tolist()


def test_seasonal_naive_interpolates_and_keeps_channel_order() -> None:
    q = _half_hourly()
    p = pd.Series(np.arange(200.0) * -1.0, index=q.index, name="P")
    refs = pd.DatetimeIndex(["2024-03-02 06:00"], tz="UTC")
    prediction = seasonal_naive(refs, {"Q": q, "P": p}, {"P": [15.0, 45.0], "Q": [0.0, 10.0]}, 24.0)
    # P at 06:15 and 06:45 the day before: rows 12.5 and 13.5 -> -12.5, -13.5; Q at 06:00 and 06:10 -> 124, 124.666..
    assert prediction[0, :, 0].tolist() == [-12.5, -13.5]
    assert prediction[0, 0, 1] == 124.0
    assert prediction[0, 1, 1] == pytest.approx(124.0 + 2.0 * 10 / 30, rel=1e-12, abs=1e-12)


def test_seasonal_naive_nan_before_series_start_and_at_nan_rows() -> None:
    series = _half_hourly()
    series.iloc[14] = np.nan  # 2024-03-01 07:00
    refs = pd.DatetimeIndex(["2024-03-01 23:30", "2024-03-02 06:30", "2024-03-02 07:30"], tz="UTC")
    prediction = seasonal_naive(refs, {"Q": series}, {"Q": [0.0, 30.0, 60.0]}, 24.0)
    # 1st: 2024-02-29 23:30, 03-01 00:00, 00:30 -> before the start, row 0, row 1
    assert np.isnan(prediction[0, 0, 0]) and prediction[0, 1:, 0].tolist() == [100.0, 102.0]
    # 2nd: 06:30, 07:00 (NaN row), 07:30 ; 3rd: 07:30, 08:00, 08:30
    assert prediction[1, 0, 0] == 126.0 and np.isnan(prediction[1, 1, 0]) and prediction[1, 2, 0] == 130.0
    assert prediction[2, :, 0].tolist() == [130.0, 132.0, 134.0]


def test_seasonal_naive_max_gap() -> None:
    series = _half_hourly().drop(pd.Timestamp("2024-03-01 07:00", tz="UTC"))
    refs = pd.DatetimeIndex(["2024-03-02 07:00"], tz="UTC")
    bridged = seasonal_naive(refs, {"Q": series}, {"Q": [0.0]}, 24.0)
    limited = seasonal_naive(refs, {"Q": series}, {"Q": [0.0]}, 24.0, max_gap_minutes={"Q": 30.0})
    assert bridged[0, 0, 0] == 128.0 and np.isnan(limited[0, 0, 0])


def test_seasonal_naive_season_shorter_than_horizon() -> None:
    series = _half_hourly()
    refs = pd.DatetimeIndex(["2024-03-02 06:00"], tz="UTC")
    offsets = {"Q": [60.0, 120.0]}
    assert horizon_end_hours(offsets) == 2.0
    assert baseline_reason("seasonal_naive", season_hours=1.5, output_offsets_minutes=offsets) == \
        "SEASON_SHORTER_THAN_HORIZON"
    assert baseline_reason("seasonal_naive", season_hours=2.0, output_offsets_minutes=offsets) is None
    assert baseline_reason("seasonal_naive", season_hours=2.0, output_horizon_end_hours=3.0) == \
        "SEASON_SHORTER_THAN_HORIZON"
    assert baseline_reason("linear") is None
    with pytest.raises(ModelError) as info:
        seasonal_naive(refs, {"Q": series}, offsets, 1.5)
    assert info.value.code == "BASELINE_UNAVAILABLE"
    assert info.value.details["reason"] == "SEASON_SHORTER_THAN_HORIZON"
    with pytest.raises(ModelError) as info:
        seasonal_naive(refs, {"Q": series}, offsets, 2.0, output_horizon_end_hours=3.0)
    assert info.value.details["reason"] == "SEASON_SHORTER_THAN_HORIZON"
    # a season equal to the horizon end reads the reference time itself: allowed
    assert seasonal_naive(refs, {"Q": series}, offsets, 2.0)[0, :, 0].tolist() == [216.0, 220.0]  # rows 58, 60


def test_seasonal_naive_on_tmy3_repeats_the_day_before() -> None:
    data = tmy3_slice(n_in=6, n_out=3, inputs=("temperature", "ghi"), outputs=("temperature", "dew_point"))
    ds = data.dataset
    frame = tmy3_frame()
    refs = ds.reference_times
    assert (np.diff(refs.asi8) == 3_600_000_000_000).all()  # hourly, none dropped
    prediction = seasonal_naive(refs, {c: frame[c] for c in ds.output_features}, ds.output_offsets_minutes, 24)
    assert prediction.shape == ds.Y.shape
    # reference i + 24 reads exactly the output times of reference i
    assert np.array_equal(prediction[24:], ds.Y[:-24])
    # the data start at 06:00 and the first reference is 11:00; step k reads r - 23 h + k h, so the first
    # 18, 17 and 16 references have no value at steps 0, 1 and 2
    assert np.isnan(prediction[:, :, 0]).sum(axis=0).tolist() == [18, 17, 16]
    assert not np.isnan(prediction[18:]).any()


# ------------------------------------------------------------------------------------------------
# forecasters
# ------------------------------------------------------------------------------------------------


def test_persistence_forecaster_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(10, 4, 3)), rng.normal(size=(10, 2, 1))
    model = models.build({"kind": "persistence"})
    assert isinstance(model, PersistenceForecaster)
    history = model.fit(X, Y, input_features=["a", "b", "c"], output_features=["b"])
    assert [(e.epoch, e.loss, e.val_loss) for e in history.epochs] == [(1, None, None)]
    assert history.epochs_run == 1
    prediction = model.predict(X)
    assert np.array_equal(prediction, np.repeat(X[:, 3:4, 1:2], 2, axis=1))
    model.save(tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["model.joblib", "model.json"]
    loaded = models.load(tmp_path / "p")
    assert isinstance(loaded, PersistenceForecaster)
    assert np.array_equal(loaded.predict(X), prediction)
    with pytest.raises(ModelError) as info:
        loaded.predict(X[:, :3])
    assert info.value.code == "SHAPE_MISMATCH"


def test_persistence_forecaster_unavailable_and_not_fitted(tmp_path: Path) -> None:
    model = models.build({"kind": "persistence"})
    X, Y = np.ones((3, 2, 1)), np.ones((3, 1, 1))
    with pytest.raises(ModelError) as info:
        model.predict(X)
    assert info.value.code == "NOT_FITTED"
    with pytest.raises(ModelError) as info:
        model.save(tmp_path / "x")
    assert info.value.code == "NOT_FITTED"
    model.fit(X, Y, input_features=["P"], output_features=["Q"])
    with pytest.raises(ModelError) as info:
        model.predict(X)
    assert info.value.code == "BASELINE_UNAVAILABLE" and info.value.details["reason"] == "TARGET_NOT_IN_INPUTS"


def test_seasonal_naive_forecaster_round_trip(tmp_path: Path) -> None:
    series = _half_hourly()
    model = models.build({"kind": "seasonal_naive", "season_hours": 48})
    assert isinstance(model, SeasonalNaiveForecaster)
    with pytest.raises(ModelError) as info:
        model.predict_context(pd.DatetimeIndex([], tz="UTC"), {"Q": series}, {"Q": [0.0]})
    assert info.value.code == "NOT_FITTED"
    model.fit(np.ones((2, 4, 1)), np.ones((2, 2, 1)), input_features=["Q"], output_features=["Q"])
    refs = pd.DatetimeIndex(["2024-03-03 06:00"], tz="UTC")
    prediction = model.predict_context(refs, {"Q": series}, {"Q": [30.0, 60.0]})
    assert prediction.tolist() == [[[126.0], [128.0]]]  # 2024-03-01 06:30 is row 13
    with pytest.raises(ModelError) as info:
        model.predict(np.ones((2, 4, 1)))
    assert info.value.code == "BASELINE_UNAVAILABLE" and "predict_context" in info.value.message
    with pytest.raises(ModelError) as info:
        model.predict_context(refs, {"Q": series}, {"Q": [30.0, 60.0, 90.0]})
    assert info.value.code == "SHAPE_MISMATCH"
    model.save(tmp_path / "s")
    loaded = models.load(tmp_path / "s")
    assert isinstance(loaded, SeasonalNaiveForecaster) and loaded.spec.season_hours == 48.0
    assert np.array_equal(loaded.predict_context(refs, {"Q": series}, {"Q": [30.0, 60.0]}), prediction)


def test_seasonal_naive_forecaster_uses_the_fitted_channel_order() -> None:
    q = _half_hourly()
    p = _half_hourly(name="P") * 10.0
    model = models.build({"kind": "seasonal_naive"})
    model.fit(np.ones((2, 3, 2)), np.ones((2, 1, 2)), input_features=["P", "Q"], output_features=["Q", "P"])
    refs = pd.DatetimeIndex(["2024-03-02 00:30"], tz="UTC")
    prediction = model.predict_context(refs, {"P": p, "Q": q}, {"P": [0.0], "Q": [0.0]})
    assert prediction.tolist() == [[[102.0, 1020.0]]]  # 2024-03-01 00:30 is row 1: Q first, then P


def test_baseline_model_file_invalid(tmp_path: Path) -> None:
    persistence_model = models.build({"kind": "persistence"})
    persistence_model.fit(np.ones((2, 2, 1)), np.ones((2, 1, 1)), input_features=["P"], output_features=["P"])
    persistence_model.save(tmp_path / "p")
    naive = models.build({"kind": "seasonal_naive"})
    naive.fit(np.ones((2, 2, 1)), np.ones((2, 1, 1)), input_features=["P"], output_features=["P"])
    naive.save(tmp_path / "s")
    # a seasonal_naive sidecar next to a persistence model file
    (tmp_path / "s" / "model.joblib").write_bytes((tmp_path / "p" / "model.joblib").read_bytes())
    with pytest.raises(ModelError) as info:
        models.load(tmp_path / "s")
    assert info.value.code == "MODEL_FILE_INVALID"
    (tmp_path / "p" / "model.joblib").write_bytes(b"\x00garbage")
    with pytest.raises(ModelError) as info:
        models.load(tmp_path / "p")
    assert info.value.code == "MODEL_FILE_INVALID" and str(tmp_path / "p" / "model.joblib") in info.value.message
