"""The playground: one page whose blocks are also its HTMX partials, plus the Play stream."""

from __future__ import annotations

import asyncio
import random

from fastapi import APIRouter, Request
from jinja2_fragments import render_block
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.playground_view import playground_context, step_context
from app.state import PlaygroundState, parse_state
from app.templating import base_context, is_htmx, render, templates

router = APIRouter(tags=["playground"])


def _state(request: Request) -> PlaygroundState:
    settings = request.app.state.settings
    return parse_state(request.query_params, settings.max_input_chars, random.Random())


def _url(state: PlaygroundState, request: Request) -> str:
    lang = request.query_params.get("lang")
    return f"/playground?{state.query()}" + (f"&lang={lang}" if lang else "")


@router.get("/playground", summary="The playground page (or its results partial for HTMX)")
async def playground(request: Request):
    state = _state(request)
    context = await run_in_threadpool(playground_context, state, base_context(request)["t"])
    if is_htmx(request):
        blocks = ["results"] + (["input_field"] if request.query_params.get("random") else [])
        context["oob"] = True
        return render(request, "playground.html", context, block_names=blocks,
                      headers={"HX-Push-Url": _url(state, request)})
    return render(request, "playground.html", context)


@router.get("/playground/step", summary="The step view partial for one step")
async def playground_step(request: Request):
    state = _state(request)
    context = await run_in_threadpool(step_context, state, base_context(request)["t"])
    return render(request, "playground.html", context, block_names=["step_view"],
                  headers={"HX-Replace-Url": _url(state, request)})


@router.get("/playground/stream", summary="Play: the step views from `step` to the end, as server-sent events")
async def playground_stream(request: Request, interval_ms: int = 400):
    state = _state(request)
    settings = request.app.state.settings
    interval = max(interval_ms, settings.stream_min_interval_ms) / 1000
    t = base_context(request)["t"]
    first = await run_in_threadpool(step_context, state, t)
    total = len(first["steps"])

    async def events():
        for index in range(first["step_index"], total):
            if await request.is_disconnected():  # the learner left or pressed Pause
                return
            context = await run_in_threadpool(step_context, PlaygroundState(
                state.model, state.input, state.switches, index), t)
            html = render_block(templates.env, "playground.html", "step_view", base_context(request, **context))
            yield ServerSentEvent(data=html, event="step", id=str(index))
            await asyncio.sleep(interval)
        yield ServerSentEvent(data="end", event="done")

    return EventSourceResponse(events(), ping=15)
