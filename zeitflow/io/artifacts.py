"""Artifact store over fsspec (architecture §2-3, stages.md §0.3): atomic writes, deterministic
Parquet frames, ``DataRef`` references and canonical JSON documents.

Local (``file://`` or a plain path) and S3 (``s3://bucket/prefix``, also MinIO, SeaweedFS, moto and
Supabase Storage) are supported. Writes are all or nothing: a local write goes to a temporary file in
the target folder, is fsynced and renamed with ``os.replace``; an S3 write first finishes a local
temporary file and then uploads it with one ``put_file`` (a single PUT, or a multipart upload that
s3fs aborts on error). Bytes are always moved by fsspec, so pyarrow's own S3 client is never used.

S3 requests are bounded in time (``S3_CLIENT_DEFAULTS``, applied unless the storage options set them):
a connection attempt gives up after 5 s, a read that gets no byte for 20 s times out, and botocore
tries each request at most 3 times (standard retry mode, jittered backoff of at most 1 s, then 2 s).
A stopped or unreachable server therefore fails a call within a few seconds with a transient
``StorageError`` (``WRITE_FAILED`` / ``READ_FAILED``), which the stage tasks retry; a server that
accepts connections but never answers fails it within about 5 minutes at worst (3 attempts of 20 s,
each retried up to 5 times by s3fs itself), never hangs a run forever.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import re
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import FrameError, ParameterError, StorageError
from zeitflow.frame import INDEX_NAME, validate_frame
from zeitflow.options.base import canonical_json
from zeitflow.settings import S3_PROTOCOLS, normalize_root, protocol_of, storage_options_for

__all__ = [
    "FORMAT_VERSION",
    "ArtifactStore",
    "DataRef",
    "ObjectInfo",
    "read_frame",
    "read_json",
    "write_frame",
    "write_json",
]

FORMAT_VERSION = 1
METADATA_KEY = b"zeitflow"
#: Extra key-value entry holding the index frequency (e.g. ``10min``) so that a frame read back
#: equals the one written, ``DatetimeIndex.freq`` included. Absent when the index has no freq.
FREQ_KEY = b"zeitflow.index_freq"
PARQUET_COMPRESSION = "zstd"

#: botocore client settings for S3 unless the storage options' ``config_kwargs`` set them (module docstring).
S3_CLIENT_DEFAULTS: dict[str, Any] = {
    "connect_timeout": 5,
    "read_timeout": 20,
    "retries": {"mode": "standard", "total_max_attempts": 3},  # 3 attempts in all (``max_attempts`` counts retries)
}

_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_SHA256_RE = r"^[0-9a-f]{64}$"
_CHUNK = 1 << 20


def _storage_error_types() -> tuple[type[BaseException], ...]:
    """OSError plus the network/client errors of botocore and aiohttp (when installed)."""
    types: list[type[BaseException]] = [OSError, TimeoutError]
    try:
        from botocore.exceptions import BotoCoreError, ClientError

        types += [BotoCoreError, ClientError]
    except ImportError:  # pragma: no cover - botocore is a dependency
        pass
    try:
        from aiohttp import ClientError as AiohttpClientError

        types.append(AiohttpClientError)
    except ImportError:  # pragma: no cover - aiohttp comes with s3fs
        pass
    return tuple(types)


_IO_ERRORS = _storage_error_types()


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_current_umask()


class DataRef(BaseModel):
    """Reference to one persisted frame, passed between tasks instead of the frame (§0.3)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    sha256: str = Field(pattern=_SHA256_RE)
    size_bytes: int = Field(ge=0)
    rows: int = Field(ge=0)
    columns: list[str]
    stage: str
    parameters_hash: str

    def to_json(self) -> str:
        """JSON text of the reference."""
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> DataRef:
        """Parse a reference written by ``to_json``."""
        return cls.model_validate_json(text)


