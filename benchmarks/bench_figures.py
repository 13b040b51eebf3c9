"""Why the figures are plain Plotly specs (dicts) and not plotly.graph_objects: the cost per request.

    pip install plotly && python benchmarks/bench_figures.py

Builds one playground page's context (trace cached, so this is figure building and view logic) and
then passes the same figures through go.Figure(...).to_plotly_json(), the way code written with the
Python package would produce them; prints both and their ratio. plotly is not a dependency of the
app: plotly.js draws every figure in the browser from these specs.
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.playground.state import parse_state  # noqa: E402
from app.playground.view import playground_context  # noqa: E402
from app.web.i18n import Translator  # noqa: E402


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def figures_in(value, found: list) -> list:
    if isinstance(value, dict):
        if "data" in value and "layout" in value:
            found.append(value)
        else:
            for item in value.values():
                figures_in(item, found)
    elif isinstance(value, (list, tuple)):
        for item in value:
            figures_in(item, found)
    return found


def main() -> None:
    try:
        import plotly.graph_objects as go
    except ImportError:
        raise SystemExit("this comparison needs the plotly package: pip install plotly") from None
    state = parse_state({"input": "31415926"}, 200, random.Random(0))
    t = Translator("en")
    figures = figures_in(playground_context(state, t), [])
    plain = median_ms(lambda: playground_context(state, t), 30)
    validated = median_ms(lambda: [go.Figure(f).to_plotly_json() for f in figures], 10)
    print(f"one playground page, {len(figures)} figures: the whole context as plain specs {plain:.1f} ms; "
          f"the same figures through go.Figure {validated:.1f} ms ({validated / plain:.0f}x)")


if __name__ == "__main__":
    main()
