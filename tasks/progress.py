"""Maps ``ProgressEvent``s of pure stage functions to a Prefect progress artifact (stages.md §12):
a percentage that never decreases, updated at most once a second except the first and last."""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from zeitflow.reports import ProgressEvent


class ProgressReporter:
    """Callable handed to stage functions as ``progress=``."""

    def __init__(self, description: str, *, min_interval: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.description = description
        self.min_interval = min_interval
        self.clock = clock
        self.percent = 0.0
        self._last_sent = float("-inf")
        self._artifact_id: UUID | None = None

    def __call__(self, event: ProgressEvent) -> None:
        share = 100.0 * event.done / event.total if event.total else 0.0
        self.percent = max(self.percent, min(100.0, share))
        if event.metrics:
            metrics = ", ".join(f"{k}={v:.6g}" for k, v in event.metrics.items())
            get_run_logger().info("%s %s %s/%s %s", event.stage, event.unit, event.done, event.total, metrics)
        now = self.clock()
        if self._artifact_id is None or now - self._last_sent >= self.min_interval:
            self._send(now)

    def _send(self, now: float) -> None:
        if self._artifact_id is None:
            self._artifact_id = create_progress_artifact(self.percent, description=self.description)
        else:
            update_progress_artifact(self._artifact_id, self.percent, description=self.description)
        self._last_sent = now

    def finish(self) -> None:
        """Send the final 100 % (always sent, whatever the throttle)."""
        self.percent = 100.0
        self._send(self.clock())
