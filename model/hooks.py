"""Named identity modules that expose intermediate tensors, in the style of TransformerLens.

Every interesting tensor passes through a HookPoint. A hook is a function `fn(tensor, hook)`
that may return a replacement tensor (to ablate) or None (to only look). Hooks are always removed
when the `hooks()` context exits, even on error, so none leaks into the next forward pass.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], torch.Tensor | None]
NameFilter = Callable[[str], bool] | Sequence[str] | str | None


class HookPoint(nn.Module):
    """Identity; its module path (set by `name_hook_points`) is the hook's name.

    Hook functions are kept per thread, so that a web server can trace one shared model from
    several request threads at once without one request's hooks seeing another's tensors.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = ""
        self._local = threading.local()

    @property
    def _fns(self) -> list[HookFn]:
        fns = getattr(self._local, "fns", None)
        if fns is None:
            fns = self._local.fns = []
        return fns

    def __getstate__(self):  # threading.local cannot be pickled or deep-copied; hooks are not state
        state = self.__dict__.copy()
        del state["_local"]
        return state

    def __setstate__(self, state) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        # Skips nn.Module's call machinery: a model has ~100 hook points and most forwards hook none.
        fns = getattr(self._local, "fns", None)
        return self.forward(x) if fns else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self._fns:
            result = fn(x, self)
            if result is not None:
                x = result
        return x


def any_hooked(points: Sequence[HookPoint]) -> bool:
    """Whether any of these points has a hook in this thread, so that a fused kernel may skip them."""
    return any(getattr(point._local, "fns", None) for point in points)


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    points = {}
    for name, module in root.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points


def _matcher(names: NameFilter) -> Callable[[str], bool]:
    if names is None:
        return lambda _: True
    if callable(names):
        return names
    if isinstance(names, str):
        return lambda n: n == names
    wanted = set(names)
    return lambda n: n in wanted


class HookedModule(nn.Module):
    """Base for a model whose HookPoints can be hooked by name."""

    def setup_hooks(self) -> None:
        self.hook_points = name_hook_points(self)

    def hook_names(self) -> list[str]:
        return list(self.hook_points)

    @contextmanager
    def hooks(self, fwd_hooks: Sequence[tuple[NameFilter, HookFn]] = ()) -> Iterator[HookedModule]:
        added: list[tuple[HookPoint, HookFn]] = []
        try:
            for names, fn in fwd_hooks:
                match = _matcher(names)
                hits = [p for n, p in self.hook_points.items() if match(n)]
                if not hits and isinstance(names, str):
                    raise KeyError(f"no hook point named {names!r}")
                for point in hits:
                    point._fns.append(fn)
                    added.append((point, fn))
            yield self
        finally:
            for point, fn in added:
                point._fns.remove(fn)

    def run_with_hooks(self, *args, fwd_hooks: Sequence[tuple[NameFilter, HookFn]] = (), **kwargs):
        with self.hooks(fwd_hooks):
            return self(*args, **kwargs)

    @contextmanager
    def caching(self, names_filter: NameFilter = None, detach: bool = True) -> Iterator[dict[str, torch.Tensor]]:
        """Inside the block, every hook that fires is stored in the yielded dict: hook name -> tensor as it
        passed. For any part of the model (`with model.caching() as cache: model.encode(src)`)."""
        cache: dict[str, torch.Tensor] = {}

        def store(x: torch.Tensor, hook: HookPoint) -> None:
            cache[hook.name] = x.detach() if detach else x

        with self.hooks([(names_filter, store)]):
            yield cache

    def run_with_cache(self, *args, names_filter: NameFilter = None, detach: bool = True, **kwargs):
        """Returns (output, cache) where cache maps hook name -> tensor as it passed."""
        with self.caching(names_filter, detach) as cache:
            out = self(*args, **kwargs)
        return out, cache

    def active_hook_count(self) -> int:
        return sum(len(p._fns) for p in self.hook_points.values())


# Ready-made ablations for run_with_hooks.


def zero_head(head: int) -> HookFn:
    """For an attention `hook_z` (B, H, T, d_head): silence one head."""

    def fn(z: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        z = z.clone()
        z[:, head] = 0.0
        return z

    return fn


def mean_ablate() -> HookFn:
    """Replace a tensor by its mean over batch and positions (keeps the average, removes the content)."""

    def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        return x.mean(dim=tuple(range(x.dim() - 1)), keepdim=True).expand_as(x)

    return fn


def zero_ablate() -> HookFn:
    def fn(x: torch.Tensor, hook: HookPoint) -> torch.Tensor:
        return torch.zeros_like(x)

    return fn
