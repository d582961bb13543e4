"""Benchmark of the resample stage (stages.md §2.8).

Builds a frame of 10 million 1-minute rows (three channels, 1 % scattered NaN plus runs of
missing rows, starting off the grid) and resamples it onto a 15-minute grid with every method of
§2.5, each in a fresh child process pinned to one CPU core. Prints input rows/s (best of
``--repeat`` runs) and peak RSS (``resource.getrusage``) against the in-memory size of the input
frame, with pandas' ``DataFrame.resample("15min").mean()`` on the same frame as the reference
figure (left-closed bins, so its values differ from the centred windows of §2.5). A second table
shows the §2.8 target case: 100,000 samples onto 6,667 grid points.

Usage: ``python benchmarks/resample.py [ROWS] [--channels N] [--repeat N]``. "RSS before" is the RSS with the
input frame built (the peak is reset there where Linux allows it), so (peak − before) / frame is
the stage's working memory relative to its input.
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
    import pandas as pd

METHODS = ("mean", "interpolate", "nearest", "nearest_mean", "nearest_max_delta")
STEP_MINUTES = 15
_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


def _peak_mb() -> float:
    """Peak RSS of this process in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _reset_peak() -> bool:
    """Reset the peak-RSS high-water mark to the current RSS (Linux ``/proc/self/clear_refs``), so
    that the peak measured afterwards belongs to the stage, not to building its input."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def build_frame(rows: int, channels: int, seed: int = 0) -> pd.DataFrame:
    """A canonical frame of ``rows`` 1-minute rows from 2000-01-01 00:07 UTC, filled column by column
    (so building it never holds much more than the frame itself)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    data = np.empty((channels, rows), dtype=np.float64)  # one contiguous block, column by column
    block = 1_000_000
    for j in range(channels):
        column = data[j]
        for k in range(0, rows, block):
            part = column[k:k + block]
            part[:] = rng.standard_normal(part.size) + 20.0 + 10.0 * j
            part[rng.random(part.size) < 0.01] = np.nan  # scattered gaps
        for start in rng.integers(0, rows, 50):  # 50 outages of up to 1,000 minutes
            column[start:start + int(rng.integers(1, 1000))] = np.nan
    start = np.datetime64("2000-01-01T00:07:00", "ns")
    index = pd.DatetimeIndex(start + np.arange(rows) * np.timedelta64(60, "s"), name="utc").tz_localize("UTC")
    return pd.DataFrame(data.T, index=index, columns=[f"ch{j} [kW]" for j in range(channels)], copy=False)


def measure(kind: str, rows: int, channels: int, repeat: int) -> dict[str, float]:
    """Run one method (or the pandas reference) ``repeat`` times in this process."""
    frame = build_frame(rows, channels)
    frame_mb = frame.memory_usage(index=True, deep=True).sum() / 1e6
    gc.collect()
    reset = _reset_peak()
    baseline = _peak_mb()
    times = []
    points = 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        if kind == "pandas":
            out = frame.resample(f"{STEP_MINUTES}min").mean()
        else:
            from zeitflow.options.resample import ResampleOptions
            from zeitflow.stages.resample import resample

            out = resample(frame, ResampleOptions(step_minutes=STEP_MINUTES, method=kind)).frame
        times.append(time.perf_counter() - t0)
        points = len(out)
        del out
    best = min(times)
    return {"seconds": best, "median_seconds": sorted(times)[len(times) // 2], "rows_per_s": rows / best,
            "values_per_s": rows * channels / best, "grid_points": float(points), "frame_mb": frame_mb,
            "baseline_rss_mb": baseline, "peak_rss_mb": _peak_mb(), "peak_reset": float(reset)}


def target_case() -> list[tuple[str, float]]:
    """§2.8: 100,000 samples (1-minute, 1 % NaN) onto 6,667 grid points (15 minutes), best of 5."""
    from zeitflow.options.resample import ResampleOptions
    from zeitflow.stages.resample import resample

    frame = build_frame(100_000, 1, seed=1)
    out = []
    for method in METHODS:
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            result = resample(frame, ResampleOptions(step_minutes=STEP_MINUTES, method=method))
            best = min(best, time.perf_counter() - t0)
        assert result.report.grid_points == 6_667, result.report.grid_points
        out.append((method, best))
    return out


def _child(kind: str, rows: int, channels: int, repeat: int) -> dict[str, float]:
    """One method in a fresh process with one BLAS/OpenMP thread; its JSON result."""
    command = [sys.executable, __file__, str(rows), "--channels", str(channels), "--repeat", str(repeat),
               "--measure", kind]
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
    """Run every method in children and print both tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="?", type=int, default=10_000_000)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5, help="runs per method in one process (the fastest is shown)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        _pin_one_core()
        print(json.dumps(measure(args.measure, args.rows, args.channels, max(args.repeat, 1))))
        return
    print(f"{args.rows:,} rows x {args.channels} channels of 1-minute data (1 % NaN + outages) -> "
          f"{STEP_MINUTES}-minute grid; one core per run; best of {args.repeat}")
    header = (f"{'method':34s} {'seconds':>8s} {'M rows/s':>9s} {'M values/s':>11s} {'grid pts':>9s} "
              f"{'frame MB':>9s} {'RSS before MB':>14s} {'peak RSS MB':>12s} {'(peak-before)/frame':>20s}")
    print(header)
    print("-" * len(header))
    for kind in (*METHODS, "pandas"):
        r = _child(kind, args.rows, args.channels, args.repeat)
        label = "pandas resample().mean() (ref.)" if kind == "pandas" else f"zeitflow {kind}"
        print(f"{label:34s} {r['seconds']:8.3f} {r['rows_per_s'] / 1e6:9.2f} {r['values_per_s'] / 1e6:11.2f} "
              f"{int(r['grid_points']):9,d} {r['frame_mb']:9.0f} {r['baseline_rss_mb']:14.0f} "
              f"{r['peak_rss_mb']:12.0f} {(r['peak_rss_mb'] - r['baseline_rss_mb']) / r['frame_mb']:20.2f}")
    print("\n§2.8 target: 100,000 samples onto 6,667 grid points (well under 1 s each)")
    for method, seconds in target_case():
        print(f"  {method:20s} {seconds * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
