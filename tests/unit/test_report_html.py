"""The run report (stages.md §11.3) and the run-results writer (§11.1): a self-contained, escaped
HTML page in the documented section order, and atomic result files with a correct manifest."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from zeitflow.errors import ParameterError
from zeitflow.evaluation import report as report_module
from zeitflow.evaluation.report import RunManifest, render_html, write_run_results

EVIL = '<script>alert("x")</script>'
SECRET = "hunter2-secret-value"


def png(kind: str = "line", size: tuple[float, float] = (3, 2)) -> bytes:
    """A small real PNG drawn with matplotlib (Agg)."""
    figure = Figure(figsize=size)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if kind == "violin":
        axes.violinplot([[1.0, 2.0, 2.5, 3.0, 4.0]])
    else:
        axes.plot([0, 1, 2, 3], [1.0, 0.5, 0.7, 0.2], marker="o")
    axes.set_title(kind)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=50)
    return buffer.getvalue()


def overall_rows(model: str, channel: str) -> list[dict[str, Any]]:
    rows = []
    for name, scale in ((model, 1.0), ("persistence", 1.6)):
        for n_avg in (1, 2):
            rows.append({
                "model": name, "channel": channel, "n_avg": n_avg, "delta_minutes": 15.0 * n_avg,
                "n_pairs": 100 // n_avg, "mae": 0.123456 * scale, "mse": 0.02 * scale, "rmse": 0.1414 * scale,
                "mape": math.nan, "mape_excluded": 3, "smape": 12.3456789, "wape": 9.87654, "nrmse": 0.5,
                "mase": 0.9, "r2": 0.87654321, "skill_mae": 0.375 if name == model else math.nan,
            })
    return rows


def sample_kwargs(**changes: Any) -> dict[str, Any]:
    plots = {"metric_vs_horizon_temp": png(), "loss": png(), "test_samples": png(size=(4, 3))}
    kwargs: dict[str, Any] = {
        "run_id": "run-001",
        "flow_run_id": "3f1c-flow",
        "created_at": "2026-01-02T03:04:05Z",
        "code_version": "0.1.0+abc123",
        "config": {"project": "demo", "storage": {"metadata_url": f"postgresql://u:{SECRET}@db/zeitflow"},
                   "api_key": SECRET, "models": [{"name": "dense", "epochs": 5}]},
        "stage_counts": [
            {"stage": "load", "output": "raw", "rows_in": 1000, "rows_out": 990,
             "gate": {"suite": "load", "success": True, "evaluated": 7}},
            {"stage": "windows", "output": "dataset", "rows_in": 990, "rows_out": 800, "gate": None},
        ],
        "dataset_summary": {"samples": {"train": 600, "val": 100, "test": 100}, "features": ["temp", "hour_sin"]},
        "violins": {"violin_input_temp": png("violin", (1.5, 3)), "violin_output_temp": png("violin", (1.5, 3))},
        "models": [
            {"name": "dense", "kind": "dense", "status": "completed", "overall_rows": overall_rows("dense", "temp"),
             "plots": plots,
             "reasons": [{"model": "dense", "channel": "temp", "n_avg": 1, "step": None, "metric": "mape",
                          "reason": "all targets are zero"}],
             "error": None},
            {"name": "lstm", "kind": "lstm", "status": "failed", "overall_rows": [], "plots": {}, "reasons": [],
             "error": {"error": "ModelError", "code": "TRAINING_FAILED", "message": "loss became NaN at epoch 3",
                       "details": {"epoch": 3}, "hint": "lower the learning rate"}},
        ],
        "omitted_levels": [7, 8],
    }
    kwargs.update(changes)
    return kwargs


class _Checker(HTMLParser):
    """Collects tags, attributes and nesting errors (void elements excepted)."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "source", "wbr", "area", "base", "embed", "track"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.ids.append(str(attributes["id"]))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
            return
        self.stack.pop()


def parse(text: str) -> _Checker:
    checker = _Checker()
    checker.feed(text)
    checker.close()
    return checker


def model_section(text: str, name: str) -> str:
    start = text.index(f'id="model-{name}"')
    end = text.find('<section id="model-', start + 1)
    return text[start:end if end > 0 else len(text)]


