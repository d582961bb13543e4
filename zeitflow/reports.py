"""Report models shared by every stage (stages.md §0.8) and progress events (§12)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_EXAMPLES = 5


class ReportWarning(BaseModel):
    """A non-fatal finding: what happened, how often, and up to five examples."""

    model_config = ConfigDict(extra="forbid")

    code: str
    message: str
    count: int = 1
    examples: list[dict[str, Any]] = Field(default_factory=list)


class StageReport(BaseModel):
    """Fields every stage report carries; stages subclass it with their own counts."""

    model_config = ConfigDict(extra="forbid")

    stage: str
    rows_in: int = 0
    rows_out: int = 0
    columns_out: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    parameters_hash: str = ""
    duration_seconds: float = 0.0
    warnings: list[ReportWarning] = Field(default_factory=list)


ProgressUnit = Literal["file", "chunk", "column", "phase", "iteration", "epoch", "model"]


@dataclass(frozen=True)
class ProgressEvent:
    """One progress milestone emitted by a pure stage function; the task layer maps it to Prefect."""

    stage: str
    unit: ProgressUnit
    done: float
    total: float
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


ProgressCallback = Callable[[ProgressEvent], None]


def emit(progress: ProgressCallback | None, event: ProgressEvent) -> None:
    """Send ``event`` to ``progress`` when a callback was given."""
    if progress is not None:
        progress(event)
