"""Clean stage (stages.md §3): worked examples C1–C6, errors, thresholds and resume, reports, progress,
determinism, plots, the ``cleaned`` suite, and properties against row-by-row reference scans."""

from __future__ import annotations

import json
import math
import pickle
import subprocess
import sys
import textwrap
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zeitflow.errors import CleanError, FrameError
from zeitflow.frame import validate_frame
from zeitflow.options.clean import CleanOptions, ThresholdAnswer
from zeitflow.reports import ProgressEvent
from zeitflow.stages import clean_rules as rules
from zeitflow.stages.clean import FLAG_NAMES, CleanResult, apply_threshold, clean, resume
from zeitflow.stages.clean_plots import channel_unit, lstm_score_plot, score_plot, stl_score_plot
from zeitflow.stages.clean_scores import round_significant

NAN = math.nan
TOL = {"rel": 1e-9, "abs": 1e-9}
NS = rules.NS_PER_MINUTE
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def frame(values: list[float] | dict[str, list[float]], step_minutes: float = 1.0,
          start: str = "2024-03-01 00:00") -> pd.DataFrame:
    data = values if isinstance(values, dict) else {"x": values}
    n = len(next(iter(data.values())))
    offsets = np.array([rules.minutes_to_ns(k * step_minutes) for k in range(n)], dtype=np.int64)
    index = pd.DatetimeIndex(pd.Timestamp(start, tz="UTC").as_unit("ns") + pd.to_timedelta(offsets, "ns"),
                             name="utc").as_unit("ns")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in data.items()}, index=index)


def values(result: CleanResult, column: str = "x") -> list[float]:
    return result.frame[column].tolist()


def same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all((math.isnan(x) and math.isnan(y)) or x == pytest.approx(y, **TOL)
                                    for x, y in zip(a, b, strict=True))


