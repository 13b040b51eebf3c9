"""The layer of any stack (`Block`, its sublayers from the stack's spec in model/stacks.py). The sublayer wiring is
the whole point of the app, so it is written out once, in `add_and_norm`, where the two arrangements read like
their equations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.attention import MultiHeadAttention
from model.config import ModelConfig, Switches
from model.hooks import HookPoint
from model.layers import FeedForward, Norm
from model.residuals import Residual, ResidualScheme
from model.stacks import StackSpec


@dataclass
class LayerInputs:
    """What every layer of a stack needs besides the stream itself."""

    switches: Switches
    pad_mask: torch.Tensor  # (B, T) True at padding of this stack's own sequence
    self_attn_mask: torch.Tensor  # (B, 1, T, T) or (B, 1, 1, T), True where attention is allowed
    cross_attn_mask: torch.Tensor | None = None  # decoder only: (B, 1, 1, S), True at real source tokens
    skip: Residual | None = None  # a residual scheme the model was not built with (an ablation), for this stack


def add_and_norm(
    x: torch.Tensor,
    sublayer: Callable[[torch.Tensor], torch.Tensor],
    norm: Norm,
    hook_out: HookPoint,
    skip: Residual | None,
    inputs: LayerInputs,
) -> torch.Tensor:
    """Post-LN: LN(x + F(x)).  Pre-LN: x + F(LN(x)).  Residual off (skip None) drops the `x +`.

    `skip.add(x, F)` is the `x +` of the model's residual scheme (model/residuals.py): plain x + F."""
    switches = inputs.switches
    if switches.norm_position == "pre":
        out = hook_out(sublayer(norm(x, switches.norm, inputs.pad_mask)))
        return skip.add(x, out) if skip is not None else out
    out = hook_out(sublayer(x))
    return norm(skip.add(x, out) if skip is not None else out, switches.norm, inputs.pad_mask)


def _norm(config: ModelConfig) -> Norm:
    return Norm(config.d_model, eps=config.norm_eps)


def _sublayer_module(config: ModelConfig, kind: str) -> nn.Module:
    if kind == "ffn":
        return FeedForward(config.d_model, config.d_ff)
    return MultiHeadAttention(config.d_model, config.n_heads)  # self_attn; cross_attn reads Q here, K/V from memory


class Block(nn.Module):
    """One layer of a stack, its sublayers as the stack's spec lists them (model/stacks.py). Each sublayer has
    its norm (`norm_<kind>`), its module (`self_attn`, `cross_attn`, `ffn`), the hook on its output
    (`hook_<kind>_out`), the stream hook after its add & norm, and the skip connection of the model's residual
    scheme (`skip[<kind>]`). Made in this order, so the weights start the same under a seed as they always did."""

    def __init__(self, config: ModelConfig, spec: StackSpec, index: int, scheme: ResidualScheme):
        super().__init__()
        self.stack = spec.name
        self.index = index
        self.skip = nn.ModuleDict({kind: scheme.residual(config, spec.name, config.n_layers(spec.name))
                                   for kind in spec.sublayers})
        setattr(self, spec.streams[0], HookPoint())
        for kind, after in zip(spec.sublayers, spec.streams[1:], strict=True):
            setattr(self, f"norm_{kind}", _norm(config))
            setattr(self, kind, _sublayer_module(config, kind))
            setattr(self, f"hook_{kind}_out", HookPoint())
            setattr(self, after, HookPoint())
        # Names, not modules: stacking seeds (model/seeds.py) replaces the norms and linears after construction.
        self._first = spec.streams[0]
        self._plan = tuple((kind, f"norm_{kind}", f"hook_{kind}_out", after)
                           for kind, after in zip(spec.sublayers, spec.streams[1:], strict=True))

    def _skip(self, kind: str, inputs: LayerInputs) -> Residual | None:
        """The `x +` of a sublayer, None when its residual is switched off."""
        if not inputs.switches.residual_on(self.stack, self.index, kind):
            return None
        return inputs.skip if inputs.skip is not None else self.skip[kind]

    def _sublayer(self, kind: str, inputs: LayerInputs,
                  memory: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        module = self._modules[kind]
        if kind == "self_attn":
            return lambda h: module(h, h, inputs.self_attn_mask)
        if kind == "cross_attn":  # queries from this stack, keys and values from the encoder's memory
            return lambda h: module(h, memory, inputs.cross_attn_mask)
        return module

    def forward(self, x: torch.Tensor, inputs: LayerInputs, memory: torch.Tensor | None = None) -> torch.Tensor:
        modules = self._modules
        x = modules[self._first](x)
        for kind, norm, hook_out, after in self._plan:
            x = add_and_norm(x, self._sublayer(kind, inputs, memory), modules[norm], modules[hook_out],
                             self._skip(kind, inputs), inputs)
            x = modules[after](x)
        return x
