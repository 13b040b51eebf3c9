"""One file per trained model: weights, sizes, switches, task and how it was trained."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from model.config import ModelConfig, Switches
from model.families import build_model
from model.transformer import SwitchedModel

FORMAT_VERSION = 1


def checkpoint_bytes(model: SwitchedModel, train_config: Any, history: list[Any], extra: dict | None = None) -> bytes:
    payload = {
        "format": FORMAT_VERSION,
        "model_config": model.config.to_dict(),
        "switches": model.switches.to_dict(),
        "train_config": train_config.to_dict(),
        "final_metrics": history[-1].to_dict() if history else None,
        "extra": extra or {},
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def save_checkpoint(path: str | Path, model: SwitchedModel, train_config: Any, history: list[Any], extra=None) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(checkpoint_bytes(model, train_config, history, extra))


def load_checkpoint(source: str | Path | bytes) -> tuple[SwitchedModel, dict[str, Any]]:
    """Returns (model in eval mode, metadata without the weights)."""
    stream = io.BytesIO(source) if isinstance(source, bytes) else source
    payload = torch.load(stream, map_location="cpu", weights_only=True)
    if payload.get("format") != FORMAT_VERSION:
        raise ValueError(f"checkpoint format {payload.get('format')!r} is not {FORMAT_VERSION}")
    model = build_model(ModelConfig.from_dict(payload["model_config"]), Switches.from_dict(payload["switches"]))
    model.load_state_dict(payload.pop("state_dict"))
    model.eval()
    return model, payload
