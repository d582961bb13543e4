"""The clean task, with interactive thresholds: when an STL or LSTM threshold is not configured,
the task publishes the score plot and returns a pending request; the flow pauses for a
``ThresholdInput`` and resumes cleaning with the answer (stages.md §3.9)."""

from __future__ import annotations

import multiprocessing
import pickle
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.exceptions import FlowPauseTimeout
from prefect.flow_runs import pause_flow_run
from prefect.logging import get_run_logger
from pydantic import BaseModel

from tasks.caching import CACHED_TASK_OPTIONS, CacheIdentity, stage_cache
from tasks.context import RunContext
from tasks.progress import ProgressReporter
from tasks.retrying import retries_in_body
from tasks.stage import (
    StageOutput,
    artifact_key,
    call_cached,
    claim_slot,
    naming_source,
    output_slot,
    persist_output,
    remove_slot,
    reuse_output,
    run_gated,
    slot_identity,
)
from tasks.threshold import ThresholdInput
from zeitflow.errors import CleanError
from zeitflow.io.artifacts import read_frame
from zeitflow.options.base import sha256_json
from zeitflow.options.clean import CleanOptions, ThresholdAnswer
from zeitflow.stages.clean import CleanResult, clean, resume
from zeitflow.stages.clean_plots import score_plot

STAGE = "clean"
SUITE = "cleaned"


class PendingThreshold(BaseModel):
    """A paused clean: what is asked, where the snapshot and the plot are, what was answered so far."""

    source: str
    phase: str
    column: str
    suggested_threshold: float
    description: str
    state_uri: str
    plot_uri: str
    answers: list[dict[str, Any]]
    input_output: StageOutput
    options: CleanOptions


class CleanOutcome(BaseModel):
    """Either the finished output or a pending threshold request."""

    output: StageOutput | None = None
    pending: PendingThreshold | None = None


def _params_hash(options: CleanOptions, answers: list[dict[str, Any]]) -> str:
    """Options plus the interactive answers: a threshold given in the UI changes the output."""
    if not answers:
        return options.parameters_hash()
    return sha256_json({"options": options.model_dump(mode="json"), "answers": answers})


