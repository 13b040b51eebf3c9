"""P1–P5: where the positional encoding enters, what repeating it does, its rotation property,
length extrapolation, and what a model without it can still do."""

from __future__ import annotations

import math
import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    Verdict,
    f2,
    find_done_runs,
    greedy,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    needs_runs,
    num,
    pct,
    series,
    store_model,
    sweep_missing,
    text,
    zoo,
)
from model.evaluate import evaluate
from model.layers import rotation_for_offset, sinusoidal_table
from model.tasks import PAD, collate

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
    ok = first_gap < 1e-6 and later_gap == 0 and every_gap < 1e-5
    summary = text("claim.P1.summary", first_gap=f2(first_gap), later_gap=f2(later_gap), every_gap=f2(every_gap),
                   share=f2(share))
    return Verdict("P1", "holds" if ok else "does_not_hold", numbers, summary, text("claim.P1.method"),
                   ["zoo:reverse-post-4x4"])


def _roughness(metrics: list[dict]) -> tuple[float, float]:
    """Std of step-to-step loss changes over the second half of training, and the largest loss there."""
    losses = series(metrics, "loss")
    half = [x for x in losses[len(losses) // 2:] if math.isfinite(x)]
    if len(half) < 3 or len(half) < len(losses) - len(losses) // 2:  # a diverged run has no finite second half
        return float("inf"), float("inf")
    diffs = [b - a for a, b in zip(half, half[1:], strict=False)]
    return statistics.pstdev(diffs), max(half)


def measure_p2(store: RunStore | None) -> Verdict:
    method = text("claim.P2.method", plan="pe-every-layer")
    sweep = load_sweep(store, "pe-every-layer")
    depths = sweep.depths("pre_ln", "pe_every_layer") if sweep else []
    if not depths:
        return sweep_missing("P2", "pe-every-layer", sweep, needs_runs("pre_ln", "pe_every_layer"), method)
    numbers, unstable, rougher, parts = {}, False, False, []
    for d in depths:
        once, every = sweep.get("pre_ln", d), sweep.get("pe_every_layer", d)
        r_once, max_once = _roughness(store.metrics(once["run_id"]))
        r_every, max_every = _roughness(store.metrics(every["run_id"]))
        acc_once, acc_every = once["heldout_seq_accuracy"] or 0.0, every["heldout_seq_accuracy"] or 0.0
        ratio = r_every / r_once if r_once > 0 else float("inf")
        numbers |= {f"depth{d}_accuracy_pe_once": num(acc_once), f"depth{d}_accuracy_pe_every_layer": num(acc_every),
                    f"depth{d}_steps_to_99pct_pe_once": once["steps_to_target"],
                    f"depth{d}_steps_to_99pct_pe_every_layer": every["steps_to_target"],
                    f"depth{d}_loss_roughness_pe_once": num(r_once),
                    f"depth{d}_loss_roughness_pe_every_layer": num(r_every),
                    f"depth{d}_roughness_ratio": num(ratio),
                    f"depth{d}_max_late_loss_pe_every_layer": num(max_every)}
        unstable |= acc_every < acc_once - 0.1 or not math.isfinite(r_every) or (ratio >= 2 and acc_every < acc_once)
        rougher |= ratio >= 1.5
        parts.append(text("claim.P2.depth", depth=str(d), acc_every=pct(acc_every), acc_once=pct(acc_once),
                          steps_every=str(every["steps_to_target"] or "—"),
                          steps_once=str(once["steps_to_target"] or "—"), ratio=f2(ratio)))
    verdict = "holds" if unstable else "holds_with_caveats" if rougher else "does_not_hold"
    summary = [text("claim.P2.summary", parts=parts), text(f"claim.P2.{verdict}")]
    return Verdict("P2", verdict, numbers, summary, method, [sweep.source()])


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
    verdict = "holds" if worst < 1e-4 and model_error < 1e-4 else "does_not_hold"
    summary = text("claim.P3.summary", offsets=", ".join(map(str, OFFSETS)), d_model=str(d), worst=f2(worst),
                   model_error=f2(model_error), orthogonality=f2(orthogonality))
    return Verdict("P3", verdict, numbers, summary, text("claim.P3.method"), ["zoo:reverse-post-2x2"])


def measure_p4(store: RunStore | None) -> Verdict:
    numbers, ratios, sources = {}, [], []
    for key in ("pre-2x2", "post-2x2"):
        model, task = zoo(f"reverse-{key}")
        inside = evaluate(model, task, heldout_pairs(task))
        outside = evaluate(model, task, heldout_pairs(task, min_len=11, max_len=14))
        numbers |= {f"{key}_accuracy_lengths_4_10": num(inside.seq_accuracy),
                    f"{key}_accuracy_lengths_11_14": num(outside.seq_accuracy),
                    f"{key}_token_accuracy_lengths_11_14": num(outside.token_accuracy)}
        ratios.append(outside.seq_accuracy / max(inside.seq_accuracy, 1e-9))
        sources.append(f"zoo:reverse-{key}")
    learned = next((r for r in find_done_runs(store, task="reverse", pos_encoding="learned", pos_every_layer=False)
                    if r.has_checkpoint), None)
    learned_model = store_model(store, learned.id) if learned else None
    if learned_model is not None:
        long = evaluate(learned_model, task, heldout_pairs(task, min_len=11, max_len=14)).seq_accuracy
        numbers |= {"learned_pe_run_id": learned.id, "learned_pe_accuracy_lengths_11_14": num(long)}
        sources.append(f"run:{learned.id}")
    worst = min(ratios)
    verdict = "does_not_hold" if worst < 0.5 else "holds_with_caveats" if worst < 0.9 else "holds"
    a, b = numbers["pre-2x2_accuracy_lengths_4_10"], numbers["pre-2x2_accuracy_lengths_11_14"]
    c, e = numbers["post-2x2_accuracy_lengths_4_10"], numbers["post-2x2_accuracy_lengths_11_14"]
    summary = [text("claim.P4.summary", pre_in=pct(a), pre_out=pct(b), post_in=pct(c), post_out=pct(e))]
    if learned_model is not None:
        summary.append(text("claim.P4.learned", run=str(learned.id), accuracy=pct(long)))
    return Verdict("P4", verdict, numbers, summary, text("claim.P4.method"), sources)


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
