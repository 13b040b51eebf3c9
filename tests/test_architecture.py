"""The architecture diagram: one box per sublayer, memory arrows from the right encoder output,
switched-off parts marked off, exactly one current box, clickable boxes that jump to matching
steps, no overlaps, and an SVG that parses, escapes its text and translates every word."""

import functools
import itertools
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader

from app.playground.architecture import ARCH_LABELS, WIDTH, architecture_layout
from app.playground.architecture.text import in_language
from model.config import ModelConfig, Switches
from model.trace import build_steps
from model.transformer import Seq2Seq

ROOT = Path(__file__).resolve().parent.parent
SVG = "{http://www.w3.org/2000/svg}"
N_POSITIONS = 3


def english(key, **kw):
    return ARCH_LABELS["en"][key].format(**kw)


def chinese(key, **kw):
    return ARCH_LABELS["zh"][key].format(**kw)


def config(n_enc=2, n_dec=3):
    return ModelConfig(src_vocab_size=13, tgt_vocab_size=13, n_encoder_layers=n_enc, n_decoder_layers=n_dec)


@functools.cache
def steps_for(cfg, switches, n_positions=N_POSITIONS):
    return build_steps(Seq2Seq(cfg, switches), n_positions, switches)


def layout_for(switches=None, n_enc=2, n_dec=3, current=0, trained=None):
    switches = switches or Switches()
    cfg = config(n_enc, n_dec)
    steps = steps_for(cfg, switches)
    return architecture_layout(cfg, switches, steps, current, trained), steps


def render(layout, t=english):
    env = Environment(loader=FileSystemLoader(ROOT / "templates"), autoescape=True)
    template = env.from_string('{% from "partials/architecture.html" import architecture %}'
                               "{{ architecture(layout) }}")
    return template.render(layout=in_language(layout, t))


def boxes(layout, **match):
    return [b for b in layout["boxes"] if all(b[k] == v for k, v in match.items())]


def one(layout, **match):
    found = boxes(layout, **match)
    assert len(found) == 1, (match, [b["id"] for b in found])
    return found[0]


def step_index(steps, **match):
    return next(s["index"] for s in steps if all(s[k] == v for k, v in match.items()))


# ---- structure -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_enc,n_dec", [(1, 1), (2, 3), (4, 4), (3, 1)])
def test_one_box_per_sublayer(n_enc, n_dec):
    layout, _ = layout_for(n_enc=n_enc, n_dec=n_dec)
    assert len(boxes(layout, kind="attention")) == n_enc + n_dec  # self-attention in both stacks
    assert len(boxes(layout, kind="cross_attention")) == n_dec
    assert len(boxes(layout, kind="ffn")) == n_enc + n_dec
    for stack, n in (("encoder", n_enc), ("decoder", n_dec)):
        for i in range(n):
            assert one(layout, stack=stack, layer=i, sublayer="self_attn", part="sublayer")
            assert one(layout, stack=stack, layer=i, sublayer="ffn", part="add_norm")
        assert one(layout, stack=stack, part="embed")["kind"] == "embedding"
        assert one(layout, stack=stack, part="pos")["kind"] == "positional"
    assert one(layout, part="output")["stack"] == "decoder"
    assert not boxes(layout, part="final_norm")  # Post-LN needs none
    assert [f["id"] for f in layout["frames"]] == [f"encoder.{i}" for i in range(n_enc)] + [
        f"decoder.{i}" for i in range(n_dec)]
    assert {b["kind"] for b in layout["boxes"]} <= {
        "embedding", "positional", "attention", "cross_attention", "ffn", "norm", "residual_add", "output"}


