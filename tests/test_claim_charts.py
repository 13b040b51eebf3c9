"""Claim charts: a training claim's verdict carries what it measured per condition (the mean over seeds and the
lowest and highest seed, the very figures of its sweep's rows) and the cells its verdict compares; the figure
drawn from it is a Plotly spec with the seed band and the compared cells marked; the claims page and the lesson
steps show it first, the table of numbers behind it one click away (<details>), in both languages."""

import html
import json
import re
from dataclasses import asdict

import pytest
import torch
from fastapi.testclient import TestClient
from helpers import GOOD, batch_norm_cells, english_words, fill_sweep, position_cells
from helpers import depth_cells as _depth_cells

from app import figures as F
from app.factory import create_app
from app.lab.results import RESULTS_DIR, RUNS_FILE, read_shipped, shipped_report
from app.lab.store import RunStore
from app.teaching.claims import measure
from app.teaching.claims.common import Text, load_sweep, merge_sweeps
from app.teaching.claims.render import chart_figure, render_text, verdict_view
from app.web.i18n import Translator, labels
from app.web.settings import Settings

EN, ZH = Translator("en"), Translator("zh")
CHARTED = ["R3", "R4", "R5", "N2", "N3", "N4", "N5", "P2", "P4"]  # the claims measured from the sweeps
CJK = re.compile(r"[\u4e00-\u9fff]")
SEEDS = (0, 1)
# two seeds that disagree, so that every cell has a real range: the second is slower and less accurate
SPREAD = [{"acc": 1.0, "reach": 100}, {"acc": 0.9, "reach": 300}]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def depth_store(tmp_path_factory):
    """The depth sweep on two seeds that disagree; no residual connections never reach the target at 4 and 6
    layers on either seed, and on one seed only at 2 layers."""
    cells = {key: list(SPREAD) for key in _depth_cells()}
    cells |= {("no_residual", 2): [{"acc": 0.995, "reach": 400}, {"acc": 0.2, "reach": None}],
              ("no_residual", 4): {"acc": 0.1, "reach": None}, ("no_residual", 6): {"acc": 0.05, "reach": None}}
    with RunStore(tmp_path_factory.mktemp("depth") / "runs.sqlite3") as store:
        fill_sweep(store, "depth-residual-norm", cells, seeds=SEEDS)
        yield store


def _points(chart):
    return {(series.key, p.x): p for series in chart.series for p in series.points}


def _depth_rows(store):
    from app.teaching.claims.depth import DEEP_PLAN, PLAN

    return merge_sweeps(load_sweep(store, PLAN), load_sweep(store, DEEP_PLAN))


# ---- the chart's data is its rows ---------------------------------------------------------------------


@pytest.mark.parametrize("claim", ["R3", "N4", "R5"])
def test_an_accuracy_chart_holds_each_cells_mean_and_seed_range(depth_store, claim):
    v = measure(claim, depth_store)
    sweep, chart = _depth_rows(depth_store), v.chart
    assert chart is not None and chart.unit == "share" and chart.seeds == len(SEEDS)
    assert chart.x.key == "claim.chart.x.layers" and chart.y.key == "claim.chart.y.accuracy"
    for (variant, depth), point in _points(chart).items():
        row = sweep.get(variant, depth)
        assert point.mean == pytest.approx(row["heldout_seq_accuracy"])
        assert (point.low, point.high) == (pytest.approx(row["heldout_range"][0]),
                                           pytest.approx(row["heldout_range"][1]))
    pre = _points(chart)["pre_ln", 2]
    assert (pre.mean, pre.low, pre.high) == (pytest.approx(0.95), pytest.approx(0.9), pytest.approx(1.0))


