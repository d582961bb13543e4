"""Suite-wide test environment: offline, quiet, and isolated from the user's Prefect home and
``./storage``. Set before Prefect, GX or TensorFlow are imported by any test module."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_HOME", str(REPO / ".prefect" / "tests"))
os.makedirs(os.environ["PREFECT_HOME"], exist_ok=True)
os.environ.pop("PREFECT_API_URL", None)


@pytest.fixture
def examples_dir() -> Path:
    """The bundled example configs and real data (no dependency on ../shared)."""
    return REPO / "examples"


@pytest.fixture
def storage_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the artifact root and the SQLite metadata store at a fresh folder for one test."""
    root = tmp_path / "storage"
    root.mkdir()
    monkeypatch.setenv("ZEITFLOW_STORAGE_ROOT", f"file://{root}")
    monkeypatch.setenv("ZEITFLOW_METADATA_URL", f"sqlite:///{root / 'zeitflow.db'}")
    return root