def seasonal_frame(n: int = 240, step: float = 60.0, spikes: dict[str, int] | None = None,
                   seed: int = 1) -> pd.DataFrame:
    """Two channels with a daily cycle on a regular grid, with planted spikes."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    data = {"load [kW]": 10 * np.sin(2 * np.pi * k / 24) + rng.normal(0, 0.5, n),
            "y": 5 * np.cos(2 * np.pi * k / 24) + rng.normal(0, 0.5, n)}
    for column, row in (spikes or {"load [kW]": 100, "y": 50}).items():
        data[column][row] += 8.0
    return frame({c: list(v) for c, v in data.items()}, step)


# ============================================================================================= worked examples


class TestC1Constants:
    v = [1, 2, 2, 2, 3, 5, 5, 5]

    @pytest.mark.parametrize("rule_set", ["classic", "anomaly"])
    def test_runs_removed_including_the_open_one_at_the_end(self, rule_set: str) -> None:
        r = clean(frame(self.v), CleanOptions(rule_set=rule_set, eq_max_minutes=2))
        assert same(values(r), [1, NAN, NAN, NAN, 3, NAN, NAN, NAN])
        ch = r.report.channels["x"]
        assert ch.flagged == {"constant": 6} and ch.values_removed_total == 6
        assert r.flags["x"].tolist() == ["", "constant", "constant", "constant", "", "constant", "constant",
                                         "constant"]

    def test_longer_threshold_flags_nothing(self) -> None:
        r = clean(frame(self.v), CleanOptions(eq_max_minutes=3))
        assert same(values(r), self.v) and r.report.channels["x"].flagged == {"constant": 0}

    @pytest.mark.parametrize("rule_set, fill_step", [("classic", "fill"), ("anomaly", "fill_after_constant")])
    def test_fill_and_short_runs(self, rule_set: str, fill_step: str) -> None:
        r = clean(frame(self.v), CleanOptions(rule_set=rule_set, eq_max_minutes=2, gap_max_minutes=5))
        assert same(values(r), [1, 1.5, 2.0, 2.5, 3, NAN, NAN, NAN])
        assert r.report.channels["x"].filled == {fill_step: 3}
        assert r.filled["x"].tolist() == [False, True, True, True, False, False, False, False]
        r2 = clean(frame(self.v), CleanOptions(rule_set=rule_set, eq_max_minutes=2, gap_max_minutes=5,
                                               run_min_minutes=3))
        assert same(values(r2), values(r)) and r2.report.channels["x"].flagged["short_run"] == 0


class TestC2Bounds:
    v = [5, 0, 120, -3, 7]

    def test_bounds_zeros_and_fill(self) -> None:
        opts = CleanOptions(rule_set="classic", value_max=100, value_min=0, drop_zeros=True, gap_max_minutes=60)
        r = clean(frame(self.v, 15), opts)
        assert same(values(r), [5, 5.5, 6.0, 6.5, 7])
        ch = r.report.channels["x"]
        assert ch.flagged == {"value_max": 1, "value_min": 1, "zero": 1, "post_validation": 0}
        assert ch.filled == {"fill": 3} and ch.values_filled_total == 3
        assert [s.step for s in ch.steps] == ["value_max", "value_min", "zero", "fill", "post_validation"]
        assert r.flags["x"].tolist() == ["", "zero", "value_max", "value_min", ""]
        assert r.filled["x"].tolist() == [False, True, True, True, False]

    def test_span_over_the_limit_stays_nan(self) -> None:
        opts = CleanOptions(rule_set="classic", value_max=100, value_min=0, drop_zeros=True, gap_max_minutes=45)
        r = clean(frame(self.v, 15), opts)
        assert same(values(r), [5, NAN, NAN, NAN, 7]) and r.report.channels["x"].filled == {"fill": 0}


class TestC3ClassicSlope:
    def test_episode_removed(self) -> None:
        r = clean(frame([10, 10, 50, 52, 10, 10]),
                  CleanOptions(rule_set="classic", slope_max=5, outlier_max_minutes=5))
        assert same(values(r), [10, 10, NAN, NAN, 10, 10]) and r.report.channels["x"].flagged == {"slope": 2}

    def test_level_shift_kept(self) -> None:
        r = clean(frame([10, 10, 50, 52, 10, 10]),
                  CleanOptions(rule_set="classic", slope_max=5, outlier_max_minutes=0.5))
        assert same(values(r), [10, 10, 50, 52, 10, 10]) and r.report.channels["x"].flagged == {"slope": 0}

    def test_open_episode_at_the_end(self) -> None:
        r = clean(frame([10, 10, 50, 50]), CleanOptions(rule_set="classic", slope_max=5, outlier_max_minutes=5))
        assert same(values(r), [10, 10, NAN, NAN])


class TestC4Sbad:
    v = [NAN, 30, 10, 11, 10, 60, 61, 10, 11]
    opts = CleanOptions(slope_max=5, outlier_max_minutes=5, gap_max_minutes=3)

    def test_passes_iterations_and_fill(self) -> None:
        r = clean(frame(self.v), self.opts)
        assert same(values(r), [NAN, NAN, 10, 11, 10, 10, 10, 10, 11])
        ch = r.report.channels["x"]
        assert ch.sbad_iterations == 2
        assert ch.flagged == {"sbad_a": 1, "sbad_b": 2} and ch.values_removed_total == 3
        assert ch.filled == {"fill_after_sbad": 2}
        assert r.flags["x"].tolist() == ["", "sbad_a", "", "", "", "sbad_b", "sbad_b", "", ""]
        assert r.filled["x"].tolist() == [False] * 5 + [True, True] + [False] * 2
        assert (ch.nan_before, ch.nan_after) == (1, 2)

    def test_iteration_cap_is_reported(self) -> None:
        r = clean(frame(self.v), self.opts.model_copy(update={"sbad_max_iterations": 1}))
        assert r.report.channels["x"].sbad_iterations == 1
        assert [w.code for w in r.report.warnings] == ["SBAD_NOT_CONVERGED"]
        assert same(values(r), [NAN, NAN, 10, 11, 10, 10, 10, 10, 11])


class TestC5ShortRuns:
    v = [1, 2, NAN, 4, NAN, NAN, 7, 8, 9]

    @pytest.mark.parametrize("rule_set", ["classic", "anomaly"])
    def test_short_runs(self, rule_set: str) -> None:
        r = clean(frame(self.v), CleanOptions(rule_set=rule_set, run_min_minutes=2))
        assert same(values(r), [NAN] * 6 + [7, 8, 9]) and r.report.channels["x"].flagged == {"short_run": 3}
        r = clean(frame(self.v), CleanOptions(rule_set=rule_set, run_min_minutes=2.5))
        assert same(values(r), [NAN] * 9) and r.report.channels["x"].flagged == {"short_run": 6}


class TestC6Thresholds:
    scores = pd.Series([0.1, 0.2, 3.5, 0.0], index=frame([0, 0, 0, 0]).index)

    def test_apply_threshold(self) -> None:
        assert apply_threshold(self.scores, 1.0).tolist() == [False, False, True, False]
        assert apply_threshold(self.scores, 3.5).tolist() == [False] * 4
        flags = apply_threshold(self.scores.abs() * pd.Series([1, -1, 1, 1], index=self.scores.index).abs(), 0.15)
        assert flags.dtype == bool and flags.index.equals(self.scores.index)

    def test_nan_scores_are_never_flagged(self) -> None:
        s = pd.Series([NAN, 5.0, NAN], index=frame([0, 0, 0]).index)
        assert apply_threshold(s, 0.0).tolist() == [False, True, False]
        assert apply_threshold(s, None).tolist() == [False] * 3

    def test_skip_answer_flags_nothing_and_records_skipped(self) -> None:
        f = seasonal_frame()
        pending = clean(f, CleanOptions(stl={}, columns=["load [kW]"]))
        assert pending.pending is not None and pending.pending.phase == "stl"
        done = resume(pending, ThresholdAnswer(phase="stl", column="load [kW]", threshold=None))
        assert done.pending is None and done.report.complete
        stl = done.report.channels["load [kW]"].stl
        assert stl is not None and stl.skipped is True and stl.threshold is None and stl.flagged == 0
        assert stl.threshold_source == "interactive"
        assert not (done.flags["load [kW]"] == "stl").any()
        pd.testing.assert_frame_equal(done.frame, f)


# ============================================================================================= more rules


def test_gap_limit_is_exact_in_integer_ns() -> None:
    # 30 s grid: one missing value spans exactly 1 minute, two span 1.5 minutes
    r = clean(frame([0, NAN, 2, NAN, NAN, 5], 0.5), CleanOptions(gap_max_minutes=1))
    assert same(values(r), [0, 1, 2, NAN, NAN, 5])
    r = clean(frame([0, NAN, 2], 1 / 60), CleanOptions(gap_max_minutes=2 / 60))
    assert same(values(r), [0, 1, 2])


def test_decimals_round_filled_values_only() -> None:
    r = clean(frame([0.123456, NAN, NAN, 1]), CleanOptions(gap_max_minutes=3, decimals=2))
    assert values(r) == [0.123456, 0.42, 0.71, 1.0]


def test_post_validation_catches_rounded_fills() -> None:
    r = clean(frame([1.006, NAN, 1.006]),
              CleanOptions(rule_set="classic", value_max=1.006, gap_max_minutes=2, decimals=2))
    ch = r.report.channels["x"]
    assert same(values(r), [1.006, NAN, 1.006])
    assert ch.filled == {"fill": 1} and ch.flagged["post_validation"] == 1
    assert r.flags["x"].tolist() == ["", "post_validation", ""] and not r.filled["x"].any()


def test_anomaly_fills_after_each_phase_and_fill_only_fills_once() -> None:
    v = [1, 2, 2, 2, 3, 0, 4, 5, 200, 6]
    r = clean(frame(v), CleanOptions(eq_max_minutes=2, drop_zeros=True, value_max=100, gap_max_minutes=5))
    ch = r.report.channels["x"]
    assert [s.step for s in ch.steps] == ["constant", "fill_after_constant", "zero", "fill_after_zero", "range",
                                          "fill_after_range"]
    assert ch.filled == {"fill_after_constant": 3, "fill_after_zero": 1, "fill_after_range": 1}
    assert ch.flagged == {"constant": 3, "zero": 1, "value_max": 1}
    assert same(values(r), [1, 1.5, 2, 2.5, 3, 3.5, 4, 5, 5.5, 6])
    only = clean(frame([1, NAN, 3]), CleanOptions(gap_max_minutes=5))
    assert [s.step for s in only.report.channels["x"].steps] == ["fill"] and same(values(only), [1, 2, 3])


def test_zero_means_zero_not_off() -> None:
    r = clean(frame([1, NAN, 3, 5]), CleanOptions(gap_max_minutes=0, run_min_minutes=0, value_max=0,
                                                  rule_set="classic"))
    assert same(values(r), [NAN, NAN, NAN, NAN])  # value_max=0 is a real bound; nothing filled
    assert r.report.channels["x"].flagged == {"value_max": 3, "short_run": 0, "post_validation": 0}
    assert clean(frame([0.0, -0.0, 1]), CleanOptions(drop_zeros=True)).report.channels["x"].flagged == {"zero": 2}


def test_columns_select_channels_and_others_pass_through() -> None:
    f = frame({"a": [1, 2, 2, 2], "b": [1, 2, 2, 2]})
    r = clean(f, CleanOptions(eq_max_minutes=1, columns=["b"]))
    pd.testing.assert_series_equal(r.frame["a"], f["a"])
    assert r.flags["a"].eq("").all() and not r.filled["a"].any()
    assert same(values(r, "b"), [1, NAN, NAN, NAN])
    assert r.report.columns_cleaned == ["b"] and r.report.columns_passed_through == ["a"]
    assert list(r.report.channels) == ["b"]


def test_output_contract() -> None:
    f = frame({"a": [5, 0, 120, -3, 7], "b [m]": [1, 1, 1, NAN, 2]}, 15)
    r = clean(f, CleanOptions(rule_set="classic", value_max=100, drop_zeros=True, eq_max_minutes=30,
                              gap_max_minutes=30))
    validate_frame(r.frame, "out")
    assert r.frame.index is f.index and list(r.frame.columns) == list(f.columns)
    assert r.flags.shape == f.shape and r.filled.shape == f.shape
    assert all(str(d) == "category" for d in r.flags.dtypes) and all(str(d) == "bool" for d in r.filled.dtypes)
    assert list(r.flags["a"].cat.categories) == list(FLAG_NAMES)
    assert r.pending is None and r.state is None and r.report.complete
    json.loads(r.report.model_dump_json())
    assert r.report.rows_in == r.report.rows_out == 5 and r.report.parameters["grid_step_minutes"] == 15.0


def test_all_nan_channel_skips_the_score_phases_with_a_warning() -> None:
    f = seasonal_frame()
    f["empty"] = NAN
    r = clean(f, CleanOptions(stl={"threshold": 100.0}, columns=["empty", "y"]))
    assert r.report.complete and [w.code for w in r.report.warnings] == ["CHANNEL_ALL_NAN"]
    stl = r.report.channels["empty"].stl
    assert stl is not None and stl.scored == 0 and stl.note
    assert r.report.channels["y"].stl.scored == 240  # type: ignore[union-attr]


def test_options_may_be_a_mapping() -> None:
    r = clean(frame([1, 2, 2, 2]), {"eqMax": 1, "rule_set": "classic"})
    assert r.report.parameters["eq_max_minutes"] == 1.0 and r.report.rule_set == "classic"
    assert r.report.parameters_hash == CleanOptions(eq_max_minutes=1, rule_set="classic").parameters_hash()


# ============================================================================================= errors


def test_invalid_frame_is_a_frame_error() -> None:
    f = frame([1, 2, 3])
    with pytest.raises(FrameError):
        clean(f.iloc[::-1], CleanOptions())


@pytest.mark.parametrize("f", [frame([NAN, NAN]), frame([])])
def test_no_numeric_data(f: pd.DataFrame) -> None:
    with pytest.raises(CleanError) as info:
        clean(f, CleanOptions(eq_max_minutes=1))
    assert info.value.code == "NO_NUMERIC_DATA"


def test_column_not_found() -> None:
    with pytest.raises(CleanError) as info:
        clean(frame([1, 2]), CleanOptions(columns=["x", "nope"]))
    assert info.value.code == "COLUMN_NOT_FOUND" and info.value.details["columns"] == ["nope"]


def test_time_grid_required() -> None:
    f = frame([1.0] * 60)
    irregular = f.drop(f.index[7])
    with pytest.raises(CleanError) as info:
        clean(irregular, CleanOptions(stl={"period_hours": 0.1}))
    assert info.value.code == "TIME_GRID_REQUIRED" and info.value.hint == "resample or align first"
    clean(irregular, CleanOptions(eq_max_minutes=5))  # the other steps need no grid


def test_series_incomplete_names_count_first_timestamp_and_hint() -> None:
    v = list(np.sin(np.arange(60)))
    v[0] = NAN  # leading NaN is fine
    v[10] = v[11] = v[30] = NAN
    with pytest.raises(CleanError) as info:
        clean(frame(v), CleanOptions(stl={"period_hours": 0.1, "threshold": 1}))
    err = info.value
    assert err.code == "SERIES_INCOMPLETE" and err.details["interior_nan"] == 3
    assert err.details["first_timestamp"] == "2024-03-01T00:10:00+00:00" and "gap_max_minutes >= 3" in err.hint
    with pytest.raises(CleanError) as info:  # with STL as the first phase no fill runs before it
        clean(frame(v), CleanOptions(stl={"period_hours": 0.1, "threshold": 100}, gap_max_minutes=3))
    assert "earlier phase" in info.value.hint
    r = clean(frame(v), CleanOptions(stl={"period_hours": 0.1, "threshold": 100}, gap_max_minutes=3, value_max=10))
    assert r.report.channels["x"].filled["fill_after_range"] == 3
    assert r.report.channels["x"].stl.scored == 59  # type: ignore[union-attr]


def test_stl_period_errors() -> None:
    with pytest.raises(CleanError) as info:
        clean(frame([1.0] * 60, 7), CleanOptions(stl={"period_hours": 1}))
    assert info.value.code == "STL_PERIOD_NOT_ALIGNED"
    assert "STL period not an integer number of steps" in info.value.message
    with pytest.raises(CleanError) as info:
        clean(frame(list(np.arange(11.0))), CleanOptions(stl={"period_hours": 0.1}))  # 6 steps, n = 11 < 12
    assert info.value.code == "STL_PERIOD_OUT_OF_RANGE" and info.value.details["span_values"] == 11
    with pytest.raises(CleanError) as info:
        clean(frame([1.0] * 60, 60), CleanOptions(stl={"period_hours": 1}))
    assert info.value.code == "STL_PERIOD_OUT_OF_RANGE"


def test_lstm_period_errors_come_before_tensorflow() -> None:
    with pytest.raises(CleanError) as info:
        clean(frame([1.0] * 10, 45), CleanOptions(lstm={"period_hours": 1}))
    assert info.value.code == "LSTM_PERIOD_OUT_OF_RANGE"
    with pytest.raises(CleanError) as info:
        clean(frame(list(np.arange(11.0))), CleanOptions(lstm={"period_hours": 0.1}))
    assert info.value.code == "LSTM_PERIOD_OUT_OF_RANGE" and info.value.details["period_steps"] == 6


def test_resume_state_mismatch() -> None:
    done = clean(frame([1, 2, 3]), CleanOptions(eq_max_minutes=1))
    with pytest.raises(CleanError) as info:
        resume(done, ThresholdAnswer(phase="stl", column="x", threshold=1))
    assert info.value.code == "RESUME_STATE_MISMATCH"
    pending = clean(seasonal_frame(), CleanOptions(stl={}))
    for phase, column in (("lstm", "load [kW]"), ("stl", "y")):
        with pytest.raises(CleanError) as info:
            resume(pending, ThresholdAnswer(phase=phase, column=column, threshold=1))  # type: ignore[arg-type]
        assert info.value.code == "RESUME_STATE_MISMATCH"
        assert info.value.details["pending"] == {"phase": "stl", "column": "load [kW]"}


def test_errors_pickle_with_their_codes() -> None:
    err = CleanError("SERIES_INCOMPLETE", "m", details={"column": "x"}, hint="h")
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.details, back.hint) == ("SERIES_INCOMPLETE", {"column": "x"}, "h")


# ============================================================================================= thresholds & resume


def test_threshold_request_contents() -> None:
    r = clean(seasonal_frame(), CleanOptions(stl={}))
    req = r.pending
    assert req is not None and (req.phase, req.column, req.period_steps) == ("stl", "load [kW]", 24)
    assert str(req.scores.index.dtype) == "datetime64[ns, UTC]" and len(req.scores) == 240
    s = req.scores.to_numpy()
    np.testing.assert_allclose(s, np.abs(req.components["residual"].to_numpy()))
    q = np.quantile(s, [0.5, 0.9, 0.99, 0.999])
    assert [req.summary.q50, req.summary.q90, req.summary.q99, req.summary.q999] == pytest.approx(list(q))
    assert req.summary.n == 240 and req.summary.max == s.max()
    mad = np.median(np.abs(s - np.median(s)))
    assert req.suggested_threshold == float(f"{np.median(s) + 4 * 1.4826 * mad:.4g}")
    assert set(req.components.columns) == {"observed", "trend", "seasonal", "residual", "score"}
    assert "load [kW]" in req.description() and "STL" in req.description()
    assert "| suggested_threshold |" in req.summary_markdown()
    assert not r.report.complete and r.report.pending == {"phase": "stl", "column": "load [kW]"}
    assert r.report.channels["load [kW]"].stl.suggested_threshold == req.suggested_threshold  # type: ignore


def test_round_significant() -> None:
    assert round_significant(0.0012345678) == 0.001235
    assert round_significant(123456.0) == 123500.0
    assert round_significant(0.0) == 0.0


def test_stl_flags_the_planted_spike() -> None:
    r = clean(seasonal_frame(), CleanOptions(stl={"threshold": 4.0}, gap_max_minutes=120))
    for column, row in (("load [kW]", 100), ("y", 50)):
        flagged = np.flatnonzero(r.flags[column].to_numpy() == "stl")
        assert row in flagged and len(flagged) <= 3
        assert r.filled[column].iloc[row]
    stl = r.report.channels["y"].stl
    assert stl is not None and stl.threshold_source == "parameter" and stl.threshold == 4.0 and not stl.skipped


def test_resume_equals_up_front_thresholds_and_leaves_the_input_alone() -> None:
    f = seasonal_frame()
    opts = dict(stl={"period_hours": 24}, gap_max_minutes=60, slope_max=20, outlier_max_minutes=60)
    first = clean(f, CleanOptions(**opts))
    first = pickle.loads(pickle.dumps(first))  # the task layer may persist the paused result
    answers = []
    r = first
    while r.pending is not None:
        answers.append((r.pending.phase, r.pending.column))
        r = resume(r, ThresholdAnswer(phase=r.pending.phase, column=r.pending.column, threshold=1.5))
    assert answers == [("stl", "load [kW]"), ("stl", "y")]
    up_front = clean(f, CleanOptions(**{**opts, "stl": {"period_hours": 24, "threshold": 1.5}}))
    pd.testing.assert_frame_equal(r.frame, up_front.frame)
    pd.testing.assert_frame_equal(r.flags, up_front.flags)
    pd.testing.assert_frame_equal(r.filled, up_front.filled)
    a, b = r.report.model_dump(), up_front.report.model_dump()
    for rep in (a, b):
        for key in ("duration_seconds", "parameters", "parameters_hash"):
            rep.pop(key)
        for ch in rep["channels"].values():
            ch["stl"].pop("threshold_source")
    assert a == b
    assert r.report.channels["y"].stl.threshold_source == "interactive"  # type: ignore[union-attr]
    # resuming the same paused result again gives the same result: resume does not modify its input
    again = resume(first, ThresholdAnswer(phase="stl", column="load [kW]", threshold=1.5))
    assert again.pending is not None and again.pending.column == "y"
    assert first.pending is not None and first.pending.column == "load [kW]" and first.state is not None
    assert first.state.channel_pos == 0


def test_pending_frame_holds_intermediate_values() -> None:
    f = seasonal_frame()
    f.iloc[5, 1] = NAN
    r = clean(f, CleanOptions(stl={}, gap_max_minutes=60))
    assert r.pending is not None and r.pending.column == "load [kW]"
    assert math.isnan(r.frame["y"].iloc[5])  # the second channel has not been processed yet
    assert not r.report.channels["load [kW]"].complete


# ============================================================================================= progress


def test_progress_events() -> None:
    events: list[ProgressEvent] = []
    f = seasonal_frame()
    opts = CleanOptions(stl={}, slope_max=20, outlier_max_minutes=60, gap_max_minutes=60)
    r = clean(f, opts, progress=events.append)
    while r.pending is not None:
        r = resume(r, {"phase": "stl", "column": r.pending.column, "threshold": 2.0}, progress=events.append)
    messages = [e.message for e in events]
    assert all(e.stage == "clean" and e.total == 2 for e in events)
    assert [e.done for e in events] == sorted(e.done for e in events) and events[-1].done == 2
    assert "load [kW]: started" in messages and "y: finished" in messages
    assert "awaiting_threshold: stl load [kW]" in messages and "threshold_received: stl y" in messages
    assert any(e.unit == "iteration" and e.message.startswith("y: SBAD iteration") for e in events)
    finished = [e for e in events if e.unit == "phase" and e.message == "y: stl finished"]
    assert finished and set(finished[0].metrics) == {"flagged", "filled"}


# ============================================================================================= determinism


def test_same_input_gives_identical_output() -> None:
    f = seasonal_frame()
    opts = CleanOptions(stl={"threshold": 1.0}, eq_max_minutes=120, slope_max=3, outlier_max_minutes=120,
                        gap_max_minutes=120, run_min_minutes=60)
    a, b = clean(f, opts), clean(f.copy(), opts)
    for x, y in ((a.frame, b.frame), (a.flags, b.flags), (a.filled, b.filled)):
        pd.testing.assert_frame_equal(x, y)
    da, db = a.report.model_dump(), b.report.model_dump()
    da.pop("duration_seconds")
    db.pop("duration_seconds")
    assert da == db


# ============================================================================================= plots and imports


def test_plots_are_png_and_reproducible() -> None:
    r = clean(seasonal_frame(), CleanOptions(stl={}))
    req = r.pending
    assert req is not None
    png = score_plot(req)
    assert png.startswith(PNG_MAGIC) and png == stl_score_plot(req)
    c = req.components
    direct = stl_score_plot(c["observed"], c["trend"], c["seasonal"], c["residual"], column=req.column,
                            threshold=req.suggested_threshold, period_steps=req.period_steps)
    assert direct == png
    lstm = lstm_score_plot(c["observed"], c["observed"] - c["residual"], c["score"], column="load [kW]",
                           threshold=1.0, suggested=False)
    assert lstm.startswith(PNG_MAGIC)
    assert stl_score_plot([1.0, 2, 3], [1.0, 2, 3], [0.0, 0, 0], [0.0, 0, 0]).startswith(PNG_MAGIC)
    assert channel_unit("load_grid [kW]") == "kW" and channel_unit("T (°C)") == "°C" and channel_unit("x") is None


def test_imports_stay_light_and_pyplot_free() -> None:
    code = textwrap.dedent("""
        import sys
        import numpy as np, pandas as pd
        import zeitflow.stages.clean as c, zeitflow.stages.clean_plots as p, zeitflow.options.clean
        heavy = [m for m in ("tensorflow", "keras", "statsmodels", "prefect") if m in sys.modules]
        idx = pd.date_range("2024-01-01", periods=96, freq="h", tz="UTC", name="utc").as_unit("ns")
        f = pd.DataFrame({"x": np.sin(np.arange(96) / 3.0)}, index=idx)
        r = c.clean(f, c.CleanOptions(stl={}))
        p.score_plot(r.pending)
        print(heavy, "tensorflow" in sys.modules, "matplotlib.pyplot" in sys.modules, "prefect" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["[]", "False", "False", "False"]


def test_cleaned_suite_accepts_a_clean_output() -> None:
    from zeitflow.quality import load_suite, validate_frame_quality

    f = frame({"x": [5, 0, 120, -3, 7], "y": [500, 1, 2, NAN, 3]}, 15)
    r = clean(f, CleanOptions(rule_set="classic", value_max=100, value_min=0, drop_zeros=True, gap_max_minutes=60,
                              columns=["x"]))
    params = {"channels": list(f.columns), "rows": len(f), "bounded_channels": r.report.columns_cleaned,
              "value_min": 0, "value_max": 100}
    assert len(load_suite("cleaned", params)) == 12
    gate = validate_frame_quality(r.frame, "cleaned", params)
    assert gate.success, gate.failures_table()
    bad = validate_frame_quality(r.frame, "cleaned", {**params, "bounded_channels": ["x", "y"], "rows": 6})
    assert {(f["expectation"], f["column"]) for f in bad.failures} == {
        ("expect_table_row_count_to_be_between", None), ("expect_column_values_to_be_between", "y")}


# ============================================================================================= reference scans

# Row-by-row transcriptions of the spec's pseudo-code, used to check the vectorised kernels.


def ref_constant(t: np.ndarray, v: np.ndarray, eq_ns: int) -> np.ndarray:
    out = np.zeros(v.size, dtype=bool)
    i = 0
    while i < v.size:
        j = i
        while j + 1 < v.size and not math.isnan(v[i]) and v[j + 1] == v[i]:
            j += 1
        if j > i and t[j] - t[i] >= eq_ns:
            out[i:j + 1] = True
        i = j + 1
    return out


def ref_short(t: np.ndarray, v: np.ndarray, run_ns: int) -> np.ndarray:
    out = np.zeros(v.size, dtype=bool)
    i = 0
    while i < v.size:
        if math.isnan(v[i]):
            i += 1
            continue
        j = i
        while j + 1 < v.size and not math.isnan(v[j + 1]):
            j += 1
        if t[j] - t[i] < run_ns:
            out[i:j + 1] = True
        i = j + 1
    return out


def ref_fill(t: np.ndarray, v: np.ndarray, gap_ns: int) -> np.ndarray:
    out = v.copy()
    valid = [i for i in range(v.size) if not math.isnan(v[i])]
    for a, b in zip(valid, valid[1:], strict=False):
        if b > a + 1 and t[b] - t[a] <= gap_ns:
            for k in range(a + 1, b):
                out[k] = v[a] + (v[b] - v[a]) * (t[k] - t[a]) / (t[b] - t[a])
    return out


def _rate(t: np.ndarray, v: np.ndarray, i: int) -> float:
    return (v[i] - v[i - 1]) / ((t[i] - t[i - 1]) / NS)


def ref_classic(t: np.ndarray, v: np.ndarray, slope_max: float, lim: int) -> np.ndarray:
    v = v.copy()
    out = np.zeros(v.size, dtype=bool)
    is_open, s = False, 0
    for i in range(1, v.size):
        if math.isnan(v[i]):
            if is_open and t[i - 1] - t[s] <= lim:
                out[s:i] = True
                v[s:i] = NAN
            is_open = False
            continue
        if math.isnan(v[i - 1]):
            continue
        r = abs(_rate(t, v, i))
        if is_open and t[i - 1] - t[s] > lim:
            is_open = False
        if not is_open and r > slope_max:
            is_open, s = True, i
        elif is_open and r > slope_max:
            out[s:i] = True
            v[s:i] = NAN
            is_open = False
    if is_open and t[v.size - 1] - t[s] <= lim:
        out[s:] = True
    return out


def ref_pass_a(t: np.ndarray, v: np.ndarray, slope_max: float) -> np.ndarray:
    v = v.copy()
    out = np.zeros(v.size, dtype=bool)
    after_gap = True
    for i in range(1, v.size):
        if math.isnan(v[i - 1]) or math.isnan(v[i]):
            after_gap = True
            continue
        if after_gap and abs(_rate(t, v, i)) > slope_max:
            v[i - 1] = NAN
            out[i - 1] = True
        else:
            after_gap = False
    return out


def ref_pass_b(t: np.ndarray, v: np.ndarray, slope_max: float, lim: int) -> np.ndarray:
    v = v.copy()
    out = np.zeros(v.size, dtype=bool)
    is_open, start1, start2, sign = False, 0, 0, 0.0
    for i in range(1, v.size):
        slope = _rate(t, v, i)
        if math.isnan(slope):
            if is_open and t[i - 1] - t[start1] <= lim:
                out[start1:i] = True
                v[start1:i] = NAN
            is_open = False
            continue
        steep = abs(slope) > slope_max
        if not is_open:
            if steep:
                is_open, start1, start2, sign = True, i, i, math.copysign(1.0, slope)
        elif steep and math.copysign(1.0, slope) == sign:
            start2 = i
        elif steep:
            out[start1:i] = True
            v[start1:i] = NAN
            is_open = False
        elif t[i - 1] - t[start2] > lim:
            is_open = False
    if is_open and t[v.size - 1] - t[start1] <= lim:
        out[start1:] = True
    return out


@st.composite
def series(draw: st.DrawFn, max_size: int = 40) -> tuple[np.ndarray, np.ndarray]:
    n = draw(st.integers(0, max_size))
    steps = draw(st.lists(st.sampled_from([20, 30, 60, 60, 60, 90, 120, 300]), min_size=n, max_size=n))
    t = (np.cumsum(np.array([0] + steps[1:], dtype=np.int64)) * 1_000_000_000 + 1_709_251_200_000_000_000
         if n else np.array([], dtype=np.int64))
    v = draw(st.lists(st.sampled_from([NAN, 0.0, 1.0, 2.0, 2.0, 5.0, 10.0, 50.0, -3.0, 0.5]), min_size=n,
                      max_size=n))
    return t.astype(np.int64), np.array(v, dtype=np.float64)


limits = st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0])
slopes = st.sampled_from([0.5, 1.0, 4.0, 20.0])
KERNEL_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@KERNEL_SETTINGS
@given(series(), slopes, limits)
def test_classic_scan_matches_reference(tv: tuple, slope_max: float, lim: float) -> None:
    t, v = tv
    ns = rules.minutes_to_ns(lim)
    np.testing.assert_array_equal(rules.classic_slope_mask(t, v, slope_max, ns), ref_classic(t, v, slope_max, ns))


