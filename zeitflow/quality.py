"""Quality gates: Great Expectations suites run against canonical frames (architecture §4).

Suites are GX 1.x ExpectationSuite JSON files in ``expectations/`` (one per stage boundary,
e.g. ``raw_loaded.json``). Each call builds its own ephemeral GX context, so two validations
in one process share no GX state. This module is pure: it never imports Prefect; the task
layer publishes :meth:`GateResult.failures_table` and handles rollback.

Suite extensions, resolved by :func:`load_suite` before GX sees the suite:

* ``{"$param": "name"}`` anywhere inside ``kwargs`` is replaced by ``parameters["name"]``.
  ``{"$param": "name", "default": v}`` uses ``v`` when the parameter is absent or None;
  ``{"$param": "name", "optional": true}`` drops the enclosing kwarg when it is absent or None.
* ``"for_each": "channels"`` on an expectation expands it into one expectation per item of
  ``parameters["channels"]``, with ``kwargs["column"]`` set to the item.
* Derived parameter: ``columns`` defaults to ``["utc", *channels]`` when ``channels`` is given.

Error codes:

* ``ParameterError`` ``UNKNOWN_SUITE``: no ``{name}.json`` in the expectations folder.
* ``ParameterError`` ``INVALID_SUITE``: the file is not a suite (bad JSON or structure, an
  unknown placeholder key, or an expectation GX rejects after the placeholders are filled).
* ``ParameterError`` ``MISSING_PARAMETER``: a placeholder or ``for_each`` names a parameter
  that was not given; ``details["errors"]`` lists every one as ``{loc, code, message}``.
* ``DataQualityError`` ``GATE_FAILED``: raised by :func:`check_gate` when validation fails.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from zeitflow.errors import DataQualityError, ParameterError
from zeitflow.frame import INDEX_NAME

if TYPE_CHECKING:
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.data_context import AbstractDataContext

DEFAULT_EXPECTATIONS_DIR = Path(__file__).resolve().parents[1] / "expectations"
RESULT_FORMAT = "SUMMARY"
DATASOURCE_NAME = "zeitflow"
ASSET_NAME = "frame"
BATCH_DEFINITION_NAME = "whole_frame"

_PARAM_KEY = "$param"
_PLACEHOLDER_KEYS = frozenset({_PARAM_KEY, "default", "optional"})
_ORDER_KEY = "zeitflow_order"
_SUITE_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_MAX_EXAMPLES = 5
_MESSAGE_FAILURES = 3
_OMIT = object()


@dataclass(frozen=True)
class GateResult:
    """Outcome of one suite on one frame; ``failures`` follow the suite's order."""

    suite: str
    success: bool
    evaluated: int
    failed: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    statistics: dict[str, Any] = field(default_factory=dict)

    def failures_table(self) -> list[dict[str, Any]]:
        """Flat rows (scalars and strings only) for a Prefect table artifact."""
        return [
            {
                "suite": self.suite,
                "expectation": f["expectation"],
                "column": f["column"] or "",
                "observed": "" if f["observed"] is None else _short(f["observed"]),
                "unexpected_count": f["unexpected_count"],
                "unexpected_percent": f["unexpected_percent"],
                "examples": ", ".join(_short(v) for v in f["examples"]),
                "message": f["message"],
            }
            for f in self.failures
        ]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable view."""
        return {
            "suite": self.suite,
            "success": self.success,
            "evaluated": self.evaluated,
            "failed": self.failed,
            "failures": copy.deepcopy(self.failures),
            "statistics": dict(self.statistics),
        }


# --------------------------------------------------------------------------- suites


def load_suite(
    name: str, parameters: Mapping[str, Any] | None = None, expectations_dir: str | Path | None = None
) -> list[dict[str, Any]]:
    """Read suite ``name`` and return its expectation configs with placeholders resolved.

    Each item is ``{"type", "kwargs", "meta", ...}`` ready for GX. Raises ``ParameterError``
    (``UNKNOWN_SUITE``, ``INVALID_SUITE``, ``MISSING_PARAMETER``; see the module docstring).
    """
    raw = _read_suite(name, expectations_dir)
    params = _derive_parameters(parameters)
    missing: list[dict[str, Any]] = []
    resolved: list[dict[str, Any]] = []
    for i, entry in enumerate(raw["expectations"]):
        loc: list[Any] = [name, "expectations", i]
        for_each = entry.get("for_each")
        base = {k: copy.deepcopy(v) for k, v in entry.items() if k != "for_each"}
        base.setdefault("meta", {})
        if for_each is None:
            variants = [base]
        else:
            items = params.get(for_each, _OMIT)
            if items is _OMIT or items is None:
                missing.append(_missing(name, for_each, [*loc, "for_each"]))
                continue
            if isinstance(items, str | bytes) or not isinstance(items, list | tuple):
                raise TypeError(f"parameter {for_each!r} must be a list, got {type(items).__name__}")
            variants = []
            for item in items:
                variant = copy.deepcopy(base)
                variant["kwargs"]["column"] = item
                variants.append(variant)
        for variant in variants:
            variant["kwargs"] = _resolve(variant["kwargs"], params, name, [*loc, "kwargs"], missing)
            resolved.append(variant)
    if missing:
        names = list(dict.fromkeys(m["parameter"] for m in missing))
        raise ParameterError(
            "MISSING_PARAMETER",
            f"suite {name!r} needs parameter(s) {', '.join(map(repr, names))} for its placeholders",
            details={
                "suite": name,
                "parameters": sorted(names),
                "errors": [{k: m[k] for k in ("loc", "code", "message")} for m in missing],
            },
        )
    return resolved


def _read_suite(name: str, expectations_dir: str | Path | None) -> dict[str, Any]:
    folder = Path(expectations_dir) if expectations_dir is not None else DEFAULT_EXPECTATIONS_DIR
    if not isinstance(name, str) or not _SUITE_NAME_RE.fullmatch(name):
        raise ParameterError("UNKNOWN_SUITE", f"invalid suite name {name!r}", details={"suite": str(name)})
    path = folder / f"{name}.json"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise ParameterError(
            "UNKNOWN_SUITE",
            f"no suite {name!r} in {folder} (available: {', '.join(available) or 'none'})",
            details={"suite": name, "path": str(path), "available": available},
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _invalid(name, path, f"cannot read suite: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("expectations"), list):
        raise _invalid(name, path, "a suite must be an object with an 'expectations' list")
    if data.get("name", name) != name:
        raise _invalid(name, path, f"the file declares name {data['name']!r}; it must match the file name")
    for i, entry in enumerate(data["expectations"]):
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("type"), str)
            and isinstance(entry.get("kwargs", {}), dict)
            and isinstance(entry.get("meta", {}), dict)
            and (entry.get("for_each") is None or isinstance(entry["for_each"], str))
        ):
            raise _invalid(name, path, f"expectation {i} needs a string 'type' and object 'kwargs'/'meta'")
        entry.setdefault("kwargs", {})
    return data


def _derive_parameters(parameters: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(parameters or {})
    channels = params.get("channels")
    if "columns" not in params and isinstance(channels, list | tuple):
        params["columns"] = [INDEX_NAME, *channels]
    return params


def _resolve(value: Any, params: dict[str, Any], suite: str, loc: list[Any], missing: list) -> Any:
    """Fill placeholders recursively; a dropped optional placeholder returns ``_OMIT``."""
    if isinstance(value, dict):
        if _PARAM_KEY in value:
            extra = set(value) - _PLACEHOLDER_KEYS
            pname = value[_PARAM_KEY]
            if extra or not isinstance(pname, str):
                raise _invalid(suite, None, f"bad placeholder {value!r} at {'/'.join(map(str, loc))}")
            got = params.get(pname)
            if got is not None:
                return copy.deepcopy(got)
            if "default" in value:
                return copy.deepcopy(value["default"])
            if value.get("optional"):
                return _OMIT
            if pname in params:  # explicitly None and neither default nor optional
                return None
            missing.append(_missing(suite, pname, loc))
            return None
        out = {}
        for k, v in value.items():
            r = _resolve(v, params, suite, [*loc, k], missing)
            if r is not _OMIT:
                out[k] = r
        return out
    if isinstance(value, list):
        items = (_resolve(v, params, suite, [*loc, i], missing) for i, v in enumerate(value))
        return [v for v in items if v is not _OMIT]
    return value


def _missing(suite: str, pname: str, loc: list[Any]) -> dict[str, Any]:
    return {
        "parameter": pname,
        "loc": [str(x) if not isinstance(x, int) else x for x in loc],
        "code": "MISSING_PARAMETER",
        "message": f"suite {suite!r} placeholder {{'$param': {pname!r}}} has no value",
    }


def _invalid(suite: str, path: Path | None, message: str) -> ParameterError:
    details: dict[str, Any] = {"suite": suite}
    if path is not None:
        details["path"] = str(path)
    return ParameterError("INVALID_SUITE", f"suite {suite!r}: {message}", details=details)


# --------------------------------------------------------------------------- validation


def validate_frame_quality(
    frame: pd.DataFrame,
    suite_name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    expectations_dir: str | Path | None = None,
) -> GateResult:
    """Validate ``frame`` (index reset into column ``utc``) against suite ``suite_name``.

    Uses a fresh ephemeral GX context per call and result format SUMMARY. Suite problems raise
    ``ParameterError``; data problems are reported in the returned :class:`GateResult`.
    """
    configs = load_suite(suite_name, parameters, expectations_dir)
    import great_expectations as gx
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    started = time.perf_counter()
    if INDEX_NAME in frame.columns:
        return _reserved_column_result(suite_name, frame, started)
    _quiet_gx_logging()
    expectations = []
    for order, cfg in enumerate(configs):
        cfg = {**cfg, "meta": {**cfg.get("meta", {}), _ORDER_KEY: order}}
        try:
            expectations.append(ExpectationConfiguration(**cfg).to_domain_obj())
        except Exception as exc:  # GX raises pydantic, TypeError and its own errors here
            raise _invalid(suite_name, None, f"GX rejects {cfg['type']} {cfg.get('kwargs')}: {exc}") from exc
    suite = gx.ExpectationSuite(name=suite_name, expectations=expectations)

    data = frame.reset_index(names=INDEX_NAME)
    context = _ephemeral_context()
    batch = _batch_definition(context).get_batch(batch_parameters={"dataframe": data})
    outcome = batch.validate(suite, result_format=RESULT_FORMAT)

    results = sorted(outcome.results, key=lambda r: r.expectation_config.meta.get(_ORDER_KEY, 0))
    columns = {str(c) for c in data.columns}
    failures = [_failure(r, columns) for r in results if not r.success]
    stats = dict(outcome.statistics)
    evaluated = int(stats.get("evaluated_expectations", len(results)))
    stats.update(rows=len(frame), columns=int(frame.shape[1]), seconds=time.perf_counter() - started)
    return GateResult(
        suite=suite_name,
        success=bool(outcome.success),
        evaluated=evaluated,
        failed=len(failures),
        failures=failures,
        statistics=stats,
    )


def gate_error(result: GateResult, subject: str | None = None) -> DataQualityError:
    """The ``GATE_FAILED`` error for a failed result, naming the suite, the subject (e.g. the stage
    output) and the first failed expectations."""
    shown = "; ".join(
        f"{f['expectation']}" + (f"({f['column']})" if f["column"] else "") + f": {f['message']}"
        for f in result.failures[:_MESSAGE_FAILURES]
    )
    more = result.failed - _MESSAGE_FAILURES
    target = f" for {subject}" if subject else ""
    return DataQualityError(
        "GATE_FAILED",
        f"quality gate {result.suite!r}{target} failed {result.failed} of {result.evaluated} expectations: {shown}"
        + (f"; and {more} more" if more > 0 else ""),
        details={"suite": result.suite, "subject": subject, "failures": copy.deepcopy(result.failures),
                 "statistics": dict(result.statistics)},
    )


def check_gate(
    frame: pd.DataFrame,
    suite_name: str,
    parameters: Mapping[str, Any] | None = None,
    *,
    expectations_dir: str | Path | None = None,
) -> GateResult:
    """Validate and return the result; raise ``DataQualityError`` ``GATE_FAILED`` on failure."""
    result = validate_frame_quality(frame, suite_name, parameters, expectations_dir=expectations_dir)
    if not result.success:
        raise gate_error(result)
    return result


def _ephemeral_context() -> AbstractDataContext:
    """A new in-memory context: no stores on disk, no docs site, no progress bars, no analytics."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
    )
    return gx.get_context(mode="ephemeral", project_config=config)


