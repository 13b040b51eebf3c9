"""What the playground page shows for a state: the trace, the current step, the figures.

Pure functions of the state (the traces come from the cache), so routes stay thin and the same
context serves the full page, its partials and the Play stream.
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from functools import lru_cache
from urllib.parse import urlencode

from cachetools import LRUCache, cached
from markupsafe import Markup

from app import figures
from app.playground.architecture import architecture_layout
from app.playground.architecture.text import in_language
from app.playground.registry import zoo_models
from app.playground.samples import writes_text
from app.playground.state import PlaygroundState
from app.playground.traces import Resolved, gradients_for, resolve
from app.switches import switch_controls
from app.web.i18n import Translator
from app.web.templating import templates
from model.config import ModelConfig, Switches
from model.layers import sinusoidal_table
from model.stacks import FAMILIES
from model.tasks import get_task


def _add_norm_case(step: dict, switches: Switches) -> tuple[bool, str | None]:
    """At an add & norm step: whether the residual connection adds here, and the norm in force (None: off)."""
    residual = switches.residual_on(step["stack"], step["layer"], step["sublayer"])
    return residual, (None if switches.norm == "none" else switches.norm)


def step_title(step: dict, t, switches: Switches | None = None) -> str:
    """A short sentence naming where the step is in the forward pass (and, at an add & norm, what it does
    with these switches)."""
    stack = t(f"stack.{step['stack']}")
    where = ""
    if step["layer"] is not None:
        where = t("step.layer", stack=stack, n=step["layer"] + 1)
    position = "" if step["position"] is None else t("step.position", n=step["position"] + 1)
    key = f"step.{step['op']}"
    if step["op"] in ("sublayer", "add_norm"):
        key += f".{step['sublayer']}"
    what = t(key, stack=stack)
    if step["op"] == "add_norm" and switches is not None:
        residual, norm = _add_norm_case(step, switches)
        sublayer = t(f"step.sublayer.{step['sublayer']}")
        if not residual:
            what = (t("step.after.norm_no_add", sublayer=sublayer, norm=t(f"arch.norm.{norm}")) if norm
                    else t("step.after.nothing", sublayer=sublayer))
        elif norm is None or switches.norm_position == "pre":
            what = t("step.after.add", sublayer=sublayer)
    return " · ".join(part for part in (position, where, what) if part)


def step_explain(step: dict, t, switches: Switches, arch: str = "encoder_decoder") -> str:
    """What happens at this step, said for the switches in force (a residual connection that is off adds nothing)
    and for the model's family (a GPT's or a BERT's output is not fed to a decoder)."""
    op, sub = step["op"], step["sublayer"]
    if op == "output" and arch != "encoder_decoder":
        return t(f"explain.output.{arch}")
    if op == "pos" and switches.pos_encoding == "none":
        return t("explain.pos_off")
    if op == "final_norm" and switches.norm == "none":
        return t("explain.final_norm_off")
    if op == "sublayer" and sub == "self_attn" and step["stack"] == "decoder" and not switches.causal_mask:
        return t("explain.sublayer.self_attn.unmasked")
    if op != "add_norm":
        return t(f"explain.{op}" + (f".{sub}" if sub else ""))
    residual, norm = _add_norm_case(step, switches)
    if norm is None:
        case = "norm_off" if residual else "both_off"
    elif switches.norm_position == "pre":
        case = "pre" if residual else "pre_no_add"
    else:
        case = "post" if residual else "post_no_add"
    args = {"sublayer": t(f"step.sublayer.{sub}"), "norm": t(f"arch.norm.{norm or 'none'}")}
    parts = [t(f"explain.add_norm.{case}", **args)]
    if sub == "ffn" and residual:
        parts.append(t("explain.add_norm.layer_out"))
    parts.append(t("explain.add_norm.chart"))
    return ("" if t.lang == "zh" else " ").join(parts)  # Chinese sentences run on without a space


def step_api_name(step: dict) -> str | None:
    """The step's sublayer as the API and residual_off name it (layers from 0), e.g. encoder.0.ffn."""
    if step["layer"] is None or not step["sublayer"]:
        return None
    return f"{step['stack']}.{step['layer']}.{step['sublayer']}"


