"""Every claim of the study note, measured with the app's own models and runs.

    measure("R1", store) -> Verdict        measure_all(store) -> {claim id: Verdict}

Zoo-based claims are measured on the shipped models with fixed held-out inputs, each in about a
second. Claims about training (R3, R4, N2, N3, N4, P2) read the precomputed sweeps of
`python -m app.lab.precompute` from the run store and are "not_measured" until those are there.
"""

from __future__ import annotations

from dataclasses import replace

from app.lab.store import RunStore
from app.teaching.claims import depth, norm, position, residual, stacks
from app.teaching.claims.common import SEED_VIEW, VERDICTS, Text, Verdict, load_sweep
from app.teaching.claims.conditions import conditions_of
from app.teaching.claims.seeds import with_seed_agreement

# Each claim's kind; its statement is the catalogue's `claim.<id>.statement` (app/web/labels/), and the lesson steps
# that show it name it (`claim` in app/teaching/lessons/*.json). "construction": the claim describes how the model is
# built, so its check holds by construction: it confirms the code does what the note says, and is labelled so rather
# than passed off as an experiment.
CLAIMS: dict[str, str] = {
    "R1": "measurement",
    "R2": "measurement",
    "R3": "measurement",
    "R4": "measurement",
    "R5": "measurement",
    "N1": "construction",
    "N2": "measurement",
    "N3": "measurement",
    "N4": "measurement",
    "N5": "measurement",
    "E1": "construction",
    "E2": "measurement",
    "P1": "construction",
    "P2": "measurement",
    "P3": "construction",
    "P4": "measurement",
    "P5": "measurement",
    "D1": "construction",
    "D2": "construction",
    "D3": "construction",
    "D4": "measurement",
}

_MEASURES = {**residual.MEASURES, **depth.MEASURES, **norm.MEASURES, **stacks.MEASURES, **position.MEASURES}
assert set(_MEASURES) == set(CLAIMS), set(CLAIMS) ^ set(_MEASURES)


def measure(claim_id: str, store: RunStore | None = None) -> Verdict:
    """Measure one claim; `store` supplies the precomputed runs (None: zoo measurements only). A claim that reads
    runs trained on several seeds is measured on their means, then on each seed alone: its verdict stands only
    when every seed gives it, else it is "mixed" and the summary shows the split."""
    if claim_id not in CLAIMS:
        raise KeyError(f"unknown claim {claim_id!r}; claims: {', '.join(CLAIMS)}")
    verdict = _MEASURES[claim_id](store)
    verdict = replace(verdict, conditions=conditions_of(verdict.sources, store), runs=_runs_behind(verdict, store))
    seeds = _seeds_behind(verdict, store)
    if verdict.verdict == "not_measured" or len(seeds) < 2:
        return verdict
    per_seed = []
    for seed in seeds:
        token = SEED_VIEW.set(seed)
        try:
            per_seed.append(_MEASURES[claim_id](store).verdict)
        finally:
            SEED_VIEW.reset(token)
    return with_seed_agreement(verdict, per_seed)


def _seeds_behind(verdict: Verdict, store: RunStore | None) -> list[int]:
    plans = [source.split(":", 1)[1] for source in verdict.sources if source.startswith("sweep:")]
    sweeps = [load_sweep(store, plan) for plan in plans]
    return sorted(set().union(*(sweep.seeds for sweep in sweeps if sweep))) if sweeps else []


def _runs_behind(verdict: Verdict, store: RunStore | None) -> list[str]:
    """The runs of the sweeps a verdict read, by key: the same key names the same settings and seed in any store
    (this server's or the shipped one), where run ids do not."""
    plans = [source.split(":", 1)[1] for source in verdict.sources if source.startswith("sweep:")]
    sweeps = [sweep for sweep in (load_sweep(store, plan) for plan in plans) if sweep]
    return sorted({key for sweep in sweeps for row in sweep.cells.values() for key in row["run_keys"]})


def measure_all(store: RunStore | None = None) -> dict[str, Verdict]:
    return {claim_id: measure(claim_id, store) for claim_id in CLAIMS}


__all__ = ["CLAIMS", "VERDICTS", "Text", "Verdict", "measure", "measure_all"]
