"""Safety of names, paths, exports and the server start script (issue 9, "Safety").

* project, source and dataset names, artifact keys, partitions and model names that could escape their
  folder (``../``, absolute paths, control characters, ``..``, empty, too long) are ``INVALID_NAME`` /
  ``INVALID_PARTITION`` before anything is written;
* plot file names made from hostile channel or model names are single, safe, distinct path segments;
* the canonical CSV export neutralises formula-looking header fields and leaves every numeric cell alone;
* ``scripts/prefect-server.sh`` binds to 127.0.0.1 by default, documents ``PREFECT_SERVER_API_AUTH_STRING``
  and refuses a non-loopback bind without it before starting anything.
"""

from __future__ import annotations

import copy
import os
import posixpath
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zeitflow.config import parse_config
from zeitflow.errors import ParameterError
from zeitflow.evaluation.plots import plot_name
from zeitflow.io.artifacts import ArtifactStore
from zeitflow.io.canonical_csv import to_csv_bytes
from zeitflow.partitions import parse_partition

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "prefect-server.sh"
SAFE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


#: Names that must never become a folder or file name.
HOSTILE_NAMES: list[Any] = [
    "../escape", "..", ".", "a/../../b", "/abs", "/etc/passwd", "a/b", "a\\b", "C:\\x", "~root",
    "", " ", "a" * 101, "a\x00b", "a\tb", "a\rb", "a\nb", "\x1b[31mred", "-rf", ".hidden", "a..b",
    "é", "a b", "a:b", "a*b", "a$b",
    "abc\n",
]


def _base_config() -> dict[str, Any]:
    return {"project": "p", "sources": [{"name": "s", "path": "x.csv"}]}


def _invalid_name(call: Any) -> ParameterError:
    with pytest.raises(ParameterError) as caught:
        call()
    assert caught.value.code == "INVALID_NAME", caught.value
    return caught.value


# ---- config names -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_project_name_is_invalid_name(name: str) -> None:
    data = _base_config()
    data["project"] = name
    error = _invalid_name(lambda: parse_config(data))
    assert error.details["errors"][0]["loc"] == "project"


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_source_name_is_invalid_name(name: str) -> None:
    data = _base_config()
    data["sources"][0]["name"] = name
    error = _invalid_name(lambda: parse_config(data))
    assert error.details["errors"][0]["loc"] == "sources.0.name"


def test_plain_names_of_up_to_100_characters_are_accepted() -> None:
    data = _base_config()
    data["project"] = "Payerne-15min_clean.v2"
    data["sources"][0]["name"] = "x" * 100
    config = parse_config(data)
    assert (config.project, config.sources[0].name) == ("Payerne-15min_clean.v2", "x" * 100)


@pytest.mark.parametrize("name", ["../x", "/abs", "a/b", "a\x00b", "", "a" * 101, ".."])
def test_hostile_dataset_name_is_invalid_name(name: str) -> None:
    data = copy.deepcopy(_base_config())
    data["dataset"] = {
        "name": name,
        "windows": {"n_in": 2, "n_out": 1, "stride_minutes": 60,
                    "inputs_spec": {"t": {"horizon_start_hours": -1, "horizon_end_hours": 0}},
                    "outputs_spec": {"t": {"horizon_start_hours": 1, "horizon_end_hours": 1}}},
    }
    _invalid_name(lambda: parse_config(data))


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs", "a\\b", "..", "a.b", "a\x00b", "a\nb", "", "m" * 65])
def test_hostile_model_name_is_invalid_name(name: str) -> None:
    """Model names key ``models/.../{name}/`` folders: only ``[A-Za-z0-9_-]``, 1-64 characters."""
    data = _base_config()
    data["dataset"] = {
        "windows": {"n_in": 2, "n_out": 1, "stride_minutes": 60,
                    "inputs_spec": {"t": {"horizon_start_hours": -1, "horizon_end_hours": 0}},
                    "outputs_spec": {"t": {"horizon_start_hours": 1, "horizon_end_hours": 1}}},
    }
    data["training"] = {"models": [{"kind": "linear", "name": name}]}
    error = _invalid_name(lambda: parse_config(data))
    assert error.details["errors"][0]["loc"].startswith("training.models.0")


