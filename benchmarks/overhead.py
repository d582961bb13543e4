"""Orchestration overhead: ``zeitflow run`` on the TMY3 example against the same stage functions called directly.

Four fresh processes, timed by this (stdlib-only) parent on one wall clock (``time.time``):

1. ``zeitflow run examples/tmy3_greensboro.yaml --json``: the CLI with its embedded defaults (ephemeral
   Prefect API, SQLite metadata), a fresh temporary storage root (``ZEITFLOW_STORAGE_ROOT``) and
   ``PREFECT_HOME``, analytics off (every process here gets ``OPENBLAS_NUM_THREADS=1``, see
   ``ONE_BLAS_THREAD``). Afterwards its Prefect database (``$PREFECT_HOME/prefect.db``) is read with
   ``sqlite3``: the start and end time of the ``pipeline`` flow run and of every task run, which is how the
   run's time is split per task (Prefect's own records, not guesses).
2. ``overhead.py --direct``: the same config through the pure functions in one process: ``read_raw``,
   ``build_windows`` + ``split`` + ``fit_scalers`` + ``violin_plots``, ``fit_and_predict`` per model (one after
   the other, in this process), then the evaluation (``evaluate``, the result plots, ``render_html``). After that
   total, the same process times, on the same frames and arrays, what the pipeline adds: each quality gate
   (``validate_frame_quality``, first call with the GX import and warm), and the I/O (sha256 of the source,
   canonical Parquet write + checksummed read of each stage output, the dataset's npz/sidecar/scalers/violins,
   the run results with ``write_run_results``), all into a temporary folder, and the start of one isolated Keras
   fit (a spawned process that imports Keras and TensorFlow, as ``tasks.isolation`` starts one per Keras model).
3. An import probe: a process that only imports ``zeitflow.cli`` and ``flows.pipeline`` (what ``zeitflow
   run`` imports before the flow starts).
4. A Prefect probe, run twice on one ``PREFECT_HOME`` (fresh, then existing): a trivial flow (the first call
   starts the ephemeral API), then flows of 0 and 20 trivial tasks, best of 3 (one flow run, one task run).

The report: both walls and their difference, then where the difference goes (startup, per stage, gates, I/O,
metadata, training fan-out, flow code between tasks, shutdown). Usage: ``python benchmarks/overhead.py [--json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import QUIET_ENV, quiet_environment

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CONFIG = REPO / "examples" / "tmy3_greensboro.yaml"
ZEITFLOW = Path(sys.executable).parent / "zeitflow"
PROBE_TASKS = 20
SPAWN_KEY = "spawn + Keras import"
# numpy's BLAS (OpenBLAS) with one thread in every process of the comparison: with its default threads the KDE
# of the dataset's violin plots (tiny matrix products) took 0.7-5 s from run to run on a busy 2-core machine,
# which drowned the differences looked for. TensorFlow's own thread pools are not affected.
ONE_BLAS_THREAD = {"OPENBLAS_NUM_THREADS": "1"}

# task function (task_key without its hash) -> category of the breakdown
TASK_CATEGORY = {
    "open_run": "metadata", "close_run": "metadata", "register_output": "metadata", "register_dataset": "metadata",
    "source_checksums": "load", "load_source": "load", "quality_gate": "gates", "build_dataset": "dataset",
    "fit_models": "training", "evaluate_run": "evaluation",
}


# --------------------------------------------------------------------------------------------------------
# Child: the direct run
# --------------------------------------------------------------------------------------------------------


class _Clock:
    """Named wall-time sections of one process."""

    def __init__(self) -> None:
        """No sections yet."""
        self.seconds: dict[str, float] = {}

    def time(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``, add its wall time to ``name`` and return its result."""
        t0 = time.perf_counter()
        out = fn()
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
        return out


