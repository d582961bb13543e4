"""Resample stage (stages.md §2): worked examples, options validation, runtime errors, a brute-force
reference of §2.5 and hypothesis properties."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import zeitflow.stages.resample as resample_module
from zeitflow.errors import FrameError, ParameterError, ResampleError
from zeitflow.frame import empty_frame, validate_frame
from zeitflow.options.base import to_parameter_error
from zeitflow.options.resample import METHODS, ColumnMethod, ResampleOptions, ResolvedMethod
from zeitflow.reports import ProgressEvent
from zeitflow.stages.grid import NS_PER_MINUTE, GridRange, GridRule, minutes_to_ns
from zeitflow.stages.resample import (
    ResampleReport,
    gate_parameters,
    make_grid,
    resample,
    resample_columns,
)

EXACT = {"rel": 1e-12, "abs": 1e-12}
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
MIN = NS_PER_MINUTE
BASE = pd.Timestamp("2024-03-01", tz="UTC").value  # ns
nan = math.nan


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def frame_at(samples: list[tuple[str, float]], day: str = "2024-03-01", column: str = "x") -> pd.DataFrame:
    """A one-channel canonical frame from ``("HH:MM[:SS]", value)`` pairs on ``day`` (UTC)."""
    index = pd.DatetimeIndex([pd.Timestamp(f"{day} {t}", tz="UTC") for t, _ in samples], name="utc").as_unit("ns")
    return pd.DataFrame({column: np.array([v for _, v in samples], dtype=np.float64)}, index=index)


def frame_ns(times_ns, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    index = pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]"), name="utc")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()},
                        index=index.tz_localize("UTC"))


def stamps(result_frame: pd.DataFrame) -> list[str]:
    return [t.strftime("%H:%M") for t in result_frame.index]


def run(frame: pd.DataFrame, **options) -> tuple[list[float], ResampleReport, list[str]]:
    result = resample(frame, ResampleOptions(**options))
    validate_frame(result.frame, "output")
    return result.frame.iloc[:, 0].tolist(), result.report, stamps(result.frame)


def codes(exc: ValidationError) -> list[str]:
    return [e["type"] for e in exc.errors()]


def reference(times, values, grid, step_ns: int, method: str, max_gap_ns: int) -> np.ndarray:
    """§2.5 read literally, one grid point at a time (slow; small inputs only)."""
    samples = [(int(t), float(v)) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
    out = []
    for g in (int(x) for x in grid):
        window = [(s, v) for s, v in samples if 2 * abs(s - g) <= step_ns]
        if method == "mean":
            out.append(math.fsum(v for _, v in window) / len(window) if window else nan)
        elif method in ("nearest", "nearest_mean"):
            if not window:
                out.append(nan)
                continue
            d = min(abs(s - g) for s, _ in window)
            at = [v for s, v in window if abs(s - g) == d]  # time order: the earlier comes first
            out.append(at[0] if method == "nearest" else math.fsum(at) / len(at))
        else:
            before = [(s, v) for s, v in samples if s <= g]
            after = [(s, v) for s, v in samples if s >= g]
            if not before or not after:
                out.append(nan)
                continue
            (sp, vp), (sq, vq) = before[-1], after[0]
            if sp == g:
                out.append(vp)
            elif sq - sp > max_gap_ns:
                out.append(nan)
            elif method == "interpolate":
                out.append(vp if vp == vq else vp + (vq - vp) * (g - sp) / (sq - sp))
            else:
                out.append(vp if g - sp < sq - g else vq)
    return np.array(out, dtype=np.float64)


def reference_counts(times, values, grid, step_ns: int) -> dict[str, int]:
    samples = [int(t) for t, v in zip(times, values, strict=True) if not math.isnan(v)]
    grid = [int(g) for g in grid]
    exact = sum(1 for g in grid if g in set(samples))
    boundary = 0
    if step_ns % 2 == 0:
        edges = {g + step_ns // 2 for g in grid[:-1]}
        boundary = sum(1 for s in samples if s in edges)
    return {"exact_hits": exact, "boundary_samples": boundary}


# --------------------------------------------------------------------------------------------
# §2.9 worked examples
# --------------------------------------------------------------------------------------------

R1 = [("14:31", 1), ("14:36", 2), ("14:41", 3), ("14:46", 4), ("14:51", 5), ("14:56", 6), ("15:01", 7), ("15:06", 8)]


@pytest.mark.parametrize(("method", "expected"), [
    ("mean", [4.0, 7.0]),
    ("interpolate", [3 + (4 - 3) * 4 / 5, 6 + 1 * 4 / 5]),
    ("nearest", [4.0, 7.0]),
    ("nearest_mean", [4.0, 7.0]),
    ("nearest_max_delta", [4.0, 7.0]),
])
def test_r1_off_grid_start_every_method(method: str, expected: list[float]) -> None:
    values, report, at = run(frame_at(R1), step_minutes=15, method=method)
    assert at == ["14:45", "15:00"]
    assert values == pytest.approx(expected, **EXACT)
    assert report.grid_points == 2 and report.grid_start == "2024-03-01T14:45:00Z"
    assert report.grid_end == "2024-03-01T15:00:00Z"


def test_r1_interpolate_exact_values() -> None:
    values, _, _ = run(frame_at(R1), step_minutes=15, method="interpolate")
    assert values == pytest.approx([3.8, 6.8], **EXACT)


R2 = [("00:00", 10), ("00:05", 20), ("00:10", 30), ("00:15", 40), ("00:20", 50)]


def test_r2_boundary_samples_count_in_both_windows() -> None:
    values, report, at = run(frame_at(R2), step_minutes=10, method="mean")
    assert at == ["00:00", "00:10", "00:20"]
    assert values == pytest.approx([15.0, 30.0, 45.0], **EXACT)
    assert report.channels["x"].boundary_samples == 2
    values, report, _ = run(frame_at(R2), step_minutes=10, method="nearest")
    assert values == [10.0, 30.0, 50.0]
    assert report.channels["x"].boundary_samples == 2


@pytest.mark.parametrize(("method", "expected"), [
    ("mean", 30.0), ("nearest", 20.0), ("nearest_mean", 30.0), ("interpolate", 30.0), ("nearest_max_delta", 40.0),
])
def test_r2_tie_variant(method: str, expected: float) -> None:
    values, _, at = run(frame_at([("00:05", 20), ("00:15", 40)]), step_minutes=10, method=method)
    assert at == ["00:10"]
    assert values == pytest.approx([expected], **EXACT)


R3 = [("00:00", 1), ("00:15", 2), ("02:00", 5), ("02:10", 6)]


def test_r3_gap_limit_and_exact_hit_after_gap() -> None:
    values, report, at = run(frame_at(R3), step_minutes=15, method="interpolate", max_gap_minutes=60)
    assert len(at) == 9 and at[0] == "00:00" and at[-1] == "02:00"
    assert values[:2] == [1.0, 2.0]
    assert all(math.isnan(v) for v in values[2:8])
    assert values[8] == 5.0
    c = report.channels["x"]
    assert (report.grid_points, c.values_out, c.nan_gap, c.exact_hits) == (9, 3, 6, 3)
    assert c.nan_out == 6 and c.nan_no_neighbour == 0 and c.nan_empty_window == 0


def test_r3_wider_gap_limit_and_decimals() -> None:
    values, _, at = run(frame_at(R3), step_minutes=15, method="interpolate", max_gap_minutes=120)
    by_time = dict(zip(at, values, strict=True))
    assert by_time["00:30"] == pytest.approx(2 + 3 * 15 / 105, **EXACT)
    assert by_time["00:30"] == pytest.approx(2.428571428571428571, **EXACT)
    assert by_time["01:00"] == pytest.approx(2 + 3 * 45 / 105, **EXACT)
    assert by_time["01:00"] == pytest.approx(3.285714285714285714, **EXACT)
    assert by_time["01:45"] == pytest.approx(2 + 3 * 90 / 105, **EXACT)
    assert by_time["01:45"] == pytest.approx(4.571428571428571428, **EXACT)
    values, _, at = run(frame_at(R3), step_minutes=15, method="interpolate", max_gap_minutes=120, decimals=2)
    assert dict(zip(at, values, strict=True))["00:30"] == 2.43


R4 = [("00:00", 1), ("00:40", 5)]


@pytest.mark.parametrize(("method", "gap60", "gap30"), [
    ("interpolate", 1 + 4 * 30 / 40, nan),
    ("nearest_max_delta", 5.0, nan),
    ("nearest", 5.0, 5.0),
    ("mean", 5.0, 5.0),
])
def test_r4_nearest_max_delta_and_gap_limits(method: str, gap60: float, gap30: float) -> None:
    for max_gap, expected in ((60, gap60), (30, gap30)):
        values, _, at = run(frame_at(R4), step_minutes=30, method=method, max_gap_minutes=max_gap)
        assert at == ["00:00", "00:30"]
        assert values[0] == 1.0
        if math.isnan(expected):
            assert math.isnan(values[1])
        else:
            assert values[1] == pytest.approx(expected, **EXACT)


def test_r4_interpolate_value_is_four() -> None:
    values, _, _ = run(frame_at(R4), step_minutes=30, method="interpolate", max_gap_minutes=60)
    assert values[1] == pytest.approx(4.0, **EXACT)


R5 = [(f"10:{m:02d}", float(m)) for m in range(2, 41)]


@pytest.mark.parametrize("offset", [5, -10, 20, 5.0])
def test_r5_offset_is_taken_modulo_step(offset: float) -> None:
    _, report, at = run(frame_at(R5), step_minutes=15, method="nearest", offset_minutes=offset)
    assert at == ["10:05", "10:20", "10:35"]
    assert report.offset_minutes_effective == 5.0


def test_r5_anchor() -> None:
    anchor = datetime(2024, 1, 1, 0, 7, tzinfo=UTC)
    values, report, at = run(frame_at(R5), step_minutes=15, method="nearest", anchor=anchor)
    assert at == ["10:07", "10:22", "10:37"]
    assert values == [7.0, 22.0, 37.0]
    assert report.anchor == "2024-01-01T00:07:00Z"
    assert report.offset_minutes_effective == 7.0  # phase relative to the epoch


def test_r5_epoch_phase_for_step_not_dividing_60() -> None:
    frame = frame_at([("00:00", 1.0), ("00:30", 2.0)], day="2024-01-01")
    _, _, at = run(frame, step_minutes=7, method="nearest")
    assert at[0] == "00:01"
    assert (28_401_120 % 7) == 6  # the epoch minute of 2024-01-01 00:00 is ≡ 6 (mod 7)
    assert at == ["00:01", "00:08", "00:15", "00:22", "00:29"]


# --------------------------------------------------------------------------------------------
# Options (§2.3, §0.6)
# --------------------------------------------------------------------------------------------


def invalid(**kwargs) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        ResampleOptions.model_validate(kwargs)
    return info.value


def test_defaults_and_aliases() -> None:
    options = ResampleOptions(step_minutes=15, method="intrpl")
    assert options.method == "interpolate"
    assert (options.offset_minutes, options.anchor, options.start, options.end) == (0.0, None, None, None)
    assert options.max_gap_minutes == 60.0 and options.decimals is None and options.column_methods == {}
    assert ResampleOptions(step_minutes=15, method="nearest (mean)").method == "nearest_mean"
    assert ResampleOptions(step_minutes=15, method="nearest (max. delta)").method == "nearest_max_delta"
    assert ResampleOptions(step_minutes=15, method="mean", decimals="full").decimals is None
    # None means the documented default (§0.6)
    none = ResampleOptions(step_minutes=15, method="mean", offset_minutes=None, max_gap_minutes=None)
    assert (none.offset_minutes, none.max_gap_minutes) == (0.0, 60.0)


def test_missing_required_parameters() -> None:
    exc = invalid()
    assert codes(exc) == ["MISSING_PARAMETER", "MISSING_PARAMETER"]
    assert [e["loc"] for e in exc.errors()] == [("step_minutes",), ("method",)]
    assert "(predecessor: tss)" in exc.errors()[0]["msg"]
    assert codes(invalid(step_minutes=15, method="")) == ["MISSING_PARAMETER"]
    assert codes(invalid(step_minutes=15, method=None)) == ["MISSING_PARAMETER"]
    assert codes(invalid(step_minutes=None, method="mean")) == ["MISSING_PARAMETER"]


def test_step_out_of_range_message() -> None:
    exc = invalid(step_minutes=0.0, method="mean")
    assert codes(exc) == ["PARAM_OUT_OF_RANGE"]
    assert exc.errors()[0]["msg"] == (
        "step_minutes=0.0 is out of range: allowed 1/60 <= step_minutes <= 1440 (predecessor: tss)"
    )


@pytest.mark.parametrize("step", [0.0, -15, 0.0166, 1440.0001, 2000])
def test_step_range_is_checked_in_integer_ns(step: float) -> None:
    assert codes(invalid(step_minutes=step, method="mean")) == ["PARAM_OUT_OF_RANGE"]


@pytest.mark.parametrize("step", [1 / 60, 1440, 7.5, 0.5])
def test_step_limits_are_inclusive(step: float) -> None:
    assert ResampleOptions(step_minutes=step, method="mean").grid_rule().step_ns == minutes_to_ns(step)
    assert minutes_to_ns(1 / 60) == 1_000_000_000


@pytest.mark.parametrize(("field", "value"), [
    ("step_minutes", math.nan), ("step_minutes", math.inf), ("offset_minutes", math.inf),
    ("offset_minutes", -math.inf), ("offset_minutes", math.nan), ("max_gap_minutes", math.nan),
    ("offset_minutes", "nan"), ("decimals", math.nan),
])
def test_not_finite(field: str, value: object) -> None:
    kwargs = {"step_minutes": 15, "method": "mean", field: value}
    assert codes(invalid(**kwargs)) == ["PARAM_NOT_FINITE"]


@pytest.mark.parametrize(("field", "value", "code"), [
    ("max_gap_minutes", -1, "PARAM_OUT_OF_RANGE"),
    ("max_gap_minutes", 525_601, "PARAM_OUT_OF_RANGE"),
    ("decimals", 16, "PARAM_OUT_OF_RANGE"),
    ("decimals", -1, "PARAM_OUT_OF_RANGE"),
    ("decimals", 1.5, "PARAM_NOT_INTEGER"),
    ("decimals", True, "PARAM_NOT_INTEGER"),
    ("method", "median", "INVALID_CHOICE"),
    ("method", 3, "INVALID_CHOICE"),
    ("anchor", "2024-01-01T00:07:00", "PARAM_NOT_TZ_AWARE"),
    ("start", datetime(2024, 1, 1), "PARAM_NOT_TZ_AWARE"),
    ("end", "2024-01-01 00:00", "PARAM_NOT_TZ_AWARE"),
    ("unknown_key", 1, "UNKNOWN_PARAMETER"),
    ("tss", 15, "UNKNOWN_PARAMETER"),
])
def test_validation_codes(field: str, value: object, code: str) -> None:
    kwargs = {"step_minutes": 15, "method": "mean", field: value}
    exc = invalid(**kwargs)
    assert codes(exc)[0] == code
    if code == "INVALID_CHOICE":
        assert str(list(METHODS)) in exc.errors()[0]["msg"]
    if code not in ("UNKNOWN_PARAMETER",):
        assert field in exc.errors()[0]["msg"]


@pytest.mark.parametrize(("field", "value"), [
    ("max_gap_minutes", 0), ("max_gap_minutes", 525_600), ("decimals", 0), ("decimals", 15), ("decimals", 2.0),
    ("offset_minutes", -1e6),
])
def test_limits_accepted(field: str, value: object) -> None:
    ResampleOptions.model_validate({"step_minutes": 15, "method": "mean", field: value})


def test_anchor_and_offset_are_mutually_exclusive() -> None:
    exc = invalid(step_minutes=15, method="mean", anchor="2024-01-01T00:07:00Z", offset_minutes=5)
    assert codes(exc) == ["MUTUALLY_EXCLUSIVE"]
    ResampleOptions(step_minutes=15, method="mean", anchor="2024-01-01T00:07:00Z", offset_minutes=0)


def test_start_after_end() -> None:
    exc = invalid(step_minutes=15, method="mean", start="2024-01-02T00:00:00Z", end="2024-01-01T00:00:00Z")
    assert codes(exc) == ["PARAM_COMPARISON_FAILED"]
    ResampleOptions(step_minutes=15, method="mean", start="2024-01-01T00:00:00Z", end="2024-01-01T00:00:00Z")


def test_grid_too_large_for_bounds_fails_at_validation_naming_the_parameters() -> None:
    exc = invalid(step_minutes=1 / 60, method="mean", start="2024-01-01T00:00:00Z", end="2024-03-01T00:00:00Z")
    assert codes(exc) == ["PARAM_COMPARISON_FAILED"]
    message = exc.errors()[0]["msg"]
    assert "start=" in message and "end=" in message and "step_minutes=" in message and "5,000,000" in message
    error = to_parameter_error(exc)
    assert isinstance(error, ParameterError) and error.code == "PARAM_COMPARISON_FAILED"
    # exactly 5,000,000 points is allowed
    start = datetime(2024, 1, 1, tzinfo=UTC)
    ResampleOptions(step_minutes=1 / 60, method="mean", start=start, end=start + timedelta(seconds=4_999_999))
    exc = invalid(step_minutes=1 / 60, method="mean", start=start, end=start + timedelta(seconds=5_000_000))
    assert "5,000,001" in exc.errors()[0]["msg"]


def test_datetimes_are_stored_in_utc_and_hash_alike() -> None:
    a = ResampleOptions(step_minutes=15, method="mean", anchor="2024-01-01T01:07:00+01:00",
                        start=datetime(2024, 3, 1, 12, tzinfo=timezone(timedelta(hours=-5))))
    b = ResampleOptions(step_minutes=15, method="mean", anchor=datetime(2024, 1, 1, 0, 7, tzinfo=UTC),
                        start="2024-03-01T17:00:00Z")
    assert a.anchor is not None and a.anchor.tzinfo is UTC
    dumped = a.model_dump(mode="json")
    assert dumped["anchor"] == "2024-01-01T00:07:00Z" and dumped["start"] == "2024-03-01T17:00:00Z"
    assert a.parameters_hash() == b.parameters_hash()
    assert ResampleOptions.model_validate(dumped) == a


def test_column_methods_override_and_hash() -> None:
    options = ResampleOptions(step_minutes=15, method="mean", decimals=2, column_methods={
        "a": {"method": "intrpl", "max_gap_minutes": 30}, "b": {"decimals": None}, "c": {}, "d": "nearest",
    })
    assert options.method_for("a") == ResolvedMethod(method="interpolate", max_gap_minutes=30, decimals=2)
    assert options.method_for("b") == ResolvedMethod(method="mean", max_gap_minutes=60, decimals=None)
    assert options.method_for("c") == ResolvedMethod(method="mean", max_gap_minutes=60, decimals=2)
    assert options.method_for("d").method == "nearest"
    assert options.method_for("zzz") == ResolvedMethod(method="mean", max_gap_minutes=60, decimals=2)
    # an explicit decimals=None (full precision) differs from an unset one (inherit)
    explicit = ResampleOptions(step_minutes=15, method="mean", decimals=2, column_methods={"b": {"decimals": None}})
    unset = ResampleOptions(step_minutes=15, method="mean", decimals=2, column_methods={"b": {}})
    assert explicit.parameters_hash() != unset.parameters_hash()
    assert ResampleOptions.model_validate(explicit.model_dump(mode="json")).method_for("b").decimals is None
    assert ColumnMethod(method="nearest (mean)").method == "nearest_mean"


def test_column_method_codes() -> None:
    exc = invalid(step_minutes=15, method="mean", column_methods={"a": {"method": "x", "decimals": 20, "foo": 1}})
    assert set(codes(exc)) <= {"INVALID_CHOICE", "PARAM_OUT_OF_RANGE", "UNKNOWN_PARAMETER"}
    exc = invalid(step_minutes=15, method="mean", column_methods={"a": {"method": "x", "decimals": 20}})
    assert codes(exc) == ["INVALID_CHOICE", "PARAM_OUT_OF_RANGE"]
    assert exc.errors()[0]["loc"] == ("column_methods", "a", "method")
    assert codes(invalid(step_minutes=15, method="mean", column_methods={"a": {"max_gap_minutes": -1}})) == [
        "PARAM_OUT_OF_RANGE"]
    assert codes(invalid(step_minutes=15, method="mean", column_methods={"": {}})) == ["MISSING_PARAMETER"]


def test_options_are_frozen() -> None:
    options = ResampleOptions(step_minutes=15, method="mean")
    with pytest.raises(ValidationError):
        options.step_minutes = 5  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Runtime errors (§2.7) and the stage contract
# --------------------------------------------------------------------------------------------


def test_invalid_frame_raises_frame_error() -> None:
    frame = frame_at(R1)
    with pytest.raises(FrameError):
        resample(frame.tz_convert(None), ResampleOptions(step_minutes=15, method="mean"))
    with pytest.raises(FrameError):
        resample(frame.iloc[::-1], ResampleOptions(step_minutes=15, method="mean"))


def test_microsecond_index_is_converted_on_entry() -> None:
    frame = frame_at(R1)
    micro = frame.set_axis(frame.index.as_unit("us"), axis=0)
    result = resample(micro, ResampleOptions(step_minutes=15, method="mean"))
    assert str(micro.index.dtype) == "datetime64[us, UTC]"  # the input is untouched
    pd.testing.assert_frame_equal(result.frame, resample(frame, ResampleOptions(step_minutes=15, method="mean")).frame)


def test_column_not_found() -> None:
    with pytest.raises(ResampleError) as info:
        resample(frame_at(R1), ResampleOptions(step_minutes=15, method="mean", column_methods={"y": {}}))
    assert info.value.code == "COLUMN_NOT_FOUND" and info.value.details["columns"] == ["y"]


@pytest.mark.parametrize("frame", [
    frame_at([("00:00", nan), ("00:15", nan)]),
    empty_frame(["x"]),
])
def test_no_numeric_data(frame: pd.DataFrame) -> None:
    with pytest.raises(ResampleError) as info:
        resample(frame, ResampleOptions(step_minutes=15, method="mean"))
    assert info.value.code == "NO_NUMERIC_DATA"


def test_empty_grid() -> None:
    frame = frame_at([("00:05", 1), ("00:10", 2)])
    with pytest.raises(ResampleError) as info:
        resample(frame, ResampleOptions(step_minutes=15, method="mean"))
    assert info.value.code == "EMPTY_GRID"
    with pytest.raises(ResampleError) as info:
        resample(frame_at(R1), ResampleOptions(step_minutes=15, method="mean", start="2024-03-02T00:00:00Z"))
    assert info.value.code == "EMPTY_GRID"


def test_grid_too_large_is_raised_before_allocation() -> None:
    frame = frame_at([("00:00", 1.0)], day="2024-01-01")
    frame = pd.concat([frame, frame_at([("00:00", 2.0)], day="2024-03-01")])
    with pytest.raises(ResampleError) as info:
        resample(frame, ResampleOptions(step_minutes=1 / 60, method="mean"))
    error = info.value
    assert error.code == "GRID_TOO_LARGE"
    assert error.details["points"] == 60 * 86_400 + 1 and error.details["max_points"] == 5_000_000
    assert "5,184,001" in error.message and error.hint and "step" in error.hint
    with pytest.raises(ResampleError):
        make_grid(frame.index[0], frame.index[-1], ResampleOptions(step_minutes=1 / 60, method="mean"))


def test_make_grid_exposes_the_rule() -> None:
    options = ResampleOptions(step_minutes=15, method="mean", start="2024-03-01T14:40:00Z")
    grid = make_grid(pd.Timestamp("2024-03-01 14:31", tz="UTC"), pd.Timestamp("2024-03-01 15:06", tz="UTC"), options)
    assert str(grid.dtype) == "datetime64[ns, UTC]" and grid.name == "utc"
    assert [t.strftime("%H:%M") for t in grid] == ["14:45", "15:00"]
    end = ResampleOptions(step_minutes=15, method="mean", end="2024-03-01T14:59:59Z")
    assert len(make_grid(datetime(2024, 3, 1, 14, 31, tzinfo=UTC), datetime(2024, 3, 1, 15, 6, tzinfo=UTC), end)) == 1
    with pytest.raises(ValueError, match="time zone"):
        make_grid(datetime(2024, 3, 1), datetime(2024, 3, 2), options)


def test_grid_rule_arithmetic() -> None:
    rule = GridRule.from_parameters(15, -5)
    assert rule.phase_ns == 10 * MIN
    assert rule.first_at_or_after(BASE + 1) == BASE + 10 * MIN
    assert rule.first_at_or_after(BASE + 10 * MIN) == BASE + 10 * MIN
    assert rule.last_at_or_before(BASE + 10 * MIN - 1) == BASE - 5 * MIN
    assert rule.count(BASE, BASE + 60 * MIN) == 4
    assert list(rule.on_grid(np.array([BASE + 10 * MIN, BASE]))) == [True, False]
    ancient = GridRule.from_parameters(7, anchor=datetime(1, 1, 1, 0, 3, tzinfo=UTC))
    assert 0 <= ancient.phase_ns < 7 * MIN


def test_output_contract_and_input_untouched() -> None:
    rng = np.random.default_rng(3)
    times = BASE + np.cumsum(rng.integers(20, 100, 400)) * 1_000_000_000
    frame = frame_ns(times, {"b": rng.normal(size=400), "a": rng.normal(size=400)})
    frame.iloc[5:40, 0] = nan
    before = frame.copy(deep=True)
    result = resample(frame, ResampleOptions(step_minutes=1, method="mean"))
    pd.testing.assert_frame_equal(frame, before)
    validate_frame(result.frame, "output")
    assert list(result.frame.columns) == ["b", "a"]
    assert (np.diff(result.frame.index.asi8) == MIN).all()
    report = result.report
    assert report.rows_in == 400 and report.rows_out == len(result.frame) == report.grid_points
    assert report.columns_out == ["b", "a"] and report.input_rows == 400
    assert report.parameters["offset_minutes_effective"] == 0.0
    assert report.parameters_hash == ResampleOptions(step_minutes=1, method="mean").parameters_hash()
    json.dumps(report.model_dump(mode="json"), allow_nan=False)
    for channel in report.channels.values():
        assert channel.nan_out == channel.nan_empty_window + channel.nan_gap + channel.nan_no_neighbour
        assert channel.values_out + channel.nan_out == report.grid_points
    assert report.channels["b"].samples == 400 - 35


def test_per_column_methods_and_decimals() -> None:
    frame = frame_ns(BASE + np.array([0, 5, 10, 15, 20]) * MIN,
                     {"m": [1, 2, 3, 4, 5.5], "i": [1, 2, 3, 4, 5.5], "n": [1.234567] * 5})
    options = ResampleOptions(step_minutes=10, method="mean", decimals=1, column_methods={
        "i": {"method": "interpolate", "decimals": None}, "n": {"method": "nearest", "decimals": 3},
    })
    result = resample(frame, options)
    assert result.frame["m"].tolist() == [np.round(1.5, 1), 3.0, np.round(4.75, 1)]
    assert result.frame["i"].tolist() == [1.0, 3.0, 5.5]
    assert result.frame["n"].tolist() == [1.235] * 3
    methods = {c: r.method for c, r in result.report.channels.items()}
    assert methods == {"m": "mean", "i": "interpolate", "n": "nearest"}
    assert result.report.channels["i"].decimals is None
    assert result.report.parameters["column_methods_resolved"]["n"] == {
        "method": "nearest", "max_gap_minutes": 60.0, "decimals": 3}


def test_channels_with_different_ranges_and_an_empty_channel() -> None:
    frame = frame_ns(BASE + np.arange(8) * 5 * MIN,
                     {"a": [1, 2, 3, 4, nan, nan, nan, nan], "b": [nan, nan, nan, 4, 5, 6, 7, 8],
                      "c": [nan] * 8})
    result = resample(frame, ResampleOptions(step_minutes=10, method="interpolate"))
    assert stamps(result.frame) == ["00:00", "00:10", "00:20", "00:30"]
    assert result.frame["a"].tolist()[:2] == [1.0, 3.0] and math.isnan(result.frame["a"].iloc[2])
    assert math.isnan(result.frame["b"].iloc[0]) and result.frame["b"].tolist()[2:] == [5.0, 7.0]
    assert result.frame["c"].isna().all()
    assert result.report.channels["c"].samples == 0
    assert result.report.channels["c"].nan_no_neighbour == 4
    assert result.report.input_first == "2024-03-01T00:00:00Z" and result.report.input_last == "2024-03-01T00:35:00Z"


def test_start_end_clip_and_samples_outside_windows() -> None:
    frame = frame_ns(BASE + np.arange(0, 120, 5) * MIN, {"x": np.arange(24.0)})
    result = resample(frame, ResampleOptions(step_minutes=15, method="mean", start="2024-03-01T00:20:00Z",
                                             end="2024-03-01T01:00:00Z"))
    assert stamps(result.frame) == ["00:30", "00:45", "01:00"]
    # windows cover [00:22:30, 01:07:30]: rows 00:25 … 01:05 are inside (9 of 24)
    assert result.report.channels["x"].samples_outside_windows == 24 - 9


def test_progress_per_chunk_per_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resample_module, "CHUNK_POINTS", 4)
    frame = frame_ns(BASE + np.arange(50) * MIN, {"a": np.arange(50.0), "b": np.arange(50.0)})
    events: list[ProgressEvent] = []
    small = resample(frame, ResampleOptions(step_minutes=5, method="mean"), progress=events.append)
    assert len(small.frame) == 10
    assert len(events) == 3 * 2  # ceil(10 / 4) chunks × 2 channels
    assert all(e.stage == "resample" and e.unit == "chunk" and e.total == 6 for e in events)
    assert [e.done for e in events] == [1, 2, 3, 4, 5, 6]
    assert events[0].message.startswith("a: grid points 0-3")
    monkeypatch.setattr(resample_module, "CHUNK_POINTS", 1_000_000)
    big = resample(frame, ResampleOptions(step_minutes=5, method="mean"))
    pd.testing.assert_frame_equal(small.frame, big.frame)


def test_mean_matches_fsum_on_long_windows() -> None:
    """One day of 1-second samples per window: per-window pairwise sums stay within 1e-12 of fsum."""
    rng = np.random.default_rng(7)
    n = 3 * 86_400
    values = rng.normal(1e6, 1e5, n) * rng.choice([-1.0, 1.0], n)
    values[::7] = 0.1
    frame = frame_ns(BASE + np.arange(n) * 1_000_000_000, {"x": values})
    out = resample(frame, ResampleOptions(step_minutes=1440, method="mean")).frame["x"].to_numpy()
    half = 720 * 60
    for k, g in enumerate(range(0, n, 86_400)):
        window = values[max(0, g - half): g + half + 1]
        expected = math.fsum(window) / window.size
        assert abs(out[k] - expected) <= 1e-12 * np.mean(np.abs(window))


def test_huge_values_do_not_overflow() -> None:
    big = np.finfo(np.float64).max
    frame = frame_ns(BASE + np.array([0, 1, 2, 3]) * MIN, {"x": [big, big, -big, big * 0.5]})
    for method in METHODS:
        result = resample(frame, ResampleOptions(step_minutes=4, method=method, max_gap_minutes=10))
        validate_frame(result.frame, "output")
        value = result.frame["x"].iloc[0]
        assert math.isfinite(value) and -big <= value <= big
    result = resample(frame_ns(BASE + np.array([0, 2]) * MIN, {"x": [-big, big]}),
                      ResampleOptions(step_minutes=1, method="interpolate"))
    assert result.frame["x"].tolist() == pytest.approx([-big, 0.0, big], rel=1e-12, abs=1e292)


def test_mean_when_data_starts_off_grid() -> None:
    """The predecessor's mean gave almost all NaN when samples preceded the first window."""
    times = BASE + (np.arange(600) * 2 + 7) * MIN + 13_000_000_000  # every 2 min from 00:07:13
    values = np.sin(np.arange(600) / 17.0)
    frame = frame_ns(times, {"x": values})
    result = resample(frame, ResampleOptions(step_minutes=15, method="mean"))
    grid = result.frame.index.asi8
    assert grid[0] == BASE + 15 * MIN
    expected = reference(times, values, grid, 15 * MIN, "mean", 0)
    np.testing.assert_allclose(result.frame["x"].to_numpy(), expected, rtol=1e-12, atol=1e-12)
    assert not result.frame["x"].isna().any()


