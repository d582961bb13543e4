"""Partition parsing (``zeitflow.partitions``): the three forms, path-safe keys, ranges, and coded errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zeitflow.errors import ParameterError
from zeitflow.partitions import parse_partition, partition_of, partitions_between


def test_day_hour_and_window() -> None:
    day = parse_partition("2016-06-01")
    assert (day.start, day.end) == (datetime(2016, 6, 1, tzinfo=UTC), datetime(2016, 6, 2, tzinfo=UTC))
    hour = parse_partition("2016-06-01T23")
    assert (hour.start, hour.end) == (datetime(2016, 6, 1, 23, tzinfo=UTC), datetime(2016, 6, 2, tzinfo=UTC))
    window = parse_partition("2016-06-01T00:30+02:00/2016-06-01T06:00Z")
    assert window.start == datetime(2016, 5, 31, 22, 30, tzinfo=UTC)
    assert window.key == "20160531T223000Z-20160601T060000Z"


def test_ranges_and_scheduled_times() -> None:
    assert partitions_between("2016-06-29", "2016-07-02") == ["2016-06-29", "2016-06-30", "2016-07-01", "2016-07-02"]
    assert partitions_between("2016-06-01T22", "2016-06-02T01", "hour") == [
        "2016-06-01T22", "2016-06-01T23", "2016-06-02T00", "2016-06-02T01"]
    assert partition_of(datetime(2016, 6, 1, 23, 59, tzinfo=UTC)) == "2016-06-01"
    assert partition_of(datetime(2016, 6, 1, 23, 59, tzinfo=UTC), "hour") == "2016-06-01T23"
    with pytest.raises(ParameterError):
        partitions_between("2016-06-05", "2016-06-01")
    with pytest.raises(ParameterError):
        partitions_between("2016-06-01T00", "2016-06-02")


@pytest.mark.parametrize("bad", [
    "", "x", "../2016-06-01", "2016-06-01/..", "2016-06-01\n", "2016-6-1", "2016-02-30", "2016-06-01T24",
    "2016-06-01T00:00/2016-06-02T00:00", "2016-06-02T00:00Z/2016-06-01T00:00Z", "2016-06-01\x00", "a" * 65])
def test_invalid(bad: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_partition(bad)
    assert caught.value.code == "INVALID_PARTITION" and caught.value.details["errors"][0]["loc"] == "partition"


@given(st.text(max_size=70))
def test_every_accepted_key_is_path_safe(text: str) -> None:
    try:
        key = parse_partition(text).key
    except ParameterError:
        return
    assert key and ".." not in key and all(c.isascii() and (c.isalnum() or c in "-_.T") for c in key)
