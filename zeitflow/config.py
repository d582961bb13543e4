"""Project configuration: ``PipelineConfig`` and the per-stage options models (stages.md §0.6).

A project is one YAML file. It is loaded, overridden with ``--set a.b=c`` and validated
before anything runs; every validation error is reported as a ``ParameterError`` whose
``details["errors"]`` name the offending key (``sources.0.load.timezone``).
"""

from __future__ import annotations

import copy
import math
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from zeitflow.errors import CleanError, ParameterError
from zeitflow.options.align import AlignOptions
from zeitflow.options.base import Options, check_choice, check_range, param_error, to_parameter_error
from zeitflow.options.clean import CleanOptions, ThresholdAnswer
from zeitflow.options.cloud import CloudInterpolateOptions, CloudOptions
from zeitflow.options.evaluation import EvaluationOptions
from zeitflow.options.features import TimeFeatureOptions
from zeitflow.options.load import LoadOptions
from zeitflow.options.models import KERAS_KINDS, ModelSpec
from zeitflow.options.report import ReportOptions
from zeitflow.options.resample import ColumnMethod, ResampleOptions
from zeitflow.options.scaling import ScalingOptions, SplitOptions
from zeitflow.options.windows import WindowOptions
from zeitflow.settings import mask_url
from zeitflow.stages.clean import check_grid_step

__all__ = [
    "AlignOptions", "CleanOptions", "CloudConfig", "CloudInterpolateOptions", "CloudOptions", "ColumnMethod",
    "DatasetConfig", "EvaluationOptions", "GateOptions", "LoadOptions", "PipelineConfig", "ReportOptions",
    "ResampleOptions", "ScalingOptions", "SourceConfig", "SplitOptions", "StorageConfig", "ThresholdAnswer",
    "TimeFeatureOptions", "TrainingConfig", "WindowOptions", "apply_overrides", "load_config", "parse_config",
]

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def _check_name(kind: str, value: str) -> str:
    if not NAME_PATTERN.fullmatch(value) or ".." in value:
        raise param_error(
            "INVALID_NAME",
            f"{kind}={mask_url(value)!r} is not allowed: use 1-100 letters, digits, '_', '.', '-' "
            "starting with a letter or digit",
        )
    return value


class GateOptions(Options):
    """Plausibility bounds the ``raw_loaded`` quality gate checks on every channel of a source
    (None = no bound). A value outside them fails the gate and rolls the output back."""

    value_min: float | None = None
    value_max: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> GateOptions:
        for name in ("value_min", "value_max"):
            check_range(name, getattr(self, name), -math.inf, math.inf)
        if self.value_min is not None and self.value_max is not None and self.value_min > self.value_max:
            raise param_error(
                "PARAM_COMPARISON_FAILED",
                f"value_min={self.value_min} must not exceed value_max={self.value_max}",
            )
        return self


class SourceConfig(Options):
    """One input series: one file, or several consecutive exports of it merged (§1.7)."""

    name: str
    path: str | list[str]
    load: LoadOptions = Field(default_factory=LoadOptions)
    gate: GateOptions = Field(default_factory=GateOptions)
    resample: ResampleOptions | None = Field(None, title="Resample")
    clean: CleanOptions | None = Field(None, title="Clean")

    @model_validator(mode="after")
    def _clean_needs_grid(self) -> SourceConfig:
        """Cleaning works on a regular grid: require resampling, and check STL/LSTM periods against
        the grid step before any data is read."""
        if self.clean is None:
            return self
        if self.resample is None:
            raise param_error(
                "MISSING_PARAMETER",
                f"source {self.name!r}: clean needs a regular grid; add a resample section (step_minutes, method)",
            )
        try:
            check_grid_step(self.clean, self.resample.step_minutes)
        except CleanError as exc:
            step = self.resample.step_minutes
            raise param_error(exc.code, f"clean: {exc.message} (resample.step_minutes={step})") from None
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name("name", value)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | list[str]) -> str | list[str]:
        paths = [value] if isinstance(value, str) else value
        if not paths or any(not p.strip() for p in paths):
            raise param_error("MISSING_PARAMETER", "path must name at least one file")
        return value

    def paths(self) -> list[str]:
        """The source locations as a list."""
        return [self.path] if isinstance(self.path, str) else list(self.path)


class CloudConfig(Options):
    """The cloud stage of a project: which aligned channels it relates, the fit and band options,
    and an optional cloud interpolation of the result onto a grid."""

    predictor: str
    target: str
    fit: CloudOptions = Field(default_factory=CloudOptions)
    interpolate: CloudInterpolateOptions | None = None

    @model_validator(mode="after")
    def _distinct(self) -> CloudConfig:
        if self.predictor == self.target:
            raise param_error("PARAM_COMPARISON_FAILED",
                              f"predictor and target must be different channels, both are {self.target!r}")
        return self


