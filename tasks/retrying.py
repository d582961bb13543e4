"""Retries of the task bodies that run inside a stage's transaction.

Prefect runs every attempt of a task in a child transaction of its own, and a failed child rolls back its
parent: a task-level retry inside ``run_gated`` would roll the whole stage back (deleting objects the next
attempt then registers). Those tasks therefore retry their body in the same attempt instead, on the same
condition as ``retry_transient``: a transient ``StorageError`` (``WRITE_FAILED``, ``READ_FAILED``)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect.logging import get_run_logger

from zeitflow.errors import StorageError

TRANSIENT_RETRY_DELAYS: tuple[float, ...] = (1.0, 4.0)
"""Seconds before the second and the third attempt (the task-level retries elsewhere use the same)."""

P = ParamSpec("P")
R = TypeVar("R")


def retries_in_body(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` again after a transient ``StorageError`` (three attempts in all); anything else, or the
    last failure, propagates unchanged."""

    @functools.wraps(fn)
    def attempt(*args: P.args, **kwargs: P.kwargs) -> R:
        for number, delay in enumerate(TRANSIENT_RETRY_DELAYS, start=1):
            try:
                return fn(*args, **kwargs)
            except StorageError as exc:
                if not exc.transient:
                    raise
                get_run_logger().warning("attempt %d of %s failed with %s: %s; retrying in %.0f s", number,
                                         fn.__name__, exc.code, exc.message, delay)
                time.sleep(delay)
        return fn(*args, **kwargs)  # the last attempt: its error propagates

    return attempt
