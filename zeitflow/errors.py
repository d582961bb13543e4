"""Typed errors of Zeitflow (stages.md §0.7).

Categories: ``InputError`` (bad data or bad input files; exit code 2), ``ParameterError``
(option validation; exit code 2), ``DataQualityError`` (a quality gate failed; never retried)
and ``StorageError`` (storage; only WRITE_FAILED and READ_FAILED are transient and retried).
"""

from __future__ import annotations

from typing import Any


class ZeitflowError(Exception):
    """Base error: a stable ``code``, a human ``message``, JSON-serialisable ``details``, a ``hint``."""

    def __init__(
        self, code: str, message: str, *, details: dict[str, Any] | None = None, hint: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details: dict[str, Any] = dict(details or {})
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view for summaries and reports."""
        return {
            "error": type(self).__name__,
            "code": self.code,
            "message": self.message,
            "details": self.details,
            "hint": self.hint,
        }

    def __reduce__(self):  # keep pickling (process runners, Prefect results) lossless
        return (_rebuild, (type(self), self.code, self.message, self.details, self.hint))


def _rebuild(cls, code, message, details, hint):
    return cls(code, message, details=details, hint=hint)


class InputError(ZeitflowError):
    """The input data cannot be processed as asked (usage/input error, exit code 2)."""


class ParameterError(ZeitflowError):
    """Options failed validation; ``details["errors"]`` lists every ``{loc, code, message}``."""


class DataQualityError(ZeitflowError):
    """A quality gate rejected a stage output; the output and its metadata row are rolled back."""


class StorageError(ZeitflowError):
    """Artifact or metadata storage failed. Codes: WRITE_FAILED, READ_FAILED (transient),
    OBJECT_NOT_FOUND, CHECKSUM_MISMATCH (final)."""

    TRANSIENT = frozenset({"WRITE_FAILED", "READ_FAILED"})

    @property
    def transient(self) -> bool:
        return self.code in self.TRANSIENT


class FrameError(InputError):
    """A frame violates the canonical invariants (code INVALID_FRAME)."""


class LoadError(InputError):
    """The load stage cannot read a source."""


class ResampleError(InputError):
    """The resample stage cannot build the grid or resample."""


class CleanError(InputError):
    """The clean stage failed on its input."""


class AlignError(InputError):
    """The align stage failed on its inputs."""


class CloudError(InputError):
    """The cloud stage failed on its inputs."""


class WindowError(InputError):
    """Windowed datasets cannot be built from the inputs."""


class ScalingError(InputError):
    """Split or scaling failed."""


class ModelError(InputError):
    """A model cannot be built, trained, saved or loaded."""


class EvaluationError(InputError):
    """Evaluation failed on its inputs."""


def exit_code_for(exc: BaseException) -> int:
    """2 for usage and input errors, 1 for everything else (internal, storage, quality)."""
    return 2 if isinstance(exc, InputError | ParameterError) else 1
