"""Held-out accuracy by greedy decoding: the model sees only what it generated itself."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.config import Switches
from model.tasks import EOS, PAD, Task, collate
from model.transformer import Seq2Seq


@dataclass
class Scores:
    seq_accuracy: float  # whole output sequence exactly right (EOS included)
    token_accuracy: float  # per target position, greedy (not teacher-forced)
    n: int


@torch.no_grad()
def evaluate(
    model: Seq2Seq, task: Task, pairs: list[tuple[str, str]], switches: Switches | None = None, batch_size: int = 256
) -> Scores:
    return evaluate_seeds(model, task, pairs, 1, switches, batch_size)[0]


@torch.no_grad()
def evaluate_seeds(model: Seq2Seq, task: Task, pairs: list[tuple[str, str]], n_seeds: int,
                   switches: Switches | None = None, batch_size: int = 256) -> list[Scores]:
    """Scores per seed of a seed-stacked model (model.seeds), every seed decoding the same pairs at once."""
    was_training = model.training
    model.eval()
    exact = torch.zeros(n_seeds)
    correct_tokens = torch.zeros(n_seeds)
    total_tokens = 0
    for start in range(0, len(pairs), batch_size):
        batch = collate(task, pairs[start : start + batch_size])
        expected = batch.tgt_out  # (B, T) target + EOS, PAD after
        generated = model.greedy_decode(batch.src.repeat(n_seeds, 1), expected.size(1), switches)
        generated = torch.nn.functional.pad(generated, (0, expected.size(1) - generated.size(1)), value=PAD)
        real = expected != PAD
        hits = (generated.view(n_seeds, *expected.shape) == expected) & real  # (K, B, T)
        correct_tokens += hits.sum((1, 2))
        total_tokens += real.sum().item()
        exact += (hits | ~real).all(dim=2).sum(1)
    model.train(was_training)
    n = len(pairs)
    return [Scores(e / max(n, 1), c / max(total_tokens, 1), n)
            for e, c in zip(exact.tolist(), correct_tokens.tolist(), strict=True)]


__all__ = ["EOS", "Scores", "evaluate", "evaluate_seeds"]