def step_figures(trace: dict, step: dict, t) -> list[dict]:
    """The figures that explain one step (shown beside the architecture diagram)."""
    op, stack, layer, position = step["op"], step["stack"], step["layer"], step["position"]
    src = trace["src_tokens"]
    if op in ("embed", "pos"):
        return [figures.embedding_vs_position(trace, figures.sequence_of(trace, stack))]
    if op == "final_norm":
        return [figures.norm_statistics(trace["encoder_final_norm"], src, t("fig.final_norm"))]
    if op == "output":
        return [figures.output_probabilities(trace), figures.logit_lens(trace)]
    sub = trace[stack][layer]["sublayers"][step["sublayer"]]
    query_tokens = figures.tokens_of(trace, stack)
    rows = _rows_seen(trace, query_tokens, position)
    if op == "sublayer" and "pattern" in sub:
        keys = figures.keys_of(trace, stack, step["sublayer"])
        pattern = [head[:rows] for head in sub["pattern"]]
        title = t(f"fig.pattern.{stack}.{step['sublayer']}", n=layer + 1)
        query_axis, key_axis = figures.attention_axis_titles(trace, stack, step["sublayer"])
        return [figures.attention_head_grid(pattern, query_tokens[:rows], keys, title,
                                            query_axis=query_axis, key_axis=key_axis)]
    if op == "sublayer":
        return [figures.sublayer_tokens(sub, query_tokens[:rows], t("fig.ffn_tokens", n=layer + 1))]
    title = t("fig.norm_here", stack=t(f"stack.{stack}"), n=layer + 1)
    return [figures.norm_statistics(_rows(sub["norm"], rows), query_tokens[:rows], title)]


def step_heads(trace: dict, step: dict, t) -> list[dict]:
    """For an attention step: one large map per head (the learner picks which one is shown)."""
    if step["op"] != "sublayer" or step["sublayer"] not in ("self_attn", "cross_attn"):
        return []
    stack, layer, position = step["stack"], step["layer"], step["position"]
    pattern = trace[stack][layer]["sublayers"][step["sublayer"]]["pattern"]
    queries = figures.tokens_of(trace, stack)
    keys = figures.keys_of(trace, stack, step["sublayer"])
    rows = _rows_seen(trace, queries, position)
    query_axis, key_axis = figures.attention_axis_titles(trace, stack, step["sublayer"])
    return [figures.attention_heatmap(head[:rows], queries[:rows], keys, t("fig.head", n=h + 1),
                                      query_axis=query_axis, key_axis=key_axis)
            for h, head in enumerate(pattern)]


def _rows_seen(trace: dict, tokens: list[str], position: int | None) -> int:
    """The rows computed so far when output token `position` is written (all of them at a step of no position). A
    GPT writes its first answer token at the row after its prompt (trace["answer_rows"])."""
    if position is None:
        return len(tokens)
    return trace.get("answer_rows", [0])[0] + position + 1


def _rows(norm: dict, rows: int) -> dict:
    per_token = ("before_mean", "before_std", "after_mean", "after_std")
    return {k: (v[:rows] if k in per_token else v) for k, v in norm.items()}


@lru_cache(maxsize=16)
def _positional_figures(max_len: int, d_model: int, lang: str) -> tuple[dict, dict]:
    """The PE table and its position similarity depend on the model's size only, never on the input:
    built once (the similarity matrix alone costs more than the rest of the panels)."""
    pe = sinusoidal_table(max_len, d_model).tolist()
    with figures.language(lang):
        return figures.positional_heatmap(pe), figures.position_similarity(pe)


PANELS = ("residual", "attention", "norm", "position", "output", "gradients", "compare")
LATER_PANELS = PANELS[1:]  # drawn when their tab is opened: a click redraws only what is on screen


def panel_names(ablated: bool) -> list[str]:
    """The tabs under the step view, the residual stream first: it tells most about a switch. "compare" only
    when the model is ablated."""
    return [name for name in PANELS if ablated or name != "compare"]


def panel_figures(name: str, trace: dict, comparison: dict | None, config: ModelConfig, t,
                  gradients: dict | None = None) -> list[dict]:
    """One tab's figures (gradients: the trace's expected-answer gradients, see gradients_for)."""
    if name == "residual":
        stacks = figures.stack_names(trace)
        return [*figures.share_axes([figures.residual_contributions(trace, stack) for stack in stacks]),
                *figures.share_axes([figures.stream_norms(trace, stack) for stack in stacks])]
    if name == "attention":
        return [figures.attention_distance_by_layer(trace)]
    if name == "norm":
        return [figures.norm_overview(trace),
                figures.norm_gamma_beta(trace[figures.stack_names(trace)[0]][0]["sublayers"]["self_attn"]["norm"],
                                        t("fig.gamma_beta"))]
    if name == "position":
        return [figures.embedding_vs_position(trace, figures.sequence_of(trace, figures.stack_names(trace)[0])),
                *_positional_figures(config.max_len, config.d_model, figures.current_language())]
    if name == "output":
        return [figures.output_probabilities(trace), figures.logit_lens(trace)]
    if name == "gradients":
        return [figures.gradient_norms({**trace, "gradients": gradients})]
    return [figures.stream_comparison(comparison)] if comparison is not None else []


