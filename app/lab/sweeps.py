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

from app.lab.jobs import JobRequest, QueueFull, RayJobRunner
from app.lab.quotas import QuotaExceeded
from app.lab.runs import RunRecord, RunSpec
from app.lab.store import RunStore
from app.web.errors import BadInput, quoted
from model.config import ConfigError
from model.transformer import check_switches_fit


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
    # every skip cut except cross-attention's: cutting that one too leaves the decoder reading the source only
    # through attention weights, a bottleneck that fails at any depth (claim R3 is about depth)
    "no_residual_keep_cross": Variant({"norm_position": "pre", "residual_self_attn": False, "residual_ffn": False}),
    "no_norm": Variant({"norm_position": "pre", "norm": "none"}),
    # under Xavier init a model without any norm starts with much larger activations (claim N4 depends on it)
    "pre_ln_xavier": Variant({"norm_position": "pre"}, {"init": "xavier"}),
    "no_norm_xavier": Variant({"norm_position": "pre", "norm": "none"}, {"init": "xavier"}),
    "batch_norm": Variant({"norm_position": "pre", "norm": "batch"}),
    "pe_every_layer": Variant({"norm_position": "pre", "pos_every_layer": True}),
    "post_ln_pe_every_layer": Variant({"norm_position": "post", "pos_every_layer": True}),
    "learned_pe": Variant({"norm_position": "pre", "pos_encoding": "learned"}),
    "no_pe": Variant({"norm_position": "pre", "pos_encoding": "none"}),
    "no_causal_mask": Variant({"norm_position": "pre", "causal_mask": False}),
}
DEPTHS = (1, 2, 3, 4, 6, 8, 12)
log = logging.getLogger(__name__)
MAX_RUNS = 30
SWEEP_SEEDS = 5  # seeds per cell unless the form says otherwise: a sweep's differences must outlast the seed
SWEEP_STOPPED = "the sweep was stopped"
TARGET = 0.99


def variant_spec(base: RunSpec, variant: Variant, depth: int) -> RunSpec:
    """The base run with a variant's changes, at `depth` encoder and decoder layers."""
    return RunSpec(replace(base.model, n_encoder_layers=depth, n_decoder_layers=depth),
                   base.switches.replace(**variant.switches), replace(base.train, **variant.train))


def sweep_items(base: RunSpec, depths: list[int], variants: list[str], settings,
                seeds: tuple[int, ...] | None = None) -> list[dict]:
    """One item per (variant, depth) of the base run, each trained on `seeds` (default: the base run's own),
    validated before anything trains."""
    seeds = list(seeds or (base.train.seed,))
    if not depths:
        raise BadInput("depths", f"choose at least one depth from {', '.join(map(str, DEPTHS))}")
    if not variants:
        raise BadInput("variants", f"choose at least one of {' | '.join(VARIANTS)}")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise BadInput("variants", f"{quoted(unknown[0])} is not allowed; choose from {' | '.join(VARIANTS)}")
    bad_depth = [d for d in depths if d not in DEPTHS or d > settings.max_layers]
    if bad_depth:
        allowed = ", ".join(str(d) for d in DEPTHS if d <= settings.max_layers)
        raise BadInput("depths", f"{bad_depth[0]} is not allowed; choose from {allowed}")
    if len(depths) * len(variants) > MAX_RUNS:
        raise BadInput("depths", f"{len(depths) * len(variants)} runs is more than a sweep may have ({MAX_RUNS})")
    items = [{"variant": variant, "depth": depth, "seeds": seeds,
              "spec": variant_spec(base, VARIANTS[variant], depth).with_seed(seeds[0])}
             for variant in variants for depth in sorted(depths)]
    for item in items:  # per-layer switches must name layers every depth has
        spec = item["spec"]
        try:
            check_switches_fit(spec.switches, spec.model)
        except ConfigError as error:
            raise BadInput(error.field, f"{error.message} at depth {item['depth']}") from None
    return items


def item_runs(store: RunStore, item: dict) -> list[RunRecord | None]:
    """Each seed's run of a sweep item: a finished one (maybe another sweep's) before one still waiting."""
    specs = [item["spec"].with_seed(seed) for seed in item.get("seeds") or [item["spec"].train.seed]]
    return [store.run_for(spec) for spec in specs]


