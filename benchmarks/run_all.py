"""Every Zeitflow benchmark in one table: stage, data size, Zeitflow time, reference time, ratio, peak RSS, targets.

Each case runs in a fresh child process (``python benchmarks/run_all.py --case NAME --json``) that imports what
it needs, warms up lazy imports with a tiny call of both contenders, reads the **baseline**
(``resource.getrusage(RUSAGE_SELF).ru_maxrss`` after the imports, before any data exists), builds its seeded
input, then times Zeitflow and the reference in the same process on the same data: two rounds of
Zeitflow x k then reference x k (best of all runs is shown). Zeitflow's **peak RSS** is ``ru_maxrss`` read right
after its first round, before the reference ever ran; "RSS/frame" is (peak - baseline) / frame, where "frame"
is the in-memory size of the larger of the stage's input and output (the loaded frame for load, the input frame
for resample and align, X + Y for windows, the validated frame for the gates). The reference's peak is the
``VmHWM`` high-water mark after a ``/proc/self/clear_refs`` reset. After the timings both outputs are compared
(the "check" line). The parent only imports the standard library, so it never inflates a child's
``ru_maxrss`` (Linux carries the parent's peak into an exec'ed child).

Usage::

    python benchmarks/run_all.py                 # the table, then the scale table (a few minutes)
    python benchmarks/run_all.py --overhead      # ... then the orchestration overhead (benchmarks/overhead.py)
    python benchmarks/run_all.py --big           # ... then load of a ~1 GB CSV: peak RSS against the frame
    python benchmarks/run_all.py --case NAME --json [--rows N] [--days D] [--csv PATH]   # one child
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    CSV_COLUMNS,
    CSV_ROW_BYTES,
    CSV_TIME_FORMAT,
    best_of,
    frame_mib,
    generate_csv,
    hwm_mib,
    peak_rss_mib,
    quiet_environment,
    reset_peak,
    run_child,
)

HERE = Path(__file__).resolve().parent
STEP_MINUTES = 15
LOAD_ROWS = 2_000_000
BIG_CSV_BYTES = 1_000_000_000
RESAMPLE_ROWS = 10_000_000
RESAMPLE_CHANNELS = 3
ALIGN_ROWS = 5_000_000
ALIGN_SOURCES = 5
GATE_ROWS = 1_000_000
GATE_CHANNELS = 5
TRAIN_SAMPLES = 6_000
LINEAR_SAMPLES = 20_000
TRAIN_EPOCHS = 5
# name -> (days, step minutes, window steps): the reference case of stages.md §7 and a large 1-minute case
WINDOW_CASES = {"ref": (60, 15, 13), "large": (3 * 365, 1, 96)}
SCALES = (1, 10, 100)
RESAMPLE_SCALE_ROWS = 100_000  # 1x: the §2.8 target case (100,000 samples)

# Targets of the earlier issues.
LOAD_ROWS_PER_S = 2_000_000
RESAMPLE_ROWS_PER_S = 10_000_000
ALIGN_ROWS_PER_S = 10_000_000
WINDOWS_REF_SECONDS = 0.2
GATE_S_PER_M_ROWS = 0.5
KERAS_RATIO = 1.1
MAX_RATIO = 2.0
MAX_RSS_FRAMES = 3.0


# --------------------------------------------------------------------------------------------------------
# Child side: one case, measured in this process
# --------------------------------------------------------------------------------------------------------


def _measure(zeitflow: Callable[[], Any], reference: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Two rounds of Zeitflow x k then reference x k; Zeitflow's peak RSS is read after its first round."""
    k = max(1, math.ceil(repeat / 2))
    zf_times: list[float] = []
    ref_times: list[float] = []
    zf_times += best_of(zeitflow, k)[1]
    peak = peak_rss_mib()
    reset = reset_peak()
    ref_times += best_of(reference, k)[1]
    ref_peak = hwm_mib() if reset else None
    if repeat > 1:
        zf_times += best_of(zeitflow, k)[1]
        ref_times += best_of(reference, k)[1]
    return {"zeitflow_s": min(zf_times), "reference_s": min(ref_times), "zeitflow_times": zf_times,
            "reference_times": ref_times, "peak_mib": peak, "ref_peak_mib": ref_peak}


