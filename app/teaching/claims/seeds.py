"""A verdict over several seeds: it stands only when the seeds agree; otherwise it is "mixed", with the split."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from app.teaching.claims.common import VERDICTS, Verdict, text

# the order in which a split lists the verdicts
ORDER = [v for v in VERDICTS if v not in ("mixed", "not_measured")]


def with_seed_agreement(verdict: Verdict, per_seed: list[str]) -> Verdict:
    """`verdict` measured on the seeds' means, given each seed's own verdict: the agreed one, or mixed."""
    measured = [v for v in per_seed if v != "not_measured"]
    counts = Counter(measured)
    numbers = {**verdict.numbers, "seeds": len(measured),
               **{f"seeds_{v}": counts[v] for v in ORDER if counts[v]}}
    if len(counts) == 1:
        agreed = measured[0]
        note = text("claim.seeds.agree", n=str(len(measured)), verdict=text(f"verdict.{agreed}"))
        return replace(verdict, verdict=agreed, numbers=numbers, summary=[*verdict.summary, note])
    split = [text("claim.seeds.count", count=str(counts[v]), verdict=text(f"verdict.{v}")) for v in ORDER if counts[v]]
    note = text("claim.seeds.split", n=str(len(measured)), split=split)
    return replace(verdict, verdict="mixed", numbers=numbers, summary=[*verdict.summary, note])
