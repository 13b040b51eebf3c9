"""Training: a short run lowers the loss, is deterministic by seed, reports per-layer figures, can be
cancelled, and its checkpoint loads back to the same model."""

import math
import random

import pytest
import torch

from model.checkpoint import checkpoint_bytes, load_checkpoint
from model.config import ConfigError, Switches
from model.tasks import get_task
from model.train import TrainConfig, TrainingRun, model_config_for, new_model, steps_to_reach
from model.train.cli import main as cli_main

PRE_LN = Switches(norm_position="pre")


def short_run(steps=30, switches=PRE_LN, **train):
    task = get_task(train.pop("task", "reverse"))
    config = model_config_for(task, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
    train_config = TrainConfig(task=task.name, steps=steps, batch_size=32, lr=3e-3, eval_every=10, eval_size=40,
                               **train)
    return TrainingRun(config, switches, train_config)


def test_a_short_run_lowers_the_loss():
    history = list(short_run(steps=40))
    first = sum(m.loss for m in history[:5]) / 5
    last = sum(m.loss for m in history[-5:]) / 5
    assert last < 0.8 * first


def test_same_seed_same_numbers_and_another_seed_other_numbers():
    a = [m.loss for m in short_run(steps=8)]
    b = [m.loss for m in short_run(steps=8)]
    c = [m.loss for m in short_run(steps=8, seed=1)]
    assert a == b
    assert a != c


def test_metrics_carry_per_layer_gradient_norms_and_input_statistics():
    history = list(short_run(steps=10))
    m = history[-1]
    for stack in ("encoder", "decoder"):
        assert len(m.layer_grad_norms[stack]) == 2
        assert all(g > 0 and math.isfinite(g) for g in m.layer_grad_norms[stack])
        assert all(s > 0 for s in m.layer_input_std[stack])
    evaluated = [h for h in history if h.heldout_seq_accuracy is not None]
    assert [h.step for h in evaluated] == [10]
    assert 0 <= evaluated[0].heldout_seq_accuracy <= 1


def test_gradient_norms_are_those_of_the_layer_inputs():
    """Cross-check the probe against autograd on the same first batch and the same initial model."""
    run = short_run(steps=1)
    model = new_model(run.model_config, run.switches, seed=0)
    batch = run.task.batch(random.Random(0), 32)
    inputs = {}

    def keep(x, hook):
        x.retain_grad()
        inputs[hook.name] = x

    with model.hooks([("decoder.1.hook_resid_pre", keep)]):
        logits = model(batch.src, batch.tgt_in)
        torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0).backward()
    expected = inputs["decoder.1.hook_resid_pre"].grad.norm().item()
    m = next(iter(run))
    assert m.layer_grad_norms["decoder"][1] == pytest.approx(expected, rel=1e-4)


def test_warmup_ramps_the_learning_rate():
    run = short_run(steps=5, warmup_steps=4)
    assert [m.lr for m in run] == pytest.approx([3e-3 * s / 4 for s in (1, 2, 3, 4)] + [3e-3])


def test_cancel_stops_between_steps():
    run = short_run(steps=50)
    seen = []
    for m in run:
        seen.append(m.step)
        if m.step == 3:
            run.cancel()
    assert seen == [1, 2, 3]


def test_checkpoint_round_trip_gives_the_same_outputs():
    run = short_run(steps=3, switches=Switches(norm="rms", causal_mask=False))
    history = list(run)
    model, meta = load_checkpoint(checkpoint_bytes(run.model, run.train_config, history))
    run.model.eval()
    src, tgt = torch.tensor([[3, 4, 5, 6]]), torch.tensor([[1, 6, 5]])
    torch.testing.assert_close(model(src, tgt), run.model(src, tgt))
    assert model.switches == Switches(norm="rms", causal_mask=False)
    assert meta["train_config"]["steps"] == 3


def test_steps_to_reach_reads_heldout_accuracy():
    history = list(short_run(steps=20))
    for m, acc in zip(history, [None] * 9 + [0.5] + [None] * 9 + [0.95], strict=True):
        m.heldout_seq_accuracy = acc
    assert steps_to_reach(history, 0.9) == 20
    assert steps_to_reach(history, 0.99) is None


def test_bad_training_config_is_refused_with_the_field_named():
    with pytest.raises(ConfigError, match="steps"):
        TrainConfig(steps=0)
    with pytest.raises(ConfigError, match="task: 'poetry' is not allowed; choose one of reverse | copy"):
        TrainConfig(task="poetry")


def test_cli_trains_and_saves(tmp_path, capsys):
    out = tmp_path / "m.pt"
    code = cli_main(["--task", "copy", "--layers", "1", "--d-model", "16", "--heads", "2", "--d-ff", "32",
                     "--steps", "6", "--eval-every", "3", "--eval-size", "10", "--norm-position", "pre",
                     "--out", str(out)])
    assert code == 0 and out.exists()
    printed = capsys.readouterr().out
    assert "done: 6 steps" in printed and "held-out" in printed
    model, meta = load_checkpoint(out.read_bytes())
    assert meta["train_config"]["task"] == "copy" and model.config.n_encoder_layers == 1


def test_cli_refuses_bad_switches(capsys):
    assert cli_main(["--residual-off", "encoder.0.nothing"]) == 2
    assert "argument --residual-off: 'encoder.0.nothing' is not a sublayer" in capsys.readouterr().err
