"""Positional encoding and embeddings: the PE table, position similarity, embedding vs position."""

from __future__ import annotations

import math
from collections.abc import Sequence

from app.figures._base import (
    COMPONENT_COLOURS,
    LABELS,
    TOKENS_OF,
    Figure,
    _axis,
    _bar,
    _colorbar,
    _figure,
    _heatmap,
    _index_axis,
    _labels,
)


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
