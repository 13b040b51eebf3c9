"""The GPT (decoder-only) and BERT (encoder-only) stacks: equal to torch's own Transformer encoder with copied
weights (with a causal mask for GPT, without for BERT; Post-LN and Pre-LN), hooks under the 2017 names, the
causal mask doing what it says, and `arch` leaving every stored encoder-decoder spec as it was."""

import pytest
import torch
from torch import nn

from model.config import ConfigError, ModelConfig, Switches
from model.families import OneStack, build_model
from model.transformer import Seq2Seq

D, HEADS, FF, LAYERS, VOCAB, T = 32, 4, 64, 3, 20, 9


def one_stack(arch: str, norm_position: str, seed: int = 0, **switches) -> OneStack:
    torch.manual_seed(seed)
    config = ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=D, n_heads=HEADS, d_ff=FF,
                         n_encoder_layers=LAYERS, n_decoder_layers=LAYERS, arch=arch)
    return OneStack(config, Switches(norm_position=norm_position, **switches)).eval()


def torch_reference(model: OneStack, pre: bool) -> nn.TransformerEncoder:
    """nn.TransformerEncoder with the model's weights: q, k, v in one in-projection, the FFN as linear1/linear2,
    norm1 before (Pre-LN) or after (Post-LN) attention, norm2 around the FFN; Pre-LN ends in the final norm."""
    layer = nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation="relu", layer_norm_eps=1e-5,
                                       batch_first=True, norm_first=pre)
    reference = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(D) if pre else None,
                                      enable_nested_tensor=False).eval()
    with torch.no_grad():
        for ours, theirs in zip(model.stack.layers(), reference.layers, strict=True):
            attn = ours.self_attn
            theirs.self_attn.in_proj_weight.copy_(torch.cat([attn.W_q.weight, attn.W_k.weight, attn.W_v.weight]))
            theirs.self_attn.in_proj_bias.copy_(torch.cat([attn.W_q.bias, attn.W_k.bias, attn.W_v.bias]))
            theirs.self_attn.out_proj.load_state_dict(attn.W_o.state_dict())
            theirs.linear1.load_state_dict(ours.ffn.W_in.state_dict())
            theirs.linear2.load_state_dict(ours.ffn.W_out.state_dict())
            for norm, mine in ((theirs.norm1, ours.norm_self_attn), (theirs.norm2, ours.norm_ffn)):
                norm.weight.copy_(mine.weight)
                norm.bias.copy_(mine.bias)
        if pre:
            reference.norm.weight.copy_(model.stack.norm_final.weight)
            reference.norm.bias.copy_(model.stack.norm_final.bias)
    return reference


