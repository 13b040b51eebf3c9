"""A predict step's experiment, run once for the whole class, and what every screen shows of it.

The teacher's Run goes through the lessons' own machinery: `run_step` gives the widget (the figures the lesson page
shows), and the step's claim, measured on the results the app reads (this server's runs, else the shipped ones),
resolved by the step's rule (outcomes.resolve) gives the choice the measurement is. What is kept in the class store
is language-free (the resolution, the numbers behind it, and for a claim not measured here the reason in both
languages), so each screen renders it in its own language. A measurement that is not available is kept as such
and said so: no choice is marked then.
"""

from __future__ import annotations

from dataclasses import asdict

from app.lab.results import ResultSource
from app.teaching.claims import measure
from app.teaching.claims.render import render_text
from app.teaching.lesson_schema import Step
from app.teaching.outcomes import choice_text, measured_lines, resolve
from app.teaching.widgets import run_step
from app.web.i18n import LANGUAGES, Translator


def run_experiment(step: Step, settings, results: ResultSource, t: Translator) -> tuple[dict, dict]:
    """(the step's widget in t's language, the result to keep). Runs the model: call it off the event loop."""
    widget = run_step(step, None, settings, results, t)["w"]
    store, source = results.current()
    verdict = None if step.resolve.figure else measure(step.claim, store)
    resolution = resolve(step.resolve, verdict)
    numbers = asdict(verdict)["numbers"] if verdict is not None else {}
    why = None
    if verdict is not None and verdict.verdict == "not_measured":  # which runs are missing, and how to make them
        why = {lang: render_text(verdict.summary, Translator(lang)) for lang in LANGUAGES}
    # "shipped" only when the numbers came from shipped runs: a claim measured on the zoo's models is measured here
    read_runs = verdict is not None and any(s.startswith(("sweep:", "run:")) for s in verdict.sources)
    return widget, {"status": resolution.status, "choice": resolution.choice, "values": resolution.values,
                    "numbers": {k: numbers[k] for k in step.resolve.claim_keys() if k in numbers},
                    "why": why, "source": source if read_runs else "measured here", "claim": step.claim}


def widget_of(step: Step, settings, results: ResultSource, t: Translator) -> dict:
    """The step's widget again (a teacher's screen reloaded after the run): traces and sweeps come from caches."""
    return run_step(step, None, settings, results, t)["w"]


def marked_choice(result: dict | None) -> str | None:
    """The choice the measurement is, when it decides one ("mixed": the seeds' mean does, not every seed)."""
    if result is None or result["status"] not in ("resolved", "mixed"):
        return None
    return result["choice"]


def is_correct(result: dict | None, choice: str) -> bool | None:
    """Whether an answer is the measured choice; None when the measurement decides none (not run, not measured,
    a figure to read, seeds that disagree)."""
    if result is None or result["status"] != "resolved":
        return None
    return choice == result["choice"]


def result_view(step: Step, result: dict, t: Translator, answer: str | None = None) -> dict:
    """A kept result as a screen shows it, in t's language; with a student's `answer`, whether it was right."""
    choice = result["choice"]
    view = {"status": result["status"], "choice": choice, "choice_text": choice_text(step, choice, t.lang) if choice
            else "", "measured": measured_lines(result["values"], result["numbers"], t), "claim": result["claim"],
            "shipped": result["source"] == "shipped", "mine": None}
    if result["status"] == "not_measured":
        view["why"] = (result["why"] or {}).get(t.lang) or t("lo.not_measured_runs")
    right = is_correct(result, answer) if answer is not None else None
    if right is not None:
        view["mine"] = "match" if right else "miss"
    return view
