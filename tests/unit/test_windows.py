"""Windowed datasets (stages.md §7): worked examples W1–W6, options validation, runtime errors, report
counts, calendar columns (with a stand-in features callable), persistence and vectorisation properties."""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from zeitflow.errors import FrameError, StorageError, WindowError
from zeitflow.options.windows import ChannelWindowSpec, WindowOptions
from zeitflow.reports import ProgressEvent
from zeitflow.stages.windows import WindowedDataset, build_windows, values_at, window_offsets_ns

EXACT = {"rel": 1e-12, "abs": 1e-12}
PROPERTY = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
DAY = pd.Timestamp("2024-01-01", tz="UTC")
nan = math.nan


def ts(hhmm: str, day: str = "2024-01-01") -> pd.Timestamp:
    return pd.Timestamp(f"{day} {hhmm}", tz="UTC")


def series_at(pairs: list[tuple[str, float]]) -> pd.Series:
    index = pd.DatetimeIndex([ts(t) for t, _ in pairs], name="utc").as_unit("ns")
    return pd.Series(np.array([v for _, v in pairs], dtype=np.float64), index=index)


def regular(values, step_minutes: float = 15, start: pd.Timestamp = DAY) -> pd.Series:
    values = np.asarray(values, dtype=np.float64)
    index = pd.DatetimeIndex(start + pd.to_timedelta(np.arange(values.size) * step_minutes, unit="min"), name="utc")
    return pd.Series(values, index=index.as_unit("ns"))


def w1(**options) -> WindowedDataset:
    P = regular(np.arange(25.0))
    Q = regular(100 + np.arange(25.0))
    opts = {"n_in": 5, "n_out": 5, "stride_minutes": 60, **options}
    return build_windows({"P": P}, {"Q": Q}, WindowOptions(**opts))