def stack_output(model: OneStack, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the stack's input: embedding + positions, its output: the stream the unembedding reads)."""
    unembed, model.unembed = model.unembed, nn.Identity()
    try:
        with torch.no_grad():
            return model.embed(tokens) + model.pos(tokens.size(1), "sinusoidal", tokens.size(0)), model(tokens)
    finally:
        model.unembed = unembed


@pytest.mark.parametrize("norm_position", ["post", "pre"])
@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_the_stack_equals_torchs_transformer_encoder_with_copied_weights(arch, norm_position):
    model = one_stack(arch, norm_position)
    tokens = torch.randint(4, VOCAB, (3, T))  # no padding: torch's reference takes none here
    x, ours = stack_output(model, tokens)
    reference = torch_reference(model, pre=norm_position == "pre")
    mask = nn.Transformer.generate_square_subsequent_mask(T) if arch == "decoder_only" else None
    with torch.no_grad():
        theirs = reference(x, mask=mask, is_causal=mask is not None)
    assert torch.allclose(ours, theirs, atol=1e-5), (ours - theirs).abs().max()
    if arch == "decoder_only":  # and the mask is what makes them equal: without it they differ
        assert not torch.allclose(ours, reference(x), atol=1e-3)


def test_hooks_keep_the_2017_names_and_a_gpt_has_no_cross_attention():
    gpt, bert = one_stack("decoder_only", "post"), one_stack("encoder_only", "post")
    gpt_names, bert_names = set(gpt.hook_names()), set(bert.hook_names())
    assert {f"decoder.{i}.hook_resid_post" for i in range(LAYERS)} <= gpt_names
    assert {f"encoder.{i}.hook_resid_post" for i in range(LAYERS)} <= bert_names
    assert not any(n.startswith("encoder.") for n in gpt_names) and not any("cross" in n for n in gpt_names)
    assert not any(n.startswith("decoder.") for n in bert_names)


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_the_causal_mask_hides_later_tokens_from_a_gpt_only(arch):
    tokens = torch.randint(4, VOCAB, (1, T))
    changed_last = tokens.clone()
    changed_last[0, -1] = 4 if tokens[0, -1] != 4 else 5
    for causal_mask in (True, False):
        model = one_stack(arch, "pre", causal_mask=causal_mask)
        with torch.no_grad():
            before, after = model(tokens)[0, :-1], model(changed_last)[0, :-1]
        hidden = arch == "decoder_only" and causal_mask  # only a masked GPT keeps earlier positions blind to it
        assert torch.allclose(before, after, atol=1e-6) == hidden


def test_arch_is_written_only_when_it_is_not_the_2017_model():
    config = ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB)
    assert "arch" not in config.to_dict()  # every stored spec, run key and shipped file stays as it was
    assert ModelConfig.from_dict(config.to_dict()).arch == "encoder_decoder"
    gpt = ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, arch="decoder_only")
    assert gpt.to_dict()["arch"] == "decoder_only" and ModelConfig.from_dict(gpt.to_dict()) == gpt
    assert isinstance(build_model(config), Seq2Seq) and isinstance(build_model(gpt), OneStack)
    with pytest.raises(ConfigError, match="arch: 'gpt' is not allowed; choose one of encoder_decoder"):
        ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, arch="gpt")
    with pytest.raises(ConfigError, match="arch: 'decoder_only' is a one-stack model"):
        Seq2Seq(gpt)
    with pytest.raises(ConfigError, match="arch: 'encoder_decoder' has 2 stacks"):
        OneStack(config)
    with pytest.raises(ConfigError, match="tgt_vocab_size: a GPT reads back what it writes"):
        OneStack(ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB + 1, arch="decoder_only"))


@pytest.mark.parametrize(("arch", "item", "said"), [
    ("decoder_only", "decoder.0.cross_attn", "a decoder_only decoder have self_attn, ffn, no cross_attn"),
    ("decoder_only", "encoder.0.ffn", "this decoder_only model has no encoder"),
    ("encoder_only", "decoder.0.ffn", "this encoder_only model has no decoder"),
])
def test_a_residual_override_of_a_sublayer_the_family_lacks_is_refused(arch, item, said):
    with pytest.raises(ConfigError, match=said):
        one_stack(arch, "post", residual_off=(item,))


@pytest.mark.parametrize("arch", ["decoder_only", "encoder_only"])
def test_seeds_stacked_into_one_model_compute_what_each_seed_computes_alone(arch):
    """The engine trains several seeds as one model (model/seeds.py); a one-stack model stacks the same way."""
    from model.seeds import seed_state, stack_models

    models = [one_stack(arch, "pre", seed=seed).train() for seed in (0, 1, 2)]  # train mode, as the engine runs
    stacked = stack_models(models)
    tokens = torch.randint(4, VOCAB, (2, T))
    folded = stacked(tokens.repeat(3, 1))  # rows [2k, 2k+2) are seed k's
    assert not torch.allclose(models[0](tokens), models[1](tokens), atol=1e-3)  # the seeds differ
    for k, model in enumerate(models):
        assert torch.allclose(folded[2 * k: 2 * k + 2], model(tokens), atol=1e-5)
        assert all(torch.equal(a, b) for a, b in zip(seed_state(stacked, k).values(), model.state_dict().values(),
                                                     strict=True))


