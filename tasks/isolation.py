"""Run one function in a dedicated spawned process, with its progress events streamed back and a hard
timeout (stages.md §0.9, §9.3): Keras seeding is process-global, so each Keras fit gets a process of its own,
and a fit that overruns its timeout is killed, not merely abandoned."""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Callable
from typing import Any

from zeitflow.errors import ModelError, ZeitflowError
from zeitflow.reports import ProgressEvent

POLL_SECONDS = 0.2


def _child(target: Callable[..., Any], args: tuple[Any, ...], channel: Any) -> None:
    """Entry point of the spawned process: run ``target(*args, progress=...)`` and send the outcome."""
    def progress(event: ProgressEvent) -> None:
        channel.put(("event", event))

    try:
        channel.put(("result", target(*args, progress=progress)))
    except ZeitflowError as exc:
        channel.put(("error", exc))
    except BaseException as exc:  # noqa: BLE001 - every failure must reach the parent, with its traceback
        channel.put(("crash", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


def run_isolated(target: Callable[..., Any], args: tuple[Any, ...], *, label: str, timeout_seconds: float,
                 on_event: Callable[[ProgressEvent], None] | None = None) -> Any:
    """``target(*args, progress=cb)`` in a fresh spawned process; returns its result.

    Raises the child's ``ZeitflowError`` unchanged, ``ModelError`` ``TRAINING_TIMEOUT`` after killing a
    child that ran longer than ``timeout_seconds``, and ``ModelError`` ``TRAINING_FAILED`` when the child
    raised anything else or died without an answer (e.g. killed by the OOM killer)."""
    context = multiprocessing.get_context("spawn")
    channel = context.Queue()
    process = context.Process(target=_child, args=(target, args, channel), name=f"zeitflow-{label}", daemon=False)
    started = time.monotonic()
    process.start()
    try:
        while True:
            try:
                kind, payload = channel.get(timeout=POLL_SECONDS)
            except queue.Empty:
                elapsed = time.monotonic() - started
                if elapsed > timeout_seconds:
                    process.kill()
                    raise ModelError(
                        "TRAINING_TIMEOUT", f"{label}: stopped after {elapsed:.1f} s, over its timeout of "
                        f"{timeout_seconds:.1f} s; nothing of this model was stored",
                        details={"model": label, "timeout_seconds": timeout_seconds,
                                 "elapsed_seconds": round(elapsed, 3)},
                        hint="raise training.timeout_minutes (or model_timeouts_minutes for this model), "
                             "or make the model smaller",
                    ) from None
                if not process.is_alive():
                    raise ModelError(
                        "TRAINING_FAILED", f"{label}: the training process exited with code {process.exitcode} "
                        "without a result", details={"model": label, "exitcode": process.exitcode}) from None
                continue
            if kind == "event":
                if on_event is not None:
                    on_event(payload)
            elif kind == "result":
                return payload
            elif kind == "error":
                raise payload
            else:
                raise ModelError("TRAINING_FAILED", f"{label}: training failed: {payload.splitlines()[0]}",
                                 details={"model": label, "traceback": payload})
    finally:
        if process.is_alive():
            process.join(timeout=10)
        if process.is_alive():
            process.kill()
            process.join()
        channel.close()
        channel.join_thread()
