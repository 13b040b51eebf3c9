"""P1–P5: where the positional encoding enters, what repeating it does, its rotation property,
length extrapolation, and what a model without it can still do."""

from __future__ import annotations

import math
import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.charts import (
    LAYERS,
    Cell,
    Chart,
    Decisive,
    Point,
    Series,
    accuracy_point,
    at_layers,
    seed_point,
    variant_label,
    versus,
)
from app.teaching.claims.common import (
    FLOAT32_FLOOR,
    Verdict,
    below_floor,
    f2,
    greedy,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    needs_runs,
    num,
    pct,
    series,
    share_range,
    shown,
    steps_text,
    sweep_missing,
    text,
    zoo,
)
from model.layers import rotation_for_offset, sinusoidal_table
from model.tasks import PAD, collate, get_task

OFFSETS = (1, 2, 5, 10, 30)


def measure_p1(store: RunStore | None) -> Verdict:
    model, task = zoo("reverse-post-4x4")
    batch = heldout_batch(task, 32)
    names = lambda n: n.startswith(("hook_src", "encoder")) and ("hook_resid_p" in n or n.startswith("hook_src"))  # noqa: E731
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.src, batch.tgt_in, names_filter=names)
        _, every = model.run_with_cache(batch.src, batch.tgt_in, model.switches.replace(pos_every_layer=True),
                                        names_filter=names)
    n = model.config.n_encoder_layers
    embed, pe = cache["hook_src_embed"], cache["hook_src_pos"]
    first_gap = (cache["encoder.0.hook_resid_pre"] - (embed + pe)).abs().max().item()
    later_gap = max((cache[f"encoder.{i}.hook_resid_pre"] - cache[f"encoder.{i - 1}.hook_resid_post"])
                    .abs().max().item() for i in range(1, n))
    every_gap = max((every[f"encoder.{i}.hook_resid_pre"] - every[f"encoder.{i - 1}.hook_resid_post"] - pe)
                    .abs().max().item() for i in range(1, n))
    real = batch.src != PAD
    share = (pe.expand_as(embed).norm(dim=-1) / embed.norm(dim=-1))[real].mean().item()
    numbers = {"max_abs_diff_layer1_input_vs_embedding_plus_pe": num(first_gap),
               "max_abs_added_between_layers": num(later_gap),
               "max_abs_diff_added_vs_pe_when_every_layer_switch_on": num(every_gap),
               "pe_norm_over_embedding_norm": num(share)}
    gaps = ("max_abs_diff_layer1_input_vs_embedding_plus_pe", "max_abs_added_between_layers",
            "max_abs_diff_added_vs_pe_when_every_layer_switch_on")
    ok = all(below_floor(gap, FLOAT32_FLOOR) for gap in (first_gap, later_gap, every_gap))
    summary = text("claim.P1.summary", first_gap=shown(first_gap, FLOAT32_FLOOR),
                   later_gap=shown(later_gap, FLOAT32_FLOOR), every_gap=shown(every_gap, FLOAT32_FLOOR),
                   share=f2(share))
    return Verdict("P1", "holds" if ok else "does_not_hold", numbers, summary, text("claim.P1.method"),
                   ["zoo:reverse-post-4x4"], floors=dict.fromkeys(gaps, FLOAT32_FLOOR))