def _batch_definition(context: AbstractDataContext) -> BatchDefinition:
    """Get or add the pandas datasource, dataframe asset and whole-frame batch definition."""
    try:
        source = context.data_sources.get(DATASOURCE_NAME)
    except KeyError:
        source = context.data_sources.add_pandas(DATASOURCE_NAME)
    try:
        asset = source.get_asset(ASSET_NAME)
    except LookupError:
        asset = source.add_dataframe_asset(ASSET_NAME)
    try:
        return asset.get_batch_definition(BATCH_DEFINITION_NAME)
    except KeyError:
        return asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION_NAME)


def _quiet_gx_logging() -> None:
    """Raise GX's logger to WARNING unless the application configured it itself."""
    logger = logging.getLogger("great_expectations")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.WARNING)


def _reserved_column_result(suite: str, frame: pd.DataFrame, started: float) -> GateResult:
    failure = {
        "expectation": "zeitflow_index_column_is_free",
        "column": INDEX_NAME,
        "kwargs": {},
        "observed": [str(c) for c in frame.columns],
        "unexpected_count": None,
        "unexpected_percent": None,
        "examples": [],
        "message": f"a channel column is named {INDEX_NAME!r}, which is reserved for the index",
        "exception": None,
    }
    stats = {"evaluated_expectations": 1, "successful_expectations": 0, "unsuccessful_expectations": 1,
             "success_percent": 0.0, "rows": len(frame), "columns": int(frame.shape[1]),
             "seconds": time.perf_counter() - started}
    return GateResult(suite, False, 1, 1, [failure], stats)


