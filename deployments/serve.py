"""Serve the deployments of ``prefect.yaml`` from one process, for local use (``zeitflow serve``).

The names, parameters, descriptions, tags and schedules (slug and ``active`` included) are read from
``prefect.yaml``, so the served deployments are the ones ``prefect deploy --all`` creates, minus the work pool:
a served deployment runs in this process's runner instead of on a worker.
"""

from __future__ import annotations

import importlib
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.schemas.actions import DeploymentScheduleCreate
    from prefect.deployments.runner import RunnerDeployment

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = REPO / "prefect.yaml"


class ScheduleSpec(BaseModel):
    """One schedule entry of ``prefect.yaml`` (the subset Zeitflow uses: cron or interval)."""

    model_config = ConfigDict(extra="forbid")

    cron: str | None = None
    interval: float | None = None
    anchor_date: str | None = None
    timezone: str | None = None
    day_or: bool | None = None
    slug: str
    active: bool
    parameters: dict[str, Any] = Field(default_factory=dict)

    def to_schedule_create(self) -> DeploymentScheduleCreate:
        """The Prefect schedule object, with its slug and active flag."""
        from prefect.client.schemas.actions import DeploymentScheduleCreate
        from prefect.client.schemas.schedules import CronSchedule, IntervalSchedule

        if (self.cron is None) == (self.interval is None):
            raise ValueError(f"schedule {self.slug!r}: give exactly one of cron and interval")
        if self.cron is not None:
            kwargs: dict[str, Any] = {"cron": self.cron}
            if self.timezone:
                kwargs["timezone"] = self.timezone
            if self.day_or is not None:
                kwargs["day_or"] = self.day_or
            schedule: Any = CronSchedule(**kwargs)
        else:
            kwargs = {"interval": timedelta(seconds=float(self.interval or 0))}
            if self.anchor_date:
                kwargs["anchor_date"] = datetime.fromisoformat(self.anchor_date)
            if self.timezone:
                kwargs["timezone"] = self.timezone
            schedule = IntervalSchedule(**kwargs)
        return DeploymentScheduleCreate(schedule=schedule, active=self.active, slug=self.slug,
                                        parameters=self.parameters)


class DeploymentSpec(BaseModel):
    """One deployment entry of ``prefect.yaml``: what both ``prefect deploy`` and ``serve_all`` create."""

    model_config = ConfigDict(extra="ignore")

    name: str
    entrypoint: str
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    schedules: list[ScheduleSpec] = Field(default_factory=list)
    work_pool: dict[str, Any] = Field(default_factory=dict)

    @property
    def work_pool_name(self) -> str | None:
        """The work pool named in the entry (used by ``prefect deploy``, not by serve)."""
        return self.work_pool.get("name")

    def load_flow(self) -> Flow[Any, Any]:
        """Import the flow of ``entrypoint`` (``flows/ingest.py:ingest`` -> ``flows.ingest.ingest``)."""
        path, _, attribute = self.entrypoint.partition(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        return getattr(module, attribute)


def load_specs(prefect_file: str | os.PathLike[str] = PREFECT_FILE) -> list[DeploymentSpec]:
    """The deployment entries of ``prefect_file``."""
    with open(prefect_file, encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    return [DeploymentSpec.model_validate(entry) for entry in document.get("deployments") or []]


def build_deployments(prefect_file: str | os.PathLike[str] = PREFECT_FILE) -> list[RunnerDeployment]:
    """One ``flow.to_deployment(...)`` per entry of ``prefect_file``, with its parameters and schedules."""
    deployments = []
    for spec in load_specs(prefect_file):
        flow = spec.load_flow()
        deployments.append(flow.to_deployment(
            name=spec.name, parameters=spec.parameters, description=spec.description, tags=spec.tags,
            schedules=[schedule.to_schedule_create() for schedule in spec.schedules],
        ))
    return deployments


def serve_all(limit: int | None = None, prefect_file: str | os.PathLike[str] = PREFECT_FILE,
              workdir: str | os.PathLike[str] = REPO) -> None:
    """Serve every deployment of ``prefect_file`` until interrupted, at most ``limit`` runs at a time.

    Runs execute in ``workdir`` (default: the repository root), where the ``config_file`` parameters and the
    examples' data paths resolve, so the process changes its working directory there first. Needs
    ``PREFECT_API_URL`` for a lasting server (without it Prefect starts a temporary one).
    """
    from prefect import serve

    os.chdir(workdir)
    serve(*build_deployments(prefect_file), limit=limit)


if __name__ == "__main__":
    serve_all()
