"""Placement: each stack in one pass from the ground line upwards, every element at the size measure.py gave it.

Every box, frame, arrow and skip line is created once, at its final coordinates (SVG y grows downwards).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.playground.architecture.measure import (
    ADD_W,
    BOX_H,
    CAPTION_DESCENT,
    COL_W,
    EMBED_W,
    FRAME_BOTTOM,
    GAP,
    MEMORY_LANE_INSET,
    MEMORY_LANE_STEP,
    MEMORY_RISE,
    PE_MARKER_OFF_W,
    PE_MARKER_W,
    SMALL_H,
    SMALL_TEXT_DY,
    TEXT_DY,
    WIDTH,
    Columns,
    Slot,
    measure,
    stacked_height,
    sublayer_rows,
)
from app.playground.architecture.text import (
    SUBLAYER_LABEL,
    add_norm_words,
    norm_name,
    render_text,
    render_title,
    sublayer_words,
    text,
)
from model.config import ModelConfig, Switches
from model.stacks import FAMILIES


@dataclass(frozen=True)
class Part:
    """What a box draws: its stack, its part of the diagram, the step kind it opens, and its layer and sublayer."""

    stack: str
    part: str
    op: str | None = None
    layer: int | None = None
    sublayer: str | None = None


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float


@dataclass(frozen=True)
class Look:
    """How a box is drawn: off, changed from training, the current step or related to it, and the step it opens."""

    off: bool = False
    changed: bool = False
    current: bool = False
    related: bool = False
    step: int | None = None


KINDS = ("embedding", "positional", "attention", "cross_attention", "ffn", "norm", "residual_add", "output")

_SUBLAYER_KIND = {"self_attn": "attention", "cross_attn": "cross_attention", "ffn": "ffn"}


def architecture_layout(config: ModelConfig, switches: Switches, steps: list[dict], current_step: int,
                        trained_switches: Switches | None = None) -> dict:
    """Boxes, arrows, skip lines, frames and labels of the diagram (see the package docstring).

    `changed` compares with `trained_switches` (the defaults, Switches(), when None). Decoder boxes
    jump to the step of the current step's output position when the current step is a decoder
    step, else to position 0."""
    return _Builder(config, switches, steps, current_step, trained_switches or Switches()).build()


def _rows_upwards(bottom: float, heights: dict[str, float]) -> dict[str, dict]:
    """{"y": top, "h": height} of each row, stacked GAP apart upwards from `bottom` in the order given."""
    rows = {}
    for part, h in heights.items():
        rows[part] = {"y": bottom - h, "h": h}
        bottom -= h + GAP
    return rows


class _Builder:
    def __init__(self, config: ModelConfig, switches: Switches, steps: list[dict], current_step: int,
                 trained: Switches):
        self.config = config
        self.sw = switches
        self.trained = trained
        self.sizes = measure(config, switches, trained)
        self.family = FAMILIES[config.arch]
        self.alone = len(self.family) == 1  # a GPT or a BERT: one column, no memory
        self.output_stack = self.family[-1].name
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
        self.anchors: dict[str, dict] = {}  # where memory arrows start

    # ---- steps -------------------------------------------------------------------------------------
    def _step(self, stack: str, op: str, layer: int | None = None, sublayer: str | None = None) -> int | None:
        position = self.position if stack == "decoder" else None
        return self.index.get((stack, op, layer, sublayer, position))

    def _family_tip(self, key: str) -> str:
        """A GPT embeds its prompt as well, a BERT answers at every position: their own tooltip where it differs."""
        return f"{key}.{self.config.arch}" if self.alone else key

    def _is_current(self, stack: str, op: str, layer: int | None = None, sublayer: str | None = None) -> bool:
        cur = self.current
        return bool(cur) and (cur["stack"], cur["op"], cur["layer"], cur["sublayer"]) == (stack, op, layer, sublayer)

    # ---- switches ----------------------------------------------------------------------------------
    def _differs(self, *names: str) -> bool:
        return any(getattr(self.sw, n) != getattr(self.trained, n) for n in names)

    def _residual_differs(self, stack: str, layer: int, kind: str) -> bool:
        return self.sw.residual_on(stack, layer, kind) != self.trained.residual_on(stack, layer, kind)

    # ---- primitives --------------------------------------------------------------------------------
    def _box(self, id: str, at: Part, rect: Rect, kind: str, label_key: str, title: list[dict],
             label_args: dict | None = None, look: Look = Look()) -> dict:
        assert kind in KINDS, kind
        stack, (x, y, w, h) = at.stack, (rect.x, rect.y, rect.w, rect.h)
        if at.layer is not None and at.sublayer:  # the name residual_off and the API use (layers from 0)
            title = [*title, text("arch.api_name", name=f"{stack}.{at.layer}.{at.sublayer}")]
        if look.changed:
            title = [*title, text("arch.changed")]
        box = {
            "id": id, "stack": stack, "layer": at.layer, "sublayer": at.sublayer, "part": at.part, "op": at.op,
            "x": round(x, 2), "y": round(y, 2), "w": round(w, 2), "h": round(h, 2),
            "tx": round(x + w / 2, 2), "ty": round(y + h / 2 + (TEXT_DY if h >= BOX_H else SMALL_TEXT_DY), 2),
            "dot_x": round(x + w - 1 if stack == "encoder" else x + 1, 2),
            "kind": kind, "small": h < BOX_H,
            "label_key": label_key, "label_args": label_args or {},
            "label": render_text(label_key, label_args),
            "title_parts": title, "title": render_title(title),
            "off": look.off, "changed": look.changed, "current": look.current,
            "related": look.related and not look.current, "step": look.step,
        }
        self.boxes.append(box)
        return box

    def _where(self, stack: str, layer: int | None) -> dict:
        if layer is None:
            return text(f"arch.{stack}")
        return text(f"arch.{stack}_layer", n=layer + 1)

    def _arrow(self, id: str, points: list[tuple[float, float]], kind: str = "flow", **extra) -> None:
        d = "M" + " L".join(f"{x:g},{y:g}" for x, y in ((round(a, 2), round(b, 2)) for a, b in points))
        self.arrows.append({"id": id, "kind": kind, "points": [[round(x, 2), round(y, 2)] for x, y in points],
                            "d": d, "changed": False, "current": False, **extra})

    # ---- one stack ---------------------------------------------------------------------------------
    def _stack(self, stack: str) -> None:
        """Place the stack's slots from the ground line upwards, and the stream with its arrows through them."""
        col = self._columns(stack)
        bottom = self.sizes.ground
        stream_start = stream_top = None  # the stream runs from the embedding row's top to the last slot's top
        for slot in self.sizes.slots[stack]:
            if slot.pe_marker_below:
                self._pe_marker(col, stack, slot.layer, bottom - slot.gap_below / 2)
            bottom -= slot.gap_below
            top = bottom - slot.height
            first, last = self._place(slot, col, top, bottom)
            if stream_top is None:
                stream_start = top
            else:
                self._arrow(f"{slot.id}.in", [(col.cx, stream_top), (col.cx, first["y"] + first["h"])])
            stream_top = last["y"]
            bottom = top
        self.streams.append({"id": f"{stack}.stream", "x": col.cx, "y1": stream_start, "y2": stream_top})
        self.anchors[f"{stack}.top"] = {"x": col.cx, "y": stream_top}

    def _columns(self, stack: str) -> Columns:
        return Columns(stack, alone=self.alone)

    def _place(self, slot: Slot, col: Columns, top: float, bottom: float) -> tuple[dict, dict]:
        """Place one slot between `top` and `bottom`; returns its lowest and its highest box on the stream."""
        if slot.part == "layer":
            return self._layer(col, slot, top, bottom)
        if slot.part == "embed":
            box = self._embedding_row(col, slot.stack, top)
        elif slot.part == "final_norm":
            box = self._final_norm(col, slot.stack, top)
        else:
            box = self._output(col, slot.stack, top)
        return box, box

    def _embedding_row(self, col: Columns, stack: str, y: float) -> dict:
        """Embedding and positional encoding side by side; returns the embedding box."""
        cfg, sw = self.config, self.sw
        embed_op = "embed"
        emb = self._box(
            f"{stack}.embed", Part(stack, "embed", embed_op), Rect(col.box_x, y, EMBED_W, BOX_H), "embedding",
            "arch.embedding",
            [text(f"arch.{stack}"), text(self._family_tip(f"arch.tip.embed.{stack}"), d_model=cfg.d_model)],
            look=Look(step=self._step(stack, embed_op), current=self._is_current(stack, embed_op)),
        )
        # The 2017 decoder's embed step shows both; every other stack has a step of its own for the position.
        own_pos_step = stack == "encoder" or self.alone
        pos_op = "pos" if own_pos_step else "embed"
        self._box(
            f"{stack}.pos", Part(stack, "pos", pos_op),
            Rect(col.box_x + EMBED_W + 4, y, col.box_w - EMBED_W - 4, BOX_H), "positional",
            f"arch.pe.{sw.pos_encoding}",
            [text(f"arch.{stack}"), text(f"arch.tip.pe.{sw.pos_encoding}")],
            look=Look(off=sw.pos_encoding == "none", changed=self._differs("pos_encoding"),
                      step=self._step(stack, pos_op), current=own_pos_step and self._is_current(stack, "pos"),
                      related=not own_pos_step and self._is_current(stack, "embed")),
        )
        return emb

    def _layer(self, col: Columns, slot: Slot, top: float, bottom: float) -> tuple[dict, dict]:
        """A layer's frame and legend, and its sublayers from the frame's bottom padding upwards."""
        stack, i = slot.stack, slot.layer
        cur = self.current
        self.frames.append({"id": slot.id, "stack": stack, "layer": i, "x": col.frame_x, "y": top, "w": COL_W,
                            "h": bottom - top, "current": bool(cur) and cur["stack"] == stack and cur["layer"] == i})
        self.labels.append({
            "id": f"{slot.id}.legend", "x": col.frame_x + 8, "y": top + 3, "anchor": "start",
            "cls": "arch-frame-label", "label_key": f"arch.{stack}_layer", "label_args": {"n": i + 1},
            "label": render_text(f"arch.{stack}_layer", {"n": i + 1}),
        })
        sublayer_h = stacked_height(sublayer_rows(self.pre).values())
        sublayers = next(spec.sublayers for spec in self.family if spec.name == stack)
        spans = _rows_upwards(bottom - FRAME_BOTTOM, dict.fromkeys(sublayers, sublayer_h))
        groups = [self._sublayer_group(col, stack, i, kind, span["y"] + span["h"]) for kind, span in spans.items()]
        first, last = groups[0][0], groups[-1][-1]
        self.anchors[f"{slot.id}.out"] = {"x": last["x"] + last["w"], "y": last["y"] + last["h"] / 2}
        return first, last

    def _pe_marker(self, col: Columns, stack: str, layer: int, y_mid: float) -> None:
        on = self.sw.pos_every_layer and self.sw.pos_encoding != "none"
        self._box(
            f"{stack}.{layer}.pe", Part(stack, "pe_marker", "sublayer", layer),
            Rect(col.cx + 8, y_mid - SMALL_H / 2, PE_MARKER_W if on else PE_MARKER_OFF_W, SMALL_H), "positional",
            "arch.pe_marker" if on else "arch.pe_marker_off",
            [self._where(stack, layer), text("arch.tip.pe_marker" if on else "arch.tip.pe_marker_off"),
             text(f"arch.tip.pe.{self.sw.pos_encoding}")],
            look=Look(off=not on, changed=self._differs("pos_every_layer", "pos_encoding"),
                      step=self._step(stack, "sublayer", layer, "self_attn")),
        )

    def _sublayer_group(self, col: Columns, stack: str, i: int, kind: str, bottom: float) -> list[dict]:
        """The boxes of one sublayer, bottom to top, and its skip line."""
        sw = self.sw
        rows = _rows_upwards(bottom, sublayer_rows(self.pre))
        residual = sw.residual_on(stack, i, kind)
        norm_off = sw.norm == "none"
        where = self._where(stack, i)
        label_key, tip = sublayer_words(sw, self.config, stack, i, kind)
        sub_changed = (stack == "decoder" and kind == "self_attn" and self._differs("causal_mask")) or (
            kind == "cross_attn" and self._differs("memory"))
        step_add = self._step(stack, "add_norm", i, kind)
        add_current = self._is_current(stack, "add_norm", i, kind)

        def part(name: str, op: str) -> Part:
            return Part(stack, name, op, i, kind)

        def across(row: str, x: float = col.box_x, w: float = col.box_w) -> Rect:
            return Rect(x, rows[row]["y"], w, rows[row]["h"])

        def sublayer_box() -> dict:
            return self._box(
                f"{stack}.{i}.{kind}", part("sublayer", "sublayer"), across("sublayer"), _SUBLAYER_KIND[kind],
                label_key, [where, tip],
                look=Look(changed=sub_changed, step=self._step(stack, "sublayer", i, kind),
                          current=self._is_current(stack, "sublayer", i, kind)),
            )

        if self.pre:  # boxes are listed (and drawn) bottom to top
            norm = self._box(
                f"{stack}.{i}.{kind}.norm", part("norm", "add_norm"), across("norm"), "norm", f"arch.norm.{sw.norm}",
                [where, text("arch.tip.pre_norm_off") if norm_off
                 else text("arch.tip.pre_norm", norm=norm_name(sw.norm))],
                look=Look(off=norm_off, changed=self._differs("norm", "norm_position"), step=step_add,
                          related=add_current),
            )
            sub = sublayer_box()
            add = self._box(
                f"{stack}.{i}.{kind}.add", part("add", "add_norm"), across("add", col.cx - ADD_W / 2, ADD_W),
                "residual_add", "arch.add" if residual else "arch.add_off",
                [where, text("arch.tip.pre_add" if residual else "arch.tip.pre_add_off")],
                look=Look(off=not residual,
                          changed=self._residual_differs(stack, i, kind) or self._differs("norm_position"),
                          step=step_add, current=add_current),
            )
            group = [norm, sub, add]
        else:
            sub = sublayer_box()
            key, args, tip_key = add_norm_words(residual, sw.norm)
            add = self._box(
                f"{stack}.{i}.{kind}.add_norm", part("add_norm", "add_norm"), across("add_norm"), "norm", key,
                [where, text(tip_key, **args)], label_args=args,
                look=Look(off=norm_off, step=step_add, current=add_current,
                          changed=self._residual_differs(stack, i, kind) or self._differs("norm", "norm_position")),
            )
            group = [sub, add]

        self._skip(col, stack, i, kind, group[0], add, residual, where)
        return group

    def _skip(self, col: Columns, stack: str, i: int, kind: str, first: dict, add: dict, on: bool,
              where: dict) -> None:
        """From the stream just below the sublayer's first box, out to the lane, up, and into the add box."""
        lane = col.lane_x
        edge = col.box_x if col.side < 0 else col.box_right
        y0 = round(first["y"] + first["h"] + GAP / 2, 2)
        y1 = round(add["y"] + add["h"] / 2, 2)
        end = add["x"] if col.side < 0 else add["x"] + add["w"]
        sub_arg = {"sublayer": {"key": SUBLAYER_LABEL[kind]}}
        title = [where, text("arch.tip.skip" if on else "arch.tip.skip_off", **sub_arg),
                 text("arch.api_name", name=f"{stack}.{i}.{kind}")]
        changed = self._residual_differs(stack, i, kind)
        if changed:
            title.append(text("arch.changed"))
        self.skips.append({
            "id": f"{stack}.{i}.{kind}.skip", "stack": stack, "layer": i, "sublayer": kind,
            "d": _skip_path(edge, lane, end, y0, y1, col.side),
            "x": lane, "side": col.side, "y1": y0, "y2": y1, "x_from": edge, "x_to": end,
            "cut": [lane, round((y0 + y1) / 2, 2)], "off": not on, "changed": changed,
            "title_parts": title, "title": render_title(title),
        })

    def _final_norm(self, col: Columns, stack: str, y: float) -> dict:
        off = self.sw.norm == "none"
        # the output stack's final norm has no step of its own: it is part of the output step
        last = stack == self.output_stack
        op = "output" if last else "final_norm"
        return self._box(
            f"{stack}.final_norm", Part(stack, "final_norm", op), Rect(col.box_x, y, col.box_w, BOX_H), "norm",
            "arch.final_norm_off" if off else "arch.final_norm",
            [text(f"arch.{stack}"), text("arch.tip.final_norm_off") if off
             else text("arch.tip.final_norm", norm=norm_name(self.sw.norm))],
            label_args={} if off else {"norm": norm_name(self.sw.norm)},
            look=Look(off=off, changed=self._differs("norm", "norm_position"), step=self._step(stack, op),
                      current=not last and self._is_current(stack, "final_norm"),
                      related=last and self._is_current(stack, "output")),
        )

    def _output(self, col: Columns, stack: str, y: float) -> dict:
        return self._box(
            f"{stack}.output", Part(stack, "output", "output"), Rect(col.box_x, y, col.box_w, BOX_H), "output",
            "arch.output",
            [text(f"arch.{stack}"), text(self._family_tip("arch.tip.output"), vocab=self.config.tgt_vocab_size)],
            look=Look(step=self._step(stack, "output"), current=self._is_current(stack, "output")),
        )

    # ---- memory ------------------------------------------------------------------------------------
    def _memory(self) -> None:
        """One arrow per decoder layer, through the gap between the columns into its cross-attention box."""
        n_enc = self.config.n_encoder_layers
        gap_left = Columns("encoder").frame_x + COL_W
        gap_right = Columns("decoder").frame_x
        top = self.anchors["encoder.top"]
        out_y = top["y"] - MEMORY_RISE
        # one lane per encoder layer, the deepest nearest the encoder, so the lines do not cross
        step = min(MEMORY_LANE_STEP, (gap_right - gap_left - 2 * MEMORY_LANE_INSET) / max(n_enc - 1, 1))
        first_lane = gap_left + MEMORY_LANE_INSET
        final_lane = first_lane if self.sw.memory == "same_depth" else (gap_left + gap_right) / 2
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
                tip = text("arch.tip.memory.final", n=i + 1)
            else:
                lane = first_lane + (n_enc - 1 - j) * step
                src = self.anchors[f"encoder.{j}.out"]
                points = [(src["x"], src["y"]), (lane, src["y"]), (lane, ty), (tx, ty)]
                source = "layer"
                tip = text("arch.tip.memory.layer", m=j + 1, n=i + 1)
            title = [tip, text("arch.changed")] if changed else [tip]
            self._arrow(
                f"memory.{i}", points, kind="memory", source=source, source_layer=j, target_layer=i,
                changed=changed, title_parts=title, title=render_title(title),
                current=bool(cur) and (cur["stack"], cur["layer"], cur["sublayer"]) == ("decoder", i, "cross_attn"),
            )

    # ---- all ---------------------------------------------------------------------------------------
    def build(self) -> dict:
        stacks = [spec.name for spec in self.family]
        for stack in stacks:
            self._stack(stack)
        if not self.alone:
            self._memory()
        for stack in stacks:
            if stack == "decoder" and self.current and self.current["stack"] == "decoder":
                key, args = "arch.decoder_at", {"n": self.position + 1}
            else:
                key, args = f"arch.{stack}", {}
            self.labels.append({"id": f"{stack}.caption", "x": self._columns(stack).cx,
                                "y": self.sizes.height - CAPTION_DESCENT, "anchor": "middle", "cls": "arch-caption",
                                "label_key": key, "label_args": args, "label": render_text(key, args)})
        if self.alone:
            title = [text(f"arch.title_{self.config.arch}", n=self.config.n_layers(stacks[0]))]
        else:
            title = [text("arch.title", n_enc=self.config.n_encoder_layers, n_dec=self.config.n_decoder_layers)]
        return {
            "id": "arch",
            "width": WIDTH,
            "height": round(self.sizes.height, 2),
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


def _skip_path(edge: float, lane: float, end: float, y0: float, y1: float, side: int, r: float = 5.0) -> str:
    """Out from the column edge at y0 to the lane, up the lane, and back in at y1 (rounded corners)."""
    return (f"M{edge:g},{y0:g} H{lane - side * r:g} Q{lane:g},{y0:g} {lane:g},{y0 - r:g} "
            f"V{y1 + r:g} Q{lane:g},{y1:g} {lane - side * r:g},{y1:g} H{end:g}")
