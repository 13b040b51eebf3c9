"""Attention: one head's pattern, every head of a sublayer, attention distance by layer."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from app.figures._base import (
    COMPONENT_COLOURS,
    DECODER_PATTERN,
    HEADS_PER_ROW,
    HEATMAP_SCALE,
    LABELS,
    Figure,
    _axis,
    _bar,
    _colorbar,
    _figure,
    _heatmap,
    _index_axis,
    _labels,
    _mean,
    _note,
    keys_of_sequence,
    sequence_of,
    stack_names,
)

# app.js outlines the hovered cell's row (query) and column (key) in every head of a figure with this meta
HOVER_HIGHLIGHT = {"hover": "row-column"}
CELL_PX = 26
MAX_MAP_HEIGHT = 900


# The axis titles of the tokens a trace's stacks hold (TraceStack.tokens / .keys), as query and as key.
QUERY_AXIS = {"src": "query_source", "tgt": "query_output", "seq": "query_seq"}
KEY_AXIS = {"src": "key_source", "tgt": "key_decoder_input", "seq": "key_seq"}


def attention_axis_titles(trace: dict, stack: str, kind: str) -> tuple[str, str]:
    """(query axis, key axis) titles for an attention sublayer: which tokens ask and which are read."""
    keys = keys_of_sequence(trace, stack, kind)
    return LABELS[QUERY_AXIS[sequence_of(trace, stack)]], LABELS[KEY_AXIS[keys]]


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
    height = min(MAX_MAP_HEIGHT, max(380, 150 + CELL_PX * len(queries)))
    return _figure([heatmap], title, height, meta=HOVER_HIGHLIGHT,
                   xaxis=_index_axis(key_axis or LABELS["key_axis"], keys, tickangle=0 if len(keys) <= 12 else -60),
                   yaxis=_index_axis(query_axis or LABELS["query_axis"], queries, autorange="reversed"))


def attention_head_grid(pattern_heads: list[list[list[float]]], query_tokens: Sequence[str],
                        key_tokens: Sequence[str], title: str, *, query_axis: str | None = None,
                        key_axis: str | None = None) -> Figure:
    """All heads side by side (HEADS_PER_ROW to a row) with one shared colour scale."""
    n_heads = len(pattern_heads)
    cols = max(1, min(n_heads, HEADS_PER_ROW))
    rows = max(1, math.ceil(n_heads / cols))
    x_gap, y_gap = 0.06, 0.12
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
    panel = max(220, 24 * len(queries))  # each head tall enough for one readable label per query
    return _figure(data, title, 130 + panel * rows, coloraxis=coloraxis, annotations=titles, meta=HOVER_HIGHLIGHT,
                   margin={"l": 60, "r": 20, "t": 60, "b": 50}, **axes)


def attention_distance_by_layer(trace: dict) -> Figure:
    """Mean |query − key| distance of self-attention per layer: bars are the mean of heads, dots single heads."""
    data = []
    for s, stack in enumerate(stack_names(trace)):
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
    n_layers = max(len(trace[stack]) for stack in stack_names(trace))
    layers = [LABELS["layer_n"].format(n=i + 1) for i in range(n_layers)]
    return _figure(data, LABELS["distance_title"], 340, barmode="overlay", xaxis=_index_axis(LABELS["layer"], layers),
                   yaxis=_axis(LABELS["distance_axis"], rangemode="tozero"))
