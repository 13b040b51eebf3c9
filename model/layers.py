"""The norm module (its kind chosen by name at call time), the feed-forward sublayer, embeddings and positional
encodings."""

from __future__ import annotations

import math

import torch
from torch import nn

from model.hooks import HookPoint, any_hooked
from model.norms import NormKind, norm_kind


class Norm(nn.Module):
    """One set of parameters (γ, β, running statistics) that can normalise as any norm kind (model/norms.py).

    The kind is an argument of forward, so a model trained with LayerNorm can be run with the
    norm switched to "none" (identity) or another kind without retraining.

    Hooks: hook_in is the norm's input; hook_mean / hook_std are the statistics the norm divides
    by — per token (B, T, 1) for layer and rms (rms: mean 0, std = root mean square), per
    feature (1, 1, D) for batch; for
    "none" the per-token statistics of the input, shown but not used. hook_normalized is
    (x − mean) / std before γ and β; hook_out is the norm's output.
    """

    def __init__(self, d_model: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(d_model))  # γ
        self.bias = nn.Parameter(torch.zeros(d_model))  # β
        self.register_buffer("running_mean", torch.zeros(d_model))
        self.register_buffer("running_var", torch.ones(d_model))
        # Ways BatchNorm can be used that this model avoids; a probe turns them on (model/train/probes.py):
        # statistics of the batch at hand even in eval mode, and padding positions counted in them.
        self.batch_statistics_at_eval = False
        self.count_padding = False
        self.hook_in = HookPoint()  # what arrives at the norm
        self.hook_mean = HookPoint()
        self.hook_std = HookPoint()
        self.hook_normalized = HookPoint()
        self.hook_out = HookPoint()
        # A plain tuple (not registered as submodules): the fused path checks these on every forward, and
        # nn.Module's attribute lookup for submodules is slow enough to show in a batch-1 forward.
        self._points = (self.hook_in, self.hook_mean, self.hook_std, self.hook_normalized, self.hook_out)

    def forward(self, x: torch.Tensor, kind: str, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D); pad_mask: (B, T) True at padding (ignored by batch statistics)."""
        norm = norm_kind(kind)
        if not any_hooked(self._points):
            fused = self._fused(x, norm)
            if fused is not None:
                return fused
        x = self.hook_in(x)
        mean, std = self._statistics(norm, x, pad_mask, update_running=True)
        mean = self.hook_mean(mean)
        std = self.hook_std(std)
        if not norm.normalizes:
            return self.hook_out(self.hook_normalized(x))
        normalized = self.hook_normalized((x - mean) / std)
        return self.hook_out(self._affine(normalized, norm))

    def _fused(self, x: torch.Tensor, norm: NormKind) -> torch.Tensor | None:
        # Nobody is looking inside: torch's fused kernels compute the same thing (tested) in one op.
        return norm.fused(x, self.eps, self.weight, self.bias if norm.shifts else None)

    def quiet(self, x: torch.Tensor, kind: str, pad_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The same computation without firing hooks or updating running statistics."""
        norm = norm_kind(kind)
        if not norm.normalizes:
            return x
        mean, std = self._statistics(norm, x, pad_mask, update_running=False)
        return self._affine((x - mean) / std, norm)

    def _affine(self, normalized: torch.Tensor, norm: NormKind) -> torch.Tensor:
        if not norm.shifts:
            return normalized * self.weight
        return normalized * self.weight + self.bias

    def _statistics(self, norm: NormKind, x: torch.Tensor, pad_mask: torch.Tensor | None,
                    update_running: bool) -> tuple[torch.Tensor, torch.Tensor]:
        return norm.statistics(self, x, pad_mask, update_running)

    def statistics(self, x: torch.Tensor, kind: str, pad_mask: torch.Tensor | None = None,
                   update_running: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) this norm divides by, as the kind computes them."""
        return self._statistics(norm_kind(kind), x, pad_mask, update_running)


class FeedForward(nn.Module):
    """Position-wise: W_out · ReLU(W_in · x)."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.W_in = nn.Linear(d_model, d_ff)
        self.W_out = nn.Linear(d_ff, d_model)
        self.hook_pre = HookPoint()  # (B, T, d_ff) before the non-linearity
        self.hook_post = HookPoint()  # after it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.W_out(self.hook_post(torch.relu(self.hook_pre(self.W_in(x)))))


