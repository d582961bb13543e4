"""Benchmark of the load stage on a logger-style CSV (stages.md §1.8).

Generates ``2024-01-01 00:00:00;12.5;...`` lines with eight value columns in a temporary folder,
then reads the file in fresh child processes with ``zeitflow.stages.load.read_raw`` and, as a
reference, with ``pandas.read_csv`` + ``pandas.to_datetime(format=...)``. Prints rows/s, MB/s and
peak RSS (``resource.getrusage``) against the in-memory size of the resulting frame.

Usage: ``python benchmarks/load.py [SIZE_MB] [--keep DIR] [--csv FILE] [--repeat N]`` (default
1000 MB). ``--csv`` reads an existing file instead of generating one (e.g. one kept with
``--keep``); ``--repeat`` runs zeitflow N times in fresh processes and shows the fastest run and the
spread. The CPU may be shared: the load average is printed with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = 8
HEADER = "Zeitstempel;" + ";".join(f"ch{i} [kW]" for i in range(COLUMNS)) + "\n"


def generate(path: Path, size_mb: float, seed: int = 0) -> int:
    """Write about ``size_mb`` MB of 10-second logger rows; returns the number of data rows."""
    import numpy as np

    rng = np.random.default_rng(seed)
    target = int(size_mb * 1_000_000)
    start = np.datetime64("2024-01-01T00:00:00", "s")
    rows = 0
    block = 200_000
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(HEADER)
        written = len(HEADER)
        while written < target:
            stamps = (start + np.arange(rows, rows + block) * np.timedelta64(10, "s")).astype(str)
            stamps = np.char.replace(stamps, "T", " ")
            values = np.round(rng.normal(50.0, 20.0, (block, COLUMNS)), 2).astype(str)
            text = "\n".join(";".join((t, *v)) for t, v in zip(stamps, values, strict=True)) + "\n"
            if written + len(text) > target:  # trim the last block to the target size
                cut = text.rfind("\n", 0, max(target - written, 1)) + 1
                text = text[:cut] if cut > 0 else text[: text.find("\n") + 1]
            handle.write(text)
            written += len(text)
            rows += text.count("\n")
    return rows


def _peak_mb() -> float:
    """Peak RSS of this process in MB (``ru_maxrss``; the parent stays small, because Linux carries a
    parent's peak into exec'ed children)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(kind: str, path: str) -> dict[str, float]:
    """Read ``path`` once in this process and return timing and memory figures."""
    import numpy as np
    import pandas as pd

    if kind == "zeitflow":
        from zeitflow.options.load import LoadOptions
        from zeitflow.stages.load import read_raw

        baseline = _peak_mb()
        t0 = time.perf_counter()
        frame = read_raw(path, LoadOptions()).frame
        seconds = time.perf_counter() - t0
    else:
        baseline = _peak_mb()
        t0 = time.perf_counter()
        df = pd.read_csv(path, sep=";")
        index = pd.to_datetime(df.pop("Zeitstempel"), format="%Y-%m-%d %H:%M:%S", utc=True)
        frame = df.astype(np.float64).set_axis(pd.DatetimeIndex(index, name="utc"))
        seconds = time.perf_counter() - t0
    frame_mb = frame.memory_usage(index=True, deep=True).sum() / 1e6
    size = os.path.getsize(path)
    peak = _peak_mb()
    return {
        "rows": float(len(frame)), "seconds": seconds, "rows_per_s": len(frame) / seconds,
        "mb_per_s": size / 1e6 / seconds, "baseline_rss_mb": baseline, "peak_rss_mb": peak,
        "frame_mb": frame_mb, "peak_over_frame": peak / frame_mb,
        "peak_above_baseline_over_frame": (peak - baseline) / frame_mb,
    }


def _child(kind: str, path: Path) -> dict[str, float]:
    """Measure one reader in a fresh process; its JSON result."""
    out = subprocess.run([sys.executable, __file__, "--measure", kind, str(path)], check=True,
                         capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    """Generate (or take) the CSV, read it in children and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("size_mb", nargs="?", type=float, default=1000.0)
    parser.add_argument("--keep", type=Path, default=None, help="write the CSV here and keep it")
    parser.add_argument("--csv", type=Path, default=None, help="read this existing CSV instead of generating one")
    parser.add_argument("--measure", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=1, help="zeitflow runs (the fastest is shown)")
    args = parser.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(args.measure[0], args.measure[1])))
        return
    if args.generate:
        print(generate(args.generate, args.size_mb))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.csv is not None:
            path = args.csv
            print(f"reading {path}: {path.stat().st_size / 1e6:.1f} MB")
        else:
            folder = args.keep or Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "logger.csv"
            t0 = time.perf_counter()
            out = subprocess.run([sys.executable, __file__, str(args.size_mb), "--generate", str(path)],
                                 check=True, capture_output=True, text=True)
            rows = int(out.stdout.strip().splitlines()[-1])
            size_mb = path.stat().st_size / 1e6
            print(f"generated {path.name}: {size_mb:.1f} MB, {rows} rows, {COLUMNS} value columns "
                  f"in {time.perf_counter() - t0:.1f} s")
        load = os.getloadavg()
        runs = [_child("zeitflow", path) for _ in range(max(args.repeat, 1))]
        for label, result in (("zeitflow read_raw", min(runs, key=lambda r: r["seconds"])),
                              ("pandas read_csv + to_datetime", _child("pandas", path))):
            print(f"{label:32s} {result['seconds']:7.2f} s  {result['rows_per_s'] / 1e6:5.2f} M rows/s  "
                  f"{result['mb_per_s']:6.1f} MB/s  peak RSS {result['peak_rss_mb']:7.0f} MB "
                  f"(baseline {result['baseline_rss_mb']:.0f} MB)  frame {result['frame_mb']:6.0f} MB  "
                  f"peak/frame {result['peak_over_frame']:.2f}  "
                  f"(peak-baseline)/frame {result['peak_above_baseline_over_frame']:.2f}")
        if len(runs) > 1:
            rates = sorted(r["rows_per_s"] / 1e6 for r in runs)
            print(f"zeitflow over {len(runs)} runs: " + ", ".join(f"{r['seconds']:.2f} s" for r in runs)
                  + f"; {rates[0]:.2f}-{rates[-1]:.2f} M rows/s")
        print("load average before / after: " + " ".join(f"{v:.2f}" for v in load) + " / "
              + " ".join(f"{v:.2f}" for v in os.getloadavg()))


if __name__ == "__main__":
    main()
