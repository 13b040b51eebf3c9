"""UI labels in English and Simplified Chinese, from data files in app/web/labels/.

The language comes from ?lang=en|zh, else the `lang` cookie, else Accept-Language (with its q-values), else
English. A value that is not a known language is ignored: it never reaches a header or a URL.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

from fastapi import Request

from model.norms import NORMS

LANGUAGES = ("en", "zh")
LABELS_DIR = Path(__file__).parent / "labels"


@lru_cache
def labels(lang: str) -> dict[str, str]:
    """Every UI, figure (chart.*) and diagram (arch.*) string of a language: one catalogue per language."""
    return json.loads((LABELS_DIR / f"{lang}.json").read_text(encoding="utf-8"))


_NAMED_BY_TITLE = ("value.", "arch.norm.")  # keys that name a norm kind by its registered name


def registered_title(key: str) -> str | None:
    """A norm kind the catalogues do not list (one registered by a test or an extension) is called by its title."""
    for prefix in _NAMED_BY_TITLE:
        if key.startswith(prefix) and key[len(prefix):] in NORMS:
            return NORMS[key[len(prefix):]].title
    return None


def pick_language(request: Request) -> str:
    """The request's language, worked out once and kept on the request (every template asks again)."""
    lang = getattr(request.state, "lang", None)
    if lang is None:
        lang = request.state.lang = _language_of(request)
    return lang


def asked_language(request: Request) -> str | None:
    """The language ?lang= asks for, when it is one of LANGUAGES (anything else is ignored, never echoed)."""
    asked = request.query_params.get("lang")
    return asked if asked in LANGUAGES else None


def _language_of(request: Request) -> str:
    asked = asked_language(request) or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    return accepted_language(request.headers.get("accept-language", ""))


_TAG = re.compile(r"\*|[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_QUALITY = re.compile(r"q=(0(\.[0-9]{0,3})?|1(\.0{0,3})?)", re.IGNORECASE)
MAX_LANGUAGE_RANGES = 32  # a longer header is read no further


def accepted_language(header: str) -> str:
    """The language an Accept-Language header prefers most (RFC 9110: q-values, q=0 refuses, * is any other),
    among LANGUAGES; English when it names none of them, refuses them all or is malformed."""
    ranges: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:MAX_LANGUAGE_RANGES]):
        tag, *params = (piece.strip() for piece in part.split(";"))
        if not tag and not params:  # "en,,zh": an empty element is allowed
            continue
        quality = 1.0
        for param in params:
            match = _QUALITY.fullmatch(param)
            if match is None:
                return "en"
            quality = float(match.group(1))
        if not _TAG.fullmatch(tag):
            return "en"
        ranges.append((quality, position, tag.lower()))
    refused = {tag for quality, _, tag in ranges if quality == 0}  # "zh;q=0": not Chinese, whatever else says
    for quality, _, tag in sorted(ranges, key=lambda r: (-r[0], r[1])):
        if quality == 0:
            break
        for lang in LANGUAGES:
            if (tag == "*" or tag == lang or tag.startswith(lang + "-")) and lang not in refused:
                return lang
    return "en"


class Translator:
    def __init__(self, lang: str):
        self.lang = lang
        self._labels = labels(lang)
        self._fallback = labels("en")

    def __call__(self, key: str, **values) -> str:
        text = self._labels.get(key) or self._fallback.get(key) or registered_title(key) or key
        return text.format(**values) if values else text

    def model_title(self, model) -> str:
        """A model's title in this language: the zoo's are translated; a run keeps the title it was given."""
        return self._labels.get(f"model.{model.name}", model.title)
