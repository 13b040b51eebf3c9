"""What a verdict was measured on, from the runs and models it read (its `sources`): as data for the API and
as Texts for the page. A sweep gives its task, depths, settings compared, init, step budget and seeds; a zoo
model its task, layers, norm arrangement, init, steps and seed."""

from __future__ import annotations

from typing import Any

from app.lab.precompute import PLANS
from app.teaching.claims.common import Text, load_sweep, text
from model.zoo import load_manifest

NORM_POSITION = {"post": "Post-LN", "pre": "Pre-LN"}


def conditions_of(sources: list[str], store) -> list[dict[str, Any]]:
    """One entry per source: {"source": "sweep:…" | "zoo:…" | "run:…", and what it was trained on}."""
    zoo = {entry.name: entry for entry in load_manifest()}
    found = []
    for source in sources:
        kind, _, name = source.partition(":")
        if kind == "sweep" and name in PLANS:
            base, depths, variants = PLANS[name]
            sweep = load_sweep(store, name)
            found.append({"source": source, "task": base.task, "depths": depths, "variants": variants,
                          "init": base.train.init, "steps": base.train.steps,
                          "stop_at": base.train.stop_at, "seeds": sweep.seeds if sweep else []})
        elif kind == "zoo" and name in zoo:
            entry = zoo[name]
            found.append({"source": source, "task": entry.task, "layers": entry.model_config["n_encoder_layers"],
                          "norm_position": entry.switches["norm_position"],
                          "init": entry.train_config.get("init", "default"), "steps": entry.steps,
                          "seeds": [entry.train_config["seed"]]})
        else:
            found.append({"source": source})
    return found


def conditions_text(conditions: list[dict[str, Any]]) -> list[Text]:
    """'Sweep depth-residual-norm: reverse task, 2/4/6 layers, PyTorch default init, up to 600 steps, 5 seeds.'"""
    parts = []
    for c in conditions:
        kind, _, name = c["source"].partition(":")
        common = {"task": text(f"number.task.{c['task']}") if "task" in c else "",
                  "init": text(f"init.{c.get('init')}"), "steps": str(c.get("steps", "")),
                  "seeds": str(len(c.get("seeds", [])))}
        if kind == "sweep" and "depths" in c:
            parts.append(text("claim.conditions.sweep", plan=name, depths="/".join(map(str, c["depths"])), **common))
        elif kind == "zoo" and "layers" in c:
            parts.append(text("claim.conditions.zoo", model=name, layers=str(c["layers"]),
                              norm_position=NORM_POSITION[c["norm_position"]], **common))
    return [text("claim.conditions.all", parts=parts)] if parts else []
