"""What every claim measurement shares: the Verdict and Text records, fixed held-out inputs from the
zoo models, number formatting, and reading precomputed sweeps and runs from the run store.

A verdict holds no sentences. Its `summary` and `method` are lists of `Text`: each a key of the UI
catalogue (app/web/labels/<lang>.json, keys `claim.*`) plus the values to format into that entry's
`{placeholders}`. The sentences of a list are rendered one after another, so a summary is assembled
from optional parts by appending Texts (`summary.append(text("claim.R1.trained", ...))`).

A value is one of
  - a str: a figure already formatted by `f2`/`pct` (so every language shows the same figure), or an
    identifier such as a model or sweep name, shown as it is;
  - a Text: a phrase translated in its turn, e.g. `text("claim.stack.encoder")`;
  - a list of Texts: phrases joined by the catalogue's `claim.sep.list` ("; " / "；").
Everything stays plain data, so `dataclasses.asdict` saves a verdict as JSON and the saved dicts render
the same way. Rendering happens in one place: app/teaching/claims/render.py. A claim measured on the
precomputed sweeps also carries its `chart` (claims/charts.py): the same kind of plain data.

A figure measured near zero has a noise floor (`Verdict.floors`): below it, its digits are float32 rounding
and change with the CPU's kernels and thread count, so it is saved and shown as the marker "<1e-07" ("below
1e-7 (rounding noise)"), never as digits, and no verdict turns on it (the measurements compare with the floor).
"""

from __future__ import annotations

import math
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from app.lab.precompute import SEEDS
from app.lab.runs import RunRecord
from app.lab.store import RunStore
from app.lab.sweeps import TARGET
from app.web.numbers import finite
from model.tasks import PAD, Batch, Task, collate
from model.transformer import Seq2Seq
from model.zoo import load_zoo_model

if TYPE_CHECKING:
    from app.teaching.claims.charts import Chart

VERDICTS = ("holds", "holds_with_caveats", "does_not_hold", "mixed", "not_measured")  # mixed: the seeds disagree
SEED = 7  # every held-out set drawn for a claim uses this seed, so the numbers repeat exactly
N_INPUTS = 100  # held-out inputs per measurement
PRECOMPUTE = "python -m app.lab.precompute"

Number = float | int | str | None

# Noise floors, measured (scripts in the docstrings of the claims that use them):
# ‖∂loss/∂x‖ at a layer's input. reverse-pre-4x4 with its residual connections ablated: the decoder's last layer
# gets 7.4e-9 in float32 (7.7e-9 on another CPU) where float64 gives 1.5e-17, i.e. zero up to rounding; real
# gradients of these models are 1e-6 and up (7.3e-6 in the same ablation of reverse-post-2x2, equal in float64).
GRADIENT_FLOOR = 1e-7
# max |a − b| between two float32 computations of the same activations, logits or encodings, all of size 1–20:
# measured up to 1.4e-5 (sinusoidal PE at 256 positions), 5e-6 (logits, parallel vs step by step).
FLOAT32_FLOOR = 1e-4
# A mean or std of float32 standardised vectors (size ~1): rounding moves it by ~1e-7.
STATISTIC_FLOOR = 1e-6


@dataclass
class Text:
    """A catalogue key and the values for its placeholders (see the module's docstring)."""

    key: str  # "claim.R1.summary"
    values: dict[str, Any] = field(default_factory=dict)  # str | Text | list[Text]


def text(key: str, **values: Any) -> Text:
    return Text(key, values)


@dataclass
class Verdict:
    claim: str  # "R1"
    verdict: str  # one of VERDICTS
    numbers: dict[str, Number]  # the measured figures behind the verdict; labels: render.number_label
    summary: list[Text]  # what was measured and the verdict, numbers included (a single Text is accepted)
    method: list[Text]  # how it was measured
    sources: list[str] = field(default_factory=list)  # "zoo:<model>", "sweep:<plan>", "run:<id>"
    conditions: list[dict] = field(default_factory=list)  # what each source was trained on (claims/conditions.py)
    runs: list[str] = field(default_factory=list)  # the keys (RunSpec.key) of every run its sweeps hold
    floors: dict[str, float] = field(default_factory=dict)  # key of `numbers` -> its noise floor (module docstring)
    chart: Chart | None = None  # claims read from sweeps: the measured quantity per condition (claims/charts.py)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {' | '.join(VERDICTS)}")
        for key, floor in self.floors.items():
            if key not in self.numbers:
                raise ValueError(f"a noise floor for {key!r}, which is not among the numbers")
            self.numbers[key] = floored(self.numbers[key], floor)
        self.summary = [self.summary] if isinstance(self.summary, Text) else list(self.summary)
        self.method = [self.method] if isinstance(self.method, Text) else list(self.method)


