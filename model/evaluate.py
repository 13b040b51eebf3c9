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
    was_training = model.training
    model.eval()
    exact = correct_tokens = total_tokens = 0
    for start in range(0, len(pairs), batch_size):
        batch = collate(task, pairs[start : start + batch_size])
        expected = batch.tgt_out  # (B, T) target + EOS, PAD after
        generated = model.greedy_decode(batch.src, expected.size(1), switches)
        if generated.size(1) < expected.size(1):  # all stopped early: pad to compare
            pad = generated.new_full((generated.size(0), expected.size(1) - generated.size(1)), PAD)
            generated = torch.cat([generated, pad], dim=1)
        generated = generated[:, : expected.size(1)]
        real = expected != PAD
        hits = (generated == expected) & real
        correct_tokens += hits.sum().item()
        total_tokens += real.sum().item()
        exact += (hits | ~real).all(dim=1).sum().item()
    model.train(was_training)
    n = len(pairs)
    return Scores(exact / max(n, 1), correct_tokens / max(total_tokens, 1), n)


__all__ = ["EOS", "Scores", "evaluate"]
