"""Cloud stage (stages.md §5): a regression band between two channels, and interpolation with a gap limit.

``fit_cloud(x, y, options)`` pairs the predictor ``x`` and the target ``y`` by **exact UTC timestamp**
(integer-ns equality, never by row position), fits ``y = a·x + b`` or ``y = c2·x² + c1·x + c0`` by least
squares (x centred and scaled, SVD least squares, coefficients transformed back), classifies every pair
against the tolerance band, and optionally sets the target's outside points to NaN (§5.2). Above
``max_fit_points`` pairs the fit uses ``numpy.random.default_rng(seed).choice(n, max_fit_points,
replace=False)`` of the time-ordered pairs; predictions, R² and classification always use all pairs.

The band has one formula, :func:`tolerance_band`: ``w = tol_constant`` (``constant``) or
``w = |ŷ|·tol_relative + tol_constant`` (``proportional``), ``lower = ŷ − w``, ``upper = ŷ + w``, and a point
is inside iff ``lower ≤ y ≤ upper`` (:func:`inside_band`). The drawn bounds (``points.lower``/``upper`` and the
plot) are the same arrays, so bounds and test agree also for negative predictions.

``interpolate(frame, options)`` adds the missing points of the §2.4 grid (when ``step_minutes`` is set) and fills
every bracketed NaN run whose span is ≤ ``max_gap_minutes`` linearly in time (§5.3).

Everything is vectorised; the only Python loops run over channels and over classification chunks of
1,000,000 points (one progress event each, §12).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import CloudError, FrameError
from zeitflow.frame import INDEX_NAME, validate_frame
from zeitflow.options.cloud import CloudInterpolateOptions, CloudOptions
from zeitflow.reports import ProgressCallback, ProgressEvent, ReportWarning, StageReport, emit
from zeitflow.stages.grid import grid_range, iso, minutes_to_ns

__all__ = [
    "CLASSIFY_CHUNK", "ChannelInterpolateReport", "CloudReport", "CloudResult", "InterpolateReport",
    "InterpolateResult", "fit_cloud", "format_equation", "inside_band", "interpolate", "predict",
    "tolerance_band",
]

STAGE: Final = "cloud"
INTERPOLATE_STAGE: Final = "cloud_interpolate"
CLASSIFY_CHUNK: Final = 1_000_000
DEFAULT_TOL_FRACTION: Final = 0.1  # tol_constant=None in constant mode: 0.1·(max y − min y)
CONSTANT_TARGET: Final = "constant target"

# --------------------------------------------------------------------------------------------
# Reports and results (§5.2, §5.3)
# --------------------------------------------------------------------------------------------


class CloudReport(StageReport):
    """Report of ``fit_cloud`` (§5.2).

    Counts: ``n_x``/``n_y`` rows of the inputs; ``n_matched`` timestamps in common (NaN pairs included);
    ``x_unmatched = n_x − n_matched``, ``y_unmatched = n_y − n_matched``; ``nan_pairs_dropped`` matched pairs
    with NaN in x or y; ``n_pairs = n_matched − nan_pairs_dropped = n_inside + n_outside`` (the classified
    pairs); ``fit_points`` pairs used by the fit (``sampled`` when fewer than ``n_pairs``); ``untested``
    non-NaN target values that could not be classified (no x at their timestamp, or x NaN there), so that
    non-NaN target values = ``n_inside + n_outside + untested``; ``filtered_values`` target values set to
    NaN (``n_outside`` with ``filter_target``, else 0). ``r2`` is None where R² is NaN (see ``r2_reason``).
    ``rows_in = n_x + n_y``; ``rows_out``/``columns_out`` describe ``CloudResult.points``.
    """

    stage: str = STAGE
    x_channel: str = "x"
    y_channel: str = "y"
    regression: str = "linear"
    tolerance: str = "constant"
    n_x: int = 0
    n_y: int = 0
    n_matched: int = 0
    x_unmatched: int = 0
    y_unmatched: int = 0
    nan_pairs_dropped: int = 0
    n_pairs: int = 0
    fit_points: int = 0
    sampled: bool = False
    tol_constant_effective: float = 0.0
    tol_default_used: bool = False
    tol_relative: float = 0.0
    n_inside: int = 0
    n_outside: int = 0
    untested: int = 0
    filtered_values: int = 0
    coefficients: dict[str, float] = Field(default_factory=dict)
    equation: str = ""
    r2: float | None = None
    r2_reason: str | None = None


@dataclass(frozen=True, eq=False)
class CloudResult:
    """Result of ``fit_cloud`` (§5.2).

    ``coefficients``: ``{"a", "b"}`` (linear) or ``{"c2", "c1", "c0"}`` (poly2), unrounded; ``equation``: the
    text of §5.2; ``r2`` (NaN for a constant target, with ``r2_reason``); ``points``: one row per classified pair,
    indexed by ``utc``, columns ``x``, ``y``, ``predicted``, ``lower``, ``upper`` (float64) and ``inside`` (bool);
    ``filtered_target``: the target on its own index (same order, same index object) with matched outside
    points set to NaN, or None when ``filter_target`` is false; ``options``: the options used.
    """

    coefficients: dict[str, float]
    equation: str
    r2: float
    r2_reason: str | None
    points: pd.DataFrame
    filtered_target: pd.Series | None
    report: CloudReport
    options: CloudOptions
    x_channel: str
    y_channel: str

    @property
    def n_inside(self) -> int:
        """Pairs inside the band."""
        return self.report.n_inside

    @property
    def n_outside(self) -> int:
        """Pairs outside the band."""
        return self.report.n_outside

    @property
    def tol_constant_effective(self) -> float:
        """The constant half-width actually used (the data-derived default where ``tol_constant`` was None)."""
        return self.report.tol_constant_effective

    def band(self, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds for any predictions, with this result's band (same formula as the test)."""
        return tolerance_band(predicted, self.options.tolerance, self.tol_constant_effective,
                              self.options.tol_relative)

    def predict(self, x: np.ndarray | pd.Series | float) -> np.ndarray:
        """ŷ from the (unrounded) coefficients, e.g. for drawing the curve."""
        return predict(self.coefficients, x)


