"""``tasks.isolation.run_isolated``: results and events cross the process boundary, coded errors arrive
unchanged, and a timeout or a dying child becomes a coded ``ModelError``."""

from __future__ import annotations

import os
import time

import pytest

from tasks.isolation import run_isolated
from tests.unit import isolation_targets as targets
from zeitflow.errors import ModelError


def test_result_and_events_come_from_another_process() -> None:
    events = []
    total, pid = run_isolated(targets.add, (2, 3), label="add", timeout_seconds=60, on_event=events.append)
    assert total == 5 and pid != os.getpid()
    assert [(e.done, e.metrics["loss"]) for e in events] == [(1, 1.0), (2, 0.5)]


def test_timeout_kills_the_child() -> None:
    started = time.monotonic()
    with pytest.raises(ModelError) as caught:
        run_isolated(targets.sleep_forever, (), label="slow", timeout_seconds=1.0)
    assert caught.value.code == "TRAINING_TIMEOUT"
    assert caught.value.details["model"] == "slow" and caught.value.details["timeout_seconds"] == 1.0
    assert time.monotonic() - started < 30


def test_coded_errors_pass_through_unchanged() -> None:
    with pytest.raises(ModelError) as caught:
        run_isolated(targets.coded_failure, (), label="bad", timeout_seconds=60)
    assert caught.value.code == "SHAPE_MISMATCH" and caught.value.details == {"shape": [1, 2]}


def test_other_exceptions_become_training_failed_with_the_traceback() -> None:
    with pytest.raises(ModelError) as caught:
        run_isolated(targets.plain_failure, (), label="crash", timeout_seconds=60)
    assert caught.value.code == "TRAINING_FAILED" and "RuntimeError: boom" in caught.value.message
    assert "Traceback" in caught.value.details["traceback"]


def test_a_child_that_dies_without_an_answer_is_training_failed() -> None:
    with pytest.raises(ModelError) as caught:
        run_isolated(targets.hard_exit, (), label="dead", timeout_seconds=60)
    assert caught.value.code == "TRAINING_FAILED" and caught.value.details["exitcode"] == 3
