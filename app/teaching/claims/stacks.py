"""E1, E2, D1, D2, D3, D4: how the encoder and decoder stacks are wired, what their attention spans,
and what the causal mask does."""

from __future__ import annotations

import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    Verdict,
    f2,
    find_done_runs,
    heldout_batch,
    heldout_pairs,
    num,
    pct,
    teacher_forced_accuracy,
    texts,
    zoo,
)
from model.evaluate import evaluate
from model.tasks import BOS, PAD

DEEP_MODELS = {"post-4x4": "reverse-post-4x4", "pre-4x4": "reverse-pre-4x4"}
STACK_ZH = {"encoder": "编码器", "decoder": "解码器"}


def _chain(stack: str) -> tuple[dict, bool]:
    numbers, ok = {}, True
    for key, name in DEEP_MODELS.items():
        model, task = zoo(name)
        batch = heldout_batch(task, 32)
        with torch.no_grad():
            _, cache = model.run_with_cache(batch.src, batch.tgt_in,
                                            names_filter=lambda n: n.startswith(stack) and ".hook_resid_p" in n)
        n = model.config.n_layers(stack)
        width = (batch.src if stack == "encoder" else batch.tgt_in).shape
        shapes = {tuple(cache[f"{stack}.{i}.hook_resid_post"].shape) for i in range(n)}
        gap = max((cache[f"{stack}.{i + 1}.hook_resid_pre"] - cache[f"{stack}.{i}.hook_resid_post"]).abs().max().item()
                  for i in range(n - 1))
        layers = getattr(model, stack).layers()
        same_structure = all([(k, p.shape) for k, p in layer.named_parameters()] ==
                             [(k, p.shape) for k, p in layers[0].named_parameters()] for layer in layers)
        in_layers = sum(p.numel() for layer in layers for p in layer.parameters())
        between = sum(p.numel() for p in getattr(model, stack).parameters()) - in_layers \
            - sum(p.numel() for p in getattr(model, stack).norm_final.parameters())
        numbers |= {f"{key}_layers": n, f"{key}_output_shape": "×".join(map(str, next(iter(shapes)))),
                    f"{key}_max_abs_gap_between_layers": num(gap), f"{key}_parameters_between_layers": between,
                    f"{key}_identical_layer_structure": str(same_structure)}
        ok &= shapes == {(width[0], width[1], model.config.d_model)} and gap == 0 and same_structure and between == 0
    return numbers, ok


def _chain_verdict(claim: str, stack: str) -> Verdict:
    numbers, ok = _chain(stack)
    gaps = max(numbers[f"{k}_max_abs_gap_between_layers"] for k in DEEP_MODELS)
    shape = numbers["post-4x4_output_shape"]
    en = (f"In reverse-post-4x4 and reverse-pre-4x4 every {stack} layer outputs a (batch × length × d_model) = "
          f"{shape} tensor, layer k+1's input equals layer k's output exactly (largest difference {f2(gaps)}), "
          f"all layers have the same parameter shapes and there are "
          f"{numbers['post-4x4_parameters_between_layers']} parameters between layers (no projection).")
    zh = (f"在 reverse-post-4x4 和 reverse-pre-4x4 中,{STACK_ZH[stack]}每一层都输出 (批 × 长度 × d_model) = "
          f"{shape} 的张量,第 k+1 层的输入与第 k 层的输出完全相同(最大差值 {f2(gaps)}),各层参数形状一致,层与层之间有 "
          f"{numbers['post-4x4_parameters_between_layers']} 个参数(没有投影)。")
    method = texts(
        f"32 held-out inputs through both 4+4 zoo models with their trained switches (PE added once); the {stack} "
        "hooks hook_resid_pre and hook_resid_post of every layer compared element by element; parameter shapes "
        "per layer and parameters of the stack outside its layers (the Pre-LN final norm aside) counted.",
        f"32 个留出集输入送入两个 4+4 模型(按训练时的开关,位置编码只加一次);逐元素比较{STACK_ZH[stack]}每层的 "
        "hook_resid_pre 与 hook_resid_post;统计每层参数形状,以及堆叠中层之外(Pre-LN 的最终归一化除外)的参数量。")
    return Verdict(claim, "holds" if ok else "does_not_hold", numbers, texts(en, zh), method,
                   [f"zoo:{n}" for n in DEEP_MODELS.values()])


def measure_e1(store: RunStore | None) -> Verdict:
    return _chain_verdict("E1", "encoder")


def measure_d1(store: RunStore | None) -> Verdict:
    return _chain_verdict("D1", "decoder")