class ChannelInterpolateReport(BaseModel):
    """Counts of one interpolated channel over the returned rows (§5.3):
    ``still_missing = nan_gap + nan_unbracketed`` and ``values_out = values_in + filled − off_grid_values_dropped``
    (``values_in`` counts the input's non-NaN values)."""

    model_config = ConfigDict(extra="forbid")

    values_in: int = 0
    filled: int = 0
    still_missing: int = 0
    nan_gap: int = 0
    nan_unbracketed: int = 0
    off_grid_values_dropped: int = 0
    values_out: int = 0


class InterpolateReport(StageReport):
    """Report of ``interpolate`` (§5.3). ``filled``/``still_missing`` per selected channel (also inside
    ``channels`` with the breakdown); ``added_points`` grid timestamps added as rows; ``off_grid_rows_dropped``
    rows removed by ``grid_only`` (every row that is not a grid point in [grid_start, grid_end]);
    ``input_first``/``input_last``: the first and last timestamps at which a selected channel has a value."""

    stage: str = INTERPOLATE_STAGE
    columns: list[str] = Field(default_factory=list)
    max_gap_minutes: float = 60.0
    step_minutes: float | None = None
    offset_minutes_effective: float | None = None
    anchor: str | None = None
    grid_start: str | None = None
    grid_end: str | None = None
    grid_points: int = 0
    added_points: int = 0
    off_grid_rows_dropped: int = 0
    input_first: str | None = None
    input_last: str | None = None
    filled: dict[str, int] = Field(default_factory=dict)
    still_missing: dict[str, int] = Field(default_factory=dict)
    channels: dict[str, ChannelInterpolateReport] = Field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class InterpolateResult:
    """The interpolated frame and its report."""

    frame: pd.DataFrame
    report: InterpolateReport


# --------------------------------------------------------------------------------------------
# Band, prediction and equation (shared with the plot)
# --------------------------------------------------------------------------------------------


