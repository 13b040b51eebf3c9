"""Every shipped checkpoint loads and still scores what its manifest says it measured."""

import pytest

from model.evaluate import evaluate
from model.zoo import default_entry, get_entry, load_manifest, load_zoo_model
from model.zoo.build import HELDOUT_SIZE, RECIPES, SIZE_LIMIT_BYTES
from tests.test_text_tasks import unigram_bits

ENTRIES = load_manifest()


def test_the_zoo_ships_every_recipe_and_one_default():
    assert [e.name for e in ENTRIES] == [r.name for r in RECIPES]
    assert sum(e.default for e in ENTRIES) == 1
    assert default_entry().task == "reverse"
    assert {e.task for e in ENTRIES} >= {"reverse", "en_numbers", "zh_numbers"}


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_checkpoint_loads_and_remeasures_its_accuracy(entry):
    model, task, _ = load_zoo_model(entry.name)
    assert entry.size_bytes <= SIZE_LIMIT_BYTES
    assert model.switches.to_dict() == entry.switches
    scores = evaluate(model, task, task.heldout_set(HELDOUT_SIZE))
    if task.reads_text:  # a loss per character, well below what knowing each character's frequency gives
        assert scores.loss == pytest.approx(entry.heldout_loss, rel=1e-5)
        assert scores.bits_per_char < unigram_bits(task) - 0.5
        return
    assert scores.seq_accuracy == pytest.approx(entry.heldout_seq_accuracy, abs=1e-9)
    assert scores.seq_accuracy >= 0.95


def test_the_zoo_ships_a_gpt_and_a_bert_for_the_poems_and_a_gpt_for_english():
    families = {(e.task, e.arch) for e in ENTRIES}
    assert {("tang_poems", "decoder_only"), ("tang_poems", "encoder_only"), ("en_text", "decoder_only"),
            ("reverse", "decoder_only")} <= families


def test_unknown_model_names_the_available_ones():
    with pytest.raises(KeyError, match="available: reverse-post-2x2"):
        get_entry("gpt-5")
