"""Bad input becomes a clear 4xx: JSON under /api, an inline message on pages.

Every refusal has one shape, `ErrorBody` (`{"detail": [{"field": ..., "message": ...}]}`), whether the app
refused the value itself (`BadInput`), FastAPI's validation did (a path id out of range, a query number that
is no number) or Starlette did (an unknown path, a method a route does not take). A message quotes at most a
short prefix of the value it refuses (`quoted`), so a 100 KB value is never sent back. `api_errors` and
`page_errors` declare the statuses a route can answer with in the OpenAPI document, as JSON or as an HTML page.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from model.config import quoted

__all__ = ["BadInput", "ErrorBody", "ErrorItem", "api_errors", "install_error_handlers", "page_errors", "quoted"]

MAX_MESSAGE_CHARS = 400  # a message longer than this (a quoted list of choices at most) is cut


class BadInput(ValueError):
    """A request parameter is invalid; rendered as a 4xx naming the parameter."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status

    def __reduce__(self):  # raised in a model worker process, it crosses back to the web process whole
        return BadInput, (self.field, self.message, self.status)


class ErrorItem(BaseModel):
    field: str = Field(description="the parameter, form field or part of the request that was refused")
    message: str = Field(description="what was wrong with it and what is allowed; a refused value is quoted "
                                     "at most 40 characters long")


class ErrorBody(BaseModel):
    """The body of every refused request under /api (pages show the same field and message inline)."""

    detail: list[ErrorItem]


# What each refusal means, for the OpenAPI document.
STATUS_MEANINGS = {
    400: "The Host header is not one this server answers to (ADDNORM_ALLOWED_HOSTS)",
    403: "A page of another site may not start, stop or change anything here",
    404: "There is no such run, sweep, model, lesson or class (the message names it)",
    409: "The request does not apply to this server's state",
    410: "The class has ended (its teacher closed it, or it expired): it takes no more joins or answers",
    413: "Too large: the body (at most 64 KB), the input, or the run for the run store",
    415: "The body is not a form (application/x-www-form-urlencoded or multipart/form-data)",
    422: "A parameter or form field has a value it does not allow (the message names it and what it allows)",
    429: "Too many: the training queue is full (for everyone or for this learner), or this address tried too many "
         "wrong join codes (Retry-After says when to try again)",
    503: "A store cannot be used (training is off, this run cannot be read, class sessions are off), or a model "
         "worker stopped and was restarted (the message says which)",
    507: "The run store could not be written; nothing was started",
}
# Paths whose answers read the run store (a run may be unreadable, training may be off): they can answer 503.
STORE_PATHS = ("/train", "/api/runs", "/playground", "/api/trace", "/api/example", "/claims/")


def declare_refusals(app: FastAPI) -> None:
    """Add to the OpenAPI document what the middleware and the store handlers answer on every route: 400 for a
    Host not allowed, 403 for a state-changing request from another site (app/web/security.py), 503 where the
    run store is read (app/lab/store_errors.py)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            for path, operations in schema.get("paths", {}).items():
                for method, operation in operations.items():
                    api = path.startswith("/api")
                    statuses = [400] + ([403] if method != "get" else []) + \
                        ([503] if path.startswith(STORE_PATHS) else [])
                    for status, response in (api_errors if api else page_errors)(*statuses).items():
                        if "model" in response:  # as FastAPI renders a response model
                            response = {"description": response["description"], "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
                        operation.setdefault("responses", {}).setdefault(str(status), response)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi


def _meaning(status: int) -> str:
    return STATUS_MEANINGS.get(status) or HTTPStatus(status).phrase


def api_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a JSON route: each status with the error body."""
    return {status: {"model": ErrorBody, "description": _meaning(status)} for status in statuses}


def page_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of an HTML route: each status with an HTML page (or partial) naming the field."""
    return {status: {"description": _meaning(status) + "; an HTML error message naming the field",
                     "content": {"text/html": {"schema": {"type": "string"}}}} for status in statuses}


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api")


def _item(field: str, message: str) -> dict[str, str]:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    return {"field": field[:80], "message": message}


def _respond(request: Request, items: list[dict[str, str]], status: int, headers: dict | None = None):
    if _wants_json(request):
        return JSONResponse({"detail": items}, status, headers=headers)
    from app.web.templating import render_error

    first = items[0]
    return render_error(request, BadInput(first["field"], first["message"], status))


def _validation_item(error: dict) -> dict[str, str]:
    """One of FastAPI's validation errors in the app's words: the parameter, pydantic's message and what was
    sent (quoted short)."""
    loc = [str(part) for part in error.get("loc", ())]
    field = ".".join(loc[1:]) or (loc[0] if loc else "request")
    message = error.get("msg", "is not valid")
    sent = error.get("input")
    if isinstance(sent, (str, int, float)) and not isinstance(sent, bool):
        message += f" (got {quoted(sent)})"
    return _item(field, message)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(BadInput)
    async def bad_input(request: Request, error: BadInput):
        return _respond(request, [_item(error.field, error.message)], error.status)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        items = [_validation_item(e) for e in error.errors()] or [_item("request", "is not valid")]
        return _respond(request, items, 422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        """Starlette's own refusals (no such path, a method the route does not take) in the same shape."""
        message = error.detail if isinstance(error.detail, str) else HTTPStatus(error.status_code).phrase
        if error.status_code == 404:
            message = f"there is no page {quoted(request.url.path)}"
        elif error.status_code == 405:
            allowed = (error.headers or {}).get("Allow")
            message = f"{quoted(request.method)[1:-1]} is not allowed here" + (f"; use {allowed}" if allowed else "")
        return _respond(request, [_item("request", message)], error.status_code, error.headers)
