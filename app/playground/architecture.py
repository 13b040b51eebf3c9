"""The playground's architecture diagram: geometry for an SVG of the encoder and decoder stacks.

`architecture_layout()` turns a ModelConfig, the switches in force and the trace's steps into plain
boxes, arrows, skip lines and labels; templates/partials/architecture.html draws them. Nothing here
is language-specific: every visible text is a translation key (`label_key`, `title_parts`) plus
arguments, and an argument given as {"key": ...} is itself translated first. The English rendering
of each box is included too (`label`, `title`) for tests and the JSON API.

Geometry (SVG coordinates, y grows downwards):
- encoder column on the left, decoder column on the right, both drawn bottom-to-top as in the
  2017 paper: embedding + positional encoding at the bottom, layer 1 above it, ...;
- per sublayer, Post-LN shows [sublayer] then [Add & Norm] above it; Pre-LN shows [Norm] below the
  sublayer and a small [Add] above it, i.e. Norm → Sublayer → Add from bottom to top (the norm box
  has the largest y of the three, the add box the smallest);
- skip (residual) lines run in a lane on the outer side of each column (left of the encoder, right
  of the decoder) from just below the sublayer's first box into the side of its add box;
- memory arrows run through the gap between the columns into the left edge of every decoder
  cross-attention box.

Colours live in static/css/architecture.css, keyed by the classes `arch-box kind-<kind>`, `is-off`,
`is-changed`, `is-current` and `is-related`.
"""

from __future__ import annotations

from app.web.i18n import LANGUAGES, labels
from model.config import SUBLAYERS_OF, ModelConfig, Switches

# The diagram's words, from the label catalogue (app/web/labels/<lang>.json, keys arch.*).
ARCH_LABELS: dict[str, dict[str, str]] = {
    lang: {key: text for key, text in labels(lang).items() if key.startswith("arch.")} for lang in LANGUAGES
}

KINDS = ("embedding", "positional", "attention", "cross_attention", "ffn", "norm", "residual_add", "output")

# Geometry, in SVG user units (px at 1:1).
WIDTH = 520
MARGIN = 4
COL_W = 228  # a layer frame's width
LANE_W = 16  # skip lane on the outer side of a column, inside the frame
PAD_IN = 6  # frame padding on the inner side
BOX_H = 18
SMALL_H = 13  # Pre-LN norm and add boxes, +PE markers
ADD_W = 64  # Pre-LN add box
GAP = 2  # between boxes of one layer
FRAME_TOP = 7  # the frame's legend straddles its top border
FRAME_BOTTOM = 4
LAYER_GAP = 10  # between two layer frames
PE_LAYER_GAP = 16  # ... when a +PE marker sits there
SECTION_GAP = 10  # embedding row → first layer, last layer → final norm / output
TOP_MARGIN = 6
CAPTION_H = 16
EMBED_W = 90  # the embedding box; the positional box takes the rest of the row
TEXT_DY = 3.8  # baseline offset that centres 11px text on a row (10px text on small rows: 3.5)

_SUBLAYER_LABEL = {"self_attn": "arch.self_attention", "cross_attn": "arch.cross_attention", "ffn": "arch.ffn"}
_SUBLAYER_KIND = {"self_attn": "attention", "cross_attn": "cross_attention", "ffn": "ffn"}


def _text(key: str, **args) -> dict:
    return {"key": key, "args": args}


def render_text(key: str, args: dict | None = None, lang: str = "en") -> str:
    """The text of a key in a language; an argument {"key": k} is translated first (as the template does)."""
    labels = ARCH_LABELS[lang]
    values = {name: labels[v["key"]] if isinstance(v, dict) else v for name, v in (args or {}).items()}
    return labels[key].format(**values)


def render_title(parts: list[dict], lang: str = "en") -> str:
    return " · ".join(render_text(p["key"], p["args"], lang) for p in parts)


class _Columns:
    """x positions of one stack's column."""

    def __init__(self, stack: str):
        self.stack = stack
        if stack == "encoder":
            self.frame_x = MARGIN
            self.box_x = MARGIN + LANE_W
            self.lane_x = MARGIN + LANE_W / 2
            self.side = -1  # skip lines bulge to the left
        else:
            self.frame_x = WIDTH - MARGIN - COL_W
            self.box_x = self.frame_x + PAD_IN
            self.lane_x = WIDTH - MARGIN - LANE_W / 2
            self.side = 1
        self.box_w = COL_W - LANE_W - PAD_IN
        self.cx = self.box_x + self.box_w / 2

    @property
    def box_right(self) -> float:
        return self.box_x + self.box_w