def _evaluation(config: Any, windowed: Any, parts: Any, scalers: Any, frame: Any,
                outcomes: dict[str, Any], kinds: dict[str, str]) -> dict[str, bytes]:
    """The evaluation task's computation on in-memory results: metric tables of the models and the missing
    baselines, test-sample / loss / metric-vs-horizon plots and the HTML report. Returns the result files."""
    import numpy as np

    from zeitflow.evaluation import evaluate
    from zeitflow.evaluation.plots import loss_plot, metric_vs_horizon_plot, test_samples_plot
    from zeitflow.evaluation.report import render_html
    from zeitflow.models.baselines import missing_baselines
    from zeitflow.options.models import KERAS_KINDS

    options = config.training.evaluation
    report_options = config.training.report
    test = parts.test
    predictions = {name: outcome.predictions["test"] for name, outcome in outcomes.items()}
    baselines, unavailable = missing_baselines(
        options.baselines, set(predictions), X_test=test.X, n_out=test.Y.shape[1],
        reference_times=test.reference_times, input_features=windowed.input_features,
        output_features=windowed.output_features,
        output_offsets_minutes={k: [float(v) for v in vs] for k, vs in windowed.output_offsets_minutes.items()},
        output_series={c: frame[c] for c in windowed.output_features}, season_hours=options.season_hours)
    predictions.update(baselines)
    extra = list(baselines)
    tables = evaluate(test.Y, predictions, windowed, {c: frame[c] for c in windowed.output_features}, options,
                      train_reference_times=parts.train.reference_times, unavailable=unavailable)
    files: dict[str, bytes] = {}
    sections = []
    for name, outcome in outcomes.items():
        own = {"test_samples": test_samples_plot(
            name, reference_times=test.reference_times, X=test.X, Y_true=test.Y, Y_pred=predictions[name],
            input_features=windowed.input_features, output_features=windowed.output_features,
            input_offsets_minutes=windowed.input_offsets_minutes,
            output_offsets_minutes=windowed.output_offsets_minutes, options=report_options, scalers=scalers)}
        if kinds[name] in KERAS_KINDS:
            own["loss"] = loss_plot(name, outcome.history)
        for channel in windowed.output_features:
            own[f"metric_vs_horizon_{channel}"] = metric_vs_horizon_plot(
                tables.per_step[tables.per_step["model"].isin([name, *extra])], channel)
        files.update({f"plots/{name}_{key}.png": png for key, png in own.items()})
        rows = tables.overall[tables.overall["model"].isin([name, *extra])].replace({np.nan: None})
        sections.append({"name": name, "kind": kinds[name], "status": "completed",
                         "overall_rows": rows.to_dict("records"), "plots": own, "reasons": [], "error": None})
    for channel in windowed.output_features:
        files[f"plots/metric_vs_horizon_{channel}.png"] = metric_vs_horizon_plot(tables.per_step, channel)
    files.update({f"metrics/{name}": data for name, data in tables.to_parquet_bytes().items()})
    files["metrics/metrics.json"] = json.dumps(tables.to_json(), default=str, allow_nan=True).encode()
    files["report.html"] = render_html(
        run_id="direct", flow_run_id=None, created_at=None, code_version=None,
        config=config.model_dump(mode="json"), stage_counts=[], dataset_summary={"name": config.dataset.name},
        violins={}, models=sections, omitted_levels=tables.omitted_levels).encode("utf-8")
    return files