@pytest.mark.parametrize("method", ["interpolate", "nearest_max_delta"])
def test_exact_hit_right_after_long_gap(method: str) -> None:
    frame = frame_at([("00:00", 1.0), ("05:00", 9.0), ("05:07", 10.0)])
    values, report, at = run(frame, step_minutes=15, method=method, max_gap_minutes=60)
    assert at[-1] == "05:00" and values[-1] == 9.0
    assert values[0] == 1.0 and all(math.isnan(v) for v in values[1:-1])
    assert report.channels["x"].nan_gap == len(values) - 2
    # a hit on a sample whose row is missing in this channel does not count: the next valid one is used
    frame = frame_ns(BASE + np.array([0, 300, 301]) * MIN, {"x": [1.0, nan, 10.0], "y": [0.0, 0.0, 0.0]})
    result = resample(frame, ResampleOptions(step_minutes=15, method=method, max_gap_minutes=1000))
    assert result.frame["x"].iloc[-1] == pytest.approx(1.0 + 9.0 * 300 / 301 if method == "interpolate" else 10.0)


def test_gate_parameters_and_suite() -> None:
    from zeitflow.quality import validate_frame_quality

    frame = frame_ns(BASE + np.arange(0, 200, 3) * MIN, {"load [kW]": np.arange(0, 200, 3.0), "t": 1.0})
    result = resample(frame, ResampleOptions(step_minutes=15, method="mean"))
    params = gate_parameters(result.report)
    assert params["grid_end"] == result.report.grid_end and params["channels"] == ["load [kW]", "t"]
    good = validate_frame_quality(result.frame, "resampled", params)
    assert good.success, good.failures
    holed = result.frame.drop(result.frame.index[3])
    bad = validate_frame_quality(holed, "resampled", {**params, "grid_points": len(holed)})
    assert not bad.success
    assert {f["expectation"] for f in bad.failures} == {"expect_column_values_to_be_null"}
    assert bad.failures[0]["examples"] == [holed.index[3].isoformat()]  # the row after the hole
    # equally spaced, but 30 minutes apart: count and last stamp contradict the 15-minute step
    halved = result.frame.iloc[::2]
    wrong_step = validate_frame_quality(halved, "resampled", {**params, "grid_points": len(halved)})
    assert {f["expectation"] for f in wrong_step.failures} == {"expect_column_max_to_be_between"}
    extra = pd.concat([result.frame, frame_ns([result.frame.index.asi8[-1] + 7 * MIN],
                                              {"load [kW]": [1.0], "t": [1.0]})])
    assert not validate_frame_quality(extra, "resampled", params).success


