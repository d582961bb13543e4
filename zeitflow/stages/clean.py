"""Clean stage (stages.md §3): remove implausible values per channel and optionally fill short gaps.

``clean(frame, options)`` runs the classic or the anomaly rule set channel by channel, in frame order.
When an STL or LSTM threshold is ``None`` it stops before applying that phase and returns a result
whose ``pending`` is a :class:`ThresholdRequest` and whose ``state`` is an opaque, picklable
:class:`CleanState`; ``resume(result, answer)`` continues from there. Given the same answers, the final
result equals a single call with those thresholds given up front (§3.9).

The row kernels live in :mod:`zeitflow.stages.clean_rules`, the STL/LSTM scores in
:mod:`zeitflow.stages.clean_scores` and the score plots in :mod:`zeitflow.stages.clean_plots`.
TensorFlow and statsmodels are imported only when their phase runs.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from zeitflow.errors import CleanError
from zeitflow.frame import validate_frame
from zeitflow.options.clean import CleanOptions, ThresholdAnswer
from zeitflow.reports import MAX_EXAMPLES, ProgressCallback, ProgressEvent, ReportWarning, StageReport, emit
from zeitflow.stages import clean_rules as rules
from zeitflow.stages.clean_scores import (
    ScoreSummary,
    apply_threshold,
    lstm_forecast,
    score_summary,
    stl_decompose,
    suggest_threshold,
)

__all__ = [
    "FLAG_NAMES", "ChannelCleanReport", "CleanReport", "CleanResult", "CleanState", "CleanStepReport",
    "ScoreSummary", "ThresholdPhaseReport", "ThresholdRequest", "apply_threshold", "check_grid_step", "clean",
    "grid_step_ns", "resume",
]

STAGE = "clean"
#: Categories of the ``flags`` frame, in this fixed order; "" means "not removed".
FLAG_NAMES: tuple[str, ...] = (
    "", "constant", "zero", "value_max", "value_min", "slope", "sbad_a", "sbad_b", "stl", "lstm", "short_run",
    "post_validation",
)
_CODE = MappingProxyType({name: np.int8(i) for i, name in enumerate(FLAG_NAMES)})
_ANOMALY_PHASES = ("constant", "zero", "range", "sbad", "stl", "lstm")
_STATE_VERSION = 1


# ------------------------------------------------------------------------------------------------
# Reports (§3.10)
# ------------------------------------------------------------------------------------------------


class ThresholdPhaseReport(BaseModel):
    """STL or LSTM phase of one channel: period, score summary and the threshold that was applied."""

    model_config = ConfigDict(extra="forbid")

    period_steps: int
    scored: int = 0
    summary: ScoreSummary | None = None
    suggested_threshold: float | None = None
    threshold: float | None = None
    threshold_source: Literal["parameter", "interactive"] | None = None
    skipped: bool = False
    flagged: int = 0
    note: str | None = None


class CleanStepReport(BaseModel):
    """One step that ran on one channel: values it removed (by flag name) and cells it filled."""

    model_config = ConfigDict(extra="forbid")

    step: str
    flagged: int = 0
    filled: int = 0
    flags: dict[str, int] = Field(default_factory=dict)


class ChannelCleanReport(BaseModel):
    """Per-channel counts of §3.10. ``flagged`` is keyed by flag name (``sbad_a``, ``value_max``…),
    ``filled`` by fill step (``fill`` or ``fill_after_<phase>``)."""

    model_config = ConfigDict(extra="forbid")

    rows: int
    nan_before: int
    nan_after: int
    values_removed_total: int = 0
    values_filled_total: int = 0
    steps: list[CleanStepReport] = Field(default_factory=list)
    flagged: dict[str, int] = Field(default_factory=dict)
    filled: dict[str, int] = Field(default_factory=dict)
    sbad_iterations: int | None = None
    stl: ThresholdPhaseReport | None = None
    lstm: ThresholdPhaseReport | None = None
    complete: bool = False


class CleanReport(StageReport):
    """Report of ``clean``/``resume`` (§3.10). ``complete`` is False while a threshold is pending."""

    stage: str = STAGE
    rule_set: str = "anomaly"
    complete: bool = False
    pending: dict[str, str] | None = None
    grid_step_minutes: float | None = None
    columns_cleaned: list[str] = Field(default_factory=list)
    columns_passed_through: list[str] = Field(default_factory=list)
    channels: dict[str, ChannelCleanReport] = Field(default_factory=dict)
    flagged_by_step: dict[str, int] = Field(default_factory=dict)
    values_removed_total: int = 0
    values_filled_total: int = 0


# ------------------------------------------------------------------------------------------------
# Request, state and result (§3.2, §3.9)
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ThresholdRequest:
    """A phase waits for its threshold (§3.9).

    ``scores`` holds one score per scored timestamp of the channel's span (UTC index, no NaN).
    ``components`` is indexed by the whole span and holds what the score plot shows: ``observed``,
    ``trend``, ``seasonal``, ``residual``, ``score`` for STL; ``actual``, ``forecast``, ``abs_error`` for
    LSTM (NaN for the first ``period_steps`` rows, which have no score).
    """

    phase: Literal["stl", "lstm"]
    column: str
    scores: pd.Series
    summary: ScoreSummary
    suggested_threshold: float
    period_steps: int
    components: pd.DataFrame

    def description(self) -> str:
        """One paragraph for the pause form: channel, phase, unit of the threshold and the quantiles."""
        s = self.summary
        what = "|residual|" if self.phase == "stl" else "absolute forecast error"
        return (
            f"Threshold for the {self.phase.upper()} phase of channel {self.column!r}: values whose {what} "
            f"exceeds it are removed (in the channel's units). Scores: n={s.n}, median={s.q50:.6g}, "
            f"q90={s.q90:.6g}, q99={s.q99:.6g}, q99.9={s.q999:.6g}, max={s.max:.6g}. "
            f"Suggested: {self.suggested_threshold:.6g} (median + 4·1.4826·MAD). Skip applies no threshold."
        )

    def summary_markdown(self) -> str:
        """Markdown table of the summary and the suggestion, for a markdown artifact."""
        rows = [("phase", self.phase), ("channel", self.column), ("period_steps", self.period_steps)]
        rows += [(k, f"{v:.6g}" if isinstance(v, float) else v) for k, v in self.summary.model_dump().items()]
        rows.append(("suggested_threshold", f"{self.suggested_threshold:.6g}"))
        lines = ["| statistic | value |", "|---|---|"]
        lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in rows]
        return "\n".join(lines)


@dataclass(eq=False)
class _Pending:
    request: ThresholdRequest
    scores: np.ndarray  # full channel length, NaN where unscored


@dataclass(eq=False)
class CleanState:
    """Opaque, picklable snapshot of a paused clean: working values, flags, counters and position.

    Only ``resume`` reads it; its fields are not part of the contract.
    """

    options: CleanOptions
    index: pd.DatetimeIndex
    columns: list[str]
    values: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    filled: dict[str, np.ndarray]
    channels: list[str]
    steps: tuple[str, ...]
    step_ns: int | None
    period_steps: dict[str, int]
    rows_in: int
    parameters: dict[str, Any]
    channel_pos: int = 0
    step_pos: int = 0
    reports: dict[str, ChannelCleanReport] = field(default_factory=dict)
    warnings: list[ReportWarning] = field(default_factory=list)
    pending: _Pending | None = None
    duration_seconds: float = 0.0
    version: int = _STATE_VERSION

    @property
    def t(self) -> np.ndarray:
        """Timestamps as int64 ns."""
        return self.index.asi8


@dataclass(frozen=True, eq=False)
class CleanResult:
    """Output of ``clean``/``resume`` (§3.2).

    While ``pending`` is set, ``frame``/``flags``/``filled`` hold intermediate values that must not be
    persisted as the stage output; pass the result and a ``ThresholdAnswer`` to ``resume``.
    """

    frame: pd.DataFrame
    flags: pd.DataFrame
    filled: pd.DataFrame
    report: CleanReport
    pending: ThresholdRequest | None = None
    state: CleanState | None = None


# ------------------------------------------------------------------------------------------------
# Grid checks (§3.8)
# ------------------------------------------------------------------------------------------------


def grid_step_ns(index: pd.DatetimeIndex) -> int | None:
    """The common step of a regular index in ns, or None (fewer than 2 rows, or irregular)."""
    ns = index.asi8
    if ns.size < 2:
        return None
    diffs = np.diff(ns)
    return int(diffs[0]) if bool((diffs == diffs[0]).all()) else None


def _period_steps(options: CleanOptions, step_ns: int) -> dict[str, int]:
    """period_steps of the STL and LSTM phases for a grid step; raises the period errors of §3.8."""
    out: dict[str, int] = {}
    step_min = step_ns / rules.NS_PER_MINUTE
    if options.stl is not None:
        period_ns = rules.hours_to_ns(options.stl.period_hours)
        if period_ns % step_ns:
            raise CleanError(
                "STL_PERIOD_NOT_ALIGNED",
                f"STL period not an integer number of steps: stl.period_hours={options.stl.period_hours} "
                f"({period_ns} ns) is not a multiple of the grid step {step_min:g} min ({step_ns} ns)",
                details={"period_hours": options.stl.period_hours, "period_ns": period_ns, "step_ns": step_ns,
                         "step_minutes": step_min},
                hint="choose stl.period_hours as a whole number of grid steps",
            )
        out["stl"] = period_ns // step_ns
        if out["stl"] < 2:
            raise _period_range("stl", options.stl.period_hours, out["stl"], None)
    if options.lstm is not None:
        period_ns = rules.hours_to_ns(options.lstm.period_hours)
        out["lstm"] = period_ns // step_ns
        if out["lstm"] < 2:
            raise _period_range("lstm", options.lstm.period_hours, out["lstm"], None)
    return out


def _period_range(phase: str, period_hours: float, period_steps: int, n: int | None,
                  column: str | None = None) -> CleanError:
    code = "STL_PERIOD_OUT_OF_RANGE" if phase == "stl" else "LSTM_PERIOD_OUT_OF_RANGE"
    limit = "2 <= period_steps" + (f" <= n/2 = {n / 2:g}" if n is not None else "")
    where = f" for channel {column!r} (span of {n} values)" if column is not None else ""
    return CleanError(
        code,
        f"{phase}.period_hours={period_hours} gives period_steps={period_steps}{where}; allowed {limit}",
        details={"phase": phase, "period_hours": period_hours, "period_steps": period_steps, "span_values": n,
                 "column": column},
        hint="the span must cover at least two periods, and a period at least two grid steps",
    )


def check_grid_step(options: CleanOptions, step_minutes: float) -> None:
    """Check the STL/LSTM periods against a grid step before any data is read (§3.8).

    ``step_minutes`` is the step of the grid the input frame will have (the resample or align
    ``step_minutes``). Raises ``CleanError`` ``STL_PERIOD_NOT_ALIGNED``, ``STL_PERIOD_OUT_OF_RANGE`` or
    ``LSTM_PERIOD_OUT_OF_RANGE`` (lower bound; the upper bound n/2 needs the data). Does nothing when
    neither phase is configured. ``clean`` repeats these checks with the step found in the data.
    """
    step_ns = rules.minutes_to_ns(step_minutes)
    if step_ns <= 0:
        raise ValueError(f"step_minutes must be > 0, got {step_minutes}")
    _period_steps(options, step_ns)


# ------------------------------------------------------------------------------------------------
# Progress
# ------------------------------------------------------------------------------------------------


class _Progress:
    """Events whose ``done/total`` is the overall fraction of cleaned channels (never decreasing)."""

    def __init__(self, callback: ProgressCallback | None, state: CleanState) -> None:
        self.callback = callback
        self.state = state

    def emit(self, unit: str, fraction: float, message: str, **metrics: float) -> None:
        if self.callback is None:
            return
        total = max(len(self.state.channels), 1)
        done = min(self.state.channel_pos + fraction, float(total))
        emit(self.callback, ProgressEvent(STAGE, unit, float(done), float(total), message,  # type: ignore[arg-type]
                                          {k: float(v) for k, v in metrics.items()}))

    def step_fraction(self, within: float = 0.0) -> float:
        steps = max(len(self.state.steps), 1)
        return (self.state.step_pos + within) / steps


# ------------------------------------------------------------------------------------------------
# Steps
# ------------------------------------------------------------------------------------------------


def _plan(options: CleanOptions) -> tuple[str, ...]:
    """The ordered steps of the rule set (§3.5, §3.6), each only when configured."""
    o = options
    bounds = o.value_max is not None or o.value_min is not None
    if o.rule_set == "classic":
        wanted = [
            ("constant", o.eq_max_minutes is not None), ("value_max", o.value_max is not None),
            ("value_min", o.value_min is not None), ("zero", o.drop_zeros), ("slope", o.slope_max is not None),
            ("fill", o.gap_max_minutes is not None), ("short_run", o.run_min_minutes is not None),
            ("post_validation", bounds),
        ]
        return tuple(name for name, on in wanted if on)
    configured = {
        "constant": o.eq_max_minutes is not None, "zero": o.drop_zeros, "range": bounds,
        "sbad": o.slope_max is not None, "stl": o.stl is not None, "lstm": o.lstm is not None,
    }
    steps: list[str] = []
    fill = o.gap_max_minutes is not None
    for phase in _ANOMALY_PHASES:
        if configured[phase]:
            steps.append(phase)
            if fill:
                steps.append(f"fill_after_{phase}")
    if fill and not steps:
        steps.append("fill")
    if o.run_min_minutes is not None:
        steps.append("short_run")
    return tuple(steps)


def _remove(state: CleanState, column: str, mask: np.ndarray, flag: str) -> int:
    """Set the masked non-NaN values to NaN with ``flag``; return how many were removed."""
    v = state.values[column]
    mask = mask & ~np.isnan(v)
    count = int(mask.sum())
    if count:
        v[mask] = np.nan
        state.flags[column][mask] = _CODE[flag]
        state.filled[column][mask] = False
    return count


def _fill(state: CleanState, column: str) -> int:
    o = state.options
    assert o.gap_max_minutes is not None
    new, mask = rules.gap_fill(state.t, state.values[column], rules.minutes_to_ns(o.gap_max_minutes), o.decimals)
    state.values[column] = new
    state.filled[column] |= mask
    return int(mask.sum())


def _sbad(state: CleanState, column: str, progress: _Progress, record: CleanStepReport) -> None:
    o = state.options
    assert o.slope_max is not None and o.outlier_max_minutes is not None
    t = state.t
    outlier_ns = rules.minutes_to_ns(o.outlier_max_minutes)
    counts = {"sbad_a": 0, "sbad_b": 0}
    iterations = 0
    new = 0
    for iterations in range(1, o.sbad_max_iterations + 1):
        a = _remove(state, column, rules.sbad_pass_a(t, state.values[column], o.slope_max), "sbad_a")
        b = _remove(state, column, rules.sbad_pass_b(t, state.values[column], o.slope_max, outlier_ns), "sbad_b")
        counts["sbad_a"] += a
        counts["sbad_b"] += b
        new = a + b
        progress.emit("iteration", progress.step_fraction(iterations / o.sbad_max_iterations),
                      f"{column}: SBAD iteration {iterations}", iteration=iterations, flagged=new)
        if new == 0:
            break
    if new:
        state.warnings.append(ReportWarning(
            code="SBAD_NOT_CONVERGED",
            message=f"{column}: SBAD still flagged {new} value(s) in its last allowed iteration "
                    f"(sbad_max_iterations={o.sbad_max_iterations})",
            examples=[{"column": column}],
        ))
    state.reports[column].sbad_iterations = iterations
    record.flags.update(counts)


def _simple_step(state: CleanState, column: str, step: str, record: CleanStepReport) -> None:
    """Every step except SBAD and the threshold phases."""
    o = state.options
    t, v = state.t, state.values[column]
    if step == "constant":
        assert o.eq_max_minutes is not None
        record.flags["constant"] = _remove(state, column, rules.constant_mask(
            t, v, rules.minutes_to_ns(o.eq_max_minutes)), "constant")
    elif step == "zero":
        record.flags["zero"] = _remove(state, column, v == 0.0, "zero")
    elif step in ("value_max", "value_min", "range"):
        if step in ("value_max", "range") and o.value_max is not None:
            record.flags["value_max"] = _remove(state, column, state.values[column] > o.value_max, "value_max")
        if step in ("value_min", "range") and o.value_min is not None:
            record.flags["value_min"] = _remove(state, column, state.values[column] < o.value_min, "value_min")
    elif step == "slope":
        assert o.slope_max is not None and o.outlier_max_minutes is not None
        record.flags["slope"] = _remove(state, column, rules.classic_slope_mask(
            t, v, o.slope_max, rules.minutes_to_ns(o.outlier_max_minutes)), "slope")
    elif step == "short_run":
        assert o.run_min_minutes is not None
        record.flags["short_run"] = _remove(state, column, rules.short_run_mask(
            t, v, rules.minutes_to_ns(o.run_min_minutes)), "short_run")
    elif step == "post_validation":
        with np.errstate(invalid="ignore"):
            out = np.zeros(v.size, dtype=bool)
            if o.value_max is not None:
                out |= v > o.value_max
            if o.value_min is not None:
                out |= v < o.value_min
        record.flags["post_validation"] = _remove(state, column, out, "post_validation")
    elif step == "fill" or step.startswith("fill_after_"):
        record.filled = _fill(state, column)
    else:  # pragma: no cover - _plan only yields the names above
        raise AssertionError(f"unknown clean step {step!r}")


def _fill_hint(state: CleanState, phase: str, longest_minutes: float) -> str:
    """How to get a gap-free span: the anomaly fill runs only after a phase, never before the first."""
    earlier = state.steps[: state.steps.index(phase)]
    if any(step.startswith("fill") for step in earlier):
        return f"set gap_max_minutes >= {longest_minutes:g} to fill these gaps before the {phase} phase"
    return (f"set gap_max_minutes >= {longest_minutes:g} together with an earlier phase (the fill runs after "
            "constants, zeros, range or SBAD), or fill the gaps upstream (resample/align with interpolation)")


def _span(state: CleanState, column: str, phase: str) -> tuple[int, int] | None:
    """First and last non-NaN row of the channel; SERIES_INCOMPLETE for NaNs inside; None if empty."""
    v = state.values[column]
    valid = ~np.isnan(v)
    rows = np.flatnonzero(valid)
    if rows.size == 0:
        return None
    lo, hi = int(rows[0]), int(rows[-1])
    interior = np.flatnonzero(~valid[lo:hi + 1]) + lo
    if interior.size:
        first = state.index[int(interior[0])].isoformat()
        starts, ends = rules.true_runs(~valid[lo:hi + 1])
        spans = state.t[ends + lo + 1] - state.t[starts + lo - 1]
        longest = float(spans.max()) / rules.NS_PER_MINUTE
        raise CleanError(
            "SERIES_INCOMPLETE",
            f"channel {column!r} has {interior.size} missing value(s) inside its span before the {phase} phase, "
            f"the first at {first}; the {phase} phase needs a gap-free series",
            details={"column": column, "phase": phase, "interior_nan": int(interior.size), "first_timestamp": first,
                     "longest_gap_span_minutes": longest},
            hint=_fill_hint(state, phase, longest),
        )
    return lo, hi


def _score(state: CleanState, column: str, phase: str, lo: int, hi: int, progress: _Progress
           ) -> tuple[np.ndarray, pd.DataFrame]:
    """Scores over the span (NaN where unscored) and the plot components."""
    o = state.options
    p = state.period_steps[phase]
    x = state.values[column][lo:hi + 1]
    span_index = state.index[lo:hi + 1]
    if 2 * p > x.size:
        phase_options = o.stl if phase == "stl" else o.lstm
        assert phase_options is not None
        raise _period_range(phase, phase_options.period_hours, p, int(x.size), column)
    if phase == "stl":
        assert o.stl is not None
        parts = stl_decompose(x, p, o.stl.seasonal, o.stl.robust)
        scores = np.abs(parts["residual"])
        components = pd.DataFrame({**parts, "score": scores}, index=span_index)
    else:
        assert o.lstm is not None
        lstm = o.lstm

        def on_epoch(epoch: int, loss: float) -> None:
            progress.emit("epoch", progress.step_fraction(epoch / lstm.epochs),
                          f"{column}: LSTM epoch {epoch}/{lstm.epochs}", epoch=epoch, epochs=lstm.epochs, loss=loss)

        forecast = lstm_forecast(x, p, units=lstm.units, epochs=lstm.epochs, batch_size=lstm.batch_size,
                                 seed=o.seed, on_epoch=on_epoch)
        scores = np.abs(x - forecast)
        components = pd.DataFrame({"actual": x.copy(), "forecast": forecast, "abs_error": scores}, index=span_index)
    return scores, components


def _threshold_phase(state: CleanState, column: str, phase: str, answer: ThresholdAnswer | None,
                     progress: _Progress, record: CleanStepReport) -> ThresholdRequest | None:
    """STL/LSTM phase: score, then apply the threshold or return a request for it (§3.8, §3.9)."""
    channel = state.reports[column]
    if state.pending is not None:
        assert answer is not None
        pending, state.pending = state.pending, None
        full = pending.scores
        threshold, source = answer.threshold, "interactive"
        phase_report = getattr(channel, phase)
    else:
        span = _span(state, column, phase)
        p = state.period_steps[phase]
        if span is None:
            setattr(channel, phase, ThresholdPhaseReport(period_steps=p, note="channel has no value: not scored"))
            state.warnings.append(ReportWarning(
                code="CHANNEL_ALL_NAN", message=f"{column}: no value left before the {phase} phase; it did not run",
                examples=[{"column": column}],
            ))
            return None
        lo, hi = span
        scores, components = _score(state, column, phase, lo, hi, progress)
        summary = score_summary(scores)
        suggested = suggest_threshold(summary)
        phase_report = ThresholdPhaseReport(period_steps=p, scored=summary.n, summary=summary,
                                            suggested_threshold=suggested)
        setattr(channel, phase, phase_report)
        full = np.full(state.index.size, np.nan)
        full[lo:hi + 1] = scores
        options_phase = getattr(state.options, phase)
        if options_phase.threshold is None:
            scored = ~np.isnan(scores)
            request = ThresholdRequest(
                phase=phase,  # type: ignore[arg-type]
                column=column,
                scores=pd.Series(scores[scored], index=state.index[lo:hi + 1][scored], name=column),
                summary=summary, suggested_threshold=suggested, period_steps=p, components=components,
            )
            state.pending = _Pending(request, full)
            return request
        threshold, source = float(options_phase.threshold), "parameter"
    flags = apply_threshold(pd.Series(full, index=state.index), threshold).to_numpy()
    removed = _remove(state, column, flags, phase)
    phase_report.threshold = threshold
    phase_report.threshold_source = source  # type: ignore[assignment]
    phase_report.skipped = threshold is None
    phase_report.flagged = removed
    record.flags[phase] = removed
    return None


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------


def _record_step(channel: ChannelCleanReport, record: CleanStepReport) -> None:
    record.flagged = sum(record.flags.values())
    channel.steps.append(record)
    for name, count in record.flags.items():
        channel.flagged[name] = channel.flagged.get(name, 0) + count
    if record.step == "fill" or record.step.startswith("fill_after_"):
        channel.filled[record.step] = channel.filled.get(record.step, 0) + record.filled
    channel.values_removed_total += record.flagged
    channel.values_filled_total += record.filled


def _run(state: CleanState, progress: _Progress, answer: ThresholdAnswer | None) -> ThresholdRequest | None:
    """Advance the pipeline until it finishes or a phase waits for its threshold."""
    while state.channel_pos < len(state.channels):
        column = state.channels[state.channel_pos]
        if column not in state.reports:
            v = state.values[column]
            nan = int(np.isnan(v).sum())
            state.reports[column] = ChannelCleanReport(rows=int(v.size), nan_before=nan, nan_after=nan)
            progress.emit("column", 0.0, f"{column}: started")
        channel = state.reports[column]
        while state.step_pos < len(state.steps):
            step = state.steps[state.step_pos]
            record = CleanStepReport(step=step)
            resuming = answer is not None and state.pending is not None
            if not resuming:
                progress.emit("phase", progress.step_fraction(), f"{column}: {step} started")
            if step in ("stl", "lstm"):
                request = _threshold_phase(state, column, step, answer, progress, record)
                answer = None
                if request is not None:
                    progress.emit("phase", progress.step_fraction(0.5),
                                  f"awaiting_threshold: {step} {column}",
                                  suggested_threshold=request.suggested_threshold)
                    return request
            elif step == "sbad":
                _sbad(state, column, progress, record)
            else:
                _simple_step(state, column, step, record)
            _record_step(channel, record)
            progress.emit("phase", progress.step_fraction(1.0), f"{column}: {step} finished",
                          flagged=record.flagged, filled=record.filled)
            state.step_pos += 1
        channel.nan_after = int(np.isnan(state.values[column]).sum())
        channel.complete = True
        progress.emit("column", 1.0, f"{column}: finished", flagged=channel.values_removed_total,
                      filled=channel.values_filled_total)
        state.channel_pos += 1
        state.step_pos = 0
    return None


def _result(state: CleanState, request: ThresholdRequest | None, started: float) -> CleanResult:
    state.duration_seconds += time.perf_counter() - started
    index = state.index
    frame = pd.DataFrame({c: state.values[c].copy() for c in state.columns}, index=index)
    flags = pd.DataFrame(
        {c: pd.Categorical.from_codes(state.flags[c].astype(np.int8), categories=list(FLAG_NAMES))
         for c in state.columns},
        index=index,
    )
    filled = pd.DataFrame({c: state.filled[c].copy() for c in state.columns}, index=index)
    channels = {c: state.reports[c].model_copy(deep=True) for c in state.channels if c in state.reports}
    by_step: dict[str, int] = {}
    for rep in channels.values():
        for name, count in rep.flagged.items():
            by_step[name] = by_step.get(name, 0) + count
    report = CleanReport(
        rows_in=state.rows_in, rows_out=int(len(frame)), columns_out=list(frame.columns),
        parameters=copy.deepcopy(state.parameters), parameters_hash=state.options.parameters_hash(),
        duration_seconds=state.duration_seconds, warnings=_merge_warnings(state.warnings),
        rule_set=state.options.rule_set, complete=request is None,
        pending=None if request is None else {"phase": request.phase, "column": request.column},
        grid_step_minutes=None if state.step_ns is None else state.step_ns / rules.NS_PER_MINUTE,
        columns_cleaned=list(state.channels),
        columns_passed_through=[c for c in state.columns if c not in set(state.channels)],
        channels=channels, flagged_by_step=by_step,
        values_removed_total=sum(r.values_removed_total for r in channels.values()),
        values_filled_total=sum(r.values_filled_total for r in channels.values()),
    )
    if request is None:
        return CleanResult(frame, flags, filled, report, None, None)
    return CleanResult(frame, flags, filled, report, request, state)


def _merge_warnings(warnings: list[ReportWarning]) -> list[ReportWarning]:
    """One warning per code: the first message, every occurrence counted, up to five examples."""
    merged: dict[str, ReportWarning] = {}
    for w in warnings:
        if w.code not in merged:
            merged[w.code] = w.model_copy(deep=True)
            continue
        m = merged[w.code]
        m.count += w.count
        m.examples = (m.examples + w.examples)[:MAX_EXAMPLES]
    return list(merged.values())


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def clean(
    frame: pd.DataFrame, options: CleanOptions | Mapping[str, Any] | None = None, *,
    progress: ProgressCallback | None = None,
) -> CleanResult:
    """Clean the channels of a canonical frame (§3).

    Raises ``FrameError`` for an invalid frame and ``CleanError`` with the §3.11 codes
    (``COLUMN_NOT_FOUND``, ``NO_NUMERIC_DATA``, ``TIME_GRID_REQUIRED``, ``SERIES_INCOMPLETE``,
    ``STL_PERIOD_NOT_ALIGNED``, ``STL_PERIOD_OUT_OF_RANGE``, ``LSTM_PERIOD_OUT_OF_RANGE``).
    """
    started = time.perf_counter()
    if options is None:
        options = CleanOptions()
    elif not isinstance(options, CleanOptions):
        options = CleanOptions.model_validate(dict(options))
    validate_frame(frame, "clean input")
    columns = [str(c) for c in frame.columns]
    if options.columns is not None:
        missing = [c for c in options.columns if c not in columns]
        if missing:
            raise CleanError(
                "COLUMN_NOT_FOUND",
                f"columns {missing} are not channels of the input frame (channels: {columns})",
                details={"columns": missing, "available": columns},
            )
    values = {c: frame[c].to_numpy(dtype=np.float64, copy=True) for c in columns}
    if not any(bool((~np.isnan(v)).any()) for v in values.values()):
        raise CleanError("NO_NUMERIC_DATA", f"the input frame ({len(frame)} rows, channels {columns}) has no "
                                            "numeric value", details={"rows": int(len(frame)), "columns": columns})
    selected = set(options.columns) if options.columns is not None else set(columns)
    channels = [c for c in columns if c in selected]
    step_ns = grid_step_ns(frame.index)
    periods: dict[str, int] = {}
    if options.stl is not None or options.lstm is not None:
        if step_ns is None:
            raise CleanError(
                "TIME_GRID_REQUIRED",
                "the STL and LSTM phases need a regular time grid (all index steps equal); the input "
                + (f"has {len(frame)} row(s)" if len(frame) < 2 else "has irregular steps"),
                details={"rows": int(len(frame))}, hint="resample or align first",
            )
        periods = _period_steps(options, step_ns)
    parameters = options.model_dump(mode="json")
    parameters["columns_resolved"] = channels
    parameters["grid_step_minutes"] = None if step_ns is None else step_ns / rules.NS_PER_MINUTE
    parameters.update({f"{k}_period_steps": v for k, v in periods.items()})
    state = CleanState(
        options=options, index=frame.index, columns=columns, values=values,
        flags={c: np.zeros(len(frame), dtype=np.int8) for c in columns},
        filled={c: np.zeros(len(frame), dtype=bool) for c in columns},
        channels=channels, steps=_plan(options), step_ns=step_ns, period_steps=periods,
        rows_in=int(len(frame)), parameters=parameters,
    )
    request = _run(state, _Progress(progress, state), None)
    return _result(state, request, started)


def resume(
    result: CleanResult, answer: ThresholdAnswer | Mapping[str, Any], *, progress: ProgressCallback | None = None,
) -> CleanResult:
    """Apply ``answer`` to the pending request of ``result`` and continue (§3.9).

    Raises ``CleanError`` ``RESUME_STATE_MISMATCH`` when ``result`` has no pending request or the
    answer's phase or column differs from it. ``result`` itself is not modified, so it can be resumed
    again (e.g. with another answer).
    """
    started = time.perf_counter()
    if not isinstance(answer, ThresholdAnswer):
        answer = ThresholdAnswer.model_validate(dict(answer))
    pending, state = result.pending, result.state
    if pending is None or state is None or state.pending is None:
        raise CleanError(
            "RESUME_STATE_MISMATCH", "resume needs a result with a pending threshold request; this one has none",
            details={"answer": answer.model_dump(mode="json")},
        )
    expected = state.pending.request
    if (answer.phase, answer.column) != (pending.phase, pending.column) or \
            (pending.phase, pending.column) != (expected.phase, expected.column):
        raise CleanError(
            "RESUME_STATE_MISMATCH",
            f"the answer is for phase={answer.phase!r}, column={answer.column!r}; the pending request is for "
            f"phase={pending.phase!r}, column={pending.column!r}",
            details={"answer": {"phase": answer.phase, "column": answer.column},
                     "pending": {"phase": pending.phase, "column": pending.column}},
        )
    if getattr(state, "version", None) != _STATE_VERSION:
        raise CleanError("RESUME_STATE_MISMATCH", "the result's state comes from another version of the clean stage",
                         details={"state_version": getattr(state, "version", None), "expected": _STATE_VERSION})
    state = copy.deepcopy(state)
    tracker = _Progress(progress, state)
    tracker.emit("phase", tracker.step_fraction(0.5), f"threshold_received: {answer.phase} {answer.column}",
                 **({} if answer.threshold is None else {"threshold": answer.threshold}))
    request = _run(state, tracker, answer)
    return _result(state, request, started)
