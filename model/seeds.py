"""K seeds of one model trained as one computation.

`stack_models` turns K models of the same configuration (each initialised under its own seed) into one
Seq2Seq whose every parameter carries a leading seed dimension: a Linear's weight is (K, out, in), a norm's
γ is (K, D). The stream folds the seeds into the batch: rows [k·B, (k+1)·B) belong to seed k, so everything
that has no parameters (attention, masks, greedy decoding, the loss) runs unchanged, and the modules that
do have parameters apply each seed's own to its own rows (batched matmuls). Nothing mixes seeds: seed k's
loss depends only on seed k's parameters, so the sum of the K losses has exactly the K separate gradients.

`FlatParameters` then lays every parameter (and gradient) out as a view into one (K, P) tensor, so that
the optimizer, the gradient norm per seed and zeroing the gradients are one op each.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from model.layers import Norm, PositionalEncoding
from model.norms import NormKind
from model.transformer import Seq2Seq

# Gradients are views into one (K, P) buffer, so each is strided across seeds; autograd warns once that
# this is not the layout it would pick. It still accumulates in place into the view (tested).
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")


def _stack(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach() for t in tensors])


def _seed_of_rows(n_seeds: int, rows: int, device: torch.device) -> torch.Tensor:
    """(rows, 1): the seed each folded row belongs to."""
    return torch.arange(n_seeds, device=device).repeat_interleave(rows // n_seeds)[:, None]


class SeedLinear(nn.Module):
    """K Linears applied to their own rows: y[k] = x[k] W[k]ᵀ + b[k], one batched matmul."""

    def __init__(self, linears: list[nn.Linear]):
        super().__init__()
        self.weight = nn.Parameter(_stack([m.weight for m in linears]))  # (K, out, in)
        self.bias = nn.Parameter(_stack([m.bias for m in linears]))  # (K, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        K, out_features, in_features = self.weight.shape
        folded = x.reshape(K, -1, in_features)  # (K, rows/K · T, in)
        y = torch.baddbmm(self.bias[:, None, :], folded, self.weight.transpose(1, 2))
        return y.view(*x.shape[:-1], out_features)


class SeedTable(nn.Module):
    """K embedding tables (K, V, D): each row looks its ids up in its own seed's table."""

    def __init__(self, tables: list[nn.Embedding]):
        super().__init__()
        self.weight = nn.Parameter(_stack([t.weight for t in tables]))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.weight[_seed_of_rows(self.weight.size(0), ids.size(0), ids.device), ids]  # (rows, T, D)