# --------------------------------------------------------------------------------------------
# Reference comparison and hypothesis properties
# --------------------------------------------------------------------------------------------


@st.composite
def channel_data(draw, max_rows: int = 30):
    """Small random channels on a coarse integer time axis, with ties, boundaries and NaN runs."""
    unit = draw(st.sampled_from([1, 5, 7, 10])) * 1_000_000_000
    ticks = draw(st.lists(st.integers(0, 240), min_size=1, max_size=max_rows, unique=True))
    times = BASE + np.array(sorted(ticks), dtype=np.int64) * unit
    values = np.array(draw(st.lists(st.integers(-50, 50), min_size=len(ticks), max_size=len(ticks))),
                      dtype=np.float64) / 4
    nan_share = draw(st.sampled_from([0.0, 0.0, 0.2, 0.6]))
    mask = np.array(draw(st.lists(st.floats(0, 1), min_size=len(ticks), max_size=len(ticks)))) < nan_share
    values[mask] = nan
    return times, values


@settings(max_examples=250, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(data=channel_data(), step_s=st.sampled_from([10, 11, 20, 35, 50, 60]), start=st.integers(-60, 2400),
       count=st.integers(1, 40), chunk=st.integers(1, 12), max_gap_s=st.sampled_from([0, 10, 30, 100, 10**6]))
def test_every_method_matches_the_reference(data, step_s, start, count, chunk, max_gap_s) -> None:
    times, values = data
    step = step_s * 1_000_000_000
    grid = GridRange(BASE + start * 1_000_000_000, step, count)
    methods = {m: ResolvedMethod(method=m, max_gap_minutes=max_gap_s / 60, decimals=None) for m in METHODS}
    out, reports = resample_columns(times, dict.fromkeys(METHODS, values), grid, methods, chunk_points=chunk)
    counts = reference_counts(times, values, grid.points(), step)
    for m in METHODS:
        expected = reference(times, values, grid.points(), step, m, max_gap_s * 1_000_000_000)
        np.testing.assert_allclose(out[m], expected, rtol=1e-12, atol=1e-12, err_msg=m)
        assert reports[m].exact_hits == counts["exact_hits"], m
        assert reports[m].values_out == int(np.count_nonzero(~np.isnan(expected)))
        if m in ("mean", "nearest", "nearest_mean"):
            assert reports[m].boundary_samples == counts["boundary_samples"]
            assert reports[m].nan_empty_window == reports[m].nan_out
        else:
            assert reports[m].nan_gap + reports[m].nan_no_neighbour == reports[m].nan_out


@PROPERTY
@given(step_s=st.sampled_from([60, 300, 450, 900, 3600]), phase=st.integers(0, 10_000), count=st.integers(1, 60),
       values=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=60, max_size=60),
       holes=st.lists(st.booleans(), min_size=60, max_size=60), method=st.sampled_from(METHODS))
