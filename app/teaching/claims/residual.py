"""R1, R2, R5: what residual connections do inside trained zoo models (and stored runs when present)."""

from __future__ import annotations

import math

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    Text,
    Verdict,
    f2,
    heldout_batch,
    heldout_pairs,
    load_sweep,
    num,
    pct,
    store_model,
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


def _ratio(grads: list[float]) -> float:
    return grads[0] / grads[-1] if grads[-1] > 0 else float("inf")


def _reading(ratios: dict[str, tuple[float | None, float | None]]) -> Text:
    """What cutting the residual connections did to a stack's first/last ratio over the models, from the numbers
    (the drop is the ratio with residual connections over the ratio without)."""
    drops = [(on or 0.0) / off if off else float("inf") for on, off in ratios.values()]
    if min(drops) >= VANISH:
        return text("claim.R1.reading.vanishes")
    if max(drops) >= 2:
        return text("claim.R1.reading.shrinks", low=f2(min(drops), 1), high=f2(max(drops), 1))
    return text("claim.R1.reading.unchanged")


def _training_ratios(store: RunStore | None) -> dict[str, float] | None:
    """First/last layer-input gradient ratio over the first 100 training steps of the deepest stored
    pre_ln and no_residual runs (models trained that way, not ablated)."""
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths("pre_ln", "no_residual") if sweep else []
    if not depths:
        return None
    out: dict[str, float] = {"depth": depths[-1]}
    for variant in ("pre_ln", "no_residual"):
        rows = store.metrics(sweep.get(variant, depths[-1])["run_id"])[:100]
        for stack in STACKS:
            ratios = [_ratio(r["layer_grad_norms"][stack]) for r in rows if r.get("layer_grad_norms")]
            ratios = [r for r in ratios if math.isfinite(r)]
            out[f"{variant}_{stack}"] = sum(ratios) / len(ratios) if ratios else float("nan")
    return out


def measure_r1(store: RunStore | None) -> Verdict:
    numbers: dict = {}
    clean, any_drop = 0, False  # models whose encoder shows the drop (no attention bottleneck there); any drop
    for key, name in R1_MODELS.items():
        model, task = zoo(name)
        batch = heldout_batch(task)
        ok_on = True
        for residual in (True, False):
            grads = layer_gradient_norms(model, batch.src, batch.tgt_in, batch.tgt_out,
                                         model.switches.replace(residual=residual))
            tag = "on" if residual else "off"
            for stack in STACKS:
                numbers[f"{key}_{stack}_grad_first_residual_{tag}"] = num(grads[stack][0])
                numbers[f"{key}_{stack}_grad_last_residual_{tag}"] = num(grads[stack][-1])
                numbers[f"{key}_{stack}_first_over_last_residual_{tag}"] = num(_ratio(grads[stack]))
        drops = {}
        for stack in STACKS:
            on = numbers[f"{key}_{stack}_first_over_last_residual_on"] or 0.0
            off = numbers[f"{key}_{stack}_first_over_last_residual_off"] or 0.0
            ok_on &= on >= 0.3
            drops[stack] = on >= VANISH * off
        clean += ok_on and drops["encoder"]
        any_drop |= drops["encoder"] or drops["decoder"]
    trained = _training_ratios(store)
    trained_agrees = None
    if trained:
        numbers["trained_depth"] = int(trained["depth"])
        for k, v in trained.items():
            if k != "depth":
                numbers[f"trained_{k}_first_over_last"] = num(v)
        trained_agrees = not trained["no_residual_decoder"] >= trained["pre_ln_decoder"]  # NaN: nothing left
    # Holds cleanly only where the encoder shows it too: the decoder's drop is partly the cut cross-attention skip.
    verdict = "holds" if clean == len(R1_MODELS) else "holds_with_caveats" if any_drop else "does_not_hold"
    if verdict == "holds" and trained_agrees is False:
        verdict = "holds_with_caveats"
    p2, p4 = "post-2x2", "pre-4x4"
    dec, enc = ({k: tuple(numbers[f"{k}_{stack}_first_over_last_residual_{t}"] for t in ("on", "off"))
                 for k in R1_MODELS} for stack in STACKS[::-1])
    dec_reading, enc_reading = _reading(dec), _reading(enc)
    summary = [text("claim.R1.summary", dec_p2_on=f2(dec[p2][0]), dec_p4_on=f2(dec[p4][0]),
                     dec_p2_off=f2(dec[p2][1]), dec_p4_off=f2(dec[p4][1]), enc_p2_on=f2(enc[p2][0]),
                     enc_p4_on=f2(enc[p4][0]), enc_p2_off=f2(enc[p2][1]), enc_p4_off=f2(enc[p4][1]),
                     dec_reading=dec_reading, enc_reading=enc_reading)]
    if dec_reading.key != enc_reading.key:  # the decoder's drop is partly the cut cross-attention skip
        summary.append(text("claim.R1.bottleneck"))
    if trained:
        summary.append(text("claim.R1.trained", depth=str(int(trained["depth"])),
                            on=f2(trained["pre_ln_decoder"]), off=f2(trained["no_residual_decoder"])))
    sources = [f"zoo:{n}" for n in R1_MODELS.values()] + (["sweep:depth-residual-norm"] if trained else [])
    return Verdict("R1", verdict, numbers, summary, text("claim.R1.method"), sources)


