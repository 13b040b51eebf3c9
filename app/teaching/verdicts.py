"""The claim-check report: every claim's verdict, measured by app.claims, saved with when and
from what it was computed. `python -m app.teaching.verdicts` recomputes it (training what is missing)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from app.lab.store import RunStore
from app.teaching.claims import measure_all
from app.teaching.claims.render import render_text
from app.web.i18n import Translator
from app.web.settings import get_settings

REPORT_FILE = "verdicts.json"
REPORT_FORMAT = 2  # 2: summaries and methods are catalogue keys with values (1, unmarked: sentences per language)


def compute_report(store: RunStore) -> dict:
    started = time.time()
    verdicts = measure_all(store)
    runs = store.list(limit=10_000, status="done")
    return {
        "format": REPORT_FORMAT,
        "computed_at": time.time(),
        "seconds": round(time.time() - started, 1),
        "runs_in_store": len(runs),
        "verdicts": {claim: asdict(v) for claim, v in verdicts.items()},
    }


def report_path(settings) -> Path:
    return Path(settings.data_dir) / REPORT_FILE


def current_verdicts(settings, store: RunStore) -> dict:
    """The saved report, or one computed now (and saved) when there is none yet or the saved one is in an
    older format (or unreadable)."""
    path = report_path(settings)
    if path.exists():
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            report = None
        if isinstance(report, dict) and report.get("format") == REPORT_FORMAT:
            return report
    report = compute_report(store)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.teaching.verdicts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-train", action="store_true", help="measure only; do not train missing runs")
    parser.add_argument("--workers", type=int, default=2, help="training processes at once (one per core)")
    args = parser.parse_args(argv)
    settings = get_settings()
    import torch

    torch.set_num_threads(settings.torch_threads)  # tiny models: more threads only add contention
    with RunStore(settings.data_dir / "runs.sqlite3") as store:
        if not args.no_train:
            from app.lab.precompute import PLANS, precompute

            precompute(store, PLANS, args.workers, settings)
        report = compute_report(store)
    report_path(settings).write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    t = Translator("en")
    for claim, verdict in report["verdicts"].items():
        print(f"{claim}: {verdict['verdict']} — {render_text(verdict['summary'], t)}")
    print(f"saved {report_path(settings)} ({report['runs_in_store']} runs in the store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