def _isolated(fn, *args):
    """Run ``fn`` in a fresh spawned process: Keras seeding is process-global (§0.9), so an LSTM
    phase never shares a process with another model."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def _run_clean(frame, options: CleanOptions) -> CleanResult:
    return clean(frame, options)


def _run_resume(result: CleanResult, answer: ThresholdAnswer) -> CleanResult:
    return resume(result, answer)


def _call(options: CleanOptions, fn, *args) -> CleanResult:
    return _isolated(fn, *args) if options.lstm is not None else fn(*args)


def _finish(result: CleanResult, source: str, input_output: StageOutput, options: CleanOptions,
            answers: list[dict[str, Any]], ctx: RunContext) -> CleanOutcome:
    """Persist a finished result, or snapshot a pending one and publish its score plot."""
    store = ctx.artifacts()
    if result.pending is None:
        slot = claim_slot(ctx, STAGE, source, _params_hash(options, answers), [["frame", input_output.ref.sha256]])
        return CleanOutcome(output=persist_output(ctx, slot, result.frame, result.report.model_dump(mode="json")))
    request = result.pending
    step = len(answers)
    base = ["_interactive", ctx.run_id, f"{source}-{step}-{request.phase}"]
    state_uri = store.uri(ctx.project, STAGE, *base[:-1], base[-1] + ".pickle")
    plot_uri = store.uri(ctx.project, STAGE, *base[:-1], base[-1] + ".png")
    store.put_bytes(state_uri, pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL))
    store.put_bytes(plot_uri, score_plot(request))
    key = artifact_key("threshold", source, request.phase, request.column)
    create_link_artifact(plot_uri, link_text=f"{request.phase.upper()} scores of {request.column}",
                         key=f"{key}-plot", description=request.description())
    create_markdown_artifact(request.summary_markdown(), key=f"{key}-summary",
                             description=f"{request.phase.upper()} score summary for {request.column}")
    get_run_logger().info("clean %s: waiting for the %s threshold of %r (suggested %s)", source, request.phase,
                          request.column, request.suggested_threshold)
    return CleanOutcome(pending=PendingThreshold(
        source=source, phase=request.phase, column=request.column,
        suggested_threshold=request.suggested_threshold, description=request.description(),
        state_uri=state_uri, plot_uri=plot_uri, answers=answers, input_output=input_output, options=options,
    ))


def _identity(source: str, input_output: StageOutput, options: CleanOptions, ctx: RunContext) -> CacheIdentity:
    """Only a result without interactive answers is cached: an answered run's output lives under another
    options hash, so a cached pending request (whose objects never exist under this slot) is expired."""
    return slot_identity(ctx, output_slot(ctx, STAGE, source, _params_hash(options, []),
                                          [["frame", input_output.ref.sha256]]))


@task(name="clean", cache_policy=stage_cache(_identity), **CACHED_TASK_OPTIONS)
@retries_in_body
def clean_output(source: str, input_output: StageOutput, options: CleanOptions, ctx: RunContext) -> CleanOutcome:
    """Clean one stage output; reuse a registered result when no interactive answer is involved."""
    slot = output_slot(ctx, STAGE, source, _params_hash(options, []), [["frame", input_output.ref.sha256]])
    reused = reuse_output(ctx, slot)
    if reused is not None:
        claim_slot(ctx, STAGE, source, slot.params_hash, [["frame", input_output.ref.sha256]])
        return CleanOutcome(output=reused)
    frame = read_frame(input_output.ref.uri, expected_sha256=input_output.ref.sha256,
                       storage_options=ctx.storage_options())
    progress = ProgressReporter(f"clean {source}")
    with naming_source(source):
        result = _call(options, _run_clean, frame, options)
    progress.finish()
    return _finish(result, source, input_output, options, [], ctx)


@task(name="clean-resume", cache_policy=NO_CACHE)
@retries_in_body
def resume_clean(pending: PendingThreshold, answer: ThresholdAnswer, ctx: RunContext) -> CleanOutcome:
    """Apply one answered threshold and continue cleaning from the stored snapshot."""
    store = ctx.artifacts()
    result: CleanResult = pickle.loads(store.get_bytes(pending.state_uri))  # written by this run only
    resumed = _call(pending.options, _run_resume, result, answer)
    store.delete(pending.state_uri)
    answers = [*pending.answers, answer.model_dump(mode="json")]
    return _finish(resumed, pending.source, pending.input_output, pending.options, answers, ctx)


clean_output.on_rollback(remove_slot)
resume_clean.on_rollback(remove_slot)


def ask_threshold(pending: PendingThreshold, timeout_minutes: int, poll_seconds: int) -> ThresholdAnswer:
    """Pause the flow run until a person (UI) or a client (REST API) sends a ``ThresholdInput``."""
    form = ThresholdInput.with_initial_data(threshold=pending.suggested_threshold, skip=False,
                                            description=pending.description)
    try:
        given = pause_flow_run(wait_for_input=form, timeout=timeout_minutes * 60, poll_interval=poll_seconds,
                               key=f"threshold-{pending.source}-{len(pending.answers)}")
    except FlowPauseTimeout:
        raise CleanError(
            "THRESHOLD_TIMEOUT",
            f"no {pending.phase} threshold for channel {pending.column!r} of source {pending.source!r} "
            f"arrived within threshold_timeout_minutes={timeout_minutes}",
            details={"phase": pending.phase, "column": pending.column, "source": pending.source},
        ) from None
    return given.to_answer(pending.phase, pending.column)


def gate_parameters(options: CleanOptions, output: StageOutput, rows_in: int) -> dict[str, Any]:
    """Parameters of the ``cleaned`` suite: channels, unchanged row count and the bounds."""
    bounded = options.value_min is not None or options.value_max is not None
    return {
        "channels": list(output.ref.columns), "rows": rows_in,
        "bounded_channels": list(output.report.get("columns_cleaned", [])) if bounded else [],
        "value_min": options.value_min, "value_max": options.value_max,
    }


def run_clean(source: str, input_output: StageOutput, options: CleanOptions, ctx: RunContext, *,
              timeout_minutes: int, poll_seconds: int) -> StageOutput:
    """Clean through the ``cleaned`` gate, pausing for every threshold that was not configured."""

    def compute() -> StageOutput:
        outcome, cached = call_cached(clean_output, source, input_output, options, ctx)
        if cached and outcome.output is not None:
            return outcome.output.model_copy(update={"reused": True})
        while outcome.pending is not None:
            answer = ask_threshold(outcome.pending, timeout_minutes, poll_seconds)
            outcome = resume_clean(outcome.pending, answer, ctx)
        return outcome.output

    return run_gated(compute, SUITE, lambda out: gate_parameters(options, out, input_output.ref.rows), ctx)
