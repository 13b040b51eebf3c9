"""JSON mirroring the playground, for notebooks: the same parameter names as the page's URL."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import Field, create_model

from app.playground.compute import run_model_work
from app.playground.registry import BadModelName, model_info
from app.playground.state import PlaygroundQuery, parse_state, query_params, random_input
from app.playground.traces import full_trace_for
from app.web.dependencies import SettingsDep
from app.web.errors import BadInput, api_errors
from model.config import ModelConfig
from model.tasks import get_task
from model.zoo import load_manifest

router = APIRouter(prefix="/api", tags=["api"])


# The query string of /api/trace: the playground's URL parameters, and one more.
TraceQuery = create_model(
    "TraceQuery", __base__=PlaygroundQuery,
    intact=(bool, Field(False, description="also return the trace without ablation")),
)


@router.get("/models", summary="The model zoo: every shipped model with its family (arch), config, switches and "
                                "accuracy")
def models() -> list[dict[str, Any]]:
    return [{**asdict(e), "arch": e.arch} for e in load_manifest()]


@router.get("/trace", summary="Trace one input through a model, with switches applied as ablations",
            responses=api_errors(404, 413, 422))
async def trace(request: Request, settings: SettingsDep, query: Annotated[TraceQuery, Query()]) -> dict[str, Any]:
    """The response holds per-layer stream norms, sublayer contributions, norm statistics, attention
    patterns, the logit lens, gradients and the ordered steps of the forward pass."""
    state = parse_state(query_params(query), settings.max_input_chars)
    result = {"state": state.params(), "trace": await run_model_work(request, full_trace_for, state)}
    if query.intact:
        result["intact"] = await run_model_work(request, full_trace_for, state, True)
    return result


@router.get("/models/{name}/example", summary="A random held-out input for a model's task",
            responses=api_errors(404, 422))
def example(name: str, seed: int | None = None) -> dict[str, str | None]:
    try:
        entry = model_info(name)
    except BadModelName as error:
        raise BadInput("model", str(error)) from None
    except KeyError as error:
        raise BadInput("model", error.args[0], 404) from None
    task = get_task(entry.task)
    source = random_input(task, ModelConfig.from_dict(entry.model_config), random.Random(seed))
    expected = None if task.reads_text else task.target(source)  # a text has no one right continuation
    return {"input": source, "expected": expected}
