"""The class's answers to a step as a Plotly bar chart, for the teacher's screen."""

from __future__ import annotations

import math

from app.figures import FONT
from app.figures import escape_label as _esc
from app.teaching.lesson_schema import Step
from app.web.i18n import Translator

LETTERS = "ABCD"  # a lesson step has at most four choices (lesson_schema.Predict)
BAR = "#0072B2"
MEASURED = "#009E73"
OTHER = "#9fb4c8"


def answer_distribution(step: Step, counts: dict[str, int], t: Translator, measured: str | None = None) -> dict:
    """One bar per choice (A, B, C… as the choices are lettered beside it), its count and share on top; once the
    experiment has run, the measured choice's bar is green and the others fade."""
    choices = step.predict.choices
    total = sum(counts.get(c.id, 0) for c in choices)
    ys = [counts.get(c.id, 0) for c in choices]
    colours = [BAR if measured is None else MEASURED if c.id == measured else OTHER for c in choices]
    texts = [f"{n} ({round(100 * n / total)}%)" if total else "0" for n in ys]
    return {
        "data": [{"type": "bar", "x": list(LETTERS[:len(choices)]), "y": ys, "text": texts, "textposition": "outside",
                  "cliponaxis": False, "marker": {"color": colours},
                  "hovertext": [_esc(c.zh if t.lang == "zh" else c.en) for c in choices], "hoverinfo": "text"}],
        "layout": {"title": {"text": _esc(t("class.chart.title", n=total))}, "height": 300,
                   "margin": {"l": 50, "r": 20, "t": 50, "b": 40}, "font": {"family": FONT},
                   "xaxis": {"type": "category", "fixedrange": True},
                   "yaxis": {"title": {"text": _esc(t("class.chart.students"))}, "rangemode": "tozero",
                             "range": [0, max(ys + [1]) * 1.25], "fixedrange": True,
                             "dtick": max(1, math.ceil(max(ys + [1]) / 5))},  # whole students only
                   "showlegend": False, "paper_bgcolor": "rgba(0,0,0,0)", "plot_bgcolor": "rgba(0,0,0,0)"},
    }
