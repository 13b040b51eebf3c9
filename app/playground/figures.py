"""Plotly figure dicts for every chart of the app, built from plain Python data.

Each function takes a trace (see model/trace.py), a table or a training history and returns
{"data": [...], "layout": {...}}: JSON-serialisable and ready for Plotly.newPlot, with no plotly or torch import.

Conventions, the same in every figure:

- Token axes are positions 0..n-1 with the tokens as tick text, so a repeated token ("1", "1") keeps two
  distinct places. Positions count from 0, as in the positional-encoding formula; layers and heads from 1.
- Learner text is data, never part of a template: tokens reach Plotly only as tick text, legend names,
  customdata or cell text, always through `_esc` (escapes &, < and >), so "<eos>" shows literally and typed
  text can add neither markup nor a "%{...}" placeholder.
- One Okabe-Ito colour per component (COMPONENT_COLOURS). A sublayer whose residual connection is off gets a
  hatched bar and a "residual off" note; where both stacks share a chart, decoder bars are dotted.
- ‖F(x)‖/‖x‖ and cos(F(x), x) are two figures with the same x axis: residual_contributions and residual_cosines.
- Every user-visible string is in LABELS (hover templates included), read from the label catalogue
  (app/web/labels/<lang>.json, keys chart.*). Entries with {fields} are filled with str.format; hover templates
  are used verbatim.
- Figures follow a language: LABELS_EN (English) or LABELS_ZH (Simplified Chinese), same keys. LABELS reads the
  one chosen by `with language("zh"): ...` (a ContextVar, default "en"); a missing key falls back to English.
"""

from __future__ import annotations

import html
import math
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app.web.i18n import LANGUAGES, labels

Figure = dict[str, Any]

COMPONENT_COLOURS = {
    "attention": "#0072B2",
    "cross_attention": "#56B4E9",
    "ffn": "#E69F00",
    "norm": "#009E73",
    "residual": "#CC79A7",
    "embedding": "#999999",
    "positional": "#D55E00",
    "output": "#000000",
}
MISMATCH_COLOUR = "#D55E00"  # Okabe-Ito vermillion; mismatched bars are also cross-hatched
METRIC_COLOURS = {"loss": "#000000", "token_accuracy": "#0072B2", "heldout_seq_accuracy": "#E69F00"}
TOKEN_LINE_COLOURS = ("#440154", "#472D7B", "#3B528B", "#2C728E", "#21918C", "#28AE80", "#5EC962", "#ADDC30")
HEATMAP_SCALE = "Viridis"
RESIDUAL_OFF_PATTERN = "/"
DECODER_PATTERN = "."
MISMATCH_PATTERN = "x"
FONT = "system-ui, sans-serif"
HEADS_PER_ROW = 4
SUBLAYER_COMPONENT = {"self_attn": "attention", "cross_attn": "cross_attention", "ffn": "ffn"}
TOKENS_OF = {"encoder": "src_tokens", "src": "src_tokens", "decoder": "tgt_tokens", "tgt": "tgt_tokens"}



def _chart_labels(lang: str) -> dict[str, str]:
    """The figure labels of a language: the catalogue's chart.* entries, without the prefix."""
    return {key.removeprefix("chart."): text for key, text in labels(lang).items() if key.startswith("chart.")}


LABELS_BY_LANGUAGE: dict[str, dict[str, str]] = {lang: _chart_labels(lang) for lang in LANGUAGES}
LABELS_EN, LABELS_ZH = LABELS_BY_LANGUAGE["en"], LABELS_BY_LANGUAGE["zh"]
_LANGUAGE: ContextVar[str] = ContextVar("addnorm_figures_language", default="en")


class _Labels(Mapping[str, str]):
    """LABELS: the labels of the current language (see `language`); a key it lacks falls back to English."""

    def _current(self) -> dict[str, str]:
        table = LABELS_BY_LANGUAGE.get(_LANGUAGE.get(), LABELS_EN)
        return table if table is LABELS_EN else LABELS_EN | table

    def __getitem__(self, key: str) -> str:
        table = LABELS_BY_LANGUAGE.get(_LANGUAGE.get(), LABELS_EN)
        return table[key] if key in table else LABELS_EN[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())

    def keys(self) -> KeysView[str]:
        return self._current().keys()

    def items(self) -> ItemsView[str, str]:
        return self._current().items()

    def values(self) -> ValuesView[str]:
        return self._current().values()

    def __repr__(self) -> str:
        return f"<figure labels ({_LANGUAGE.get()})>"


LABELS = _Labels()


def current_language() -> str:
    """The language figures are built in here ("en" unless inside `language`)."""
    return _LANGUAGE.get()


@contextmanager
def language(lang: str) -> Iterator[None]:
    """Build figures in `lang` ("en" or "zh") inside the block: `with language("zh"): fig = logit_lens(trace)`.

    The choice lives in a ContextVar, so it is restored on exit and never leaks into other threads or tasks."""
    if lang not in LABELS_BY_LANGUAGE:
        raise ValueError(f"unknown figure language {lang!r}; expected one of {sorted(LABELS_BY_LANGUAGE)}")
    token = _LANGUAGE.set(lang)
    try:
        yield
    finally:
        _LANGUAGE.reset(token)


