"""Environment settings (architecture §3, §7): storage root, metadata URL, S3 endpoint.

Every field can be set with an environment variable prefixed ``ZEITFLOW_`` (e.g.
``ZEITFLOW_STORAGE_ROOT``). No secret lives here: S3 credentials come from the standard
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` (or ``AWS_PROFILE``) variables, read by botocore,
and a database password, if any, is part of ``metadata_url`` given by the environment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S3_PROTOCOLS = frozenset({"s3", "s3a"})

#: botocore options that keep S3-compatible servers (moto, MinIO, SeaweedFS, Supabase) happy.
S3_CHECKSUM_CONFIG: dict[str, str] = {
    "request_checksum_calculation": "when_required",
    "response_checksum_validation": "when_required",
}


def protocol_of(uri: str) -> str:
    """The fsspec protocol of ``uri`` (``file`` for plain paths)."""
    return uri.split("://", 1)[0].lower() if "://" in uri else "file"


def normalize_root(uri: str | os.PathLike[str]) -> str:
    """Turn a plain path or ``file://`` URI into ``file:///absolute/path``; strip a trailing slash.

    Other URIs (``s3://bucket/prefix``, ``memory://...``) are returned without the trailing slash.
    """
    text = os.fspath(uri).strip()
    if not text:
        raise ValueError("an empty storage root is not allowed")
    if "://" not in text:
        return "file://" + str(Path(text).expanduser().resolve())
    protocol, rest = text.split("://", 1)
    if protocol.lower() == "file":
        return "file://" + str(Path(rest or "/").expanduser().resolve())
    return f"{protocol.lower()}://{rest.rstrip('/')}"


_URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)\S*@")


def mask_url(url: str) -> str:
    """``url`` with the password part of ``user:password@`` replaced by ``***``."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def local_path(uri: str) -> Path:
    """The local path of a plain path or ``file://`` URI."""
    text = uri.split("://", 1)[1] if "://" in uri else uri
    return Path(text)


class Settings(BaseSettings):
    """Process settings read from ``ZEITFLOW_*`` environment variables (and constructor arguments)."""

    model_config = SettingsConfigDict(
        env_prefix="ZEITFLOW_", extra="ignore", populate_by_name=True, frozen=True
    )

    storage_root: str = Field(
        default_factory=lambda: "file://" + str(Path.cwd().resolve() / "storage"),
        description="Root of the artifact store: a plain path, file:// or s3://bucket/prefix.",
    )
    metadata_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the metadata store; default sqlite:///<storage dir>/zeitflow.db.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("s3_endpoint_url", "ZEITFLOW_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
                                      "AWS_ENDPOINT_URL"),
        description="S3 endpoint (MinIO, SeaweedFS, moto, Supabase Storage); None means AWS.",
    )
    s3_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("s3_region", "ZEITFLOW_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"),
        description="S3 region name; None leaves the choice to botocore.",
    )

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, (mask_url(value) if name == "metadata_url" and isinstance(value, str) else value)

    @field_validator("storage_root", mode="before")
    @classmethod
    def _normalize_root(cls, value: Any) -> Any:
        return normalize_root(value) if isinstance(value, str | os.PathLike) else value

    @field_validator("s3_endpoint_url", "s3_region", "metadata_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _default_metadata_url(self) -> Settings:
        if self.metadata_url is None:
            if protocol_of(self.storage_root) == "file":
                folder = local_path(self.storage_root)
            else:
                folder = Path.cwd().resolve() / "storage"
            object.__setattr__(self, "metadata_url", f"sqlite:///{folder / 'zeitflow.db'}")
        return self


def storage_options_for(uri: str, settings: Settings | None = None) -> dict[str, Any]:
    """fsspec storage options for ``uri``: S3 endpoint, path-style addressing and lenient checksums
    for ``s3://``; ``{}`` for local paths and other protocols."""
    if protocol_of(uri) not in S3_PROTOCOLS:
        return {}
    settings = settings if settings is not None else Settings()
    config_kwargs: dict[str, Any] = {"s3": {"addressing_style": "path"}, **S3_CHECKSUM_CONFIG}
    options: dict[str, Any] = {"config_kwargs": config_kwargs, "use_listings_cache": False}
    if settings.s3_endpoint_url:
        options["endpoint_url"] = settings.s3_endpoint_url
    if settings.s3_region:
        options["client_kwargs"] = {"region_name": settings.s3_region}
    return options