def test_a_data_on_the_grid_is_returned_unchanged(step_s, phase, count, values, holes, method) -> None:
    step = step_s * 1_000_000_000
    g0 = BASE + (phase * 1_000_000_000 // step + 1) * step
    times = g0 + np.arange(count, dtype=np.int64) * step
    column = np.array(values[:count])
    column[np.array(holes[:count]) & (np.arange(count) % max(count - 1, 1) != 0)] = nan  # ends stay valid
    frame = frame_ns(times, {"x": column})
    # max_gap 0: a hole is never bridged (exact hits still win); with no holes every gap may be bridged
    max_gap = 0 if np.isnan(column).any() else 60
    result = resample(frame, ResampleOptions(step_minutes=step_s / 60, method=method, max_gap_minutes=max_gap))
    pd.testing.assert_frame_equal(result.frame, frame)
    assert result.report.channels["x"].exact_hits == int(np.count_nonzero(~np.isnan(column)))


@PROPERTY
@given(constant=st.floats(-1e9, 1e9, allow_nan=False), sample_s=st.sampled_from([1, 7, 10, 60, 61]),
       start_s=st.integers(0, 86_400), rows=st.integers(1, 300), step_s=st.sampled_from([60, 300, 900, 3600]),
       offset=st.floats(-100, 100, allow_nan=False))
def test_b_mean_of_a_constant_is_that_constant(constant, sample_s, start_s, rows, step_s, offset) -> None:
    rows = max(rows, step_s // sample_s + 1)  # the data span holds at least one grid point
    times = BASE + (start_s + np.arange(rows) * sample_s) * 1_000_000_000
    frame = frame_ns(times, {"x": np.full(rows, constant)})
    result = resample(frame, ResampleOptions(step_minutes=step_s / 60, method="mean", offset_minutes=offset))
    column = result.frame["x"]
    assert len(column) >= 1
    assert (column.dropna() == constant).all()
    assert column.notna().any()


@PROPERTY
@given(v0=st.floats(-1e6, 1e6, allow_nan=False), v1=st.floats(-1e6, 1e6, allow_nan=False),
       extra_s=st.integers(1, 20_000), step_s=st.sampled_from([1, 7, 60, 600]), start_s=st.integers(0, 3600))
def test_c_interpolation_between_two_points_is_linear(v0, v1, extra_s, step_s, start_s) -> None:
    gap_s = step_s + extra_s  # at least one grid point lies in between
    t0 = BASE + start_s * 1_000_000_000
    t1 = t0 + gap_s * 1_000_000_000
    frame = frame_ns([t0, t1], {"x": [v0, v1]})
    result = resample(frame, ResampleOptions(step_minutes=step_s / 60, method="interpolate",
                                             max_gap_minutes=gap_s / 60))
    grid = result.frame.index.asi8
    fraction = (grid - t0) / (t1 - t0)
    expected = v0 + (v1 - v0) * fraction
    np.testing.assert_allclose(result.frame["x"].to_numpy(), expected, rtol=1e-12, atol=1e-9 * max(1, abs(v0 - v1)))
    assert result.report.channels["x"].values_out == len(grid)
    # one step less of gap limit and every point strictly between the samples is NaN
    tight = resample(frame, ResampleOptions(step_minutes=step_s / 60, method="interpolate",
                                            max_gap_minutes=(gap_s - 1) / 60)).frame["x"]
    inner = (grid > t0) & (grid < t1)
    assert tight[inner].isna().all() and (tight[~inner] == result.frame["x"][~inner]).all()


@PROPERTY
@given(data=channel_data(max_rows=40), step_s=st.sampled_from([10, 20, 35, 60]), method=st.sampled_from(METHODS),
       scale=st.sampled_from([1.0, 1e-300, 1e300, 0.1]), max_gap_s=st.sampled_from([0, 30, 10**6]))
def test_d_no_value_outside_its_inputs(data, step_s, method, scale, max_gap_s) -> None:
    times, values = data
    values = values * scale + (0.1 if scale == 0.1 else 0.0)
    if np.isnan(values).all():
        values[0] = scale
    step = step_s * 1_000_000_000
    frame = frame_ns(times, {"x": values})
    try:
        result = resample(frame, ResampleOptions(step_minutes=step_s / 60, method=method,
                                                 max_gap_minutes=max_gap_s / 60))
    except ResampleError as exc:
        assert exc.code == "EMPTY_GRID"
        event("no grid point in the data span")
        return
    valid = ~np.isnan(values)
    s, v = times[valid], values[valid]
    for g, out in zip(result.frame.index.asi8, result.frame["x"].to_numpy(), strict=True):
        if math.isnan(out):
            continue
        if method in ("mean", "nearest", "nearest_mean"):
            inputs = v[2 * np.abs(s - g) <= step]
        else:  # the bracket p ≤ g ≤ q
            before, after = v[s <= g], v[s >= g]
            inputs = np.array([before[-1], after[0]])
        assert inputs.min() <= out <= inputs.max(), (method, g, out, inputs)