# ---- artifact keys --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("part", ["..", ".", "../x", "", "a\x00", "a\n", "a b", "é", "a\\b", "%2e%2e"])
@pytest.mark.parametrize("field", ["project", "stage", "params_hash", "input_hash"])
def test_key_for_rejects_hostile_parts(tmp_path: Path, field: str, part: str) -> None:
    store = ArtifactStore(str(tmp_path))
    parts = {"project": "p", "stage": "load", "params_hash": "a" * 64, "input_hash": "b" * 64}
    parts[field] = part
    _invalid_name(lambda: store.key_for(parts["project"], parts["stage"], parts["params_hash"],
                                        parts["input_hash"]))


@pytest.mark.parametrize("name", ["../x.parquet", "a/../../x", "/abs.parquet", "a//b", "a/", "x/..", ""])
def test_key_for_rejects_traversal_in_the_file_name(tmp_path: Path, name: str) -> None:
    store = ArtifactStore(str(tmp_path))
    _invalid_name(lambda: store.key_for("p", "load", "a" * 64, "b" * 64, name))


@pytest.mark.parametrize("parts", [("..",), ("runs", "../../etc"), ("/abs",), ("runs", "r1", "plots/../../x"),
                                   ("a\x00",), ("",)])
def test_uri_rejects_traversal(tmp_path: Path, parts: tuple[str, ...]) -> None:
    _invalid_name(lambda: ArtifactStore(str(tmp_path)).uri(*parts))


@pytest.mark.parametrize("root", ["/srv/zeitflow", "s3://bucket/prefix"])
@settings(max_examples=200, deadline=None, derandomize=True)
@given(parts=st.lists(st.text(min_size=0, max_size=12), min_size=1, max_size=4))
def test_every_accepted_uri_stays_under_the_root(root: str, parts: list[str]) -> None:
    """Property: whatever the parts, ``uri`` either refuses them or names an object strictly below the root."""
    store = ArtifactStore(root, storage_options={})
    try:
        uri = store.uri(*parts)
    except ParameterError as exc:
        assert exc.code == "INVALID_NAME"
        return
    assert uri.startswith(store.root_uri + "/")
    relative = uri[len(store.root_uri) + 1:]
    assert posixpath.normpath(relative) == relative
    assert not relative.startswith(("/", "..")) and "\\" not in relative
    assert all(set(piece) <= SAFE_CHARS and piece not in ("", ".", "..") for piece in relative.split("/"))


# ---- partitions -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "../2016-06-01", "2016-06-01/../../etc", "/etc/passwd", "2016-06-01/", "/2016-06-01", "2016-06-01\x00",
    "2016-06-01\n", " 2016-06-01", "2016-06-01T00:00Z/../x", "2016-06-01T00:00Z/2016-06-01T06:00Z/..",
    "..", ".", "", "2016-06-01;rm -rf /", "2016%2F06%2F01",
])
def test_hostile_partition_is_invalid_partition(text: str) -> None:
    with pytest.raises(ParameterError) as caught:
        parse_partition(text)
    assert caught.value.code == "INVALID_PARTITION"


def test_window_partition_key_is_one_safe_segment() -> None:
    key = parse_partition("2016-06-01T00:00+02:00/2016-06-01T06:00Z").key
    assert set(key) <= SAFE_CHARS and "/" not in key and ".." not in key


# ---- plot and report file names ----------------------------------------------------------------------------------

HOSTILE_CHANNELS = [
    "../../etc/passwd", "/abs", "a/b", "a\\b", "x\x00y", "line\nbreak", "\x1b[2J", "", " ", "é", "Temperatur [°C]",
    "GHI (W/m^2)", "=cmd|' /C calc'!A0", "CON", "a" * 300, "a/b" * 50, ".hidden", "-rf",
]


@pytest.mark.parametrize("name", HOSTILE_CHANNELS)
@pytest.mark.parametrize("prefix", ["violin_input", "metric_vs_horizon", "test_samples", "loss", "stage"])
def test_plot_name_is_one_safe_segment(prefix: str, name: str) -> None:
    file = plot_name(prefix, name)
    assert set(file) <= SAFE_CHARS, file
    assert file.startswith(prefix + "_") and file.endswith(".png")
    assert "/" not in file and "\\" not in file and len(file) <= 255


def test_plot_names_of_distinct_hostile_names_are_distinct() -> None:
    names = [*HOSTILE_CHANNELS, "a_b", "a?b", "a b", "a__b", "x_y", "etc_passwd", "_abs"]
    files = [plot_name("metric_vs_horizon", n) for n in names]
    assert len(set(files)) == len(set(names))