def _identity_probe(model, batch, switches) -> tuple[list[float], list[float]]:
    """Per encoder layer: mean cos(stream, embedding+PE) and the share of tokens whose nearest source
    embedding (by cosine) is the input token itself."""
    names = [f"encoder.{i}.hook_resid_post" for i in range(model.config.n_encoder_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.src, batch.tgt_in, switches,
                                        names_filter=names + ["hook_src_embed", "hook_src_pos"])
        x0 = cache["hook_src_embed"] + cache["hook_src_pos"]
        real = batch.src != PAD
        table = torch.nn.functional.normalize(model.src_embed.table.weight, dim=-1)
        cos, probe = [], []
        for name in names:
            h = cache[name]
            cos.append(torch.cosine_similarity(h, x0, dim=-1)[real].mean().item())
            sims = torch.nn.functional.normalize(h, dim=-1) @ table.T
            sims[..., :3] = -2.0  # specials are never inputs
            probe.append((sims.argmax(-1) == batch.src)[real].float().mean().item())
    return cos, probe


def measure_r2(store: RunStore | None) -> Verdict:
    model, task = zoo("reverse-pre-4x4")
    batch = heldout_batch(task)
    cos_on, probe_on = _identity_probe(model, batch, model.switches)
    cos_off, probe_off = _identity_probe(model, batch, model.switches.replace(residual=False))
    numbers = {f"cos_embedding_layer{i + 1}_residual_on": num(c) for i, c in enumerate(cos_on)}
    numbers |= {f"cos_embedding_layer{i + 1}_residual_off": num(c) for i, c in enumerate(cos_off)}
    numbers |= {"token_probe_last_layer_residual_on": num(probe_on[-1]),
                "token_probe_last_layer_residual_off": num(probe_off[-1]), "chance": num(1 / 10)}
    sources = ["zoo:reverse-pre-4x4"]
    sweep = load_sweep(store, "depth-residual-norm")
    depths = sweep.depths("no_residual") if sweep else []
    trained = store_model(store, sweep.get("no_residual", depths[-1])["run_id"]) if depths else None
    kept_without = False
    if trained is not None:
        cos_t, probe_t = _identity_probe(trained, batch, trained.switches)
        numbers |= {"trained_no_residual_depth": depths[-1], "trained_no_residual_cos_last": num(cos_t[-1]),
                    "trained_no_residual_token_probe_last": num(probe_t[-1])}
        kept_without = probe_t[-1] >= 0.9
        sources.append("sweep:depth-residual-norm")
    kept = probe_on[-1] >= 0.9 and probe_off[-1] <= 0.5
    verdict = ("does_not_hold" if not kept else "holds_with_caveats" if kept_without else "holds")
    summary = [text("claim.R2.summary", cos_first=f2(cos_on[0]), cos_last=f2(cos_on[-1]),
                     probe_on=pct(probe_on[-1]), cos_off=f2(cos_off[-1]), probe_off=pct(probe_off[-1]))]
    if trained is not None:
        summary.append(text("claim.R2.trained_kept" if kept_without else "claim.R2.trained", depth=str(depths[-1]),
                            cos=f2(cos_t[-1]), probe=pct(probe_t[-1])))
    return Verdict("R2", verdict, numbers, summary, text("claim.R2.method"), sources)


def _skip_layer_hooks(stack: str, layer: int):
    names = [f"{stack}.{layer}.hook_{kind}_out" for kind in SUBLAYERS_OF[stack]]
    return [(names, zero_ablate())]


def measure_r5(store: RunStore | None) -> Verdict:
    deep, task = zoo("reverse-pre-4x4")
    shallow, _ = zoo("reverse-pre-2x2")
    pairs = heldout_pairs(task)
    acc_deep, acc_shallow = evaluate(deep, task, pairs).seq_accuracy, evaluate(shallow, task, pairs).seq_accuracy
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
    best_layer = max(skipped, key=skipped.get)
    low_kind = min(ratios, key=ratios.get)
    numbers = {"heldout_seq_accuracy_4x4": num(acc_deep), "heldout_seq_accuracy_2x2": num(acc_shallow),
               "min_F_over_x": num(ratios[low_kind]), "min_F_over_x_sublayer": low_kind,
               "max_F_over_x": num(max(ratios.values())), "token_accuracy_intact": num(base),
               "token_accuracy_best_layer_skipped": num(skipped[best_layer]), "best_layer_to_skip": best_layer}
    numbers |= {f"F_over_x_{k}": num(v) for k, v in ratios.items()}
    not_worse = acc_deep >= acc_shallow - 0.02
    identity_layer = skipped[best_layer] >= base - 0.01
    verdict = ("does_not_hold" if not not_worse else "holds" if identity_layer else "holds_with_caveats")
    summary = text("claim.R5.summary", acc_deep=pct(acc_deep), acc_shallow=pct(acc_shallow),
                   low=f2(ratios[low_kind]), low_sublayer=sublayer_text(low_kind), high=f2(max(ratios.values())),
                   best_layer=sublayer_text(best_layer), base=pct(base), skipped=pct(skipped[best_layer]))
    return Verdict("R5", verdict, numbers, summary, text("claim.R5.method"),
                   ["zoo:reverse-pre-4x4", "zoo:reverse-pre-2x2"])


MEASURES = {"R1": measure_r1, "R2": measure_r2, "R5": measure_r5}
