"""Cloud plot (stages.md §5): the pairs of ``fit_cloud``, the fitted line or curve and the tolerance band.

``cloud_plot(result)`` returns PNG bytes; the task layer stores and publishes them. As in
:mod:`zeitflow.stages.clean_plots`, the figure is a ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot
global state) and the PNG carries no software/date metadata, so the same input gives the same bytes.

The band is drawn with :meth:`CloudResult.band`, the formula the inside test uses, so drawn bounds and
classification agree (also for negative predictions). Above ``max_points`` pairs a deterministic sample is
drawn (``numpy.random.default_rng(seed)``, the fit's seed by default), stratified by inside/outside so the
picture keeps the proportions while rare outside points stay visible; the legend states the sample sizes.
"""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from zeitflow.stages.cloud import CloudResult

__all__ = ["cloud_plot", "plot_sample"]

_DPI = 100
_CURVE_POINTS = 400
_INSIDE_COLOR = "tab:blue"
_OUTSIDE_COLOR = "tab:red"
_FIT_COLOR = "black"
_BAND_COLOR = "tab:orange"


def plot_sample(inside: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    """Sorted row positions to draw: every row up to ``max_points``; above it a stratified sample drawn with
    ``default_rng(seed).choice(..., replace=False)``: outside and inside rows in proportion to their counts, but
    at least ``min(n_outside, max_points // 10)`` outside rows, so rare outside points stay visible."""
    inside = np.asarray(inside, dtype=bool)
    n = inside.size
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    rows_out = np.flatnonzero(~inside)
    rows_in = np.flatnonzero(inside)
    take_out = max(round(max_points * rows_out.size / n), min(rows_out.size, max_points // 10))
    take_out = min(take_out, rows_out.size)
    take_in = min(rows_in.size, max_points - take_out)
    chosen_out = rows_out[rng.choice(rows_out.size, take_out, replace=False)]
    chosen_in = rows_in[rng.choice(rows_in.size, take_in, replace=False)]
    return np.sort(np.concatenate((chosen_out, chosen_in)))


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _r2_text(result: CloudResult) -> str:
    if result.r2_reason is not None or not math.isfinite(result.r2):
        return f"R² = n/a ({result.r2_reason or 'undefined'})"
    return f"R² = {result.r2:.4f}"


def _band_text(result: CloudResult) -> str:
    o = result.options
    if o.tolerance == "constant":
        default = " (default 10 % of the target range)" if result.report.tol_default_used else ""
        return f"constant band ±{result.tol_constant_effective:.4g}{default}"
    return f"proportional band ±(|ŷ|·{o.tol_relative:.4g} + {result.tol_constant_effective:.4g})"


def cloud_plot(
    result: CloudResult, *, max_points: int = 20_000, seed: int | None = None, title: str | None = None,
    figsize: tuple[float, float] = (9.0, 7.0),
) -> bytes:
    """PNG: scatter of the pairs (inside blue, outside red; a deterministic sample above ``max_points``), the fit
    line/curve, the tolerance band, axis labels with the channel names (units included), and the equation and R²
    in the title. The same result and arguments give the same bytes."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points} must be at least 1")
    points = result.points
    x = points["x"].to_numpy(dtype=np.float64)
    y = points["y"].to_numpy(dtype=np.float64)
    inside = points["inside"].to_numpy(dtype=bool)
    rows = plot_sample(inside, max_points, result.options.seed if seed is None else seed)
    sampled = rows.size < x.size
    xs, ys, ins = x[rows], y[rows], inside[rows]

    figure = Figure(figsize=figsize, layout="constrained")
    ax = figure.subplots()
    marker = 30.0 if xs.size <= 1_000 else 10.0 if xs.size <= 10_000 else 5.0
    alpha = 0.8 if xs.size <= 1_000 else 0.5
    n_in, n_out = result.n_inside, result.n_outside
    label_in = f"inside ({n_in:,}" + (f", {int(ins.sum()):,} drawn)" if sampled else ")")
    label_out = f"outside ({n_out:,}" + (f", {int((~ins).sum()):,} drawn)" if sampled else ")")
    ax.scatter(xs[ins], ys[ins], s=marker, color=_INSIDE_COLOR, alpha=alpha, linewidths=0, label=label_in, zorder=2)
    ax.scatter(xs[~ins], ys[~ins], s=marker * 1.5, color=_OUTSIDE_COLOR, alpha=0.8, linewidths=0,
               label=label_out, zorder=3)

    if x.size:
        lo, hi = float(np.min(x)), float(np.max(x))
        curve_x = np.linspace(lo, hi, _CURVE_POINTS) if hi > lo else np.array([lo])
        curve_y = result.predict(curve_x)
        lower, upper = result.band(curve_y)
        ax.fill_between(curve_x, lower, upper, color=_BAND_COLOR, alpha=0.18, linewidth=0, zorder=1,
                        label=_band_text(result))
        ax.plot(curve_x, lower, color=_BAND_COLOR, linestyle="--", linewidth=1.0, zorder=4)
        ax.plot(curve_x, upper, color=_BAND_COLOR, linestyle="--", linewidth=1.0, zorder=4)
        ax.plot(curve_x, curve_y, color=_FIT_COLOR, linewidth=1.6, zorder=5,
                label=f"{result.options.regression} fit")

    ax.set_xlabel(result.x_channel)
    ax.set_ylabel(result.y_channel)
    heading = title or f"{result.y_channel} over {result.x_channel}"
    ax.set_title(f"{heading}\n{result.equation}    {_r2_text(result)}", fontsize=11)
    ax.grid(True, alpha=0.3)
    legend_title = f"{result.report.n_pairs:,} pairs" + (" (sampled)" if sampled else "")
    ax.legend(loc="best", fontsize=8, title=legend_title, title_fontsize=8)
    return _png(figure)