# ---------------------------------------------------------------- shared helpers


def _esc(label: object) -> str:
    """A label as Plotly should show it: &, < and > escaped (Plotly reads a little HTML in text)."""
    return html.escape(str(label), quote=False)


def _labels(tokens: Sequence[str] | None, n: int, missing: str | None = None) -> list[str]:
    """n escaped labels; a position past the end of `tokens` shows `missing` (default: its number)."""
    tokens = tokens or []
    return [_esc(tokens[i]) if i < len(tokens) else (missing or str(i)) for i in range(n)]


def _num(value: Any) -> float | None:
    """A finite float, or None (JSON has no NaN or infinity; Plotly leaves a gap)."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def _mean(values: Iterable[Any]) -> float | None:
    finite = [v for v in map(_num, values) if v is not None]
    return sum(finite) / len(finite) if finite else None


def _figure(data: list[dict], title: str, height: int, subtitle: str = "", **layout: Any) -> Figure:
    """The common layout; a subtitle (remarks under the title) gets 16 px of top margin per line."""
    base = {
        "title": {"text": title, "x": 0, "xanchor": "left", "xref": "paper", "font": {"size": 14}},
        "font": {"family": FONT, "size": 12},
        "margin": {"l": 60, "r": 20, "t": 40 + 16 * (subtitle.count("<br>") + 1 if subtitle else 0), "b": 50},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "#ffffff",
        "autosize": True,
        "height": height,
        "hoverlabel": {"font": {"family": FONT, "size": 12}},
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 0, "yanchor": "bottom", "yref": "container"},
    }
    if subtitle:
        base["title"]["subtitle"] = {"text": subtitle, "font": {"size": 11, "color": "#444444"}}
    return {"data": data, "layout": base | layout}


def _axis(title: str, **extra: Any) -> dict:
    return {"title": {"text": title}, "automargin": True, "zeroline": False, "gridcolor": "#e5e5e5", **extra}


def _index_axis(title: str, labels: list[str], **extra: Any) -> dict:
    """Positions 0..n-1 with `labels` (already escaped) as tick text: repeated labels stay distinct."""
    # Plotly hides a label that would stick out of the figure (a slanted last label does): keep it, and let
    # automargin make room.
    return _axis(title, tickmode="array", tickvals=list(range(len(labels))), ticktext=labels,
                 ticklabeloverflow="allow", **extra)


def _right_axis(title: str, **extra: Any) -> dict:
    """A second y axis on the right, over the first; own ticks (Plotly would otherwise sync them to the left)."""
    return _axis(title, overlaying="y", side="right", showgrid=False, tickmode="auto", **extra)


def _log_ticks(values: Iterable[Any]) -> dict:
    """Ticks at 1, 2, 5 × 10^k (only 10^k over more than four decades) spanning the positive values, written as
    plain numbers: Plotly's own log ticks label the in-between ones with a bare digit ("2", "5")."""
    positive = [v for v in map(_num, values) if v is not None and v > 0]
    if not positive:
        return {}
    low, high = math.floor(math.log10(min(positive))), math.ceil(math.log10(max(positive)))
    mantissas = (1,) if high - low > 4 else (1, 2, 5)
    ticks = [m * 10.0**k for k in range(low, high + 1) for m in mantissas if m * 10.0**k <= 10.0**high]
    return {"tickmode": "array", "tickvals": ticks, "ticktext": [f"{t:g}" for t in ticks]}


def _colorbar(title: str, **extra: Any) -> dict:
    return {"title": {"text": title, "side": "right"}, "thickness": 12, **extra}


def _note(text: str, **extra: Any) -> dict:
    """An annotation; by default centred on the plot (used for "no data" messages)."""
    return {"text": text, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "showarrow": False,
            "font": {"size": 12, "color": "#444444"}, **extra}


def _heatmap(z: list, **extra: Any) -> dict:
    return {"type": "heatmap", "z": z, "colorscale": HEATMAP_SCALE, **extra}


def _bar(x: Iterable, y: Iterable, name: str, colour: str, hovertemplate: str, customdata: list | None = None,
         patterns: str | list[str] | None = None, **extra: Any) -> dict:
    marker: dict[str, Any] = {"color": colour}
    if patterns:
        marker["pattern"] = {"shape": patterns, "fillmode": "overlay", "fgcolor": "#ffffff", "solidity": 0.35}
    bar = {"type": "bar", "x": list(x), "y": list(y), "name": name, "marker": marker, "hovertemplate": hovertemplate}
    if customdata is not None:
        bar["customdata"] = customdata
    return bar | extra


def _top_text(top: Sequence[Sequence]) -> str:
    """[[token, prob], ...] as "5 0.4123 · 1 0.12 · &lt;eos&gt; 0.08" (escaped)."""
    return " · ".join(f"{_esc(token)} {prob:.4g}" for token, prob in top)


