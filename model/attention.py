"""Scaled dot-product attention written out by hand, so that every pattern can be seen."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.hooks import HookPoint, any_hooked


def scaled_dot_product(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """softmax(q kᵀ / √d) v.  q: (B, H, Tq, d), k/v: (B, H, Tk, d), mask: broadcastable to
    (B, H, Tq, Tk), True where a query may look. Returns (out, pattern, scores)."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk)
    if mask is not None:
        # The most negative finite number rather than -inf: its softmax weight is exactly 0, and a
        # row with every key masked comes out uniform instead of NaN.
        scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    pattern = torch.softmax(scores, dim=-1)
    return pattern @ v, pattern, scores


class MultiHeadAttention(nn.Module):
    """Self-attention when `context` is the stream itself, cross-attention when it is the memory."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.W_q = nn.Linear(d_model, d_model)
        self.W_k = nn.Linear(d_model, d_model)
        self.W_v = nn.Linear(d_model, d_model)
        self.W_o = nn.Linear(d_model, d_model)
        self.hook_q = HookPoint()  # (B, H, Tq, d_head)
        self.hook_k = HookPoint()  # (B, H, Tk, d_head)
        self.hook_v = HookPoint()
        self.hook_scores = HookPoint()  # (B, H, Tq, Tk), before softmax; masked entries = float min
        self.hook_pattern = HookPoint()  # (B, H, Tq, Tk), rows sum to 1
        self.hook_z = HookPoint()  # (B, H, Tq, d_head), per-head output before W_o
        # A plain tuple, as in Norm: the fused path checks these on every forward.
        self._points = (self.hook_q, self.hook_k, self.hook_v, self.hook_scores, self.hook_pattern, self.hook_z)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.view(B, T, self.n_heads, D // self.n_heads).transpose(1, 2)  # (B, H, T, d_head)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        q = self.hook_q(self._split(self.W_q(x)))
        k = self.hook_k(self._split(self.W_k(context)))
        v = self.hook_v(self._split(self.W_v(context)))
        if not any_hooked(self._points):
            # Nobody is looking inside: torch's fused kernel computes the same softmax(q kᵀ/√d) v (tested) about
            # twice as fast in training. (It differs only for a query with every key masked, which the masks
            # here never make: key 0 is always a real token.)
            z = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            return self._merge(z)
        z, pattern, scores = scaled_dot_product(q, k, v, mask)
        self.hook_scores(scores)
        # The pattern hook may replace the pattern (e.g. to ablate), so z is recomputed from it.
        hooked = self.hook_pattern(pattern)
        if hooked is not pattern:
            z = hooked @ v
        return self._merge(self.hook_z(z))

    def _merge(self, z: torch.Tensor) -> torch.Tensor:
        B, H, T, d = z.shape
        return self.W_o(z.transpose(1, 2).reshape(B, T, H * d))  # (B, Tq, D)
