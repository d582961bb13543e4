"""Results of a training run (stages.md §11.1, §11.3): the self-contained HTML report and the writer
that stores every result file of a run under ``runs/<run_id>/`` with a ``manifest.json`` of sizes
and sha256 digests.

The report is one HTML5 page with inline CSS and every PNG embedded as a base64 data URI; it has no
scripts and loads nothing from elsewhere (a Content-Security-Policy meta tag enforces that), so it
can be mailed, archived or opened from object storage as it is. Every user-provided string (run,
model and channel names, config values, error messages) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import json
import math
import numbers
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import ParameterError
from zeitflow.io.artifacts import ArtifactStore
from zeitflow.options.base import canonical_json
from zeitflow.settings import mask_url

__all__ = [
    "MANIFEST_NAME",
    "OVERALL_COLUMNS",
    "REPORT_NAME",
    "ManifestEntry",
    "RunManifest",
    "render_html",
    "write_run_results",
]

MANIFEST_NAME = "manifest.json"
REPORT_NAME = "report.html"

#: Column order of the overall metrics table (§10.2).
OVERALL_COLUMNS: tuple[str, ...] = (
    "model", "channel", "n_avg", "delta_minutes", "n_pairs", "mae", "mse", "rmse", "mape",
    "mape_excluded", "smape", "wape", "nrmse", "mase", "r2", "skill_mae",
)
_INTEGER_COLUMNS = frozenset({"n_avg", "n_pairs", "mape_excluded", "step", "rows_in", "rows_out"})
_STAGE_COLUMNS: tuple[str, ...] = ("stage", "output", "rows_in", "rows_out", "dropped", "gate", "reused")
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SECRET_KEY_RE = re.compile(r"(?i)(password|passwd|secret|token|api[_-]?key|service[_-]?key|access[_-]?key|"
                            r"credential|private[_-]?key)")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_MISSING = "\u2013"  # en dash shown for NaN / missing values

# --------------------------------------------------------------------------------------------
# Manifest


class ManifestEntry(BaseModel):
    """One written file: its path relative to the run folder, size and sha256."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size_bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class RunManifest(BaseModel):
    """The files of one run (§11.1); ``manifest.json`` is its JSON form and does not list itself."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    run_id: str
    root_uri: str = Field(description="The normalised storage root the run folder lives under.")
    run_uri: str = Field(description="The run folder, {root_uri}/runs/{run_id}.")
    report_uri: str | None = Field(default=None, description="URI of report.html, when it was written.")
    files: list[ManifestEntry] = Field(default_factory=list)

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no whitespace): the exact content of ``manifest.json``."""
        return canonical_json(self.model_dump(mode="json"))


def _invalid_path(path: object, why: str) -> ParameterError:
    return ParameterError(
        "INVALID_NAME",
        f"result path {path!r} is not allowed: {why}; use relative paths of '/'-separated parts made of "
        "letters, digits, '_', '.', '-' and no '..'",
        details={"parameter": "files", "value": str(path)},
    )


def _check_relative_path(path: object) -> str:
    """A relative path of ``[A-Za-z0-9_.-]`` segments without ``..``; else ``INVALID_NAME``."""
    if not isinstance(path, str) or not path:
        raise _invalid_path(path, "empty or not a string")
    if path.startswith("/") or "://" in path:
        raise _invalid_path(path, "absolute paths and URIs are not allowed")
    for segment in path.split("/"):
        if not _SEGMENT_RE.fullmatch(segment) or ".." in segment or segment == ".":
            raise _invalid_path(path, f"bad segment {segment!r}")
    if path == MANIFEST_NAME:
        raise _invalid_path(path, f"{MANIFEST_NAME} is written by write_run_results itself")
    return path


def _as_bytes(path: str, data: object) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"files[{path!r}] must be bytes or str, got {type(data).__name__}")


