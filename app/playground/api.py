"""JSON mirroring the playground, for notebooks: the same parameter names as the page's URL."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from app.playground.registry import model_info
from app.playground.state import parse_state
from app.playground.traces import trace_for
from app.web.compute import run_model_work
from app.web.dependencies import SettingsDep
from app.web.errors import BadInput
from model.tasks import get_task
from model.zoo import load_manifest

router = APIRouter(prefix="/api", tags=["api"])

OnOff = Annotated[str | None, Query(description="on | off")]


@router.get("/models", summary="The model zoo: every shipped model with its config, switches and accuracy")
def models() -> list[dict[str, Any]]:
    return [asdict(e) for e in load_manifest()]


@router.get("/trace", summary="Trace one input through a model, with switches applied as ablations")
async def trace(
    request: Request,
    settings: SettingsDep,
    model: Annotated[str | None, Query(description="zoo model name; default: the default model")] = None,
    input: Annotated[str | None, Query(description="source text, e.g. 31415 for reverse")] = None,
    residual: OnOff = None,
    residual_self_attn: OnOff = None,
    residual_cross_attn: OnOff = None,
    residual_ffn: OnOff = None,
    residual_off: Annotated[str | None, Query(description="comma list like encoder.1.ffn")] = None,
    norm: Annotated[str | None, Query(description="layer | rms | batch | none")] = None,
    norm_position: Annotated[str | None, Query(description="post | pre")] = None,
    pos_encoding: Annotated[str | None, Query(description="sinusoidal | learned | none")] = None,
    pos_every_layer: OnOff = None,
    causal_mask: OnOff = None,
    memory: Annotated[str | None, Query(description="final | same_depth")] = None,
    intact: Annotated[bool, Query(description="also return the trace without ablation")] = False,
) -> dict[str, Any]:
    """The response holds per-layer stream norms, sublayer contributions, norm statistics, attention
    patterns, the logit lens, gradients and the ordered steps of the forward pass."""
    state = parse_state(request.query_params, settings.max_input_chars)
    result = {"state": state.params(), "trace": await run_model_work(request, trace_for, state)}
    if intact:
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
