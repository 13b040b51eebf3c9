"""Plotly figure dicts for every chart of the app, built from plain Python data; one module per group of panels.

Each function takes a trace (see model/trace.py), a table or a training history and returns
{"data": [...], "layout": {...}}: JSON-serialisable and ready for Plotly.newPlot, with no plotly or torch import.

Conventions, the same in every figure:

- Token axes are positions 0..n-1 with the tokens as tick text, so a repeated token ("1", "1") keeps two
  distinct places. Positions count from 0, as in the positional-encoding formula; layers and heads from 1.
- Learner text is data, never part of a template: tokens reach Plotly only as tick text, legend names,
  customdata or cell text, always through `_esc` (escapes &, < and >), so "<eos>" shows literally and typed
  text can add neither markup nor a "%{...}" placeholder.
- One Okabe-Ito colour per component (COMPONENT_COLOURS). A sublayer whose residual connection is off gets a
  hatched bar and a "residual off" note; where both stacks share a chart, decoder bars are dotted.
- ‖F(x)‖/‖x‖ per sublayer is residual_contributions; cos(F(x), x) per token is part of stream_comparison.
- Every user-visible string is in LABELS (hover templates included), read from the label catalogue
  (app/web/labels/<lang>.json, keys chart.*). Entries with {fields} are filled with str.format; hover templates
  are used verbatim.
- Figures shown side by side to be compared go through `share_axes`: one y range per axis and one colour range,
  so equal heights and colours mean equal values. Log axes carry at least three round ticks (`log_tick_values`).
- Figures follow a language: LABELS_EN (English) or LABELS_ZH (Simplified Chinese), same keys. LABELS reads the
  one chosen by `with language("zh"): ...` (a ContextVar, default "en"); a missing key falls back to English.
"""

from app.figures._base import (  # noqa: F401
    COMPONENT_COLOURS,
    DECODER_PATTERN,
    FONT,
    HEADS_PER_ROW,
    HEATMAP_SCALE,
    LABELS,
    LABELS_BY_LANGUAGE,
    LABELS_EN,
    LABELS_ZH,
    METRIC_COLOURS,
    MISMATCH_COLOUR,
    MISMATCH_PATTERN,
    RESIDUAL_OFF_PATTERN,
    SUBLAYER_COMPONENT,
    TOKEN_LINE_COLOURS,
    TOKENS_OF,
    Figure,
    current_language,
    escape_label,
    keys_of,
    language,
    log_tick_values,
    sequence_of,
    share_axes,
    stack_names,
    tokens_of,
)
from app.figures.attention import (  # noqa: F401
    attention_axis_titles,
    attention_distance_by_layer,
    attention_head_grid,
    attention_heatmap,
)
from app.figures.claims import claim_chart, wrap_label  # noqa: F401
from app.figures.comparison import stream_comparison, sublayer_tokens  # noqa: F401
from app.figures.outputs import gradient_norms, logit_lens, output_probabilities  # noqa: F401
from app.figures.positions import embedding_vs_position, position_similarity, positional_heatmap  # noqa: F401
from app.figures.stream import (  # noqa: F401
    norm_gamma_beta,
    norm_overview,
    norm_statistics,
    residual_contributions,
    stream_norms,
)
from app.figures.training import (  # noqa: F401
    SWEEP_COLOURS,
    gradient_heatmap,
    seed_curves,
    sweep_accuracy,
    sweep_steps,
    training_curves,
)
