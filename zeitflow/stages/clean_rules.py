"""Vectorised rule kernels of the clean stage (stages.md §3.4, §3.5, §3.7).

Every kernel works on one channel: ``t`` holds the timestamps as int64 ns (strictly increasing) and
``v`` the float64 values, NaN meaning missing. Removal kernels return a boolean mask of the values to
remove (always a subset of the non-NaN values); they never modify ``v``. Durations are integer ns and
compared exactly (§0.5).

The row-by-row scans of the spec (classic slope outliers, SBAD passes A and B) are evaluated without
a Python loop over rows. Within a valid run, removals only touch rows before the current one, so a scan
reads the values as they were when it started. Its state then only changes at *steep* steps (events);
between two events the decision depends on one time difference. The open/closed state over the events
is a reset-or-toggle recurrence, evaluated with an accumulated maximum (see ``_open_after``).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "I64_MAX", "NS_PER_HOUR", "NS_PER_MINUTE", "classic_slope_mask", "constant_mask", "cover", "gap_fill",
    "hours_to_ns", "minutes_to_ns", "sbad_pass_a", "sbad_pass_b", "short_run_mask", "true_runs",
]

NS_PER_MINUTE = 60_000_000_000
NS_PER_HOUR = 3_600_000_000_000
I64_MAX = int(np.iinfo(np.int64).max)


def minutes_to_ns(minutes: float) -> int:
    """``round(minutes · 60 · 10⁹)`` (§0.5), capped at the int64 maximum (a longer duration never ends)."""
    return min(round(minutes * NS_PER_MINUTE), I64_MAX)


def hours_to_ns(hours: float) -> int:
    """``round(hours · 3.6 · 10¹²)`` (§0.5), capped at the int64 maximum."""
    return min(round(hours * NS_PER_HOUR), I64_MAX)


# ------------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------------


def true_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index (inclusive) of every maximal run of True in ``mask``."""
    padded = np.zeros(mask.size + 2, dtype=np.int8)
    padded[1:-1] = mask
    d = np.diff(padded)
    return np.flatnonzero(d == 1), np.flatnonzero(d == -1) - 1


