"""Benchmark of the align stage (stages.md §4).

Aligns 5 channels of ``ROWS`` (default 5,000,000) rows each onto a 15-minute grid, in several
layouts: five one-channel sources or one five-channel source, 1-minute data starting off the grid
(1 % scattered NaN plus outages), mixed steps, jittered (irregular) timestamps, and 15-minute data
already on the grid (pass-through). Every case runs in a fresh child process pinned to one CPU
core with one BLAS/OpenMP thread; the best of ``--repeat`` runs is shown.

Columns: "M rows/s per channel" is the number of input rows of all channels divided by the time
(each channel's rows per second of the time it gets: the figure the 10,000,000 rows/s target
refers to); "M rows/s all channels" is the rows of one channel divided by the time (every channel
at once). "RSS before" is the RSS with the inputs built (the peak is reset there where Linux
allows it), so peak - before is the stage's working memory.

Usage: ``python benchmarks/align.py [ROWS] [--repeat N] [--case NAME ...]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CHANNELS = 5
STEP_MINUTES = 15
TARGET_ROWS_PER_S = 10_000_000
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

# name -> (description, layout, step minutes per source, options)
CASES: dict[str, tuple[str, str, tuple[float, ...], dict]] = {
    "mean": ("5 sources x 1 ch, 1 min, mean", "sources", (1, 1, 1, 1, 1), {"default_method": "mean"}),
    "interpolate": ("5 sources x 1 ch, 1 min, interpolate", "sources", (1, 1, 1, 1, 1),
                    {"default_method": "interpolate"}),
    "nearest": ("5 sources x 1 ch, 1 min, nearest", "sources", (1, 1, 1, 1, 1), {"default_method": "nearest"}),
    "mixed": ("5 sources x 1 ch, 0.5/1/2/5/10 min, interpolate", "sources", (0.5, 1, 2, 5, 10),
              {"default_method": "interpolate"}),
    "jitter": ("5 sources x 1 ch, 1 min +-20 s jitter, mean", "jitter", (1, 1, 1, 1, 1), {"default_method": "mean"}),
    "one_source": ("1 source x 5 ch, 1 min, mean", "one", (1,), {"default_method": "mean"}),
    "pass_through": ("5 sources x 1 ch, 15 min on grid, pass-through", "grid", (15, 15, 15, 15, 15), {}),
}


def _peak_mb() -> float:
    """Peak RSS of this process in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    """Reset the peak-RSS mark to the current RSS (Linux ``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def _column(rng: np.random.Generator, rows: int, level: float) -> np.ndarray:
    """``rows`` noisy values with 1 % scattered NaN and 50 outages of up to 1,000 rows."""
    import numpy as np

    values = rng.standard_normal(rows) + level
    values[rng.random(rows) < 0.01] = np.nan
    for start in rng.integers(0, rows, 50):
        values[start:start + int(rng.integers(1, 1000))] = np.nan
    return values


def _index(times_ns: np.ndarray) -> pd.DatetimeIndex:
    """A UTC DatetimeIndex named ``utc`` from int64 nanoseconds."""
    import numpy as np
    import pandas as pd

    return pd.DatetimeIndex(np.asarray(times_ns, dtype=np.int64).view("datetime64[ns]"), name="utc").tz_localize("UTC")


def build_sources(case: str, rows: int, seed: int = 0) -> dict:
    """The input frames of one case: 5 channels of ``rows`` rows each."""
    import numpy as np
    import pandas as pd

    _, layout, steps, _ = CASES[case]
    rng = np.random.default_rng(seed)
    start = int(np.datetime64("2000-01-01T00:07:30", "ns").astype(np.int64))  # off any 15-minute grid
    if layout == "one":
        times = start + np.arange(rows, dtype=np.int64) * 60_000_000_000
        data = {f"ch{j} [kW]": _column(rng, rows, 20.0 + 10 * j) for j in range(CHANNELS)}
        return {"logger": pd.DataFrame(data, index=_index(times))}
    frames = {}
    for j, step in enumerate(steps):
        step_ns = round(step * 60_000_000_000)
        if layout == "grid":
            first = int(np.datetime64("1900-01-01T00:00", "ns").astype(np.int64))
            times = first + np.arange(rows, dtype=np.int64) * step_ns
        else:
            times = start + j * 1_000_000_000 + np.arange(rows, dtype=np.int64) * step_ns
        if layout == "jitter":
            times += rng.integers(-20_000_000_000, 20_000_000_000, rows)
            times.sort()
            times = np.unique(times)
        frames[f"source{j}"] = pd.DataFrame({f"ch{j}": _column(rng, times.size, 20.0 + 10 * j)}, index=_index(times))
    return frames


def measure(case: str, rows: int, repeat: int) -> dict[str, float]:
    """Run one case ``repeat`` times in this process."""
    from zeitflow.options.align import AlignOptions
    from zeitflow.stages.align import align

    frames = build_sources(case, rows)
    channel_rows = sum(len(f) * f.shape[1] for f in frames.values())
    input_mb = sum(f.memory_usage(index=True, deep=True).sum() for f in frames.values()) / 1e6
    options = AlignOptions(step_minutes=STEP_MINUTES, **CASES[case][3])
    gc.collect()
    reset = _reset_peak()
    baseline = _peak_mb()
    times = []
    points = passed = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = align(frames, options)
        times.append(time.perf_counter() - t0)
        points = result.report.grid_points
        passed = sum(c.passed_through for c in result.report.channels.values())
        del result
    best = min(times)
    return {"seconds": best, "channel_rows": float(channel_rows), "grid_points": float(points),
            "passed_through": float(passed), "input_mb": input_mb, "baseline_rss_mb": baseline,
            "peak_rss_mb": _peak_mb(), "peak_reset": float(reset)}


def _child(case: str, rows: int, repeat: int) -> dict[str, float]:
    """One case in a fresh process with one BLAS/OpenMP thread; its JSON result."""
    command = [sys.executable, __file__, str(rows), "--repeat", str(repeat), "--measure", case]
    out = subprocess.run(command, check=True, capture_output=True, text=True, env={**os.environ, **_ONE_THREAD})
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pin_one_core() -> int | None:
    """Pin this process to one CPU (Linux); returns the core or None where not supported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return core


