"""Held-out accuracy by greedy decoding: the model sees only what it generated itself (a BERT, which answers
every position at once, sees only the input). A corpus is scored teacher-forced instead, by its held-out loss
(nats and bits per character) and by how often the most likely character is the right one."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from model.config import Switches
from model.posing import posing_for
from model.tasks import EOS, Task, collate
from model.transformer import SwitchedModel

EVAL_LOGITS_BYTES = 128 * 2**20  # a held-out batch's logits, at most


@dataclass
class Scores:
    seq_accuracy: float | None  # whole output sequence exactly right (EOS included); None for a corpus
    token_accuracy: float  # per target position, greedy (not teacher-forced; teacher-forced for a corpus)
    n: int
    loss: float | None = None  # a corpus's held-out cross-entropy, nats per scored character

    @property
    def bits_per_char(self) -> float | None:
        return None if self.loss is None else self.loss / math.log(2)


@torch.no_grad()
def evaluate(model: SwitchedModel, task: Task, pairs: list[tuple[str, str]], switches: Switches | None = None,
             batch_size: int = 256) -> Scores:
    return evaluate_seeds(model, task, pairs, 1, switches, batch_size)[0]


@torch.no_grad()
def evaluate_seeds(model: SwitchedModel, task: Task, pairs: list[tuple[str, str]], n_seeds: int,
                   switches: Switches | None = None, batch_size: int = 256) -> list[Scores]:
    """Scores per seed of a seed-stacked model (model.seeds), every seed decoding the same pairs at once."""
    if task.reads_text:  # every row's logits over the whole vocabulary: a corpus's is large
        row_bytes = n_seeds * task.max_src_tokens * task.tgt_tokenizer.size * 4
        batch_size = max(1, min(batch_size, EVAL_LOGITS_BYTES // row_bytes))
    was_training = model.training
    model.eval()
    exact = torch.zeros(n_seeds)
    correct_tokens = torch.zeros(n_seeds)
    loss_sum = torch.zeros(n_seeds)
    total_tokens = 0
    whole = True
    posing = posing_for(model.config.arch)
    for start in range(0, len(pairs), batch_size):
        answers = posing.answers(model, collate(task, pairs[start : start + batch_size]), n_seeds, switches)
        expected, real = answers.expected, answers.real
        hits = (answers.given.view(n_seeds, *expected.shape) == expected) & real  # (K, B, T)
        correct_tokens += hits.sum((1, 2))
        total_tokens += real.sum().item()
        exact += (hits | ~real).all(dim=2).sum(1)
        whole = answers.whole
        if answers.loss_sum is not None:
            loss_sum += answers.loss_sum
    model.train(was_training)
    n, scored = len(pairs), max(total_tokens, 1)
    return [Scores(e / max(n, 1) if whole else None, c / scored, n, None if whole else loss / scored)
            for e, c, loss in zip(exact.tolist(), correct_tokens.tolist(), loss_sum.tolist(), strict=True)]


__all__ = ["EOS", "Scores", "evaluate", "evaluate_seeds"]
