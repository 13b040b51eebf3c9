"""The multi-seed engine: K seeds trained as one computation give exactly what K lone runs give; a
seed that finishes or diverges stops alone; the lone run equals a bare PyTorch training loop; the
init schemes are what their names say."""

import json
import math
import random

import pytest
import torch

from model.config import Switches
from model.layers import initialize
from model.seeds import seed_state, stack_models
from model.tasks import PAD, get_task
from model.train import MultiSeedRun, TrainConfig, TrainingRun, model_config_for, new_model
from model.train.cli import main as cli_main
from model.transformer import Seq2Seq

TASK = get_task("reverse")
CONFIG = model_config_for(TASK, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)


def train_config(**changes) -> TrainConfig:
    base = dict(task="reverse", steps=20, batch_size=16, lr=3e-3, eval_every=10, eval_size=40)
    return TrainConfig(**{**base, **changes})


def lone(switches: Switches, seed: int, **changes) -> list:
    return list(TrainingRun(CONFIG, switches, train_config(seed=seed, **changes)))


def together(switches: Switches, seeds: list[int], **changes) -> dict[int, list]:
    run = MultiSeedRun(CONFIG, switches, train_config(**changes), seeds)
    for _ in run:
        pass
    return run.history


def assert_same_history(a: list, b: list) -> None:
    """Equal to float tolerance. Every step's loss and gradient norm; held-out scores within a near-tie argmax
    or two; the per-layer figures on the first step, before any update: after it, Adam turns float noise in a
    vanishing gradient (1e-17 at the decoder's input without residuals) into updates of its own."""
    assert [m.step for m in a] == [m.step for m in b]
    for x, y in zip(a, b, strict=True):
        assert x.loss == pytest.approx(y.loss, rel=1e-4)
        assert x.grad_norm == pytest.approx(y.grad_norm, rel=1e-3)
        assert x.token_accuracy == pytest.approx(y.token_accuracy, abs=1e-6)
        assert (x.heldout_seq_accuracy is None) == (y.heldout_seq_accuracy is None)
        if x.heldout_seq_accuracy is not None:
            assert x.heldout_seq_accuracy == pytest.approx(y.heldout_seq_accuracy, abs=0.03)
            assert x.heldout_token_accuracy == pytest.approx(y.heldout_token_accuracy, abs=0.01)
    for x, y in zip(a[:1], b[:1], strict=True):
        largest = max(g for grads in y.layer_grad_norms.values() for g in grads)
        assert set(x.layer_grad_norms) == set(y.layer_grad_norms)
        for stack in y.layer_grad_norms:
            # a gradient far below the step's largest is rounding noise: compare it on that scale
            assert x.layer_grad_norms[stack] == pytest.approx(y.layer_grad_norms[stack], rel=1e-4, abs=1e-5 * largest)
            assert x.layer_input_mean[stack] == pytest.approx(y.layer_input_mean[stack], rel=1e-4, abs=1e-6)
            assert x.layer_input_std[stack] == pytest.approx(y.layer_input_std[stack], rel=1e-4)


@pytest.mark.parametrize("switches", [
    Switches(norm_position="pre"),
    Switches(norm_position="pre", residual=False),
    Switches(norm="none"),
    Switches(norm="none", residual=False),
    Switches(norm="batch", pos_encoding="learned"),
], ids=["pre-ln", "no-residual", "no-norm", "no-norm-no-residual", "batch-norm-learned-pe"])
def test_three_seeds_together_equal_three_lone_runs(switches):
    batched = together(switches, [0, 1, 2])
    for seed in (0, 1, 2):
        assert_same_history(batched[seed], lone(switches, seed))
    assert batched[0][-1].loss != batched[1][-1].loss  # the seeds really are different runs


@pytest.mark.parametrize("grad_clip", [0.0, 0.5])
def test_a_lone_run_equals_a_bare_pytorch_training_loop(grad_clip):
    """The engine (stacked weights, flat Adam, one-pass metrics, per-seed clipping) against the textbook loop."""
    switches = Switches(norm_position="pre")
    model = new_model(CONFIG, switches, seed=3)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    rng = random.Random(3)
    losses, norms = [], []
    for _ in range(10):
        batch = TASK.batch(rng, 16)
        logits = model(batch.src, batch.tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf).item())
        optimizer.step()
        losses.append(loss.item())
    run = TrainingRun(CONFIG, switches, train_config(seed=3, steps=10, grad_clip=grad_clip))
    history = list(run)
    assert [m.loss for m in history] == pytest.approx(losses, rel=1e-4)
    assert [m.grad_norm for m in history] == pytest.approx(norms, rel=1e-3)
    if grad_clip:
        assert min(norms) > grad_clip  # so clipping really acted on every step
    # Outputs, not weights: a key bias has no gradient but rounding noise (softmax ignores a shift shared by all
    # keys), and Adam scales noise up to full-size steps, differently in each implementation.
    batch = TASK.batch(random.Random(99), 32)
    torch.testing.assert_close(run.model.eval()(batch.src, batch.tgt_in), model.eval()(batch.src, batch.tgt_in),
                               rtol=1e-3, atol=1e-4)


def test_clipping_is_per_seed():
    switches = Switches(norm_position="pre")
    batched = together(switches, [0, 1], steps=8, grad_clip=0.5)
    for seed in (0, 1):
        assert_same_history(batched[seed], lone(switches, seed, steps=8, grad_clip=0.5))


