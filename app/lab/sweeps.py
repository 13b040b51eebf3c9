"""Depth sweeps: the same task trained at several depths under a few switch settings (claims R3,
N2, N4). A sweep is a list of run specs; a background scheduler feeds them to the job runner one
at a time, and the results are simply the runs with those specs (so a finished cell replays).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any

from app.lab.jobs import QueueFull, RayJobRunner
from app.lab.quotas import QuotaExceeded
from app.lab.store import RunSpec, RunStore
from app.web.errors import BadInput
from model.config import ModelConfig, Switches, TrainConfig
from model.train import steps_to_reach


@dataclass(frozen=True)
class Variant:
    """A change to a sweep's base run: switch values and training settings, typed as model/config.py declares them."""

    switches: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)


# "pre_ln" is the baseline most lessons compare with.
VARIANTS: dict[str, Variant] = {
    "pre_ln": Variant({"norm_position": "pre"}),
    "post_ln": Variant({"norm_position": "post"}),
    "post_ln_warmup": Variant({"norm_position": "post"}, {"warmup_steps": 200}),
    "no_residual": Variant({"norm_position": "pre", "residual": False}),
    "no_norm": Variant({"norm_position": "pre", "norm": "none"}),
    "batch_norm": Variant({"norm_position": "pre", "norm": "batch"}),
    "pe_every_layer": Variant({"norm_position": "pre", "pos_every_layer": True}),
    "no_causal_mask": Variant({"norm_position": "pre", "causal_mask": False}),
}
DEPTHS = (1, 2, 3, 4, 6, 8, 12)
log = logging.getLogger(__name__)
MAX_RUNS = 30
SWEEP_STOPPED = "the sweep was stopped"
TARGET = 0.99


def variant_spec(base: RunSpec, variant: Variant, depth: int) -> RunSpec:
    """The base run with a variant's changes, at `depth` encoder and decoder layers."""
    switches = Switches.from_dict(base.switches).replace(**variant.switches)
    model_config = replace(ModelConfig.from_dict(base.model_config), n_encoder_layers=depth, n_decoder_layers=depth)
    train_config = replace(TrainConfig.from_dict(base.train_config), **variant.train)
    return RunSpec(base.task, model_config.to_dict(), switches.to_dict(), train_config.to_dict())


def sweep_items(base: RunSpec, depths: list[int], variants: list[str], settings) -> list[dict]:
    """One item per (variant, depth) of the base run, validated before anything trains."""
    if not depths:
        raise BadInput("depths", f"choose at least one depth from {', '.join(map(str, DEPTHS))}")
    if not variants:
        raise BadInput("variants", f"choose at least one of {' | '.join(VARIANTS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise BadInput("variants", f"{unknown[0]!r} is not allowed; choose from {' | '.join(VARIANTS)}")
    bad_depth = [d for d in depths if d not in DEPTHS or d > settings.max_layers]
    if bad_depth:
        allowed = ", ".join(str(d) for d in DEPTHS if d <= settings.max_layers)
        raise BadInput("depths", f"{bad_depth[0]} is not allowed; choose from {allowed}")
    if len(depths) * len(variants) > MAX_RUNS:
        raise BadInput("depths", f"{len(depths) * len(variants)} runs is more than a sweep may have ({MAX_RUNS})")
    return [{"variant": variant, "depth": depth, "spec": variant_spec(base, VARIANTS[variant], depth)}
            for variant in variants for depth in sorted(depths)]


def sweep_results(store: RunStore, sweep: dict) -> list[dict]:
    """Per item: its latest run's status, final held-out accuracy and the step it first reached TARGET."""
    rows = []
    for item in sweep["items"]:
        # a finished run of this spec (maybe another sweep's) wins over one still waiting
        record = store.find_done(item["spec"]) or store.find_latest(item["spec"])
        final = record.final if record and record.final else {}
        done = record is not None and record.status == "done"
        rows.append({
            "variant": item["variant"], "depth": item["depth"],
            "status": record.status if record else "queued", "run_id": record.id if record else None,
            "steps_done": record.steps_done if record else 0, "steps": item["spec"].train_config["steps"],
            "heldout_seq_accuracy": final.get("heldout_seq_accuracy"),
            "steps_to_target": steps_to_reach(store.metrics(record.id), TARGET) if done else None,
        })
    return rows


class SweepScheduler:
    """Feeds sweep runs to the runner one at a time, so a sweep never fills the learners' queue."""

    def __init__(self, runner: RayJobRunner, store: RunStore):
        self.runner = runner
        self.store = store
        self._pending: deque[tuple[int, RunSpec, str]] = deque()  # (sweep id, run spec, label)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="sweeps")

    def start(self) -> None:
        for sweep in reversed(self.store.sweeps(limit=20)):  # resume what a restart interrupted
            self._enqueue_unfinished(sweep)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def create(self, name: str, items: list[dict]) -> int:
        sweep_id = self.store.create_sweep(name, items)
        self._enqueue_unfinished(self.store.sweep(sweep_id))
        return sweep_id

    def cancel(self, sweep_id: int) -> None:
        """Stop a whole sweep: runs not started yet never start, and its queued or training runs stop."""
        self.store.stop_sweep(sweep_id)
        with self._lock:
            self._pending = deque(job for job in self._pending if job[0] != sweep_id)
        for item in self.store.sweep(sweep_id)["items"]:
            latest = self.store.find_latest(item["spec"])
            if latest is not None and latest.status in ("queued", "running"):
                self.runner.cancel(latest.id, SWEEP_STOPPED)

    def _enqueue_unfinished(self, sweep: dict) -> None:
        if sweep["stopped_at"]:
            return
        with self._lock:
            for item in sweep["items"]:
                latest = self.store.find_latest(item["spec"])
                if latest is None or latest.status not in ("done", "queued", "running"):
                    label = f"sweep {sweep['id']}: {item['variant']} × {item['depth']}"
                    self._pending.append((sweep["id"], item["spec"], label))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                ready = self._pending and self.runner.waiting_count() == 0
                job = self._pending.popleft() if ready else None
            if job is not None:
                self._submit(*job)
            time.sleep(0.2)

    def _submit(self, sweep_id: int, spec: RunSpec, label: str) -> None:
        try:
            self.runner.submit(spec, label, background=True)
        except QueueFull:  # learners took the last places meanwhile: this run waits for the next free one
            with self._lock:
                self._pending.appendleft((sweep_id, spec, label))
        except QuotaExceeded as error:  # the store is full: the rest of the sweep cannot be kept either
            log.warning("sweep %d stops: %s", sweep_id, error)
            self.cancel(sweep_id)