# --------------------------------------------------------------------------- failure summaries


def _failure(result: Any, columns: set[str]) -> dict[str, Any]:
    """Summarise one failed GX result as a JSON-serialisable dict."""
    cfg = result.expectation_config
    etype: str = cfg.type
    kwargs = {k: _json_safe(v) for k, v in cfg.kwargs.items() if k != "batch_id"}
    column = kwargs.get("column")
    res = result.result or {}
    observed = _json_safe(res.get("observed_value"))
    details = res.get("details") or {}
    unexpected_count = res.get("unexpected_count")
    percent = res.get("unexpected_percent")
    examples = [_json_safe(v) for v in (res.get("partial_unexpected_list") or [])[:_MAX_EXAMPLES]]
    exception = _exception_message(result.exception_info)
    if exception is not None:
        if column is not None and str(column) not in columns:
            message = f"column {column!r} not found"
        else:
            message = f"could not be evaluated: {exception}"
    else:
        message = _message(etype, kwargs, observed, details, unexpected_count, examples)
    return {
        "expectation": etype,
        "column": None if column is None else str(column),
        "kwargs": kwargs,
        "observed": observed,
        "unexpected_count": None if unexpected_count is None else int(unexpected_count),
        "unexpected_percent": None if percent is None else _json_safe(float(percent)),
        "examples": examples,
        "message": message,
        "exception": exception,
    }


