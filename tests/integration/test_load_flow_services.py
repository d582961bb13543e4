"""The load flow against real services: a Prefect server on PostgreSQL, artifacts on an S3 server,
metadata in PostgreSQL, all over real connections (``zeitflow run`` in a subprocess)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import s3fs

from tests.prefect_server import prefect_server
from zeitflow.io.metadata import MetadataStore

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ZEITFLOW = Path(sys.executable).parent / "zeitflow"
BUCKET = "zeitflow-test"


@pytest.fixture(scope="module")
def prefect_api(postgres_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A real Prefect server whose database is the test PostgreSQL cluster."""
    asyncpg_url = postgres_url.rsplit("/", 1)[0].replace("postgresql+psycopg://", "postgresql+asyncpg://")
    asyncpg_url = asyncpg_url.replace("postgresql://", "postgresql+asyncpg://") + "/prefect"
    with prefect_server(tmp_path_factory.mktemp("prefect-home"), asyncpg_url) as api:
        yield api


def _run(config: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ZEITFLOW), "run", str(config), "--json", *extra], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=600)


def _env(prefect_api: str, postgres_url: str, prefix: str, home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PREFECT_API_URL": prefect_api,
        "PREFECT_HOME": str(home),
        "ZEITFLOW_STORAGE_ROOT": f"s3://{BUCKET}/{prefix}",
        "ZEITFLOW_METADATA_URL": postgres_url,
    }


def _flow_runs(api: str) -> list[dict]:
    request = urllib.request.Request(f"{api}/flow_runs/filter", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_load_flow_writes_s3_and_postgres_and_is_idempotent(
    prefect_api: str, postgres_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    env = _env(prefect_api, postgres_url, "idempotent", tmp_path / "home")
    config = REPO / "examples" / "payerne_10min_temperature.yaml"
    first = _run(config, env)
    assert first.returncode == 0, first.stderr[-3000:]
    stage = json.loads(first.stdout.strip().splitlines()[-1])["stages"][0]
    assert stage["uri"].startswith(f"s3://{BUCKET}/idempotent/payerne-10min-temperature/load/")
    assert stage["rows_out"] == 4320

    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    data = fs.cat_file(stage["uri"])
    assert hashlib.sha256(data).hexdigest() == stage["sha256"]

    second = _run(config, env)
    assert second.returncode == 0, second.stderr[-3000:]
    again = json.loads(second.stdout.strip().splitlines()[-1])["stages"][0]
    assert (again["uri"], again["sha256"]) == (stage["uri"], stage["sha256"])
    assert fs.cat_file(stage["uri"]) == data

    store = MetadataStore(postgres_url)
    try:
        assert store.count_stage_outputs(uri=stage["uri"]) == 1
    finally:
        store.dispose()
    names = {run["name"] for run in _flow_runs(prefect_api)}
    states = {run["state_type"] for run in _flow_runs(prefect_api)}
    assert len(names) >= 2 and "COMPLETED" in states


def test_failing_gate_leaves_no_object_and_no_row_on_s3_and_postgres(
    prefect_api: str, postgres_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    env = _env(prefect_api, postgres_url, "gate", tmp_path / "home")
    result = _run(REPO / "examples" / "payerne_1min.yaml", env, "--set", "sources.0.gate.value_max=1000")
    assert result.returncode == 1, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1])["code"] == "GATE_FAILED"
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3_endpoint})
    assert fs.find(f"{BUCKET}/gate") == []
    store = MetadataStore(postgres_url)
    try:
        assert store.count_stage_outputs(uri_prefix=f"s3://{BUCKET}/gate/") == 0
    finally:
        store.dispose()
