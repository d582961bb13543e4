"""Regular-grid arithmetic shared by resample (stages.md §2.4) and align (§4.5 step 3).

Every quantity is an exact Python ``int`` of nanoseconds (§0.5), so phases, ceilings and
limits never suffer float rounding, and instants outside pandas' int64 range (e.g. an anchor
in year 1) still work. Only the final grid is materialised as an int64 ``DatetimeIndex``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from zeitflow.errors import InputError

__all__ = [
    "CHUNK_POINTS", "MAX_GRID_POINTS", "NS_PER_MINUTE", "GridRange", "GridRule", "grid_range", "iso",
    "minutes_to_ns", "ns_to_minutes", "to_ns",
]

NS_PER_MINUTE = 60_000_000_000
MAX_GRID_POINTS = 5_000_000
CHUNK_POINTS = 1_000_000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def minutes_to_ns(minutes: float) -> int:
    """``round(minutes · 60 · 10⁹)`` as an exact int (§0.5); 1/60 minute gives 1,000,000,000."""
    return round(minutes * NS_PER_MINUTE)


def ns_to_minutes(ns: int) -> float:
    """Nanoseconds back to (fractional) minutes."""
    return ns / NS_PER_MINUTE


def to_ns(t: datetime | pd.Timestamp) -> int:
    """Nanoseconds since the epoch of a tz-aware instant, exact (also outside int64's range).

    Raises ``ValueError`` for a naive value: no result may depend on the process time zone (§0.5).
    """
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{t!r} has no time zone; give a tz-aware instant")
    if isinstance(t, pd.Timestamp):
        return int(t.as_unit("ns").value)
    delta: timedelta = t - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def iso(ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS[.fff…]Z`` of a UTC instant in ns (report format)."""
    return pd.Timestamp(int(ns), unit="ns", tz="UTC").isoformat().replace("+00:00", "Z")


def _iso_any(ns: int) -> str:
    """Like :func:`iso`, but also for instants outside pandas' range (used in messages)."""
    try:
        return iso(ns)
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        seconds, rest = divmod(ns, 1_000_000_000)
        stamp = _EPOCH + timedelta(seconds=seconds, microseconds=rest // 1_000)
        return stamp.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class GridRule:
    """The instants ``ref + k·step`` for every integer k (§2.4): ``ref`` is the anchor if given,
    otherwise the epoch plus ``offset mod step``. ``phase_ns`` is ``ref mod step`` in [0, step)."""

    step_ns: int
    phase_ns: int
    anchor_ns: int | None = None

    @classmethod
    def from_parameters(
        cls, step_minutes: float, offset_minutes: float = 0.0, anchor: datetime | None = None
    ) -> GridRule:
        """Build the rule from the option values (minutes, anchor instant)."""
        step_ns = minutes_to_ns(step_minutes)
        if step_ns <= 0:
            raise ValueError(f"step_minutes={step_minutes!r} gives a step of {step_ns} ns; it must be positive")
        if anchor is not None:
            anchor_ns = to_ns(anchor)
            return cls(step_ns=step_ns, phase_ns=anchor_ns % step_ns, anchor_ns=anchor_ns)
        # Python's % is the mathematical modulo: -5 min with a 15 min step gives 10 min.
        return cls(step_ns=step_ns, phase_ns=minutes_to_ns(offset_minutes) % step_ns)

    @property
    def step_minutes(self) -> float:
        """The step in minutes."""
        return ns_to_minutes(self.step_ns)

    @property
    def offset_minutes_effective(self) -> float:
        """The phase relative to the epoch, in [0, step) minutes (also when an anchor is used)."""
        return ns_to_minutes(self.phase_ns)

    def first_at_or_after(self, t_ns: int) -> int:
        """``g₀ = ref + ⌈(t − ref)/step⌉·step``: the first grid point ≥ t."""
        return self.phase_ns - ((self.phase_ns - t_ns) // self.step_ns) * self.step_ns

    def last_at_or_before(self, t_ns: int) -> int:
        """The last grid point ≤ t."""
        return self.phase_ns + ((t_ns - self.phase_ns) // self.step_ns) * self.step_ns

    def count(self, lo_ns: int, hi_ns: int) -> int:
        """Number of grid points in [lo, hi], both inclusive; 0 if there is none."""
        g0 = self.first_at_or_after(lo_ns)
        return max(0, (hi_ns - g0) // self.step_ns + 1)

    def on_grid(self, times_ns: np.ndarray) -> np.ndarray:
        """Boolean mask: which int64 ns instants lie exactly on the grid (align's pass-through test)."""
        times = np.asarray(times_ns, dtype=np.int64)
        return (times - np.int64(self.phase_ns)) % np.int64(self.step_ns) == 0


@dataclass(frozen=True)
class GridRange:
    """A finite piece of a grid: ``count`` points from ``start_ns`` in steps of ``step_ns``."""

    start_ns: int
    step_ns: int
    count: int

    @property
    def end_ns(self) -> int:
        """The last grid point."""
        return self.start_ns + (self.count - 1) * self.step_ns

    def points(self, k0: int = 0, k1: int | None = None) -> np.ndarray:
        """int64 ns of the grid points k0 … k1−1 (all by default)."""
        k1 = self.count if k1 is None else k1
        return np.arange(k0, k1, dtype=np.int64) * np.int64(self.step_ns) + np.int64(self.start_ns)

    def index(self) -> pd.DatetimeIndex:
        """The grid as a canonical ``utc`` index (datetime64[ns, UTC])."""
        values = self.points().view("datetime64[ns]")
        return pd.DatetimeIndex(values, name="utc").tz_localize("UTC")

    def chunks(self, size: int = CHUNK_POINTS) -> Iterator[tuple[int, int]]:
        """Half-open point ranges ``(k0, k1)`` of at most ``size`` points, in order."""
        for k0 in range(0, self.count, size):
            yield k0, min(k0 + size, self.count)

    def n_chunks(self, size: int = CHUNK_POINTS) -> int:
        """How many chunks :meth:`chunks` yields."""
        return math.ceil(self.count / size)


def grid_range(
    rule: GridRule, lo_ns: int, hi_ns: int, *, error: type[InputError], max_points: int = MAX_GRID_POINTS
) -> GridRange:
    """The grid from the first point ≥ lo to the last point ≤ hi (§2.4, both ends inclusive).

    The point count is computed before anything is allocated. Raises ``error`` (the calling
    stage's error class) with ``GRID_TOO_LARGE`` above ``max_points`` and ``EMPTY_GRID`` when no
    grid point lies in [lo, hi].
    """
    g0 = rule.first_at_or_after(lo_ns)
    details = {
        "lo": _iso_any(lo_ns), "hi": _iso_any(hi_ns), "step_minutes": rule.step_minutes,
        "offset_minutes_effective": rule.offset_minutes_effective,
    }
    if g0 > hi_ns:
        raise error(
            "EMPTY_GRID",
            f"no grid point of step {rule.step_minutes:g} min (phase {rule.offset_minutes_effective:g} min) lies "
            f"in [{details['lo']}, {details['hi']}]",
            details=details,
            hint="widen start/end, or choose a smaller step or another offset/anchor",
        )
    count = (hi_ns - g0) // rule.step_ns + 1
    if count > max_points:
        raise error(
            "GRID_TOO_LARGE",
            f"the grid would have {count:,} points (step {rule.step_minutes:g} min over "
            f"[{details['lo']}, {details['hi']}]); at most {max_points:,} are allowed",
            details={**details, "points": count, "max_points": max_points},
            hint="use a larger step_minutes or a narrower start/end",
        )
    return GridRange(start_ns=g0, step_ns=rule.step_ns, count=count)
