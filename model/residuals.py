"""Residual schemes, one class each: what the `x +` of Add & Norm is (model/blocks.py, `add_and_norm`).

A scheme makes, for each sublayer of a model trained with it, the module that adds the sublayer's output to
the stream: `plain` is x + F(x). A scheme with learned weights (a gain on F(x) that starts at zero, as
ReZero's) keeps them in that module, and gives its seed-stacked form (`seed_stacked`, model/seeds.py) so
several seeds still train as one computation. The `residual_scheme` switch, the CLI and the lab read this
registry, so a new scheme is one class registered here (or, for a test, inside the test).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import torch
from torch import nn

from model.config import ModelConfig


class Residual(nn.Module):
    """The sublayer's skip connection: forward(x, out) is the stream after the add, `out` being F(…)."""

    def add(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """Called directly, not through nn.Module's __call__: it runs once per sublayer of every forward."""
        return x + out

    def forward(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return self.add(x, out)


class ResidualScheme:
    name: ClassVar[str]
    title: ClassVar[str]
    learned: ClassVar[bool] = False  # its modules hold weights learned with the model: no other model has them

    def residual(self, config: ModelConfig, stack: str, n_layers: int) -> Residual:
        """The module for one sublayer of a `stack` of `n_layers` layers."""
        return PLAIN_RESIDUAL


PLAIN_RESIDUAL = Residual()  # holds nothing: one instance serves every sublayer that adds plainly

RESIDUAL_SCHEMES: dict[str, ResidualScheme] = {}


def register_residual_scheme(scheme: type[ResidualScheme]) -> type[ResidualScheme]:
    RESIDUAL_SCHEMES[scheme.name] = scheme()
    return scheme


def residual_scheme(name: str) -> ResidualScheme:
    try:
        return RESIDUAL_SCHEMES[name]
    except KeyError:
        raise ValueError(f"residual_scheme: unknown scheme {name!r}; choose one of "
                         f"{' | '.join(RESIDUAL_SCHEMES)}") from None


@contextmanager
def registered_residual_scheme(scheme: type[ResidualScheme]) -> Iterator[type[ResidualScheme]]:
    """A scheme registered for the length of a `with` block (tests add one and take it away again)."""
    register_residual_scheme(scheme)
    try:
        yield scheme
    finally:
        RESIDUAL_SCHEMES.pop(scheme.name, None)


@register_residual_scheme
class Plain(ResidualScheme):
    """x + F(x), as in the 2017 paper."""

    name, title = "plain", "x + F(x)"
