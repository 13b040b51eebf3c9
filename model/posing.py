"""How each family is posed a task's batch: what the model reads, what it is scored on, how it answers alone.

The 2017 encoder-decoder reads the source and, teacher-forced, the target; a GPT reads prompt, separator and answer
as one sequence (model/families.py one_sequence); BERT reads the input and answers at every position
(per_position). A corpus (model/tasks/text.py) is read by a GPT one character ahead (next_character) and by a
BERT with characters masked (masked_characters); both are scored teacher-forced, by held-out loss as well.
Training (model/train) and held-out scoring (model/evaluate.py) take a family's Posing from `posing_for(arch)`
and never branch on the family themselves.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from model.config import ConfigError, Switches, quoted
from model.families import IGNORE, OneStack, masked_characters, next_character, one_sequence, per_position
from model.tasks import BOS, EOS, PAD, Batch, DigitTask, Task
from model.tasks.text import MASK_ID
from model.transformer import Seq2Seq


@dataclass
class Posed:
    inputs: tuple[torch.Tensor, ...]  # the model's arguments
    targets: torch.Tensor  # (rows, T): the token each output position should give, IGNORE where none
    keep: dict[str, torch.Tensor]  # per stack: (rows, T) the real positions of the sequence it embeds


@dataclass
class Answers:
    """A model's own answers to a batch, row for row with the expected ones (seeds folded: rows K·B)."""

    given: torch.Tensor  # (K·B, T)
    expected: torch.Tensor  # (B, T)
    real: torch.Tensor  # (B, T): the positions that are scored
    loss_sum: torch.Tensor | None = None  # (K,) cross-entropy summed over the scored positions, teacher-forced
    whole: bool = True  # whether a row is one answer to get right as a whole (a corpus window is not)


def _read_teacher_forced(model: OneStack, sequence, n_seeds: int, switches: Switches | None) -> Answers:
    """Each seed reads the sequence once: its argmax and its loss at every scored position."""
    logits = model(sequence.tokens.repeat(n_seeds, 1), switches)
    targets = sequence.targets.repeat(n_seeds, 1)
    per_token = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE,
                                                  reduction="none")
    real = sequence.targets != IGNORE
    return Answers(logits.argmax(-1), sequence.targets, real, per_token.view(n_seeds, -1).sum(1), whole=False)


class Posing(ABC):
    arch: str

    @abstractmethod
    def check_task(self, task: Task) -> None:
        """ConfigError if this family cannot be posed the task."""

    @abstractmethod
    def max_len(self, task: Task) -> int:
        """The positions the model needs for the task's longest sample."""

    @abstractmethod
    def pose(self, batch: Batch) -> Posed: ...

    @abstractmethod
    def answers(self, model, batch: Batch, n_seeds: int, switches: Switches | None) -> Answers:
        """Each seed's answers when the model sees only the input (and, generating, what it wrote itself)."""


class EncoderDecoderPosing(Posing):
    arch = "encoder_decoder"

    def check_task(self, task: Task) -> None:
        """Every task but a corpus has a source to encode and a target to decode."""
        if task.reads_text:
            raise ConfigError("arch", f"task {quoted(task.name)} is a text to read, with no source to encode and "
                                      "no target to decode; a GPT (decoder_only) or a BERT (encoder_only) reads it")

    def max_len(self, task: Task) -> int:
        return max(task.max_src_tokens, task.max_tgt_tokens + 1) + 1

    def pose(self, batch: Batch) -> Posed:
        return Posed((batch.src, batch.tgt_in), batch.tgt_out.masked_fill(batch.tgt_out == PAD, IGNORE),
                     {"encoder": batch.src != PAD, "decoder": batch.tgt_in != PAD})

    def answers(self, model: Seq2Seq, batch: Batch, n_seeds: int, switches: Switches | None) -> Answers:
        expected = batch.tgt_out  # (B, T) target + EOS, PAD after
        given = model.greedy_decode(batch.src.repeat(n_seeds, 1), expected.size(1), switches)
        return Answers(_padded_to(given, expected.size(1)), expected, expected != PAD)


