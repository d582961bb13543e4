"""Secrets never leak (issue 9, "Safety"): S3 keys, the metadata database password and the Supabase service
key are distinctive tokens; after real runs against a real Prefect server (on PostgreSQL), artifacts on an S3
server (moto, which accepts any credentials) and metadata in PostgreSQL under a role of their own, none of the
tokens, in plain, URL-encoded or base64 form, appears in:

* the stdout and stderr of ``zeitflow run --json``;
* any flow run, task run (parameters, state messages), log line, artifact (data and description) or event read
  from the Prefect API, nor in any row of any table of the Prefect server's database;
* any stored object under the storage root (Parquet, reports, ``report.html``, ``config.json``, manifest, models,
  plots, ...), nor in any file of the client's ``PREFECT_HOME``;
* any row of any table of the metadata database (``runs.parameters``, ``runs.error_message``,
  ``stage_outputs.report``, ...).

The runs: one that succeeds (training two quick models, so the run results and ``report.html`` exist); the same
with the Supabase sink pointing at a closed local port (it fails with ``StorageError`` ``WRITE_FAILED`` whose
message must not hold the key); a wrong database password; an unreachable database; a missing bucket; and a
missing source file (an input error). The same evidence shows that only transient storage errors are retried.
Unit-level checks: ``zeitflow check-config`` and ``ParameterError`` messages never echo a password given in
``storage.metadata_url``.

"""

from __future__ import annotations

import base64
import json
import os
import random
import string
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from tests.prefect_server import prefect_server
from tests.prefect_stack import create_database, drop_database
from tests.services import database_url, free_port
from zeitflow.cli import app

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ZEITFLOW = Path(sys.executable).parent / "zeitflow"
TMY3 = REPO / "examples" / "tmy3_greensboro.yaml"
PAYERNE_10MIN = REPO / "examples" / "payerne_10min_temperature.yaml"
TINY_TRAINING = ("--set", 'training.models=[{"kind": "linear"}, {"kind": "persistence"}]')
SEED = 20240909
RUN_TIMEOUT_S = 300


def _token(rng: random.Random, prefix: str, length: int = 28, extra: str = "") -> str:
    alphabet = string.ascii_letters + string.digits + extra
    return prefix + "".join(rng.choice(alphabet) for _ in range(length))