def direct(config_path: Path) -> dict[str, Any]:
    """The TMY3 pipeline through the pure stage functions in this process, then the gates and I/O it skips."""
    started_at = time.time()
    import hashlib

    # Modules the pipeline process imports before its flow starts (tasks.* import them at module level), so
    # that each direct stage section times its work, not first imports; TensorFlow stays lazy in both (the
    # pipeline imports it in each Keras fit's spawned process, the direct run in its first Keras fit).
    import zeitflow.evaluation.plots  # noqa: F401
    import zeitflow.evaluation.report  # noqa: F401
    import zeitflow.models.sklearn  # noqa: F401
    import zeitflow.stages.features  # noqa: F401
    from zeitflow.config import load_config
    from zeitflow.io.artifacts import ArtifactStore, read_frame, write_frame
    from zeitflow.models.training import SplitArrays, TrainingData, fit_and_predict, mae_per_channel
    from zeitflow.quality import validate_frame_quality
    from zeitflow.stages.dataset_plots import violin_plots
    from zeitflow.stages.load import read_raw
    from zeitflow.stages.scaling import fit_scalers, split
    from zeitflow.stages.windows import build_windows

    imported_at = time.time()
    clock = _Clock()
    config = clock.time("config", lambda: load_config(config_path, []))
    source = config.sources[0]
    spec = config.dataset
    path = source.paths()[0]

    # ---- the stages, as the pipeline runs them (no gates, no storage, no metadata) ----
    frame = clock.time("load", lambda: read_raw(path, source.load).frame)

    def dataset_stage() -> tuple[Any, Any, Any, dict[str, bytes]]:
        """Windows, split, scalers and violins, as the dataset task computes them."""
        windowed = build_windows({c: frame[c] for c in spec.input_channels},
                                 {c: frame[c] for c in spec.output_channels}, spec.windows)
        parts = split(windowed, spec.split)
        scalers = fit_scalers(parts, spec.scaling, spec.windows.time_features)
        return windowed, parts, scalers, violin_plots(windowed)

    windowed, parts, scalers, violins = clock.time("dataset", dataset_stage)
    data = TrainingData(
        **{name: SplitArrays(part.X, part.Y, part.reference_times)
           for name, part in (("train", parts.train), ("val", parts.val), ("test", parts.test))},
        scalers_json=scalers.to_json(), input_features=list(windowed.input_features),
        output_features=list(windowed.output_features),
        output_offsets_minutes={k: [float(v) for v in vs] for k, vs in windowed.output_offsets_minutes.items()},
        output_series={c: frame[c] for c in windowed.output_features},
    )
    outcomes: dict[str, Any] = {}
    kinds: dict[str, str] = {}
    fits: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="zeitflow-direct-") as tmp:
        for model in config.training.models:
            t0 = time.perf_counter()
            outcomes[model.model_name] = clock.time("training", lambda m=model: fit_and_predict(
                m, data, Path(tmp) / m.model_name))
            fits[model.model_name] = time.perf_counter() - t0
            kinds[model.model_name] = model.kind
        results = clock.time("evaluation", lambda: _evaluation(config, windowed, parts, scalers, frame, outcomes,
                                                               kinds))
        stages_done_at = time.time()

        # ---- what the pipeline adds, timed on the same objects ----
        extra = _Clock()
        channels = list(frame.columns)
        raw_params = {"channels": channels, "columns": ["utc", *channels], "value_min": source.gate.value_min,
                      "value_max": source.gate.value_max}
        view = _samples_view(windowed, parts)
        window_params = {"channels": list(view.columns), "window_columns": [c for c in view.columns if c != "split"],
                         "n_samples": windowed.n_samples}
        calendar = list(windowed.calendar_features)
        periodic = [f"input:{f}:{s}" for f in calendar if f != "H" for s in ("min", "max")]
        holiday = [f"input:H:{s}" for s in ("min", "max")] if "H" in calendar else []
        feature_params = {"periodic_columns": periodic, "holiday_columns": holiday,
                          "calendar_columns": periodic + holiday}
        gates = [("raw_loaded", frame, raw_params), ("windows", view, window_params)]
        if calendar:
            gates.append(("features", view, feature_params))
        gate_results = {}
        for suite, gated, params in gates:  # in pipeline order: the first call imports GX
            result = extra.time(f"gate {suite}", lambda s=suite, g=gated, p=params: validate_frame_quality(g, s, p))
            gate_results[suite] = result.success
        for suite, gated, params in gates:
            extra.time(f"gate {suite} (warm)", lambda s=suite, g=gated, p=params: validate_frame_quality(g, s, p))

        root = Path(tmp) / "store"
        store = ArtifactStore(f"file://{root}")

        def sha256_source() -> str:
            """The source checksum, as the load task streams it."""
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                while block := handle.read(8 * 1024 * 1024):
                    digest.update(block)
            return digest.hexdigest()

        def frame_io(name: str, out: Any) -> None:
            """Canonical Parquet write, then the gate's checksummed read-back."""
            uri = f"file://{root}/{name}.parquet"
            ref = write_frame(out, uri, stage=name, parameters_hash="0" * 64)
            read_frame(uri, expected_sha256=ref.sha256)  # the gate task reads the written object back

        def dataset_io() -> None:
            """The dataset's side objects written, and the npz read back by each reader."""
            npz, sidecar = windowed.to_bytes()
            info = store.put_bytes(f"file://{root}/ds.npz", npz)
            store.put_bytes(f"file://{root}/ds.json", sidecar)
            store.put_bytes(f"file://{root}/ds.scalers.json", scalers.to_json().encode())
            for key, png in violins.items():
                store.put_bytes(f"file://{root}/ds.violin-{abs(hash(key))}.png", png)
            for _ in config.training.models:  # every training task and the evaluation read the dataset back
                store.get_bytes(f"file://{root}/ds.npz", expected_sha256=info.sha256)

        def results_io() -> None:
            """The run's result files and manifest."""
            from zeitflow.evaluation.report import write_run_results

            write_run_results(f"file://{root}/tmy3", "direct", files=results)

        extra.time("io source sha256", sha256_source)
        extra.time("io load frame parquet", lambda: frame_io("load", frame))
        extra.time("io dataset view parquet", lambda: frame_io("view", view))
        extra.time("io dataset npz/json/violins", dataset_io)
        extra.time("io run results", results_io)
        extra.time(SPAWN_KEY, _spawn_keras_import)
        extra_done_at = time.time()
    return {"started_at": started_at, "imported_at": imported_at, "stages_done_at": stages_done_at,
            "extra_done_at": extra_done_at,
            "stages": clock.seconds, "fits": fits, "extra": extra.seconds, "gates_pass": gate_results,
            "rows": len(frame), "samples": windowed.n_samples, "x_shape": list(windowed.X.shape),
            "val_mae": {n: mae_per_channel(parts.val.Y, o.predictions["val"], data.output_features)
                        for n, o in outcomes.items()}}


