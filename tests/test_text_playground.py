"""A line of text through a GPT and a BERT as the playground shows it: the GPT writes on (greedily, and drawn with a
temperature), the BERT fills in the masked characters; the pages for the shipped text models."""

import html
from urllib.parse import parse_qs, urlsplit

import pytest
import torch
from fastapi.testclient import TestClient

from app.factory import create_app
from app.web.settings import Settings
from model.config import Switches
from model.families import IGNORE, greedy_continue, sampled_continue
from model.tasks import get_task
from model.tasks.text import CONTINUATION, MASK_ID
from model.trace import trace
from model.train import model_config_for, new_model

SIZES = dict(d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2, n_decoder_layers=2)
POEMS = get_task("tang_poems")
LINE = "床前明月光，"


def one_stack(arch: str, seed: int = 0):
    return new_model(model_config_for(POEMS, arch=arch, **SIZES), Switches(), seed=seed).eval()


def test_a_gpt_writes_on_from_the_line_itself_and_its_gradients_are_the_lines_own_next_characters():
    model = one_stack("decoder_only")
    ids = POEMS.src_tokenizer.encode(LINE)
    traced = trace(model, POEMS, LINE)
    written = greedy_continue(model, torch.tensor([ids]), CONTINUATION)[0].tolist()
    assert traced["output_text"] == POEMS.tgt_tokenizer.decode(written)
    assert traced["seq_tokens"] == list(LINE) + [POEMS.tgt_tokenizer.token(i) for i in written[:-1]]  # no <bos>
    assert traced["answer_rows"] == [len(ids) - 1, len(ids) - 1 + len(written)]
    assert traced["expected_tokens"] is None and traced["correct"] is None
    with torch.no_grad():
        logits = model(torch.tensor([ids[:-1]]))
    own = torch.nn.functional.cross_entropy(logits[0], torch.tensor(ids[1:]), ignore_index=IGNORE)
    assert traced["gradients"]["loss"] == pytest.approx(own.item(), rel=1e-3)
    assert all(g > 0 for g in traced["gradients"]["decoder"])


def test_a_bert_fills_in_each_masked_character_with_its_likeliest_guess():
    model = one_stack("encoder_only")
    line = "床_明月_，"
    traced = trace(model, POEMS, line)
    assert traced["masked_rows"] == [1, 4]
    with torch.no_grad():
        guesses = model(torch.tensor([POEMS.src_tokenizer.encode(line)]))[0].argmax(-1).tolist()
    token = POEMS.tgt_tokenizer.token
    assert traced["output_text"] == "床" + token(guesses[1]) + "明月" + token(guesses[4]) + "，"
    assert [traced["output"]["top"][row][0][0] for row in (1, 4)] == [token(guesses[1]), token(guesses[4])]
    assert traced["gradients"] is None  # nothing says what was hidden
    assert POEMS.src_tokenizer.encode("_") == [MASK_ID]


def test_spaces_and_line_breaks_are_shown_as_marks():
    task = get_task("en_text")
    model = new_model(model_config_for(task, arch="encoder_only", **SIZES), Switches(), seed=0).eval()
    assert trace(model, task, "a b")["src_tokens"] == ["a", "␣", "b"]


def test_a_sample_at_temperature_0_is_greedy_and_a_seed_gives_the_same_text_again():
    model = one_stack("decoder_only")
    prompt = torch.tensor([POEMS.src_tokenizer.encode(LINE)])
    greedy = greedy_continue(model, prompt, 12)
    assert torch.equal(sampled_continue(model, prompt, 12, 0.0, seed=1), greedy)
    assert torch.equal(sampled_continue(model, prompt, 12, 1e-4, seed=1), greedy)  # all odds on the likeliest
    first = sampled_continue(model, prompt, 12, 1.5, seed=1)
    assert torch.equal(sampled_continue(model, prompt, 12, 1.5, seed=1), first)
    assert not torch.equal(sampled_continue(model, prompt, 12, 1.5, seed=2), first)  # 2,600 characters, near even


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), shipped_results=False))) as client:
        yield client


def page(client, path: str) -> str:
    r = client.get(path)
    assert r.status_code == 200, r.text
    return html.unescape(r.text)


def test_the_poem_gpt_page_writes_on_and_offers_samples(client):
    text = page(client, "/playground?model=poems-gpt-4&lang=en")
    assert "Writes on" in text and 'name="temperature"' in text
    samples = page(client, "/playground/samples?model=poems-gpt-4&input=床前明月光&temperature=0.8&lang=en")
    assert samples.count('<li>') == 3 and "temperature 0.8" in samples


