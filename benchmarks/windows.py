"""Benchmark of ``build_windows`` (stages.md §7).

Case 1 (the predecessor's dataset): 60 days of 15-minute data, 2 inputs and 1 output, n_in = n_out = 13,
stride 15 min (5,736 samples; the predecessor took 26 s, target < 0.2 s).
Case 2: 3 years of 1-minute data, 2 inputs and 1 output, n_in = n_out = 96 (δ = 15 min), stride 15 min.

For each case the reference figure is ``numpy.lib.stride_tricks.sliding_window_view`` gathering the same
windows from the same (regular, gap-free) arrays, which is the lower bound of any gather. Peak RSS is the
process high-water mark (``ru_maxrss``). Usage: ``python benchmarks/windows.py [--repeat N] [--skip-large]``.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd

from zeitflow.options.windows import WindowOptions
from zeitflow.stages.windows import build_windows


def _peak_mb() -> float:
    """Peak RSS of this process in MB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _channels(days: int, step_minutes: int) -> dict[str, pd.Series]:
    """Three seeded random-walk channels ``a``, ``b``, ``y`` of ``days`` days at ``step_minutes``."""
    n = days * 1440 // step_minutes
    index = pd.DatetimeIndex(pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(np.arange(n) * step_minutes,
                                                                                    unit="min"), name="utc")
    rng = np.random.default_rng(0)
    return {name: pd.Series(rng.normal(size=n).cumsum(), index=index.as_unit("ns")) for name in ("a", "b", "y")}


def _reference(ch: dict[str, pd.Series], n_in: int, n_out: int, every: int, stride_rows: int) -> float:
    """sliding_window_view gather of the same windows (input ends at r, output starts at r): the window view
    indexed by the reference rows and sliced by ``every``, so only the kept elements are copied."""
    t0 = time.perf_counter()
    span_in, span_out = (n_in - 1) * every + 1, (n_out - 1) * every + 1
    n = len(next(iter(ch.values())))
    starts = np.arange(span_in - 1, n - span_out + 1, stride_rows)
    x = np.stack([np.lib.stride_tricks.sliding_window_view(ch[k].to_numpy(), span_in)[starts - span_in + 1, ::every]
                  for k in ("a", "b")], axis=-1)
    y = np.lib.stride_tricks.sliding_window_view(ch["y"].to_numpy(), span_out)[starts, ::every][..., None]
    assert x.shape[1] == n_in and y.shape[1] == n_out
    return time.perf_counter() - t0


def _case(name: str, days: int, step: int, n_in: int, n_out: int, repeat: int) -> None:
    """Time build_windows and the reference on one case and print one line."""
    ch = _channels(days, step)
    every = 15 // step
    h_in, h_out = (n_in - 1) * 15 / 60, (n_out - 1) * 15 / 60
    opts = WindowOptions(n_in=n_in, n_out=n_out, stride_minutes=15,
                         inputs_spec={k: {"horizon_start_hours": -h_in, "horizon_end_hours": 0} for k in ("a", "b")},
                         outputs_spec={"y": {"horizon_start_hours": 0, "horizon_end_hours": h_out}})
    best, ds = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        ds = build_windows({"a": ch["a"], "b": ch["b"]}, {"y": ch["y"]}, opts)
        best = min(best, time.perf_counter() - t0)
    ref = min(_reference(ch, n_in, n_out, every, every) for _ in range(repeat))
    assert ds is not None
    print(f"{name}: rows/channel={len(ch['a']):,} samples={ds.n_samples:,} X={ds.X.shape} Y={ds.Y.shape} "
          f"build_windows={best:.4f} s  sliding_window_view={ref:.4f} s  peak RSS={_peak_mb():.0f} MB")


def main() -> None:
    """Run the two cases."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args()
    _case("60 d x 15 min, 2 in / 1 out, 13 steps", 60, 15, 13, 13, args.repeat)
    if not args.skip_large:
        _case("3 y x 1 min, 2 in / 1 out, 96 steps", 3 * 365, 1, 96, 96, args.repeat)


if __name__ == "__main__":
    main()
