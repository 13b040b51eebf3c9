"""UI labels in English and Simplified Chinese, from data files in app/web/labels/.

The language comes from ?lang=en|zh, else the `lang` cookie, else Accept-Language, else English.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from fastapi import Request

LANGUAGES = ("en", "zh")
LABELS_DIR = Path(__file__).parent / "labels"


@lru_cache
def labels(lang: str) -> dict[str, str]:
    """Every UI, figure (chart.*) and diagram (arch.*) string of a language: one catalogue per language."""
    return json.loads((LABELS_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def pick_language(request: Request) -> str:
    """The request's language, worked out once and kept on the request (every template asks again)."""
    lang = getattr(request.state, "lang", None)
    if lang is None:
        lang = request.state.lang = _language_of(request)
    return lang


def _language_of(request: Request) -> str:
    asked = request.query_params.get("lang") or request.cookies.get("lang")
    if asked in LANGUAGES:
        return asked
    for part in request.headers.get("accept-language", "").split(","):
        code = part.split(";")[0].strip().lower()
        if code.startswith("zh"):
            return "zh"
        if code.startswith("en"):
            return "en"
    return "en"


class Translator:
    def __init__(self, lang: str):
        self.lang = lang
        self._labels = labels(lang)
        self._fallback = labels("en")

    def __call__(self, key: str, **values) -> str:
        text = self._labels.get(key) or self._fallback.get(key) or key
        return text.format(**values) if values else text

    def model_title(self, model) -> str:
        """A model's title in this language: the zoo's are translated; a run keeps the title it was given."""
        return self._labels.get(f"model.{model.name}", model.title)
