"""Traces: complete, JSON round-trip, stitched decoder rows equal step-by-step decoding, and within budget."""

import json

import pytest
import torch

from model.config import Switches
from model.tasks import UnknownTokenError, get_task
from model.trace import TRACE_BUDGET_BYTES, trace, trace_size
from model.train import model_config_for
from model.transformer import Seq2Seq

TASK = get_task("reverse")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = model_config_for(TASK, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
    return Seq2Seq(config, Switches()).eval()


def test_trace_has_every_layer_sublayer_and_step(model):
    t = trace(model, TASK, "31415")
    assert t["src_tokens"] == list("31415")
    assert len(t["encoder"]) == 2 and len(t["decoder"]) == 2
    assert set(t["decoder"][0]["sublayers"]) == {"self_attn", "cross_attn", "ffn"}
    n_out = len(t["output_tokens"])
    assert n_out >= 1
    cross = t["decoder"][1]["sublayers"]["cross_attn"]["pattern"]
    assert len(cross) == 4 and len(cross[0]) == n_out and len(cross[0][0]) == 5  # (heads, tgt, src)
    for row in cross[0]:
        assert sum(row) == pytest.approx(1, abs=1e-3)
    assert len(t["logit_lens"]) == 2 and len(t["logit_lens"][0]) == n_out
    ops = [s["op"] for s in t["steps"]]
    assert ops[:2] == ["embed", "pos"] and ops[-1] == "output"
    assert ops.count("output") == n_out
    assert t["expected_tokens"] == list("51413") + ["<eos>"]
    assert t["gradients"]["encoder"][0] > 0


def test_the_trace_describes_its_stacks_and_which_tokens_each_reads(model):
    t = trace(model, TASK, "31415")
    assert [s["name"] for s in t["stacks"]] == ["encoder", "decoder"]
    encoder, decoder = t["stacks"]
    assert encoder["sublayers"] == list(t["encoder"][0]["sublayers"]) == ["self_attn", "ffn"]
    assert decoder["sublayers"] == list(t["decoder"][0]["sublayers"]) == ["self_attn", "cross_attn", "ffn"]
    assert (encoder["causal"], decoder["causal"]) == (False, True)
    assert encoder["tokens"] == "src_tokens" and decoder["tokens"] == "tgt_tokens"
    assert encoder["keys"] == {"self_attn": "src_tokens"}
    assert decoder["keys"] == {"self_attn": "tgt_tokens", "cross_attn": "src_tokens"}  # the encoder's memory
    for stack in t["stacks"]:  # the pattern of each attention has one row per token and one column per key
        for kind, keys in stack["keys"].items():
            pattern = t[stack["name"]][0]["sublayers"][kind]["pattern"][0]
            assert (len(pattern), len(pattern[0])) == (len(t[stack["tokens"]]), len(t[keys]))


def test_trace_round_trips_through_json(model):
    t = trace(model, TASK, "2718")
    assert json.loads(json.dumps(t)) == t


def test_trace_stays_within_its_size_budget_on_the_longest_input(model):
    longest = "9" * TASK.max_src_tokens
    assert trace_size(trace(model, TASK, longest)) < TRACE_BUDGET_BYTES


def test_residual_off_shows_as_off_and_changes_the_stream(model):
    on = trace(model, TASK, "1234")
    off = trace(model, TASK, "1234", Switches(residual=False))
    assert on["encoder"][0]["sublayers"]["ffn"]["residual"] is True
    assert off["encoder"][0]["sublayers"]["ffn"]["residual"] is False
    assert off["ablated"] == {"residual": (False, True)}
    assert on["encoder"][1]["resid_post_norm"] != off["encoder"][1]["resid_post_norm"]


def test_layernorm_output_statistics_in_the_trace(model):
    t = trace(model, TASK, "98765")
    norm = t["encoder"][0]["sublayers"]["self_attn"]["norm"]
    assert norm["kind"] == "layer"
    # γ = 1, β = 0 at initialisation: the output is the standardised input
    assert all(abs(m) < 1e-3 for m in norm["after_mean"])
    assert all(abs(s - 1) < 1e-3 for s in norm["after_std"])


@pytest.mark.parametrize("causal", [True, False])
def test_stitched_decoder_rows_equal_what_each_greedy_step_computed(model, causal):
    switches = Switches(causal_mask=causal)
    t = trace(model, TASK, "5551", switches)
    src = torch.tensor([TASK.src_tokenizer.encode("5551")])
    ys = torch.tensor([[1]])
    last = model.config.n_decoder_layers - 1
    for step, token in enumerate(t["output_tokens"]):
        logits, cache = model.run_with_cache(src, ys, switches)
        probs = torch.softmax(logits[0, -1], -1)
        chosen = probs.argmax().item()
        assert TASK.tgt_tokenizer.token(chosen) == token
        assert t["output"]["chosen_prob"][step] == pytest.approx(probs[chosen].item(), rel=1e-3)
        # inner rows too: the last layer's stream and the first layer's masked self-attention
        stream = cache[f"decoder.{last}.hook_resid_post"][0, -1].norm().item()
        assert t["decoder"][last]["resid_post_norm"][step] == pytest.approx(stream, rel=1e-3)
        pattern = cache["decoder.0.self_attn.hook_pattern"][0, :, -1]  # (H, step + 1)
        traced = torch.tensor([head[step] for head in t["decoder"][0]["sublayers"]["self_attn"]["pattern"]])
        assert torch.allclose(traced[:, : step + 1], pattern, atol=1e-3)
        assert torch.all(traced[:, step + 1 :] == 0)  # keys not generated yet
        ys = torch.cat([ys, torch.tensor([[chosen]])], dim=1)


def test_unknown_tokens_are_reported_not_crashed_on(model):
    with pytest.raises(UnknownTokenError, match="x"):
        trace(model, TASK, "12x4")


def test_empty_input_is_refused(model):
    with pytest.raises(ValueError, match="empty"):
        trace(model, TASK, "   ")


def test_trace_without_a_known_answer_has_no_gradients():
    task = get_task("en_numbers")
    torch.manual_seed(0)
    m = Seq2Seq(model_config_for(task, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1, n_decoder_layers=1))
    t = trace(m, task, "three hundred twelve")
    assert t["expected_tokens"] == ["3", "1", "2", "<eos>"] and t["gradients"] is not None
    t = trace(m, task, "hundred hundred")
    assert t["expected_tokens"] is None and t["gradients"] is None
