"""What every task of one flow run needs to reach storage: passed by value, never global."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, field_serializer

from zeitflow.config import PipelineConfig
from zeitflow.io.artifacts import ArtifactStore
from zeitflow.io.metadata import MetadataStore, mask_url
from zeitflow.partitions import Partition, parse_partition
from zeitflow.settings import Settings, storage_options_for


class RunContext(BaseModel):
    """Identity of the run and where its outputs and metadata live."""

    model_config = ConfigDict(frozen=True)

    project: str
    run_id: str
    storage_root: str
    metadata_url: str
    code_version: str
    partition: str | None = None

    @field_serializer("metadata_url", when_used="json")
    def _masked(self, url: str) -> str:
        """The JSON form (flow-run parameters on the Prefect server, logs) never carries the password; the
        object itself, passed to tasks in memory or pickled to workers, keeps the real URL."""
        return mask_url(url)

    @classmethod
    def for_config(cls, config: PipelineConfig, run_id: str, code_version: str,
                   partition: str | None = None) -> RunContext:
        """Resolve storage from the config, falling back to the environment settings. ``partition`` (checked
        by ``parse_partition``) restricts the loaded data to its window and addresses the outputs."""
        if partition is not None:
            parse_partition(partition)
        settings = Settings()
        return cls(
            project=config.project,
            run_id=run_id,
            storage_root=config.storage.root or settings.storage_root,
            metadata_url=config.storage.metadata_url or settings.metadata_url,
            code_version=code_version,
            partition=partition,
        )

    def window(self) -> Partition | None:
        """The partition's window, or None for a run over all data."""
        return parse_partition(self.partition) if self.partition is not None else None

    def storage_options(self) -> dict:
        """fsspec options for the artifact root (endpoint and addressing for S3)."""
        return storage_options_for(self.storage_root, Settings())

    def artifacts(self) -> ArtifactStore:
        """A fresh artifact store over the run's root."""
        return ArtifactStore(self.storage_root, storage_options=self.storage_options())

    def metadata(self) -> MetadataStore:
        """A fresh metadata store handle (the caller disposes of it)."""
        return MetadataStore(self.metadata_url)
