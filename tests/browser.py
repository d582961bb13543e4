"""Headless Chromium for browser tests (services.md): Debian's ``/usr/bin/chromium`` driven by the
Playwright Python package (never ``playwright install``).

Import from test modules (``from tests.browser import chromium_page``); this module is not a
conftest. When Chromium or Playwright is missing the test is skipped with a reason, except under
``CI=true``, where that is a failure (``tests.services.unavailable``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import unavailable

CHROMIUM = Path("/usr/bin/chromium")

#: Flags from services.md: headless, no sandbox (root), and no attempts to reach outside hosts.
CHROMIUM_ARGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class BrowserPage:
    """A Playwright ``Page`` plus the console errors and uncaught page errors seen so far."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", self._on_page_error)

    def _on_console(self, message: Any) -> None:
        if message.type == "error":
            self.console_errors.append(message.text)

    def _on_page_error(self, error: Any) -> None:
        self.page_errors.append(str(error))

    @property
    def errors(self) -> list[str]:
        """Console errors followed by page errors."""
        return [*self.console_errors, *self.page_errors]

    def __getattr__(self, name: str) -> Any:  # delegate goto, locator, screenshot, ... to the Page
        return getattr(self.page, name)


def require_chromium() -> None:
    """Skip (locally) or fail (CI) unless Chromium and the Playwright package are available."""
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        unavailable(f"{CHROMIUM} not found; apt-get install -y chromium")
    if importlib.util.find_spec("playwright") is None:
        unavailable("the playwright Python package is not installed (pip install playwright)")


@contextlib.contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1000), timeout_ms: float = 30_000) -> Iterator[BrowserPage]:
    """Launch headless Chromium with a fresh user-data dir and yield a :class:`BrowserPage`.

    The wrapper behaves like a Playwright ``Page`` (``goto``, ``locator``, ``screenshot``, ...) and
    collects console messages of type ``error`` in ``console_errors`` and uncaught exceptions in
    ``page_errors``. The browser and its profile folder are removed on exit.
    """
    require_chromium()
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    profile = tempfile.mkdtemp(prefix="zeitflow-chromium-")
    try:
        with sync_playwright() as playwright:
            try:
                context = playwright.chromium.launch_persistent_context(
                    profile, executable_path=str(CHROMIUM), headless=True, args=list(CHROMIUM_ARGS),
                    viewport={"width": viewport[0], "height": viewport[1]}, timeout=timeout_ms,
                )
            except PlaywrightError as exc:  # present but broken: a failure, as for PostgreSQL
                pytest.fail(f"Chromium could not be started: {exc}", pytrace=False)
            try:
                context.set_default_timeout(timeout_ms)
                page = context.pages[0] if context.pages else context.new_page()
                yield BrowserPage(page)
            finally:
                context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
