"""The training lab: start a run with any switches, watch it live over server-sent events, stop it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Annotated

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse
from pydantic import Field, create_model
from sse_starlette import EventSourceResponse, ServerSentEvent

from app import figures
from app.lab.dependencies import RunnerDep, StoreDep
from app.lab.form import (
    AB_OPTIONS,
    DEFAULT_SWITCHES,
    DEFAULTS,
    FIELDS,
    RunForm,
    ab_option_label,
    check_text_step_fits,
    input_limits,
    parse_ab,
    parse_run_request,
    seeds_of,
    switch_controls_for,
)
from app.lab.jobs import ABANDONED, STOPPED_BEFORE_START, STOPPED_BY_LEARNER, JobRequest, QueueFull
from app.lab.quotas import QuotaExceeded
from app.lab.runs import INTERRUPTED, RunRecord
from app.lab.sweeps import SWEEP_STOPPED
from app.switches import SWITCH_FIELDS, choices, family_notes, parse_switches, switch_doc
from app.web.dependencies import LanguageDep, LearnerDep, SettingsDep, TranslatorDep
from app.web.errors import BadInput, api_errors, page_errors
from app.web.forms import FormRoute, refuse_unknown_fields
from app.web.i18n import Translator
from app.web.numbers import json_safe
from app.web.params import RunId
from app.web.templating import EventStream, event_stream, is_htmx, render
from model.stacks import FAMILIES
from model.tasks import TASKS, get_task

router = APIRouter(tags=["training"], route_class=FormRoute)
# What a run's form may hold: its fields, and the language of the page it came from.
RUN_FORM_FIELDS = frozenset(RunForm.model_fields) | {"lang"}


# Why a run ended, in the page's language (the store keeps the English reason).
REASON_KEYS = {STOPPED_BY_LEARNER: "reason.stopped_by_learner", ABANDONED: "reason.abandoned",
               STOPPED_BEFORE_START: "reason.stopped_before_start", SWEEP_STOPPED: "reason.sweep_stopped",
               INTERRUPTED: "reason.interrupted"}


def reason_text(error: str | None, t: Translator) -> str | None:
    return t(REASON_KEYS[error]) if error in REASON_KEYS else error


def _heldout_key(task: str) -> str:
    """What a run's curves draw as its held-out figure: whole-answer accuracy, or a text's held-out loss."""
    return "heldout_loss" if get_task(task).reads_text else "heldout_seq_accuracy"


def _run_context(seeds: list[tuple[RunRecord, bool]], lang: str) -> dict:
    """The run card of one or more seeds trained together (`seeds`: each seed's run and whether it was
    replayed). Its two figures are layouts with one placeholder row that training.js replaces with the
    streamed metrics (so every trace the page fills in already exists)."""
    records = [record for record, _ in seeds]
    record = records[0]
    config = record.spec.model
    stacks = [spec.name for spec in FAMILIES[config.arch]]
    heldout = _heldout_key(record.spec.task)
    placeholder = {"step": 0, "loss": 1.0, "token_accuracy": 0.0, heldout: 1.0,
                   "layer_grad_norms": {stack: [1.0] * config.n_layers(stack) for stack in stacks}}
    with figures.language(lang):
        return {"run": record, "seed_runs": records, "replayed": all(replayed for _, replayed in seeds),
                "reason": reason_text(record.error, Translator(lang)),
                "curves": figures.training_curves([placeholder], heldout),
                "heatmap": figures.gradient_heatmap([placeholder], stacks[-1])}


# The lab's query string: the task and the switches that pre-fill its form (as the playground links them).
TrainQuery = create_model(
    "TrainQuery",
    task=(str | None, Field(None, description=f"the task the form starts with: {' | '.join(TASKS)}")),
    arch=(str | None, Field(None, description="the family the form starts with: "
                                               f"{' | '.join(FIELDS['arch'].choices)}")),
    **{name: (str | None, Field(None, description=switch_doc(name))) for name in SWITCH_FIELDS},
)


@router.get("/train", summary="The training lab", response_class=HTMLResponse, responses=page_errors(422))
def training_page(request: Request, query: Annotated[TrainQuery, Query()], store: StoreDep, settings: SettingsDep,
                  t: TranslatorDep):
    """Switch parameters in the URL (as the playground links them) pre-fill the form."""
    given = {name: value for name, value in query.model_dump().items() if value is not None}
    switches = parse_switches(given, DEFAULT_SWITCHES)
    task = given.get("task", DEFAULTS["task"])
    arch = given.get("arch", DEFAULTS["arch"])
    defaults = {**DEFAULTS, "task": task if task in TASKS else DEFAULTS["task"],
                "arch": arch if arch in FIELDS["arch"].choices else DEFAULTS["arch"]}
    return render(request, "train.html", {
        "defaults": defaults, "tasks": list(TASKS), "families": FIELDS["arch"].choices,
        "controls": switch_controls_for(switches),
        "family_notes": family_notes(),
        "norm_choices": choices("norm"), "runs": store.list(limit=12), "init_schemes": FIELDS["init"].choices,
        "ab_options": [(option, ab_option_label(option, t)) for option in AB_OPTIONS],
        "limits": input_limits(settings),
    })


@router.post("/train/runs", summary="Start a training run (or replay the stored one with the same settings)",
             response_class=HTMLResponse, responses=page_errors(413, 415, 422, 429, 507))
async def start_run(request: Request, fields: Annotated[RunForm, Form()], settings: SettingsDep, runner: RunnerDep,
                    learner: LearnerDep, lang: LanguageDep):
    refuse_unknown_fields(await request.form(), RUN_FORM_FIELDS)
    form = fields.model_dump(exclude_none=True)
    spec, label = parse_run_request(form, settings)
    seeds = seeds_of(form)
    check_text_step_fits(spec, len(seeds))
    ab = parse_ab(form)
    if ab is None:
        [runs] = _submit(runner, JobRequest(spec, seeds, label, learner=learner))
        return render(request, "train.html", _run_context(runs, lang), block_names=["run_card"])
    b_form, change = ab
    b_spec, _ = parse_run_request(b_form, settings)  # validated before either run starts
    a_runs, b_runs = _submit(runner, JobRequest(spec, seeds, label or "A", learner=learner),  # both, or neither
                             JobRequest(b_spec, seeds, f"B: {change}", learner=learner))
    heldout = _heldout_key(spec.task)
    with figures.language(lang):
        overlay = figures.training_curves([{"step": 0, "loss": 1.0, "token_accuracy": 0.0, heldout: 1.0}], heldout)
    context = {"a": _run_context(a_runs, lang), "b": _run_context(b_runs, lang),
               "change": change, "change_label": ab_option_label(change, Translator(lang)), "overlay": overlay}
    return render(request, "train.html", context, block_names=["ab_card"])


def _submit(runner, *requests: JobRequest):
    try:
        return runner.submit_jobs(list(requests))
    except QueueFull as error:
        raise BadInput("queue", str(error), 429) from None
    except QuotaExceeded as error:
        raise BadInput("store", str(error), 413) from None
    except (sqlite3.Error, OSError) as error:  # e.g. the disk is full: nothing was queued, the lab works on
        raise BadInput("store", f"the run store could not be written ({error}); nothing was started", 507) from None


@router.get("/train/runs/{run_id}", summary="One run: its curves, live while it trains", response_class=HTMLResponse,
            responses=page_errors(404, 422))
def run_page(request: Request, run_id: RunId, store: StoreDep, lang: LanguageDep):
    context = _run_context([(_record(store, run_id), False)], lang)
    if is_htmx(request):
        return render(request, "train.html", context, block_names=["run_card"])
    return render(request, "run.html", context)


@router.post("/train/runs/{run_id}/cancel", summary="Stop a run", responses=page_errors(404, 413, 415, 422))
def cancel_run(run_id: RunId, store: StoreDep, runner: RunnerDep) -> dict[str, int | str]:
    """The run's id and `status`: "cancelling", or its status when it had already ended."""
    if not runner.cancel(run_id):
        return {"run": run_id, "status": _record(store, run_id).status}
    return {"run": run_id, "status": "cancelling"}


