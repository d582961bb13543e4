"""Dropped-row accounting of the run summary: every removed row counted once, by reason."""

from __future__ import annotations

from tasks.load import dropped_rows
from zeitflow.options.load import LoadOptions
from zeitflow.stages.load import merge, read_raw


def test_each_reason_is_counted_once_for_a_merge() -> None:
    a = read_raw(b"t;v\n2024-01-01 00:00;1\n2024-01-01 00:00;2\nnot a time;3\n2024-01-01 00:15;4\n",
                 LoadOptions(datetime_format="%Y-%m-%d %H:%M"))
    b = read_raw(b"t;v\n2024-01-01 00:15;4\n2024-01-01 00:30;5\n2024-01-01 00:30;6\n")
    merged = merge([a, b]).report.model_dump(mode="json")
    # a: one duplicate (00:00) and one unparseable time; b: one duplicate (00:30); the merge removes
    # 00:15 as an exact duplicate.
    assert dropped_rows(merged) == {"unparseable_time": 1, "duplicate_rows_removed": 2,
                                    "exact_duplicates_removed": 1}
    assert merged["rows_out"] == 3
