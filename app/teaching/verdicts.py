"""The claim-check report: every claim's verdict, measured by app.claims, with when and from which runs it
was computed. `python -m app.teaching.verdicts` recomputes and saves it (training what is missing).

Pages never compute it on the request path and never write it: `VerdictBoard` serves the saved or last
computed report while the runs it read are unchanged (the store's fingerprint), and otherwise measures
again in a background thread while the page shows the older report, or says it is measuring.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

from app.lab.results import ResultSource, machine, shipped_report
from app.lab.store import RunStore
from app.lab.store_opening import store_to_train_in
from app.teaching.claims import measure_all
from app.teaching.claims.render import render_text
from app.web.i18n import Translator
from app.web.settings import get_settings

REPORT_FILE = "verdicts.json"
# 2: summaries and methods are catalogue keys with values (1, unmarked: sentences per language); 3: verdicts read
# from sweeps carry their chart (an older report is measured again, so its cards get charts)
REPORT_FORMAT = 3
log = logging.getLogger(__name__)


def compute_report(store: RunStore, source: str = "measured here") -> dict:
    """source: "measured here" (the app's own store) or "shipped" (app.lab.results)."""
    fingerprint = store.fingerprint()  # before measuring: a run finishing meanwhile makes the report stale
    started = time.time()
    verdicts = measure_all(store)
    runs = store.list(limit=10_000, status="done")
    return {
        "format": REPORT_FORMAT,
        "source": source,
        "fingerprint": fingerprint,
        "machine": machine(),
        "computed_at": time.time(),
        "seconds": round(time.time() - started, 1),
        "runs_in_store": len(runs),
        "verdicts": {claim: asdict(v) for claim, v in verdicts.items()},
    }


def save_report(settings, report: dict) -> None:
    path = report_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")


class VerdictBoard:
    """The current report, measured off the request path and kept while the runs it read are unchanged. It is
    measured from the results that `ResultSource` chooses: the shipped ones until this server holds its own."""

    def __init__(self, settings, store: RunStore, results: ResultSource | None = None):
        self.settings = settings
        self.results = results or ResultSource(store, settings)
        self._report = _read_saved(report_path(settings))
        self._lock = threading.Lock()
        self._measuring: threading.Thread | None = None
        self._closed = False  # the server is stopping: a measurement cut short by the store closing is expected

    def current(self) -> tuple[dict | None, bool]:
        """(the newest report there is, or None; whether it is fresh). A stale or missing report starts a
        measurement in the background; the caller shows what there is and asks again later."""
        store, source = self.results.current()
        fingerprint = store.fingerprint()
        with self._lock:
            report = self._report
            if source == "shipped" and (report is None or report.get("fingerprint") != fingerprint):
                shipped = self.shipped()
                if shipped is not None and shipped.get("fingerprint") == fingerprint:
                    self._report = report = shipped
            fresh = report is not None and report.get("fingerprint") == fingerprint
            if not fresh and self._measuring is None and not self._closed:
                self._measuring = threading.Thread(target=self._measure, args=(store, source), daemon=True,
                                                   name="verdicts")
                self._measuring.start()
        return report, fresh

    def shipped(self) -> dict | None:
        """The report measured from the shipped results, when it was measured in this format."""
        report = shipped_report()
        return report if report is not None and report.get("format") == REPORT_FORMAT else None

    def close(self) -> None:
        """The server stops: measure nothing more (one under way ends when the store closes, quietly)."""
        with self._lock:
            self._closed = True

    def measuring(self) -> bool:
        with self._lock:
            return self._measuring is not None

    def remeasure(self) -> dict:
        """Measure now (the learner asked for it) and save the report."""
        report = compute_report(*self.results.current())
        try:
            save_report(self.settings, report)
        except OSError as error:  # ADDNORM_DATA_DIR cannot be written: the page shows the report all the same
            log.warning("the claim report could not be saved to %s: %s", report_path(self.settings), error)
        with self._lock:
            self._report = report
        return report

    def _measure(self, store: RunStore, source: str) -> None:
        try:
            report = compute_report(store, source)
            with self._lock:
                self._report = report
        except Exception:  # the page keeps showing the older report and tries again on the next visit
            if not self._closed:
                log.exception("measuring the claims failed")
        finally:
            with self._lock:
                self._measuring = None


def _read_saved(path: Path) -> dict | None:
    """The saved report, unless it is missing, unreadable or in an older format."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("format") == REPORT_FORMAT else None


def report_path(settings) -> Path:
    return Path(settings.data_dir) / REPORT_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.teaching.verdicts", description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-train", action="store_true", help="measure only; do not train missing runs")
    parser.add_argument("--workers", type=int, default=2, help="training processes at once (one per core)")
    args = parser.parse_args(argv)
    settings = get_settings()
    import torch

    torch.set_num_threads(settings.torch_threads)  # tiny models: more threads only add contention
    with store_to_train_in(settings.data_dir) as store:
        if not args.no_train:
            from app.lab.precompute import PLANS, precompute

            precompute(store, PLANS, args.workers, settings)
        report = compute_report(store)
    save_report(settings, report)
    t = Translator("en")
    for claim, verdict in report["verdicts"].items():
        print(f"{claim}: {verdict['verdict']} — {render_text(verdict['summary'], t)}")
    print(f"saved {report_path(settings)} ({report['runs_in_store']} runs in the store)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
