"""The shipped results measured again and written with their verdicts.

    python -m app.lab.results            train what is missing, then write model/zoo/results/
    python -m app.lab.results --no-train write them from the runs already in the store
    python -m app.lab.results --verdicts-only   measure verdicts.json again from the shipped runs alone

It sits above the lab (the runs, app/lab/results.py) and the claims (their verdicts), since it writes both.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from app.lab.results import (
    COMMAND,
    FULL_ROWS_UNTIL,
    PLANS,
    RESULTS_DIR,
    RUNS_FILE,
    SEEDS,
    VERDICTS_FILE,
    ShippedStore,
    export_results,
    plan_items,
    read_shipped,
    run_specs,
)
from app.lab.store_opening import store_to_train_in
from app.teaching.verdicts import compute_report


def main(argv: list[str] | None = None) -> int:
    from app.lab.precompute import precompute, probe_missing
    from app.web.settings import get_settings

    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-train", action="store_true", help="write them from the runs already in the store")
    parser.add_argument("--workers", type=int, default=2, help="training processes at once (one per core)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where to write them")
    parser.add_argument("--verdicts-only", action="store_true",
                        help=f"measure {VERDICTS_FILE} again from the shipped runs, after a change to a claim's code")
    args = parser.parse_args(argv)
    settings = get_settings()
    started = time.time()
    if args.verdicts_only:
        shipped = read_shipped(args.out / RUNS_FILE)
        if shipped is None:
            parser.error(f"{args.out / RUNS_FILE} is missing: run {COMMAND} first")
        _write_report(args.out, shipped)
        print(f"wrote {VERDICTS_FILE} in {time.time() - started:.0f} s")
        return 0
    with store_to_train_in(settings.data_dir) as store:
        if not args.no_train:
            precompute(store, PLANS, args.workers, settings, seeds=SEEDS)  # probes what it did not train too
        else:  # runs trained before runs were probed: probe them from their checkpoints first
            runs = (store.finished_run(spec) for spec in run_specs(plan_items(PLANS, settings, SEEDS), SEEDS).values())
            probe_missing(store, [run.id for run in runs if run is not None])
        path = export_results(store, PLANS, SEEDS, settings, args.out)
    shipped = read_shipped(path)
    _write_report(args.out, shipped)
    _write_readme(args.out, shipped)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, {len(shipped.list(limit=100_000))} runs) and "
          f"{VERDICTS_FILE} in {time.time() - started:.0f} s")
    return 0


def _write_report(out_dir: Path, shipped: ShippedStore) -> None:
    report = {**compute_report(shipped, "shipped"), "results": shipped.digest, "about": shipped.about}
    (out_dir / VERDICTS_FILE).write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


def _write_readme(out_dir: Path, shipped: ShippedStore) -> None:
    about = shipped.about
    m = about["machine"]
    (out_dir / "README.md").write_text(
        "# Shipped results\n\n"
        "Every run the claim check and the lessons read, measured on "
        f"{len(about['seeds'])} seeds ({', '.join(map(str, about['seeds']))}): metrics and probes, no checkpoints. "
        f"Plans: {', '.join(about['plans'])} (app/lab/precompute.py says what each trains).\n\n"
        f"- made on {about['created']} with `{about['command']}`\n"
        f"- on {m['system']}, {m['cpus']} CPUs, Python {m['python']}, torch {m['torch']}\n"
        f"- `{RUNS_FILE}`: the runs (layer statistics kept for the first {FULL_ROWS_UNTIL} steps and at every "
        "evaluation, scalars at every step); `verdicts.json`: the claim report measured from them.\n\n"
        f"Run `{COMMAND}` to measure them again (it trains only runs missing from the store in "
        "ADDNORM_DATA_DIR), or use \"Measure again here\" on the claims page.\n", encoding="utf-8")
