"""The students' side of a class, from a phone: join with the code (or the QR code's link), answer the current
step's question, follow the class live.

A student is whoever holds the random token the server gave them on joining, in an HttpOnly, SameSite cookie
of that class (sent to /join pages only); the store keeps its digest. The nickname is for display only: an answer
always goes to the token's student, so nobody can answer for anyone else."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse

from app.classroom.codes import NICKNAME_MAX_CHARS, BadNickname, clean_nickname, digest, new_secret
from app.classroom.live import student_events
from app.classroom.sessions import (
    ClassError,
    ClassStoreDep,
    client_address,
    find_class,
    in_thread,
    lesson_of,
    require_choice,
    student_cookie,
    student_of,
)
from app.classroom.store import ClassRow, Student
from app.classroom.views import student_view
from app.web.dependencies import SettingsDep, TranslatorDep
from app.web.errors import BadInput, page_errors
from app.web.forms import FormRoute, refuse_unknown_fields
from app.web.i18n import asked_language
from app.web.templating import EventStream, event_stream, is_htmx, render

router = APIRouter(tags=["classroom"], route_class=FormRoute)
VIEW_ERRORS = page_errors(403, 404, 410, 422, 429, 503)


class JoinForm(BaseModel):
    code: str = Field(max_length=40, description="the class's join code, as the teacher's screen shows it")
    nickname: str = Field("", max_length=200, description=f"shown to the teacher; at most {NICKNAME_MAX_CHARS} "
                                                           "characters; empty: anonymous")


class AnswerForm(BaseModel):
    step: str = Field(max_length=100, description="the id of the step the question belongs to")
    choice: str = Field(max_length=100, description="the id of the chosen answer")


def _student_url(code: str, request: Request) -> str:
    lang = asked_language(request)  # a known language only: nothing else of the request reaches the header
    return f"/join/{code}" + (f"?{urlencode({'lang': lang})}" if lang else "")


@router.get("/join", summary="Join a class: the form for its code", response_class=HTMLResponse,
            responses=page_errors(422))
def join_page(request: Request, code: Annotated[str, Query(max_length=40)] = ""):
    return render(request, "join.html", {"code": code, "cls": None})


@router.post("/join", summary="Join a class (no account: a cookie says who you are in this class)",
             responses={303: {"description": "Joined: Location is the class's page for students"},
                        **page_errors(404, 409, 410, 413, 415, 422, 429, 503)})
async def join(request: Request, form: Annotated[JoinForm, Form()], store: ClassStoreDep, settings: SettingsDep):
    refuse_unknown_fields(await request.form(), JoinForm.model_fields)
    row = await find_class(request, store, form.code)
    try:
        nickname = clean_nickname(form.nickname)
    except BadNickname as error:
        raise ClassError("nickname", error.key, 422, **error.values) from None
    response = Response(status_code=303, headers={"Location": _student_url(row.code, request)})
    if await in_thread(student_of, request, store, row) is None:  # joined before: the same student again
        token = new_secret()
        await in_thread(store.join, row.id, digest(token), nickname, settings.class_max_students,
                        client_address(request), settings.class_joins_per_minute)
        response.set_cookie(student_cookie(row.code), token, max_age=max(60, int(row.expires_at - store.clock())),
                            path="/join", httponly=True, samesite="lax")
    return response


async def _joined(request: Request, store, code: str) -> tuple[ClassRow, Student]:
    row = await find_class(request, store, code)
    student = await in_thread(student_of, request, store, row)
    if student is None:
        raise ClassError("student", "class.err.not_joined", 403, code=row.code)
    return row, student


async def _student_context(store, row: ClassRow, student: Student, t) -> dict:
    context = await in_thread(student_view, store, row.id, lesson_of(row), student, t)
    context["view_url"] = f"/join/{row.code}/view"
    return context


@router.get("/join/{code}", summary="A class on a student's phone (the join form until this browser has joined)",
            response_class=HTMLResponse, responses={303: {"description": "The code written another way: Location is "
                                                                         "the class's own address"},
                                                    **page_errors(403, 404, 409, 410, 422, 429, 503)})
async def student_page(request: Request, code: str, store: ClassStoreDep, t: TranslatorDep):
    row = await find_class(request, store, code)
    if code != row.code:  # k7m2-qx9p: one address per class, the one the QR code and the links use
        return Response(status_code=303, headers={"Location": _student_url(row.code, request)})
    student = await in_thread(student_of, request, store, row)
    if student is None:
        ended = row.ended(store.clock())
        if ended:
            raise ClassError("code", f"class.err.{ended}", 410)
        if row.joins_locked:
            raise ClassError("code", "class.err.joins_locked", 409)
        return render(request, "join.html", {"code": row.code, "cls": row, "lesson": lesson_of(row)})
    return render(request, "class_student.html", await _student_context(store, row, student, t))


@router.get("/join/{code}/view", summary="The student's view of the current step (an HTMX partial)",
            response_class=HTMLResponse, responses=VIEW_ERRORS)
async def student_partial(request: Request, code: str, store: ClassStoreDep, t: TranslatorDep):
    row, student = await _joined(request, store, code)
    return render(request, "class_student.html", await _student_context(store, row, student, t),
                  block_names=["student_view"])


@router.get("/join/{code}/events", summary="When the class moves on, as server-sent events", response_class=EventStream,
            responses={**event_stream("`stage` (the stage key) when the class moves to another step, reveals, runs "
                                      "or ends; the page then asks for its view", ("stage",)),
                       204: {"description": "The class has ended (closed or expired): nothing more to follow"},
                       **VIEW_ERRORS})
async def student_stream(request: Request, code: str, store: ClassStoreDep):
    row, _ = await _joined(request, store, code)
    if row.ended(store.clock()):  # nothing more will happen: 204 stops the browser reconnecting
        return Response(status_code=204)
    return EventSourceResponse(student_events(request.app.state.class_hub, row.id), ping=15)


@router.post("/join/{code}/answer", summary="Answer the current step's question (or change the answer) until the "
                                            "teacher reveals the answers", response_class=HTMLResponse,
             responses={303: {"description": "Answered: Location is the class's page for students"},
                        **page_errors(403, 404, 409, 410, 413, 415, 422, 429, 503)})
async def answer(request: Request, code: str, form: Annotated[AnswerForm, Form()], store: ClassStoreDep,
                 t: TranslatorDep):
    refuse_unknown_fields(await request.form(), AnswerForm.model_fields)
    row, student = await _joined(request, store, code)
    lesson = lesson_of(row)
    step = lesson.step(form.step)
    if step is None:
        raise BadInput("step", f"lesson {lesson.slug!r} has no step {form.step[:40]!r}")
    require_choice(step, form.choice)
    notice, status = None, 200
    try:
        await in_thread(store.answer, row.id, student.id, step.id, form.choice)
    except ClassError as refused:  # too late (revealed, moved on, ended): show where the class is now, and why
        if refused.status not in (409, 410):
            raise
        notice = {"field": refused.field, "message": t(refused.key, **refused.values)}
        status = refused.status
    if status == 200 and not is_htmx(request):
        return Response(status_code=303, headers={"Location": _student_url(row.code, request)})
    context = {**await _student_context(store, row, student, t), "notice": notice}
    if is_htmx(request):
        return render(request, "class_student.html", context, block_names=["student_view"], status_code=status)
    return render(request, "class_student.html", context, status_code=status)
