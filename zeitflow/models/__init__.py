"""Forecasting models behind one interface (stages.md §9): ``build(spec)`` and ``load(directory)``.

Keras kinds live in ``zeitflow.models.keras`` (TensorFlow imported only when a Keras model is built or
loaded), scikit-learn kinds in ``zeitflow.models.sklearn``, baselines in ``zeitflow.models.baselines``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from zeitflow.errors import ModelError
from zeitflow.models.base import Forecaster, TrainingHistory, library_versions, read_sidecar
from zeitflow.options.models import BASELINE_KINDS, KERAS_KINDS, SKLEARN_KINDS, parse_model_spec
from zeitflow.reports import ReportWarning

__all__ = ["Forecaster", "TrainingHistory", "build", "load"]


def _family(kind: str) -> Any:
    if kind in KERAS_KINDS:
        from zeitflow.models import keras as family
    elif kind in SKLEARN_KINDS:
        from zeitflow.models import sklearn as family
    elif kind in BASELINE_KINDS:
        from zeitflow.models import baselines as family
    else:
        raise ModelError("MODEL_FILE_INVALID", f"unknown model kind {kind!r}", details={"kind": kind})
    return family


def build(spec: Any) -> Forecaster:
    """An unfitted forecaster for ``spec`` (a ``ModelSpec`` or its dict form)."""
    spec = parse_model_spec(spec)
    return _family(spec.kind).FORECASTERS[spec.kind](spec)


def load(directory: str | Path) -> Forecaster:
    """The forecaster saved in ``directory``; warns ``LIBRARY_VERSION_MISMATCH`` in ``load_warnings``."""
    path = Path(directory)
    sidecar = read_sidecar(path)
    try:
        model = build(sidecar["spec"])
    except ValidationError as exc:
        raise ModelError("MODEL_FILE_INVALID", f"{path}: the spec in model.json is invalid: "
                         f"{exc.errors()[0]['msg']}", details={"path": str(path)}) from exc
    model.restore(path, sidecar)
    saved = sidecar.get("versions", {})
    current = library_versions()
    differ = {k: [saved[k], current[k]] for k in saved if k in current and saved[k] != current[k]}
    if differ:
        model.load_warnings.append(ReportWarning(
            code="LIBRARY_VERSION_MISMATCH", count=len(differ),
            message=f"{path}: saved with other library versions (saved, now): {differ}",
            examples=[{"library": k, "saved": v[0], "now": v[1]} for k, v in differ.items()],
        ))
    return model
