import random

import pytest
import torch

from model.tasks import (
    BOS,
    EOS,
    MASK,
    PAD,
    TASKS,
    UnknownTokenError,
    chinese_numeral,
    collate,
    english_words,
    get_task,
)
from model.tasks.text import PASSAGE_BREAK

DIGIT_TASKS = ["reverse", "copy", "sort"]
NUMBER_TASKS = ["en_numbers", "zh_numbers"]


# --- targets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "src", "expected"),
    [
        ("reverse", "3141", "1413"),
        ("reverse", "1200", "0021"),
        ("copy", "3141", "3141"),
        ("sort", "3141", "1134"),
        ("sort", "9081726354", "0123456789"),
    ],
)
def test_digit_targets(name: str, src: str, expected: str) -> None:
    assert get_task(name).target(src) == expected


EN_EXAMPLES = {
    0: "zero",
    7: "seven",
    10: "ten",
    13: "thirteen",
    20: "twenty",
    42: "forty two",
    90: "ninety",
    100: "one hundred",
    105: "one hundred five",
    110: "one hundred ten",
    119: "one hundred nineteen",
    312: "three hundred twelve",
    700: "seven hundred",
    999: "nine hundred ninety nine",
}

ZH_EXAMPLES = {
    0: "零",
    7: "七",
    10: "十",
    12: "十二",
    20: "二十",
    42: "四十二",
    100: "一百",
    105: "一百零五",
    110: "一百一十",
    312: "三百一十二",
    700: "七百",
    999: "九百九十九",
}


@pytest.mark.parametrize(("number", "words"), EN_EXAMPLES.items())
def test_english_examples(number: int, words: str) -> None:
    assert english_words(number) == words
    assert get_task("en_numbers").target(words) == str(number)


@pytest.mark.parametrize(("number", "numeral"), ZH_EXAMPLES.items())
def test_chinese_examples(number: int, numeral: str) -> None:
    assert chinese_numeral(number) == numeral
    assert get_task("zh_numbers").target(numeral) == str(number)


@pytest.mark.parametrize("name", NUMBER_TASKS)
def test_every_number_parses_back_from_its_spelling(name: str) -> None:
    task = get_task(name)
    spell = english_words if name == "en_numbers" else chinese_numeral
    spellings = [spell(n) for n in range(1000)]
    assert len(set(spellings)) == 1000
    for number, text in enumerate(spellings):
        assert task.target(text) == str(number)
        assert len(task.src_tokenizer.encode(text)) <= task.max_src_tokens
    assert task.max_src_tokens == max(len(task.src_tokenizer.split(t)) for t in spellings)
    assert task.max_tgt_tokens == 3


@pytest.mark.parametrize(
    "typed",
    ["Forty-Two", "FORTY TWO", "  forty\t two \n", "forty - two"],
)
def test_english_input_is_normalised(typed: str) -> None:
    task = get_task("en_numbers")
    assert task.target(typed) == "42"
    assert task.src_tokenizer.split(typed) == ["forty", "two"]
    assert task.is_heldout(typed) == task.is_heldout("forty two")


@pytest.mark.parametrize("text", ["hundred three", "forty forty", "two one", "one hundred hundred", "zero five"])
def test_english_non_numbers_are_rejected_clearly(text: str) -> None:
    with pytest.raises(ValueError, match=f"'{text}' is not a number between 0 and 999 in words") as caught:
        get_task("en_numbers").target(text)
    assert not isinstance(caught.value, UnknownTokenError)


@pytest.mark.parametrize("text", ["百", "十十", "一十二", "一百五", "零五", "一百零十"])
def test_chinese_non_numbers_are_rejected_clearly(text: str) -> None:
    with pytest.raises(ValueError, match=f"'{text}' is not a number between 0 and 999"):
        get_task("zh_numbers").target(text)


@pytest.mark.parametrize("name", [*DIGIT_TASKS, *NUMBER_TASKS])
def test_empty_input_is_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="empty input"):
        get_task(name).target("   ")


def test_unknown_words_name_the_word_and_the_vocabulary() -> None:
    with pytest.raises(UnknownTokenError) as caught:
        get_task("en_numbers").target("one hundred and five")
    assert caught.value.token == "and"
    assert caught.value.position == 2
    assert "'and'" in str(caught.value)
    assert "hundred" in caught.value.allowed and "zero" in caught.value.allowed


# --- tokenizers -------------------------------------------------------------------------------


def test_specials_come_first_in_every_vocabulary() -> None:
    assert (PAD, BOS, EOS) == (0, 1, 2)
    for task in TASKS.values():
        for tokenizer in (task.src_tokenizer, task.tgt_tokenizer):
            assert tokenizer.vocab[:3] == ("<pad>", "<bos>", "<eos>")
            assert tokenizer.size == len(tokenizer.vocab)
            assert tokenizer.token(PAD) == "<pad>"