def test_a_steps_chart_holds_the_mean_step_and_says_where_a_seed_never_reached_the_target(depth_store):
    v = measure("R4", depth_store)
    sweep, chart = _depth_rows(depth_store), v.chart
    assert chart.unit == "steps" and chart.limit == 600 and [s.key for s in chart.series] == ["pre_ln", "no_residual"]
    for (variant, depth), point in _points(chart).items():
        row = sweep.get(variant, depth)
        assert point.mean == row["steps_to_target"]
        assert point.low == (row["steps_range"] or (None,))[0]
    pre = _points(chart)["pre_ln", 4]
    assert (pre.mean, pre.low, pre.high) == (sweep.get("pre_ln", 4)["steps_to_target"], 100, 300)
    one_seed = _points(chart)["no_residual", 2]  # reached on one seed of two: no mean, no top; said in words
    assert one_seed.mean is None and one_seed.high is None and one_seed.low == 400
    assert render_text(one_seed.note, EN) == "reached on 1 of 2 seeds within 600 steps"
    never = _points(chart)["no_residual", 6]
    assert never.mean is None and never.low is None and render_text(never.note, EN) == "not reached in 600 steps"


def test_the_decisive_cells_are_in_the_chart_and_named_in_words(depth_store):
    for claim in ("R3", "R4", "R5", "N2", "N4"):
        chart = measure(claim, depth_store).chart
        points = _points(chart)
        assert len(chart.decisive.cells) == 2, claim
        assert all((cell.series, cell.x) in points for cell in chart.decisive.cells), claim
        assert render_text(chart.decisive.note, EN) and CJK.search(render_text(chart.decisive.note, ZH)), claim
    r4 = measure("R4", depth_store).chart  # held back from "holds" at the first depth not near 30% faster
    assert {(c.series, c.x) for c in r4.decisive.cells} == {("pre_ln", 2), ("no_residual", 2)}
    assert render_text(r4.decisive.note, EN) == "Pre-LN vs No residual connections (Pre-LN) at 2 layers"
    r5 = measure("R5", depth_store)  # the weakest deeper model against the shallowest one's 95% interval
    low = float(re.match(r"[\d.]+", r5.numbers["pre_ln_depth2_heldout_accuracy_ci95"]).group()) / 100  # "88–100%"
    assert r5.chart.references[0].y == pytest.approx(low, abs=0.006)


def test_n3_charts_the_drift_of_each_seed(tmp_path):
    cells = _depth_cells(no_norm_6=[{**GOOD, "drift": 2.0}, {**GOOD, "drift": 1.0}],
                         pre_ln_6=[{**GOOD, "drift": 1.0}, {**GOOD, "drift": 0.5}])
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, "depth-residual-norm", cells, seeds=SEEDS)
        v = measure("N3", store)
    (series,) = v.chart.series
    assert list(v.chart.categories) == [p.x for p in series.points] == ["post_ln", "pre_ln", "no_norm"]
    for point in series.points:
        assert point.mean == pytest.approx(v.numbers[f"{point.x}_input_std_drift_cv"], rel=1e-3)
        assert point.low <= point.mean <= point.high
    no_norm = _points(v.chart)["drift", "no_norm"]
    assert no_norm.low < no_norm.high  # the two seeds drifted differently
    assert {(c.series, c.x) for c in v.chart.decisive.cells} == {("drift", "pre_ln"), ("drift", "no_norm")}


def test_p4_charts_trained_and_longer_inputs_per_encoding(tmp_path):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, "position-encodings", position_cells(0.1, 0.02), seeds=SEEDS)
        v = measure("P4", store)
        rows = load_sweep(store, "position-encodings")
    points = _points(v.chart)
    assert list(v.chart.categories) == ["pre_ln", "learned_pe", "no_pe"]
    for variant in v.chart.categories:
        assert points["trained", variant].mean == pytest.approx(rows.get(variant, 2)["heldout_seq_accuracy"])
        assert points["long", variant].mean == pytest.approx(v.numbers[f"{variant}_accuracy_long_inputs"])
    assert {(c.series, c.x) for c in v.chart.decisive.cells} == {("trained", "pre_ln"), ("long", "pre_ln")}


