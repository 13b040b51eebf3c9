"""Ids in paths, query strings and model names, bounded to what the run store can hold.

A run or sweep id is a whole number 1..2**63-1 (SQLite's INTEGER): `RunId` and `SweepId` say so in the
schema (FastAPI refuses anything else with a 422 naming the parameter, and the OpenAPI document shows the
bound), and `parse_id` reads the id of a name such as `run-<id>` the same way (`parse_whole`: any whole number).
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Path

MAX_ID = 2**63 - 1  # the largest INTEGER SQLite stores
_ASCII_WHOLE = re.compile(r"[0-9]{1,19}")  # str.isdigit() also takes '²' and '١', which int() refuses

RunId = Annotated[int, Path(ge=1, le=MAX_ID, description=f"a run's id (1..{MAX_ID})")]
SweepId = Annotated[int, Path(ge=1, le=MAX_ID, description=f"a sweep's id (1..{MAX_ID})")]


def parse_whole(text: str, low: int = 0, high: int = MAX_ID) -> int | None:
    """The whole number a text spells in ASCII digits, if it lies in low..high; else None."""
    if not _ASCII_WHOLE.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def parse_id(text: str) -> int | None:
    """The id a text spells in ASCII digits, if it is one the store could hold (1..MAX_ID); else None."""
    return parse_whole(text, 1)
