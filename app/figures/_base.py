"""What every figure shares: colours, the labels of the current language, and small builders."""

from __future__ import annotations

import html
import math
from collections.abc import ItemsView, Iterable, Iterator, KeysView, Mapping, Sequence, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from app.web.i18n import LANGUAGES, labels
from app.web.numbers import finite

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
METRIC_COLOURS = {"loss": "#000000", "token_accuracy": "#0072B2", "heldout_seq_accuracy": "#E69F00",
                  "heldout_loss": "#E69F00"}
TOKEN_LINE_COLOURS = ("#440154", "#472D7B", "#3B528B", "#2C728E", "#21918C", "#28AE80", "#5EC962", "#ADDC30")
HEATMAP_SCALE = "Viridis"
RESIDUAL_OFF_PATTERN = "/"
DECODER_PATTERN = "."
MISMATCH_PATTERN = "x"
FONT = "system-ui, sans-serif"
HEADS_PER_ROW = 2  # two heads to a row keep token labels readable, on a phone too
SUBLAYER_COMPONENT = {"self_attn": "attention", "cross_attn": "cross_attention", "ffn": "ffn"}
# an embedding's side (the sequence a stack embeds, model/stacks.py) -> its tokens in a trace; "seq" is a GPT's one
TOKENS_OF = {"src": "src_tokens", "tgt": "tgt_tokens", "seq": "seq_tokens"}


def stack_names(trace: dict) -> list[str]:
    """The trace's stacks in forward order (model/trace.py TraceStack)."""
    return [stack["name"] for stack in trace["stacks"]]


def _stack(trace: dict, name: str) -> dict:
    return next(stack for stack in trace["stacks"] if stack["name"] == name)


def tokens_of(trace: dict, stack: str) -> list[str]:
    """The tokens a stack's positions hold."""
    return trace[_stack(trace, stack)["tokens"]]


def sequence_of(trace: dict, stack: str) -> str:
    """The sequence a stack embeds ("src", "tgt" or "seq"): the side of trace["embedding"] that is its."""
    return _stack(trace, stack)["tokens"].removesuffix("_tokens")


def keys_of(trace: dict, stack: str, kind: str) -> list[str]:
    """The tokens an attention sublayer of the stack attends to (the encoder's, for cross-attention)."""
    return trace[_stack(trace, stack)["keys"][kind]]


def keys_of_sequence(trace: dict, stack: str, kind: str) -> str:
    """The sequence ("src", "tgt" or "seq") whose tokens an attention sublayer of the stack attends to."""
    return _stack(trace, stack)["keys"][kind].removesuffix("_tokens")



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


def escape_label(label: object) -> str:
    """A label as Plotly should show it: &, < and > escaped (Plotly reads a little HTML in text)."""
    return html.escape(str(label), quote=False)


_esc = escape_label  # the name every figure module here uses


def _labels(tokens: Sequence[str] | None, n: int, missing: str | None = None) -> list[str]:
    """n escaped labels; a position past the end of `tokens` shows `missing` (default: its number)."""
    tokens = tokens or []
    return [_esc(tokens[i]) if i < len(tokens) else (missing or str(i)) for i in range(n)]


def _mean(values: Iterable[Any]) -> float | None:
    kept = [v for v in map(finite, values) if v is not None]
    return sum(kept) / len(kept) if kept else None


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


_MANTISSAS = ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9))  # decades, 1-2-5, 1..9


