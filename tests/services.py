"""Real services for integration tests (see services.md): a private PostgreSQL cluster and an
S3-compatible moto server.

Import from conftest files (``from tests.services import start_postgres, start_s3``); this module
is not a conftest itself. When a binary or package is missing, the helpers skip the test with a
reason, except under ``CI=true``, where a missing service is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

BUCKET = "zeitflow-test"
PG_USER = "postgres"
PG_DATABASES = ("zeitflow", "prefect")


def in_ci() -> bool:
    """True when the environment says this is CI (``CI=true``)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip locally, fail under ``CI=true``."""
    if in_ci():
        pytest.fail(f"required test service unavailable under CI=true: {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------------------------
# PostgreSQL


def postgres_bin() -> Path | None:
    """The newest PostgreSQL server ``bin`` folder holding ``initdb`` and ``pg_ctl``, or None."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split(".")],
    )
    for folder in reversed(candidates):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent
    return None


def _as_postgres(argv: list[str]) -> list[str]:
    """Run as the ``postgres`` user when we are root (initdb refuses root)."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", PG_USER, "--", *argv]


def _run(argv: list[str], what: str, timeout: float = 120) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise RuntimeError(f"{what} failed ({result.returncode}): {output}")


@contextlib.contextmanager
def start_postgres(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Start a private PostgreSQL cluster; yield ``postgresql+psycopg://postgres:<pw>@127.0.0.1:<port>/zeitflow``.

    The cluster lives in a fresh folder under /tmp (pytest's tmp paths may not be reachable by the
    ``postgres`` user), with its unix socket inside it. TCP connections need the generated password
    (scram-sha-256); the socket is trusted. Databases ``zeitflow`` and ``prefect`` are created.
    The server is stopped and the folder removed on exit; its log is copied to ``tmpdir`` if given.
    """
    pgbin = postgres_bin()
    if pgbin is None:
        unavailable("PostgreSQL server binaries (initdb, pg_ctl) not found; apt-get install -y postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        unavailable("runuser not found: needed to run initdb as the postgres user")
    try:
        import pwd

        pg_account = pwd.getpwnam(PG_USER) if os.geteuid() == 0 else None
    except KeyError:
        unavailable("no 'postgres' system user to run the server as")
    try:
        import psycopg
    except ImportError:  # pragma: no cover - psycopg is a dependency
        unavailable("psycopg is not installed")

    base = Path(tempfile.mkdtemp(prefix="zeitflow-pg-", dir="/tmp"))
    data, log = base / "data", base / "server.log"
    started = False
    try:
        try:
            port, password = _init_and_start(pgbin, base, pg_account)
            started = True
            with psycopg.connect(host=str(base), port=port, user=PG_USER, dbname="postgres",
                                 autocommit=True) as conn:
                for name in PG_DATABASES:
                    conn.execute(f'CREATE DATABASE "{name}"')
        except (RuntimeError, subprocess.TimeoutExpired, OSError, psycopg.Error) as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            pytest.fail(f"PostgreSQL could not be started: {exc}\n{tail}", pytrace=False)
        yield f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/zeitflow"
    finally:
        if started:
            _stop_postgres(pgbin, data)
        if tmpdir is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copy(log, Path(tmpdir) / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


def _stop_postgres(pgbin: Path, data: Path) -> None:
    """pg_ctl stop; if that fails, signal the postmaster of this cluster (by its pid file) directly."""
    try:
        _run(_as_postgres([str(pgbin / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
             "pg_ctl stop", timeout=60)
    except (RuntimeError, subprocess.TimeoutExpired, OSError):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((data / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)


def _init_and_start(pgbin: Path, base: Path, pg_account: object | None) -> tuple[int, str]:
    """initdb (password auth over TCP, trust on the socket) and pg_ctl start; returns (port, password)."""
    base.chmod(0o755)
    data, log = base / "data", base / "server.log"
    password = secrets.token_urlsafe(16)
    pwfile = base / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if pg_account is not None:
        uid, gid = pg_account.pw_uid, pg_account.pw_gid  # type: ignore[attr-defined]
        os.chown(base, uid, gid)
        os.chown(pwfile, uid, gid)
    _run(_as_postgres([str(pgbin / "initdb"), "-D", str(data), "-U", PG_USER, "-E", "UTF8",
                       "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]), "initdb")
    pwfile.unlink()
    for attempt in range(3):
        port = free_port()
        options = (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        try:
            _run(_as_postgres([str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                               "-o", options, "start"]), "pg_ctl start")
            return port, password
        except RuntimeError:
            if attempt == 2:
                raise
    raise RuntimeError("unreachable")  # pragma: no cover


def database_url(url: str, database: str) -> str:
    """``url`` pointing at another database of the same cluster (e.g. ``prefect``)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=database).render_as_string(hide_password=False)


# --------------------------------------------------------------------------------------------
# S3 (moto server)


@contextlib.contextmanager
def start_s3(bucket: str = BUCKET) -> Iterator[str]:
    """Start moto's S3 server on 127.0.0.1 (a free port, in a thread); create ``bucket``; yield the
    endpoint URL ``http://127.0.0.1:<port>``. moto accepts any credentials."""
    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        unavailable("moto[server] is not installed (pip install 'moto[server]')")
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        unavailable(f"moto server mode unavailable: {exc}")
    import boto3
    from botocore.config import Config

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"),
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket=bucket)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield endpoint
    finally:
        server.stop()