def write_run_results(
    root_uri: str,
    run_id: str,
    *,
    files: Mapping[str, bytes],
    storage_options: dict[str, Any] | None = None,
) -> RunManifest:
    """Write every file of a run under ``{root_uri}/runs/{run_id}/`` and then ``manifest.json``.

    Deviation from §11.1: the spec names keyword arguments (config, dataset, split, scalers, models,
    histories, tables, predictions, options); the task layer serialises those itself and passes the
    finished bytes here as ``files``, a mapping from relative path (e.g. ``metrics/overall.parquet``)
    to content (``str`` is encoded as UTF-8). Each object is written atomically through
    :class:`ArtifactStore` (local or S3); ``manifest.json`` is written last, so its presence marks a
    complete run folder. All paths and the run id are validated before anything is written
    (``ParameterError`` ``INVALID_NAME``); storage failures raise ``StorageError``.
    """
    store = ArtifactStore(root_uri, storage_options)
    if not isinstance(run_id, str) or not _SEGMENT_RE.fullmatch(run_id) or ".." in run_id or run_id == ".":
        raise ParameterError(
            "INVALID_NAME",
            f"run_id={run_id!r} is not allowed: use only letters, digits, '_', '.', '-' and no '..'",
            details={"parameter": "run_id", "value": str(run_id)},
        )
    payloads = {_check_relative_path(path): _as_bytes(path, data) for path, data in files.items()}
    run_uri = store.uri("runs", run_id)
    entries: list[ManifestEntry] = []
    for path, data in payloads.items():
        info = store.put_bytes(store.uri("runs", run_id, path), data)
        entries.append(ManifestEntry(path=path, size_bytes=info.size_bytes, sha256=info.sha256))
    entries.sort(key=lambda entry: entry.path)
    manifest = RunManifest(
        run_id=run_id, root_uri=store.root_uri, run_uri=run_uri,
        report_uri=store.uri("runs", run_id, REPORT_NAME) if REPORT_NAME in payloads else None,
        files=entries,
    )
    store.put_bytes(store.uri("runs", run_id, MANIFEST_NAME), manifest.to_json().encode("utf-8"))
    return manifest


# --------------------------------------------------------------------------------------------
# Formatting helpers


def _e(value: object) -> str:
    """HTML-escaped text of ``value`` (quotes included, so it is safe inside attributes too)."""
    return html.escape(str(value), quote=True)


def _is_missing(value: object) -> bool:
    if value is None:
        return True
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return math.isnan(float(value))
    return type(value).__name__ in {"NAType", "NaTType"}


def _format_number(value: numbers.Real, column: str | None = None) -> str:
    number = float(value)
    if math.isinf(number):
        return "\u221e" if number > 0 else "\u2212\u221e"
    if isinstance(value, numbers.Integral) or (column in _INTEGER_COLUMNS and number.is_integer()):
        return str(int(number))
    return f"{number:.4g}"


def _text(value: object, column: str | None = None) -> str:
    """Plain-text form of a cell value (not yet escaped)."""
    if _is_missing(value):
        return _MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Real):
        return _format_number(value, column)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(_jsonable(value), ensure_ascii=False, sort_keys=True)
    return str(value)


def _jsonable(value: Any) -> Any:
    """A JSON-compatible copy: NaN/inf become None, dates ISO strings, unknown objects strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if _is_missing(value):
        return None
    if isinstance(value, bool | str) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, BaseModel):
        return _jsonable(value.model_dump(mode="json"))
    return str(value)


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value)


def _masked(value: Any) -> Any:
    """Defence in depth on top of the caller's masking: values under secret-looking keys become
    ``***`` and URL passwords are masked."""
    if isinstance(value, Mapping):
        return {k: ("***" if _SECRET_KEY_RE.search(str(k)) and not _is_blank(v) else _masked(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    if isinstance(value, str) and "://" in value:
        return mask_url(value)
    return value


def _slug(name: str, used: set[str]) -> str:
    """A stable element id part for ``name``: unsafe characters become '-', duplicates get a suffix."""
    base = re.sub(r"[^A-Za-z0-9_.-]", "-", name) or "model"
    slug, n = base, 2
    while slug in used:
        slug, n = f"{base}-{n}", n + 1
    used.add(slug)
    return slug


def _png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG header, or None when ``data`` is not a PNG."""
    if len(data) >= 24 and data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    return None


