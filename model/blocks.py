"""Encoder and decoder layers. The sublayer wiring is the whole point of the app, so it is written
out once, in `add_and_norm`, where the two arrangements read like their equations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from model.attention import MultiHeadAttention
from model.config import ModelConfig, Switches
from model.hooks import HookPoint
from model.layers import FeedForward, Norm


@dataclass
class LayerInputs:
    """What every layer of a stack needs besides the stream itself."""

    switches: Switches
    pad_mask: torch.Tensor  # (B, T) True at padding of this stack's own sequence
    self_attn_mask: torch.Tensor  # (B, 1, T, T) or (B, 1, 1, T), True where attention is allowed
    cross_attn_mask: torch.Tensor | None = None  # decoder only: (B, 1, 1, S), True at real source tokens


def add_and_norm(
    x: torch.Tensor,
    sublayer: Callable[[torch.Tensor], torch.Tensor],
    norm: Norm,
    hook_out: HookPoint,
    residual: bool,
    inputs: LayerInputs,
) -> torch.Tensor:
    """Post-LN: LN(x + F(x)).  Pre-LN: x + F(LN(x)).  Residual off drops the `x +`."""
    switches = inputs.switches
    if switches.norm_position == "pre":
        out = hook_out(sublayer(norm(x, switches.norm, inputs.pad_mask)))
        return x + out if residual else out
    out = hook_out(sublayer(x))
    return norm(x + out if residual else out, switches.norm, inputs.pad_mask)


def _norm(config: ModelConfig) -> Norm:
    return Norm(config.d_model, eps=config.norm_eps)


class EncoderBlock(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        self.index = index
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
        def residual(kind: str) -> bool:
            return inputs.switches.residual_on("encoder", self.index, kind)

        def self_attention(h: torch.Tensor) -> torch.Tensor:
            return self.self_attn(h, h, inputs.self_attn_mask)

        x = self.hook_resid_pre(x)
        x = add_and_norm(x, self_attention, self.norm_self_attn, self.hook_self_attn_out, residual("self_attn"), inputs)
        x = self.hook_resid_mid(x)
        x = add_and_norm(x, self.ffn, self.norm_ffn, self.hook_ffn_out, residual("ffn"), inputs)
        return self.hook_resid_post(x)


class DecoderBlock(nn.Module):
    def __init__(self, config: ModelConfig, index: int):
        super().__init__()
        self.index = index
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
        def residual(kind: str) -> bool:
            return inputs.switches.residual_on("decoder", self.index, kind)

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