def _message(
    etype: str, kw: dict[str, Any], observed: Any, details: dict, count: Any, examples: list
) -> str:
    col = kw.get("column")
    eg = f" (e.g. {', '.join(_short(v) for v in examples[:3])})" if examples else ""
    if etype == "expect_column_to_exist":
        return f"column {col!r} is missing"
    if etype == "expect_column_values_to_not_be_null":
        return f"column {col!r} has {count} null value(s)"
    if etype == "expect_column_values_to_be_unique":
        return f"column {col!r} has {count} duplicated value(s){eg}"
    if etype == "expect_column_values_to_be_increasing":
        how = "strictly increasing" if kw.get("strictly") else "increasing"
        return f"column {col!r} is not {how} at {count} row(s){eg}"
    if etype == "expect_column_values_to_be_between":
        lo, hi = _bound(kw.get("min_value"), "-inf"), _bound(kw.get("max_value"), "inf")
        if lo == "-inf" and hi == "inf":
            return f"column {col!r} has {count} non-finite value(s){eg}"
        return f"column {col!r} has {count} value(s) outside [{lo}, {hi}] or non-finite{eg}"
    if etype == "expect_column_values_to_be_of_type":
        return f"column {col!r} has type {observed}; expected {kw.get('type_')}"
    if etype == "expect_column_values_to_be_in_type_list":
        return f"column {col!r} has type {observed}; expected one of {kw.get('type_list')}"
    if etype == "expect_table_row_count_to_be_between":
        lo, hi = kw.get("min_value"), kw.get("max_value")
        return f"table has {observed} row(s); expected between {lo} and {hi}"
    if etype == "expect_table_columns_to_match_set":
        mismatch = details.get("mismatched") or {}
        missing = mismatch.get("missing") or []
        unexpected = mismatch.get("unexpected") or []
        return f"columns differ from the expected set: missing {missing}, unexpected {unexpected}"
    parts = [f"{etype} failed"]
    if col is not None:
        parts.append(f"column {col!r}")
    if observed is not None:
        parts.append(f"observed {_short(observed)}")
    if count is not None:
        parts.append(f"{count} unexpected value(s){eg}")
    return "; ".join(parts)


def _bound(value: Any, unbounded: str) -> str:
    """Render a between-bound; None and ±float max (the finite-only defaults) mean no bound."""
    if value is None or (isinstance(value, float) and abs(value) >= sys.float_info.max):
        return unbounded
    return _short(value)


def _exception_message(info: Any) -> str | None:
    """GX gives either one ``{raised_exception, exception_message}`` or one per metric id."""
    if not info:
        return None
    if isinstance(info, Mapping) and "raised_exception" in info:
        infos = [info]
    elif isinstance(info, Mapping):
        infos = [v for v in info.values() if isinstance(v, Mapping)]
    else:
        return None
    for item in infos:
        if item.get("raised_exception"):
            return str(item.get("exception_message") or "unknown error")
    return None


def _json_safe(value: Any) -> Any:
    """Timestamps to ISO strings, numpy scalars to Python, non-finite floats to strings."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(v) for v in value]
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).isoformat()
    if isinstance(value, np.timedelta64):
        return None if np.isnat(value) else str(pd.Timedelta(value))
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, datetime | date | pd.Timestamp):
        return value.isoformat()
    return str(value)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(_json_safe(value), ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."