def test_samples_are_the_same_for_the_same_seed_and_greedy_at_a_tiny_temperature():
    from app.playground.samples import SAMPLES, samples
    from app.playground.state import parse_state
    from model.tasks.text import SAMPLED_CHARACTERS
    from model.zoo import load_zoo_model

    state = parse_state({"model": "poems-gpt-4", "input": LINE}, 200)
    drawn = samples(state, 1.0)
    assert samples(state, 1.0) == drawn and len(set(drawn)) == SAMPLES  # each seed its own, each the same again
    assert all(len(text) == SAMPLED_CHARACTERS and "_" not in text for text in drawn)
    model = load_zoo_model("poems-gpt-4")[0].eval()
    greedy = greedy_continue(model, torch.tensor([POEMS.src_tokenizer.encode(LINE)]), SAMPLED_CHARACTERS)
    assert samples(state, 1e-30) == [POEMS.tgt_tokenizer.decode(greedy[0].tolist())] * SAMPLES  # no overflow


def test_the_poem_bert_page_opens_on_a_masked_line_and_shows_its_top_guesses(client):
    text = page(client, "/playground?model=poems-bert-2&lang=en")
    assert 'value="床前明_光，"' in text
    assert "Filled in" in text and "Top guesses" in text and "at 4:" in text
    assert 'name="temperature"' not in text  # a BERT writes nothing on
    zh = page(client, "/playground?model=poems-bert-2&lang=zh")
    assert "填空结果" in zh and "第 4 位" in zh


def test_a_random_input_for_a_text_is_a_held_out_line(client):
    lines = {line for p in POEMS.passages if POEMS.is_heldout(p) for line in p.splitlines()}
    for model in ("poems-gpt-4", "poems-bert-2"):
        r = client.get(f"/playground?model={model}&random=1&lang=en", headers={"HX-Request": "true"})
        assert r.status_code == 200
        line = parse_qs(urlsplit(r.headers["HX-Push-Url"]).query)["input"][0]
        masked = model == "poems-bert-2"
        assert ("_" in line) == masked
        assert any(len(held) == len(line) and all(a in (b, "_") for a, b in zip(line, held, strict=True))
                   for held in lines), line


def test_odd_lines_are_read_as_typed(client):
    for model, line in (("poems-gpt-4", "___"), ("poems-bert-2", "___"), ("sonnets-gpt-4", "thee ")):
        r = client.get(f"/playground?model={model}&input={line}&lang=en")
        assert r.status_code == 200, (model, line, r.text[:300])
    assert 'value="thee "' in client.get("/playground?model=sonnets-gpt-4&input=thee%20&lang=en").text  # its space


def test_the_api_example_of_a_text_model_is_a_line_the_playground_takes(client):
    for model in ("sonnets-gpt-4", "poems-bert-2"):
        for seed in range(5):
            example = client.get(f"/api/models/{model}/example?seed={seed}").json()
            assert example["expected"] is None  # no one right continuation or filling
            assert client.get("/playground", params={"model": model, "input": example["input"]}).status_code == 200


@pytest.mark.parametrize("path, status, words", [
    ("/playground/samples?model=poems-gpt-4&input=床前&temperature=5", 422, "temperature"),
    ("/playground/samples?model=reverse-post-2x2&input=123", 422, "sampling is for a GPT"),
    ("/playground/samples?model=poems-bert-2&input=床_", 422, "sampling is for a GPT"),
    ("/playground?model=poems-gpt-4&input=" + "月" * 64, 413, "at most 63"),
    ("/playground?model=poems-bert-2&input=" + "月" * 66, 413, "at most 65"),
    ("/playground?model=poems-gpt-4&input=%20%20", 422, "is empty"),
    ("/playground?model=poems-gpt-4&input=床前x", 422, "unknown token 'x'"),
])
def test_bad_text_input_is_refused_saying_what_was_wrong(client, path, status, words):
    r = client.get(path)
    assert r.status_code == status and words in html.unescape(r.text), r.text[:300]


def test_an_ablated_gpt_on_english_is_compared_on_the_intact_models_own_words(client):
    """The intact model's output, as the page shows it (␣ for a space), is read back as the comparison's input."""
    from model.trace import compare_streams
    from model.trace import trace as trace_of
    from model.zoo import load_zoo_model

    model, task, _ = load_zoo_model("sonnets-gpt-4")
    intact = trace_of(model, task, "Shall I compare thee")
    assert "␣" in intact["output_tokens"] + intact["src_tokens"]
    result = compare_streams(model, task, "Shall I compare thee", model.switches.replace(residual=False),
                             intact["output_tokens"])
    assert result["decoder_input"] == intact["seq_tokens"]  # the same rows, line and what it wrote
    assert all(layer["relative"] > 0 for layer in result["decoder"])  # the ablation changed every layer's stream
    r = client.get("/playground?model=sonnets-gpt-4&input=Shall%20I%20compare%20thee&residual=off&lang=en")
    assert r.status_code == 200 and "Ablated" in r.text
