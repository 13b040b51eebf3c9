"""Claim texts in a language: the one place where a verdict's `Text`s (see common.py) become sentences,
and where the keys of its `numbers` get readable labels.

    render_text(text, t)         -> str        a Text, a list of them, or their saved dicts
    number_label(key, t)         -> str        "first/last gradient ratio · reverse-post-2x2 · decoder · …"
    verdict_view(verdict, t)     -> dict       what templates/partials/verdict.html shows (its chart drawn)
    api_verdict(verdict)         -> dict       a saved verdict with its texts rendered in every language

Everything accepts a live Verdict or the dict `dataclasses.asdict` made of it (the saved verdicts.json).
A report saved before the texts moved to the catalogue has {"en", "zh"} dicts for summary and method;
they are shown as they are (app/teaching/verdicts.py recomputes such a report when asked for one).
"""

from __future__ import annotations

import re
from dataclasses import asdict, is_dataclass
from typing import Any

from app import figures
from app.teaching.claims import CLAIMS
from app.teaching.claims.common import Text, floor_text, is_noise, sublayer_text
from app.teaching.claims.conditions import conditions_text
from app.web.i18n import LANGUAGES, Translator

SENTENCE_SEPARATOR = {"zh": ""}  # between the sentences of a summary; a space in every other language


def _as_text(item: Any) -> Text | None:
    if isinstance(item, Text):
        return item
    if isinstance(item, dict) and "key" in item:
        return Text(item["key"], item.get("values") or {})
    return None


def _value(value: Any, t: Translator) -> str:
    if isinstance(value, list):
        return t("claim.sep.list").join(render_text(item, t) for item in value)
    if _as_text(value) is not None:
        return render_text(value, t)
    return str(value)


def render_text(text: Any, t: Translator) -> str:
    """A Text (or its dict), or a list of them as sentences, in t's language."""
    if text is None:
        return ""
    if isinstance(text, list):
        parts = [render_text(part, t) for part in text]
        return SENTENCE_SEPARATOR.get(t.lang, " ").join(part for part in parts if part)
    one = _as_text(text)
    if one is None:  # a sentence-format report: {"en": ..., "zh": ...}
        return text.get(t.lang) or text.get("en", "") if isinstance(text, dict) else str(text)
    return t(one.key, **{name: _value(value, t) for name, value in one.values.items()})


# ---- labels for the keys of Verdict.numbers ----------------------------------------------------------
#
# A key is qualifiers around a stem: "post-2x2_decoder_grad_first_residual_on" is the stem "grad_first"
# for the model reverse-post-2x2, the decoder, residual connections on. Prefixes are taken off the front
# one after another, then suffixes off the end; what is left is the stem, labelled by the catalogue's
# `number.<stem>`, and each qualifier by `number.q.<name>` (or a variant's, stack's or sublayer's label).
# The label is "stem · qualifier · qualifier" (`number.label`, `number.sep`); the raw key stays the
# verdict's, shown as the label's title and given by /api/claims.

VARIANTS = ("post_ln_warmup", "post_ln_pe_every_layer", "post_ln", "pre_ln_xavier", "pre_ln",
            "no_residual_keep_cross", "no_residual", "no_norm_xavier", "no_norm", "pe_every_layer", "learned_pe",
            "no_pe", "batch_norm")  # a longer name before the shorter one it starts with
_PREFIXES = [
    (re.compile(r"(?P<model>(?:post|pre)-\dx\d)_"), lambda m, t: f"reverse-{m['model']}"),
    (re.compile(r"(?P<lang>en|zh)_numbers_"), lambda m, t: f"{m['lang']}-numbers-2x2"),
    (re.compile(r"(?P<q>trained|batchnorm|layernorm|unmasked_run)_"), lambda m, t: t(f"number.q.{m['q']}")),
    (re.compile(rf"(?P<variant>{'|'.join(VARIANTS)})_"), lambda m, t: t(f"variant.{m['variant']}")),
    (re.compile(r"depth(?P<n>\d+)_"), lambda m, t: t("number.q.depth", n=m["n"])),
    (re.compile(r"layer(?P<n>\d+)_"), lambda m, t: t("number.q.layer", n=m["n"])),
    (re.compile(r"(?P<stack>encoder|decoder)_"), lambda m, t: t(f"claim.stack.{m['stack']}")),
]
_SUFFIXES = [(re.compile(pattern + "$"), label) for pattern, label in [
    (r"_(?P<sub>(?:encoder|decoder)\.\d+\.\w+)", lambda m, t: render_text(sublayer_text(m["sub"]), t)),
    (r"_(?P<q>(?:residual|pe|mask|memory)_(?:on|off|once|every_layer|ablated|final|same_depth))",
     lambda m, t: t(f"number.q.{m['q']}")),
    (r"_lengths_(?P<a>\d+)_(?P<b>\d+)", lambda m, t: t("number.q.lengths", a=m["a"], b=m["b"])),
    (r"_(?P<q>running_statistics|batch_of_100_padding_counted|batch_of_100|each_input_alone|trained_lengths|long_inputs)",
     lambda m, t: t(f"number.q.{m['q']}")),
    (r"_offset_(?P<k>\d+)", lambda m, t: t("number.q.offset", k=m["k"])),
    (r"_(?P<n>\d)x\d", lambda m, t: t("number.q.size", n=m["n"])),
    (r"_layer(?P<n>\d+)", lambda m, t: t("number.q.layer", n=m["n"])),
]]