def _equal_frames(a: Any, b: Any, rtol: float = 0.0) -> str:
    """Compare two frames on their common index: identical, or the largest relative difference."""
    import numpy as np

    common = a.index.intersection(b.index)
    x = a.loc[common].to_numpy(dtype=np.float64)
    y = b.loc[common].to_numpy(dtype=np.float64)
    nan_same = bool((np.isnan(x) == np.isnan(y)).all())
    ok = ~np.isnan(x) & ~np.isnan(y)
    diff = float(np.max(np.abs(x[ok] - y[ok]) / np.maximum(np.abs(y[ok]), 1e-300), initial=0.0))
    extra = f"; {len(a)} vs {len(b)} rows" if len(a) != len(b) else ""
    if nan_same and diff == 0.0:
        return f"identical on {len(common):,} rows{extra}"
    verdict = "same" if nan_same and diff <= rtol else "DIFFERENT"
    return f"{verdict}: max rel. diff {diff:.1e}, NaN pattern {'same' if nan_same else 'differs'}" \
           f" on {len(common):,} rows{extra}"


def case_load(csv: str, repeat: int) -> dict[str, Any]:
    """read_raw (public load function, options auto-detected) vs pandas.read_csv with the delimiter and the
    time format known."""
    import numpy as np
    import pandas as pd

    from zeitflow.options.load import LoadOptions
    from zeitflow.stages.load import read_raw

    def zeitflow(path: str = csv) -> Any:
        """The Zeitflow side of the case."""
        return read_raw(path, LoadOptions()).frame

    def reference(path: str = csv) -> Any:
        """The reference side of the case."""
        df = pd.read_csv(path, sep=";")
        index = pd.to_datetime(df.pop("Zeitstempel"), format=CSV_TIME_FORMAT, utc=True)
        return df.set_axis(pd.DatetimeIndex(index, name="utc").as_unit("ns"))

    with tempfile.TemporaryDirectory() as tmp:  # warm-up: lazy imports (pyarrow.csv, ...) on a tiny file
        tiny = str(Path(tmp) / "tiny.csv")
        generate_csv(Path(tiny), 50)
        zeitflow(tiny), reference(tiny)
    baseline = peak_rss_mib()
    result = _measure(zeitflow, reference, repeat)
    z, r = zeitflow(), reference()
    same = bool(np.array_equal(z.to_numpy(), r.to_numpy()) and (z.index.asi8 == r.index.asi8).all()
                and list(z.columns) == list(r.columns))
    rows = len(z)
    size = os.path.getsize(csv)
    return {**result, "stage": "load", "kind": "load", "baseline_mib": baseline, "frame_mib": frame_mib(z),
            "rows": rows, "rate": rows / result["zeitflow_s"], "rate_unit": "rows/s",
            "size": f"{rows:,} rows x {CSV_COLUMNS} ch, {size / 1e6:,.0f} MB CSV",
            "reference": "pandas.read_csv(sep=';') + to_datetime(format=...)",
            "check": "identical frames" if same else "DIFFERENT frames"}


def _resample_frame(rows: int) -> Any:
    """The input of the resample cases: ``benchmarks/resample.py``'s seeded 1-minute frame (1 % NaN plus
    outages, starting at 00:07, so no sample lies on a window boundary at hh:mm:30)."""
    import resample as resample_bench

    return resample_bench.build_frame(rows, RESAMPLE_CHANNELS)