def _import_keras() -> None:
    """Import what a Keras fit imports (the body of the spawned process of ``_spawn_keras_import``)."""
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    import zeitflow.models.keras  # noqa: F401


def _spawn_keras_import() -> None:
    """Start a spawned process that imports Keras and TensorFlow, as ``tasks.isolation`` starts each Keras fit."""
    import multiprocessing

    process = multiprocessing.get_context("spawn").Process(target=_import_keras)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"the spawned import probe exited with {process.exitcode}")


def _samples_view(windowed: Any, parts: Any) -> Any:
    """The dataset task's gated tabular view: per sample its split code and per feature its window min and max."""
    import numpy as np
    import pandas as pd

    codes = np.empty(windowed.n_samples, dtype=np.float64)
    for code, part in enumerate((parts.train, parts.val, parts.test)):
        codes[part.indices] = code
    columns: dict[str, Any] = {"split": codes}
    for role, names, array in (("input", windowed.input_features, windowed.X),
                               ("output", windowed.output_features, windowed.Y)):
        for j, name in enumerate(names):
            columns[f"{role}:{name}:min"] = array[:, :, j].min(axis=1)
            columns[f"{role}:{name}:max"] = array[:, :, j].max(axis=1)
    return pd.DataFrame(columns, index=pd.DatetimeIndex(windowed.reference_times, name="utc"))


# --------------------------------------------------------------------------------------------------------
# Child: probes
# --------------------------------------------------------------------------------------------------------


def import_probe() -> dict[str, Any]:
    """What ``zeitflow run`` imports before its flow starts."""
    t0 = time.perf_counter()
    import flows.pipeline  # noqa: F401
    import zeitflow.cli  # noqa: F401

    return {"imports_s": time.perf_counter() - t0, "done_at": time.time()}


