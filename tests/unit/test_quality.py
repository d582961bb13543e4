"""Quality gates (architecture §4): suite loading, placeholders and the raw_loaded suite."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from zeitflow.errors import DataQualityError, ParameterError
from zeitflow.quality import (
    DEFAULT_EXPECTATIONS_DIR,
    GateResult,
    check_gate,
    load_suite,
    validate_frame_quality,
)

CHANNELS = ["load [kW]", "temp"]
PARAMS = {"channels": CHANNELS}
# raw_loaded: 7 fixed expectations + 2 per channel (float64 type, finite/bounded values)
N_EXPECTED = 7 + 2 * len(CHANNELS)


def make_frame(rows: int = 6, stamps: list[str] | None = None) -> pd.DataFrame:
    """A canonical frame with two channels and one missing value."""
    if stamps is None:
        index = pd.date_range("2024-03-01", periods=rows, freq="15min", tz="UTC", unit="ns", name="utc")
    else:
        index = pd.DatetimeIndex(stamps, tz="UTC", name="utc").as_unit("ns")
    n = len(index)
    return pd.DataFrame(
        {"load [kW]": np.linspace(0.0, 5.0, n), "temp": np.where(np.arange(n) == 1, np.nan, 20.0)},
        index=index,
    )


def failed(result: GateResult) -> set[tuple[str, str | None]]:
    return {(f["expectation"], f["column"]) for f in result.failures}


def test_valid_frame_passes_with_counts() -> None:
    result = validate_frame_quality(make_frame(), "raw_loaded", PARAMS)
    assert result.success is True
    assert result.suite == "raw_loaded"
    assert result.evaluated == N_EXPECTED
    assert result.failed == 0 and result.failures == [] and result.failures_table() == []
    assert result.statistics["successful_expectations"] == N_EXPECTED
    assert result.statistics["rows"] == 6
    json.dumps(result.to_dict(), allow_nan=False)


def test_check_gate_returns_result_on_success() -> None:
    assert check_gate(make_frame(), "raw_loaded", PARAMS).success


@pytest.mark.parametrize(
    ("stamps", "expectation", "count"),
    [
        (["2024-03-01 00:00", "2024-03-01 00:15", "2024-03-01 00:15", "2024-03-01 00:30"],
         "expect_column_values_to_be_unique", 2),
        (["2024-03-01 00:00", "2024-03-01 00:30", "2024-03-01 00:15", "2024-03-01 00:45"],
         "expect_column_values_to_be_increasing", 1),
    ],
    ids=["duplicate", "decreasing"],
)
def test_stamp_order_failures(stamps: list[str], expectation: str, count: int) -> None:
    result = validate_frame_quality(make_frame(stamps=stamps), "raw_loaded", PARAMS)
    assert not result.success
    failure = next(f for f in result.failures if f["expectation"] == expectation)
    assert failure["column"] == "utc"
    assert failure["unexpected_count"] == count
    assert "utc" in failure["message"]
    assert all(isinstance(x, str) and x.startswith("2024-03-01T00:") for x in failure["examples"])
    # a duplicate also breaks strict order; a decrease is not a duplicate
    if expectation.endswith("unique"):
        assert ("expect_column_values_to_be_increasing", "utc") in failed(result)
    else:
        assert failed(result) == {(expectation, "utc")}


def test_null_stamp_detected() -> None:
    frame = make_frame()
    frame.index = pd.DatetimeIndex(
        [frame.index[0], pd.NaT, *frame.index[2:]], tz="UTC", name="utc"
    ).as_unit("ns")
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert failed(result) == {("expect_column_values_to_not_be_null", "utc")}
    assert result.failures[0]["unexpected_count"] == 1


def test_missing_and_extra_column() -> None:
    frame = make_frame().rename(columns={"temp": "humidity"})
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert not result.success
    by_type = {(f["expectation"], f["column"]): f for f in result.failures}
    match = by_type[("expect_table_columns_to_match_set", None)]
    assert "missing ['temp']" in match["message"] and "unexpected ['humidity']" in match["message"]
    # the per-channel expectations on the absent channel fail with a clear message
    assert by_type[("expect_column_values_to_be_of_type", "temp")]["message"] == "column 'temp' not found"
    assert ("expect_column_values_to_be_between", "temp") in by_type


def test_extra_column_only() -> None:
    frame = make_frame().assign(extra=1.0)
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert failed(result) == {("expect_table_columns_to_match_set", None)}
    assert "unexpected ['extra']" in result.failures[0]["message"]


@pytest.mark.parametrize("values", [np.arange(6, dtype=np.int64), np.array(list("abcdef"), dtype=object)])
def test_non_float_column(values: np.ndarray) -> None:
    frame = make_frame().assign(temp=values)
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert ("expect_column_values_to_be_of_type", "temp") in failed(result)
    failure = next(f for f in result.failures if f["expectation"] == "expect_column_values_to_be_of_type")
    assert "expected float64" in failure["message"]


def test_value_outside_bounds() -> None:
    frame = make_frame()
    frame.iloc[4, 0] = 27.5
    params = {**PARAMS, "value_min": 0.0, "value_max": 20.0}
    result = validate_frame_quality(frame, "raw_loaded", params)
    assert failed(result) == {("expect_column_values_to_be_between", "load [kW]")}
    failure = result.failures[0]
    assert failure["unexpected_count"] == 1 and failure["examples"] == [27.5]
    assert failure["kwargs"]["min_value"] == 0.0 and failure["kwargs"]["max_value"] == 20.0
    assert "[0.0, 20.0]" in failure["message"]
    # NaN means missing and is not a bound violation
    assert validate_frame_quality(make_frame(), "raw_loaded", params).success


def test_infinity_rejected_without_bounds() -> None:
    frame = make_frame()
    frame.iloc[2, 1] = -np.inf
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert failed(result) == {("expect_column_values_to_be_between", "temp")}
    assert result.failures[0]["examples"] == ["-inf"]
    assert "non-finite" in result.failures[0]["message"]
    json.dumps(result.to_dict(), allow_nan=False)


def test_zero_rows() -> None:
    result = validate_frame_quality(make_frame(rows=0), "raw_loaded", PARAMS)
    assert failed(result) == {("expect_table_row_count_to_be_between", None)}
    assert result.failures[0]["observed"] == 0


def test_naive_index_detected() -> None:
    frame = make_frame()
    frame.index = frame.index.tz_localize(None)
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    assert failed(result) == {("expect_column_values_to_be_of_type", "utc")}


def test_channel_named_utc_fails_gate() -> None:
    frame = make_frame().rename(columns={"temp": "utc"})
    result = validate_frame_quality(frame, "raw_loaded", {"channels": ["load [kW]", "utc"]})
    assert not result.success and result.failures[0]["column"] == "utc"


def test_check_gate_raises_with_suite_and_expectation() -> None:
    frame = make_frame(stamps=["2024-03-01 00:00", "2024-03-01 00:00", "2024-03-01 00:15"])
    with pytest.raises(DataQualityError) as info:
        check_gate(frame, "raw_loaded", PARAMS)
    err = info.value
    assert err.code == "GATE_FAILED"
    assert "'raw_loaded'" in err.message
    assert "expect_column_values_to_be_unique(utc)" in err.message
    assert err.details["suite"] == "raw_loaded"
    assert {f["expectation"] for f in err.details["failures"]} >= {"expect_column_values_to_be_unique"}
    json.dumps(err.to_dict(), allow_nan=False)
    assert DataQualityError.__reduce__(err)[1][1] == "GATE_FAILED"


def test_failures_table_rows_are_flat() -> None:
    frame = make_frame().assign(extra=np.inf)
    result = validate_frame_quality(frame, "raw_loaded", PARAMS)
    table = result.failures_table()
    assert len(table) == result.failed == 1
    assert set(table[0]) == {"suite", "expectation", "column", "observed", "unexpected_count",
                             "unexpected_percent", "examples", "message"}
    assert all(v is None or isinstance(v, str | int | float) for row in table for v in row.values())


def test_failures_follow_suite_order() -> None:
    frame = make_frame(stamps=["2024-03-01 00:15", "2024-03-01 00:00"]).rename(columns={"temp": "x"})
    order = [f["expectation"] for f in validate_frame_quality(frame, "raw_loaded", PARAMS).failures]
    assert order.index("expect_column_values_to_be_increasing") < order.index(
        "expect_table_columns_to_match_set"
    ) < order.index("expect_column_values_to_be_of_type")


# --------------------------------------------------------------------------- suites and placeholders


def test_load_suite_fills_placeholders() -> None:
    configs = load_suite("raw_loaded", {"channels": ["a", "b"], "value_min": -1.0, "value_max": None})
    match = next(c for c in configs if c["type"] == "expect_table_columns_to_match_set")
    assert match["kwargs"]["column_set"] == ["utc", "a", "b"]
    between = [c for c in configs if c["type"] == "expect_column_values_to_be_between"]
    assert [c["kwargs"]["column"] for c in between] == ["a", "b"]
    assert all(c["kwargs"]["min_value"] == -1.0 for c in between)
    assert all(c["kwargs"]["max_value"] == np.finfo(np.float64).max for c in between)  # default: finite only
    types = [c["kwargs"]["column"] for c in configs if c["type"] == "expect_column_values_to_be_of_type"]
    assert types == ["utc", "a", "b"]
    assert not any("$param" in json.dumps(c) or "for_each" in c for c in configs)


def test_explicit_columns_parameter_wins() -> None:
    configs = load_suite("raw_loaded", {"channels": ["a"], "columns": ["utc", "a", "z"]})
    match = next(c for c in configs if c["type"] == "expect_table_columns_to_match_set")
    assert match["kwargs"]["column_set"] == ["utc", "a", "z"]


def test_missing_placeholder_raises() -> None:
    with pytest.raises(ParameterError) as info:
        load_suite("raw_loaded", {})
    err = info.value
    assert err.code == "MISSING_PARAMETER"
    assert "raw_loaded" in err.message and "'columns'" in err.message
    assert err.details["parameters"] == ["channels", "columns"]
    assert all(e["code"] == "MISSING_PARAMETER" for e in err.details["errors"])
    with pytest.raises(ParameterError, match="MISSING_PARAMETER"):
        validate_frame_quality(make_frame(), "raw_loaded", None)


def test_unknown_suite() -> None:
    with pytest.raises(ParameterError) as info:
        load_suite("no_such_suite", PARAMS)
    assert info.value.code == "UNKNOWN_SUITE" and "raw_loaded" in info.value.details["available"]
    with pytest.raises(ParameterError, match="UNKNOWN_SUITE"):
        load_suite("../expectations/raw_loaded", PARAMS)


def write_suite(folder: Path, name: str, expectations: list[dict]) -> None:
    (folder / f"{name}.json").write_text(json.dumps({"name": name, "expectations": expectations}))


def test_optional_placeholder_and_custom_dir(tmp_path: Path) -> None:
    write_suite(tmp_path, "bounded", [
        {"type": "expect_column_values_to_be_between", "for_each": "channels",
         "kwargs": {"min_value": {"$param": "lo", "optional": True},
                    "max_value": {"$param": "hi", "optional": True}}},
    ])
    configs = load_suite("bounded", {"channels": ["a"], "lo": None, "hi": 3.0}, tmp_path)
    assert configs[0]["kwargs"] == {"column": "a", "max_value": 3.0}
    frame = make_frame().rename(columns={"load [kW]": "a"})[["a"]]
    params = {"channels": ["a"], "hi": 3.0}
    result = validate_frame_quality(frame, "bounded", params, expectations_dir=tmp_path)
    assert result.evaluated == 1 and result.failed == 1
    assert result.failures[0]["unexpected_count"] == 2  # 4.0 and 5.0


def test_invalid_suites(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    write_suite(tmp_path, "unknown_type", [{"type": "expect_nonsense", "kwargs": {"column": "utc"}}])
    between = "expect_column_values_to_be_between"
    write_suite(tmp_path, "bad_kwargs", [{"type": between, "kwargs": {"column": "utc"}}])
    write_suite(tmp_path, "bad_placeholder", [{"type": "expect_column_to_exist",
                                               "kwargs": {"column": {"$param": "c", "dflt": 1}}}])
    for name in ("broken", "unknown_type", "bad_kwargs", "bad_placeholder"):
        with pytest.raises(ParameterError) as info:
            validate_frame_quality(make_frame(), name, {"c": "utc"}, expectations_dir=tmp_path)
        assert info.value.code == "INVALID_SUITE" and name in info.value.message


def test_default_dir_is_repo_expectations() -> None:
    assert Path(__file__).resolve().parents[2] / "expectations" == DEFAULT_EXPECTATIONS_DIR
    assert (DEFAULT_EXPECTATIONS_DIR / "raw_loaded.json").is_file()


# --------------------------------------------------------------------------- isolation


def test_repeated_validation_does_not_leak_state() -> None:
    good = validate_frame_quality(make_frame(), "raw_loaded", PARAMS)
    other = make_frame(rows=3).rename(columns={"temp": "wind"})
    bad = validate_frame_quality(other, "raw_loaded", {"channels": ["load [kW]", "wind"], "value_min": 1.0})
    again = validate_frame_quality(make_frame(), "raw_loaded", PARAMS)
    assert good.success and again.success
    assert good.to_dict() == {**again.to_dict(), "statistics": good.statistics}
    assert bad.statistics["rows"] == 3 and bad.evaluated == N_EXPECTED
    # only the bound on the first channel fails (values 0.0, 2.5, 5.0); no trace of the earlier frame
    assert failed(bad) == {("expect_column_values_to_be_between", "load [kW]")}
    assert bad.failures[0]["examples"] == [0.0]
    assert bad.failures[0]["kwargs"]["min_value"] == 1.0


def test_library_has_no_prefect_import() -> None:
    source = (Path(__file__).resolve().parents[2] / "zeitflow" / "quality.py").read_text()
    assert not re.search(r"^\s*(import|from)\s+prefect", source, re.MULTILINE)


def test_concurrent_validations_stay_separate() -> None:
    from concurrent.futures import ThreadPoolExecutor

    def job(i: int) -> tuple[int, GateResult]:
        frame = make_frame(rows=5 + i).rename(columns={"temp": f"c{i}"})
        bound = 4.0 if i % 2 else None
        return i, validate_frame_quality(frame, "raw_loaded", {"channels": ["load [kW]", f"c{i}"],
                                                               "value_max": bound})

    with ThreadPoolExecutor(4) as pool:
        for i, result in pool.map(job, range(8)):
            assert result.statistics["rows"] == 5 + i
            assert result.success is (i % 2 == 0)
            if i % 2:
                counts = {f["column"]: f["unexpected_count"] for f in result.failures}
                assert counts[f"c{i}"] == 5 + i - 1  # every temp value (20.0) but the NaN one
