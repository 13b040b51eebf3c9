"""What the server benchmarks share: a free loopback port for the server they start, and percentiles."""

from __future__ import annotations

import socket
import statistics


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: int) -> float:
    """The q-th percentile (1..99) of the values."""
    return statistics.quantiles(values, n=100)[q - 1] if len(values) > 1 else values[0]