def test_plot_name_rejects_a_hostile_prefix() -> None:
    for prefix in ("", "../x", "a/b", "a\x00"):
        with pytest.raises(ValueError):
            plot_name(prefix, "t")




@pytest.mark.parametrize("name", [
    "t", "Temperatur [°C]", "a/b", "x\x00y", "é",
    "temp.", "a..b", "../../etc/passwd",
])
def test_plot_names_are_accepted_by_the_artifact_store(tmp_path: Path, name: str) -> None:
    """The run-results writer puts plots at ``store.uri("runs", run_id, "plots/<file>")``."""
    store = ArtifactStore(str(tmp_path))
    uri = store.uri("runs", "r1", f"plots/{plot_name('violin_input', name)}")
    assert uri.startswith(store.root_uri + "/runs/r1/plots/")




def test_dataset_violin_names_are_safe_segments() -> None:
    from tasks.dataset import _violin_uri

    base = "file:///root/p/dataset/h/i/ds.parquet"
    for name in HOSTILE_CHANNELS:
        uri = _violin_uri(base, f"input:{name}")
        assert uri.startswith("file:///root/p/dataset/h/i/ds.violin-input_")
        file = uri.rsplit("/", 1)[-1]
        assert uri.count("/") == base.count("/") and "\\" not in file
        assert not any(ord(c) < 32 for c in file)


def test_dataset_violin_names_of_distinct_channels_are_distinct() -> None:
    from tasks.dataset import _violin_uri

    base = "file:///root/p/dataset/h/i/ds.parquet"
    assert _violin_uri(base, "input:a/b") != _violin_uri(base, "input:a_b")


# ---- canonical CSV export ----------------------------------------------------------------------------------------


def test_csv_export_neutralises_formula_headers_and_keeps_numbers() -> None:
    index = pd.DatetimeIndex(pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:15", "2024-01-01 00:30"], utc=True),
                             name="utc").as_unit("ns")
    columns = {
        "=HYPERLINK(\"http://x\")": [-1.5, 2.0, -0.0],
        "+1+1": [-1e-07, -3.0, 0.25],
        "-2+3": [-273.15, 1e300, -1e300],
        "@SUM(A1)": [-12.0, np.nan, 7.0],
        "plain": [-5.0, 5.0, -0.5],
        "a=b": [1.0, 2.0, 3.0],
    }
    frame = pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in columns.items()}, index=index)
    text = to_csv_bytes(frame).decode("utf-8")
    lines = text.splitlines()
    header = lines[0].split(";")
    assert header[0] == "UTC"
    assert header[1:] == ['"\'=HYPERLINK(""http://x"")"', "'+1+1", "'-2+3", "'@SUM(A1)", "plain", "a=b"]
    for field in header:
        assert not field.lstrip('"').startswith(("=", "+", "-", "@")), field
    rows = [line.split(";") for line in lines[1:]]
    assert [r[0] for r in rows] == ["2024-01-01 00:00:00", "2024-01-01 00:15:00", "2024-01-01 00:30:00"]
    assert rows[0][1:] == ["-1.5", "-1e-07", "-273.15", "-12.0", "-5.0", "1.0"]
    assert rows[1][1:] == ["2.0", "-3.0", "1e+300", "", "5.0", "2.0"]
    assert rows[2][1:] == ["-0.0", "0.25", "-1e+300", "7.0", "-0.5", "3.0"]
    assert not any(cell.startswith("'") for row in rows for cell in row)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(name=st.text(min_size=1, max_size=20).filter(lambda s: s != "utc"),
       values=st.lists(st.floats(allow_nan=False, allow_infinity=False), min_size=1, max_size=5))
def test_csv_cells_are_never_prefixed_and_headers_never_start_a_formula(name: str, values: list[float]) -> None:
    index = pd.date_range("2024-01-01", periods=len(values), freq="15min", tz="UTC", name="utc").as_unit("ns")
    frame = pd.DataFrame({name: np.asarray(values, dtype=np.float64)}, index=index)
    lines = to_csv_bytes(frame).decode("utf-8").split("\n")
    header_field = lines[0][len("UTC;"):] if "\n" not in name and "\r" not in name else None
    if header_field is not None:
        assert not header_field.lstrip('"').startswith(("=", "+", "-", "@"))
    cells = [line.rsplit(";", 1)[-1] for line in lines[-len(values) - 1:-1]]
    assert [float(c) for c in cells] == values
    assert cells == [repr(float(v)) for v in values]


