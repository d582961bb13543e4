"""Acceptance (a): a Prefect server on PostgreSQL and a process worker, ``prefect deploy --all`` from the
repository root, ``pipeline-adhoc`` triggered over REST with parameters and an idempotency key, completed
with artifacts and outputs; the same key returns the same run."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.serve import build_deployments, load_specs
from deployments.trigger import TriggerError, trigger
from tests.prefect_stack import POOL, REPO, DeploymentStack, create_database, deployment_stack, drop_database
from zeitflow.io.metadata import MetadataStore

pytestmark = pytest.mark.integration

FLOW_OF = {"flows/ingest.py:ingest": "ingest", "flows/train.py:train": "train",
           "flows/forecast.py:forecast": "forecast", "flows/pipeline.py:pipeline": "pipeline"}
CONFIG = "examples/payerne_10min_temperature.yaml"
PROJECT = "payerne-10min-temperature"
FLOW_NAMES = ("ingest-daily", "train-weekly", "forecast-hourly", "pipeline-adhoc")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The workers' artifact root (a local folder: one machine)."""
    return tmp_path_factory.mktemp("deploy-storage")


@pytest.fixture(scope="module")
def metadata_url(postgres_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for the workers' metadata store."""
    url = create_database(postgres_url, "zeitflow_deploy")
    yield url
    drop_database(url)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str, storage: Path,
          metadata_url: str) -> Iterator[DeploymentStack]:
    env = {"ZEITFLOW_STORAGE_ROOT": f"file://{storage}", "ZEITFLOW_METADATA_URL": metadata_url}
    with deployment_stack(tmp_path_factory.mktemp("deploy-stack"), postgres_url, workers=1, env=env) as started:
        yield started


def _schedule_view(schedule: dict[str, Any]) -> dict[str, Any]:
    """The fields of a deployment schedule that prefect.yaml sets, as the API returns them."""
    inner = schedule["schedule"]
    view = {"slug": schedule["slug"], "active": schedule["active"], "timezone": inner.get("timezone")}
    if "cron" in inner:
        view["cron"] = inner["cron"]
    else:
        view["interval"] = float(inner["interval"])
    return view