class DatasetConfig(Options):
    """The dataset stage of a project (stages.md §6-§8): windows over the last frame (cloud, else aligned,
    else the single source's last output), then split and scalers. The input channels are the keys of
    ``windows.inputs_spec`` and the output channels those of ``windows.outputs_spec`` (a ``null`` spec
    takes the role's default horizon)."""

    name: str = "dataset"
    windows: WindowOptions
    split: SplitOptions = Field(default_factory=SplitOptions)
    scaling: ScalingOptions = Field(default_factory=ScalingOptions)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _check_name("name", value)

    @model_validator(mode="after")
    def _channels(self) -> DatasetConfig:
        for key, role in (("inputs_spec", "input"), ("outputs_spec", "output")):
            if not getattr(self.windows, key):
                raise param_error(
                    "MISSING_PARAMETER",
                    f"windows.{key} must name at least one {role} channel (a mapping of channel name to its "
                    "window spec; null takes the default horizon)",
                )
        return self

    @property
    def input_channels(self) -> list[str]:
        """The input channels, in window order."""
        return list(self.windows.inputs_spec)

    @property
    def output_channels(self) -> list[str]:
        """The output channels, in window order."""
        return list(self.windows.outputs_spec)


class TrainingConfig(Options):
    """Which models to train on the dataset and how the training fans out (stages.md §9.3, architecture §6).

    Each model spec is one training task. ``task_runner`` fans them out: ``thread`` (Prefect's thread pool,
    ``max_workers`` at a time) or ``dask`` (prefect-dask's ``DaskTaskRunner`` on the cluster at
    ``dask_address``). Whatever the runner, ``isolate`` picks the kinds that are fitted in a dedicated spawned
    process: ``keras`` (default; Keras seeding is process-global, §0.9) or ``all``; only those fits can be
    stopped by their timeout (``timeout_minutes``, or ``model_timeouts_minutes[name]``). A model fitted in
    the task's thread is reported as timed out only after it returns. ``evaluation`` (§10.2) and
    ``report`` (§11.4) shape the metric tables, plots and HTML report of the trained models."""

    models: list[ModelSpec]
    task_runner: str = "thread"
    dask_address: str | None = None
    max_workers: int = 4
    isolate: str = "keras"
    timeout_minutes: float = 60.0
    model_timeouts_minutes: dict[str, float] = Field(default_factory=dict)
    evaluation: EvaluationOptions = Field(default_factory=EvaluationOptions)
    report: ReportOptions = Field(default_factory=ReportOptions)

    @model_validator(mode="after")
    def _consistent(self) -> TrainingConfig:
        check_choice("task_runner", self.task_runner, ("thread", "dask"))
        check_choice("isolate", self.isolate, ("keras", "all"))
        check_range("max_workers", self.max_workers, 1, 64)
        if not self.models:
            raise param_error("MISSING_PARAMETER", "training.models must list at least one model spec")
        names = [m.model_name for m in self.models]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise param_error("PARAM_COMPARISON_FAILED",
                              f"model names must be unique; repeated: {dup} (give each spec a distinct name)")
        if (self.task_runner == "dask") != (self.dask_address is not None):
            raise param_error("MISSING_PARAMETER" if self.dask_address is None else "MUTUALLY_EXCLUSIVE",
                              "dask_address is required with task_runner='dask' and only allowed with it")
        for name, minutes in {"timeout_minutes": self.timeout_minutes, **{
                f"model_timeouts_minutes.{k}": v for k, v in self.model_timeouts_minutes.items()}}.items():
            check_range(name, minutes, 1 / 600, 10_080, low_text="0.1 s")
        unknown = sorted(set(self.model_timeouts_minutes) - set(names))
        if unknown:
            raise param_error("PARAM_COMPARISON_FAILED",
                              f"model_timeouts_minutes names unknown models {unknown}; models: {names}")
        return self

    def timeout_for(self, name: str) -> float:
        """The timeout of one model in seconds."""
        return 60.0 * self.model_timeouts_minutes.get(name, self.timeout_minutes)

    def isolated(self, kind: str) -> bool:
        """Whether a model of ``kind`` is fitted in its own spawned process."""
        return self.isolate == "all" or kind in KERAS_KINDS


class StorageConfig(Options):
    """Where outputs and metadata go; unset fields fall back to ``zeitflow.settings``. A project file is
    shared, logged and stored with every run, so it must not hold a password: ``metadata_url`` with one is
    ``CREDENTIALS_IN_CONFIG`` (give it through ``ZEITFLOW_METADATA_URL``, ``PGPASSWORD`` or ``.pgpass``)."""

    root: str | None = None
    metadata_url: str | None = None

    @field_validator("metadata_url")
    @classmethod
    def _no_password(cls, value: str | None) -> str | None:
        if value is not None and mask_url(value) != value:
            raise param_error(
                "CREDENTIALS_IN_CONFIG",
                f"storage.metadata_url={mask_url(value)!r} holds a password; a project file is stored with every "
                "run, so give the URL through ZEITFLOW_METADATA_URL (or the password through PGPASSWORD/.pgpass)",
            )
        return value