def prefect_probe() -> dict[str, Any]:
    """A trivial flow (the first call starts the ephemeral API), then flows of 0 and ``PROBE_TASKS`` trivial
    tasks, best of 3 each: the cost of one flow run and of one task run."""
    t0 = time.perf_counter()
    from prefect import flow, task

    imported = time.perf_counter() - t0

    @task
    def noop(i: int) -> int:
        """A task that does nothing."""
        return i

    @flow
    def many(n: int) -> int:
        """A flow of ``n`` trivial task runs."""
        return sum(noop(i) for i in range(n))

    t1 = time.perf_counter()
    many(0)
    first = time.perf_counter() - t1

    def best(n: int) -> float:
        """Best of 3 calls of ``many(n)``."""
        times = []
        for _ in range(3):
            t = time.perf_counter()
            many(n)
            times.append(time.perf_counter() - t)
        return min(times)

    empty = best(0)
    with_tasks = best(PROBE_TASKS)
    return {"prefect_import_s": imported, "first_flow_s": first, "flow_s": empty,
            "per_task_s": (with_tasks - empty) / PROBE_TASKS}


# --------------------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------------------


def _env(tmp: Path) -> dict[str, str]:
    """A child's environment: quiet, a fresh existing ``PREFECT_HOME`` and storage root under ``tmp``, no server
    or metadata URL from the caller (so the embedded defaults apply)."""
    (tmp / "prefect").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **QUIET_ENV, "PREFECT_HOME": str(tmp / "prefect"),
           "ZEITFLOW_STORAGE_ROOT": str(tmp / "storage"), "PYTHONPATH": str(REPO),
           "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90", **ONE_BLAS_THREAD}
    for key in ("PREFECT_API_URL", "ZEITFLOW_METADATA_URL", "PREFECT_PROFILES_PATH"):
        env.pop(key, None)
    return env


def _timed(command: list[str], env: dict[str, str], attempts: int = 2) -> tuple[float, float, str, str]:
    """(start, end) wall clock, stdout and ``PREFECT_HOME`` of a process that must succeed. A failed attempt is
    repeated once with a fresh ``PREFECT_HOME`` (on a busy machine the ephemeral API can miss its startup timeout);
    the retry is reported."""
    for attempt in range(1, attempts + 1):
        start = time.time()
        out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        end = time.time()
        if out.returncode == 0:
            return start, end, out.stdout, env["PREFECT_HOME"]
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-30:])
        if attempt == attempts:
            raise RuntimeError(f"{' '.join(command)} exited with {out.returncode}:\n{tail}")
        print(f"  attempt {attempt} failed ({tail.splitlines()[-1] if tail else out.returncode}); again",
              file=sys.stderr, flush=True)
        env = {**env, "PREFECT_HOME": env["PREFECT_HOME"] + f"-retry{attempt}"}
        Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    raise AssertionError("unreachable")


def _last_json(stdout: str) -> dict[str, Any]:
    """The last JSON object a child printed."""
    return json.loads([line for line in stdout.splitlines() if line.startswith("{")][-1])


def _ts(text: str | None) -> float | None:
    """A Prefect SQLite timestamp (UTC, naive text) as a POSIX time."""
    if not text:
        return None
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def prefect_records(db: Path) -> dict[str, Any]:
    """The flow runs and task runs of the ``zeitflow run`` (Prefect's own start and end times)."""
    with sqlite3.connect(db) as con:
        flows = [{"id": r[0], "name": r[1], "start": _ts(r[2]), "end": _ts(r[3]), "parent_task": r[4]}
                 for r in con.execute("SELECT id, name, start_time, end_time, parent_task_run_id FROM flow_run")]
        tasks = [{"id": r[0], "name": r[1], "key": r[2].rsplit("-", 1)[0], "start": _ts(r[3]), "end": _ts(r[4]),
                  "flow": r[5]}
                 for r in con.execute("SELECT id, name, task_key, start_time, end_time, flow_run_id FROM task_run")]
    return {"flows": flows, "tasks": tasks}