def _roughness(metrics: list[dict]) -> tuple[float, float]:
    """Std of step-to-step loss changes over the second half of training, and the largest loss there."""
    losses = series(metrics, "loss")
    half = [x for x in losses[len(losses) // 2:] if math.isfinite(x)]
    if len(half) < 3 or len(half) < len(losses) - len(losses) // 2:  # a diverged run has no finite second half
        return float("inf"), float("inf")
    diffs = [b - a for a, b in zip(half, half[1:], strict=False)]
    return statistics.pstdev(diffs), max(half)


P2_PLAN = "pe-every-layer"
# (norm arrangement, PE once, PE at every layer): the note's model is Post-LN, the usual modern one Pre-LN
P2_PAIRS = (("post", "post_ln", "post_ln_pe_every_layer"), ("pre", "pre_ln", "pe_every_layer"))


def _seed_roughness(store: RunStore, row: dict) -> list[tuple[float, float]]:
    """_roughness of each of the cell's seeds."""
    return [_roughness(store.metrics(run_id)) for run_id in row["run_ids"]]


def _mean_roughness(each: list[tuple[float, float]]) -> tuple[float, float]:
    """Roughness averaged over the seeds (inf when any seed diverged), and the largest late loss of any."""
    return statistics.fmean(r for r, _ in each), max(m for _, m in each)


def _roughness_point(depth: int, each: list[tuple[float, float]]) -> Point:
    diverged = sum(not math.isfinite(r) for r, _ in each)
    if diverged:
        return Point(depth, None, note=text("claim.chart.diverged", count=str(diverged), seeds=str(len(each))))
    return seed_point(depth, [r for r, _ in each])


def measure_p2(store: RunStore | None) -> Verdict:
    sweep = load_sweep(store, P2_PLAN)
    pairs = [(arr, once, every, sweep.depths(once, every)) for arr, once, every in P2_PAIRS] if sweep else []
    pairs = [p for p in pairs if p[3]]
    depths = sorted({d for *_, ds in pairs for d in ds})
    method = text("claim.P2.method", plan=P2_PLAN, depths="/".join(map(str, depths)) or "—",
                  seeds=str(len(sweep.seeds)) if sweep else "—")
    if not pairs:
        return sweep_missing("P2", P2_PLAN, sweep, needs_runs("pre_ln", "pe_every_layer"), method)
    numbers, unstable, rougher, groups = {}, False, False, []
    points, compared = {}, []  # the chart's cells; (unstable, ratio, once, every, depth) of each pair judged
    for arrangement, once_name, every_name, arr_depths in pairs:
        parts = []
        for d in arr_depths:
            once, every = sweep.get(once_name, d), sweep.get(every_name, d)
            each_once, each_every = _seed_roughness(store, once), _seed_roughness(store, every)
            points[once_name, d] = _roughness_point(d, each_once)
            points[every_name, d] = _roughness_point(d, each_every)
            r_once, _ = _mean_roughness(each_once)
            r_every, max_every = _mean_roughness(each_every)
            acc_once, acc_every = once["heldout_seq_accuracy"] or 0.0, every["heldout_seq_accuracy"] or 0.0
            if not math.isfinite(r_once) or acc_once < 0.5:  # no baseline to compare with: shown, not judged
                parts.append(text("claim.P2.no_baseline", depth=str(d), acc_once=pct(acc_once)))
                continue
            ratio = r_every / r_once if r_once > 0 else float("inf")
            key = f"{arrangement}_ln_depth{d}"
            numbers |= {f"{key}_accuracy_pe_once": num(acc_once), f"{key}_accuracy_pe_every_layer": num(acc_every),
                        f"{key}_accuracy_seed_range_pe_once": share_range(*once["heldout_range"]),
                        f"{key}_accuracy_seed_range_pe_every_layer": share_range(*every["heldout_range"]),
                        f"{key}_steps_to_99pct_pe_once": once["steps_to_target"],
                        f"{key}_steps_to_99pct_pe_every_layer": every["steps_to_target"],
                        f"{key}_loss_roughness_pe_once": num(r_once),
                        f"{key}_loss_roughness_pe_every_layer": num(r_every),
                        f"{key}_roughness_ratio": num(ratio), f"{key}_max_late_loss_pe_every_layer": num(max_every)}
            unstable_here = (acc_every < acc_once - 0.1 or not math.isfinite(r_every)
                             or (ratio >= 2 and acc_every < acc_once))
            unstable |= unstable_here
            rougher |= ratio >= 1.5
            compared.append((unstable_here, ratio, once_name, every_name, d))
            parts.append(text("claim.P2.depth", depth=str(d), acc_every=pct(acc_every), acc_once=pct(acc_once),
                              steps_every=steps_text(every), steps_once=steps_text(once), ratio=f2(ratio)))
        groups.append(text("claim.P2.arrangement", arrangement=text(f"claim.P2.{arrangement}"), parts=parts))
    verdict = "holds" if unstable else "holds_with_caveats" if rougher else "does_not_hold"
    summary = [text("claim.P2.summary"), *groups, text(f"claim.P2.{verdict}")]
    lines = [Series(v, variant_label(v), [points[v, d] for d in ds])
             for _, once, every, ds in pairs for v in (once, every)]
    decisive = None
    if compared:  # the first pair that was unstable, else the one whose loss got roughest relative to PE once
        _, _, once_name, every_name, d = max(compared, key=lambda c: (c[0], c[1]))
        decisive = Decisive([Cell(once_name, d), Cell(every_name, d)],
                            versus(variant_label(once_name), variant_label(every_name), at_layers(d)))
    chart = Chart(text("claim.chart.y.roughness"), "number", lines, decisive, len(sweep.seeds), LAYERS)
    return Verdict("P2", verdict, numbers, summary, method, sweep.sources(), chart=chart)


def measure_p3(store: RunStore | None) -> Verdict:
    model, _ = zoo("reverse-post-2x2")
    d = model.config.d_model
    table = sinusoidal_table(256, d)
    errors, orthogonality = {}, 0.0
    for k in OFFSETS:
        m = rotation_for_offset(k, d)
        errors[k] = (table[k:] - table[:-k] @ m.T).abs().max().item()
        orthogonality = max(orthogonality, (m.T @ m - torch.eye(d)).abs().max().item())
    model_table = model.pos.sinusoidal
    model_error = (model_table[1:] - model_table[:-1] @ rotation_for_offset(1, d).T).abs().max().item()
    worst = max(errors.values())
    numbers = {f"max_abs_error_offset_{k}": num(e) for k, e in errors.items()}
    numbers |= {"max_abs_error_all_offsets": num(worst), "max_abs_error_model_table_offset_1": num(model_error),
                "max_abs_deviation_from_orthogonal": num(orthogonality), "positions": 256, "d_model": d}
    verdict = "holds" if below_floor(worst, FLOAT32_FLOOR) and below_floor(model_error, FLOAT32_FLOOR) \
        else "does_not_hold"
    summary = text("claim.P3.summary", offsets=", ".join(map(str, OFFSETS)), d_model=str(d),
                   worst=shown(worst, FLOAT32_FLOOR), model_error=shown(model_error, FLOAT32_FLOOR),
                   orthogonality=shown(orthogonality, FLOAT32_FLOOR))
    floors = {key: FLOAT32_FLOOR for key in numbers if key.startswith("max_abs_")}
    return Verdict("P3", verdict, numbers, summary, text("claim.P3.method"), ["zoo:reverse-post-2x2"], floors=floors)


P4_PLAN = "position-encodings"
P4_VARIANTS = ("pre_ln", "learned_pe", "no_pe")  # sinusoidal (the Pre-LN default), learned, none


def _long(row: dict, key: str) -> float | None:
    """A long_inputs probe figure (model.train.probes) averaged over the cell's seeds; None when not probed."""
    values = [p["long_inputs"][key] for p in row["probes"] if "long_inputs" in p]
    return statistics.fmean(values) if values and len(values) == len(row["probes"]) else None


def measure_p4(store: RunStore | None) -> Verdict:
    sweep = load_sweep(store, P4_PLAN)
    rows = {v: sweep.get(v, 2) for v in P4_VARIANTS} if sweep else {}
    method = text("claim.P4.method", plan=P4_PLAN, seeds=str(len(sweep.seeds)) if sweep else "—")
    if not rows or any(r is None or _long(r, "seq_accuracy") is None for r in rows.values()):
        return sweep_missing("P4", P4_PLAN, sweep, needs_runs(*P4_VARIANTS), method)
    probe = rows["pre_ln"]["probes"][0]["long_inputs"]
    task = get_task(store.get(rows["pre_ln"]["run_id"]).spec.task)
    numbers = {"lengths_in_training": f"{task.min_len}–{probe['trained_max_len']}",
               "long_lengths": f"{probe['min_len']}–{probe['max_len']}", "long_inputs": probe["inputs"]}
    for variant, row in rows.items():
        numbers |= {f"{variant}_accuracy_trained_lengths": num(row["heldout_seq_accuracy"]),
                    f"{variant}_accuracy_long_inputs": num(_long(row, "seq_accuracy")),
                    f"{variant}_token_accuracy_long_inputs": num(_long(row, "token_accuracy"))}
    inside, outside = rows["pre_ln"]["heldout_seq_accuracy"] or 0.0, _long(rows["pre_ln"], "seq_accuracy")
    ratio = outside / max(inside, 1e-9)
    verdict = "does_not_hold" if ratio < 0.5 else "holds_with_caveats" if ratio < 0.9 else "holds"
    beats_learned = outside > _long(rows["learned_pe"], "seq_accuracy") + 0.05
    summary = [text("claim.P4.summary", lengths=numbers["long_lengths"], trained=numbers["lengths_in_training"],
                    seeds=str(len(rows["pre_ln"]["seeds"])),
                    sin_in=pct(inside), sin_out=pct(outside),
                    sin_tokens=pct(_long(rows["pre_ln"], "token_accuracy")),
                    learned_in=pct(rows["learned_pe"]["heldout_seq_accuracy"]),
                    learned_out=pct(_long(rows["learned_pe"], "seq_accuracy")),
                    none_in=pct(rows["no_pe"]["heldout_seq_accuracy"]),
                    none_out=pct(_long(rows["no_pe"], "seq_accuracy"))),
               text("claim.P4.better_than_learned" if beats_learned else "claim.P4.no_better"),
               text(f"claim.P4.{verdict}")]
    chart = _p4_chart(rows, numbers)
    return Verdict("P4", verdict, numbers, summary, method, sweep.sources(), chart=chart)


def _p4_chart(rows: dict, numbers: dict) -> Chart:
    """Exact answers on trained lengths and on longer inputs, per encoding; decisive: sinusoidal's two."""
    long = [seed_point(v, [p["long_inputs"]["seq_accuracy"] for p in row["probes"]]) for v, row in rows.items()]
    return Chart(text("claim.chart.y.exact"), "share",
                 [Series("trained", text("number.q.trained_lengths"), [accuracy_point(v, r) for v, r in rows.items()]),
                  Series("long", text("number.q.long_inputs"), long)],
                 Decisive([Cell("trained", "pre_ln"), Cell("long", "pre_ln")],
                          text("claim.chart.P4.decisive", trained=numbers["lengths_in_training"],
                               long=numbers["long_lengths"])),
                 seeds=len(rows["pre_ln"]["seeds"]), categories={v: text(f"claim.chart.P4.{v}") for v in rows})


def measure_p5(store: RunStore | None) -> Verdict:
    model, task = zoo("reverse-post-2x2")
    pairs = heldout_pairs(task)
    no_pe = model.switches.replace(pos_encoding="none")
    rotated = [(s[1:] + s[0], task.rule(s[1:] + s[0])) for s, _ in pairs]
    batch, moved = collate(task, pairs), collate(task, rotated)  # same lengths, so the same padding
    keep = torch.tensor([s != r for (s, _), (r, _) in zip(pairs, rotated, strict=True)])
    same, accuracy = {}, {}
    for key, sw in {"pe_on": model.switches, "pe_off": no_pe}.items():
        a, accuracy[key] = greedy(model, batch, sw)
        b, _ = greedy(model, moved, sw)
        same[key] = (a == b).all(-1)[keep].float().mean().item()
    acc_on, acc_off, n = accuracy["pe_on"], accuracy["pe_off"], int(keep.sum())
    numbers = {"accuracy_pe_on": num(acc_on), "accuracy_pe_off": num(acc_off),
               "same_output_for_rotated_input_pe_on": num(same["pe_on"]),
               "same_output_for_rotated_input_pe_off": num(same["pe_off"]), "inputs": n}
    ok = same["pe_off"] >= 0.95 and acc_off <= 0.5 * acc_on
    summary = text("claim.P5.summary", same_off=pct(same["pe_off"]), same_on=pct(same["pe_on"]), inputs=str(n),
                   acc_on=pct(acc_on), acc_off=pct(acc_off))
    return Verdict("P5", "holds" if ok else "does_not_hold", numbers, summary, text("claim.P5.method"),
                   ["zoo:reverse-post-2x2"])


MEASURES = {"P1": measure_p1, "P2": measure_p2, "P3": measure_p3, "P4": measure_p4, "P5": measure_p5}
