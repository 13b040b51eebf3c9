"""R1, R2, R5: what residual connections do inside trained zoo models (and stored runs when present)."""

from __future__ import annotations

from functools import cache, lru_cache

import torch

from app.lab.store import RunStore
from app.teaching.claims.charts import LAYERS, Cell, Chart, Decisive, Reference, seeds_of, sweep_series
from app.teaching.claims.common import (
    GRADIENT_FLOOR,
    SweepData,
    Text,
    Verdict,
    accuracy_numbers,
    below_floor,
    f2,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    merge_sweeps,
    num,
    pct,
    round_up,
    share_range,
    shown,
    steps_text,
    sublayer_text,
    teacher_forced_accuracy,
    text,
    zoo,
)
from model.config import SUBLAYERS_OF
from model.evaluate import evaluate
from model.hooks import zero_ablate
from model.tasks import PAD
from model.trace import layer_gradient_norms

R1_MODELS = {"post-2x2": "reverse-post-2x2", "pre-4x4": "reverse-pre-4x4"}
STACKS = ("encoder", "decoder")
VANISH = 10.0  # "much larger share": the first/last gradient ratio falls at least this many times without residual


def _ratio(grads: list[float]) -> tuple[float | None, float]:
    """The first/last layer gradient ratio and its noise floor (what a first layer's gradient at GRADIENT_FLOOR
    would give). None when the last layer's gradient is itself rounding noise: nothing is left to compare."""
    if below_floor(grads[-1], GRADIENT_FLOOR):
        return None, 0.0
    return grads[0] / grads[-1], GRADIENT_FLOOR / grads[-1]


def _at_most(ratio: float | None, floor: float) -> float:
    """What a ratio says for sure: below its floor it is at most the floor; undefined (every gradient vanished)
    it is 0."""
    return 0.0 if ratio is None else max(ratio, floor)


def _drop(on: float | None, off: float) -> float:
    """How many times smaller the ratio is with the residual connections cut (`off` as _at_most gives it)."""
    return (on or 0.0) / off if off else float("inf")


def _reading(drops: list[float]) -> Text:
    """What cutting the residual connections did to a stack's first/last ratio over the models."""
    if min(drops) >= VANISH:
        return text("claim.R1.reading.vanishes")
    if max(drops) >= 2:
        return text("claim.R1.reading.shrinks", low=f2(min(drops), 1), high=f2(max(drops), 1))
    return text("claim.R1.reading.unchanged")


def _ratio_shown(ratio: float | None, floor: float) -> str | Text:
    return text("claim.R1.vanished") if ratio is None else shown(ratio, round_up(floor) if floor else 0.0)


def _training_ratios(store: RunStore | None) -> dict[str, tuple[float | None, float]] | None:
    """First/last layer-input gradient ratio over the first 100 training steps of the deepest stored
    pre_ln and no_residual runs (models trained that way, not ablated): the mean over the steps, and its floor
    when some step's ratio was below its own (0 when none was)."""
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths("pre_ln", "no_residual") if sweep else []
    if not depths:
        return None
    out: dict = {"depth": depths[-1]}
    for variant in ("pre_ln", "no_residual"):
        rows = [r for r in store.metrics(sweep.get(variant, depths[-1])["run_id"]) if r["step"] <= 100]
        for stack in STACKS:
            steps = [_ratio(r["layer_grad_norms"][stack]) for r in rows if r.get("layer_grad_norms")]
            steps = [(ratio, floor) for ratio, floor in steps if ratio is not None]
            if not steps:
                out[f"{variant}_{stack}"] = (None, 0.0)
                continue
            mean = sum(ratio for ratio, _ in steps) / len(steps)
            noisy = any(ratio < floor for ratio, floor in steps)
            out[f"{variant}_{stack}"] = (mean, round_up(sum(_at_most(*s) for s in steps) / len(steps)) if noisy
                                         else 0.0)
    return out


