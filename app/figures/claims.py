"""A claim's chart as a Plotly figure: each condition's mean over seeds with the range of its seeds, and the
cells its verdict compares ringed, shaded and named in the title.

The chart is the plain data a verdict holds (app/teaching/claims/charts.py), as a dict: a live verdict's
(`dataclasses.asdict`) or a saved report's, so both draw the same figure. Its labels are catalogue Texts:
`say` renders one in the figure's language (app.teaching.claims.render.render_text with a Translator).

Depth charts draw one line per series over the layers; the series the verdict compares are drawn bold with the
seed range as a band around them, the others thin (their range in the hover). Category charts
(a variant, a kind of statistics) draw a horizontal dot per series and category with the range as a bar: long
labels stay readable on a phone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from app.figures._base import LABELS, Figure, _axis, _esc, _figure, _index_axis
from app.figures.training import SWEEP_COLOURS
from app.web.numbers import finite

Say = Callable[[Any], str]
DECISIVE_SHADE = "rgba(230, 159, 0, 0.14)"  # Okabe-Ito orange, light: the conditions the verdict compares
RING = "#000000"
LABEL_WIDTH = 22  # characters (a CJK character counts two) before a category label wraps
LEGEND_WIDTH = 34  # the same for a legend entry: a phone's legend holds about 45 characters a row
MIN_PLOT_HEIGHT = 210  # px: static/js/app.js makes a figure taller when its legend (wrapped on a phone) leaves less
AXIS_TITLE_FONT = {"size": 12}  # a phone's plot is about 190 px high: an axis title of 25 characters fits


def _finish(fig: Figure) -> Figure:
    """Claim charts' common layout: the title over the whole figure (not only the plot area, which long category
    labels narrow) and from its top edge down (a title wrapped on a phone grows down, its subtitle clear of the
    plot), axis titles a size smaller, and the smallest plot area app.js keeps."""
    layout = fig["layout"]
    layout["title"] |= {"xref": "container", "x": 0, "yref": "container", "y": 1, "yanchor": "top",
                        "pad": {"l": 10, "t": 18}}  # Plotly lifts a wrapped title ~10 px: still clear
    layout["margin"] = {**layout["margin"], "t": layout["margin"]["t"] + 14, "r": 16}
    layout["meta"] = {"min_plot_height": MIN_PLOT_HEIGHT}
    # the toolbar shows over the title's end: light, so the title reads through it
    layout["modebar"] = {"bgcolor": "rgba(255, 255, 255, 0.85)", "color": "#888888", "activecolor": "#333333"}
    for axis in ("xaxis", "yaxis"):
        layout[axis]["title"]["font"] = AXIS_TITLE_FONT
    for trace in fig["data"]:
        trace["cliponaxis"] = False  # a dot at 0% or a ring at 100% is drawn whole
    return fig


def claim_chart(chart: dict, say: Say) -> Figure:
    if chart.get("categories"):
        return _finish(_category_chart(chart, say))
    return _finish(_depth_chart(chart, say))


# ---------------------------------------------------------------- what both kinds share


def _value(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    if unit == "share":
        return f"{100 * value:.1f}%"
    if unit == "steps":
        return str(round(value))
    return f"{value:.3g}"


def _detail(point: dict, where: str, unit: str, say: Say) -> str:
    """The hover's second line: 'at 6 layers: 99.5% (seeds 99.0–100.0%)', and what the mean cannot say."""
    text = f"{where}: {_value(point['mean'], unit)}" if point["mean"] is not None else where
    if point["mean"] is not None and point.get("low") is not None and point.get("high") is not None:
        text += f" ({LABELS['claim_range']} {_value(point['low'], unit)}–{_value(point['high'], unit)})"
    lines = [_esc(text)] + ([_esc(say(point["note"]))] if point.get("note") else [])
    return "<br>".join(lines)


def _decisive_cells(chart: dict) -> set[tuple[str, Any]]:
    decisive = chart.get("decisive") or {}
    return {(cell["series"], cell["x"]) for cell in decisive.get("cells", [])}


def _title(chart: dict, say: Say) -> str:
    decisive = chart.get("decisive")
    if not decisive:
        return _esc(say(chart["y"]))
    lead = LABELS["claim_decides"]
    return _esc(f"{lead}{'' if lead.endswith('：') else ' '}{say(decisive['note'])}")  # no space after a CJK colon


def _subtitle(chart: dict, key: str) -> str:
    seeds = chart.get("seeds") or 1
    return LABELS["claim_one_seed"] if seeds < 2 else LABELS[key].format(n=seeds)


def _compared(chart: dict, series: dict) -> bool:
    """Whether a series holds a cell the verdict compares (every series does in a chart without a comparison)."""
    decisive = _decisive_cells(chart)
    return not decisive or any(key == series["key"] for key, _ in decisive)


def _legend_name(series: dict, say: Say) -> str:
    return wrap_label(say(series["label"]), LEGEND_WIDTH)