def architecture_layout(config: ModelConfig, switches: Switches, steps: list[dict], current_step: int,
                        trained_switches: Switches | None = None) -> dict:
    """Boxes, arrows, skip lines, frames and labels of the diagram (see the module docstring).

    `changed` compares with `trained_switches` (the defaults, Switches(), when None). Decoder boxes
    jump to the step of the current step's output position when the current step is a decoder
    step, else to position 0."""
    return _Builder(config, switches, steps, current_step, trained_switches or Switches()).build()


class _Builder:
    def __init__(self, config: ModelConfig, switches: Switches, steps: list[dict], current_step: int,
                 trained: Switches):
        self.config = config
        self.sw = switches
        self.trained = trained
        self.steps = steps
        self.current = steps[max(0, min(current_step, len(steps) - 1))] if steps else None
        cur = self.current
        self.position = cur["position"] if cur and cur["stack"] == "decoder" and cur["position"] is not None else 0
        self.index = {(s["stack"], s["op"], s["layer"], s["sublayer"], s["position"]): s["index"] for s in steps}
        self.pre = switches.norm_position == "pre"
        self.boxes: list[dict] = []
        self.frames: list[dict] = []
        self.arrows: list[dict] = []
        self.skips: list[dict] = []
        self.labels: list[dict] = []
        self.streams: list[dict] = []
        self.anchors: dict[str, dict] = {}  # where memory arrows start and end

    # ---- steps -------------------------------------------------------------------------------------
    def _step(self, stack: str, op: str, layer: int | None = None, sublayer: str | None = None) -> int | None:
        position = self.position if stack == "decoder" else None
        return self.index.get((stack, op, layer, sublayer, position))

    def _is_current(self, stack: str, op: str, layer: int | None = None, sublayer: str | None = None) -> bool:
        cur = self.current
        return bool(cur) and (cur["stack"], cur["op"], cur["layer"], cur["sublayer"]) == (stack, op, layer, sublayer)

    # ---- switches ----------------------------------------------------------------------------------
    def _differs(self, *names: str) -> bool:
        return any(getattr(self.sw, n) != getattr(self.trained, n) for n in names)

    def _residual_differs(self, stack: str, layer: int, kind: str) -> bool:
        return self.sw.residual_on(stack, layer, kind) != self.trained.residual_on(stack, layer, kind)

    def _norm_arg(self) -> dict:
        return {"key": f"arch.norm.{self.sw.norm}"}

    # ---- primitives --------------------------------------------------------------------------------
    def _box(self, *, id: str, stack: str, x: float, y: float, w: float, h: float, kind: str, part: str,
             label_key: str, label_args: dict | None = None, title: list[dict], off: bool = False,
             changed: bool = False, step: int | None = None, current: bool = False, related: bool = False,
             layer: int | None = None, sublayer: str | None = None, op: str | None = None) -> dict:
        assert kind in KINDS, kind
        if changed:
            title = [*title, _text("arch.changed")]
        box = {
            "id": id, "stack": stack, "layer": layer, "sublayer": sublayer, "part": part, "op": op,
            "x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2),
            "tx": round(x + w / 2, 2), "ty": round(y + h / 2 + (TEXT_DY if h >= BOX_H else 3.5), 2),
            "dot_x": round(x + w - 1 if stack == "encoder" else x + 1, 2),
            "kind": kind, "small": h < BOX_H,
            "label_key": label_key, "label_args": label_args or {},
            "label": render_text(label_key, label_args),
            "title_parts": title, "title": render_title(title),
            "off": off, "changed": changed, "current": current, "related": related and not current,
            "step": step,
        }
        self.boxes.append(box)
        return box

    def _where(self, stack: str, layer: int | None) -> dict:
        if layer is None:
            return _text(f"arch.{stack}")
        return _text(f"arch.{stack}_layer", n=layer + 1)

    def _arrow(self, id: str, points: list[tuple[float, float]], kind: str = "flow", **extra) -> dict:
        d = "M" + " L".join(f"{x:g},{y:g}" for x, y in ((round(a, 2), round(b, 2)) for a, b in points))
        arrow = {"id": id, "kind": kind, "points": [[round(x, 2), round(y, 2)] for x, y in points], "d": d,
                 "changed": False, "current": False, **extra}
        self.arrows.append(arrow)
        return arrow

    # ---- one stack ---------------------------------------------------------------------------------
    def _stack(self, stack: str) -> tuple[float, list[dict]]:
        """Lay out one stack with y measured upwards from 0 (negative); returns its top and its layer spans."""
        col = _Columns(stack)
        sw, cfg = self.sw, self.config
        y = 0.0  # the bottom of the next thing to place

        # embedding + positional encoding, side by side
        embed_op = "embed"
        emb = self._box(
            id=f"{stack}.embed", stack=stack, x=col.box_x, y=y - BOX_H, w=EMBED_W, h=BOX_H, kind="embedding",
            part="embed", op=embed_op, label_key="arch.embedding",
            title=[_text(f"arch.{stack}"), _text(f"arch.tip.embed.{stack}", d_model=cfg.d_model)],
            step=self._step(stack, embed_op), current=self._is_current(stack, embed_op),
        )
        pos_op = "pos" if stack == "encoder" else "embed"  # the decoder's embed step shows both
        self._box(
            id=f"{stack}.pos", stack=stack, x=col.box_x + EMBED_W + 4, y=y - BOX_H, w=col.box_w - EMBED_W - 4,
            h=BOX_H, kind="positional", part="pos", op=pos_op, label_key=f"arch.pe.{sw.pos_encoding}",
            title=[_text(f"arch.{stack}"), _text(f"arch.tip.pe.{sw.pos_encoding}")],
            off=sw.pos_encoding == "none", changed=self._differs("pos_encoding"), step=self._step(stack, pos_op),
            current=stack == "encoder" and self._is_current(stack, "pos"),
            related=stack == "decoder" and self._is_current(stack, "embed"),
        )
        stream_bottom = emb["y"]
        below = emb["y"]  # top of the last placed box on the stream
        y -= BOX_H
        show_pe_markers = sw.pos_every_layer or self.trained.pos_every_layer
        layers = []
        for i in range(cfg.n_layers(stack)):
            gap = SECTION_GAP if i == 0 else (PE_LAYER_GAP if show_pe_markers else LAYER_GAP)
            if i > 0 and show_pe_markers:
                self._pe_marker(col, stack, i, y - gap / 2)
            y -= gap
            frame_bottom = y
            y -= FRAME_BOTTOM
            first, last = None, None
            for g, kind in enumerate(SUBLAYERS_OF[stack]):
                if g:
                    y -= GAP
                group = self._sublayer_group(col, stack, i, kind, y)
                first = first or group[0]
                last = group[-1]
                y = last["y"]
            y -= FRAME_TOP
            frame = {"id": f"{stack}.{i}", "stack": stack, "layer": i, "x": col.frame_x, "y": y, "w": COL_W,
                     "h": frame_bottom - y, "current": bool(self.current) and self.current["stack"] == stack
                     and self.current["layer"] == i}
            self.frames.append(frame)
            self.labels.append({
                "id": f"{stack}.{i}.legend", "x": col.frame_x + 8, "y": y + 3, "anchor": "start",
                "cls": "arch-frame-label", "label_key": f"arch.{stack}_layer", "label_args": {"n": i + 1},
                "label": render_text(f"arch.{stack}_layer", {"n": i + 1}),
            })
            self._arrow(f"{stack}.{i}.in", [(col.cx, below), (col.cx, first["y"] + first["h"])])
            below = last["y"]
            layers.append({"first": first, "last": last, "frame": frame})
            self.anchors[f"{stack}.{i}.out"] = {"x": last["x"] + last["w"], "y": last["y"] + last["h"] / 2}

        if self.pre:
            y -= SECTION_GAP
            fin = self._final_norm(col, stack, y)
            self._arrow(f"{stack}.final_norm.in", [(col.cx, below), (col.cx, fin["y"] + fin["h"])])
            below = fin["y"]
            y = fin["y"]
        if stack == "decoder":
            y -= SECTION_GAP
            out = self._box(
                id="decoder.output", stack=stack, x=col.box_x, y=y - BOX_H, w=col.box_w, h=BOX_H, kind="output",
                part="output", op="output", label_key="arch.output",
                title=[_text("arch.decoder"), _text("arch.tip.output", vocab=cfg.tgt_vocab_size)],
                step=self._step(stack, "output"), current=self._is_current(stack, "output"),
            )
            self._arrow("decoder.output.in", [(col.cx, below), (col.cx, out["y"] + out["h"])])
            below = out["y"]
            y = out["y"]
        self.streams.append({"id": f"{stack}.stream", "x": col.cx, "y1": stream_bottom, "y2": below})
        self.anchors[f"{stack}.top"] = {"x": col.cx, "y": below}
        return y, layers

    def _pe_marker(self, col: _Columns, stack: str, layer: int, y_mid: float) -> None:
        on = self.sw.pos_every_layer and self.sw.pos_encoding != "none"
        key = "arch.pe_marker" if on else "arch.pe_marker_off"
        w = 36 if on else 56
        self._box(
            id=f"{stack}.{layer}.pe", stack=stack, layer=layer, x=col.cx + 8, y=y_mid - SMALL_H / 2, w=w, h=SMALL_H,
            kind="positional", part="pe_marker", op="sublayer", label_key=key,
            title=[self._where(stack, layer), _text("arch.tip.pe_marker" if on else "arch.tip.pe_marker_off"),
                   _text(f"arch.tip.pe.{self.sw.pos_encoding}")],
            off=not on, changed=self._differs("pos_every_layer", "pos_encoding"),
            step=self._step(stack, "sublayer", layer, "self_attn"),
        )

    def _sublayer_label(self, stack: str, layer: int, kind: str) -> tuple[str, dict]:
        """The label key of a sublayer box and the tooltip text that explains it."""
        if stack == "decoder" and kind == "self_attn":
            if self.sw.causal_mask:
                return "arch.masked_self_attention", _text("arch.tip.self_attn.decoder")
            return "arch.self_attention_mask_off", _text("arch.tip.self_attn.unmasked")
        if kind == "self_attn":
            return "arch.self_attention", _text("arch.tip.self_attn.encoder")
        if kind == "cross_attn":
            if self.sw.memory == "final":
                return "arch.cross_attention", _text("arch.tip.cross_attn.final")
            m = min(layer, self.config.n_encoder_layers - 1) + 1
            return "arch.cross_attention", _text("arch.tip.cross_attn.same_depth", m=m)
        return "arch.ffn", _text("arch.tip.ffn", d_model=self.config.d_model, d_ff=self.config.d_ff)

    def _sublayer_group(self, col: _Columns, stack: str, i: int, kind: str, y: float) -> list[dict]:
        """The boxes of one sublayer, bottom to top, and its skip line. `y` is the bottom of the group."""
        sw = self.sw
        residual = sw.residual_on(stack, i, kind)
        norm_off = sw.norm == "none"
        where = self._where(stack, i)
        label_key, tip = self._sublayer_label(stack, i, kind)
        sub_changed = (stack == "decoder" and kind == "self_attn" and self._differs("causal_mask")) or (
            kind == "cross_attn" and self._differs("memory"))
        step_sub = self._step(stack, "sublayer", i, kind)
        step_add = self._step(stack, "add_norm", i, kind)
        add_current = self._is_current(stack, "add_norm", i, kind)
        common = {"stack": stack, "layer": i, "sublayer": kind}
        group = []

        def sublayer_box(y_bottom: float) -> dict:
            return self._box(
                id=f"{stack}.{i}.{kind}", **common, x=col.box_x, y=y_bottom - BOX_H, w=col.box_w, h=BOX_H,
                kind=_SUBLAYER_KIND[kind], part="sublayer", op="sublayer", label_key=label_key,
                title=[where, tip], changed=sub_changed, step=step_sub,
                current=self._is_current(stack, "sublayer", i, kind),
            )

        if self.pre:
            norm = self._box(
                id=f"{stack}.{i}.{kind}.norm", **common, x=col.box_x, y=y - SMALL_H, w=col.box_w, h=SMALL_H,
                kind="norm", part="norm", op="add_norm", label_key=f"arch.norm.{sw.norm}",
                title=[where, _text("arch.tip.pre_norm_off") if norm_off
                       else _text("arch.tip.pre_norm", norm=self._norm_arg())],
                off=norm_off, changed=self._differs("norm", "norm_position"), step=step_add, related=add_current,
            )
            sub = sublayer_box(norm["y"] - GAP)
            add = self._box(
                id=f"{stack}.{i}.{kind}.add", **common, x=col.cx - ADD_W / 2, y=sub["y"] - GAP - SMALL_H, w=ADD_W,
                h=SMALL_H, kind="residual_add", part="add", op="add_norm",
                label_key="arch.add" if residual else "arch.add_off",
                title=[where, _text("arch.tip.pre_add" if residual else "arch.tip.pre_add_off")],
                off=not residual, changed=self._residual_differs(stack, i, kind) or self._differs("norm_position"),
                step=step_add, current=add_current,
            )
            group = [norm, sub, add]
        else:
            sub = sublayer_box(y)
            if residual and not norm_off:
                key, args, tip_key = "arch.add_norm", {"norm": self._norm_arg()}, "arch.tip.post"
            elif not norm_off:
                key, args, tip_key = "arch.norm_no_add", {"norm": self._norm_arg()}, "arch.tip.post_no_add"
            elif residual:
                key, args, tip_key = "arch.add_norm_off", {}, "arch.tip.post_norm_off"
            else:
                key, args, tip_key = "arch.add_norm_both_off", {}, "arch.tip.post_both_off"
            add = self._box(
                id=f"{stack}.{i}.{kind}.add_norm", **common, x=col.box_x, y=sub["y"] - GAP - BOX_H, w=col.box_w,
                h=BOX_H, kind="norm", part="add_norm", op="add_norm", label_key=key, label_args=args,
                title=[where, _text(tip_key, **args)], off=norm_off,
                changed=self._residual_differs(stack, i, kind) or self._differs("norm", "norm_position"),
                step=step_add, current=add_current,
            )
            group = [sub, add]

        self._skip(col, stack, i, kind, group[0], add, residual, where)
        return group

    def _skip(self, col: _Columns, stack: str, i: int, kind: str, first: dict, add: dict, on: bool,
              where: dict) -> None:
        """From the stream just below the sublayer's first box, out to the lane, up, and into the add box."""
        lane = col.lane_x
        edge = col.box_x if col.side < 0 else col.box_right
        y0 = first["y"] + first["h"] + GAP / 2
        y1 = add["y"] + add["h"] / 2
        end = add["x"] if col.side < 0 else add["x"] + add["w"]
        sub_arg = {"sublayer": {"key": _SUBLAYER_LABEL[kind]}}
        title = [where, _text("arch.tip.skip" if on else "arch.tip.skip_off", **sub_arg)]
        changed = self._residual_differs(stack, i, kind)
        if changed:
            title.append(_text("arch.changed"))
        self.skips.append({
            "id": f"{stack}.{i}.{kind}.skip", "stack": stack, "layer": i, "sublayer": kind,
            "d": _skip_path(edge, lane, end, y0, y1, col.side),
            "x": lane, "side": col.side, "y1": round(y0, 2), "y2": round(y1, 2), "x_from": edge, "x_to": end,
            "cut": [lane, round((y0 + y1) / 2, 2)], "off": not on, "changed": changed,
            "title_parts": title, "title": render_title(title),
        })

    def _final_norm(self, col: _Columns, stack: str, y: float) -> dict:
        off = self.sw.norm == "none"
        op = "final_norm" if stack == "encoder" else "output"  # the decoder's final norm has no step of its own
        return self._box(
            id=f"{stack}.final_norm", stack=stack, x=col.box_x, y=y - BOX_H, w=col.box_w, h=BOX_H, kind="norm",
            part="final_norm", op=op, label_key="arch.final_norm_off" if off else "arch.final_norm",
            label_args={} if off else {"norm": self._norm_arg()},
            title=[_text(f"arch.{stack}"), _text("arch.tip.final_norm_off") if off
                   else _text("arch.tip.final_norm", norm=self._norm_arg())],
            off=off, changed=self._differs("norm", "norm_position"), step=self._step(stack, op),
            current=stack == "encoder" and self._is_current(stack, "final_norm"),
            related=stack == "decoder" and self._is_current(stack, "output"),
        )

    # ---- memory ------------------------------------------------------------------------------------
    def _memory(self) -> None:
        n_enc = self.config.n_encoder_layers
        gap_left = MARGIN + COL_W
        gap_right = WIDTH - MARGIN - COL_W
        top = self.anchors["encoder.top"]
        out_y = top["y"] - 10
        # one lane per encoder layer, the deepest nearest the encoder, so the lines do not cross
        step = min(7.0, (gap_right - gap_left - 16) / max(n_enc - 1, 1))
        final_lane = gap_left + 8 if self.sw.memory == "same_depth" else (gap_left + gap_right) / 2
        changed = self._differs("memory")
        cur = self.current
        for i in range(self.config.n_decoder_layers):
            target = next(b for b in self.boxes if b["id"] == f"decoder.{i}.cross_attn")
            ty = target["y"] + target["h"] / 2
            tx = target["x"]
            j = n_enc - 1 if self.sw.memory == "final" else min(i, n_enc - 1)
            if j == n_enc - 1:
                points = [(top["x"], top["y"]), (top["x"], out_y), (final_lane, out_y), (final_lane, ty), (tx, ty)]
                source = "final"
                tip = _text("arch.tip.memory.final", n=i + 1)
            else:
                lane = gap_left + 8 + (n_enc - 1 - j) * step
                src = self.anchors[f"encoder.{j}.out"]
                points = [(src["x"], src["y"]), (lane, src["y"]), (lane, ty), (tx, ty)]
                source = "layer"
                tip = _text("arch.tip.memory.layer", m=j + 1, n=i + 1)
            title = [tip, _text("arch.changed")] if changed else [tip]
            self._arrow(
                f"memory.{i}", points, kind="memory", source=source, source_layer=j, target_layer=i,
                changed=changed, title_parts=title, title=render_title(title),
                current=bool(cur) and (cur["stack"], cur["layer"], cur["sublayer"]) == ("decoder", i, "cross_attn"),
            )

    # ---- all ---------------------------------------------------------------------------------------
    def build(self) -> dict:
        enc_top, _ = self._stack("encoder")
        dec_top, _ = self._stack("decoder")
        # the encoder's output line rises above its stack before turning to the decoder
        top = min(enc_top - 12, dec_top)
        shift = TOP_MARGIN - top
        self._shift(shift)
        self._memory()
        height = shift + CAPTION_H
        for stack in ("encoder", "decoder"):
            col = _Columns(stack)
            if stack == "decoder" and self.current and self.current["stack"] == "decoder":
                key, args = "arch.decoder_at", {"n": self.position + 1}
            else:
                key, args = f"arch.{stack}", {}
            self.labels.append({"id": f"{stack}.caption", "x": col.cx, "y": height - 5, "anchor": "middle",
                                "cls": "arch-caption", "label_key": key, "label_args": args,
                                "label": render_text(key, args)})
        title = [_text("arch.title", n_enc=self.config.n_encoder_layers, n_dec=self.config.n_decoder_layers)]
        return {
            "id": "arch",
            "width": WIDTH,
            "height": round(height, 2),
            "title_parts": title,
            "title": render_title(title),
            "desc_key": "arch.desc",
            "frames": self.frames,
            "streams": self.streams,
            "boxes": self.boxes,
            "arrows": self.arrows,
            "skips": self.skips,
            "labels": self.labels,
        }

    def _shift(self, dy: float) -> None:
        """Move everything laid out so far down by dy (the stacks were built upwards from y = 0)."""

        def sy(v: float) -> float:
            return round(v + dy, 2)

        for item in self.boxes:
            item["y"], item["ty"] = sy(item["y"]), sy(item["ty"])
        for item in self.frames + self.labels:
            item["y"] = sy(item["y"])
        for item in self.streams:
            item["y1"], item["y2"] = sy(item["y1"]), sy(item["y2"])
        for item in self.anchors.values():
            item["y"] = sy(item["y"])
        for item in self.arrows:
            item["points"] = [[x, sy(y)] for x, y in item["points"]]
            item["d"] = "M" + " L".join(f"{x:g},{y:g}" for x, y in item["points"])
        for item in self.skips:
            y0, y1 = item["y1"], item["y2"]
            item["y1"], item["y2"] = sy(y0), sy(y1)
            item["cut"] = [item["cut"][0], sy(item["cut"][1])]
            item["d"] = _skip_path(item["x_from"], item["x"], item["x_to"], item["y1"], item["y2"], item["side"])


def _skip_path(edge: float, lane: float, end: float, y0: float, y1: float, side: int, r: float = 5.0) -> str:
    """Out from the column edge at y0 to the lane, up the lane, and back in at y1 (rounded corners)."""
    return (f"M{edge:g},{y0:g} H{lane - side * r:g} Q{lane:g},{y0:g} {lane:g},{y0 - r:g} "
            f"V{y1 + r:g} Q{lane:g},{y1:g} {lane - side * r:g},{y1:g} H{end:g}")