def _attention_distance(stack: str) -> tuple[dict, dict[str, list[float]]]:
    numbers, by_model = {}, {}
    for key, name in DEEP_MODELS.items():
        model, task = zoo(name)
        batch = heldout_batch(task)
        with torch.no_grad():
            wanted = [f"{stack}.{i}.self_attn.hook_pattern" for i in range(model.config.n_layers(stack))]
            _, cache = model.run_with_cache(batch.src, batch.tgt_in, names_filter=wanted)
        real = (batch.src if stack == "encoder" else batch.tgt_in) != PAD
        distances = []
        for i in range(model.config.n_layers(stack)):
            pattern = cache[f"{stack}.{i}.self_attn.hook_pattern"]  # (B, H, T, T)
            t = pattern.size(-1)
            gap = (torch.arange(t)[:, None] - torch.arange(t)[None, :]).abs().float()
            per_query = (pattern * gap).sum(-1)  # (B, H, T)
            entropy = -(pattern * (pattern + 1e-12).log()).sum(-1)
            mask = real[:, None, :].expand_as(per_query)
            distances.append(per_query[mask].mean().item())
            numbers[f"{key}_layer{i + 1}_mean_distance"] = num(distances[-1])
            numbers[f"{key}_layer{i + 1}_entropy"] = num(entropy[mask].mean().item())
        trend = (distances[-1] - distances[0]) / distances[0]
        numbers[f"{key}_relative_change_first_to_last"] = num(trend)
        by_model[key] = distances
    return numbers, by_model


def _distance_verdict(claim: str, stack: str) -> Verdict:
    numbers, by_model = _attention_distance(stack)
    trends = [(d[-1] - d[0]) / d[0] for d in by_model.values()]
    grows = [t >= 0.2 and all(b >= a - 0.05 for a, b in zip(d, d[1:], strict=False))
             for t, d in zip(trends, by_model.values(), strict=True)]
    verdict = "holds" if all(grows) else "holds_with_caveats" if any(grows) else "does_not_hold"
    titles = {"post-4x4": "Post-LN 4+4", "pre-4x4": "Pre-LN 4+4"}
    parts_en, parts_zh = [], []
    for (key, d), trend in zip(by_model.items(), trends, strict=True):
        change = f"{'+' if trend >= 0 else ''}{pct(trend)}"
        parts_en.append(f"{' → '.join(f2(x) for x in d)} ({titles[key]}, {change})")
        parts_zh.append(f"{' → '.join(f2(x) for x in d)}({titles[key]},{change})")
    en = f"Mean {stack} self-attention distance in tokens, layer 1 → 4: " + "; ".join(parts_en) + "."
    zh = f"{STACK_ZH[stack]}自注意力的平均注意力距离(词元数),第 1 层 → 第 4 层:" + ";".join(parts_zh) + "。"
    if verdict == "holds":
        en += " Deeper layers look further."
        zh += "越深的层看得越远。"
    else:
        en += " Attention does not reach further in deeper layers: no local-to-global progression appears here."
        zh += "深层的注意力并没有看得更远:这里看不到由局部到全局的递进。"
    method = texts(
        f"100 held-out inputs through reverse-post-4x4 and reverse-pre-4x4; for every {stack} self-attention layer, "
        "Σ_k pattern[q,k]·|q − k| averaged over heads and real query positions (mean attention distance), and the "
        "attention entropy. Holds if the distance grows by ≥ 20% from the first to the last layer without falling.",
        f"100 个留出集输入送入 reverse-post-4x4 与 reverse-pre-4x4;对{STACK_ZH[stack]}每一层自注意力计算 "
        "Σ_k pattern[q,k]·|q − k|,在各头和真实查询位置上取平均(平均注意力距离),并给出注意力熵。"
        "若从第一层到最后一层距离增长至少 20% 且不回落,则判定成立。")
    return Verdict(claim, verdict, numbers, texts(en, zh), method, [f"zoo:{n}" for n in DEEP_MODELS.values()])


def measure_e2(store: RunStore | None) -> Verdict:
    return _distance_verdict("E2", "encoder")


def measure_d4(store: RunStore | None) -> Verdict:
    return _distance_verdict("D4", "decoder")


