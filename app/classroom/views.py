"""What the teacher's screen and a student's phone show, read from the class store in one worker-thread call each
(the routes render the templates). Both carry the class's `stage`, the same key the live streams send (live.py),
so a page asks for a new view only when the class has moved on."""

from __future__ import annotations

from app.classroom.codes import shown_code
from app.classroom.experiment import marked_choice, result_view
from app.classroom.figures import LETTERS, answer_distribution
from app.classroom.sessions import current_step
from app.classroom.store import ClassStore, Snapshot, Student
from app.teaching.lesson_schema import Lesson, Step
from app.web.i18n import Translator

ROSTER_SHOWN = 60  # names on the teacher's screen; the count says how many more


def stage_of(snap: Snapshot, now: float) -> str:
    """Where the class is: the step, how far it got (open, revealed, ran) and whether the class ended."""
    phase = "ran" if snap.ran else "revealed" if snap.revealed else "open"
    ended = "closed" if snap.closed else "expired" if now >= snap.expires_at else ""
    return f"{snap.step_index}:{phase}:{ended}"


def display_name(student: Student, t: Translator) -> str:
    return student.nickname or t("class.anonymous", n=student.number)


def _choices(step: Step, lang: str, counts: dict[str, int] | None, measured: str | None,
             mine: str | None = None) -> list[dict]:
    total = sum(counts.values()) if counts else 0
    return [{"id": c.id, "letter": LETTERS[i], "text": c.zh if lang == "zh" else c.en, "mine": c.id == mine,
             "measured": c.id == measured, "count": counts.get(c.id, 0) if counts is not None else None,
             "share": round(100 * counts.get(c.id, 0) / total) if total else 0}
            for i, c in enumerate(step.predict.choices)] if step.predict else []


def _lettered(view: dict, choices: list[dict]) -> dict:
    """The result with the letter of the choice it is, as the choices are lettered on the screens."""
    view["letter"] = next((c["letter"] for c in choices if c["id"] == view["choice"]), "")
    return view


def _common(store: ClassStore, class_id: int, lesson: Lesson) -> dict:
    # Called inside store.reading(): the step shown and the stage it is stamped with come from one state of the
    # class, and the step is the snapshot's own, so a page never shows one step under another step's stage.
    snap = store.snapshot(class_id)
    row = store.get_class(class_id)
    index, step = current_step(lesson, snap)
    state = store.step_state(class_id, step.id)
    now = store.clock()
    context = {"cls": row, "code": row.code, "shown_code": shown_code(row.code), "lesson": lesson, "step": step,
               "index": index, "total": len(lesson.steps), "stage": stage_of(snap, now), "ended": row.ended(now),
               "joined": snap.joined, "answered": snap.answered, "revealed": state.revealed_at is not None,
               "ran": state.ran_at is not None, "result": state.result, "expires_at": row.expires_at,
               "joins_locked": row.joins_locked}
    return context


def teacher_view(store: ClassStore, class_id: int, lesson: Lesson, t: Translator) -> dict:
    with store.reading():
        return _teacher_view(store, class_id, lesson, t)


def _teacher_view(store: ClassStore, class_id: int, lesson: Lesson, t: Translator) -> dict:
    context = _common(store, class_id, lesson)
    step, result = context["step"], context["result"]
    counts = store.counts(class_id, step.id) if context["revealed"] and step.predict else None
    measured = marked_choice(result)
    context["choices"] = _choices(step, t.lang, counts, measured)
    context["figure"] = answer_distribution(step, counts, t, measured) if counts is not None else None
    context["result"] = _lettered(result_view(step, result, t), context["choices"]) if result else None
    return context


def roster(store: ClassStore, class_id: int, t: Translator) -> dict:
    """The names of who joined, newest first (a projector shows the first ROSTER_SHOWN)."""
    students = store.students(class_id)
    names = [display_name(s, t) for s in reversed(students)]
    return {"names": names[:ROSTER_SHOWN], "more": max(0, len(names) - ROSTER_SHOWN), "joined": len(names)}


def student_view(store: ClassStore, class_id: int, lesson: Lesson, student: Student, t: Translator) -> dict:
    with store.reading():
        return _student_view(store, class_id, lesson, student, t)


def _student_view(store: ClassStore, class_id: int, lesson: Lesson, student: Student, t: Translator) -> dict:
    context = _common(store, class_id, lesson)
    step, result = context["step"], context["result"]
    mine = store.answer_of(student.id, step.id) if step.predict else None
    if mine is not None and step.choice(mine) is None:  # the lesson was edited since: no answer it still has
        mine = None
    counts = store.counts(class_id, step.id) if context["revealed"] and step.predict else None
    context.update(student=student, name=display_name(student, t), answer=mine,
                   choices=_choices(step, t.lang, counts, marked_choice(result), mine),
                   result=None)
    if result:
        context["result"] = _lettered(result_view(step, result, t, mine), context["choices"])
    return context
