"""Fill the run store with the runs the lessons need, so a classroom server answers at once.

    python -m app.precompute [--workers 2] [--only NAME]

Uses the data dir of the app's settings (ADDNORM_DATA_DIR). Runs already in the store are
skipped (replayed), so running it again only trains what is missing. Each plan also becomes a
sweep on /train/sweeps.
"""

from __future__ import annotations

import argparse
import sys
import time

from app.jobs import LocalJobRunner
from app.settings import get_settings
from app.store import RunStore
from app.sweeps import sweep_items

# name -> (training form, depths, variants). The lessons cite these by name.
PLANS: dict[str, tuple[dict, list[int], list[str]]] = {
    "depth-residual-norm": ({"task": "reverse", "steps": "600", "seed": "0"}, [2, 4, 6],
                            ["pre_ln", "post_ln", "post_ln_warmup", "no_residual", "no_norm"]),
    "pe-every-layer": ({"task": "reverse", "steps": "600", "seed": "0"}, [2, 4], ["pre_ln", "pe_every_layer"]),
    "batch-vs-layer-norm": ({"task": "reverse", "steps": "600", "seed": "0"}, [2], ["pre_ln", "batch_norm"]),
    "causal-mask-off": ({"task": "reverse", "steps": "600", "seed": "0"}, [2], ["pre_ln", "no_causal_mask"]),
}


def precompute(store: RunStore, plans: dict, workers: int = 1, settings=None, log=print) -> dict[str, list[int]]:
    """Trains what is missing; returns {plan: [run ids]}."""
    settings = settings or get_settings()
    runner = LocalJobRunner(store, workers=workers, max_queue=1000, recover=False)
    runner.start()
    try:
        known = {s["name"] for s in store.sweeps(limit=1000)}
        submitted: dict[str, list[int]] = {}
        for name, (form, depths, variants) in plans.items():
            items = sweep_items(form, depths, variants, settings)
            if name not in known:
                store.create_sweep(name, items)
            submitted[name] = [runner.submit(item["spec"], f"{name}: {item['variant']} × {item['depth']}",
                                             background=True)[0].id for item in items]
        all_ids = [i for ids in submitted.values() for i in ids]
        started = time.time()
        while True:
            records = [store.get(i) for i in all_ids]
            finished = sum(r.status in ("done", "failed", "cancelled") for r in records)
            log(f"\r{finished}/{len(all_ids)} runs finished · {time.time() - started:.0f} s", end="")
            if finished == len(all_ids):
                break
            time.sleep(1)
        log()
        failed = [r for r in records if r.status != "done"]
        for r in failed:
            log(f"run {r.id} ({r.label}) {r.status}: {r.error}")
        return submitted
    finally:
        runner.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.precompute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=1, help="training processes at once (one per spare core)")
    parser.add_argument("--only", choices=sorted(PLANS), help="one plan only")
    args = parser.parse_args(argv)
    settings = get_settings()
    plans = {args.only: PLANS[args.only]} if args.only else PLANS
    with RunStore(settings.data_dir / "runs.sqlite3") as store:
        precompute(store, plans, args.workers, settings)
    print(f"the run store in {settings.data_dir} holds every run of: {', '.join(plans)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
