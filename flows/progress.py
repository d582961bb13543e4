"""One Prefect progress artifact per flow run (stages.md §12): a percentage that never decreases, moved by
the flow as its stages finish. Per-chunk and per-epoch progress stays in each task's own artifact.

Weights: without training, every data stage is an equal share of 0-100 %; with training, the data stages
share 0-20 %, training 20-80 %, evaluation with its results and report 80-100 %."""

from __future__ import annotations

from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact

from zeitflow.config import PipelineConfig


def data_stage_count(config: PipelineConfig, *, with_dataset: bool = True) -> int:
    """How many gated stage outputs the data stages of ``config`` produce."""
    count = sum(1 + (s.resample is not None) + (s.clean is not None) for s in config.sources)
    count += (config.align is not None) + (config.align is not None and config.cloud is not None)
    return count + (with_dataset and config.dataset is not None)


class RunProgress:
    """The run's progress artifact; ``stage_done`` after each stage, ``models_done`` after training."""

    def __init__(self, description: str, stages: int, training: bool) -> None:
        self.description = description
        self.stages = max(stages, 1)
        self.training = training
        self.done = 0
        self.percent = 0.0
        self._id: UUID | None = create_progress_artifact(0.0, description=description)

    def _set(self, percent: float) -> None:
        percent = min(100.0, max(self.percent, percent))
        if percent > self.percent and self._id is not None:
            update_progress_artifact(self._id, percent, description=self.description)
        self.percent = percent

    def stage_done(self) -> None:
        """One more data stage finished."""
        self.done += 1
        self._set((20.0 if self.training else 100.0) * min(self.done, self.stages) / self.stages)

    def models_done(self) -> None:
        """The training fan-out finished (80 %)."""
        self._set(80.0)

    def finish(self) -> None:
        """The run's work is done (100 %)."""
        self._set(100.0)
