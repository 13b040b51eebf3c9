"""N1, N3, N5: what a norm computes, whether it stops layer inputs drifting, and batch vs layer norm."""

from __future__ import annotations

import copy
import math
import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.charts import (
    Cell,
    Chart,
    Decisive,
    Point,
    Series,
    at_layers,
    seed_point,
    variant_label,
    versus,
)
from app.teaching.claims.common import (
    FLOAT32_FLOOR,
    STATISTIC_FLOOR,
    Verdict,
    below_floor,
    f2,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    needs_runs,
    num,
    pct,
    share_range,
    shown,
    sweep_missing,
    text,
    zoo,
)
from model.layers import Norm
from model.tasks import PAD, collate


def measure_n1(store: RunStore | None) -> Verdict:
    model, task = zoo("reverse-post-2x2")
    batch = heldout_batch(task)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.src, batch.tgt_in,
                                        names_filter=lambda n: ".norm_" in n and n.split(".")[1].isdigit())
    norms = sorted({n.rsplit(".", 1)[0] for n in cache})
    means, stds, before_stds, after_stds = [], [], [], []
    for prefix in norms:
        real = (batch.src if prefix.startswith("encoder") else batch.tgt_in) != PAD
        z = cache[f"{prefix}.hook_normalized"][real]  # (N, D)
        means.append(z.mean(-1).abs().max().item())
        stds.append((z.std(-1, unbiased=False) - 1).abs().max().item())
        before_stds.append(cache[f"{prefix}.hook_in"][real].std(-1, unbiased=False).mean().item())
        after_stds.append(cache[f"{prefix}.hook_out"][real].std(-1, unbiased=False).mean().item())
    modules = [m for n, m in model.named_modules() if isinstance(m, Norm) and n.split(".")[1].isdigit()]
    gamma_dev = torch.cat([(m.weight - 1).abs() for m in modules]).mean().item()
    beta_abs = torch.cat([m.bias.abs() for m in modules]).mean().item()
    after_diff = max(abs(a - 1) for a in after_stds)
    numbers = {"norms_checked": len(norms), "max_abs_token_mean_after": num(max(means)),
               "max_abs_token_std_minus_1_after": num(max(stds)),
               "mean_token_std_before": num(statistics.fmean(before_stds)),
               "mean_token_std_after_gamma_beta": num(statistics.fmean(after_stds)),
               "mean_abs_gamma_minus_1": num(gamma_dev), "mean_abs_beta": num(beta_abs)}
    # the mean is zero up to rounding; the std misses 1 by LayerNorm's ε (a real, small effect)
    standardised = below_floor(max(means), STATISTIC_FLOOR) and max(stds) < 1e-2
    learned = gamma_dev > 1e-2 or beta_abs > 1e-2
    verdict = "holds" if standardised and learned else "holds_with_caveats" if standardised else "does_not_hold"
    summary = text("claim.N1.summary", norms=str(len(norms)), mean=shown(max(means), STATISTIC_FLOOR),
                   std=shown(max(stds), STATISTIC_FLOOR),
                   before=f2(statistics.fmean(before_stds)), gamma=f2(gamma_dev), beta=f2(beta_abs),
                   after=f2(statistics.fmean(after_stds)), off=f2(after_diff))
    return Verdict("N1", verdict, numbers, summary, text("claim.N1.method"), ["zoo:reverse-post-2x2"],
                   floors=dict.fromkeys(("max_abs_token_mean_after", "max_abs_token_std_minus_1_after"),
                                        STATISTIC_FLOOR))


def _drift(metrics: list[dict]) -> tuple[float, float]:
    """Averaged over the inputs of layers 2.. of both stacks: the coefficient of variation of the layer
    input's std across the evaluation steps, and the std of its mean across them. Evaluation steps only: the
    shipped results keep layer statistics there (app/lab/results.py), so both sources give the same figure."""
    metrics = [r for r in metrics if r.get("heldout_seq_accuracy") is not None and r.get("layer_input_std")]
    cvs, mean_drifts = [], []
    for stack in ("encoder", "decoder"):
        n_layers = len((metrics[0].get("layer_input_std") or {}).get(stack, [])) if metrics else 0
        for layer in range(1, n_layers):
            stds = [r["layer_input_std"][stack][layer] for r in metrics]
            means = [r["layer_input_mean"][stack][layer] for r in metrics]
            stds = [s for s in stds if s is not None and math.isfinite(s)]
            means = [m for m in means if m is not None and math.isfinite(m)]
            if len(stds) > 1:
                cvs.append(statistics.pstdev(stds) / max(statistics.fmean(stds), 1e-12))
            if len(means) > 1:
                mean_drifts.append(statistics.pstdev(means))
    nan = float("nan")
    return (statistics.fmean(cvs) if cvs else nan, statistics.fmean(mean_drifts) if mean_drifts else nan)


