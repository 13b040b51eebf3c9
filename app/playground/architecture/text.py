"""The diagram's words: every visible text is a catalogue key (arch.*) plus arguments, never a sentence."""

from __future__ import annotations

from collections.abc import Callable

from app.web.i18n import LANGUAGES, labels, registered_title
from model.config import ModelConfig, Switches

# The diagram's words, from the label catalogue (app/web/labels/<lang>.json, keys arch.*).
ARCH_LABELS: dict[str, dict[str, str]] = {
    lang: {key: text for key, text in labels(lang).items() if key.startswith("arch.")} for lang in LANGUAGES
}
SUBLAYER_LABEL = {"self_attn": "arch.self_attention", "cross_attn": "arch.cross_attention", "ffn": "arch.ffn"}


def text(key: str, **args) -> dict:
    """A translatable text: the key and its arguments; an argument {"key": k} is itself translated."""
    return {"key": key, "args": args}


def render_text(key: str, args: dict | None = None, lang: str = "en") -> str:
    """The text of a key in a language; an argument {"key": k} is translated first (as the template does)."""
    def word(k: str) -> str:
        return ARCH_LABELS[lang].get(k) or registered_title(k) or k

    values = {name: word(v["key"]) if isinstance(v, dict) else v for name, v in (args or {}).items()}
    return word(key).format(**values)


def render_title(parts: list[dict], lang: str = "en") -> str:
    return " · ".join(render_text(p["key"], p["args"], lang) for p in parts)


def in_language(layout: dict, t: Callable[..., str]) -> dict:
    """The layout with every element's words put through the translator `t(key, **args)` (`label_text`,
    `title_text`; an argument {"key": k} is translated first), here once rather than by a template macro per box:
    the diagram is drawn for every new state, and the macros were most of its time."""
    def words(key: str, args: dict | None) -> str:
        return t(key, **{name: t(v["key"]) if isinstance(v, dict) else v for name, v in (args or {}).items()})

    def title(parts: list[dict]) -> str:
        return " · ".join(words(p["key"], p["args"]) for p in parts)

    for item in (*layout["boxes"], *layout["labels"], *layout["skips"], *layout["arrows"], *layout["frames"]):
        if "label_key" in item:
            item["label_text"] = words(item["label_key"], item.get("label_args"))
        if "title_parts" in item:
            item["title_text"] = title(item["title_parts"])
    layout["title_text"] = title(layout["title_parts"])
    layout["desc_text"] = t(layout["desc_key"])
    return layout


def norm_name(norm: str) -> dict:
    """The norm in force as an argument, e.g. "LayerNorm" in "Add & {norm}"."""
    return {"key": f"arch.norm.{norm}"}


def sublayer_words(sw: Switches, config: ModelConfig, stack: str, layer: int, kind: str) -> tuple[str, dict]:
    """The label key of a sublayer box and the tooltip text that explains it."""
    if stack == "decoder" and kind == "self_attn":
        if sw.causal_mask:
            return "arch.masked_self_attention", text("arch.tip.self_attn.decoder")
        return "arch.self_attention_mask_off", text("arch.tip.self_attn.unmasked")
    if kind == "self_attn":
        return "arch.self_attention", text("arch.tip.self_attn.encoder")
    if kind == "cross_attn":
        if sw.memory == "final":
            return "arch.cross_attention", text("arch.tip.cross_attn.final")
        m = min(layer, config.n_encoder_layers - 1) + 1
        return "arch.cross_attention", text("arch.tip.cross_attn.same_depth", m=m)
    return "arch.ffn", text("arch.tip.ffn", d_model=config.d_model, d_ff=config.d_ff)


def add_norm_words(residual: bool, norm: str) -> tuple[str, dict, str]:
    """A Post-LN Add & Norm box: its label key, the label's arguments and its tooltip key, by what is off."""
    if norm == "none":
        if residual:
            return "arch.add_norm_off", {}, "arch.tip.post_norm_off"
        return "arch.add_norm_both_off", {}, "arch.tip.post_both_off"
    if residual:
        return "arch.add_norm", {"norm": norm_name(norm)}, "arch.tip.post"
    return "arch.norm_no_add", {"norm": norm_name(norm)}, "arch.tip.post_no_add"