@dataclass(frozen=True)
class Secrets:
    """The distinctive values of one module run (seeded, so a failure is reproducible)."""

    access_key: str
    secret_key: str
    db_password: str
    wrong_db_password: str
    unreachable_db_password: str
    supabase_key: str
    config_db_password: str
    config_run_db_password: str
    role: str = "zf_secret_role"

    def values(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "metadata password": self.db_password, "wrong metadata password": self.wrong_db_password,
                "unreachable metadata password": self.unreachable_db_password,
                "SUPABASE_SERVICE_KEY": self.supabase_key}

    def needles(self, values: dict[str, str] | None = None) -> dict[str, bytes]:
        """Every secret in plain, URL-encoded, form-encoded and base64 (standard and URL-safe) form, plus the
        base64 of ``role:password`` (HTTP basic auth)."""
        needles: dict[str, bytes] = {}
        for name, value in (values or self.values()).items():
            raw = value.encode("utf-8")
            forms = {"plain": value, "url-encoded": quote(value, safe=""), "form-encoded": quote_plus(value),
                     "base64": base64.b64encode(raw).decode().rstrip("="),
                     "base64url": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
            for form, text_value in forms.items():
                needles[f"{name} ({form})"] = text_value.encode("utf-8")
            if "password" in name:
                basic = base64.b64encode(f"{self.role}:{value}".encode()).decode().rstrip("=")
                needles[f"{name} (basic auth)"] = basic.encode()
        return needles


@dataclass
class Haystack:
    """Everything collected from the runs, by where it came from."""

    items: dict[str, bytes] = field(default_factory=dict)

    def add(self, where: str, data: bytes | str) -> None:
        self.items[where] = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data

    def leaks(self, needles: dict[str, bytes]) -> list[str]:
        return [f"{name} in {where}" for where, data in self.items.items()
                for name, needle in needles.items() if needle in data]


@pytest.fixture(scope="module")
def secrets() -> Secrets:
    rng = random.Random(SEED)
    return Secrets(
        access_key=_token(rng, "AKZF", 16).upper(),
        secret_key=_token(rng, "sk", 38, "/+"),
        db_password=_token(rng, "Pw", 24, "@/+%#?:"),
        wrong_db_password=_token(rng, "Wr", 24, "@/+%"),
        unreachable_db_password=_token(rng, "Un", 24),
        supabase_key=_token(rng, "sbk", 40, "-_"),
        config_db_password=_token(rng, "Cf", 24),
        config_run_db_password=_token(rng, "Cr", 24, "@/+"),
    )


@pytest.fixture(scope="module")
def prefect_db(postgres_url: str) -> Iterator[str]:
    """A database of its own for this module's Prefect server (so its tables hold only these runs)."""
    url = create_database(postgres_url, "prefect_secrets")
    try:
        yield url
    finally:
        drop_database(url)


@pytest.fixture(scope="module")
def prefect_api(prefect_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with prefect_server(tmp_path_factory.mktemp("prefect-server"), prefect_db.replace(
            "postgresql+psycopg://", "postgresql+asyncpg://")) as api:
        yield api


@contextmanager
def _role_database(postgres_url: str, role: str, password: str, seed: int) -> Iterator[tuple[str, str]]:
    """A login role with ``password`` owning a fresh database; yields (role URL, superuser URL of that db)."""
    import psycopg
    from psycopg import sql

    admin = make_url(postgres_url)
    name = f"zf_secrets_{random.Random(seed).getrandbits(32):08x}"

    def execute(*statements: sql.Composable) -> None:
        with psycopg.connect(host=admin.host, port=admin.port, user=admin.username, password=admin.password,
                             dbname=admin.database, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), sql.Literal(password)),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(role)))
    role_url = f"postgresql+psycopg://{role}:{quote(password, safe='')}@{admin.host}:{admin.port}/{name}"
    try:
        yield role_url, database_url(postgres_url, name)
    finally:
        execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def metadata_db(postgres_url: str, secrets: Secrets) -> Iterator[tuple[str, str]]:
    """The metadata database of the runs, owned by a role whose password is one of the secrets."""
    with _role_database(postgres_url, secrets.role, secrets.db_password, SEED + 1) as urls:
        yield urls