@router.get("/train/runs/{run_id}/events", summary="Live metrics of a run as server-sent events",
            response_class=EventStream,
            responses={**event_stream("`metrics` events (one step's metrics, JSON) and `status` events (JSON: queued "
                                      "with the position, running, done, failed or cancelled with the reason)",
                                      ("metrics", "status")), **page_errors(404, 422)})
async def run_events(request: Request, run_id: RunId, store: StoreDep, runner: RunnerDep, t: TranslatorDep):
    _record(store, run_id)

    async def stream():
        events = runner.events(run_id).__aiter__()
        pending = asyncio.ensure_future(events.__anext__())
        try:
            while True:
                done, _ = await asyncio.wait({pending}, timeout=1.0)
                if not done:  # still waiting: say where in the queue the run is
                    if await request.is_disconnected():
                        return
                    position = runner.queue_position(run_id)
                    status = {"status": "queued", "position": position} if position else {"status": "running"}
                    yield ServerSentEvent(json.dumps(status), event="status")
                    continue
                try:
                    event = pending.result()
                except StopAsyncIteration:
                    return
                if event.kind == "metrics":
                    yield ServerSentEvent(json.dumps(json_safe(event.data)), event="metrics")
                else:  # the runner says "started"; the page knows a run's statuses (the store's), so "running"
                    status = "running" if event.kind == "started" else event.kind
                    message = reason_text(event.data, t)
                    yield ServerSentEvent(json.dumps({"status": status, "message": message}), event="status")
                pending = asyncio.ensure_future(events.__anext__())
        finally:
            pending.cancel()
            await events.aclose()

    return EventSourceResponse(stream(), ping=15)


@router.get("/api/runs", tags=["api"], summary="Stored training runs, newest first", responses=api_errors(422))
def list_runs(store: StoreDep, limit: int = 50) -> list[dict]:
    return [r.to_dict() for r in store.list(limit=min(max(limit, 1), 500))]


@router.get("/api/runs/{run_id}/metrics", tags=["api"], summary="Every step's metrics of a run",
            responses=api_errors(404, 422))
def run_metrics(run_id: RunId, store: StoreDep) -> dict:
    return {"run": _record(store, run_id).to_dict(), "metrics": store.metrics(run_id)}


def _record(store, run_id: int) -> RunRecord:
    """The run, or a 404 naming it."""
    record = store.get(run_id)
    if record is None:
        raise BadInput("run", f"there is no run {run_id}", 404)
    return record
