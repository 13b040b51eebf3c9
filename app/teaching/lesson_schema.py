"""Lesson files (app/teaching/lessons/*.json): their schema, and a check that every preset in them is a
configuration the app can really run (a model that exists, switches with allowed values, a plan
the precompute command knows, a claim the app measures)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

LESSONS_DIR = Path(__file__).parent / "lessons"
FIGURES = ("gradient_norms", "residual_contributions", "stream_norms", "norm_overview",
           "attention_distance_by_layer", "logit_lens", "output_probabilities", "embedding_vs_position",
           "positional_heatmap", "position_similarity", "cross_attention", "self_attention")


class Text(BaseModel):
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)

    def __call__(self, lang: str) -> str:
        return self.zh if lang == "zh" else self.en


class Choice(BaseModel):
    id: str
    en: str = Field(min_length=1)
    zh: str = Field(min_length=1)


class Predict(BaseModel):
    question: Text
    choices: list[Choice] = Field(min_length=2, max_length=4)


class Widget(BaseModel):
    kind: Literal["compare", "trace", "sweep", "train", "measure", "playground"]
    model: str | None = None
    input: str | None = None
    ablate: dict[str, str] | None = None
    switches: dict[str, str] | None = None
    figure: str | None = None
    plan: str | None = None
    form: dict[str, str | int | float] | None = None
    ab: str | None = None
    claim: str | None = None
    params: dict[str, str] | None = None

    @field_validator("figure")
    @classmethod
    def known_figure(cls, value: str | None) -> str | None:
        if value is not None and value not in FIGURES:
            raise ValueError(f"figure {value!r} is not one of {', '.join(FIGURES)}")
        return value

    @model_validator(mode="after")
    def needs_its_fields(self) -> Widget:
        required = {"compare": ("model", "input", "ablate", "figure"), "trace": ("model", "input", "figure"),
                    "sweep": ("plan",), "train": ("form",), "measure": ("claim",), "playground": ("params",)}
        missing = [f for f in required[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} widget needs {', '.join(missing)}")
        return self

    def base_params(self) -> dict[str, str]:
        return {"model": self.model or "", "input": self.input or "", **(self.switches or {})}


class Step(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    title: Text
    text: Text
    quote: str | None = None
    claim: str | None = None
    predict: Predict | None = None
    widget: Widget | None = None
    explain: Text | None = None


class Lesson(BaseModel):
    slug: str = Field(pattern=r"^[a-z0-9-]+$")
    order: int
    title: Text
    summary: Text
    question: Text
    claims: list[str]
    steps: list[Step] = Field(min_length=1)

    @model_validator(mode="after")
    def consistent(self) -> Lesson:
        ids = [s.id for s in self.steps]
        if len(ids) != len(set(ids)):
            raise ValueError(f"lesson {self.slug}: step ids repeat")
        uncovered = set(self.claims) - {s.claim for s in self.steps}
        if uncovered:
            raise ValueError(f"lesson {self.slug}: no step tests {', '.join(sorted(uncovered))}")
        return self

    def step(self, step_id: str) -> Step | None:
        return next((s for s in self.steps if s.id == step_id), None)


@lru_cache
def load_lessons() -> tuple[Lesson, ...]:
    lessons = [Lesson.model_validate(json.loads(path.read_text(encoding="utf-8")))
               for path in sorted(LESSONS_DIR.glob("*.json"))]
    return tuple(sorted(lessons, key=lambda lesson: lesson.order))


def get_lesson(slug: str) -> Lesson | None:
    return next((lesson for lesson in load_lessons() if lesson.slug == slug), None)


def preset_problems(lesson: Lesson, settings) -> list[str]:
    """Every preset that the app could not run, as 'lesson/step: what is wrong' (empty when all run)."""
    from app.lab.form import parse_ab, parse_run_request
    from app.lab.precompute import PLANS
    from app.playground.state import parse_state
    from app.teaching.claims import CLAIMS
    from app.web.errors import BadInput

    problems = []
    for step in lesson.steps:
        where = f"{lesson.slug}/{step.id}"
        if step.claim is not None and step.claim not in CLAIMS:
            problems.append(f"{where}: unknown claim {step.claim!r}")
        widget = step.widget
        if widget is None:
            continue
        try:
            if widget.kind in ("compare", "trace"):
                parse_state(widget.base_params(), settings.max_input_chars)
                if widget.kind == "compare":
                    parse_state({**widget.base_params(), **widget.ablate}, settings.max_input_chars)
            elif widget.kind == "playground":
                parse_state(widget.params, settings.max_input_chars)
            elif widget.kind == "sweep" and widget.plan not in PLANS:
                problems.append(f"{where}: unknown plan {widget.plan!r}; known: {', '.join(PLANS)}")
            elif widget.kind == "train":
                form = {k: str(v) for k, v in widget.form.items()} | ({"ab": widget.ab} if widget.ab else {})
                parse_run_request(form, settings)
                parse_ab(form)
            elif widget.kind == "measure" and widget.claim not in CLAIMS:
                problems.append(f"{where}: unknown claim {widget.claim!r}")
        except BadInput as error:
            problems.append(f"{where}: {error}")
    return problems