def test_n5_charts_each_kind_of_batch_statistics_beside_layer_norm(tmp_path):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, "batch-vs-layer-norm", batch_norm_cells(1.0, 0.1), seeds=SEEDS)
        v = measure("N5", store)
    points = _points(v.chart)
    assert points["batch_norm", "running_statistics"].mean == pytest.approx(
        v.numbers["batchnorm_accuracy_running_statistics"])
    assert points["batch_norm", "alone"].mean == pytest.approx(v.numbers["batchnorm_accuracy_each_input_alone"])
    assert points["pre_ln", "layer_norm"].mean == pytest.approx(1.0)
    assert all((c.series, c.x) in points for c in v.chart.decisive.cells)
    assert ("batch_norm", "running_statistics") in {(c.series, c.x) for c in v.chart.decisive.cells}


def test_claims_that_read_no_sweep_carry_no_chart(depth_store):
    assert measure("R4", None).chart is None  # not measured: nothing to draw
    assert measure("P3", depth_store).chart is None  # measured on a zoo model


# ---- the shipped verdicts ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shipped():
    return read_shipped(RESULTS_DIR / RUNS_FILE), shipped_report()


def test_the_shipped_verdicts_carry_the_charts_of_their_rows(shipped):
    store, report = shipped
    verdicts = report["verdicts"]
    assert [claim for claim, v in verdicts.items() if v.get("chart")] == CHARTED
    sweep = _depth_rows(store)
    for claim in ("R3", "R4", "N2", "N4", "R5"):
        chart = verdicts[claim]["chart"]
        assert chart["seeds"] == 5
        for series in chart["series"]:
            for p in series["points"]:
                row = sweep.get(series["key"], p["x"])
                if chart["unit"] == "share":
                    assert (p["mean"], p["low"], p["high"]) == (
                        pytest.approx(row["heldout_seq_accuracy"]), pytest.approx(row["heldout_range"][0]),
                        pytest.approx(row["heldout_range"][1])), (claim, series["key"], p["x"])
                else:
                    assert p["mean"] == row["steps_to_target"], (claim, series["key"], p["x"])
    for claim in CHARTED:
        chart = verdicts[claim]["chart"]
        drawn = {(s["key"], p["x"]) for s in chart["series"] for p in s["points"]}
        assert all((c["series"], c["x"]) in drawn for c in chart["decisive"]["cells"]), claim


def test_the_shipped_r4_chart_shows_pre_ln_against_the_runs_that_never_reached_the_target(shipped):
    chart = shipped[1]["verdicts"]["R4"]["chart"]
    pre, cut = chart["series"]
    assert [p["mean"] for p in cut["points"]] == [None, None, None]  # no residual connections: never
    assert all(p["low"] <= p["mean"] <= p["high"] for p in pre["points"])
    assert all(p["low"] < p["high"] for p in pre["points"])  # a band over the seeds, not a line


# ---- the figure ----------------------------------------------------------------------------------------


def _figure(chart, t=EN):
    fig = chart_figure(json.loads(json.dumps(asdict(chart))), t)
    assert json.loads(json.dumps(fig, allow_nan=False)) == fig  # strict JSON, as the page sends it
    return fig


def _named(fig, name):
    return [tr for tr in fig["data"] if tr.get("name") == name]


