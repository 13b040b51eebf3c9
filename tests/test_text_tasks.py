"""The text tasks: a corpus shipped with the package, split into whole held-out passages, read by a GPT one
character ahead and by a BERT with characters masked, scored by held-out loss and bits per character."""

import json
import math
import random
from collections import Counter

import pytest
import torch

from model.config import ConfigError, Switches
from model.evaluate import evaluate
from model.families import IGNORE
from model.posing import posing_for
from model.tasks import MASK, PAD, UnknownTokenError, collate, get_task
from model.tasks.base import HELDOUT_PERCENT
from model.tasks.text import MASK_ID, MASK_SHARE, PASSAGE_BREAK
from model.train import MultiSeedRun, TrainConfig, TrainingRun, model_config_for
from model.train.cli import main as cli_main
from tests.test_engine import assert_same_history

TEXT_TASKS = ["tang_poems", "en_text"]
SIZES = dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=1, n_decoder_layers=1)


def train_config(task: str, **changes) -> TrainConfig:
    base = dict(task=task, steps=6, batch_size=8, lr=3e-3, eval_every=3, eval_size=12)
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("name, held_out", [("tang_poems", 35), ("en_text", 16)])
def test_a_corpus_is_split_into_whole_passages_about_one_in_ten_held_out(name, held_out):
    task = get_task(name)
    splits = {split: set(text.split(PASSAGE_BREAK)) - {""} for split, text in task._text_of.items()}
    train, scored, selection = splits["train"], splits["heldout"], splits["selection"]
    assert train.isdisjoint(scored) and train.isdisjoint(selection) and scored.isdisjoint(selection)
    assert train | scored | selection == set(task.passages)  # every passage whole, in one split
    share = (len(scored) + len(selection)) / len(task.passages)
    assert 0.5 * HELDOUT_PERCENT / 100 < share < 1.5 * HELDOUT_PERCENT / 100, share
    assert len(scored) + len(selection) == held_out  # a stable hash of each passage's text: the same everywhere
    assert len(scored) >= held_out // 4 and len(selection) >= held_out // 4  # a model is chosen on one part
    assert all(window in task._text_of["selection"] for _, window in task.selection_set(20))


@pytest.mark.parametrize("name", TEXT_TASKS)
def test_a_sample_is_a_window_of_its_split_with_a_share_of_its_characters_masked(name):
    task = get_task(name)
    rng = random.Random(5)
    for split in ("train", "heldout"):
        for _ in range(20):
            masked, window = task.sample(rng, split)
            assert len(window) == len(masked) == task.context + 1
            assert window in task._text_of[split]
            hidden = [i for i, c in enumerate(masked) if c == MASK]
            assert len(hidden) == round(MASK_SHARE * len(window))
            assert all(m == w for m, w in zip(masked, window, strict=True) if m != MASK)
    assert task.heldout_set(5) == task.heldout_set(5)  # the same windows every time


def test_the_text_tokenizer_reads_every_character_and_names_an_unknown_one_briefly():
    task = get_task("en_text")
    line = "Shall I compare thee\nto a summer's day?"
    assert task.src_tokenizer.split(line) == list(line)
    assert task.src_tokenizer.decode(task.src_tokenizer.encode(line)) == line
    assert task.src_tokenizer.encode(MASK) == [MASK_ID]
    with pytest.raises(UnknownTokenError) as caught:
        task.target("thee 床")
    assert (caught.value.token, caught.value.position) == ("床", 5)
    assert str(caught.value).endswith(f"allowed: the {task.src_tokenizer.size - 3} characters of the corpus")
    assert "月" in get_task("tang_poems").src_tokenizer.vocab


def test_a_gpt_reads_a_window_and_predicts_each_next_character():
    task = get_task("tang_poems")
    config = model_config_for(task, arch="decoder_only", **SIZES)
    assert config.max_len == task.context
    batch = collate(task, task.heldout_set(3))
    posed = posing_for("decoder_only").pose(batch)
    for row, (_, window) in enumerate(task.heldout_set(3)):
        ids = task.tgt_tokenizer.encode(window)
        assert posed.inputs[0][row].tolist() == ids[:-1]
        assert posed.targets[row].tolist() == ids[1:]


