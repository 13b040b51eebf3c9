"""How fast a GPT learns a text: the zoo's poem GPT recipe (4 layers, d_model 64, Pre-LN) trained for `--steps`,
its held-out loss measured every `--eval-every` steps.

    python benchmarks/bench_text.py [--task tang_poems] [--steps 2000] [--threads 1]

Prints the held-out loss at the last step and at its best, and the wall time until the held-out loss first came
within 10% of each (the zoo keeps a text model at its best: these corpora are small, and the held-out loss climbs
again once the model learns its training passages by heart).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.config import Switches  # noqa: E402
from model.tasks import get_task  # noqa: E402
from model.train import TrainConfig, TrainingRun, model_config_for  # noqa: E402


def first_within(curve: list[tuple[int, float, float]], target: float) -> tuple[int, float]:
    """(step, seconds) of the first evaluation within 10% of `target`."""
    return next((step, seconds) for step, seconds, loss in curve if loss <= 1.1 * target)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--task", default="tang_poems")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = get_task(args.task)
    config = model_config_for(task, arch="decoder_only", n_decoder_layers=4, n_encoder_layers=4)
    train = TrainConfig(task=args.task, steps=args.steps, eval_every=args.eval_every, eval_size=300)
    started = time.perf_counter()
    curve = [(m.step, time.perf_counter() - started, m.heldout_loss / math.log(2))
             for m in TrainingRun(config, Switches(norm_position="pre"), train) if m.heldout_loss is not None]
    last, best = curve[-1], min(curve, key=lambda point: point[2])
    print(f"{args.task}, GPT 4 layers d_model {config.d_model}, batch {train.batch_size}, {torch.get_num_threads()} "
          f"thread(s): {args.steps} steps in {last[1]:.0f} s ({args.steps / last[1]:.1f} steps/s)")
    print(f"held-out at step {last[0]}: {last[2]:.3f} bits/char; "
          f"best {best[2]:.3f} at step {best[0]} ({best[1]:.0f} s)")
    for name, target in ((f"the step-{last[0]} value", last[2]), ("the best value", best[2])):
        step, seconds = first_within(curve, target)
        print(f"within 10% of {name}: step {step}, {seconds:.0f} s (target <= 180 s)")


if __name__ == "__main__":
    main()
