"""Start a deployment run through Prefect's REST API and wait for its final state (architecture §6).

A small, dependency-light example client (plain HTTP with ``httpx``), equivalent to these calls::

    GET  {api}/deployments/name/{flow}/{deployment}                        -> the deployment id
    POST {api}/deployments/{id}/create_flow_run  {"parameters": {...}, "idempotency_key": "..."}
    GET  {api}/flow_runs/{flow_run_id}                                    -> poll until a final state

The same idempotency key returns the run created first (HTTP 200 instead of 201), so a retried request
never starts a second run. The server validates the parameters against the flow's signature (the
``PipelineConfig`` model) and answers 409 with the reason when they do not fit.

Command line (``PREFECT_API_URL`` or ``--api-url``; exit 0 only when the run COMPLETED)::

    python -m deployments.trigger pipeline/pipeline-adhoc \\
        --param config_file=examples/payerne_10min_temperature.yaml \\
        --param 'overrides=["sources.0.load.timezone=UTC"]' --idempotency-key adhoc-2016-06

Authentication: ``PREFECT_API_AUTH_STRING`` (``user:password``, for a server started with
``PREFECT_SERVER_API_AUTH_STRING``) is sent as HTTP basic auth, ``PREFECT_API_KEY`` (Prefect Cloud) as a
bearer token. Neither is ever printed or logged.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from typing import Any

import httpx

DEFAULT_API_URL = "http://127.0.0.1:4200/api"
TERMINAL_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "CRASHED"})

#: Exit codes of the command line.
EXIT_COMPLETED, EXIT_NOT_COMPLETED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3


class TriggerError(RuntimeError):
    """The API refused a request (unknown deployment, invalid parameters, auth) or could not be reached."""


def api_url_from_env(api_url: str | None = None) -> str:
    """``api_url``, else ``PREFECT_API_URL``, else the local default server; without a trailing slash."""
    return (api_url or os.environ.get("PREFECT_API_URL") or DEFAULT_API_URL).rstrip("/")


def auth_headers() -> dict[str, str]:
    """The Authorization header Prefect's own client would send, from the environment (never logged)."""
    auth_string = os.environ.get("PREFECT_API_AUTH_STRING")
    if auth_string:
        return {"Authorization": "Basic " + base64.b64encode(auth_string.encode("utf-8")).decode("ascii")}
    api_key = os.environ.get("PREFECT_API_KEY")
    if api_key:
        return {"Authorization": f"Bearer {api_key}"}
    return {}


def _check(response: httpx.Response, what: str) -> Any:
    """The JSON body of a successful response; otherwise ``TriggerError`` with the server's detail."""
    if response.is_success:
        return response.json()
    try:
        detail: Any = response.json()
        detail = detail.get("detail", detail) if isinstance(detail, dict) else detail
    except ValueError:
        detail = response.text[:500]
    raise TriggerError(f"{what}: HTTP {response.status_code}: {detail}")


def resolve_deployment(client: httpx.Client, deployment: str) -> dict[str, Any]:
    """The deployment named ``flow/deployment``, or by deployment name alone when that is unambiguous."""
    if "/" in deployment:
        flow_name, _, name = deployment.partition("/")
        return _check(client.get(f"/deployments/name/{flow_name}/{name}"), f"deployment {deployment!r}")
    found = _check(client.post("/deployments/filter", json={"deployments": {"name": {"any_": [deployment]}}}),
                   f"deployment {deployment!r}")
    if len(found) != 1:
        raise TriggerError(f"deployment {deployment!r}: {len(found)} deployments have this name; "
                           "give FLOW/DEPLOYMENT")
    return found[0]


def _summary(run: dict[str, Any], deployment: dict[str, Any], created: bool, timed_out: bool) -> dict[str, Any]:
    state = run.get("state") or {}
    return {
        "id": run["id"], "name": run.get("name"), "deployment": deployment.get("name"),
        "deployment_id": deployment["id"], "idempotency_key": run.get("idempotency_key"),
        "created": created, "state_type": state.get("type"), "state_name": state.get("name"),
        "state_message": state.get("message"), "timed_out": timed_out,
    }


