"""What a route needs, as typed dependencies (resolved once per request; FastAPI caches them), instead of
reaching into request.app.state: `def page(store: StoreDep, t: TranslatorDep): ...`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.lab.jobs import RayJobRunner
from app.lab.results import ResultSource
from app.lab.store import RunStore
from app.lab.sweeps import SweepScheduler
from app.teaching.verdicts import VerdictBoard
from app.web.i18n import Translator, pick_language
from app.web.learners import LEARNER_COOKIE
from app.web.settings import Settings


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _store(request: Request) -> RunStore:
    return request.app.state.store


def _runner(request: Request) -> RayJobRunner:
    return request.app.state.runner


def _sweeps(request: Request) -> SweepScheduler:
    return request.app.state.sweeps


def learner_of(request: Request) -> str:
    """Whose share of the training queue a request takes: the browser's learner cookie, else its address."""
    return request.cookies.get(LEARNER_COOKIE) or f"address:{request.client.host if request.client else '?'}"


def _results(request: Request) -> ResultSource:
    return request.app.state.results


def _verdicts(request: Request) -> VerdictBoard:
    return request.app.state.verdicts


def _translator(lang: Annotated[str, Depends(pick_language)]) -> Translator:
    return Translator(lang)


SettingsDep = Annotated[Settings, Depends(_settings)]
StoreDep = Annotated[RunStore, Depends(_store)]
RunnerDep = Annotated[RayJobRunner, Depends(_runner)]
SweepsDep = Annotated[SweepScheduler, Depends(_sweeps)]
LearnerDep = Annotated[str, Depends(learner_of)]
VerdictsDep = Annotated[VerdictBoard, Depends(_verdicts)]
ResultsDep = Annotated[ResultSource, Depends(_results)]
LanguageDep = Annotated[str, Depends(pick_language)]
TranslatorDep = Annotated[Translator, Depends(_translator)]
