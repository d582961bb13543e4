"""Fixtures for tests against real services: a private PostgreSQL cluster and a moto S3 server.

Every test in this folder is marked ``integration``. Services start once per session and stop at
the end; missing binaries skip locally and fail under ``CI=true`` (see ``tests/services.py``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
_REPO = _HERE.parents[1]
if str(_REPO) not in sys.path:  # make ``tests.services`` importable without a tests/__init__.py
    sys.path.insert(0, str(_REPO))

from tests.services import BUCKET, start_postgres, start_s3  # noqa: E402

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test below this folder ``integration``."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of the ``zeitflow`` database of a private PostgreSQL cluster (``prefect`` exists too)."""
    with start_postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """Endpoint of a moto S3 server with bucket ``zeitflow-test``; sets ``AWS_ENDPOINT_URL`` and test
    credentials for the session and restores the environment afterwards."""
    with start_s3(BUCKET) as endpoint, pytest.MonkeyPatch.context() as patch:
        patch.setenv("AWS_ENDPOINT_URL", endpoint)
        for name, value in S3_ENV.items():
            patch.setenv(name, value)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "ZEITFLOW_S3_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        yield endpoint


@pytest.fixture(scope="session")
def s3_bucket(s3_endpoint: str) -> str:
    """Name of the test bucket."""
    return BUCKET
