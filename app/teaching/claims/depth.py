"""R3, R4, N2, N4: training at several depths with residual connections and norms on or off, read
from the precomputed "depth-residual-norm" sweep and its deep end "depth-12" (python -m app.lab.precompute)."""

from __future__ import annotations

import math

from app.lab.store import RunStore
from app.lab.sweeps import TARGET
from app.teaching.claims.charts import (
    LAYERS,
    Cell,
    Chart,
    Decisive,
    at_layers,
    seeds_of,
    steps_point,
    sweep_series,
    variant_label,
    versus,
)
from app.teaching.claims.common import (
    SweepData,
    Text,
    Verdict,
    accuracy_numbers,
    f2,
    load_sweep,
    merge_sweeps,
    needs_runs,
    num,
    pct,
    series,
    steps_text,
    sweep_missing,
    text,
)
from app.teaching.claims.init_gradients import DEPTH as INIT_DEPTH
from app.teaching.claims.init_gradients import last_over_first

PLAN = "depth-residual-norm"
DEEP_PLAN = "depth-12"  # the same comparisons at 12+12 layers, for the variants a depth claim needs there
DEEP = 6  # the note's threshold: "6 layers and more"
CONVERGED, FAILED = 0.9, 0.5  # final held-out exact-sequence accuracy


def _acc(row: dict) -> float:
    a = row["heldout_seq_accuracy"]
    return float(a) if a is not None and math.isfinite(a) else 0.0


def _table(sweep: SweepData, variants: tuple[str, ...], depths: list[int]) -> dict:
    numbers: dict = {}
    for variant in variants:
        for depth in depths:
            row = sweep.get(variant, depth)
            numbers |= accuracy_numbers(f"{variant}_depth{depth}", row)
            numbers[f"{variant}_depth{depth}_steps_to_{int(TARGET * 100)}pct"] = row["steps_to_target"]
            numbers[f"{variant}_depth{depth}_seeds_reached"] = f"{row['reached']}/{len(row['seeds'])}"
    numbers["steps_budget"] = sweep.get(variants[0], depths[0])["steps"]
    return numbers


def _reduction(fast: dict, slow: dict) -> float | None:
    """1 − steps(fast)/steps(slow) when both reached the target; None otherwise."""
    if fast["steps_to_target"] is None or slow["steps_to_target"] is None:
        return None
    return 1 - fast["steps_to_target"] / slow["steps_to_target"]


def _method(claim: str, sweep: SweepData | None = None, depths: list[int] | None = None) -> list[Text]:
    """The sweep's common description (the plans and depths the claim read), naming the variants compared
    (claim.<id>.variants), then the claim's own sentence (claim.<id>.method)."""
    plans = [source.split(":", 1)[1] for source in sweep.sources(depths)] if sweep else [PLAN]
    return [text("claim.depth_sweep.method", plan=" + ".join(plans), target=pct(TARGET),
                 depths="/".join(map(str, depths)) if depths else "—", seeds=str(len(sweep.seeds)) if sweep else "—",
                 variants=text(f"claim.{claim}.variants")),
            text(f"claim.{claim}.method")]


def _sweep(store: RunStore | None, claim: str, variants: tuple[str, ...],
           method: list[Text]) -> tuple[SweepData | None, list[int], Verdict | None]:
    sweep = merge_sweeps(load_sweep(store, PLAN), load_sweep(store, DEEP_PLAN))
    depths = sweep.depths(*variants) if sweep else []
    if not depths:
        return sweep, [], sweep_missing(claim, PLAN, sweep, needs_runs(*variants), method)
    return sweep, depths, None


def _accuracies(sweep: SweepData, variant: str, depths: list[int]) -> list[Text]:
    """'2 layers 100%; 4 layers 35%': the final held-out accuracy of a variant by depth."""
    return [text("claim.layers_accuracy", depth=str(d), accuracy=pct(_acc(sweep.get(variant, d)))) for d in depths]


ACCURACY = text("claim.chart.y.accuracy")


def _pair(a: str, b: str, depth: int) -> Decisive:
    """Variant a against variant b at one depth: what most depth verdicts turn on."""
    return Decisive([Cell(a, depth), Cell(b, depth)], versus(variant_label(a), variant_label(b), at_layers(depth)))


