"""Each "add X" of the README's "Where to add" section, done from inside this module in a few lines, and then
seen working in the model, the trace, a training run (several seeds stacked) and a playground page:
a norm kind (model/norms.py), a residual scheme (model/residuals.py) and a task (model/tasks)."""

import math
from dataclasses import replace

import pytest
import torch
from fastapi.testclient import TestClient
from torch import nn

from app.factory import create_app
from app.lab.runs import RunSpec
from app.web.settings import Settings
from model.checkpoint import checkpoint_bytes, load_checkpoint
from model.config import ConfigError, Switches, TrainConfig, choices_of
from model.norms import NormKind, registered_norm
from model.residuals import Residual, ResidualScheme, registered_residual_scheme
from model.seeds import seed_state
from model.tasks import get_task, registered_task
from model.trace import trace
from model.train import MultiSeedRun, TrainingRun, model_config_for
from model.transformer import Seq2Seq

REVERSE = get_task("reverse")
CONFIG = model_config_for(REVERSE, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1)


class ScaleNorm(NormKind):
    """x / RMS(x) with no centring and a learned γ and β (Nguyen & Salazar 2019 use one scalar; one per feature
    here keeps the model's parameters as they are)."""

    name, title = "scale", "ScaleNorm"

    def statistics(self, norm, x, pad_mask, update_running):
        return torch.zeros_like(x[..., :1]), x.norm(dim=-1, keepdim=True) / math.sqrt(x.size(-1))


class GainResidual(Residual):
    """x + g·F(x) with a learned scalar g starting at 1."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(1))

    def add(self, x, out):
        return x + self.gain * out

    @staticmethod
    def seed_stacked(peers):
        return SeedGainResidual(peers)


class SeedGainResidual(Residual):
    def __init__(self, peers):
        super().__init__()
        self.gain = nn.Parameter(torch.stack([p.gain.detach() for p in peers]))  # (K, 1)

    def add(self, x, out):
        K = self.gain.size(0)
        return x + (self.gain[:, None, :] * out.reshape(K, -1, out.size(-1))).view(out.shape)


class Gated(ResidualScheme):
    name, title, learned = "gated", "x + g·F(x)", True

    def residual(self, config, stack, n_layers):
        return GainResidual()


@pytest.fixture
def scale_norm():
    with registered_norm(ScaleNorm):
        yield


@pytest.fixture
def gated():
    with registered_residual_scheme(Gated):
        yield


def _train(switches: Switches, seeds: list[int], task: str = "reverse", steps: int = 6) -> MultiSeedRun:
    run = MultiSeedRun(CONFIG, switches, TrainConfig(task=task, steps=steps, batch_size=8, eval_every=steps,
                                                     eval_size=10), seeds)
    for _ in run:
        pass
    return run


def _lone(switches: Switches, seed: int, steps: int = 6) -> list:
    return list(TrainingRun(CONFIG, switches, TrainConfig(steps=steps, batch_size=8, eval_every=steps,
                                                           eval_size=10, seed=seed)))


def _playground(tmp_path, run: MultiSeedRun, seed: int, params: str = "") -> str:
    """The playground page of `run`'s seed, stored as a finished run of the lab."""
    with TestClient(create_app(Settings(data_dir=tmp_path))) as client:
        store = client.app.state.store
        spec = RunSpec(CONFIG, run.switches, replace(run.train_config, seed=seed))
        record = store.create(spec)
        store.finish(record.id, "done", checkpoint=checkpoint_bytes(run.model_of(seed), run.train_config,
                                                                      run.history[seed]))
        page = client.get(f"/playground?model=run-{record.id}{params}")
        assert page.status_code == 200, page.text[:500]
        return page.text


def test_a_new_norm_kind_is_one_class(scale_norm, tmp_path):
    assert "scale" in choices_of(Switches, "norm")  # the switch, the CLI flag and the lab's select offer it
    model = Seq2Seq(CONFIG, Switches(norm="scale")).eval()
    norm = model.encoder.layers()[0].norm_ffn
    x = torch.randn(2, 5, CONFIG.d_model)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    by_hand = x / x.pow(2).mean(-1, keepdim=True).sqrt() * norm.weight + norm.bias
    torch.testing.assert_close(norm(x, "scale"), by_hand)

    shown = trace(model, REVERSE, "3141")
    summary = shown["encoder"][0]["sublayers"]["ffn"]["norm"]
    assert summary["kind"] == "scale" and summary["after_std"] != summary["before_std"]

    run = _train(Switches(norm="scale"), [0, 1])  # two seeds stacked: the kind's statistics on folded rows
    for seed in (0, 1):
        lone = _lone(Switches(norm="scale"), seed)
        assert [m.loss for m in run.history[seed]] == pytest.approx([m.loss for m in lone], rel=1e-4)

    page = _playground(tmp_path, run, 0)
    assert '<option value="scale" selected>ScaleNorm</option>' in page


