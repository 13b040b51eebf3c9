"""Training and scoring a GPT and a BERT on the digit tasks: seeds stacked give what lone runs give, a lone run is
the textbook loop on the family's posing, held-out scoring is the model's own greedy answer, and each family
learns copy in a few seconds."""

import json
import math
import random

import pytest
import torch

from model.checkpoint import checkpoint_bytes, load_checkpoint
from model.config import ConfigError, Switches
from model.evaluate import evaluate
from model.families import IGNORE, OneStack, greedy_continue, one_sequence, per_position
from model.posing import greedy_answers
from model.tasks import BOS, EOS, PAD, collate, get_task
from model.train import MultiSeedRun, TrainConfig, TrainingRun, model_config_for, new_model
from model.train.cli import main as cli_main
from tests.test_engine import assert_same_history

TASK = get_task("reverse")
SIZES = dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
GPT = model_config_for(TASK, arch="decoder_only", **SIZES)
BERT = model_config_for(TASK, arch="encoder_only", **SIZES)


def train_config(**changes) -> TrainConfig:
    base = dict(task="reverse", steps=20, batch_size=16, lr=3e-3, eval_every=10, eval_size=40)
    return TrainConfig(**{**base, **changes})


@pytest.mark.parametrize("config, switches", [
    (GPT, Switches()),
    (GPT, Switches(norm_position="pre", causal_mask=False)),
    (GPT, Switches(norm="none", residual=False)),
    (BERT, Switches()),
    (BERT, Switches(norm="batch", pos_encoding="learned")),
], ids=["gpt", "gpt-pre-ln-no-mask", "gpt-bare", "bert", "bert-batch-norm-learned-pe"])
def test_three_seeds_of_a_one_stack_family_together_equal_three_lone_runs(config, switches):
    run = MultiSeedRun(config, switches, train_config(), [0, 1, 2])
    list(run)
    for seed in (0, 1, 2):
        assert_same_history(run.history[seed], list(TrainingRun(config, switches, train_config(seed=seed))))
    assert run.history[0][-1].loss != run.history[1][-1].loss
    stack = "decoder" if config is GPT else "encoder"
    assert set(run.history[0][0].layer_grad_norms) == {stack}  # the probes see the family's one stack
    assert all(g > 0 for g in run.history[0][0].layer_grad_norms[stack])


@pytest.mark.parametrize("config, pose", [(GPT, one_sequence), (BERT, per_position)], ids=["gpt", "bert"])
def test_a_lone_one_stack_run_equals_the_textbook_loop_on_its_posing(config, pose):
    """The loss is on the answer alone: cross-entropy over the positions whose target is not IGNORE."""
    model = new_model(config, Switches(), seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = random.Random(3)
    losses = []
    for _ in range(8):
        sequence = pose(TASK.batch(rng, 16))
        logits = model(sequence.tokens)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), sequence.targets.flatten(),
                                                 ignore_index=IGNORE)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    history = list(TrainingRun(config, Switches(), train_config(seed=3, steps=8)))
    assert [m.loss for m in history] == pytest.approx(losses, rel=1e-4)


@pytest.mark.parametrize("causal_mask", [True, False])
def test_gpt_answers_in_a_batch_are_each_prompts_own_greedy_continuation(causal_mask):
    """Prompts of different lengths side by side, padded: each row is what the prompt alone continues to."""
    switches = Switches(causal_mask=causal_mask)
    model = new_model(GPT, switches, seed=1).eval()
    prompts = [[5, 6, 7, BOS], [3, 4, 5, 6, 7, 8, 9, 3, BOS], [9, BOS]]
    given = greedy_answers(model, prompts, 12)
    for row, prompt in zip(given.tolist(), prompts, strict=True):
        alone = greedy_continue(model, torch.tensor([prompt]), 12)[0].tolist()
        assert row[: len(alone)] == alone
        assert all(t == PAD for t in row[len(alone):])


