"""The bad-input corpus of ``tests/data/bad/`` through ``zeitflow run --json`` (issue 9, item 1).

Every case of ``tests/data/bad/cases.yaml`` is written out as a project file on a fresh storage root and run
in-process through the CLI under the session Prefect harness. A failing case must exit with 2 (usage or input
error) or 1 (internal, storage or quality-gate error) without an exception escaping the CLI or a traceback on
stdout, end with the JSON error line naming the error class, the code and the file, line, column, channel or
parameter involved, and commit nothing of the failing stage: no object under ``{root}/{project}/{stage}/``
and no ``stage_outputs`` row. Stages before it may have committed their outputs, exactly as the case lists
them. Some inputs are accepted with a warning or a count; those cases assert the warning code in the stage's
stored report and the counts of the summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from zeitflow.cli import app
from zeitflow.io.metadata import MetadataStore

BAD = Path(__file__).resolve().parents[1] / "data" / "bad"
CASES: list[dict[str, Any]] = yaml.safe_load((BAD / "cases.yaml").read_text(encoding="utf-8"))["cases"]
STAGES = ("load", "resample", "clean", "align", "cloud", "dataset")
GOOD_ROWS = "".join(f"2024-01-01 {h:02d}:00;{h};{h * 2}\n" for h in range(20))


# -- recipes for the big files that are generated, not committed ----------------------------------


def huge_line(path: Path) -> None:
    """20 good rows whose second data line (physical line 3) is 1,001 fields of 1,000 characters (1 MB)."""
    rows = GOOD_ROWS.splitlines()
    rows[1] = "2024-01-01 01:00;" + ";".join(["x" * 1000] * 1000)
    path.write_text("Zeit;temp;load\n" + "\n".join(rows) + "\n", encoding="utf-8")


def undecodable_tail(path: Path, rows: int) -> None:
    """``rows`` valid UTF-8 minute rows (more than the 1 MiB detection sample), then a 0xFF byte."""
    start = datetime(2024, 1, 1)
    body = "".join(f"{start + timedelta(minutes=i):%Y-%m-%d %H:%M};{i % 1000}\n" for i in range(rows))
    head = ("Zeit;temp\n" + body).encode("ascii")
    assert len(head) > 1 << 20
    path.write_bytes(head + b"2024-02-15 00:00;\xff\n2024-02-15 00:01;2\n")


RECIPES: dict[str, Callable[..., None]] = {"huge_line": huge_line, "undecodable_tail": undecodable_tail}


# -- building and running a case ------------------------------------------------------------------


def _source_path(path: str, generated: Path) -> str:
    """A corpus path (relative to ``tests/data/bad``) or ``tmp:NAME`` for a generated file, made absolute."""
    if path.startswith("tmp:"):
        return str(generated / path.removeprefix("tmp:"))
    return str((BAD / path).resolve())


def _project_file(case: dict[str, Any], tmp_path: Path) -> Path:
    """The project YAML the case runs: the committed ``config`` as is, or ``project`` written out."""
    if "config" in case:
        return BAD / case["config"]
    generated = tmp_path / "generated"
    generated.mkdir()
    for spec in case.get("generate", []):
        params = {k: v for k, v in spec.items() if k not in {"name", "recipe"}}
        RECIPES[spec["recipe"]](generated / spec["name"], **params)
    project = {"project": case["id"], **case["project"]}
    sources = []
    for source in project["sources"]:
        paths = source["path"]
        if isinstance(paths, list):
            sources.append({**source, "path": [_source_path(p, generated) for p in paths]})
        else:
            sources.append({**source, "path": _source_path(paths, generated)})
    project["sources"] = sources
    file = tmp_path / "project.yaml"
    file.write_text(yaml.safe_dump(project, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return file


def _committed_rows(root: Path) -> dict[str, int]:
    """``stage_outputs`` rows per stage (none when the run never opened the metadata store)."""
    db = root / "zeitflow.db"
    if not db.exists():
        return dict.fromkeys(STAGES, 0)
    store = MetadataStore(f"sqlite:///{db}")
    try:
        return {stage: store.count_stage_outputs(stage=stage) for stage in STAGES}
    finally:
        store.dispose()


def _stage_files(root: Path, project: str, stage: str) -> list[Path]:
    """Every object under ``{root}/{project}/{stage}/``."""
    return sorted(p for p in (root / project / stage).rglob("*") if p.is_file())


def _warning_codes(report: Any) -> Iterator[str]:
    """Every warning code anywhere in a stage report (load reports nest them per source)."""
    if isinstance(report, dict):
        for key, value in report.items():
            if key == "warnings" and isinstance(value, list):
                yield from (w["code"] for w in value if isinstance(w, dict) and "code" in w)
            else:
                yield from _warning_codes(value)
    elif isinstance(report, list):
        for item in report:
            yield from _warning_codes(item)


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def _contains(actual: Any, expected: Any) -> bool:
    """Whether ``actual`` holds ``expected``: mappings key by key (extra keys allowed), anything else equal."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    return actual == expected


