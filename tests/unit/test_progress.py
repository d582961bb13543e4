"""Progress events map to a never-decreasing percentage, throttled to one update a second."""

from __future__ import annotations

import logging

import pytest

import tasks.progress as progress_module
from tasks.progress import ProgressReporter
from zeitflow.reports import ProgressEvent


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float]]:
    calls: list[tuple[str, float]] = []
    monkeypatch.setattr(progress_module, "create_progress_artifact",
                        lambda percent, description: calls.append(("create", percent)) or "id")
    monkeypatch.setattr(progress_module, "update_progress_artifact",
                        lambda artifact_id, percent, description: calls.append(("update", percent)))
    monkeypatch.setattr(progress_module, "get_run_logger", lambda: logging.getLogger("test"))
    return calls


def test_first_update_is_immediate_then_throttled_and_last_always_sent(sent) -> None:
    clock = Clock()
    reporter = ProgressReporter("load", clock=clock)
    reporter(ProgressEvent("load", "chunk", 1, 10))
    clock.now = 0.5
    reporter(ProgressEvent("load", "chunk", 2, 10))
    clock.now = 1.6
    reporter(ProgressEvent("load", "chunk", 3, 10))
    reporter.finish()
    assert sent == [("create", 10.0), ("update", 30.0), ("update", 100.0)]


def test_percentage_never_decreases(sent) -> None:
    clock = Clock()
    reporter = ProgressReporter("load", clock=clock, min_interval=0.0)
    for done in (5, 2, 7):
        clock.now += 1
        reporter(ProgressEvent("load", "file", done, 10))
    assert [p for _, p in sent] == [50.0, 50.0, 70.0]
