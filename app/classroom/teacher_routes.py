"""The teacher's side of a class: start one from a lesson, step through it, reveal the answers, run the experiment,
close it, download the answers. Every action needs the class's secret (`key`), which only the teacher's link
carries; the store keeps its digest only."""

from __future__ import annotations

import csv
import io
import time
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2_fragments import render_block
from markupsafe import Markup
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from app.classroom.codes import digest, new_secret
from app.classroom.experiment import is_correct, run_experiment, widget_of
from app.classroom.live import teacher_events
from app.classroom.qr import join_qr_svg
from app.classroom.sessions import (
    ClassError,
    ClassStoreDep,
    client_address,
    current_step,
    find_class,
    in_thread,
    lesson_of,
    require_teacher,
)
from app.classroom.store import ClassRow
from app.classroom.views import roster, teacher_view
from app.playground.compute import run_model_work
from app.teaching.dependencies import ResultsDep
from app.teaching.lesson_schema import get_lesson, load_lessons
from app.teaching.outcomes import choice_text
from app.web.dependencies import SettingsDep, TranslatorDep
from app.web.errors import BadInput, page_errors, quoted
from app.web.forms import FormRoute, refuse_unknown_fields
from app.web.i18n import asked_language
from app.web.templating import EventStream, base_context, event_stream, is_htmx, render, templates

router = APIRouter(tags=["classroom"], route_class=FormRoute)
KEY_FIELD = Field("", max_length=200, description="the class's secret, from the teacher's link")
Key = Annotated[str, Query(max_length=200, description="the class's secret, from the teacher's link")]
LOCAL_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
ACTION_ERRORS = page_errors(403, 404, 409, 410, 413, 415, 422, 429, 503)
VIEW_ERRORS = page_errors(403, 404, 410, 422, 429, 503)


class CsvResponse(Response):
    media_type = "text/csv"


class StartForm(BaseModel):
    lesson: str = Field(max_length=100, description="the slug of the lesson the class follows")


class KeyForm(BaseModel):
    key: str = KEY_FIELD


class StepForm(KeyForm):
    to: int = Field(ge=0, le=1000, description="the index (from 0) of the step to show")


class ActForm(KeyForm):
    step: str = Field(max_length=100, description="the id of the step shown on the teacher's screen")


def teacher_url(code: str, key: str, request: Request) -> str:
    """The teacher's page, in presentation mode (and in the language asked for, when it is a known one)."""
    query = {"key": key, "lang": asked_language(request), "present": "1"}
    return f"/class/{code}?" + urlencode({k: v for k, v in query.items() if v})


@router.get("/class", summary="Start a class session from a lesson", response_class=HTMLResponse,
            responses=page_errors(422))
def class_page(request: Request, lesson: Annotated[str | None, Query(max_length=100)] = None):
    """With `lesson` (a lesson's slug, as the lesson page links it), that lesson is chosen. This browser's earlier
    classes are listed from its local storage (static/js/class.js): the server keeps no teacher's secret."""
    return render(request, "class.html", {"lessons": load_lessons(), "chosen": lesson})


@router.post("/class", summary="Start a class session: a join code, a QR code and the teacher's secret link",
             responses={303: {"description": "Started: Location is the teacher's page (it carries the secret)"},
                        **page_errors(404, 409, 413, 415, 422, 429, 503)})
async def start_class(request: Request, form: Annotated[StartForm, Form()], store: ClassStoreDep,
                      settings: SettingsDep):
    refuse_unknown_fields(await request.form(), StartForm.model_fields)
    lesson = get_lesson(form.lesson)
    if lesson is None:
        known = ", ".join(lesson.slug for lesson in load_lessons())
        raise BadInput("lesson", f"there is no lesson {quoted(form.lesson)}; lessons: {known}", 404)
    key = new_secret()
    row = await in_thread(store.create_class, lesson.slug, lesson.steps[0].id, digest(key),
                          settings.class_session_hours, settings.class_max_open, client_address(request),
                          settings.class_starts_per_hour)
    return Response(status_code=303, headers={"Location": teacher_url(row.code, key, request)})


async def _teacher_class(request: Request, store, code: str, key: str) -> ClassRow:
    row = await find_class(request, store, code, key)
    require_teacher(row, key)
    return row


def _join_url(request: Request, code: str) -> str:
    return str(request.base_url).rstrip("/") + f"/join/{code}"


async def _teacher_context(request: Request, store, row: ClassRow, key: str, t, settings, results,
                           widget: dict | None = None) -> dict:
    """The teacher's view; once the step ran, with its widget (`widget`: as the run just made it)."""
    lesson = lesson_of(row)
    context = await in_thread(teacher_view, store, row.id, lesson, t)
    context.update(key=key, join_url=_join_url(request, row.code), csv_url=f"/class/{row.code}/answers.csv?"
                   + urlencode({"key": key}), local=request.url.hostname in LOCAL_NAMES, widget_html=None,
                   view_url=f"/class/{row.code}/view?" + urlencode({"key": key}))
    if context["ran"] and context["step"].widget is not None:
        w = widget or await run_model_work(request, widget_of, context["step"], settings, results, t)
        context["widget_html"] = _widget_html(request, w)
    return context


