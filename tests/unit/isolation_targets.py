"""Module-level targets for ``tasks.isolation`` tests (a spawned process imports them by name)."""

from __future__ import annotations

import os
import time

from zeitflow.errors import ModelError
from zeitflow.reports import ProgressEvent


def add(a: int, b: int, progress=None) -> int:  # noqa: ANN001
    """Emit two epoch events, then return a + b and the child's pid."""
    for epoch in (1, 2):
        progress(ProgressEvent("train", "epoch", epoch, 2, "add", {"loss": 1.0 / epoch}))
    return a + b, os.getpid()


def sleep_forever(progress=None) -> None:  # noqa: ANN001
    """Never returns on its own."""
    while True:
        time.sleep(0.05)


def coded_failure(progress=None) -> None:  # noqa: ANN001
    raise ModelError("SHAPE_MISMATCH", "X has the wrong shape", details={"shape": [1, 2]})


def plain_failure(progress=None) -> None:  # noqa: ANN001
    raise RuntimeError("boom")


def hard_exit(progress=None) -> None:  # noqa: ANN001
    os._exit(3)
