"""The measured results shipped with the app: every run of the precomputed plans (app.lab.precompute),
as metrics and probes without checkpoints, so a fresh install shows every claim and lesson experiment.

    python -m app.lab.results            train what is missing, then write model/zoo/results/
                                         (the command is app/teaching/ship_results.py)

They live beside the zoo in model/zoo/results/: `runs.json.gz` (the runs and the plans' sweeps, with the
command, date, seeds and machine they came from), `verdicts.json` (the claim report measured from them by
this code) and a README saying the same in words. At start the app reads them into a read-only store in
memory (`shipped_store`); claims and lessons use it until the app's own store holds every plan on every
seed (`complete`), i.e. until a learner has measured them again here.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import json
import os
import platform
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

from app.lab.precompute import PLANS, SEEDS, same_cells
from app.lab.runs import RunSpec
from app.lab.store import RunStore
from model.zoo import ZOO_DIR

RESULTS_DIR = ZOO_DIR / "results"
RUNS_FILE = "runs.json.gz"
VERDICTS_FILE = "verdicts.json"
COMMAND = "python -m app.lab.results"
FORMAT = 1
# Per-step layer statistics are most of a run's size; claims read them over the first 100 steps (gradient
# ratios) and at evaluation steps (drift); every other step keeps its scalars only.
LAYER_KEYS = ("layer_grad_norms", "layer_input_mean", "layer_input_std")
FULL_ROWS_UNTIL = 100


def thin(row: dict) -> dict:
    keep_layers = row["step"] <= FULL_ROWS_UNTIL or row.get("heldout_seq_accuracy") is not None
    return {k: _round(v) for k, v in row.items() if keep_layers or k not in LAYER_KEYS}


def _round(value):
    """6 significant digits: the figures shown have at most 4, and the file shrinks by half."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, list):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


def export_results(store: RunStore, plans: dict, seeds: tuple[int, ...], settings, out_dir: Path = RESULTS_DIR) -> Path:
    """Write every plan (as a sweep) and every seed's finished run of its cells to out_dir/runs.json.gz."""
    sweeps, runs, seen = [], [], set()
    for name, items in plan_items(plans, settings, seeds).items():
        sweeps.append({"name": name, "items": [{**i, "spec": i["spec"].to_json()} for i in items]})
        for item in items:
            for seed in seeds:
                spec = item["spec"].with_seed(seed)
                record = store.finished_run(spec)
                if record is None:
                    raise RuntimeError(f"{name}: {item['variant']} × {item['depth']} seed {seed} has no finished "
                                       f"run; train it first ({COMMAND})")
                if record.key in seen:  # plans share cells (pre_ln × 2 is in several)
                    continue
                seen.add(record.key)
                runs.append({"spec": spec.to_json(), "label": record.label, "steps_done": record.steps_done,
                             "started_at": record.started_at, "finished_at": record.finished_at,
                             "probes": record.probes,
                             "metrics": [thin(row) for row in store.metrics(record.id)]})
    data = {"format": FORMAT, "command": COMMAND, "created": datetime.date.today().isoformat(),
            "seeds": list(seeds), "machine": machine(), "plans": list(plans), "sweeps": sweeps, "runs": runs}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RUNS_FILE
    # mtime=0: the same results give the same bytes
    with gzip.GzipFile(path, "wb", mtime=0) as f:
        f.write(json.dumps(data, separators=(",", ":")).encode())
    return path


class ShippedStore(RunStore):
    """A RunStore in memory holding the shipped runs; `about` is where and when they were measured."""

    about: dict
    digest: str  # of the file: identifies the results a shipped report was measured from

    def fingerprint(self) -> str:
        return f"shipped:{self.digest}"  # the same on every start, so the shipped report stays fresh


def read_shipped(path: Path) -> ShippedStore | None:
    """None when the app ships no results (a checkout without them)."""
    if not path.exists():
        return None
    raw = path.read_bytes()
    data = json.loads(gzip.decompress(raw))
    store = ShippedStore(Path(":memory:"))
    store.about = {k: data[k] for k in ("command", "created", "seeds", "machine", "plans")}
    store.digest = hashlib.sha256(raw).hexdigest()[:16]
    for run in data["runs"]:
        store.import_run(RunSpec.from_json(run["spec"]), run)
    for sweep in data["sweeps"]:
        store.create_sweep(sweep["name"], [{**i, "spec": RunSpec.from_json(i["spec"])} for i in sweep["items"]])
    return store


@lru_cache(maxsize=1)
def shipped_store() -> ShippedStore | None:
    return read_shipped(RESULTS_DIR / RUNS_FILE)


