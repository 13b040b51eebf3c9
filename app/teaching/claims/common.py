"""What every claim measurement shares: the Verdict record, fixed held-out inputs from the zoo
models, number formatting, and reading precomputed sweeps and runs from the run store."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from app.lab.store import RunRecord, RunStore
from app.lab.sweeps import TARGET
from model.checkpoint import load_checkpoint
from model.tasks import PAD, Batch, Task, collate
from model.train import steps_to_reach
from model.transformer import Seq2Seq
from model.zoo import load_zoo_model

VERDICTS = ("holds", "holds_with_caveats", "does_not_hold", "not_measured")
SEED = 7  # every held-out set drawn for a claim uses this seed, so the numbers repeat exactly
N_INPUTS = 100  # held-out inputs per measurement
PRECOMPUTE = "python -m app.lab.precompute"

Number = float | int | str | None


@dataclass
class Verdict:
    claim: str  # "R1"
    verdict: str  # one of VERDICTS
    numbers: dict[str, Number]  # the measured figures behind the verdict
    summary: dict[str, str]  # {"en", "zh"}: what was measured and the verdict, numbers included
    method: dict[str, str]  # {"en", "zh"}: how it was measured
    sources: list[str] = field(default_factory=list)  # "zoo:<model>", "sweep:<plan>", "run:<id>"

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {' | '.join(VERDICTS)}")


def num(value: Any, digits: int = 4) -> Number:
    """A figure for `numbers`: floats to `digits` significant digits, NaN/inf as None."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.{digits}g}")


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


def texts(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


# ---- the run store ---------------------------------------------------------------------------


@dataclass
class SweepData:
    """The finished cells of the newest sweep with a given plan name."""

    name: str
    cells: dict[tuple[str, int], dict]  # (variant, depth) -> a row like sweep_results', finished runs only
    total: int  # cells in the sweep, finished or not

    def get(self, variant: str, depth: int) -> dict | None:
        return self.cells.get((variant, depth))

    def depths(self, *variants: str) -> list[int]:
        """Depths at which every one of `variants` has a finished run, shallow first."""
        common = None
        for variant in variants:
            have = {d for v, d in self.cells if v == variant}
            common = have if common is None else common & have
        return sorted(common or ())

    def source(self) -> str:
        return f"sweep:{self.name}"


def load_sweep(store: RunStore | None, name: str) -> SweepData | None:
    """None when there is no store or the store has no sweep of this plan. A cell counts when a finished
    run with its exact spec exists, even if a newer run with that spec (another plan's) is still queued."""
    if store is None:
        return None

    sweep = next((s for s in store.sweeps(limit=1000) if s["name"] == name), None)
    if sweep is None:
        return None
    cells = {}
    for item in sweep["items"]:
        record = store.find_done(item["spec"]) or store.find_latest(item["spec"])
        if record is None or record.status != "done":
            continue
        cells[(item["variant"], item["depth"])] = {
            "variant": item["variant"], "depth": item["depth"], "run_id": record.id,
            "steps": item["spec"].train_config["steps"], "steps_done": record.steps_done,
            "heldout_seq_accuracy": (record.final or {}).get("heldout_seq_accuracy"),
            "steps_to_target": steps_to_reach(store.metrics(record.id), TARGET),
        }
    return SweepData(name, cells, len(sweep["items"]))


def sweep_missing(claim: str, plan: str, sweep: SweepData | None, needs_en: str, needs_zh: str,
                  method: dict[str, str]) -> Verdict:
    """not_measured, saying which precomputed runs are missing and how to make them."""
    have = 0 if sweep is None else len(sweep.cells)
    total = 0 if sweep is None else sweep.total
    if sweep is None:
        en = (f"Not measured yet: this needs the precomputed sweep “{plan}” ({needs_en}), which is not in the run "
              f"store. Run `{PRECOMPUTE}` to train it.")
        zh = f"尚未测量:需要预先训练的扫描实验“{plan}”({needs_zh}),运行库中还没有。请运行 `{PRECOMPUTE}` 训练。"
    else:
        en = (f"Not measured yet: the sweep “{plan}” has {have} of {total} runs finished, not yet the ones this "
              f"needs ({needs_en}). Run `{PRECOMPUTE}` to finish it.")
        zh = (f"尚未测量:扫描实验“{plan}”已完成 {have}/{total} 个运行,还缺本项需要的({needs_zh})。"
              f"请运行 `{PRECOMPUTE}` 补全。")
    return Verdict(claim, "not_measured", {"sweep_runs_done": have, "sweep_runs_total": total},
                   texts(en, zh), method, [f"sweep:{plan}"])


def store_model(store: RunStore | None, run_id: int | None) -> Seq2Seq | None:
    """The trained model of a stored run, or None when it has no checkpoint."""
    if store is None or run_id is None:
        return None
    data = store.checkpoint(run_id)
    if data is None:
        return None
    model, _ = load_checkpoint(data)
    return model


def find_done_runs(store: RunStore | None, task: str | None = None, **switches: Any) -> list[RunRecord]:
    """Finished runs (newest first) whose spec has every given switch value, e.g. causal_mask=False."""
    if store is None:
        return []
    return [r for r in store.list(limit=10_000, status="done")
            if (task is None or r.spec.task == task)
            and all(r.spec.switches.get(k) == v for k, v in switches.items())]


def series(metrics: list[dict], key: str) -> list[float]:
    return [float(row[key]) for row in metrics if row.get(key) is not None]