def _ring(x: list, y: list) -> dict:
    """Open circles around the decisive cells; in the legend as "compared by the verdict"."""
    return {"type": "scatter", "mode": "markers", "x": x, "y": y, "name": LABELS["claim_decisive"],
            "marker": {"symbol": "circle-open", "size": 20, "color": RING, "line": {"width": 2.5}},
            "hoverinfo": "skip", "hovertemplate": "<extra></extra>"}


def _value_axis(chart: dict, title: str, values: list[float]) -> dict:
    unit = chart["unit"]
    if unit == "share":
        return _axis(title, range=[-0.07, 1.07], tickformat=".0%")  # room for a ring at 0% or 100%
    if unit == "steps" and chart.get("limit"):
        return _axis(title, range=[0, chart["limit"] * 1.1], rangemode="tozero")
    high = max(values, default=0) or 1.0
    return _axis(title, range=[0, high * 1.12])


def _legend_shown(chart: dict) -> bool:
    return len(chart["series"]) > 1 or bool(chart.get("decisive"))


# ---------------------------------------------------------------- depth charts: lines over layers


def _drawn_at(point: dict, chart: dict) -> float | None:
    """Where a point is drawn: its mean, or the step budget for a steps point some seed never reached."""
    if point["mean"] is not None:
        return point["mean"]
    return chart.get("limit") if chart["unit"] == "steps" else None


def _band(points: list[dict], chart: dict, colour: str, group: str) -> dict | None:
    """The range over seeds as a filled polygon around the line (up to the budget where a seed went past it)."""
    spans = []
    for p in points:
        top = _drawn_at(p, chart) if p["mean"] is None else p.get("high")
        bottom = p.get("low") if p.get("low") is not None else top
        if top is not None and bottom is not None:
            spans.append((p["x"], bottom, top))
    if not spans or all(low == high for _, low, high in spans):
        return None
    xs = [x for x, _, _ in spans]
    return {"type": "scatter", "mode": "lines", "x": xs + xs[::-1],
            "y": [high for _, _, high in spans] + [low for _, low, _ in spans][::-1], "fill": "toself",
            "fillcolor": _translucent(colour, 0.2), "line": {"width": 0}, "legendgroup": group,
            "showlegend": False, "hoverinfo": "skip", "hovertemplate": "<extra></extra>"}


def _translucent(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _depth_chart(chart: dict, say: Say) -> Figure:
    """The compared series drawn bold with their band over seeds; the others thin, their range in the hover
    only (bands of every series would hide one another)."""
    unit, decisive = chart["unit"], _decisive_cells(chart)
    data, rings, missed, drawn = [], ([], []), False, []
    for i, series in enumerate(chart["series"]):
        colour, name, points = SWEEP_COLOURS[i % len(SWEEP_COLOURS)], _esc(say(series["label"])), series["points"]
        compared = _compared(chart, series)
        band = _band(points, chart, colour, series["key"]) if compared else None
        if band:
            data.append(band)
        where = [LABELS["claim_layers"].format(n=p["x"]) for p in points]
        data.append({"type": "scatter", "mode": "lines+markers", "name": _legend_name(series, say),
                     "legendgroup": series["key"],
                     "x": [p["x"] for p in points], "y": [p["mean"] for p in points],
                     "customdata": [[name, _detail(p, w, unit, say)] for p, w in zip(points, where, strict=True)],
                     "line": {"color": colour, "width": 3 if compared else 1.5}, "opacity": 1 if compared else 0.6,
                     "marker": {"size": 8 if compared else 6}, "hovertemplate": LABELS["hover_claim"]})
        past = [(p, w) for p, w in zip(points, where, strict=True) if p["mean"] is None and _drawn_at(p, chart)]
        if past:  # a seed never reached the target: an open triangle on the budget line
            data.append({"type": "scatter", "mode": "markers", "name": LABELS["claim_not_reached"],
                         "legendgroup": "not_reached", "showlegend": not missed,
                         "x": [p["x"] for p, _ in past], "y": [chart["limit"]] * len(past),
                         "customdata": [[name, _detail(p, w, unit, say)] for p, w in past],
                         "marker": {"symbol": "triangle-up-open", "size": 11, "color": colour, "line": {"width": 2}},
                         "hovertemplate": LABELS["hover_claim"]})
            missed = True
        for p in points:
            y = _drawn_at(p, chart)
            if y is not None:
                drawn.append(y if p.get("high") is None else max(y, p["high"]))
            if (series["key"], p["x"]) in decisive and y is not None:
                rings[0].append(p["x"])
                rings[1].append(y)
    if rings[0]:
        data.append(_ring(*rings))
    xs = sorted({p["x"] for s in chart["series"] for p in s["points"]})
    shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": x - 0.5, "x1": x + 0.5, "y0": 0, "y1": 1,
               "fillcolor": DECISIVE_SHADE, "line": {"width": 0}, "layer": "below"} for x in sorted(set(rings[0]))]
    lines = [(ref["y"], _esc(say(ref["label"]))) for ref in chart.get("references", [])]
    if unit == "steps" and chart.get("limit"):
        lines.append((chart["limit"], LABELS["claim_budget"].format(n=chart["limit"])))
    shapes += [_level(y) for y, _ in lines]
    x_axis = _axis(_esc(say(chart["x"])) if chart.get("x") else "", tickmode="array", tickvals=xs)
    if xs:
        x_axis["range"] = [xs[0] - 0.8, xs[-1] + 0.8]
    some = any(not _compared(chart, series) for series in chart["series"])
    subtitle = _subtitle(chart, "claim_band_compared" if some else "claim_band")
    return _figure(data, _title(chart, say), 370, subtitle=subtitle,
                   showlegend=_legend_shown(chart), shapes=shapes, annotations=[_level_label(y, t) for y, t in lines],
                   xaxis=x_axis, yaxis=_value_axis(chart, _esc(say(chart["y"])), drawn))