def measure_d2(store: RunStore | None) -> Verdict:
    model, task = zoo("en-numbers-2x2")
    batch = heldout_batch(task)
    with torch.no_grad():
        memory = model.encode(batch.src)
        _, cache = model.run_with_cache(batch.src, batch.tgt_in, names_filter=lambda n: n.endswith("cross_attn.hook_k"))
        final_gap, same_depth_gap = 0.0, []
        for i, layer in enumerate(model.decoder.layers()):
            keys = cache[f"decoder.{i}.cross_attn.hook_k"]
            attn = layer.cross_attn
            final_gap = max(final_gap, (keys - attn._split(attn.W_k(memory.final))).abs().max().item())
            if i < len(memory.per_layer) - 1:
                other = attn._split(attn.W_k(memory.per_layer[i]))
                same_depth_gap.append((keys - other).abs().max().item())
    zh_model, zh_task = zoo("zh-numbers-2x2")
    scores = {}
    for key, (m, t) in {"en": (model, task), "zh": (zh_model, zh_task)}.items():
        pairs = heldout_pairs(t)
        scores[key] = (evaluate(m, t, pairs).seq_accuracy,
                       evaluate(m, t, pairs, m.switches.replace(memory="same_depth")).seq_accuracy)
    numbers = {"max_abs_diff_keys_vs_final_encoder_output": num(final_gap),
               "max_abs_diff_keys_vs_same_depth_layer": num(max(same_depth_gap)) if same_depth_gap else None,
               "en_numbers_accuracy_memory_final": num(scores["en"][0]),
               "en_numbers_accuracy_memory_same_depth": num(scores["en"][1]),
               "zh_numbers_accuracy_memory_final": num(scores["zh"][0]),
               "zh_numbers_accuracy_memory_same_depth": num(scores["zh"][1])}
    verdict = "holds" if final_gap < 1e-5 else "does_not_hold"
    en = (f"In en-numbers-2x2 every decoder layer's cross-attention keys equal W_k × the final encoder output "
          f"(largest difference {f2(final_gap)}); from the same-depth encoder layer they would differ by up to "
          f"{f2(numbers['max_abs_diff_keys_vs_same_depth_layer'])}. Reading the same-depth layer instead changes "
          f"held-out accuracy from {pct(scores['en'][0])} to {pct(scores['en'][1])} (en) and {pct(scores['zh'][0])} "
          f"to {pct(scores['zh'][1])} (zh numerals).")
    zh = (f"en-numbers-2x2 中每个解码器层交叉注意力的 K 都等于 W_k × 编码器最终输出(最大差值 {f2(final_gap)});"
          f"若取同深度编码器层,差值可达 {f2(numbers['max_abs_diff_keys_vs_same_depth_layer'])}。改为读取同深度的"
          "编码器层后,"
          f"留出集正确率从 {pct(scores['en'][0])} 变为 {pct(scores['en'][1])}(英文),从 {pct(scores['zh'][0])} 变为 "
          f"{pct(scores['zh'][1])}(中文数字)。")
    method = texts(
        "100 held-out inputs through en-numbers-2x2: each decoder layer's cross_attn.hook_k compared with that "
        "layer's W_k applied to the final encoder output (and to the encoder layer of the same depth). Then "
        "greedy held-out accuracy of en-numbers-2x2 and zh-numbers-2x2 with memory=final (as trained) and "
        "memory=same_depth (ablation).",
        "100 个留出集输入送入 en-numbers-2x2:把每个解码器层的 cross_attn.hook_k 与该层 W_k 作用于编码器最终输出"
        "(以及同深度编码器层输出)的结果比较。再用 memory=final(训练时的设置)和 memory=same_depth(消融)"
        "分别测 en-numbers-2x2 与 zh-numbers-2x2 的留出集贪心解码正确率。")
    return Verdict("D2", verdict, numbers, texts(en, zh), method, ["zoo:en-numbers-2x2", "zoo:zh-numbers-2x2"])