def _seed_drifts(store: RunStore, row: dict) -> list[tuple[float, float]]:
    """_drift of each of the cell's seeds."""
    return [_drift(store.metrics(run_id)) for run_id in row["run_ids"]]


def _drift_point(variant_name: str, each: list[tuple[float, float]]) -> Point:
    cvs = [cv for cv, _ in each if math.isfinite(cv)]
    return seed_point(variant_name, cvs) if cvs else Point(variant_name, None)


def measure_n3(store: RunStore | None) -> Verdict:
    """The claim is about layer inputs drifting. Under Post-LN a layer's input is a LayerNorm output, so it cannot
    drift much by construction (shown, not judged). Pre-LN normalises only what enters each sublayer: its stream,
    the layers' input, is no more forced than a stream without any norm, so those two are compared."""
    variants = ("post_ln", "pre_ln", "no_norm")
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths(*variants) if sweep else []
    method = text("claim.N3.method", plan="depth-residual-norm", seeds=str(len(sweep.seeds)) if sweep else "—")
    if not depths:
        return sweep_missing("N3", "depth-residual-norm", sweep, needs_runs(*variants), method)
    deep = depths[-1]
    each = {v: _seed_drifts(store, sweep.get(v, deep)) for v in variants}
    drift = {v: (statistics.fmean(cv for cv, _ in e), statistics.fmean(m for _, m in e)) for v, e in each.items()}
    numbers = {"depth": deep}
    for v in variants:
        numbers[f"{v}_input_std_drift_cv"] = num(drift[v][0])
        numbers[f"{v}_input_mean_drift"] = num(drift[v][1])
    post, pre, none = (drift[v][0] for v in variants)
    steadier = pre < none  # NaN compares False: no evidence
    verdict = "holds_with_caveats" if steadier else "does_not_hold"
    summary = [text("claim.N3.summary", depth=str(deep), post=f2(post), pre=f2(pre), none=f2(none),
                    seeds=str(len(sweep.get("pre_ln", deep)["seeds"]))),
               text("claim.N3.post_by_construction"),
               text("claim.N3.steadier" if steadier else "claim.N3.not_steadier")]
    chart = Chart(text("claim.chart.y.drift"), "number",
                  [Series("drift", text("claim.chart.y.drift"), [_drift_point(v, each[v]) for v in variants])],
                  Decisive([Cell("drift", "pre_ln"), Cell("drift", "no_norm")],
                           versus(variant_label("pre_ln"), variant_label("no_norm"), at_layers(deep))),
                  seeds=len(sweep.get("pre_ln", deep)["seeds"]), categories={v: variant_label(v) for v in variants})
    return Verdict("N3", verdict, numbers, summary, method, sweep.sources(), chart=chart)


def _first_logits(model, task, pairs, switches) -> torch.Tensor:
    batch = collate(task, pairs)
    with torch.no_grad():
        return model(batch.src, batch.tgt_in, switches)[0, : len(task.tgt_tokenizer.encode(pairs[0][1])) + 1]


def _batch_dependence(model, task, switches) -> tuple[float, float]:
    """In training mode: the relative change of one sequence's logits when its 31 batch-mates change, and when
    it is alone."""
    model = copy.deepcopy(model)  # train mode updates running statistics: never touch the shared model
    model.train()
    pairs = heldout_pairs(task, 63)
    mine, mates_a, mates_b = pairs[0], pairs[1:32], pairs[32:63]
    base = _first_logits(model, task, [mine, *mates_a], switches)
    other = _first_logits(model, task, [mine, *mates_b], switches)
    alone = _first_logits(model, task, [mine], switches)
    scale = base.norm().item()
    return (other - base).norm().item() / scale, (alone - base).norm().item() / scale


N5_PLAN = "batch-vs-layer-norm"
BN_WAYS = ("running_statistics", "batch_of_100", "alone", "batch_of_100_padding_counted")  # model.train.probes


def _batch_probe(row: dict) -> dict[str, float] | None:
    """The batch_statistics probe averaged over the cell's seeds, with each way's range over them."""
    probes = [p.get("batch_statistics") for p in row["probes"]]
    if not probes or any(p is None for p in probes):
        return None
    return {way: (statistics.fmean(p[way] for p in probes), min(p[way] for p in probes),
                  max(p[way] for p in probes)) for way in BN_WAYS}


