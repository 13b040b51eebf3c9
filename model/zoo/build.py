"""Trains the shipped models with fixed seeds and writes their checkpoints and the manifest.

    python -m model.zoo.build            # every recipe
    python -m model.zoo.build reverse-post-2x2

Each recipe trains until held-out exact-sequence accuracy reaches `stop_at` or the step budget
runs out; the manifest records the steps taken and the accuracy measured afterwards. A text (tang_poems,
en_text) has no answer to get right: its model is kept at its best held-out loss, and training stops once
PATIENCE evaluations in a row have not bettered it (these corpora are small, and a model soon learns its
training passages by heart while the held-out loss climbs again).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

from model.checkpoint import save_checkpoint
from model.config import Switches
from model.evaluate import evaluate
from model.tasks import get_task
from model.train import TrainConfig, TrainingRun, model_config_for
from model.transformer import SwitchedModel
from model.zoo import MANIFEST, ZOO_DIR, ZooEntry, load_manifest

HELDOUT_SIZE = 300
PATIENCE = 4
SIZE_LIMIT_BYTES = 2_000_000


@dataclass(frozen=True)
class Recipe:
    name: str
    title: str
    task: str
    layers: int
    switches: Switches = field(default_factory=Switches)
    steps: int = 1500
    warmup_steps: int = 0
    lr: float = 1e-3
    stop_at: float = 0.995
    default: bool = False
    arch: str = "encoder_decoder"
    d_model: int = 64
    eval_every: int = 50


RECIPES = [
    Recipe("reverse-post-2x2", "Reverse digits · 2+2 layers · Post-LN (the note's arrangement)", "reverse", 2,
           default=True),
    Recipe("reverse-pre-2x2", "Reverse digits · 2+2 layers · Pre-LN", "reverse", 2, Switches(norm_position="pre")),
    Recipe("reverse-post-4x4", "Reverse digits · 4+4 layers · Post-LN with warm-up", "reverse", 4,
           warmup_steps=200),
    Recipe("reverse-pre-4x4", "Reverse digits · 4+4 layers · Pre-LN", "reverse", 4, Switches(norm_position="pre")),
    Recipe("en-numbers-2x2", "English number words → digits · 2+2 layers · Post-LN", "en_numbers", 2),
    Recipe("zh-numbers-2x2", "中文数字 → digits · 2+2 layers · Post-LN", "zh_numbers", 2),
    Recipe("reverse-gpt-4", "Reverse digits · GPT (decoder only) · 4 layers · Pre-LN, as GPT-2", "reverse", 4,
           Switches(norm_position="pre"), steps=3000, arch="decoder_only"),
    Recipe("reverse-bert-2", "Reverse digits · BERT (encoder only) · 2 layers · Post-LN, as BERT", "reverse", 2,
           arch="encoder_only"),
    Recipe("poems-gpt-4", "唐诗 · GPT (decoder only) · 4 layers · Pre-LN, as GPT-2", "tang_poems", 4,
           Switches(norm_position="pre"), steps=2000, arch="decoder_only"),
    Recipe("poems-bert-2", "唐诗 · BERT (encoder only) · 2 layers · Post-LN, as BERT", "tang_poems", 2,
           steps=3000, arch="encoder_only"),
    Recipe("sonnets-gpt-4", "Shakespeare's sonnets · GPT (decoder only) · 4 layers · Pre-LN, as GPT-2", "en_text", 4,
           Switches(norm_position="pre"), steps=3000, arch="decoder_only"),
]


def build(recipe: Recipe) -> ZooEntry:
    task = get_task(recipe.task)
    model_config = model_config_for(task, n_encoder_layers=recipe.layers, n_decoder_layers=recipe.layers,
                                    arch=recipe.arch, d_model=recipe.d_model, d_ff=2 * recipe.d_model)
    train_config = TrainConfig(task=recipe.task, steps=recipe.steps, lr=recipe.lr, warmup_steps=recipe.warmup_steps,
                               seed=0, eval_every=recipe.eval_every,
                               eval_size=HELDOUT_SIZE if task.reads_text else TrainConfig.eval_size,
                               stop_at=0.0 if task.reads_text else recipe.stop_at)
    run = TrainingRun(model_config, recipe.switches, train_config)
    started = time.perf_counter()
    model, history = _train_to_best_heldout_loss(run, recipe) if task.reads_text else _train_to_stop_at(run, recipe)
    seconds = time.perf_counter() - started
    path = ZOO_DIR / f"{recipe.name}.pt"
    save_checkpoint(path, model, train_config, history, {"recipe": recipe.name})
    scores = evaluate(model, task, task.heldout_set(HELDOUT_SIZE))
    size = path.stat().st_size
    if size > SIZE_LIMIT_BYTES:
        raise SystemExit(f"{path.name} is {size:,} bytes, over the {SIZE_LIMIT_BYTES:,} limit")
    return ZooEntry(
        name=recipe.name, title=recipe.title, task=recipe.task, file=path.name,
        model_config=model_config.to_dict(), switches=recipe.switches.to_dict(),
        train_config=train_config.to_dict(), steps=history[-1].step, train_seconds=round(seconds, 1),
        heldout_seq_accuracy=scores.seq_accuracy, heldout_token_accuracy=scores.token_accuracy,
        heldout_size=scores.n, size_bytes=size, default=recipe.default, heldout_loss=scores.loss,
        heldout_bits_per_char=scores.bits_per_char,
    )


def _train_to_stop_at(run: TrainingRun, recipe: Recipe) -> tuple[SwitchedModel, list]:
    for m in run:  # stops by itself once held-out accuracy reaches stop_at
        if m.heldout_seq_accuracy is not None:
            print(f"  {recipe.name}: step {m.step} loss {m.loss:.4f} held-out {m.heldout_seq_accuracy:.1%}",
                  file=sys.stderr)
    return run.model, run.history


def _train_to_best_heldout_loss(run: TrainingRun, recipe: Recipe) -> tuple[SwitchedModel, list]:
    """Trains until PATIENCE evaluations have not bettered the best loss on the selection windows (held out, but
    not those the manifest reports): the model as it was at its best, and the history up to that step."""
    task = run.engine.task
    selection = task.selection_set(HELDOUT_SIZE)
    best_loss, best_model, best_len, since_best = math.inf, None, 0, 0
    for m in run:
        if m.heldout_loss is None:
            continue
        model = run.model  # a copy of this step's weights
        loss = evaluate(model, task, selection).loss
        print(f"  {recipe.name}: step {m.step} loss {m.loss:.4f} selection {loss / math.log(2):.3f} bits/char",
              file=sys.stderr)
        if loss < best_loss:
            best_loss, best_model, best_len, since_best = loss, model, len(run.history), 0
        else:
            since_best += 1
            if since_best >= PATIENCE:
                break
    return best_model, run.history[:best_len]


def main(names: list[str]) -> None:
    unknown = set(names) - {r.name for r in RECIPES}
    if unknown:
        raise SystemExit(f"unknown recipe(s): {', '.join(sorted(unknown))}")
    entries = {e.name: e for e in load_manifest()}
    for recipe in RECIPES:
        if names and recipe.name not in names:
            continue
        entry = build(recipe)
        entries[entry.name] = entry
        held = (f"{entry.heldout_bits_per_char:.3f} bits per character" if entry.heldout_loss is not None
                else f"exact sequences {entry.heldout_seq_accuracy:.1%}")
        print(f"{entry.name}: {entry.steps} steps, {entry.train_seconds} s, held-out {held} "
              f"(tokens {entry.heldout_token_accuracy:.1%}), {entry.size_bytes:,} B")
        order = [r.name for r in RECIPES]
        models = [asdict(entries[n]) for n in order if n in entries]
        MANIFEST.write_text(json.dumps({"heldout_size": HELDOUT_SIZE, "models": models}, indent=2,
                                       ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
