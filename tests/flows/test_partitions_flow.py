"""Partitioned ingest and forecast runs (architecture §5): a partition restricts the loaded rows to its UTC
window, its outputs live in their own ``partition-<key>/`` folder, so re-running one partition rewrites that
partition only, and bad or empty partitions fail with coded errors before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.ingest import ingest
from zeitflow.config import load_config
from zeitflow.errors import LoadError, ParameterError
from zeitflow.io.artifacts import read_frame


def _path(uri: str) -> Path:
    return Path(uri.removeprefix("file://"))


def test_daily_partitions_are_windows_with_their_own_outputs(examples_dir: Path, storage_env: Path) -> None:
    config_file = str(examples_dir / "payerne_10min_temperature.yaml")
    first = ingest(config_file=config_file, partition="2016-06-01")
    second = ingest(config_file=config_file, partition="2016-06-02")
    assert first.partition == "2016-06-01" and second.partition == "2016-06-02"
    one, two = first.stages[0], second.stages[0]
    assert "/partition-2016-06-01/" in one.uri and "/partition-2016-06-02/" in two.uri
    assert one.rows_out == two.rows_out == 144  # one day of 10-minute rows
    frame = read_frame(one.uri, expected_sha256=one.sha256)
    assert str(frame.index[0]) == "2016-06-01 00:00:00+00:00" and str(frame.index[-1]) == "2016-06-01 23:50:00+00:00"

    other = _path(two.uri)
    stamp = other.stat().st_mtime_ns
    for child in _path(one.uri).parent.iterdir():
        child.unlink()
    again = ingest(config_file=config_file, partition="2016-06-01").stages[0]
    assert not again.reused and again.uri == one.uri and again.sha256 == one.sha256
    assert other.stat().st_mtime_ns == stamp  # the other partition was not touched


def test_hour_and_window_partitions(examples_dir: Path, storage_env: Path) -> None:
    config = load_config(examples_dir / "payerne_10min_temperature.yaml")
    hour = ingest(config, partition="2016-06-03T05").stages[0]
    assert hour.rows_out == 6 and "/partition-2016-06-03T05/" in hour.uri
    window = ingest(config, partition="2016-06-03T00:00Z/2016-06-03T02:00+01:00").stages[0]
    assert window.rows_out == 6 and "/partition-20160603T000000Z-20160603T010000Z/" in window.uri


def test_empty_partition_fails_and_writes_nothing(examples_dir: Path, storage_env: Path) -> None:
    with pytest.raises(LoadError) as caught:
        ingest(load_config(examples_dir / "payerne_10min_temperature.yaml"), partition="2017-01-01")
    assert caught.value.code == "EMPTY_PARTITION" and "2017-01-01" in caught.value.message
    assert not list(storage_env.rglob("*.parquet"))


@pytest.mark.parametrize("bad", ["../etc", "2016-06-01/../../x", "2016-06-01\n", "/abs", "2016-02-30"])
def test_invalid_partitions_are_rejected_before_running(examples_dir: Path, storage_env: Path, bad: str) -> None:
    with pytest.raises(ParameterError) as caught:
        ingest(load_config(examples_dir / "payerne_10min_temperature.yaml"), partition=bad)
    assert caught.value.code == "INVALID_PARTITION"
    assert not list(storage_env.rglob("*.parquet"))


def test_one_run_progress_artifact_reaches_100(examples_dir: Path, storage_env: Path) -> None:
    """§12: the flow run has one progress artifact of its own (the stages' artifacts come on top), at 100 %."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    state = ingest(load_config(examples_dir / "payerne_10min_temperature.yaml"), partition="2016-06-04",
                   return_state=True)
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]), type=ArtifactFilterType(any_=["progress"])))
    run_level = [a for a in artifacts if (a.description or "").startswith("ingest payerne-10min")]
    assert len(run_level) == 1, [a.description for a in artifacts]
    assert run_level[0].data == 100.0 and "partition 2016-06-04" in run_level[0].description
