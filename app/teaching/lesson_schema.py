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


Interval = tuple[float | None, float | None]  # [low, high): None is unbounded
Box = dict[str, Interval]  # every named number in its interval


class Resolve(BaseModel):
    """How the measurement decides a predict step: which choice the step's claim's measured numbers are.

    Three shapes (see app/teaching/lessons/README.md):
      {"number": "k", "choices": {"a": [null, 0.1], "b": [[0.1, 0.5], [2, null]]}}   one number, in intervals
      {"choices": {"a": {"k1": [0.5, null], "k2 / k3": [null, 1.2]}, "b": [{…}, {…}]}}  several numbers, in boxes
      {"figure": true}                                  no measured number decides it: the learner reads the figure
    A number is a key of the claim's `Verdict.numbers`, or "k1 / k2" (their ratio). A choice may be left out
    when no measurement could single it out. Choices never overlap."""

    number: str | None = None
    choices: dict[str, Interval | list[Interval] | Box | list[Box]] | None = None
    figure: bool = False

    @model_validator(mode="after")
    def well_formed(self) -> Resolve:
        if self.figure:
            if self.number is not None or self.choices is not None:
                raise ValueError('a "figure" rule has no number and no choices')
            return self
        if not self.choices:
            raise ValueError('a rule needs "choices" (or "figure": true)')
        boxes = self.boxes()
        for cid, alternatives in boxes.items():
            for box in alternatives:
                if not box:
                    raise ValueError(f"choice {cid!r}: a box needs at least one number")
                for key, (low, high) in box.items():
                    if not key.strip() or key.count("/") > 1:
                        raise ValueError(f"choice {cid!r}: {key!r} is not a number key or 'key / key'")
                    if low is not None and high is not None and not low < high:
                        raise ValueError(f"choice {cid!r}: the interval [{low}, {high}) of {key} is empty")
        ids = list(boxes)
        for i, first in enumerate(ids):
            for second in ids[i + 1:]:
                for box_a in boxes[first]:
                    for box_b in boxes[second]:
                        if not _disjoint(box_a, box_b):
                            raise ValueError(f"choices {first!r} and {second!r} overlap")
        return self

    def boxes(self) -> dict[str, list[Box]]:
        """Every choice as a list of boxes (the choice is the measurement when any of its boxes holds it)."""
        out: dict[str, list[Box]] = {}
        for cid, rule in (self.choices or {}).items():
            if self.number is not None:
                if isinstance(rule, dict):
                    raise ValueError(f"choice {cid!r}: with one number, give an interval [low, high) or a list of them")
                intervals = rule if rule and isinstance(rule[0], (list, tuple)) else [rule]
                if any(isinstance(i, dict) or len(i) != 2 for i in intervals):
                    raise ValueError(f"choice {cid!r}: with one number, give an interval [low, high) or a list of them")
                out[cid] = [{self.number: tuple(i)} for i in intervals]
            else:
                boxes = rule if isinstance(rule, list) else [rule]
                if not all(isinstance(b, dict) for b in boxes):
                    raise ValueError(f"choice {cid!r}: without \"number\", give a box {{key: [low, high)}} or a list")
                out[cid] = [{k: tuple(v) for k, v in b.items()} for b in boxes]
        return out

    def numbers(self) -> list[str]:
        """The numbers the rule reads, in the order they first appear (ratios as written)."""
        return list(dict.fromkeys(k for boxes in self.boxes().values() for box in boxes for k in box))

    def claim_keys(self) -> list[str]:
        """The claim's number keys the rule reads (each side of a ratio)."""
        return list(dict.fromkeys(part.strip() for k in self.numbers() for part in k.split("/")))


def _disjoint(a: Box, b: Box) -> bool:
    """Two boxes share no point: some number they both bound has intervals that do not meet."""
    for key in a.keys() & b.keys():
        (low_a, high_a), (low_b, high_b) = a[key], b[key]
        low = max(x for x in (low_a, low_b, float("-inf")) if x is not None)
        high = min(x for x in (high_a, high_b, float("inf")) if x is not None)
        if not low < high:
            return True
    return False


