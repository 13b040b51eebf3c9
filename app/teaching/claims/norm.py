"""N1, N3, N5: what a norm computes, whether it stops layer inputs drifting, and batch vs layer norm."""

from __future__ import annotations

import copy
import math
import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    Verdict,
    f2,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    num,
    pct,
    store_model,
    sweep_missing,
    texts,
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
    en = (f"In all {len(norms)} LayerNorms of reverse-post-2x2, every token's standardised vector has |mean| ≤ "
          f"{f2(max(means))} and |std − 1| ≤ {f2(max(stds))} (input std averaged {f2(statistics.fmean(before_stds))}). "
          f"γ and β are learned: mean |γ − 1| = {f2(gamma_dev)}, mean |β| = {f2(beta_abs)}, so the output is no longer "
          f"standard (token std {f2(statistics.fmean(after_stds))}, off 1 by up to {f2(after_diff)}).")
    zh = (f"reverse-post-2x2 的全部 {len(norms)} 个层归一化中,每个词元标准化后的向量 |均值| ≤ {f2(max(means))},"
          f"|标准差 − 1| ≤ {f2(max(stds))}(输入的标准差平均为 {f2(statistics.fmean(before_stds))})。γ 和 β 是学出来的:"
          f"平均 |γ − 1| = {f2(gamma_dev)},平均 |β| = {f2(beta_abs)},因此输出不再是标准化的(词元标准差 "
          f"{f2(statistics.fmean(after_stds))},与 1 最多相差 {f2(after_diff)})。")
    method = texts(
        "100 held-out inputs through reverse-post-2x2 with the hooks of every LayerNorm: per real token, the mean and "
        "std (over d_model features) of (z − μ)/σ before γ and β (hook_normalized), of the input (hook_in) and of "
        "the output (hook_out); γ and β read from the weights.",
        "100 个留出集输入送入 reverse-post-2x2,挂上每个层归一化的钩子:对每个真实词元,计算 γ、β 之前的 (z − μ)/σ"
        "(hook_normalized)、输入(hook_in)和输出(hook_out)在 d_model 个特征上的均值与标准差;γ、β 直接读自权重。")
    return Verdict("N1", verdict, numbers, texts(en, zh), method, ["zoo:reverse-post-2x2"])


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
    method = texts(
        "The precomputed sweep “depth-residual-norm”: at its deepest depth with post_ln, pre_ln and no_norm runs, "
        "each layer's input (the residual stream entering layers 2..N of both stacks) was recorded at every "
        "training step (mean and std over real tokens). Drift = std across steps of that std divided by its "
        "average (coefficient of variation), averaged over layers; also the std across steps of the mean.",
        "预先训练的扫描实验“depth-residual-norm”:取 post_ln、pre_ln、no_norm 都已完成的最深深度,训练中每一步都记录了"
        "各层输入(两个堆叠第 2..N 层入口处的残差流)在真实词元上的均值和标准差。漂移 = 该标准差在各步之间的标准差"
        "除以其平均值(变异系数),再对各层取平均;另给出均值在各步之间的标准差。")
    variants = ("post_ln", "pre_ln", "no_norm")
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths(*variants) if sweep else []
    if not depths:
        return sweep_missing("N3", "depth-residual-norm", sweep, "post_ln, pre_ln and no_norm runs",
                             "post_ln、pre_ln 与 no_norm 运行", method)
    deep = depths[-1]
    drift = {v: _drift(store.metrics(sweep.get(v, deep)["run_id"])) for v in variants}
    numbers = {"depth": deep}
    for v in variants:
        numbers[f"{v}_input_std_drift_cv"] = num(drift[v][0])
        numbers[f"{v}_input_mean_drift"] = num(drift[v][1])
    post, pre, none = (drift[v][0] for v in variants)
    steadier = post < none  # NaN compares False: no evidence
    verdict = "holds_with_caveats" if steadier else "does_not_hold"
    en = (f"At {deep}+{deep} layers the drift of the layer inputs' spread over training (coefficient of variation) "
          f"is {f2(post)} with Post-LN, {f2(pre)} with Pre-LN and {f2(none)} without any norm. ")
    zh = (f"{deep}+{deep} 层时,训练过程中各层输入离散程度的漂移(变异系数)Post-LN 为 {f2(post)},Pre-LN 为 {f2(pre)},"
          f"不用归一化为 {f2(none)}。")
    if steadier:
        en += ("A norm on the stream keeps layer inputs steadier, but that is not evidence that removing this "
               "drift is why it helps: “internal covariate shift” is a contested explanation (Santurkar et al. "
               "2018 found BatchNorm's benefit survives added drift).")
        zh += ("对残差流做归一化确实让层输入更稳定,但这并不能证明归一化有效是因为消除了这种漂移:"
               "“内部协变量偏移”是一个有争议的解释(Santurkar 等 2018 发现人为加入漂移后批归一化依然有效)。")
    else:
        en += "The layer inputs drift no less with a norm than without, so this run shows no reduction to explain."
        zh += "有归一化时层输入的漂移并不比没有时小,这里看不到所谓的偏移被消除。"
    if pre >= post:  # a Pre-LN stream is never normalised; only the sublayer inputs are
        en += " In Pre-LN the stream itself is never normalised (only each sublayer's input is), and it drifts."
        zh += "Pre-LN 中残差流本身从不被归一化(只有子层的输入被归一化),它依然会漂移。"
    return Verdict("N3", verdict, numbers, texts(en, zh), method, [sweep.source()])


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
    en = (f"In training mode one sequence's logits change by {pct(bn_mates)} when its 31 batch-mates are swapped "
          f"and by {pct(bn_alone)} when it is alone in the batch with BatchNorm; with LayerNorm by {f2(ln_mates)} "
          f"and {f2(ln_alone)} (float noise). At inference BatchNorm uses its running statistics, so the change "
          f"is {f2(bn_eval_mates)}.")
    zh = (f"训练模式下,使用批归一化时同一条序列的 logits 在换掉 31 个同批样本后变化 {pct(bn_mates)},单独成批时变化 "
          f"{pct(bn_alone)};层归一化下分别为 {f2(ln_mates)} 和 {f2(ln_alone)}(浮点误差)。推理时批归一化使用滑动统计量,"
          f"变化为 {f2(bn_eval_mates)}。")
    if acc_bn is not None and acc_ln is not None:
        en += (f" Trained the same way, the BatchNorm model gets {pct(acc_bn)} of held-out sequences right, the "
               f"LayerNorm one {pct(acc_ln)}.")
        zh += f"同样训练后,批归一化模型的留出集整句正确率为 {pct(acc_bn)},层归一化模型为 {pct(acc_ln)}。"
        if not clearly_worse:
            en += " On this task BatchNorm (which here ignores padding) still trains: “suits badly” is not shown."
            zh += "在这个任务上批归一化(这里的实现会忽略填充位)照样能训练好,“不适用”并未得到证实。"
    else:
        en += " How well a BatchNorm model trains needs the batch-vs-layer-norm runs (`python -m app.lab.precompute`)."
        zh += "批归一化模型能训练到什么程度,需要 batch-vs-layer-norm 运行(`python -m app.lab.precompute`)。"
    method = texts(
        "One held-out sequence's teacher-forced logits in a batch of 32 (two different sets of 31 batch-mates) and "
        "alone, with the model in training mode (batch statistics) and in eval mode (running statistics); relative "
        "change ‖Δlogits‖/‖logits‖. BatchNorm model: the stored batch_norm run of the batch-vs-layer-norm sweep, or "
        "else reverse-pre-2x2 with its norms computed as BatchNorm. Held-out accuracies from that sweep.",
        "取一条留出集序列,在 32 条的批次中(两组不同的 31 个同批样本)和单独成批时计算 teacher forcing 的 logits,"
        "模型分别处于训练模式(用批统计量)和评估模式(用滑动统计量);相对变化为 ‖Δlogits‖/‖logits‖。批归一化模型取"
        "batch-vs-layer-norm 扫描中的 batch_norm 运行,没有时用 reverse-pre-2x2 并把其归一化改为批归一化计算。"
        "留出集正确率取自该扫描。")
    return Verdict("N5", verdict, numbers, texts(en, zh), method, sources)


MEASURES = {"N1": measure_n1, "N3": measure_n3, "N5": measure_n5}