def _steps_chart(sweep: SweepData, variants: tuple[str, ...], depths: list[int], decisive: Decisive) -> Chart:
    """Steps to the target by depth, one line per variant; a seed that never reached it went past the budget."""
    return Chart(text("claim.chart.y.steps", target=pct(TARGET)), "steps",
                 [sweep_series(sweep, v, depths, steps_point) for v in variants], decisive, seeds_of(sweep), LAYERS,
                 limit=sweep.get(variants[0], depths[0])["steps"])


def _final_loss(store: RunStore, row: dict) -> float | None:
    losses = [x for x in series(store.metrics(row["run_id"]), "loss")[-50:] if math.isfinite(x)]
    return sum(losses) / len(losses) if losses else None


def measure_r3(store: RunStore | None) -> Verdict:
    """Judged on the variant that cuts every skip but the cross-attention one, when the sweep has it: with every
    skip cut the decoder fails at any depth for a reason unrelated to depth (shown, not judged)."""
    sweep, depths, missing = _sweep(store, "R3", ("pre_ln", "no_residual"), _method("R3"))
    if missing:
        return missing
    all_cut_depths = depths
    judged = "no_residual_keep_cross" if sweep.depths("pre_ln", "no_residual_keep_cross") else "no_residual"
    depths = sweep.depths("pre_ln", judged)
    numbers = _table(sweep, ("pre_ln", judged), depths)
    if judged != "no_residual":
        numbers |= _table(sweep, ("no_residual",), all_cut_depths)
    both = sorted(set(depths) | set(all_cut_depths))
    method = _method("R3", sweep, both)
    for variant, variant_depths in (("pre_ln", both), (judged, depths), ("no_residual", all_cut_depths)):
        for depth in variant_depths:
            numbers[f"{variant}_depth{depth}_final_loss"] = num(_final_loss(store, sweep.get(variant, depth)))
    deep, cut_deep = depths[-1], all_cut_depths[-1]
    res, nores = sweep.get("pre_ln", deep), sweep.get(judged, deep)
    failing = [d for d in depths if _acc(sweep.get(judged, d)) < FAILED]
    if _acc(nores) >= CONVERGED:
        verdict = "does_not_hold"
    elif _acc(nores) < FAILED and _acc(res) >= CONVERGED and deep >= DEEP and failing[0] >= DEEP:
        verdict = "holds"
    else:
        verdict = "holds_with_caveats"
    summary = [text("claim.R3.summary", accuracies=_accuracies(sweep, "no_residual", all_cut_depths),
                    depth=str(cut_deep), with_residual=pct(_acc(sweep.get("pre_ln", cut_deep))),
                    loss_without=f2(numbers[f"no_residual_depth{cut_deep}_final_loss"], 3),
                    loss_with=f2(numbers[f"pre_ln_depth{cut_deep}_final_loss"], 3))]
    if judged != "no_residual":
        summary.append(text("claim.R3.keep_cross", accuracies=_accuracies(sweep, judged, depths), depth=str(deep),
                            loss=f2(numbers[f"{judged}_depth{deep}_final_loss"], 3),
                            with_residual=pct(_acc(res))))
    if failing and failing[0] < DEEP:
        summary.append(text("claim.R3.fails_early", depth=str(failing[0])))
    elif verdict == "does_not_hold":
        summary.append(text("claim.R3.trains_fine", depth=str(deep), steps=str(nores["steps"])))
    if deep < DEEP:
        summary.append(text("claim.short_of_six", depth=str(deep)))
    lines = [sweep_series(sweep, "pre_ln", both), sweep_series(sweep, judged, depths)]
    if judged != "no_residual":
        lines.append(sweep_series(sweep, "no_residual", all_cut_depths))
    chart = Chart(ACCURACY, "share", lines, _pair("pre_ln", judged, deep), seeds_of(sweep), LAYERS)
    return Verdict("R3", verdict, numbers, summary, method, sweep.sources(both), chart=chart)