def measure_n5(store: RunStore | None) -> Verdict:
    sweep = load_sweep(store, N5_PLAN)
    rows = {v: sweep.get(v, 2) for v in ("batch_norm", "pre_ln")} if sweep else {}
    probe = _batch_probe(rows["batch_norm"]) if rows.get("batch_norm") else None
    method = text("claim.N5.method", plan=N5_PLAN, seeds=str(len(sweep.seeds)) if sweep else "—")
    if probe is None or rows.get("pre_ln") is None:
        return sweep_missing("N5", N5_PLAN, sweep, needs_runs("batch_norm", "pre_ln"), method)
    # LayerNorm works per sample: checked on the zoo model, one sequence's logits with other batch-mates and alone
    zoo_model, task = zoo("reverse-pre-2x2")
    ln_mates, ln_alone = _batch_dependence(zoo_model, task, zoo_model.switches)
    layer = rows["pre_ln"]["heldout_seq_accuracy"] or 0.0
    name = {"alone": "each_input_alone"}  # the numbers' key for a way of the probe
    numbers = {f"batchnorm_accuracy_{name.get(way, way)}": num(mean) for way, (mean, _, _) in probe.items()}
    numbers |= {f"batchnorm_accuracy_seed_range_{name.get(way, way)}": share_range(low, high)
                for way, (_, low, high) in probe.items()}
    numbers |= {"layernorm_run_heldout_accuracy": num(layer), "layernorm_train_change_other_batchmates": num(ln_mates),
                "layernorm_train_change_alone": num(ln_alone)}
    usual = probe["running_statistics"][0]
    drops = {way: usual - probe[way][0] for way in BN_WAYS[1:]}  # how much each way of using the batch costs
    breaks = max(drops.values()) > 0.2
    per_sample = below_floor(ln_mates, FLOAT32_FLOOR) and below_floor(ln_alone, FLOAT32_FLOOR)
    verdict = "does_not_hold"
    if breaks and per_sample:  # with caveats when the workarounds (running statistics, padding left out) suffice
        verdict = "holds_with_caveats" if usual >= layer - 0.05 else "holds"
    summary = [text("claim.N5.summary", running=pct(usual), batch=pct(probe["batch_of_100"][0]),
                    alone=pct(probe["alone"][0]), padding=pct(probe["batch_of_100_padding_counted"][0]),
                    layer=pct(layer), ln_alone=shown(ln_alone, FLOAT32_FLOOR),
                    seeds=str(len(rows["batch_norm"]["seeds"])))]
    if not per_sample:
        summary.append(text("claim.N5.layer_norm_depends", change=shown(max(ln_mates, ln_alone), FLOAT32_FLOOR)))
    elif verdict == "holds_with_caveats":
        summary.append(text("claim.N5.workarounds"))
    elif not breaks:
        worst = max(drops.values())
        summary.append(text("claim.N5.robust" if worst <= 0.05 else "claim.N5.small_drop", drop=pct(worst)))
    chart = _n5_chart(probe, rows, max(drops, key=drops.get), {way: name.get(way, way) for way in BN_WAYS})
    return Verdict("N5", verdict, numbers, summary, method, sweep.sources() + ["zoo:reverse-pre-2x2"], chart=chart,
                   floors=dict.fromkeys(("layernorm_train_change_other_batchmates", "layernorm_train_change_alone"),
                                        FLOAT32_FLOOR))


def _n5_chart(probe: dict, rows: dict, worst: str, names: dict[str, str]) -> Chart:
    """BatchNorm's accuracy with each kind of statistics, beside the LayerNorm model's; decisive: the running
    statistics it is evaluated with against the way of using the batch that costs most."""
    ways = [Point(way, num(mean), num(low), num(high)) for way, (mean, low, high) in probe.items()]
    layer = rows["pre_ln"]
    layer_point = Point("layer_norm", num(layer["heldout_seq_accuracy"]), *map(num, layer["heldout_range"]))
    layer_norm = text("claim.chart.N5.layer_norm")
    categories = {way: text(f"number.q.{names[way]}") for way in BN_WAYS} | {"layer_norm": layer_norm}
    return Chart(text("claim.chart.y.accuracy"), "share",
                 [Series("batch_norm", variant_label("batch_norm"), ways), Series("pre_ln", layer_norm, [layer_point])],
                 Decisive([Cell("batch_norm", "running_statistics"), Cell("batch_norm", worst)],
                          text("claim.chart.N5.decisive", worst=categories[worst])),
                 seeds=len(rows["batch_norm"]["seeds"]), categories=categories)


MEASURES = {"N1": measure_n1, "N3": measure_n3, "N5": measure_n5}
