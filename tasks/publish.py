"""Optional publishing of a run's summary and overall metrics to Supabase tables (architecture §3), for
frontends that read Supabase. Runs only when ``SUPABASE_URL`` and ``SUPABASE_SERVICE_KEY`` are set; a
transient failure is retried, and the key never reaches a log line or an error message."""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.logging import get_run_logger

from tasks.context import RunContext
from tasks.stage import retry_transient
from zeitflow.io import supabase


@task(name="publish-supabase", retries=2, retry_delay_seconds=[2, 8], retry_condition_fn=retry_transient,
      cache_policy=NO_CACHE)
def publish_supabase(summary: dict[str, Any], overall_uri: str, ctx: RunContext) -> int:
    """Upsert the run row and one row per (model, channel, n_avg) of the overall table."""
    import io

    import numpy as np
    import pandas as pd

    overall = pd.read_parquet(io.BytesIO(ctx.artifacts().get_bytes(overall_uri)))
    rows = overall.replace({np.nan: None}).to_dict("records")
    written = supabase.publish(summary, rows)
    get_run_logger().info("published run %s and %s metric rows to Supabase", summary.get("run_id"), len(rows))
    return written
