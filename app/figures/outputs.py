"""The output: probabilities, the logit lens, gradient norms per layer."""

from __future__ import annotations

import itertools

from app.figures._base import (
    COMPONENT_COLOURS,
    DECODER_PATTERN,
    LABELS,
    MISMATCH_COLOUR,
    MISMATCH_PATTERN,
    Figure,
    _axis,
    _bar,
    _colorbar,
    _esc,
    _figure,
    _heatmap,
    _index_axis,
    _labels,
    _log_ticks,
    _note,
    _top_text,
    stack_names,
)
from app.web.numbers import finite

UNASKED_COLOUR = "#c8ced6"


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
    masked = trace.get("masked_rows")
    if masked is not None:  # a BERT filling a text: only its masked positions were ever asked for an answer
        differs = [t not in masked for t in range(n)]
        groups = ((False, LABELS["filled_guess"], COMPONENT_COLOURS["output"], None),
                  (True, LABELS["not_masked"], UNASKED_COLOUR, None))
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
    stacks = stack_names(trace)
    starts = dict(zip(stacks, itertools.accumulate((len(trace[s]) for s in stacks), initial=0), strict=False))
    labels = [LABELS["enc_n" if stack == "encoder" else "dec_n"].format(n=i + 1)
              for stack in stacks for i in range(len(trace[stack]))]
    xaxis = _index_axis(LABELS["layer_forward_axis"], labels)
    if grads is None:  # empty axes, titled, with the reason in the middle
        yaxis = _axis(LABELS["gradient_axis"], type="log", showticklabels=False, showgrid=False)
        return _figure([], LABELS["gradient_title_none"], 300, annotations=[_note(LABELS["no_gradient"])],
                       xaxis=xaxis, yaxis=yaxis)
    data = []
    for stack in stacks:
        xs = list(range(starts[stack], starts[stack] + len(grads[stack])))
        values = [v if finite(v) and v > 0 else None for v in grads[stack]]  # a log axis cannot show 0
        data.append(_bar(xs, values, LABELS[stack], COMPONENT_COLOURS["residual"], LABELS["hover_gradient"],
                         [labels[x] for x in xs], patterns=DECODER_PATTERN if stack == "decoder" else None, width=0.7))
    yaxis = _axis(LABELS["gradient_axis"], type="log", **_log_ticks([g for stack in stacks for g in grads[stack]]))
    return _figure(data, LABELS["gradient_title"].format(loss=f"{grads['loss']:.4g}"), 320, barmode="overlay",
                   xaxis=xaxis, yaxis=yaxis)
