"""The measurements lessons and claims read, as typed route dependencies: the result source (this server's runs,
else the shipped ones) and the verdict board."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.lab.results import ResultSource
from app.teaching.verdicts import VerdictBoard


def _results(request: Request) -> ResultSource:
    return request.app.state.results


def _verdicts(request: Request) -> VerdictBoard:
    return request.app.state.verdicts


ResultsDep = Annotated[ResultSource, Depends(_results)]
VerdictsDep = Annotated[VerdictBoard, Depends(_verdicts)]