def measure() -> dict[str, Any]:
    """Run the four processes and collect their figures."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="zeitflow-overhead-") as tmp:
        root = Path(tmp)
        print("  import probe ...", file=sys.stderr, flush=True)
        start, end, stdout, _ = _timed([sys.executable, __file__, "--imports"], _env(root / "imports"))
        out["imports"] = {**_last_json(stdout), "wall_s": end - start, "start": start}
        print("  prefect probe (fresh PREFECT_HOME, then the same one again) ...", file=sys.stderr, flush=True)
        _, _, stdout, home = _timed([sys.executable, __file__, "--prefect-probe"], _env(root / "probe"))
        out["probe"] = _last_json(stdout)
        _, _, stdout, _ = _timed([sys.executable, __file__, "--prefect-probe"], {**_env(root / "probe"),
                                                                                "PREFECT_HOME": home})
        out["probe_existing_home"] = _last_json(stdout)
        print("  zeitflow run ...", file=sys.stderr, flush=True)
        run_tmp = root / "run"
        start, end, stdout, home = _timed([str(ZEITFLOW), "run", str(CONFIG), "--json"], _env(run_tmp))
        summary = _last_json(stdout)
        out["run"] = {"start": start, "end": end, "wall_s": end - start, "status": summary.get("status"),
                      "models": {m["name"]: m.get("val_mae") for m in summary.get("models", [])},
                      **prefect_records(Path(home) / "prefect.db")}
        print("  direct run ...", file=sys.stderr, flush=True)
        start, end, stdout, _ = _timed([sys.executable, __file__, "--direct"], _env(root / "direct"))
        out["direct"] = {**_last_json(stdout), "start": start, "end": end}
    return out


def direct_wall(direct_run: dict[str, Any]) -> float:
    """The direct process's wall time without the gate and I/O timings that follow its stages."""
    return (direct_run["end"] - direct_run["start"]) - (direct_run["extra_done_at"] - direct_run["stages_done_at"])