def test_unknown_token_error_names_token_position_and_vocabulary() -> None:
    with pytest.raises(UnknownTokenError) as caught:
        get_task("reverse").target("12x4")
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.token, error.position) == ("x", 2)
    assert error.allowed == tuple("0123456789")
    assert str(error) == "unknown token 'x' at position 2; allowed: 0 1 2 3 4 5 6 7 8 9"


@pytest.mark.parametrize("name", ["reverse", "en_numbers", "zh_numbers"])
def test_typed_special_tokens_are_unknown(name: str) -> None:
    tokenizer = get_task(name).src_tokenizer
    for special in ("<pad>", "<bos>", "<eos>"):
        with pytest.raises(UnknownTokenError):
            tokenizer.encode(special)


def test_char_tokenizer_ignores_spaces() -> None:
    tokenizer = get_task("zh_numbers").src_tokenizer
    assert tokenizer.split("一百 零五") == ["一", "百", "零", "五"]
    digits = get_task("copy").src_tokenizer
    assert digits.encode("3 1 4") == digits.encode("314")


@pytest.mark.parametrize("name", [*DIGIT_TASKS, *NUMBER_TASKS])
def test_encode_decode_round_trip(name: str) -> None:
    task = get_task(name)
    rng = random.Random(0)
    for _ in range(50):
        src, tgt = task.sample(rng)
        assert task.src_tokenizer.decode(task.src_tokenizer.encode(src)) == src
        assert task.tgt_tokenizer.decode(task.tgt_tokenizer.encode(tgt)) == tgt


def test_decode_skips_pad_and_bos_and_stops_at_eos() -> None:
    en = get_task("en_numbers").src_tokenizer
    ids = [BOS, *en.encode("forty two"), EOS, *en.encode("one"), PAD]
    assert en.decode(ids) == "forty two"
    digits = get_task("reverse").tgt_tokenizer
    assert digits.decode([BOS, *digits.encode("31"), PAD, *digits.encode("4"), EOS, PAD]) == "314"


def test_token_outside_vocabulary_is_rejected() -> None:
    tokenizer = get_task("reverse").tgt_tokenizer
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.token(tokenizer.size)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokenizer.token(-1)


# --- splits -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["reverse", "en_numbers", "zh_numbers"])
def test_train_and_heldout_samples_are_disjoint(name: str) -> None:
    task = get_task(name)
    rng = random.Random(1)
    train = {task.sample(rng, "train")[0] for _ in range(3000)}
    heldout = {task.sample(rng, "heldout")[0] for _ in range(300)}
    assert not any(task.is_heldout(src) for src in train)
    assert all(task.is_heldout(src) for src in heldout)
    assert not train & heldout


def test_about_ten_percent_is_held_out() -> None:
    rng = random.Random(2)
    digit_strings = ["".join(rng.choices("0123456789", k=rng.randint(4, 10))) for _ in range(5000)]
    reverse = get_task("reverse")
    assert 0.08 < sum(map(reverse.is_heldout, digit_strings)) / 5000 < 0.12
    for name, spell in (("en_numbers", english_words), ("zh_numbers", chinese_numeral)):
        task = get_task(name)
        assert 70 <= sum(task.is_heldout(spell(n)) for n in range(1000)) <= 130


@pytest.mark.parametrize("name", [*DIGIT_TASKS, *NUMBER_TASKS])
def test_heldout_set_is_heldout_distinct_correct_and_fixed(name: str) -> None:
    task = get_task(name)
    pairs = task.heldout_set(60)
    assert len(pairs) == 60
    assert len({src for src, _ in pairs}) == 60
    for src, tgt in pairs:
        assert task.is_heldout(src)
        assert task.target(src) == tgt
    assert task.heldout_set(60) == pairs
    assert task.heldout_set(60, seed=99) != pairs


@pytest.mark.parametrize(("name", "spell"), [("en_numbers", english_words), ("zh_numbers", chinese_numeral)])
def test_number_heldout_set_returns_all_heldout_inputs_when_asked_for_more(name: str, spell) -> None:
    task = get_task(name)
    all_heldout = {spell(n) for n in range(1000) if task.is_heldout(spell(n))}
    assert {src for src, _ in task.heldout_set(5000)} == all_heldout


def test_digit_heldout_set_deduplicates_a_small_space() -> None:
    task = get_task("reverse")
    pairs = task.heldout_set(2000, min_len=4, max_len=4)
    sources = [src for src, _ in pairs]
    assert len(sources) == len(set(sources))
    assert len(sources) == sum(task.is_heldout(f"{i:04d}") for i in range(10_000))


def test_digit_heldout_set_respects_length_override() -> None:
    pairs = get_task("copy").heldout_set(50, min_len=10, max_len=12)
    assert all(10 <= len(src) <= 12 for src, _ in pairs)


