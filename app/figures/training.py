"""Training and sweeps: loss and accuracy curves, the gradient heatmap, sweep charts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from app.figures._base import (
    LABELS,
    METRIC_COLOURS,
    Figure,
    _axis,
    _colorbar,
    _esc,
    _figure,
    _heatmap,
    _index_axis,
    _log_ticks,
    _note,
    _right_axis,
    _rows,
    log10_colour_ticks,
)
from app.web.numbers import finite


def _metric_line(rows: list[dict], key: str, yaxis: str, hovertemplate: str, **style: Any) -> dict:
    return {"type": "scatter", "name": LABELS[key], "x": [r["step"] for r in rows],
            "y": [finite(r.get(key)) for r in rows], "yaxis": yaxis, "hovertemplate": hovertemplate,
            "line": {"color": METRIC_COLOURS[key], "width": 2, **style}, "mode": "lines"}


HELDOUT_KEYS = ("heldout_seq_accuracy", "heldout_loss")


def training_curves(history: Iterable[Any], heldout: str = "heldout_seq_accuracy") -> Figure:
    """Loss (log axis, left) and accuracies (0–100 %, right) against the training step.

    The held-out figure is measured only every few steps (None in between): only measured steps are drawn. It is
    whole-answer accuracy, or for a text (heldout="heldout_loss") the held-out loss, on the loss axis. The line
    names its key in `meta`, for training.js."""
    rows = _rows(history)
    data = [_metric_line(rows, "loss", "y", LABELS["hover_loss"])]
    for key, dash in (("token_accuracy", "dash"), (heldout, "dot")):
        measured = [r for r in rows if finite(r.get(key)) is not None]
        if measured:
            on_loss_axis = key == "heldout_loss"
            data.append(_metric_line(measured, key, "y" if on_loss_axis else "y2",
                                     LABELS["hover_loss" if on_loss_axis else "hover_accuracy"], dash=dash) | {
                "mode": "lines+markers" if key in HELDOUT_KEYS else "lines", "meta": key})
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
    raw = [[finite(g[i]) if i < len(g) else None for g in per_step] for i in range(n_layers)]
    z = [[math.log10(v) if v and v > 0 else None for v in row] for row in raw]
    present = [v for row in raw for v in row if v is not None and v > 0]
    scale = log10_colour_ticks(present)
    colorbar = _colorbar(LABELS["grad_colour"], **scale)
    zrange = {"zmin": scale["tickvals"][0], "zmax": scale["tickvals"][-1]} if present else {}
    customdata = [[[layers[i], v] for v in row] for i, row in enumerate(raw)]
    heatmap = _heatmap(z, x=steps, y=list(range(n_layers)), customdata=customdata, colorbar=colorbar,
                       hovertemplate=LABELS["hover_grad_cell"], meta="log10", **zrange)
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
        line = {"type": "scatter", "mode": "lines+markers", "name": _esc(names.get(variant, variant)),
                "x": [r["depth"] for r in mine], "y": [finite(r[field]) for r in mine],
                "line": {"color": SWEEP_COLOURS[i % len(SWEEP_COLOURS)], "width": 2},
                "marker": {"size": 8}, "hovertemplate": LABELS["hover_sweep"]}
        spans = [r.get(RANGE_OF.get(field, "")) for r in mine]
        if any(spans):  # several seeds: the range over them as error bars around the mean
            line["error_y"] = _range_bars(spans, line["y"])
        data.append(line)
    return data


RANGE_OF = {"heldout_seq_accuracy": "heldout_range"}  # a sweep row's mean field -> its (min, max) over seeds


def _range_bars(spans: list[tuple[float, float] | None], means: list[float | None]) -> dict:
    """Plotly error bars from each point's mean down to its min and up to its max (none where unknown)."""
    known = [(span, mean) if span and mean is not None else ((0, 0), 0)
             for span, mean in zip(spans, means, strict=True)]
    return {"type": "data", "symmetric": False, "thickness": 1.5, "width": 4,
            "array": [high - mean for (_, high), mean in known], "arrayminus": [mean - low for (low, _), mean in known]}


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


def seed_curves(lines: dict[str, list[list[dict]]], target: float) -> Figure:
    """Held-out exact-sequence accuracy against the step, one colour per setting and one thin line per seed
    (lines: {setting name: [each seed's evaluated rows]}), with the target as a dotted line."""
    data = []
    for i, (name, seeds) in enumerate(lines.items()):
        for k, rows in enumerate(seeds):
            measured = [r for r in rows if finite(r.get("heldout_seq_accuracy")) is not None]
            data.append({"type": "scatter", "mode": "lines", "name": _esc(name), "legendgroup": name,
                         "showlegend": k == 0, "x": [r["step"] for r in measured],
                         "y": [r["heldout_seq_accuracy"] for r in measured], "opacity": 0.8,
                         "line": {"color": SWEEP_COLOURS[i % len(SWEEP_COLOURS)], "width": 1.5},
                         "hovertemplate": LABELS["hover_accuracy"]})
    steps = [r["step"] for seeds in lines.values() for rows in seeds for r in rows]
    if steps:
        data.append({"type": "scatter", "mode": "lines", "name": LABELS["target"].format(target=f"{target:.0%}"),
                     "x": [0, max(steps)], "y": [target, target], "hoverinfo": "skip",
                     "line": {"color": "#888", "width": 1, "dash": "dot"}})
    return _figure(data, LABELS["seed_curves_title"], 340, annotations=[] if steps else [_note(LABELS["no_history"])],
                   xaxis=_axis(LABELS["training_step_axis"], rangemode="tozero"),
                   yaxis=_axis(LABELS["accuracy_axis"], range=[0, 1.02], tickformat=".0%"))