def _env(secrets: Secrets, prefect_api: str, root: str, metadata_url: str, home: Path,
         **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUPABASE_", "ZEITFLOW_"))}
    env.update({
        "PREFECT_API_URL": prefect_api, "PREFECT_HOME": str(home), "ZEITFLOW_STORAGE_ROOT": root,
        "ZEITFLOW_METADATA_URL": metadata_url, "AWS_ACCESS_KEY_ID": secrets.access_key,
        "AWS_SECRET_ACCESS_KEY": secrets.secret_key, "AWS_DEFAULT_REGION": "us-east-1",
    })
    env.update(extra)
    return env


def _run(config: Path, env: dict[str, str], *extra: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    result = subprocess.run([str(ZEITFLOW), "run", str(config), "--json", *extra], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    lines = result.stdout.strip().splitlines()
    try:
        summary = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        summary = {}
    return result, summary


def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _paged(api: str, path: str, sort: str | None = None) -> list[Any]:
    items: list[Any] = []
    while True:
        body: dict[str, Any] = {"limit": 200, "offset": len(items)}
        if sort:
            body["sort"] = sort
        page = _post(f"{api}{path}", body)
        items += page
        if len(page) < 200:
            return items


SUBFLOW_PARAMETERS = "subflow parameters"


def _collect_prefect(api: str, haystack: Haystack) -> tuple[dict[str, int], list[Any], list[Any]]:
    """Flow runs, task runs, logs, artifacts and events from the Prefect REST API. The parameters of subflow
    runs are filed under their own label (``SUBFLOW_PARAMETERS``), so a known leak there is told apart."""
    counts: dict[str, int] = {}
    flow_runs = _paged(api, "/flow_runs/filter")
    counts["flow runs"] = len(flow_runs)
    counts["top-level flow runs"] = sum(1 for run in flow_runs if run.get("parent_task_run_id") is None)
    for run in flow_runs:
        if run.get("parent_task_run_id") is not None:
            haystack.add(f"{SUBFLOW_PARAMETERS} of {run['name']} (API)", json.dumps(run.get("parameters")))
            run = {k: v for k, v in run.items() if k != "parameters"}
        haystack.add(f"flow run {run['name']} (API)", json.dumps(run, ensure_ascii=False))
    task_runs = _paged(api, "/task_runs/filter")
    counts["task runs"] = len(task_runs)
    haystack.add("task runs (API)", json.dumps(task_runs, ensure_ascii=False))
    logs = _paged(api, "/logs/filter", "TIMESTAMP_ASC")
    counts["log lines"] = len(logs)
    for line in logs:
        haystack.add(f"log line {line['id']} (API)", json.dumps(line, ensure_ascii=False) + line["message"])
    artifacts = _paged(api, "/artifacts/filter")
    counts["artifacts"] = len(artifacts)
    for artifact in artifacts:
        haystack.add(f"artifact {artifact.get('key')} {artifact['id']} (API)",
                     json.dumps(artifact.get("data"), ensure_ascii=False) + str(artifact.get("description"))
                     + json.dumps(artifact, ensure_ascii=False))
    events: list[Any] = []
    page = _post(f"{api}/events/filter", {"limit": 50})
    for _ in range(200):
        events += page["events"]
        if not page.get("next_page"):
            break
        page = _get(page["next_page"])
    counts["events"] = len(events)
    haystack.add("events (API)", json.dumps(events, ensure_ascii=False))
    return counts, flow_runs, task_runs


def _collect_database(url: str, label: str, haystack: Haystack) -> dict[str, int]:
    """Every row of every table of the public schema, as PostgreSQL's text form of the row (the parameters of
    Prefect subflow runs under their own label, as in ``_collect_prefect``)."""
    engine = create_engine(url)
    counts = {}
    try:
        with engine.connect() as conn:
            tables = conn.execute(text("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'")).scalars().all()
            for table in tables:
                if table == "flow_run":
                    rows = conn.execute(text(
                        "SELECT (to_jsonb(t) - 'parameters')::text, t.parameters::text, "
                        "t.parent_task_run_id IS NOT NULL FROM public.flow_run t")).all()
                    haystack.add(f"{label} table flow_run", "\n".join(r[0] for r in rows))
                    haystack.add(f"{label} table flow_run, parameters of top-level runs",
                                 "\n".join(r[1] for r in rows if not r[2]))
                    haystack.add(f"{SUBFLOW_PARAMETERS} ({label} table flow_run)",
                                 "\n".join(r[1] for r in rows if r[2]))
                else:
                    rows = conn.execute(text(f'SELECT t::text FROM public."{table}" t')).scalars().all()
                    haystack.add(f"{label} table {table}", "\n".join(rows))
                counts[table] = len(rows)
    finally:
        engine.dispose()
    return counts


def _collect_storage(s3_endpoint: str, bucket: str, prefix: str, haystack: Haystack) -> list[str]:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id="reader", aws_secret_access_key="reader",
                          region_name="us-east-1", config=Config(
                              s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                              response_checksum_validation="when_required"))
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [item["Key"] for item in page.get("Contents", [])]
    for key in keys:
        haystack.add(f"object s3://{bucket}/{key}", client.get_object(Bucket=bucket, Key=key)["Body"].read())
        haystack.add(f"object key {key}", key)
    return keys


def _collect_files(folder: Path, label: str, haystack: Haystack) -> int:
    count = 0
    for path in folder.rglob("*"):
        if path.is_file():
            haystack.add(f"{label} {path}", path.read_bytes())
            count += 1
    return count


@dataclass
class Evidence:
    """The runs of the module and everything they left behind."""

    results: dict[str, subprocess.CompletedProcess[str]]
    summaries: dict[str, dict[str, Any]]
    keys: list[str]
    prefect: dict[str, int]
    metadata: dict[str, int]
    failed_error_codes: list[str]
    haystack: Haystack
    flow_runs: list[Any]
    task_runs: list[Any]


@pytest.fixture(scope="module")
def evidence(secrets: Secrets, prefect_api: str, prefect_db: str, metadata_db: tuple[str, str], s3_endpoint: str,
             s3_bucket: str, tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """Run the five runs (see the module docstring), then collect every place a secret could end up."""
    role_url, superuser_url = metadata_db
    prefix = "secrets"
    root = f"s3://{s3_bucket}/{prefix}"
    home = tmp_path_factory.mktemp("client-home")
    admin = make_url(superuser_url)
    haystack = Haystack()
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    summaries: dict[str, dict[str, Any]] = {}

    def run(label: str, config: Path, env: dict[str, str], *extra: str) -> None:
        results[label], summaries[label] = _run(config, env, *extra)
        haystack.add(f"{label} run stdout", results[label].stdout)
        haystack.add(f"{label} run stderr", results[label].stderr)

    # 1. a complete run: data stages, two models, evaluation, run results and report.html
    run("successful", TMY3, _env(secrets, prefect_api, root, role_url, home), *TINY_TRAINING)
    # 2. the same with the Supabase sink on a closed port: the sink fails after its retries
    run("supabase", TMY3, _env(secrets, prefect_api, root, role_url, home,
                               SUPABASE_URL=f"http://127.0.0.1:{free_port()}",
                               SUPABASE_SERVICE_KEY=secrets.supabase_key), *TINY_TRAINING)
    # 3. a wrong database password
    wrong_url = (f"postgresql+psycopg://{secrets.role}:{quote(secrets.wrong_db_password, safe='')}"
                 f"@{admin.host}:{admin.port}/{admin.database}")
    run("wrong-password", PAYERNE_10MIN, _env(secrets, prefect_api, root, wrong_url, home))
    # 4. an unreachable database (closed port) with a password in its URL
    closed_url = (f"postgresql+psycopg://{secrets.role}:{secrets.unreachable_db_password}"
                  f"@127.0.0.1:{free_port()}/zeitflow")
    run("unreachable-database", PAYERNE_10MIN, _env(secrets, prefect_api, root, closed_url, home))
    # 5. a missing bucket: the write fails after the real database recorded the run (error_message stored)
    run("missing-bucket", PAYERNE_10MIN, _env(secrets, prefect_api, "s3://zeitflow-no-such-bucket/x", role_url, home))
    # 6. bad input (a missing source file): an input error inside the load task, never retried
    run("bad-input", PAYERNE_10MIN, _env(secrets, prefect_api, root, role_url, home),
        "--set", f"sources.0.path={home / 'no-such-file.csv'}")

    keys = _collect_storage(s3_endpoint, s3_bucket, prefix + "/", haystack)
    _collect_files(home, "client PREFECT_HOME", haystack)
    prefect_counts, flow_runs, task_runs = _collect_prefect(prefect_api, haystack)
    metadata_counts = _collect_database(superuser_url, "metadata", haystack)
    _collect_database(prefect_db, "Prefect server database", haystack)
    engine = create_engine(superuser_url)
    try:
        with engine.connect() as conn:
            errors = conn.execute(text("SELECT error_code FROM runs WHERE status = 'failed'")).scalars().all()
    finally:
        engine.dispose()
    return Evidence(results, summaries, keys, prefect_counts, metadata_counts, sorted(errors), haystack, flow_runs,
                    task_runs)


def test_runs_succeed_or_fail_with_coded_masked_errors(evidence: Evidence, secrets: Secrets,
                                                       metadata_db: tuple[str, str]) -> None:
    """The five runs did what they were meant to, so the search below covers real logs, objects and rows."""
    role_url, _ = metadata_db
    results, summaries = evidence.results, evidence.summaries
    assert results["successful"].returncode == 0, results["successful"].stderr[-4000:]
    summary = summaries["successful"]
    assert summary["status"] == "completed" and summary["evaluation"]["report_uri"].endswith("/report.html")
    assert summary["metadata_url"] == make_url(role_url).render_as_string(hide_password=True)

    failure = summaries["supabase"]
    assert results["supabase"].returncode == 1, results["supabase"].stderr[-4000:]
    assert (failure["error"], failure["code"], failure["details"]["store"]) == ("StorageError", "WRITE_FAILED",
                                                                               "supabase")
    for label in ("wrong-password", "unreachable-database"):
        failure = summaries[label]
        assert results[label].returncode == 1, results[label].stderr[-4000:]
        assert failure["error"] == "StorageError" and failure["details"]["store"] == "metadata"
        assert f"{secrets.role}:***@" in failure["message"], failure["message"]
    failure = summaries["missing-bucket"]
    assert results["missing-bucket"].returncode == 1, results["missing-bucket"].stderr[-4000:]
    assert (failure["error"], failure["code"]) == ("StorageError", "WRITE_FAILED")
    failure = summaries["bad-input"]
    assert results["bad-input"].returncode == 2, results["bad-input"].stderr[-4000:]
    assert failure["error"] == "LoadError"

    names = {key.rsplit("/", 1)[-1] for key in evidence.keys}
    assert {"report.html", "config.json", "manifest.json", "metrics.json", "model.json", "result.json"} <= names
    assert evidence.prefect["top-level flow runs"] == 6 and evidence.prefect["log lines"] > 20
    assert evidence.prefect["artifacts"] > 0 and evidence.prefect["task runs"] > 10
    # runs 3 and 4 never reached the database; 2, 5 and 6 recorded their failure
    assert evidence.metadata["runs"] == 4 and evidence.metadata["stage_outputs"] >= 2
    assert evidence.failed_error_codes == ["SOURCE_NOT_FOUND", "WRITE_FAILED", "WRITE_FAILED"]


def test_only_transient_storage_errors_are_retried(evidence: Evidence) -> None:
    """``retry_transient``: a task that failed with WRITE_FAILED / READ_FAILED ran three times (two retries), or
    attempted its body three times inside a stage transaction; a task that failed with an input error ran once,
    although it has retries configured too."""
    order = ["successful", "supabase", "wrong-password", "unreachable-database", "missing-bucket", "bad-input"]
    top = sorted((r for r in evidence.flow_runs if r.get("parent_task_run_id") is None),
                 key=lambda r: r["expected_start_time"])
    flow_of = {run["id"]: order[i] for i, run in enumerate(top)}

    def task(label: str, name: str) -> dict[str, Any]:
        found = [t for t in evidence.task_runs if flow_of.get(t["flow_run_id"]) == label
                 and t["name"].startswith(name + "-") and t["state_type"] == "FAILED"]
        assert len(found) == 1, (label, name, [(t["name"], t["state_type"]) for t in evidence.task_runs
                                                 if flow_of.get(t["flow_run_id"]) == label])
        return found[0]

    assert task("supabase", "publish-supabase")["run_count"] == 3
    assert task("wrong-password", "open-run")["run_count"] == 3
    assert task("unreachable-database", "open-run")["run_count"] == 3
    # load runs inside its stage's transaction, so it retries its body within one task run (tasks/retrying.py):
    # three attempts, logged, in a run_count of 1
    assert task("missing-bucket", "load")["run_count"] == 1
    missing_bucket = evidence.results["missing-bucket"].stderr
    assert [n for n in (1, 2, 3) if f"attempt {n} of load_source failed with WRITE_FAILED" in missing_bucket] == [1, 2]
    bad_input = evidence.results["bad-input"].stderr
    assert task("bad-input", "source-checksums")["run_count"] == 1 and "retrying in" not in bad_input
    assert "Retries are exhausted" in evidence.results["supabase"].stderr


def test_no_secret_in_output_logs_artifacts_objects_or_tables(evidence: Evidence, secrets: Secrets) -> None:
    # positive control: the masked URLs (role name, no password) are found where they are printed and logged
    assert any("stdout" in where for where in evidence.haystack.leaks({"role": secrets.role.encode()}))
    leaks = [leak for leak in evidence.haystack.leaks(secrets.needles()) if SUBFLOW_PARAMETERS not in leak]
    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks[:50])


def test_no_secret_in_subflow_parameters(evidence: Evidence, secrets: Secrets) -> None:
    """The fit-models subflow gets the RunContext as a parameter; its JSON form masks the metadata password."""
    assert any(key.startswith(f"{SUBFLOW_PARAMETERS} of ") for key in evidence.haystack.items)  # fit-models ran
    leaks = [leak for leak in evidence.haystack.leaks(secrets.needles()) if SUBFLOW_PARAMETERS in leak]
    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks[:50])


def test_password_in_the_project_file_is_rejected_and_never_stored(
    secrets: Secrets, prefect_api: str, postgres_url: str, s3_bucket: str, tmp_path: Path,
) -> None:
    """A project file travels with every run (flow parameter, runs.parameters, config.json, report), so a
    password in ``storage.metadata_url`` is refused before anything runs (``CREDENTIALS_IN_CONFIG``, exit 2),
    and nothing of it reaches the output, the Prefect server or the metadata store."""
    haystack = Haystack()
    with _role_database(postgres_url, "zf_config_role", secrets.config_run_db_password, SEED + 2) as urls:
        role_url, superuser_url = urls
        result, _ = _run(PAYERNE_10MIN, _env(secrets, prefect_api, f"s3://{s3_bucket}/secrets-config", "", tmp_path),
                         "--set", f"storage.metadata_url={role_url}")
        haystack.add("stdout", result.stdout)
        haystack.add("stderr", result.stderr)
        assert result.returncode == 2, result.stderr[-4000:]
        assert "CREDENTIALS_IN_CONFIG" in result.stdout + result.stderr
        _collect_prefect(prefect_api, haystack)
        _collect_database(superuser_url, "metadata", haystack)
    needles = secrets.needles({"metadata password in the config": secrets.config_run_db_password})
    leaks = haystack.leaks(needles)
    assert leaks == [], "secrets leaked:\n" + "\n".join(leaks[:50])


# ---- unit level: the CLI never echoes a configured password ---------------------------------------------------

def _config_url(secrets: Secrets) -> str:
    return f"postgresql://zeitflow:{secrets.config_db_password}@db.example.org:5432/zeitflow"


def test_check_config_refuses_and_masks_a_metadata_password(secrets: Secrets) -> None:
    result = CliRunner().invoke(app, ["check-config", str(PAYERNE_10MIN), "--set",
                                      f"storage.metadata_url={_config_url(secrets)}"])
    assert result.exit_code == 2, result.output
    assert "CREDENTIALS_IN_CONFIG" in result.output and "zeitflow:***@db.example.org" in result.output
    assert secrets.config_db_password not in result.output


@pytest.mark.parametrize("overrides", [
    ["--set", "storage.metadata_url={url}", "--set", "sources.0.load.timezone=Nowhere/Else"],
    ["--set", "storage.metadata_url=[{url}]"],
    ["--set", "storage.metadata_urll={url}"],
    ["--set", "storage={url}"],
    ["--set", "storage.root={url}", "--set", "project=../x"],
    ["--set", "storage.metadata_url={url}", "--set", "sources.0.name={url}"],
])
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_parameter_errors_do_not_echo_the_metadata_password(secrets: Secrets, command: str,
                                                            overrides: list[str]) -> None:
    """Invalid configs holding a password fail validation before anything runs; no message shows it."""
    url = _config_url(secrets)
    args = [command, str(PAYERNE_10MIN), *[o.format(url=url) for o in overrides]]
    if command == "run":
        args.append("--json")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert secrets.config_db_password not in result.output
    assert quote(secrets.config_db_password, safe="") not in result.output
    if command == "run":
        payload = json.loads(result.output.strip().splitlines()[-1])
        assert payload["status"] == "failed" and payload["error"] == "ParameterError"
        assert secrets.config_db_password not in json.dumps(payload)
