"""A predict step, closed: which choice the step's measured claim is (its resolve rule, lesson_schema.Resolve),
and whether the learner's prediction was it.

    resolve(rule, verdict)                    -> Resolution   which choice the measured numbers are
    outcome(step, choice, verdict, t)         -> dict         what the outcome line under the widget shows

A "steps to 99%" figure that is None means the run never got there within its budget: it counts as
infinitely many steps (a ratio with it is ∞, or 0 with it below the line; 1 when neither run got there).
Any other number that is None or absent means the claim is not measured (yet) for this store. A number below its
noise floor (the marker "<1e-04", claims/common.py) is zero as far as anything can tell: 0 here, so a rule's
bound near zero must not lie below that floor (tests/test_lesson_outcomes.py keeps it so).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any

from app.teaching.claims.common import is_noise
from app.teaching.claims.render import number_label, number_value, render_text
from app.teaching.lesson_schema import Resolve, Step
from app.web.i18n import Translator

NOT_REACHED = math.inf


def _is_steps(key: str) -> bool:
    return "steps_to_" in key


def _plain(numbers: dict, key: str) -> float | None:
    """One claim number as a float; None when it is not measured."""
    if key not in numbers:
        return None
    value = numbers[key]
    if value is None:
        return NOT_REACHED if _is_steps(key) else None
    if is_noise(value):
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def number_of(numbers: dict, key: str) -> float | None:
    """A rule's number: a claim number, or the ratio "a / b" of two (None: not measured; NaN: undefined)."""
    if "/" not in key:
        return _plain(numbers, key)
    top, bottom = (_plain(numbers, part.strip()) for part in key.split("/"))
    if top is None or bottom is None:
        return None
    if math.isinf(top) and math.isinf(bottom):
        return 1.0  # neither reached the target: a tie
    if bottom == 0:
        return math.inf if top > 0 else math.nan
    return top / bottom


def _inside(value: float, interval: tuple) -> bool:
    low, high = interval
    return not math.isnan(value) and (low is None or value >= low) and (high is None or value < high)


@dataclass
class Resolution:
    status: str  # "resolved" | "none" (the numbers fit no choice) | "not_measured" | "mixed" | "figure"
    choice: str | None = None  # the choice the numbers are (also for "mixed": on the seeds' mean)
    values: dict[str, float] = field(default_factory=dict)  # the rule's numbers, as measured


def resolve(rule: Resolve, verdict: Any) -> Resolution:
    """The choice a measured verdict (live or saved as a dict) is, by the rule."""
    if rule.figure:
        return Resolution("figure")
    v = asdict(verdict) if is_dataclass(verdict) else verdict
    if v["verdict"] == "not_measured":
        return Resolution("not_measured")
    values = {key: number_of(v["numbers"], key) for key in rule.numbers()}
    if any(value is None for value in values.values()):
        return Resolution("not_measured", values={k: x for k, x in values.items() if x is not None})
    matches = [cid for cid, boxes in rule.boxes().items()
               if any(all(_inside(values[k], interval) for k, interval in box.items()) for box in boxes)]
    choice = matches[0] if matches else None  # the schema keeps the choices apart: at most one
    if v["verdict"] == "mixed":
        return Resolution("mixed", choice, values)
    return Resolution("resolved" if choice else "none", choice, values)


# ---- the outcome line ------------------------------------------------------------------------------


def _label(key: str, t: Translator) -> str:
    """The claim table's label of a number (or of both sides of a ratio); `lo.number.<key>` where that label
    only reads well next to the one before it in the table."""
    if t(f"lo.number.{key}") != f"lo.number.{key}":
        return t(f"lo.number.{key}")
    if "/" in key:
        top, bottom = (part.strip() for part in key.split("/"))
        return t("lo.ratio", top=number_label(top, t), bottom=number_label(bottom, t))
    return number_label(key, t)


def _figure(key: str, value: float, t: Translator) -> str:
    if math.isinf(value):
        return t("lo.not_reached") if _is_steps(key) else "∞"
    if math.isnan(value):
        return "—"
    return number_value(key, int(value), t) if float(value).is_integer() else f"{value:.3g}"


def _value(key: str, value: float, numbers: dict, t: Translator) -> str:
    """A number as measured; a ratio with its two sides: "0.07 ÷ 1 = 0.07"."""
    if "/" not in key:
        return _figure(key, value, t)
    top, bottom = (part.strip() for part in key.split("/"))
    sides = [_figure(k, _plain(numbers, k), t) for k in (top, bottom)]
    return f"{sides[0]} ÷ {sides[1]} = {_figure('', value, t)}"


def measured_lines(values: dict[str, float], numbers: dict, t: Translator) -> list[dict]:
    """A resolution's numbers as the outcome line shows them, each with its label, in t's language (`numbers`:
    the claim's numbers, for the two sides of a ratio)."""
    return [{"key": key, "label": _label(key, t), "value": _value(key, value, numbers, t)}
            for key, value in values.items()]


def choice_text(step: Step, choice_id: str, lang: str) -> str:
    choice = step.choice(choice_id)
    return "" if choice is None else (choice.zh if lang == "zh" else choice.en)


def outcome(step: Step, choice_id: str, verdict: Any, t: Translator) -> dict:
    """What the outcome line shows: the prediction, the measured numbers, the choice they are, and the status
    "match" | "miss" | "none" | "mixed" | "not_measured" | "figure" (`verdict` None: a figure rule, nothing
    measured)."""
    res = resolve(step.resolve, verdict)
    v = asdict(verdict) if is_dataclass(verdict) else verdict or {"verdict": None, "numbers": {}, "summary": []}
    view = {"predicted": choice_text(step, choice_id, t.lang), "measured": measured_lines(res.values, v["numbers"], t),
            "claim": step.claim,
            "choice": res.choice, "choice_text": choice_text(step, res.choice, t.lang) if res.choice else "",
            "status": ("match" if res.choice == choice_id else "miss") if res.status == "resolved" else res.status}
    if res.status == "not_measured":  # a not-measured claim's summary says which runs are missing and how to make them
        view["why"] = render_text(v["summary"], t) if v["verdict"] == "not_measured" else t("lo.not_measured_runs")
    return view