@pytest.mark.parametrize("causal_mask", [True, False])
def test_a_gpt_has_room_to_write_the_whole_answer_to_the_longest_input_and_its_eos(causal_mask):
    """The longest reverse input fills the positional table with its answer: the last token written (EOS) sits
    at position max_len, which nothing reads, so the model may write the whole answer and its EOS. A model made
    never to stop shows the room: exactly answer + EOS tokens, beside a short prompt in the same batch."""
    switches = Switches(causal_mask=causal_mask)
    model = new_model(GPT, switches, seed=1).eval()
    with torch.no_grad():
        model.unembed.bias[EOS] = -1e4  # never stops by itself
    longest = [3] * TASK.max_src_tokens + [BOS]
    room = TASK.max_tgt_tokens + 1  # the answer and its EOS
    assert len(longest) + room - 1 == GPT.max_len  # what the model reads fills its table exactly
    alone = greedy_continue(model, torch.tensor([longest]), room + 5, switches)[0].tolist()
    assert len(alone) == room
    given = greedy_answers(model, [longest, [5, 6, BOS]], room, switches=switches).tolist()
    assert given[0] == alone
    short_alone = greedy_continue(model, torch.tensor([[5, 6, BOS]]), room, switches)[0].tolist()
    assert given[1] == short_alone and len(short_alone) == room


def test_held_out_scores_of_a_gpt_and_a_bert_are_their_own_answers_counted():
    pairs = TASK.heldout_set(30)
    for config in (GPT, BERT):
        model = new_model(config, Switches(), seed=2).eval()
        right_rows = right_tokens = tokens = 0
        for src, tgt in pairs:
            want = TASK.tgt_tokenizer.encode(tgt)
            if config is GPT:
                prompt = torch.tensor([TASK.src_tokenizer.encode(src) + [BOS]])
                got = greedy_continue(model, prompt, len(want) + 1)[0].tolist()
                want = want + [EOS]
            else:
                got = model(torch.tensor([TASK.src_tokenizer.encode(src)]))[0].argmax(-1).tolist()
            got = got + [PAD] * (len(want) - len(got))
            right_rows += got[: len(want)] == want
            right_tokens += sum(g == w for g, w in zip(got, want, strict=True))
            tokens += len(want)
        scores = evaluate(model, TASK, pairs, batch_size=7)
        assert scores.seq_accuracy == pytest.approx(right_rows / len(pairs))
        assert scores.token_accuracy == pytest.approx(right_tokens / tokens)


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_each_one_stack_family_learns_copy_in_a_few_seconds(arch):
    config = model_config_for(get_task("copy"), arch=arch, d_model=32, n_heads=2, d_ff=64,
                              n_encoder_layers=2, n_decoder_layers=2)
    run = TrainingRun(config, Switches(), train_config(task="copy", steps=1000, batch_size=32, eval_every=50,
                                                       eval_size=100, stop_at=0.95))
    list(run)
    result = run.engine.results[0]
    assert result.reached_at is not None, f"held-out exact {result.heldout_exact}"


def test_a_one_stack_checkpoint_loads_as_its_family():
    run = TrainingRun(GPT, Switches(norm_position="pre"), train_config(steps=2, eval_every=2))
    list(run)
    model, meta = load_checkpoint(checkpoint_bytes(run.model, run.train_config, run.history))
    assert isinstance(model, OneStack) and meta["model_config"]["arch"] == "decoder_only"
    tokens = one_sequence(collate(TASK, TASK.heldout_set(4))).tokens
    torch.testing.assert_close(model(tokens), run.model.eval()(tokens))


def test_a_family_that_cannot_be_posed_the_task_is_refused_naming_arch():
    for arch in ("decoder_only", "encoder_only"):
        with pytest.raises(ConfigError) as error:
            model_config_for(get_task("en_numbers"), arch=arch)
        assert error.value.field == "arch" and "en_numbers" in error.value.message


def test_cli_trains_a_gpt_and_refuses_a_task_it_cannot_pose(capsys):
    argv = ["--arch", "decoder_only", "--task", "copy", "--layers", "1", "--d-model", "16", "--heads", "2",
            "--d-ff", "32", "--seeds", "0-1", "--steps", "4", "--eval-every", "2", "--eval-size", "10", "--json"]
    assert cli_main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert lines[-1]["summary"]["seeds"] == [0, 1] and not math.isnan(lines[0]["heldout_token"])
    assert cli_main(["--arch", "encoder_only", "--task", "zh_numbers"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: argument --arch: task 'zh_numbers'")
