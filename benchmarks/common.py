"""Shared helpers of the benchmarks: memory readings, best-of-N timing, child processes and a fast CSV writer.

Importing this module costs only the standard library (numpy is imported inside the functions that need it),
so the orchestrating parent of ``run_all.py`` stays small: Linux carries a parent's peak RSS into its
exec'ed children (``ru_maxrss`` of a child starts at the parent's high-water mark), so a parent that held a
big frame would inflate every child's reading.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

MIB = 1024.0 * 1024.0
# Nothing leaves the machine; TensorFlow's C++ INFO lines stay out of the output.
QUIET_ENV = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}
CSV_COLUMNS = 8
CSV_HEADER = "Zeitstempel;" + ";".join(f"ch{i} [kW]" for i in range(CSV_COLUMNS)) + "\n"
CSV_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
CSV_ROW_BYTES = 19 + 6 * CSV_COLUMNS + 1  # "2024-01-01 00:00:00" + 8 x ";12.34" + "\n"


def quiet_environment() -> None:
    """Set the offline/quiet defaults in this process (children inherit them)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)


def peak_rss_mib() -> float:
    """Peak RSS of this process in MiB: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _status_kib(field: str) -> float | None:
    """A ``/proc/self/status`` field in KiB (Linux), or None where there is none."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mib() -> float | None:
    """Current RSS (``VmRSS``) in MiB, or None off Linux."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024.0


def reset_peak() -> bool:
    """Reset the mm high-water mark (``VmHWM``) to the current RSS (Linux ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def hwm_mib() -> float | None:
    """High-water mark since the last ``reset_peak`` (``VmHWM``) in MiB, or None off Linux."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024.0


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, list[float]]:
    """Best wall time of ``repeat`` calls of ``fn`` (each after a ``gc.collect``) and all times; the result
    of each call is dropped before the next one starts."""
    times: list[float] = []
    for _ in range(max(1, repeat)):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    return min(times), times


def frame_mib(frame: Any) -> float:
    """In-memory size of a DataFrame (values and index, deep) in MiB."""
    return float(frame.memory_usage(index=True, deep=True).sum()) / MIB


def run_child(args: Sequence[str], *, timeout: float | None = None, env: dict[str, str] | None = None
              ) -> dict[str, Any]:
    """Run ``python args...`` in a fresh process and return the JSON object it printed last on stdout."""
    command = [sys.executable, *args]
    out = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, **QUIET_ENV, **(env or {})}, check=False)
    lines = [line for line in out.stdout.strip().splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"{' '.join(command)} exited with {out.returncode}:\n{tail}")
    return json.loads(lines[-1])


def _put_digits(out: Any, column: int, values: Any, width: int) -> None:
    """Write ``values`` (int64) as ``width`` zero-padded ASCII digits into ``out[:, column:column + width]``."""
    for i in range(width):
        out[:, column + width - 1 - i] = 48 + (values // 10**i) % 10


def generate_csv(path: Path, rows: int, seed: int = 0, block: int = 500_000) -> int:
    """Write ``rows`` logger lines ``2024-01-01 00:00:00;12.34;...`` (10-second steps, 8 value columns of
    10.00-99.99, ``;`` delimiter, one header line) to ``path``; every line has the same width, so each block is
    built as one uint8 array (about 1 s per 100 MB). Deterministic for a given seed; returns the rows written."""
    import numpy as np

    rng = np.random.default_rng(seed)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    with open(path, "wb") as handle:
        handle.write(CSV_HEADER.encode("ascii"))
        for k0 in range(0, rows, block):
            n = min(block, rows - k0)
            stamps = start + (np.arange(k0, k0 + n, dtype=np.int64) * 10).astype("m8[s]")
            days, months, years = stamps.astype("M8[D]"), stamps.astype("M8[M]"), stamps.astype("M8[Y]")
            year = years.astype(np.int64) + 1970
            month = (months - years.astype("M8[M]")).astype(np.int64) + 1
            day = (days - months.astype("M8[D]")).astype(np.int64) + 1
            second = (stamps - days.astype("M8[s]")).astype(np.int64)
            out = np.empty((n, CSV_ROW_BYTES), dtype=np.uint8)
            _put_digits(out, 0, year, 4)
            out[:, 4] = out[:, 7] = ord("-")
            _put_digits(out, 5, month, 2)
            _put_digits(out, 8, day, 2)
            out[:, 10] = ord(" ")
            _put_digits(out, 11, second // 3600, 2)
            out[:, 13] = out[:, 16] = ord(":")
            _put_digits(out, 14, second // 60 % 60, 2)
            _put_digits(out, 17, second % 60, 2)
            values = rng.integers(1000, 10000, size=(n, CSV_COLUMNS), dtype=np.int64)
            for j in range(CSV_COLUMNS):
                c = 19 + 6 * j
                out[:, c] = ord(";")
                _put_digits(out, c + 1, values[:, j] // 100, 2)
                out[:, c + 3] = ord(".")
                _put_digits(out, c + 4, values[:, j] % 100, 2)
            out[:, -1] = ord("\n")
            handle.write(out.tobytes())
    return rows