def _token_colour(index: int, n: int) -> str:
    """Lines per token go from dark (first position) to light (last)."""
    last = len(TOKEN_LINE_COLOURS) - 1
    return TOKEN_LINE_COLOURS[round(index * last / (n - 1)) if n > 1 else 0]


def _rows(history: Iterable[Any]) -> list[dict]:
    """Training history as dicts (StepMetrics objects are accepted too)."""
    return [h if isinstance(h, dict) else h.to_dict() for h in history]


# ---------------------------------------------------------------- attention


def attention_axis_titles(stack: str, kind: str) -> tuple[str, str]:
    """(query axis, key axis) titles for an attention sublayer: which tokens ask and which are read."""
    if stack == "encoder":
        return LABELS["query_source"], LABELS["key_source"]
    return LABELS["query_output"], LABELS["key_source" if kind == "cross_attn" else "key_decoder_input"]


def _attention_trace(pattern_2d: list, query_labels: list[str], key_labels: list[str], **extra: Any) -> dict:
    customdata = [[[q, i, k, j] for j, k in enumerate(key_labels)] for i, q in enumerate(query_labels)]
    return _heatmap(pattern_2d, x=list(range(len(key_labels))), y=list(range(len(query_labels))), xgap=1, ygap=1,
                    customdata=customdata, hovertemplate=LABELS["hover_attention"], **extra)


def _attention_labels(pattern_2d: list, query_tokens: Sequence[str], key_tokens: Sequence[str]):
    return _labels(query_tokens, len(pattern_2d)), _labels(key_tokens, len(pattern_2d[0]) if pattern_2d else 0)


def attention_heatmap(pattern_2d: list[list[float]], query_tokens: Sequence[str], key_tokens: Sequence[str],
                      title: str, *, query_axis: str | None = None, key_axis: str | None = None) -> Figure:
    """One head: rows are queries, columns keys, colour the attention weight (0..1)."""
    queries, keys = _attention_labels(pattern_2d, query_tokens, key_tokens)
    heatmap = _attention_trace(pattern_2d, queries, keys, zmin=0, zmax=1,
                               colorbar=_colorbar(LABELS["attention_weight"]))
    return _figure([heatmap], title, 320, xaxis=_index_axis(key_axis or LABELS["key_axis"], keys),
                   yaxis=_index_axis(query_axis or LABELS["query_axis"], queries, autorange="reversed"))


def attention_head_grid(pattern_heads: list[list[list[float]]], query_tokens: Sequence[str],
                        key_tokens: Sequence[str], title: str, *, query_axis: str | None = None,
                        key_axis: str | None = None) -> Figure:
    """All heads side by side (HEADS_PER_ROW to a row) with one shared colour scale."""
    n_heads = len(pattern_heads)
    cols = max(1, min(n_heads, HEADS_PER_ROW))
    rows = max(1, math.ceil(n_heads / cols))
    x_gap, y_gap = 0.03, 0.12
    width, height = (1 - x_gap * (cols - 1)) / cols, (1 - y_gap * (rows - 1)) / rows
    queries, keys = _attention_labels(pattern_heads[0] if pattern_heads else [], query_tokens, key_tokens)
    data, axes, titles = [], {}, []
    for h, pattern in enumerate(pattern_heads):
        row, col = divmod(h, cols)
        x0, y1 = col * (width + x_gap), 1 - row * (height + y_gap)
        suffix = "" if h == 0 else str(h + 1)
        data.append(_attention_trace(pattern, queries, keys, xaxis=f"x{suffix}", yaxis=f"y{suffix}",
                                     coloraxis="coloraxis"))
        left = col == 0
        bottom_left = left and h + cols >= n_heads  # axis titles once, at the bottom left, so they cannot collide
        axes[f"xaxis{suffix}"] = _index_axis((key_axis or LABELS["key_axis"]) if bottom_left else "", keys,
                                             domain=[x0, x0 + width], anchor=f"y{suffix}")
        axes[f"yaxis{suffix}"] = _index_axis((query_axis or LABELS["query_axis"]) if left else "", queries,
                                             domain=[y1 - height, y1], anchor=f"x{suffix}", autorange="reversed",
                                             showticklabels=left)
        titles.append(_note(LABELS["head_n"].format(n=h + 1), x=x0 + width / 2, y=y1, yanchor="bottom"))
    coloraxis = {"colorscale": HEATMAP_SCALE, "cmin": 0, "cmax": 1, "colorbar": _colorbar(LABELS["attention_weight"])}
    return _figure(data, title, 130 + 190 * rows, coloraxis=coloraxis, annotations=titles,
                   margin={"l": 60, "r": 20, "t": 60, "b": 50}, **axes)


