"""Encoder and decoder layers. The sublayer wiring is the whole point of the app, so it is written
out once, in `add_and_norm`, where the two arrangements read like their equations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.attention import MultiHeadAttention
from model.config import SUBLAYERS_OF, ModelConfig, Switches
from model.hooks import HookPoint
from model.layers import FeedForward, Norm
from model.residuals import Residual, ResidualScheme


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


class _Block(nn.Module):
    """What every layer shares: its index and, per sublayer, the skip connection of the model's residual scheme."""

    stack: str

    def __init__(self, config: ModelConfig, index: int, scheme: ResidualScheme):
        super().__init__()
        self.index = index
        n_layers = config.n_layers(self.stack)
        self.skip = nn.ModuleDict({kind: scheme.residual(config, self.stack, n_layers)
                                   for kind in SUBLAYERS_OF[self.stack]})

    def _skip(self, kind: str, inputs: LayerInputs) -> Residual | None:
        """The `x +` of a sublayer, None when its residual is switched off."""
        if not inputs.switches.residual_on(self.stack, self.index, kind):
            return None
        return inputs.skip if inputs.skip is not None else self.skip[kind]


class EncoderBlock(_Block):
    stack = "encoder"

    def __init__(self, config: ModelConfig, index: int, scheme: ResidualScheme):
        super().__init__(config, index, scheme)
        self.hook_resid_pre = HookPoint()
        self.norm_self_attn = _norm(config)
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)
        self.hook_self_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.norm_ffn = _norm(config)
        self.ffn = FeedForward(config.d_model, config.d_ff)
        self.hook_ffn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        def residual(kind: str) -> Residual | None:
            return self._skip(kind, inputs)

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.self_attn(h, h, inputs.self_attn_mask)

        x = self.hook_resid_pre(x)
        x = add_and_norm(x, self_attention, self.norm_self_attn, self.hook_self_attn_out, residual("self_attn"), inputs)
        x = self.hook_resid_mid(x)
        x = add_and_norm(x, self.ffn, self.norm_ffn, self.hook_ffn_out, residual("ffn"), inputs)
        return self.hook_resid_post(x)


class DecoderBlock(_Block):
    stack = "decoder"

    def __init__(self, config: ModelConfig, index: int, scheme: ResidualScheme):
        super().__init__(config, index, scheme)
        self.hook_resid_pre = HookPoint()
        self.norm_self_attn = _norm(config)
        self.self_attn = MultiHeadAttention(config.d_model, config.n_heads)  # masked (causal)
        self.hook_self_attn_out = HookPoint()
        self.hook_resid_mid = HookPoint()
        self.norm_cross_attn = _norm(config)
        self.cross_attn = MultiHeadAttention(config.d_model, config.n_heads)  # Q: decoder, K/V: memory
        self.hook_cross_attn_out = HookPoint()
        self.hook_resid_mid_cross = HookPoint()
        self.norm_ffn = _norm(config)
        self.ffn = FeedForward(config.d_model, config.d_ff)
        self.hook_ffn_out = HookPoint()
        self.hook_resid_post = HookPoint()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, inputs: LayerInputs) -> torch.Tensor:
        def residual(kind: str) -> Residual | None:
            return self._skip(kind, inputs)

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.self_attn(h, h, inputs.self_attn_mask)

        def cross_attention(h: torch.Tensor) -> torch.Tensor:
            return self.cross_attn(h, memory, inputs.cross_attn_mask)

        x = self.hook_resid_pre(x)
        x = add_and_norm(x, self_attention, self.norm_self_attn, self.hook_self_attn_out, residual("self_attn"), inputs)
        x = self.hook_resid_mid(x)
        x = add_and_norm(
            x, cross_attention, self.norm_cross_attn, self.hook_cross_attn_out, residual("cross_attn"), inputs
        )
        x = self.hook_resid_mid_cross(x)
        x = add_and_norm(x, self.ffn, self.norm_ffn, self.hook_ffn_out, residual("ffn"), inputs)
        return self.hook_resid_post(x)
