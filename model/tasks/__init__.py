"""Toy sequence-to-sequence tasks, their tokenizers, and padded batches.

Every task is deterministic given a `random.Random`, and sets aside about 10% of its possible
inputs as held out: chosen by a stable hash of the source text, so the split is the same on every
machine and in every run, and training never sees an input that evaluation is scored on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from model.tasks.base import (  # noqa: F401
    DIGITS,
    Batch,
    DigitTask,
    NumberTask,
    Split,
    Task,
    collate,
)
from model.tasks.numerals import EN_ONES, EN_TENS, ZH_DIGITS, chinese_numeral, english_words  # noqa: F401
from model.tasks.text import MASK, TextTask, text_task  # noqa: F401
from model.tasks.tokenizers import (  # noqa: F401
    BOS,
    EOS,
    PAD,
    SPECIALS,
    Tokenizer,
    TokenizerKind,
    UnknownTokenError,
    make_tokenizer,
)

DIGIT_TOKENIZER = make_tokenizer(DIGITS, "char")
DIGIT_MAX_TOKENS = 16  # above the training range, so length extrapolation can be tested


def _digit_task(name: str, title: str, description: str, example: str, rule: Callable[[str], str]) -> DigitTask:
    return DigitTask(
        name=name,
        title=title,
        description=description,
        example=example,
        src_tokenizer=DIGIT_TOKENIZER,
        tgt_tokenizer=DIGIT_TOKENIZER,
        min_len=4,
        max_len=10,
        max_src_tokens=DIGIT_MAX_TOKENS,
        max_tgt_tokens=DIGIT_MAX_TOKENS,
        rule=rule,
    )


def _number_task(
    name: str, title: str, description: str, example: str, src_tokenizer: Tokenizer, notation: str
) -> NumberTask:
    spell = english_words if src_tokenizer.kind == "word" else chinese_numeral
    spellings = tuple(spell(n) for n in range(1000))
    src_lengths = [len(src_tokenizer.split(text)) for text in spellings]
    return NumberTask(
        name=name,
        title=title,
        description=description,
        example=example,
        src_tokenizer=src_tokenizer,
        tgt_tokenizer=DIGIT_TOKENIZER,
        min_len=min(src_lengths),
        max_len=max(src_lengths),
        max_src_tokens=max(src_lengths),
        max_tgt_tokens=len("999"),
        spellings=spellings,
        notation=notation,
    )


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        _digit_task(
            "reverse",
            "Reverse a digit string",
            "Write the digits in reverse order: 3141 → 1413",
            "31415926",
            lambda digits: digits[::-1],
        ),
        _digit_task(
            "copy",
            "Copy a digit string",
            "Write the same digits again: 3141 → 3141",
            "27182818",
            lambda digits: digits,
        ),
        _digit_task(
            "sort",
            "Sort the digits",
            "Write the digits in ascending order: 3141 → 1134",
            "31415926",
            lambda digits: "".join(sorted(digits)),
        ),
        _number_task(
            "en_numbers",
            "English number words to digits",
            "Write a number given in English words as digits: three hundred twelve → 312",
            "three hundred twelve",
            make_tokenizer([*EN_ONES, *EN_TENS[2:], "hundred"], "word", fold_case_and_hyphens=True),
            "in words",
        ),
        _number_task(
            "zh_numbers",
            "Chinese numerals to digits",
            "Write a number given in Chinese numerals as digits: 三百一十二 → 312",
            "三百一十二",
            make_tokenizer(ZH_DIGITS + "十百", "char"),
            "in standard Chinese numerals",
        ),
        text_task(
            "tang_poems",
            "Tang poems, character by character",
            "The 300 Tang poems, read a character at a time; a GPT writes the next one, a BERT fills in a hidden one: "
            "床前明_光 → 月",
            "床前明月光，",
            "tang300.txt",
            "唐诗三百首, from Debian's fortunes-zh (public domain)",
            context=64,
        ),
        text_task(
            "en_text",
            "Shakespeare's sonnets, character by character",
            "Shakespeare's sonnets, read a character at a time; a GPT writes the next one, a BERT fills in a "
            "hidden one: summer's d_y → a",
            "Shall I compare thee to a summer's day?",
            "sonnets.txt",
            "Shakespeare's Sonnets, the Project Gutenberg text (public domain)",
            context=64,
        ),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {' | '.join(TASKS)}")
    return TASKS[name]


def register_task(task: Task) -> Task:
    """A task every part of the app can use by its name: training, the lab's form, the playground."""
    TASKS[task.name] = task
    return task


@contextmanager
def registered_task(task: Task) -> Iterator[Task]:
    """A task registered for the length of a `with` block (tests add one and take it away again)."""
    register_task(task)
    try:
        yield task
    finally:
        TASKS.pop(task.name, None)
