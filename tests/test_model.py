"""Each switch changes the computation the way its name says; hooks fire and never leak."""

import pytest
import torch

from model.config import ConfigError, ModelConfig, Switches
from model.hooks import mean_ablate, zero_head
from model.layers import Norm
from model.transformer import Seq2Seq

VOCAB = 13


def make_model(seed=0, **switches) -> Seq2Seq:
    torch.manual_seed(seed)
    config = ModelConfig(src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=32, n_heads=4, d_ff=64,
                         n_encoder_layers=2, n_decoder_layers=2, max_len=20)
    return Seq2Seq(config, Switches(**switches)).eval()


def tokens(*shape, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, shape, generator=g)


SRC, TGT = tokens(2, 7), tokens(2, 6, seed=2)

ALL_SWITCH_SETTINGS = [
    {},
    {"residual": False},
    {"norm": "rms"},
    {"norm": "batch"},
    {"norm": "none"},
    {"norm_position": "pre"},
    {"pos_encoding": "learned"},
    {"pos_encoding": "none"},
    {"pos_every_layer": True},
    {"causal_mask": False},
    {"memory": "same_depth"},
    {"residual_off": ("encoder.1.ffn", "decoder.0.cross_attn")},
]


@pytest.mark.parametrize("switches", ALL_SWITCH_SETTINGS)
def test_every_hook_fires_under_every_switch_setting(switches):
    model = make_model()
    _, cache = model.run_with_cache(SRC, TGT, Switches(**switches))
    assert set(cache) == set(model.hook_names())
    assert model.active_hook_count() == 0


def test_hook_names_follow_the_design():
    names = set(make_model().hook_names())
    for expected in [
        "hook_src_embed", "hook_src_pos", "hook_tgt_embed", "hook_tgt_pos", "hook_logits",
        "encoder.0.hook_resid_pre", "encoder.1.norm_self_attn.hook_mean", "encoder.1.norm_self_attn.hook_std",
        "encoder.0.norm_self_attn.hook_normalized", "encoder.0.self_attn.hook_pattern", "encoder.0.self_attn.hook_z",
        "encoder.0.hook_self_attn_out", "encoder.0.hook_resid_mid", "encoder.0.ffn.hook_pre",
        "encoder.0.ffn.hook_post", "encoder.0.hook_ffn_out", "encoder.0.hook_resid_post",
        "encoder.norm_final.hook_normalized", "decoder.1.cross_attn.hook_pattern", "decoder.1.hook_cross_attn_out",
        "decoder.1.hook_resid_mid_cross", "decoder.1.norm_cross_attn.hook_std", "decoder.norm_final.hook_mean",
    ]:
        assert expected in names