@KERNEL_SETTINGS
@given(series(), slopes, limits)
def test_sbad_passes_match_reference(tv: tuple, slope_max: float, lim: float) -> None:
    t, v = tv
    ns = rules.minutes_to_ns(lim)
    np.testing.assert_array_equal(rules.sbad_pass_a(t, v, slope_max), ref_pass_a(t, v, slope_max))
    np.testing.assert_array_equal(rules.sbad_pass_b(t, v, slope_max, ns), ref_pass_b(t, v, slope_max, ns))


@KERNEL_SETTINGS
@given(series(), limits)
def test_runs_and_fill_match_reference(tv: tuple, lim: float) -> None:
    t, v = tv
    ns = rules.minutes_to_ns(lim)
    np.testing.assert_array_equal(rules.constant_mask(t, v, max(ns, 1)), ref_constant(t, v, max(ns, 1)))
    np.testing.assert_array_equal(rules.short_run_mask(t, v, ns), ref_short(t, v, ns))
    filled, mask = rules.gap_fill(t, v, ns, None)
    expected = ref_fill(t, v, ns)
    np.testing.assert_allclose(filled, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(mask, np.isnan(v) & ~np.isnan(expected))


# ============================================================================================= pipeline properties


@st.composite
def clean_cases(draw: st.DrawFn) -> tuple[pd.DataFrame, CleanOptions]:
    t, v = draw(series(max_size=30).filter(lambda tv: bool((~np.isnan(tv[1])).any())))
    other = draw(st.lists(st.sampled_from([NAN, 1.0, 7.0]), min_size=v.size, max_size=v.size))
    index = pd.DatetimeIndex(t, tz="UTC", name="utc").as_unit("ns")
    f = pd.DataFrame({"x": v, "other": np.array(other, dtype=np.float64)}, index=index)
    rule_set = draw(st.sampled_from(["classic", "anomaly"]))
    bounds = draw(st.sampled_from([(None, None), (0.0, None), (None, 10.0), (-1.0, 6.0)]))
    slope = draw(st.sampled_from([None, (1.0, 0.0), (4.0, 2.0), (0.5, 5.0)]))
    opts = CleanOptions(
        rule_set=rule_set, columns=draw(st.sampled_from([None, ["x"]])),
        eq_max_minutes=draw(st.sampled_from([None, 0.5, 1.0, 3.0])),
        value_min=bounds[0], value_max=bounds[1], drop_zeros=draw(st.booleans()),
        slope_max=None if slope is None else slope[0], outlier_max_minutes=None if slope is None else slope[1],
        gap_max_minutes=draw(st.sampled_from([None, 0.0, 1.0, 3.0, 10.0])),
        run_min_minutes=draw(st.sampled_from([None, 0.0, 1.0, 2.5])),
        decimals=draw(st.sampled_from([None, 0, 2])),
        sbad_max_iterations=draw(st.sampled_from([1, 50])),
    )
    return f, opts


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clean_cases())
def test_cleaning_invariants(case: tuple[pd.DataFrame, CleanOptions]) -> None:
    f, opts = case
    r = clean(f, opts)
    validate_frame(r.frame, "out")
    assert r.frame.index.equals(f.index) and list(r.frame.columns) == list(f.columns)
    for column in f.columns:
        before, after = f[column].to_numpy(), r.frame[column].to_numpy()
        flags, filled = r.flags[column].to_numpy(dtype=object), r.filled[column].to_numpy()
        untouched = (flags == "") & ~filled
        # cleaning never changes a value it did not flag or fill
        np.testing.assert_array_equal(after[untouched], before[untouched])
        assert not np.isnan(after[filled]).any()
        assert (np.isnan(before[filled]) | (flags[filled] != "")).all()
        assert np.isnan(after[(flags != "") & ~filled]).all()
        if column not in r.report.channels:
            np.testing.assert_array_equal(after, before)
            continue
        ch = r.report.channels[column]
        assert ch.nan_before == int(np.isnan(before).sum()) and ch.nan_after == int(np.isnan(after).sum())
        assert ch.nan_after == ch.nan_before + ch.values_removed_total - ch.values_filled_total
        assert ch.values_removed_total == sum(ch.flagged.values())
        assert ch.values_filled_total == sum(ch.filled.values())
        assert int((flags != "").sum()) <= ch.values_removed_total
        if opts.rule_set == "classic":
            if opts.value_max is not None:
                assert not (after > opts.value_max).any()
            if opts.value_min is not None:
                assert not (after < opts.value_min).any()
        if opts.gap_max_minutes is None:
            assert not filled.any()
    again = clean(f, opts)
    pd.testing.assert_frame_equal(again.frame, r.frame)
    pd.testing.assert_frame_equal(again.flags, r.flags)


