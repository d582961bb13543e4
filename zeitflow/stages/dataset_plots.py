"""Violin plots of a windowed dataset (stages.md §7, §11.2): one PNG per input and per output variable.

Each PNG shows the distribution of every value of that variable (all samples and steps). Colours follow one
shared order, inputs first, then outputs (``tab10`` cycled), so a variable keeps its colour across plots.
As in :mod:`zeitflow.stages.cloud_plots` the figure is a ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot
global state) and the PNG carries no software/date metadata: the same dataset and arguments give the same bytes.
Above ``max_points`` values a deterministic sample (``numpy.random.default_rng(seed)``) feeds the density.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from zeitflow.stages.windows import WindowedDataset

__all__ = ["violin_plots"]

_DPI = 100


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _one(values: np.ndarray, label: str, color: tuple[float, ...], figsize: tuple[float, float],
         max_points: int, seed: int) -> bytes:
    values = values[np.isfinite(values)]
    drawn = values
    if values.size > max_points:
        drawn = values[np.sort(np.random.default_rng(seed).choice(values.size, max_points, replace=False))]
    figure = Figure(figsize=figsize, layout="constrained")
    ax = figure.subplots()
    if drawn.size and np.ptp(drawn) > 0:
        parts = ax.violinplot([drawn], showmeans=False, showmedians=True, showextrema=True)
        for body in parts["bodies"]:
            body.set_facecolor(color)
            body.set_edgecolor("black")
            body.set_alpha(0.7)
        for key in ("cmedians", "cmins", "cmaxes", "cbars"):
            if key in parts:
                parts[key].set_color("black")
    elif drawn.size:
        ax.scatter([1.0], [float(drawn[0])], color=color, s=40)
    sampled = f", {drawn.size:,} drawn" if drawn.size < values.size else ""
    ax.set_xticks([1.0], [label])
    ax.set_ylabel("value")
    ax.set_title(f"{label}\n{values.size:,} values{sampled}", fontsize=11)
    ax.grid(True, axis="y", alpha=0.3)
    return _png(figure)


def violin_plots(dataset: WindowedDataset, *, max_points: int = 20_000, seed: int = 42,
                 figsize: tuple[float, float] = (4.0, 5.0)) -> dict[str, bytes]:
    """PNG bytes per variable, keyed ``input:<name>`` / ``output:<name>`` (inputs first, in feature order)."""
    if max_points < 1:
        raise ValueError(f"max_points={max_points} must be at least 1")
    cmap = colormaps["tab10"]
    out: dict[str, bytes] = {}
    items = [("input", name, dataset.X[:, :, j]) for j, name in enumerate(dataset.input_features)]
    items += [("output", name, dataset.Y[:, :, j]) for j, name in enumerate(dataset.output_features)]
    for i, (role, name, values) in enumerate(items):
        key = f"{role}:{name}"
        out[key] = _one(np.asarray(values, dtype=np.float64).ravel(), key, cmap(i % cmap.N), figsize, max_points,
                        seed)
    return out