def _level(y: float) -> dict:
    return {"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": y, "y1": y,
            "line": {"color": "#666666", "width": 1, "dash": "dash"}, "layer": "below"}


def _level_label(y: float, text: str) -> dict:
    # under the line: the points a steps chart puts on its budget line sit on it, not below
    return {"text": text, "xref": "paper", "x": 1, "xanchor": "right", "yref": "y", "y": y, "yanchor": "top",
            "showarrow": False, "font": {"size": 10, "color": "#444444"}, "bgcolor": "rgba(255,255,255,0.7)"}


# ---------------------------------------------------------------- category charts: horizontal dots


def wrap_label(label: str, width: int = LABEL_WIDTH) -> str:
    """An escaped label broken into lines of about `width` characters, at spaces (a CJK character counts two
    and may break anywhere), so tick labels on the y axis leave the plot its room."""
    pieces = re.findall(r"[\u2e80-\uffff][，。、：；）」]?|[^\s\u2e80-\uffff]+\s*|\s+", label)
    lines, line, size = [], "", 0
    for piece in pieces:
        piece_size = sum(2 if ord(ch) >= 0x2E80 else 1 for ch in piece.rstrip())
        if line and size + piece_size > width:
            lines.append(line.rstrip())
            line, size = piece.lstrip(), piece_size
        else:
            line, size = line + piece, size + sum(2 if ord(ch) >= 0x2E80 else 1 for ch in piece)
    lines.append(line.rstrip())
    return "<br>".join(_esc(part) for part in lines if part)


def _category_chart(chart: dict, say: Say) -> Figure:
    unit, decisive = chart["unit"], _decisive_cells(chart)
    keys = list(chart["categories"])
    labels = {key: say(label) for key, label in chart["categories"].items()}
    n = len(chart["series"])
    offsets = [(i - (n - 1) / 2) * 0.22 for i in range(n)]  # dots of several series on one row side by side
    data, rings, values = [], ([], []), []
    for i, series in enumerate(chart["series"]):
        colour, name = SWEEP_COLOURS[i % len(SWEEP_COLOURS)], _esc(say(series["label"]))
        points = [p for p in series["points"] if p["mean"] is not None]
        ys = [keys.index(p["x"]) + offsets[i] for p in points]
        values += [p["high"] if p.get("high") is not None else p["mean"] for p in points]
        data.append({"type": "scatter", "mode": "markers", "name": _legend_name(series, say), "showlegend": n > 1,
                     "x": [p["mean"] for p in points], "y": ys,
                     "customdata": [[name, _detail(p, labels[p["x"]], unit, say)] for p in points],
                     "marker": {"size": 11, "color": colour},
                     "error_x": _range_bar(points), "hovertemplate": LABELS["hover_claim"]})
        for p, y in zip(points, ys, strict=True):
            if (series["key"], p["x"]) in decisive:
                rings[0].append(p["mean"])
                rings[1].append(y)
    if rings[0]:
        data.append(_ring(*rings))
    shaded = sorted({keys.index(x) for _, x in decisive if x in keys})
    shapes = [{"type": "rect", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": row - 0.45, "y1": row + 0.45,
               "fillcolor": DECISIVE_SHADE, "line": {"width": 0}, "layer": "below"} for row in shaded]
    # the first category on top
    y_axis = _index_axis("", [wrap_label(labels[key]) for key in keys], range=[len(keys) - 0.5, -0.5],
                         autorange=False, showgrid=False, ticklabelstandoff=8)  # clear of a ring on the axis
    return _figure(data, _title(chart, say), 150 + 52 * len(keys) + 24 * n, subtitle=_subtitle(chart, "claim_whiskers"),
                   showlegend=_legend_shown(chart), shapes=shapes,
                   xaxis=_value_axis(chart, _esc(say(chart["y"])), values), yaxis=y_axis)


def _range_bar(points: list[dict]) -> dict:
    """Error bars from each dot's mean down to its lowest seed and up to its highest (none where unknown)."""
    def gap(p: dict, end: str) -> float:
        value = finite(p.get(end))
        return 0.0 if value is None else abs(value - p["mean"])

    return {"type": "data", "symmetric": False, "thickness": 2, "width": 5,
            "array": [gap(p, "high") for p in points], "arrayminus": [gap(p, "low") for p in points]}