class DecoderOnlyPosing(Posing):
    arch = "decoder_only"

    def check_task(self, task: Task) -> None:
        if task.src_tokenizer != task.tgt_tokenizer:
            raise ConfigError("arch", f"task {quoted(task.name)} reads {task.src_tokenizer.kind}s and writes "
                                      f"{task.tgt_tokenizer.kind}s of another vocabulary; a GPT writes the tokens "
                                      "it reads, so it can be posed only tasks with one vocabulary (copy, reverse, "
                                      "sort)")

    def max_len(self, task: Task) -> int:
        if task.reads_text:
            return task.max_src_tokens - 1  # a window's characters but its last, each predicting the next
        return task.max_src_tokens + 1 + task.max_tgt_tokens  # prompt, separator, answer (its EOS is not read)

    def pose(self, batch: Batch) -> Posed:
        sequence = next_character(batch) if batch.text else one_sequence(batch)
        return Posed((sequence.tokens,), sequence.targets, {"decoder": sequence.tokens != PAD})

    def answers(self, model: OneStack, batch: Batch, n_seeds: int, switches: Switches | None) -> Answers:
        if batch.text:
            return _read_teacher_forced(model, next_character(batch), n_seeds, switches)
        prompts = [[t for t in row if t != PAD] + [BOS] for row in batch.src.tolist()]  # as one_sequence poses them
        expected = batch.tgt_out
        given = greedy_answers(model, prompts, expected.size(1), n_seeds, switches)
        return Answers(given, expected, expected != PAD)


class EncoderOnlyPosing(Posing):
    arch = "encoder_only"

    def check_task(self, task: Task) -> None:
        # A digit task rearranges its input, so its answer has a token per input position; a corpus is masked.
        if not isinstance(task, DigitTask) and not task.reads_text:
            raise ConfigError("arch", f"task {quoted(task.name)} has no answer token per input position; BERT "
                                      "answers at every position, so it can be posed copy, reverse, sort or a text")

    def max_len(self, task: Task) -> int:
        return task.max_src_tokens

    def pose(self, batch: Batch) -> Posed:
        sequence = masked_characters(batch, MASK_ID) if batch.text else per_position(batch)
        return Posed((sequence.tokens,), sequence.targets, {"encoder": sequence.tokens != PAD})

    def answers(self, model: OneStack, batch: Batch, n_seeds: int, switches: Switches | None) -> Answers:
        if batch.text:
            return _read_teacher_forced(model, masked_characters(batch, MASK_ID), n_seeds, switches)
        # A BERT's answer has one token per input position and no EOS (its length is the input's), so its token
        # accuracy counts the answer's tokens only, where a GPT's and the 2017 model's count their EOS too.
        sequence = per_position(batch)
        given = model(sequence.tokens.repeat(n_seeds, 1), switches).argmax(-1)
        return Answers(given, sequence.targets, sequence.targets != IGNORE)


@torch.no_grad()
def greedy_answers(model: OneStack, prompts: list[list[int]], max_new_tokens: int, n_seeds: int = 1,
                   switches: Switches | None = None) -> torch.Tensor:
    """A GPT continuing every prompt at once, each seed of a stacked model its own copy of the prompts: row r is
    what `greedy_continue` gives for prompt r alone (then EOS, then PAD). Rows are right-padded with PAD, which no
    position reads, and a position reads only positions up to its own (with the causal mask) or the real tokens
    so far (without it), so a row's padding and the rows beside it never change its answer."""
    rows = prompts * n_seeds
    lengths = torch.tensor([len(p) for p in rows])
    # A row may write until its last token sits at position max_len: that token is never read, so a prompt of
    # P tokens has max_len - P + 1 tokens to write.
    limits = (model.config.max_len - lengths + 1).clamp(max=max_new_tokens)
    steps = int(limits.max())
    sequence = torch.full((len(rows), int(lengths.max()) + steps), PAD)
    for r, prompt in enumerate(rows):
        sequence[r, : len(prompt)] = torch.tensor(prompt)
    given = torch.full((len(rows), max_new_tokens), PAD)
    done = limits <= 0
    at = torch.arange(len(rows))
    for j in range(steps):
        read = min(int(lengths.max()) + j, model.config.max_len)  # every unfinished row's last token is inside
        logits = model(sequence[:, :read], switches)
        next_token = logits[at, (lengths + j - 1).clamp(max=read - 1)].argmax(-1).masked_fill(done, PAD)
        sequence[at, lengths + j] = next_token
        given[:, j] = next_token
        done |= (next_token == EOS) | (j + 1 >= limits)
        if done.all():
            break
    return given


def _padded_to(ids: torch.Tensor, width: int) -> torch.Tensor:
    return torch.nn.functional.pad(ids, (0, width - ids.size(1)), value=PAD)


POSINGS: dict[str, Posing] = {p.arch: p for p in (EncoderDecoderPosing(), DecoderOnlyPosing(), EncoderOnlyPosing())}


def posing_for(arch: str) -> Posing:
    return POSINGS[arch]