def breakdown(m: dict[str, Any]) -> list[tuple[str, float, str]]:
    """(component, seconds, how it was measured) rows that add up to the difference of the two walls:
    run wall = startup + flow run + shutdown, flow run = its top-level task runs + the time between them;
    direct wall = startup + stage sections + rest (exit). Each row pairs a part of the run with its direct twin."""
    run, direct_run, probe = m["run"], m["direct"], m["probe"]
    flow = next(f for f in run["flows"] if f["name"] and f["parent_task"] is None)
    top = [t for t in run["tasks"] if t["flow"] == flow["id"] and t["start"] and t["end"]]
    by_cat: dict[str, float] = {}
    counts: dict[str, int] = {}
    for t in top:
        cat = TASK_CATEGORY.get(t["key"], "other")
        by_cat[cat] = by_cat.get(cat, 0.0) + t["end"] - t["start"]
        counts[cat] = counts.get(cat, 0) + 1
    stages, extra = direct_run["stages"], direct_run["extra"]
    startup_run = flow["start"] - run["start"]
    startup_direct = direct_run["imported_at"] - direct_run["start"]
    rest_direct = direct_wall(direct_run) - startup_direct - sum(stages.values())
    imports = m["imports"]["wall_s"]
    rows: list[tuple[str, float, str]] = [
        ("startup: interpreter + imports, beyond the direct run's", imports - startup_direct,
         f"import probe (zeitflow.cli + flows.pipeline) {imports:.2f} s wall vs direct process start + imports "
         f"{startup_direct:.2f} s"),
        ("startup: Prefect ephemeral API start, config, flow run", startup_run - imports,
         f"flow start - process start {startup_run:.2f} s, minus the import probe; Prefect probe: first trivial "
         f"flow {probe['first_flow_s']:.2f} s with a fresh PREFECT_HOME, "
         f"{m['probe_existing_home']['first_flow_s']:.2f} s with an existing one; a later flow "
         f"{probe['flow_s']:.2f} s"),
    ]
    load_io = extra.get("io source sha256", 0.0) + extra.get("io load frame parquet", 0.0)
    rows.append((f"load: {counts.get('load', 0)} task runs - direct read_raw", by_cat.get("load", 0.0) - stages["load"],
                 f"tasks {by_cat.get('load', 0.0):.2f} s vs read_raw {stages['load']:.2f} s; I/O measured directly: "
                 f"source sha256 {extra.get('io source sha256', 0.0):.3f} s + Parquet write/read "
                 f"{extra.get('io load frame parquet', 0.0):.3f} s = {load_io:.3f} s"))
    gate_cold = {k.removeprefix("gate "): v for k, v in extra.items() if k.startswith("gate ") and "warm" not in k}
    gate_warm = sum(v for k, v in extra.items() if k.startswith("gate ") and "warm" in k)
    rows.append((f"gates: {counts.get('gates', 0)} quality-gate task runs (GX)", by_cat.get("gates", 0.0),
                 "direct validate_frame_quality in pipeline order: " + ", ".join(
                     f"{k} {v:.2f} s" for k, v in gate_cold.items()) + f" (the first imports GX); "
                 f"all {len(gate_cold)} warm: {gate_warm:.2f} s; plus each task reads its Parquet object back"))
    dataset_io = extra.get("io dataset view parquet", 0.0) + extra.get("io dataset npz/json/violins", 0.0)
    rows.append(("dataset: task run - direct windows/split/scalers/violins",
                 by_cat.get("dataset", 0.0) - stages["dataset"],
                 f"task {by_cat.get('dataset', 0.0):.2f} s vs direct {stages['dataset']:.2f} s; I/O measured "
                 f"directly (npz, sidecar, scalers, violins, view Parquet, npz read per reader) {dataset_io:.3f} s"))
    fits = direct_run["fits"]
    rows.append(("training: fit-models subflow - direct fits in sequence",
                 by_cat.get("training", 0.0) - stages["training"],
                 f"subflow {by_cat.get('training', 0.0):.2f} s ({len(fits)} models at once, Keras in spawned "
                 "processes) vs direct " + ", ".join(f"{k} {v:.1f}" for k, v in fits.items())
                 + f" = {stages['training']:.2f} s; a spawned process importing Keras/TensorFlow takes "
                 f"{extra.get(SPAWN_KEY, 0.0):.2f} s (the start of each isolated Keras fit)"))
    rows.append(("evaluation: task run - direct evaluation", by_cat.get("evaluation", 0.0) - stages["evaluation"],
                 f"task {by_cat.get('evaluation', 0.0):.2f} s vs direct {stages['evaluation']:.2f} s; run-result "
                 f"writes measured directly {extra.get('io run results', 0.0):.3f} s"))
    rows.append((f"metadata: {counts.get('metadata', 0)} task runs (open/register/close)",
                 by_cat.get("metadata", 0.0),
                 f"Prefect probe: {probe['per_task_s'] * 1000:+.1f} ms per trivial task run (below the noise)"))
    if by_cat.get("other"):
        others = sorted({t["key"] for t in top if t["key"] not in TASK_CATEGORY})
        rows.append((f"other task runs ({', '.join(others)})", by_cat["other"], "no direct counterpart"))
    in_tasks = sum(by_cat.values())
    rows.append(("flow code between task runs (artifacts, transactions, submission)",
                 (flow["end"] - flow["start"]) - in_tasks,
                 f"flow run {flow['end'] - flow['start']:.2f} s - {len(top)} top-level task runs {in_tasks:.2f} s"))
    rows.append(("shutdown: result, summary, ephemeral API stop, exit", run["end"] - flow["end"] - rest_direct,
                 f"process end - flow end {run['end'] - flow['end']:.2f} s vs the direct run's rest (data "
                 f"preparation between stages, exit) {rest_direct:.2f} s"))
    rows.append(("direct run: load_config (done before the flow in the run)", -stages.get("config", 0.0),
                 "timed inside the direct run"))
    return rows