def test_a_digit_task_is_posed_to_a_gpt_as_prompt_separator_answer_with_the_loss_on_the_answer():
    import random

    from model.families import IGNORE, one_sequence
    from model.tasks import BOS, EOS, PAD, get_task

    batch = get_task("reverse").batch(random.Random(0), 6)
    seq = one_sequence(batch)
    assert seq.tokens.shape == seq.targets.shape
    for row, (src, tgt_out) in enumerate(zip(batch.src.tolist(), batch.tgt_out.tolist(), strict=True)):
        prompt = [t for t in src if t != PAD] + [BOS]
        answer = [t for t in tgt_out if t != PAD]
        p = seq.prompt_lengths[row]
        assert p == len(prompt) and answer[-1] == EOS
        tokens, targets = seq.tokens[row].tolist(), seq.targets[row].tolist()
        assert tokens[:p] == prompt and tokens[p:p + len(answer) - 1] == answer[:-1]
        assert targets[:p - 1] == [IGNORE] * (p - 1) and targets[p - 1:p - 1 + len(answer)] == answer
        # each counted target is the next token the sequence holds: the loss is next-token prediction
        assert all(targets[j] == tokens[j + 1] for j in range(p - 1, p + len(answer) - 2))
        assert set(targets[p - 1 + len(answer):]) <= {IGNORE} and set(tokens[p + len(answer) - 1:]) <= {PAD}


@pytest.mark.parametrize("causal_mask", [True, False])
def test_what_a_gpt_generates_one_pass_over_it_reproduces_only_with_the_causal_mask(causal_mask):
    """Greedy generation reads only the tokens so far at each step; one pass over the finished sequence computes
    the same logits at every answer position only when the mask keeps each position blind to the later ones."""
    from model.families import greedy_continue

    model = one_stack("decoder_only", "pre", seed=3, causal_mask=causal_mask)
    prompt = torch.randint(4, VOCAB, (1, 5))
    generated = greedy_continue(model, prompt, 6)
    full, p = torch.cat([prompt, generated], dim=1), prompt.size(1)
    with torch.no_grad():
        steps = torch.stack([model(full[:, :p + j])[0, -1] for j in range(generated.size(1))])
        one_pass = model(full)[0, p - 1:-1]
    assert torch.equal(steps.argmax(-1), generated[0])  # each new token is the argmax of its own step
    assert torch.allclose(one_pass, steps, atol=1e-5) == causal_mask


def test_bert_answers_at_every_position_where_the_task_has_a_token_per_position():
    import random

    from model.families import IGNORE, per_position
    from model.tasks import PAD, get_task

    for name in ("copy", "reverse", "sort"):
        batch = get_task(name).batch(random.Random(1), 5)
        posed = per_position(batch)
        assert torch.equal(posed.tokens, batch.src)
        for row, (src, tgt) in enumerate(zip(batch.src_texts, batch.tgt_texts, strict=True)):
            task = get_task(name)
            n = len(task.src_tokenizer.encode(src))
            assert posed.targets[row, :n].tolist() == task.tgt_tokenizer.encode(tgt)
            assert set(posed.targets[row, n:].tolist()) <= {IGNORE} and set(posed.tokens[row, n:].tolist()) <= {PAD}
    with pytest.raises(ValueError, match="no token per position"):
        per_position(get_task("en_numbers").batch(random.Random(0), 4))


@pytest.mark.parametrize("norm", ["layer", "rms", "batch", "none"])
@pytest.mark.parametrize("norm_position", ["post", "pre"])
def test_the_last_positions_logits_alone_are_the_last_row_of_all_of_them(norm, norm_position):
    """What generation reads (last_only) is what the whole forward gives at the last position, padding included."""
    model = one_stack("decoder_only", norm_position, norm=norm)
    tokens = torch.randint(4, VOCAB, (3, T))
    tokens[0, -2:] = 0  # PAD
    with torch.no_grad():
        torch.testing.assert_close(model(tokens, last_only=True), model(tokens)[:, -1:])
