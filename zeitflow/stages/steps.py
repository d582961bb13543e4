"""The time-step statistics model of §4.4, shared by the load report and ``align.detect_step``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ChannelStep(BaseModel):
    """Numeric values of one channel (§4.4)."""

    model_config = ConfigDict(extra="forbid")

    numeric: int
    numeric_share_percent: float


class StepInfo(BaseModel):
    """Time-step statistics of a frame (§4.4). Steps and the offset are exact fractional minutes
    from integer ns differences; the step fields (and ``regular``) are None below 2 rows, and
    ``first``/``last`` are None for a frame without rows."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    channels: dict[str, ChannelStep] = Field(default_factory=dict)
    first: str | None = None
    last: str | None = None
    step_median_minutes: float | None = None
    step_min_minutes: float | None = None
    step_max_minutes: float | None = None
    step_mean_minutes: float | None = None
    offset_minutes: float | None = None
    regular: bool | None = None
