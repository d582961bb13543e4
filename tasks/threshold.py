"""The form a person fills in when cleaning waits for an STL or LSTM threshold (stages.md §3.9).
A Prefect ``RunInput``, so the UI renders it and the REST API can resume a paused run with it."""

from __future__ import annotations

from prefect.input import RunInput
from pydantic import Field, model_validator

from zeitflow.options.clean import ThresholdAnswer


class ThresholdInput(RunInput):
    """Threshold for one phase and channel, in the channel's units (|residual| for STL, absolute
    forecast error for LSTM). ``skip`` applies no threshold; the form arrives pre-filled with the
    suggested value, so with ``skip`` any threshold is ignored."""

    threshold: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    skip: bool = False

    @model_validator(mode="after")
    def _threshold_or_skip(self) -> ThresholdInput:
        if not self.skip and self.threshold is None:
            raise ValueError("give a threshold (>= 0) or set skip to true")
        return self

    def to_answer(self, phase: str, column: str) -> ThresholdAnswer:
        """The stage-level answer: ``threshold=None`` when skipped, the given value otherwise."""
        return ThresholdAnswer(phase=phase, column=column, threshold=None if self.skip else self.threshold)