def test_report_is_self_contained_valid_html5() -> None:
    kwargs = sample_kwargs()
    text = render_html(**kwargs)
    assert text.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in text
    assert re.search(r"<title>[^<]*run-001[^<]*</title>", text)
    checker = parse(text)
    assert checker.problems == [] and checker.stack == []
    assert len(checker.ids) == len(set(checker.ids)), "element ids must be unique"
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    images = [attrs for tag, attrs in checker.tags if tag == "img"]
    expected = [*kwargs["violins"].values(), *kwargs["models"][0]["plots"].values()]
    assert len(images) == len(expected)
    embedded = []
    for attrs in images:
        src = str(attrs["src"])
        assert src.startswith("data:image/png;base64,")
        assert "plot" in str(attrs["class"]).split()
        embedded.append(base64.b64decode(src.split(",", 1)[1]))
    assert embedded == expected
    assert not any(tag in ("link", "iframe", "object", "embed") for tag, _ in checker.tags)


def test_sections_follow_the_documented_order() -> None:
    text = render_html(**sample_kwargs())
    markers = ['id="run-header"', 'id="configuration"', 'id="stages"', 'id="dataset"', 'id="models"',
               'id="model-dense"', 'id="model-lstm"']
    positions = [text.index(marker) for marker in markers]
    assert positions == sorted(positions)
    dense = model_section(text, "dense")
    order = ['class="metrics"', 'data-key="metric_vs_horizon_temp"', 'data-key="loss"', 'data-key="test_samples"']
    positions = [dense.index(marker) for marker in order]
    assert positions == sorted(positions)
    header = text[:text.index('id="configuration"')]
    for value in ("run-001", "3f1c-flow", "2026-01-02T03:04:05Z", "0.1.0+abc123"):
        assert value in header
    stages = text[text.index('id="stages"'):text.index('id="dataset"')]
    assert "990" in stages and "800" in stages and "passed" in stages


def test_user_strings_are_escaped() -> None:
    kwargs = sample_kwargs(run_id=f"run {EVIL}", config={"note": EVIL})
    model = kwargs["models"][0]
    model["name"] = f"dense{EVIL}"
    model["overall_rows"] = overall_rows(model["name"], EVIL)
    model["plots"] = {f"metric_vs_horizon_{EVIL}": png()}
    kwargs["stage_counts"][0]["output"] = EVIL
    kwargs["dataset_summary"] = {EVIL: EVIL}
    kwargs["models"][1]["error"]["message"] = EVIL
    text = render_html(**kwargs)
    assert "<script" not in text.lower()
    assert "&lt;script&gt;" in text
    checker = parse(text)
    assert checker.problems == []
    assert not any(tag == "script" for tag, _ in checker.tags)
    tables = [attrs for tag, attrs in checker.tags if tag == "table" and "metrics" in str(attrs.get("class"))]
    assert tables and tables[0]["data-channel"] == EVIL  # round-trips as text, never as markup
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+", i) for i in checker.ids)


def test_numbers_nan_and_reasons() -> None:
    text = render_html(**sample_kwargs())
    dense = model_section(text, "dense")
    assert '<td class="num">0.1235</td>' in dense  # 4 significant digits
    assert '<td class="num">12.35</td>' in dense
    assert '<td class="num">100</td>' in dense  # n_pairs stays an integer
    assert '<td class="missing" title="all targets are zero">\u2013</td>' in dense
    assert '<td class="missing">\u2013</td>' in dense  # NaN without a reason
    assert "nan" not in re.sub(r'src="[^"]*"', "", dense).lower()
    assert 'class="own"' in dense and 'class="baseline"' in dense
    assert 'id="omitted-levels"' in text and "7, 8" in text


def test_dataframe_rows_are_accepted() -> None:
    kwargs = sample_kwargs()
    kwargs["models"][0]["overall_rows"] = pd.DataFrame(overall_rows("dense", "temp"))
    dense = model_section(render_html(**kwargs), "dense")
    assert dense.count("<tr") == 5  # header + 4 rows
    assert '<td class="missing" title="all targets are zero">\u2013</td>' in dense