# --- sampling and batches ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [*DIGIT_TASKS, *NUMBER_TASKS])
def test_same_seed_gives_same_batches(name: str) -> None:
    task = get_task(name)
    first, second, other = random.Random(7), random.Random(7), random.Random(8)
    for _ in range(3):
        a, b = task.batch(first, 16), task.batch(second, 16)
        assert a.src_texts == b.src_texts
        assert torch.equal(a.src, b.src) and torch.equal(a.tgt_in, b.tgt_in) and torch.equal(a.tgt_out, b.tgt_out)
    assert task.batch(random.Random(7), 16).src_texts != task.batch(other, 16).src_texts


@pytest.mark.parametrize("name", [*DIGIT_TASKS, *NUMBER_TASKS])
def test_batch_shapes_padding_and_shifted_labels(name: str) -> None:
    task = get_task(name)
    batch = task.batch(random.Random(3), 32)
    src_ids = [task.src_tokenizer.encode(s) for s in batch.src_texts]
    tgt_ids = [task.tgt_tokenizer.encode(t) for t in batch.tgt_texts]
    assert len({len(ids) for ids in src_ids}) > 1, "lengths should vary so padding is exercised"

    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long
    assert batch.src.shape == (32, max(map(len, src_ids)))
    assert batch.tgt_in.shape == batch.tgt_out.shape == (32, max(map(len, tgt_ids)) + 1)
    for row, (src, tgt) in enumerate(zip(src_ids, tgt_ids, strict=True)):
        n = len(tgt)
        assert batch.src[row, : len(src)].tolist() == src
        assert (batch.src[row, len(src) :] == PAD).all()
        assert batch.tgt_in[row, : n + 1].tolist() == [BOS, *tgt]
        assert batch.tgt_out[row, : n + 1].tolist() == [*tgt, EOS]
        assert batch.tgt_out[row, :n].tolist() == batch.tgt_in[row, 1 : n + 1].tolist()
        assert (batch.tgt_in[row, n + 1 :] == PAD).all() and (batch.tgt_out[row, n + 1 :] == PAD).all()
        assert task.target(batch.src_texts[row]) == batch.tgt_texts[row]


def test_heldout_batches_hold_only_heldout_inputs() -> None:
    task = get_task("sort")
    batch = task.batch(random.Random(4), 64, split="heldout")
    assert all(task.is_heldout(src) for src in batch.src_texts)


def test_digit_lengths_default_to_the_training_range() -> None:
    task = get_task("reverse")
    rng = random.Random(5)
    lengths = {len(task.sample(rng)[0]) for _ in range(500)}
    assert lengths == set(range(task.min_len, task.max_len + 1)) == set(range(4, 11))


def test_length_override_for_extrapolation() -> None:
    task = get_task("reverse")
    rng = random.Random(6)
    lengths = {len(task.sample(rng, min_len=10, max_len=12)[0]) for _ in range(300)}
    assert lengths == {10, 11, 12}
    batch = task.batch(rng, 8, split="heldout", min_len=16, max_len=16)
    assert batch.src.shape == (8, 16) and batch.tgt_out.shape == (8, 17)
    assert task.max_src_tokens == 16


@pytest.mark.parametrize(("low", "high"), [(0, 5), (6, 5), (4, 17)])
def test_length_override_outside_what_fits_is_rejected(low: int, high: int) -> None:
    with pytest.raises(ValueError, match="length range"):
        get_task("copy").sample(random.Random(0), min_len=low, max_len=high)


def test_number_tasks_ignore_length_override() -> None:
    task = get_task("en_numbers")
    src, tgt = task.sample(random.Random(0), min_len=10, max_len=12)
    assert task.target(src) == tgt


def test_unknown_split_is_rejected() -> None:
    with pytest.raises(ValueError, match="split 'test'"):
        get_task("copy").sample(random.Random(0), split="test")  # type: ignore[arg-type]


def test_collate_rejects_sources_longer_than_the_task_allows() -> None:
    task = get_task("reverse")
    with pytest.raises(ValueError, match="at most 16"):
        collate(task, [("1" * 17, "1" * 17)])
    with pytest.raises(ValueError, match="no pairs"):
        collate(task, [])


def test_get_task_names_the_unknown_task_and_the_choices() -> None:
    assert set(TASKS) == {"reverse", "copy", "sort", "en_numbers", "zh_numbers", "tang_poems", "en_text"}
    assert all(get_task(name).name == name for name in TASKS)
    with pytest.raises(ValueError, match="unknown task 'rot13'.*reverse.*zh_numbers"):
        get_task("rot13")


def test_every_task_describes_itself_with_an_example_it_answers() -> None:
    for task in TASKS.values():
        assert task.title and task.title != task.description
        example, answer = task.description.rsplit(": ", 1)[1].split(" → ")
        if task.reads_text:  # a line of the corpus with a character hidden, and that character
            assert example.replace(MASK, answer) in PASSAGE_BREAK.join(task.passages), task.name
            continue
        assert task.target(example) == answer, task.name  # the example shown is the task's own answer