class Widget(BaseModel):
    kind: Literal["compare", "trace", "sweep", "train", "measure", "playground"]
    model: str | None = None
    input: str | None = None
    # switch values with Switches' own names and types: {"residual": false, "memory": "same_depth"}
    ablate: dict[str, bool | str | list[str]] | None = None
    switches: dict[str, bool | str | list[str]] | None = None
    figure: str | None = None
    plan: str | None = None
    form: dict[str, str | int | float] | None = None
    ab: str | None = None
    claim: str | None = None
    # a train widget whose settings a precomputed plan also trains: its variants there, at the form's depth,
    # shown (shipped or measured here) before the learner trains them live
    shipped: list[str] | None = None

    @field_validator("figure")
    @classmethod
    def known_figure(cls, value: str | None) -> str | None:
        if value is not None and value not in FIGURES:
            raise ValueError(f"figure {value!r} is not one of {', '.join(FIGURES)}")
        return value

    @model_validator(mode="after")
    def needs_its_fields(self) -> Widget:
        required = {"compare": ("model", "input", "ablate", "figure"), "trace": ("model", "input", "figure"),
                    "sweep": ("plan",), "train": ("form",), "measure": ("claim",), "playground": ("model", "input")}
        missing = [f for f in required[self.kind] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.kind} widget needs {', '.join(missing)}")
        return self

    def switch_changes(self, ablated: bool = False) -> dict[str, bool | str | list[str]]:
        """The switches its model runs with here (over the model's own), with `ablate` on top if `ablated`."""
        return {**(self.switches or {}), **((self.ablate or {}) if ablated else {})}


class Step(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9-]+$")
    title: Text
    text: Text
    quote: str | None = None
    claim: str | None = None
    predict: Predict | None = None
    resolve: Resolve | None = None  # required with `predict`: how the measurement decides it
    widget: Widget | None = None
    explain: Text | None = None

    @model_validator(mode="after")
    def resolvable(self) -> Step:
        if self.predict is None:
            if self.resolve is not None:
                raise ValueError(f"step {self.id}: a resolve rule without a prediction")
            return self
        if self.resolve is None:
            raise ValueError(f"step {self.id}: a prediction needs a resolve rule (the measurement decides it)")
        if self.claim is None:
            raise ValueError(f"step {self.id}: a prediction needs the claim whose measurement decides it")
        if self.widget is None:
            raise ValueError(f"step {self.id}: a prediction needs a widget to run")
        known = {c.id for c in self.predict.choices}
        if len(known) != len(self.predict.choices):
            raise ValueError(f"step {self.id}: choice ids repeat")
        unknown = set(self.resolve.choices or {}) - known
        if unknown:
            raise ValueError(f"step {self.id}: the resolve rule names choices {sorted(unknown)}; "
                             f"the prediction has {sorted(known)}")
        return self

    def choice(self, choice_id: str) -> Choice | None:
        return next((c for c in self.predict.choices if c.id == choice_id), None) if self.predict else None


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
    from app.playground.state import state_of
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
            if widget.kind in ("compare", "trace", "playground"):
                for ablated in (False, True) if widget.kind == "compare" else (False,):
                    state_of(widget.model, widget.input, widget.switch_changes(ablated), settings.max_input_chars)
            elif widget.kind == "sweep" and widget.plan not in PLANS:
                problems.append(f"{where}: unknown plan {widget.plan!r}; known: {', '.join(PLANS)}")
            elif widget.kind == "train":
                form = {k: str(v) for k, v in widget.form.items()} | ({"ab": widget.ab} if widget.ab else {})
                parse_run_request(form, settings)
                parse_ab(form)
                if widget.shipped:
                    problems += _shipped_problems(where, widget, PLANS, settings)
            elif widget.kind == "measure" and widget.claim not in CLAIMS:
                problems.append(f"{where}: unknown claim {widget.claim!r}")
        except BadInput as error:
            problems.append(f"{where}: {error}")
    return problems


def _shipped_problems(where: str, widget: Widget, plans: dict, settings) -> list[str]:
    """The plan's variants must train exactly what the widget's form (A, and B with `ab`) trains, so that the
    result shown is the run the button trains (or replays)."""
    from app.lab.form import parse_ab, parse_run_request
    from app.lab.sweeps import VARIANTS, variant_spec

    if widget.plan not in plans:
        return [f"{where}: shipped needs a known plan; known: {', '.join(plans)}"]
    base, depths, variants = plans[widget.plan]
    depth = int(widget.form.get("layers", 2))
    missing = [v for v in widget.shipped if v not in variants or depth not in depths]
    if missing:
        return [f"{where}: plan {widget.plan!r} has no {v} at depth {depth}" for v in missing]
    form = {k: str(v) for k, v in widget.form.items()} | ({"ab": widget.ab} if widget.ab else {})
    forms = [form] + ([parse_ab(form)[0]] if widget.ab else [])
    return [f"{where}: the form's run {i + 1} is not the plan's {variant} at depth {depth}"
            for i, (variant, run_form) in enumerate(zip(widget.shipped, forms, strict=False))
            if parse_run_request(run_form, settings)[0].key() != variant_spec(base, VARIANTS[variant], depth).key()]