def _widget_html(request: Request, w: dict) -> Markup:
    """The step's widget as the lesson page draws it (its block of lesson.html), autoescaped there."""
    return Markup(render_block(templates.env, "lesson.html", "widget", base_context(request, w=w, outcome=None)))


async def _after_action(request: Request, store, row: ClassRow, key: str, t, settings, results,
                        widget: dict | None = None):
    """The teacher's view as the action left it (HTMX), or back to the teacher's page (a plain form)."""
    if not is_htmx(request):
        return Response(status_code=303, headers={"Location": teacher_url(row.code, key, request)})
    context = await _teacher_context(request, store, row, key, t, settings, results, widget)
    return render(request, "class_teacher.html", context, block_names=["teacher_view"])


@router.get("/class/{code}", summary="The teacher's screen of a class (for a projector)",
            response_class=HTMLResponse, responses=VIEW_ERRORS)
async def teacher_page(request: Request, code: str, store: ClassStoreDep, settings: SettingsDep,
                       results: ResultsDep, t: TranslatorDep, key: Key = ""):
    row = await _teacher_class(request, store, code, key)
    context = await _teacher_context(request, store, row, key, t, settings, results)
    context["qr"] = join_qr_svg(context["join_url"], t("class.qr_label", url=context["join_url"]))
    context["roster"] = await in_thread(roster, store, row.id, t)
    return render(request, "class_teacher.html", context)


@router.get("/class/{code}/view", summary="The teacher's view of the current step (an HTMX partial)",
            response_class=HTMLResponse, responses=VIEW_ERRORS)
async def teacher_partial(request: Request, code: str, store: ClassStoreDep, settings: SettingsDep,
                          results: ResultsDep, t: TranslatorDep, key: Key = ""):
    row = await _teacher_class(request, store, code, key)
    context = await _teacher_context(request, store, row, key, t, settings, results)
    return render(request, "class_teacher.html", context, block_names=["teacher_view"])


@router.get("/class/{code}/roster", summary="Who joined, newest first (an HTMX partial)",
            response_class=HTMLResponse, responses=VIEW_ERRORS)
async def teacher_roster(request: Request, code: str, store: ClassStoreDep, t: TranslatorDep, key: Key = ""):
    row = await _teacher_class(request, store, code, key)
    return render(request, "class_teacher.html", {"roster": await in_thread(roster, store, row.id, t)},
                  block_names=["roster"])


@router.get("/class/{code}/events", summary="The teacher's live tally as server-sent events",
            response_class=EventStream,
            responses={**event_stream("`tally` (JSON: answered, joined, stage, version) on every change of the class; "
                                      "`stage` (the stage key) when it moves to another step, reveals, runs or ends",
                                      ("tally", "stage")),
                       204: {"description": "The class has ended (closed or expired): nothing more to follow"},
                       **VIEW_ERRORS})
async def teacher_stream(request: Request, code: str, store: ClassStoreDep, key: Key = ""):
    row = await _teacher_class(request, store, code, key)
    if row.ended(store.clock()):  # nothing more will happen: 204 stops the browser reconnecting
        return Response(status_code=204)
    return EventSourceResponse(teacher_events(request.app.state.class_hub, row.id), ping=15)


@router.post("/class/{code}/step", summary="Show another step of the lesson (previous, next)",
             response_class=HTMLResponse, responses={303: {"description": "Done: Location is the teacher's page"},
                                                     **ACTION_ERRORS})
