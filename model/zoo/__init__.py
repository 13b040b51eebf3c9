"""Shipped small checkpoints. `manifest.json` says how each was trained and what it measured."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from model.checkpoint import load_checkpoint
from model.config import ModelConfig
from model.tasks import Task, get_task
from model.transformer import Seq2Seq

ZOO_DIR = Path(__file__).parent
MANIFEST = ZOO_DIR / "manifest.json"


@dataclass(frozen=True)
class ZooEntry:
    name: str
    title: str  # one line for a model picker
    task: str
    file: str
    model_config: dict[str, Any]
    switches: dict[str, Any]
    train_config: dict[str, Any]
    steps: int  # steps actually trained
    train_seconds: float
    heldout_seq_accuracy: float | None  # measured after training, greedy decoding, held-out split (None: a text)
    heldout_token_accuracy: float
    heldout_size: int
    size_bytes: int
    default: bool = False
    heldout_loss: float | None = None  # a text's held-out cross-entropy, nats per character
    heldout_bits_per_char: float | None = None

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.model_config)

    @property
    def arch(self) -> str:
        """Its family (model/stacks.py FAMILIES), as its config names it."""
        return self.config.arch


def load_manifest() -> list[ZooEntry]:
    if not MANIFEST.exists():
        return []
    return [ZooEntry(**entry) for entry in json.loads(MANIFEST.read_text())["models"]]


def zoo_names() -> list[str]:
    return [e.name for e in load_manifest()]


def default_entry() -> ZooEntry:
    entries = load_manifest()
    if not entries:
        raise FileNotFoundError("the model zoo is empty: run `python -m model.zoo.build`")
    return next((e for e in entries if e.default), entries[0])


def get_entry(name: str) -> ZooEntry:
    for entry in load_manifest():
        if entry.name == name:
            return entry
    raise KeyError(f"unknown model {name!r}; available: {', '.join(zoo_names())}")


@lru_cache(maxsize=16)
def load_zoo_model(name: str) -> tuple[Seq2Seq, Task, ZooEntry]:
    """Cached: the same model object is shared; callers must not train it in place."""
    entry = get_entry(name)
    model, _ = load_checkpoint(ZOO_DIR / entry.file)
    return model, get_task(entry.task), entry