# ============================================================================================= LSTM (slow)

_LSTM_CHILD = textwrap.dedent("""
    import json
    import numpy as np, pandas as pd
    from zeitflow.options.clean import CleanOptions, ThresholdAnswer
    from zeitflow.stages.clean import clean, resume

    rng = np.random.default_rng(7)
    n, sigma = 240, 1.0
    idx = pd.date_range("2024-03-01", periods=n, freq="1min", tz="UTC", name="utc").as_unit("ns")
    k = np.arange(n)
    x = 10 * np.sin(2 * np.pi * k / 12) + rng.normal(0, sigma, n)
    x[150] += 10 * sigma
    y = 4 * np.cos(2 * np.pi * k / 12) + rng.normal(0, sigma, n)
    f = pd.DataFrame({"x [kW]": x, "y": y}, index=idx)
    lstm = {"period_hours": 0.2, "units": 16, "epochs": 25, "batch_size": 16}
    events = []
    up = clean(f, CleanOptions(lstm={**lstm, "threshold": 5 * sigma}, seed=3), progress=events.append)
    again = clean(f, CleanOptions(lstm={**lstm, "threshold": 5 * sigma}, seed=3, columns=["x [kW]"]))
    r = clean(f, CleanOptions(lstm=lstm, seed=3))
    req = r.pending
    out = {"pending": [req.phase, req.column, req.period_steps, len(req.scores),
                       sorted(req.components.columns)]}
    while r.pending is not None:
        r = resume(r, ThresholdAnswer(phase="lstm", column=r.pending.column, threshold=5 * sigma))
    out["flagged_x"] = np.flatnonzero(up.flags["x [kW]"].to_numpy() == "lstm").tolist()
    out["deterministic"] = bool(up.frame["x [kW]"].equals(again.frame["x [kW]"]))
    out["resume_equal"] = bool(up.frame.equals(r.frame) and up.flags.equals(r.flags))
    out["epochs"] = sum(e.unit == "epoch" for e in events)
    out["report"] = up.report.channels["x [kW]"].lstm.model_dump(mode="json")
    print("RESULT" + json.dumps(out))
""")


@pytest.mark.slow
def test_lstm_phase_in_a_dedicated_process() -> None:
    """The LSTM phase seeds Keras process-globally, so it runs in a process of its own (§0.9, §3.8)."""
    proc = subprocess.run([sys.executable, "-c", _LSTM_CHILD], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    out: dict[str, Any] = json.loads(line[len("RESULT"):])
    assert out["pending"] == ["lstm", "x [kW]", 12, 228, ["abs_error", "actual", "forecast"]]
    assert 150 in out["flagged_x"] and len(out["flagged_x"]) <= 3  # a 10σ spike is flagged at 5σ
    assert out["deterministic"] and out["resume_equal"]
    assert out["epochs"] == 2 * 25
    assert out["report"]["period_steps"] == 12 and out["report"]["threshold_source"] == "parameter"