class TokenEmbedding(nn.Module):
    """Lookup scaled by √d_model (as in the 2017 paper); initialised so entries have unit scale."""

    def __init__(self, vocab_size: int, d_model: int):
        super().__init__()
        self.scale = math.sqrt(d_model)
        self.table = nn.Embedding(vocab_size, d_model)
        nn.init.normal_(self.table.weight, std=1 / self.scale)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids) * self.scale


def sinusoidal_table(max_len: int, d_model: int) -> torch.Tensor:
    """PE[pos, 2i] = sin(pos / 10000^(2i/d)), PE[pos, 2i+1] = cos(pos / 10000^(2i/d))."""
    position = torch.arange(max_len).unsqueeze(1)
    frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    table = torch.zeros(max_len, d_model)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


def rotation_for_offset(offset: int, d_model: int) -> torch.Tensor:
    """The matrix M_k with PE(pos + k) = M_k · PE(pos) for every pos: a 2×2 rotation per frequency."""
    frequency = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
    m = torch.zeros(d_model, d_model)
    cos, sin = torch.cos(offset * frequency), torch.sin(offset * frequency)
    for i in range(d_model // 2):
        # [sin(a+b); cos(a+b)] = [[cos b, sin b], [-sin b, cos b]] · [sin a; cos a]
        m[2 * i, 2 * i], m[2 * i, 2 * i + 1] = cos[i], sin[i]
        m[2 * i + 1, 2 * i], m[2 * i + 1, 2 * i + 1] = -sin[i], cos[i]
    return m


class PositionalEncoding(nn.Module):
    """Sinusoidal (fixed) and learned tables side by side; the kind is chosen at call time."""

    def __init__(self, max_len: int, d_model: int):
        super().__init__()
        self.register_buffer("sinusoidal", sinusoidal_table(max_len, d_model), persistent=False)
        self.learned = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.learned.weight, std=0.1)

    def forward(self, length: int, kind: str, rows: int = 1) -> torch.Tensor:
        """(1, length, D) table to add to a stream of `rows` sequences; zeros when kind == 'none'.
        (`rows` matters only to a seed-stacked table, whose seeds each hold their own learned positions.)"""
        if length > self.sinusoidal.size(0):
            raise ValueError(f"sequence of {length} tokens is longer than max_len {self.sinusoidal.size(0)}")
        if kind == "sinusoidal":
            return self.sinusoidal[:length].unsqueeze(0)
        if kind == "learned":
            return self.learned.weight[:length].unsqueeze(0)
        if kind == "none":
            return self.sinusoidal.new_zeros(1, length, self.sinusoidal.size(1))
        raise ValueError(f"pos_encoding: unknown kind {kind!r}")


OUTPUT_PROJECTIONS = ("W_o", "W_out")  # a sublayer's last Linear: what it adds to the residual stream


@torch.no_grad()
def initialize(model: nn.Module, scheme: str) -> None:
    """Re-initialise every Linear of a Seq2Seq by `scheme` (under the run's torch seed, right after construction).

    default  PyTorch's nn.Linear init, U(±1/√fan_in) for weights and biases, as constructed: nothing changes;
    xavier   Xavier/Glorot uniform weights, zero biases;
    small    GPT-2's: normal(0, 0.02) weights, zero biases, and each sublayer's output projection (attention
             W_o, feed-forward W_out) scaled by 1/√(2·layers of its stack) so the stream does not grow with depth.
    Embeddings and learned positions keep their own init in every scheme.
    """
    if scheme == "default":
        return
    if scheme not in ("xavier", "small"):
        raise ValueError(f"init: unknown scheme {scheme!r}")
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear):
            continue
        nn.init.zeros_(module.bias)
        if scheme == "xavier":
            nn.init.xavier_uniform_(module.weight)
            continue
        std = 0.02
        if name.rsplit(".", 1)[-1] in OUTPUT_PROJECTIONS:
            stack = name.split(".", 1)[0]
            std /= math.sqrt(2 * model.config.n_layers(stack))
        nn.init.normal_(module.weight, std=std)
