"""The join URL as a QR code, drawn by the app itself (segno: pure Python, no network, no image files) as inline
SVG: it scales to any projector without blurring and needs nothing the page's CSP does not already allow."""

from __future__ import annotations

from functools import lru_cache

import segno
from markupsafe import Markup, escape


@lru_cache(maxsize=64)
def join_qr_svg(url: str, label: str) -> Markup:
    """An <svg> of the QR code of `url`, labelled for screen readers. Error correction M: a phone still reads it
    from the back of a hall with part of it glared over."""
    svg = segno.make(url, error="m").svg_inline(scale=1, border=2, omitsize=True, dark="#000", light="#fff",
                                                  svgclass="join-qr")
    return Markup(svg.replace("<svg ", f'<svg role="img" aria-label="{escape(label)}" ', 1))
