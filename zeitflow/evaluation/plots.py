"""Result plots of a training run (stages.md §11.2): test samples, metric vs. horizon and loss curves.

Pure functions: arrays and tables in, PNG bytes out; no Prefect and no I/O. As in
:mod:`zeitflow.stages.dataset_plots`, every figure is a ``matplotlib.figure.Figure`` on the Agg canvas (no pyplot
global state, so threads do not share figures) saved at dpi 100 without software/date metadata, and the plotted
data are deterministic. Each ``*_plot`` has a ``_*_figure`` twin that returns the ``Figure`` for inspection.

``plot_name(prefix, name)`` turns a model or channel name into a safe, collision-free PNG file name.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from zeitflow.errors import EvaluationError
from zeitflow.models.base import TrainingHistory

if TYPE_CHECKING:
    from zeitflow.options.report import ReportOptions
    from zeitflow.stages.scaling import ScalerSet

__all__ = [
    "TEST_SAMPLES_FIGSIZE", "loss_plot", "metric_vs_horizon_plot", "plot_name", "select_test_samples",
    "test_samples_plot",
]

_DPI: Final = 100
TEST_SAMPLES_FIGSIZE: Final = (20.0, 13.0)
_HORIZON_FIGSIZE: Final = (10.0, 7.5)
_LOSS_FIGSIZE: Final = (8.0, 5.0)
_REFERENCE_COLOR: Final = "0.35"
_BEST_COLOR: Final = "tab:red"
_DEFAULT_BASELINES: Final = ("persistence", "seasonal_naive")
_SAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")
_HASHED: Final = re.compile(r"__[0-9a-f]{10}$")
_HASH_CHARS: Final = 10
_NAME_MAX: Final = 100
_NS_PER_MINUTE: Final = 60_000_000_000


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _palette(n: int) -> list[tuple[float, ...]]:
    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


# ------------------------------------------------------------------------------------------------
# File names
# ------------------------------------------------------------------------------------------------


def plot_name(prefix: str, name: str) -> str:
    """``<prefix>_<name>.png`` with every character outside ``[A-Za-z0-9_-]`` (dots included, so no ``..``
    or trailing dot reaches a path) replaced by ``_``.

    When a character was replaced, the name was cut to 100 characters, is empty, or already ends like a hash
    suffix, ``__<10 hex digits of sha256(name)>`` is appended, so distinct names never share a file name
    (short of a hash collision) while plain names stay readable."""
    if not prefix or _SAFE.search(prefix):
        raise ValueError(f"prefix {prefix!r} must be non-empty and use only [A-Za-z0-9_.-]")
    safe = _SAFE.sub("_", name).replace(".", "_")
    if safe != name or not name or len(name) > _NAME_MAX or _HASHED.search(name):
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH_CHARS]
        safe = f"{safe[:_NAME_MAX]}__{digest}"
    return f"{prefix}_{safe}.png"


# ------------------------------------------------------------------------------------------------
# Test samples
# ------------------------------------------------------------------------------------------------


def select_test_samples(n_test: int, num_samples: int, seed: int) -> np.ndarray:
    """Positions of the test samples to draw (§11.2): ``default_rng(seed).choice(n_test, k, replace=False)``
    with ``k = min(num_samples, n_test)``, sorted so the subplots run in chronological order."""
    if n_test < 0 or num_samples < 0 or seed < 0:
        raise ValueError(f"n_test={n_test}, num_samples={num_samples} and seed={seed} must not be negative")
    k = min(num_samples, n_test)
    chosen = np.random.default_rng(seed).choice(n_test, k, replace=False)
    return np.sort(np.asarray(chosen, dtype=np.int64))


def _utc_index(reference_times: Any) -> pd.DatetimeIndex:
    index = pd.DatetimeIndex(reference_times)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns")


def _pick(role: str, wanted: Sequence[str] | None, available: Sequence[str], default: Sequence[str]) -> list[str]:
    """The channels to draw: ``default`` for None, else ``wanted`` after checking each name exists."""
    if wanted is None:
        return list(default)
    missing = [name for name in wanted if name not in available]
    if missing:
        raise EvaluationError("COLUMN_NOT_FOUND", f"ReportOptions.{role}_channels names {missing[0]!r}, which is "
                              f"not an {role} channel of the run; {role}s: {list(available)}",
                              details={"role": role, "missing": missing, "available": list(available)})
    return list(wanted)


def _offsets_ns(role: str, name: str, offsets: Mapping[str, Any], steps: int) -> np.ndarray:
    if name not in offsets:
        raise EvaluationError("COLUMN_NOT_FOUND", f"{role} channel {name!r} has no window offsets (a calendar "
                              "feature has none), so it cannot be drawn at its window times",
                              details={"role": role, "channel": name})
    minutes = np.asarray(offsets[name], dtype=np.float64)
    if minutes.shape != (steps,):
        raise EvaluationError("SHAPE_MISMATCH", f"{role} channel {name!r} has {minutes.size} window offsets but the "
                              f"windows have {steps} steps", details={"role": role, "channel": name})
    return np.rint(minutes * _NS_PER_MINUTE).astype(np.int64)


def _check_shapes(reference_times: pd.DatetimeIndex, X: np.ndarray, Y_true: np.ndarray,  # noqa: N803
                  Y_pred: np.ndarray, input_features: Sequence[str], output_features: Sequence[str]) -> None:
    n = len(reference_times)
    problems = []
    if X.ndim != 3 or X.shape[0] != n or X.shape[2] != len(input_features):
        problems.append(f"X has shape {X.shape}, expected ({n}, n_in, {len(input_features)})")
    if Y_true.ndim != 3 or Y_true.shape[0] != n or Y_true.shape[2] != len(output_features):
        problems.append(f"Y_true has shape {Y_true.shape}, expected ({n}, n_out, {len(output_features)})")
    if Y_pred.shape != Y_true.shape:
        problems.append(f"Y_pred has shape {Y_pred.shape} but Y_true has {Y_true.shape}")
    if problems:
        raise EvaluationError("SHAPE_MISMATCH", "; ".join(problems),
                              details={"x_shape": list(X.shape), "y_true_shape": list(Y_true.shape),
                                       "y_pred_shape": list(Y_pred.shape), "n_reference_times": n})
    if n == 0:
        raise EvaluationError("NO_TEST_SAMPLES", "there are no test samples to draw")


def _title_time(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%S" if ts.second or ts.microsecond or ts.nanosecond else "%Y-%m-%d %H:%M")


def _test_samples_figure(
    model: str, *, reference_times: Any, X: np.ndarray, Y_true: np.ndarray, Y_pred: np.ndarray,  # noqa: N803
    input_features: Sequence[str], output_features: Sequence[str], input_offsets_minutes: Mapping[str, Any],
    output_offsets_minutes: Mapping[str, Any], options: ReportOptions, scalers: ScalerSet | None = None,
) -> Figure:
    """The Figure behind :func:`test_samples_plot`: one subplot per selected sample, in chronological order.

    Lines carry labels ``input: <c>``, ``truth: <c>`` and ``forecast: <c>``; the reference line is labelled
    ``reference``."""
    refs = _utc_index(reference_times)
    X = np.asarray(X, dtype=np.float64)  # noqa: N806
    Y_true = np.asarray(Y_true, dtype=np.float64)  # noqa: N806
    Y_pred = np.asarray(Y_pred, dtype=np.float64)  # noqa: N806
    _check_shapes(refs, X, Y_true, Y_pred, input_features, output_features)
    n_in, n_out = X.shape[1], Y_true.shape[1]

    inputs = _pick("input", options.input_channels, input_features,
                   [f for f in input_features if f in input_offsets_minutes])
    outputs = _pick("output", options.output_channels, output_features, output_features)
    in_ns = {c: _offsets_ns("input", c, input_offsets_minutes, n_in) for c in inputs}
    out_ns = {c: _offsets_ns("output", c, output_offsets_minutes, n_out) for c in outputs}

    chosen = select_test_samples(len(refs), options.num_samples, options.seed)
    x_s, yt_s, yp_s = X[chosen], Y_true[chosen], Y_pred[chosen]
    scaled = options.y_units == "scaled"
    if scaled:
        if scalers is None:
            raise ValueError("y_units='scaled' needs the fitted scalers (scalers=...)")
        x_s, yt_s, yp_s = scalers.transform_X(x_s), scalers.transform_Y(yt_s), scalers.transform_Y(yp_s)

    names = list(dict.fromkeys([*inputs, *outputs]))
    palette = _palette(len(names) + len(outputs))
    colors = dict(zip(names, palette, strict=False))
    forecast_colors = dict(zip(outputs, palette[len(names):], strict=True))
    k = len(chosen)
    cols = math.isqrt(k - 1) + 1 if k > 1 else 1
    rows = -(-k // cols)
    figure = Figure(figsize=TEST_SAMPLES_FIGSIZE, layout="constrained")
    grid = figure.subplots(rows, cols, sharey=options.shared_axis, squeeze=False)
    axes: list[Axes] = list(grid.ravel())
    for extra in axes[k:]:
        extra.remove()
    step_axis = options.x_axis == "step"
    x_in_step = np.arange(n_in, dtype=np.float64) - (n_in - 1)
    x_out_step = np.arange(1, n_out + 1, dtype=np.float64)
    for i, (ax, sample) in enumerate(zip(axes, chosen, strict=False)):
        ref = refs[int(sample)]
        ref_ns = int(ref.value)
        for c in inputs:
            x = x_in_step if step_axis else (ref_ns + in_ns[c]).astype("datetime64[ns]")
            ax.plot(x, x_s[i, :, input_features.index(c)], color=colors[c], lw=1.3, label=f"input: {c}")
        for c in outputs:
            j = output_features.index(c)
            x = x_out_step if step_axis else (ref_ns + out_ns[c]).astype("datetime64[ns]")
            ax.plot(x, yt_s[i, :, j], color=colors[c], lw=1.3, marker="o", ms=3.5, label=f"truth: {c}")
            ax.plot(x, yp_s[i, :, j], color=forecast_colors[c], lw=1.3, ls="--", marker="x", ms=5,
                    label=f"forecast: {c}")
        ref_x: Any = 0.0 if step_axis else np.datetime64(ref_ns, "ns")
        ax.axvline(ref_x, color=_REFERENCE_COLOR, ls="--", lw=1.0, label="reference")
        ax.set_title(f"UTC: {_title_time(ref)}", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        if step_axis:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        else:
            locator = AutoDateLocator(minticks=3, maxticks=6)  # 5 finds no hourly interval for 2-day windows
            ax.xaxis.set_major_locator(locator)
            ax.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=False))
        if i % cols == 0:
            ax.set_ylabel("scaled value" if scaled else "value (original units)", fontsize=9)
        if i + cols >= k:
            ax.set_xlabel("step (0 = last input step, dashed line = reference)" if step_axis else "time (UTC)",
                          fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 6), fontsize=9)
    units = "scaled" if scaled else "original units"
    figure.suptitle(f"{model}: {k} of {len(refs)} test samples ({units})", fontsize=13)
    return figure


def test_samples_plot(
    model: str, *, reference_times: Any, X: np.ndarray, Y_true: np.ndarray, Y_pred: np.ndarray,  # noqa: N803
    input_features: Sequence[str], output_features: Sequence[str], input_offsets_minutes: Mapping[str, Any],
    output_offsets_minutes: Mapping[str, Any], options: ReportOptions, scalers: ScalerSet | None = None,
) -> bytes:
    """PNG of ``options.num_samples`` test samples of ``model`` (§11.2), figsize (20, 13).

    X (n_test, n_in, c_in), Y_true and Y_pred (n_test, n_out, c_out) are in original units. Each subplot shows
    the selected input channels at their window times (r + input offsets), the truth (marker ``o``), the
    forecast (marker ``x``, dashed) and a dashed line at the reference time r, titled ``UTC: <r>``. With
    ``x_axis='step'`` inputs sit at steps −(n_in−1)…0 and outputs at 1…n_out, the reference line at 0. With
    ``y_units='scaled'`` the values go through ``scalers``. ``input_channels=None`` draws every input channel
    that has window offsets (so no calendar feature); ``output_channels=None`` draws every output channel. A
    name that is not a channel of the run raises ``EvaluationError`` ``COLUMN_NOT_FOUND``."""
    return _png(_test_samples_figure(
        model, reference_times=reference_times, X=X, Y_true=Y_true, Y_pred=Y_pred, input_features=input_features,
        output_features=output_features, input_offsets_minutes=input_offsets_minutes,
        output_offsets_minutes=output_offsets_minutes, options=options, scalers=scalers,
    ))


test_samples_plot.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite its name


# ------------------------------------------------------------------------------------------------
# Metric vs. horizon
# ------------------------------------------------------------------------------------------------

_PER_STEP_COLUMNS: Final = ("model", "channel", "n_avg", "lead_end_minutes", "mae", "rmse")


def _metric_vs_horizon_figure(per_step: pd.DataFrame, channel: str, *,
                              baselines: Sequence[str] = _DEFAULT_BASELINES) -> Figure:
    """The Figure behind :func:`metric_vs_horizon_plot`: MAE above, RMSE below, one line per model (label =
    model name; baselines dashed)."""
    missing = [c for c in _PER_STEP_COLUMNS if c not in per_step.columns]
    if missing:
        raise ValueError(f"per_step lacks the columns {missing}")
    if not (per_step["channel"] == channel).any():
        raise EvaluationError("COLUMN_NOT_FOUND", f"the per_step table has no rows for channel {channel!r}",
                              details={"channel": channel,
                                       "available": list(dict.fromkeys(per_step["channel"].tolist()))})
    rows = per_step[(per_step["channel"] == channel) & (per_step["n_avg"] == 1)]
    models = list(dict.fromkeys(rows["model"].tolist()))
    colors = dict(zip(models, _palette(len(models)), strict=True))
    figure = Figure(figsize=_HORIZON_FIGSIZE, layout="constrained")
    ax_mae, ax_rmse = figure.subplots(2, 1, sharex=True)
    for model in models:
        part = rows[rows["model"] == model].sort_values("lead_end_minutes", kind="stable")
        x = part["lead_end_minutes"].to_numpy(dtype=np.float64)
        baseline = model in baselines
        style = {"color": colors[model], "ls": "--" if baseline else "-", "lw": 1.4,
                 "marker": "." if x.size <= 96 else None, "label": model}
        ax_mae.plot(x, part["mae"].to_numpy(dtype=np.float64), **style)
        ax_rmse.plot(x, part["rmse"].to_numpy(dtype=np.float64), **style)
    ax_mae.set_ylabel("MAE (original units)")
    ax_rmse.set_ylabel("RMSE (original units)")
    ax_rmse.set_xlabel("lead time at the end of the step (minutes)")
    for ax in (ax_mae, ax_rmse):
        ax.grid(True, alpha=0.3)
    if models:
        ax_mae.legend(fontsize=9, title="model (dashed: baseline)", title_fontsize=9)
    else:
        ax_mae.text(0.5, 0.5, "no n_avg = 1 rows", transform=ax_mae.transAxes, ha="center", va="center")
    figure.suptitle(f"{channel}: error vs. forecast horizon (n_avg = 1, test split)", fontsize=12)
    return figure


def metric_vs_horizon_plot(per_step: pd.DataFrame, channel: str, *,
                           baselines: Sequence[str] = _DEFAULT_BASELINES) -> bytes:
    """PNG of MAE and RMSE over ``lead_end_minutes`` for ``channel`` from the n_avg = 1 rows of the per_step
    table (§10.2), one line per model, baselines included and dashed (§11.2)."""
    return _png(_metric_vs_horizon_figure(per_step, channel, baselines=baselines))


# ------------------------------------------------------------------------------------------------
# Loss curves
# ------------------------------------------------------------------------------------------------


def _series(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _loss_figure(model: str, history: TrainingHistory | Mapping[str, Any]) -> Figure:
    """The Figure behind :func:`loss_plot`; lines labelled ``loss``, ``val_loss`` and ``best epoch <n>``."""
    if not isinstance(history, TrainingHistory):
        history = TrainingHistory.model_validate(dict(history))
    epochs = np.array([e.epoch for e in history.epochs], dtype=np.float64)
    loss = _series([e.loss for e in history.epochs])
    val = _series([e.val_loss for e in history.epochs])
    has_val = bool(np.isfinite(val).any())
    figure = Figure(figsize=_LOSS_FIGSIZE, layout="constrained")
    ax = figure.subplots()
    if not np.isfinite(loss).any() and not has_val:
        ax.text(0.5, 0.5, "no loss recorded", transform=ax.transAxes, ha="center", va="center")
    else:
        ax.plot(epochs, loss, color="tab:blue", marker="o", ms=3, lw=1.4, label="loss")
        if has_val:
            ax.plot(epochs, val, color="tab:orange", marker="o", ms=3, lw=1.4, label="val_loss")
        best = history.best_epoch
        if best is not None and best in epochs:
            at = int(np.flatnonzero(epochs == best)[0])
            y_best = val[at] if has_val and np.isfinite(val[at]) else loss[at]
            ax.axvline(best, color=_BEST_COLOR, ls=":", lw=1.2)
            ax.plot([best], [y_best], color=_BEST_COLOR, marker="*", ms=14, ls="none",
                    label=f"best epoch {best} (restored)")
        finite = np.concatenate([loss[np.isfinite(loss)], val[np.isfinite(val)]])
        if finite.size and finite.min() > 0 and finite.max() / finite.min() > 100:
            ax.set_yscale("log")
        ax.legend(fontsize=9)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (on scaled data)")
    ax.grid(True, alpha=0.3)
    best_text = f", best {history.best_epoch}" if history.best_epoch is not None else ""
    ax.set_title(f"{model}: training loss ({history.epochs_run or len(history.epochs)} epochs{best_text})",
                 fontsize=11)
    return figure


def loss_plot(model: str, history: TrainingHistory | Mapping[str, Any]) -> bytes:
    """PNG of loss and val_loss per epoch with the restored best epoch marked (dotted line and star, §11.2);
    ``history`` is a ``TrainingHistory`` or its JSON dict. Works without val_loss and without any loss."""
    return _png(_loss_figure(model, history))