def attention_distance_by_layer(trace: dict) -> Figure:
    """Mean |query − key| distance of self-attention per layer: bars are the mean of heads, dots single heads."""
    data = []
    for s, stack in enumerate(("encoder", "decoder")):
        heads = [layer["sublayers"]["self_attn"]["mean_distance"] for layer in trace[stack]]
        xs = [i + (0.2 if s else -0.2) for i in range(len(heads))]
        where = [f"{LABELS[stack]} · {LABELS['layer_n'].format(n=i + 1)}" for i in range(len(heads))]
        data.append(_bar(xs, [_mean(h) for h in heads], LABELS[f"{stack}_self"], COMPONENT_COLOURS["attention"],
                         LABELS["hover_distance_mean"], customdata=where, width=0.38,
                         patterns=DECODER_PATTERN if stack == "decoder" else None))
        data.append({
            "type": "scatter", "mode": "markers", "name": LABELS["per_head"], "legendgroup": "heads",
            "showlegend": s == 0, "hovertemplate": LABELS["hover_distance_head"],
            "x": [x for x, h in zip(xs, heads, strict=True) for _ in h],
            "y": [v for h in heads for v in h],
            "customdata": [f"{w} · {LABELS['head_n'].format(n=j + 1)}"
                           for w, h in zip(where, heads, strict=True) for j in range(len(h))],
            "marker": {"color": "#ffffff", "size": 7, "line": {"color": "#000000", "width": 1}},
        })
    n_layers = max(len(trace["encoder"]), len(trace["decoder"]))
    layers = [LABELS["layer_n"].format(n=i + 1) for i in range(n_layers)]
    return _figure(data, LABELS["distance_title"], 340, barmode="overlay", xaxis=_index_axis(LABELS["layer"], layers),
                   yaxis=_axis(LABELS["distance_axis"], rangemode="tozero"))


# ---------------------------------------------------------------- residual stream


def _sublayers(trace: dict, stack: str) -> list[tuple[str, str, dict]]:
    """(step label, kind, summary) for every sublayer of a stack, in forward order."""
    return [(LABELS["step_sublayer"].format(n=i + 1, kind=LABELS[f"short_{kind}"]), kind, summary)
            for i, layer in enumerate(trace[stack]) for kind, summary in layer["sublayers"].items()]


def _sublayer_bars(trace: dict, stack: str, field: str, title: str, y_title: str, hovertemplate: str,
                   **y_extra: Any) -> Figure:
    """One bar per sublayer, coloured by kind; hatched and labelled where the residual is off."""
    rows = _sublayers(trace, stack)
    data, notes = [], []
    for kind, component in SUBLAYER_COMPONENT.items():
        idx = [i for i, row in enumerate(rows) if row[1] == kind]
        if not idx:
            continue
        subs = [rows[i][2] for i in idx]
        means = [_mean(s[field]) for s in subs]
        customdata = [[f"{rows[i][0]} · {LABELS[kind]}", min(s[field], default=None), max(s[field], default=None),
                       LABELS["on" if s["residual"] else "off"]] for i, s in zip(idx, subs, strict=True)]
        data.append(_bar(idx, means, LABELS[kind], COMPONENT_COLOURS[component], hovertemplate, customdata,
                         patterns=["" if s["residual"] else RESIDUAL_OFF_PATTERN for s in subs], width=0.7))
        notes += [_note(LABELS["residual_off"], xref="x", yref="y", x=i, y=m or 0,
                        yanchor="bottom" if (m or 0) >= 0 else "top", font={"size": 10, "color": "#000000"})
                  for i, m, s in zip(idx, means, subs, strict=True) if not s["residual"]]
    return _figure(data, title, 340, barmode="overlay", annotations=notes,
                   xaxis=_index_axis(LABELS["sublayer_axis"], [row[0] for row in rows]),
                   yaxis=_axis(y_title, **y_extra))


def residual_contributions(trace: dict, stack: str) -> Figure:
    """‖F(x)‖/‖x‖ per sublayer, averaged over tokens: how much each sublayer changes the stream it is added to."""
    return _sublayer_bars(trace, stack, "ratio", LABELS["ratio_title"].format(stack=LABELS[stack]),
                          LABELS["ratio_axis"], LABELS["hover_ratio"], rangemode="tozero")


def residual_cosines(trace: dict, stack: str) -> Figure:
    """cos(F(x), x) per sublayer, averaged over tokens: does the sublayer push along the stream or across it."""
    return _sublayer_bars(trace, stack, "cos", LABELS["cos_title"].format(stack=LABELS[stack]),
                          LABELS["cos_axis"], LABELS["hover_cos"], range=[-1.05, 1.05], zeroline=True)