def main(argv: list[str] | None = None) -> None:
    """Run every case (or ``--case`` ones) in children and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=5_000_000, help="rows per channel")
    parser.add_argument("--repeat", type=int, default=3, help="runs per case in one process (the fastest is shown)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="run only these cases")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        _pin_one_core()
        print(json.dumps(measure(args.measure, args.rows, max(args.repeat, 1))))
        return
    print(f"align: {CHANNELS} channels x {args.rows:,} rows -> {STEP_MINUTES}-minute grid; one core per case; "
          f"best of {args.repeat}; target >= {TARGET_ROWS_PER_S / 1e6:g} M rows/s per channel")
    header = (f"{'case':48s} {'seconds':>8s} {'M rows/s per channel':>21s} {'M rows/s all channels':>22s} "
              f"{'grid pts':>10s} {'passed':>7s} {'input MB':>9s} {'RSS before MB':>14s} {'peak RSS MB':>12s} "
              f"{'target':>7s}")
    print(header)
    print("-" * len(header))
    for case in args.case or list(CASES):
        r = _child(case, args.rows, args.repeat)
        per_channel = r["channel_rows"] / r["seconds"]
        together = per_channel / CHANNELS
        print(f"{CASES[case][0]:48s} {r['seconds']:8.3f} {per_channel / 1e6:21.1f} {together / 1e6:22.1f} "
              f"{int(r['grid_points']):10,d} {int(r['passed_through']):7d} {r['input_mb']:9.0f} "
              f"{r['baseline_rss_mb']:14.0f} {r['peak_rss_mb']:12.0f} "
              f"{'ok' if per_channel >= TARGET_ROWS_PER_S else 'MISSED':>7s}")


if __name__ == "__main__":
    main()