def tolerance_band(
    predicted: np.ndarray | pd.Series | float, tolerance: str, tol_constant: float, tol_relative: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper) = (ŷ − w, ŷ + w)`` with ``w = tol_constant`` (``constant``) or
    ``w = |ŷ|·tol_relative + tol_constant`` (``proportional``), §5.2. ``w ≥ 0`` always, so ``lower ≤ ŷ ≤ upper``
    also for negative predictions."""
    p = np.asarray(predicted, dtype=np.float64)
    if tolerance == "constant":
        w = np.full_like(p, float(tol_constant))
    elif tolerance == "proportional":
        w = np.abs(p) * float(tol_relative) + float(tol_constant)
    else:
        raise ValueError(f"tolerance={tolerance!r}: expected 'constant' or 'proportional'")
    return p - w, p + w


def inside_band(y: np.ndarray | pd.Series, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The one inside test: ``lower ≤ y ≤ upper``, boundaries included (False where y is NaN)."""
    v = np.asarray(y, dtype=np.float64)
    return (lower <= v) & (v <= upper)


def predict(coefficients: Mapping[str, float], x: np.ndarray | pd.Series | float) -> np.ndarray:
    """ŷ for the coefficients of a ``linear`` (``a``, ``b``) or ``poly2`` (``c2``, ``c1``, ``c0``) fit."""
    v = np.asarray(x, dtype=np.float64)
    if "c2" in coefficients:
        return (coefficients["c2"] * v + coefficients["c1"]) * v + coefficients["c0"]
    return coefficients["a"] * v + coefficients["b"]


def format_equation(coefficients: Mapping[str, float], decimals: int = 4) -> str:
    """``y = 3.0000 x + 0.0000`` / ``y = 2.0000 x^2 - 1.0000 x + 3.0000`` (§5.2).

    Each coefficient is rounded with ``numpy.round(c, decimals)`` first and its sign taken from the rounded
    value; a rounded zero (−0.0 too) counts as positive, so ``-0.0000`` is never printed.
    """
    names, powers = (("c2", "c1", "c0"), (" x^2", " x", "")) if "c2" in coefficients else (("a", "b"), (" x", ""))
    text = "y = "
    for i, (name, power) in enumerate(zip(names, powers, strict=True)):
        value = float(np.round(float(coefficients[name]), decimals))
        negative = value < 0  # a rounded -0.0 is not < 0
        magnitude = f"{abs(value):.{decimals}f}"
        if i == 0:
            text += ("-" if negative else "") + magnitude + power
        else:
            text += (" - " if negative else " + ") + magnitude + power
    return text


# --------------------------------------------------------------------------------------------
# fit_cloud (§5.2)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    """One input Series in time order: its name, sorted int64 ns, values, and each row's original position."""

    name: str
    times: np.ndarray
    values: np.ndarray
    order: np.ndarray


def _prepare(series: Any, role: str) -> _Input:
    """Check one input (§0.3 per value, DUPLICATE_TIMESTAMPS) and sort it by time."""
    if not isinstance(series, pd.Series):
        raise FrameError("INVALID_FRAME", f"{role}: expected a pandas Series, got {type(series).__name__}",
                         details={"frame": role, "rule": "type"})
    name = str(series.name) if series.name is not None and str(series.name) else role
    label = f"{role} channel {name!r}"
    index = series.index
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None:
        index = index.tz_convert("UTC").as_unit("ns")
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or index.hasnans:
        # let the canonical check name the rule (index type, naive index, NaT)
        validate_frame(pd.DataFrame({name: series.to_numpy()}, index=index.rename(INDEX_NAME)), label)
    times = index.asi8
    order = np.argsort(times, kind="stable")
    sorted_times = times[order]
    dup = np.flatnonzero(sorted_times[1:] == sorted_times[:-1])
    if dup.size:
        stamp = iso(int(sorted_times[dup[0]]))
        raise CloudError(
            "DUPLICATE_TIMESTAMPS",
            f"{label} has {dup.size} duplicate timestamp(s); first at {stamp}: pairing by timestamp needs a "
            "unique index",
            details={"channel": name, "role": role, "duplicates": int(dup.size), "timestamp": stamp},
        )
    sorted_index = pd.DatetimeIndex(sorted_times.view("datetime64[ns]"), name=INDEX_NAME).tz_localize("UTC")
    values = series.to_numpy()[order]
    validate_frame(pd.DataFrame({name: values}, index=sorted_index), label)  # float64, no ±inf
    return _Input(name=name, times=sorted_times, values=values, order=order)


