"""Traces for the playground and the API, cached by (model, input, switches); Switches are frozen, so they are
the key themselves.

A classroom tends to flip the same switches on the same examples, so most requests are hits. The
gradients (a backward pass, a fifth of a trace's cost) are kept apart: the playground computes them
only when its Gradients tab is opened; the API and the lessons get traces with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

from app.playground.registry import ModelInfo, forget_on_new_store, load_model
from app.playground.state import PlaygroundState
from app.web.errors import BadInput
from app.web.settings import get_settings
from model.config import ModelConfig, Switches
from model.tasks import UnknownTokenError
from model.trace import compare_streams, expected_gradients, layer_streams, trace


def _bad_input(error: Exception) -> BadInput:
    return BadInput("input", str(error))


@lru_cache(maxsize=get_settings().trace_cache_size)
def _cached_trace(model_name: str, text: str, switches: Switches) -> dict:
    """Without gradients (see gradients_for)."""
    model, task, _ = load_model(model_name)
    try:
        return trace(model, task, text, switches, with_gradients=False)
    except (UnknownTokenError, ValueError) as error:
        raise _bad_input(error) from None


@lru_cache(maxsize=get_settings().trace_cache_size)
def _cached_gradients(model_name: str, text: str, switches: Switches) -> dict | None:
    model, task, _ = load_model(model_name)
    try:
        return expected_gradients(model, task, text, switches)
    except (UnknownTokenError, ValueError) as error:
        raise _bad_input(error) from None


def _switches(state: PlaygroundState, intact: bool) -> Switches:
    return load_model(state.model)[0].switches if intact else state.switches


def trace_for(state: PlaygroundState, intact: bool = False) -> dict:
    """The trace as the state asks (ablated), or with the model's own switches (intact); no gradients."""
    return _cached_trace(state.model, state.input, _switches(state, intact))


def gradients_for(state: PlaygroundState, intact: bool = False) -> dict | None:
    """‖∂loss/∂(layer input)‖ for the expected answer (None: the input has none), as trace() gives them."""
    return _cached_gradients(state.model, state.input, _switches(state, intact))


def full_trace_for(state: PlaygroundState, intact: bool = False) -> dict:
    """The trace with its gradients, as model.trace.trace() returns it."""
    return {**trace_for(state, intact), "gradients": gradients_for(state, intact)}


@lru_cache(maxsize=get_settings().trace_cache_size)
def _intact_streams(model_name: str, text: str) -> dict:
    """The intact model's layer streams on an input: every ablation of it is compared with them."""
    model, task, _ = load_model(model_name)
    intact = _cached_trace(model_name, text, model.switches)
    return layer_streams(model, task, text, model.switches, intact["output_tokens"])


@lru_cache(maxsize=get_settings().trace_cache_size)
def _cached_comparison(model_name: str, text: str, switches: Switches) -> dict:
    model, task, _ = load_model(model_name)
    intact = _cached_trace(model_name, text, model.switches)
    return compare_streams(model, task, text, switches, intact["output_tokens"],
                           _intact_streams(model_name, text))


for _cache in (_cached_trace, _cached_gradients, _intact_streams, _cached_comparison):
    forget_on_new_store(_cache.cache_clear)


def comparison_for(state: PlaygroundState) -> dict:
    """Intact vs ablated streams, layer by layer, on the same inputs."""
    return _cached_comparison(state.model, state.input, state.switches)


@dataclass
class Resolved:
    """What one playground request needs, looked up once and passed down: the model's entry and sizes,
    the switches it was trained with, and the trace as the state asks. The intact trace and the
    intact-vs-ablated comparison are made only if a view reads them (only when the switches differ)."""

    state: PlaygroundState
    entry: ModelInfo
    trained: Switches  # what the model was trained with
    trace: dict

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.entry.model_config)

    @property
    def ablated(self) -> bool:
        return self.state.switches != self.trained

    @cached_property
    def intact(self) -> dict | None:
        return _cached_trace(self.state.model, self.state.input, self.trained) if self.ablated else None

    @cached_property
    def comparison(self) -> dict | None:
        return comparison_for(self.state) if self.ablated else None


def resolve(state: PlaygroundState) -> Resolved:
    """The request's one model lookup (a trace already cached needs no other)."""
    model, _, entry = load_model(state.model)
    return Resolved(state, entry, model.switches, trace_for(state))