def sweep_results(store: RunStore, sweep: dict) -> list[dict]:
    """Per item, over its seeds: a status, the mean final held-out accuracy and its range, and the mean step at
    which the seeds that got there first reached TARGET (with how many did)."""
    return [_item_result(store, item) for item in sweep["items"]]


def _item_result(store: RunStore, item: dict) -> dict:
    records = item_runs(store, item)
    statuses = [r.status if r else "queued" for r in records]
    status = next((s for s in ("running", "queued", "failed", "cancelled") if s in statuses), "done")
    done = [r for r in records if r is not None and r.status == "done"]
    finals = [a for a in ((r.final or {}).get("heldout_seq_accuracy") for r in done) if a is not None]
    reached = [s for s in (store.steps_to_reach(r.id, TARGET) for r in done) if s is not None]
    return {
        "variant": item["variant"], "depth": item["depth"], "status": status,
        "run_id": records[0].id if records[0] else None, "run_ids": [r.id for r in records if r],
        "seeds": len(records), "steps_done": min((r.steps_done if r else 0) for r in records),
        "steps": item["spec"].train.steps,
        "heldout_seq_accuracy": sum(finals) / len(finals) if finals else None,
        "heldout_range": (min(finals), max(finals)) if len(finals) > 1 else None,
        "steps_to_target": sum(reached) / len(reached) if reached else None, "reached": len(reached),
        # when its seeds (trained together) started, and when the last one ended (None until every seed is done)
        "started_at": min((r.started_at for r in records if r and r.started_at), default=None),
        "finished_at": max(r.finished_at or 0 for r in done) if len(done) == len(records) else None,
    }


def time_left(rows: list[dict], now: float) -> float | None:
    """About how many seconds the sweep's unfinished runs take: their steps still to train at the pace of the
    runs that finished (seconds per step), or while none has, of the ones training. None: no pace yet."""
    finished = [r for r in rows if r["finished_at"] and r["started_at"]]
    timed = [(r["finished_at"] - r["started_at"], r["steps"]) for r in finished]
    if not timed:
        timed = [(now - r["started_at"], r["steps_done"]) for r in rows
                 if r["status"] == "running" and r["started_at"] and r["steps_done"]]
    seconds, steps = sum(t for t, _ in timed), sum(n for _, n in timed)
    if steps <= 0 or seconds <= 0:
        return None
    remaining = sum(r["steps"] - r["steps_done"] for r in rows if r["status"] in ("queued", "running"))
    return remaining * seconds / steps


class SweepScheduler:
    """Feeds sweep runs to the runner one at a time, so a sweep never fills the learners' queue."""

    def __init__(self, runner: RayJobRunner, store: RunStore):
        self.runner = runner
        self.store = store
        self._pending: deque[tuple[int, RunSpec, tuple[int, ...], str]] = deque()  # (sweep id, spec, seeds, label)
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
            for record in item_runs(self.store, item):
                if record is not None and record.status in ("queued", "running"):
                    self.runner.cancel(record.id, SWEEP_STOPPED)

    def _enqueue_unfinished(self, sweep: dict) -> None:
        if sweep["stopped_at"]:
            return
        with self._lock:
            for item in sweep["items"]:
                records = item_runs(self.store, item)
                if any(r is None or r.status not in ("done", "queued", "running") for r in records):
                    label = f"sweep {sweep['id']}: {item['variant']} × {item['depth']}"
                    seeds = tuple(item.get("seeds") or [item["spec"].train.seed])
                    self._pending.append((sweep["id"], item["spec"], seeds, label))

    def _loop(self) -> None:
        while not self._stopping.is_set():
            with self._lock:
                ready = self._pending and self.runner.waiting_count() == 0
                job = self._pending.popleft() if ready else None
            if job is not None:
                self._submit(*job)
            time.sleep(0.2)

    def _submit(self, sweep_id: int, spec: RunSpec, seeds: tuple[int, ...], label: str) -> None:
        try:  # every seed of the item in one job; the seeds already stored are replayed
            self.runner.submit_jobs([JobRequest(spec, seeds, label, background=True)])
        except QueueFull:  # learners took the last places meanwhile: this run waits for the next free one
            with self._lock:
                self._pending.appendleft((sweep_id, spec, seeds, label))
        except QuotaExceeded as error:  # the store is full: the rest of the sweep cannot be kept either
            log.warning("sweep %d stops: %s", sweep_id, error)
            self.cancel(sweep_id)