def trigger(deployment: str, parameters: dict[str, Any] | None = None, idempotency_key: str | None = None,
            api_url: str | None = None, wait: bool = True, timeout: float = 600, poll: float = 2,
            tags: list[str] | None = None) -> dict[str, Any]:
    """Create a run of ``deployment`` (``flow/deployment`` or a unique deployment name) with ``parameters``
    (merged over the deployment's defaults by the server) and ``idempotency_key``; with ``wait``, poll it every
    ``poll`` seconds until a final state or ``timeout`` seconds.

    Returns ``id``, ``name``, ``deployment``, ``deployment_id``, ``idempotency_key``, ``created`` (False when
    the key matched an earlier run), ``state_type``/``state_name``/``state_message`` and ``timed_out``.
    Results are not fetched: they stay in the result storage of the run. Raises ``TriggerError`` when the API
    refuses a request.
    """
    body: dict[str, Any] = {"parameters": parameters or {}}
    if idempotency_key:
        body["idempotency_key"] = idempotency_key
    if tags:
        body["tags"] = tags
    try:
        with httpx.Client(base_url=api_url_from_env(api_url), headers=auth_headers(), timeout=30) as client:
            found = resolve_deployment(client, deployment)
            response = client.post(f"/deployments/{found['id']}/create_flow_run", json=body)
            run = _check(response, f"create a run of {deployment!r}")
            created = response.status_code == httpx.codes.CREATED
            deadline = time.monotonic() + timeout
            while wait and (run.get("state") or {}).get("type") not in TERMINAL_STATES:
                if time.monotonic() >= deadline:
                    return _summary(run, found, created, timed_out=True)
                time.sleep(poll)
                run = _check(client.get(f"/flow_runs/{run['id']}"), f"flow run {run['id']}")
            return _summary(run, found, created, timed_out=False)
    except httpx.HTTPError as exc:  # connection refused, timeouts: no secret is part of the message
        raise TriggerError(f"Prefect API at {api_url_from_env(api_url)} unreachable: {exc}") from exc


def _parse_param(text: str) -> tuple[str, Any]:
    """``key=value``; the value is read as JSON when it parses (numbers, lists, objects), else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def main(argv: list[str] | None = None) -> int:
    """CLI: print the run summary as JSON; exit 0 only when the run COMPLETED (with ``--no-wait``: created)."""
    parser = argparse.ArgumentParser(
        prog="python -m deployments.trigger",
        description="Start a Prefect deployment run over the REST API and wait for its final state.")
    parser.add_argument("deployment", help="FLOW/DEPLOYMENT (e.g. pipeline/pipeline-adhoc) or a unique name")
    parser.add_argument("--param", action="append", type=_parse_param, default=[], metavar="KEY=VALUE",
                        help="a flow parameter (JSON values are parsed: --param 'overrides=[\"a.b=1\"]')")
    parser.add_argument("--params", type=json.loads, default=None, metavar="JSON",
                        help="all parameters as one JSON object (--param entries override its keys)")
    parser.add_argument("--idempotency-key", default=None, help="the same key returns the run created first")
    parser.add_argument("--api-url", default=None, help=f"Prefect API URL (default $PREFECT_API_URL or "
                        f"{DEFAULT_API_URL})")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for a final state")
    parser.add_argument("--poll", type=float, default=2, help="seconds between state checks")
    parser.add_argument("--no-wait", action="store_true", help="return once the run is created")
    args = parser.parse_args(argv)

    parameters = dict(args.params or {})
    parameters.update(dict(args.param))
    try:
        result = trigger(args.deployment, parameters, args.idempotency_key, api_url=args.api_url,
                         wait=not args.no_wait, timeout=args.timeout, poll=args.poll)
    except TriggerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(json.dumps(result))
    if args.no_wait:
        return EXIT_COMPLETED
    if result["timed_out"]:
        return EXIT_TIMEOUT
    return EXIT_COMPLETED if result["state_type"] == "COMPLETED" else EXIT_NOT_COMPLETED


if __name__ == "__main__":
    sys.exit(main())
