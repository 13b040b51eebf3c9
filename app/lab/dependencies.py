"""The lab's services as typed route dependencies: the run store, the job runner and the sweep scheduler that
the factory keeps on app.state."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.lab.jobs import RayJobRunner
from app.lab.store import RunStore
from app.lab.sweeps import SweepScheduler


def _store(request: Request) -> RunStore:
    return request.app.state.store


def _runner(request: Request) -> RayJobRunner:
    return request.app.state.runner


def _sweeps(request: Request) -> SweepScheduler:
    return request.app.state.sweeps


StoreDep = Annotated[RunStore, Depends(_store)]
RunnerDep = Annotated[RayJobRunner, Depends(_runner)]
SweepsDep = Annotated[SweepScheduler, Depends(_sweeps)]
