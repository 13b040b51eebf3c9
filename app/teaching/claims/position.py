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
    num,
    pct,
    series,
    store_model,
    sweep_missing,
    texts,
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
    en = (f"In reverse-post-4x4 the first encoder layer's input is exactly embedding + PE (difference "
          f"{f2(first_gap)}), and nothing is added between layers (largest change {f2(later_gap)}); with the "
          f"pos_every_layer switch the PE is what gets added (error {f2(every_gap)}). The PE is sizeable: "
          f"‖PE‖/‖embedding‖ = {f2(share)}. This is the 2017 design; rotary encodings (RoPE) in later models act "
          f"inside every attention layer instead.")
    zh = (f"reverse-post-4x4 中,编码器第一层的输入恰好等于 嵌入 + 位置编码(差值 {f2(first_gap)}),"
          f"层与层之间没有再加任何东西(最大变化 {f2(later_gap)});打开 pos_every_layer 开关后,层间加上的正是位置"
          f"编码(误差 {f2(every_gap)})。"
          f"位置编码的分量不小:‖PE‖/‖嵌入‖ = {f2(share)}。这是 2017 年的设计;"
          "后来的旋转位置编码(RoPE)则在每个注意力层内部起作用。")
    method = texts(
        "32 held-out inputs through reverse-post-4x4: encoder.0.hook_resid_pre compared with hook_src_embed + "
        "hook_src_pos, and every later layer's hook_resid_pre with the previous layer's hook_resid_post, with "
        "pos_every_layer off (as trained) and on (ablation); mean ‖PE‖/‖embedding‖ over real tokens.",
        "32 个留出集输入送入 reverse-post-4x4:把 encoder.0.hook_resid_pre 与 hook_src_embed + hook_src_pos 比较,"
        "并把后面每层的 hook_resid_pre 与上一层的 hook_resid_post 比较,pos_every_layer 分别关闭(训练时设置)和打开"
        "(消融);在真实词元上计算平均 ‖PE‖/‖嵌入‖。")
    return Verdict("P1", "holds" if ok else "does_not_hold", numbers, texts(en, zh), method, ["zoo:reverse-post-4x4"])