def test_failed_model_shows_its_error_instead_of_tables() -> None:
    text = render_html(**sample_kwargs())
    lstm = model_section(text, "lstm")
    assert "TRAINING_FAILED" in lstm and "loss became NaN at epoch 3" in lstm and "lower the learning rate" in lstm
    assert 'class="metrics"' not in lstm and "<img" not in lstm
    assert 'class="badge failed"' in lstm


def test_secrets_in_the_config_are_not_shown() -> None:
    text = render_html(**sample_kwargs())
    assert SECRET not in text
    assert "postgresql://u:***@db/zeitflow" in text


# --------------------------------------------------------------------------------------------
# write_run_results


def run_files() -> dict[str, bytes]:
    return {
        "config.json": json.dumps({"a": 1}).encode(),
        "metrics/overall.parquet": b"PAR1" + bytes(range(256)) + b"PAR1",
        "plots/loss_dense.png": png(),
        "models/dense/model.keras": b"\x00keras" * 100,
        "report.html": render_html(**sample_kwargs()).encode("utf-8"),
    }


def test_write_run_results_writes_files_and_manifest(tmp_path: Path) -> None:
    files = run_files()
    manifest = write_run_results(str(tmp_path), "run-001", files=files)
    folder = tmp_path / "runs" / "run-001"
    on_disk = json.loads((folder / "manifest.json").read_text("utf-8"))
    assert RunManifest.model_validate(on_disk) == manifest
    assert (folder / "manifest.json").read_text("utf-8") == manifest.to_json()
    assert [entry.path for entry in manifest.files] == sorted(files)
    for entry in manifest.files:
        data = (folder / entry.path).read_bytes()
        assert data == files[entry.path]
        assert entry.size_bytes == len(data)
        assert entry.sha256 == hashlib.sha256(data).hexdigest()
    assert "manifest.json" not in {entry.path for entry in manifest.files}
    assert manifest.run_id == "run-001"
    assert manifest.root_uri == f"file://{tmp_path.resolve()}"
    assert manifest.report_uri == f"file://{(folder / 'report.html').resolve()}"
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_manifest_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    original = report_module.ArtifactStore.put_bytes

    def spy(self: Any, uri: str, data: bytes) -> Any:
        written.append(uri.rsplit("/runs/run-1/", 1)[1])
        return original(self, uri, data)

    monkeypatch.setattr(report_module.ArtifactStore, "put_bytes", spy)
    write_run_results(str(tmp_path), "run-1", files=run_files())
    assert written[-1] == "manifest.json" and written.count("manifest.json") == 1
    assert sorted(written[:-1]) == sorted(run_files())


def test_report_uri_is_none_without_a_report(tmp_path: Path) -> None:
    manifest = write_run_results(str(tmp_path), "r", files={"config.json": b"{}"})
    assert manifest.report_uri is None and len(manifest.files) == 1


@pytest.mark.parametrize(
    "path", ["../x", "/abs", "a/../b", "a//b", "a/", "", "bad name.txt", "x/./y", "manifest.json", "s3://b/x"]
)
def test_invalid_paths_are_rejected_before_writing(tmp_path: Path, path: str) -> None:
    with pytest.raises(ParameterError) as info:
        write_run_results(str(tmp_path), "run-1", files={"config.json": b"{}", path: b"x"})
    assert info.value.code == "INVALID_NAME"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("run_id", ["../r", "a/b", "", ".."])
def test_invalid_run_ids_are_rejected(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(ParameterError) as info:
        write_run_results(str(tmp_path), run_id, files={"config.json": b"{}"})
    assert info.value.code == "INVALID_NAME"
    assert not (tmp_path / "runs").exists()


def test_stage_plots_appear_in_the_stage_section() -> None:
    """Plots of earlier stages (e.g. the cloud scatter) are embedded under the stage reports, before the dataset."""
    text = render_html(**sample_kwargs(), stage_plots={"cloud aligned": png("scatter")})
    stages_at, dataset_at = text.index('id="stages"'), text.index('id="dataset"')
    caption_at = text.index("<figcaption>cloud aligned</figcaption>")
    assert stages_at < caption_at < dataset_at
    assert 'data-key="cloud aligned"' in text[stages_at:dataset_at]
    assert "Stage plots" not in render_html(**sample_kwargs())