def measure_r4(store: RunStore | None) -> Verdict:
    method = _method("R4")
    sweep, depths, missing = _sweep(store, "R4", ("pre_ln", "no_residual"), method)
    if missing:
        return missing
    method = _method("R4", sweep, depths)
    numbers = _table(sweep, ("pre_ln", "no_residual"), depths)
    parts, outcomes = [], []
    for d in depths:
        res, nores = sweep.get("pre_ln", d), sweep.get("no_residual", d)
        cut = _reduction(res, nores)
        numbers[f"depth{d}_reduction"] = num(cut)
        if cut is not None:
            outcomes.append("near30" if 0.15 <= cut <= 0.45 else "faster" if cut > 0 else "slower")
            parts.append(text("claim.R4.depth_cut", depth=str(d), with_residual=steps_text(res),
                              without=steps_text(nores), cut=pct(cut)))
        else:
            outcomes.append("faster" if res["steps_to_target"] is not None else "neither")
            parts.append(text("claim.R4.depth", depth=str(d), with_residual=steps_text(res),
                              without=steps_text(nores)))
    if all(o == "near30" for o in outcomes):
        verdict = "holds"
    elif all(o in ("near30", "faster") for o in outcomes):
        verdict = "holds_with_caveats"
    else:
        verdict = "does_not_hold" if sum(o in ("slower", "neither") for o in outcomes) * 2 >= len(outcomes) \
            else "holds_with_caveats"
    summary = [text("claim.R4.summary", target=pct(TARGET), parts=parts)]
    never = all(sweep.get("no_residual", d)["steps_to_target"] is None for d in depths)
    if verdict == "holds_with_caveats":
        summary.append(text("claim.R4.never" if never else "claim.R4.depends"))
    elif verdict == "does_not_hold":
        summary.append(text("claim.R4.does_not_hold"))
    # the depth that keeps the verdict from "holds" (the first not near 30%), else the deepest
    decider = next((d for d, o in zip(depths, outcomes, strict=True) if o != "near30"), depths[-1])
    chart = _steps_chart(sweep, ("pre_ln", "no_residual"), depths, _pair("pre_ln", "no_residual", decider))
    return Verdict("R4", verdict, numbers, summary, method, sweep.sources(depths), chart=chart)


def _grad_ratio(store: RunStore, run_id: int, steps: int = 100) -> float | None:
    """Mean first/last layer-input gradient ratio (decoder) over the first training steps."""
    ratios = []
    for row in (r for r in store.metrics(run_id) if r["step"] <= steps):
        grads = (row.get("layer_grad_norms") or {}).get("decoder") or []
        if len(grads) > 1 and grads[-1] and math.isfinite(grads[0] / grads[-1]):
            ratios.append(grads[0] / grads[-1])
    return sum(ratios) / len(ratios) if ratios else None


def measure_n2(store: RunStore | None) -> Verdict:
    variants = ("post_ln", "post_ln_warmup", "pre_ln")
    method = _method("N2")
    sweep, depths, missing = _sweep(store, "N2", variants, method)
    if missing:
        return missing
    method = _method("N2", sweep, depths)
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
    rival = "post_ln_warmup" if slower(post, warm) and not slower(post, pre) else "pre_ln"  # what Post-LN lost to
    summary = [text("claim.N2.summary", depth=str(deep), target=pct(TARGET), post=pct(_acc(post)),
                    post_steps=steps_text(post), warm=pct(_acc(warm)), warm_steps=steps_text(warm),
                    pre=pct(_acc(pre)), pre_steps=steps_text(pre)),
               text("claim.N2.needs_help" if needs_help else "claim.N2.as_good"), _init_gradients(numbers)]
    chart = _steps_chart(sweep, variants, depths, _pair("post_ln", rival, deep))
    return Verdict("N2", verdict, numbers, summary, method, sweep.sources(depths), chart=chart)


# N4 under each initialisation the sweep trained: (with a norm, without one). Whether a model without any
# norm trains at depth depends on how its weights start, so the verdict names the init it holds under.
N4_INITS = {"default": ("pre_ln", "no_norm"), "xavier": ("pre_ln_xavier", "no_norm_xavier")}


def _speedup(with_norm: dict, without: dict) -> Text:
    """Steps to the target saved by the norm; "no norm never reached it" counts as a result, not a gap."""
    if with_norm["steps_to_target"] is not None and without["steps_to_target"] is None:
        if without["reached"]:
            return text("claim.N4.some_seeds", reached=str(without["reached"]), seeds=str(len(without["seeds"])),
                        steps=str(without["steps"]))
        return text("claim.N4.never", steps=str(without["steps"]))
    cut = _reduction(with_norm, without)
    return text("claim.N4.saved", cut=pct(cut)) if cut is not None else text("claim.N4.neither")