class PipelineConfig(Options):
    """A whole project: its name, its sources with their load options, and storage."""

    project: str
    description: str = ""
    sources: list[SourceConfig]
    align: AlignOptions | None = Field(None, title="Align")
    cloud: CloudConfig | None = Field(None, title="Cloud")
    dataset: DatasetConfig | None = Field(None, title="Dataset")
    training: TrainingConfig | None = Field(None, title="Training")
    storage: StorageConfig = Field(default_factory=StorageConfig, title="Storage")

    @field_validator("project")
    @classmethod
    def _project(cls, value: str) -> str:
        return _check_name("project", value)

    @model_validator(mode="after")
    def _unique_sources(self) -> PipelineConfig:
        if not self.sources:
            raise param_error("MISSING_PARAMETER", "sources must list at least one source")
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise param_error("PARAM_COMPARISON_FAILED", f"source names must be unique; repeated: {dup}")
        if self.cloud is not None and self.align is None:
            raise param_error("MISSING_PARAMETER",
                              "cloud works on the aligned frame: add an align section (step_minutes, ...)")
        if self.dataset is not None and self.align is None and len(self.sources) > 1:
            raise param_error(
                "MISSING_PARAMETER",
                f"dataset works on one frame, but there are {len(self.sources)} sources: add an align section "
                "(step_minutes, ...) or keep a single source",
            )
        if self.training is not None and self.dataset is None:
            raise param_error("MISSING_PARAMETER", "training needs a dataset section (windows, split, scaling)")
        return self

    def resolve_paths(self, base: Path) -> PipelineConfig:
        """A copy whose relative local source paths are made absolute against ``base``."""

        def resolve(p: str) -> str:
            if "://" in p or Path(p).is_absolute():
                return p
            return str((base / p).resolve())

        sources = [
            s.model_copy(update={"path": [resolve(p) for p in s.paths()] if isinstance(s.path, list)
                                 else resolve(s.path)})
            for s in self.sources
        ]
        return self.model_copy(update={"sources": sources})


def _parse_scalar(text: str) -> Any:
    """YAML semantics for override values: ``3`` is int, ``true`` bool, ``null`` None, ``[a, b]`` list."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=c`` overrides to a copy of a nested dict (list items by 0-based index)."""
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParameterError(
                "INVALID_OVERRIDE", f"--set {item!r} must look like a.b=c",
                details={"errors": [{"loc": key, "code": "INVALID_OVERRIDE", "message": "expected a.b=c"}]},
            )
        parts = key.split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            here = ".".join(parts[: depth + 1])
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ParameterError(
                        "INVALID_OVERRIDE", f"--set {key}: {here!r} is not an index of a list of {len(node)}",
                        details={"errors": [{"loc": here, "code": "INVALID_OVERRIDE",
                                             "message": "list index out of range"}]},
                    )
                idx = int(part)
                if last:
                    node[idx] = _parse_scalar(raw)
                else:
                    node = node[idx]
            elif isinstance(node, dict):
                if last:
                    node[part] = _parse_scalar(raw)
                else:
                    node = node.setdefault(part, {})
            else:
                raise ParameterError(
                    "INVALID_OVERRIDE", f"--set {key}: {'.'.join(parts[:depth])!r} is a value, not a mapping",
                    details={"errors": [{"loc": here, "code": "INVALID_OVERRIDE", "message": "not a mapping"}]},
                )
    return data


def parse_config(data: Any, overrides: list[str] | None = None, *, base: Path | None = None) -> PipelineConfig:
    """Validate a config mapping (after overrides); raise ``ParameterError`` naming the key."""
    if not isinstance(data, dict):
        raise ParameterError(
            "INVALID_CONFIG", "the configuration must be a mapping at the top level",
            details={"errors": [{"loc": "", "code": "INVALID_CONFIG", "message": "not a mapping"}]},
        )
    data = apply_overrides(data, overrides or [])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise to_parameter_error(exc) from None
    return config.resolve_paths(base) if base is not None else config


def load_config(path: str | Path, overrides: list[str] | None = None) -> PipelineConfig:
    """Read a YAML project file, apply overrides and validate; relative paths are resolved
    against the file's folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ParameterError(
            "CONFIG_NOT_FOUND", f"configuration file {str(file)!r} does not exist",
            details={"errors": [{"loc": "", "code": "CONFIG_NOT_FOUND", "message": str(file)}]},
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ParameterError(
            "INVALID_CONFIG", f"{file}: not valid YAML{where}: {getattr(exc, 'problem', exc)}",
            details={"errors": [{"loc": "", "code": "INVALID_CONFIG", "message": f"YAML error{where}"}],
                     "file": str(file)},
        ) from None
    return parse_config(data, overrides, base=file.resolve().parent)
