"""Local artifact store: atomic writes, deterministic Parquet bytes, round trips, errors, key layout."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from zeitflow.errors import FrameError, ParameterError, StorageError
from zeitflow.io import artifacts
from zeitflow.io.artifacts import ArtifactStore, DataRef, read_frame, read_json, write_frame, write_json
from zeitflow.options.base import sha256_json
from zeitflow.settings import Settings, storage_options_for

PARAMS = "a" * 64


def make_frame(freq: str | None = "10min") -> pd.DataFrame:
    index = pd.date_range("2024-03-31 00:00", periods=8, freq="10min", tz="UTC", name="utc").as_unit("ns")
    frame = pd.DataFrame(
        {
            "Temperatur [°C]": [1.5, np.nan, -3.25, 4.0, np.nan, 6.0, 7.125, 8.0],
            "load_grid [kW]": [np.nan, 2.0, 3.0, np.nan, 5.0, 6.0, np.nan, np.nan],
            "leer": [np.nan] * 8,
        },
        index=index,
    )
    if freq is None:
        frame.index = pd.DatetimeIndex(frame.index, freq=None)
    return frame


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# ---- round trip ------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", ["10min", None])
def test_round_trip_equal_with_nan_positions_and_unit_names(tmp_path: Path, freq: str | None) -> None:
    frame = make_frame(freq)
    ref = write_frame(frame, str(tmp_path / "out" / "part.parquet"), stage="resample", parameters_hash=PARAMS)
    back = read_frame(ref.uri, ref.sha256)
    pd.testing.assert_frame_equal(back, frame)
    assert back.index.name == "utc"
    assert str(back.index.dtype) == "datetime64[ns, UTC]"
    assert list(back.columns) == ["Temperatur [°C]", "load_grid [kW]", "leer"]
    assert all(back[c].dtype == np.float64 for c in back.columns)
    np.testing.assert_array_equal(back.isna().to_numpy(), frame.isna().to_numpy())


def test_data_ref_fields_and_json_round_trip(tmp_path: Path) -> None:
    frame = make_frame()
    ref = write_frame(frame, str(tmp_path / "x.parquet"), stage="clean", parameters_hash=PARAMS)
    data = (tmp_path / "x.parquet").read_bytes()
    assert ref.uri == f"file://{tmp_path}/x.parquet"
    assert ref.sha256 == hashlib.sha256(data).hexdigest()
    assert ref.size_bytes == len(data)
    assert (ref.rows, ref.columns, ref.stage) == (8, list(frame.columns), "clean")
    assert ref.parameters_hash == PARAMS
    assert DataRef.from_json(ref.to_json()) == ref
    assert DataRef.model_validate_json(ref.model_dump_json()) == ref
    with pytest.raises(Exception):  # noqa: B017 - frozen pydantic model
        ref.rows = 1  # type: ignore[misc]


def test_parquet_layout_and_metadata(tmp_path: Path) -> None:
    frame = make_frame()
    ref = write_frame(frame, str(tmp_path / "x.parquet"), stage="resample", parameters_hash=PARAMS)
    table = pq.read_table(tmp_path / "x.parquet")
    assert table.schema.names == ["utc", *frame.columns]
    assert str(table.schema.field("utc").type) == "timestamp[ns, tz=UTC]"
    assert all(str(table.schema.field(c).type) == "double" for c in frame.columns)
    meta = table.schema.metadata
    assert b"pandas" not in meta
    assert json.loads(meta[b"zeitflow"]) == {
        "format_version": 1, "stage": "resample", "parameters_hash": PARAMS, "channels": list(frame.columns),
    }
    assert artifacts.parquet_metadata(ref.uri)["channels"] == list(frame.columns)
    assert pq.read_metadata(tmp_path / "x.parquet").row_group(0).column(1).compression == "ZSTD"


def test_empty_frame_round_trip(tmp_path: Path) -> None:
    frame = make_frame().iloc[:0]
    frame.index = pd.DatetimeIndex(frame.index, freq=None)
    ref = write_frame(frame, str(tmp_path / "e.parquet"), stage="load", parameters_hash=PARAMS)
    assert ref.rows == 0
    pd.testing.assert_frame_equal(read_frame(ref.uri), frame)


def test_invalid_frame_is_rejected_before_writing(tmp_path: Path) -> None:
    frame = make_frame()
    frame.index = frame.index.tz_convert("Europe/Berlin")
    with pytest.raises(FrameError) as info:
        write_frame(frame, str(tmp_path / "bad.parquet"), stage="load", parameters_hash=PARAMS)
    assert info.value.code == "INVALID_FRAME"
    reserved = make_frame().rename(columns={"leer": "utc"})
    with pytest.raises(FrameError):
        write_frame(reserved, str(tmp_path / "bad.parquet"), stage="load", parameters_hash=PARAMS)
    assert files_under(tmp_path) == []


def test_foreign_parquet_is_invalid_frame(tmp_path: Path) -> None:
    (tmp_path / "f.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(FrameError):
        read_frame(str(tmp_path / "f.parquet"))
    make_frame().reset_index().rename(columns={"utc": "time"}).to_parquet(tmp_path / "g.parquet")
    with pytest.raises(FrameError):
        read_frame(str(tmp_path / "g.parquet"))


# ---- determinism -----------------------------------------------------------------------------


def test_same_frame_gives_identical_bytes(tmp_path: Path) -> None:
    frame = make_frame()
    one = write_frame(frame, str(tmp_path / "1.parquet"), stage="s", parameters_hash=PARAMS)
    two = write_frame(frame.copy(), f"file://{tmp_path}/2.parquet", stage="s", parameters_hash=PARAMS)
    assert (tmp_path / "1.parquet").read_bytes() == (tmp_path / "2.parquet").read_bytes()
    assert one.sha256 == two.sha256
    assert artifacts.frame_to_parquet_bytes(frame, stage="s", parameters_hash=PARAMS) == (
        tmp_path / "1.parquet"
    ).read_bytes()


def test_bytes_identical_in_another_process(tmp_path: Path) -> None:
    frame = make_frame()
    ref = write_frame(frame, str(tmp_path / "here.parquet"), stage="s", parameters_hash=PARAMS)
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_artifacts import make_frame, PARAMS
        from zeitflow.io.artifacts import write_frame
        print(write_frame(make_frame(), {str(tmp_path / "there.parquet")!r}, stage="s",
                          parameters_hash=PARAMS).sha256)
        """
    )
    env = {**os.environ, "TZ": "America/New_York"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == ref.sha256


# ---- atomicity -------------------------------------------------------------------------------


def test_failed_replace_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artifacts.os, "replace", broken_replace)
    target = tmp_path / "p" / "s" / "part.parquet"
    with pytest.raises(StorageError) as info:
        write_frame(make_frame(), str(target), stage="s", parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED"
    assert info.value.transient
    assert info.value.details["uri"] == f"file://{target}"
    assert not target.exists()
    assert files_under(tmp_path) == []


def test_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def half_write(table: object, sink: io.RawIOBase) -> None:
        sink.write(b"PAR1 partial")
        raise OSError(5, "I/O error")

    monkeypatch.setattr(artifacts, "_write_table", half_write)
    target = tmp_path / "part.parquet"
    with pytest.raises(StorageError) as info:
        write_frame(make_frame(), str(target), stage="s", parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED"
    assert files_under(tmp_path) == []


def test_non_io_failure_propagates_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(table: object, sink: io.RawIOBase) -> None:
        sink.write(b"PAR1")
        raise RuntimeError("bug")

    monkeypatch.setattr(artifacts, "_write_table", boom)
    with pytest.raises(RuntimeError):
        write_frame(make_frame(), str(tmp_path / "part.parquet"), stage="s", parameters_hash=PARAMS)
    assert files_under(tmp_path) == []


def test_failed_rewrite_keeps_previous_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "part.parquet"
    ref = write_frame(make_frame(), str(target), stage="s", parameters_hash=PARAMS)
    monkeypatch.setattr(artifacts.os, "replace", lambda s, d: (_ for _ in ()).throw(OSError("disk gone")))
    with pytest.raises(StorageError):
        write_frame(make_frame() * 2, str(target), stage="s", parameters_hash=PARAMS)
    assert files_under(tmp_path) == ["part.parquet"]
    pd.testing.assert_frame_equal(read_frame(str(target), ref.sha256), make_frame())


def test_successful_write_leaves_no_temp_files(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    uri = store.key_for("proj", "load", PARAMS, "b" * 64)
    store.write_frame(make_frame(), uri, stage="load", parameters_hash=PARAMS)
    store.put_bytes(store.uri("proj", "notes.txt"), b"hello")
    assert files_under(tmp_path) == [f"proj/load/{PARAMS}/{'b' * 64}/part.parquet", "proj/notes.txt"]


# ---- errors ----------------------------------------------------------------------------------


def test_checksum_mismatch(tmp_path: Path) -> None:
    ref = write_frame(make_frame(), str(tmp_path / "x.parquet"), stage="s", parameters_hash=PARAMS)
    with pytest.raises(StorageError) as info:
        read_frame(ref.uri, expected_sha256="0" * 64)
    assert info.value.code == "CHECKSUM_MISMATCH"
    assert not info.value.transient
    assert info.value.details["actual"] == ref.sha256
    with pytest.raises(StorageError) as info:
        ArtifactStore(str(tmp_path)).get_bytes(ref.uri, expected_sha256="1" * 64)
    assert info.value.code == "CHECKSUM_MISMATCH"


def test_not_found(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope" / "part.parquet")
    for call in (lambda: read_frame(missing), lambda: read_json(missing),
                 lambda: ArtifactStore(str(tmp_path)).get_bytes(missing)):
        with pytest.raises(StorageError) as info:
            call()
        assert info.value.code == "OBJECT_NOT_FOUND"
        assert not info.value.transient


def test_unreadable_object_is_read_failed(tmp_path: Path) -> None:
    (tmp_path / "dir.parquet").mkdir()
    with pytest.raises(StorageError) as info:
        read_frame(str(tmp_path / "dir.parquet"))
    assert info.value.code == "READ_FAILED"
    assert info.value.transient


def test_write_into_a_file_path_is_write_failed(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_bytes(b"x")
    with pytest.raises(StorageError) as info:
        write_frame(make_frame(), str(tmp_path / "blocker" / "part.parquet"), stage="s",
                    parameters_hash=PARAMS)
    assert info.value.code == "WRITE_FAILED"


# ---- store -----------------------------------------------------------------------------------


def test_key_layout(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path) + "/")
    assert store.root_uri == f"file://{tmp_path}"
    assert store.key_for("proj-1", "resample", "p" * 64, "i" * 64) == (
        f"file://{tmp_path}/proj-1/resample/{'p' * 64}/{'i' * 64}/part.parquet"
    )
    assert store.key_for("proj", "train", "h", "i", name="metrics/overall.parquet").endswith(
        "/proj/train/h/i/metrics/overall.parquet"
    )
    assert ArtifactStore("s3://bucket/prefix/").key_for("p", "s", "h", "i") == "s3://bucket/prefix/p/s/h/i/part.parquet"
    assert ArtifactStore(f"file://{tmp_path}").root_uri == f"file://{tmp_path}"


@pytest.mark.parametrize(
    ("project", "stage", "name"),
    [("..", "load", "part.parquet"), ("a/b", "load", "part.parquet"), ("p", "lo ad", "part.parquet"),
     ("p", "a..b", "part.parquet"), ("p", "load", "../x.parquet"), ("", "load", "part.parquet"),
     ("p", "load", ""), ("p", "lööd", "part.parquet"), ("p", ".", "part.parquet")],
)
def test_name_validation(tmp_path: Path, project: str, stage: str, name: str) -> None:
    with pytest.raises(ParameterError) as info:
        ArtifactStore(str(tmp_path)).key_for(project, stage, "h", "i", name=name)
    assert info.value.code == "INVALID_NAME"


def test_put_get_exists_delete(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    uri = store.uri("proj", "blob.bin")
    assert not store.exists(uri)
    info = store.put_bytes(uri, b"\x00\x01zeitflow")
    assert info.sha256 == hashlib.sha256(b"\x00\x01zeitflow").hexdigest() and info.size_bytes == 10
    assert store.exists(uri)
    assert store.get_bytes(uri, info.sha256) == b"\x00\x01zeitflow"
    store.delete(uri)
    store.delete(uri)  # idempotent
    assert not store.exists(uri)


def test_json_documents_are_canonical(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path))
    doc = {"b": [1, 2.5, None], "a": "Temperatur [°C]", "n": {"z": True}}
    info = store.write_json(doc, store.uri("r", "report.json"))
    expected = '{"a":"Temperatur [°C]","b":[1,2.5,null],"n":{"z":true}}'.encode()
    assert (tmp_path / "r" / "report.json").read_bytes() == expected
    assert info.sha256 == sha256_json(doc)
    assert store.read_json(info.uri, info.sha256) == doc
    assert read_json(str(tmp_path / "r" / "report.json")) == doc
    with pytest.raises(ValueError):
        write_json({"x": float("nan")}, str(tmp_path / "nan.json"))
    assert not (tmp_path / "nan.json").exists()


def test_store_methods_match_module_functions(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)  # type: ignore[arg-type]  # os.PathLike is accepted too
    uri = store.key_for("p", "s", PARAMS, "i")
    ref = store.write_frame(make_frame(), uri, stage="s", parameters_hash=PARAMS)
    pd.testing.assert_frame_equal(store.read_frame(uri, ref.sha256), make_frame())
    assert store.is_local


# ---- settings --------------------------------------------------------------------------------


def test_settings_defaults_and_storage_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZEITFLOW_STORAGE_ROOT", "ZEITFLOW_METADATA_URL", "ZEITFLOW_S3_ENDPOINT_URL",
                 "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "ZEITFLOW_S3_REGION", "AWS_REGION",
                 "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    settings = Settings()
    assert settings.storage_root == f"file://{tmp_path}/storage"
    assert settings.metadata_url == f"sqlite:///{tmp_path}/storage/zeitflow.db"
    assert settings.s3_endpoint_url is None
    assert Settings(storage_root="data").storage_root == f"file://{tmp_path}/data"

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9000")
    monkeypatch.setenv("ZEITFLOW_STORAGE_ROOT", "s3://bucket/prefix/")
    settings = Settings()
    assert settings.s3_endpoint_url == "http://127.0.0.1:9000"
    assert settings.storage_root == "s3://bucket/prefix"
    monkeypatch.setenv("ZEITFLOW_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("ZEITFLOW_S3_REGION", "eu-central-1")
    settings = Settings()
    options = storage_options_for("s3://bucket/x", settings)
    assert options["endpoint_url"] == "http://minio:9000"
    assert options["client_kwargs"] == {"region_name": "eu-central-1"}
    assert options["config_kwargs"]["s3"] == {"addressing_style": "path"}
    assert options["config_kwargs"]["request_checksum_calculation"] == "when_required"
    assert options["config_kwargs"]["response_checksum_validation"] == "when_required"
    assert storage_options_for(f"file://{tmp_path}", settings) == {}
    assert storage_options_for(str(tmp_path), settings) == {}


def test_settings_repr_masks_database_password() -> None:
    settings = Settings(metadata_url="postgresql://user:hunter2@db.example:5432/zeitflow")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.metadata_url.endswith("hunter2@db.example:5432/zeitflow")