def test_stacking_and_unstacking_keep_each_models_outputs():
    models = [new_model(CONFIG, Switches(norm="batch"), seed=s).eval() for s in (0, 1)]
    stacked = stack_models(models).eval()
    src, tgt = torch.tensor([[3, 4, 5, 6]]), torch.tensor([[1, 6, 5]])
    both = stacked(src.repeat(2, 1), tgt.repeat(2, 1))
    for k, model in enumerate(models):
        torch.testing.assert_close(both[k : k + 1], model(src, tgt))
        alone = Seq2Seq(CONFIG, model.switches)
        alone.load_state_dict(seed_state(stacked, k))
        torch.testing.assert_close(alone.eval()(src, tgt), model(src, tgt))


def test_a_seed_that_reaches_the_target_stops_and_the_others_train_on_unchanged():
    switches, seeds = Switches(norm_position="pre"), (1, 2)
    changes = dict(steps=60, eval_every=5, task="copy")
    alone = {s: lone(switches, s, **changes) for s in seeds}

    def reached(seed, target):
        return next((m.step for m in alone[seed] if (m.heldout_seq_accuracy or 0) >= target), None)

    # a target that the two seeds reach at different steps, read from their lone runs
    observed = sorted({m.heldout_seq_accuracy for h in alone.values() for m in h if m.heldout_seq_accuracy})
    target = next((t for t in observed if reached(1, t) != reached(2, t)), None)
    assert target is not None, "the two seeds reach every accuracy together; pick other seeds"
    early, late = sorted(seeds, key=lambda s: reached(s, target) or math.inf)
    run = MultiSeedRun(CONFIG, switches, train_config(stop_at=target, **changes), list(seeds))
    for _ in run:
        pass
    stop = reached(early, target)
    assert run.results[early].reached_at == stop == run.results[early].steps
    assert run.results[late].steps > stop
    assert run.results[late].reached_at == reached(late, target)
    assert_same_history(run.history[early], alone[early][:stop])
    assert_same_history(run.history[late], alone[late][: run.results[late].steps])


def test_a_diverged_seed_stops_alone_and_does_not_poison_the_others():
    switches = Switches(norm_position="pre")
    run = MultiSeedRun(CONFIG, switches, train_config(steps=12), [0, 1])
    with torch.no_grad():
        run.params.flat[1, :100] = math.inf  # seed 1's first weights blow up
    for _ in run:
        pass
    assert run.results[1].diverged and run.results[1].steps == 1
    assert not run.results[0].diverged and run.results[0].steps == 12
    assert_same_history(run.history[0], lone(switches, 0, steps=12))


def test_init_schemes_set_the_weights_their_names_promise():
    default = new_model(CONFIG, Switches(), seed=0)
    fresh = new_model(CONFIG, Switches(), seed=0, init="default")
    for name, value in default.state_dict().items():
        torch.testing.assert_close(fresh.state_dict()[name], value)
    xavier = new_model(CONFIG, Switches(), seed=0, init="xavier")
    w = xavier.encoder.get_submodule("0").ffn.W_in.weight  # (d_ff, d_model)
    assert w.abs().max() <= math.sqrt(6 / sum(w.shape)) and w.abs().max() > 0.9 * math.sqrt(6 / sum(w.shape))
    assert xavier.encoder.get_submodule("0").ffn.W_in.bias.abs().max() == 0
    small = new_model(CONFIG, Switches(), seed=0, init="small")
    q = small.decoder.get_submodule("1").self_attn.W_q.weight
    out = small.decoder.get_submodule("1").self_attn.W_o.weight
    assert q.std().item() == pytest.approx(0.02, rel=0.1)
    assert out.std().item() == pytest.approx(0.02 / math.sqrt(2 * CONFIG.n_decoder_layers), rel=0.15)
    torch.testing.assert_close(small.src_embed.table.weight, default.src_embed.table.weight)  # embeddings keep theirs
    with pytest.raises(ValueError, match="init"):
        initialize(small, "huge")


def test_init_is_a_training_setting_that_changes_the_run_and_is_recorded():
    a = lone(Switches(norm="none"), 0, steps=3)
    b = lone(Switches(norm="none"), 0, steps=3, init="xavier")
    assert a[0].loss != b[0].loss
    run = TrainingRun(CONFIG, Switches(), train_config(steps=2, init="small"))
    list(run)
    from model.checkpoint import checkpoint_bytes, load_checkpoint

    _, meta = load_checkpoint(checkpoint_bytes(run.model, run.train_config, run.history))
    assert meta["train_config"]["init"] == "small"


def test_cli_trains_several_seeds_and_prints_a_json_line_each(capsys):
    code = cli_main(["--task", "copy", "--layers", "1", "--d-model", "16", "--heads", "2", "--d-ff", "32",
                     "--seeds", "0-2", "--steps", "6", "--eval-every", "3", "--eval-size", "10", "--stop-at", "0.99",
                     "--init", "small", "--json"])
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [line["seed"] for line in lines[:3]] == [0, 1, 2]
    for line in lines[:3]:
        assert set(line) == {"seed", "steps", "reached_at", "heldout_exact", "heldout_token", "heldout_loss", "wall_s"}
        assert 1 <= line["steps"] <= 6 and 0 <= line["heldout_exact"] <= 1
    assert lines[3]["summary"]["seeds"] == [0, 1, 2]


@pytest.mark.parametrize("argv, flag", [
    (["--seeds", "4-2"], "--seeds"),
    (["--seeds", "x"], "--seeds"),
    (["--stop-at", "2"], "--stop-at"),
    (["--steps", "0"], "--steps"),
    (["--init", "huge"], "--init"),
    (["--heads", "5"], "--heads"),
])
def test_cli_refuses_a_bad_value_in_one_line_naming_the_flag(argv, flag, capsys):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and flag in err
