"""R3, R4, N2, N4: training at several depths with residual connections and norms on or off, read
from the precomputed "depth-residual-norm" sweep (python -m app.lab.precompute)."""

from __future__ import annotations

import math

from app.lab.store import RunStore
from app.lab.sweeps import TARGET
from app.teaching.claims.common import SweepData, Verdict, f2, load_sweep, num, pct, series, sweep_missing, texts

PLAN = "depth-residual-norm"
DEEP = 6  # the note's threshold: "6 layers and more"
CONVERGED, FAILED = 0.9, 0.5  # final held-out exact-sequence accuracy


def _steps_zh(row: dict) -> str:
    s = row["steps_to_target"]
    return f"{s} 步" if s is not None else f"{row['steps']} 步内未达到"


def _steps_en(row: dict) -> str:
    s = row["steps_to_target"]
    return f"{s} steps" if s is not None else f"not reached in {row['steps']} steps"


def _acc(row: dict) -> float:
    a = row["heldout_seq_accuracy"]
    return float(a) if a is not None and math.isfinite(a) else 0.0


def _table(sweep: SweepData, variants: tuple[str, ...], depths: list[int]) -> dict:
    numbers: dict = {}
    for variant in variants:
        for depth in depths:
            row = sweep.get(variant, depth)
            numbers[f"{variant}_depth{depth}_heldout_accuracy"] = num(row["heldout_seq_accuracy"])
            numbers[f"{variant}_depth{depth}_steps_to_{int(TARGET * 100)}pct"] = row["steps_to_target"]
    numbers["steps_budget"] = sweep.get(variants[0], depths[0])["steps"]
    return numbers


def _reduction(fast: dict, slow: dict) -> float | None:
    """1 − steps(fast)/steps(slow) when both reached the target; None otherwise."""
    if fast["steps_to_target"] is None or slow["steps_to_target"] is None:
        return None
    return 1 - fast["steps_to_target"] / slow["steps_to_target"]


def _method(variants: str, extra_en: str = "", extra_zh: str = "") -> dict[str, str]:
    return texts(
        f"The precomputed sweep “{PLAN}” (reverse task, up to 600 steps, stopping at {pct(TARGET)} held-out, "
        f"seed 0, Adam lr 1e-3; depths 2, 4, 6 encoder + decoder layers): final greedy held-out exact-sequence "
        f"accuracy and the first evaluated step at which it reached {pct(TARGET)}, for {variants}.{extra_en}",
        f"预先训练的扫描实验“{PLAN}”(反转任务,最多 600 步、留出集达到 {pct(TARGET)} 即停止,种子 0,"
        f"Adam 学习率 1e-3;编码器与解码器各 2、4、6 层):最终留出集贪心解码整句正确率,"
        f"以及首次达到 {pct(TARGET)} 的评估步数;比较 {variants}。{extra_zh}")


def _sweep(store: RunStore | None, claim: str, variants: tuple[str, ...], needs_en: str, needs_zh: str,
           method: dict) -> tuple[SweepData | None, list[int], Verdict | None]:
    sweep = load_sweep(store, PLAN)
    depths = sweep.depths(*variants) if sweep else []
    if not depths:
        return sweep, [], sweep_missing(claim, PLAN, sweep, needs_en, needs_zh, method)
    return sweep, depths, None