@pytest.mark.parametrize("t", [EN, ZH], ids=["en", "zh"])
def test_a_depth_figure_draws_lines_with_their_seed_band_and_rings_the_compared_cells(depth_store, t):
    chart = measure("R3", depth_store).chart
    fig = _figure(chart, t)
    layout = fig["layout"]
    with F.language(t.lang):
        ring_name, decides = F.LABELS["claim_decisive"], F.LABELS["claim_decides"]
    assert layout["title"]["text"].startswith(decides) and render_text(chart.decisive.note, t) in \
        layout["title"]["text"].replace("&amp;", "&")
    assert layout["xaxis"]["title"]["text"] == render_text(chart.x, t)
    assert layout["yaxis"]["title"]["text"] == render_text(chart.y, t) and layout["yaxis"]["tickformat"] == ".0%"
    assert layout["xaxis"]["tickvals"] == [2, 4, 6] and layout["showlegend"] is True
    lines = [tr for tr in fig["data"] if tr.get("mode") == "lines+markers"]
    assert [tr["legendgroup"] for tr in lines] == [s.key for s in chart.series]
    for series, line in zip(chart.series, lines, strict=True):
        assert line["x"] == [p.x for p in series.points]
        assert line["y"] == [pytest.approx(p.mean) for p in series.points]
        assert "<extra></extra>" in line["hovertemplate"]
    bands = [tr for tr in fig["data"] if tr.get("fill") == "toself"]
    compared = {cell.series for cell in chart.decisive.cells}
    assert {band["legendgroup"] for band in bands} <= compared and bands
    pre = next(s for s in chart.series if s.key == "pre_ln")
    band = next(b for b in bands if b["legendgroup"] == "pre_ln")
    xs = [p.x for p in pre.points]
    assert band["x"] == xs + xs[::-1]  # up along the highest seeds, back along the lowest
    assert band["y"] == [pytest.approx(p.high) for p in pre.points] + [pytest.approx(p.low) for p in pre.points][::-1]
    (ring,) = _named(fig, ring_name)
    points = _points(chart)
    cells = [(cell.series, cell.x) for cell in chart.decisive.cells]
    assert sorted(zip(ring["x"], ring["y"], strict=True)) == sorted((x, pytest.approx(points[s, x].mean))
                                                                   for s, x in cells)
    shaded = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert [(s["x0"], s["x1"]) for s in shaded] == [(x - 0.5, x + 0.5) for x in sorted({x for _, x in cells})]


def test_a_steps_figure_puts_runs_that_never_reached_the_target_on_the_budget_line(depth_store):
    chart = measure("R4", depth_store).chart
    fig = _figure(chart)
    with F.language("en"):
        missed, budget = F.LABELS["claim_not_reached"], F.LABELS["claim_budget"].format(n=600)
    triangles = _named(fig, missed)
    assert triangles and all(y == 600 for tr in triangles for y in tr["y"])
    assert sorted(x for tr in triangles for x in tr["x"]) == [2, 4, 6]  # no_residual: short of the target each time
    assert sum(tr["showlegend"] for tr in triangles) == 1
    assert [a["text"] for a in fig["layout"]["annotations"]] == [budget]
    assert fig["layout"]["yaxis"]["range"] == [0, pytest.approx(660)]


@pytest.mark.parametrize("t", [EN, ZH], ids=["en", "zh"])
def test_a_category_figure_draws_dots_with_their_seed_range_as_bars(tmp_path, t):
    with RunStore(tmp_path / "runs.sqlite3") as store:
        fill_sweep(store, "position-encodings", position_cells(0.1, 0.02), seeds=SEEDS)
        chart = measure("P4", store).chart
    fig = _figure(chart, t)
    layout = fig["layout"]
    assert layout["yaxis"]["ticktext"] == [F.wrap_label(render_text(label, t)) for label in chart.categories.values()]
    assert layout["xaxis"]["title"]["text"] == render_text(chart.y, t)
    dots = [tr for tr in fig["data"] if "error_x" in tr]
    assert len(dots) == len(chart.series)
    for series, dot in zip(chart.series, dots, strict=True):
        drawn = [p for p in series.points if p.mean is not None]
        assert dot["x"] == [pytest.approx(p.mean) for p in drawn]
        assert dot["error_x"]["array"] == [pytest.approx(p.high - p.mean) for p in drawn]
        assert dot["error_x"]["arrayminus"] == [pytest.approx(p.mean - p.low) for p in drawn]
    shaded = [s for s in layout["shapes"] if s["type"] == "rect"]
    assert [(s["y0"], s["y1"]) for s in shaded] == [(-0.45, 0.45)]  # the sinusoidal row, whose two cells it compares
    if t is ZH:
        assert CJK.search(layout["title"]["text"]) and CJK.search(layout["xaxis"]["title"]["text"])


def test_long_category_labels_wrap_and_chinese_wraps_between_characters():
    assert F.wrap_label("statistics of a batch of 100, padding counted") == \
        "statistics of a batch<br>of 100, padding counted"
    assert F.wrap_label("100 个输入一批、计入填充的统计量").count("<br>") == 1
    assert F.wrap_label("a <b> & c") == "a &lt;b&gt; &amp; c"