def case_resample(method: str, rows: int, repeat: int) -> dict[str, Any]:
    """resample onto 15 minutes vs pandas with coinciding semantics: ``mean`` windows [g - 7.5, g + 7.5] vs
    ``resample('15min', offset='7min30s').mean()`` shifted by 7.5 min; ``interpolate`` (max gap one year, so
    every gap is bridged) vs ``reindex(union).interpolate('time', limit_area='inside').reindex(grid)``."""
    import pandas as pd

    from zeitflow.options.resample import ResampleOptions
    from zeitflow.stages.resample import resample

    extra = {"max_gap_minutes": 525_600} if method == "interpolate" else {}
    options = ResampleOptions(step_minutes=STEP_MINUTES, method=method, **extra)
    half = pd.Timedelta(minutes=STEP_MINUTES / 2)

    def run(frame: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """The two contenders of the case on the given input."""
        def zeitflow() -> Any:
            """The Zeitflow side of the case."""
            return resample(frame, options).frame

        def mean_reference() -> Any:
            """pandas' resample mean with bins centred on the grid points."""
            out = frame.resample(f"{STEP_MINUTES}min", offset="7min30s").mean()
            return out.set_axis(out.index + half)

        def interpolate_reference() -> Any:
            """pandas' time interpolation onto the grid."""
            grid = pd.date_range(frame.index[0].ceil(f"{STEP_MINUTES}min"), frame.index[-1].floor(f"{STEP_MINUTES}min"),
                                 freq=f"{STEP_MINUTES}min", name="utc", unit="ns")
            union = frame.reindex(frame.index.union(grid))
            return union.interpolate(method="time", limit_area="inside").reindex(grid)

        return zeitflow, mean_reference if method == "mean" else interpolate_reference

    warm_z, warm_r = run(_resample_frame(5_000))
    warm_z(), warm_r()
    baseline = peak_rss_mib()
    frame = _resample_frame(rows)
    zeitflow, reference = run(frame)
    result = _measure(zeitflow, reference, repeat)
    check = _equal_frames(zeitflow(), reference(), rtol=1e-12)
    reference_text = ("DataFrame.resample('15min', offset='7min30s').mean()" if method == "mean" else
                      "reindex(union).interpolate('time').reindex(grid)")
    return {**result, "stage": f"resample {method}", "kind": "resample", "baseline_mib": baseline,
            "frame_mib": frame_mib(frame), "rows": rows, "rate": rows / result["zeitflow_s"], "rate_unit": "rows/s",
            "size": f"{rows:,} rows x {RESAMPLE_CHANNELS} ch -> 15 min", "reference": reference_text,
            "check": check}


def _align_sources(rows: int, seed: int = 0) -> dict[str, Any]:
    """Five one-channel 1-minute sources (1 % NaN plus outages), starting at 00:00:10 + j s: off every window
    boundary (hh:mm:30), so the closed windows of §4 and pandas' half-open bins hold the same samples."""
    import align as align_bench
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    start = int(np.datetime64("2000-01-01T00:00:10", "ns").astype(np.int64))
    frames = {}
    for j in range(ALIGN_SOURCES):
        times = start + j * 1_000_000_000 + np.arange(rows, dtype=np.int64) * 60_000_000_000
        index = pd.DatetimeIndex(times.view("datetime64[ns]"), name="utc").tz_localize("UTC")
        frames[f"source{j}"] = pd.DataFrame({f"ch{j}": align_bench._column(rng, rows, 20.0 + 10 * j)}, index=index)
    return frames


def case_align(rows: int, repeat: int) -> dict[str, Any]:
    """align (5 sources, mean, intersection range) vs per-source pandas resample mean + inner concat."""
    import pandas as pd

    from zeitflow.options.align import AlignOptions
    from zeitflow.stages.align import align

    options = AlignOptions(step_minutes=STEP_MINUTES, default_method="mean")
    half = pd.Timedelta(minutes=STEP_MINUTES / 2)

    def run(frames: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """The two contenders of the case on the given input."""
        def zeitflow() -> Any:
            """The Zeitflow side of the case."""
            return align(frames, options).frame

        def reference() -> Any:
            """The reference side of the case."""
            parts = [f.resample(f"{STEP_MINUTES}min", offset="7min30s").mean() for f in frames.values()]
            out = pd.concat(parts, axis=1, join="inner")
            return out.set_axis(out.index + half)

        return zeitflow, reference

    warm_z, warm_r = run(_align_sources(5_000))
    warm_z(), warm_r()
    baseline = peak_rss_mib()
    frames = _align_sources(rows)
    zeitflow, reference = run(frames)
    result = _measure(zeitflow, reference, repeat)
    check = _equal_frames(zeitflow(), reference(), rtol=1e-12)
    channel_rows = rows * ALIGN_SOURCES
    return {**result, "stage": "align mean", "kind": "align", "baseline_mib": baseline,
            "frame_mib": sum(frame_mib(f) for f in frames.values()), "rows": channel_rows,
            "rate": channel_rows / result["zeitflow_s"], "rate_unit": "rows/s (all channels)",
            "size": f"{ALIGN_SOURCES} sources x {rows:,} rows -> 15 min",
            "reference": "per-source resample(...).mean() + concat(join='inner')", "check": check}


def case_windows(days: int, step: int, steps: int, repeat: int, reference_case: bool) -> dict[str, Any]:
    """build_windows (2 inputs, 1 output, n_in = n_out = ``steps`` at 15-minute spacing, stride 15 min) vs
    ``sliding_window_view`` gathering the same windows from the same regular, gap-free arrays."""
    import numpy as np
    import windows as windows_bench

    from zeitflow.options.windows import WindowOptions
    from zeitflow.stages.windows import build_windows

    every = STEP_MINUTES // step
    hours = (steps - 1) * STEP_MINUTES / 60
    options = WindowOptions(
        n_in=steps, n_out=steps, stride_minutes=STEP_MINUTES,
        inputs_spec={k: {"horizon_start_hours": -hours, "horizon_end_hours": 0} for k in ("a", "b")},
        outputs_spec={"y": {"horizon_start_hours": 0, "horizon_end_hours": hours}})
    span = (steps - 1) * every + 1

    def run(channels: dict[str, Any]) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """The two contenders of the case on the given input."""
        def zeitflow() -> Any:
            """The Zeitflow side of the case."""
            return build_windows({"a": channels["a"], "b": channels["b"]}, {"y": channels["y"]}, options)

        def reference() -> tuple[Any, Any]:
            """The reference side of the case."""
            a, b, y = (channels[k].to_numpy() for k in ("a", "b", "y"))
            starts = np.arange(span - 1, a.size - span + 1, every)  # input ends at r, output starts at r
            views = [np.lib.stride_tricks.sliding_window_view(v, span) for v in (a, b, y)]
            x = np.stack([views[0][starts - span + 1, ::every], views[1][starts - span + 1, ::every]], axis=-1)
            return x, views[2][starts, ::every][..., None]

        return zeitflow, reference

    warm_z, warm_r = run(windows_bench._channels(10, step))
    warm_z(), warm_r()
    baseline = peak_rss_mib()
    channels = windows_bench._channels(days, step)
    zeitflow, reference = run(channels)
    result = _measure(zeitflow, reference, repeat)
    dataset, (x, y) = zeitflow(), reference()
    same = np.array_equal(dataset.X, x) and np.array_equal(dataset.Y, y)
    input_mib = sum(s.memory_usage(index=True, deep=True) for s in channels.values()) / 1024**2
    output_mib = (dataset.X.nbytes + dataset.Y.nbytes) / 1024**2
    rows = len(channels["a"])
    return {**result, "stage": "windows" + (" (ref. case)" if reference_case else ""), "kind": "windows",
            "reference_case": reference_case, "baseline_mib": baseline, "frame_mib": max(input_mib, output_mib),
            "rows": rows, "samples": dataset.n_samples, "rate": dataset.n_samples / result["zeitflow_s"],
            "rate_unit": "samples/s",
            "size": f"{days} d x {step} min, 3 ch, {steps} steps: {dataset.n_samples:,} samples",
            "reference": "numpy sliding_window_view gather",
            "check": f"identical X {dataset.X.shape}, Y {dataset.Y.shape}" if same else "DIFFERENT X/Y"}


def case_gates(rows: int, repeat: int) -> dict[str, Any]:
    """validate_frame_quality(frame, 'raw_loaded') vs Great Expectations alone: the same expectations (built
    once, as a GX user defines a suite once), then per validation an ephemeral context, a pandas data source and
    batch definition and ``validate`` with the same result format on the same frame (index as column ``utc``);
    the context is configured like any offline script's (in-memory stores, no analytics, no progress bars)."""
    import gates as gates_bench
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    from zeitflow import quality

    def run(frame: Any) -> tuple[Callable[[], Any], Callable[[], Any]]:
        """The two contenders of the case on the given input."""
        params = {"channels": list(frame.columns), "value_min": -10.0, "value_max": 10.0}
        suite = gx.ExpectationSuite(name="raw_loaded", expectations=[
            ExpectationConfiguration(**cfg).to_domain_obj() for cfg in quality.load_suite("raw_loaded", params)])
        data = frame.reset_index()

        def zeitflow() -> Any:
            """The Zeitflow side of the case."""
            result = quality.validate_frame_quality(frame, "raw_loaded", params)
            assert result.success, result.failures
            return result

        def reference() -> Any:
            """The reference side of the case."""
            context = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False, progress_bars=ProgressBarsConfig(globally=False)))
            batch_definition = (context.data_sources.add_pandas("bench").add_dataframe_asset("frame")
                                .add_batch_definition_whole_dataframe("whole"))
            outcome = batch_definition.get_batch(batch_parameters={"dataframe": data}).validate(
                suite, result_format=quality.RESULT_FORMAT)
            assert outcome.success
            return outcome

        return zeitflow, reference

    warm_z, warm_r = run(gates_bench.make_frame(100, GATE_CHANNELS))
    warm_z(), warm_r()
    baseline = peak_rss_mib()
    frame = gates_bench.make_frame(rows, GATE_CHANNELS)
    zeitflow, reference = run(frame)
    result = _measure(zeitflow, reference, repeat)
    z, r = zeitflow(), reference()
    evaluated = z.evaluated
    agree = z.success == r.success and evaluated == int(r.statistics["evaluated_expectations"])
    return {**result, "stage": "gates raw_loaded", "kind": "gates", "baseline_mib": baseline,
            "frame_mib": frame_mib(frame), "rows": rows, "rate": rows / result["zeitflow_s"], "rate_unit": "rows/s",
            "size": f"{rows:,} rows x {GATE_CHANNELS} ch, {evaluated} expectations",
            "reference": "GX alone: ephemeral context + pandas batch + validate",
            "check": f"both pass {evaluated} expectations" if agree else "DIFFERENT outcomes"}


