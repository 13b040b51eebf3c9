"""The playground: one page whose blocks are also its HTMX partials, plus the Play stream."""

from __future__ import annotations

import asyncio
import logging
import random
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse
from jinja2_fragments import render_block, render_blocks
from sse_starlette import EventSourceResponse, ServerSentEvent

from app.playground.compute import run_playground_work
from app.playground.samples import MAX_TEMPERATURE, samples
from app.playground.state import PlaygroundQuery, PlaygroundState, parse_state, query_params
from app.playground.view import LATER_PANELS, panel, playground_context, step_context, step_span
from app.web.dependencies import SettingsDep, TranslatorDep
from app.web.errors import page_errors
from app.web.i18n import Translator, asked_language
from app.web.templating import EventStream, event_stream, is_htmx, render, render_plot, templates

router = APIRouter(tags=["playground"])
MAX_INTERVAL_MS = 10_000  # Play's slowest speed; a longer pause is no animation


def _state(query: Annotated[PlaygroundQuery, Query()], settings: SettingsDep) -> PlaygroundState:
    """The learner's state, parsed once per request (a 4xx naming the parameter if it is bad). Without a step
    the page opens on the last one: the prediction, where an ablation shows first."""
    return parse_state(query_params(query), settings.max_input_chars, random.Random(), default_step=None)


StateDep = Annotated[PlaygroundState, Depends(_state)]


def _url(state: PlaygroundState, request: Request) -> str:
    """The canonical URL of a state, for HX-Push-Url: built from the parsed state and a known language only."""
    lang = asked_language(request)
    return f"/playground?{state.query()}" + (f"&lang={lang}" if lang else "")


@lru_cache(maxsize=256)
def _results_html(state: PlaygroundState, lang: str, fields: str) -> str:
    """The results partial, rendered once per state and language: a class flipping the same switch
    on the same example is served from here. The links beside the form always come along (they carry
    the state); `fields` says which form fields are replaced too: "" none, "input" the input (a random
    example), "all" input and switches (another model, which starts from its own defaults)."""
    t = Translator(lang)
    context = {"lang": lang, "t": t, "oob": True, "fields_oob": fields == "all", **playground_context(state, t)}
    blocks = ["results", "state_links"] + {"": [], "input": ["input_field"], "all": ["state_fields"]}[fields]
    return render_blocks(templates.env, "playground.html", blocks, context)


@lru_cache(maxsize=256)
def _step_html(state: PlaygroundState, lang: str) -> str:
    """The step view partial (also each event of the Play stream)."""
    t = Translator(lang)
    return render_block(templates.env, "playground.html", "step_view", {"lang": lang, "t": t, **step_context(state, t)})


def _page_context(state: PlaygroundState, lang: str) -> dict:
    return playground_context(state, Translator(lang))


def _panel_html(state: PlaygroundState, lang: str, name: str) -> str:
    return "".join(render_plot(figure) for figure in panel(state, name, lang))


def _work(request: Request, state: PlaygroundState, fn, *args, memo: bool = False):
    """fn(state, *args) where the app runs model work; a state's work always lands where its input was traced."""
    return run_playground_work(request, f"{state.model}\n{state.input}", fn, state, *args, memo=memo)


def warm_up() -> None:
    """A model worker's first work, before the server says it is up: every zoo model loaded and drawn once in each
    language, so a hall that clicks at once waits for no model load or template compile."""
    from app.playground.registry import zoo_models

    for entry in zoo_models():
        try:
            state = parse_state({"model": entry.name, "residual": "off"}, 10_000)  # ablated: every part is drawn
            for lang in ("en", "zh"):
                _results_html(state, lang, "")  # the whole page's context is the same work
        except Exception:  # this model's page fails on its own requests, with its error; the others warm up
            logging.getLogger(__name__).exception("warming up %s failed", entry.name)
    _results_html.cache_clear()  # its first pages were a warm-up, not a learner's


def _fields_to_replace(request: Request) -> str:
    """A request that names no input comes from the model select: the form starts over from the model's defaults."""
    if request.query_params.get("random"):
        return "input"
    return "" if "input" in request.query_params else "all"


# A missing model (404), an input too long (413) or any other bad parameter (422): each says which.
ERRORS = page_errors(404, 413, 422)


@router.get("/playground", summary="The playground page (or its results partial for HTMX)",
            response_class=HTMLResponse, responses=ERRORS)
async def playground(request: Request, state: StateDep, t: TranslatorDep):
    if is_htmx(request):
        html = await _work(request, state, _results_html, t.lang, _fields_to_replace(request), memo=True)
        return HTMLResponse(html, headers={"HX-Push-Url": _url(state, request)})
    return render(request, "playground.html", await _work(request, state, _page_context, t.lang))


@router.get("/playground/step", summary="The step view partial for one step", response_class=HTMLResponse,
            responses=ERRORS)
async def playground_step(request: Request, state: StateDep, t: TranslatorDep):
    html = await _work(request, state, _step_html, t.lang, memo=True)
    return HTMLResponse(html, headers={"HX-Replace-Url": _url(state, request)})


def _samples_html(state: PlaygroundState, lang: str, temperature: float) -> str:
    t = Translator(lang)
    return templates.env.get_template("partials/samples.html").render(
        t=t, samples=samples(state, temperature), temperature=temperature, line=state.input)


@router.get("/playground/samples", summary="A GPT on a text: continuations of the line drawn with a temperature",
            response_class=HTMLResponse, responses=ERRORS)
async def playground_samples(request: Request, state: StateDep, t: TranslatorDep,
                             temperature: Annotated[float, Query(ge=0, le=MAX_TEMPERATURE, description=(
                                 "softmax(logits / temperature): 0 is greedy, 1 the model's own odds, higher "
                                 "flatter"))] = 0.8):
    """Each sample from its own seed: the same state and temperature give the same samples."""
    return HTMLResponse(await _work(request, state, _samples_html, t.lang, temperature, memo=True))


PanelName = Literal[LATER_PANELS]


@router.get("/playground/panel/{name}", summary="One tab's figures under the step view, drawn when the tab opens",
            response_class=HTMLResponse, responses=ERRORS)
async def playground_panel(request: Request, name: PanelName, state: StateDep, t: TranslatorDep):
    """`gradients` runs a backward pass for the expected answer; `compare` is empty unless the state is ablated."""
    return HTMLResponse(await _work(request, state, _panel_html, t.lang, name, memo=True))


@router.get("/playground/stream", summary="Play: the step views from `step` to the end, as server-sent events",
            response_class=EventStream,
            responses={**event_stream("`step` events (the step view's HTML), then `done`", ("step", "done")), **ERRORS})
async def playground_stream(request: Request, state: StateDep, settings: SettingsDep, t: TranslatorDep,
                            interval_ms: Annotated[int, Query(ge=0, le=MAX_INTERVAL_MS, description=(
                                "milliseconds between steps (the server's fastest speed is its floor)"))] = 400):
    interval = max(interval_ms, settings.stream_min_interval_ms) / 1000
    first = await _work(request, state, step_span)

    async def events():
        for index in range(*first):
            if await request.is_disconnected():  # the learner left or pressed Pause
                return
            step_state = PlaygroundState(state.model, state.input, state.switches, index)
            html = await _work(request, step_state, _step_html, t.lang)
            yield ServerSentEvent(data=html, event="step", id=str(index))
            await asyncio.sleep(interval)
        yield ServerSentEvent(data="end", event="done")

    return EventSourceResponse(events(), ping=15)
