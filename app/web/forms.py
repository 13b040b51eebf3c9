"""The POST routes take a small form of text fields, or no body at all; anything else is refused up front.

`FormRoute` is the route class of the routers with POST routes. Before FastAPI reads a request's body, it
refuses, with the app's error body:

- a body over `MAX_FORM_BYTES` (413), by its Content-Length or while it is read;
- a body that is not a form (JSON, text, no Content-Type: 415), so a JSON body can never pass for an empty
  form and start a run with every default;
- a form that cannot be parsed (a broken multipart body: 422);
- a file where the form has text fields (422, naming the field).

The parsed form stays on the request: FastAPI's form models and `request.form()` read it from there.
`refuse_unknown_fields` then lets a route refuse a field it does not have (a misspelt `step` would otherwise
train with the default number of steps).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException

from app.web.errors import BadInput, quoted

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_BYTES = 64 * 1024  # the lab's forms are a few hundred bytes
BODYLESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FIELD_NAME = re.compile(r"[a-z_]{1,40}")


class FormRoute(APIRoute):
    """A route whose body, if it has one, must be a form of text fields of at most MAX_FORM_BYTES."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def checked(request: Request) -> Response:
            if request.method in BODYLESS_METHODS:
                return await handler(request)
            return await handler(await read_form(request))

        return checked


async def read_form(request: Request) -> Request:
    """The request with its body read (at most MAX_FORM_BYTES) and parsed as a form of text fields."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    _refuse_declared_length(request)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise _too_large()
    if body and media_type not in FORM_TYPES:
        sent = quoted(media_type, 60) if media_type else "a body without a Content-Type"
        raise BadInput("body", f"is {sent}; this route takes a form ({' or '.join(FORM_TYPES)})", 415)
    request = Request(request.scope, _replay(bytes(body), request.receive))
    try:
        form = await request.form()
    except HTTPException as error:  # Starlette's word for a multipart body it cannot parse
        raise BadInput("body", f"is not a valid form: {error.detail}") from None
    _refuse_files(form)
    return request


def refuse_unknown_fields(form: FormData, known: Collection[str]) -> None:
    """422 naming the first field that `known` does not list (or saying that the body is no form at all, when
    a name is no field name: JSON sent as a form)."""
    unknown = next((name for name in form if name not in known), None)
    if unknown is None:
        return
    if not _FIELD_NAME.fullmatch(unknown):
        raise BadInput("body", f"is not a form of named fields ({quoted(unknown)} is no field name); "
                               f"this route takes a form with the fields {', '.join(sorted(known))}")
    raise BadInput(unknown, f"is not a field of this form; its fields: {', '.join(sorted(known))}")


def _refuse_declared_length(request: Request) -> None:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise _too_large()


def _too_large() -> BadInput:
    return BadInput("body", f"is larger than {MAX_FORM_BYTES // 1024} KB, the most a form here may be", 413)


def _refuse_files(form: FormData) -> None:
    for name, value in form.multi_items():
        if not isinstance(value, str):
            raise BadInput(name[:40] or "body", "is a file; this form takes text only")


def _replay(body: bytes, receive):
    """A receive() that gives the body already read once, then what the client sends next (a disconnect)."""
    sent = False

    async def replay():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