def _fastest_epoch(seconds: list[float]) -> float:
    """The fastest epoch after the first (tracing and warm-up); the first alone when only one ran."""
    return min(seconds[1:]) if len(seconds) > 1 else seconds[0]


def case_train_keras(kind: str, repeat: int) -> dict[str, Any]:
    """zeitflow.models.build(spec).fit vs model.fit of the identical plain Keras model (``benchmarks/train.py``):
    seconds per epoch, the fastest epoch after the first over ``repeat`` alternating pairs of fits (on a shared
    machine the minimum is the figure least disturbed by other processes; both runners get the same statistic)."""
    import train as train_bench

    X, Y = train_bench._arrays(TRAIN_SAMPLES)
    train_bench._zeitflow(kind, X[:64], Y[:64], 8, 1)  # warm-up: TensorFlow and Keras imports
    train_bench._plain(kind, X[:64], Y[:64], 8, 1)
    baseline = peak_rss_mib()
    epochs: dict[str, list[float]] = {"zeitflow": [], "keras": []}
    losses: dict[str, float] = {}
    peak = 0.0
    runners = {"keras": train_bench._plain, "zeitflow": train_bench._zeitflow}
    for rep in range(max(repeat, 1)):
        for name in ("zeitflow", "keras") if rep % 2 == 0 else ("keras", "zeitflow"):
            seconds, _, loss = runners[name](kind, X, Y, 64, TRAIN_EPOCHS)
            if rep == 0 and name == "zeitflow":
                peak = peak_rss_mib()  # before the plain Keras fit ever ran
            epochs[name].append(_fastest_epoch(seconds))
            losses[name] = loss
    zf, ref = min(epochs["zeitflow"]), min(epochs["keras"])
    same = losses["zeitflow"] == losses["keras"]
    return {"stage": f"train {kind} (Keras)", "kind": "train_keras", "zeitflow_s": zf, "reference_s": ref,
            "zeitflow_times": epochs["zeitflow"], "reference_times": epochs["keras"], "peak_mib": peak,
            "ref_peak_mib": None, "baseline_mib": baseline, "frame_mib": (X.nbytes + Y.nbytes) / 1024**2,
            "rows": TRAIN_SAMPLES, "rate": TRAIN_SAMPLES / zf, "rate_unit": "samples/s",
            "size": f"{TRAIN_SAMPLES:,} samples, s/epoch ({TRAIN_EPOCHS} epochs)",
            "reference": "plain keras Model.fit, same network and seed",
            "check": f"final loss {'identical' if same else 'differs'} ({losses['zeitflow']:.6g})"}