class ObjectInfo(BaseModel):
    """URI, sha256 and size of one written object (e.g. for a run manifest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    uri: str
    sha256: str = Field(pattern=_SHA256_RE)
    size_bytes: int = Field(ge=0)


def _canonical_uri(uri: str) -> str:
    """``file:///abs/path`` for plain paths and file URIs; other URIs unchanged."""
    if protocol_of(uri) == "file":
        return normalize_root(uri)
    return uri


def with_s3_client_defaults(uri: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` with ``S3_CLIENT_DEFAULTS`` added to its ``config_kwargs`` for an S3 ``uri`` (keys
    already set win); other protocols unchanged. The given dict is not modified."""
    if protocol_of(uri) not in S3_PROTOCOLS:
        return options
    config = dict(options.get("config_kwargs") or {})
    for key, value in S3_CLIENT_DEFAULTS.items():
        if key not in config:
            config[key] = copy.deepcopy(value)  # botocore rewrites a ``retries`` dict in place
    return {**options, "config_kwargs": config}


def _resolve(uri: str, storage_options: dict[str, Any] | None) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and in-filesystem path for ``uri``."""
    options = storage_options if storage_options is not None else storage_options_for(uri)
    options = with_s3_client_defaults(uri, options)
    try:
        fs, path = fsspec.core.url_to_fs(_canonical_uri(uri), **options)
    except _IO_ERRORS as exc:  # pragma: no cover - construction rarely touches the network
        raise StorageError("READ_FAILED", f"cannot open the store for {uri}: {exc}",
                           details={"uri": uri, "store": "artifacts"}) from exc
    return fs, path


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def _hash_file(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _write_error(uri: str, exc: BaseException) -> StorageError:
    return StorageError("WRITE_FAILED", f"writing {uri} failed: {type(exc).__name__}: {exc}",
                        details={"uri": uri, "store": "artifacts", "error": type(exc).__name__})


def _read_error(uri: str, exc: BaseException) -> StorageError:
    if isinstance(exc, FileNotFoundError):
        return StorageError("OBJECT_NOT_FOUND", f"no object at {uri}",
                            details={"uri": uri, "store": "artifacts"})
    return StorageError("READ_FAILED", f"reading {uri} failed: {type(exc).__name__}: {exc}",
                        details={"uri": uri, "store": "artifacts", "error": type(exc).__name__})


def _atomic_write(
    uri: str, writer: Callable[[BinaryIO], None], storage_options: dict[str, Any] | None
) -> ObjectInfo:
    """Write through ``writer`` into a finished temporary file, then publish it under ``uri`` in one
    step. On any error nothing is left under the final name and no temporary file remains."""
    uri = _canonical_uri(uri)
    fs, path = _resolve(uri, storage_options)
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise StorageError("WRITE_FAILED", f"{uri} does not name an object", details={"uri": uri})
    try:
        if _is_local(fs):
            parent = os.path.dirname(path) or "."
            os.makedirs(parent, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=parent)
            try:
                with os.fdopen(fd, "wb") as handle:
                    writer(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.chmod(tmp, _FILE_MODE)
                sha256, size = _hash_file(tmp)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(parent)
        else:
            with tempfile.TemporaryDirectory(prefix="zeitflow-upload-") as folder:
                tmp = os.path.join(folder, name)  # same name, so content types are guessed right
                with open(tmp, "wb") as handle:
                    writer(handle)
                sha256, size = _hash_file(tmp)
                fs.put_file(tmp, path)
    except _IO_ERRORS as exc:
        raise _write_error(uri, exc) from exc
    return ObjectInfo(uri=uri, sha256=sha256, size_bytes=size)


def write_bytes(uri: str | os.PathLike[str], data: bytes, storage_options: dict[str, Any] | None = None) -> ObjectInfo:
    """Write ``data`` to ``uri`` (a local path, ``file://`` or ``s3://``) atomically: a finished temporary
    file, fsynced and renamed (local) or uploaded in one put (S3). The one atomic writer every module uses."""
    payload = bytes(data)
    return _atomic_write(os.fspath(uri), lambda handle: handle.write(payload), storage_options)


def _get_bytes(uri: str, storage_options: dict[str, Any] | None) -> bytes:
    uri = _canonical_uri(uri)
    fs, path = _resolve(uri, storage_options)
    try:
        return fs.cat_file(path)
    except _IO_ERRORS as exc:
        raise _read_error(uri, exc) from exc


def _check_sha256(uri: str, data: bytes, expected_sha256: str | None) -> str:
    actual = hashlib.sha256(data).hexdigest()
    if expected_sha256 is not None and actual != expected_sha256.lower():
        raise StorageError(
            "CHECKSUM_MISMATCH",
            f"{uri}: sha256 {actual} differs from the expected {expected_sha256}",
            details={"uri": uri, "expected": expected_sha256, "actual": actual},
        )
    return actual


# --------------------------------------------------------------------------------------------
# Frames


def _frame_table(frame: pd.DataFrame, stage: str, parameters_hash: str) -> pa.Table:
    """An Arrow table with a schema of our own (no pandas metadata) so the bytes are deterministic."""
    columns = [str(c) for c in frame.columns]
    if INDEX_NAME in columns:
        raise FrameError("INVALID_FRAME", f"channel name {INDEX_NAME!r} is reserved for the time column",
                         details={"rule": "column_name", "column": INDEX_NAME})
    metadata = {
        METADATA_KEY: canonical_json(
            {"format_version": FORMAT_VERSION, "stage": stage, "parameters_hash": parameters_hash,
             "channels": columns}
        ).encode("utf-8")
    }
    freq = frame.index.freqstr if isinstance(frame.index, pd.DatetimeIndex) else None
    if freq:
        metadata[FREQ_KEY] = freq.encode("utf-8")
    fields = [pa.field(INDEX_NAME, pa.timestamp("ns", tz="UTC"), nullable=False)]
    fields += [pa.field(c, pa.float64()) for c in columns]
    schema = pa.schema(fields, metadata=metadata)
    arrays = [pa.array(frame.index.asi8, type=pa.int64()).cast(pa.timestamp("ns", tz="UTC"))]
    # NaN ("missing", §0.3) is stored as a Parquet null, which other readers also treat as missing.
    arrays += [pa.array(frame[c].to_numpy(dtype=np.float64), type=pa.float64(), from_pandas=True)
               for c in frame.columns]
    return pa.Table.from_arrays(arrays, schema=schema)


def frame_to_parquet_bytes(frame: pd.DataFrame, *, stage: str, parameters_hash: str) -> bytes:
    """The canonical Parquet bytes of ``frame`` (validated first); identical across runs."""
    validate_frame(frame, stage)
    sink = io.BytesIO()
    _write_table(_frame_table(frame, stage, parameters_hash), sink)
    return sink.getvalue()


def _write_table(table: pa.Table, sink: Any) -> None:
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION, write_statistics=True, store_schema=True)


def _frame_from_table(table: pa.Table, uri: str) -> pd.DataFrame:
    def bad(message: str) -> FrameError:
        return FrameError("INVALID_FRAME", f"{uri}: {message}",
                          details={"uri": uri, "rule": "parquet_layout"})

    metadata = table.schema.metadata or {}
    names = table.schema.names
    if not names or names[0] != INDEX_NAME:
        raise bad(f"the first column must be {INDEX_NAME!r}, got {names[:1]}")
    channels = names[1:]
    if METADATA_KEY in metadata:
        try:
            info = json.loads(metadata[METADATA_KEY].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"unreadable 'zeitflow' metadata: {exc}") from exc
        if info.get("format_version") != FORMAT_VERSION:
            raise bad(f"unsupported format_version {info.get('format_version')!r}")
        if info.get("channels") != channels:
            raise bad("the 'zeitflow' metadata channels differ from the columns")
    time_column = table.column(0)
    if not pa.types.is_timestamp(time_column.type):
        raise bad(f"column {INDEX_NAME!r} must be a timestamp, got {time_column.type}")
    ns = time_column.cast(pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    index = pd.DatetimeIndex(pd.to_datetime(ns, unit="ns", utc=True), name=INDEX_NAME).as_unit("ns")
    freq = metadata.get(FREQ_KEY)
    if freq:
        # a frequency that does not fit is dropped rather than failing the read
        with contextlib.suppress(ValueError, TypeError):
            index = pd.DatetimeIndex(index, freq=freq.decode("utf-8"))
    data: dict[str, np.ndarray] = {}
    for position, name in enumerate(channels, start=1):
        column = table.column(position)
        if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
            raise bad(f"channel {name!r} must be numeric, got {column.type}")
        data[name] = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)
    return pd.DataFrame(data, index=index, columns=pd.Index(channels, dtype="str") if channels else None)


def write_frame(
    frame: pd.DataFrame,
    uri: str,
    *,
    stage: str,
    parameters_hash: str,
    storage_options: dict[str, Any] | None = None,
) -> DataRef:
    """Validate ``frame`` and write it atomically as canonical Parquet to ``uri`` (§0.3)."""
    validate_frame(frame, stage)
    table = _frame_table(frame, stage, parameters_hash)
    info = _atomic_write(uri, lambda handle: _write_table(table, handle), storage_options)
    return DataRef(
        uri=info.uri, sha256=info.sha256, size_bytes=info.size_bytes, rows=len(frame),
        columns=[str(c) for c in frame.columns], stage=stage, parameters_hash=parameters_hash,
    )


def read_frame(
    uri: str, expected_sha256: str | None = None, storage_options: dict[str, Any] | None = None
) -> pd.DataFrame:
    """Read a frame written by ``write_frame``; check the sha256 when given; validate it (§0.3)."""
    data = _get_bytes(uri, storage_options)
    _check_sha256(uri, data, expected_sha256)
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise FrameError("INVALID_FRAME", f"{uri}: not a readable Parquet file: {exc}",
                         details={"uri": uri, "rule": "parquet_layout"}) from exc
    frame = _frame_from_table(table, uri)
    validate_frame(frame, uri)
    return frame


def parquet_metadata(uri: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``zeitflow`` key-value metadata of a stored frame."""
    data = _get_bytes(uri, storage_options)
    metadata = pq.read_schema(io.BytesIO(data)).metadata or {}
    return json.loads(metadata.get(METADATA_KEY, b"{}").decode("utf-8"))


# --------------------------------------------------------------------------------------------
# JSON documents


def json_bytes(obj: Any) -> bytes:
    """Canonical JSON bytes (sorted keys, no whitespace, UTF-8); their sha256 equals ``sha256_json``."""
    return canonical_json(obj).encode("utf-8")


def write_json(obj: Any, uri: str, storage_options: dict[str, Any] | None = None) -> ObjectInfo:
    """Write ``obj`` as canonical JSON, atomically."""
    data = json_bytes(obj)
    return _atomic_write(uri, lambda handle: handle.write(data), storage_options)


def read_json(
    uri: str, expected_sha256: str | None = None, storage_options: dict[str, Any] | None = None
) -> Any:
    """Read a JSON document; check the sha256 when given."""
    data = _get_bytes(uri, storage_options)
    _check_sha256(uri, data, expected_sha256)
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StorageError("READ_FAILED", f"{uri}: not a JSON document: {exc}",
                           details={"uri": uri, "store": "artifacts"}) from exc


# --------------------------------------------------------------------------------------------
# Store


def _check_name(kind: str, value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value) or ".." in value or value == ".":
        raise ParameterError(
            "INVALID_NAME",
            f"{kind}={value!r} is not allowed: use only letters, digits, '_', '.', '-' and no '..'",
            details={"parameter": kind, "value": str(value)},
        )
    return value


class ArtifactStore:
    """One fsspec-backed store under ``root_uri`` (a plain path, ``file://`` or ``s3://bucket/prefix``)."""

    def __init__(self, root_uri: str, storage_options: dict[str, Any] | None = None) -> None:
        self.root_uri = normalize_root(root_uri)
        self.storage_options: dict[str, Any] = (
            dict(storage_options) if storage_options is not None else storage_options_for(self.root_uri)
        )

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root_uri!r})"

    @property
    def is_local(self) -> bool:
        """True for a local root."""
        return protocol_of(self.root_uri) == "file"

    def key_for(
        self, project: str, stage: str, params_hash: str, input_hash: str, name: str = "part.parquet"
    ) -> str:
        """``{root}/{project}/{stage}/{params_hash}/{input_hash}/{name}`` (architecture §2).

        Every part may hold only ``[A-Za-z0-9_.-]`` and no ``..``; ``name`` may have several such
        parts separated by ``/``. Otherwise ``ParameterError`` ``INVALID_NAME`` is raised.
        """
        parts = [
            _check_name("project", project),
            _check_name("stage", stage),
            _check_name("params_hash", params_hash),
            _check_name("input_hash", input_hash),
        ]
        if not isinstance(name, str) or not name:
            raise ParameterError("INVALID_NAME", f"name={name!r} is not allowed",
                                 details={"parameter": "name", "value": str(name)})
        parts += [_check_name("name", part) for part in name.split("/")]
        return "/".join([self.root_uri, *parts])

    def uri(self, *parts: str) -> str:
        """``{root}/{part}/...`` with every part checked like ``key_for``."""
        checked = [_check_name("part", piece) for part in parts for piece in part.split("/")]
        return "/".join([self.root_uri, *checked])

    def put_bytes(self, uri: str, data: bytes) -> ObjectInfo:
        """Write ``data`` to ``uri`` atomically."""
        payload = bytes(data)
        return _atomic_write(uri, lambda handle: handle.write(payload), self.storage_options)

    def get_bytes(self, uri: str, expected_sha256: str | None = None) -> bytes:
        """The bytes at ``uri`` (``OBJECT_NOT_FOUND`` if absent; ``CHECKSUM_MISMATCH`` if given and wrong)."""
        data = _get_bytes(uri, self.storage_options)
        _check_sha256(uri, data, expected_sha256)
        return data

    def exists(self, uri: str) -> bool:
        """Whether an object exists at ``uri``."""
        fs, path = _resolve(uri, self.storage_options)
        try:
            return bool(fs.isfile(path))
        except _IO_ERRORS as exc:
            raise _read_error(uri, exc) from exc

    def delete(self, uri: str) -> None:
        """Remove the object at ``uri``; no error if it is already gone."""
        fs, path = _resolve(uri, self.storage_options)
        try:
            fs.rm_file(path)
        except FileNotFoundError:
            return
        except _IO_ERRORS as exc:
            raise _write_error(uri, exc) from exc
        if not _is_local(fs):
            fs.invalidate_cache(path)

    def write_frame(self, frame: pd.DataFrame, uri: str, *, stage: str, parameters_hash: str) -> DataRef:
        """``write_frame`` with this store's storage options."""
        return write_frame(frame, uri, stage=stage, parameters_hash=parameters_hash,
                           storage_options=self.storage_options)

    def read_frame(self, uri: str, expected_sha256: str | None = None) -> pd.DataFrame:
        """``read_frame`` with this store's storage options."""
        return read_frame(uri, expected_sha256, storage_options=self.storage_options)

    def write_json(self, obj: Any, uri: str) -> ObjectInfo:
        """``write_json`` with this store's storage options."""
        return write_json(obj, uri, storage_options=self.storage_options)

    def read_json(self, uri: str, expected_sha256: str | None = None) -> Any:
        """``read_json`` with this store's storage options."""
        return read_json(uri, expected_sha256, storage_options=self.storage_options)
