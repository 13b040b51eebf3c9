"""Run-store problems as answers, never a 500: a run that cannot be read, a store that cannot be written (training
is off), or SQLite failing underneath. 503 with the app's error shape under /api, the error page elsewhere;
and `store_status`, what the pages that need the store say about it."""

from __future__ import annotations

import logging
import sqlite3

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from app.lab.store import RunUnreadable, StoreNotWritable
from app.web.errors import BadInput
from app.web.templating import render_error, templates

log = logging.getLogger(__name__)
UNAVAILABLE = 503


def install_store_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RunUnreadable, _run_unreadable)
    app.add_exception_handler(StoreNotWritable, _not_writable)
    app.add_exception_handler(sqlite3.DatabaseError, _store_failed)


def _answer(request: Request, field: str, message: str):
    if request.url.path.startswith("/api"):
        return JSONResponse({"detail": [{"field": field, "message": message}]}, UNAVAILABLE)
    return render_error(request, BadInput(field, message, UNAVAILABLE))


async def _run_unreadable(request: Request, error: RunUnreadable):
    log.warning("%s %s: %s", request.method, request.url.path, error)
    return _answer(request, "run", str(error))


async def _not_writable(request: Request, error: StoreNotWritable):
    return _answer(request, "store", str(error))


async def _store_failed(request: Request, error: sqlite3.DatabaseError):
    store = getattr(request.app.state, "store", None)
    where = f" {store.path}" if store is not None else ""
    log.error("%s %s: the run store%s failed: %s", request.method, request.url.path, where, error)
    return _answer(request, "store", f"the run store{where} could not be read or written "
                                     f"({type(error).__name__}: {error})")


def store_status(request: Request, notice: bool = False) -> dict:
    """{"problem": why training is off (None: it is on), "notice": what was done to a damaged store at start}.
    notice=True takes the notice, so it is shown once (the training lab)."""
    state = request.app.state
    store = getattr(state, "store", None)
    said = None
    if notice:
        said, state.store_notice = getattr(state, "store_notice", None), None
    return {"problem": store.read_only if store is not None else None, "notice": said}


templates.env.globals["store_status"] = store_status
