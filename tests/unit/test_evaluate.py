"""``evaluate`` and ``EvaluationTables`` (stages.md §10.2): averaging levels (E3), skill (E4), NaN pairs (E5),
the MASE training span, table layout and order, errors, and the JSON / Parquet serialisation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from zeitflow.errors import EvaluationError, StorageError
from zeitflow.evaluation import EvaluationOptions, EvaluationTables, evaluate
from zeitflow.evaluation import metrics as M
from zeitflow.evaluation.tables import (
    OVERALL_COLUMNS,
    PER_STEP_COLUMNS,
    REASONS_COLUMNS,
    default_season_steps,
)
from zeitflow.options.windows import WindowOptions
from zeitflow.reports import ProgressEvent
from zeitflow.stages.windows import build_windows

EXACT = {"rel": 1e-12, "abs": 1e-12}
T0 = pd.Timestamp("2024-01-01", tz="UTC")
NS_PER_MINUTE = 60_000_000_000
nan = math.nan


def dataset(offsets: dict[str, list[float]], steps: dict[str, float]) -> SimpleNamespace:
    """The dataset metadata ``evaluate`` reads, keyed like ``build_windows`` (steps as ``output:<name>``)."""
    return SimpleNamespace(
        output_features=list(offsets),
        output_offsets_minutes={k: np.asarray(v, dtype=np.float64) for k, v in offsets.items()},
        channel_steps_minutes={f"output:{k}": v for k, v in steps.items()},
    )


def regular(values: Any, step_minutes: float = 60, start: pd.Timestamp = T0) -> pd.Series:
    values = np.asarray(values, dtype=np.float64)
    index = pd.DatetimeIndex(start + pd.to_timedelta(np.arange(values.size) * step_minutes, unit="min"), name="utc")
    return pd.Series(values, index=index.as_unit("ns"))


def hours(*values: float) -> pd.DatetimeIndex:
    return pd.DatetimeIndex([T0 + pd.Timedelta(hours=h) for h in values]).as_unit("ns")


E3_DATA = dataset({"Q": [0, 15, 30, 45, 60]}, {"Q": 15.0})
E3_TRUTH = np.array([1.0, 2.0, 3.0, 4.0, 5.0]).reshape(1, 5, 1)
E3_FORECAST = np.full((1, 5, 1), 2.0)
LONG_SERIES = {"Q": regular(np.sin(np.arange(400.0)), 15)}
TRAIN_REFS = pd.date_range(T0, periods=200, freq="15min").as_unit("ns")


def run(truth: np.ndarray, predictions: dict[str, np.ndarray], data: Any = E3_DATA,
        series: dict[str, pd.Series] | None = None, options: EvaluationOptions | None = None,
        refs: Any = TRAIN_REFS, **kwargs: Any) -> EvaluationTables:
    return evaluate(truth, predictions, data, LONG_SERIES if series is None else series,
                    options or EvaluationOptions(), train_reference_times=refs, **kwargs)


def e3() -> EvaluationTables:
    return run(E3_TRUTH, {"model": E3_FORECAST, "persistence": np.full((1, 5, 1), 3.0)})


def rows(frame: pd.DataFrame, **where: Any) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in where.items():
        mask &= (frame[column] == value).to_numpy()
    return frame.loc[mask].reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# E3: averaging levels
# ------------------------------------------------------------------------------------------------


def test_e3_levels_6_to_12_are_omitted() -> None:
    tables = e3()
    assert tables.omitted_levels == [6, 7, 8, 9, 10, 11, 12]


def test_e3_mae_and_delta_per_level() -> None:
    overall = e3().overall_for("model", "Q")
    assert overall["n_avg"].tolist() == [1, 2, 3, 4, 5]
    assert overall["delta_minutes"].tolist() == [15.0, 30.0, 45.0, 60.0, 75.0]
    assert overall["mae"].to_numpy() == pytest.approx([1.4, 1.0, 0.0, 0.5, 1.0], **EXACT)
    assert overall["n_pairs"].tolist() == [5, 2, 1, 1, 1]


def test_e3_blocks_per_level() -> None:
    per_step = rows(e3().per_step, model="model")
    assert per_step.groupby("n_avg")["step"].count().tolist() == [5, 2, 1, 1, 1]


def test_e3_per_step_rows_of_n_avg_2() -> None:
    block = rows(e3().per_step, model="model", n_avg=2)
    assert block["step"].tolist() == [0, 1]
    assert block["lead_start_minutes"].tolist() == [0.0, 30.0]
    assert block["lead_end_minutes"].tolist() == [15.0, 45.0]
    assert block["mae"].to_numpy() == pytest.approx([0.5, 1.5], **EXACT)
    assert block["n_pairs"].tolist() == [1, 1]


def test_e3_per_step_leads_of_n_avg_1_and_5() -> None:
    per_step = e3().per_step
    single = rows(per_step, model="model", n_avg=1)
    assert single["lead_start_minutes"].tolist() == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert single["lead_end_minutes"].tolist() == [0.0, 15.0, 30.0, 45.0, 60.0]
    assert single["mae"].to_numpy() == pytest.approx([1.0, 0.0, 1.0, 2.0, 3.0], **EXACT)
    whole = rows(per_step, model="model", n_avg=5)
    assert (whole["lead_start_minutes"].item(), whole["lead_end_minutes"].item()) == (0.0, 60.0)


def test_a_five_step_horizon_keeps_the_tables_of_levels_1_to_5() -> None:
    tables = e3()
    assert sorted(set(tables.overall["n_avg"])) == [1, 2, 3, 4, 5]
    assert sorted(set(tables.per_step["n_avg"])) == [1, 2, 3, 4, 5]
    assert len(tables.overall) == 2 * 5


def test_fewer_levels_than_steps_omit_nothing() -> None:
    tables = run(E3_TRUTH, {"model": E3_FORECAST}, options=EvaluationOptions(levels=3))
    assert tables.omitted_levels == []
    assert tables.overall["n_avg"].tolist() == [1, 2, 3]


def test_block_with_a_nan_step_is_nan() -> None:
    forecast = E3_FORECAST.copy()
    forecast[0, 1, 0] = nan
    tables = run(E3_TRUTH, {"model": forecast}, options=EvaluationOptions(levels=2))
    assert rows(tables.overall, n_avg=2)["n_pairs"].item() == 1  # block 0 (steps 0-1) is NaN
    assert rows(tables.overall, n_avg=2)["mae"].item() == pytest.approx(1.5, **EXACT)


# ------------------------------------------------------------------------------------------------
# E4: skill
# ------------------------------------------------------------------------------------------------


def test_e4_skill() -> None:
    truth = np.zeros((5, 1, 1))
    tables = run(truth, {"model": truth + 1.0, "persistence": truth - 1.6}, data=dataset({"Q": [60]}, {"Q": 60}))
    row = rows(tables.overall, model="model", n_avg=1)
    assert row["mae"].item() == pytest.approx(1.0, **EXACT)
    assert row["skill_mae"].item() == pytest.approx(0.375, **EXACT)
    assert rows(tables.overall, model="persistence")["skill_mae"].item() == 0.0


def test_skill_uses_the_pairs_valid_for_truth_model_and_reference() -> None:
    truth = np.zeros((4, 1, 1))
    model = np.array([1.0, 1.0, 1.0, 5.0]).reshape(4, 1, 1)
    reference = np.array([2.0, 2.0, 2.0, nan]).reshape(4, 1, 1)
    tables = run(truth, {"model": model, "persistence": reference}, data=dataset({"Q": [60]}, {"Q": 60}))
    row = rows(tables.overall, model="model")
    assert row["mae"].item() == pytest.approx(2.0, **EXACT)  # all four pairs
    assert row["skill_mae"].item() == pytest.approx(0.5, **EXACT)  # 1 - 1/2 over the first three


def test_skill_against_another_reference_baseline() -> None:
    truth = np.zeros((2, 1, 1))
    options = EvaluationOptions(reference_baseline="seasonal_naive")
    tables = run(truth, {"model": truth + 1, "persistence": truth + 2, "seasonal_naive": truth + 4},
                 data=dataset({"Q": [60]}, {"Q": 60}), options=options)
    assert rows(tables.overall, model="model")["skill_mae"].item() == pytest.approx(0.75, **EXACT)
    assert rows(tables.overall, model="persistence")["skill_mae"].item() == pytest.approx(0.5, **EXACT)


@pytest.mark.parametrize("predictions, unavailable, reason", [
    ({"model": 1.0}, {"persistence": "TARGET_NOT_IN_INPUTS"}, "TARGET_NOT_IN_INPUTS"),
    ({"model": 1.0}, None, "reference baseline 'persistence' was not computed"),
    ({"model": 1.0, "persistence": 0.0}, None, "reference MAE is zero"),
    ({"model": 1.0, "persistence": nan}, None, "no pair valid for truth, model and reference"),
])
def test_skill_is_nan_with_a_reason(predictions: dict[str, float], unavailable: dict[str, str] | None,
                                    reason: str) -> None:
    truth = np.zeros((3, 2, 1))
    tables = run(truth, {k: truth + v for k, v in predictions.items()}, data=dataset({"Q": [0, 60]}, {"Q": 60}),
                 unavailable=unavailable)
    model = rows(tables.overall, model="model")
    assert model["skill_mae"].isna().all() and not model["mae"].isna().any()
    skill_reasons = rows(tables.reasons, model="model", metric="skill_mae")
    assert len(skill_reasons) == 2 + 2 + 1  # overall n_avg 1, 2; per step 2 + 1
    assert set(skill_reasons["reason"]) == {reason}


def test_an_unavailable_seasonal_reference_gives_its_reason() -> None:
    truth = np.zeros((3, 1, 1))
    options = EvaluationOptions(reference_baseline="seasonal_naive")
    tables = run(truth, {"model": truth + 1, "persistence": truth + 2}, data=dataset({"Q": [60]}, {"Q": 60}),
                 options=options, unavailable={"seasonal_naive": "SEASON_SHORTER_THAN_HORIZON"})
    assert tables.overall["skill_mae"].isna().all()
    assert set(rows(tables.reasons, metric="skill_mae")["reason"]) == {"SEASON_SHORTER_THAN_HORIZON"}


# ------------------------------------------------------------------------------------------------
# E5: NaN pairs
# ------------------------------------------------------------------------------------------------


def test_e5_nan_pairs() -> None:
    truth = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1)
    forecast = np.array([[1.0, 3.0], [nan, 4.0]]).reshape(2, 2, 1)
    tables = run(truth, {"model": forecast}, data=dataset({"Q": [0, 15]}, {"Q": 15}))
    level1 = rows(tables.overall, n_avg=1)
    assert level1["mae"].item() == pytest.approx(1 / 3, **EXACT)
    assert level1["n_pairs"].item() == 3
    steps = rows(tables.per_step, n_avg=1)
    assert steps["mae"].to_numpy() == pytest.approx([0.0, 0.5], **EXACT)
    assert steps["n_pairs"].tolist() == [1, 2]
    level2 = rows(tables.overall, n_avg=2)
    assert level2["mae"].item() == pytest.approx(0.5, **EXACT)
    assert level2["n_pairs"].item() == 1


# ------------------------------------------------------------------------------------------------
# MASE: training span, regularity, lag
# ------------------------------------------------------------------------------------------------

# hourly values; the training span below covers hours 4..7 only: [1, 3, 2, 6], lag 1 → scale (2+1+4)/3
SPAN_SERIES = regular([100.0, 0.0, 50.0, 7.0, 1.0, 3.0, 2.0, 6.0, -40.0, 90.0])
SPAN_DATA = dataset({"Q": [60.0, 120.0]}, {"Q": 60.0})
SPAN_REFS = hours(3, 4, 5)  # span = [3 h + 60 min, 5 h + 120 min] = [4 h, 7 h]
SPAN_TRUTH = np.array([[1.0, 2.0], [3.0, 5.0]]).reshape(2, 2, 1)
SPAN_FORECAST = np.array([[2.0, 2.0], [3.0, 3.0]]).reshape(2, 2, 1)  # |e| = 1, 0, 0, 2 → MAE 0.75


def span_run(series: pd.Series, season: int | None = 1, refs: Any = SPAN_REFS) -> EvaluationTables:
    options = EvaluationOptions(levels=2, mase_season_steps=None if season is None else {"Q": season})
    return run(SPAN_TRUTH, {"model": SPAN_FORECAST}, data=SPAN_DATA, series={"Q": series}, options=options,
               refs=refs)


def test_mase_scale_uses_the_training_span_only() -> None:
    tables = span_run(SPAN_SERIES)
    scale = tables.mase_scales["Q"]
    assert (scale.rows, scale.step_minutes, scale.m) == (4, 60.0, 1)
    assert scale.scale.value == pytest.approx(7 / 3, **EXACT)
    assert rows(tables.overall, n_avg=1)["mase"].item() == pytest.approx(0.75 / (7 / 3), **EXACT)


def test_per_step_and_averaged_mase_use_the_same_scale() -> None:
    tables = span_run(SPAN_SERIES)
    steps = rows(tables.per_step, n_avg=1)
    assert steps["mase"].to_numpy() == pytest.approx(steps["mae"].to_numpy() / (7 / 3), **EXACT)
    level2 = rows(tables.overall, n_avg=2)
    assert level2["mase"].item() == pytest.approx(level2["mae"].item() / (7 / 3), **EXACT)


def test_span_ends_are_inclusive_and_compared_in_integer_ns() -> None:
    extra = pd.Series([500.0, -500.0], index=pd.DatetimeIndex(
        [T0 + pd.Timedelta(hours=4) - pd.Timedelta(1, "ns"), T0 + pd.Timedelta(hours=7) + pd.Timedelta(1, "ns")]
    ).as_unit("ns"))
    series = pd.concat([SPAN_SERIES, extra]).sort_index()
    tables = span_run(series)
    assert tables.mase_scales["Q"].rows == 4
    assert tables.mase_scales["Q"].scale.value == pytest.approx(7 / 3, **EXACT)


def test_irregular_training_series_gives_irregular_series() -> None:
    tables = span_run(SPAN_SERIES.drop(SPAN_SERIES.index[5]))
    assert tables.overall["mase"].isna().all() and tables.per_step["mase"].isna().all()
    mase_reasons = rows(tables.reasons, metric="mase")
    assert set(mase_reasons["reason"]) == {"IRREGULAR_SERIES"}
    assert len(mase_reasons) == len(tables.overall) + len(tables.per_step)
    assert not tables.overall["mae"].isna().any()


def test_a_single_training_row_is_too_short() -> None:
    tables = span_run(SPAN_SERIES, refs=hours(3))  # span [3 h + 60 min, 3 h + 120 min] = [4 h, 5 h]
    assert tables.mase_scales["Q"].rows == 2
    assert tables.mase_scales["Q"].scale.value == pytest.approx(2.0, **EXACT)
    tables = span_run(SPAN_SERIES.iloc[:5], refs=hours(3))  # only hour 4 is left
    assert tables.mase_scales["Q"].rows == 1
    assert set(rows(tables.reasons, metric="mase")["reason"]) == {"training series too short"}


def test_no_training_references_give_a_reason() -> None:
    tables = span_run(SPAN_SERIES, refs=pd.DatetimeIndex([], tz="UTC"))
    assert set(rows(tables.reasons, metric="mase")["reason"]) == {"no training samples"}


@pytest.mark.parametrize("step_minutes, m", [
    (15, 96), (60, 24), (7, 206), (576, 3), (1440, 1), (2880, 1), (4320, 1), (1 / 60, 86_400),
])
def test_default_lag_is_one_day_rounded_half_up(step_minutes: float, m: int) -> None:
    assert default_season_steps(round(step_minutes * NS_PER_MINUTE)) == m


def test_default_lag_in_evaluate() -> None:
    values = np.array([0.0, 1.0, 5.0, 2.0, 3.0, 3.0, 9.0, 6.0, 4.0, 7.0])
    series = regular(values, step_minutes=360)  # 6-hourly: m = 4
    data = dataset({"Q": [360.0]}, {"Q": 360.0})
    refs = series.index - pd.Timedelta(hours=6)
    tables = run(np.zeros((1, 1, 1)), {"model": np.ones((1, 1, 1))}, data=data, series={"Q": series}, refs=refs)
    scale = np.mean(np.abs(values[4:] - values[:-4]))
    assert tables.mase_scales["Q"].m == 4
    assert rows(tables.overall, n_avg=1)["mase"].item() == pytest.approx(1 / scale, **EXACT)


def test_training_nan_values_are_skipped_not_irregular() -> None:
    series = SPAN_SERIES.copy()
    series.iloc[5] = nan  # hours 4..7: [1, NaN, 2, 6] → differences 4 only
    tables = span_run(series)
    assert tables.mase_scales["Q"].scale.value == pytest.approx(4.0, **EXACT)


# ------------------------------------------------------------------------------------------------
# layout, order, channels
# ------------------------------------------------------------------------------------------------


def test_columns_and_dtypes() -> None:
    tables = e3()
    assert tuple(tables.overall.columns) == OVERALL_COLUMNS
    assert tuple(tables.per_step.columns) == PER_STEP_COLUMNS
    assert tuple(tables.reasons.columns) == REASONS_COLUMNS
    assert OVERALL_COLUMNS == ("model", "channel", "n_avg", "delta_minutes", "n_pairs", "mae", "mse", "rmse", "mape",
                               "mape_excluded", "smape", "wape", "nrmse", "mase", "r2", "skill_mae")
    assert PER_STEP_COLUMNS[:7] == ("model", "channel", "n_avg", "step", "lead_start_minutes", "lead_end_minutes",
                                    "n_pairs")
    assert str(tables.reasons["step"].dtype) == "Int64"
    for frame in (tables.overall, tables.per_step):
        assert frame["n_avg"].dtype == np.int64 and frame["n_pairs"].dtype == np.int64
        assert frame["mae"].dtype == np.float64


def test_rows_follow_model_order_then_channel_then_level_then_step() -> None:
    data = dataset({"B": [0, 15, 30], "A": [60, 120, 180]}, {"B": 15, "A": 60})
    truth = np.arange(12.0).reshape(2, 3, 2)
    series = {"A": LONG_SERIES["Q"], "B": LONG_SERIES["Q"]}
    tables = run(truth, {"zeta": truth + 1, "alpha": truth - 1}, data=data, series=series,
                 options=EvaluationOptions(levels=2))
    assert list(zip(tables.overall["model"], tables.overall["channel"], tables.overall["n_avg"], strict=True)) == [
        ("zeta", "B", 1), ("zeta", "B", 2), ("zeta", "A", 1), ("zeta", "A", 2),
        ("alpha", "B", 1), ("alpha", "B", 2), ("alpha", "A", 1), ("alpha", "A", 2)]
    keys = list(zip(tables.per_step["model"], tables.per_step["channel"], tables.per_step["n_avg"],
                    tables.per_step["step"], strict=True))
    assert keys[:4] == [("zeta", "B", 1, 0), ("zeta", "B", 1, 1), ("zeta", "B", 1, 2), ("zeta", "B", 2, 0)]
    assert len(keys) == 2 * 2 * (3 + 1)
    assert tables.models == ("zeta", "alpha") and tables.channels == ("B", "A")


def test_two_channels_with_different_offsets() -> None:
    data = dataset({"A": [0, 15, 30, 45], "B": [60, 120, 180, 240]}, {"A": 15.0, "B": 60.0})
    rng = np.random.default_rng(3)
    truth = rng.normal(size=(6, 4, 2))
    forecast = truth + rng.normal(size=truth.shape)
    forecast[:, :, 1] += 10
    series = {"A": LONG_SERIES["Q"], "B": regular(np.cos(np.arange(300.0)), 60)}
    tables = run(truth, {"model": forecast}, data=data, series=series, options=EvaluationOptions(levels=2))
    a, b = tables.overall_for("model", "A"), tables.overall_for("model", "B")
    assert a["delta_minutes"].tolist() == [15.0, 30.0] and b["delta_minutes"].tolist() == [60.0, 120.0]
    assert a["mae"].iloc[0] == pytest.approx(M.mae(truth[:, :, 0], forecast[:, :, 0]).value, **EXACT)
    assert b["mae"].iloc[0] == pytest.approx(M.mae(truth[:, :, 1], forecast[:, :, 1]).value, **EXACT)
    b2 = rows(tables.per_step, channel="B", n_avg=2)
    assert b2["lead_start_minutes"].tolist() == [60.0, 180.0]
    assert b2["lead_end_minutes"].tolist() == [120.0, 240.0]
    assert tables.mase_scales["A"].m == 96 and tables.mase_scales["B"].m == 24


def test_tables_equal_the_metric_functions_on_pooled_and_per_block_pairs() -> None:
    rng = np.random.default_rng(11)
    truth = rng.normal(size=(40, 6, 1))
    forecast = truth + rng.normal(size=truth.shape)
    truth[rng.random(truth.shape) < 0.1] = nan
    forecast[rng.random(truth.shape) < 0.1] = nan
    truth[:3, 0, 0] = 0.0
    options = EvaluationOptions(levels=3, nrmse_normalizer="range")
    tables = run(truth, {"model": forecast}, data=dataset({"Q": [0, 15, 30, 45, 60, 75]}, {"Q": 15}),
                 options=options)
    scale = tables.mase_scales["Q"].scale
    for n_avg in (1, 2, 3):
        t = truth[:, :, 0].reshape(40, -1, n_avg).mean(axis=2)
        p = forecast[:, :, 0].reshape(40, -1, n_avg).mean(axis=2)
        groups = [(rows(tables.overall, n_avg=n_avg).iloc[0], t, p)]
        groups += [(row, t[:, b], p[:, b]) for b, row in rows(tables.per_step, n_avg=n_avg).iterrows()]
        for row, tg, pg in groups:
            assert row["n_pairs"] == M.mae(tg, pg).n
            assert row["mape_excluded"] == M.mape(tg, pg).excluded
            for name in ("mae", "mse", "rmse", "mape", "smape", "wape", "r2"):
                assert row[name] == pytest.approx(getattr(M, name)(tg, pg).value, **EXACT), (n_avg, name)
            assert row["nrmse"] == pytest.approx(M.nrmse(tg, pg, "range").value, **EXACT)
            assert row["mase"] == pytest.approx(M.mae(tg, pg).value / scale.value, **EXACT)


def test_every_nan_value_has_exactly_one_reason() -> None:
    truth = np.array([[0.0, 0.0, 1.0], [0.0, nan, 2.0]]).reshape(2, 3, 1)
    forecast = np.array([[1.0, 1.0, 1.0], [nan, 3.0, 2.0]]).reshape(2, 3, 1)
    tables = run(truth, {"model": forecast}, data=dataset({"Q": [0, 15, 30]}, {"Q": 15}))
    metrics = (*M.METRIC_NAMES, "skill_mae")
    expected = set()
    for frame, has_step in ((tables.overall, False), (tables.per_step, True)):
        for _, row in frame.iterrows():
            for metric in metrics:
                if math.isnan(row[metric]):
                    expected.add((row["model"], row["channel"], row["n_avg"], row["step"] if has_step else None,
                                  metric))
    got = [(r.model, r.channel, r.n_avg, None if pd.isna(r.step) else int(r.step), r.metric)
           for r in tables.reasons.itertuples()]
    assert len(got) == len(set(got)) and set(got) == expected
    assert tables.reasons["reason"].map(lambda s: isinstance(s, str) and s != "").all()


def test_progress_reports_each_model() -> None:
    events: list[ProgressEvent] = []
    run(E3_TRUTH, {"b": E3_FORECAST, "a": E3_FORECAST}, progress=events.append)
    assert [(e.stage, e.unit, e.done, e.total) for e in events] == [("evaluation", "model", 1, 2),
                                                                     ("evaluation", "model", 2, 2)]
    assert "b" in events[0].message and "a" in events[1].message


def test_overall_for_unknown_names() -> None:
    tables = e3()
    for model, channel in (("nope", "Q"), ("model", "nope")):
        with pytest.raises(EvaluationError) as info:
            tables.overall_for(model, channel)
        assert info.value.code == "COLUMN_NOT_FOUND"


def test_works_with_a_windowed_dataset() -> None:
    P = regular(np.arange(40.0), 15)
    Q = regular(100 + np.sin(np.arange(40.0)), 15)
    ds = build_windows({"P": P}, {"Q": Q}, WindowOptions(n_in=3, n_out=4, stride_minutes=15))
    tables = evaluate(ds.Y, {"model": ds.Y + 0.5}, ds, {"Q": Q}, EvaluationOptions(levels=4),
                      train_reference_times=ds.reference_times[:20])
    assert tables.overall_for("model", "Q")["delta_minutes"].tolist() == [
        ds.channel_steps_minutes["output:Q"] * n for n in (1, 2, 3, 4)]
    assert tables.overall["mae"].to_numpy() == pytest.approx([0.5] * 4, **EXACT)
    assert tables.mase_scales["Q"].step_minutes == 15.0


# ------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["truth_2d", "prediction_shape", "feature_count", "train_series", "offsets",
                                  "steps", "series_index"])
def test_shape_mismatch(case: str) -> None:
    truth, predictions, data, series = E3_TRUTH, {"model": E3_FORECAST}, E3_DATA, LONG_SERIES
    if case == "truth_2d":
        truth = truth[:, :, 0]
    elif case == "prediction_shape":
        predictions = {"model": E3_FORECAST[:, :4]}
    elif case == "feature_count":
        data = dataset({"Q": [0, 15, 30, 45, 60], "R": [0, 15, 30, 45, 60]}, {"Q": 15, "R": 15})
    elif case == "train_series":
        series = {"other": LONG_SERIES["Q"]}
    elif case == "series_index":
        series = {"Q": LONG_SERIES["Q"].reset_index(drop=True)}
    elif case == "offsets":
        data = dataset({"Q": [0, 15, 30]}, {"Q": 15})
    else:
        data = dataset({"Q": [0, 15, 30, 45, 60]}, {"R": 15})
    with pytest.raises(EvaluationError) as info:
        run(truth, predictions, data=data, series=series)
    assert info.value.code == "SHAPE_MISMATCH"


def test_no_test_samples() -> None:
    with pytest.raises(EvaluationError) as info:
        run(np.zeros((0, 5, 1)), {"model": np.zeros((0, 5, 1))})
    assert info.value.code == "NO_TEST_SAMPLES"


def test_unknown_mase_season_channel() -> None:
    with pytest.raises(EvaluationError) as info:
        run(E3_TRUTH, {"model": E3_FORECAST}, options=EvaluationOptions(mase_season_steps={"R": 4}))
    assert info.value.code == "COLUMN_NOT_FOUND"


# ------------------------------------------------------------------------------------------------
# serialisation and summary
# ------------------------------------------------------------------------------------------------


def test_to_json_round_trips_through_strict_json() -> None:
    tables = e3()
    data = tables.to_json()
    assert set(data) == {"overall", "per_step", "reasons", "omitted_levels"}
    text = json.dumps(data, allow_nan=False)
    assert json.loads(text) == data
    assert data["omitted_levels"] == [6, 7, 8, 9, 10, 11, 12]
    assert len(data["overall"]) == len(tables.overall) and len(data["per_step"]) == len(tables.per_step)
    first = data["overall"][0]
    assert list(first) == list(OVERALL_COLUMNS)
    assert first["model"] == "model" and first["n_avg"] == 1 and first["mae"] == pytest.approx(1.4, **EXACT)
    assert all(r["mase"] is not None for r in data["overall"])
    assert any(r["r2"] is None for r in data["per_step"])
    assert {r["step"] for r in data["reasons"]} >= {None, 0}
    assert all(type(r["n_pairs"]) is int for r in data["per_step"])


def test_to_parquet_writes_three_files_that_read_back_equal(tmp_path: Path) -> None:
    tables = span_run(SPAN_SERIES.drop(SPAN_SERIES.index[5]))  # has NaN values and reasons
    paths = tables.to_parquet(tmp_path / "eval")
    assert sorted(p.name for p in paths.values()) == ["overall.parquet", "per_step.parquet", "reasons.parquet"]
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == sorted(p.name for p in paths.values())
    back = EvaluationTables.read_parquet(tmp_path / "eval")
    for name in ("overall", "per_step", "reasons"):
        pd.testing.assert_frame_equal(getattr(back, name), getattr(tables, name))
    assert back.omitted_levels == tables.omitted_levels
    assert (back.models, back.channels) == (tables.models, tables.channels)
    plain = pd.read_parquet(paths["overall.parquet"])
    assert list(plain.columns) == list(OVERALL_COLUMNS) and len(plain) == len(tables.overall)


def test_parquet_bytes_are_deterministic(tmp_path: Path) -> None:
    first = span_run(SPAN_SERIES).to_parquet_bytes()
    second = span_run(SPAN_SERIES).to_parquet_bytes()
    assert first == second
    paths = span_run(SPAN_SERIES).to_parquet(tmp_path)
    assert {name: path.read_bytes() for name, path in paths.items()} == first


def test_to_parquet_failure_leaves_no_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StorageError) as info:
        e3().to_parquet(blocker / "eval")
    assert info.value.code == "WRITE_FAILED"


def test_summary_at_level_1() -> None:
    summary = e3().summary()
    assert set(summary) == {"model", "persistence"}
    entry = summary["model"]["Q"]
    assert set(entry) == {"mae", "rmse", "wape", "mase", "skill_mae", "n_avg", "n_pairs"}
    assert entry["n_avg"] == 1 and entry["n_pairs"] == 5
    assert entry["mae"] == pytest.approx(1.4, **EXACT)
    assert entry["rmse"] == pytest.approx(math.sqrt(3.0), **EXACT)
    assert entry["skill_mae"] == pytest.approx(1 - 1.4 / 1.2, **EXACT)
    json.dumps(summary, allow_nan=False)


def test_summary_at_another_level_and_nan_as_none() -> None:
    tables = span_run(SPAN_SERIES.drop(SPAN_SERIES.index[5]))
    entry = tables.summary(n_avg=2)["model"]["Q"]
    assert entry["n_avg"] == 2 and entry["mase"] is None
    with pytest.raises(ValueError, match="n_avg=7"):
        tables.summary(n_avg=7)