def measure_r1(store: RunStore | None) -> Verdict:
    numbers, floors = {}, {}
    ratios = {}  # (model key, stack, "on" | "off") -> (ratio, floor)
    for key, name in R1_MODELS.items():
        model, task = zoo(name)
        batch = heldout_batch(task)
        for residual in (True, False):
            grads = layer_gradient_norms(model, batch.src, batch.tgt_in, batch.tgt_out,
                                         model.switches.replace(residual=residual))
            tag = "on" if residual else "off"
            for stack in STACKS:
                first, last, ratio = (f"{key}_{stack}_{q}_residual_{tag}" for q in ("grad_first", "grad_last",
                                                                                    "first_over_last"))
                numbers[first], numbers[last] = num(grads[stack][0]), num(grads[stack][-1])
                floors[first] = floors[last] = GRADIENT_FLOOR
                ratios[key, stack, tag] = _ratio(grads[stack])
                numbers[ratio] = num(ratios[key, stack, tag][0])
                if ratios[key, stack, tag][0] is not None:
                    floors[ratio] = round_up(ratios[key, stack, tag][1])
    drops = {(key, stack): _drop(ratios[key, stack, "on"][0], _at_most(*ratios[key, stack, "off"]))
             for key in R1_MODELS for stack in STACKS}
    # models whose encoder shows the drop (no attention bottleneck there), and whether any stack shows it
    clean = sum((ratios[key, "encoder", "on"][0] or 0.0) >= 0.3 and (ratios[key, "decoder", "on"][0] or 0.0) >= 0.3
                and drops[key, "encoder"] >= VANISH for key in R1_MODELS)
    any_drop = any(d >= VANISH for d in drops.values())
    trained = _training_ratios(store)
    trained_agrees = None
    if trained:
        numbers["trained_depth"] = int(trained["depth"])
        for k, value in trained.items():
            if k == "depth":
                continue
            ratio, floor = value
            numbers[f"trained_{k}_first_over_last"] = num(ratio)
            if floor:
                floors[f"trained_{k}_first_over_last"] = floor
        # what the no-residual run's ratio is at most, against the Pre-LN run's (undefined: nothing reached it)
        trained_agrees = _at_most(*trained["no_residual_decoder"]) < (trained["pre_ln_decoder"][0] or 0.0)
    # Holds cleanly only where the encoder shows it too: the decoder's drop is partly the cut cross-attention skip.
    verdict = "holds" if clean == len(R1_MODELS) else "holds_with_caveats" if any_drop else "does_not_hold"
    if verdict == "holds" and trained_agrees is False:
        verdict = "holds_with_caveats"
    dec_reading, enc_reading = (_reading([drops[key, stack] for key in R1_MODELS]) for stack in STACKS[::-1])
    models = {"post-2x2": "p2", "pre-4x4": "p4"}  # the summary's placeholders: dec_p2_on, enc_p4_off, ...
    shown_ratios = {f"{stack[:3]}_{models[key]}_{tag}": _ratio_shown(*ratios[key, stack, tag])
                    for key in R1_MODELS for stack in STACKS for tag in ("on", "off")}
    summary = [text("claim.R1.summary", **shown_ratios, dec_reading=dec_reading, enc_reading=enc_reading)]
    if dec_reading.key != enc_reading.key:  # the decoder's drop is partly the cut cross-attention skip
        summary.append(text("claim.R1.bottleneck"))
    if trained:
        summary.append(text("claim.R1.trained", depth=str(int(trained["depth"])),
                            on=_ratio_shown(*trained["pre_ln_decoder"]),
                            off=_ratio_shown(*trained["no_residual_decoder"])))
    sources = [f"zoo:{n}" for n in R1_MODELS.values()] + (["sweep:depth-residual-norm"] if trained else [])
    return Verdict("R1", verdict, numbers, summary, text("claim.R1.method"), sources, floors=floors)


R2_MODELS = ("reverse-pre-4x4", "reverse-post-4x4")  # trained with residual connections, 4+4 layers
PROBE_TRAIN_INPUTS = 400  # training-split inputs the probe is fitted on (held-out inputs score it)
RIDGE = 1e-2


