"""What every task shares: the held-out split, sampling, padded batches; digit tasks and number tasks."""

from __future__ import annotations

import hashlib
import itertools
import random
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar, Literal

import torch

from model.tasks.tokenizers import BOS, EOS, PAD, Tokenizer

HELDOUT_PERCENT = 10
Split = Literal["train", "heldout"]

DIGITS = "0123456789"
# Rejection sampling draws a held-out input about once in ten tries; this many failures means the
# requested length range has no input of the wanted split at all.
MAX_SAMPLE_ATTEMPTS = 10_000
# A held-out set of n is drawn at random only from a length range with more than this many times n
# strings, and more than SMALL_SPACE strings in all (so the held-out share is reliably near 10% and
# at least twice n strings are held out); smaller ranges are listed exhaustively.
SMALL_SPACE_FACTOR = 20
SMALL_SPACE = 20_000


def _stable_percent(text: str) -> int:
    """0..99 from the text's SHA-256: the same on every run, unlike Python's salted hash()."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % 100


@dataclass
class Batch:
    src: torch.Tensor  # (B, S) int64 source ids, right-padded with PAD, no BOS/EOS
    tgt_in: torch.Tensor  # (B, T) int64: BOS + target ids, padded (what the decoder reads)
    tgt_out: torch.Tensor  # (B, T) int64: target ids + EOS, padded (the labels: tgt_in shifted left)
    src_texts: list[str]
    tgt_texts: list[str]
    text: bool = False  # windows of a corpus (model/tasks/text.py): src the masked window, tgt the window


@dataclass(frozen=True)
class Task(ABC):
    name: str
    title: str
    description: str  # one sentence with an example
    example: str  # the input a page opens with
    src_tokenizer: Tokenizer
    tgt_tokenizer: Tokenizer
    min_len: int  # source length range used in training
    max_len: int
    max_src_tokens: int  # longest source the task ever produces (sizes the positional table)
    max_tgt_tokens: int  # longest target, without BOS/EOS
    reads_text: ClassVar[bool] = False  # a corpus read by a GPT or a BERT, not a source to turn into a target

    @abstractmethod
    def target(self, src_text: str) -> str:
        """The correct answer for a valid source; UnknownTokenError or ValueError otherwise."""

    @abstractmethod
    def sample(
        self, rng: random.Random, split: Split = "train", min_len: int | None = None, max_len: int | None = None
    ) -> tuple[str, str]:
        """One (source text, target text) pair from the given split."""

    @abstractmethod
    def heldout_set(
        self, n: int, seed: int = 1234, min_len: int | None = None, max_len: int | None = None
    ) -> list[tuple[str, str]]:
        """Up to n distinct held-out pairs, the same for the same arguments."""

    def is_heldout(self, src_text: str) -> bool:
        return _stable_percent(self._canonical(src_text)) < HELDOUT_PERCENT

    def batch(
        self,
        rng: random.Random,
        batch_size: int,
        split: Split = "train",
        min_len: int | None = None,
        max_len: int | None = None,
    ) -> Batch:
        return collate(self, [self.sample(rng, split, min_len, max_len) for _ in range(batch_size)])

    def _canonical(self, src_text: str) -> str:
        # "3 1 4" and "314", or "Forty-Two" and "forty two", are the same input and land in the same split.
        joiner = "" if self.src_tokenizer.kind == "char" else " "
        return joiner.join(self.src_tokenizer.split(src_text))


def _check_split(split: str) -> None:
    if split not in ("train", "heldout"):
        raise ValueError(f"split {split!r} is not allowed; choose one of train | heldout")


@dataclass(frozen=True)
class DigitTask(Task):
    """A string of digits in, a rearrangement of it out."""

    rule: Callable[[str], str] = field(repr=False)

    def target(self, src_text: str) -> str:
        self.src_tokenizer.encode(src_text)  # raises UnknownTokenError on anything but digits
        digits = self._canonical(src_text)
        if not digits:
            raise ValueError("empty input; type at least one digit")
        return self.rule(digits)

    def length_range(self, min_len: int | None = None, max_len: int | None = None) -> tuple[int, int]:
        """The training range, or an override of it checked against what the model can hold."""
        low = self.min_len if min_len is None else min_len
        high = self.max_len if max_len is None else max_len
        if not 1 <= low <= high <= self.max_src_tokens:
            raise ValueError(
                f"length range {low}..{high} is not allowed; need 1 <= min_len <= max_len <= {self.max_src_tokens}"
            )
        return low, high

    def sample(
        self, rng: random.Random, split: Split = "train", min_len: int | None = None, max_len: int | None = None
    ) -> tuple[str, str]:
        _check_split(split)
        low, high = self.length_range(min_len, max_len)
        want_heldout = split == "heldout"
        for _ in range(MAX_SAMPLE_ATTEMPTS):
            src = "".join(rng.choices(DIGITS, k=rng.randint(low, high)))
            if self.is_heldout(src) == want_heldout:
                return src, self.rule(src)
        raise ValueError(f"found no {split} input of length {low}..{high} for task {self.name!r}")

    def heldout_set(
        self, n: int, seed: int = 1234, min_len: int | None = None, max_len: int | None = None
    ) -> list[tuple[str, str]]:
        rng = random.Random(seed)
        low, high = self.length_range(min_len, max_len)
        space = sum(10**length for length in range(low, high + 1))
        if space <= max(SMALL_SPACE_FACTOR * n, SMALL_SPACE):
            # Drawing at random would repeat itself long before it found every held-out string, so
            # list them all instead; this returns fewer than n when fewer exist.
            sources = [
                src
                for length in range(low, high + 1)
                for src in map("".join, itertools.product(DIGITS, repeat=length))
                if self.is_heldout(src)
            ]
            rng.shuffle(sources)
            return [(src, self.rule(src)) for src in sources[:n]]
        pairs: dict[str, str] = {}
        for _ in range(MAX_SAMPLE_ATTEMPTS * n):  # a bound that is never reached, rather than a possible hang
            if len(pairs) == n:
                break
            src, tgt = self.sample(rng, "heldout", low, high)
            pairs.setdefault(src, tgt)
        return list(pairs.items())


@dataclass(frozen=True)
class NumberTask(Task):
    """A number from 0 to 999 written out (in words or numerals) in, its digits out."""

    spellings: tuple[str, ...] = field(repr=False)  # index = the number
    notation: str = ""  # how the source is written, for error messages: "in words"

    @cached_property
    def _number_of(self) -> dict[str, int]:
        return {text: number for number, text in enumerate(self.spellings)}

    @cached_property
    def _pairs_by_split(self) -> dict[str, list[tuple[str, str]]]:
        pairs: dict[str, list[tuple[str, str]]] = {"train": [], "heldout": []}
        for number, text in enumerate(self.spellings):
            pairs["heldout" if self.is_heldout(text) else "train"].append((text, str(number)))
        return pairs

    def target(self, src_text: str) -> str:
        self.src_tokenizer.encode(src_text)  # raises UnknownTokenError naming the allowed vocabulary
        text = self._canonical(src_text)
        example = self.spellings[312]
        if not text:
            raise ValueError(f"empty input; write a number between 0 and 999 {self.notation}, like {example!r}")
        # Every well-formed number 0..999 has exactly one spelling, so normalising and looking it up
        # parses it: anything not found is not a number in this notation.
        if text not in self._number_of:
            raise ValueError(f"{text!r} is not a number between 0 and 999 {self.notation} (write it like {example!r})")
        return str(self._number_of[text])

    def sample(
        self, rng: random.Random, split: Split = "train", min_len: int | None = None, max_len: int | None = None
    ) -> tuple[str, str]:
        _check_split(split)
        return rng.choice(self._pairs_by_split[split])

    def heldout_set(
        self, n: int, seed: int = 1234, min_len: int | None = None, max_len: int | None = None
    ) -> list[tuple[str, str]]:
        pairs = list(self._pairs_by_split["heldout"])
        random.Random(seed).shuffle(pairs)
        return pairs[:n]


def collate(task: Task, pairs: list[tuple[str, str]]) -> Batch:
    """Encode (source, target) pairs into right-padded tensors."""
    if not pairs:
        raise ValueError("cannot make a batch from no pairs")
    srcs = [task.src_tokenizer.encode(src) for src, _ in pairs]
    tgts = [task.tgt_tokenizer.encode(tgt) for _, tgt in pairs]
    for (src_text, tgt_text), src, tgt in zip(pairs, srcs, tgts, strict=True):
        # The model's positional table is sized from these limits; longer inputs cannot be placed.
        if len(src) > task.max_src_tokens:
            raise ValueError(
                f"source {src_text!r} has {len(src)} tokens; task {task.name!r} allows at most {task.max_src_tokens}"
            )
        if len(tgt) > task.max_tgt_tokens:
            raise ValueError(
                f"target {tgt_text!r} has {len(tgt)} tokens; task {task.name!r} allows at most {task.max_tgt_tokens}"
            )
    src_width = max(len(s) for s in srcs)
    tgt_width = max(len(t) for t in tgts) + 1  # room for BOS (tgt_in) or EOS (tgt_out)

    def padded(rows: list[list[int]], width: int) -> torch.Tensor:
        return torch.tensor([row + [PAD] * (width - len(row)) for row in rows], dtype=torch.long)

    src = padded(srcs, src_width)
    tgt_in = padded([[BOS, *t] for t in tgts], tgt_width)
    tgt_out = padded([[*t, EOS] for t in tgts], tgt_width)
    return Batch(src, tgt_in, tgt_out, [s for s, _ in pairs], [t for _, t in pairs], task.reads_text)
