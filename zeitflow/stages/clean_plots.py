"""Score plots of the clean stage's threshold requests (stages.md §3.9, "Prefect mapping" item 1).

The functions return PNG bytes; the task layer stores and publishes them. Figures are built on
``matplotlib.figure.Figure`` with the Agg canvas, never through pyplot, so no global figure state is
created or leaked. The PNG carries no software/date metadata, so the same input gives the same bytes.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from zeitflow.stages.clean import ThresholdRequest

__all__ = ["channel_unit", "lstm_score_plot", "score_plot", "stl_score_plot"]

_UNIT = re.compile(r"[\[(]\s*([^\[\]()]+?)\s*[\])]\s*$")
_DPI = 100
_LINE = MappingProxyType({"linewidth": 0.9})
_THRESHOLD_STYLE = MappingProxyType({"color": "tab:red", "linestyle": "--", "linewidth": 1.2})

ArrayLike = pd.Series | np.ndarray | Sequence[float]


def channel_unit(column: str | None) -> str | None:
    """The unit at the end of a channel name: ``'load_grid [kW]'`` → ``'kW'``, ``'T (°C)'`` → ``'°C'``."""
    if not column:
        return None
    match = _UNIT.search(column)
    return match.group(1) if match else None


def _with_unit(label: str, unit: str | None) -> str:
    return f"{label} [{unit}]" if unit else label


def _times(series: Sequence[ArrayLike], index: pd.Index | None) -> tuple[np.ndarray, bool]:
    """x values: the shared time index as naive UTC datetime64 when there is one, else positions."""
    if index is None:
        for s in series:
            if isinstance(s, pd.Series):
                index = s.index
                break
    n = len(series[0])
    if isinstance(index, pd.DatetimeIndex) and len(index) == n:
        utc = index.tz_convert("UTC") if index.tz is not None else index
        return utc.tz_localize(None).to_numpy(), True
    return np.arange(n), False


def _values(data: ArrayLike) -> np.ndarray:
    return np.asarray(data.to_numpy() if isinstance(data, pd.Series) else data, dtype=np.float64)


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _time_axis(ax: Axes, is_time: bool) -> None:
    ax.set_xlabel("time (UTC)" if is_time else "position")
    ax.grid(True, alpha=0.3)


def _threshold_label(threshold: float | None, suggested: bool) -> str:
    return f"{'suggested ' if suggested else ''}threshold {threshold:.4g}"


def stl_score_plot(
    observed: ArrayLike | ThresholdRequest, trend: ArrayLike | None = None, seasonal: ArrayLike | None = None,
    residual: ArrayLike | None = None, *, column: str | None = None, threshold: float | None = None,
    suggested: bool = True, index: pd.Index | None = None, period_steps: int | None = None,
) -> bytes:
    """PNG: observed, trend, seasonal and residual panels over time, and a histogram of |residual|.

    ``observed`` may also be a pending STL ``ThresholdRequest`` (then see :func:`score_plot`).
    ``threshold`` (the suggestion unless ``suggested=False``) is drawn as ±threshold on the residual
    panel and as a vertical line on the histogram. Units are taken from the channel name.
    """
    if hasattr(observed, "components"):
        return score_plot(observed, threshold)  # type: ignore[arg-type]
    if trend is None or seasonal is None or residual is None:
        raise TypeError("stl_score_plot needs observed, trend, seasonal and residual (or a ThresholdRequest)")
    arrays = [_values(a) for a in (observed, trend, seasonal, residual)]
    x, is_time = _times([observed, trend, seasonal, residual], index)  # type: ignore[list-item]
    unit = channel_unit(column)
    name = column or "channel"
    figure = Figure(figsize=(11, 12), layout="constrained")
    axes = figure.subplots(5, 1, gridspec_kw={"height_ratios": [1.2, 1, 1, 1, 1.1]})
    title = f"STL decomposition of {name}" + (f" (period {period_steps} steps)" if period_steps else "")
    figure.suptitle(title, fontsize=13)
    labels = ("observed", "trend", "seasonal", "residual")
    colors = ("tab:blue", "tab:orange", "tab:green", "tab:purple")
    for ax, values, label, color in zip(axes[:4], arrays, labels, colors, strict=True):
        ax.plot(x, values, color=color, **_LINE)
        ax.set_title(label, loc="left", fontsize=10)
        ax.set_ylabel(_with_unit(label, unit))
        _time_axis(ax, is_time)
    for ax in axes[1:4]:
        ax.sharex(axes[0])
    if threshold is not None:
        axes[3].axhline(threshold, label=_threshold_label(threshold, suggested), **_THRESHOLD_STYLE)
        axes[3].axhline(-threshold, **_THRESHOLD_STYLE)
        flagged = np.abs(arrays[3]) > threshold
        if flagged.any():
            axes[3].scatter(x[flagged], arrays[3][flagged], s=14, color="tab:red", zorder=3,
                            label=f"{int(flagged.sum())} above threshold")
        axes[3].legend(loc="upper right", fontsize=8)
    _histogram(axes[4], np.abs(arrays[3]), _with_unit("|residual|", unit), threshold, suggested)
    return _png(figure)


def lstm_score_plot(
    actual: ArrayLike | ThresholdRequest, forecast: ArrayLike | None = None, abs_error: ArrayLike | None = None, *,
    column: str | None = None, threshold: float | None = None, suggested: bool = True,
    index: pd.Index | None = None, period_steps: int | None = None,
) -> bytes:
    """PNG: actual vs one-step forecast over time, the absolute error over time with the threshold, and a
    histogram of the absolute error. Positions without a forecast (the first period) are NaN and not drawn.
    ``actual`` may also be a pending LSTM ``ThresholdRequest`` (then see :func:`score_plot`)."""
    if hasattr(actual, "components"):
        return score_plot(actual, threshold)  # type: ignore[arg-type]
    if forecast is None or abs_error is None:
        raise TypeError("lstm_score_plot needs actual, forecast and abs_error (or a ThresholdRequest)")
    a, f, e = _values(actual), _values(forecast), _values(abs_error)
    x, is_time = _times([actual, forecast, abs_error], index)
    unit = channel_unit(column)
    name = column or "channel"
    figure = Figure(figsize=(11, 9), layout="constrained")
    axes = figure.subplots(3, 1, gridspec_kw={"height_ratios": [1.3, 1, 1]})
    title = f"LSTM forecast error of {name}" + (f" (window {period_steps} steps)" if period_steps else "")
    figure.suptitle(title, fontsize=13)
    axes[0].plot(x, a, color="tab:blue", label="actual", **_LINE)
    axes[0].plot(x, f, color="tab:orange", label="forecast", **_LINE)
    axes[0].set_title("actual vs forecast", loc="left", fontsize=10)
    axes[0].set_ylabel(_with_unit("value", unit))
    axes[0].legend(loc="upper right", fontsize=8)
    axes[1].plot(x, e, color="tab:purple", **_LINE)
    axes[1].set_title("absolute error |actual − forecast|", loc="left", fontsize=10)
    axes[1].set_ylabel(_with_unit("|error|", unit))
    axes[1].sharex(axes[0])
    for ax in axes[:2]:
        _time_axis(ax, is_time)
    if threshold is not None:
        axes[1].axhline(threshold, label=_threshold_label(threshold, suggested), **_THRESHOLD_STYLE)
        with np.errstate(invalid="ignore"):
            flagged = e > threshold
        if flagged.any():
            axes[1].scatter(x[flagged], e[flagged], s=14, color="tab:red", zorder=3,
                            label=f"{int(flagged.sum())} above threshold")
            axes[0].scatter(x[flagged], a[flagged], s=14, color="tab:red", zorder=3, label="above threshold")
        axes[1].legend(loc="upper right", fontsize=8)
    _histogram(axes[2], e, _with_unit("|error|", unit), threshold, suggested)
    return _png(figure)


def _histogram(ax: Axes, scores: np.ndarray, label: str, threshold: float | None, suggested: bool) -> None:
    finite = scores[np.isfinite(scores)]
    ax.hist(finite, bins=min(60, max(10, int(np.sqrt(max(finite.size, 1))) * 2)), color="tab:gray",
            edgecolor="white", log=True)
    ax.set_title(f"distribution of {label} (n={finite.size}, log count)", loc="left", fontsize=10)
    ax.set_xlabel(label)
    ax.set_ylabel("count")
    ax.grid(True, alpha=0.3)
    if threshold is not None:
        ax.axvline(threshold, label=_threshold_label(threshold, suggested), **_THRESHOLD_STYLE)
        ax.legend(loc="upper right", fontsize=8)


def score_plot(request: ThresholdRequest, threshold: float | None = None, **kwargs: Any) -> bytes:
    """The plot for a pending request, with ``threshold`` or else the request's suggestion."""
    c = request.components
    suggested = threshold is None
    line = request.suggested_threshold if threshold is None else threshold
    common = {"column": request.column, "threshold": line, "suggested": suggested,
              "period_steps": request.period_steps, **kwargs}
    if request.phase == "stl":
        return stl_score_plot(c["observed"], c["trend"], c["seasonal"], c["residual"], **common)
    return lstm_score_plot(c["actual"], c["forecast"], c["abs_error"], **common)