def measure_r3(store: RunStore | None) -> Verdict:
    method = _method("pre_ln (residual on) and no_residual", " Final loss = mean training loss of the last 50 steps.",
                     "最终损失 = 最后 50 步训练损失的均值。")
    sweep, depths, missing = _sweep(store, "R3", ("pre_ln", "no_residual"), "pre_ln and no_residual runs",
                                    "pre_ln 与 no_residual 运行", method)
    if missing:
        return missing
    numbers = _table(sweep, ("pre_ln", "no_residual"), depths)
    for variant in ("pre_ln", "no_residual"):
        for depth in depths:
            losses = [x for x in series(store.metrics(sweep.get(variant, depth)["run_id"]), "loss")[-50:]
                      if math.isfinite(x)]
            numbers[f"{variant}_depth{depth}_final_loss"] = num(sum(losses) / len(losses)) if losses else None
    deep = depths[-1]
    res, nores = sweep.get("pre_ln", deep), sweep.get("no_residual", deep)
    failing = [d for d in depths if _acc(sweep.get("no_residual", d)) < FAILED]
    if _acc(nores) >= CONVERGED:
        verdict = "does_not_hold"
    elif _acc(nores) < FAILED and _acc(res) >= CONVERGED and deep >= DEEP and failing[0] == deep:
        verdict = "holds"
    else:
        verdict = "holds_with_caveats"
    accs = ", ".join(f"{d} layers {pct(_acc(sweep.get('no_residual', d)))}" for d in depths)
    accs_zh = "、".join(f"{d} 层 {pct(_acc(sweep.get('no_residual', d)))}" for d in depths)
    nloss, rloss = numbers[f"no_residual_depth{deep}_final_loss"], numbers[f"pre_ln_depth{deep}_final_loss"]
    en = (f"Without residual connections the final held-out accuracy by depth is {accs} (with them at depth "
          f"{deep}: {pct(_acc(res))}); final loss at depth {deep} {f2(nloss, 3)} without vs "
          f"{f2(rloss, 3)} with.")
    zh = (f"去掉残差连接后,各深度的最终留出集正确率为 {accs_zh}(有残差连接时 {deep} 层为 {pct(_acc(res))});"
          f"{deep} 层的最终"
          f"损失无残差为 {f2(nloss, 3)},有残差为 {f2(rloss, 3)}。")
    if failing and failing[0] < deep:
        en += f" Training already fails at {failing[0]} layers, below the note's threshold of 6."
        zh += f"早在 {failing[0]} 层时训练就已失败,低于笔记所说的 6 层门槛。"
    elif verdict == "does_not_hold":
        en += f" Here {deep}+{deep} layers train fine without them within {nores['steps']} steps."
        zh += f"在这里,{deep}+{deep} 层不用残差连接也能在 {nores['steps']} 步内训练好。"
    if deep < DEEP:
        en += f" The deepest finished run has {deep} layers, short of 6."
        zh += f"已完成的最深运行只有 {deep} 层,不到 6 层。"
    return Verdict("R3", verdict, numbers, texts(en, zh), method, [sweep.source()])


def measure_r4(store: RunStore | None) -> Verdict:
    method = _method("pre_ln (residual on) and no_residual",
                     " Reduction = 1 − steps(residual)/steps(no residual) at the same depth.",
                     "缩短比例 = 1 − 有残差步数/无残差步数(同一深度)。")
    sweep, depths, missing = _sweep(store, "R4", ("pre_ln", "no_residual"), "pre_ln and no_residual runs",
                                    "pre_ln 与 no_residual 运行", method)
    if missing:
        return missing
    numbers = _table(sweep, ("pre_ln", "no_residual"), depths)
    parts_en, parts_zh, outcomes = [], [], []
    for d in depths:
        res, nores = sweep.get("pre_ln", d), sweep.get("no_residual", d)
        cut = _reduction(res, nores)
        numbers[f"depth{d}_reduction"] = num(cut)
        if cut is not None:
            outcomes.append("near30" if 0.15 <= cut <= 0.45 else "faster" if cut > 0 else "slower")
            parts_en.append(f"depth {d}: {_steps_en(res)} vs {_steps_en(nores)} ({pct(cut)} fewer)")
            parts_zh.append(f"{d} 层:{_steps_zh(res)} 对 {_steps_zh(nores)}(少 {pct(cut)})")
        else:
            outcomes.append("faster" if res["steps_to_target"] is not None else "neither")
            parts_en.append(f"depth {d}: {_steps_en(res)} with, {_steps_en(nores)} without")
            parts_zh.append(f"{d} 层:有残差 {_steps_zh(res)},无残差 {_steps_zh(nores)}")
    if all(o == "near30" for o in outcomes):
        verdict = "holds"
    elif all(o in ("near30", "faster") for o in outcomes):
        verdict = "holds_with_caveats"
    else:
        verdict = "does_not_hold" if sum(o in ("slower", "neither") for o in outcomes) * 2 >= len(outcomes) \
            else "holds_with_caveats"
    en = f"Steps to {pct(TARGET)} held-out accuracy, with vs without residual connections: " + "; ".join(parts_en) + "."
    zh = f"达到 {pct(TARGET)} 留出集正确率所需步数(有残差 对 无残差):" + ";".join(parts_zh) + "。"
    never = all(sweep.get("no_residual", d)["steps_to_target"] is None for d in depths)
    if verdict == "holds_with_caveats" and never:
        en += (" Without them the target is never reached, so the saving is not 30% but the difference between "
               "training and not training: the note's figure cannot be confirmed as such.")
        zh += "没有残差连接时根本达不到目标,差别不是 30%,而是能否训练成功;笔记中的这个数字无法照此得到证实。"
    elif verdict == "holds_with_caveats":
        en += " Residual connections speed training up, but not by a fixed 30%: the gain depends on depth."
        zh += "残差连接确实加快训练,但并非固定的 30%:收益随深度而变。"
    elif verdict == "does_not_hold":
        en += " No consistent 30% saving is seen here."
        zh += "这里看不到稳定的 30% 节省。"
    return Verdict("R4", verdict, numbers, texts(en, zh), method, [sweep.source()])


