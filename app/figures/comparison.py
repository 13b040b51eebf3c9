"""Intact vs ablated: the stream of both runs side by side, per-token sublayer figures."""

from __future__ import annotations

from collections.abc import Sequence

from app.figures._base import (
    COMPONENT_COLOURS,
    DECODER_PATTERN,
    LABELS,
    Figure,
    _axis,
    _bar,
    _figure,
    _index_axis,
    _labels,
    _right_axis,
)


def stream_comparison(comparison: dict) -> Figure:
    """From model.trace.compare_streams: per layer (encoder, then decoder, in forward order; a GPT's or a BERT's
    one stack), how far the ablated stream is from the intact one — mean ‖Δx‖ / ‖x intact‖ (bars) and mean
    cos(x ablated, x intact)."""
    encoder, decoder = comparison.get("encoder", []), comparison.get("decoder", [])  # a GPT or a BERT has one
    n_enc = len(encoder)
    rows = encoder + decoder
    labels = ([LABELS["enc_n"].format(n=i + 1) for i in range(n_enc)]
              + [LABELS["dec_n"].format(n=i + 1) for i in range(len(decoder))])
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