class SeedPositionalEncoding(PositionalEncoding):
    """The sinusoidal table is shared (it is fixed); each seed has its own learned positions (K, L, D)."""

    def __init__(self, encodings: list[PositionalEncoding]):
        max_len, d_model = encodings[0].sinusoidal.shape
        super().__init__(max_len, d_model)
        self.learned = SeedTable([e.learned for e in encodings])

    def forward(self, length: int, kind: str, rows: int = 1) -> torch.Tensor:
        if kind != "learned":
            return super().forward(length, kind, rows)
        table = self.learned.weight[:, :length]  # (K, T, D)
        return table.repeat_interleave(rows // table.size(0), dim=0)  # (rows, T, D)


class SeedNorm(Norm):
    """A Norm whose γ, β and running statistics are (K, D); a kind's statistics are its seed_statistics (per seed
    for batch statistics). Training only: the probes' ways of using BatchNorm run on one seed's model."""

    def __init__(self, norms: list[Norm]):
        super().__init__(norms[0].weight.numel(), norms[0].eps, norms[0].momentum)
        self.weight = nn.Parameter(_stack([n.weight for n in norms]))
        self.bias = nn.Parameter(_stack([n.bias for n in norms]))
        self.running_mean = _stack([n.running_mean for n in norms])
        self.running_var = _stack([n.running_var for n in norms])

    def _fused(self, x: torch.Tensor, norm: NormKind) -> torch.Tensor | None:
        normalized = norm.fused(x, self.eps)  # the kernel without γ, β: each seed's come after
        return None if normalized is None else self._affine(normalized, norm)

    def _affine(self, normalized: torch.Tensor, norm: NormKind) -> torch.Tensor:
        K, D = self.weight.shape
        folded = normalized.reshape(K, -1, D)
        if not norm.shifts:
            out = folded * self.weight[:, None, :]
        else:
            out = torch.addcmul(self.bias[:, None, :], folded, self.weight[:, None, :])
        return out.view(normalized.shape)

    def _statistics(self, norm, x, pad_mask, update_running):
        return norm.seed_statistics(self, x, pad_mask, update_running)


def _seeded(module: nn.Module, peers: list[nn.Module]) -> nn.Module | None:
    """The seed-stacked version of a module that holds parameters, or None to look inside it."""
    if isinstance(module, nn.Linear):
        return SeedLinear(peers)
    if isinstance(module, nn.Embedding):
        return SeedTable(peers)
    if isinstance(module, Norm):
        return SeedNorm(peers)
    if isinstance(module, PositionalEncoding):
        return SeedPositionalEncoding(peers)
    if hasattr(module, "seed_stacked"):  # a module that says how (a learned residual scheme's, model/residuals.py)
        return module.seed_stacked(peers)
    return None


def _replace_children(target: nn.Module, sources: list[nn.Module]) -> None:
    for name, child in list(target.named_children()):
        peers = [source._modules[name] for source in sources]
        seeded = _seeded(child, peers)
        if seeded is None:
            _replace_children(child, peers)
        else:
            setattr(target, name, seeded)


def stack_models(models: list[Seq2Seq]) -> Seq2Seq:
    """One Seq2Seq computing all of `models` at once on rows folded by seed (see the module docstring).
    A single model comes back as it is: its plain modules compute the same, with fewer ops."""
    config, switches = models[0].config, models[0].switches
    if any(m.config != config or m.switches != switches for m in models):
        raise ValueError("only models of one configuration and one set of switches can be stacked")
    if len(models) == 1:
        return models[0]
    stacked = copy.deepcopy(models[0])
    _replace_children(stacked, models)
    stacked.seed_stacked = True
    stacked.setup_hooks()  # the replaced norms bring new hook points; name them
    return stacked


def is_stacked(model: Seq2Seq) -> bool:
    """Whether the parameters carry a leading seed dimension (even when one seed is left of several)."""
    return getattr(model, "seed_stacked", False)


def seed_state(model: Seq2Seq, index: int) -> dict[str, torch.Tensor]:
    """The state dict of the plain model of seed `index` (every stacked entry has the seed first)."""
    if not is_stacked(model):
        return {name: value.detach().clone() for name, value in model.state_dict().items()}
    return {name: value[index].detach().clone() for name, value in model.state_dict().items()}


class FlatParameters:
    """Every parameter of a stacked model as a view into one (K, P) leaf, every gradient as a view into
    its (K, P) gradient: an optimizer over `flat` steps the whole model in one fused op, and the gradient
    norm of each seed is one row norm."""

    def __init__(self, model: Seq2Seq):
        self.model = model
        self.params = list(model.parameters())
        self.stacked = is_stacked(model)  # a plain model is one seed: a (1, P) flat whose views keep its shapes
        n_seeds = self.params[0].size(0) if self.stacked else 1
        self.sizes = [p.numel() // n_seeds for p in self.params]
        self.flat = nn.Parameter(torch.cat([p.detach().reshape(n_seeds, -1) for p in self.params], dim=1))
        self.flat.grad = torch.zeros_like(self.flat)
        # Buffers in the state dict (batch-norm running statistics) carry the seed dimension too.
        state = model.state_dict(keep_vars=True)
        self._seed_buffers = [(module, name) for module_name, module in model.named_modules()
                              for name, buffer in module._buffers.items()
                              if buffer is not None and _join(module_name, name) in state]
        self._bind()

    def _bind(self) -> None:
        start = 0
        n_seeds = self.flat.size(0)
        for param, size in zip(self.params, self.sizes, strict=True):
            shape = (n_seeds, *param.shape[1:]) if self.stacked else param.shape
            param.data = self.flat.data[:, start : start + size].view(shape)
            param.grad = self.flat.grad[:, start : start + size].view(shape)
            start += size

    def zero_grad(self) -> None:
        self.flat.grad.zero_()

    def grad_norms(self) -> torch.Tensor:
        """(K,) the norm of all of each seed's gradients."""
        return self.flat.grad.norm(dim=1)

    def clip_(self, max_norm: float, norms: torch.Tensor) -> None:
        """Per seed, as clip_grad_norm_ would clip that seed's model alone."""
        self.flat.grad.mul_((max_norm / (norms + 1e-6)).clamp(max=1.0)[:, None])

    def keep(self, rows: list[int], optimizer: torch.optim.Optimizer) -> None:
        """Drop every seed not in `rows` (indices into the current seeds), with its optimizer state."""
        index = torch.tensor(rows, dtype=torch.long)
        old = self.flat
        state = optimizer.state.pop(old, {})
        self.flat = nn.Parameter(old.detach()[index].clone())
        self.flat.grad = torch.zeros_like(self.flat)
        optimizer.param_groups[0]["params"] = [self.flat]
        optimizer.state[self.flat] = {k: (v[index].clone() if v.dim() == 2 else v) for k, v in state.items()}
        for module, name in self._seed_buffers:
            module._buffers[name] = module._buffers[name][index].clone()
        self._bind()


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
