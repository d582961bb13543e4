"""Quality-gate throughput: zeitflow.quality.validate_frame_quality vs plain GX on the same frame.

Usage: GX_ANALYTICS_ENABLED=false python benchmarks/gates.py [--rows 1000000] [--channels 5] [--repeat 3]
Prints one line per measurement: name, rows, seconds (best of --repeat), seconds per million rows.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def make_frame(rows: int, channels: int) -> pd.DataFrame:
    """A canonical frame: 1-minute UTC stamps, random float64 channels with a few NaNs."""
    rng = np.random.default_rng(0)
    index = pd.date_range("2024-01-01", periods=rows, freq="1min", tz="UTC", unit="ns", name="utc")
    data = {f"ch{i}": rng.normal(size=rows) for i in range(channels)}
    frame = pd.DataFrame(data, index=index)
    frame.iloc[::1000, 0] = np.nan
    return frame


def best(fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    """Time the Zeitflow gate, GX alone and the GX setup on one frame."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    import great_expectations as gx

    from zeitflow import quality

    import_s = time.perf_counter() - t0
    frame = make_frame(args.rows, args.channels)
    params = {"channels": list(frame.columns), "value_min": -10.0, "value_max": 10.0}
    quality.validate_frame_quality(frame.iloc[:10], "raw_loaded", params)  # warm caches and registries

    result = quality.validate_frame_quality(frame, "raw_loaded", params)
    assert result.success, result.failures

    # GX alone: context, batch definition and suite built once, outside the timing.
    context = quality._ephemeral_context()
    batch_definition = quality._batch_definition(context)
    suite = gx.ExpectationSuite(name="raw_loaded", expectations=quality.load_suite("raw_loaded", params))
    data = frame.reset_index()

    def gx_alone() -> None:
        """Validate with the prebuilt GX batch definition and suite."""
        outcome = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(
            suite, result_format=quality.RESULT_FORMAT
        )
        assert outcome.success

    def zeitflow_call() -> None:
        """Validate through Zeitflow's wrapper."""
        quality.validate_frame_quality(frame, "raw_loaded", params)

    def setup_only() -> None:
        """Build a context and batch definition only."""
        quality._batch_definition(quality._ephemeral_context())

    rows = len(frame)
    print(f"gx import: {import_s:.2f} s (once per process)")
    print(f"expectations evaluated: {result.evaluated}")
    print(f"{'measurement':<34}{'rows':>10}{'seconds':>10}{'s/M rows':>10}")
    for name, fn in [
        ("zeitflow validate_frame_quality", zeitflow_call),
        ("gx alone (prebuilt context+suite)", gx_alone),
        ("context+datasource setup only", setup_only),
    ]:
        seconds = best(fn, args.repeat)
        if fn is setup_only:  # independent of the frame size
            print(f"{name:<34}{'-':>10}{seconds:>10.3f}{'-':>10}")
        else:
            print(f"{name:<34}{rows:>10}{seconds:>10.3f}{seconds / rows * 1e6:>10.3f}")


if __name__ == "__main__":
    main()
