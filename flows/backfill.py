"""Backfills (architecture §6): one run of a partitioned deployment per partition of a range.

``run_backfill`` does the work and is usable anywhere a Prefect API is configured (the CLI calls it through
the ``backfill`` flow, which only adds a run context so the progress and table artifacts have a home):

1. resolve the deployment through the Prefect API (its flow name and default parameters) and the project
   (``project``, else the config of ``config_file`` / the deployment's ``config_file`` or ``config``
   parameter, with ``overrides``), the metadata store (``metadata_url``, else the config's storage, else
   ``zeitflow.settings``) and the partition unit (``ingest``: days, ``forecast``: hours);
2. plan with ``zeitflow.backfill.plan_backfill`` from the latest run status of each partition in the
   metadata store (see that module for the ``reprocess`` table);
3. unless ``dry_run``, record the backfill, submit one flow run per planned partition with
   ``run_deployment(..., timeout=0)`` and the partition's idempotency key, keeping at most ``max_active`` of
   them not final at once (states polled every second), record each run and its final state in
   ``backfill_runs``, and finish the backfill row with a summary of every partition.

A failed partition does not stop the others; ``BackfillResult.failed`` lists them (the CLI exits 1 then).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

import httpx
from prefect import flow
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun
from prefect.context import FlowRunContext
from prefect.deployments import run_deployment
from prefect.exceptions import MissingContextError, ObjectNotFound, PrefectException
from prefect.logging import get_run_logger
from pydantic import BaseModel, Field, computed_field

from zeitflow.backfill import (
    PARTITION_UNITS,
    BackfillPlan,
    backfill_partitions,
    check_deployment_name,
    check_max_active,
    check_reprocess,
    idempotency_key,
    plan_backfill,
)
from zeitflow.config import PipelineConfig, load_config, parse_config
from zeitflow.errors import ParameterError, StorageError
from zeitflow.io.metadata import MetadataStore, mask_url
from zeitflow.settings import Settings

__all__ = ["BackfillResult", "PartitionOutcome", "backfill", "run_backfill"]

POLL_SECONDS = 1.0
NOT_SUBMITTED = "not_submitted"
SUBMIT_FAILED = "submit_failed"
_log = logging.getLogger(__name__)


class PartitionOutcome(BaseModel):
    """What happened to one partition of a backfill."""

    partition: str
    action: str  # "submitted", "reused" (Prefect returned an earlier run for the key), "skipped", "planned"
    state: str | None = None  # lower-case Prefect state type, "not_submitted" or "submit_failed"
    flow_run_id: str | None = None
    idempotency_key: str | None = None
    reason: str | None = None


class BackfillResult(BaseModel):
    """The outcome of a backfill.

    ``partitions``: every partition of the range, in submission order; ``submitted``: those the plan submits
    (for a dry run: would submit; after a timeout some of them may be ``not_submitted``); ``skipped``:
    partition -> why; ``states``: the last seen state of each submitted partition's flow run (a lower-case
    Prefect state type such as ``completed``, ``failed``, ``crashed``, ``cancelled``, or ``not_submitted``,
    ``submit_failed``); ``flow_runs``: partition -> flow run id; ``outcomes``: one row per partition, as in
    the table artifact and the backfill's ``runs`` summary in the metadata store."""

    backfill_id: str | None
    deployment: str
    flow_name: str
    project: str
    unit: str
    reprocess: str
    dry_run: bool = False
    timed_out: bool = False
    partitions: list[str]
    submitted: list[str] = Field(default_factory=list)
    skipped: dict[str, str] = Field(default_factory=dict)
    states: dict[str, str] = Field(default_factory=dict)
    flow_runs: dict[str, str] = Field(default_factory=dict)
    outcomes: list[PartitionOutcome] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def failed(self) -> list[str]:
        """Planned partitions that did not complete (failed, crashed, cancelled, unfinished, not submitted)."""
        if self.dry_run:
            return []
        return [p for p in self.submitted if self.states.get(p) != "completed"]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def status(self) -> str:
        """``completed`` when every submitted run completed, else ``failed`` (dry run: ``pending``)."""
        if self.dry_run:
            return "pending"
        return "failed" if self.failed else "completed"


def _logger() -> logging.Logger | logging.LoggerAdapter:
    try:
        return get_run_logger()
    except MissingContextError:
        return _log


def _state(run: FlowRun) -> str:
    return run.state.type.value.lower() if run.state is not None else "unknown"


def _is_final(run: FlowRun) -> bool:
    return run.state is not None and run.state.is_final()


