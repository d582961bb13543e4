"""Acceptance (b): headless Chromium against the local Prefect UI of a deployment stack. The deployment page
of ``pipeline-adhoc`` shows the parameter form generated from the flow signature (the ``PipelineConfig``
model), and a completed run shows its artifacts; screenshots are kept under the test's tmp folder.

Prefect 3.9 serves two UIs: the default (React, "V2") under ``/v2/...``, which the root redirects to, and the
older one (Vue, "V1") at the bare paths that ``prefect deploy`` prints (``/deployments/deployment/<id>``).
The V2 pages are checked in full, the V1 form once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from deployments.trigger import trigger
from tests.browser import BrowserPage, chromium_page
from tests.prefect_stack import DeploymentStack, deployment_stack

pytestmark = pytest.mark.integration

CONFIG = "examples/payerne_10min_temperature.yaml"
#: HTTP errors of the Prefect UI itself, not ours: static icons it asks for at the wrong path (favicons,
#: /completed.svg, which the V2 UI serves under /v2/), and the V2 artifact page querying the task run of an
#: artifact that was created at flow level (no task run) with an empty id (422).
UI_HTTP_NOISE = (
    re.compile(r"^404 GET \S+/[\w.-]+\.(ico|png|svg) "),
    re.compile(r'^422 POST \S+/api/task_runs/filter .*"any_":\[""\]'),
)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[DeploymentStack]:
    storage = tmp_path_factory.mktemp("ui-storage")
    env = {"ZEITFLOW_STORAGE_ROOT": f"file://{storage}", "ZEITFLOW_METADATA_URL": f"sqlite:///{storage}/zf.db"}
    with deployment_stack(tmp_path_factory.mktemp("ui-stack"), postgres_url, workers=1, env=env) as started:
        yield started


@pytest.fixture(scope="module")
def completed_run(stack: DeploymentStack) -> dict[str, Any]:
    """A COMPLETED run of pipeline-adhoc, started over REST."""
    result = trigger("pipeline/pipeline-adhoc", {"config_file": CONFIG}, "ui-test-run", api_url=stack.api_url,
                     timeout=420, poll=1)
    assert result["state_type"] == "COMPLETED", f"{result}\n{stack.logs()}"
    return result


def _local_only(page: BrowserPage, ui: str) -> list[str]:
    """Abort every request to another host, so the browser never tries to reach the internet; return the
    list that collects the local HTTP errors (status, method, URL), so a console error can be traced."""
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(ui) else route.abort())
    failed: list[str] = []

    def on_response(response: Any) -> None:
        if response.status >= 400 and response.url.startswith(ui):
            body = response.request.post_data or ""
            failed.append(f"{response.status} {response.request.method} {response.url} {body[:300]}")

    page.on("response", on_response)
    return failed


def _screenshot(page: BrowserPage, path: Path) -> Path:
    page.screenshot(path=str(path), full_page=True)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000, path
    return path


def _our_errors(page: BrowserPage, http_errors: list[str], log: Path) -> list[str]:
    """Uncaught page errors, console errors other than failed resource loads, and local HTTP errors other
    than the UI's known noise (a failed load shows in the console without its URL, so it is judged by the
    HTTP error it comes from; loads of outside hosts are aborted on purpose). Everything seen goes to ``log``."""
    log.write_text("\n".join(["console:", *page.console_errors, "page:", *page.page_errors,
                              "http:", *http_errors]))
    console = [e for e in page.console_errors if not e.startswith("Failed to load resource")]
    http = [e for e in http_errors if not any(p.search(e) for p in UI_HTTP_NOISE)]
    return console + page.page_errors + http


def test_deployment_page_shows_the_parameter_form_of_the_config_model(
    stack: DeploymentStack, tmp_path: Path
) -> None:
    deployment = stack.deployment("pipeline", "pipeline-adhoc")
    ui = stack.ui_url
    with chromium_page(viewport=(1400, 1000)) as page:
        http_errors = _local_only(page, ui)
        page.goto(f"{ui}/v2/deployments/deployment/{deployment['id']}", wait_until="networkidle")
        page.get_by_text("pipeline-adhoc", exact=True).first.wait_for()
        page.get_by_role("tab", name="Parameters").click()
        page.get_by_text(CONFIG, exact=True).first.wait_for()  # the default from prefect.yaml
        _screenshot(page, tmp_path / "deployment-parameters.png")

        page.get_by_role("button", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Custom run").click()
        page.wait_for_url("**/run?**")
        for label in ("config (Optional)", "config_file (Optional)", "overrides (Optional)",
                      "interaction (Optional)"):
            page.get_by_text(label, exact=True).wait_for()
        values = page.locator("textarea").evaluate_all("nodes => nodes.map(n => n.value)")
        assert CONFIG in values, values
        # the config parameter is the PipelineConfig model: choosing it renders the model's own fields
        page.get_by_role("tab", name="PipelineConfig").click()
        page.get_by_text("A whole project: its name", exact=False).first.wait_for()
        for field in ("Project", "Sources", "Description (Optional)"):
            page.get_by_text(field, exact=True).first.wait_for()
        _screenshot(page, tmp_path / "custom-run-form.png")

        # the classic UI, where `prefect deploy` links to, renders the same form
        page.goto(f"{ui}/deployments/deployment/{deployment['id']}/run", wait_until="networkidle")
        page.get_by_role("button", name="PipelineConfig").click()
        for field in ("Project", "Sources"):
            page.get_by_text(field, exact=True).first.wait_for()
        _screenshot(page, tmp_path / "custom-run-form-v1.png")
        ours = _our_errors(page, http_errors, tmp_path / "console.txt")
    assert ours == [], ours


def test_completed_run_page_shows_its_artifacts(
    stack: DeploymentStack, completed_run: dict[str, Any], tmp_path: Path
) -> None:
    artifacts = stack.artifacts(completed_run["id"])
    keys = sorted(a["key"] for a in artifacts if a.get("key"))
    assert keys, artifacts
    ui = stack.ui_url
    with chromium_page(viewport=(1400, 1000)) as page:
        http_errors = _local_only(page, ui)
        page.goto(f"{ui}/v2/runs/flow-run/{completed_run['id']}", wait_until="networkidle")
        page.get_by_text(completed_run["name"], exact=True).first.wait_for()
        page.get_by_text("Completed", exact=True).first.wait_for()
        page.get_by_role("tab", name="Artifacts").click()
        for key in keys:
            page.get_by_text(key, exact=True).first.wait_for()
        _screenshot(page, tmp_path / "flow-run-artifacts.png")

        report = next(k for k in keys if k.endswith("-report"))
        page.get_by_text(report, exact=True).first.click()
        page.wait_for_url("**/artifacts/**")
        page.get_by_text(report, exact=True).first.wait_for()
        _screenshot(page, tmp_path / "artifact-report.png")
        ours = _our_errors(page, http_errors, tmp_path / "console.txt")
    assert ours == [], ours
