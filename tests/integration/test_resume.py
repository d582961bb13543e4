"""Resume after a crash (issue 9 item 2): the flow process of ``zeitflow run`` is killed with SIGKILL while a
Keras model trains, then the same config is run again against the same real Prefect server, storage and
metadata store.

What must hold: the re-run completes; every stage task that finished before the kill (load, the windowed
dataset, their quality gates, the models that were already fitted) is served from Prefect's cache, i.e. its
task run is in a *Cached* state on the server, and only the killed model is fitted again; and every output
(stage objects, reports, model files, predictions, evaluation tables) is byte-identical to the same outputs of
an uninterrupted run in another storage root. JSON reports (stage reports, ``history.json``, ``result.json``)
are compared without their wall-clock fields (stage durations, seconds per epoch, fit seconds), which measure
the machine, not the data; every other byte must match.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.prefect_server import prefect_server

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "examples" / "tmy3_greensboro.yaml"
#: linear and persistence fit in well under a second; the LSTM (spawned process, TensorFlow import, 6 epochs
#: without early stopping) takes several seconds, long enough to be killed in the middle.
MODELS = ('training={"models": [{"kind": "linear"}, {"kind": "persistence"}, '
          '{"kind": "lstm", "layers": 1, "units": 16, "epochs": 6, "patience": 6}]}')
RUN_TIMEOUT_S = 600
#: Files of ``runs/<run id>/`` that describe the run rather than its results (ids, times, the storage root).
RUN_RECORDS = {"report.html", "manifest.json", "config.json", "dataset/summary.json"}
KILL_AFTER_S = 2.0
#: Fields of the JSON reports (stage reports, history.json, result.json) that are wall-clock measurements.
TIMING_FIELDS = {"seconds", "fit_seconds", "duration_seconds"}


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prefect server of this module (its own SQLite database), shared by every run of the test."""
    with prefect_server(tmp_path_factory.mktemp("prefect-resume")) as api:
        yield api


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _env(api: str, root: Path, home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home),
            "ZEITFLOW_STORAGE_ROOT": f"file://{root}", "ZEITFLOW_METADATA_URL": f"sqlite:///{root}/zeitflow.db"}


def _command() -> list[str]:
    return [str(Path(sys.executable).parent / "zeitflow"), "run", str(CONFIG), "--set", MODELS, "--json"]


def _run(env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(_command(), env=env, cwd=REPO, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _task_runs(api: str, flow_run_ids: list[str]) -> list[dict[str, Any]]:
    return _post(api, "/task_runs/filter", {"flow_runs": {"id": {"any_": flow_run_ids}}, "limit": 200})


def _flow_runs_since(api: str, since: str) -> list[dict[str, Any]]:
    return _post(api, "/flow_runs/filter", {"flow_runs": {"start_time": {"after_": since}}, "limit": 50})


def _kill_during_training(api: str, env: dict[str, str], work: Path) -> None:
    """Start the run, wait until the LSTM's fit task is running on the server (and the two fast models are
    stored), let it train, SIGKILL the whole process group (the flow process and its spawned training
    process)."""
    log = open(work / "killed.log", "w")  # noqa: SIM115 - closed below
    started = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 1))
    proc = subprocess.Popen(_command(), env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while True:
            assert proc.poll() is None, f"the run ended before training: {(work / 'killed.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "the LSTM fit never started"
            flows = [f["id"] for f in _flow_runs_since(api, started)]
            states = {t["name"]: t["state_type"] for t in _task_runs(api, flows)} if flows else {}
            if states.get("fit-lstm") == "RUNNING" and all(
                    states.get(f"train-{name}") == "COMPLETED" for name in ("linear", "persistence")):
                break
            time.sleep(0.2)
        time.sleep(KILL_AFTER_S)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL


def _without_timing(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_timing(v) for k, v in value.items() if k not in TIMING_FIELDS}
    if isinstance(value, list):
        return [_without_timing(v) for v in value]
    return value


def _fingerprints(root: Path, run_id: str) -> dict[str, str]:
    """sha256 of every output object under the root, by path relative to it (the run's own folder renamed
    ``RUN``, the root's URI inside reports replaced by ``ROOT``); the records of the run itself (RUN_RECORDS)
    name the run, its times and its storage root."""
    prints = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix == ".db" or path.name.endswith((".db-journal", ".db-wal")):
            continue
        relative = path.relative_to(root).as_posix().replace(run_id, "RUN")
        if "/runs/RUN/" in relative and relative.split("/runs/RUN/")[1] in RUN_RECORDS:
            continue
        data = path.read_bytes().replace(root.as_uri().encode(), b"ROOT")
        if path.suffix == ".json":
            data = json.dumps(_without_timing(json.loads(data)), sort_keys=True).encode()
        prints[relative] = hashlib.sha256(data).hexdigest()
    return prints


def _run_status(root: Path) -> dict[str, tuple[str, str | None]]:
    engine = create_engine(f"sqlite:///{root}/zeitflow.db")
    try:
        with engine.connect() as conn:
            return {r[0]: (r[1], r[2]) for r in conn.execute(text("SELECT id, status, error_code FROM runs")).all()}
    finally:
        engine.dispose()


def test_sigkill_during_training_then_rerun_uses_the_cache_and_gives_identical_outputs(
        prefect_api: str, tmp_path: Path) -> None:
    home = tmp_path / "prefect-home"
    reference_root, resumed_root = tmp_path / "reference", tmp_path / "resumed"
    reference = _run(_env(prefect_api, reference_root, home))
    assert {m["name"]: m["status"] for m in reference["models"]} == {
        "linear": "completed", "persistence": "completed", "lstm": "completed"}

    env = _env(prefect_api, resumed_root, home)
    _kill_during_training(prefect_api, env, tmp_path)
    killed_runs = _run_status(resumed_root)
    assert list(killed_runs.values()) == [("running", None)]  # the killed process could not close its row
    lstm_results = list(resumed_root.rglob("lstm/result.json"))
    assert lstm_results == [], "the LSTM was stored before the kill: the test did not interrupt training"
    assert not [p for p in resumed_root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".model")]

    since = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() - 1))
    resumed = _run(env)
    assert all(s["reused"] for s in resumed["stages"]), [(s["stage"], s["reused"]) for s in resumed["stages"]]
    assert {m["name"]: (m["status"], m["reused"]) for m in resumed["models"]} == {
        "linear": ("completed", True), "persistence": ("completed", True), "lstm": ("completed", False)}

    flows = _flow_runs_since(prefect_api, since)
    states = {}
    for task in _task_runs(prefect_api, [f["id"] for f in flows]):
        name = task["name"] if task["name"].startswith("fit-") else task["name"].rsplit("-", 1)[0]
        states.setdefault(name, []).append(task["state_name"])
    cached_stages = ["load", "quality-gate", "dataset", "fit-linear", "fit-persistence"]
    for name in cached_stages:
        assert states.get(name) and set(states[name]) == {"Cached"}, (name, states)
    assert states["fit-lstm"] == ["Completed"], states

    assert _fingerprints(resumed_root, resumed["run_id"]) == _fingerprints(reference_root, reference["run_id"])
    statuses = _run_status(resumed_root)
    assert statuses[resumed["run_id"]] == ("completed", None)
    # the re-run found the killed run's process gone and closed its row
    assert {statuses[run_id] for run_id in killed_runs} == {("failed", "RUN_ABANDONED")}
