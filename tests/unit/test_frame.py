"""Canonical frame invariants (stages.md §0.3): each rule is detected and named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from zeitflow.errors import FrameError, InputError
from zeitflow.frame import empty_frame, validate_frame
from zeitflow.stats import channel_stats


def _frame(stamps: list[str], **columns: list[float]) -> pd.DataFrame:
    index = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True), name="utc").as_unit("ns")
    return pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}, index=index)


def test_valid_frame_passes() -> None:
    validate_frame(_frame(["2024-01-01 00:00", "2024-01-01 00:15"], a=[1.0, np.nan]), "ok")
    validate_frame(empty_frame(["a"]), "empty")


@pytest.mark.parametrize("mutate, rule", [
    (lambda f: f.set_axis(f.index.tz_convert(None), axis=0), "index_dtype"),
    (lambda f: f.set_axis(f.index.as_unit("us"), axis=0), "index_dtype"),
    (lambda f: f.rename_axis("time"), "index_name"),
    (lambda f: f.iloc[::-1], "index_order"),
    (lambda f: pd.concat([f, f.iloc[[-1]]]), "index_duplicate"),
    (lambda f: f.assign(a=f["a"].astype("float32")), "column_dtype"),
    (lambda f: f.assign(a=[1.0, np.inf, 2.0]), "column_inf"),
    (lambda f: f[[]], "no_columns"),
    (lambda f: f.rename(columns={"a": ""}), "column_name"),
    (lambda f: f.reset_index(drop=True), "index_type"),
])
def test_each_rule_is_named(mutate, rule: str) -> None:
    frame = _frame(["2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30"], a=[1.0, 2.0, 3.0])
    with pytest.raises(FrameError) as info:
        validate_frame(mutate(frame), "input")
    assert info.value.code == "INVALID_FRAME"
    assert info.value.details["rule"] == rule
    assert info.value.message.startswith("input:")
    assert isinstance(info.value, InputError)


def test_first_offending_timestamp_is_named() -> None:
    frame = _frame(["2024-01-01 00:00", "2024-01-01 00:30", "2024-01-01 00:15"], a=[1.0, 2.0, 3.0])
    with pytest.raises(FrameError) as info:
        validate_frame(frame, "x")
    assert info.value.details["timestamp"] == "2024-01-01T00:15:00+00:00"


def test_channel_stats_use_exact_fractional_minutes() -> None:
    stamps = ["2024-01-01 00:07:30", "2024-01-01 00:15:00", "2024-01-01 00:22:30", "2024-01-01 00:45:00"]
    stats = channel_stats(_frame(stamps, a=[1.0, -2.0, 4.0, np.nan], b=[np.nan] * 4))
    a, b = stats
    assert a["rows"] == 4 and a["numeric"] == 3 and a["numeric_share_percent"] == 75.0
    assert (a["min"], a["max"]) == (-2.0, 4.0)
    assert a["step_median_minutes"] == 7.5 and a["step_min_minutes"] == 7.5 and a["step_max_minutes"] == 7.5
    assert a["offset_minutes"] == 0.0  # 00:07:30 is on the 7.5-minute phase from the epoch
    assert b["numeric"] == 0 and b["min"] is None and b["step_median_minutes"] is None


@pytest.mark.parametrize("position", [1, 3, 4, 5, 8, 9])
def test_order_check_finds_offenders_at_and_across_slice_boundaries(monkeypatch, position: int) -> None:
    import zeitflow.frame as frame_module

    monkeypatch.setattr(frame_module, "_SLICE", 4)
    stamps = pd.date_range("2024-01-01", periods=10, freq="15min", tz="UTC").as_unit("ns").asi8.copy()
    stamps[position] = stamps[position - 1]
    frame = pd.DataFrame({"a": np.zeros(10)}, index=pd.DatetimeIndex(stamps, tz="UTC", name="utc").as_unit("ns"))
    with pytest.raises(FrameError) as info:
        validate_frame(frame, "x")
    assert info.value.details["rule"] == "index_duplicate"
    assert info.value.details["timestamp"] == pd.Timestamp(stamps[position], tz="UTC").isoformat()