@dataclass(frozen=True)
class _Fit:
    """Least-squares polynomial in ``u = (x − center)/scale`` (coefficients highest power first)."""

    beta: np.ndarray
    center: float
    scale: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.polyval(self.beta, (x - self.center) / self.scale)

    def coefficients(self) -> dict[str, float]:
        """The polynomial in x itself (transformed back from u)."""
        m, s = self.center, self.scale
        if self.beta.size == 2:
            b1, b0 = (float(v) for v in self.beta)
            a = b1 / s
            return {"a": a, "b": b0 - a * m}
        b2, b1, b0 = (float(v) for v in self.beta)
        c2 = b2 / (s * s)
        c1 = b1 / s - 2.0 * c2 * m
        return {"c2": c2, "c1": c1, "c0": c2 * m * m - b1 * m / s + b0}


def _degenerate(x: np.ndarray, regression: str, names: tuple[str, str], sampled: bool, reason: str) -> CloudError:
    where = f"the fit sample of {x.size} pairs" if sampled else f"the {x.size} pairs"
    return CloudError(
        "DEGENERATE_PREDICTOR",
        f"cannot fit {regression} {names[1]!r} over {names[0]!r}: {reason} in {where}",
        details={"x_channel": names[0], "y_channel": names[1], "regression": regression, "fit_points": int(x.size),
                 "reason": reason},
        hint="choose another predictor channel" + (", or use regression='linear'" if regression == "poly2" else ""),
    )


def _fit(x: np.ndarray, y: np.ndarray, regression: str, names: tuple[str, str], sampled: bool) -> _Fit:
    """OLS on [u, 1] or [u², u, 1] with u = x centred and scaled (SVD least squares)."""
    first = x[0]
    others = x[x != first]
    if others.size == 0:
        raise _degenerate(x, regression, names, sampled, "x is constant")
    if regression == "poly2" and not np.any(others != others[0]):
        raise _degenerate(x, regression, names, sampled, "fewer than 3 distinct x values")
    center = float(np.mean(x))
    scale = float(np.max(np.abs(x - center)))
    if not (math.isfinite(center) and math.isfinite(scale) and scale > 0):
        raise _degenerate(x, regression, names, sampled, "x cannot be centred and scaled")
    u = (x - center) / scale
    ones = np.ones_like(u)
    design = np.column_stack((u, ones) if regression == "linear" else (u * u, u, ones))
    beta, _, rank, _ = np.linalg.lstsq(design, y, rcond=None)
    if rank < design.shape[1] or not np.all(np.isfinite(beta)):
        raise _degenerate(x, regression, names, sampled, "the design matrix is rank-deficient")
    return _Fit(beta=beta, center=center, scale=scale)


def _r2(y: np.ndarray, predicted: np.ndarray) -> tuple[float, str | None]:
    """1 − SS_res/SS_tot over all pairs; NaN with reason ``constant target`` when SS_tot = 0."""
    if y.min() == y.max():  # exact test: a float mean of equal values need not equal them
        return math.nan, CONSTANT_TARGET
    residual = y - predicted
    deviation = y - np.mean(y)
    return 1.0 - float(np.dot(residual, residual)) / float(np.dot(deviation, deviation)), None