def number_parts(key: str, t: Translator) -> tuple[str, list[str]]:
    """(stem, qualifier labels in the key's order) of a numbers key."""
    stem, front, back = key, [], []
    while found := next(((m, label) for rule, label in _PREFIXES
                         if (m := rule.match(stem)) and m.end() < len(stem)), None):
        front.append(found[1](found[0], t))
        stem = stem[found[0].end():]
    while found := next(((m, label) for rule, label in _SUFFIXES
                         if (m := rule.search(stem)) and m.start() > 0), None):
        back.insert(0, found[1](found[0], t))
        stem = stem[: found[0].start()]
    return stem, front + back


def number_label(key: str, t: Translator) -> str:
    stem, qualifiers = number_parts(key, t)
    name = t(f"number.{stem}")
    if name == f"number.{stem}":  # no label for this stem: the key as it is
        return key
    return t("number.label", name=name, qualifiers=t("number.sep").join(qualifiers)) if qualifiers else name


_SUBLAYER = re.compile(r"(?:encoder|decoder)\.\d+(?:\.\w+)?")
_VALUE_KEYS = {"True": "number.value.yes", "False": "number.value.no"}


def number_value(key: str, value: Any, t: Translator) -> str:
    """A figure as the table shows it: numbers as measured, a few words and names translated."""
    if value is None:
        return "—"
    if not isinstance(value, str):
        return str(value)
    if value in _VALUE_KEYS:
        return t(_VALUE_KEYS[value])
    if is_noise(value):
        return t("number.noise", floor=floor_text(value))
    if _SUBLAYER.fullmatch(value):
        return render_text(sublayer_text(value), t)
    if key.endswith("_task"):
        label = t(f"number.task.{value}")
        return value if label == f"number.task.{value}" else label
    return value


# ---- whole verdicts ------------------------------------------------------------------------------------


def _fields(verdict: Any) -> dict:
    return asdict(verdict) if is_dataclass(verdict) else verdict


def chart_figure(chart: dict | None, t: Translator) -> dict | None:
    """A verdict's chart (claims/charts.py, as saved) as a Plotly figure in t's language; None without one."""
    if not chart:
        return None
    with figures.language(t.lang):
        return figures.claim_chart(chart, lambda text: render_text(text, t))


def verdict_view(verdict: Any, t: Translator) -> dict:
    """A verdict (live or saved) in t's language: claim, verdict, summary, method, its chart as a figure (None
    for a claim that reads no sweep), and the numbers as (key, label, value) rows."""
    v = _fields(verdict)
    return {"claim": v["claim"], "verdict": v["verdict"], "summary": render_text(v["summary"], t),
            "figure": chart_figure(v.get("chart"), t),
            "method": render_text(v["method"], t), "sources": v.get("sources", []),
            "conditions": render_text(conditions_text(v.get("conditions", [])), t),
            "by_construction": CLAIMS.get(v["claim"]) == "construction",
            "numbers": [(key, number_label(key, t), number_value(key, value, t))
                        for key, value in v["numbers"].items()]}


def api_verdict(verdict: Any, source: str = "measured here", measured: dict | None = None) -> dict:
    """A verdict for /api/claims: its numbers and sources, summary and method rendered in every language,
    their catalogue keys and values (summary_text, method_text), a label for every number, where its runs came
    from (`source`: "shipped" with the app, or "measured here") and when and where it was `measured`."""
    v = _fields(verdict)
    translators = [Translator(lang) for lang in LANGUAGES]
    conditions = v.get("conditions", [])
    seeds = max((len(c.get("seeds", [])) for c in conditions), default=0)
    return {**v, "id": v["claim"], "kind": CLAIMS.get(v["claim"], "measurement"),
            "seeds": v["numbers"].get("seeds", seeds), "measured": measured or {},
            "source": "shipped" if source == "shipped" else "measured here",
            "conditions": {"data": conditions, **{t.lang: render_text(conditions_text(conditions), t)
                                                  for t in translators}},
            "summary": {t.lang: render_text(v["summary"], t) for t in translators},
            "method": {t.lang: render_text(v["method"], t) for t in translators},
            "summary_text": v["summary"], "method_text": v["method"],
            "number_labels": {key: {t.lang: number_label(key, t) for t in translators} for key in v["numbers"]}}