def buckets(m: dict[str, Any], rows: list[tuple[str, float, str]], difference: float) -> list[tuple[str, float]]:
    """The difference grouped by kind: Prefect start, imports, gates, I/O (timed directly), metadata, the training
    fan-out, and the rest (task and flow machinery: task wrappers, artifacts, transactions, state updates,
    shutdown), which is the difference minus the others."""
    by_row = {name.split(":")[0]: seconds for name, seconds, _ in rows}
    extra = m["direct"]["extra"]
    io = sum(v for k, v in extra.items() if k.startswith("io "))
    kinds = [
        ("Prefect start (ephemeral API, its database, flow-run creation)",
         next(sec for name, sec, _ in rows if name.startswith("startup: Prefect"))),
        ("imports (zeitflow.cli, flows, Prefect) beyond the direct run's",
         next(sec for name, sec, _ in rows if name.startswith("startup: interpreter"))),
        ("gates (GX validation, including the GX import)", by_row["gates"]),
        ("I/O (sha256, Parquet write/read, npz, results; timed directly)", io),
        ("metadata (open/register/close task runs)", by_row["metadata"]),
        ("training fan-out (spawned processes, fits at once)", by_row["training"]),
    ]
    kinds.append(("task and flow machinery (wrappers, artifacts, transactions, shutdown)",
                  difference - sum(sec for _, sec in kinds)))
    return kinds


def report(m: dict[str, Any]) -> None:
    """Print both walls, the difference and where it goes."""
    run, direct_run = m["run"], m["direct"]
    wall = direct_wall(direct_run)
    print("Orchestration overhead on examples/tmy3_greensboro.yaml "
          f"({direct_run['rows']:,} rows, {direct_run['samples']:,} samples, {len(direct_run['fits'])} models)")
    print(f"  zeitflow run (subprocess wall)            {run['wall_s']:8.2f} s   status {run['status']}")
    print(f"  direct stage functions (subprocess wall)  {wall:8.2f} s   (without the gate and I/O timings after it)")
    difference = run["wall_s"] - wall
    print(f"  difference                                {difference:8.2f} s   ({run['wall_s'] / wall:.2f}x)")
    rows = breakdown(m)
    print("\nwhere the difference goes (measured; the rows add up to the difference)")
    width = max(len(r[0]) for r in rows)
    for name, seconds, how in rows:
        print(f"  {name:<{width}} {seconds:8.2f} s   {how}")
    total = sum(r[1] for r in rows)
    print(f"  {'sum':<{width}} {total:8.2f} s   (difference {difference:.2f} s)")
    print("\nthe same difference by kind")
    kinds = buckets(m, rows, difference)
    width = max(len(name) for name, _ in kinds)
    for name, seconds in kinds:
        print(f"  {name:<{width}} {seconds:8.2f} s  {seconds / difference * 100:5.1f} %")
    print("\ndirect stage sections (s): " + ", ".join(f"{k} {v:.2f}" for k, v in direct_run["stages"].items()))
    print("direct gate and I/O timings (s): " + ", ".join(f"{k} {v:.3f}" for k, v in direct_run["extra"].items()))
    flow = next(f for f in run["flows"] if f["name"] and f["parent_task"] is None)
    tasks = sorted((t for t in run["tasks"] if t["start"] and t["end"]), key=lambda t: t["start"])
    print("task runs of the zeitflow run (Prefect DB, s): " + ", ".join(
        f"{t['name']} {t['end'] - t['start']:.2f}" + ("" if t["flow"] == flow["id"] else " (subflow)") for t in tasks))
    for label, probe in (("fresh", m["probe"]), ("existing", m["probe_existing_home"])):
        print(f"Prefect probe, {label} PREFECT_HOME: import {probe['prefect_import_s']:.2f} s, first flow (API start) "
              f"{probe['first_flow_s']:.2f} s, later flow {probe['flow_s']:.2f} s, per task run "
              f"{probe['per_task_s'] * 1000:.1f} ms")
    print("validation MAE, zeitflow run: " + ", ".join(f"{k} {v}" for k, v in run["models"].items()))
    print("validation MAE, direct:       " + ", ".join(f"{k} {v}" for k, v in direct_run["val_mae"].items()))


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the parent or one child."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="also print the raw measurements as one JSON line")
    parser.add_argument("--direct", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--imports", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--prefect-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quiet_environment()
    if args.direct:
        print(json.dumps(direct(CONFIG)))
        return
    if args.imports:
        print(json.dumps(import_probe()))
        return
    if args.prefect_probe:
        print(json.dumps(prefect_probe()))
        return
    measured = measure()
    report(measured)
    if args.json:
        print(json.dumps(measured))


if __name__ == "__main__":
    main()
