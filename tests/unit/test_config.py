"""PipelineConfig: YAML loading, ``--set`` overrides, and errors that name the offending key."""

from __future__ import annotations

from pathlib import Path

import pytest

from zeitflow.config import PipelineConfig, apply_overrides, load_config, parse_config
from zeitflow.errors import ParameterError

MINIMAL = {"project": "demo", "sources": [{"name": "a", "path": "data/a.csv"}]}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "project.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_is_loaded_and_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, "project: demo\nsources:\n  - name: a\n    path: data/a.csv\n"))
    assert config.project == "demo"
    assert config.sources[0].path == str(tmp_path / "data" / "a.csv")
    assert config.sources[0].load.timezone == "UTC"


def test_urls_and_absolute_paths_are_kept(tmp_path: Path) -> None:
    config = parse_config({"project": "p", "sources": [
        {"name": "s3", "path": "s3://bucket/x.csv"}, {"name": "abs", "path": "/data/y.csv"}]}, base=tmp_path)
    assert [s.path for s in config.sources] == ["s3://bucket/x.csv", "/data/y.csv"]


def test_overrides_set_nested_keys_with_yaml_scalars() -> None:
    data = apply_overrides(
        {"project": "p", "sources": [{"name": "a", "path": "x", "load": {}}]},
        ["sources.0.load.timezone=Europe/Vienna", "sources.0.load.coerce_year=2023",
         "sources.0.load.dayfirst=false", "sources.0.gate.value_max=10.5"],
    )
    source = data["sources"][0]
    assert source["load"] == {"timezone": "Europe/Vienna", "coerce_year": 2023, "dayfirst": False}
    assert source["gate"] == {"value_max": 10.5}


@pytest.mark.parametrize("override, loc", [
    ("sources.3.name=x", "sources.3"),
    ("project.name=x", "project.name"),
    ("novalue", "novalue"),
])
def test_bad_overrides_name_the_key(override: str, loc: str) -> None:
    with pytest.raises(ParameterError) as info:
        apply_overrides({"project": "p", "sources": [{"name": "a"}]}, [override])
    assert info.value.code == "INVALID_OVERRIDE"
    assert info.value.details["errors"][0]["loc"] == loc


def test_invalid_value_names_the_offending_key() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(MINIMAL, ["sources.0.load.timezone=Mars/Olympus"])
    err = info.value
    assert err.code == "UNSUPPORTED_TIMEZONE"
    assert err.details["errors"][0]["loc"] == "sources.0.load.timezone"
    assert "Mars/Olympus" in err.message


def test_unknown_key_is_rejected_with_its_name() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config({**MINIMAL, "sourcez": []})
    assert info.value.code == "UNKNOWN_PARAMETER"
    assert "sourcez" in info.value.message


def test_every_error_is_listed() -> None:
    with pytest.raises(ParameterError) as info:
        parse_config({"project": "bad name!", "sources": [{"name": "a", "path": "x", "load": {"chunk_rows": 5}}]})
    locs = {e["loc"] for e in info.value.details["errors"]}
    assert {"project", "sources.0.load.chunk_rows"} <= locs


@pytest.mark.parametrize("data, code", [
    ({"project": "p", "sources": []}, "MISSING_PARAMETER"),
    ({"project": "p", "sources": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]},
     "PARAM_COMPARISON_FAILED"),
    ({"project": "../etc", "sources": [{"name": "a", "path": "x"}]}, "INVALID_NAME"),
    ({"project": "p", "sources": [{"name": "a", "path": "x", "gate": {"value_min": 2, "value_max": 1}}]},
     "PARAM_COMPARISON_FAILED"),
])
def test_config_level_rules(data: dict, code: str) -> None:
    with pytest.raises(ParameterError) as info:
        parse_config(data)
    assert info.value.code == code


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ParameterError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.code == "CONFIG_NOT_FOUND"
    with pytest.raises(ParameterError) as info:
        load_config(_write(tmp_path, "project: [unclosed\n"))
    assert info.value.code == "INVALID_CONFIG"
    assert "line" in info.value.message


def test_parameters_hash_is_stable_and_sensitive() -> None:
    a = parse_config(MINIMAL)
    b = PipelineConfig.model_validate(MINIMAL)
    assert a.parameters_hash() == b.parameters_hash()
    c = parse_config(MINIMAL, ["sources.0.load.timezone=Europe/Zurich"])
    assert c.sources[0].load.parameters_hash() != a.sources[0].load.parameters_hash()


def test_bundled_examples_validate(examples_dir: Path) -> None:
    for path in sorted(examples_dir.glob("*.yaml")):
        config = load_config(path)
        for source in config.sources:
            for p in source.paths():
                assert Path(p).exists(), p