def case_train_linear(repeat: int) -> dict[str, Any]:
    """zeitflow ``linear`` (build(spec).fit, which also predicts the training split for its MSE) vs
    scikit-learn ``LinearRegression().fit`` on the same flattened arrays."""
    import numpy as np
    import train as train_bench
    from sklearn.linear_model import LinearRegression

    import zeitflow.models as zm

    X, Y = train_bench._arrays(LINEAR_SAMPLES)

    def zeitflow() -> Any:
        """The Zeitflow side of the case."""
        model = zm.build({"kind": "linear"})
        model.fit(X, Y)
        return model

    def reference() -> Any:
        """The reference side of the case."""
        return LinearRegression().fit(X.reshape(len(X), -1), Y.reshape(len(Y), -1))

    zm.build({"kind": "linear"}).fit(X[:100], Y[:100])
    LinearRegression().fit(X[:100].reshape(100, -1), Y[:100].reshape(100, -1))
    baseline = peak_rss_mib()
    result = _measure(zeitflow, reference, repeat)
    z, r = zeitflow(), reference()
    diff = float(np.max(np.abs(z.predict(X[:500]).reshape(500, -1) - r.predict(X[:500].reshape(500, -1)))))
    return {**result, "stage": "train linear (sklearn)", "kind": "train_sklearn", "baseline_mib": baseline,
            "frame_mib": (X.nbytes + Y.nbytes) / 1024**2, "rows": LINEAR_SAMPLES,
            "rate": LINEAR_SAMPLES / result["zeitflow_s"], "rate_unit": "samples/s",
            "size": f"{LINEAR_SAMPLES:,} samples x {X.shape[1] * X.shape[2]} features",
            "reference": "sklearn LinearRegression().fit", "check": f"max |prediction diff| {diff:.1e}"}


