"""Numbers on their way to JSON, which has no NaN or infinity (a diverged run produces both)."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> float | None:
    """A finite float, or None (Plotly leaves a gap; a page shows "—")."""
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def json_safe(value: Any) -> Any:
    """The same structure with every NaN and infinity replaced by None."""
    if isinstance(value, float):
        return finite(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