# ---- Prefect server start script ---------------------------------------------------------------------------------


def test_server_script_defaults_to_loopback_and_documents_the_auth_string() -> None:
    text = SCRIPT.read_text(encoding="utf-8")
    assert 'HOST="${PREFECT_SERVER_API_HOST:-127.0.0.1}"' in text
    assert "PREFECT_SERVER_API_AUTH_STRING" in text and "PREFECT_API_AUTH_STRING" in text
    assert "--host \"$HOST\"" in text


def _stub_prefect(tmp_path: Path) -> tuple[Path, Path]:
    """A fake ``prefect`` executable that records its arguments and environment instead of starting a server."""
    record = tmp_path / "prefect-called.txt"
    stub = tmp_path / "prefect"
    stub.write_text(
        "#!/usr/bin/env bash\n"
        f"printf '%s\\n' \"$@\" > '{record}'\n"
        f"printf 'AUTH=%s\\nDB=%s\\n' \"${{PREFECT_SERVER_API_AUTH_STRING:-}}\" "
        f"\"${{PREFECT_SERVER_DATABASE_CONNECTION_URL:-}}\" >> '{record}'\n",
        encoding="utf-8",
    )
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return stub, record


def _run_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    bash = shutil.which("bash")
    assert bash is not None, "bash runs the server start script and is part of every supported machine"
    stub, record = _stub_prefect(tmp_path)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("PREFECT_", "ZEITFLOW_")) and k != "DO_NOT_TRACK"}
    full_env = {**base, "PREFECT_BIN": str(stub), "PREFECT_HOME": str(tmp_path / "home"), **env}
    result = subprocess.run([bash, str(SCRIPT)], env=full_env, capture_output=True, text=True, timeout=60,
                            check=False)
    return result, record


def test_server_script_binds_to_loopback_by_default(tmp_path: Path) -> None:
    result, record = _run_script(tmp_path)
    assert result.returncode == 0, result.stderr
    args = record.read_text().splitlines()
    assert args[:5] == ["server", "start", "--host", "127.0.0.1", "--port"]
    assert "http://127.0.0.1:4200" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.org", "127.0.0.1.nip.io"])
def test_server_script_refuses_an_exposed_bind_without_auth(tmp_path: Path, host: str) -> None:
    result, record = _run_script(tmp_path, PREFECT_SERVER_API_HOST=host)
    assert result.returncode != 0
    assert "PREFECT_SERVER_API_AUTH_STRING" in result.stderr
    assert not record.exists(), "the script started the server although it refused the bind"
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("host", ["localhost", "::1"])
def test_server_script_accepts_other_loopback_names(tmp_path: Path, host: str) -> None:
    result, record = _run_script(tmp_path, PREFECT_SERVER_API_HOST=host)
    assert result.returncode == 0, result.stderr
    assert record.read_text().splitlines()[3] == host


def test_server_script_binds_an_exposed_host_with_auth_and_hides_passwords(tmp_path: Path) -> None:
    auth, db_password = "admin:Auth-7f3c9e1b", "DbPw-51d2c8a4"
    result, record = _run_script(
        tmp_path, PREFECT_SERVER_API_HOST="0.0.0.0", PREFECT_SERVER_API_AUTH_STRING=auth,
        ZEITFLOW_PREFECT_DB_URL=f"postgresql://prefect:{db_password}@db:5432/prefect",
    )
    assert result.returncode == 0, result.stderr
    recorded = record.read_text().splitlines()
    assert recorded[2:4] == ["--host", "0.0.0.0"]
    assert f"AUTH={auth}" in recorded
    assert f"DB=postgresql+asyncpg://prefect:{db_password}@db:5432/prefect" in recorded
    assert db_password not in result.stderr + result.stdout and "Auth-7f3c9e1b" not in result.stderr + result.stdout
    assert "prefect:***@db" in result.stderr


def test_server_script_allows_an_unauthenticated_exposed_bind_only_when_asked(tmp_path: Path) -> None:
    result, record = _run_script(tmp_path, PREFECT_SERVER_API_HOST="0.0.0.0", ZEITFLOW_ALLOW_UNAUTHENTICATED="1")
    assert result.returncode == 0, result.stderr
    assert record.read_text().splitlines()[2:4] == ["--host", "0.0.0.0"]
