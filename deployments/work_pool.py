"""Create the ``zeitflow-process`` work pool idempotently, so ``prefect deploy --all`` finds it.

``prefect deploy`` refuses a deployment whose pool does not exist; a worker would create one on start, but
deploying usually happens first. Run ``python -m deployments.work_pool [NAME]`` with ``PREFECT_API_URL`` set.
"""

from __future__ import annotations

import argparse
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import WorkPool
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

POOL_NAME = "zeitflow-process"
POOL_TYPE = "process"


def ensure_work_pool(name: str = POOL_NAME, concurrency_limit: int | None = None) -> WorkPool:
    """The process work pool ``name``, created with the process worker's default job template when it does not
    exist yet (a concurrent creation is fine). A pool of that name but another type is an error, since process
    workers would never poll it."""
    from prefect.workers.process import ProcessWorker

    with get_client(sync_client=True) as client:
        try:
            pool = client.read_work_pool(name)
        except ObjectNotFound:
            try:
                pool = client.create_work_pool(WorkPoolCreate(
                    name=name, type=POOL_TYPE, concurrency_limit=concurrency_limit,
                    description="Zeitflow flow runs as local processes in the repository root.",
                    base_job_template=ProcessWorker.get_default_base_job_template(),
                ))
            except ObjectAlreadyExists:
                pool = client.read_work_pool(name)
    if pool.type != POOL_TYPE:
        raise ValueError(f"work pool {name!r} exists with type {pool.type!r}, expected {POOL_TYPE!r}")
    return pool


def main(argv: list[str] | None = None) -> int:
    """CLI: create the pool (if needed) and print its name and type."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default=POOL_NAME, help=f"pool name (default {POOL_NAME})")
    parser.add_argument("--concurrency-limit", type=int, default=None,
                        help="most flow runs at once across the pool's workers (only when creating it)")
    args = parser.parse_args(argv)
    pool = ensure_work_pool(args.name, args.concurrency_limit)
    print(f"work pool {pool.name!r} ({pool.type}) ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
