"""JSON mirroring the playground, for notebooks: the same parameter names as the page's URL."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field, create_model

from app.playground.registry import model_info
from app.playground.state import SWITCH_FIELDS, parse_state
from app.playground.traces import trace_for
from app.web.compute import run_model_work
from app.web.dependencies import SettingsDep
from app.web.errors import BadInput
from model.config import Switches, choices_of, help_of, type_of
from model.tasks import get_task
from model.zoo import load_manifest

router = APIRouter(prefix="/api", tags=["api"])


def _switch_doc(name: str) -> str:
    """A switch's help and allowed values, from its declaration in model/config.py."""
    allowed = choices_of(Switches, name) or (("on", "off") if type_of(Switches, name) is bool else ())
    return help_of(Switches, name) + (f": {' | '.join(allowed)}" if allowed else "")


# The query string of /api/trace, made from the schema: the playground's URL parameters, one per switch.
TraceQuery = create_model(
    "TraceQuery",
    model=(str | None, Field(None, description="zoo model name or run-<id>; default: the default model")),
    input=(str | None, Field(None, description="source text, e.g. 31415 for reverse")),
    step=(str | None, Field(None, description="which step of the forward pass the page would show")),
    intact=(bool, Field(False, description="also return the trace without ablation")),
    **{name: (str | None, Field(None, description=_switch_doc(name))) for name in SWITCH_FIELDS},
)


@router.get("/models", summary="The model zoo: every shipped model with its config, switches and accuracy")
def models() -> list[dict[str, Any]]:
    return [asdict(e) for e in load_manifest()]


@router.get("/trace", summary="Trace one input through a model, with switches applied as ablations")
async def trace(request: Request, settings: SettingsDep, query: Annotated[TraceQuery, Query()]) -> dict[str, Any]:
    """The response holds per-layer stream norms, sublayer contributions, norm statistics, attention
    patterns, the logit lens, gradients and the ordered steps of the forward pass."""
    params = {k: v for k, v in query.model_dump().items() if v is not None and k != "intact"}
    state = parse_state(params, settings.max_input_chars)
    result = {"state": state.params(), "trace": await run_model_work(request, trace_for, state)}
    if query.intact:
        result["intact"] = await run_model_work(request, trace_for, state, True)
    return result


@router.get("/models/{name}/example", summary="A random held-out input for a model's task")
def example(name: str, seed: int | None = None) -> dict[str, str]:
    try:
        entry = model_info(name)
    except KeyError as error:
        raise BadInput("model", error.args[0], 404) from None
    source, target = get_task(entry.task).sample(random.Random(seed), split="heldout")
    return {"input": source, "expected": target}