def panel(state: PlaygroundState, name: str, lang: str) -> list[dict]:
    """A tab's figures for a state (the gradients' backward pass runs only here, when their tab is opened)."""
    r = resolve(state)
    with figures.language(lang):
        return panel_figures(name, r.trace, r.comparison, r.config, Translator(lang),
                             gradients_for(state) if name == "gradients" else None)


def train_query(state: PlaygroundState, task: str, arch: str) -> str:
    """The training lab's URL with this state's switches, task and family: retrain what is being ablated."""
    params = {k: v for k, v in state.params().items() if k not in ("model", "input", "step")}
    return urlencode({**params, "task": task, "arch": arch})


def residual_off_example(config: ModelConfig) -> str:
    """Sublayer names as residual_off takes them (layers count from 0), for this model's stacks and depth."""
    if config.arch == "encoder_decoder":
        return f"encoder.{config.n_encoder_layers - 1}.ffn, decoder.0.cross_attn"
    stack = FAMILIES[config.arch][0].name
    return f"{stack}.{config.n_layers(stack) - 1}.ffn, {stack}.0.self_attn"


def _step_figures(trace: dict, step: dict, t) -> dict:
    with figures.language(t.lang):
        return {"step_figures": step_figures(trace, step, t), "step_heads": step_heads(trace, step, t)}


ARCH_SVGS_KEPT = 512


def _diagram_key(r: Resolved, steps: list[dict], index: int, lang: str) -> tuple:
    return (r.entry.name, r.state.switches, r.trained, len(steps), index, lang)


@cached(LRUCache(maxsize=ARCH_SVGS_KEPT), key=_diagram_key, lock=threading.Lock())
def architecture_svg(r: Resolved, steps: list[dict], index: int, lang: str) -> Markup:
    """The diagram, drawn: it depends on the model, the switches, how many steps there are and which is current,
    not on the input, so learners flipping the same switches share it (drawing it costs more than a trace's
    summaries)."""
    layout = in_language(architecture_layout(r.config, r.state.switches, steps, index, r.trained), Translator(lang))
    return templates.env.get_template("partials/architecture.html").module.architecture(layout)


def step_index(state: PlaygroundState, steps: list[dict]) -> int:
    """The step the state shows: the one it names (the last one past the end), else the last (the prediction)."""
    return len(steps) - 1 if state.step is None else min(state.step, len(steps) - 1)


def step_span(state: PlaygroundState) -> tuple[int, int]:
    """(the step the state shows, the number of steps): where Play starts and ends."""
    steps = resolve(state).trace["steps"]
    return step_index(state, steps), len(steps)


def step_context(state: PlaygroundState, t, resolved: Resolved | None = None) -> dict:
    r = resolved or resolve(state)
    steps = r.trace["steps"]
    index = step_index(state, steps)
    step = steps[index]
    return {
        "state": state,
        "trace": r.trace,
        "steps": steps,
        "step_index": index,
        "step": step,
        "step_title": step_title(step, t, state.switches),
        "step_explain": step_explain(step, t, state.switches, r.config.arch),
        "step_api_name": step_api_name(step),
        **_step_figures(r.trace, step, t),
        "arch_svg": architecture_svg(r, steps, index, t.lang),
    }


def _first_panel(r: Resolved, lang: str) -> dict[str, list[dict] | None]:
    """Every tab, only the first with its figures (the others: None, drawn when opened)."""
    with figures.language(lang):
        first = panel_figures(PANELS[0], r.trace, r.comparison, r.config, Translator(lang))
    return {name: (first if name == PANELS[0] else None) for name in panel_names(r.ablated)}


def playground_context(state: PlaygroundState, t) -> dict:
    r = resolve(state)
    context = step_context(state, t, r)
    entry = r.entry
    context.update(
        entry=entry,
        entries=zoo_models() + ([] if any(m.name == entry.name for m in zoo_models()) else [entry]),
        ablated=r.ablated,
        intact=r.intact,
        differences=state.switches.differences(r.trained),
        controls=switch_controls(state.switches, r.trained, r.config.arch),
        panels=_first_panel(r, t.lang),
        state_params=state.params(),
        train_query=train_query(state, entry.task, r.config.arch),
        residual_off_example=residual_off_example(r.config),
        first_stack=FAMILIES[r.config.arch][0].name,
        samplable=writes_text(get_task(entry.task), r.config),
        entry_dict=asdict(entry),
    )
    return context
