"""The playground's whole state lives in the query string, with the Switches' field names.

parse_state() turns query parameters into a validated PlaygroundState or raises BadInput naming
the parameter and what it allows; PlaygroundState.query() writes the canonical URL back.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel, Field, create_model

from app.playground.registry import BadModelName, ModelInfo, default_model, model_info
from app.switches import SWITCH_FIELDS, apply_switches, parse_switches, switch_doc
from app.web.errors import BadInput, quoted
from app.web.params import MAX_ID, parse_whole
from model.config import ConfigError, ModelConfig, Switches
from model.one_stack_trace import max_input_tokens
from model.tasks import Task, UnknownTokenError, get_task
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
        out |= {name: switch_text(value) for name, value in state.switches.to_dict().items()}
        if state.step is not None:
            out["step"] = str(state.step)
        return out

    def query(self, **changes) -> str:
        return urlencode(self.params(**changes))


def switch_text(value: bool | str | list[str] | tuple[str, ...]) -> str:
    """A switch's value as the playground's URL writes it: on/off, a choice, a comma-separated list."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list | tuple):
        return ",".join(value)
    return value


def parse_state(params: Mapping[str, str], max_input_chars: int, rng: random.Random | None = None,
                default_step: int | None = 0) -> PlaygroundState:
    """The state the query parameters name; without `step`, `default_step` (None: the last step)."""
    entry, task = _model(params.get("model"))
    config = ModelConfig.from_dict(entry.model_config)
    text = random_input(task, config, rng or random.Random()) if params.get("random") else params.get("input")
    text = _input(task, config, text, max_input_chars)
    switches = _switches(entry, parse_switches(params, Switches.from_dict(entry.switches)))
    step = _step(params["step"]) if "step" in params else default_step
    return PlaygroundState(entry.name, text, switches, step)


def state_of(model: str, text: str | None, changes: Mapping[str, Any], max_input_chars: int,
             step: int | None = 0) -> PlaygroundState:
    """The state of typed values, checked as parse_state checks a query: `changes` are switch values (Switches'
    field names and types) over the model's own; `text` None is the task's example. Lessons build theirs here."""
    entry, task = _model(model)
    switches = _switches(entry, apply_switches(Switches.from_dict(entry.switches), changes))
    return PlaygroundState(entry.name, _input(task, ModelConfig.from_dict(entry.model_config), text, max_input_chars),
                           switches, step)


def _model(name: str | None) -> tuple[ModelInfo, Task]:
    try:
        entry = model_info(name or default_model())
    except BadModelName as error:
        raise BadInput("model", str(error)) from None
    except KeyError as error:
        raise BadInput("model", error.args[0], 404) from None
    return entry, get_task(entry.task)


def example_input(task: Task, config: ModelConfig) -> str:
    """The input a model's page opens with: its task's example (a BERT reading a text: with a character masked)."""
    return task.masked_example if task.reads_text and config.arch == "encoder_only" else task.example


def random_input(task: Task, config: ModelConfig, rng: random.Random) -> str:
    """A held-out input: a line of a held-out passage for a text (a BERT's with characters masked)."""
    if task.reads_text:
        return task.line(rng, masked=config.arch == "encoder_only")
    return task.sample(rng, split="heldout")[0]


def _longest_input(task: Task, config: ModelConfig) -> int:
    return max_input_tokens(config, task) if task.reads_text else task.max_src_tokens


def _input(task: Task, config: ModelConfig, text: str | None, max_input_chars: int) -> str:
    example = example_input(task, config)
    text = example if text is None else text
    if not task.reads_text:  # a text's spaces are characters it reads
        text = text.strip()
    if not text.strip():
        raise BadInput("input", "is empty; type a few tokens, e.g. " + example)
    if len(text) > max_input_chars:
        raise BadInput("input", f"has {len(text)} characters; at most {max_input_chars} are allowed", 413)
    try:
        tokens = task.src_tokenizer.encode(text)
    except UnknownTokenError as error:
        raise BadInput("input", str(error)) from None
    longest = _longest_input(task, config)
    if len(tokens) > longest:
        raise BadInput("input", f"has {len(tokens)} tokens; this model takes at most {longest}", 413)
    return text


def _switches(entry: ModelInfo, switches: Switches) -> Switches:
    """The switches, if the model has every layer they name."""
    try:
        check_switches_fit(switches, ModelConfig.from_dict(entry.model_config))
    except ConfigError as error:
        raise BadInput(error.field, error.message) from None
    return switches


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
