"""The playground's architecture diagram: geometry for an SVG of the encoder and decoder stacks.

`architecture_layout()` turns a ModelConfig, the switches in force and the trace's steps into plain
boxes, arrows, skip lines and labels; templates/partials/architecture.html draws them. Nothing here
is language-specific: every visible text is a translation key (`label_key`, `title_parts`) plus
arguments, and an argument given as {"key": ...} is itself translated first (text.py). The English
rendering of each box is included too (`label`, `title`) for tests and the JSON API.

It is built in two steps: measure.py sizes every element first (a layer frame from its sublayers, the
gaps that hold +PE markers, each stack, the caption), then layout.py places each element once, at its
final coordinates, walking each stack upwards from a common ground line.

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

from app.playground.architecture.layout import KINDS, architecture_layout  # noqa: F401
from app.playground.architecture.measure import WIDTH  # noqa: F401
from app.playground.architecture.text import ARCH_LABELS, render_text, render_title  # noqa: F401