def test_columns_and_bottom_to_top_order():
    layout, _ = layout_for(n_enc=2, n_dec=2)
    assert layout["width"] == WIDTH
    enc = boxes(layout, stack="encoder")
    dec = boxes(layout, stack="decoder")
    assert max(b["x"] + b["w"] for b in enc) < min(b["x"] for b in dec)  # encoder left, decoder right
    for stack in ("encoder", "decoder"):
        embed = one(layout, stack=stack, part="embed")
        first = one(layout, stack=stack, layer=0, sublayer="self_attn", part="sublayer")
        second = one(layout, stack=stack, layer=1, sublayer="self_attn", part="sublayer")
        assert embed["y"] > first["y"] > second["y"]  # the embedding at the bottom, layer 2 above layer 1
    assert one(layout, part="output")["y"] < min(b["y"] for b in dec if b["part"] != "output")


@pytest.mark.parametrize("n_layers,max_height", [(2, 400), (4, 660)])
def test_compact(n_layers, max_height):
    layout, _ = layout_for(n_enc=n_layers, n_dec=n_layers)
    assert layout["height"] <= max_height
    assert all(18 <= b["h"] <= 20 for b in layout["boxes"])


SHAPES = [
    (Switches(), 1, 1), (Switches(), 12, 12), (Switches(), 1, 12), (Switches(), 12, 1),
    (Switches(norm_position="pre", pos_every_layer=True, memory="same_depth"), 3, 5),
    (Switches(norm_position="pre", norm="none", residual=False, pos_encoding="none"), 5, 3),
    (Switches(pos_every_layer=True, causal_mask=False), 2, 4),
]


