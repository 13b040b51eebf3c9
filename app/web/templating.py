"""Jinja2 with jinja2-fragments: a page's blocks double as HTMX partials."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from fastapi import Request, Response
from jinja2_fragments.fastapi import Jinja2Blocks

from app.web.i18n import Translator, asked_language, pick_language

ROOT = Path(__file__).resolve().parents[2]
templates = Jinja2Blocks(directory=ROOT / "templates")
MAX_KEPT_VALUE = 300  # longer than any value a page accepts (inputs are at most ADDNORM_MAX_INPUT_CHARS)


def query_with(params, **changes) -> str:
    """The page's query with some values changed (the language links); a value longer than any page accepts is
    no part of its state and is not copied into the links."""
    kept = {k: v for k, v in dict(params).items() if len(k) + len(v) <= MAX_KEPT_VALUE}
    return urlencode({k: v for k, v in {**kept, **changes}.items() if v is not None})  # None: left out


templates.env.filters["query_with"] = query_with

NAV = [("/", "nav.home"), ("/playground", "nav.playground"), ("/train", "nav.train"), ("/lessons", "nav.lessons"),
       ("/claims", "nav.claims"), ("/docs", "nav.api")]


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


def base_context(request: Request, **extra) -> dict:
    lang = pick_language(request)
    return {"request": request, "lang": lang, "t": Translator(lang), "nav": NAV, "path": request.url.path,
            **extra}


def render(request: Request, template: str, context: dict, block_names: list[str] | None = None,
           status_code: int = 200, headers: dict | None = None):
    response = templates.TemplateResponse(request, template, base_context(request, **context),
                                          block_names=block_names or [], status_code=status_code, headers=headers)
    if asked_language(request):  # remember an explicit choice on every page (only a known language)
        response.set_cookie("lang", pick_language(request), max_age=365 * 24 * 3600, samesite="lax")
    return response


def render_plot(figure: dict, cls: str = "") -> str:
    """One figure as partials/plot.html's macro draws it (for a partial that is just a figure)."""
    return str(templates.env.get_template("partials/plot.html").module.plot(figure, cls))


def render_error(request: Request, error) -> object:
    context = {"error": error}
    if is_htmx(request):
        return render(request, "error.html", context, block_names=["error"], status_code=error.status)
    return render(request, "error.html", context, status_code=error.status)


class EventStream(Response):
    """Server-sent events, for the OpenAPI document of a route that returns an EventSourceResponse."""

    media_type = "text/event-stream"


def event_stream(description: str, events: tuple[str, ...]) -> dict:
    """OpenAPI `responses` entry of an event stream: the schema of each event it sends."""
    event = {"type": "object", "description": "one server-sent event", "required": ["data"],
             "properties": {"event": {"type": "string", "enum": list(events)}, "data": {"type": "string"},
                            "id": {"type": "string"}, "retry": {"type": "integer"}}}
    return {200: {"description": description, "content": {EventStream.media_type: {"schema": event}}}}
