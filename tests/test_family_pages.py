"""The playground with a GPT and a BERT from the zoo: the page, every tab, the one-stack diagram, and the switches
that mean nothing in a family said so."""

import html

import pytest
from fastapi.testclient import TestClient

from app.factory import create_app
from app.playground.architecture import architecture_layout
from app.web.i18n import labels
from model.config import Switches
from model.stacks import FAMILIES
from model.trace import trace
from model.zoo import load_manifest, load_zoo_model

GPT, BERT = "reverse-gpt-4", "reverse-bert-2"
TABS = ("attention", "norm", "position", "output", "gradients", "compare")


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app()) as c:
        yield c


def test_api_models_names_each_family(client):
    arch = {m["name"]: m["arch"] for m in client.get("/api/models").json()}
    assert (arch[GPT], arch[BERT], arch["reverse-post-2x2"]) == ("decoder_only", "encoder_only", "encoder_decoder")


@pytest.mark.parametrize("model", [GPT, BERT])
@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_one_stack_models_page_and_every_tab_render_ablated(client, model, lang):
    query = f"model={model}&input=31415&residual=off&lang={lang}"
    page = client.get(f"/playground?{query}")
    assert page.status_code == 200
    title = labels(lang)[f"arch.title_{'decoder_only' if model == GPT else 'encoder_only'}"].split("{")[0]
    assert title in page.text
    reason = "pg.na.no_cross_attn" if model == GPT else "pg.na.no_decoder"  # a GPT lacks the encoder, BERT the decoder
    assert html.unescape(labels(lang)[reason]) in html.unescape(page.text)  # said, not hidden
    for tab in TABS:
        r = client.get(f"/playground/panel/{tab}?{query}", headers={"HX-Request": "true"})
        assert r.status_code == 200, (tab, r.text[:200])
        assert "plot" in r.text


def test_only_bert_says_it_has_no_causal_mask(client):
    note = labels("en")["pg.na.bidirectional"]
    assert note in html.unescape(client.get(f"/playground?model={BERT}&lang=en").text)
    assert note not in html.unescape(client.get(f"/playground?model={GPT}&lang=en").text)


@pytest.mark.parametrize("model, stack", [(GPT, "decoder"), (BERT, "encoder")])
def test_the_diagram_draws_one_stack_without_memory(model, stack):
    net, task, _ = load_zoo_model(model)
    steps = trace(net, task, "31415", with_gradients=False)["steps"]
    layout = architecture_layout(net.config, net.switches, steps, len(steps) - 1, net.switches)
    assert {box["id"].split(".")[0] for box in layout["boxes"]} == {stack}
    assert not [a for a in layout["arrows"] if a.get("kind") == "memory"]
    assert not [b for b in layout["boxes"] if "cross_attn" in b["id"]]
    assert len(layout["frames"]) == net.config.n_layers(stack)
    assert f"{stack}.output" in {box["id"] for box in layout["boxes"]}
    tips = {box["id"]: [part["key"] for part in box["title_parts"]] for box in layout["boxes"]}
    arch = net.config.arch  # a GPT embeds its prompt too, a BERT answers at every position: said in their tips
    assert f"arch.tip.embed.{stack}.{arch}" in tips[f"{stack}.embed"]
    assert f"arch.tip.output.{arch}" in tips[f"{stack}.output"]


def test_a_gpt_step_shows_the_rows_computed_so_far():
    """At answer token j a GPT has read the prompt, the separator and j tokens of its answer."""
    from app.playground import view
    from app.web.i18n import Translator

    net, task, _ = load_zoo_model(GPT)
    result = trace(net, task, "31415", Switches(norm_position="pre"), with_gradients=False)
    step = next(s for s in result["steps"] if s["op"] == "sublayer" and s["sublayer"] == "self_attn"
                and s["position"] == 2)
    start = result["answer_rows"][0]
    heads = view.step_heads(result, step, Translator("en"))
    assert len(heads) == net.config.n_heads
    assert all(len(figure["data"][0]["z"]) == start + 3 for figure in heads)
    sequence_axes = (labels("en")["chart.query_seq"], labels("en")["chart.key_seq"])
    assert all((f["layout"]["yaxis"]["title"]["text"], f["layout"]["xaxis"]["title"]["text"]) == sequence_axes
               for f in heads)


@pytest.mark.parametrize("model", [GPT, BERT, "reverse-post-2x2"])
def test_every_step_lights_a_box_of_the_diagram(model):
    """Stepping through the trace, each step names the box it is at: none falls off the diagram."""
    net, task, _ = load_zoo_model(model)
    steps = trace(net, task, "314", with_gradients=False)["steps"]
    for k, step in enumerate(steps):
        layout = architecture_layout(net.config, net.switches, steps, k, net.switches)
        lit = [box["id"] for box in layout["boxes"] if box["current"]]
        assert lit, (k, step)


def test_the_zoo_table_gives_a_one_stack_model_its_one_depth(client):
    rows = {row.split("</td>")[0].split(">")[-1]: row for row in client.get("/?lang=en").text.split("<tr><td>")[1:]}
    depth = {title: row.split("<td>")[2].split("</td>")[0].strip() for title, row in rows.items()}
    shown = {html.unescape(title): value for title, value in depth.items()}
    titles = labels("en")
    for entry in load_manifest():
        config = entry.config
        want = (str(config.n_layers(FAMILIES[entry.arch][0].name)) if entry.arch != "encoder_decoder"
                else f"{config.n_encoder_layers}+{config.n_decoder_layers}")
        assert shown[titles.get(f"model.{entry.name}", entry.title)] == want