def test_deploy_all_creates_the_four_deployments_of_prefect_yaml(stack: DeploymentStack) -> None:
    specs = {spec.name: spec for spec in load_specs(REPO / "prefect.yaml")}
    assert set(specs) == set(FLOW_NAMES)
    served = {d.name: d for d in build_deployments(REPO / "prefect.yaml")}
    for name, spec in specs.items():
        deployment = stack.deployment(FLOW_OF[spec.entrypoint], name)
        assert deployment["work_pool_name"] == POOL
        assert deployment["entrypoint"] == spec.entrypoint
        assert deployment["parameters"] == spec.parameters
        assert set(spec.tags) <= set(deployment["tags"])
        # workers run in the repository root, where config_file paths resolve
        assert deployment["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
        # the parameter form comes from the flow signature: the PipelineConfig model among them
        properties = deployment["parameter_openapi_schema"]["properties"]
        assert {"config", "config_file", "overrides"} <= set(properties)
        assert "PipelineConfig" in deployment["parameter_openapi_schema"].get("definitions", {})
        expected = [{"slug": s.slug, "active": s.active, "timezone": s.timezone,
                     **({"cron": s.cron} if s.cron else {"interval": float(s.interval or 0)})}
                    for s in spec.schedules]
        assert sorted((_schedule_view(s) for s in deployment["schedules"]), key=lambda v: v["slug"]) == expected
        # zeitflow serve builds the same deployment (minus the pool) from the same file
        mirror = served[name]
        assert mirror.parameters == deployment["parameters"]
        assert [(s.slug, s.active) for s in mirror.schedules] == [(s["slug"], s["active"])
                                                                for s in deployment["schedules"]]
    assert specs["pipeline-adhoc"].schedules == []
    assert {s.slug for spec in specs.values() for s in spec.schedules} == {
        "ingest-daily-0115-utc", "train-weekly-mon-0300-utc", "forecast-hourly-at-05"}


def test_pipeline_adhoc_triggered_over_rest_completes_with_artifacts(
    stack: DeploymentStack, storage: Path, metadata_url: str
) -> None:
    key = f"test-adhoc-{secrets.token_hex(4)}"
    parameters = {"config_file": CONFIG, "overrides": ["description=triggered through the REST API"]}
    result = trigger("pipeline/pipeline-adhoc", parameters, key, api_url=stack.api_url, timeout=420, poll=1)
    assert result["state_type"] == "COMPLETED", f"{result}\n{stack.logs()}"
    assert result["created"] is True and result["idempotency_key"] == key and not result["timed_out"]

    run = stack.request("GET", f"/flow_runs/{result['id']}")
    assert run["parameters"] == parameters
    assert run["deployment_id"] == stack.deployment("pipeline", "pipeline-adhoc")["id"]
    assert run["work_pool_name"] == POOL

    artifacts = stack.artifacts(result["id"])
    keys = {a["key"] for a in artifacts if a.get("key")}
    assert any(k.startswith("load-") and k.endswith("-report") for k in keys), keys
    assert {a["type"] for a in artifacts} >= {"markdown", "table"}

    parquet = list((storage / PROJECT / "load").rglob("*.parquet"))
    assert parquet, f"no load output under {storage}"
    store = MetadataStore(metadata_url)
    try:
        assert store.count_stage_outputs(stage="load", uri_prefix=f"file://{storage}/{PROJECT}/") >= 1
    finally:
        store.dispose()

    # the same idempotency key returns the first run, over the function and the command line
    again = trigger("pipeline/pipeline-adhoc", parameters, key, api_url=stack.api_url, wait=False)
    assert again["id"] == result["id"] and again["created"] is False
    cli = subprocess.run(
        [sys.executable, "-m", "deployments.trigger", "pipeline-adhoc", "--param", f"config_file={CONFIG}",
         "--param", 'overrides=["description=triggered through the REST API"]', "--idempotency-key", key,
         "--api-url", stack.api_url, "--timeout", "60"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert cli.returncode == 0, cli.stderr
    printed = json.loads(cli.stdout.strip().splitlines()[-1])
    assert printed["id"] == result["id"] and printed["state_type"] == "COMPLETED"
    runs = stack.request("POST", "/flow_runs/filter", json={
        "deployments": {"id": {"any_": [result["deployment_id"]]}}})
    assert [r["id"] for r in runs if r.get("idempotency_key") == key] == [result["id"]]


def test_invalid_parameters_are_refused_by_the_server(stack: DeploymentStack) -> None:
    with pytest.raises(TriggerError, match="409"):
        trigger("pipeline/pipeline-adhoc", {"config_file": CONFIG, "overrides": "not-a-list"},
                api_url=stack.api_url, wait=False)
    with pytest.raises(TriggerError, match="404"):
        trigger("pipeline/no-such-deployment", {}, api_url=stack.api_url, wait=False)


def test_serve_all_serves_the_same_deployments_from_one_process(tmp_path: Path, postgres_url: str,
                                                               storage: Path) -> None:
    """``serve_all`` on a server of its own (no deploy, no worker): re-registering deployed names would keep
    their pool, and the worker could take the run instead of the serving process."""
    env = {"ZEITFLOW_STORAGE_ROOT": f"file://{storage}", "ZEITFLOW_METADATA_URL": f"sqlite:///{tmp_path}/zf.db"}
    with deployment_stack(tmp_path / "stack", postgres_url, workers=0, deploy=False, env=env) as own:
        log_path = own.home / "serve.log"
        with open(log_path, "wb") as log:
            served = subprocess.Popen(
                [sys.executable, "-c", "from deployments.serve import serve_all; serve_all(limit=1)"],
                cwd=REPO, env=own.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert served.poll() is None, log_path.read_text()[-3000:]
                found = {d["name"]: d for d in own.request("POST", "/deployments/filter", json={})}
                if set(found) >= set(FLOW_NAMES):
                    break
                assert time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(1)
            for spec in load_specs(REPO / "prefect.yaml"):
                deployment = found[spec.name]
                assert deployment["work_pool_name"] is None and deployment["parameters"] == spec.parameters
                assert [(s["slug"], s["active"]) for s in deployment["schedules"]] == [
                    (s.slug, s.active) for s in spec.schedules]
            result = trigger("pipeline/pipeline-adhoc", {"config_file": CONFIG}, "served", api_url=own.api_url,
                             timeout=300, poll=1)
            assert result["state_type"] == "COMPLETED", f"{result}\n{log_path.read_text()[-3000:]}"
        finally:
            served.send_signal(signal.SIGINT)
            try:
                served.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(served.pid, signal.SIGKILL)
                served.wait()
