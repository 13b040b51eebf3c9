"""Tokenizers: a vocabulary whose first three tokens are the specials, by character or by word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from model.config import quoted

PAD = 0
BOS = 1
EOS = 2
SPECIALS: tuple[str, ...] = ("<pad>", "<bos>", "<eos>")

TokenizerKind = Literal["char", "word", "text"]
SHOWN_WHITESPACE = {" ": "␣", "\n": "↵"}
WHITESPACE_SHOWN = {mark: token for token, mark in SHOWN_WHITESPACE.items()}
LISTED_TOKENS = 40  # an error lists the allowed tokens up to this many (a corpus has thousands of characters)


class UnknownTokenError(ValueError):
    """A token that is not in the vocabulary; `position` indexes `Tokenizer.split(text)`."""

    def __init__(self, token: str, position: int, allowed: tuple[str, ...]):
        listed = " ".join(allowed) if len(allowed) <= LISTED_TOKENS else f"the {len(allowed)} characters of the corpus"
        super().__init__(f"unknown token {quoted(token)} at position {position}; allowed: {listed}")
        self.token = token
        self.position = position
        self.allowed = allowed


@dataclass(frozen=True)
class Tokenizer:
    vocab: tuple[str, ...]  # index = id; the three SPECIALS come first
    # "char": every non-space character is a token; "word": split on whitespace; "text": every character is a
    # token, spaces and line breaks included (a corpus read as written)
    kind: TokenizerKind
    # For number words typed by a learner: "Forty-Two" reads as "forty two".
    fold_case_and_hyphens: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("char", "word", "text"):
            raise ValueError(f"kind {self.kind!r} is not allowed; choose one of char | word | text")
        if self.vocab[: len(SPECIALS)] != SPECIALS:
            raise ValueError(f"vocabulary must start with {' '.join(SPECIALS)}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocabulary has duplicate tokens")
        if self.kind != "word" and any(len(t) != 1 for t in self.learner_tokens):
            raise ValueError("a char vocabulary holds single characters only")

    @property
    def size(self) -> int:
        return len(self.vocab)

    @property
    def learner_tokens(self) -> tuple[str, ...]:
        """The tokens a learner may type: everything but the specials."""
        return self.vocab[len(SPECIALS) :]

    @cached_property
    def _id_of(self) -> dict[str, int]:
        # Specials are left out on purpose: "<pad>" typed by a learner is an unknown token.
        return {token: i for i, token in enumerate(self.vocab) if i >= len(SPECIALS)}

    def split(self, text: str) -> list[str]:
        if self.fold_case_and_hyphens:
            text = text.lower().replace("-", " ")
        if self.kind == "char":
            return [c for c in text if not c.isspace()]
        if self.kind == "text":
            return list(text)
        return text.split()

    def encode(self, text: str) -> list[int]:
        """Ids without BOS/EOS."""
        ids = []
        for position, token in enumerate(self.split(text)):
            if token not in self._id_of:
                raise UnknownTokenError(token, position, self.learner_tokens)
            ids.append(self._id_of[token])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text up to the first EOS; PAD and BOS are skipped."""
        tokens = []
        for i in ids:
            if i == EOS:
                break
            if i not in (PAD, BOS):
                tokens.append(self.token(i))
        return ("" if self.kind != "word" else " ").join(tokens)

    def shown(self, token: str) -> str:
        """The token as a page labels it: a text's space and line break as visible marks."""
        return SHOWN_WHITESPACE.get(token, token) if self.kind == "text" else token

    def id_of_shown(self, shown: str) -> int:
        """The id of a token as a page labelled it (shown's inverse)."""
        if self.kind == "text":
            shown = WHITESPACE_SHOWN.get(shown, shown)
        return self.vocab.index(shown)

    def token(self, id: int) -> str:
        if not 0 <= id < self.size:
            raise ValueError(f"token id {id} is outside the vocabulary (0..{self.size - 1})")
        return self.vocab[id]


def make_tokenizer(tokens: Sequence[str], kind: TokenizerKind, fold_case_and_hyphens: bool = False) -> Tokenizer:
    return Tokenizer(SPECIALS + tuple(tokens), kind, fold_case_and_hyphens)