def test_a_bert_reads_the_masked_window_and_is_scored_on_the_hidden_characters_alone():
    task = get_task("en_text")
    pairs = task.heldout_set(3)
    posed = posing_for("encoder_only").pose(collate(task, pairs))
    for row, (masked, window) in enumerate(pairs):
        assert posed.inputs[0][row].tolist() == task.src_tokenizer.encode(masked)
        want = [task.tgt_tokenizer.encode(c)[0] if m == MASK else IGNORE for m, c in zip(masked, window, strict=True)]
        assert posed.targets[row].tolist() == want


def test_the_encoder_decoder_refuses_a_text_naming_arch():
    for name in TEXT_TASKS:
        with pytest.raises(ConfigError) as error:
            model_config_for(get_task(name))
        assert error.value.field == "arch" and "decoder_only" in error.value.message


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_held_out_loss_is_the_cross_entropy_of_the_scored_characters(arch):
    task = get_task("en_text")
    run = TrainingRun(model_config_for(task, arch=arch, **SIZES), Switches(), train_config("en_text", steps=2))
    list(run)
    model = run.model.eval()
    pairs = task.heldout_set(10)
    posed = posing_for(arch).pose(collate(task, pairs))
    with torch.no_grad():
        logits = model(posed.inputs[0])
    want = torch.nn.functional.cross_entropy(logits.flatten(0, 1), posed.targets.flatten(), ignore_index=IGNORE)
    scored = posed.targets != IGNORE
    right = (logits.argmax(-1) == posed.targets)[scored].float().mean()
    scores = evaluate(model, task, pairs, batch_size=4)
    assert scores.loss == pytest.approx(want.item(), rel=1e-5)
    assert scores.bits_per_char == pytest.approx(want.item() / math.log(2), rel=1e-5)
    assert scores.token_accuracy == pytest.approx(right.item())
    assert scores.seq_accuracy is None  # a window is no answer to get right as a whole
    assert PAD not in posed.inputs[0].tolist()


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_three_seeds_on_a_text_together_equal_three_lone_runs(arch):
    config = model_config_for(get_task("tang_poems"), arch=arch, **SIZES)
    run = MultiSeedRun(config, Switches(), train_config("tang_poems"), [0, 1, 2])
    list(run)
    for seed in (0, 1, 2):
        alone = list(TrainingRun(config, Switches(), train_config("tang_poems", seed=seed)))
        assert_same_history(run.history[seed], alone)
        assert run.history[seed][-1].heldout_loss == pytest.approx(alone[-1].heldout_loss, rel=1e-5)
    assert run.results[0].heldout_loss == run.history[0][-1].heldout_loss


def unigram_bits(task) -> float:
    """Bits per held-out character of a model knowing only how often each character occurs in the training text
    (add-one smoothed): what a model must beat to have learnt anything about order."""
    counts = Counter(task._text_of["train"])
    total, size = sum(counts.values()), task.tgt_tokenizer.size
    heldout = task._text_of["heldout"]
    return -sum(math.log2((counts[c] + 1) / (total + size)) for c in heldout) / len(heldout)


def test_a_gpt_on_english_learns_more_than_how_often_each_letter_occurs_in_a_second():
    task = get_task("en_text")
    config = model_config_for(task, arch="decoder_only", **SIZES)
    run = TrainingRun(config, Switches(), train_config("en_text", steps=150, batch_size=16, eval_every=150,
                                                       eval_size=40))
    bits = list(run)[-1].heldout_loss / math.log(2)
    assert bits < unigram_bits(task) - 0.5 < math.log2(task.tgt_tokenizer.size), bits  # 3.4 against 4.5 and 6.0


def test_cli_trains_a_gpt_on_a_text_and_prints_bits_per_character(capsys):
    argv = ["--arch", "decoder_only", "--task", "en_text", "--layers", "1", "--d-model", "16", "--heads", "2",
            "--d-ff", "32", "--steps", "4", "--eval-every", "2", "--eval-size", "8"]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "bits per character" in out and "held-out ≥ 90%" not in out
    assert cli_main([*argv, "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[0]["heldout_loss"] > 0 and lines[0]["heldout_exact"] is None
    assert lines[-1]["summary"]["heldout_bits_per_char_mean"] == pytest.approx(lines[0]["heldout_loss"] / math.log(2))
    assert cli_main(["--task", "tang_poems"]) == 2
    assert "error: argument --arch: task 'tang_poems' is a text" in capsys.readouterr().err
