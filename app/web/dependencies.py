"""What every route may need, as typed dependencies (resolved once per request; FastAPI caches them), instead of
reaching into request.app.state: `def page(settings: SettingsDep, t: TranslatorDep): ...`. A feature's own
services (the run store, the job runner, the verdicts) are dependencies of that feature (app/lab/dependencies.py,
app/teaching/dependencies.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.web.i18n import Translator, pick_language
from app.web.learners import LEARNER_COOKIE
from app.web.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def learner_of(request: Request) -> str:
    """Whose share of the training queue a request takes: the browser's learner cookie, else its address."""
    return request.cookies.get(LEARNER_COOKIE) or f"address:{request.client.host if request.client else '?'}"


def _translator(lang: Annotated[str, Depends(pick_language)]) -> Translator:
    return Translator(lang)


SettingsDep = Annotated[Settings, Depends(_settings)]
LearnerDep = Annotated[str, Depends(learner_of)]
LanguageDep = Annotated[str, Depends(pick_language)]
TranslatorDep = Annotated[Translator, Depends(_translator)]