def fit_cloud(
    x: pd.Series, y: pd.Series, options: CloudOptions | None = None, *, progress: ProgressCallback | None = None
) -> CloudResult:
    """Fit ``y`` over ``x``, classify every pair against the tolerance band and filter the target (§5.2).

    Pairing is an inner join on exact UTC timestamps (integer ns), never by row position; the inputs may be in
    any order and in any time zone. Raises ``FrameError`` ``INVALID_FRAME`` (not a Series, no tz-aware index,
    NaT, not float64, ±inf) and ``CloudError`` ``DUPLICATE_TIMESTAMPS``, ``NO_NUMERIC_DATA``,
    ``TIMESTAMP_MISMATCH``, ``INSUFFICIENT_MATCHING_POINTS`` or ``DEGENERATE_PREDICTOR``. Emits ``joined``
    and ``fitted`` phase events and one ``classified`` chunk event per 1,000,000 pairs (§12).
    """
    started = time.perf_counter()
    options = options if options is not None else CloudOptions()
    xs, ys = _prepare(x, "x"), _prepare(y, "y")
    names = (xs.name, ys.name)
    for side in (xs, ys):
        if not np.any(~np.isnan(side.values)):
            role = "x" if side is xs else "y"
            raise CloudError(
                "NO_NUMERIC_DATA",
                f"{role} channel {side.name!r} has no numeric value ({side.values.size} rows)",
                details={"channel": side.name, "role": role, "rows": int(side.values.size)},
            )

    # -- join on exact timestamps ----------------------------------------------------------------
    common, ix, iy = np.intersect1d(xs.times, ys.times, assume_unique=True, return_indices=True)
    n_matched = int(common.size)
    if n_matched == 0:
        raise CloudError(
            "TIMESTAMP_MISMATCH",
            f"x channel {xs.name!r} ({xs.times.size} rows, {iso(int(xs.times[0]))} to {iso(int(xs.times[-1]))}) and "
            f"y channel {ys.name!r} ({ys.times.size} rows, {iso(int(ys.times[0]))} to {iso(int(ys.times[-1]))}) "
            "share no timestamp; pairs are joined on exact UTC timestamps",
            details={"x_channel": xs.name, "y_channel": ys.name, "n_x": int(xs.times.size),
                     "n_y": int(ys.times.size), "x_first": iso(int(xs.times[0])), "x_last": iso(int(xs.times[-1])),
                     "y_first": iso(int(ys.times[0])), "y_last": iso(int(ys.times[-1]))},
            hint="put both channels onto one grid first (resample/align)",
        )
    xv, yv = xs.values[ix], ys.values[iy]
    valid = ~np.isnan(xv) & ~np.isnan(yv)
    n_pairs = int(np.count_nonzero(valid))
    nan_dropped = n_matched - n_pairs
    n_chunks = max(1, math.ceil(n_pairs / CLASSIFY_CHUNK))
    total = float(2 + n_chunks)
    emit(progress, ProgressEvent(
        STAGE, "phase", 1.0, total, f"joined {xs.name} and {ys.name}: {n_matched} timestamps matched",
        {"matched": float(n_matched), "pairs": float(n_pairs), "nan_pairs_dropped": float(nan_dropped)},
    ))
    if n_pairs < options.min_points:
        raise CloudError(
            "INSUFFICIENT_MATCHING_POINTS",
            f"x channel {xs.name!r} and y channel {ys.name!r}: {n_matched} timestamps matched, {nan_dropped} "
            f"dropped for NaN, {n_pairs} pairs remain; at least min_points={options.min_points} are needed",
            details={"x_channel": xs.name, "y_channel": ys.name, "n_matched": n_matched,
                     "nan_pairs_dropped": nan_dropped, "n_pairs": n_pairs, "min_points": options.min_points},
            hint="use longer series, put both channels onto one grid, or lower min_points",
        )
    t = common[valid]
    px, py = xv[valid], yv[valid]

    # -- fit (a sample of the pairs above max_fit_points) ------------------------------------------
    sampled = n_pairs > options.max_fit_points
    if sampled:
        rng = np.random.default_rng(options.seed)
        take = np.sort(rng.choice(n_pairs, options.max_fit_points, replace=False))
        fx, fy = px[take], py[take]
    else:
        fx, fy = px, py
    fit = _fit(fx, fy, options.regression, names, sampled)
    coefficients = fit.coefficients()
    equation = format_equation(coefficients, options.equation_decimals)
    predicted = fit.predict(px)
    r2, r2_reason = _r2(py, predicted)
    emit(progress, ProgressEvent(STAGE, "phase", 2.0, total, f"fitted {options.regression}: {equation}",
                                 {"fit_points": float(fx.size), **({} if r2_reason else {"r2": r2})}))

    # -- band and classification (one formula for bounds and test) --------------------------------
    tol_default_used = options.tol_constant is None
    if options.tol_constant is not None:
        tol_constant = float(options.tol_constant)
    elif options.tolerance == "constant":
        tol_constant = DEFAULT_TOL_FRACTION * (float(py.max()) - float(py.min()))
    else:
        tol_constant = 0.0
    lower = np.empty(n_pairs)
    upper = np.empty(n_pairs)
    inside = np.empty(n_pairs, dtype=bool)
    for k, start in enumerate(range(0, n_pairs, CLASSIFY_CHUNK)):
        part = slice(start, min(start + CLASSIFY_CHUNK, n_pairs))
        lower[part], upper[part] = tolerance_band(predicted[part], options.tolerance, tol_constant,
                                                  options.tol_relative)
        inside[part] = inside_band(py[part], lower[part], upper[part])
        emit(progress, ProgressEvent(STAGE, "chunk", float(3 + k), total,
                                     f"classified pairs {part.start}-{part.stop - 1} of {n_pairs}",
                                     {"points": float(part.stop - part.start)}))
    n_inside = int(np.count_nonzero(inside))
    n_outside = n_pairs - n_inside

    # -- outputs ------------------------------------------------------------------------------------
    index = pd.DatetimeIndex(t.view("datetime64[ns]"), name=INDEX_NAME).tz_localize("UTC")
    points = pd.DataFrame({"x": px, "y": py, "predicted": predicted, "lower": lower, "upper": upper,
                           "inside": inside}, index=index)
    filtered: pd.Series | None = None
    if options.filter_target:
        values = y.to_numpy(dtype=np.float64, copy=True)
        outside_rows = ys.order[iy[valid][~inside]]  # original positions of the outside pairs' targets
        values[outside_rows] = np.nan
        filtered = pd.Series(values, index=y.index, name=y.name)
    untested = int(np.count_nonzero(~np.isnan(ys.values))) - n_pairs

    warnings: list[ReportWarning] = []
    if n_inside == 0:
        examples = [{"timestamp": iso(int(t[i])), "column": ys.name, "raw": float(py[i])}
                    for i in range(min(5, n_pairs))]
        warnings.append(ReportWarning(
            code="NO_POINTS_INSIDE", count=n_pairs, examples=examples,
            message=f"none of the {n_pairs} pairs lies inside the {options.tolerance} band "
                    f"(tol_constant={tol_constant:g}, tol_relative={options.tol_relative:g})",
        ))
    parameters = options.model_dump(mode="json")
    parameters.update(tol_constant_effective=tol_constant, x_channel=xs.name, y_channel=ys.name)
    report = CloudReport(
        rows_in=int(xs.times.size + ys.times.size), rows_out=n_pairs, columns_out=list(points.columns),
        parameters=parameters, parameters_hash=options.parameters_hash(), warnings=warnings,
        x_channel=xs.name, y_channel=ys.name, regression=options.regression, tolerance=options.tolerance,
        n_x=int(xs.times.size), n_y=int(ys.times.size), n_matched=n_matched,
        x_unmatched=int(xs.times.size) - n_matched, y_unmatched=int(ys.times.size) - n_matched,
        nan_pairs_dropped=nan_dropped, n_pairs=n_pairs, fit_points=int(fx.size), sampled=sampled,
        tol_constant_effective=tol_constant, tol_default_used=tol_default_used, tol_relative=options.tol_relative,
        n_inside=n_inside, n_outside=n_outside, untested=untested,
        filtered_values=n_outside if options.filter_target else 0,
        coefficients=coefficients, equation=equation, r2=None if r2_reason else r2, r2_reason=r2_reason,
        duration_seconds=time.perf_counter() - started,
    )
    return CloudResult(
        coefficients=coefficients, equation=equation, r2=r2, r2_reason=r2_reason, points=points,
        filtered_target=filtered, report=report, options=options, x_channel=xs.name, y_channel=ys.name,
    )