def run_case(args: argparse.Namespace) -> dict[str, Any]:
    """Dispatch one ``--case`` in this (child) process."""
    name = args.case
    if name == "load":
        if not args.csv:
            raise SystemExit("--case load needs --csv PATH (write one with --generate PATH --rows N)")
        return case_load(args.csv, args.repeat)
    if name in ("resample_mean", "resample_interpolate"):
        return case_resample(name.split("_", 1)[1], args.rows or RESAMPLE_ROWS, args.repeat)
    if name == "align":
        return case_align(args.rows or ALIGN_ROWS, args.repeat)
    if name in ("windows_ref", "windows_large"):
        days, step, steps = WINDOW_CASES[name.split("_", 1)[1]]
        return case_windows(args.days or days, step, steps, args.repeat, name == "windows_ref" and not args.days)
    if name == "gates":
        return case_gates(args.rows or GATE_ROWS, args.repeat)
    if name in ("train_dense", "train_lstm"):
        return case_train_keras(name.split("_", 1)[1], args.repeat)
    if name == "train_linear":
        return case_train_linear(args.repeat)
    raise SystemExit(f"unknown case {name!r}")


# --------------------------------------------------------------------------------------------------------
# Parent side: run the children, print the table
# --------------------------------------------------------------------------------------------------------

# BLAS/OpenMP threads of the numpy, pandas, GX and scikit-learn cases: one, as in benchmarks/resample.py and
# align.py, so that both contenders get the same single core and a shared machine adds less noise (a multi-threaded
# LAPACK lstsq swings by 10x when other processes compete). Load keeps pyarrow's threads (Arrow reads
# OMP_NUM_THREADS) and the Keras cases keep TensorFlow's, the defaults a user gets.
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}

# case -> repeat (runs per contender; best shown)
MAIN_CASES: dict[str, int] = {
    "load": 6, "resample_mean": 6, "resample_interpolate": 4, "align": 6, "windows_ref": 20, "windows_large": 6,
    "gates": 6, "train_dense": 3, "train_lstm": 2, "train_linear": 6,
}