def _grad_ratio(store: RunStore, run_id: int, steps: int = 100) -> float | None:
    """Mean first/last layer-input gradient ratio (decoder) over the first training steps."""
    ratios = []
    for row in store.metrics(run_id)[:steps]:
        grads = (row.get("layer_grad_norms") or {}).get("decoder") or []
        if len(grads) > 1 and grads[-1] and math.isfinite(grads[0] / grads[-1]):
            ratios.append(grads[0] / grads[-1])
    return sum(ratios) / len(ratios) if ratios else None


def measure_n2(store: RunStore | None) -> Verdict:
    variants = ("post_ln", "post_ln_warmup", "pre_ln")
    method = _method("post_ln (no warm-up), post_ln_warmup (200 warm-up steps) and pre_ln",
                     " Also the decoder's first/last layer-input gradient ratio over the first 100 steps.",
                     "另取前 100 步解码器第一层与最后一层输入梯度之比。")
    sweep, depths, missing = _sweep(store, "N2", variants, "post_ln, post_ln_warmup and pre_ln runs",
                                    "post_ln、post_ln_warmup 与 pre_ln 运行", method)
    if missing:
        return missing
    numbers = _table(sweep, variants, depths)
    deep = depths[-1]
    for variant in variants:
        numbers[f"{variant}_depth{deep}_decoder_grad_first_over_last_first100"] = num(
            _grad_ratio(store, sweep.get(variant, deep)["run_id"]))
    post, warm, pre = (sweep.get(v, deep) for v in variants)
    slower = lambda a, b: (a["steps_to_target"] is None and b["steps_to_target"] is not None) or (  # noqa: E731
        a["steps_to_target"] is not None and b["steps_to_target"] is not None
        and a["steps_to_target"] > 1.2 * b["steps_to_target"])
    needs_help = _acc(post) < CONVERGED or slower(post, warm) or slower(post, pre)
    verdict = "holds_with_caveats" if needs_help else "holds"
    en = (f"At {deep}+{deep} layers: Post-LN without warm-up {pct(_acc(post))} held-out ({_steps_en(post)} to "
          f"{pct(TARGET)}), Post-LN with warm-up {pct(_acc(warm))} ({_steps_en(warm)}), Pre-LN {pct(_acc(pre))} "
          f"({_steps_en(pre)}). ")
    zh = (f"{deep}+{deep} 层时:不加预热的 Post-LN 留出集正确率 {pct(_acc(post))}"
          f"(达到 {pct(TARGET)} 用 {_steps_zh(post)}),加预热的 Post-LN {pct(_acc(warm))}({_steps_zh(warm)}),"
          f"Pre-LN {pct(_acc(pre))}({_steps_zh(pre)})。")
    if needs_help:
        en += ("Post-LN is the 2017 Transformer's arrangement, but at depth it trains worse without warm-up; most "
               "later models moved the norm before the sublayer (Pre-LN).")
        zh += ("Post-LN 确是 2017 年原始 Transformer 的结构,但层数加深后不加学习率预热就训练得更差;"
               "后来的多数模型改用 Pre-LN。")
    else:
        en += ("Post-LN is the 2017 Transformer's arrangement and trains as well as Pre-LN at these depths; the "
               "known need for warm-up shows only in deeper models.")
        zh += ("Post-LN 确是 2017 年原始 Transformer 的结构,在这些深度下与 Pre-LN 训练得一样好;"
               "它需要预热的问题要在更深的模型中才显现。")
    return Verdict("N2", verdict, numbers, texts(en, zh), method, [sweep.source()])