def _roughness(metrics: list[dict]) -> tuple[float, float]:
    """Std of step-to-step loss changes over the second half of training, and the largest loss there."""
    losses = series(metrics, "loss")
    half = [x for x in losses[len(losses) // 2:] if math.isfinite(x)]
    if len(half) < 3 or len(half) < len(losses) - len(losses) // 2:  # a diverged run has no finite second half
        return float("inf"), float("inf")
    diffs = [b - a for a, b in zip(half, half[1:], strict=False)]
    return statistics.pstdev(diffs), max(half)


def measure_p2(store: RunStore | None) -> Verdict:
    method = texts(
        "The precomputed sweep “pe-every-layer” (reverse task, up to 600 steps, stopping at 99% held-out, Pre-LN, "
        "depths 2 and 4): PE added once (pre_ln) vs at every layer (pe_every_layer). Final held-out exact-sequence "
        "accuracy, steps to 99%, and roughness = std of the step-to-step change of the training loss over the "
        "second half of training.",
        "预先训练的扫描实验“pe-every-layer”(反转任务,最多 600 步、留出集达到 99% 即停止,Pre-LN,2 层与 4 层):"
        "位置编码只加一次(pre_ln)与每层都加(pe_every_layer)对比。最终留出集整句正确率、达到 99% 的步数,"
        "以及粗糙度 = 后半程训练损失逐步变化量的标准差。")
    sweep = load_sweep(store, "pe-every-layer")
    depths = sweep.depths("pre_ln", "pe_every_layer") if sweep else []
    if not depths:
        return sweep_missing("P2", "pe-every-layer", sweep, "pre_ln and pe_every_layer runs",
                             "pre_ln 与 pe_every_layer 运行", method)
    numbers, unstable, rougher, parts_en, parts_zh = {}, False, False, [], []
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
        steps = f"{every['steps_to_target'] or '—'} vs {once['steps_to_target'] or '—'}"
        parts_en.append(f"depth {d}: accuracy {pct(acc_every)} vs {pct(acc_once)}, steps to 99% {steps}, "
                        f"loss roughness ×{f2(ratio)}")
        parts_zh.append(f"{d} 层:正确率 {pct(acc_every)} 对 {pct(acc_once)},达到 99% 的步数 "
                        f"{steps.replace('vs', '对')},"
                        f"损失粗糙度 ×{f2(ratio)}")
    verdict = "holds" if unstable else "holds_with_caveats" if rougher else "does_not_hold"
    en = "PE at every layer vs once — " + "; ".join(parts_en) + "."
    zh = "每层都加位置编码 对 只加一次——" + ";".join(parts_zh) + "。"
    en += {"holds": " Repeating the PE clearly hurts training here.",
           "holds_with_caveats": " The loss is noisier, but the model ends up as good: unstable is too strong a word.",
           "does_not_hold": " Training is no less stable with the PE repeated here."}[verdict]
    zh += {"holds": "这里重复添加位置编码明显损害了训练。",
           "holds_with_caveats": "损失曲线更抖,但最终效果一样好:说“不稳定”言过其实。",
           "does_not_hold": "在这里,重复添加位置编码并没有让训练更不稳定。"}[verdict]
    return Verdict("P2", verdict, numbers, texts(en, zh), method, [sweep.source()])


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
    en = (f"For offsets k = {', '.join(map(str, OFFSETS))} and positions 0–255 (d_model {d}), the block-rotation M_k "
          f"reproduces PE(pos+k) from PE(pos) to within {f2(worst)}, and within {f2(model_error)} on the table of "
          f"reverse-post-2x2; M_k is orthogonal (deviation {f2(orthogonality)}).")
    zh = (f"对偏移 k = {', '.join(map(str, OFFSETS))}、位置 0–255(d_model {d}),"
          f"分块旋转矩阵 M_k 由 PE(pos) 得到 PE(pos+k) 的误差不超过 {f2(worst)},在 reverse-post-2x2 的位置编码表"
          f"上不超过 {f2(model_error)};M_k 是正交矩阵"
          f"(偏差 {f2(orthogonality)})。")
    method = texts(
        "The sinusoidal table PE[pos, 2i] = sin(pos/10000^(2i/d)), PE[pos, 2i+1] = cos(…) for 256 positions, and "
        "M_k = one 2×2 rotation by k·ω_i per frequency (rotation_for_offset); max |PE(pos+k) − M_k PE(pos)| over "
        "every position and feature, float32.",
        "正弦位置编码表 PE[pos, 2i] = sin(pos/10000^(2i/d))、PE[pos, 2i+1] = cos(…),共 256 个位置;M_k 为每个频率一个"
        "旋转角为 k·ω_i 的 2×2 旋转(rotation_for_offset);在所有位置和特征上取 max |PE(pos+k) − M_k PE(pos)|,float32。")
    return Verdict("P3", verdict, numbers, texts(en, zh), method, ["zoo:reverse-post-2x2"])


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
    en = (f"reverse-pre-2x2, trained on 4–10 digits with sinusoidal PE, gets {pct(a)} of held-out inputs of length "
          f"4–10 right but {pct(b)} of lengths 11–14 (Post-LN 2+2: {pct(c)} → {pct(e)}). A fixed formula for "
          f"positions does not make the model generalise to positions it never trained on.")
    zh = (f"reverse-pre-2x2 在 4–10 位数字上用正弦位置编码训练,长度 4–10 的留出集正确率 {pct(a)},"
          f"长度 11–14 只有 {pct(b)}(Post-LN 2+2:{pct(c)} → {pct(e)})。位置编码有固定公式,并不意味着模型能推广到"
          "训练中没见过的位置。")
    if learned_model is not None:
        en += f" A stored model with learned PE (run {learned.id}) gets {pct(long)} on lengths 11–14."
        zh += f"运行库中使用可学习位置编码的模型(运行 {learned.id})在长度 11–14 上为 {pct(long)}。"
    method = texts(
        "Greedy exact-sequence accuracy of reverse-pre-2x2 and reverse-post-2x2 (trained on lengths 4–10) on 100 "
        "held-out inputs of lengths 4–10 and 100 of lengths 11–14; a stored finished reverse run with learned PE, "
        "if any, on the same long inputs.",
        "reverse-pre-2x2 与 reverse-post-2x2(训练长度 4–10)在 100 个长度 4–10 和 100 个长度 11–14 的留出集输入上的贪心"
        "解码整句正确率;若运行库中有使用可学习位置编码的反转任务运行,也在同样的长输入上测试。")
    return Verdict("P4", verdict, numbers, texts(en, zh), method, sources)


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
    en = (f"Without PE, reverse-post-2x2 gives the very same output for an input and its rotation (e.g. 1234 and "
          f"2341) in {pct(same['pe_off'])} of {n} cases (with PE: {pct(same['pe_on'])}), so it cannot tell the "
          f"orders apart; held-out accuracy falls from {pct(acc_on)} to {pct(acc_off)}.")
    zh = (f"去掉位置编码后,reverse-post-2x2 对一个输入和它的循环移位(如 1234 与 2341)给出完全相同的输出,在 {n} 个"
          f"样本中占 {pct(same['pe_off'])}(有位置编码时为 {pct(same['pe_on'])}),即它分不清词序;留出集正确率从 "
          f"{pct(acc_on)} "
          f"降到 {pct(acc_off)}。")
    method = texts(
        "100 held-out inputs and the same digits rotated by one place, greedy-decoded by reverse-post-2x2 with its "
        "sinusoidal PE and with the PE ablated (pos_encoding=none): share of inputs whose two outputs are identical, "
        "and held-out exact-sequence accuracy.",
        "100 个留出集输入及其循环左移一位的版本,用 reverse-post-2x2 分别在保留正弦位置编码与消融位置编码"
        "(pos_encoding=none)时贪心解码:两者输出完全相同的比例,以及留出集整句正确率。")
    return Verdict("P5", "holds" if ok else "does_not_hold", numbers, texts(en, zh), method, ["zoo:reverse-post-2x2"])


MEASURES = {"P1": measure_p1, "P2": measure_p2, "P3": measure_p3, "P4": measure_p4, "P5": measure_p5}
