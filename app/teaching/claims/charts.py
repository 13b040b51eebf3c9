"""A verdict's chart: what a training claim measured per condition, its spread over seeds, and the comparison
the verdict turns on. Plain data like the rest of a Verdict (labels are catalogue Texts, see common.py), so it
is saved with it in verdicts.json; the Plotly figure is drawn from it in one place
(app/figures/claims.py).

    Chart(y=text("claim.chart.y.accuracy"), unit="share", x=LAYERS, seeds=5,
          series=[Series("pre_ln", text("variant.pre_ln"), [Point(2, 0.99, 0.98, 1.0), ...]), ...],
          decisive=Decisive([Cell("pre_ln", 6), Cell("post_ln", 6)], versus(...)))

A point is one cell: the mean over its seeds and the lowest and highest seed (`low`, `high`). A steps-to-target
point whose seeds did not all reach the target has no mean and no `high` (some seed went past the step budget,
`Chart.limit`); `low` is then the fastest seed that reached it, if any.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.teaching.claims.common import SweepData, Text, num, steps_text, text

LAYERS = text("claim.chart.x.layers")


@dataclass
class Point:
    x: int | str  # a depth (layers), or a category's key (Chart.categories)
    mean: float | None
    low: float | None = None  # the lowest seed
    high: float | None = None  # the highest seed
    note: Text | None = None  # what the mean cannot say, e.g. "reached on 3 of 5 seeds within 600 steps"


@dataclass
class Series:
    key: str  # "pre_ln": what Decisive cells name
    label: Text  # the legend's
    points: list[Point]


@dataclass
class Cell:
    series: str
    x: int | str


@dataclass
class Decisive:
    """The cells the verdict compares, and that comparison in words ("Pre-LN vs Post-LN at 6 layers")."""

    cells: list[Cell]
    note: Text


@dataclass
class Reference:
    """A level the verdict measures against, drawn as a dashed line (e.g. the lower end of a 95% interval)."""

    y: float
    label: Text


@dataclass
class Chart:
    y: Text  # the y axis title
    unit: str  # "share" (0–1, shown in %), "steps" (training steps, up to `limit`) or "number"
    series: list[Series]
    decisive: Decisive | None = None
    seeds: int = 1  # seeds behind each point (the most of any cell)
    x: Text | None = None  # a depth chart's x axis title; None: the x values are `categories`
    categories: dict[str, Text] = field(default_factory=dict)  # a category's key -> its label, in order
    limit: int | None = None  # steps charts: the step budget (a seed that never reached the target went past it)
    references: list[Reference] = field(default_factory=list)


def accuracy_point(x: int | str, row: dict) -> Point:
    """A cell's final held-out exact-sequence accuracy: the mean over its seeds and their range."""
    low, high = row["heldout_range"]
    return Point(x, num(row["heldout_seq_accuracy"]), num(low), num(high))


def steps_point(x: int | str, row: dict) -> Point:
    """A cell's steps to the target: the mean when every seed reached it (else None, said in the note)."""
    mean = row["steps_to_target"]
    low, high = row.get("steps_range") or (None, None)
    if mean is None:
        return Point(x, None, low, None, steps_text(row))
    return Point(x, mean, low, high)


def seed_point(x: int | str, values: list[float]) -> Point:
    """A figure measured on each seed alone (a drift, a probe): their mean and range."""
    return Point(x, num(sum(values) / len(values)), num(min(values)), num(max(values)))


def sweep_series(sweep: SweepData, variant: str, depths: list[int], point=accuracy_point) -> Series:
    """One line of a depth chart: a variant's cells at `depths`."""
    return Series(variant, text(f"variant.{variant}"), [point(d, sweep.get(variant, d)) for d in depths])


def seeds_of(sweep: SweepData) -> int:
    return max((len(row["seeds"]) for row in sweep.cells.values()), default=1)


def versus(a: Text, b: Text, where: Text | str) -> Text:
    """'Pre-LN vs Post-LN at 6 layers': a decisive comparison in words."""
    return text("claim.chart.versus", a=a, b=b, where=where)


def at_layers(depth: int) -> Text:
    return text("claim.chart.at_layers", n=str(depth))


def variant_label(name: str) -> Text:
    return text(f"variant.{name}")