def _image(data: bytes, alt: str, key: str, css_class: str) -> str:
    size = _png_size(bytes(data))
    mime = "image/png" if size is not None else (
        "image/jpeg" if bytes(data[:3]) == b"\xff\xd8\xff" else "image/png")
    dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
    encoded = base64.b64encode(bytes(data)).decode("ascii")
    return (f'<img class="plot {_e(css_class)}" data-key="{_e(key)}" alt="{_e(alt)}"{dims} '
            f'src="data:{mime};base64,{encoded}">')


def _figure(data: bytes, caption: str, key: str, css_class: str) -> str:
    return (f'<figure class="{_e(css_class)}">{_image(data, caption, key, css_class)}'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _rows(rows: Any) -> list[dict[str, Any]]:
    """A list of dict rows from a list of mappings or a DataFrame-like object with ``to_dict``."""
    if rows is None:
        return []
    if hasattr(rows, "to_dict") and not isinstance(rows, Mapping):
        return [dict(r) for r in rows.to_dict("records")]
    return [dict(r) for r in rows]


def _column_order(rows: Sequence[Mapping[str, Any]], preferred: Iterable[str]) -> list[str]:
    present: dict[str, None] = {}
    for row in rows:
        present.update(dict.fromkeys(row))
    ordered = [c for c in preferred if c in present]
    return ordered + [c for c in present if c not in ordered]


# --------------------------------------------------------------------------------------------
# Sections


_CSS = """
:root { color-scheme: light; }
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0; color: #1d2733;
       background: #f5f7fa; line-height: 1.45; }
main { max-width: 1400px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
header#run-header { background: #1d3557; color: #fff; padding: 1.2rem 2rem; }
header#run-header h1 { margin: 0 0 .5rem; font-size: 1.5rem; }
header#run-header dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
header#run-header dt { font-weight: 600; opacity: .8; }
header#run-header dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
section.report-section { background: #fff; border: 1px solid #d9e0e8; border-radius: 6px; padding: 1rem 1.4rem;
                         margin: 1.2rem 0; }
section.model { border-left: 4px solid #457b9d; }
section.model.failed { border-left-color: #c1121f; }
h2 { font-size: 1.25rem; margin: .2rem 0 .8rem; }
h3 { font-size: 1.05rem; margin: 1rem 0 .5rem; }
table { border-collapse: collapse; font-size: .85rem; margin: .4rem 0 1rem; }
caption { text-align: left; font-weight: 600; padding: .3rem 0; }
th, td { border: 1px solid #d9e0e8; padding: .25rem .55rem; }
th { background: #eef2f6; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; font-family: ui-monospace, monospace; }
td.missing { color: #8a94a0; text-align: center; }
td.missing[title] { cursor: help; text-decoration: underline dotted; }
tr.baseline td { background: #fafbfc; color: #4a5561; }
tr.own td:first-child { font-weight: 600; }
.table-wrap { overflow-x: auto; }
pre { background: #f0f3f6; border: 1px solid #d9e0e8; border-radius: 4px; padding: .8rem; overflow-x: auto;
      font-size: .8rem; max-height: 40rem; }
.badge { display: inline-block; padding: .05rem .5rem; border-radius: 999px; font-size: .8rem; font-weight: 600; }
.badge.completed, .badge.passed { background: #d8f3dc; color: #1b4332; }
.badge.failed { background: #ffd6d6; color: #7f0000; }
.badge.other { background: #e9ecef; color: #343a40; }
.error { background: #fff0f0; border: 1px solid #f1a7a7; border-radius: 4px; padding: .6rem 1rem; }
.plots { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
figure { margin: 0; }
figure.violin img { max-height: 420px; width: auto; }
img.plot { max-width: 100%; height: auto; border: 1px solid #e3e8ee; background: #fff; }
figcaption { font-size: .8rem; color: #4a5561; text-align: center; }
.note { color: #4a5561; font-size: .85rem; }
"""


def _section(section_id: str, title: str, body: str, extra_class: str = "") -> str:
    classes = "report-section" + (f" {extra_class}" if extra_class else "")
    return f'<section id="{section_id}" class="{classes}"><h2>{_e(title)}</h2>{body}</section>'


def _header(run_id: str, flow_run_id: str | None, created_at: object, code_version: str | None) -> str:
    items = [("Run id", run_id), ("Flow-run id", flow_run_id), ("Created", created_at), ("Code version", code_version)]
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_text(v))}</dd>" for k, v in items)
    return f'<header id="run-header"><h1>Zeitflow run {_e(run_id)}</h1><dl>{rows}</dl></header>'


