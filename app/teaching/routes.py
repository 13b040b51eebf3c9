"""Guided lessons and the claim-check page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from app.lab.dependencies import SweepsDep
from app.playground.compute import run_model_work
from app.teaching.claims import CLAIMS
from app.teaching.claims.render import api_verdict, verdict_view
from app.teaching.dependencies import ResultsDep, VerdictsDep
from app.teaching.lesson_schema import get_lesson, load_lessons
from app.teaching.widgets import run_step
from app.web.dependencies import SettingsDep, TranslatorDep
from app.web.errors import BadInput, page_errors, quoted
from app.web.forms import FormRoute
from app.web.templating import is_htmx, render

router = APIRouter(tags=["lessons"], route_class=FormRoute)


def _lesson_or_404(slug: str):
    lesson = get_lesson(slug)
    if lesson is None:
        known = ", ".join(lesson.slug for lesson in load_lessons())
        raise BadInput("lesson", f"there is no lesson {quoted(slug)}; lessons: {known}", 404)
    return lesson


@router.get("/lessons", summary="The lessons", response_class=HTMLResponse)
def lessons_page(request: Request):
    return render(request, "lessons.html", {"lessons": load_lessons()})


@router.get("/lessons/{slug}", summary="One lesson: predict, run, read", response_class=HTMLResponse,
            responses=page_errors(404, 422))
def lesson_page(request: Request, slug: str):
    lesson = _lesson_or_404(slug)
    lessons = load_lessons()
    index = lessons.index(lesson)
    return render(request, "lesson.html", {
        "lesson": lesson, "previous": lessons[index - 1] if index else None,
        "next": lessons[index + 1] if index + 1 < len(lessons) else None,
    })


@router.get("/lessons/{slug}/steps/{step_id}/widget", summary="Run one step's widget (after the prediction)",
            response_class=HTMLResponse, responses=page_errors(404, 422))
async def lesson_widget(request: Request, slug: str, step_id: str, settings: SettingsDep, results: ResultsDep,
                        t: TranslatorDep, choice: str | None = None):
    """With `choice` (the id of the learner's prediction), the outcome too: the step's claim measured, which
    choice that is, and whether the prediction matched."""
    lesson = _lesson_or_404(slug)
    step = lesson.step(step_id)
    if step is None or step.widget is None:
        raise BadInput("step", f"lesson {slug!r} has no step {quoted(step_id)} with a widget", 404)
    if choice is not None:
        if step.predict is None:
            raise BadInput("choice", f"step {step_id!r} asks for no prediction")
        if step.choice(choice) is None:
            known = ", ".join(c.id for c in step.predict.choices)
            raise BadInput("choice", f"{quoted(choice)} is not a choice of step {step_id!r}; choices: {known}")
    # queued with the playground; the claim is measured in the same worker
    result = await run_model_work(request, run_step, step, choice, settings, results, t)
    return render(request, "lesson.html", {"lesson": lesson, "step": step, **result}, block_names=["widget"])


@router.get("/claims", summary="Every claim of the note with its measured verdict", response_class=HTMLResponse)
def claims_page(request: Request, board: VerdictsDep, t: TranslatorDep):
    """Never measures on the request: the newest report at once, refreshed while a new one is measured."""
    report, fresh = board.current()
    steps = {claim: (lesson.slug, step.id) for lesson in load_lessons() for step in lesson.steps
             if (claim := step.claim)}
    verdicts = {claim: verdict_view(v, t) for claim, v in (report or {}).get("verdicts", {}).items()}
    source = (report or {}).get("source", "measured here")
    shipped = board.shipped() if source == "measured here" else None  # shown beside this server's verdicts
    shipped_verdicts = {claim: verdict_view(v, t) for claim, v in (shipped or {}).get("verdicts", {}).items()}
    results = board.results
    return render(request, "claims.html", {
        "claims": CLAIMS, "report": report, "fresh": fresh, "verdicts": verdicts, "steps": steps, "source": source,
        "about": results.shipped.about if results.shipped is not None else None, "shipped_verdicts": shipped_verdicts,
        "here": results.progress_here() if results.shipped is not None else None})


@router.get("/api/claims", tags=["api"], summary="The measured verdict of every claim, with its numbers")
def claims_api(board: VerdictsDep) -> dict:
    """Per claim: `id`, `verdict`, `kind` (measurement or check by construction), `seeds`, `numbers` (accuracies
    with their range over seeds and 95% interval) and a label for each in every language, `conditions` (in words
    and as data), `sources` and `runs` (the keys of the runs it read), `source` ("shipped" with the app or
    "measured here") and `measured` (when, on which machine; for shipped results, where they were trained);
    `chart` (claims measured from the sweeps, else null: each condition's mean and lowest and highest seed,
    and the cells the verdict compares, its labels as catalogue keys and values); summary and method in every
    language ({"en", "zh"}) and the catalogue keys they are made of. `fresh` is false while the runs changed
    since it was measured (it is then being measured again: ask later)."""
    report, fresh = board.current()
    source = (report or {}).get("source", "measured here")
    measured = {"at": (report or {}).get("computed_at"), "machine": (report or {}).get("machine"),
                "results": (report or {}).get("about")}  # about: where and when shipped runs were trained
    verdicts = {claim: api_verdict(v, source, measured) for claim, v in (report or {}).get("verdicts", {}).items()}
    return {**(report or {}), "source": source, "fresh": fresh, "measuring": board.measuring(), "verdicts": verdicts}


@router.post("/claims/recompute", summary="Measure every claim again from the models and the run store",
             response_class=HTMLResponse, responses=page_errors(413, 415, 422))
async def claims_recompute(request: Request, board: VerdictsDep, t: TranslatorDep):
    await run_in_threadpool(board.remeasure)
    return claims_page(request, board, t)


@router.post("/claims/measure-here", summary="Train every run the claims read on this server, in the background",
             response_class=HTMLResponse,
             responses={303: {"description": "Started: Location is the claims page"},
                        **page_errors(409, 413, 415, 422)})
def claims_measure_here(request: Request, board: VerdictsDep, sweeps: SweepsDep, t: TranslatorDep):
    """Until every run has finished, the claims keep reading the shipped results; the page shows progress."""
    if board.results.shipped is None:
        raise BadInput("results", "this server ships no results: its claims are measured from its own runs already",
                       409)
    board.results.measure_here(sweeps)
    if is_htmx(request):
        return claims_page(request, board, t)
    return Response(status_code=303, headers={"Location": "/claims"})