def test_hooks_are_removed_even_when_the_forward_fails():
    model = make_model()

    def boom(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        model.run_with_hooks(SRC, TGT, fwd_hooks=[("encoder.0.hook_resid_pre", boom)])
    assert model.active_hook_count() == 0
    out1, out2 = model(SRC, TGT), model(SRC, TGT)
    assert torch.equal(out1, out2)


def test_unknown_hook_name_is_an_error():
    with pytest.raises(KeyError, match="no hook point"):
        make_model().run_with_hooks(SRC, TGT, fwd_hooks=[("encoder.9.hook_nothing", lambda x, h: None)])


@pytest.mark.parametrize("causal", [True, False])
def test_causal_mask_hides_later_target_tokens(causal):
    model = make_model(causal_mask=causal)
    changed = TGT.clone()
    changed[:, 4] = (changed[:, 4] - 3 + 1) % (VOCAB - 3) + 3  # a different real token at position 4
    a, b = model(SRC, TGT), model(SRC, changed)
    earlier_same = torch.allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert earlier_same is causal
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("position", ["post", "pre"])
def test_after_layernorm_each_token_has_mean_0_and_variance_1(position):
    model = make_model(norm_position=position)
    _, cache = model.run_with_cache(SRC, TGT)
    for name in ["encoder.0.norm_self_attn", "encoder.1.norm_ffn", "decoder.1.norm_cross_attn"]:
        normalized = cache[f"{name}.hook_normalized"]
        torch.testing.assert_close(normalized.mean(-1), torch.zeros(normalized.shape[:2]), atol=1e-5, rtol=0)
        torch.testing.assert_close(normalized.var(-1, unbiased=False), torch.ones(normalized.shape[:2]),
                                   atol=1e-3, rtol=0)


def test_hand_written_layer_and_rms_norms_equal_torch():
    x = torch.randn(3, 5, 16) * 4 + 2
    ours = Norm(16, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_(0.5, 1.5)
        ours.bias.uniform_(-1, 1)
    layer = torch.nn.LayerNorm(16, eps=1e-5)
    rms = torch.nn.RMSNorm(16, eps=1e-5)
    layer.load_state_dict({"weight": ours.weight.detach(), "bias": ours.bias.detach()})
    rms.load_state_dict({"weight": ours.weight.detach()})
    torch.testing.assert_close(ours(x, "layer"), layer(x))
    torch.testing.assert_close(ours(x, "rms"), rms(x))
    assert torch.equal(ours(x, "none"), x)


def test_batch_norm_uses_batch_and_positions_and_ignores_padding():
    norm = Norm(8).train()
    x = torch.randn(2, 4, 8)
    pad = torch.tensor([[False, False, True, True], [False, False, False, True]])
    garbage = x.clone()
    garbage[pad] = 1e6  # padding must not move the statistics
    out = norm(garbage, "batch", pad)
    real = x[~pad]
    expected = (real - real.mean(0)) / torch.sqrt(real.var(0, unbiased=False) + norm.eps)
    torch.testing.assert_close(out[~pad], expected)
    # batch norm matches torch's BatchNorm1d over the real tokens
    reference = torch.nn.BatchNorm1d(8, eps=norm.eps).train()
    torch.testing.assert_close(out[~pad], reference(real))


def test_batch_norm_in_eval_uses_running_statistics_so_batch_size_does_not_matter():
    model = make_model(norm="batch")
    model.train()
    for _ in range(3):
        model(SRC, TGT)
    model.eval()
    both = model(SRC, TGT)
    first_alone = model(SRC[:1], TGT[:1])
    torch.testing.assert_close(both[:1], first_alone)


def test_without_positional_encoding_the_encoder_is_permutation_equivariant():
    model = make_model(pos_encoding="none")
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    memory = model.encode(SRC).final
    memory_permuted = model.encode(SRC[:, perm]).final
    torch.testing.assert_close(memory_permuted, memory[:, perm], atol=1e-5, rtol=1e-5)


def test_with_positional_encoding_the_encoder_is_not_permutation_equivariant():
    model = make_model()
    perm = torch.tensor([3, 0, 6, 1, 5, 2, 4])
    assert not torch.allclose(model.encode(SRC[:, perm]).final, model.encode(SRC).final[:, perm], atol=1e-3)


def test_pos_every_layer_adds_the_encoding_again_at_each_layer_input():
    model = make_model(pos_every_layer=True)
    _, cache = model.run_with_cache(SRC, TGT)
    pe = cache["hook_src_pos"]
    torch.testing.assert_close(cache["encoder.1.hook_resid_pre"], cache["encoder.0.hook_resid_post"] + pe)
    _, once = make_model().run_with_cache(SRC, TGT)
    torch.testing.assert_close(once["encoder.1.hook_resid_pre"], once["encoder.0.hook_resid_post"])


@pytest.mark.parametrize("memory", ["final", "same_depth"])
def test_memory_switch_chooses_what_cross_attention_keys_come_from(memory):
    model = make_model(memory=memory)
    _, cache = model.run_with_cache(SRC, TGT)
    for i in range(2):
        read = cache[f"encoder.{i}.hook_resid_post"] if memory == "same_depth" else cache["encoder.1.hook_resid_post"]
        cross = model.decoder.layers()[i].cross_attn
        keys = cross.W_k(read).view(2, 7, 4, 8).transpose(1, 2)
        torch.testing.assert_close(cache[f"decoder.{i}.cross_attn.hook_k"], keys)


def test_memory_same_depth_differs_from_final_in_the_first_decoder_layer():
    a = make_model()
    assert not torch.allclose(a(SRC, TGT), a(SRC, TGT, Switches(memory="same_depth")))


def test_residual_off_removes_the_identity_path():
    model = make_model(residual=False, norm="none")
    _, cache = model.run_with_cache(SRC, TGT)
    for stack, kinds in [("encoder", ["self_attn", "ffn"]), ("decoder", ["self_attn", "cross_attn", "ffn"])]:
        streams = ["hook_resid_mid", "hook_resid_post"] if stack == "encoder" else [
            "hook_resid_mid", "hook_resid_mid_cross", "hook_resid_post"]
        for kind, stream in zip(kinds, streams, strict=True):
            torch.testing.assert_close(cache[f"{stack}.1.{stream}"], cache[f"{stack}.1.hook_{kind}_out"])


def test_residual_on_adds_the_identity_path():
    model = make_model(norm="none")
    _, cache = model.run_with_cache(SRC, TGT)
    torch.testing.assert_close(cache["encoder.0.hook_resid_mid"],
                               cache["encoder.0.hook_resid_pre"] + cache["encoder.0.hook_self_attn_out"])


def test_per_layer_residual_override_switches_off_only_that_sublayer():
    model = make_model(norm="none", residual_off=("encoder.1.ffn",))
    _, cache = model.run_with_cache(SRC, TGT)
    torch.testing.assert_close(cache["encoder.1.hook_resid_post"], cache["encoder.1.hook_ffn_out"])
    torch.testing.assert_close(cache["encoder.0.hook_resid_post"],
                               cache["encoder.0.hook_resid_mid"] + cache["encoder.0.hook_ffn_out"])


def test_pre_and_post_ln_differ_as_their_equations_say():
    post = make_model(norm_position="post")
    _, c = post.run_with_cache(SRC, TGT)
    ln = post.encoder.layers()[0].norm_self_attn
    torch.testing.assert_close(c["encoder.0.hook_resid_mid"],
                               ln.quiet(c["encoder.0.hook_resid_pre"] + c["encoder.0.hook_self_attn_out"], "layer"))
    _, c = post.run_with_cache(SRC, TGT, Switches(norm_position="pre"))
    torch.testing.assert_close(c["encoder.0.hook_resid_mid"],
                               c["encoder.0.hook_resid_pre"] + c["encoder.0.hook_self_attn_out"])
    torch.testing.assert_close(c["encoder.0.norm_self_attn.hook_in"], c["encoder.0.hook_resid_pre"])


def test_ablation_at_inference_leaves_the_trained_switches_alone():
    model = make_model()
    intact = model(SRC, TGT)
    ablated = model(SRC, TGT, Switches(residual=False))
    assert not torch.allclose(intact, ablated)
    torch.testing.assert_close(model(SRC, TGT), intact)
    assert model.switches == Switches()


def test_zero_one_head_changes_only_through_that_head():
    model = make_model()
    _, cache = model.run_with_cache(SRC, TGT, names_filter="encoder.0.self_attn.hook_z")
    with model.hooks([("encoder.0.self_attn.hook_z", zero_head(2))]):
        _, ablated = model.run_with_cache(SRC, TGT, names_filter="encoder.0.self_attn.hook_z")
    z, z_ablated = cache["encoder.0.self_attn.hook_z"], ablated["encoder.0.self_attn.hook_z"]
    assert torch.all(z_ablated[:, 2] == 0) and not torch.all(z[:, 2] == 0)
    torch.testing.assert_close(z_ablated[:, [0, 1, 3]], z[:, [0, 1, 3]])
    assert model.active_hook_count() == 0


def test_mean_ablation_of_a_sublayer_replaces_it_by_its_mean():
    model = make_model()
    with model.hooks([("encoder.1.hook_ffn_out", mean_ablate())]):
        _, cache = model.run_with_cache(SRC, TGT, names_filter="encoder.1.hook_ffn_out")
    out = cache["encoder.1.hook_ffn_out"]
    assert torch.allclose(out, out[:1, :1].expand_as(out))


def test_greedy_decode_stops_and_pads_after_eos():
    """A batch whose answers end at different lengths: each row is its own greedy answer up to EOS, PAD after it,
    and decoding stops once every row has ended."""
    from model.tasks import EOS, PAD, collate
    from model.zoo import load_zoo_model

    model, task, _ = load_zoo_model("reverse-post-2x2")
    batch = collate(task, [("3141", "1413"), ("27182818", "81828172")])
    out = model.greedy_decode(batch.src, 12)
    tok = task.tgt_tokenizer
    assert out.shape == (2, 9)  # the longer answer and its EOS; not the 12 allowed
    assert out[0].tolist() == tok.encode("1413") + [EOS] + [PAD] * 4
    assert out[1].tolist() == tok.encode("81828172") + [EOS]


def test_switch_validation_names_the_field_and_the_choices():
    with pytest.raises(ConfigError, match="norm: 'group' is not allowed; choose one of layer | rms | batch | none"):
        Switches(norm="group")
    with pytest.raises(ConfigError, match="causal_mask"):
        Switches(causal_mask="yes")
    with pytest.raises(ConfigError, match="residual_off"):
        Switches(residual_off=("encoder.0.cross_attn",))
    with pytest.raises(ConfigError, match="the encoder has layers 0..1"):
        make_model(residual_off=("encoder.5.ffn",))
    with pytest.raises(ConfigError, match="n_heads"):
        ModelConfig(src_vocab_size=10, tgt_vocab_size=10, d_model=30, n_heads=4)
    with pytest.raises(ConfigError, match="unknown field"):
        Switches.from_dict({"resid": True})


def test_switches_round_trip_and_hash_is_stable():
    s = Switches(norm="rms", residual_off="decoder.1.ffn,encoder.0.self_attn", causal_mask=False)
    assert Switches.from_json(s.to_json()) == s
    assert s.residual_off == ("decoder.1.ffn", "encoder.0.self_attn")
    assert s.short_hash() == Switches.from_dict(s.to_dict()).short_hash()
    assert s.short_hash() != Switches().short_hash()
    assert len(s.short_hash()) == 8
    assert s.differences(Switches()) == {"norm": ("rms", "layer"), "causal_mask": (False, True),
                                         "residual_off": (["decoder.1.ffn", "encoder.0.self_attn"], [])}


def test_hooks_added_in_one_thread_are_not_seen_by_another():
    import threading

    model = make_model()
    seen_elsewhere = []
    inside = threading.Event()
    release = threading.Event()

    def other_thread():
        inside.wait()
        _, cache = model.run_with_cache(SRC, TGT, names_filter="encoder.0.hook_resid_pre")
        seen_elsewhere.append(len(cache))
        release.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    calls = []
    with model.hooks([("encoder.0.hook_resid_pre", lambda x, h: calls.append(1))]):
        inside.set()
        release.wait(10)
        model(SRC, TGT)
    worker.join()
    assert calls == [1] and seen_elsewhere == [1]


def test_caching_records_only_the_part_that_ran_and_leaves_no_hook():
    model = make_model()
    with model.caching() as cache:
        memory = model.encode(SRC)
    assert cache and all(not name.startswith("decoder") and name != "hook_logits" for name in cache)
    assert torch.equal(cache[f"encoder.{model.config.n_encoder_layers - 1}.hook_resid_post"], memory.per_layer[-1])
    assert model.active_hook_count() == 0
