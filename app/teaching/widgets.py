"""A lesson step's widget, run: the figures, outputs and verdicts it shows (see app/teaching/lessons/README.md)."""

from __future__ import annotations

from urllib.parse import urlencode

from app import figures
from app.lab.results import ResultSource
from app.lab.sweeps import TARGET, VARIANTS, sweep_results
from app.playground.registry import model_info
from app.playground.state import PlaygroundState, state_of, switch_text
from app.playground.traces import full_trace_for
from app.teaching.claims import measure
from app.teaching.claims.common import load_sweep, steps_text
from app.teaching.claims.render import render_text, verdict_view
from app.teaching.lesson_schema import Step, Widget
from app.teaching.outcomes import outcome
from app.web.i18n import Translator
from model.layers import sinusoidal_table


def _attention_grid(trace: dict, stack: str, layer: int, kind: str, title: str) -> dict:
    pattern = trace[stack][layer]["sublayers"][kind]["pattern"]
    queries, keys = figures.tokens_of(trace, stack), figures.keys_of(trace, stack, kind)
    query_axis, key_axis = figures.attention_axis_titles(trace, stack, kind)
    return figures.attention_head_grid(pattern, queries, keys, title, query_axis=query_axis, key_axis=key_axis)


def figures_for(name: str, trace: dict, model_name: str, t: Translator) -> list[dict]:
    """The named figure(s) of one trace."""
    if name in ("positional_heatmap", "position_similarity"):
        config = model_info(model_name).model_config
        table = sinusoidal_table(config["max_len"], config["d_model"]).tolist()
        return [getattr(figures, name)(table)]
    if name in ("residual_contributions", "stream_norms"):
        return figures.share_axes([getattr(figures, name)(trace, stack) for stack in figures.stack_names(trace)])
    if name == "embedding_vs_position":
        return [figures.embedding_vs_position(trace, "src")]
    if name == "cross_attention":
        last = len(trace["decoder"]) - 1
        return [_attention_grid(trace, "decoder", last, "cross_attn", t("fig.pattern.decoder.cross_attn"))]
    if name == "self_attention":
        first = figures.stack_names(trace)[0]  # the encoder; a GPT's one stack is a decoder
        masked = first == "decoder" and trace["switches"]["causal_mask"]
        title = t("fig.pattern.decoder.self_attn" if masked else "fig.pattern.encoder.self_attn")
        return [_attention_grid(trace, first, 0, "self_attn", title)]
    return [getattr(figures, name)(trace)]


def _state(widget: Widget, settings, ablated: bool = False) -> PlaygroundState:
    return state_of(widget.model, widget.input, widget.switch_changes(ablated), settings.max_input_chars)


def _traced(state: PlaygroundState, t: Translator, figure: str) -> dict:
    trace = full_trace_for(state)
    return {"state": state, "trace": trace, "figures": figures_for(figure, trace, state.model, t),
            "playground": "/playground?" + state.query()}


def run_widget(widget: Widget, settings, results: ResultSource, t: Translator) -> dict:
    """Everything the widget partial needs; raises BadInput for a preset the app cannot run. Sweeps and claims
    come from `results`: this server's own runs, or the shipped ones until it has its own."""
    with figures.language(t.lang):
        if widget.kind == "compare":
            intact = _traced(_state(widget, settings), t, widget.figure)
            ablated = _traced(_state(widget, settings, ablated=True), t, widget.figure)
            figures.share_axes(intact["figures"] + ablated["figures"])  # one scale for both sides
            switches = ablated["state"].switches  # the ablation shown as the playground's link writes it
            return {"kind": "compare", "intact": intact, "ablated": ablated,
                    "ablate": {name: switch_text(getattr(switches, name)) for name in widget.ablate}}
        if widget.kind == "trace":
            return {"kind": "trace", **_traced(_state(widget, settings), t, widget.figure)}
        if widget.kind == "sweep":
            return _sweep(widget.plan, results, t)
        if widget.kind == "measure":
            return {"kind": "measure", "verdict": verdict_view(measure(widget.claim, results.current()[0]), t)}
        if widget.kind == "train":
            fields = {k: str(v) for k, v in widget.form.items()} | ({"ab": widget.ab} if widget.ab else {})
            return {"kind": "train", "fields": fields, "ab": widget.ab,
                    "result": _result_of(widget, results, t) if widget.shipped else None}
        return {"kind": "playground", "playground": "/playground?" + _state(widget, settings).query()}


def run_step(step: Step, choice: str | None, settings, results: ResultSource, t: Translator) -> dict:
    """A step's widget run, and with a prediction (`choice`, a choice id) the outcome: the step's claim measured
    against the store, and whether the prediction was what was measured."""
    result = {"w": run_widget(step.widget, settings, results, t), "outcome": None}
    if choice is not None and step.predict is not None:
        verdict = None if step.resolve.figure else measure(step.claim, results.current()[0])
        result["outcome"] = outcome(step, choice, verdict, t)
    return result


def _result_of(widget: Widget, results: ResultSource, t: Translator) -> dict | None:
    """A train widget's runs as a precomputed plan trained them (every seed): this server's if it has them
    all, else the shipped ones; None when neither has them."""
    depth = int(widget.form.get("layers", 2))
    for store, source in ((results.local, "measured here"), (results.shipped, "shipped")):
        sweep = load_sweep(store, widget.plan) if store is not None else None
        rows = [sweep.get(variant, depth) for variant in widget.shipped] if sweep else []
        if rows and all(row is not None and len(row["seeds"]) == len(sweep.seeds) for row in rows):
            lines = {t(f"variant.{v}"): [store.metrics(i) for i in row["run_ids"]]
                     for v, row in zip(widget.shipped, rows, strict=True)}
            return {"source": source, "about": results.shipped.about if source == "shipped" else None,
                    "seeds": len(sweep.seeds), "figure": figures.seed_curves(lines, TARGET),
                    "rows": [{"name": t(f"variant.{v}"), "accuracy": row["heldout_seq_accuracy"],
                              "range": row["heldout_range"], "steps": render_text(steps_text(row), t)}
                             for v, row in zip(widget.shipped, rows, strict=True)]}
    return None


def _sweep(plan: str, results: ResultSource, t: Translator) -> dict:
    """The plan's newest sweep on this server, else the shipped one (with a button to train it here)."""
    store, source = results.local, "measured here"
    sweep = next((s for s in store.sweeps(limit=1000) if s["name"] == plan), None)
    if sweep is None and results.shipped is not None:
        store, source = results.shipped, "shipped"
        sweep = next((s for s in store.sweeps(limit=1000) if s["name"] == plan), None)
    start = "/train/sweeps?" + urlencode({"plan": plan})
    if sweep is None:
        return {"kind": "sweep", "missing": True, "plan": plan, "start": start}
    rows = sweep_results(store, sweep)
    names = {v: t(f"variant.{v}") for v in VARIANTS}
    return {"kind": "sweep", "missing": False, "sweep": sweep, "rows": rows, "source": source, "plan": plan,
            "about": results.shipped.about if source == "shipped" else None,
            "figures": [figures.sweep_accuracy(rows, names), figures.sweep_steps(rows, names, TARGET)]}