def stream_norms(trace: dict, stack: str) -> Figure:
    """‖x‖ of every token's stream at the input and after each sublayer's add & norm, one line per token."""
    steps, columns = [LABELS["embed_pe"]], [trace[stack][0]["resid_pre_norm"]]
    for label, _, summary in _sublayers(trace, stack):
        steps.append(label)
        columns.append(summary["stream_norm"])
    n_tokens = len(columns[0])
    data = []
    for t, token in enumerate(_labels(trace[TOKENS_OF[stack]], n_tokens)):
        name = LABELS["token_at"].format(token=token, n=t)
        data.append({
            "type": "scatter", "mode": "lines+markers", "name": name, "hovertemplate": LABELS["hover_stream"],
            "x": list(range(len(steps))), "y": [col[t] if t < len(col) else None for col in columns],
            "customdata": [[name, step] for step in steps],
            "line": {"color": _token_colour(t, n_tokens), "width": 1.5}, "marker": {"size": 5},
        })
    return _figure(data, LABELS["stream_title"].format(stack=LABELS[stack]), 340,
                   xaxis=_index_axis(LABELS["step_axis"], steps),
                   yaxis=_axis(LABELS["stream_axis"], rangemode="tozero"),
                   legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"})


# ---------------------------------------------------------------- normalization


def norm_statistics(norm_summary: dict, tokens: Sequence[str], title: str) -> Figure:
    """Per token, mean (top panel) and std (bottom panel) over features, before and after the norm."""
    n = len(norm_summary["before_mean"])
    labels = _labels(tokens, n)
    data = []
    for panel, stat in (("", "mean"), ("2", "std")):
        customdata = [[LABELS["token_at"].format(token=token, n=t), LABELS[stat]] for t, token in enumerate(labels)]
        for when, component in (("before", "residual"), ("after", "norm")):
            data.append(_bar(range(n), norm_summary[f"{when}_{stat}"], LABELS[f"{when}_norm"],
                             COMPONENT_COLOURS[component], LABELS["hover_norm_stat"], customdata,
                             yaxis=f"y{panel}", legendgroup=when, showlegend=not panel))
    return _figure(data, title, 380, barmode="group", xaxis=_index_axis(LABELS["token_axis"], labels, anchor="y2"),
                   yaxis=_axis(LABELS["norm_mean_axis"], domain=[0.56, 1], zeroline=True),
                   yaxis2=_axis(LABELS["norm_std_axis"], domain=[0, 0.44], anchor="x", rangemode="tozero"))


def norm_overview(trace: dict) -> Figure:
    """Every norm of the model in forward order: per-token mean and std before and after it, averaged over tokens
    (top: mean, bottom: std) — after a LayerNorm with γ = 1, β = 0 they would read 0 and 1 (claim N1)."""
    rows = [(f"{LABELS['enc_n' if stack == 'encoder' else 'dec_n'].format(n=i + 1)} {LABELS[f'short_{kind}']}",
             sub["norm"]) for stack in ("encoder", "decoder")
            for i, layer in enumerate(trace[stack]) for kind, sub in layer["sublayers"].items()]
    labels = [_esc(label) for label, _ in rows]
    xs = list(range(len(rows)))
    data = []
    for panel, stat in (("", "mean"), ("2", "std")):
        for when, component in (("before", "residual"), ("after", "norm")):
            data.append(_bar(xs, [_mean(norm[f"{when}_{stat}"]) for _, norm in rows], LABELS[f"{when}_norm"],
                             COMPONENT_COLOURS[component], LABELS["hover_norm_overview"],
                             [[label, LABELS[stat]] for label in labels],
                             yaxis=f"y{panel}", legendgroup=when, showlegend=not panel))
    kind = rows[0][1]["kind"] if rows else "none"
    return _figure(data, LABELS["norm_overview_title"].format(kind=kind), 380, barmode="group",
                   xaxis=_index_axis(LABELS["norm_overview_axis"], labels, anchor="y2"),
                   yaxis=_axis(LABELS["norm_mean_axis"], domain=[0.56, 1], zeroline=True),
                   yaxis2=_axis(LABELS["norm_std_axis"], domain=[0, 0.44], anchor="x", rangemode="tozero"))


def norm_gamma_beta(norm_summary: dict, title: str) -> Figure:
    """The norm's learned scale γ (bars) and shift β (diamonds), one per feature."""
    d = len(norm_summary["gamma"])
    beta = {"type": "scatter", "mode": "markers", "name": LABELS["beta"], "x": list(range(d)),
            "y": norm_summary["beta"], "hovertemplate": LABELS["hover_beta"],
            "marker": {"symbol": "diamond", "size": 7, "color": "#ffffff",
                       "line": {"color": COMPONENT_COLOURS["norm"], "width": 2}}}
    data = [_bar(range(d), norm_summary["gamma"], LABELS["gamma"], COMPONENT_COLOURS["norm"], LABELS["hover_gamma"]),
            beta]
    remark = {"rms": "rms_no_beta", "none": "norm_unused"}.get(norm_summary.get("kind", ""))
    notes = [_note(LABELS[remark], x=1, y=1, xanchor="right", yanchor="bottom")] if remark else []
    return _figure(data, title, 320, annotations=notes, xaxis=_axis(LABELS["feature_axis"]),
                   yaxis=_axis(LABELS["param_axis"], zeroline=True))


# ---------------------------------------------------------------- positions and embeddings


def positional_heatmap(pe_table_2d: Sequence[Sequence[float]]) -> Figure:
    """The positional-encoding table: one row per position, one column per feature."""
    z = [[round(float(v), 4) for v in row] for row in pe_table_2d]
    heatmap = _heatmap(z, zmin=-1, zmax=1, colorbar=_colorbar(LABELS["pe_value"]), hovertemplate=LABELS["hover_pe"])
    return _figure([heatmap], LABELS["pe_title"], 320, xaxis=_axis(LABELS["feature_axis"]),
                   yaxis=_axis(LABELS["position_axis"], autorange="reversed"))


def _cosine_matrix(rows: Sequence[Sequence[float]]) -> list[list[float]]:
    vectors = [[float(v) for v in row] for row in rows]
    norms = [math.sqrt(sum(v * v for v in row)) for row in vectors]
    return [[round(sum(a * b for a, b in zip(u, w, strict=True)) / (nu * nw), 4) if nu and nw else 0.0
             for w, nw in zip(vectors, norms, strict=True)] for u, nu in zip(vectors, norms, strict=True)]


def position_similarity(pe_table_2d: Sequence[Sequence[float]]) -> Figure:
    """Cosine similarity between the encodings of every two positions (computed here, in pure Python)."""
    heatmap = _heatmap(_cosine_matrix(pe_table_2d), zmin=-1, zmax=1, colorbar=_colorbar(LABELS["cosine"]),
                       hovertemplate=LABELS["hover_similarity"])
    return _figure([heatmap], LABELS["similarity_title"], 340, xaxis=_axis(LABELS["position_axis"], constrain="domain"),
                   yaxis=_axis(LABELS["position_axis"], autorange="reversed", scaleanchor="x"))


def embedding_vs_position(trace: dict, side: str) -> Figure:
    """Per token of side "src" or "tgt": ‖token embedding‖, ‖positional encoding‖ and ‖their sum‖."""
    summary = trace["embedding"][side]
    n = len(summary["sum_norm"])
    labels = _labels(trace[TOKENS_OF[side]], n)
    customdata = [[LABELS["token_at"].format(token=token, n=t), summary["cos_embed_pos"][t]]
                  for t, token in enumerate(labels)]
    series = (("embed_norm", "embedding"), ("pos_norm", "positional"), ("sum_norm", "residual"))
    data = [_bar(range(n), summary[key], LABELS[key], COMPONENT_COLOURS[component], LABELS["hover_embedding"],
                 customdata) for key, component in series]
    return _figure(data, LABELS[f"embed_title_{side}"], 340, barmode="group",
                   xaxis=_index_axis(LABELS[f"{side}_token_axis"], labels),
                   yaxis=_axis(LABELS["norm_axis"], rangemode="tozero"))


# ---------------------------------------------------------------- output


def output_probabilities(trace: dict) -> Figure:
    """Probability of each chosen token; positions that differ from the expected answer are vermillion, crossed."""
    outputs, expected = trace["output_tokens"], trace.get("expected_tokens")
    probs, tops = trace["output"]["chosen_prob"], trace["output"]["top"]
    n = min(len(outputs), len(probs))
    labels = _labels(outputs, n)
    wanted = _labels(expected, n, missing=LABELS["missing"])
    differs = [expected is not None and (t >= len(expected) or expected[t] != outputs[t]) for t in range(n)]
    hover = LABELS["hover_output"] + (LABELS["hover_expected"] if expected is not None else "") + "<extra></extra>"
    groups = ((False, LABELS["chosen" if expected is None else "matches"], COMPONENT_COLOURS["output"], None),
              (True, LABELS["differs"], MISMATCH_COLOUR, MISMATCH_PATTERN))
    data = []
    for flag, name, colour, pattern in groups:
        idx = [t for t in range(n) if differs[t] == flag]
        if idx:
            customdata = [[t, labels[t], _top_text(tops[t]) if t < len(tops) else "", wanted[t]] for t in idx]
            data.append(_bar(idx, [probs[t] for t in idx], name, colour, hover, customdata, patterns=pattern,
                             width=0.7))
    return _figure(data, LABELS["output_title"], 320, barmode="overlay",
                   annotations=[] if n else [_note(LABELS["no_output"])],
                   xaxis=_index_axis(LABELS["output_axis"], labels), yaxis=_axis(LABELS["prob_axis"], range=[0, 1.05]))


def logit_lens(trace: dict) -> Figure:
    """Decoder layer × output position: the top-1 token (cell text) and its probability (colour)."""
    lens = trace["logit_lens"]
    n = len(lens[0]) if lens else 0
    positions = _labels(trace["output_tokens"], n)
    layers = [LABELS["layer_n"].format(n=i + 1) for i in range(len(lens))]
    customdata = [[[LABELS["lens_cell"].format(layer=layers[i], n=t, token=positions[t]), _top_text(cell)]
                   for t, cell in enumerate(row)] for i, row in enumerate(lens)]
    heatmap = _heatmap([[cell[0][1] for cell in row] for row in lens], zmin=0, zmax=1, xgap=1, ygap=1,
                       x=list(range(n)), y=list(range(len(lens))),
                       text=[[_esc(cell[0][0]) for cell in row] for row in lens], texttemplate="%{text}",
                       textfont={"size": 12}, customdata=customdata, hovertemplate=LABELS["hover_lens"],
                       colorbar=_colorbar(LABELS["top1_prob"]))
    return _figure([heatmap], LABELS["lens_title"], 150 + 40 * max(len(lens), 3),
                   xaxis=_index_axis(LABELS["lens_x"], positions), yaxis=_index_axis(LABELS["lens_y"], layers))


# ---------------------------------------------------------------- gradients


def gradient_norms(trace: dict) -> Figure:
    """‖∂loss/∂(layer input)‖ for the expected answer, encoder then decoder layers, on a log axis."""
    grads = trace.get("gradients")
    n_enc = len(trace["encoder"])
    labels = ([LABELS["enc_n"].format(n=i + 1) for i in range(n_enc)]
              + [LABELS["dec_n"].format(n=i + 1) for i in range(len(trace["decoder"]))])
    xaxis = _index_axis(LABELS["layer_forward_axis"], labels)
    if grads is None:  # empty axes, titled, with the reason in the middle
        yaxis = _axis(LABELS["gradient_axis"], type="log", showticklabels=False, showgrid=False)
        return _figure([], LABELS["gradient_title_none"], 300, annotations=[_note(LABELS["no_gradient"])],
                       xaxis=xaxis, yaxis=yaxis)
    data = []
    for stack, start in (("encoder", 0), ("decoder", n_enc)):
        xs = list(range(start, start + len(grads[stack])))
        values = [v if _num(v) and v > 0 else None for v in grads[stack]]  # a log axis cannot show 0
        data.append(_bar(xs, values, LABELS[stack], COMPONENT_COLOURS["residual"], LABELS["hover_gradient"],
                         [labels[x] for x in xs], patterns=DECODER_PATTERN if stack == "decoder" else None, width=0.7))
    yaxis = _axis(LABELS["gradient_axis"], type="log", **_log_ticks(grads["encoder"] + grads["decoder"]))
    return _figure(data, LABELS["gradient_title"].format(loss=f"{grads['loss']:.4g}"), 320, barmode="overlay",
                   xaxis=xaxis, yaxis=yaxis)


# ---------------------------------------------------------------- intact vs ablated


def stream_comparison(comparison: dict) -> Figure:
    """From model.trace.compare_streams: per layer (encoder, then decoder, in forward order), how far the
    ablated stream is from the intact one — mean ‖Δx‖ / ‖x intact‖ (bars) and mean cos(x ablated, x intact)."""
    n_enc = len(comparison["encoder"])
    rows = comparison["encoder"] + comparison["decoder"]
    labels = ([LABELS["enc_n"].format(n=i + 1) for i in range(n_enc)]
              + [LABELS["dec_n"].format(n=i + 1) for i in range(len(comparison["decoder"]))])
    xs = list(range(len(rows)))
    data = [
        _bar(xs, [r["relative"] for r in rows], LABELS["relative"], COMPONENT_COLOURS["residual"],
             LABELS["hover_relative"], labels, patterns=["" if x < n_enc else DECODER_PATTERN for x in xs], width=0.6),
        {"type": "scatter", "mode": "lines+markers", "name": LABELS["compare_cosine"], "x": xs,
         "y": [r["cosine"] for r in rows], "yaxis": "y2", "customdata": labels,
         "hovertemplate": LABELS["hover_cosine_compare"],
         "line": {"color": COMPONENT_COLOURS["output"], "dash": "dot"}, "marker": {"symbol": "diamond", "size": 8}},
    ]
    top = max([r["relative"] for r in rows] + [0.05]) * 1.1
    return _figure(data, LABELS["difference_title"], 340, subtitle=LABELS["difference_note"],
                   xaxis=_index_axis(LABELS["layer_forward_axis"], labels),
                   yaxis=_axis(LABELS["relative_axis"], range=[0, top], tickformat=".0%"),
                   yaxis2=_right_axis(LABELS["compare_cosine"], range=[-1.05, 1.05]))


def sublayer_tokens(summary: dict, tokens: Sequence[str], title: str) -> Figure:
    """One sublayer, per token: ‖F(x)‖ / ‖x‖ (bars) and cos(F(x), x) (markers, right axis)."""
    n = len(tokens)
    labels = _labels(tokens, n)
    data = [
        _bar(range(n), summary["ratio"][:n], LABELS["token_ratio_axis"], COMPONENT_COLOURS["ffn"],
             LABELS["hover_token_ratio"], labels, width=0.6),
        {"type": "scatter", "mode": "markers", "name": LABELS["cosine_fx_x"], "x": list(range(n)),
         "y": summary["cos"][:n], "yaxis": "y2", "customdata": labels, "hovertemplate": LABELS["hover_token_cos"],
         "marker": {"symbol": "diamond", "size": 9, "color": COMPONENT_COLOURS["output"]}},
    ]
    subtitle = "" if summary["residual"] else LABELS["residual_off"]
    return _figure(data, title, 300, subtitle=subtitle, xaxis=_index_axis(LABELS["token_axis"], labels),
                   yaxis=_axis(LABELS["token_ratio_axis"], rangemode="tozero"),
                   yaxis2=_right_axis(LABELS["cosine_fx_x"], range=[-1.05, 1.05]))


# ---------------------------------------------------------------- training


def _metric_line(rows: list[dict], key: str, yaxis: str, hovertemplate: str, **style: Any) -> dict:
    return {"type": "scatter", "name": LABELS[key], "x": [r["step"] for r in rows],
            "y": [_num(r.get(key)) for r in rows], "yaxis": yaxis, "hovertemplate": hovertemplate,
            "line": {"color": METRIC_COLOURS[key], "width": 2, **style}, "mode": "lines"}


def training_curves(history: Iterable[Any]) -> Figure:
    """Loss (log axis, left) and accuracies (0–100 %, right) against the training step.

    Held-out accuracy is measured only every few steps (None in between): only measured steps are drawn."""
    rows = _rows(history)
    data = [_metric_line(rows, "loss", "y", LABELS["hover_loss"])]
    for key, dash in (("token_accuracy", "dash"), ("heldout_seq_accuracy", "dot")):
        measured = [r for r in rows if _num(r.get(key)) is not None]
        if measured:
            data.append(_metric_line(measured, key, "y2", LABELS["hover_accuracy"], dash=dash) | {
                "mode": "lines+markers" if key == "heldout_seq_accuracy" else "lines"})
    return _figure(data, LABELS["training_title"], 360, annotations=[] if rows else [_note(LABELS["no_history"])],
                   xaxis=_axis(LABELS["training_step_axis"]),
                   yaxis=_axis(LABELS["loss_axis"], type="log", **_log_ticks(r["loss"] for r in rows)),
                   yaxis2=_right_axis(LABELS["accuracy_axis"], range=[0, 1.02], tickformat=".0%"))


def gradient_heatmap(history: Iterable[Any], stack: str) -> Figure:
    """Training step × layer: log10 of ‖∂loss/∂(layer input)‖ as colour, the exact value in the hover."""
    rows = _rows(history)
    steps = [r["step"] for r in rows]
    per_step = [r["layer_grad_norms"][stack] for r in rows]
    n_layers = max((len(g) for g in per_step), default=0)
    layers = [LABELS["layer_n"].format(n=i + 1) for i in range(n_layers)]
    raw = [[_num(g[i]) if i < len(g) else None for g in per_step] for i in range(n_layers)]
    z = [[math.log10(v) if v and v > 0 else None for v in row] for row in raw]
    finite = [v for row in z for v in row if v is not None]
    ticks = list(range(math.floor(min(finite)), math.ceil(max(finite)) + 1)) if finite else []
    colorbar = _colorbar(LABELS["grad_colour"], tickvals=ticks, ticktext=[f"10<sup>{k}</sup>" for k in ticks])
    customdata = [[[layers[i], v] for v in row] for i, row in enumerate(raw)]
    heatmap = _heatmap(z, x=steps, y=list(range(n_layers)), customdata=customdata, colorbar=colorbar,
                       hovertemplate=LABELS["hover_grad_cell"])
    return _figure([heatmap], LABELS["grad_heatmap_title"].format(stack=LABELS[stack]), 140 + 40 * max(n_layers, 3),
                   annotations=[] if rows else [_note(LABELS["no_history"])],
                   xaxis=_axis(LABELS["training_step_axis"]), yaxis=_index_axis(LABELS["layer"], layers))


# ---------------------------------------------------------------- sweeps

SWEEP_COLOURS = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000")


def _sweep_lines(rows: list[dict], field: str, names: dict[str, str]) -> list[dict]:
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    data = []
    for i, variant in enumerate(variants):
        mine = sorted((r for r in rows if r["variant"] == variant), key=lambda r: r["depth"])
        data.append({"type": "scatter", "mode": "lines+markers", "name": _esc(names.get(variant, variant)),
                     "x": [r["depth"] for r in mine], "y": [_num(r[field]) for r in mine],
                     "line": {"color": SWEEP_COLOURS[i % len(SWEEP_COLOURS)], "width": 2},
                     "marker": {"size": 8}, "hovertemplate": LABELS["hover_sweep"]})
    return data


def sweep_accuracy(rows: list[dict], names: dict[str, str]) -> Figure:
    """Final held-out exact-sequence accuracy against depth, one line per switch setting (claims R3, N4)."""
    depths = sorted({r["depth"] for r in rows})
    return _figure(_sweep_lines(rows, "heldout_seq_accuracy", names), LABELS["sweep_accuracy_title"], 340,
                   xaxis=_axis(LABELS["sweep_depth_axis"], tickmode="array", tickvals=depths),
                   yaxis=_axis(LABELS["sweep_accuracy_axis"], range=[0, 1.02], tickformat=".0%"))


def sweep_steps(rows: list[dict], names: dict[str, str], target: float) -> Figure:
    """Steps until held-out accuracy first reached the target, against depth (missing = not reached)."""
    depths = sorted({r["depth"] for r in rows})
    return _figure(_sweep_lines(rows, "steps_to_target", names),
                   LABELS["sweep_steps_title"].format(target=f"{target:.0%}"), 340,
                   subtitle=LABELS["sweep_not_reached"] + ": —",
                   xaxis=_axis(LABELS["sweep_depth_axis"], tickmode="array", tickvals=depths),
                   yaxis=_axis(LABELS["sweep_steps_axis"], rangemode="tozero"))