def log_tick_values(values: Iterable[Any]) -> list[float]:
    """At least three round ticks on a log scale that bracket the positive values: every decade over more than
    four decades, else 1-2-5 steps, else (within a factor of about 2.5) every 1..9 step; [] without data."""
    positive = [v for v in map(finite, values) if v is not None and v > 0]
    if not positive:
        return []
    low, high = min(positive), max(positive)
    if math.log10(high) - math.log10(low) > 4:  # decades; over many, every second or third one
        first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
        step = max(1, math.ceil((last - first) / 7))
        return [float(f"1e{k}") for k in range(first // step * step, -(-last // step) * step + 1, step)]
    for mantissas in _MANTISSAS[1:]:
        first, last = math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1
        series = [float(f"{m}e{k}") for k in range(first, last + 1) for m in mantissas]
        below = max(i for i, t in enumerate(series) if t <= low * (1 + 1e-9))
        above = min(i for i, t in enumerate(series) if t >= high * (1 - 1e-9))
        if above - below >= 2:
            return series[below:above + 1]
    # every value between two neighbouring 1..9 steps: add the next step up; a single value: one step each way
    return series[below:above + 2] if above > below else series[below - 1:above + 2]


def _tick_text(value: float) -> str:
    return f"{value:g}"


def _log_ticks(values: Iterable[Any], *, fixed_range: bool = True) -> dict:
    """Tick values for a log axis, written as plain numbers (Plotly's own log ticks label the in-between ones with
    a bare digit, and show a single tick over a short range). With fixed_range the axis spans exactly the
    outer ticks, so every tick shows; without it (a chart redrawn from streamed data) the ticks are offered over
    a wide span and the axis autoranges."""
    ticks = log_tick_values(values)
    if not ticks:
        return {}
    axis = {"tickmode": "array", "tickvals": ticks, "ticktext": [_tick_text(t) for t in ticks]}
    if fixed_range:
        axis["range"] = [math.log10(ticks[0]), math.log10(ticks[-1])]
        axis["autorange"] = False
    return axis


def log10_colour_ticks(values: Iterable[Any]) -> dict:
    """Colour-bar ticks for a heatmap coloured by log10 of `values`: at least three, at round values."""
    ticks = log_tick_values(values)
    return {"tickvals": [math.log10(t) for t in ticks], "ticktext": [_tick_text(t) for t in ticks]}


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


# ---------------------------------------------------------------- compared figures


def _axis_values(fig: Figure, axis: str) -> tuple[list[float], bool]:
    """The finite y values drawn against y axis `axis` ("y", "y2"), and whether any of them is a bar's."""
    values, bars = [], False
    for trace in fig["data"]:
        if trace.get("type") in ("bar", "scatter") and trace.get("yaxis", "y") == axis:
            values += [v for v in map(finite, trace.get("y") or []) if v is not None]
            bars = bars or trace["type"] == "bar"
    return values, bars


def _z_values(trace: dict) -> list[float]:
    return [v for row in trace.get("z") or [] for v in map(finite, row or []) if v is not None]


def share_axes(figs: Sequence[Figure]) -> list[Figure]:
    """Figures shown side by side to be compared (intact vs ablated, encoder vs decoder): one y range for each
    y axis they all have, and one colour range for their heatmaps, so equal heights and colours mean equal
    values. Changes the figures in place and returns them."""
    figs = [fig for fig in figs if fig and fig.get("data") is not None]
    if len(figs) < 2:
        return list(figs)
    layouts = [fig["layout"] for fig in figs]
    for name in ("yaxis", "yaxis2"):
        if not all(name in layout for layout in layouts):
            continue
        axes = [layout[name] for layout in layouts]
        drawn = [_axis_values(fig, "y" + name.removeprefix("yaxis")) for fig in figs]
        values = [v for vs, _ in drawn for v in vs]
        if not values:
            continue
        if all(axis.get("type") == "log" for axis in axes):
            shared = _log_ticks(values)
        elif all(axis.get("range") == axes[0].get("range") and "range" in axis for axis in axes):
            continue  # a fixed scale already (probabilities, cosines)
        else:
            bars = any(bar for _, bar in drawn) or any(axis.get("rangemode") == "tozero" for axis in axes)
            ranges = [axis["range"] for axis in axes if "range" in axis]
            low = min([*values, *(r[0] for r in ranges), *([0.0] if bars else [])])
            high = max([*values, *(r[1] for r in ranges), *([0.0] if bars else [])])
            pad = (high - low) * 0.05 or abs(high) * 0.05 or 1.0
            shared = {"range": [low if bars and low == 0 else low - pad, high + pad], "autorange": False}
        for axis in axes:
            axis.update(shared)
    _share_colours(figs)
    return list(figs)


def _share_colours(figs: Sequence[Figure]) -> None:
    """One colour range over every heatmap of the figures (the traces' own zmin/zmax or the layout's coloraxis)."""
    scales: list[dict] = []  # dicts holding zmin/zmax or cmin/cmax
    values: list[float] = []
    for fig in figs:
        for trace in fig["data"]:
            if trace.get("type") != "heatmap":
                continue
            values += _z_values(trace)
            if trace.get("coloraxis"):
                holder = fig["layout"].setdefault(trace["coloraxis"], {})
                if not any(holder is s for s in scales):
                    scales.append(holder)
            else:
                scales.append(trace)
    if len(scales) < 2 or not values:
        return
    lows = [s.get("zmin", s.get("cmin")) for s in scales]
    highs = [s.get("zmax", s.get("cmax")) for s in scales]
    low = min([v for v in lows if v is not None] + values)
    high = max([v for v in highs if v is not None] + values)
    for scale in scales:
        keys = ("cmin", "cmax") if "colorscale" in scale and "z" not in scale else ("zmin", "zmax")
        scale[keys[0]], scale[keys[1]] = low, high
        if "z" in scale:
            scale["zauto"] = False
        if scale.get("meta") == "log10":  # colour is log10 of a value: ticks at round values
            scale["colorbar"] = scale.get("colorbar", {}) | log10_colour_ticks([10.0**low, 10.0**high])
