"""N1, N3, N5: what a norm computes, whether it stops layer inputs drifting, and batch vs layer norm."""

from __future__ import annotations

import copy
import math
import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    PRECOMPUTE,
    Verdict,
    f2,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    needs_runs,
    num,
    pct,
    store_model,
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
    standardised = max(means) < 1e-4 and max(stds) < 1e-2
    learned = gamma_dev > 1e-2 or beta_abs > 1e-2
    verdict = "holds" if standardised and learned else "holds_with_caveats" if standardised else "does_not_hold"
    summary = text("claim.N1.summary", norms=str(len(norms)), mean=f2(max(means)), std=f2(max(stds)),
                   before=f2(statistics.fmean(before_stds)), gamma=f2(gamma_dev), beta=f2(beta_abs),
                   after=f2(statistics.fmean(after_stds)), off=f2(after_diff))
    return Verdict("N1", verdict, numbers, summary, text("claim.N1.method"), ["zoo:reverse-post-2x2"])


def _drift(metrics: list[dict]) -> tuple[float, float]:
    """Averaged over the inputs of layers 2.. of both stacks: the coefficient of variation of the layer
    input's std across training steps, and the std of its mean across steps."""
    cvs, mean_drifts = [], []
    for stack in ("encoder", "decoder"):
        n_layers = len((metrics[0].get("layer_input_std") or {}).get(stack, []))
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


def measure_n3(store: RunStore | None) -> Verdict:
    method = text("claim.N3.method", plan="depth-residual-norm")
    variants = ("post_ln", "pre_ln", "no_norm")
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths(*variants) if sweep else []
    if not depths:
        return sweep_missing("N3", "depth-residual-norm", sweep, needs_runs(*variants), method)
    deep = depths[-1]
    drift = {v: _drift(store.metrics(sweep.get(v, deep)["run_id"])) for v in variants}
    numbers = {"depth": deep}
    for v in variants:
        numbers[f"{v}_input_std_drift_cv"] = num(drift[v][0])
        numbers[f"{v}_input_mean_drift"] = num(drift[v][1])
    post, pre, none = (drift[v][0] for v in variants)
    steadier = post < none  # NaN compares False: no evidence
    verdict = "holds_with_caveats" if steadier else "does_not_hold"
    summary = [text("claim.N3.summary", depth=str(deep), post=f2(post), pre=f2(pre), none=f2(none)),
               text("claim.N3.steadier" if steadier else "claim.N3.not_steadier")]
    if pre >= post:  # a Pre-LN stream is never normalised; only the sublayer inputs are
        summary.append(text("claim.N3.pre_ln_drifts"))
    return Verdict("N3", verdict, numbers, summary, method, [sweep.source()])


def _first_logits(model, task, pairs, switches) -> torch.Tensor:
    batch = collate(task, pairs)
    with torch.no_grad():
        return model(batch.src, batch.tgt_in, switches)[0, : len(task.tgt_tokenizer.encode(pairs[0][1])) + 1]


def _batch_dependence(model, task, switches, train: bool) -> tuple[float, float]:
    """Relative change of one sequence's logits when its 31 batch-mates change, and when it is alone."""
    model = copy.deepcopy(model)  # train mode updates running statistics: never touch the shared model
    model.train(train)
    pairs = heldout_pairs(task, 63)
    mine, mates_a, mates_b = pairs[0], pairs[1:32], pairs[32:63]
    base = _first_logits(model, task, [mine, *mates_a], switches)
    other = _first_logits(model, task, [mine, *mates_b], switches)
    alone = _first_logits(model, task, [mine], switches)
    scale = base.norm().item()
    return (other - base).norm().item() / scale, (alone - base).norm().item() / scale


def measure_n5(store: RunStore | None) -> Verdict:
    sweep = load_sweep(store, "batch-vs-layer-norm")
    rows = {v: sweep.get(v, 2) for v in ("batch_norm", "pre_ln")} if sweep else {}
    batch_model = store_model(store, rows["batch_norm"]["run_id"]) if rows.get("batch_norm") else None
    layer_model = store_model(store, rows["pre_ln"]["run_id"]) if rows.get("pre_ln") else None
    zoo_model, task = zoo("reverse-pre-2x2")
    stored = batch_model is not None
    sources = ([sweep.source()] if stored or layer_model is not None else []) + \
        (["zoo:reverse-pre-2x2"] if not stored or layer_model is None else [])
    if stored:
        batch_switches = batch_model.switches
    else:  # the zoo model with its norms computed as BatchNorm (an ablation)
        batch_model, batch_switches = zoo_model, zoo_model.switches.replace(norm="batch")
    layer_model = layer_model or zoo_model
    bn_mates, bn_alone = _batch_dependence(batch_model, task, batch_switches, train=True)
    bn_eval_mates, _ = _batch_dependence(batch_model, task, batch_switches, train=False)
    ln_mates, ln_alone = _batch_dependence(layer_model, task, layer_model.switches, train=True)
    acc_bn = rows["batch_norm"]["heldout_seq_accuracy"] if rows.get("batch_norm") else None
    acc_ln = rows["pre_ln"]["heldout_seq_accuracy"] if rows.get("pre_ln") else None
    numbers = {"batchnorm_train_change_other_batchmates": num(bn_mates), "batchnorm_train_change_alone": num(bn_alone),
               "batchnorm_eval_change_other_batchmates": num(bn_eval_mates),
               "layernorm_train_change_other_batchmates": num(ln_mates), "layernorm_train_change_alone": num(ln_alone),
               "batchnorm_run_heldout_accuracy": num(acc_bn), "layernorm_run_heldout_accuracy": num(acc_ln),
               "batchnorm_model": "stored run" if stored else "zoo ablation (norm=batch)"}
    depends = bn_mates > 1e-3 and bn_alone > 1e-3 and ln_mates < 1e-4 and ln_alone < 1e-4
    clearly_worse = acc_bn is not None and acc_ln is not None and acc_bn < acc_ln - 0.1
    verdict = "does_not_hold" if not depends else "holds" if clearly_worse else "holds_with_caveats"
    summary = [text("claim.N5.summary", bn_mates=pct(bn_mates), bn_alone=pct(bn_alone), ln_mates=f2(ln_mates),
                    ln_alone=f2(ln_alone), bn_eval=f2(bn_eval_mates))]
    if acc_bn is not None and acc_ln is not None:
        summary.append(text("claim.N5.trained", batch=pct(acc_bn), layer=pct(acc_ln)))
        if not clearly_worse:
            summary.append(text("claim.N5.still_trains"))
    else:
        summary.append(text("claim.N5.needs_runs", plan="batch-vs-layer-norm", command=PRECOMPUTE))
    return Verdict("N5", verdict, numbers, summary, text("claim.N5.method"), sources)


MEASURES = {"N1": measure_n1, "N3": measure_n3, "N5": measure_n5}
