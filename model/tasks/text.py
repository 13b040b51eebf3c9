"""Text to read: a character-level corpus shipped with the package, posed to a GPT as next-character prediction
and to a BERT as masked-character prediction.

A sample is a window of `context + 1` characters from one split of the corpus: the source is the window with
about one character in seven hidden behind the mask character "_" (what a BERT reads), the target the window
itself (what a GPT reads and predicts one character ahead, and what a BERT must fill in). Whole passages (a poem,
a sonnet) are held out, chosen by a stable hash of their text as every task's held-out inputs are, so the model
is scored on passages it never read; about half of them are kept apart to choose a model on ("selection").
Every character is a token, spaces and line breaks included.

BERT replaced 80% of its chosen tokens with [MASK], 10% with a random token and kept 10%, because it was then
fine-tuned on text without masks; here the model is only ever asked to fill masks, so every chosen character is
masked.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import cached_property
from importlib.resources import files
from typing import ClassVar

from model.tasks.base import HELDOUT_PERCENT, MAX_SAMPLE_ATTEMPTS, Split, Task, _check_split, _stable_percent
from model.tasks.tokenizers import SPECIALS, Tokenizer, make_tokenizer

MASK = "_"  # the mask character: a learner types it where a character is hidden; no corpus holds it
MASK_ID = len(SPECIALS)  # its id in every corpus vocabulary: the first after the specials
MASK_SHARE = 0.15  # of a window's characters, as BERT's
PASSAGE_BREAK = "\n\n"
SELECTION_SALT = "#selection"  # a second stable hash of a held-out passage: which half it falls in
LINE_CHARS = 40  # longest held-out line offered as a random input
CONTINUATION = 16  # characters a GPT writes after a typed line in the playground's trace (each is a traced step)
SAMPLED_CHARACTERS = 40  # characters of each continuation sampled with a temperature (not traced: cheaper)


@dataclass(frozen=True)
class TextTask(Task):
    """Windows of a corpus of passages. `passages` is the corpus split into its poems or sonnets."""

    passages: tuple[str, ...] = field(repr=False, default=())
    source: str = ""  # where the text came from, for the page and the docs
    reads_text: ClassVar[bool] = True

    @cached_property
    def _text_of(self) -> dict[str, str]:
        """Each split's passages joined into one text; windows are drawn from it. About half of the held-out
        passages are kept apart as "selection": a model is chosen on them (the zoo keeps a text model at its best
        step) and scored on the other half, so its score was not picked on the windows it reports."""
        split = {"train": [], "heldout": [], "selection": []}
        for passage in self.passages:
            name = "train" if not self.is_heldout(passage) else \
                "selection" if _stable_percent(passage + SELECTION_SALT) < 50 else "heldout"
            split[name].append(passage)
        return {name: PASSAGE_BREAK.join(parts) + PASSAGE_BREAK for name, parts in split.items()}

    @property
    def context(self) -> int:
        return self.max_src_tokens - 1

    def is_heldout(self, src_text: str) -> bool:
        return _stable_percent(src_text) < HELDOUT_PERCENT

    def split_sizes(self) -> dict[str, int]:
        """Characters per split (train, heldout, selection)."""
        return {name: len(text) for name, text in self._text_of.items()}

    def target(self, src_text: str) -> str:
        """The text itself: what a GPT predicts one character ahead and what a BERT fills in."""
        self.src_tokenizer.encode(src_text)  # raises UnknownTokenError on a character the corpus never has
        if not src_text:
            raise ValueError("empty input; type a line of text")
        return src_text

    def selection_set(self, n: int, seed: int = 1234) -> list[tuple[str, str]]:
        """n windows of the selection passages (held out, not scored): what a model is chosen on."""
        rng = random.Random(seed)
        return [(self.masked(rng, window), window)
                for window in (self.window(rng, "selection") for _ in range(min(n, MAX_SAMPLE_ATTEMPTS)))]

    def window(self, rng: random.Random, split: str) -> str:
        text = self._text_of[split]
        start = rng.randrange(len(text) - self.max_src_tokens + 1)
        return text[start : start + self.max_src_tokens]

    def masked(self, rng: random.Random, window: str) -> str:
        """The window with MASK_SHARE of its characters (at least one) hidden behind MASK."""
        n = max(1, round(MASK_SHARE * len(window)))
        hidden = set(rng.sample(range(len(window)), n))
        return "".join(MASK if i in hidden else c for i, c in enumerate(window))

    def sample(self, rng: random.Random, split: Split = "train", min_len: int | None = None,
               max_len: int | None = None) -> tuple[str, str]:
        _check_split(split)
        window = self.window(rng, split)
        return self.masked(rng, window), window

    def heldout_set(self, n: int, seed: int = 1234, min_len: int | None = None,
                    max_len: int | None = None) -> list[tuple[str, str]]:
        """n windows of the held-out passages (overlapping windows are different samples)."""
        rng = random.Random(seed)
        return [self.sample(rng, "heldout") for _ in range(min(n, MAX_SAMPLE_ATTEMPTS))]

    def line(self, rng: random.Random, masked: bool) -> str:
        """A line of a held-out passage, for a learner to try (a BERT's with characters masked)."""
        lines = [line for line in self._text_of["heldout"].splitlines() if 0 < len(line) <= LINE_CHARS]
        line = rng.choice(lines)
        return self.masked(rng, line) if masked else line

    @property
    def masked_example(self) -> str:
        """The example with one character behind the mask, for a BERT: the one in the middle."""
        middle = len(self.example) // 2
        return self.example[:middle] + MASK + self.example[middle + 1:]

    def _canonical(self, src_text: str) -> str:
        return src_text


def corpus(name: str) -> str:
    return files("model.tasks").joinpath("corpora", name).read_text(encoding="utf-8")


def text_task(name: str, title: str, description: str, example: str, file: str, source: str,
              context: int) -> TextTask:
    """A task over a corpus file whose passages are separated by blank lines."""
    text = corpus(file)
    passages = tuple(p.strip("\n") for p in text.split(PASSAGE_BREAK) if p.strip())
    characters = sorted(set(PASSAGE_BREAK.join(passages)))
    if MASK in characters:
        raise ValueError(f"corpus {file} holds the mask character {MASK!r}")
    tokenizer: Tokenizer = make_tokenizer([MASK, *characters], "text")
    assert tokenizer.encode(MASK) == [MASK_ID]
    return TextTask(name=name, title=title, description=description, example=example, src_tokenizer=tokenizer,
                    tgt_tokenizer=tokenizer, min_len=context + 1, max_len=context + 1,
                    max_src_tokens=context + 1, max_tgt_tokens=context + 1, passages=passages, source=source)