def num(value: Any, digits: int = 4) -> Number:
    """A figure for `numbers`: floats to `digits` significant digits, NaN/inf as None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    value = finite(value)
    return None if value is None else float(f"{value:.{digits}g}")


def noise_marker(floor: float) -> str:
    """'<1e-07': a figure below its noise floor, as `numbers` saves it."""
    return f"<{floor:.0e}"


def floor_text(floor: float | str) -> str:
    """A floor (or a noise marker's) as a sentence shows it: '1e-7', '0.02'."""
    floor = float(floor.removeprefix("<")) if isinstance(floor, str) else floor
    return f"{floor:g}" if floor >= 1e-3 else f"{floor:.0e}".replace("e-0", "e-")


def round_up(floor: float) -> float:
    """A derived floor (e.g. a ratio's) to one significant digit, upwards: 0.0137 -> 0.02."""
    scale = 10 ** math.floor(math.log10(floor))
    return math.ceil(floor / scale - 1e-9) * scale


def is_noise(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("<")


def below_floor(value: float | None, floor: float) -> bool:
    return value is not None and abs(value) < floor


def floored(value: Number, floor: float) -> Number:
    """A figure as saved: the noise marker when it is below `floor`, else the figure."""
    return noise_marker(floor) if isinstance(value, float | int) and below_floor(value, floor) else value


def shown(value: float | None, floor: float, digits: int = 2) -> str | Text:
    """A figure in a sentence that says so when it is below its noise floor ("below 1e-7 (rounding noise)")."""
    if below_floor(value, floor):
        return text("number.noise", floor=floor_text(floor))
    return f2(value, digits)


def f2(value: float | None, digits: int = 2) -> str:
    """A number in a sentence: '0.83', '1.2e-06', or '—' when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if value == 0:
        return "0"
    if abs(value) < 10 ** -digits or abs(value) >= 1e5:
        return f"{value:.1e}"
    return f"{value:.{digits}f}"


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def zoo(name: str) -> tuple[Seq2Seq, Task]:
    model, task, _ = load_zoo_model(name)
    return model, task


def heldout_batch(task: Task, n: int = N_INPUTS, **lengths: int) -> Batch:
    return collate(task, task.heldout_set(n, seed=SEED, **lengths))


def heldout_pairs(task: Task, n: int = N_INPUTS, **lengths: int) -> list[tuple[str, str]]:
    return task.heldout_set(n, seed=SEED, **lengths)


@torch.no_grad()
def teacher_forced_accuracy(model: Seq2Seq, batch: Batch, switches=None, hooks=()) -> float:
    """Share of target positions whose argmax is right when the decoder reads the true prefix."""
    logits = model.run_with_hooks(batch.src, batch.tgt_in, switches, fwd_hooks=hooks)
    real = batch.tgt_out != PAD
    return ((logits.argmax(-1) == batch.tgt_out) & real).sum().item() / real.sum().item()


@torch.no_grad()
def greedy(model: Seq2Seq, batch: Batch, switches=None) -> tuple[torch.Tensor, float]:
    """Greedy outputs padded/cut to the width of the expected answer (+EOS), and the share of exactly
    right sequences (as model.evaluate counts them)."""
    expected = batch.tgt_out
    out = model.greedy_decode(batch.src, expected.size(1), switches)
    out = torch.nn.functional.pad(out, (0, expected.size(1) - out.size(1)), value=PAD)[:, : expected.size(1)]
    real = expected != PAD
    return out, ((out == expected) | ~real).all(-1).float().mean().item()


# ---- the run store ---------------------------------------------------------------------------


@dataclass
class SweepData:
    """The finished cells of the newest sweep with a given plan name."""

    name: str
    cells: dict[tuple[str, int], dict]  # (variant, depth) -> a row over the seeds read (_mean_row)
    total: int  # cells in the sweep, finished or not
    seeds: list[int] = field(default_factory=list)  # every seed the sweep trains
    plans: dict[str, set[int]] = field(default_factory=dict)  # merged: each plan read and its depths

    def get(self, variant: str, depth: int) -> dict | None:
        return self.cells.get((variant, depth))

    def depths(self, *variants: str) -> list[int]:
        """Depths at which every one of `variants` has a finished run, shallow first."""
        common = None
        for variant in variants:
            have = {d for v, d in self.cells if v == variant}
            common = have if common is None else common & have
        return sorted(common or ())

    def all_depths(self) -> list[int]:
        return sorted({d for _, d in self.cells})

    def sources(self, depths: list[int] | None = None) -> list[str]:
        """The plans behind the cells (at `depths`, when given) as verdict sources."""
        if not self.plans:
            return [f"sweep:{self.name}"]
        return [f"sweep:{plan}" for plan, have in self.plans.items() if depths is None or have & set(depths)]


def merge_sweeps(*sweeps: SweepData | None) -> SweepData | None:
    """One table from several plans' sweeps (e.g. depths 2–6 and the deep end at 12); None when none exists."""
    present = [s for s in sweeps if s is not None]
    if not present:
        return None
    cells = {key: row for s in present for key, row in s.cells.items()}
    plans = {s.name: set(s.all_depths()) for s in present}
    return SweepData(present[0].name, cells, sum(s.total for s in present),
                     sorted(set().union(*(s.seeds for s in present))), plans)


# Which seed the precomputed sweeps are read for: None = all of them, each cell then the mean over its seeds;
# k = seed k alone. `measure` (claims/__init__.py) measures a claim once per seed to see whether they agree.
SEED_VIEW: ContextVar[int | None] = ContextVar("seed_view", default=None)


def load_sweep(store: RunStore | None, name: str) -> SweepData | None:
    """None when there is no store or the store has no sweep of this plan. A cell counts when at least one of
    its seeds has a finished run with its exact spec (even if a newer run with that spec is still queued)."""
    if store is None:
        return None
    sweep = next((s for s in store.sweeps(limit=1000) if s["name"] == name), None)
    if sweep is None:
        return None
    view = SEED_VIEW.get()
    cells, all_seeds = {}, set()
    for item in sweep["items"]:
        seeds = item.get("seeds") or list(SEEDS)  # a sweep saved before items named their seeds: precompute's
        all_seeds |= set(seeds)
        runs = [_seed_row(store, item, seed) for seed in seeds if view is None or seed == view]
        runs = [row for row in runs if row is not None]
        if runs:
            cells[(item["variant"], item["depth"])] = _mean_row(runs)
    return SweepData(name, cells, len(sweep["items"]), sorted(all_seeds))


def _seed_row(store: RunStore, item: dict, seed: int) -> dict | None:
    spec = item["spec"].with_seed(seed)
    record = store.finished_run(spec)
    if record is None:
        return None
    return {"variant": item["variant"], "depth": item["depth"], "run_id": record.id, "run_key": record.key,
            "seed": seed,
            "steps": spec.train.steps, "steps_done": record.steps_done,
            "heldout_seq_accuracy": (record.final or {}).get("heldout_seq_accuracy"),
            "heldout_n": spec.train.eval_size, "probes": record.probes or {},
            "steps_to_target": store.steps_to_reach(record.id, TARGET)}


def _mean_row(runs: list[dict]) -> dict:
    """A cell over its seeds: the mean held-out accuracy and its range; the mean step at which the target was
    reached when every seed reached it (else None: "not reached" on some seed); the first seed's run for the
    measurements that read one run's metrics."""
    accuracies = [finite(r["heldout_seq_accuracy"]) or 0.0 for r in runs]
    reached = [r["steps_to_target"] for r in runs if r["steps_to_target"] is not None]
    n = runs[0]["heldout_n"]  # every seed answers the same held-out inputs: their number, not × seeds
    return {**runs[0], "seeds": [r["seed"] for r in runs], "run_ids": [r["run_id"] for r in runs],
            "run_keys": [r["run_key"] for r in runs],
            "heldout_seq_accuracy": sum(accuracies) / len(accuracies),
            "heldout_range": (min(accuracies), max(accuracies)),
            "heldout_interval": wilson(round(sum(accuracies) / len(accuracies) * n), n),
            "steps_to_target": round(sum(reached) / len(reached)) if len(reached) == len(runs) else None,
            "steps_range": (min(reached), max(reached)) if reached else None,
            "reached": len(reached), "probes": [r["probes"] for r in runs]}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a share k/n: what the held-out size alone allows (not the spread over
    seeds, which the range shows)."""
    if n <= 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def share_range(low: float, high: float) -> str:
    """'88–100%': a range of shares, as the numbers tables show it."""
    return f"{100 * low:.0f}–{100 * high:.0f}%"


def accuracy_numbers(prefix: str, row: dict) -> dict[str, Number]:
    """A cell's held-out accuracy for `numbers`: the mean over its seeds, their range, and the 95% interval
    from the held-out size."""
    return {f"{prefix}_heldout_accuracy": num(row["heldout_seq_accuracy"]),
            f"{prefix}_heldout_accuracy_seed_range": share_range(*row["heldout_range"]),
            f"{prefix}_heldout_accuracy_ci95": share_range(*row["heldout_interval"])}


def sublayer_text(name: str) -> Text:
    """'encoder.0.self_attn' as "the self-attention of encoder layer 1", 'decoder.3' as "decoder layer 4"."""
    stack, layer, *kind = name.split(".")
    where = text("claim.layer_of", stack=text(f"claim.stack.{stack}"), n=str(int(layer) + 1))
    return text("claim.sublayer_of", layer=where, kind=text(f"claim.sublayer.{kind[0]}")) if kind else where


def needs_runs(*variants: str) -> Text:
    """'pre_ln and no_residual runs': the runs a not_measured claim waits for (two or three variants)."""
    key = "claim.needs.two" if len(variants) == 2 else "claim.needs.three"
    return Text(key, dict(zip("abc", variants, strict=False)))


def steps_text(row: dict) -> Text:
    """'120 steps' to the target (the mean over seeds, all of which reached it; with their range when they
    differ), 'reached on 3 of 5 seeds', or 'not reached in 600 steps'."""
    s = row["steps_to_target"]
    low, high = row.get("steps_range") or (s, s)
    if s is not None and low != high:
        return text("claim.steps.reached_range", steps=str(s), low=str(low), high=str(high))
    if s is not None:
        return text("claim.steps.reached", steps=str(s))
    if row.get("reached"):
        return text("claim.steps.some_reached", reached=str(row["reached"]), seeds=str(len(row["seeds"])),
                    steps=str(row["steps"]))
    return text("claim.steps.not_reached", steps=str(row["steps"]))


def sweep_missing(claim: str, plan: str, sweep: SweepData | None, needs: Text, method: list[Text] | Text) -> Verdict:
    """not_measured, saying which precomputed runs (`needs`, a phrase) are missing and how to make them."""
    have = 0 if sweep is None else len(sweep.cells)
    total = 0 if sweep is None else sweep.total
    if sweep is None:
        summary = text("claim.not_measured.no_sweep", plan=plan, needs=needs, command=PRECOMPUTE)
    else:
        summary = text("claim.not_measured.partial_sweep", plan=plan, have=str(have), total=str(total), needs=needs,
                       command=PRECOMPUTE)
    return Verdict(claim, "not_measured", {"sweep_runs_done": have, "sweep_runs_total": total}, summary, method,
                   [f"sweep:{plan}"])


def find_done_runs(store: RunStore | None, task: str | None = None, arch: str = "encoder_decoder",
                   **switches: Any) -> list[RunRecord]:
    """Finished runs (newest first) of the family `arch` (the note's claims are about the 2017 model: a GPT trained
    in a lesson must not answer for it) whose spec has every given switch value, e.g. causal_mask=False."""
    if store is None:
        return []
    return [r for r in store.list(limit=10_000, status="done")
            if (task is None or r.spec.task == task) and r.spec.model.arch == arch
            and all(getattr(r.spec.switches, k) == v for k, v in switches.items())]


def series(metrics: list[dict], key: str) -> list[float]:
    return [float(row[key]) for row in metrics if row.get(key) is not None]
