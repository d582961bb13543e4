"""Backfill planning (zeitflow.backfill): reprocess modes, order, keys and parameter checks."""

from __future__ import annotations

import pytest

from zeitflow.backfill import (
    backfill_partitions,
    check_deployment_name,
    check_max_active,
    check_reprocess,
    idempotency_key,
    plan_backfill,
)
from zeitflow.errors import ParameterError

DAYS = ["2016-06-01", "2016-06-02", "2016-06-03", "2016-06-04", "2016-06-05"]
MIXED = {"2016-06-01": "completed", "2016-06-02": "failed", "2016-06-03": None, "2016-06-04": "cancelled",
         "2016-06-05": "running"}


def test_fresh_range_submits_every_partition_oldest_first() -> None:
    plan = plan_backfill(DAYS, {}, "none", reverse=False)
    assert plan.submit == DAYS and plan.skipped == {} and plan.previous == {}


def test_reverse_submits_newest_first() -> None:
    assert plan_backfill(DAYS, {}, "none", reverse=True).submit == DAYS[::-1]
    plan = plan_backfill(DAYS, MIXED, "all", reverse=True)
    assert plan.submit == DAYS[::-1]


def test_none_fills_gaps_only() -> None:
    plan = plan_backfill(DAYS, MIXED, "none", reverse=False)
    assert plan.submit == ["2016-06-03"]
    assert set(plan.skipped) == {"2016-06-01", "2016-06-02", "2016-06-04", "2016-06-05"}
    assert plan.skipped["2016-06-01"] == "already completed"
    assert "reprocess=failed" in plan.skipped["2016-06-02"]
    assert "in progress" in plan.skipped["2016-06-05"]
    assert plan.previous == {}


def test_second_backfill_after_a_complete_one_submits_nothing() -> None:
    plan = plan_backfill(DAYS, dict.fromkeys(DAYS, "completed"), "none", reverse=False)
    assert plan.submit == [] and set(plan.skipped) == set(DAYS)


def test_failed_reruns_failed_and_cancelled_and_fills_gaps() -> None:
    plan = plan_backfill(DAYS, MIXED, "failed", reverse=False)
    assert plan.submit == ["2016-06-02", "2016-06-03", "2016-06-04"]
    assert plan.previous == {"2016-06-02": "failed", "2016-06-04": "cancelled"}
    assert set(plan.skipped) == {"2016-06-01", "2016-06-05"}


def test_failed_after_marking_one_partition_runs_exactly_that_one() -> None:
    statuses = dict.fromkeys(DAYS, "completed") | {"2016-06-03": "failed"}
    plan = plan_backfill(DAYS, statuses, "failed", reverse=False)
    assert plan.submit == ["2016-06-03"] and plan.previous == {"2016-06-03": "failed"}


def test_all_submits_everything_and_remembers_previous_statuses() -> None:
    plan = plan_backfill(DAYS, MIXED, "all", reverse=False)
    assert plan.submit == DAYS and plan.skipped == {}
    assert plan.previous == {k: v for k, v in MIXED.items() if v is not None}


def test_duplicates_are_planned_once() -> None:
    assert plan_backfill(["2016-06-01", "2016-06-01"], {}, "none").submit == ["2016-06-01"]


@pytest.mark.parametrize("value", ["some", "", "ALL", None])
def test_reprocess_choices(value: object) -> None:
    with pytest.raises(ParameterError) as info:
        check_reprocess(value)  # type: ignore[arg-type]
    assert info.value.code == "INVALID_CHOICE"
    with pytest.raises(ParameterError):
        plan_backfill(DAYS, {}, value)  # type: ignore[arg-type]
    assert [check_reprocess(v) for v in ("none", "failed", "all")] == ["none", "failed", "all"]


@pytest.mark.parametrize("value", [0, 65, -1, True, 2.0, "2"])
def test_max_active_range(value: object) -> None:
    with pytest.raises(ParameterError) as info:
        check_max_active(value)  # type: ignore[arg-type]
    assert info.value.code == "PARAM_OUT_OF_RANGE"
    assert info.value.details["errors"][0]["loc"] == "max_active"


def test_max_active_bounds_are_allowed() -> None:
    assert check_max_active(1) == 1 and check_max_active(64) == 64


@pytest.mark.parametrize("name", ["ingest", "ingest/", "/ingest-daily", "a/b/c", "", " ingest/x", "in gest/x y\n"])
def test_deployment_name_form(name: str) -> None:
    with pytest.raises(ParameterError) as info:
        check_deployment_name(name)
    assert info.value.code == "INVALID_DEPLOYMENT"


def test_deployment_name_split() -> None:
    assert check_deployment_name("ingest/ingest-daily") == ("ingest", "ingest-daily")


def test_idempotency_keys() -> None:
    assert idempotency_key("ingest/ingest-daily", "2016-06-03") == "backfill:ingest/ingest-daily:2016-06-03"
    assert idempotency_key("ingest/ingest-daily", "2016-06-03", "b1") == "backfill:ingest/ingest-daily:2016-06-03:b1"


def test_partitions_of_a_range() -> None:
    assert backfill_partitions("2016-06-01", "2016-06-05", "day") == DAYS
    hours = backfill_partitions("2016-06-01T22", "2016-06-02T01", "hour")
    assert hours == ["2016-06-01T22", "2016-06-01T23", "2016-06-02T00", "2016-06-02T01"]
    whole = backfill_partitions("2016-06-01", "2016-06-02", "hour")
    assert len(whole) == 48 and whole[0] == "2016-06-01T00" and whole[-1] == "2016-06-02T23"
    with pytest.raises(ParameterError) as info:
        backfill_partitions("2016-06-05", "2016-06-01", "day")
    assert info.value.code == "INVALID_PARTITION"
    with pytest.raises(ParameterError):
        backfill_partitions("2016-06-01T00", "2016-06-02T00", "day")
