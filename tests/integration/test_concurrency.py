"""Concurrency (issue 9): four ``zeitflow run`` processes released at the same moment on the same project,
against one real Prefect server (on PostgreSQL), metadata in a fresh PostgreSQL database, artifacts on local
disk or on an S3 server (moto).

What must hold afterwards: every run exits 0 and reports the same output keys and sha256s; the storage holds
exactly one object per output key and no temporary or partial object (no ``.tmp`` file on disk, no open
multipart upload on S3); every object is readable and every Parquet's sha256 equals its ``stage_outputs`` row;
``stage_outputs`` has exactly one row per (stage, output); the four runs are four ``runs`` rows and four
completed Prefect flow runs.

The processes import everything first, then wait at a file barrier, so their flows really start together
(a cold import takes several seconds and would otherwise serialise them).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from sqlalchemy import create_engine, text

from tests.prefect_server import prefect_server
from tests.prefect_stack import create_database, drop_database
from zeitflow.io.artifacts import read_frame
from zeitflow.io.metadata import MetadataStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
RUNS = 4
BARRIER_TIMEOUT_S = 180
RUN_TIMEOUT_S = 420

#: Imports everything a run needs, signals readiness, waits for the common start signal, then runs the CLI.
LAUNCHER = f"""
import sys, time, pathlib
ready, go = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
import flows.pipeline  # noqa: F401  (the heavy imports happen before the barrier)
from zeitflow import cli
ready.touch()
deadline = time.monotonic() + {BARRIER_TIMEOUT_S}
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("barrier timeout")
    time.sleep(0.005)
sys.argv = ["zeitflow", *sys.argv[3:]]
cli.main()
"""

PAYERNE_CLEAN = ("examples/payerne_15min_clean.yaml", ())
TMY3_DATASET = ("examples/tmy3_greensboro.yaml", ("--set", "training=null"))


@pytest.fixture(scope="module")
def prefect_api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Prefect server for the module, on a database of its own in the test cluster."""
    url = create_database(postgres_url, "prefect_concurrency")
    asyncpg_url = url.replace("postgresql+psycopg://", "postgresql+asyncpg://")
    try:
        with prefect_server(tmp_path_factory.mktemp("prefect-server"), asyncpg_url) as api:
            yield api
    finally:
        drop_database(url)


@pytest.fixture
def metadata_url(postgres_url: str) -> Iterator[str]:
    """A fresh, empty metadata database for one test (its migrations are run by the racing runs)."""
    url = create_database(postgres_url, "zf_concurrency")
    try:
        yield url
    finally:
        drop_database(url)