async def go_to_step(request: Request, code: str, form: Annotated[StepForm, Form()], store: ClassStoreDep,
                     settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    refuse_unknown_fields(await request.form(), StepForm.model_fields)
    row = await _teacher_class(request, store, code, form.key)
    lesson = lesson_of(row)
    if form.to >= len(lesson.steps):
        raise BadInput("to", f"is {form.to}; this lesson's steps are 0 to {len(lesson.steps) - 1}")
    await in_thread(store.set_step, row.id, form.to, lesson.steps[form.to].id)
    return await _after_action(request, store, row, form.key, t, settings, results)


def runs_in_progress(app) -> set[tuple[int, str]]:
    """(class id, step id) of the experiments this process is running now. Another process may run the same
    step at the same moment: the store keeps the first result saved (save_result)."""
    running = getattr(app.state, "class_runs", None)
    if running is None:
        running = app.state.class_runs = set()
    return running


async def _acting_on(request: Request, code: str, form: ActForm, store):
    """The class and its current step, which must be the one the teacher's screen showed (`step`)."""
    refuse_unknown_fields(await request.form(), ActForm.model_fields)
    row = await _teacher_class(request, store, code, form.key)
    ended = row.ended(store.clock())
    if ended:
        raise ClassError("code", f"class.err.{ended}", 410)
    _, step = current_step(lesson_of(row), row)
    if step.id != form.step:
        raise ClassError("step", "class.err.moved_on", 409, step=step.id)
    if step.predict is None:
        raise ClassError("step", "class.err.no_prediction", 409, step=step.id)
    return row, step


@router.post("/class/{code}/reveal", summary="Show the class's answers and lock them", response_class=HTMLResponse,
             responses={303: {"description": "Done: Location is the teacher's page"}, **ACTION_ERRORS})
async def reveal(request: Request, code: str, form: Annotated[ActForm, Form()], store: ClassStoreDep,
                 settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    row, step = await _acting_on(request, code, form, store)
    await in_thread(store.reveal, row.id, step.id)
    return await _after_action(request, store, row, form.key, t, settings, results)


@router.post("/class/{code}/run", summary="Run the step's experiment once; every screen shows what it measured",
             response_class=HTMLResponse, responses={303: {"description": "Done: Location is the teacher's page"},
                                                     **ACTION_ERRORS})
async def run(request: Request, code: str, form: Annotated[ActForm, Form()], store: ClassStoreDep,
              settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    row, step = await _acting_on(request, code, form, store)
    state = await in_thread(store.step_state, row.id, step.id)
    if state.revealed_at is None:
        raise ClassError("step", "class.err.not_revealed", 409)
    widget = None
    if state.ran_at is None:  # queued with the playground's model work, like a lesson's Run
        running = runs_in_progress(request.app)
        if (row.id, step.id) in running:  # a second click while the first run measures
            raise ClassError("step", "class.err.running", 409, step=step.id)
        running.add((row.id, step.id))
        try:
            widget, result = await run_model_work(request, run_experiment, step, settings, results, t)
            await in_thread(store.save_result, row.id, step.id, result)
        finally:
            running.discard((row.id, step.id))
    return await _after_action(request, store, row, form.key, t, settings, results, widget)


@router.post("/class/{code}/close", summary="End the class: no more joins or answers", response_class=HTMLResponse,
             responses={303: {"description": "Done: Location is the teacher's page"}, **ACTION_ERRORS})
async def close(request: Request, code: str, form: Annotated[KeyForm, Form()], store: ClassStoreDep,
                settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    refuse_unknown_fields(await request.form(), KeyForm.model_fields)
    row = await _teacher_class(request, store, code, form.key)
    await in_thread(store.close_class, row.id)
    return await _after_action(request, store, row, form.key, t, settings, results)


async def _set_joins(request: Request, code: str, form: KeyForm, store, locked: bool, settings, results, t):
    refuse_unknown_fields(await request.form(), KeyForm.model_fields)
    row = await _teacher_class(request, store, code, form.key)
    await in_thread(store.lock_joins, row.id, locked)
    return await _after_action(request, store, row, form.key, t, settings, results)


@router.post("/class/{code}/lock", summary="Let no more students join; who joined goes on",
             response_class=HTMLResponse, responses={303: {"description": "Done: Location is the teacher's page"},
                                                     **ACTION_ERRORS})
async def lock_joins(request: Request, code: str, form: Annotated[KeyForm, Form()], store: ClassStoreDep,
                     settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    return await _set_joins(request, code, form, store, True, settings, results, t)


@router.post("/class/{code}/unlock", summary="Let new students join again", response_class=HTMLResponse,
             responses={303: {"description": "Done: Location is the teacher's page"}, **ACTION_ERRORS})
async def unlock_joins(request: Request, code: str, form: Annotated[KeyForm, Form()], store: ClassStoreDep,
                       settings: SettingsDep, results: ResultsDep, t: TranslatorDep):
    return await _set_joins(request, code, form, store, False, settings, results, t)


# ---- the answers as CSV -------------------------------------------------------------------------

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a spreadsheet would run such a cell as a formula


def csv_cell(value) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def answers_csv(store, row: ClassRow, t) -> str:
    lesson = lesson_of(row)
    steps = {step.id: step for step in lesson.steps}
    results = store.results(row.id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["student", "nickname", "step", "choice", "choice_text", "answered_at", "correct"])
    for a in store.answers(row.id):
        right = is_correct(results.get(a["step"]), a["choice"])
        step = steps.get(a["step"])
        writer.writerow([csv_cell(v) for v in (
            a["number"], a["nickname"], a["step"], a["choice"], choice_text(step, a["choice"], t.lang) if step else "",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(a["answered_at"])),
            "" if right is None else "yes" if right else "no")])
    return "\ufeff" + out.getvalue()  # the byte-order mark makes spreadsheets read UTF-8 (Chinese nicknames)


@router.get("/class/{code}/answers.csv", summary="Every answer of the class as CSV", response_class=CsvResponse,
            responses={200: {"description": "student, nickname, step, choice, choice_text, answered_at (UTC), correct "
                                            "(yes, no, or empty when the measurement decides no choice)",
                             "content": {"text/csv": {"schema": {"type": "string"}}}}, **VIEW_ERRORS})
async def answers_download(request: Request, code: str, store: ClassStoreDep, t: TranslatorDep, key: Key = ""):
    row = await _teacher_class(request, store, code, key)
    text = await in_thread(answers_csv, store, row, t)
    return CsvResponse(text, headers={"Content-Disposition": f'attachment; filename="class-{row.code}-answers.csv"'})
