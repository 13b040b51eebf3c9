"""The trace of a GPT and of a BERT: what the model computed, row for row, in the encoder-decoder trace's shape."""

import pytest
import torch

from model.config import Switches
from model.families import greedy_continue
from model.tasks import BOS, get_task
from model.trace import expected_gradients, trace
from model.train import model_config_for, new_model

TASK = get_task("reverse")
SIZES = dict(d_model=32, n_heads=2, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
INPUT = "31415"


def model(arch: str, seed: int = 0):
    return new_model(model_config_for(TASK, arch=arch, **SIZES), Switches(), seed).eval()


def test_a_gpt_trace_names_one_causal_stack_over_prompt_separator_and_answer():
    gpt = model("decoder_only")
    result = trace(gpt, TASK, INPUT)
    (stack,) = result["stacks"]
    assert stack["name"] == "decoder" and stack["causal"] and stack["sublayers"] == ["self_attn", "ffn"]
    assert stack["tokens"] == "seq_tokens" and stack["keys"] == {"self_attn": "seq_tokens"}
    assert "encoder" not in result and "cross_attn" not in result["decoder"][0]["sublayers"]
    prompt = TASK.src_tokenizer.encode(INPUT) + [BOS]
    shown = len(INPUT) + 1 + 3  # an untrained model that never stops is shown 3 tokens past the answer's length
    alone = greedy_continue(gpt, torch.tensor([prompt]), shown)[0].tolist()
    assert result["output_tokens"] == [TASK.tgt_tokenizer.token(i) for i in alone]
    assert result["seq_tokens"] == list(INPUT) + ["<bos>"] + result["output_tokens"][:-1]
    start, stop = result["answer_rows"]
    assert (start, stop) == (len(prompt) - 1, len(prompt) - 1 + len(alone))
    assert len(result["decoder"][0]["resid_pre_norm"]) == len(result["seq_tokens"])


@pytest.mark.parametrize("causal_mask", [True, False])
def test_each_answer_row_is_what_the_gpt_computed_when_it_wrote_that_token(causal_mask):
    """With the mask off a position reads later ones, so a pass over the whole sequence would show rows the
    model never computed while it wrote; each row must be the pass that wrote the token after it."""
    gpt = model("decoder_only", seed=1)
    switches = Switches(causal_mask=causal_mask)
    result = trace(gpt, TASK, INPUT, switches)
    start, stop = result["answer_rows"]
    ids = [TASK.src_tokenizer.vocab.index(t) for t in result["seq_tokens"]]
    for row in range(start, stop):
        probs = torch.softmax(gpt(torch.tensor([ids[: row + 1]]), switches)[0, -1], -1)
        top_token, top_prob = result["output"]["top"][row - start][0]
        assert TASK.tgt_tokenizer.token(int(probs.argmax())) == top_token
        assert top_prob == pytest.approx(probs.max().item(), rel=1e-3)
    whole = torch.softmax(gpt(torch.tensor([ids]), switches)[0, start], -1).max().item()
    if causal_mask:
        assert whole == pytest.approx(result["output"]["top"][0][0][1], rel=1e-3)
    else:  # the first answer row, read with the whole answer in view, is not what the model wrote with
        assert whole != pytest.approx(result["output"]["top"][0][0][1], rel=1e-3)


def test_a_gpt_step_through_walks_the_positions_that_write_the_answer():
    result = trace(model("decoder_only"), TASK, INPUT)
    start, stop = result["answer_rows"]
    outputs = [s for s in result["steps"] if s["op"] == "output"]
    assert [s["position"] for s in outputs] == list(range(stop - start))  # the answer's tokens, counted from 0
    assert {s["stack"] for s in result["steps"]} == {"decoder"}
    assert [s["index"] for s in result["steps"]] == list(range(len(result["steps"])))


def test_a_bert_trace_answers_every_position_in_one_pass_and_ignores_the_causal_mask():
    bert = model("encoder_only")
    result = trace(bert, TASK, INPUT)
    assert [s["name"] for s in result["stacks"]] == ["encoder"] and not result["stacks"][0]["causal"]
    ids = torch.tensor([TASK.src_tokenizer.encode(INPUT)])
    assert result["output_tokens"] == [TASK.tgt_tokenizer.token(i) for i in bert(ids)[0].argmax(-1).tolist()]
    assert result["expected_tokens"] == list(INPUT[::-1])  # one token per position, no EOS
    assert result["answer_rows"] == [0, len(INPUT)]
    assert [s["op"] for s in result["steps"]].count("output") == 1
    unmasked = trace(bert, TASK, INPUT, Switches(causal_mask=False))
    assert unmasked["output"] == result["output"]  # a BERT stack has no causal mask to switch off


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_one_stack_gradients_are_the_traces_and_reach_every_layer(arch):
    net = model(arch)
    result = trace(net, TASK, INPUT)
    stack = result["stacks"][0]["name"]
    assert expected_gradients(net, TASK, INPUT) == result["gradients"]
    assert len(result["gradients"][stack]) == 2 and all(g > 0 for g in result["gradients"][stack])
    assert result["gradients"]["loss"] > 0


@pytest.mark.parametrize("arch, longest", [("encoder_only", 16), ("decoder_only", 31)])
def test_a_one_stack_trace_refuses_an_input_longer_than_its_positions(arch, longest):
    """A BERT has a position per input token; a GPT needs two more, for the separator and a token to write."""
    net = model(arch)
    assert trace(net, TASK, "1" * longest, with_gradients=False)["src_tokens"] == ["1"] * longest
    with pytest.raises(ValueError, match=f"at most {longest}$"):
        trace(net, TASK, "1" * (longest + 1))