def _post(api: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(f"{api}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _race(config: str, extra: tuple[str, ...], env: dict[str, str],
          work: Path) -> list[subprocess.CompletedProcess[str]]:
    """Start RUNS processes, wait until all are ready, release them at once; return their results."""
    work.mkdir(parents=True, exist_ok=True)
    launcher = work / "launch.py"
    launcher.write_text(LAUNCHER, encoding="utf-8")
    go = work / "go"
    procs: list[subprocess.Popen[str]] = []
    logs = []
    for i in range(RUNS):
        out, err = open(work / f"run{i}.out", "w+"), open(work / f"run{i}.err", "w+")  # noqa: SIM115
        logs.append((out, err))
        procs.append(subprocess.Popen(
            [PYTHON, str(launcher), str(work / f"ready{i}"), str(go), "run", str(REPO / config), "--json", *extra],
            env=env, cwd=REPO, stdout=out, stderr=err, text=True, start_new_session=True,
        ))
    try:
        deadline = time.monotonic() + BARRIER_TIMEOUT_S
        while not all((work / f"ready{i}").exists() for i in range(RUNS)):
            dead = [p.returncode for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                pytest.fail(f"runs did not reach the start barrier (exited: {dead}); "
                            f"stderr: {(work / 'run0.err').read_text()[-2000:]}")
            time.sleep(0.05)
        go.touch()
        results = []
        for i, proc in enumerate(procs):
            proc.wait(timeout=RUN_TIMEOUT_S)
            out, err = logs[i]
            out.seek(0)
            err.seek(0)
            results.append(subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()))
        return results
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        for out, err in logs:
            out.close()
            err.close()


def _summaries(results: list[subprocess.CompletedProcess[str]]) -> list[dict[str, Any]]:
    summaries = []
    for i, result in enumerate(results):
        last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else "{}"
        assert result.returncode == 0, f"run {i} exited {result.returncode}: {last}\n{result.stderr[-4000:]}"
        summary = json.loads(last)
        assert summary["status"] == "completed"
        summaries.append(summary)
    return summaries


def _outputs(summaries: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(stage, output) -> its summary entry; every run must report the same uri and sha256 for it."""
    first = {(s["stage"], s["output"]): s for s in summaries[0]["stages"]}
    for summary in summaries[1:]:
        other = {(s["stage"], s["output"]): s for s in summary["stages"]}
        assert other.keys() == first.keys()
        for key, stage in other.items():
            assert (stage["uri"], stage["sha256"]) == (first[key]["uri"], first[key]["sha256"]), key
    return first


def _check_object(name: str, data: bytes) -> None:
    """Every stored object is complete and readable in its own format."""
    if name.endswith(".parquet"):
        pq.read_table(io.BytesIO(data))
    elif name.endswith(".json"):
        json.loads(data.decode("utf-8"))
    elif name.endswith(".png"):
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"), name
    elif name.endswith(".npz"):
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            assert archive.testzip() is None, name
    else:
        pytest.fail(f"unexpected object {name}")


def _check_metadata(metadata_url: str, outputs: dict[tuple[str, str], dict[str, Any]], root: str,
                    read: Any) -> None:
    """One ``stage_outputs`` row per (stage, output) whose sha256 is that of the stored Parquet; 4 runs."""
    store = MetadataStore(metadata_url)
    try:
        assert store.count_stage_outputs(uri_prefix=root + "/") == len(outputs)
        for (stage, output), entry in outputs.items():
            assert store.count_stage_outputs(stage=stage, output_name=output) == 1, (stage, output)
            assert store.count_stage_outputs(uri=entry["uri"]) == 1
    finally:
        store.dispose()
    engine = create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            duplicates = conn.execute(text(
                "SELECT stage, output_name, count(*) FROM stage_outputs GROUP BY stage, output_name "
                "HAVING count(*) > 1")).all()
            assert duplicates == []
            rows = conn.execute(text("SELECT stage, output_name, uri, sha256, size_bytes FROM stage_outputs")).all()
            runs = conn.execute(text("SELECT status, count(*) FROM runs GROUP BY status")).all()
            projects = conn.execute(text("SELECT count(*) FROM projects")).scalar_one()
            last_start, first_finish = conn.execute(text("SELECT max(started_at), min(finished_at) FROM runs")).one()
    finally:
        engine.dispose()
    assert dict(runs) == {"completed": RUNS}
    assert projects == 1
    assert last_start < first_finish, "the runs did not overlap: every run must start before any finishes"
    for stage, output, uri, sha256, size in rows:
        assert uri == outputs[(stage, output)]["uri"] and sha256 == outputs[(stage, output)]["sha256"]
        data = read(uri)
        assert hashlib.sha256(data).hexdigest() == sha256 and len(data) == size, uri
        read_frame(uri, expected_sha256=sha256)  # readable as a canonical frame, checksum verified


def _check_prefect(api: str, flow_run_ids: set[str]) -> None:
    runs = _post(api, "/flow_runs/filter", {"flow_runs": {"id": {"any_": sorted(flow_run_ids)}}})
    assert len(runs) == RUNS and {r["state_type"] for r in runs} == {"COMPLETED"}


def _flow_run_ids(metadata_url: str) -> set[str]:
    engine = create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            return {r[0] for r in conn.execute(text("SELECT flow_run_id FROM runs")).all()}
    finally:
        engine.dispose()


def _env(prefect_api: str, root: str, metadata_url: str, home: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(home),
            "ZEITFLOW_STORAGE_ROOT": root, "ZEITFLOW_METADATA_URL": metadata_url}


def test_four_simultaneous_runs_on_local_disk(prefect_api: str, metadata_url: str, tmp_path: Path) -> None:
    """payerne_15min_clean (load, resample, clean) four times at once on one local root."""
    root_dir = tmp_path / "storage"
    root = f"file://{root_dir}"
    config, extra = PAYERNE_CLEAN
    results = _race(config, extra, _env(prefect_api, root, metadata_url, tmp_path / "home"), tmp_path / "race")
    outputs = _outputs(_summaries(results))
    assert {stage for stage, _ in outputs} == {"load", "resample", "clean"}

    files = sorted(p for p in root_dir.rglob("*") if p.is_file())
    names = [p.name for p in files]
    assert not [n for n in names if n.endswith(".tmp") or n.startswith(".")], names
    parquet = sorted(str(p) for p in files if p.suffix == ".parquet")
    assert parquet == sorted(e["uri"].removeprefix("file://") for e in outputs.values())
    reports = sorted(str(p) for p in files if p.name.endswith(".report.json"))
    assert reports == sorted(e["report_uri"].removeprefix("file://") for e in outputs.values())
    assert len(files) == len(parquet) + len(reports)
    for path in files:
        _check_object(path.name, path.read_bytes())

    _check_metadata(metadata_url, outputs, root, lambda uri: Path(uri.removeprefix("file://")).read_bytes())
    _check_prefect(prefect_api, _flow_run_ids(metadata_url))


def test_four_simultaneous_runs_with_a_dataset_on_s3(prefect_api: str, metadata_url: str, s3_endpoint: str,
                                                     s3_bucket: str, tmp_path: Path) -> None:
    """The TMY3 example without training (load, then the windowed dataset with its sidecars and violin
    plots) four times at once on one S3 prefix."""
    import boto3
    from botocore.config import Config

    prefix = f"concurrency-{os.getpid()}"
    root = f"s3://{s3_bucket}/{prefix}"
    config, extra = TMY3_DATASET
    results = _race(config, extra, _env(prefect_api, root, metadata_url, tmp_path / "home"), tmp_path / "race")
    outputs = _outputs(_summaries(results))
    assert {stage for stage, _ in outputs} == {"load", "dataset"}

    client = boto3.client("s3", endpoint_url=s3_endpoint, config=Config(
        s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
        response_checksum_validation="when_required"))
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix=prefix + "/"):
        keys += [item["Key"] for item in page.get("Contents", [])]
    assert len(keys) == len(set(keys))
    assert client.list_multipart_uploads(Bucket=s3_bucket, Prefix=prefix + "/").get("Uploads", []) == []

    def read(uri: str) -> bytes:
        key = uri.removeprefix(f"s3://{s3_bucket}/")
        return client.get_object(Bucket=s3_bucket, Key=key)["Body"].read()

    expected: set[str] = set()
    for entry in outputs.values():
        expected |= {entry["uri"], entry["report_uri"]}
    dataset = outputs[("dataset", "temperature_24h")]["details"]
    report = json.loads(read(outputs[("dataset", "temperature_24h")]["report_uri"]))
    violins = set(report["violin_uris"].values())
    assert violins and all(".violin-" in uri for uri in violins)
    expected |= {report["npz_uri"], report["sidecar_uri"], report["scalers_uri"], *violins}
    present = {f"s3://{s3_bucket}/{k}" for k in keys}
    assert present == expected, (sorted(expected - present), sorted(present - expected))
    for key in keys:
        _check_object(key, read(f"s3://{s3_bucket}/{key}"))

    _check_metadata(metadata_url, outputs, root, read)
    engine = create_engine(metadata_url)
    try:
        with engine.connect() as conn:
            datasets = conn.execute(text("SELECT uri, sha256, count(*) FROM datasets GROUP BY uri, sha256")).all()
    finally:
        engine.dispose()
    # at most one datasets row per run (natural key run_id, name; a run that reused the dataset adds none),
    # all naming the one stored object
    assert len(datasets) == 1 and 1 <= datasets[0][2] <= RUNS
    assert datasets[0][0] == dataset["npz_uri"]
    assert hashlib.sha256(read(dataset["npz_uri"])).hexdigest() == datasets[0][1]
    _check_prefect(prefect_api, _flow_run_ids(metadata_url))

