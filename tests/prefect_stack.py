"""A real deployment stack for integration tests: a Prefect server on a fresh PostgreSQL database (started
with ``scripts/prefect-server.sh``), the ``zeitflow-process`` work pool, ``prefect deploy --all`` from the
repository root and N process workers (``scripts/worker.sh``).

Import from test modules (``from tests.prefect_stack import deployment_stack``); this is not a conftest.
The module is not named ``tests/deployments.py`` on purpose: pytest puts ``tests/`` on ``sys.path``, where such a
file would shadow the ``deployments`` package.
Use one stack per module (a module-scoped fixture): starting it takes 20-60 s on a small machine.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.services import database_url, free_port, unavailable

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PREFECT = BIN / "prefect"
SERVER_SCRIPT = REPO / "scripts" / "prefect-server.sh"
WORKER_SCRIPT = REPO / "scripts" / "worker.sh"
POOL = "zeitflow-process"
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})

#: Quiet, offline and quick to pick up runs (services.md).
BASE_ENV: dict[str, str] = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "GX_ANALYTICS_ENABLED": "false",
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PREFECT_WORKER_QUERY_SECONDS": "2",
    "PREFECT_RUNNER_POLL_FREQUENCY": "2",
    "PREFECT_CLI_PROMPT": "false",
}


def _tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for failure messages."""
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def create_database(url: str, prefix: str) -> str:
    """Create a fresh database ``<prefix>_<random>`` in the cluster of ``url`` (a SQLAlchemy psycopg URL);
    return the same URL pointing at it."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"{prefix}_{secrets.token_hex(4)}"
    parsed = make_url(url)
    with psycopg.connect(host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
                         dbname=parsed.database, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return database_url(url, name)


def drop_database(url: str) -> None:
    """Drop the database of ``url`` (forcing out leftover connections); errors are ignored."""
    import psycopg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    with contextlib.suppress(psycopg.Error), psycopg.connect(
            host=parsed.host, port=parsed.port, user=parsed.username, password=parsed.password,
            dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{parsed.database}" WITH (FORCE)')


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 30) -> None:
    """Send ``sig`` to ``proc`` and wait; then SIGTERM (a process started from a background shell ignores
    SIGINT); finally kill its whole session (it was started in a new one), flow-run children included."""
    for signum, wait in ((sig, timeout), (signal.SIGTERM, 10.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


@dataclass
class DeploymentStack:
    """What :func:`deployment_stack` started: the API URL, the processes and their log files."""

    api_url: str
    home: Path
    env: dict[str, str]
    server: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    deploy_output: str = ""

    @property
    def ui_url(self) -> str:
        """The UI root (the API URL without ``/api``)."""
        return self.api_url.removesuffix("/api")

    def http(self) -> httpx.Client:
        """A plain HTTP client on the API (use as a context manager)."""
        return httpx.Client(base_url=self.api_url, timeout=30)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """One API call; the decoded JSON body (``None`` when empty). Raises on HTTP errors."""
        with self.http() as client:
            response = client.request(method, path, **kwargs)
            response.raise_for_status()
            return response.json() if response.content else None

    def logs(self) -> str:
        """The ends of the server and worker logs, for assertion messages."""
        parts = [f"--- {log.name}\n{_tail(log, 2000)}" for log in sorted(self.home.glob("*.log"))]
        return "\n".join(parts)

    def start_worker(self, name: str | None = None, extra_args: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
        """Start one more process worker on the pool (``scripts/worker.sh``) in the repository root."""
        name = name or f"test-worker-{len(self.workers) + 1}"
        log = open(self.home / f"{name}.log", "wb")  # noqa: SIM115 - the worker owns it until it exits
        proc = subprocess.Popen(["bash", str(WORKER_SCRIPT), "--name", name, *extra_args], cwd=REPO,
                                env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.workers.append(proc)
        return proc

    def wait_for_workers(self, timeout: float = 90) -> None:
        """Wait until every started worker has sent a heartbeat to the pool."""
        deadline = time.monotonic() + timeout
        while True:
            for proc in self.workers:
                if proc.poll() is not None:
                    pytest.fail(f"a worker exited with {proc.returncode}\n{self.logs()}", pytrace=False)
            seen = self.request("POST", f"/work_pools/{POOL}/workers/filter", json={})
            if len([w for w in seen if w.get("status") == "ONLINE"]) >= len(self.workers):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"workers not online after {timeout}s: {seen}\n{self.logs()}", pytrace=False)
            time.sleep(1)

    def deployment(self, flow: str, name: str) -> dict[str, Any]:
        """The deployment ``flow/name`` as the API returns it."""
        return self.request("GET", f"/deployments/name/{flow}/{name}")

    def wait_for_run(self, flow_run_id: str, timeout: float = 300, poll: float = 1) -> dict[str, Any]:
        """Poll a flow run until it reaches a final state; return it. Fails the test with the logs on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.request("GET", f"/flow_runs/{flow_run_id}")
            if (run.get("state") or {}).get("type") in TERMINAL_STATES:
                return run
            if time.monotonic() > deadline:
                state = (run.get("state") or {}).get("type")
                pytest.fail(f"flow run {flow_run_id} still {state} after {timeout}s\n{self.logs()}", pytrace=False)
            time.sleep(poll)

    def artifacts(self, flow_run_id: str) -> list[dict[str, Any]]:
        """Every artifact of one flow run (its tasks' included)."""
        return self.request("POST", "/artifacts/filter",
                            json={"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}, "limit": 200})


def _require_tools() -> None:
    """Skip locally, fail under CI, when the executables the stack needs are missing."""
    if not PREFECT.exists():
        unavailable(f"prefect executable not found at {PREFECT}")
    for script in (SERVER_SCRIPT, WORKER_SCRIPT):
        if not script.exists():
            pytest.fail(f"{script} is missing", pytrace=False)


def _wait_healthy(stack: DeploymentStack, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if stack.server.poll() is not None:
            pytest.fail(f"prefect server exited with {stack.server.returncode}\n{stack.logs()}", pytrace=False)
        with contextlib.suppress(httpx.HTTPError), stack.http() as client:
            if client.get("/health", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"prefect server not healthy after {timeout}s\n{stack.logs()}", pytrace=False)
        time.sleep(0.5)


@contextlib.contextmanager
def deployment_stack(tmp_path: Path, postgres_url: str, *, workers: int = 1, env: Mapping[str, str] | None = None,
                     deploy: bool = True, server_timeout: float = 180) -> Iterator[DeploymentStack]:
    """Start the whole deployment path and yield a :class:`DeploymentStack`.

    * a Prefect server (``scripts/prefect-server.sh``, loopback, free port) on a fresh PostgreSQL database of
      the cluster of ``postgres_url`` (given as ``ZEITFLOW_PREFECT_DB_URL``, so the script's URL conversion is
      exercised); the database is dropped afterwards;
    * the ``zeitflow-process`` work pool (``deployments.work_pool``) and, with ``deploy``,
      ``prefect --no-prompt deploy --all`` from the repository root;
    * ``workers`` process workers (``scripts/worker.sh``, cwd the repository root) with ``env`` added to their
      environment (storage root, metadata URL, AWS_* ...), which their flow runs inherit.

    On exit the workers get SIGINT, then the server; logs stay in ``tmp_path`` (``*.log``).
    """
    _require_tools()
    home = Path(tmp_path)
    home.mkdir(parents=True, exist_ok=True)
    prefect_db = create_database(postgres_url, "prefect")
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    base = {key: value for key, value in os.environ.items()
            if not key.startswith(("PREFECT_", "ZEITFLOW_"))}
    base.update(BASE_ENV)
    base.update({"PREFECT_HOME": str(home / "prefect-home"), "PREFECT_BIN": str(PREFECT),
                 "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"})
    server_env = {**base, "ZEITFLOW_PREFECT_DB_URL": prefect_db, "PREFECT_SERVER_API_PORT": str(port),
                  "PREFECT_HOME": str(home / "server-home")}
    client_env = {**base, "PREFECT_API_URL": api_url, **(env or {})}

    with open(home / "server.log", "wb") as log:
        server = subprocess.Popen(["bash", str(SERVER_SCRIPT)], cwd=REPO, env=server_env, stdout=log,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    stack = DeploymentStack(api_url=api_url, home=home, env=client_env, server=server)
    try:
        _wait_healthy(stack, server_timeout)
        pool = subprocess.run([sys.executable, "-m", "deployments.work_pool"], cwd=REPO, env=client_env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert pool.returncode == 0, f"work pool setup failed:\n{pool.stdout}\n{pool.stderr}"
        if deploy:
            result = subprocess.run([str(PREFECT), "--no-prompt", "deploy", "--all"], cwd=REPO, env=client_env,
                                    capture_output=True, text=True, timeout=300, check=False)
            stack.deploy_output = result.stdout + result.stderr
            (home / "deploy.log").write_text(stack.deploy_output)
            assert result.returncode == 0, f"prefect deploy --all failed:\n{stack.deploy_output[-4000:]}"
        for _ in range(workers):
            stack.start_worker()
        if workers:
            stack.wait_for_workers()
        yield stack
    finally:
        for proc in stack.workers:
            _stop(proc, signal.SIGINT, timeout=30)
        _stop(server, signal.SIGINT, timeout=30)
        drop_database(prefect_db)