def checks(r: dict[str, Any]) -> list[tuple[str, bool | None]]:
    """The targets a result is held to: (label with the measured figure, met)."""
    ratio = r["zeitflow_s"] / r["reference_s"]
    rss = (r["peak_mib"] - r["baseline_mib"]) / r["frame_mib"]
    kind = r["kind"]
    out: list[tuple[str, bool | None]] = []
    if kind == "load":
        out.append((f"{r['rate'] / 1e6:.2f}M rows/s >= 2M", r["rate"] >= LOAD_ROWS_PER_S))
    elif kind in ("resample", "align"):
        limit = RESAMPLE_ROWS_PER_S if kind == "resample" else ALIGN_ROWS_PER_S
        out.append((f"{r['rate'] / 1e6:.1f}M rows/s >= 10M", r["rate"] >= limit))
    elif kind == "windows" and r.get("reference_case"):
        out.append((f"{r['zeitflow_s']:.4f} s < 0.2 s", r["zeitflow_s"] < WINDOWS_REF_SECONDS))
    elif kind == "gates":
        per_m = r["zeitflow_s"] / (r["rows"] / 1e6)
        out.append((f"{per_m:.3f} s/M rows <= 0.5", per_m <= GATE_S_PER_M_ROWS))
    limit = KERAS_RATIO if kind == "train_keras" else MAX_RATIO
    out.append((f"ratio {ratio:.2f} <= {limit:g}", ratio <= limit))
    if kind.startswith("train"):
        out.append(("RSS n/a (model runtime)", None))
    else:
        out.append((f"RSS {rss:.2f}x <= 3x", rss <= MAX_RSS_FRAMES))
    return out


def _met(items: list[tuple[str, bool | None]]) -> str:
    """``yes`` when no target of the row is missed, else ``MISS``."""
    missed = [label for label, ok in items if ok is False]
    return "yes" if not missed else "MISS"


def print_table(results: list[dict[str, Any]]) -> None:
    """The one table, then per row its reference and output check."""
    header = (f"{'stage':<24} {'data size':<46} {'zeitflow s':>10} {'ref. s':>9} {'ratio':>6} {'peak RSS MiB':>12} "
              f"{'base MiB':>8} {'frame MiB':>9} {'RSS/frame':>9} {'ref. peak':>9}  {'met':<4} targets")
    print(header)
    print("-" * len(header))
    for r in results:
        items = checks(r)
        rss = (r["peak_mib"] - r["baseline_mib"]) / r["frame_mib"]
        ref_peak = "-" if r.get("ref_peak_mib") is None else f"{r['ref_peak_mib']:.0f}"
        print(f"{r['stage']:<24} {r['size']:<46} {r['zeitflow_s']:>10.4f} {r['reference_s']:>9.4f} "
              f"{r['zeitflow_s'] / r['reference_s']:>6.2f} {r['peak_mib']:>12.0f} {r['baseline_mib']:>8.0f} "
              f"{r['frame_mib']:>9.1f} {rss:>9.2f} {ref_peak:>9}  {_met(items):<4} "
              + "; ".join(f"{label} {'ok' if ok else ('MISS' if ok is False else '')}".rstrip() for label, ok in items))
    print("\nreferences and output checks:")
    for r in results:
        print(f"  {r['stage']:<24} ref. = {r['reference']}; {r['check']}; "
              f"{r['rate']:,.0f} {r['rate_unit']}")


def print_scale(rows: list[tuple[str, int, dict[str, Any]]]) -> None:
    """Time per row at 1x, 10x and 100x."""
    print("\nscale: time per input row (per channel row for resample; per sample for windows)")
    header = (f"{'stage':<18} {'scale':>5} {'data size':<46} {'zeitflow s':>10} {'ns/row':>9} {'ref. s':>9} "
              f"{'ref. ns/row':>11} {'ratio':>6} {'RSS/frame':>9}  <=2x ref.")
    print(header)
    print("-" * len(header))
    for stage, scale, r in rows:
        n = r["rows"] * RESAMPLE_CHANNELS if r["kind"] == "resample" else r.get("samples", r["rows"])
        rss = (r["peak_mib"] - r["baseline_mib"]) / r["frame_mib"]
        print(f"{stage:<18} {str(scale) + 'x':>5} {r['size']:<46} {r['zeitflow_s']:>10.4f} "
              f"{r['zeitflow_s'] / n * 1e9:>9.1f} {r['reference_s']:>9.4f} {r['reference_s'] / n * 1e9:>11.1f} "
              f"{r['zeitflow_s'] / r['reference_s']:>6.2f} {rss:>9.2f}  "
              f"{'ok' if r['zeitflow_s'] <= MAX_RATIO * r['reference_s'] else 'MISS'}")


