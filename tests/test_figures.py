"""Figure dicts from real traces: titled, JSON-safe, faithful to the trace, and safe with learner-typed labels."""

import copy
import html
import json
import math
import re
import string
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from app import figures as F
from model.config import Switches
from model.layers import sinusoidal_table
from model.tasks import get_task
from model.trace import trace
from model.train import model_config_for
from model.transformer import Seq2Seq

TASK = get_task("reverse")
SRC = "31415"  # "1" twice: repeated tokens must keep distinct positions


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = model_config_for(TASK, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
    return Seq2Seq(config, Switches()).eval()


@pytest.fixture(scope="module")
def traces(model):
    return {
        "intact": trace(model, TASK, SRC),
        "residual_off": trace(model, TASK, SRC, Switches(residual=False)),
        "norm_off": trace(model, TASK, SRC, Switches(norm="none")),
        "no_gradient": trace(model, TASK, SRC, with_gradients=False),
    }


@pytest.fixture(scope="module")
def pe_table():
    return sinusoidal_table(12, 16).tolist()


def _history(heldout=lambda step: step / 100 if step % 10 == 0 else None):
    return [{"step": s, "loss": 2.5 / s, "token_accuracy": s / 30, "heldout_seq_accuracy": heldout(s),
             "layer_grad_norms": {"encoder": [0.01 * s, 0.02], "decoder": [0.1, 1 / s]}} for s in range(1, 31)]


def _all_figures(t, pe_table):
    sub = t["decoder"][1]["sublayers"]
    query_axis, key_axis = F.attention_axis_titles(t, "decoder", "cross_attn")
    return {
        "attention_heatmap": F.attention_heatmap(sub["self_attn"]["pattern"][0], t["tgt_tokens"], t["tgt_tokens"],
                                                 "Decoder layer 2 self-attention, head 1"),
        "attention_head_grid": F.attention_head_grid(sub["cross_attn"]["pattern"], t["tgt_tokens"], t["src_tokens"],
                                                     "Decoder layer 2 cross-attention", query_axis=query_axis,
                                                     key_axis=key_axis),
        "attention_distance_by_layer": F.attention_distance_by_layer(t),
        "residual_contributions": F.residual_contributions(t, "decoder"),
        "stream_norms": F.stream_norms(t, "decoder"),
        "norm_statistics": F.norm_statistics(sub["ffn"]["norm"], t["tgt_tokens"], "Decoder layer 2, feed-forward norm"),
        "norm_gamma_beta": F.norm_gamma_beta(sub["ffn"]["norm"], "Decoder layer 2: γ and β"),
        "positional_heatmap": F.positional_heatmap(pe_table),
        "position_similarity": F.position_similarity(pe_table),
        "embedding_vs_position": F.embedding_vs_position(t, "tgt"),
        "output_probabilities": F.output_probabilities(t),
        "logit_lens": F.logit_lens(t),
        "gradient_norms": F.gradient_norms(t),
        "sublayer_tokens": F.sublayer_tokens(t["encoder"][0]["sublayers"]["ffn"], t["src_tokens"], "FFN"),
        "training_curves": F.training_curves(_history()),
        "gradient_heatmap": F.gradient_heatmap(_history(), "encoder"),
    }


def _axis_titles(layout, letter):
    return [v["title"]["text"] for k, v in layout.items() if re.fullmatch(f"{letter}axis\\d*", k)]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_every_figure_has_titles_in_words_and_is_strict_json(traces, pe_table, lang):
    with F.language(lang):
        figures = _all_figures(traces["intact"], pe_table)
        figures["gradient_norms_none"] = F.gradient_norms(traces["no_gradient"])
    for name, fig in figures.items():
        layout = fig["layout"]
        assert layout["title"]["text"].strip(), name
        assert any(t.strip() for t in _axis_titles(layout, "x")), name
        assert any(t.strip() for t in _axis_titles(layout, "y")), name
        assert layout["font"]["family"] == F.FONT and layout["autosize"] is True and 200 <= layout["height"] <= 600
        assert json.loads(json.dumps(fig, allow_nan=False)) == fig, name  # no NaN/inf, no tuples or tensors
        for tr in fig["data"]:
            assert "<extra></extra>" in tr["hovertemplate"], (name, tr.get("name"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_user_visible_strings_come_from_labels(lang):
    with F.language(lang):
        formatted = {k: v for k, v in F.LABELS.items() if not k.startswith("hover_")}
        assert all(isinstance(v, str) and v for v in F.LABELS.values())
        assert len(F.LABELS) == len(F.LABELS_EN) and set(F.LABELS) == set(F.LABELS_EN.keys()) == set(F.LABELS.keys())
    assert all("%{" not in v for v in formatted.values())  # only hover templates hold Plotly placeholders
    assert set(F.COMPONENT_COLOURS) == {"attention", "cross_attention", "ffn", "norm", "residual", "embedding",
                                        "positional", "output"}


def test_attention_heatmap_shows_the_trace_pattern(traces):
    t = traces["intact"]
    pattern = t["encoder"][0]["sublayers"]["self_attn"]["pattern"][2]
    fig = F.attention_heatmap(pattern, t["src_tokens"], t["src_tokens"], "Encoder layer 1, head 3")
    (heat,) = fig["data"]
    assert heat["z"] == pattern
    assert (heat["zmin"], heat["zmax"]) == (0, 1)
    assert heat["customdata"][1][3] == ["1", 1, "1", 3]  # query token, its position, key token, its position


def test_head_grid_has_one_heatmap_per_head_on_one_colour_scale(traces):
    t = traces["intact"]
    heads = t["decoder"][0]["sublayers"]["cross_attn"]["pattern"]
    fig = F.attention_head_grid(heads, t["tgt_tokens"], t["src_tokens"], "Cross-attention")
    assert len(fig["data"]) == len(heads) == 4
    assert [tr["z"] for tr in fig["data"]] == heads
    assert len({(tr["xaxis"], tr["yaxis"]) for tr in fig["data"]}) == 4
    assert {tr["coloraxis"] for tr in fig["data"]} == {"coloraxis"}
    assert (fig["layout"]["coloraxis"]["cmin"], fig["layout"]["coloraxis"]["cmax"]) == (0, 1)
    assert [a["text"] for a in fig["layout"]["annotations"]] == ["Head 1", "Head 2", "Head 3", "Head 4"]
    boxes = [(fig["layout"]["xaxis" + suffix]["domain"], fig["layout"]["yaxis" + suffix]["domain"])
             for suffix in ("", "2", "3", "4")]
    assert len({tuple(x) for x, _ in boxes}) == F.HEADS_PER_ROW  # HEADS_PER_ROW to a row
    for i, (x1, y1) in enumerate(boxes):  # no two heads overlap
        for x2, y2 in boxes[i + 1:]:
            assert x1[1] <= x2[0] or x2[1] <= x1[0] or y1[1] <= y2[0] or y2[1] <= y1[0]
    assert fig["layout"]["meta"] == {"hover": "row-column"}  # app.js outlines the hovered row and column


def test_special_tokens_are_escaped_everywhere(traces, pe_table):
    t = traces["intact"]
    assert t["tgt_tokens"][0] == "<bos>"
    figures = _all_figures(t, pe_table)
    heat = figures["attention_heatmap"]
    assert heat["layout"]["yaxis"]["ticktext"][0] == "&lt;bos&gt;"
    assert heat["data"][0]["customdata"][0][0][0] == "&lt;bos&gt;"
    text = json.dumps(figures, ensure_ascii=False)
    assert "&lt;bos&gt;" in text
    assert not re.search(r"<(bos|eos|pad)>", text)
    # every tag left in any figure is one we wrote on purpose
    assert set(re.findall(r"</?([a-z]+)>", text)) <= {"br", "extra", "sup"}


def test_learner_typed_labels_are_data_not_markup_or_template():
    tokens = ["a&b", "<b>x</b>", "%{z}", "1"]
    fig = F.attention_heatmap([[0.25] * 4] * 4, tokens, tokens, "Typed")
    assert fig["layout"]["xaxis"]["ticktext"] == ["a&amp;b", "&lt;b&gt;x&lt;/b&gt;", "%{z}", "1"]
    assert fig["data"][0]["hovertemplate"] == F.LABELS["hover_attention"]  # tokens never enter the template
    assert html.unescape(fig["data"][0]["customdata"][1][0][0]) == "<b>x</b>"


def test_repeated_tokens_keep_distinct_positions(traces):
    t = traces["intact"]
    assert t["src_tokens"] == ["3", "1", "4", "1", "5"]
    for fig in (F.embedding_vs_position(t, "src"),
                F.norm_statistics(t["encoder"][0]["sublayers"]["ffn"]["norm"], t["src_tokens"], "Norm")):
        axis = fig["layout"]["xaxis"]
        assert axis["tickmode"] == "array"
        assert axis["tickvals"] == [0, 1, 2, 3, 4] and axis["ticktext"] == ["3", "1", "4", "1", "5"]
        assert all(tr["x"] == [0, 1, 2, 3, 4] for tr in fig["data"])
    heat = F.attention_heatmap(t["encoder"][0]["sublayers"]["self_attn"]["pattern"][0], t["src_tokens"],
                               t["src_tokens"], "Encoder")
    assert heat["data"][0]["x"] == heat["data"][0]["y"] == [0, 1, 2, 3, 4]
    lines = F.stream_norms(t, "encoder")["data"]
    assert len(lines) == 5 and len({tr["name"] for tr in lines}) == 5  # "1 (pos 1)" and "1 (pos 3)"


def test_residual_off_sublayers_are_hatched_and_labelled(traces):
    on = F.residual_contributions(traces["intact"], "encoder")
    off = F.residual_contributions(traces["residual_off"], "encoder")
    assert not on["layout"]["annotations"]
    assert all(set(tr["marker"]["pattern"]["shape"]) == {""} for tr in on["data"])
    assert [a["text"] for a in off["layout"]["annotations"]] == [F.LABELS["residual_off"]] * 4  # 2 layers × 2
    assert all(set(tr["marker"]["pattern"]["shape"]) == {F.RESIDUAL_OFF_PATTERN} for tr in off["data"])
    # bars are the token means of the trace, coloured by sublayer kind
    attn = next(tr for tr in on["data"] if tr["name"] == F.LABELS["self_attn"])
    ratios = traces["intact"]["encoder"][1]["sublayers"]["self_attn"]["ratio"]
    assert attn["y"][1] == pytest.approx(sum(ratios) / len(ratios))
    assert attn["marker"]["color"] == F.COMPONENT_COLOURS["attention"]
    assert on["layout"]["xaxis"]["ticktext"] == ["L1 attn", "L1 FFN", "L2 attn", "L2 FFN"]


def test_stream_norms_start_at_the_embedding_and_follow_every_sublayer(traces):
    t = traces["intact"]
    fig = F.stream_norms(t, "decoder")
    assert len(fig["data"]) == len(t["tgt_tokens"])
    assert fig["layout"]["xaxis"]["ticktext"][:4] == ["embed+PE", "L1 attn", "L1 cross", "L1 FFN"]
    first = fig["data"][0]["y"]
    assert first[0] == t["decoder"][0]["resid_pre_norm"][0]
    assert first[-1] == t["decoder"][1]["sublayers"]["ffn"]["stream_norm"][0]
    assert len(first) == 1 + 2 * 3


def test_norm_figures(traces):
    norm = traces["intact"]["encoder"][0]["sublayers"]["self_attn"]["norm"]
    stats = F.norm_statistics(norm, traces["intact"]["src_tokens"], "Norm")
    by_name = {(tr["name"], tr["yaxis"]): tr["y"] for tr in stats["data"]}
    assert by_name[(F.LABELS["after_norm"], "y2")] == norm["after_std"]
    assert by_name[(F.LABELS["before_norm"], "y")] == norm["before_mean"]
    gb = F.norm_gamma_beta(norm, "γ and β")
    assert gb["data"][0]["y"] == norm["gamma"] and gb["data"][1]["y"] == norm["beta"]
    assert not gb["layout"]["annotations"]
    rms = F.norm_gamma_beta({**norm, "kind": "rms"}, "RMS")
    assert rms["layout"]["annotations"][0]["text"] == F.LABELS["rms_no_beta"]


def test_positional_figures(pe_table):
    heat = F.positional_heatmap(pe_table)
    assert len(heat["data"][0]["z"]) == 12 and len(heat["data"][0]["z"][0]) == 16
    sim = F.position_similarity(pe_table)["data"][0]["z"]
    table = torch.tensor(pe_table)
    expected = torch.nn.functional.cosine_similarity(table[:, None], table[None, :], dim=-1)
    assert torch.allclose(torch.tensor(sim), expected, atol=1e-4)
    assert all(sim[i][i] == pytest.approx(1) for i in range(12))


def test_embedding_vs_position_bars(traces):
    t = traces["intact"]
    fig = F.embedding_vs_position(t, "src")
    assert [tr["y"] for tr in fig["data"]] == [t["embedding"]["src"][k] for k in ("embed_norm", "pos_norm", "sum_norm")]
    assert [tr["marker"]["color"] for tr in fig["data"]] == [
        F.COMPONENT_COLOURS[c] for c in ("embedding", "positional", "residual")]


def test_output_probabilities_mark_positions_that_differ_from_the_expected_answer(traces):
    t = traces["intact"]
    outputs, expected = t["output_tokens"], t["expected_tokens"]
    fig = F.output_probabilities(t)
    differs = [i for i, tok in enumerate(outputs) if i >= len(expected) or expected[i] != tok]
    assert differs  # an untrained model gets the reversal wrong
    bad = next(tr for tr in fig["data"] if tr["name"] == F.LABELS["differs"])
    assert bad["x"] == differs and bad["marker"]["color"] == F.MISMATCH_COLOUR
    assert sorted(x for tr in fig["data"] for x in tr["x"]) == list(range(len(outputs)))
    assert bad["customdata"][0][2].startswith(html.escape(t["output"]["top"][differs[0]][0][0], quote=False))

    right = copy.deepcopy(t)
    right["expected_tokens"] = list(outputs)
    (good,) = F.output_probabilities(right)["data"]
    assert good["marker"]["color"] == F.COMPONENT_COLOURS["output"] and good["y"] == t["output"]["chosen_prob"]

    unknown = {**t, "expected_tokens": None}
    (only,) = F.output_probabilities(unknown)["data"]
    assert only["name"] == F.LABELS["chosen"] and "Expected" not in only["hovertemplate"]


def test_output_figures_survive_an_empty_answer(traces):
    empty = copy.deepcopy(traces["intact"])
    empty["output_tokens"], empty["output"]["chosen_prob"] = [], []
    fig = F.output_probabilities(empty)
    assert fig["data"] == [] and fig["layout"]["annotations"][0]["text"] == F.LABELS["no_output"]
    lens = F.logit_lens(empty)  # positions without a final token show their number
    assert lens["layout"]["xaxis"]["ticktext"][0] == "0"


def test_logit_lens_cells_show_the_top_token_and_its_probability(traces):
    t = traces["intact"]
    fig = F.logit_lens(t)
    (heat,) = fig["data"]
    assert heat["texttemplate"] == "%{text}"
    for layer, row in enumerate(t["logit_lens"]):
        assert heat["text"][layer] == [html.escape(cell[0][0], quote=False) for cell in row]
        assert heat["z"][layer] == [cell[0][1] for cell in row]
    assert fig["layout"]["yaxis"]["ticktext"] == ["Layer 1", "Layer 2"]
    assert fig["layout"]["xaxis"]["ticktext"] == [html.escape(x, quote=False) for x in t["output_tokens"]]


def test_gradient_norms_with_and_without_an_expected_answer(traces):
    t = traces["intact"]
    fig = F.gradient_norms(t)
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert [tr["y"] for tr in fig["data"]] == [t["gradients"]["encoder"], t["gradients"]["decoder"]]
    assert fig["layout"]["xaxis"]["ticktext"] == ["Enc 1", "Enc 2", "Dec 1", "Dec 2"]
    assert [x for tr in fig["data"] for x in tr["x"]] == [0, 1, 2, 3]
    none = F.gradient_norms(traces["no_gradient"])
    assert traces["no_gradient"]["gradients"] is None
    assert none["data"] == []
    assert none["layout"]["annotations"][0]["text"] == "No expected answer for this input, so no gradient"


def test_the_per_layer_figures_draw_the_stacks_the_trace_names(traces):
    # a trace of one stack (as a decoder-only model gives) draws that stack alone, in every per-layer figure
    t = traces["intact"]
    decoder_only = {**t, "stacks": [s for s in t["stacks"] if s["name"] == "decoder"]}
    fig = F.gradient_norms(decoder_only)
    assert [tr["y"] for tr in fig["data"]] == [t["gradients"]["decoder"]]
    assert fig["layout"]["xaxis"]["ticktext"] == ["Dec 1", "Dec 2"] and fig["data"][0]["x"] == [0, 1]
    assert [tr["name"] for tr in F.attention_distance_by_layer(decoder_only)["data"] if tr["type"] == "bar"] \
        == [F.LABELS["decoder_self"]]
    assert all(label.startswith("Dec") for label in F.norm_overview(decoder_only)["layout"]["xaxis"]["ticktext"])
    assert F.tokens_of(t, "decoder") == t["tgt_tokens"] and F.keys_of(t, "decoder", "cross_attn") == t["src_tokens"]


def test_stream_comparison_plots_the_measured_distances(model):
    from model.trace import compare_streams

    same = compare_streams(model, TASK, "31415", model.switches)
    fig = F.stream_comparison(same)
    assert fig["data"][0]["y"] == [0.0] * (len(same["encoder"]) + len(same["decoder"]))
    assert fig["data"][1]["y"] == pytest.approx([1.0] * len(fig["data"][1]["y"]), abs=1e-3)
    ablated = compare_streams(model, TASK, "31415", Switches(residual=False))
    fig = F.stream_comparison(ablated)
    assert all(v > 0 for v in fig["data"][0]["y"])
    assert fig["data"][0]["y"][0] == ablated["encoder"][0]["relative"]


def test_sublayer_tokens_shows_one_bar_per_token(traces):
    sub = traces["intact"]["encoder"][0]["sublayers"]["ffn"]
    tokens = traces["intact"]["src_tokens"]
    fig = F.sublayer_tokens(sub, tokens, "Layer 1")
    assert fig["data"][0]["y"] == sub["ratio"][: len(tokens)]
    assert fig["data"][1]["y"] == sub["cos"][: len(tokens)]
    assert fig["layout"]["xaxis"]["tickvals"] == list(range(len(tokens)))


def test_training_curves_handle_missing_accuracies_and_divergence():
    fig = F.training_curves(_history())
    names = [tr["name"] for tr in fig["data"]]
    assert names == [F.LABELS["loss"], F.LABELS["token_accuracy"], F.LABELS["heldout_seq_accuracy"]]
    heldout = fig["data"][2]
    assert heldout["x"] == [10, 20, 30] and None not in heldout["y"]
    assert fig["layout"]["yaxis"]["type"] == "log" and fig["layout"]["yaxis2"]["overlaying"] == "y"

    never = F.training_curves(_history(heldout=lambda step: None))
    assert [tr["name"] for tr in never["data"]] == [F.LABELS["loss"], F.LABELS["token_accuracy"]]

    diverged = _history()
    diverged[-1]["loss"] = math.nan
    loss = F.training_curves(diverged)["data"][0]["y"]
    assert loss[-1] is None
    json.dumps(F.training_curves(diverged), allow_nan=False)

    empty = F.training_curves([])
    assert empty["layout"]["annotations"][0]["text"] == F.LABELS["no_history"]


def test_gradient_heatmap_is_log10_of_the_layer_gradients():
    history = _history()
    fig = F.gradient_heatmap(history, "decoder")
    (heat,) = fig["data"]
    assert heat["x"] == [h["step"] for h in history]
    assert heat["z"][1] == pytest.approx([math.log10(1 / s) for s in range(1, 31)])
    assert heat["customdata"][1][0] == ["Layer 2", 1.0]
    assert fig["layout"]["yaxis"]["ticktext"] == ["Layer 1", "Layer 2"]
    values = [v for h in history for v in h["layer_grad_norms"]["decoder"]]
    ticks = heat["colorbar"]["tickvals"]
    assert len(ticks) >= 3 and heat["zmin"] == ticks[0] <= math.log10(min(values))
    assert heat["zmax"] == ticks[-1] >= math.log10(max(values))
    assert [float(text) for text in heat["colorbar"]["ticktext"]] == pytest.approx([10**k for k in ticks])


def test_attention_distance_bars_are_the_mean_of_heads(traces):
    t = traces["intact"]
    fig = F.attention_distance_by_layer(t)
    enc_bars = fig["data"][0]
    heads = t["encoder"][1]["sublayers"]["self_attn"]["mean_distance"]
    assert enc_bars["y"][1] == pytest.approx(sum(heads) / len(heads))
    enc_heads = fig["data"][1]
    assert len(enc_heads["y"]) == 2 * 4
    assert fig["data"][2]["marker"]["pattern"]["shape"] == F.DECODER_PATTERN


def test_norm_overview_has_one_group_per_norm_and_reads_the_trace(traces):
    t = traces["intact"]
    fig = F.norm_overview(t)
    n_norms = sum(len(layer["sublayers"]) for stack in ("encoder", "decoder") for layer in t[stack])
    assert all(len(tr["x"]) == n_norms for tr in fig["data"])
    after_std = fig["data"][3]["y"]  # std panel, after the norm
    first = t["encoder"][0]["sublayers"]["self_attn"]["norm"]["after_std"]
    assert after_std[0] == pytest.approx(sum(first) / len(first))


# ---------------------------------------------------------------- language

CJK = re.compile(r"[\u4e00-\u9fff]")


def _format_fields(text):
    """The {fields} str.format fills (Plotly's %{...} placeholders removed first)."""
    return sorted(f for _, f, _, _ in string.Formatter().parse(re.sub(r"%\{[^}]*\}", "", text)) if f is not None)


def _plotly_placeholders(text):
    return sorted(re.findall(r"%\{[^}]*\}", text))


def _tags(text):
    return re.findall(r"<[^>]*>", text)


def test_chinese_labels_mirror_the_english_ones():
    assert F.LABELS_ZH.keys() == F.LABELS_EN.keys()
    for key, en in F.LABELS_EN.items():
        zh = F.LABELS_ZH[key]
        assert isinstance(zh, str) and zh.strip(), key
        assert _format_fields(zh) == _format_fields(en), key
        assert _plotly_placeholders(zh) == _plotly_placeholders(en), key
        assert _tags(zh) == _tags(en), key
        assert key.startswith("hover_") or "%{" not in zh, key
    sample = {"n": 2, "kind": "layer", "token": "&lt;eos&gt;", "stack": "x", "layer": "y", "loss": "0.5",
              "target": "99%"}
    for key, zh in F.LABELS_ZH.items():
        if not key.startswith("hover_"):
            zh.format(**sample)  # every non-hover label is a valid str.format template
    # the words students read are translated; formulas stay as they are
    for key in ("distance_title", "query_axis", "training_title", "lens_title", "norm_overview_title", "loss"):
        assert CJK.search(F.LABELS_ZH[key]), key
    assert "‖∂loss/∂x‖" in F.LABELS_ZH["gradient_title"] and "logit lens" in F.LABELS_ZH["lens_title"]
    assert F.LABELS_ZH["cosine_fx_x"] == "cos(F(x), x)" and F.LABELS_ZH["token_ratio_axis"] == "‖F(x)‖ / ‖x‖"


def _titles(fig):
    layout = fig["layout"]
    return layout["title"]["text"], _axis_titles(layout, "x"), _axis_titles(layout, "y")


def _language_figures(t):
    return [F.logit_lens(t), F.gradient_norms(t), F.attention_distance_by_layer(t),
            F.residual_contributions(t, "encoder"), F.training_curves(_history()), F.norm_overview(t)]


def test_figures_follow_the_language_and_it_is_restored(traces):
    t = traces["intact"]
    english = _language_figures(t)
    assert F.current_language() == "en"
    with F.language("zh"):
        assert F.current_language() == "zh" and F.LABELS["loss"] == F.LABELS_ZH["loss"]
        chinese = _language_figures(t)
        with F.language("en"):  # nested blocks restore the outer language
            assert _language_figures(t) == english
        assert _language_figures(t) == chinese
    for fig in chinese:
        title, x_titles, y_titles = _titles(fig)
        assert CJK.search(title), title
        assert any(CJK.search(x) for x in x_titles) and any(CJK.search(y) for y in y_titles), (title, x_titles)
    lens = chinese[0]
    assert lens["layout"]["title"]["text"] == F.LABELS_ZH["lens_title"]
    assert lens["data"][0]["hovertemplate"] == F.LABELS_ZH["hover_lens"]
    assert lens["layout"]["yaxis"]["ticktext"][0] == F.LABELS_ZH["layer_n"].format(n=1)
    assert [tr["name"] for tr in chinese[4]["data"]] == [F.LABELS_ZH[k] for k in
                                                         ("loss", "token_accuracy", "heldout_seq_accuracy")]
    # outside the block: English again, identical to before
    assert F.current_language() == "en" and F.LABELS["loss"] == F.LABELS_EN["loss"]
    assert _language_figures(t) == english
    for fig in english:
        title, x_titles, y_titles = _titles(fig)
        assert not CJK.search(title + "".join(x_titles + y_titles)), title


def test_language_is_restored_after_an_error_and_rejects_unknown_languages():
    with pytest.raises(RuntimeError), F.language("zh"):
        raise RuntimeError("boom")
    assert F.current_language() == "en" and F.LABELS["layer"] == "Layer"
    with pytest.raises(ValueError), F.language("fr"):
        pass
    assert F.current_language() == "en"


def test_missing_chinese_label_falls_back_to_english(monkeypatch):
    monkeypatch.delitem(F.LABELS_ZH, "per_head")
    with F.language("zh"):
        assert F.LABELS["per_head"] == F.LABELS_EN["per_head"]
        assert F.LABELS["layer"] == F.LABELS_ZH["layer"]
        assert dict(F.LABELS.items())["per_head"] == F.LABELS_EN["per_head"] and len(F.LABELS) == len(F.LABELS_EN)
    with pytest.raises(KeyError):
        F.LABELS["no_such_label"]


def test_language_does_not_leak_into_other_threads(traces):
    t = traces["intact"]
    english = F.logit_lens(t)
    with F.language("zh"):
        chinese = F.logit_lens(t)
        with ThreadPoolExecutor(max_workers=1) as pool:  # a new thread starts without the caller's context
            assert pool.submit(F.logit_lens, t).result() == english
        result = {}
        thread = threading.Thread(target=lambda: result.update(fig=F.logit_lens(t), lang=F.current_language()))
        thread.start()
        thread.join()
        assert result == {"fig": english, "lang": "en"}
        assert F.logit_lens(t) == chinese  # this thread is still in Chinese
    assert chinese["layout"]["title"]["text"] == F.LABELS_ZH["lens_title"] != english["layout"]["title"]["text"]


def test_concurrent_threads_each_keep_their_own_language(traces):
    t = traces["intact"]
    barrier = threading.Barrier(2, timeout=10)

    def build(lang):
        with F.language(lang):
            barrier.wait()  # both threads are inside their block at the same time
            fig = F.training_curves(_history())
            barrier.wait()
            return lang, fig["layout"]["title"]["text"], F.logit_lens(t)["layout"]["yaxis"]["title"]["text"]

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(build, ["zh", "en"]))
    assert results == [("zh", F.LABELS_ZH["training_title"], F.LABELS_ZH["lens_y"]),
                       ("en", F.LABELS_EN["training_title"], F.LABELS_EN["lens_y"])]


def test_sweep_figures_draw_one_line_per_setting_with_gaps_where_not_reached():
    rows = [{"variant": "pre_ln", "depth": d, "heldout_seq_accuracy": 0.99, "steps_to_target": 100 * d}
            for d in (2, 4)] + [{"variant": "no_residual", "depth": d, "heldout_seq_accuracy": 0.1,
                                 "steps_to_target": None} for d in (2, 4)]
    names = {"pre_ln": "Pre-LN", "no_residual": "no residual"}
    acc = F.sweep_accuracy(rows, names)
    assert [tr["name"] for tr in acc["data"]] == ["Pre-LN", "no residual"]
    assert acc["data"][0]["x"] == [2, 4] and acc["data"][1]["y"] == [0.1, 0.1]
    steps = F.sweep_steps(rows, names, 0.99)
    assert steps["data"][0]["y"] == [200, 400] and steps["data"][1]["y"] == [None, None]
    assert "99%" in steps["layout"]["title"]["text"]


def test_a_sweep_over_seeds_shows_the_range_of_its_seeds_as_error_bars():
    rows = [{"variant": "pre_ln", "depth": 2, "heldout_seq_accuracy": 0.9, "heldout_range": (0.8, 0.95),
             "steps_to_target": 100},
            {"variant": "pre_ln", "depth": 4, "heldout_seq_accuracy": None, "heldout_range": None,
             "steps_to_target": None}]
    bars = F.sweep_accuracy(rows, {"pre_ln": "Pre-LN"})["data"][0]["error_y"]
    assert bars["array"] == pytest.approx([0.05, 0]) and bars["arrayminus"] == pytest.approx([0.1, 0])
    one_seed = [{**row, "heldout_range": None} for row in rows]
    assert "error_y" not in F.sweep_accuracy(one_seed, {"pre_ln": "Pre-LN"})["data"][0]


# ---------------------------------------------------------------- compared figures and log ticks


def test_compared_figures_share_their_y_range(traces):
    intact, ablated = traces["intact"], traces["residual_off"]
    pair = F.share_axes([F.residual_contributions(intact, "encoder"), F.residual_contributions(ablated, "encoder")])
    ranges = [fig["layout"]["yaxis"]["range"] for fig in pair]
    assert ranges[0] == ranges[1] and ranges[0][0] == 0  # bars start at 0 on both sides
    tallest = max(v for fig in pair for bar in fig["data"] for v in bar["y"] if v is not None)
    assert ranges[0][1] >= tallest  # the taller side's bars fit; the other's look as small as they are
    assert all(fig["layout"]["yaxis"]["autorange"] is False for fig in pair)

    norms = F.share_axes([F.stream_norms(intact, "encoder"), F.stream_norms(intact, "decoder")])
    assert norms[0]["layout"]["yaxis"]["range"] == norms[1]["layout"]["yaxis"]["range"]


def test_compared_figures_on_a_fixed_scale_keep_it(traces):
    pair = F.share_axes([F.output_probabilities(traces["intact"]), F.output_probabilities(traces["norm_off"])])
    assert [fig["layout"]["yaxis"]["range"] for fig in pair] == [[0, 1.05]] * 2  # probabilities: 0 to 1, always


def test_compared_log_axes_share_range_and_ticks(traces):
    pair = F.share_axes([F.gradient_norms(traces["intact"]), F.gradient_norms(traces["residual_off"])])
    axes = [fig["layout"]["yaxis"] for fig in pair]
    assert axes[0]["range"] == axes[1]["range"] and axes[0]["tickvals"] == axes[1]["tickvals"]
    values = [v for fig in pair for bar in fig["data"] for v in bar["y"] if v]
    assert 10 ** axes[0]["range"][0] <= min(values) and 10 ** axes[0]["range"][1] >= max(values)


def test_compared_heatmaps_share_one_colour_scale():
    early = _history()
    late = [h | {"layer_grad_norms": {"encoder": [5.0, 9.0], "decoder": [0.001, 0.002]}} for h in early]
    pair = F.share_axes([F.gradient_heatmap(early, "decoder"), F.gradient_heatmap(late, "decoder")])
    heats = [fig["data"][0] for fig in pair]
    assert (heats[0]["zmin"], heats[0]["zmax"]) == (heats[1]["zmin"], heats[1]["zmax"])
    assert heats[0]["zmin"] <= math.log10(0.001) and heats[0]["zmax"] >= math.log10(1.0)
    assert heats[0]["colorbar"]["tickvals"] == heats[1]["colorbar"]["tickvals"]
    assert len(heats[0]["colorbar"]["tickvals"]) >= 3


def test_compared_attention_grids_share_their_colour_axis(traces):
    t = traces["intact"]
    heads = t["decoder"][0]["sublayers"]["cross_attn"]["pattern"]
    grids = F.share_axes([F.attention_head_grid(heads, t["tgt_tokens"], t["src_tokens"], "A"),
                          F.attention_head_grid(heads, t["tgt_tokens"], t["src_tokens"], "B")])
    scales = [(g["layout"]["coloraxis"]["cmin"], g["layout"]["coloraxis"]["cmax"]) for g in grids]
    assert scales == [(0, 1), (0, 1)]


@pytest.mark.parametrize("values", [[1.0], [0.3, 0.45], [0.4, 0.41], [0.012, 0.019], [0.005, 1.0], [2.0, 2.0],
                                    [1e-7, 30.0], [0.9, 1.1], [7.0, 300.0]])
def test_log_axes_have_at_least_three_ticks_around_the_values(values):
    ticks = F.log_tick_values(values)
    assert len(ticks) >= 3 and ticks == sorted(set(ticks))
    assert ticks[0] <= min(values) and ticks[-1] >= max(values)
    assert len(ticks) <= 14


def test_every_log_axis_of_the_figures_shows_three_ticks(traces):
    short = [{"step": s, "loss": 0.40 + s / 1000, "token_accuracy": 0.5, "heldout_seq_accuracy": None,
              "layer_grad_norms": {"encoder": [0.1], "decoder": [0.1]}} for s in range(1, 5)]
    for fig in (F.gradient_norms(traces["intact"]), F.gradient_norms(traces["residual_off"]),
                F.training_curves(_history()), F.training_curves(short)):
        axis = fig["layout"]["yaxis"]
        low, high = axis["range"]
        shown = [v for v in axis["tickvals"] if low - 1e-9 <= math.log10(v) <= high + 1e-9]
        assert len(shown) >= 3, (fig["layout"]["title"]["text"], axis)