@pytest.mark.parametrize("switches,n_enc,n_dec", SHAPES)
def test_boxes_do_not_overlap_and_fit(switches, n_enc, n_dec):
    layout, _ = layout_for(switches, n_enc, n_dec)
    for b in layout["boxes"]:
        assert b["x"] >= 0 and b["x"] + b["w"] <= layout["width"]
        assert b["y"] >= 0 and b["y"] + b["h"] <= layout["height"]
    for a, b in itertools.combinations(layout["boxes"], 2):
        apart = (a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"]
                 or a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"])
        assert apart, (a["id"], b["id"])
    for f in layout["frames"]:  # each layer's boxes sit inside its frame
        for b in boxes(layout, stack=f["stack"], layer=f["layer"]):
            if b["part"] != "pe_marker":
                assert f["x"] <= b["x"] and b["x"] + b["w"] <= f["x"] + f["w"]
                assert f["y"] <= b["y"] and b["y"] + b["h"] <= f["y"] + f["h"]
    for a, b in itertools.combinations(layout["frames"], 2):
        assert a["y"] + a["h"] <= b["y"] or b["y"] + b["h"] <= a["y"] or a["stack"] != b["stack"]


# ---- memory ----------------------------------------------------------------------------------------


def _memory(layout):
    return sorted((a for a in layout["arrows"] if a["kind"] == "memory"), key=lambda a: a["target_layer"])


def test_memory_final_reaches_every_decoder_layer_from_the_encoder_output():
    layout, _ = layout_for(Switches(memory="final"), n_enc=2, n_dec=3)
    arrows = _memory(layout)
    assert [a["target_layer"] for a in arrows] == [0, 1, 2]
    top_encoder_box = min(boxes(layout, stack="encoder"), key=lambda b: b["y"])
    for a in arrows:
        assert a["source"] == "final" and a["source_layer"] == 1
        assert a["points"][0] == arrows[0]["points"][0]  # one source point for all
        x0, y0 = a["points"][0]
        assert y0 == top_encoder_box["y"]  # the top of the encoder stack
        target = one(layout, stack="decoder", layer=a["target_layer"], sublayer="cross_attn", part="sublayer")
        assert a["points"][-1] == [target["x"], target["y"] + target["h"] / 2]  # into its left edge


def test_memory_same_depth_reads_the_encoder_layer_at_the_same_depth():
    same_depth = Switches(memory="same_depth")
    layout, _ = layout_for(same_depth, n_enc=2, n_dec=3, trained=same_depth)
    arrows = _memory(layout)
    assert [a["source_layer"] for a in arrows] == [0, 1, 1]  # min(i, n_enc - 1)
    assert [a["source"] for a in arrows] == ["layer", "final", "final"]  # layer 2's output is the final output
    enc0_top = one(layout, stack="encoder", layer=0, sublayer="ffn", part="add_norm")
    assert arrows[0]["points"][0] == [enc0_top["x"] + enc0_top["w"], enc0_top["y"] + enc0_top["h"] / 2]
    assert arrows[1]["points"][0] == arrows[2]["points"][0]
    for a in arrows:
        target = one(layout, stack="decoder", layer=a["target_layer"], sublayer="cross_attn", part="sublayer")
        assert a["points"][-1] == [target["x"], target["y"] + target["h"] / 2]
    assert arrows[0]["title"] == "Output of encoder layer 1 → K/V of decoder layer 1's cross-attention"
    assert arrows[2]["title"] == "Encoder final output → K/V of decoder layer 3's cross-attention"
    cross = one(layout, stack="decoder", layer=0, sublayer="cross_attn", part="sublayer")
    assert "encoder layer 1" in cross["title"]


def test_memory_lanes_do_not_cross():
    layout, _ = layout_for(Switches(memory="same_depth"), n_enc=4, n_dec=4)
    arrows = _memory(layout)
    lanes = [a["points"][-2][0] for a in arrows]  # the x of each arrow's vertical run
    assert lanes == sorted(lanes, reverse=True)  # deeper encoder layers run nearer the encoder
    enc_right = max(b["x"] + b["w"] for b in boxes(layout, stack="encoder"))
    dec_left = min(b["x"] for b in boxes(layout, stack="decoder"))
    assert all(enc_right < x < dec_left for x in lanes)


def test_memory_changed_and_current():
    _, steps = layout_for()
    cur = step_index(steps, stack="decoder", op="sublayer", layer=1, sublayer="cross_attn", position=0)
    layout, _ = layout_for(Switches(memory="same_depth"), current=cur, trained=Switches())
    arrows = _memory(layout)
    assert all(a["changed"] for a in arrows)
    assert [a["current"] for a in arrows] == [False, True, False]
    assert all(b["changed"] for b in boxes(layout, kind="cross_attention"))


# ---- switches --------------------------------------------------------------------------------------


def test_residual_off_everywhere():
    layout, _ = layout_for(Switches(residual=False))
    assert layout["skips"] and all(s["off"] for s in layout["skips"])
    assert all(b["label_key"] == "arch.norm_no_add" for b in boxes(layout, part="add_norm"))
    assert all(b["changed"] for b in boxes(layout, part="add_norm"))


def test_residual_off_for_one_sublayer_only():
    layout, _ = layout_for(Switches(residual_off=("decoder.1.ffn",)))
    off = [s["id"] for s in layout["skips"] if s["off"]]
    assert off == ["decoder.1.ffn.skip"]
    assert len(layout["skips"]) == 2 * 2 + 3 * 3
    add = one(layout, stack="decoder", layer=1, sublayer="ffn", part="add_norm")
    assert add["label"] == "LayerNorm · add off" and add["changed"]
    others = [b for b in boxes(layout, part="add_norm") if b is not add]
    assert all(b["label"] == "Add & LayerNorm" and not b["changed"] for b in others)


def test_residual_off_per_kind_in_pre_ln():
    layout, _ = layout_for(Switches(norm_position="pre", residual_cross_attn=False))
    for b in boxes(layout, part="add"):
        assert b["off"] == (b["sublayer"] == "cross_attn")
        assert b["kind"] == "residual_add"
    assert {s["id"] for s in layout["skips"] if s["off"]} == {f"decoder.{i}.cross_attn.skip" for i in range(3)}


def test_skip_lines_bypass_their_sublayer():
    layout, _ = layout_for(Switches(), n_enc=2, n_dec=2)
    for s in layout["skips"]:
        sub = one(layout, stack=s["stack"], layer=s["layer"], sublayer=s["sublayer"], part="sublayer")
        add = one(layout, stack=s["stack"], layer=s["layer"], sublayer=s["sublayer"], part="add_norm")
        assert s["y1"] > sub["y"] + sub["h"] - 0.01 and s["y2"] == add["y"] + add["h"] / 2  # from below into the add
        outside = s["x"] < sub["x"] if s["stack"] == "encoder" else s["x"] > sub["x"] + sub["w"]
        assert outside  # the lane runs beside the boxes


@pytest.mark.parametrize("position", ["post", "pre"])
def test_norm_none_marks_every_norm_box_off(position):
    layout, _ = layout_for(Switches(norm="none", norm_position=position))
    norms = boxes(layout, kind="norm")
    assert norms and all(b["off"] for b in norms)
    assert all(not b["off"] for b in boxes(layout, kind="attention"))


@pytest.mark.parametrize("norm,text", [("layer", "Add & LayerNorm"), ("rms", "Add & RMSNorm"),
                                       ("batch", "Add & BatchNorm")])
def test_norm_kind_in_labels(norm, text):
    layout, _ = layout_for(Switches(norm=norm))
    assert {b["label"] for b in boxes(layout, part="add_norm")} == {text}
    assert not any(b["off"] for b in boxes(layout, kind="norm"))


def test_pre_ln_order_norm_then_sublayer_then_add_and_final_norms():
    """Bottom-to-top: the norm box has the largest y, then the sublayer, then the add box."""
    layout, _ = layout_for(Switches(norm_position="pre", norm="rms"), n_enc=2, n_dec=3)
    for sub in boxes(layout, part="sublayer"):
        key = {"stack": sub["stack"], "layer": sub["layer"], "sublayer": sub["sublayer"]}
        norm, add = one(layout, part="norm", **key), one(layout, part="add", **key)
        assert norm["y"] > sub["y"] > add["y"]
        assert norm["y"] >= sub["y"] + sub["h"] and sub["y"] >= add["y"] + add["h"]
        assert norm["label"] == "RMSNorm" and add["label"] == "Add"
    assert not boxes(layout, part="add_norm")
    for stack in ("encoder", "decoder"):
        final = one(layout, stack=stack, part="final_norm")
        assert final["label"] == "Final RMSNorm" and final["kind"] == "norm"
        assert final["y"] < min(b["y"] for b in boxes(layout, stack=stack) if b["layer"] is not None)
    assert one(layout, part="output")["y"] < one(layout, stack="decoder", part="final_norm")["y"]


def test_positional_encoding_boxes():
    layout, _ = layout_for(Switches(pos_encoding="learned"))
    assert {b["label"] for b in boxes(layout, part="pos")} == {"+ learned PE"}
    assert not boxes(layout, part="pe_marker")
    layout, _ = layout_for(Switches(pos_encoding="none"))
    assert all(b["off"] and b["changed"] for b in boxes(layout, part="pos"))
    layout, _ = layout_for(Switches(pos_every_layer=True), n_enc=3, n_dec=2)
    markers = boxes(layout, part="pe_marker")
    assert sorted((b["stack"], b["layer"]) for b in markers) == [("decoder", 1), ("encoder", 1), ("encoder", 2)]
    assert all(b["label"] == "+PE" and not b["off"] and b["changed"] for b in markers)
    for b in markers:  # in the gap just below its layer's frame
        frame = next(f for f in layout["frames"] if f["stack"] == b["stack"] and f["layer"] == b["layer"])
        assert frame["y"] + frame["h"] <= b["y"] + b["h"] / 2 + 0.01
    # switched off after training with it: still shown, but off
    layout, _ = layout_for(Switches(), trained=Switches(pos_every_layer=True))
    assert boxes(layout, part="pe_marker") and all(b["off"] for b in boxes(layout, part="pe_marker"))


def test_causal_mask_off_is_labelled_and_changed():
    layout, _ = layout_for(Switches(causal_mask=False), trained=Switches())
    for b in boxes(layout, stack="decoder", sublayer="self_attn", part="sublayer"):
        assert b["label"] == "Self-attention (mask off)" and b["changed"] and not b["off"]
    for b in boxes(layout, stack="encoder", sublayer="self_attn", part="sublayer"):
        assert b["label"] == "Self-attention" and not b["changed"]
    intact, _ = layout_for(Switches())
    assert {b["label"] for b in boxes(intact, stack="decoder", sublayer="self_attn", part="sublayer")} == {
        "Masked self-attention"}
    assert not any(b["changed"] for b in intact["boxes"])
    # compared with what the model was trained with, not with the defaults
    same, _ = layout_for(Switches(causal_mask=False), trained=Switches(causal_mask=False))
    assert not any(b["changed"] for b in same["boxes"])


def test_titles_explain_the_component():
    layout, _ = layout_for(Switches(), n_enc=2, n_dec=3)
    cross = one(layout, stack="decoder", layer=1, sublayer="cross_attn", part="sublayer")
    assert cross["title"] == ("Decoder layer 2 · Cross-attention: Q from the decoder, "
                              "K/V from the encoder's final output · API name: decoder.1.cross_attn")
    ffn = one(layout, stack="encoder", layer=0, sublayer="ffn", part="sublayer")
    assert "64 → 128 → 64" in ffn["title"]


# ---- steps -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("switches", [Switches(), Switches(norm_position="pre", pos_every_layer=True)])
def test_exactly_one_current_box_for_every_step(switches):
    cfg = config(2, 2)
    steps = steps_for(cfg, switches, n_positions=2)
    for step in steps:
        layout = architecture_layout(cfg, switches, steps, step["index"], switches)
        current = [b for b in layout["boxes"] if b["current"]]
        assert len(current) == 1, step
        box = current[0]
        assert box["step"] == step["index"]
        assert (box["stack"], box["op"], box["layer"], box["sublayer"]) == (
            step["stack"], step["op"], step["layer"], step["sublayer"])
        assert not any(b["related"] and b["current"] for b in layout["boxes"])


@pytest.mark.parametrize("switches", [Switches(), Switches(norm_position="pre", pos_every_layer=True)])
def test_every_box_jumps_to_a_matching_step(switches):
    cfg = config(2, 3)
    steps = steps_for(cfg, switches)
    for current, position in ((0, 0), (step_index(steps, stack="decoder", op="embed", position=2), 2)):
        layout = architecture_layout(cfg, switches, steps, current, switches)
        for b in layout["boxes"]:
            assert b["step"] is not None and 0 <= b["step"] < len(steps), b["id"]
            step = steps[b["step"]]
            assert step["index"] == b["step"]
            assert step["stack"] == b["stack"] and step["op"] == b["op"], b["id"]
            if b["layer"] is not None:
                assert step["layer"] == b["layer"], b["id"]
            if b["sublayer"] is not None:
                assert step["sublayer"] == b["sublayer"], b["id"]
            if b["stack"] == "decoder":  # the position of the current decoder step, else the first
                assert step["position"] == position, b["id"]


def test_current_out_of_range_is_clamped():
    layout, steps = layout_for(current=10_000)
    current = [b for b in layout["boxes"] if b["current"]]
    assert len(current) == 1 and current[0]["step"] == len(steps) - 1 and current[0]["part"] == "output"


# ---- SVG -------------------------------------------------------------------------------------------


def _parse(svg):
    return ET.fromstring(svg)


def test_svg_parses_and_escapes_text():
    layout, steps = layout_for(Switches(norm_position="pre", residual_off=("encoder.0.ffn",), pos_every_layer=True,
                                        memory="same_depth"), current=5)
    svg = render(layout)
    root = _parse(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("viewBox") == f"0 0 {layout['width']} {layout['height']}"
    assert "&lt;bos&gt;" in svg and "<bos>" not in svg  # the decoder embedding's tooltip
    groups = [g for g in root.iter(f"{SVG}g") if "arch-box" in g.get("class", "").split()]
    assert len(groups) == len(layout["boxes"])
    for g, b in zip(groups, layout["boxes"], strict=True):
        classes = g.get("class").split()
        assert f"kind-{b['kind']}" in classes
        assert ("is-off" in classes) == b["off"] and ("is-current" in classes) == b["current"]
        assert ("is-changed" in classes) == b["changed"]
        assert g.get("data-step") == str(b["step"]) and g.get("tabindex") == "0" and g.get("role") == "button"
        assert g.find(f"{SVG}text").text == b["label"]
        assert g.find(f"{SVG}title").text == b["title"] == g.get("aria-label")
    assert sum("is-current" in g.get("class") for g in groups) == 1
    marker_ids = {m.get("id") for m in root.iter(f"{SVG}marker")}
    assert "arch-arrowhead" in marker_ids
    paths = list(root.iter(f"{SVG}path"))
    memory = [p for p in paths if "arch-memory" in (p.get("class") or "")]
    assert len(memory) == 3 and all("arch-arrow" in p.get("class") for p in memory)
    skips = [g for g in root.iter(f"{SVG}g") if "arch-skip" in (g.get("class") or "").split()]
    assert len(skips) == len(layout["skips"])
    assert [("is-off" in g.get("class")) for g in skips] == [s["off"] for s in layout["skips"]]
    title_id = root.get("aria-labelledby")
    assert root.find(f"{SVG}title").get("id") == title_id


def test_add_and_norm_ampersand_is_escaped():
    layout, _ = layout_for()
    svg = render(layout)
    assert "Add &amp; LayerNorm" in svg
    texts = [t.text for t in _parse(svg).iter(f"{SVG}text")]
    assert "Add & LayerNorm" in texts


def test_every_visible_word_goes_through_the_translator():
    layout, _ = layout_for(Switches(norm_position="pre", pos_every_layer=True, causal_mask=False,
                                    residual_off=("decoder.0.ffn",)), trained=Switches())
    svg = render(layout, t=lambda key, **kw: f"[{key}]")
    piece = r"\[arch\.[a-z_.]+\]"
    for el in _parse(svg).iter():
        if el.tag in (f"{SVG}text", f"{SVG}title", f"{SVG}desc"):
            assert re.fullmatch(rf"{piece}( · {piece})*", el.text or ""), el.text
        assert not (el.tail or "").strip(), el.tail
    used = set(re.findall(r"\[(arch\.[a-z_.]+)\]", svg))
    assert used <= set(ARCH_LABELS["en"])


def test_chinese_labels():
    layout, _ = layout_for(Switches(norm="rms"))
    svg = render(layout, t=chinese)
    _parse(svg)
    for text in ("交叉注意力", "掩码自注意力", "残差相加 &amp; RMS 归一化", "编码器第 1 层", "解码器"):
        assert text in svg
    assert "Cross-attention" not in svg and "Encoder layer" not in svg


def test_labels_exist_in_both_languages():
    assert set(ARCH_LABELS["en"]) == set(ARCH_LABELS["zh"])
    for key, text in ARCH_LABELS["en"].items():
        fields = set(re.findall(r"\{(\w+)\}", text))
        assert fields == set(re.findall(r"\{(\w+)\}", ARCH_LABELS["zh"][key])), key
    keys = set()
    for switches, n_enc, n_dec in SHAPES:
        layout, _ = layout_for(switches, n_enc, n_dec, trained=Switches(pos_every_layer=True))
        for item in layout["boxes"] + layout["labels"]:
            keys.add(item["label_key"])
            keys.update(v["key"] for v in item["label_args"].values() if isinstance(v, dict))
        for item in layout["boxes"] + layout["skips"] + [a for a in layout["arrows"] if a["kind"] == "memory"]:
            for part in item["title_parts"]:
                keys.add(part["key"])
                keys.update(v["key"] for v in part["args"].values() if isinstance(v, dict))
    assert keys <= set(ARCH_LABELS["en"])