def _child(case: str, repeat: int, **extra: Any) -> dict[str, Any]:
    """One case in a fresh process; numpy/BLAS cases get one BLAS/OpenMP thread (see ``ONE_THREAD``)."""
    args = [str(HERE / "run_all.py"), "--case", case, "--json", "--repeat", str(repeat)]
    for key, value in extra.items():
        args += [f"--{key}", str(value)]
    print(f"  running {case} {extra or ''} ...", file=sys.stderr, flush=True)
    threads = {} if case == "load" or case in ("train_dense", "train_lstm") else ONE_THREAD
    return run_child(args, timeout=1800, env=threads)


def _generate(path: Path, rows: int) -> float:
    """Write the CSV in a child process (the parent stays small); seconds taken."""
    t0 = time.perf_counter()
    run_child([str(HERE / "run_all.py"), "--generate", str(path), "--rows", str(rows)], timeout=3600)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Parse the command line; run one case (child) or every case (parent)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help="run only this case in this process (child mode)")
    parser.add_argument("--json", action="store_true", help="child mode: print the result as one JSON line")
    parser.add_argument("--repeat", type=int, default=None, help="runs per contender (default per case)")
    parser.add_argument("--rows", type=int, default=None, help="child: rows of the input")
    parser.add_argument("--days", type=int, default=None, help="child: days of the windows input")
    parser.add_argument("--csv", help="child: the CSV of the load case")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--only", nargs="+", choices=sorted(MAIN_CASES), help="run only these table cases")
    parser.add_argument("--no-scale", action="store_true", help="skip the 1x/10x/100x scale table")
    parser.add_argument("--big", action="store_true", help="also load a ~1 GB CSV (slow): peak RSS vs frame")
    parser.add_argument("--overhead", action="store_true", help="also run benchmarks/overhead.py")
    args = parser.parse_args(argv)
    quiet_environment()
    if args.generate:
        print(json.dumps({"rows": generate_csv(args.generate, args.rows)}))
        return
    if args.case:
        args.repeat = args.repeat or MAIN_CASES.get(args.case, 3)
        result = run_case(args)
        print(json.dumps(result) if args.json else result)
        return

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"Zeitflow benchmarks: {cores} usable cores, load average {os.getloadavg()[0]:.2f}; "
          f"python {sys.version.split()[0]}", flush=True)
    started = time.perf_counter()
    cases = args.only or list(MAIN_CASES)
    with tempfile.TemporaryDirectory(prefix="zeitflow-bench-") as tmp:
        results: list[dict[str, Any]] = []
        csv = Path(tmp) / "logger.csv"
        if "load" in cases:
            seconds = _generate(csv, LOAD_ROWS)
            print(f"  generated {csv.stat().st_size / 1e6:.0f} MB CSV in {seconds:.1f} s", file=sys.stderr)
        for case in cases:
            extra = {"csv": csv} if case == "load" else {}
            results.append(_child(case, args.repeat or MAIN_CASES[case], **extra))
        csv.unlink(missing_ok=True)
        print()
        print_table(results)

        if not args.no_scale:
            by_case = {r_case: r for r_case, r in zip(cases, results, strict=True)}
            scale_rows: list[tuple[str, int, dict[str, Any]]] = []
            for scale in SCALES:
                rows = RESAMPLE_SCALE_ROWS * scale
                known = by_case.get("resample_mean")
                r = known if known is not None and rows == RESAMPLE_ROWS else _child(
                    "resample_mean", args.repeat or 6, rows=rows)
                scale_rows.append(("resample mean", scale, r))
            for scale in SCALES:
                days = WINDOW_CASES["ref"][0] * scale
                known = by_case.get("windows_ref")
                r = known if known is not None and scale == 1 else _child("windows_ref", args.repeat or 6, days=days)
                scale_rows.append(("windows", scale, r))
            print_scale(scale_rows)

        if args.big:
            big = Path(tmp) / "big.csv"
            rows = BIG_CSV_BYTES // CSV_ROW_BYTES
            seconds = _generate(big, rows)
            print(f"\n--big: generated {big.stat().st_size / 1e9:.2f} GB CSV ({rows:,} rows) in {seconds:.0f} s",
                  flush=True)
            r = _child("load", args.repeat or 2, csv=big)
            big.unlink(missing_ok=True)
            print_table([r])
    print(f"\nbenchmarks took {time.perf_counter() - started:.0f} s", flush=True)
    if args.overhead:
        print(flush=True)
        subprocess.run([sys.executable, str(HERE / "overhead.py")], check=True)


if __name__ == "__main__":
    main()