def _project_config(parameters: Mapping[str, Any], config_file: str | None,
                    overrides: list[str] | None) -> PipelineConfig | None:
    """The project config a deployment's runs use: ``config_file`` (else the deployment's), else the
    deployment's ``config`` mapping, with ``overrides`` (else the deployment's); None when there is none."""
    extra = list(overrides) if overrides is not None else list(parameters.get("overrides") or [])
    path = config_file or parameters.get("config_file")
    if path:
        return load_config(path, extra)
    if parameters.get("config"):
        return parse_config(parameters["config"], extra)
    return None


def _partition_unit(flow_name: str, schema: Mapping[str, Any] | None, start: str) -> str:
    if flow_name in PARTITION_UNITS:
        return PARTITION_UNITS[flow_name]
    if "partition" in ((schema or {}).get("properties") or {}):
        return "hour" if "T" in start else "day"
    message = f"flow {flow_name!r} takes no partition: only partitioned deployments can be backfilled"
    raise ParameterError("NOT_PARTITIONED", message,
                         details={"errors": [{"loc": "deployment", "code": "NOT_PARTITIONED", "message": message}]})


class _Artifacts:
    """The progress artifact (percentage of submitted partitions finished) and the final table, when
    running inside a flow run; nothing otherwise."""

    def __init__(self, deployment: str, total: int) -> None:
        self.enabled = FlowRunContext.get() is not None
        self.total = total
        self.description = f"backfill of {deployment}"
        self.key = "backfill-" + "".join(c if c.isalnum() else "-" for c in deployment.lower()).strip("-")[:80]
        self._id: UUID | None = None
        self._sent = -1.0

    def progress(self, done: int) -> None:
        if not self.enabled:
            return
        percent = 100.0 if self.total == 0 else round(100.0 * done / self.total, 1)
        if percent == self._sent:
            return
        description = f"{self.description}: {done}/{self.total} partitions finished"
        if self._id is None:
            self._id = create_progress_artifact(percent, description=description)
        else:
            update_progress_artifact(self._id, percent, description=description)
        self._sent = percent

    def table(self, outcomes: list[PartitionOutcome]) -> None:
        if not self.enabled:
            return
        rows = [o.model_dump(mode="json") for o in outcomes]
        create_table_artifact(rows, key=self.key, description=f"{self.description}: partitions and states")


class _Submitter:
    """Submits the planned partitions, at most ``max_active`` not final at once, and records them."""

    def __init__(self, deployment: str, plan: BackfillPlan, reprocess: str, max_active: int,
                 backfill_id: str, store: MetadataStore, parameters: dict[str, Any], artifacts: _Artifacts,
                 poll_seconds: float, clock: Callable[[], float]) -> None:
        self.deployment, self.plan, self.reprocess = deployment, plan, reprocess
        self.max_active, self.backfill_id, self.store = max_active, backfill_id, store
        self.parameters, self.artifacts = parameters, artifacts
        self.poll_seconds, self.clock = poll_seconds, clock
        self.outcomes: dict[str, PartitionOutcome] = {}
        self.finished = 0
        self.log = _logger()

    def _record(self, outcome: PartitionOutcome) -> None:
        self.outcomes[outcome.partition] = outcome
        try:
            self.store.record_backfill_run(self.backfill_id, outcome.partition, outcome.idempotency_key or "",
                                           outcome.flow_run_id, outcome.state or "unknown")
        except StorageError as exc:  # keep going: the runs are already submitted
            self.log.warning("backfill %s: could not record %s: %s", self.backfill_id, outcome.partition, exc)

    def _done(self, outcome: PartitionOutcome) -> None:
        self._record(outcome)
        self.finished += 1
        self.artifacts.progress(self.finished)
        self.log.info("backfill %s: partition %s %s (%s/%s)", self.deployment, outcome.partition, outcome.state,
                      self.finished, len(self.plan.submit))

    def _create(self, partition: str, key: str) -> FlowRun:
        return run_deployment(self.deployment, parameters={**self.parameters, "partition": partition},
                              idempotency_key=key, timeout=0, as_subflow=False)

    def submit(self, partition: str) -> FlowRun | None:
        """Create the partition's flow run; None if that failed or an earlier final run was reused."""
        ran_before = partition in self.plan.previous
        key = idempotency_key(self.deployment, partition, self.backfill_id if ran_before else None)
        try:
            run = self._create(partition, key)
            if _is_final(run) and not ran_before and self._rerun(run):
                # Prefect returned an earlier run for the first-attempt key (its runs row is missing or was
                # never written): a re-run needs a key of its own.
                key = idempotency_key(self.deployment, partition, self.backfill_id)
                run = self._create(partition, key)
        except (httpx.HTTPError, PrefectException) as exc:
            self.log.error("backfill %s: submitting %s failed: %s", self.deployment, partition, exc)
            self._done(PartitionOutcome(partition=partition, action="submitted", state=SUBMIT_FAILED,
                                        idempotency_key=key, reason=str(exc)[:500]))
            return None
        if _is_final(run):  # an earlier run answered the key: its state is the partition's outcome
            self._done(PartitionOutcome(partition=partition, action="reused", state=_state(run),
                                        flow_run_id=str(run.id), idempotency_key=key,
                                        reason="Prefect returned the earlier flow run for this idempotency key"))
            return None
        self._record(PartitionOutcome(partition=partition, action="submitted", state=_state(run),
                                      flow_run_id=str(run.id), idempotency_key=key))
        return run

    def _rerun(self, run: FlowRun) -> bool:
        return self.reprocess == "all" or (self.reprocess == "failed" and _state(run) != "completed")

    def run(self, deadline: float | None) -> bool:
        """Submit and wait; returns True when the deadline stopped it."""
        queue = deque(self.plan.submit)
        active: dict[UUID, str] = {}
        self.artifacts.progress(0)
        with get_client(sync_client=True) as client:
            while queue or active:
                timed_out = deadline is not None and self.clock() >= deadline
                while queue and len(active) < self.max_active and not timed_out:
                    partition = queue.popleft()
                    run = self.submit(partition)
                    if run is not None:
                        active[run.id] = partition
                if timed_out:
                    break
                if not active:  # every submission just made ended at once (reused or failed): submit more
                    continue
                time.sleep(self.poll_seconds)
                runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(active))),
                                             limit=len(active))
                for gone in set(active) - {run.id for run in runs}:  # deleted from the API meanwhile
                    partition = active.pop(gone)
                    self._done(self.outcomes[partition].model_copy(update={"state": "deleted"}))
                for run in runs:
                    if _is_final(run):
                        partition = active.pop(run.id)
                        previous = self.outcomes[partition]
                        self._done(previous.model_copy(update={"state": _state(run)}))
                    elif self.outcomes[active[run.id]].state != _state(run):
                        self._record(self.outcomes[active[run.id]].model_copy(update={"state": _state(run)}))
            if not (queue or active):
                return False
        for partition in active.values():
            self.log.warning("backfill %s: %s still %s at the timeout", self.deployment, partition,
                             self.outcomes[partition].state)
        for partition in queue:
            self.outcomes[partition] = PartitionOutcome(
                partition=partition, action="planned", state=NOT_SUBMITTED,
                idempotency_key=idempotency_key(self.deployment, partition,
                                                self.backfill_id if partition in self.plan.previous else None),
                reason="the backfill timed out before submitting it")
        return True


