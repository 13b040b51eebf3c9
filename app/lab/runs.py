"""What a training run is: its spec (the three typed configs that define it) and its record in the run store."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field, fields, replace
from typing import Any

from model.config import ModelConfig, Switches, TrainConfig

STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATUSES = ("done", "failed", "cancelled")
INTERRUPTED = "interrupted: the server stopped before this run finished"


def canonical_json(data: Any) -> str:
    """Sorted keys and no spaces: equal data give equal text, and so equal keys."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, eq=False)
class RunSpec:
    """What defines a training run; two runs with the same spec would produce the same numbers.

    Its key is the hash of its canonical JSON. A spec read back from a store (or a shipped file) keeps the text it
    was stored with, and so its key, even where this code has since added a setting the text does not name: the
    typed configs read such a setting as its default, which is what that run trained with."""

    model: ModelConfig
    switches: Switches
    train: TrainConfig
    _stored: str | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def task(self) -> str:
        return self.train.task

    def __eq__(self, other: object) -> bool:  # equal specs are those with equal keys
        return isinstance(other, RunSpec) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.to_json())

    def with_seed(self, seed: int) -> RunSpec:
        """The same run with another seed; a stored spec stays in its stored form (so its seeds' keys are the
        ones its store holds)."""
        spec = replace(self, train=replace(self.train, seed=seed))
        if self._stored is not None:
            data = json.loads(self._stored)
            data["train_config"]["seed"] = seed
            object.__setattr__(spec, "_stored", canonical_json(data))
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "model_config": self.model.to_dict(), "switches": self.switches.to_dict(),
                "train_config": self.train.to_dict()}

    def to_json(self) -> str:
        return self._stored if self._stored is not None else canonical_json(self.to_dict())

    def key(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """Raises ValueError (ConfigError included) for text that is not a spec of this code's settings."""
        data = json.loads(text)
        if not isinstance(data, dict) or set(data) != {"task", "model_config", "switches", "train_config"}:
            raise ValueError(f"a run spec has task, model_config, switches and train_config; got {text[:80]!r}")
        train = TrainConfig.from_dict({"task": data["task"], **data["train_config"]})
        if train.task != data["task"]:
            raise ValueError(f"a run spec's task {data['task']!r} differs from its train_config's {train.task!r}")
        spec = cls(ModelConfig.from_dict(data["model_config"]), Switches.from_dict(data["switches"]), train)
        object.__setattr__(spec, "_stored", canonical_json(data))
        return spec


@dataclass
class RunRecord:
    id: int
    key: str
    spec: RunSpec
    status: str
    label: str  # free text such as "A: residual on"
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None  # why it failed or was cancelled
    final: dict[str, Any] | None  # the metrics row with the highest step
    steps_done: int
    has_checkpoint: bool
    probes: dict[str, Any] | None = None  # measured on the trained model (model/train/probes.py)

    def to_dict(self) -> dict[str, Any]:
        """As JSON for the API: the spec in the form it was stored in."""
        return {**{f.name: getattr(self, f.name) for f in fields(self)}, "spec": json.loads(self.spec.to_json())}

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> RunRecord:
        data = dict(row)
        data["spec"] = RunSpec.from_json(data["spec"])
        data["final"] = json.loads(data["final"]) if data["final"] is not None else None
        data["probes"] = json.loads(data["probes"]) if data.get("probes") is not None else None
        data["has_checkpoint"] = bool(data["has_checkpoint"])
        return cls(**data)
