"""The diagram's sizes, all known before anything is placed.

Horizontally everything is fixed: two columns (`Columns`) with the gap for the memory arrows between them, or, for
a one-stack family (GPT, BERT), its one column in the middle.
Vertically each stack is a column of slots, bottom to top: the embedding row, one frame per layer, the
Pre-LN final norm, the decoder's output. A slot has a height and a gap below it; a layer frame's height
follows from its sublayers under the norm position in force, and the gap below a frame widens when a
+PE marker sits in it. `measure()` adds the slots up: both stacks stand on one ground line, low enough
for the taller of them (the encoder needs headroom for its output line), with the caption below it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from model.config import ModelConfig, Switches
from model.stacks import ENCODER_DECODER, FAMILIES, StackSpec

STACKS = tuple(spec.name for spec in ENCODER_DECODER)  # the 2017 family's stacks (model/stacks.py)

# Geometry, in SVG user units (px at 1:1).
WIDTH = 520
MARGIN = 4
COL_W = 228  # a layer frame's width
LANE_W = 16  # skip lane on the outer side of a column, inside the frame
PAD_IN = 6  # frame padding on the inner side
BOX_H = 18
SMALL_H = 13  # Pre-LN norm and add boxes, +PE markers
ADD_W = 64  # Pre-LN add box
PE_MARKER_W = 36
PE_MARKER_OFF_W = 56  # "+PE off" is longer
GAP = 2  # between boxes of one layer
FRAME_TOP = 7  # the frame's legend straddles its top border
FRAME_BOTTOM = 4
LAYER_GAP = 10  # between two layer frames
PE_LAYER_GAP = 16  # ... when a +PE marker sits there
SECTION_GAP = 10  # embedding row → first layer, last layer → final norm / output
TOP_MARGIN = 6
MEMORY_RISE = 10  # the encoder's output line rises this far above its stack before turning to the decoder
MEMORY_HEADROOM = 12  # room kept above the encoder stack for that line
MEMORY_LANE_INSET = 8  # memory lanes keep this far from either column
MEMORY_LANE_STEP = 7.0  # at most, between the lanes of two encoder layers
CAPTION_H = 16
CAPTION_DESCENT = 5  # the caption's baseline sits this far above the diagram's bottom edge
EMBED_W = 90  # the embedding box; the positional box takes the rest of the row
TEXT_DY = 3.8  # baseline offset that centres 11px text on a row
SMALL_TEXT_DY = 3.5  # ... and 10px text on a small row


class Columns:
    """x positions of one stack's column."""

    def __init__(self, stack: str, alone: bool = False):
        self.stack = stack
        if alone:  # a one-stack family: its column in the middle, its skip lane on its stack's side
            self.frame_x = (WIDTH - COL_W) / 2
            left = stack == "encoder"
            self.box_x = self.frame_x + (LANE_W if left else PAD_IN)
            self.lane_x = self.frame_x + (LANE_W / 2 if left else COL_W - LANE_W / 2)
            self.side = -1 if left else 1
        elif stack == "encoder":
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


def sublayer_rows(pre: bool) -> dict[str, float]:
    """The height of each box of one sublayer, by part, bottom to top.

    Post-LN: the sublayer, then Add & Norm; Pre-LN: Norm, the sublayer, then a small Add."""
    if pre:
        return {"norm": SMALL_H, "sublayer": BOX_H, "add": SMALL_H}
    return {"sublayer": BOX_H, "add_norm": BOX_H}


def stacked_height(heights: Iterable[float]) -> float:
    """The height of boxes stacked GAP apart."""
    heights = list(heights)
    return sum(heights) + GAP * (len(heights) - 1)


def frame_height(spec: StackSpec, pre: bool) -> float:
    """A layer frame: its sublayers GAP apart, with the frame's padding below and its legend above."""
    sublayer = stacked_height(sublayer_rows(pre).values())
    return FRAME_BOTTOM + stacked_height([sublayer] * len(spec.sublayers)) + FRAME_TOP


@dataclass(frozen=True)
class Slot:
    """One element of a stack's column: the embedding row, a layer frame, the final norm or the output."""

    stack: str
    part: str  # "embed", "layer", "final_norm" or "output"
    height: float
    gap_below: float = 0
    layer: int | None = None
    pe_marker_below: bool = False  # a +PE marker sits in the middle of the gap below

    @property
    def id(self) -> str:
        """The frame's id for a layer, the box's id otherwise."""
        return f"{self.stack}.{self.part if self.layer is None else self.layer}"


def stack_slots(spec: StackSpec, n_layers: int, pre: bool, pe_markers: bool, last: bool) -> list[Slot]:
    """The slots of one stack, bottom to top; the family's last stack ends in the output."""
    stack = spec.name
    slots = [Slot(stack, "embed", BOX_H)]
    frame = frame_height(spec, pre)
    for i in range(n_layers):
        marker = i > 0 and pe_markers  # the first layer's positions come from the embedding row
        gap = SECTION_GAP if i == 0 else PE_LAYER_GAP if marker else LAYER_GAP
        slots.append(Slot(stack, "layer", frame, gap, layer=i, pe_marker_below=marker))
    if pre:
        slots.append(Slot(stack, "final_norm", BOX_H, SECTION_GAP))
    if last:
        slots.append(Slot(stack, "output", BOX_H, SECTION_GAP))
    return slots


@dataclass(frozen=True)
class Sizes:
    slots: dict[str, list[Slot]]  # by stack, bottom to top
    ground: float  # the y both stacks stand on: the bottom of their embedding rows
    height: float  # the whole diagram's, caption included


def measure(config: ModelConfig, switches: Switches, trained: Switches) -> Sizes:
    """Every slot of both stacks, the ground line they stand on and the diagram's height."""
    pre = switches.norm_position == "pre"
    # markers trained with but now switched off stay visible, marked off
    pe_markers = switches.pos_every_layer or trained.pos_every_layer
    family = FAMILIES[config.arch]
    slots = {spec.name: stack_slots(spec, config.n_layers(spec.name), pre, pe_markers, last=spec == family[-1])
             for spec in family}
    tall = {stack: sum(s.gap_below + s.height for s in column) for stack, column in slots.items()}
    # the memory's stack (the encoder of an encoder-decoder) needs headroom for its output line
    headroom = {family[0].name: MEMORY_HEADROOM} if len(family) > 1 else {}
    # a float, so every y derived from it is one too (the SVG has always said y="40.0")
    ground = float(TOP_MARGIN + max(height + headroom.get(stack, 0) for stack, height in tall.items()))
    return Sizes(slots, ground, ground + CAPTION_H)