def run_backfill(
    deployment: str,
    start: str,
    end: str,
    *,
    reprocess: str = "none",
    max_active: int = 1,
    dry_run: bool = False,
    reverse: bool = False,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    project: str | None = None,
    metadata_url: str | None = None,
    timeout: float | None = None,
    poll_seconds: float = POLL_SECONDS,
) -> BackfillResult:
    """Backfill ``deployment`` (``flow/deployment``) over ``start``..``end`` (partitions of the flow's unit,
    both included; whole days for an hourly flow mean all their hours).

    ``reprocess``: ``none`` submits never-run partitions, ``failed`` also those whose latest run failed or was
    cancelled, ``all`` every partition. At most ``max_active`` (1-64) submitted runs are not final at once;
    ``reverse`` submits newest first; ``dry_run`` plans and submits nothing (and records nothing). A run
    paused for input holds its slot until it is resumed or ends.
    ``config_file``/``overrides`` are also passed to every submitted run; ``project``/``metadata_url`` only
    say where to read completed partitions from. ``timeout`` (seconds, the whole backfill): when it passes no
    further partition is submitted, runs already submitted keep going and the backfill is recorded failed.

    Idempotency: a partition's first attempt uses ``backfill:{deployment}:{partition}``, so a backfill that is
    interrupted and started again, or two started at once, never run a partition twice. Prefect answers a
    repeated key with the flow run it already has, even a failed one, so a partition that ran before (or whose
    first-attempt key already has a final run that ``reprocess`` says to redo) is submitted with
    ``backfill:{deployment}:{partition}:{backfill_id}``.
    """
    check_reprocess(reprocess)
    check_max_active(max_active)
    if timeout is not None and timeout <= 0:
        raise ParameterError("PARAM_OUT_OF_RANGE", f"timeout={timeout!r} is out of range: allowed timeout > 0",
                             details={"errors": [{"loc": "timeout", "code": "PARAM_OUT_OF_RANGE",
                                                  "message": "timeout must be positive"}]})
    flow_name, _ = check_deployment_name(deployment)
    log = _logger()

    with get_client(sync_client=True) as client:
        try:
            remote = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            message = f"deployment {deployment!r} not found on the Prefect API; run prefect deploy --all first"
            raise ParameterError("DEPLOYMENT_NOT_FOUND", message, details={"errors": [
                {"loc": "deployment", "code": "DEPLOYMENT_NOT_FOUND", "message": message}]}) from None
    unit = _partition_unit(flow_name, remote.parameter_openapi_schema, start)
    partitions = backfill_partitions(start, end, unit)

    config = _project_config(remote.parameters or {}, config_file, overrides)
    if project is None:
        if config is None:
            message = (f"deployment {deployment!r} has no config_file or config parameter: give the project "
                       "(or its config file) to find completed partitions")
            raise ParameterError("MISSING_PARAMETER", message, details={"errors": [
                {"loc": "project", "code": "MISSING_PARAMETER", "message": message}]})
        project = config.project
    url = metadata_url or (config.storage.metadata_url if config is not None else None) or Settings().metadata_url

    store = MetadataStore(url)
    try:
        if dry_run and store.current_revision() is None:
            statuses: dict[str, str | None] = dict.fromkeys(partitions)
        else:
            if not dry_run:
                store.migrate()
            statuses = store.partition_statuses(project, flow_name, partitions)
        plan = plan_backfill(partitions, statuses, reprocess, reverse)
        ordered = partitions[::-1] if reverse else partitions
        log.info("backfill %s %s..%s (%s partitions, project %r, metadata %s): %s to submit, %s skipped%s",
                 deployment, start, end, len(partitions), project, mask_url(url), len(plan.submit),
                 len(plan.skipped), " (dry run)" if dry_run else "")
        result = BackfillResult(backfill_id=None, deployment=deployment, flow_name=flow_name, project=project,
                                unit=unit, reprocess=reprocess, dry_run=dry_run, partitions=ordered,
                                submitted=list(plan.submit), skipped=dict(plan.skipped))
        artifacts = _Artifacts(deployment, len(plan.submit))
        skipped = [PartitionOutcome(partition=p, action="skipped", state=statuses.get(p), reason=why)
                   for p, why in plan.skipped.items()]
        if dry_run:
            planned = {p: PartitionOutcome(partition=p, action="planned", reason=(
                f"ran before ({plan.previous[p]})" if p in plan.previous else "never ran")) for p in plan.submit}
            outcomes = {**planned, **{o.partition: o for o in skipped}}
            result.outcomes = [outcomes[p] for p in ordered]
            artifacts.table(result.outcomes)
            return result

        backfill_id = store.start_backfill(deployment, start, end, reprocess, max_active, reverse)
        result.backfill_id = backfill_id
        parameters: dict[str, Any] = {}
        if config_file is not None:
            parameters["config_file"] = config_file
            if (remote.parameters or {}).get("config") is not None:
                parameters["config"] = None
        if overrides is not None:
            parameters["overrides"] = list(overrides)
        submitter = _Submitter(deployment, plan, reprocess, max_active, backfill_id, store, parameters, artifacts,
                               poll_seconds, time.monotonic)
        try:
            result.timed_out = submitter.run(None if timeout is None else time.monotonic() + timeout)
        except BaseException:  # interrupted (Ctrl-C, flow cancellation) or the API went away: say so, re-raise
            with contextlib.suppress(StorageError):
                store.finish_backfill(backfill_id, "cancelled", runs=[
                    o.model_dump(mode="json") for o in [*submitter.outcomes.values(), *skipped]])
            raise

        outcomes = {**submitter.outcomes, **{o.partition: o for o in skipped}}
        result.outcomes = [outcomes[p] for p in ordered]
        result.states = {p: o.state or "unknown" for p, o in submitter.outcomes.items()}
        result.flow_runs = {p: o.flow_run_id for p, o in submitter.outcomes.items() if o.flow_run_id}
        store.finish_backfill(backfill_id, result.status, runs=[o.model_dump(mode="json") for o in result.outcomes])
        artifacts.table(result.outcomes)
        if result.failed:
            log.warning("backfill %s: %s of %s partitions did not complete: %s", deployment, len(result.failed),
                        len(plan.submit), ", ".join(result.failed))
        return result
    finally:
        store.dispose()


@flow(name="backfill", log_prints=False)
def backfill(
    deployment: str,
    start: str,
    end: str,
    reprocess: str = "none",
    max_active: int = 1,
    dry_run: bool = False,
    reverse: bool = False,
    config_file: str | None = None,
    overrides: list[str] | None = None,
    project: str | None = None,
    metadata_url: str | None = None,
    timeout: float | None = None,
) -> BackfillResult:
    """Backfill a partitioned deployment (see ``run_backfill``) inside a flow run, so its progress artifact
    (share of submitted partitions finished) and its table of partitions and states are attached to it. The
    flow completes even when partitions fail; ``BackfillResult.failed`` lists them."""
    return run_backfill(deployment, start, end, reprocess=reprocess, max_active=max_active, dry_run=dry_run,
                        reverse=reverse, config_file=config_file, overrides=overrides, project=project,
                        metadata_url=metadata_url, timeout=timeout)
