"""What is measured on a trained model when its run ends (model.train.probes): each probe changes the computation
the way its name says."""

import copy

import pytest
import torch

from model.tasks import collate
from model.train.probes import N_INPUTS, SEED, _batch_statistics, batch_statistics, long_inputs, probe_run
from model.zoo import load_zoo_model

WAYS = ("running_statistics", "batch_of_100", "alone", "batch_of_100_padding_counted")


@pytest.fixture(scope="module")
def reverse():
    model, task, _ = load_zoo_model("reverse-pre-2x2")
    return model, task


def test_longer_inputs_are_longer_than_any_in_training(reverse):
    model, task = reverse
    result = long_inputs(model, task)
    pairs = task.heldout_set(N_INPUTS, seed=SEED, min_len=result["min_len"], max_len=result["max_len"])
    assert result["min_len"] == task.max_len + 1 and all(len(src) > task.max_len for src, _ in pairs)
    assert 0 <= result["seq_accuracy"] <= result["token_accuracy"] <= 1


def test_a_number_words_task_has_no_length_to_go_beyond():
    model, task, _ = load_zoo_model("en-numbers-2x2")
    assert long_inputs(model, task) is None and "long_inputs" not in probe_run(model, task)


def _first_logits(model, task, pairs):
    """The first pair's logits at its own target positions (its batch may be padded longer)."""
    batch = collate(task, pairs)
    with torch.no_grad():
        return model(batch.src, batch.tgt_in)[0, : len(task.tgt_tokenizer.encode(pairs[0][1])) + 1]


def test_batch_statistics_make_one_input_depend_on_its_batch_and_on_padding(reverse):
    zoo, task = reverse
    model = copy.deepcopy(zoo)
    model.switches = model.switches.replace(norm="batch")
    model.eval()
    short, long_mates = task.heldout_set(40, seed=SEED, max_len=5)[:1], task.heldout_set(8, seed=1, min_len=10)
    alone = _first_logits(model, task, short)
    assert torch.allclose(alone, _first_logits(model, task, short + long_mates), atol=1e-5)  # running statistics
    with _batch_statistics(model):
        own, with_mates = _first_logits(model, task, short), _first_logits(model, task, short + long_mates)
    assert not torch.allclose(own, with_mates)
    with _batch_statistics(model):
        skipped = _first_logits(model, task, short + long_mates)
    with _batch_statistics(model, count_padding=True):
        counted = _first_logits(model, task, short + long_mates)  # the short input is padded to the long ones
    assert not torch.allclose(skipped, counted)
    norms = [n for n in model.modules() if hasattr(n, "count_padding")]
    assert norms and not any(n.batch_statistics_at_eval or n.count_padding for n in norms)  # switched back
    result = batch_statistics(model, task)
    assert result["inputs"] == N_INPUTS and all(0 <= result[way] <= 1 for way in WAYS)
    assert "batch_statistics" in probe_run(model, task)


def test_a_layer_norm_model_answers_the_same_whatever_the_statistics(reverse):
    model, task = reverse
    result = batch_statistics(model, task)  # LayerNorm never reads batch statistics
    assert len({result[w] for w in WAYS}) == 1
