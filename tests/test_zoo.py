"""Every shipped checkpoint loads and still scores what its manifest says it measured."""

import pytest

from model.evaluate import evaluate
from model.zoo import default_entry, get_entry, load_manifest, load_zoo_model
from model.zoo.build import HELDOUT_SIZE, RECIPES, SIZE_LIMIT_BYTES

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
    assert scores.seq_accuracy == pytest.approx(entry.heldout_seq_accuracy, abs=1e-9)
    assert scores.seq_accuracy >= 0.95


def test_unknown_model_names_the_available_ones():
    with pytest.raises(KeyError, match="available: reverse-post-2x2"):
        get_entry("gpt-5")