def test_a_new_residual_scheme_is_one_class(gated, tmp_path):
    switches = Switches(residual_scheme="gated")
    model = Seq2Seq(CONFIG, switches).eval()
    assert "encoder.0.skip.ffn.gain" in model.state_dict()  # its weights are the model's, saved with it
    block = model.encoder.layers()[0]
    with torch.no_grad():
        block.skip["ffn"].gain.fill_(0.0)  # g = 0: the sublayer adds nothing, Post-LN leaves LN(x)
    x = torch.randn(1, 4, CONFIG.d_model)
    captured = {}
    with torch.no_grad(), model.hooks([("encoder.0.hook_resid_mid", lambda t, h: captured.setdefault("x", t))]):
        model(torch.tensor([[4, 5, 6, 7]]), torch.tensor([[1, 4]]))
    mid = captured["x"]
    by_hand = torch.nn.functional.layer_norm(mid, mid.shape[-1:], block.norm_ffn.weight, block.norm_ffn.bias)
    with torch.no_grad():
        torch.testing.assert_close(block.norm_ffn(block.skip["ffn"].add(mid, block.ffn(mid)), "layer"), by_hand)
    del x

    # Switched to at inference on a plain model it has no gains to use: a clear error, not a silent guess.
    with pytest.raises(ConfigError) as refused:
        Seq2Seq(CONFIG).encode(torch.tensor([[4, 5]]), switches)
    assert refused.value.field == "residual_scheme" and "trained with 'plain'" in refused.value.message
    # The other way round, the plain x + F(x) needs nothing learned.
    Seq2Seq(CONFIG, switches).encode(torch.tensor([[4, 5]]), Switches())

    run = _train(switches, [0, 1])  # the gains are stacked per seed and trained
    for seed in (0, 1):
        gains = [v.item() for k, v in seed_state(run.model, run.seeds.index(seed)).items() if k.endswith("gain")]
        assert len(gains) == 5 and all(g != 1.0 for g in gains)
        assert [m.loss for m in run.history[seed]] == pytest.approx([m.loss for m in _lone(switches, seed)],
                                                                    rel=1e-4)
    reloaded, _ = load_checkpoint(checkpoint_bytes(run.model_of(1), run.train_config, run.history[1]))
    assert trace(reloaded, REVERSE, "3141")["switches"]["residual_scheme"] == "gated"

    page = _playground(tmp_path, run, 1)
    assert 'name="residual_scheme"' in page and '<option value="gated" selected>' in page


def test_the_plain_scheme_is_not_written_so_stored_specs_and_keys_stay_the_same():
    assert "residual_scheme" not in Switches().to_dict()
    assert Switches().to_json() == Switches.from_dict(Switches().to_dict()).to_json()
    assert Switches().values()["residual_scheme"] == "plain"


def test_a_new_task_is_one_registration(tmp_path):
    rotate = replace(REVERSE, name="rotate", title="Rotate the digits", example="123456",
                     description="Move the first digit to the end: 3141 → 1413", rule=lambda d: d[1:] + d[:1])
    with registered_task(rotate):
        assert "rotate" in choices_of(TrainConfig, "task")
        run = _train(Switches(), [0], task="rotate")
        assert run.task is rotate
        page = _playground(tmp_path, run, 0)  # no input given: the task's own example
        assert 'value="123456"' in page
    with pytest.raises(ConfigError):
        TrainConfig(task="rotate")  # gone again with the block


def test_a_stack_is_data_its_block_follows_the_spec():
    from model.blocks import Block, LayerInputs
    from model.residuals import residual_scheme
    from model.stacks import STACKS, StackSpec

    ffn_only = StackSpec("encoder", ("ffn",), ("hook_resid_pre", "hook_resid_post"), causal=False, sequence="src")
    block = Block(CONFIG, ffn_only, 0, residual_scheme("plain")).eval()
    assert [n for n, _ in block.named_children() if n.startswith(("norm_", "hook_"))] == \
        ["hook_resid_pre", "norm_ffn", "hook_ffn_out", "hook_resid_post"]
    x = torch.randn(1, 3, CONFIG.d_model)
    inputs = LayerInputs(Switches(), torch.zeros(1, 3, dtype=torch.bool), torch.ones(1, 1, 1, 3, dtype=torch.bool))
    with torch.no_grad():
        by_hand = torch.nn.functional.layer_norm(x + block.ffn(x), x.shape[-1:])
        torch.testing.assert_close(block(x, inputs), by_hand)
    model = Seq2Seq(CONFIG)
    for spec in model.stacks:  # the model's layers are made from its family's specs
        assert spec is STACKS[spec.name]
        layer = model._modules[spec.name].layers()[0]
        assert all(hasattr(layer, name) for name in spec.streams)
        assert all(hasattr(layer, f"norm_{kind}") for kind in spec.sublayers)
    with pytest.raises(ValueError, match="one stream hook"):
        StackSpec("encoder", ("ffn",), ("hook_resid_pre",), causal=False, sequence="src")
