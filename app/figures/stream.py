"""The residual stream and the norms: sublayer contributions, cosines, stream norms, norm statistics, γ and β."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.figures._base import (
    COMPONENT_COLOURS,
    LABELS,
    RESIDUAL_OFF_PATTERN,
    SUBLAYER_COMPONENT,
    Figure,
    _axis,
    _bar,
    _esc,
    _figure,
    _index_axis,
    _labels,
    _mean,
    _note,
    _token_colour,
    stack_names,
    tokens_of,
)
from model.norms import NORMS


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


def stream_norms(trace: dict, stack: str) -> Figure:
    """‖x‖ of every token's stream at the input and after each sublayer's add & norm, one line per token."""
    steps, columns = [LABELS["embed_pe"]], [trace[stack][0]["resid_pre_norm"]]
    for label, _, summary in _sublayers(trace, stack):
        steps.append(label)
        columns.append(summary["stream_norm"])
    n_tokens = len(columns[0])
    data = []
    for t, token in enumerate(_labels(tokens_of(trace, stack), n_tokens)):
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
             sub["norm"]) for stack in stack_names(trace)
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
    kind = NORMS.get(norm_summary.get("kind", ""))
    remark = kind.remark if kind else None
    notes = [_note(LABELS[remark], x=1, y=1, xanchor="right", yanchor="bottom")] if remark else []
    return _figure(data, title, 320, annotations=notes, xaxis=_axis(LABELS["feature_axis"]),
                   yaxis=_axis(LABELS["param_axis"], zeroline=True))
