"""Per-channel statistics of a canonical frame, stored in the ``channel_stats`` table (§13)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

NS_PER_MINUTE = 60_000_000_000


def _minutes(ns: int | float) -> float:
    return float(ns) / NS_PER_MINUTE


def channel_stats(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows, numeric count and share, min/max and the step statistics of the stamps that carry a
    value, per channel. Steps are exact fractional minutes from integer ns differences."""
    stamps = frame.index.asi8
    out: list[dict[str, Any]] = []
    for column in frame.columns:
        values = frame[column].to_numpy(dtype=np.float64)
        present = ~np.isnan(values)
        numeric = int(present.sum())
        row: dict[str, Any] = {
            "channel": column,
            "rows": int(values.size),
            "numeric": numeric,
            "numeric_share_percent": round(100.0 * numeric / values.size, 2) if values.size else 0.0,
            "min": float(values[present].min()) if numeric else None,
            "max": float(values[present].max()) if numeric else None,
            "step_median_minutes": None,
            "step_min_minutes": None,
            "step_max_minutes": None,
            "offset_minutes": None,
        }
        t = stamps[present]
        if t.size >= 2:
            diffs = np.diff(t)
            median_ns = int(np.median(diffs))
            row.update(
                step_median_minutes=_minutes(median_ns),
                step_min_minutes=_minutes(diffs.min()),
                step_max_minutes=_minutes(diffs.max()),
                offset_minutes=_minutes(int(t[0]) % median_ns) if median_ns > 0 else None,
            )
        out.append(row)
    return out
