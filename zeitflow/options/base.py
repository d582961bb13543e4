"""Base of every options model (stages.md §0.6): frozen, extra keys rejected with
UNKNOWN_PARAMETER, coded validation errors, and a stable ``parameters_hash``."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from zeitflow.errors import ParameterError


def param_error(code: str, message: str) -> PydanticCustomError:
    """A pydantic error whose ``type`` is the stage-spec code."""
    return PydanticCustomError(code, message.replace("{", "{{").replace("}", "}}"))


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the input of every hash in Zeitflow."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_json(value: Any) -> str:
    """sha256 hex digest of ``canonical_json(value)``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()


def check_range(name: str, value: float | int | None, low: float, high: float, *, low_text: str | None = None,
                predecessor: str | None = None) -> None:
    """Raise PARAM_NOT_FINITE / PARAM_OUT_OF_RANGE for ``value`` outside [low, high]."""
    if value is None:
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise param_error("PARAM_NOT_FINITE", f"{name}={value} is not finite")
    if not (low <= value <= high):
        suffix = f" (predecessor: {predecessor})" if predecessor else ""
        raise param_error(
            "PARAM_OUT_OF_RANGE",
            f"{name}={value!r} is out of range: allowed {low_text or low} <= {name} <= {high}{suffix}",
        )


def check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    """Raise INVALID_CHOICE listing the allowed values."""
    if value not in allowed:
        raise param_error("INVALID_CHOICE", f"{name}={value!r} is not allowed: choose one of {list(allowed)}")


class Options(BaseModel):
    """Frozen options with coded errors and ``parameters_hash()``."""

    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=False)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields) | {f.alias for f in cls.model_fields.values() if f.alias}
            unknown = [k for k in data if k not in known]
            if unknown:
                raise param_error(
                    "UNKNOWN_PARAMETER",
                    f"unknown parameter {unknown[0]!r} for {cls.__name__}; known: {sorted(cls.model_fields)}",
                )
        return data

    def parameters_hash(self) -> str:
        """sha256 of the canonical JSON of the resolved options (§0.6)."""
        return sha256_json(self.model_dump(mode="json"))


def errors_of(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """``{loc, code, message}`` for every error of a pydantic ``ValidationError``."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in (*prefix, *err["loc"]))
        out.append({"loc": loc, "code": err["type"], "message": err["msg"]})
    return out


def to_parameter_error(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> ParameterError:
    """Re-raise a ``ValidationError`` as ``ParameterError`` with the first error's code (§0.6)."""
    errors = errors_of(exc, prefix)
    first = errors[0]
    message = "; ".join(f"{e['loc'] or '<root>'}: {e['message']}" for e in errors)
    return ParameterError(first["code"], message, details={"errors": errors})