def _config_section(config: Mapping[str, Any]) -> str:
    text = json.dumps(_jsonable(_masked(dict(config))), indent=2, sort_keys=True, ensure_ascii=False)
    return _section("configuration", "Configuration", f'<pre class="config">{_e(text)}</pre>')


def _gate_cell(gate: object) -> str:
    if _is_missing(gate):
        return f'<td class="missing" title="not gated">{_MISSING}</td>'
    if isinstance(gate, Mapping):
        success = gate.get("success")
        label = "passed" if success else "failed" if success is not None else "other"
        detail = ", ".join(f"{k}={_text(v)}" for k, v in gate.items() if k in ("suite", "evaluated", "failed"))
        return (f'<td><span class="badge {label}">{_e(label)}</span>'
                + (f' <span class="note">{_e(detail)}</span>' if detail else "") + "</td>")
    return f"<td>{_e(_text(gate))}</td>"


def _cell(value: object, column: str, title: str | None = None) -> str:
    if _is_missing(value):
        attr = f' title="{_e(title)}"' if title else ""
        return f'<td class="missing"{attr}>{_MISSING}</td>'
    css = ' class="num"' if isinstance(value, numbers.Real) and not isinstance(value, bool) else ""
    return f"<td{css}>{_e(_text(value, column))}</td>"


def _stages_section(stage_counts: Sequence[Mapping[str, Any]], stage_plots: Mapping[str, bytes]) -> str:
    rows = _rows(stage_counts)
    figures = "".join(_figure(data, name, name, "plot") for name, data in stage_plots.items())
    plots = f'<h3>Stage plots</h3><div class="plots stage-plots">{figures}</div>' if figures else ""
    if not rows:
        return _section("stages", "Stage reports", '<p class="note">No stage reports.</p>' + plots)
    columns = _column_order(rows, _STAGE_COLUMNS)
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(_gate_cell(row.get(c)) if c == "gate" else _cell(row.get(c), c) for c in columns) + "</tr>"
        for row in rows
    )
    table = (f'<div class="table-wrap"><table class="stages"><thead><tr>{head}</tr></thead>'
             f"<tbody>{body}</tbody></table></div>")
    return _section("stages", "Stage reports", table + plots)


def _dataset_section(summary: Mapping[str, Any], violins: Mapping[str, bytes]) -> str:
    parts: list[str] = []
    if summary:
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_text(_jsonable(v)))}</td></tr>" for k, v in summary.items())
        parts.append(f'<div class="table-wrap"><table class="dataset-summary"><tbody>{rows}</tbody></table></div>')
    else:
        parts.append('<p class="note">No dataset summary.</p>')
    if violins:
        figures = "".join(_figure(data, name, name, "violin") for name, data in violins.items())
        parts.append(f'<h3>Distributions</h3><div class="plots violins">{figures}</div>')
    return _section("dataset", "Dataset", "".join(parts))


