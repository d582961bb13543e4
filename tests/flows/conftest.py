"""Flow tests share one session-scoped Prefect test harness (a temporary local API and database)."""

from __future__ import annotations

import pytest
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(autouse=True, scope="session")
def prefect_harness():
    """One harness for every flow test in the session (starting one costs seconds)."""
    with prefect_test_harness(server_startup_timeout=90):
        yield


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/flows/" in str(item.fspath):
            item.add_marker(pytest.mark.flows)
