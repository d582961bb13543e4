"""Prefect caching of the stage tasks (architecture §2): a task's cache key is the identity of what it
writes (stage, options hash, input checksums, partition and storage root, all in its deterministic object
key) plus the code version, so a retried or re-run flow gets a *Cached* state for every stage it already
finished. A cache record only counts while the objects it describes exist: when they are gone (deleted by
hand, or never committed because the run died), the record is expired and the stage runs again."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from prefect.logging import get_run_logger
from pydantic import BaseModel

from zeitflow.io.artifacts import ArtifactStore
from zeitflow.options.base import sha256_json


class CacheIdentity(BaseModel):
    """What a stage task's result stands for: ``key_parts`` (hashed into the cache key with the code
    version) and the objects that must exist for a cached result to be valid."""

    key_parts: list[Any]
    code_version: str
    required_uris: list[str]
    storage_root: str
    storage_options: dict[str, Any] = {}

    def objects_exist(self) -> bool:
        """Whether every object the cached result points at is still in the artifact store."""
        store = ArtifactStore(self.storage_root, storage_options=self.storage_options)
        return all(store.exists(uri) for uri in self.required_uris)


@dataclass
class StageCachePolicy(CachePolicy):
    """Cache key from the task's ``CacheIdentity`` (computed from its inputs by ``identify``); the run
    context (run id, flow-run id) is never part of it, so another run of the same inputs hits the cache."""

    identify: Callable[..., CacheIdentity | None] | None = None

    def compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any], flow_parameters: dict[str, Any],
                    **kwargs: Any) -> str | None:
        """The key, after expiring a stored record whose objects no longer exist."""
        if self.identify is None:
            return None
        identity = self.identify(**inputs)
        if identity is None:
            return None
        key = sha256_json(["zeitflow-cache", task_ctx.task.name, identity.key_parts, identity.code_version])
        store = task_ctx.result_store
        if store.exists(key) and not identity.objects_exist():
            get_run_logger().warning("%s: the cached result's objects are gone (%s); recomputing",
                                     task_ctx.task.name, ", ".join(identity.required_uris))
            store.write(obj=None, key=key, expiration=datetime.now(UTC) - timedelta(seconds=1))
        return key


def stage_cache(identify: Callable[..., CacheIdentity | None]) -> StageCachePolicy:
    """The cache policy of one stage task."""
    return StageCachePolicy(identify=identify)


CACHED_TASK_OPTIONS: dict[str, Any] = {"persist_result": True, "cache_result_in_memory": False}
"""Task options every cached stage task sets: results are persisted (the cache record), not kept in memory."""