def _reason_index(reasons: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str, str, str], str]:
    """(model, channel, n_avg, metric) -> reason for the overall rows (rows without a step)."""
    index: dict[tuple[str, str, str, str], str] = {}
    for reason in reasons:
        if not _is_missing(reason.get("step")):
            continue
        key = (str(reason.get("model")), str(reason.get("channel")), _text(reason.get("n_avg"), "n_avg"),
               str(reason.get("metric")))
        index.setdefault(key, str(reason.get("reason", "")))
    return index


def _metrics_tables(name: str, rows: list[dict[str, Any]], reasons: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return '<p class="note">No metrics.</p>'
    index = _reason_index(reasons)
    columns = [c for c in _column_order(rows, OVERALL_COLUMNS) if c != "channel"]
    by_channel: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_channel.setdefault(str(row.get("channel", "")), []).append(row)
    tables: list[str] = []
    for channel, channel_rows in by_channel.items():
        head = "".join(f"<th>{_e(c)}</th>" for c in columns)
        body: list[str] = []
        for row in channel_rows:
            model = str(row.get("model", ""))
            n_avg = _text(row.get("n_avg"), "n_avg")
            css = "own" if model == name else "baseline"
            cells = "".join(_cell(row.get(c), c, index.get((model, channel, n_avg, c)) or (
                "not computed" if c not in row else None)) for c in columns)
            body.append(f'<tr class="{css}" data-model="{_e(model)}">{cells}</tr>')
        tables.append(
            f'<div class="table-wrap"><table class="metrics" data-channel="{_e(channel)}">'
            f"<caption>Channel {_e(channel)}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
        )
    return "".join(tables)


def _reason_list(reasons: Sequence[Mapping[str, Any]]) -> str:
    """Distinct (metric, reason) pairs of the overall rows, with how many values they explain."""
    counts: dict[tuple[str, str], int] = {}
    for reason in reasons:
        if _is_missing(reason.get("step")):
            key = (str(reason.get("metric", "")), str(reason.get("reason", "")))
            counts[key] = counts.get(key, 0) + 1
    if not counts:
        return ""
    items = "".join(f"<li><code>{_e(m)}</code>: {_e(r)} ({n} value{'s' if n != 1 else ''})</li>"
                    for (m, r), n in counts.items())
    return f'<ul class="reasons note">{items}</ul>'


def _plot_caption(key: str) -> str:
    if key.startswith("metric_vs_horizon_"):
        return f"MAE and RMSE vs horizon \u2013 {key.removeprefix('metric_vs_horizon_')}"
    if key.startswith("loss"):
        return "Loss curve"
    if key.startswith("test_samples"):
        return "Test samples"
    return key


def _plot_kind(key: str) -> str:
    for prefix, kind in (("metric_vs_horizon_", "horizon"), ("loss", "loss"), ("test_samples", "test-samples")):
        if key.startswith(prefix):
            return kind
    return "other"


def _ordered_plots(plots: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    rank = {"horizon": 0, "loss": 1, "test-samples": 2, "other": 3}
    return sorted(plots.items(), key=lambda item: rank[_plot_kind(item[0])])  # stable within a kind


def _error_block(error: Mapping[str, Any] | None) -> str:
    if not error:
        return '<div class="error"><p>No error was recorded.</p></div>'
    parts = [f"<p><strong>{_e(error.get('error') or 'Error')}</strong>"
             + (f" <code>{_e(error['code'])}</code>" if error.get("code") else "") + "</p>"]
    if error.get("message"):
        parts.append(f'<p class="message">{_e(error["message"])}</p>')
    if error.get("hint"):
        parts.append(f'<p class="note">Hint: {_e(error["hint"])}</p>')
    if error.get("details"):
        details = json.dumps(_jsonable(_masked(error["details"])), indent=2, sort_keys=True, ensure_ascii=False)
        parts.append(f"<pre>{_e(details)}</pre>")
    return f'<div class="error">{"".join(parts)}</div>'


def _model_section(model: Mapping[str, Any], used: set[str]) -> str:
    name = str(model.get("name", ""))
    status = str(model.get("status", ""))
    slug = _slug(name, used)
    badge = "completed" if status == "completed" else "failed" if status == "failed" else "other"
    title = (f'<h2>{_e(name)} <span class="note">({_e(model.get("kind", ""))})</span> '
             f'<span class="badge {badge}">{_e(status)}</span></h2>')
    classes = "report-section model" + ("" if status == "completed" else " failed")
    if status != "completed":
        return f'<section id="model-{_e(slug)}" class="{classes}">{title}{_error_block(model.get("error"))}</section>'
    reasons = _rows(model.get("reasons"))
    parts = [title, "<h3>Overall metrics</h3>", _metrics_tables(name, _rows(model.get("overall_rows")), reasons),
             _reason_list(reasons)]
    plots = _ordered_plots(model.get("plots") or {})
    if plots:
        figures = "".join(_figure(data, _plot_caption(key), key, _plot_kind(key)) for key, data in plots)
        parts.append(f'<h3>Plots</h3><div class="plots">{figures}</div>')
    return f'<section id="model-{_e(slug)}" class="{classes}">{"".join(parts)}</section>'


def _models_section(models: Sequence[Mapping[str, Any]], omitted_levels: Sequence[int]) -> str:
    parts: list[str] = []
    if omitted_levels:
        levels = ", ".join(_text(level, "n_avg") for level in omitted_levels)
        parts.append(f'<p class="note" id="omitted-levels">Averaging levels omitted (fewer output steps than '
                     f"n_avg): {_e(levels)}</p>")
    used: set[str] = set()
    parts += [_model_section(model, used) for model in models]
    if not models:
        parts.append('<p class="note">No models.</p>')
    return f'<div id="models">{"".join(parts)}</div>'


def render_html(
    *,
    run_id: str,
    flow_run_id: str | None,
    created_at: datetime | str | None,
    code_version: str | None,
    config: Mapping[str, Any],
    stage_counts: Sequence[Mapping[str, Any]],
    dataset_summary: Mapping[str, Any],
    violins: Mapping[str, bytes],
    models: Sequence[Mapping[str, Any]],
    omitted_levels: Sequence[int],
    stage_plots: Mapping[str, bytes] | None = None,
) -> str:
    """The self-contained ``report.html`` of a run (§11.3): header, configuration, stage counts (with the
    earlier stages' plots, e.g. the cloud scatter, under ``stage_plots``), dataset summary with violins,
    then one section per model (``id="model-<name>"``).

    ``config`` should already be masked by the caller; values under secret-looking keys and URL
    passwords are masked again here. Each model is a mapping with ``name``, ``kind``, ``status``,
    ``overall_rows`` (list of dicts or a DataFrame, §10.2 columns; the model's rows plus baselines),
    ``plots`` (name -> PNG bytes: ``metric_vs_horizon_<channel>``, ``loss``, ``test_samples``),
    ``reasons`` (§10.2 reason rows; shown as the title of a NaN cell) and ``error`` (shown instead of
    tables when the status is not ``completed``). Numbers show 4 significant digits, NaN as "–".
    """
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
    body = "".join([
        _header(run_id, flow_run_id, created_at, code_version),
        "<main>",
        _config_section(config),
        _stages_section(stage_counts, stage_plots or {}),
        _dataset_section(dataset_summary, violins),
        _models_section(models, omitted_levels),
        "</main>",
    ])
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="generator" content="zeitflow">\n'
        f"<title>Zeitflow run {_e(run_id)}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
