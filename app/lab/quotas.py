"""Store quotas, checked before a run is queued: the checkpoint a run will write, and the store's size."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from app.lab.runs import RunSpec
from app.lab.store import RunStore
from model.config import ModelConfig

BYTES_PER_PARAMETER = 4  # float32; a checkpoint is the weights and buffers plus a few kilobytes of metadata
METADATA_BYTES = 64 << 10  # configs and final metrics
BYTES_PER_TENSOR = 512  # torch.save's record of each tensor


class QuotaExceeded(Exception):
    """A run would not fit in the store; the message names the limit."""


@lru_cache(maxsize=256)
def checkpoint_mb(config: ModelConfig) -> float:
    """The size of a run's checkpoint, from its model's parameter count (built on the meta device: no memory)."""
    import torch

    from model.config import Switches
    from model.families import build_model

    with torch.device("meta"):
        model = build_model(config, Switches())
    tensors = model.state_dict().values()  # weights and buffers, as the checkpoint holds them
    size = sum(t.numel() for t in tensors) * BYTES_PER_PARAMETER + len(tensors) * BYTES_PER_TENSOR + METADATA_BYTES
    return size / (1 << 20)


@dataclass(frozen=True)
class Quotas:
    max_checkpoint_mb: float = 20.0
    max_store_mb: float = 2000.0

    def check(self, specs: list[RunSpec], store: RunStore) -> None:
        sizes = [checkpoint_mb(spec.model) for spec in specs]
        for size in sizes:
            if size > self.max_checkpoint_mb:
                raise QuotaExceeded(f"this model's checkpoint would take {size:.0f} MB; this server keeps at most "
                                    f"{self.max_checkpoint_mb:g} MB per run (ADDNORM_MAX_CHECKPOINT_MB): make it "
                                    "smaller (fewer layers, a smaller d_model or d_ff)")
        used = store.size_mb()
        if sizes and used + sum(sizes) > self.max_store_mb:
            raise QuotaExceeded(f"the run store holds {used:.0f} MB and this would take {sum(sizes):.0f} MB more; "
                                f"its limit is {self.max_store_mb:g} MB (ADDNORM_MAX_STORE_MB)")
