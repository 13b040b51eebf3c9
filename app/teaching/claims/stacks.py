"""E1, E2, D1, D2, D3, D4: how the encoder and decoder stacks are wired, what their attention spans,
and what the causal mask does."""

from __future__ import annotations

import statistics

import torch

from app.lab.store import RunStore
from app.teaching.claims.common import (
    FLOAT32_FLOOR,
    Verdict,
    below_floor,
    f2,
    find_done_runs,
    heldout_batch,
    heldout_pairs,
    num,
    pct,
    shown,
    teacher_forced_accuracy,
    text,
    zoo,
)
from model.evaluate import evaluate
from model.tasks import BOS, PAD

DEEP_MODELS = {"post-4x4": "reverse-post-4x4", "pre-4x4": "reverse-pre-4x4"}


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
        ok &= (shapes == {(width[0], width[1], model.config.d_model)} and below_floor(gap, FLOAT32_FLOOR)
               and same_structure and between == 0)
    return numbers, ok


def _chain_verdict(claim: str, stack: str) -> Verdict:
    numbers, ok = _chain(stack)
    gaps = max(numbers[f"{k}_max_abs_gap_between_layers"] for k in DEEP_MODELS)
    shape = numbers["post-4x4_output_shape"]
    name = text(f"claim.stack.{stack}")
    summary = text("claim.chain.summary", stack=name, shape=shape, gap=shown(gaps, FLOAT32_FLOOR),
                   between=str(numbers["post-4x4_parameters_between_layers"]))
    method = text("claim.chain.method", stack=name)
    return Verdict(claim, "holds" if ok else "does_not_hold", numbers, summary, method,
                   [f"zoo:{n}" for n in DEEP_MODELS.values()],
                   floors={f"{k}_max_abs_gap_between_layers": FLOAT32_FLOOR for k in DEEP_MODELS})


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
    # Reversal has no local-to-global structure to find, so the distance is a proxy: it never fully confirms.
    verdict = "holds_with_caveats" if any(grows) else "does_not_hold"
    titles = {"post-4x4": "Post-LN 4+4", "pre-4x4": "Pre-LN 4+4"}
    parts = [text("claim.distance.model", distances=" → ".join(f2(x) for x in d), model=titles[key],
                  change=f"{'+' if trend >= 0 else ''}{pct(trend)}")
             for (key, d), trend in zip(by_model.items(), trends, strict=True)]
    name = text(f"claim.stack.{stack}")
    summary = [text("claim.distance.summary", stack=name, parts=parts),
               text("claim.distance.further" if all(grows) else "claim.distance.not_further"),
               text("claim.distance.proxy")]
    method = text("claim.distance.method", stack=name)
    return Verdict(claim, verdict, numbers, summary, method, [f"zoo:{n}" for n in DEEP_MODELS.values()])


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
    verdict = "holds" if below_floor(final_gap, FLOAT32_FLOOR) else "does_not_hold"
    summary = text("claim.D2.summary", final_gap=shown(final_gap, FLOAT32_FLOOR),
                   same_depth_gap=f2(numbers["max_abs_diff_keys_vs_same_depth_layer"]),
                   en_final=pct(scores["en"][0]), en_same=pct(scores["en"][1]),
                   zh_final=pct(scores["zh"][0]), zh_same=pct(scores["zh"][1]))
    return Verdict("D2", verdict, numbers, summary, text("claim.D2.method"),
                   ["zoo:en-numbers-2x2", "zoo:zh-numbers-2x2"],
                   floors={"max_abs_diff_keys_vs_final_encoder_output": FLOAT32_FLOOR})


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
    exact = below_floor(step_gap, FLOAT32_FLOOR) and below_floor(future_gap, FLOAT32_FLOOR)
    verdict = "holds" if exact else "does_not_hold"
    summary = [text("claim.D3.summary", step_gap=shown(step_gap, FLOAT32_FLOOR),
                    future_gap=shown(future_gap, FLOAT32_FLOOR),
                    unmasked_gap=f2(unmasked_future_gap), greedy_on=pct(greedy_on), greedy_off=pct(greedy_off),
                    forced_off=pct(forced_off))]
    if runs:
        tf, gr = (numbers["unmasked_run_teacher_forced_token_accuracy"],
                  numbers["unmasked_run_greedy_heldout_accuracy"])
        copied = tf is not None and gr is not None and tf - gr > 0.3
        summary.append(text("claim.D3.run_copied" if copied else "claim.D3.run", run=str(run.id), forced=pct(tf),
                            greedy=pct(gr)))
    else:
        summary.append(text("claim.D3.no_run"))
    return Verdict("D3", verdict, numbers, summary, text("claim.D3.method"), sources,
                   floors=dict.fromkeys(("max_abs_diff_parallel_vs_step_by_step_logits",
                                         "max_abs_change_earlier_logits_when_last_token_changes"), FLOAT32_FLOOR))


MEASURES = {"E1": measure_e1, "E2": measure_e2, "D1": measure_d1, "D2": measure_d2, "D3": measure_d3,
            "D4": measure_d4}
