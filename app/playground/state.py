"""The playground's whole state lives in the query string, with the Switches' field names.

parse_state() turns query parameters into a validated PlaygroundState or raises BadInput naming
the parameter and what it allows; PlaygroundState.query() writes the canonical URL back.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlencode

from pydantic import BaseModel, Field, create_model

from app.playground.registry import BadModelName, default_model, model_info
from app.switches import SWITCH_FIELDS, parse_switches, switch_doc
from app.web.errors import BadInput, quoted
from app.web.params import MAX_ID, parse_whole
from model.config import ConfigError, ModelConfig, Switches
from model.tasks import UnknownTokenError, get_task
from model.transformer import check_switches_fit


@dataclass(frozen=True)
class PlaygroundState:
    model: str
    input: str
    switches: Switches
    step: int | None = 0  # None: the last step, the prediction (where the playground opens)

    def params(self, **changes) -> dict[str, str]:
        state = replace(self, **changes) if changes else self
        out = {"model": state.model, "input": state.input}
        for name, value in state.switches.to_dict().items():
            if isinstance(value, bool):
                value = "on" if value else "off"
            elif isinstance(value, list):
                value = ",".join(value)
            out[name] = value
        if state.step is not None:
            out["step"] = str(state.step)
        return out

    def query(self, **changes) -> str:
        return urlencode(self.params(**changes))


def parse_state(params: Mapping[str, str], max_input_chars: int, rng: random.Random | None = None,
                default_step: int | None = 0) -> PlaygroundState:
    """The state the parameters name; without `step`, `default_step` (None: the last step)."""
    name = params.get("model") or default_model()
    try:
        entry = model_info(name)
    except BadModelName as error:
        raise BadInput("model", str(error)) from None
    except KeyError as error:
        raise BadInput("model", error.args[0], 404) from None
    task = get_task(entry.task)
    if params.get("random"):
        text = task.sample(rng or random.Random(), split="heldout")[0]
    else:
        text = params.get("input", task.example)
    text = text.strip()
    if not text:
        raise BadInput("input", "is empty; type a few tokens, e.g. " + task.example)
    if len(text) > max_input_chars:
        raise BadInput("input", f"has {len(text)} characters; at most {max_input_chars} are allowed", 413)
    try:
        tokens = task.src_tokenizer.encode(text)
    except UnknownTokenError as error:
        raise BadInput("input", str(error)) from None
    if len(tokens) > task.max_src_tokens:
        raise BadInput("input", f"has {len(tokens)} tokens; this model takes at most {task.max_src_tokens}", 413)
    switches = parse_switches(params, Switches.from_dict(entry.switches))
    try:
        check_switches_fit(switches, ModelConfig.from_dict(entry.model_config))
    except ConfigError as error:
        raise BadInput(error.field, error.message) from None
    step = _step(params["step"]) if "step" in params else default_step
    return PlaygroundState(entry.name, text, switches, step)


def _step(raw: str) -> int:
    """A step of the forward pass: a whole number from 0 (one past the last shows the last)."""
    step = parse_whole(raw)  # ASCII digits only: isdigit() also takes '²'
    if step is None:
        raise BadInput("step", f"{quoted(raw)} is not a whole number >= 0 (at most {MAX_ID})")
    return step


# The playground's query string as a FastAPI model, from the schema: /playground, its partials and
# /api/trace document and read their parameters through it (parse_state gives them meaning).
PlaygroundQuery = create_model(
    "PlaygroundQuery",
    model=(str | None, Field(None, description=f"zoo model name, or run-<id> for a finished run (id 1..{MAX_ID}); "
                                               "default: the default model")),
    input=(str | None, Field(None, description="source text, e.g. 31415 for reverse")),
    random=(str | None, Field(None, description="any value: a random held-out input instead of `input`")),
    step=(str | None, Field(None, description="which step of the forward pass the page shows: a whole number, "
                                              "0 = the first (past the last shows the last); "
                                              "default: the playground opens on the last, the prediction")),
    **{name: (str | None, Field(None, description=switch_doc(name))) for name in SWITCH_FIELDS},
)


def query_params(query: BaseModel) -> dict[str, str]:
    """The parameters a request gave (the ones it left out take the model's own values)."""
    return {k: v for k, v in query.model_dump().items() if v is not None and k in PlaygroundQuery.model_fields}
