"""The norm kinds, one class each: what it divides by, whether it shifts by β, its fused kernel, and its
statistics on a seed-stacked model. The `norm` switch, the CLI, the lab's form, the trace and the pages read
this registry, so a new kind is one class registered here (or, for a test, inside the test):

    @register_norm
    class ScaleNorm(NormKind):
        name, title = "scale", "ScaleNorm"
        def statistics(self, norm, x, pad_mask, update_running):
            return torch.zeros_like(x[..., :1]), x.norm(dim=-1, keepdim=True) / math.sqrt(x.size(-1))

A kind's statistics are (mean, std) of the shape it divides by: per token (B, T, 1), or per feature
(1, 1, D) for batch statistics. `norm` is the Norm module (model/layers.py) holding γ, β, ε and, for
batch statistics, the running mean and variance.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from model.layers import Norm

Statistics = tuple[torch.Tensor, torch.Tensor]


class NormKind:
    name: ClassVar[str]
    title: ClassVar[str]  # what a page calls it when the label catalogue has no entry for it
    shifts: ClassVar[bool] = True  # adds β after scaling by γ (RMSNorm does not)
    normalizes: ClassVar[bool] = True  # False: the identity; its statistics are shown, not used
    remark: ClassVar[str | None] = None  # a chart label (chart.<remark>) the γ/β chart adds to its title

    def statistics(self, norm: Norm, x: torch.Tensor, pad_mask: torch.Tensor | None,
                   update_running: bool) -> Statistics:
        raise NotImplementedError

    def seed_statistics(self, norm: Norm, x: torch.Tensor, pad_mask: torch.Tensor | None,
                        update_running: bool) -> Statistics:
        """The statistics on a seed-stacked model (rows folded by seed, model/seeds.py): per-token statistics
        never mix rows, so they are the same computation."""
        return self.statistics(norm, x, pad_mask, update_running)

    def fused(self, x: torch.Tensor, eps: float, weight: torch.Tensor | None = None,
              bias: torch.Tensor | None = None) -> torch.Tensor | None:
        """The whole norm as one torch kernel (used when no hook looks inside), or None when there is none."""
        return None


NORMS: dict[str, NormKind] = {}


def register_norm(kind: type[NormKind]) -> type[NormKind]:
    NORMS[kind.name] = kind()
    return kind


def norm_kind(name: str) -> NormKind:
    try:
        return NORMS[name]
    except KeyError:
        raise ValueError(f"norm: unknown kind {name!r}; choose one of {' | '.join(NORMS)}") from None


@contextmanager
def registered_norm(kind: type[NormKind]) -> Iterator[type[NormKind]]:
    """A kind registered for the length of a `with` block (tests add one and take it away again)."""
    register_norm(kind)
    try:
        yield kind
    finally:
        NORMS.pop(kind.name, None)


@register_norm
class LayerNorm(NormKind):
    name, title = "layer", "LayerNorm"

    def statistics(self, norm, x, pad_mask, update_running):
        return x.mean(-1, keepdim=True), torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + norm.eps)

    def fused(self, x, eps, weight=None, bias=None):
        return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


@register_norm
class RMSNorm(NormKind):
    name, title, shifts, remark = "rms", "RMSNorm", False, "rms_no_beta"

    def statistics(self, norm, x, pad_mask, update_running):
        return torch.zeros_like(x[..., :1]), torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.eps)

    def fused(self, x, eps, weight=None, bias=None):
        return F.rms_norm(x, x.shape[-1:], weight, eps)


@register_norm
class BatchNorm(NormKind):
    """Per feature, over every real position of the batch; in eval mode the running statistics (unless a probe
    asks for the batch's own, Norm.batch_statistics_at_eval)."""

    name, title = "batch", "BatchNorm"

    def statistics(self, norm, x, pad_mask, update_running):
        if not norm.training and not norm.batch_statistics_at_eval:
            return norm.running_mean.view(1, 1, -1), torch.sqrt(norm.running_var.view(1, 1, -1) + norm.eps)
        keep = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if pad_mask is not None and not norm.count_padding:
            keep = ~pad_mask
        tokens = x[keep]  # (N, D): every real position of every sequence in the batch
        mean = tokens.mean(0)
        var = tokens.var(0, unbiased=False)
        if update_running and norm.training:
            with torch.no_grad():
                n = tokens.size(0)
                norm.running_mean.lerp_(mean.detach(), norm.momentum)
                norm.running_var.lerp_(var.detach() * n / max(n - 1, 1), norm.momentum)
        return mean.view(1, 1, -1), torch.sqrt(var.view(1, 1, -1) + norm.eps)

    def seed_statistics(self, norm, x, pad_mask, update_running):
        """Each seed's statistics over its own rows; γ, β and the running statistics are (K, D). Training only:
        the probes' ways of using BatchNorm run on one seed's model."""
        K, D = norm.weight.shape
        rows = x.size(0)
        if not norm.training:
            return _per_row(norm.running_mean, rows), torch.sqrt(_per_row(norm.running_var, rows) + norm.eps)
        keep = torch.ones(x.shape[:2], dtype=x.dtype) if pad_mask is None else (~pad_mask).to(x.dtype)
        weights = keep.reshape(K, -1, 1)  # (K, rows/K · T, 1): 1 at every real position of seed k
        tokens = x.reshape(K, -1, D)
        n = weights.sum(1)  # (K, 1)
        mean = (tokens * weights).sum(1) / n  # (K, D)
        var = ((tokens - mean[:, None, :]).pow(2) * weights).sum(1) / n
        if update_running:
            with torch.no_grad():
                norm.running_mean.lerp_(mean.detach(), norm.momentum)
                norm.running_var.lerp_(var.detach() * n / (n - 1).clamp(min=1), norm.momentum)
        return _per_row(mean, rows), torch.sqrt(_per_row(var, rows) + norm.eps)


def _per_row(stat: torch.Tensor, rows: int) -> torch.Tensor:
    """(K, D) per-seed statistics -> (rows, 1, D), one per folded row."""
    K, D = stat.shape
    return stat[:, None, None, :].expand(K, rows // K, 1, D).reshape(rows, 1, D)


@register_norm
class NoNorm(NormKind):
    name, title, normalizes, remark = "none", "none", False, "norm_unused"

    def statistics(self, norm, x, pad_mask, update_running):  # shown on the page, not used
        return x.mean(-1, keepdim=True), x.std(-1, keepdim=True, unbiased=False)