@lru_cache(maxsize=1)
def shipped_report() -> dict | None:
    """The claim report measured from the shipped results (written by `COMMAND`)."""
    try:
        return json.loads((RESULTS_DIR / VERDICTS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _plan_settings(settings):
    """The plans train up to 12 layers whatever this server lets a learner ask for (ADDNORM_MAX_LAYERS)."""
    from app.lab.sweeps import DEPTHS

    return settings.model_copy(update={"max_layers": max(settings.max_layers, max(DEPTHS))})


def plan_items(plans: dict, settings, seeds: tuple[int, ...]) -> dict[str, list[dict]]:
    from app.lab.sweeps import sweep_items

    plan_settings = _plan_settings(settings)
    return {name: sweep_items(base, depths, variants, plan_settings, seeds)
            for name, (base, depths, variants) in plans.items()}


def _newest_sweeps(store: RunStore) -> dict[str, dict]:
    newest: dict[str, dict] = {}
    for sweep in store.sweeps(limit=1000):  # newest first
        newest.setdefault(sweep["name"], sweep)
    return newest


def run_specs(items: dict[str, list[dict]], seeds: tuple[int, ...]) -> dict[str, RunSpec]:
    """Every run of the plans once (plans share cells), by key."""
    return {spec.key(): spec for plan in items.values() for item in plan
            for spec in (item["spec"].with_seed(seed) for seed in seeds)}


class ResultSource:
    """Which store claims and lessons read: the app's own once its newest sweep of every plan has the plan's
    cells and every run of them has finished ("measured here"), else the shipped results ("shipped"); the app's
    own when nothing is shipped. What it finds is worked out once per state of the app's store (its
    fingerprint), under a lock: request threads share it."""

    def __init__(self, store: RunStore, settings, shipped: ShippedStore | None = None,
                 plans: dict = PLANS, seeds: tuple[int, ...] = SEEDS):
        self.local, self.settings, self.shipped = store, settings, shipped
        self.plans, self.seeds = plans, seeds
        self._lock = threading.Lock()
        self._state: tuple[str, dict] | None = None  # (local fingerprint, what _scan found)

    def _scan(self) -> dict:
        fingerprint = self.local.fingerprint()
        with self._lock:
            if self._state is None or self._state[0] != fingerprint:
                self._state = (fingerprint, self._look())
            return self._state[1]

    def _look(self) -> dict:
        items = plan_items(self.plans, self.settings, self.seeds)
        newest = _newest_sweeps(self.local)
        here = {name: newest[name] for name, plan in items.items()
                if name in newest and same_cells(newest[name]["items"], plan)}
        runs = [self.local.finished_run(spec) for spec in run_specs(items, self.seeds).values()]
        started = min((sweep["created_at"] for sweep in here.values()), default=None)
        return {"items": items, "total": len(runs), "done": sum(r is not None for r in runs),
                "complete": len(here) == len(items) and all(runs),
                "running": {name for name, sweep in here.items() if not sweep["stopped_at"]},
                "started_at": started,
                "done_since": sum(r is not None and (r.finished_at or 0) >= started for r in runs) if started else 0}

    def local_complete(self) -> bool:
        return self._scan()["complete"]

    def current(self) -> tuple[RunStore, str]:
        if self.shipped is None or self.local_complete():
            return self.local, "measured here"
        return self.shipped, "shipped"

    def measure_here(self, sweeps) -> list[int]:
        """Train every plan on this server, as sweeps of the lab (app.lab.sweeps.SweepScheduler); a plan whose
        newest sweep here has the plan's cells and is not stopped is left to it. Returns the new sweeps' ids."""
        with self._lock:  # two clicks at once make one set of sweeps
            state = self._look()
            ids = [sweeps.create(name, plan) for name, plan in state["items"].items() if name not in state["running"]]
            self._state = None
        return ids

    def progress_here(self) -> dict:
        """Runs of the plans finished in this server's store, of how many; whether measuring here is under way
        (a plan's sweep is training here) and an estimate of the seconds left from the pace since it started."""
        state = self._scan()
        started = bool(state["running"]) and not state["complete"]
        eta = None
        if started and state["done_since"]:
            rate = state["done_since"] / max(time.time() - state["started_at"], 1e-9)
            eta = round((state["total"] - state["done"]) / rate)
        return {"done": state["done"], "total": state["total"], "started": started, "eta_s": eta}


def machine() -> dict:
    """Where results were measured: the figures depend on the machine only through float rounding, but say it."""
    import torch

    return {"host": platform.node(), "system": platform.platform(terse=True), "cpus": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__}


if __name__ == "__main__":  # the command writes the verdicts too, so it lives with them, above the lab
    from app.teaching.ship_results import main

    sys.exit(main())