def _encoder_streams(model, batch, switches) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Each encoder layer's output at the real tokens (N, d_model), the input embedding+PE there, the tokens."""
    names = [f"encoder.{i}.hook_resid_post" for i in range(model.config.n_encoder_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.src, batch.tgt_in, switches,
                                        names_filter=names + ["hook_src_embed", "hook_src_pos"])
    real = batch.src != PAD
    x0 = (cache["hook_src_embed"] + cache["hook_src_pos"])[real]
    return [cache[name][real] for name in names], x0, batch.src[real]


def _fit_probe(h: torch.Tensor, tokens: torch.Tensor, vocab: int) -> torch.Tensor:
    """A linear map (with bias) from the stream to the token's one-hot code: ridge regression, closed form."""
    x = torch.cat([h, torch.ones(len(h), 1)], dim=1).double()
    y = torch.nn.functional.one_hot(tokens, vocab).double()
    scale = x.pow(2).sum() / x.size(1)
    return torch.linalg.solve(x.T @ x + RIDGE * scale * torch.eye(x.size(1), dtype=x.dtype), x.T @ y)


def _probe_accuracy(w: torch.Tensor, h: torch.Tensor, tokens: torch.Tensor) -> float:
    x = torch.cat([h, torch.ones(len(h), 1)], dim=1).double()
    return ((x @ w).argmax(-1) == tokens).float().mean().item()


def identity_probe(model, task, switches) -> tuple[list[float], list[float]]:
    """Per encoder layer: the mean cosine between the stream and the input embedding+PE, and the held-out accuracy
    of a linear probe trained (on training-split inputs) to read the input token from the stream there."""
    import random

    train = task.batch(random.Random(0), PROBE_TRAIN_INPUTS, split="train")
    fit_streams, _, fit_tokens = _encoder_streams(model, train, switches)
    streams, x0, tokens = _encoder_streams(model, heldout_batch(task), switches)
    vocab = model.src_embed.table.num_embeddings
    cos = [torch.cosine_similarity(h, x0, dim=-1).mean().item() for h in streams]
    probe = [_probe_accuracy(_fit_probe(f, fit_tokens, vocab), h, tokens) for f, h in zip(fit_streams, streams,
                                                                                        strict=True)]
    return cos, probe


@cache
def _zoo_identity(name: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """identity_probe of a zoo model intact and with its residual connections ablated (the same every time: a
    claim is measured once per seed, and this part does not depend on one)."""
    model, task = zoo(name)
    return (*identity_probe(model, task, model.switches), *identity_probe(model, task,
                                                                          model.switches.replace(residual=False)))


def _best_without_residual(store: RunStore | None) -> float | None:
    """The best final accuracy of any model trained without residual connections in the depth sweep (None: none)."""
    sweep = load_sweep(store, "depth-residual-norm")
    rows = [row for (variant, _), row in (sweep.cells.items() if sweep else [])
            if variant in ("no_residual", "no_residual_keep_cross")]
    return max((row["heldout_seq_accuracy"] or 0.0 for row in rows), default=None)


def measure_r2(store: RunStore | None) -> Verdict:
    numbers, kept, lost, sources = {}, True, True, []
    results = {}
    for name in R2_MODELS:
        key = name.removeprefix("reverse-")
        cos_on, probe_on, _, probe_off = results[name] = _zoo_identity(name)
        numbers |= {f"{key}_cos_embedding_layer{i + 1}_residual_on": num(c) for i, c in enumerate(cos_on)}
        numbers |= {f"{key}_linear_probe_layer{i + 1}_residual_on": num(p) for i, p in enumerate(probe_on)}
        numbers |= {f"{key}_linear_probe_layer{i + 1}_residual_off": num(p) for i, p in enumerate(probe_off)}
        kept &= probe_on[-1] >= 0.9
        lost &= probe_off[-1] <= 0.5
        sources.append(f"zoo:{name}")
    numbers["chance"] = num(1 / 10)
    best_without = _best_without_residual(store)
    if best_without is not None:
        numbers["best_accuracy_trained_without_residual"] = num(best_without)
        sources.append("sweep:depth-residual-norm")
    verdict = "does_not_hold" if not kept else "holds" if lost else "holds_with_caveats"
    pre, post = (results[name] for name in R2_MODELS)
    summary = [text("claim.R2.summary", cos_first=f2(pre[0][0]), cos_last=f2(pre[0][-1]), probe_on=pct(pre[1][-1]),
                    post_probe_on=pct(post[1][-1]), probe_off=pct(pre[3][-1]), post_probe_off=pct(post[3][-1])),
               text("claim.R2.kept" if kept and lost else "claim.R2.kept_anyway" if kept else "claim.R2.not_kept")]
    if best_without is not None:
        summary.append(text("claim.R2.untrained_ignored" if best_without < 0.5 else "claim.R2.some_trained",
                            accuracy=pct(best_without)))
    return Verdict("R2", verdict, numbers, summary, text("claim.R2.method", inputs=str(PROBE_TRAIN_INPUTS)), sources)


def _skip_layer_hooks(stack: str, layer: int):
    names = [f"{stack}.{layer}.hook_{kind}_out" for kind in SUBLAYERS_OF[stack]]
    return [(names, zero_ablate())]


def _depth_accuracies(store: RunStore | None) -> SweepData | None:
    """Pre-LN (residual connections on) at every depth the depth sweeps trained, over their seeds."""
    from app.teaching.claims.depth import DEEP_PLAN, PLAN

    sweep = merge_sweeps(load_sweep(store, PLAN), load_sweep(store, DEEP_PLAN))
    return sweep if sweep and len(sweep.depths("pre_ln")) >= 2 else None


@lru_cache(maxsize=1)
def _sublayer_work() -> tuple[dict[str, float], float, dict[str, float]]:
    """reverse-pre-4x4: each sublayer's mean ‖F(x)‖/‖x‖, teacher-forced token accuracy, and that accuracy with
    each whole layer skipped (the same for every seed a claim is measured on)."""
    deep, task = zoo("reverse-pre-4x4")
    batch = heldout_batch(task)
    names = [n for n in deep.hook_names() if n.count(".") == 2 and n.split(".")[1].isdigit() and n.endswith("_out")]
    streams = {"self_attn": "hook_resid_pre", "cross_attn": "hook_resid_mid", "ffn": "hook_resid_mid"}
    with torch.no_grad():
        _, cache = deep.run_with_cache(batch.src, batch.tgt_in, names_filter=lambda n: n.count(".") == 2)
    ratios = {}
    for name in names:
        stack, layer, hook = name.split(".")
        kind = hook[len("hook_"):-len("_out")]
        stream = "hook_resid_mid_cross" if (stack, kind) == ("decoder", "ffn") else streams[kind]
        real = (batch.src if stack == "encoder" else batch.tgt_in) != PAD
        fx, x = cache[name], cache[f"{stack}.{layer}.{stream}"]
        ratios[f"{stack}.{layer}.{kind}"] = (fx.norm(dim=-1) / x.norm(dim=-1))[real].mean().item()
    base = teacher_forced_accuracy(deep, batch)
    skipped = {f"{s}.{i}": teacher_forced_accuracy(deep, batch, hooks=_skip_layer_hooks(s, i))
               for s in STACKS for i in range(deep.config.n_layers(s))}
    return ratios, base, skipped


def measure_r5(store: RunStore | None) -> Verdict:
    """Two parts: do extra layers make a model worse (the depth sweeps, over seeds, with intervals), and do the
    sublayers of a trained deep model sit near F(x) ≈ 0 (reverse-pre-4x4)."""
    ratios, base, skipped = _sublayer_work()
    deep, task = zoo("reverse-pre-4x4")
    best_layer = max(skipped, key=skipped.get)
    low_kind = min(ratios, key=ratios.get)
    numbers = {"min_F_over_x": num(ratios[low_kind]), "min_F_over_x_sublayer": low_kind,
               "max_F_over_x": num(max(ratios.values())), "token_accuracy_intact": num(base),
               "token_accuracy_best_layer_skipped": num(skipped[best_layer]), "best_layer_to_skip": best_layer}
    numbers |= {f"F_over_x_{k}": num(v) for k, v in ratios.items()}
    sources = ["zoo:reverse-pre-4x4"]
    sweep, chart = _depth_accuracies(store), None
    if sweep is None:
        pairs = heldout_pairs(task)
        shallow, _ = zoo("reverse-pre-2x2")
        acc = {4: evaluate(deep, task, pairs).seq_accuracy, 2: evaluate(shallow, task, pairs).seq_accuracy}
        low = {d: a - 0.02 for d, a in acc.items()}  # one model per depth: two held-out inputs of slack
        sources.append("zoo:reverse-pre-2x2")
        depth_parts = [text("claim.layers_accuracy", depth=str(d), accuracy=pct(a)) for d, a in sorted(acc.items())]
    else:
        depths = sweep.depths("pre_ln")
        rows = {d: sweep.get("pre_ln", d) for d in depths}
        acc = {d: row["heldout_seq_accuracy"] for d, row in rows.items()}
        low = {d: row["heldout_interval"][0] for d, row in rows.items()}
        for d, row in rows.items():
            numbers |= accuracy_numbers(f"pre_ln_depth{d}", row)
        sources += sweep.sources()
        depth_parts = [text("claim.R5.depth_accuracy", depth=str(d), accuracy=pct(acc[d]),
                            interval=share_range(*rows[d]["heldout_interval"]), steps=steps_text(rows[d]))
                       for d in depths]
    shallowest = min(acc)
    numbers["deep_over_shallow_accuracy"] = num(acc[max(acc)] / max(acc[shallowest], 1e-9))
    if sweep is not None:
        chart = _r5_chart(sweep, depths, shallowest, low[shallowest], min(depths[1:], key=acc.get))
    # not worse: no deeper model's accuracy lies below the shallowest one's 95% interval
    not_worse = all(acc[d] >= low[shallowest] - 1e-9 for d in acc)
    identity_layer = skipped[best_layer] >= base - 0.01
    near_zero = ratios[low_kind] < 0.1
    verdict = ("does_not_hold" if not not_worse else "holds" if identity_layer and near_zero
               else "holds_with_caveats")
    summary = [text("claim.R5.depths", parts=depth_parts,
                    reading=text("claim.R5.not_worse" if not_worse else "claim.R5.worse")),
               text("claim.R5.sublayers", low=f2(ratios[low_kind]), low_sublayer=sublayer_text(low_kind),
                    high=f2(max(ratios.values())), best_layer=sublayer_text(best_layer), base=pct(base),
                    skipped=pct(skipped[best_layer]),
                    reading=text("claim.R5.near_zero" if near_zero and identity_layer else "claim.R5.far_from_zero"))]
    return Verdict("R5", verdict, numbers, summary, text("claim.R5.method"), sources, chart=chart)


def _r5_chart(sweep: SweepData, depths: list[int], shallowest: int, floor: float, weakest: int) -> Chart:
    """Pre-LN's accuracy by depth; decisive: the weakest deeper model against the shallowest one's 95% interval
    (drawn as a line at its lower end)."""
    decisive = Decisive([Cell("pre_ln", shallowest), Cell("pre_ln", weakest)],
                        text("claim.chart.R5.decisive", deep=str(weakest), shallow=str(shallowest)))
    floor_line = Reference(num(floor), text("claim.chart.R5.floor", depth=str(shallowest)))
    return Chart(text("claim.chart.y.accuracy"), "share", [sweep_series(sweep, "pre_ln", depths)], decisive,
                 seeds_of(sweep), LAYERS, references=[floor_line])


MEASURES = {"R1": measure_r1, "R2": measure_r2, "R5": measure_r5}