def test_every_text_of_the_shipped_charts_is_in_both_catalogues_and_reads_in_chinese(shipped):
    en, zh = labels("en"), labels("zh")
    for claim in CHARTED:
        chart = shipped[1]["verdicts"][claim]["chart"]
        keys = _keys(chart)
        assert keys and all(key in en and key in zh for key in keys), claim
        fig = chart_figure(chart, ZH)
        layout = fig["layout"]
        shown = [layout["title"]["text"], layout["title"]["subtitle"]["text"], layout["xaxis"]["title"]["text"],
                 layout["yaxis"]["title"]["text"], *layout["yaxis"].get("ticktext", []),
                 *(tr["name"] for tr in fig["data"] if tr.get("name")),
                 *(a["text"] for a in layout.get("annotations", []))]
        for text in shown:
            assert not english_words(re.sub(r"<br>|&\w+;", " ", text)), (claim, text)


def _keys(value) -> set[str]:
    """Every catalogue key in a saved chart (its Texts are dicts with a key and values)."""
    if isinstance(value, dict):
        own = {value["key"]} if set(value) == {"key", "values"} else set()
        return own.union(*(_keys(v) for v in value.values())) if value else own
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value)) if value else set()
    return set()


def test_a_saved_chart_draws_the_same_figure_as_the_live_one(depth_store):
    v = measure("N2", depth_store)
    saved = json.loads(json.dumps(asdict(v), ensure_ascii=False))
    for t in (EN, ZH):
        assert verdict_view(saved, t)["figure"] == verdict_view(v, t)["figure"]
    assert isinstance(v.chart.y, Text)


# ---- the pages -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(Settings(data_dir=tmp_path_factory.mktemp("data"), shipped_results=True))) as c:
        yield c


def _chart_of(html_text: str) -> dict:
    """The figure of the first claim chart in a page, as the page sends it to Plotly."""
    attribute = re.search(r'class="plot claim-chart"[^>]*data-figure="([^"]+)"', html_text).group(1)
    return json.loads(html.unescape(attribute))


def _card(page: str, claim: str) -> str:
    start = page.index(f'id="claim-{claim}"')
    end = page.find('<section class="claim"', start)
    return page[start:end if end > 0 else None]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_claims_page_leads_each_training_claim_with_its_chart_and_keeps_the_table_behind_it(client, lang):
    page = client.get(f"/claims?lang={lang}").text
    t = Translator(lang)
    for claim in CHARTED:
        card = _card(page, claim)
        chart, table = card.find('class="plot claim-chart"'), card.find("<details><summary>" + t("ls.numbers"))
        assert 0 < chart < table, claim  # the picture first, the numbers one click away
        assert card.find('<table class="table numbers">') > table and 'data-lazy="true"' in card, claim
        figure = _chart_of(card)
        assert figure["layout"]["title"]["text"] and any(tr.get("fill") == "toself" or "error_x" in tr
                                                         for tr in figure["data"]), claim
        if lang == "zh":
            assert CJK.search(figure["layout"]["title"]["text"]), claim
    for claim in ("R1", "P3", "D4"):  # measured on zoo models: the table, no chart
        card = _card(page, claim)
        assert "claim-chart" not in card and "<details>" in card, claim


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_a_lesson_step_that_shows_a_claim_leads_with_its_chart(client, lang):
    widget = client.get(f"/lessons/residual/steps/speed-measured/widget?lang={lang}").text
    t = Translator(lang)
    chart, table = widget.find('class="plot claim-chart"'), widget.find("<details><summary>" + t("ls.numbers"))
    assert 0 < chart < table and '<table class="table numbers">' in widget[table:]
    figure = _chart_of(widget)
    assert figure["layout"]["yaxis"]["title"]["text"] == render_text(Text("claim.chart.y.steps", {"target": "99%"}), t)
    assert any(tr.get("fill") == "toself" for tr in figure["data"])  # Pre-LN's band over the seeds
    # a claim measured on a zoo model keeps its table and draws nothing
    other = client.get(f"/lessons/residual/steps/input-measured/widget?lang={lang}").text
    assert "claim-chart" not in other and "<details><summary>" + t("ls.numbers") in other