def _n4_init(sweep: SweepData, init: str, depths: list[int], numbers: dict) -> dict:
    with_norm, without = N4_INITS[init]
    fails = [d for d in depths if _acc(sweep.get(without, d)) < FAILED]
    deep = [d for d in depths if d >= DEEP]
    cuts = [_reduction(sweep.get(with_norm, d), sweep.get(without, d)) for d in depths]
    never = [sweep.get(without, d)["steps_to_target"] is None and sweep.get(with_norm, d)["steps_to_target"]
             is not None for d in depths]
    for d, cut in zip(depths, cuts, strict=True):
        numbers[f"depth{d}_speedup_{with_norm}_vs_{without}"] = num(cut)
    faster = all(n or (c is not None and c >= 0.3) for c, n in zip(cuts, never, strict=True))
    line = text("claim.N4.init_line", init=text(f"init.{init}"), accuracies=_accuracies(sweep, without, depths),
                target=pct(TARGET), speedups=[text("claim.layers_speedup", depth=str(d),
                                                   speedup=_speedup(sweep.get(with_norm, d), sweep.get(without, d)))
                                              for d in depths])
    return {"init": init, "first_fail": fails[0] if fails else None, "line": line, "faster": faster,
            "fails_deep": bool(deep) and all(d in fails for d in deep),
            "trains_deep": bool(deep) and all(_acc(sweep.get(without, d)) >= CONVERGED for d in deep)}


def _init_gradients(numbers: dict) -> Text:
    """The mechanism behind Post-LN's need for warm-up (Xiong et al., 2020): at initialisation the weights near the
    output get larger gradients under Post-LN than under Pre-LN. Measured on every precompute seed."""
    post, pre = last_over_first("post"), last_over_first("pre")
    numbers["post_ln_init_grad_last_over_first"] = num(sum(post) / len(post))
    numbers["pre_ln_init_grad_last_over_first"] = num(sum(pre) / len(pre))
    every_seed = all(p > q for p, q in zip(post, pre, strict=True))
    return text("claim.N2.init_gradients", layers=str(INIT_DEPTH), seeds=str(len(post)),
                post=f"{f2(min(post))}–{f2(max(post))}", pre=f"{f2(min(pre))}–{f2(max(pre))}",
                reading=text("claim.N2.init_larger" if every_seed else "claim.N2.init_mixed"))


def measure_n4(store: RunStore | None) -> Verdict:
    method = _method("N4")
    sweep, depths, missing = _sweep(store, "N4", N4_INITS["default"], method)
    if missing:
        return missing
    method = _method("N4", sweep, depths)
    inits = [init for init, variants in N4_INITS.items() if sweep.depths(*variants) == depths]
    numbers = _table(sweep, tuple(v for init in inits for v in N4_INITS[init]), depths)
    results = [_n4_init(sweep, init, depths, numbers) for init in inits]
    summary = [r["line"] for r in results]
    failing = [r for r in results if r["fails_deep"]]
    training = [r for r in results if r["trains_deep"]]
    if failing and len(failing) == len(results) and all(r["faster"] for r in results):
        verdict = "holds"
    elif training and len(training) == len(results) and not any(r["faster"] for r in results):
        verdict = "does_not_hold"
    else:
        verdict = "holds_with_caveats"
    if failing and training:  # the initialisation decides: say under which one it holds
        fail, train = failing[0], training[0]
        summary.append(text("claim.N4.depends_on_init", fails_init=text(f"init.{fail['init']}"),
                            depth=str(fail["first_fail"]), trains_init=text(f"init.{train['init']}"),
                            deep=str(depths[-1])))
    summary.append(text(f"claim.N4.{verdict}"))
    if depths[-1] < DEEP:
        summary.append(text("claim.short_of_six", depth=str(depths[-1])))
    lines = [sweep_series(sweep, v, depths) for init in inits for v in N4_INITS[init]]
    if failing and training:  # the initialisation decides: no norm under the init that fails vs the one that trains
        decisive = _pair(N4_INITS[failing[0]["init"]][1], N4_INITS[training[0]["init"]][1], depths[-1])
    else:
        decisive = _pair(*N4_INITS[inits[0]], depths[-1])
    chart = Chart(ACCURACY, "share", lines, decisive, seeds_of(sweep), LAYERS)
    return Verdict("N4", verdict, numbers, summary, method, sweep.sources(depths), chart=chart)


MEASURES = {"R3": measure_r3, "R4": measure_r4, "N2": measure_n2, "N4": measure_n4}
