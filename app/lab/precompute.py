"""Fill the run store with the runs the lessons and claims need, on several seeds, so a classroom
server answers at once.

    python -m app.lab.precompute [--seeds 0-4] [--workers 2] [--only NAME]

Uses the data dir of the app's settings (ADDNORM_DATA_DIR). Each configuration trains all its seeds
together in one Ray task of the app's job engine (model.train.MultiSeedRun), so five seeds cost little more than one;
a seed stops once it reaches 99% held-out exact answers. Each seed is stored as its own run, and
runs already in the store are skipped, so running it again only trains what is missing. Each plan
also becomes a sweep on /train/sweeps (its cells are the first seed's runs).
"""

from __future__ import annotations

import argparse
import sys
import time

from app.lab.cluster import ray_instance
from app.lab.form import build_spec
from app.lab.jobs import JobRequest, RayJobRunner
from app.lab.runs import FINAL_STATUSES, RunSpec
from app.lab.store import RunStore
from app.lab.store_opening import store_to_train_in
from app.lab.sweeps import TARGET, sweep_items
from app.web.settings import get_settings
from model.config import Switches

SEEDS = (0, 1, 2, 3, 4)
# name -> (base run, depths, variants). The lessons cite these by name.
BASE = build_spec({"task": "reverse", "steps": 600, "seed": 0, "stop_at": TARGET}, Switches())
PLANS: dict[str, tuple[RunSpec, list[int], list[str]]] = {
    "depth-residual-norm": (BASE, [2, 4, 6], ["pre_ln", "post_ln", "post_ln_warmup", "no_residual",
                                               "no_residual_keep_cross", "no_norm", "pre_ln_xavier",
                                               "no_norm_xavier"]),
    # the deep end of the same comparisons (claims R3, N4 are about depth): a separate plan, since every
    # variant at 12+12 layers would cost more than all the rest together
    "depth-12": (BASE, [12], ["pre_ln", "no_residual_keep_cross", "no_norm", "pre_ln_xavier", "no_norm_xavier"]),
    "pe-every-layer": (BASE, [2, 4, 6], ["pre_ln", "pe_every_layer", "post_ln", "post_ln_pe_every_layer"]),
    "position-encodings": (BASE, [2], ["pre_ln", "learned_pe", "no_pe"]),
    "batch-vs-layer-norm": (BASE, [2], ["pre_ln", "batch_norm"]),
    "causal-mask-off": (BASE, [2], ["pre_ln", "no_causal_mask"]),
}


def _work(store: RunStore, plans: dict, seeds: tuple[int, ...], settings) -> list[tuple[RunSpec, str, list[int]]]:
    """(configuration, label, seeds still missing) for every configuration of every plan; each plan recorded as
    a sweep, again when the plan changed (new variants or seeds), since claims read the newest sweep of a plan."""
    newest = {}
    for sweep in store.sweeps(limit=1000):  # newest first
        newest.setdefault(sweep["name"], sweep)
    work: dict[str, tuple[RunSpec, str, list[int]]] = {}
    for name, (base, depths, variants) in plans.items():
        items = sweep_items(base, depths, variants, settings, seeds)
        if name not in newest or not same_cells(newest[name]["items"], items):
            store.create_sweep(name, items)
        for item in items:
            spec = item["spec"]
            missing = [s for s in seeds if store.find_done(spec.with_seed(s)) is None]
            if missing and spec.with_seed(0).key() not in work:
                work[spec.with_seed(0).key()] = (spec, f"{name}: {item['variant']} × {item['depth']}", missing)
    # deepest first: the longest jobs start early, so the last minutes are not one worker alone
    return sorted(work.values(), key=lambda w: -w[0].model.n_encoder_layers)


def same_cells(a: list[dict], b: list[dict]) -> bool:
    """Whether two sweeps' items train the same cells on the same seeds."""
    def cells(items: list[dict]) -> set:
        return {(i["variant"], i["depth"], i["spec"].key(), tuple(i.get("seeds") or ())) for i in items}

    return cells(a) == cells(b)


def precompute(store: RunStore, plans: dict, workers: int = 2, settings=None, log=print,
               seeds: tuple[int, ...] = SEEDS) -> dict[str, list[int]]:
    """Trains what is missing, through the app's job engine on Ray; returns {plan: [run ids, every item × seed]}."""
    settings = settings or get_settings()
    work = _work(store, plans, seeds, settings)
    if work:
        log(f"training {len(work)} configurations × {len(seeds)} seeds, {workers} at a time")
        with ray_instance(settings.model_copy(update={"workers": workers})):
            runner = RayJobRunner(store, max_queue=len(work), max_per_learner=len(work), recover=False,
                                  max_running=workers)
            runner.start()
            try:
                jobs = runner.submit_jobs([JobRequest(spec, tuple(missing), label, background=True)
                                           for spec, label, missing in work])
                _wait_for(store, [[record.id for record, _ in job] for job in jobs], log)
            finally:
                runner.stop()
    ids: dict[str, list[int]] = {}
    for name, (base, depths, variants) in plans.items():
        ids[name] = [store.run_for(spec).id
                     for item in sweep_items(base, depths, variants, settings)
                     for spec in (item["spec"].with_seed(s) for s in seeds)]
    probe_missing(store, sorted(set().union(*ids.values())), log)
    return ids


def probe_missing(store: RunStore, run_ids: list[int], log=print) -> int:
    """Probe the finished runs that were trained before runs were probed (from their checkpoints)."""
    from model.checkpoint import load_checkpoint
    from model.tasks import get_task
    from model.train.probes import probe_run

    todo = [r for r in map(store.get, run_ids) if r.status == "done" and r.probes is None and r.has_checkpoint]
    for n, record in enumerate(todo, 1):
        model, _ = load_checkpoint(store.checkpoint(record.id))
        store.set_probes(record.id, probe_run(model, get_task(record.spec.task)))
        log(f"\rprobed {n}/{len(todo)} runs trained before runs were probed   ", end="")
    if todo:
        log()
    return len(todo)


def _wait_for(store: RunStore, jobs: list[list[int]], log) -> None:
    """Until every run has ended, with progress and an estimate of the time left."""
    started = time.time()
    while True:
        finished = sum(all(store.get(i).status in FINAL_STATUSES for i in job) for job in jobs)
        elapsed = time.time() - started
        eta = f" · about {elapsed / finished * (len(jobs) - finished):.0f} s left" if finished else ""
        log(f"\r{finished}/{len(jobs)} configurations · {elapsed:.0f} s{eta}   ", end="")
        if finished == len(jobs):
            break
        time.sleep(1)
    log()
    failed = [store.get(i) for job in jobs for i in job if store.get(i).status != "done"]
    for record in failed:
        log(f"{record.label} (seed {record.spec.train.seed}): {record.status}, {record.error}")


def main(argv: list[str] | None = None) -> int:
    from model.train.cli import parse_seeds

    parser = argparse.ArgumentParser(prog="python -m app.lab.precompute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="training processes at once (one per core)")
    parser.add_argument("--seeds", type=parse_seeds, default=list(SEEDS), help="seeds per configuration, e.g. 0-4")
    parser.add_argument("--only", choices=sorted(PLANS), help="one plan only")
    args = parser.parse_args(argv)
    settings = get_settings()
    plans = {args.only: PLANS[args.only]} if args.only else PLANS
    started = time.time()
    with store_to_train_in(settings.data_dir) as store:
        precompute(store, plans, args.workers, settings, seeds=tuple(args.seeds))
    print(f"the run store in {settings.data_dir} holds every run of: {', '.join(plans)} "
          f"({len(args.seeds)} seeds each; {time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
