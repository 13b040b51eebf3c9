"""The claim check on a fresh install: how long the first and later GETs of /claims and /api/claims take
when the verdicts come from the shipped results, against a static page measured in the same run.

    python benchmarks/bench_claims.py [--repeats 20]

Each round starts the app (in process, an empty data directory, the shipped results on) and times the
very first request of /api/claims, then `--repeats` more of each page. Printed: medians in ms and as a
ratio of the static page's median (GET /static/css/app.css through the same app).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(client, url: str) -> float:
    started = time.perf_counter()
    response = client.get(url)
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    os.environ["ADDNORM_SHIPPED_RESULTS"] = "1"
    from fastapi.testclient import TestClient

    from app.factory import create_app
    from app.web.settings import Settings

    first, pages = [], {"/api/claims": [], "/claims": [], "/static/css/app.css": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as data, TestClient(create_app(Settings(data_dir=Path(data))),
                                                                  base_url="http://localhost") as client:
            started = time.perf_counter()
            report = client.get("/api/claims").json()
            first.append(time.perf_counter() - started)
            assert report["fresh"] and report["source"] == "shipped", "the shipped report was not served at once"
            for _ in range(args.repeats):
                for url, times in pages.items():
                    times.append(_time(client, url))
    base = statistics.median(pages["/static/css/app.css"])
    print(f"machine load: {os.getloadavg()[0]:.2f} (1 min)")
    print(f"first GET /api/claims on a fresh install: median {1000 * statistics.median(first):.0f} ms "
          f"over {args.rounds} starts (every verdict fresh, none measured on the request)")
    for url, times in pages.items():
        median, p95 = statistics.median(times), sorted(times)[int(0.95 * len(times))]
        print(f"GET {url:22s} median {1000 * median:6.1f} ms  p95 {1000 * p95:6.1f} ms  "
              f"{median / base:5.1f}x the static page")
    return 0


if __name__ == "__main__":
    sys.exit(main())