def cover(n: int, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Boolean mask of length ``n`` that is True on every interval ``starts[k] … ends[k]`` (inclusive)."""
    if starts.size == 0:
        return np.zeros(n, dtype=bool)
    delta = np.bincount(starts, minlength=n + 1)[: n + 1] - np.bincount(ends + 1, minlength=n + 1)[: n + 1]
    return np.cumsum(delta[:n]) > 0


def _run_of(run_starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Index of the run (given by its sorted starts) that contains each row."""
    return np.searchsorted(run_starts, rows, side="right") - 1


def _open_after(reset: np.ndarray) -> np.ndarray:
    """State after each event of the recurrence ``open[m] = True if reset[m] else not open[m-1]``.

    ``reset[0]`` must be True. The state is open iff an even number of toggles happened since the
    last reset.
    """
    idx = np.arange(reset.size)
    last_reset = np.maximum.accumulate(np.where(reset, idx, 0))
    return ((idx - last_reset) & 1) == 0


def _slopes(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Signed slope of each step i = 1 … n−1 (element i−1), in units per minute; NaN if a value is NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        return np.diff(v) / (np.diff(t) / NS_PER_MINUTE)


# ------------------------------------------------------------------------------------------------
# Simple rules (§3.4)
# ------------------------------------------------------------------------------------------------


def constant_mask(t: np.ndarray, v: np.ndarray, eq_ns: int) -> np.ndarray:
    """Rows of equal-value runs (≥ 2 rows, exactly equal, no NaN) lasting ≥ ``eq_ns``."""
    n = v.size
    if n < 2:
        return np.zeros(n, dtype=bool)
    equal = v[1:] == v[:-1]  # NaN never equals, so a NaN breaks a run
    first, last = true_runs(equal)
    last = last + 1
    long = (t[last] - t[first]) >= eq_ns
    return cover(n, first[long], last[long])


def short_run_mask(t: np.ndarray, v: np.ndarray, run_ns: int) -> np.ndarray:
    """Rows of valid runs whose duration t[last] − t[first] is < ``run_ns``."""
    first, last = true_runs(~np.isnan(v))
    short = (t[last] - t[first]) < run_ns
    return cover(v.size, first[short], last[short])


def gap_fill(t: np.ndarray, v: np.ndarray, gap_ns: int, decimals: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Fill every bracketed NaN run whose span t[b] − t[a] is ≤ ``gap_ns`` linearly in time.

    Returns the new values and the mask of filled cells. Leading and trailing NaN runs stay NaN.
    Filled values are rounded to ``decimals`` when given.
    """
    n = v.size
    valid = ~np.isnan(v)
    out = v.copy()
    if n < 3 or valid.all() or not valid.any():
        return out, np.zeros(n, dtype=bool)
    idx = np.arange(n)
    prev = np.maximum.accumulate(np.where(valid, idx, -1))
    nxt = np.minimum.accumulate(np.where(valid, idx, n)[::-1])[::-1]
    candidates = ~valid & (prev >= 0) & (nxt < n)
    rows = np.flatnonzero(candidates)
    a, b = prev[rows], nxt[rows]
    span = t[b] - t[a]
    ok = span <= gap_ns
    rows, a, b, span = rows[ok], a[ok], b[ok], span[ok]
    if rows.size:
        va, vb = v[a], v[b]
        w = (t[rows] - t[a]) / span
        with np.errstate(over="ignore", invalid="ignore"):
            filled = va + (vb - va) * w
        bad = ~np.isfinite(filled)  # only for |values| near the float maximum
        if bad.any():
            filled[bad] = va[bad] * (1.0 - w[bad]) + vb[bad] * w[bad]
        filled = np.clip(filled, np.minimum(va, vb), np.maximum(va, vb))
        if decimals is not None:
            filled = np.round(filled, decimals)
        out[rows] = filled
    mask = np.zeros(n, dtype=bool)
    mask[rows] = True
    return out, mask


# ------------------------------------------------------------------------------------------------
# Classic slope outliers (§3.5)
# ------------------------------------------------------------------------------------------------


def classic_slope_mask(t: np.ndarray, v: np.ndarray, slope_max: float, outlier_ns: int) -> np.ndarray:
    """Rows removed by the classic slope-outlier scan of §3.5.

    Events are the steep steps (rate > ``slope_max``) inside valid runs. An open episode starting at
    event s meets the next event j of its run: if t[j−1] − t[s] ≤ outlier_max, j is the jump back and
    rows s … j−1 are removed; otherwise the episode was a level shift and j opens a new one. An episode
    still open at the end of its run (NaN or end of data at row b) is removed iff t[b] − t[s] ≤ outlier_max.
    """
    n = v.size
    if n < 2:
        return np.zeros(n, dtype=bool)
    valid = ~np.isnan(v)
    with np.errstate(invalid="ignore"):
        steep = np.abs(_slopes(t, v)) > slope_max
    ev = np.flatnonzero(steep) + 1
    if ev.size == 0:
        return np.zeros(n, dtype=bool)
    run_first, run_last = true_runs(valid)
    ev_run = _run_of(run_first, ev)
    b = run_last[ev_run]
    same_run = ev_run[1:] == ev_run[:-1]
    back = same_run & (t[ev[1:] - 1] - t[ev[:-1]] <= outlier_ns)
    reset = np.ones(ev.size, dtype=bool)
    reset[1:] = ~back
    is_open = _open_after(reset)  # open = the event opened an episode; closed = it was a jump back
    closers = np.flatnonzero(~is_open)
    last_in_run = np.ones(ev.size, dtype=bool)
    last_in_run[:-1] = ~same_run
    tail = is_open & last_in_run & (t[b] - t[ev] <= outlier_ns)
    starts = np.concatenate((ev[closers - 1], ev[tail]))
    ends = np.concatenate((ev[closers] - 1, b[tail]))
    return cover(n, starts, ends)


# ------------------------------------------------------------------------------------------------
# SBAD passes (§3.7)
# ------------------------------------------------------------------------------------------------


def sbad_pass_a(t: np.ndarray, v: np.ndarray, slope_max: float) -> np.ndarray:
    """Pass A: in each valid run, every steep step before the run's first non-steep step removes the
    value before it (the first point after the gap, or its steep successors)."""
    n = v.size
    if n < 2:
        return np.zeros(n, dtype=bool)
    valid = ~np.isnan(v)
    pair = valid[1:] & valid[:-1]
    with np.errstate(invalid="ignore"):
        steep = np.abs(_slopes(t, v)) > slope_max
    ev = np.flatnonzero(steep) + 1
    if ev.size == 0:
        return np.zeros(n, dtype=bool)
    run_first, _ = true_runs(valid)
    calm = np.flatnonzero(pair & ~steep) + 1
    first_calm = np.full(run_first.size, n, dtype=np.int64)
    if calm.size:
        calm_run = _run_of(run_first, calm)
        runs_with_calm, first_index = np.unique(calm_run, return_index=True)
        first_calm[runs_with_calm] = calm[first_index]
    hit = ev < first_calm[_run_of(run_first, ev)]
    mask = np.zeros(n, dtype=bool)
    mask[ev[hit] - 1] = True
    return mask


def sbad_pass_b(t: np.ndarray, v: np.ndarray, slope_max: float, outlier_ns: int) -> np.ndarray:
    """Pass B: signed episodes of §3.7.

    Over the steep events of a valid run: an event opens an episode when none is open; a steep step of
    the same sign continues it (``start2``); one of the opposite sign removes ``start1 … i−1``. Before
    the next event, the episode closes as a level shift if a non-steep step i has
    t[i−1] − t[start2] > outlier_max. An episode open at the end of its run (row b) is removed iff
    t[b] − t[start1] ≤ outlier_max.
    """
    n = v.size
    if n < 2:
        return np.zeros(n, dtype=bool)
    valid = ~np.isnan(v)
    slope = _slopes(t, v)
    with np.errstate(invalid="ignore"):
        steep = np.abs(slope) > slope_max
    ev = np.flatnonzero(steep) + 1
    if ev.size == 0:
        return np.zeros(n, dtype=bool)
    sign = np.sign(slope[ev - 1])
    run_first, run_last = true_runs(valid)
    ev_run = _run_of(run_first, ev)
    b = run_last[ev_run]
    same_run = ev_run[1:] == ev_run[:-1]
    # a level shift closes the episode between events m and m+1 (start2 = ev[m])
    shift = t[ev[1:] - 2] - t[ev[:-1]] > outlier_ns
    flip = sign[1:] != sign[:-1]
    reset = np.ones(ev.size, dtype=bool)
    reset[1:] = ~same_run | shift | ~flip
    is_open = _open_after(reset)
    opener = np.ones(ev.size, dtype=bool)
    opener[1:] = ~same_run | shift | ~is_open[:-1]
    idx = np.arange(ev.size)
    start1 = ev[np.maximum.accumulate(np.where(opener, idx, 0))]
    closers = np.flatnonzero(~is_open)
    last_in_run = np.ones(ev.size, dtype=bool)
    last_in_run[:-1] = ~same_run
    # A level shift after the last event (t[i−1] − t[start2] > outlier_max for some i ≤ b) implies
    # t[b] − t[start1] > outlier_max, so the end rule alone decides the tail.
    tail = is_open & last_in_run & (t[b] - t[start1] <= outlier_ns)
    starts = np.concatenate((start1[closers], start1[tail]))
    ends = np.concatenate((ev[closers] - 1, b[tail]))
    return cover(n, starts, ends)