def measure_n4(store: RunStore | None) -> Verdict:
    variants = ("pre_ln", "post_ln", "no_norm")
    method = _method("pre_ln, post_ln and no_norm (Pre-LN wiring with the norm removed)",
                     " Speed-up = 1 − steps(with norm)/steps(no norm).", "提速 = 1 − 有归一化步数/无归一化步数。")
    sweep, depths, missing = _sweep(store, "N4", variants, "pre_ln, post_ln and no_norm runs",
                                    "pre_ln、post_ln 与 no_norm 运行", method)
    if missing:
        return missing
    numbers = _table(sweep, variants, depths)
    deep = depths[-1]
    none_row, pre = sweep.get("no_norm", deep), sweep.get("pre_ln", deep)
    speedups = {d: _reduction(sweep.get("pre_ln", d), sweep.get("no_norm", d)) for d in depths}
    numbers |= {f"depth{d}_speedup_pre_ln_vs_no_norm": num(s) for d, s in speedups.items()}
    fails_deep = _acc(none_row) < FAILED and deep >= DEEP
    measured = [s for s in speedups.values() if s is not None]
    fast = bool(measured) and min(measured) >= 0.3
    if fails_deep and (fast or not measured):
        verdict = "holds"
    elif _acc(none_row) >= CONVERGED and not fast:
        verdict = "does_not_hold"
    else:
        verdict = "holds_with_caveats"
    accs = ", ".join(f"{d} layers {pct(_acc(sweep.get('no_norm', d)))}" for d in depths)
    accs_zh = "、".join(f"{d} 层 {pct(_acc(sweep.get('no_norm', d)))}" for d in depths)
    ups = ", ".join(f"{d} layers {pct(s) if s is not None else '—'}" for d, s in speedups.items())
    ups_zh = "、".join(f"{d} 层 {pct(s) if s is not None else '—'}" for d, s in speedups.items())
    en = (f"Without any norm the final held-out accuracy by depth is {accs} (Pre-LN at depth {deep}: "
          f"{pct(_acc(pre))}, Post-LN: {pct(_acc(sweep.get('post_ln', deep)))}). Steps to {pct(TARGET)} saved "
          f"by Pre-LN compared with no norm: {ups}.")
    zh = (f"完全不用归一化时,各深度的最终留出集正确率为 {accs_zh}({deep} 层 Pre-LN 为 {pct(_acc(pre))},Post-LN 为 "
          f"{pct(_acc(sweep.get('post_ln', deep)))})。Pre-LN 比无归一化达到 {pct(TARGET)} 少用的步数比例:{ups_zh}。")
    if None in speedups.values():
        en += f" (— = one of the two did not reach {pct(TARGET)} within {none_row['steps']} steps.)"
        zh += f"(— 表示其中一方在 {none_row['steps']} 步内未达到 {pct(TARGET)}。)"
    en += {"holds": " Without a norm the deep model fails, and with one it trains.",
           "holds_with_caveats": " The note's two numbers are not both borne out here.",
           "does_not_hold": " Here deep models train without any norm, and the norm saves less than 30% of the "
                            "steps."}[verdict]
    zh += {"holds": "没有归一化时深层模型训练失败,有归一化则能训练成功。",
           "holds_with_caveats": "笔记中的两个说法在这里并未同时得到证实。",
           "does_not_hold": "在这里,深层模型不用任何归一化也能训练成功,归一化节省的步数也不到 30%。"}[verdict]
    if deep < DEEP:
        en += f" The deepest finished run has {deep} layers, short of 6."
        zh += f"已完成的最深运行只有 {deep} 层,不到 6 层。"
    return Verdict("N4", verdict, numbers, texts(en, zh), method, [sweep.source()])


MEASURES = {"R3": measure_r3, "R4": measure_r4, "N2": measure_n2, "N4": measure_n4}