# --------------------------------------------------------------------------------------------
# interpolate (§5.3)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Filled:
    """One channel after gap filling: values and masks over the rows."""

    values: np.ndarray
    filled: np.ndarray
    gap: np.ndarray
    unbracketed: np.ndarray


def _fill_linear(times: np.ndarray, values: np.ndarray, max_gap_ns: int, decimals: int | None) -> _Filled:
    """Fill each NaN run bracketed by values at rows a and b with t[b] − t[a] ≤ max gap, linearly in time."""
    n = values.size
    missing = np.isnan(values)
    rows = np.arange(n)
    prev = np.maximum.accumulate(np.where(missing, -1, rows))
    following = np.minimum.accumulate(np.where(missing, n, rows)[::-1])[::-1]
    bracketed = missing & (prev >= 0) & (following < n)
    where = np.flatnonzero(bracketed)
    p, q = prev[where], following[where]
    span = (times[q] - times[p]).view(np.uint64)  # exact for ordered int64 instants
    ok = span <= np.uint64(max_gap_ns)
    out = values.copy()
    if ok.any():
        p, q, g = p[ok], q[ok], times[where[ok]]
        a, b = values[p], values[q]
        fraction = (g - times[p]).view(np.uint64).astype(np.float64) / span[ok].astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            value = a + (b - a) * fraction
            wide = ~np.isfinite(value)  # b − a overflowed (|values| near float max)
            if wide.any():
                value[wide] = a[wide] * (1.0 - fraction[wide]) + b[wide] * fraction[wide]
        value = np.where(a == b, a, value)
        value = np.clip(value, np.minimum(a, b), np.maximum(a, b))  # rounding stays inside [a, b]
        if decimals is not None:
            value = np.round(value, decimals)
        out[where[ok]] = value
    filled = np.zeros(n, dtype=bool)
    filled[where[ok]] = True
    gap = np.zeros(n, dtype=bool)
    gap[where[~ok]] = True
    return _Filled(values=out, filled=filled, gap=gap, unbracketed=missing & ~bracketed)


