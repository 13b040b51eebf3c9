"""The class rules as the web sees them: the store reached from a worker thread, a class found by its code
(with wrong codes counted per address), the teacher's secret, the student's cookie, and every refusal in the
words of the label catalogue (class.err.*), in the language of the device that was refused."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated, TypeVar

from anyio.to_thread import run_sync
from fastapi import Depends, FastAPI, Request

from app.classroom.codes import digest, normal_code, secret_matches
from app.classroom.store import ClassRow, ClassStore, Refused, Snapshot, Student
from app.teaching.lesson_schema import Lesson, Step, get_lesson
from app.web.errors import BadInput, quoted
from app.web.i18n import Translator, pick_language
from app.web.templating import render_error

T = TypeVar("T")
JOIN_WINDOW_S = 60.0

# What each of the store's refusals means: the field it names, the status, the catalogue's words.
REFUSALS = {
    "closed": ("code", 410, "class.err.closed"),
    "expired": ("code", 410, "class.err.expired"),
    "full": ("code", 409, "class.err.full"),
    "too_many_open": ("lesson", 409, "class.err.too_many_open"),
    "moved_on": ("step", 409, "class.err.moved_on"),
    "locked": ("choice", 409, "class.err.locked"),
    "not_revealed": ("step", 409, "class.err.not_revealed"),
    "joins_locked": ("code", 409, "class.err.joins_locked"),
    "too_many_starts": ("lesson", 429, "class.err.too_many_starts"),
    "too_many_joins": ("code", 429, "class.err.too_many_joins"),
}


class ClassError(Exception):
    """A refused class request: `field`, `status`, the catalogue `key` of its message (with `values`), headers."""

    def __init__(self, field: str, key: str, status: int, headers: dict | None = None, **values):
        super().__init__(f"{field}: {key}")
        self.field, self.key, self.status, self.headers, self.values = field, key, status, headers, values

    @classmethod
    def from_refusal(cls, refused: Refused) -> ClassError:
        field, status, key = REFUSALS[refused.reason]
        wait = refused.values.get("seconds") if status == 429 else None
        return cls(field, key, status, {"Retry-After": str(wait)} if wait is not None else None, **refused.values)


def install_class_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ClassError)
    async def class_error(request: Request, error: ClassError):
        message = Translator(pick_language(request))(error.key, **error.values)
        response = render_error(request, BadInput(error.field, message, error.status))
        response.headers.update(error.headers or {})
        return response


async def in_thread(fn: Callable[..., T], *args) -> T:
    """A store call off the event loop: SQLite may wait for another process's write lock, and a hundred answers
    at once must not stall the live streams. Its refusals and failures become ClassErrors."""
    try:
        return await run_sync(fn, *args)
    except Refused as refused:
        raise ClassError.from_refusal(refused) from None
    except sqlite3.Error as error:
        raise ClassError("store", "class.err.store", 503, why=f"{type(error).__name__}: {error}") from None


def _class_store(request: Request) -> ClassStore:
    store = getattr(request.app.state, "classes", None)
    if store is None:
        raise ClassError("store", "class.err.store", 503, why=getattr(request.app.state, "classes_problem", ""))
    return store


ClassStoreDep = Annotated[ClassStore, Depends(_class_store)]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _locate(store: ClassStore, code: str | None, key: str | None, token: str | None, address: str, limit: int):
    """(the class, None) straight away for a request that holds the teacher's key or a student's token of the
    class it names: it is never counted nor held back by others' wrong codes on its address (a lecture hall
    behind one router, everyone behind a reverse proxy). Any other request is a lookup that counts."""
    row = store.by_code(code)
    if row is not None and (secret_matches(key, row.teacher_digest)
                            or (token and store.student(row.id, digest(token)) is not None)):
        return row, None
    return store.lookup(code, address, limit, JOIN_WINDOW_S)


async def find_class(request: Request, store: ClassStore, code: str, key: str | None = None) -> ClassRow:
    """The class with this code; 404 for an unknown one, 429 (with Retry-After) once this address has tried too
    many unknown codes in a minute. Every lookup by code goes through here, so no route answers a guess faster.
    The teacher's `key` or the class's student cookie lets a request through whatever its address did."""
    limit = request.app.state.settings.class_join_failures_per_minute
    normal = normal_code(code)
    token = request.cookies.get(student_cookie(normal)) if normal else None
    row, wait = await in_thread(_locate, store, normal, key, token, client_address(request), limit)
    if wait is not None:
        raise ClassError("code", "class.err.too_many_tries", 429, {"Retry-After": str(int(wait))}, seconds=int(wait))
    if row is None:
        raise ClassError("code", "class.err.unknown_code", 404, code=quoted(code, 20))
    return row


def require_teacher(row: ClassRow, key: str | None) -> None:
    if not secret_matches(key, row.teacher_digest):
        raise ClassError("key", "class.err.not_teacher", 403)


def lesson_of(row: ClassRow) -> Lesson:
    lesson = get_lesson(row.lesson)
    if lesson is None:  # the lesson files changed since the class started
        raise ClassError("lesson", "class.err.lesson_gone", 410, lesson=row.lesson)
    return lesson


def current_step(lesson: Lesson, row: ClassRow | Snapshot) -> tuple[int, Step]:
    """The class's step (of its row or of a snapshot): by its id (a lesson edited meanwhile keeps the class on
    it), else by its index."""
    for index, step in enumerate(lesson.steps):
        if step.id == row.step_id:
            return index, step
    index = min(row.step_index, len(lesson.steps) - 1)
    return index, lesson.steps[index]


def student_cookie(code: str) -> str:
    """The cookie of a class's student token: one per class, sent with every /join request (the join form's
    too, so a phone that joined before is the same student when it joins again)."""
    return f"class_{code}"


def student_of(request: Request, store: ClassStore, row: ClassRow) -> Student | None:
    token = request.cookies.get(student_cookie(row.code))
    return store.student(row.id, digest(token)) if token else None


def require_choice(step: Step, choice: str) -> None:
    if step.predict is None:
        raise ClassError("step", "class.err.no_prediction", 409, step=step.id)
    if step.choice(choice) is None:
        raise BadInput("choice", f"{quoted(choice)} is not a choice of step {step.id!r}; choices: "
                                 f"{', '.join(c.id for c in step.predict.choices)}")