def codes(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


# ---- stand-in calendar options (duck-typed like TimeFeatureOptions) ---------------------------


@dataclass(frozen=True)
class Comp:
    enabled: bool = False
    mode: str = "horizon"
    horizon_start_hours: float = -24.0
    horizon_end_hours: float = 0.0
    local_time: bool = False
    scale: bool = True
    range_min: float = 0.0
    range_max: float = 1.0


@dataclass(frozen=True)
class FakeTimeFeatures:
    year: Comp = field(default_factory=Comp)
    month: Comp = field(default_factory=Comp)
    week: Comp = field(default_factory=Comp)
    day: Comp = field(default_factory=Comp)
    holiday: Comp = field(default_factory=Comp)


def fake_features(times: pd.DatetimeIndex) -> pd.DataFrame:
    """UTC-mode D columns (§6.3) plus hour-of-day in H, enough to check where calendar values land."""
    s = times.asi8 // 1_000_000_000
    phi = (s % 86_400) / 86_400
    return pd.DataFrame({"D_sin": np.sin(2 * np.pi * phi), "D_cos": np.cos(2 * np.pi * phi),
                         "H": (s % 86_400) / 3600.0, "Y_sin": 0.0, "Y_cos": 1.0}, index=times)


# --------------------------------------------------------------------------------------------
# W1-W6
# --------------------------------------------------------------------------------------------


def test_w1_reference_range_shapes_and_values() -> None:
    ds = w1()
    assert ds.X.shape == (5, 5, 1) and ds.Y.shape == (5, 5, 1)
    assert list(ds.reference_times) == [ts(f"0{h}:00") for h in range(1, 6)]
    assert ds.reference_times.name == "utc_ref" and str(ds.reference_times.dtype) == "datetime64[ns, UTC]"
    assert ds.X[0, :, 0].tolist() == [0, 1, 2, 3, 4]
    assert ds.Y[0, :, 0].tolist() == [104, 105, 106, 107, 108]
    assert ds.X[-1, :, 0].tolist() == [16, 17, 18, 19, 20]
    assert ds.Y[-1, :, 0].tolist() == [120, 121, 122, 123, 124]
    assert ds.report.range_start == "2024-01-01T01:00:00Z" and ds.report.range_end == "2024-01-01T05:00:00Z"
    assert ds.report.references_total == 5 and ds.report.samples_kept == 5 and ds.report.samples_dropped == 0
    assert ds.input_features == ["P"] and ds.output_features == ["Q"]
    assert ds.input_offsets_minutes["P"].tolist() == [-60, -45, -30, -15, 0]
    assert ds.output_offsets_minutes["Q"].tolist() == [0, 15, 30, 45, 60]
    assert ds.channel_steps_minutes == {"input:P": 15.0, "output:Q": 15.0}
    assert ds.report.channel_first == {"input:P": "2024-01-01T00:00:00Z", "output:Q": "2024-01-01T00:00:00Z"}


def test_w1_stride_15_gives_17_samples() -> None:
    assert w1(stride_minutes=15).X.shape == (17, 5, 1)


def test_w1_with_day_component_has_three_columns() -> None:
    day = Comp(enabled=True, mode="horizon", horizon_start_hours=-1, horizon_end_hours=0)
    opts = WindowOptions(n_in=5, n_out=5, stride_minutes=60, time_features=FakeTimeFeatures(day=day))
    ds = build_windows({"P": regular(np.arange(25.0))}, {"Q": regular(100 + np.arange(25.0))}, opts,
                       features=fake_features)
    assert ds.X.shape == (5, 5, 3)
    assert ds.input_features == ["P", "D_sin", "D_cos"] and ds.calendar_features == ["D_sin", "D_cos"]
    # first sample r = 01:00: window times 00:00 … 01:00, so φ = k·15 min / 1 day
    phi = np.arange(5) * 15 / 1440
    np.testing.assert_allclose(ds.X[0, :, 1], np.sin(2 * np.pi * phi), atol=1e-12)
    np.testing.assert_allclose(ds.X[0, :, 2], np.cos(2 * np.pi * phi), atol=1e-12)


def test_calendar_current_mode_repeats_reference_value_and_order() -> None:
    tf = FakeTimeFeatures(year=Comp(enabled=True), holiday=Comp(enabled=True, mode="current"))
    opts = WindowOptions(n_in=5, n_out=5, stride_minutes=60, time_features=tf)
    ds = build_windows({"P": regular(np.arange(25.0))}, {"Q": regular(100 + np.arange(25.0))}, opts,
                       features=fake_features)
    assert ds.input_features == ["P", "Y_sin", "Y_cos", "H"]
    # H (hour of the reference) in current mode: 1.0 … 5.0, repeated n_in times
    assert ds.X[:, :, 3].tolist() == [[h] * 5 for h in (1.0, 2.0, 3.0, 4.0, 5.0)]


@pytest.mark.skipif(importlib.util.find_spec("zeitflow.stages.features") is None,
                    reason="zeitflow.stages.features (time_features, §6) is not available yet")
def test_w1_with_real_time_features() -> None:  # pragma: no cover - depends on the parallel features module
    opts = WindowOptions(n_in=5, n_out=5, stride_minutes=60,
                         time_features={"day": {"enabled": True, "horizon_start_hours": -1,
                                                "horizon_end_hours": 0, "local_time": False}})
    ds = build_windows({"P": regular(np.arange(25.0))}, {"Q": regular(100 + np.arange(25.0))}, opts)
    assert ds.X.shape == (5, 5, 3)
    phi = np.arange(5) * 15 / 1440
    np.testing.assert_allclose(ds.X[0, :, 1], np.sin(2 * np.pi * phi), atol=1e-9)


def test_w2_interpolation_barrier_and_gaps() -> None:
    s = series_at([("00:00", 0), ("00:15", 10), ("00:30", nan), ("00:45", 30), ("02:00", 40)])
    times = pd.DatetimeIndex([ts("00:10"), ts("00:20"), ts("01:00")])
    wv = values_at(s, times)
    assert wv.values[0] == pytest.approx(20 / 3, **EXACT)
    assert not wv.valid[1] and math.isnan(wv.values[1])
    assert wv.values[2] == pytest.approx(32.0, **EXACT) and wv.valid[2]
    assert wv.bracket_gap_minutes.tolist() == [15.0, 15.0, 75.0]
    wv60 = values_at(s, times, max_gap_minutes=60)
    assert wv60.valid.tolist() == [True, False, False] and math.isnan(wv60.values[2])


def test_w2_report_counts_bridged_gap_and_drop_reasons() -> None:
    s = series_at([("00:00", 0), ("00:15", 10), ("00:30", nan), ("00:45", 30), ("02:00", 40)])
    target = regular(np.arange(13.0))  # 00:00 … 03:00
    opts = WindowOptions(n_in=1, n_out=1, stride_minutes=5,
                         inputs_spec={"S": {"horizon_start_hours": 0, "horizon_end_hours": 0}},
                         outputs_spec={"T": {"horizon_start_hours": 0, "horizon_end_hours": 0}})
    ds = build_windows({"S": s}, {"T": target}, opts)
    # references 00:00 … 02:00 every 5 min (25); invalid where a NaN neighbour (00:15 < t < 00:45 and 00:30)
    refs = [r.strftime("%H:%M") for r in ds.reference_times]
    assert "00:20" not in refs and "00:30" not in refs and "00:10" in refs and "01:00" in refs
    rep = ds.report
    assert rep.references_total == 25
    assert rep.samples_dropped_by_channel["input:S"] == {"nan_neighbour": 5}
    assert rep.samples_dropped == 5 and rep.samples_kept == 20
    # values strictly between 00:45 and 02:00 bridge 75 min > 2 × 15 min: 00:50 … 01:55 (14 samples)
    assert rep.bridged_large_gap == {"input:S": 14, "output:T": 0}
    opts_gap = opts.model_copy(update={"inputs_spec": {"S": ChannelWindowSpec(
        horizon_start_hours=0, horizon_end_hours=0, max_gap_minutes=60)}})
    rep_gap = build_windows({"S": s}, {"T": target}, opts_gap).report
    assert rep_gap.samples_dropped_by_channel["input:S"] == {"nan_neighbour": 5, "gap_exceeded": 14}
    assert rep_gap.bridged_large_gap["input:S"] == 0


def test_w3_average_over_horizon() -> None:
    s = series_at([("00:00", 1), ("00:15", 2), ("00:30", 3), ("00:45", 4), ("01:00", 5)])
    inp = series_at([("00:00", 0), ("01:00", 0)])
    base = {"n_in": 1, "n_out": 4, "stride_minutes": 60,
            "inputs_spec": {"I": {"horizon_start_hours": 0, "horizon_end_hours": 0}}}
    avg = build_windows({"I": inp}, {"O": s}, WindowOptions(**base, outputs_spec={"O": {
        "horizon_start_hours": 0, "horizon_end_hours": 1, "average_over_horizon": True}}))
    assert list(avg.reference_times) == [ts("00:00")]
    assert avg.Y[0, :, 0].tolist() == [2.5, 2.5, 2.5, 2.5]
    plain = build_windows({"I": inp}, {"O": s}, WindowOptions(**base, outputs_spec={"O": {
        "horizon_start_hours": 0, "horizon_end_hours": 1}}))
    np.testing.assert_allclose(plain.Y[0, :, 0], [1, 7 / 3, 11 / 3, 5], rtol=1e-12, atol=1e-12)
    assert plain.channel_steps_minutes["output:O"] == 20.0
    assert plain.output_offsets_minutes["O"].tolist() == [0, 20, 40, 60]


def test_average_with_only_nan_rows_is_empty_average() -> None:
    s = series_at([("00:00", 1), ("00:30", nan), ("01:00", nan), ("01:30", nan), ("02:00", 6), ("03:00", 7)])
    inp = regular(np.zeros(13))
    opts = WindowOptions(n_in=1, n_out=2, stride_minutes=60,
                         inputs_spec={"I": {"horizon_start_hours": 0, "horizon_end_hours": 0}},
                         outputs_spec={"O": {"horizon_start_hours": 0, "horizon_end_hours": 1,
                                             "average_over_horizon": True}})
    ds = build_windows({"I": inp}, {"O": s}, opts)
    assert [r.strftime("%H:%M") for r in ds.reference_times] == ["00:00", "02:00"]
    assert ds.Y[:, 0, 0].tolist() == [1.0, 6.0]
    assert ds.report.samples_dropped_by_channel["output:O"] == {"empty_average": 1}


def test_w4_unequal_shapes() -> None:
    a, b, out = regular(np.arange(200.0)), regular(np.arange(200.0) * 2), regular(np.arange(200.0) * 3)
    opts = WindowOptions(n_in=5, n_out=3, stride_minutes=60, time_features=FakeTimeFeatures(day=Comp(enabled=True)))
    ds = build_windows({"A": a, "B": b}, {"O": out}, opts, features=fake_features)
    assert ds.X.shape[1:] == (5, 4) and ds.Y.shape[1:] == (3, 1)
    assert ds.input_features == ["A", "B", "D_sin", "D_cos"]


def test_w5_channel_step() -> None:
    opts = WindowOptions(n_in=97, n_out=1, stride_minutes=60,
                         inputs_spec={"A": {"horizon_start_hours": -24, "horizon_end_hours": 0}})
    ds = build_windows({"A": regular(np.arange(300.0))}, {"O": regular(np.arange(300.0))}, opts)
    assert ds.channel_steps_minutes["input:A"] == 15.0
    assert ds.input_offsets_minutes["A"][1] - ds.input_offsets_minutes["A"][0] == 15.0
    assert ds.X.shape[1] == 97


@pytest.mark.parametrize(("offset", "first"), [(0, "00:30"), (20, "00:50")])
def test_w6_phase_with_stride_not_dividing_60(offset: float, first: str) -> None:
    s = regular(np.arange(100.0), step_minutes=5, start=ts("00:10"))
    opts = WindowOptions(n_in=1, n_out=1, stride_minutes=45, offset_minutes=offset,
                         inputs_spec={"A": {"horizon_start_hours": 0, "horizon_end_hours": 0}},
                         outputs_spec={"B": {"horizon_start_hours": 0, "horizon_end_hours": 0}})
    ds = build_windows({"A": s}, {"B": s}, opts)
    assert ds.report.range_start == "2024-01-01T00:10:00Z"
    assert ds.reference_times[0] == ts(first)
    assert (np.diff(ds.reference_times.asi8) == 45 * 60 * 10**9).all()


# --------------------------------------------------------------------------------------------
# window times (§7.4)
# --------------------------------------------------------------------------------------------


def test_window_offsets_exact_integer_rounding() -> None:
    # 1 h over 7 steps: 600 s each, exact; 1 h over 8 steps: 3600/7 s, each offset rounded half up on its own
    hour = 3_600_000_000_000
    assert window_offsets_ns(-hour, 0, 7).tolist() == [-hour + k * 600_000_000_000 for k in range(7)]
    off = window_offsets_ns(0, hour, 8)
    assert off.size == 8 and off[0] == 0 and off[-1] == hour
    assert off.tolist() == [(2 * k * hour + 7) // 14 for k in range(8)]
    assert window_offsets_ns(0, hour, 1).tolist() == [hour]


@PROPERTY
@given(n=st.integers(1, 4096), hs=st.integers(-8760 * 60, 8760 * 60), span=st.integers(1, 2000 * 60))
def test_window_offsets_exactly_n_and_endpoints(n: int, hs: int, span: int) -> None:
    hs_ns, he_ns = hs * 60_000_000_000, (hs + span) * 60_000_000_000
    off = window_offsets_ns(hs_ns, he_ns, n)
    assert off.size == n and off[-1] == he_ns
    if n >= 2:
        assert off[0] == hs_ns and (np.diff(off) > 0).all()


@PROPERTY
@given(slope=st.floats(-100, 100), intercept=st.floats(-1e3, 1e3), n_in=st.integers(1, 9), n_out=st.integers(1, 9),
       step=st.sampled_from([1, 5, 15, 60]), stride=st.sampled_from([7, 15, 45, 60]))
def test_windows_of_a_linear_series_are_linear(slope: float, intercept: float, n_in: int, n_out: int, step: int,
                                               stride: int) -> None:
    minutes = np.arange(0, 6 * 60 + 1, step, dtype=np.float64)
    s = regular(intercept + slope * minutes, step_minutes=step)
    ds = build_windows({"S": s}, {"S": s}, WindowOptions(n_in=n_in, n_out=n_out, stride_minutes=stride))
    ref_min = (ds.reference_times.asi8 - DAY.value) / 60e9
    expected_x = intercept + slope * (ref_min[:, None] + ds.input_offsets_minutes["S"][None, :])
    expected_y = intercept + slope * (ref_min[:, None] + ds.output_offsets_minutes["S"][None, :])
    scale = 1 + abs(intercept) + abs(slope) * 400
    np.testing.assert_allclose(ds.X[:, :, 0], expected_x, rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(ds.Y[:, :, 0], expected_y, rtol=0, atol=1e-12 * scale)


def test_chunks_do_not_change_the_result_and_report_progress() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=4000)
    values[rng.choice(4000, 200, replace=False)] = nan
    s = regular(values, step_minutes=1)
    events: list[ProgressEvent] = []
    small = build_windows({"S": s}, {"T": s}, WindowOptions(n_in=13, n_out=4, stride_minutes=1, chunk_size=1000),
                          progress=events.append)
    big = build_windows({"S": s}, {"T": s}, WindowOptions(n_in=13, n_out=4, stride_minutes=1))
    np.testing.assert_array_equal(small.X, big.X)
    np.testing.assert_array_equal(small.Y, big.Y)
    assert (small.reference_times == big.reference_times).all()
    assert small.report.samples_dropped_by_channel == big.report.samples_dropped_by_channel
    chunks = [e for e in events if e.unit == "chunk"]
    assert len(chunks) == 4 and chunks[-1].done == chunks[-1].total == 4
    assert small.report.samples_kept + small.report.samples_dropped == small.report.references_total


def test_each_sample_is_checked_on_its_own() -> None:
    values = np.arange(40.0)
    values[10] = nan
    ds = build_windows({"S": regular(values)}, {"T": regular(values)},
                       WindowOptions(n_in=2, n_out=1, stride_minutes=15,
                                     inputs_spec={"S": {"horizon_start_hours": -0.25, "horizon_end_hours": 0}},
                                     outputs_spec={"T": {"horizon_start_hours": 0.25, "horizon_end_hours": 0.25}}))
    # row 10 (02:30) is NaN: r = 02:15 (output at 02:30), 02:30 and 02:45 (input at 02:30) are dropped
    kept_minutes = ((ds.reference_times.asi8 - DAY.value) // 60_000_000_000).tolist()
    assert not {135, 150, 165} & set(kept_minutes) and {120, 180} <= set(kept_minutes)
    assert ds.report.samples_dropped == 3


def test_target_visible_in_input_warning() -> None:
    s = regular(np.arange(50.0))
    opts = WindowOptions(n_in=3, n_out=3, stride_minutes=60, outputs_spec={"S": {"horizon_start_hours": -0.5,
                                                                                 "horizon_end_hours": 0.5}})
    ds = build_windows({"S": s}, {"S": s}, opts)
    assert [w.code for w in ds.report.warnings] == ["TARGET_VISIBLE_IN_INPUT"]
    assert not build_windows({"S": s}, {"S": s}, WindowOptions(n_in=3, n_out=3)).report.warnings


def test_irregular_series_and_different_spans() -> None:
    rng = np.random.default_rng(3)
    minutes = np.sort(rng.choice(np.arange(0, 600), 200, replace=False))
    idx = pd.DatetimeIndex(DAY + pd.to_timedelta(minutes, unit="min"), name="utc").as_unit("ns")
    s = pd.Series(minutes * 2.0, index=idx)
    later = regular(np.arange(20.0), step_minutes=30, start=ts("03:00"))
    ds = build_windows({"S": s}, {"L": later}, WindowOptions(n_in=4, n_out=2, stride_minutes=30))
    # every window lies inside both spans
    assert ds.reference_times[0] >= ts("03:00")
    ref = (ds.reference_times.asi8 - DAY.value) / 60e9
    np.testing.assert_allclose(ds.X[:, :, 0], 2 * (ref[:, None] + ds.input_offsets_minutes["S"]), atol=1e-9)


# --------------------------------------------------------------------------------------------
# values_at details
# --------------------------------------------------------------------------------------------


def test_values_at_exact_hits_and_out_of_span() -> None:
    s = series_at([("00:00", 1), ("01:00", nan), ("02:00", 3)])
    wv = values_at(s, pd.DatetimeIndex([ts("00:00"), ts("01:00"), ts("02:00"), ts("02:01")]), max_gap_minutes=1)
    assert wv.valid.tolist() == [True, False, True, False]
    assert wv.values[0] == 1.0 and wv.values[2] == 3.0
    assert wv.bracket_gap_minutes[0] == 0.0 and math.isnan(wv.bracket_gap_minutes[3])
    naive = values_at(s, np.array(["2024-01-01T00:00", "2024-01-01T00:30"], dtype="datetime64[ns]"))  # read as UTC
    assert naive.valid.tolist() == [True, False] and naive.values[0] == 1.0
    half = values_at(series_at([("00:00", 0), ("01:00", 6)]), pd.DatetimeIndex([ts("00:30")]))
    assert half.values.tolist() == [3.0]


def test_values_at_rejects_a_bad_series() -> None:
    bad = pd.Series([1.0, 2.0], index=pd.DatetimeIndex([ts("01:00"), ts("00:00")]))
    with pytest.raises(FrameError) as exc:
        values_at(bad, pd.DatetimeIndex([ts("00:30")]))
    assert exc.value.code == "INVALID_FRAME"


# --------------------------------------------------------------------------------------------
# runtime errors (§7.6)
# --------------------------------------------------------------------------------------------


def test_no_common_range() -> None:
    a = regular(np.arange(4.0))
    b = regular(np.arange(4.0), start=ts("12:00"))
    with pytest.raises(WindowError) as exc:
        build_windows({"A": a}, {"B": b}, WindowOptions(n_in=2, n_out=2))
    assert exc.value.code == "NO_COMMON_RANGE"
    assert set(exc.value.details["channels"]) == {"input:A", "output:B"}


def test_no_samples_carries_drop_counts() -> None:
    values = np.arange(20.0)
    values[1::2] = nan
    with pytest.raises(WindowError) as exc:
        build_windows({"A": regular(values)}, {"B": regular(np.arange(20.0))},
                      WindowOptions(n_in=5, n_out=2, stride_minutes=15))
    assert exc.value.code == "NO_SAMPLES"
    assert exc.value.details["samples_dropped_by_channel"]["input:A"]["nan_neighbour"] > 0


def test_column_not_found_and_no_numeric_data() -> None:
    s = regular(np.arange(20.0))
    with pytest.raises(WindowError) as exc:
        build_windows({"A": s}, {"B": s}, WindowOptions(inputs_spec={"Z": {}}))
    assert exc.value.code == "COLUMN_NOT_FOUND" and exc.value.details["missing"] == ["Z"]
    with pytest.raises(WindowError) as exc:
        build_windows({"A": s}, {"B": s}, WindowOptions(outputs_spec={"A": {}}))
    assert exc.value.code == "COLUMN_NOT_FOUND"
    with pytest.raises(WindowError) as exc:
        build_windows({"A": regular(np.full(10, nan))}, {"B": s}, WindowOptions())
    assert exc.value.code == "NO_NUMERIC_DATA"


def test_invalid_series_raises_frame_error() -> None:
    s = regular(np.arange(20.0))
    with pytest.raises(FrameError):
        build_windows({"A": s.astype("float32")}, {"B": s}, WindowOptions())
    with pytest.raises(FrameError):
        build_windows({"A": s.replace(3.0, np.inf)}, {"B": s}, WindowOptions())


# --------------------------------------------------------------------------------------------
# options (§7.3)
# --------------------------------------------------------------------------------------------


def test_defaults_and_role_defaults() -> None:
    o = WindowOptions()
    assert (o.n_in, o.n_out, o.stride_minutes, o.offset_minutes, o.chunk_size) == (13, 13, 15.0, 0.0, 50_000)
    assert o.time_features is None
    o = WindowOptions(inputs_spec={"A": {}}, outputs_spec={"B": None})
    assert (o.inputs_spec["A"].horizon_start_hours, o.inputs_spec["A"].horizon_end_hours) == (-1.0, 0.0)
    assert (o.outputs_spec["B"].horizon_start_hours, o.outputs_spec["B"].horizon_end_hours) == (0.0, 1.0)
    assert o.spec_for("input", "X").horizon_ns() == (-3_600_000_000_000, 0)


def test_predecessor_aliases_normalise() -> None:
    new = WindowOptions(n_in=5, n_out=7, stride_minutes=30, offset_minutes=5,
                        outputs_spec={"B": {"horizon_start_hours": 0, "horizon_end_hours": 2,
                                            "average_over_horizon": True}})
    old = WindowOptions(eingabe=5, O_N=7, DELT=30, OFST=5,
                        outputs_spec={"B": {"zeithorizont_start": 0, "TH_END": 2,
                                            "mittelwertbildung_uber_den_zeithorizont": "ja"}})
    also = WindowOptions(I_N=5, ausgabe=7, zeitschrittweite=30.0, offset=5.0,
                         outputs_spec={"B": {"TH_STRT": 0, "zeithorizont_end": 2,
                                             "mittelwertbildung_uber_den_zeithorizont": True}})
    assert new == old == also and new.parameters_hash() == old.parameters_hash()
    assert ChannelWindowSpec(intrplMax=30).max_gap_minutes == 30


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"n_in": 0}, "PARAM_OUT_OF_RANGE"), ({"n_in": 4097}, "PARAM_OUT_OF_RANGE"), ({"n_out": 0}, "PARAM_OUT_OF_RANGE"),
    ({"n_in": 2.5}, "PARAM_NOT_INTEGER"), ({"n_out": True}, "PARAM_NOT_INTEGER"),
    ({"stride_minutes": 0}, "PARAM_OUT_OF_RANGE"), ({"stride_minutes": 1 / 120}, "PARAM_OUT_OF_RANGE"),
    ({"stride_minutes": 10_081}, "PARAM_OUT_OF_RANGE"), ({"stride_minutes": nan}, "PARAM_NOT_FINITE"),
    ({"offset_minutes": math.inf}, "PARAM_NOT_FINITE"), ({"chunk_size": 999}, "PARAM_OUT_OF_RANGE"),
    ({"chunk_size": 10_000_001}, "PARAM_OUT_OF_RANGE"), ({"window": 3}, "UNKNOWN_PARAMETER"),
    ({"n_in": 3, "eingabe": 3}, "MUTUALLY_EXCLUSIVE"), ({"time_features": 3}, "INVALID_CHOICE"),
    ({"inputs_spec": {"A": {"horizon_start_hours": 0, "horizon_end_hours": -1}}}, "INVALID_HORIZON"),
    ({"inputs_spec": {"A": {"horizon_start_hours": 0, "horizon_end_hours": 0}}}, "INVALID_HORIZON"),
    ({"n_in": 1, "inputs_spec": {"A": {"horizon_start_hours": 0, "horizon_end_hours": 0,
                                       "average_over_horizon": True}}}, "INVALID_HORIZON"),
    ({"outputs_spec": {"B": {"horizon_start_hours": 2}}}, "INVALID_HORIZON"),
    ({"inputs_spec": {"A": {"horizon_start_hours": -8761}}}, "PARAM_OUT_OF_RANGE"),
    ({"inputs_spec": {"A": {"horizon_end_hours": 8761}}}, "PARAM_OUT_OF_RANGE"),
    ({"inputs_spec": {"A": {"horizon_end_hours": nan}}}, "PARAM_NOT_FINITE"),
    ({"inputs_spec": {"A": {"max_gap_minutes": 0}}}, "PARAM_OUT_OF_RANGE"),
    ({"inputs_spec": {"A": {"max_gap_minutes": -5}}}, "PARAM_OUT_OF_RANGE"),
    ({"inputs_spec": {"A": {"max_gap_minutes": 5, "average_over_horizon": True}}}, "MUTUALLY_EXCLUSIVE"),
    ({"inputs_spec": {"A": {"role": "input"}}}, "UNKNOWN_PARAMETER"),
])
def test_validation_codes(kwargs: dict, code: str) -> None:
    with pytest.raises(ValidationError) as exc:
        WindowOptions(**kwargs)
    assert codes(exc.value)[0] == code