def interpolate(
    frame: pd.DataFrame, options: CloudInterpolateOptions | None = None, *, progress: ProgressCallback | None = None
) -> InterpolateResult:
    """Add the missing grid timestamps and fill gaps linearly in time up to ``max_gap_minutes`` (§5.3).

    1. With ``step_minutes``: the §2.4 grid points within [first, last] (where a selected channel has a value)
       that are missing from the index are added as NaN rows (``added_points``).
    2. Each bracketed NaN run of a selected channel whose span t[b] − t[a] ≤ ``max_gap_minutes`` (integer ns)
       is filled linearly in time; leading and trailing runs are not filled.
    3. ``grid_only``: only the grid points are returned (``off_grid_rows_dropped``).
    4. ``decimals``: filled values are rounded; existing values are never altered.

    Channels not in ``columns`` are passed through (NaN on added rows). The input is never modified. Raises
    ``FrameError`` for an invalid frame and ``CloudError`` ``COLUMN_NOT_FOUND``, ``NO_NUMERIC_DATA``,
    ``EMPTY_GRID`` or ``GRID_TOO_LARGE``. Emits a ``phase`` event for the grid and one ``column`` event per
    filled channel (§12).
    """
    started = time.perf_counter()
    options = options if options is not None else CloudInterpolateOptions()
    index = frame.index if isinstance(frame, pd.DataFrame) else None
    if isinstance(index, pd.DatetimeIndex) and index.tz is not None and index.unit != "ns":
        frame = frame.set_axis(index.as_unit("ns"), axis=0)  # §0.3: other resolutions become ns on entry
    validate_frame(frame, "interpolate input")
    channels = [str(c) for c in frame.columns]
    selected = list(options.columns) if options.columns is not None else channels
    unknown = [c for c in selected if c not in channels]
    if unknown:
        raise CloudError(
            "COLUMN_NOT_FOUND",
            f"columns names {unknown} but the frame has no such channel; channels: {channels}",
            details={"columns": unknown, "available": channels},
        )
    times = frame.index.asi8
    values = {c: frame[c].to_numpy(dtype=np.float64) for c in channels}
    has_value = np.zeros(times.size, dtype=bool)
    for c in selected:
        has_value |= ~np.isnan(values[c])
    if not has_value.any():
        raise CloudError(
            "NO_NUMERIC_DATA",
            f"the selected channels {selected} have no numeric value ({times.size} rows)",
            details={"rows": int(times.size), "columns": selected},
        )
    value_rows = np.flatnonzero(has_value)
    first, last = int(times[value_rows[0]]), int(times[value_rows[-1]])
    n_events = float(len(selected) + (1 if options.step_minutes is not None else 0))
    done = 0.0

    # -- 1. add the missing grid timestamps -------------------------------------------------------
    rule = options.grid_rule()
    grid = None
    added = 0
    out_times = times
    columns = dict(values)
    if rule is not None:
        grid = grid_range(rule, first, last, error=CloudError)
        points = grid.points()
        pos = np.minimum(times.searchsorted(points), max(times.size - 1, 0))
        absent = points[times[pos] != points]
        added = int(absent.size)
        if added:
            merged = np.concatenate((times, absent))
            order = np.argsort(merged, kind="stable")
            out_times = merged[order]
            pad = np.full(added, np.nan)
            columns = {c: np.concatenate((v, pad))[order] for c, v in values.items()}
        done += 1
        emit(progress, ProgressEvent(INTERPOLATE_STAGE, "phase", done, n_events,
                                     f"grid of {grid.count} points: {added} timestamps added",
                                     {"added_points": float(added), "grid_points": float(grid.count)}))

    # -- 2. + 4. fill gaps per selected channel -----------------------------------------------------
    max_gap_ns = minutes_to_ns(options.max_gap_minutes)
    fills: dict[str, _Filled] = {}
    for c in selected:
        fills[c] = _fill_linear(out_times, columns[c], max_gap_ns, options.decimals)
        columns[c] = fills[c].values
        done += 1
        emit(progress, ProgressEvent(INTERPOLATE_STAGE, "column", done, n_events, f"{c}: gaps filled",
                                     {"filled": float(np.count_nonzero(fills[c].filled))}))

    # -- 3. grid only -------------------------------------------------------------------------------
    keep = np.ones(out_times.size, dtype=bool)
    if options.grid_only and grid is not None and rule is not None:
        keep = rule.on_grid(out_times) & (out_times >= grid.start_ns) & (out_times <= grid.end_ns)
    dropped_rows = int(out_times.size - np.count_nonzero(keep))
    kept_index = pd.DatetimeIndex(out_times[keep].view("datetime64[ns]"), name=INDEX_NAME).tz_localize("UTC")
    result = pd.DataFrame({c: columns[c][keep] for c in channels}, index=kept_index)
    validate_frame(result, "interpolate output")

    # -- report -----------------------------------------------------------------------------------------
    reports: dict[str, ChannelInterpolateReport] = {}
    for c in selected:
        f = fills[c]
        lost = ~keep & ~f.filled & ~np.isnan(f.values)  # measured values in dropped rows
        reports[c] = ChannelInterpolateReport(
            values_in=int(np.count_nonzero(~np.isnan(values[c]))),
            filled=int(np.count_nonzero(f.filled & keep)),
            still_missing=int(np.count_nonzero(np.isnan(f.values) & keep)),
            nan_gap=int(np.count_nonzero(f.gap & keep)),
            nan_unbracketed=int(np.count_nonzero(f.unbracketed & keep)),
            off_grid_values_dropped=int(np.count_nonzero(lost)),
            values_out=int(np.count_nonzero(~np.isnan(f.values) & keep)),
        )
    warnings: list[ReportWarning] = []
    passed = [c for c in channels if c not in selected]
    lost_other = {c: int(np.count_nonzero(~keep & ~np.isnan(columns[c]))) for c in passed}
    if any(lost_other.values()):
        warnings.append(ReportWarning(
            code="OFF_GRID_VALUES_DROPPED", count=sum(lost_other.values()),
            message=f"grid_only dropped values of channels that are not interpolated: {lost_other}",
            examples=[{"column": c, "raw": n} for c, n in lost_other.items() if n][:5],
        ))
    parameters = options.model_dump(mode="json")
    parameters["columns_resolved"] = selected
    if rule is not None:
        parameters["offset_minutes_effective"] = rule.offset_minutes_effective
    report = InterpolateReport(
        rows_in=int(times.size), rows_out=len(result), columns_out=channels, parameters=parameters,
        parameters_hash=options.parameters_hash(), warnings=warnings, columns=selected,
        max_gap_minutes=options.max_gap_minutes,
        step_minutes=None if rule is None else rule.step_minutes,
        offset_minutes_effective=None if rule is None else rule.offset_minutes_effective,
        anchor=None if options.anchor is None else parameters["anchor"],
        grid_start=None if grid is None else iso(grid.start_ns), grid_end=None if grid is None else iso(grid.end_ns),
        grid_points=0 if grid is None else grid.count, added_points=added, off_grid_rows_dropped=dropped_rows,
        input_first=iso(first), input_last=iso(last),
        filled={c: r.filled for c, r in reports.items()},
        still_missing={c: r.still_missing for c, r in reports.items()},
        channels=reports, duration_seconds=time.perf_counter() - started,
    )
    return InterpolateResult(frame=result, report=report)