def measure_d3(store: RunStore | None) -> Verdict:
    model, task = zoo("reverse-post-2x2")
    batch = heldout_batch(task)
    with torch.no_grad():
        generated = model.greedy_decode(batch.src, batch.tgt_out.size(1))
        tgt_in = torch.cat([torch.full_like(generated[:, :1], BOS), generated[:, :-1]], dim=1)
        memory = model.encode(batch.src)
        parallel = model.decode(tgt_in, memory)
        stepwise = torch.stack([model.decode(tgt_in[:, : t + 1], memory)[:, -1] for t in range(tgt_in.size(1))], 1)
        step_gap = (parallel - stepwise).abs().max().item()
        changed = tgt_in.clone()
        changed[:, -1] = (changed[:, -1] + 1) % task.tgt_tokenizer.size
        future_gap = (model.decode(changed, memory)[:, :-1] - parallel[:, :-1]).abs().max().item()
        unmasked_future_gap = (model.decode(changed, memory, model.switches.replace(causal_mask=False))[:, :-1]
                               - model.decode(tgt_in, memory, model.switches.replace(causal_mask=False))[:, :-1]
                               ).abs().max().item()
    pairs = heldout_pairs(task)
    no_mask = model.switches.replace(causal_mask=False)
    greedy_on = evaluate(model, task, pairs).seq_accuracy
    greedy_off = evaluate(model, task, pairs, no_mask).seq_accuracy
    forced_off = teacher_forced_accuracy(model, batch, no_mask)
    numbers = {"max_abs_diff_parallel_vs_step_by_step_logits": num(step_gap),
               "max_abs_change_earlier_logits_when_last_token_changes": num(future_gap),
               "same_without_mask": num(unmasked_future_gap),
               "greedy_accuracy_mask_on": num(greedy_on), "greedy_accuracy_mask_ablated": num(greedy_off),
               "teacher_forced_token_accuracy_mask_ablated": num(forced_off)}
    sources = ["zoo:reverse-post-2x2"]
    runs = [r for r in find_done_runs(store, causal_mask=False) if r.final]
    if runs:
        run = runs[0]
        forced = [r["token_accuracy"] for r in store.metrics(run.id)[-50:] if r.get("token_accuracy") is not None]
        numbers |= {"unmasked_run_id": run.id, "unmasked_run_task": run.spec.task,
                    "unmasked_run_teacher_forced_token_accuracy": num(statistics.fmean(forced)) if forced else None,
                    "unmasked_run_greedy_heldout_accuracy": num(run.final.get("heldout_seq_accuracy"))}
        sources.append(f"run:{run.id}")
    exact = step_gap < 1e-4 and future_gap < 1e-6
    verdict = "holds" if exact else "does_not_hold"
    en = (f"With the causal mask one parallel pass gives the same logits as decoding token by token (largest "
          f"difference {f2(step_gap)}), and changing the last target token moves earlier logits by {f2(future_gap)} "
          f"(without the mask: {f2(unmasked_future_gap)}). Removing the mask from reverse-post-2x2: greedy accuracy "
          f"{pct(greedy_on)} → {pct(greedy_off)} (the newest position sees only the past anyway), but teacher-forced "
          f"token accuracy falls to {pct(forced_off)}, as every position now sees the answer tokens after it.")
    zh = (f"有因果掩码时,一次并行前向与逐个词元解码得到的 logits 相同(最大差值 {f2(step_gap)});改动最后一个目标词元,"
          f"前面位置的 logits 变化 {f2(future_gap)}(去掉掩码时为 {f2(unmasked_future_gap)})。去掉 reverse-post-2x2 的"
          f"掩码:贪心解码正确率 {pct(greedy_on)} → {pct(greedy_off)}(最新的位置本来就只看得到过去),但 teacher forcing "
          f"的词元正确率降到 {pct(forced_off)},因为每个位置都看到了它后面的答案词元。")
    if runs:
        tf, gr = (numbers["unmasked_run_teacher_forced_token_accuracy"],
                  numbers["unmasked_run_greedy_heldout_accuracy"])
        en += (f" Run {run.id}, trained without the mask, scores {pct(tf)} teacher-forced tokens in training and "
               f"{pct(gr)} held-out sequences when it must generate")
        zh += (f"不带掩码训练的运行 {run.id} 在训练中 teacher forcing 的词元正确率为 {pct(tf)},自己生成时留出集整句"
               f"正确率为 {pct(gr)}")
        if tf is not None and gr is not None and tf - gr > 0.3:
            en += ": it learned to copy the answer it was shown."
            zh += ":它学会的是抄写给它看的答案。"
        else:
            en += "."
            zh += "。"
    else:
        en += " Train a run with the causal mask off (training lab) to see the teacher-forced vs greedy gap."
        zh += "在训练实验室里关掉因果掩码训练一次,即可看到 teacher forcing 与自回归生成之间的落差。"
    method = texts(
        "reverse-post-2x2 on 100 held-out inputs: its own greedy outputs decoded in one masked parallel pass vs one "
        "position at a time; the last decoder input token changed to see whether earlier positions notice; greedy "
        "accuracy with the mask ablated. The newest finished stored run trained with causal_mask off, if any: its "
        "teacher-forced training token accuracy (last 50 steps) vs its greedy held-out accuracy.",
        "reverse-post-2x2,100 个留出集输入:把模型自己的贪心输出用一次带掩码的并行前向解码,并与逐位置解码比较;"
        "改动最后一个解码器输入词元,看前面的位置是否受影响;消融掩码后的贪心解码正确率。若运行库中有关闭因果掩码训练"
        "的已完成运行,取最新一个:比较其训练中 teacher forcing 词元正确率(最后 50 步)与留出集贪心解码正确率。")
    return Verdict("D3", verdict, numbers, texts(en, zh), method, sources)


MEASURES = {"E1": measure_e1, "E2": measure_e2, "D1": measure_d1, "D2": measure_d2, "D3": measure_d3,
            "D4": measure_d4}