def test_equal_horizon_allowed_with_one_step() -> None:
    o = WindowOptions(n_in=1, inputs_spec={"A": {"horizon_start_hours": 0, "horizon_end_hours": 0}})
    assert o.inputs_spec["A"].horizon_ns() == (0, 0)
    assert WindowOptions(stride_minutes=1 / 60).stride_minutes == 1 / 60
    assert WindowOptions(stride_minutes=10_080).stride_minutes == 10_080


def test_options_are_frozen_and_hash_is_stable() -> None:
    o = WindowOptions()
    with pytest.raises(ValidationError):
        o.n_in = 3  # type: ignore[misc]
    assert o.parameters_hash() == WindowOptions(n_in=13.0).parameters_hash()


# --------------------------------------------------------------------------------------------
# persistence (§0.1, §7.2)
# --------------------------------------------------------------------------------------------


def test_save_load_round_trip_identical_bytes(tmp_path) -> None:
    tf = FakeTimeFeatures(day=Comp(enabled=True, horizon_start_hours=-1))
    ds = build_windows({"P": regular(np.arange(25.0) / 3)}, {"Q": regular(100 + np.arange(25.0))},
                       WindowOptions(n_in=5, n_out=5, stride_minutes=15, time_features=tf), features=fake_features)
    npz1, json1 = ds.save(tmp_path / "a" / "ds")
    first = (npz1.read_bytes(), json1.read_bytes())
    ds.save(tmp_path / "b" / "ds.npz")
    second = ((tmp_path / "b" / "ds.npz").read_bytes(), (tmp_path / "b" / "ds.json").read_bytes())
    assert first == second == ds.to_bytes()
    back = WindowedDataset.load(tmp_path / "a" / "ds")
    np.testing.assert_array_equal(back.X, ds.X)
    np.testing.assert_array_equal(back.Y, ds.Y)
    assert (back.reference_times == ds.reference_times).all() and back.reference_times.name == "utc_ref"
    assert back.input_features == ds.input_features and back.calendar_features == ["D_sin", "D_cos"]
    assert back.report == ds.report and back.channel_steps_minutes == ds.channel_steps_minutes
    np.testing.assert_array_equal(back.input_offsets_minutes["P"], ds.input_offsets_minutes["P"])
    assert back.to_bytes() == first
    with np.load(npz1) as arrays:  # a plain .npz readable by numpy
        assert set(arrays.files) == {"X", "Y", "reference_times_ns"}


def test_load_detects_tampering_and_missing(tmp_path) -> None:
    ds = w1()
    npz, meta = ds.to_bytes()
    with pytest.raises(StorageError) as exc:
        WindowedDataset.from_bytes(npz + b"x", meta)
    assert exc.value.code == "CHECKSUM_MISMATCH"
    with pytest.raises(StorageError) as exc:
        WindowedDataset.load(tmp_path / "missing")
    assert exc.value.code == "OBJECT_NOT_FOUND"


def test_violin_plots_one_png_per_variable_deterministic() -> None:
    from zeitflow.stages.dataset_plots import violin_plots

    ds = build_windows({"A": regular(np.sin(np.arange(200.0))), "B": regular(np.arange(200.0))},
                       {"O": regular(np.cos(np.arange(200.0)))}, WindowOptions(n_in=4, n_out=2, stride_minutes=60))
    first = violin_plots(ds, max_points=100)
    assert list(first) == ["input:A", "input:B", "output:O"]
    assert all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in first.values())
    assert violin_plots(ds, max_points=100) == first