def _check_success(case: dict[str, Any], summary: dict[str, Any]) -> None:
    """The warnings, drop counts, non-numeric counts, channel names and stage figures a succeeding case expects."""
    expect = case["expect"]
    stages = {s["stage"]: s for s in summary["stages"]}
    for stage, details in expect.get("stage_details", {}).items():
        assert _contains(stages[stage]["details"], details), stages[stage]["details"]
    load = stages["load"]
    if "warning" in expect:
        stage = stages[expect["warning"]["stage"]]
        report = json.loads(_local(stage["report_uri"]).read_text(encoding="utf-8"))
        assert expect["warning"]["code"] in set(_warning_codes(report)), sorted(set(_warning_codes(report)))
    if "dropped" in expect:
        assert load["dropped"] == expect["dropped"]
    if "columns" in expect:
        assert load["columns"] == expect["columns"]
    if "non_numeric" in expect:
        report = json.loads(_local(load["report_uri"]).read_text(encoding="utf-8"))
        channels = report["sources"][0]["channels"]
        assert {c: channels[c]["non_numeric"] for c in expect["non_numeric"]} == expect["non_numeric"]


def _params(case: dict[str, Any]) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else []
    return pytest.param(case, id=case["id"], marks=marks)


def test_corpus_is_complete() -> None:
    """Unique ids, at least 40 committed input files, and every file a case names exists (or is meant not to)."""
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids))
    inputs = [p for p in BAD.iterdir() if p.is_file() and p.name not in {"cases.yaml", "README.md"}]
    assert len(inputs) >= 40, len(inputs)
    named = {f for c in CASES for f in c["files"]}
    assert named <= {p.name for p in inputs}, named - {p.name for p in inputs}
    assert all(not (BAD / f).exists() for c in CASES for f in c.get("absent", []))
    unused = {p.name for p in inputs} - named
    assert not unused, f"corpus files no case reads: {sorted(unused)}"
    readme = (BAD / "README.md").read_text(encoding="utf-8")
    assert all(f"`{c['id']}`" in readme for c in CASES), [c["id"] for c in CASES if f"`{c['id']}`" not in readme]


@pytest.mark.parametrize("case", [_params(c) for c in CASES])
def test_bad_input(case: dict[str, Any], storage_env: Path, tmp_path: Path) -> None:
    """``zeitflow run --json`` on one case: exit code, error class, code and message, and what was committed."""
    expect = case["expect"]
    config = _project_file(case, tmp_path)
    result = CliRunner().invoke(app, ["run", str(config), "--json", *[f"--set={s}" for s in case.get("set", [])]])
    output = result.output
    # The CLI itself handles every case: no exception escapes it, and stdout carries no traceback and ends
    # with the JSON line (Prefect's own run logs on stderr may show the flow's traceback).
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert "Traceback" not in result.stdout and "internal error:" not in result.stderr, output
    assert result.exit_code == expect["exit"], output
    last = json.loads(result.stdout.strip().splitlines()[-1])
    committed = _committed_rows(storage_env)
    project = case["id"]

    if expect["exit"] == 0:
        assert last["status"] == "completed"
        _check_success(case, last)
    else:
        assert last["status"] == "failed"
        assert (last["error"], last["code"]) == (expect["error"], expect["code"]), last
        for fragment in expect["message"]:
            assert str(fragment) in last["message"], (fragment, last["message"])
        assert _contains(last["details"], expect.get("details", {})), last["details"]
        assert f"error: {expect['code']}: " in result.stderr  # the human line
        stage = expect.get("stage")
        if stage is not None:
            assert committed[stage] == 0
            assert _stage_files(storage_env, project, stage) == []
        else:  # rejected while the config was validated, before anything ran: nothing written at all
            assert list(storage_env.rglob("*")) == []

    expected = {s: expect.get("committed", {}).get(s, 0) for s in STAGES}
    assert committed == expected
    for stage, rows in expected.items():
        parquet = [p for p in _stage_files(storage_env, project, stage) if p.suffix == ".parquet"]
        assert len(parquet) == rows, (stage, parquet)
