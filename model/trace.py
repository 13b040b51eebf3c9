"""One input through the model with every hook cached, boiled down to what a page shows.

`trace()` encodes the source, decodes greedily one token at a time, and returns a JSON-ready dict:
the ordered steps of the forward pass and, per layer and sublayer, per-token stream norms, the
sublayer's contribution ‖F(x)‖, ‖F(x)‖/‖x‖, cos(F(x), x), norm statistics, attention patterns,
the logit lens of every decoder layer and per-layer gradient norms for the expected answer.

Decoder rows are stitched: row t holds what the model computed when it produced output token t,
seeing only the tokens before it. With the causal mask on, one pass over the whole generated
sequence computes exactly those rows (tested); with it off, each decoding step's pass is recorded.
The source is encoded once, for decoding and the trace alike.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TypedDict

import torch

from model.config import Switches
from model.norms import norm_kind
from model.tasks import BOS, EOS, PAD, Task
from model.transformer import EncoderOutput, Seq2Seq

TRACE_BUDGET_BYTES = 300_000  # a full trace of any zoo model on its longest input stays below this
TOP_K = 3
_EPS = 1e-12


def _r(value: float) -> float:
    """4 significant digits: plenty for a plot, a third of the bytes of a full float."""
    if not math.isfinite(value):
        return 0.0 if math.isnan(value) else math.copysign(1e30, value)
    return float(f"{value:.4g}")


def _list(t: torch.Tensor) -> list:
    """A tensor as nested lists rounded to 4 significant digits (in one go for large tensors, where
    a handful of tensor ops beat a Python call per value)."""
    if t.numel() <= 64:  # below this a Python call per value is quicker than the tensor ops
        return [_list(row) for row in t] if t.dim() > 1 else [_r(v) for v in t.tolist()]
    t = torch.nan_to_num(t.detach().double(), nan=0.0, posinf=1e30, neginf=-1e30)
    k = 3 - torch.floor(torch.log10(t.abs().clamp_min(1e-300)))  # decimals that keep 4 digits
    # n / 10^k (and n * 10^-k) are correctly rounded, so they print as the short decimal they are.
    small = torch.round(t * 10.0 ** k.clamp_min(0)) / 10.0 ** k.clamp_min(0)
    large = torch.round(t / 10.0 ** (-k).clamp_min(0)) * 10.0 ** (-k).clamp_min(0)
    return torch.where(k >= 0, small, large).tolist()


def _stack_names(model: Seq2Seq) -> list[str]:
    return [spec.name for spec in model.stacks]


class TraceStack(TypedDict):
    """A trace's description of one of its stacks (trace["stacks"], in forward order); the stack's layers are
    trace[name]. Pages read which tokens a stack's rows and its attention's keys are from here."""

    name: str
    sublayers: list[str]
    causal: bool
    tokens: str  # the trace key of the tokens its positions hold: "src_tokens" | "tgt_tokens"
    keys: dict[str, str]  # attention sublayer -> the trace key of the tokens it attends to


def trace_stacks(model: Seq2Seq) -> list[TraceStack]:
    """The model's stacks as a trace describes them. Cross-attention reads the memory of the family's first
    stack (the encoder), so its keys are that stack's tokens."""
    memory_tokens = f"{model.stacks[0].sequence}_tokens"
    return [TraceStack(name=spec.name, sublayers=list(spec.sublayers), causal=spec.causal,
                       tokens=f"{spec.sequence}_tokens",
                       keys={kind: memory_tokens if kind == "cross_attn" else f"{spec.sequence}_tokens"
                             for kind in spec.sublayers if kind.endswith("attn")})
            for spec in model.stacks]


def _eval_mode(model: Seq2Seq) -> None:
    if model.training:  # eval() walks every module; a shared, loaded model is in eval mode already
        model.eval()


def _token_norms(x: torch.Tensor) -> list[float]:
    return _list(x.norm(dim=-1))  # x: (T, D)


def _norm_summary(cache: dict[str, torch.Tensor], prefix: str, norm, kind: str) -> dict:
    before, after = cache[f"{prefix}.hook_in"], cache[f"{prefix}.hook_out"]  # (T, D)
    return {
        "kind": kind,
        "before_mean": _list(before.mean(-1)),
        "before_std": _list(before.std(-1, unbiased=False)),
        "after_mean": _list(after.mean(-1)),
        "after_std": _list(after.std(-1, unbiased=False)),
        "gamma": _list(norm.weight.detach()),
        "beta": _list(norm.bias.detach()) if norm_kind(kind).shifts else [0.0] * norm.bias.numel(),
    }


def _attention_summary(pattern: torch.Tensor, with_distance: bool) -> dict:
    """pattern: (H, Tq, Tk)."""
    entropy = -(pattern * (pattern + _EPS).log()).sum(-1)  # (H, Tq)
    out = {"pattern": _list(pattern), "entropy": _list(entropy.mean(-1))}
    if with_distance:
        tq, tk = pattern.shape[-2:]
        distance = (torch.arange(tq)[:, None] - torch.arange(tk)[None, :]).abs().float()
        out["mean_distance"] = _list((pattern * distance).sum(-1).mean(-1))  # per head
    return out


def _sublayer_summary(cache, model: Seq2Seq, stack: str, layer: int, kind: str, stream_in: str, stream_out: str,
                      switches: Switches) -> dict:
    prefix = f"{stack}.{layer}"
    x = cache[f"{prefix}.{stream_in}"]
    fx = cache[f"{prefix}.hook_{kind}_out"]
    norm_name = f"norm_{kind}"
    norm = getattr(model._modules[stack]._modules[str(layer)], norm_name)
    summary = {
        "residual": switches.residual_on(stack, layer, kind),
        "input_norm": _token_norms(x),
        "out_norm": _token_norms(fx),
        "ratio": _list(fx.norm(dim=-1) / (x.norm(dim=-1) + _EPS)),
        "cos": _list(torch.cosine_similarity(fx, x, dim=-1)),
        "stream_norm": _token_norms(cache[f"{prefix}.{stream_out}"]),
        "norm": _norm_summary(cache, f"{prefix}.{norm_name}", norm, switches.norm),
    }
    if kind.endswith("attn"):
        pattern = cache[f"{prefix}.{kind}.hook_pattern"]
        summary.update(_attention_summary(pattern, with_distance=kind == "self_attn"))
    return summary


def _stack_summary(cache, model: Seq2Seq, stack: str, switches: Switches) -> list[dict]:
    spec = model.stack_spec(stack)
    layers = []
    for i in range(model.config.n_layers(stack)):
        layers.append({
            "resid_pre_norm": _token_norms(cache[f"{stack}.{i}.hook_resid_pre"]),
            "resid_post_norm": _token_norms(cache[f"{stack}.{i}.hook_resid_post"]),
            "sublayers": {
                kind: _sublayer_summary(cache, model, stack, i, kind, *spec.around(kind), switches)
                for kind in spec.sublayers
            },
        })
    return layers


def _embedding_summary(embed: torch.Tensor, pos: torch.Tensor) -> dict:
    pos = pos.expand_as(embed)
    return {
        "embed_norm": _token_norms(embed),
        "pos_norm": _token_norms(pos),
        "sum_norm": _token_norms(embed + pos),
        "cos_embed_pos": _list(torch.cosine_similarity(embed, pos, dim=-1)),
    }


def _cached(model: Seq2Seq, run: Callable[[], torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """run() with every hook that fires stored, batch dimension dropped (a trace is of one input)."""
    with model.caching() as cache:
        out = run()
    return out, {name: value[0] for name, value in cache.items()}


def _stitch_row(rows: dict[str, list[torch.Tensor]], cache: dict[str, torch.Tensor], t: int, T: int) -> None:
    """Keep row t of one decoder step's hooks (the step that produced output token t)."""
    for name, value in cache.items():
        if name.endswith(("hook_scores", "hook_pattern")):  # (H, Tq, Tk)
            row = value[:, t]
            if ".self_attn." in name:  # keys that did not exist yet are shown as 0
                row = torch.nn.functional.pad(row, (0, T - row.size(-1)))
            rows.setdefault(name, []).append(row)
        elif name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_z"):
            continue  # not summarised
        elif value.dim() >= 2 and value.size(0) == t + 1:  # (T, …)
            rows.setdefault(name, []).append(value[t])
        else:  # per-feature statistics (batch norm) do not depend on t
            rows.setdefault(name, []).append(value.reshape(-1))


def _decode_with_cache(model: Seq2Seq, memory: EncoderOutput, max_new: int, switches: Switches):
    """Greedy decoding, and every decoder hook stitched: row t as computed when output token t was produced,
    seeing only the tokens before it. With the causal mask on, one pass over the whole generated sequence
    computes exactly those rows; with it off, each step's own pass is recorded as it decodes."""
    if switches.causal_mask:
        generated = model.greedy_from(memory, max_new, switches)
        tgt_in = torch.cat([torch.full((1, 1), BOS), generated[:, :-1]], dim=1)
        _, cache = _cached(model, lambda: model.decode(tgt_in, memory, switches))
        return generated[0].tolist(), cache
    steps: list[dict[str, torch.Tensor]] = []

    def recording_decode(ys: torch.Tensor) -> torch.Tensor:
        logits, cache = _cached(model, lambda: model.decode(ys, memory, switches))
        steps.append(cache)
        return logits

    generated = model.greedy_from(memory, max_new, switches, decode=recording_decode)
    rows: dict[str, list[torch.Tensor]] = {}
    for t, cache in enumerate(steps):
        _stitch_row(rows, cache, t, len(steps))
    return generated[0].tolist(), {
        name: torch.stack(r, dim=-2 if name.endswith(("scores", "pattern")) else 0) for name, r in rows.items()
    }


def _logit_lens(cache, model: Seq2Seq, task: Task, switches: Switches) -> list[list[list]]:
    """Per decoder layer, per position: the top tokens if the model stopped after that layer."""
    kind = switches.norm if switches.norm_position == "pre" else "none"
    lens = []
    for i in range(model.config.n_decoder_layers):
        stream = model.decoder.norm_final.quiet(cache[f"decoder.{i}.hook_resid_post"][None], kind)[0]
        probs = torch.softmax(model.unembed(stream), dim=-1)
        lens.append(_top_tokens(probs, task))
    return lens


def _top_tokens(probs: torch.Tensor, task: Task, k: int = TOP_K) -> list[list]:
    top = probs.topk(min(k, probs.size(-1)), dim=-1)
    tokenizer = task.tgt_tokenizer
    return [
        [[tokenizer.shown(tokenizer.token(i)), _r(p)] for p, i in zip(row_p, row_i, strict=True)]
        for row_p, row_i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
    ]


def layer_gradient_norms(model: Seq2Seq, src: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor,
                         switches: Switches) -> dict[str, list[float]]:
    """‖∂loss/∂(input of layer i)‖ for the teacher-forced expected answer (claim R1).

    Uses autograd.grad, so no parameter's .grad is written (several requests may share a model)."""
    inputs: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook) -> None:
        inputs[hook.name] = x

    with torch.enable_grad(), model.hooks([(lambda n: n.endswith("hook_resid_pre"), keep)]):
        logits = model(src, tgt_in, switches)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=PAD)
        names = [n for n, x in inputs.items() if x.requires_grad]
        grads = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    norms = {n: (0.0 if g is None else g.norm().item()) for n, g in zip(names, grads, strict=True)}
    return {
        stack: [_r(norms.get(f"{stack}.{i}.hook_resid_pre", 0.0)) for i in range(model.config.n_layers(stack))]
        for stack in _stack_names(model)
    } | {"loss": _r(loss.item())}


def build_steps(model: Seq2Seq, n_positions: int, switches: Switches) -> list[dict]:
    """The forward pass in the order it happens, as the step-through UI walks it."""
    steps: list[dict] = []

    def add(**step) -> None:
        steps.append({"index": len(steps), "position": None, "layer": None, "sublayer": None, **step})

    def layer_steps(stack: str, layer: int, position: int | None) -> None:
        for kind in model.stack_spec(stack).sublayers:
            add(stack=stack, layer=layer, sublayer=kind, op="sublayer", position=position)
            add(stack=stack, layer=layer, sublayer=kind, op="add_norm", position=position)

    add(stack="encoder", op="embed")
    add(stack="encoder", op="pos")
    for i in range(model.config.n_encoder_layers):
        layer_steps("encoder", i, None)
    if switches.norm_position == "pre":
        add(stack="encoder", op="final_norm")
    for t in range(n_positions):
        add(stack="decoder", op="embed", position=t)
        for i in range(model.config.n_decoder_layers):
            layer_steps("decoder", i, t)
        add(stack="decoder", op="output", position=t)
    return steps


@torch.no_grad()
def trace(model: Seq2Seq, task: Task, src_text: str, switches: Switches | None = None,
          expected: str | None = None, with_gradients: bool = True) -> dict:
    """Raises UnknownTokenError (from the tokenizer) or ValueError for input the model cannot take."""
    if not isinstance(model, Seq2Seq):  # a GPT or a BERT; that module builds on this one's summaries
        from model.one_stack_trace import trace_one_stack

        return trace_one_stack(model, task, src_text, switches, expected, with_gradients)
    switches = switches or model.switches
    _eval_mode(model)
    src_ids = task.src_tokenizer.encode(src_text)
    if not src_ids:
        raise ValueError("the input is empty")
    if len(src_ids) > model.config.max_len:
        raise ValueError(f"the input has {len(src_ids)} tokens; this model takes at most {model.config.max_len}")
    src = torch.tensor([src_ids])
    expected_ids = _expected_ids(task, src_text, expected)
    max_new = min(task.max_tgt_tokens + 1, model.config.max_len - 1)
    if expected_ids is not None:  # a model that never stops is shown a few tokens past the answer, not 16
        max_new = min(max_new, len(expected_ids) + 3)

    # Batch of one: generation stops at EOS, so every id here is the model's own choice (even PAD).
    memory, cache = _cached(model, lambda: model.encode(src, switches))
    generated, decoder_cache = _decode_with_cache(model, memory, max_new, switches)
    cache.update(decoder_cache)
    probs = torch.softmax(cache["hook_logits"], dim=-1)  # (T, V)

    tok = task.tgt_tokenizer
    output_tokens = [tok.token(i) for i in generated]
    result = {
        "switches": switches.to_dict(),
        "trained_switches": model.switches.to_dict(),
        "ablated": switches.differences(model.switches),
        "config": model.config.to_dict(),
        "task": task.name,
        "input": src_text,
        "src_tokens": task.src_tokenizer.split(src_text),
        "tgt_tokens": ["<bos>"] + output_tokens[:-1],
        "output_tokens": output_tokens,
        "output_text": tok.decode(generated),
        "finished": bool(generated) and generated[-1] == EOS,
        "stacks": trace_stacks(model),
        "embedding": {
            "src": _embedding_summary(cache["hook_src_embed"], cache["hook_src_pos"]),
            "tgt": _embedding_summary(cache["hook_tgt_embed"], cache["hook_tgt_pos"]),
        },
        "encoder": _stack_summary(cache, model, "encoder", switches),
        "encoder_final_norm": _norm_summary(cache, "encoder.norm_final", model.encoder.norm_final, switches.norm),
        "decoder": _stack_summary(cache, model, "decoder", switches),
        "output": {
            "chosen_prob": [_r(probs[t, g].item()) for t, g in enumerate(generated)],
            "top": _top_tokens(probs, task),
        },
        "logit_lens": _logit_lens(cache, model, task, switches),
        "steps": build_steps(model, len(generated), switches),
    }
    result.update(_expected_part(model, task, src, expected_ids, generated, switches, with_gradients))
    return result


def _expected_ids(task: Task, src_text: str, expected: str | None) -> list[int] | None:
    """The right answer as target ids + EOS, or None when the input has none (e.g. not a number)."""
    if expected is None:
        try:
            expected = task.target(src_text)
        except ValueError:
            return None
    return task.tgt_tokenizer.encode(expected) + [EOS]


def _expected_part(model, task, src, expected_ids, generated, switches, with_gradients) -> dict:
    if expected_ids is None:
        return {"expected_tokens": None, "correct": None, "gradients": None}
    return {
        "expected_tokens": [task.tgt_tokenizer.token(i) for i in expected_ids],
        "correct": generated == expected_ids,
        "gradients": _gradients(model, src, expected_ids, switches) if with_gradients else None,
    }


def _gradients(model, src: torch.Tensor, expected_ids: list[int], switches: Switches) -> dict:
    tgt_in = torch.tensor([[BOS] + expected_ids[:-1]])
    return layer_gradient_norms(model, src, tgt_in, torch.tensor([expected_ids]), switches)


def expected_gradients(model: Seq2Seq, task: Task, src_text: str, switches: Switches | None = None,
                       expected: str | None = None) -> dict | None:
    """The `gradients` of trace() alone (None when the input has no expected answer): a backward pass costs
    a fifth of a trace, so a page computes it only when it shows it."""
    if not isinstance(model, Seq2Seq):
        from model.one_stack_trace import one_stack_expected_gradients

        return one_stack_expected_gradients(model, task, src_text, switches or model.switches, expected)
    _eval_mode(model)
    expected_ids = _expected_ids(task, src_text, expected)
    if expected_ids is None:
        return None
    src = torch.tensor([task.src_tokenizer.encode(src_text)])
    return _gradients(model, src, expected_ids, switches or model.switches)


def trace_size(result: dict) -> int:
    return len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())


def _decoder_input(task: Task, model: Seq2Seq, src: torch.Tensor, intact_output: list[str] | None) -> torch.Tensor:
    """BOS + the intact model's greedy output (but its last token): the decoder input every comparison shares."""
    if intact_output is not None:
        generated = [task.tgt_tokenizer.id_of_shown(token) for token in intact_output]
    else:
        max_new = min(task.max_tgt_tokens + 1, model.config.max_len - 1)
        generated = model.greedy_decode(src, max_new, model.switches)[0].tolist()
    return torch.tensor([[BOS] + generated[:-1]])


def _shared_inputs(task: Task, model, src_text: str, intact_output: list[str] | None) -> tuple[tuple, list[str]]:
    """What every comparison feeds the model, and the tokens of the rows it compares: the source and the decoder
    input above; for a GPT, prompt, separator and the intact model's answer (but its last token; on a text, the
    line and what the intact model wrote after it); for a BERT, the input."""
    src_ids = task.src_tokenizer.encode(src_text)
    src = torch.tensor([src_ids])
    if isinstance(model, Seq2Seq):
        tgt_in = _decoder_input(task, model, src, intact_output)
        return (src, tgt_in), ["<bos>"] + [task.tgt_tokenizer.token(i) for i in tgt_in[0, 1:].tolist()]
    shown = task.src_tokenizer.shown
    if not model.spec.causal:
        return (src,), [shown(c) for c in task.src_tokenizer.split(src_text)]
    from model.families import gpt_prompt, greedy_continue, tokens_to_write

    prompt = gpt_prompt(task, src_ids)
    if intact_output is not None:
        answer = [task.tgt_tokenizer.id_of_shown(token) for token in intact_output]
    else:
        max_new = tokens_to_write(task, model.config.max_len, len(prompt))
        answer = greedy_continue(model, torch.tensor([prompt]), max_new, model.switches)[0].tolist()
    tokens = prompt + answer[:-1]
    return (torch.tensor([tokens]),), [shown(task.src_tokenizer.vocab[i]) for i in tokens]


@torch.no_grad()
def _streams(model, inputs: tuple, switches: Switches) -> dict[str, torch.Tensor]:
    names = [f"{stack}.{i}.hook_resid_post" for stack in _stack_names(model)
             for i in range(model.config.n_layers(stack))]
    _, cache = model.run_with_cache(*inputs, switches, names_filter=names)
    return {name: value[0] for name, value in cache.items()}  # (T, D) each


def layer_streams(model: Seq2Seq, task: Task, src_text: str, switches: Switches,
                  intact_output: list[str] | None = None) -> dict[str, torch.Tensor]:
    """Every layer's output stream (`<stack>.<i>.hook_resid_post`, (T, D)) with these switches, on the intact
    model's greedy output as decoder input (`intact_output` saves decoding it again)."""
    _eval_mode(model)
    return _streams(model, _shared_inputs(task, model, src_text, intact_output)[0], switches)


@torch.no_grad()
def compare_streams(model: Seq2Seq, task: Task, src_text: str, ablated: Switches,
                    intact_output: list[str] | None = None, intact: dict[str, torch.Tensor] | None = None) -> dict:
    """The intact model (its trained switches) against the ablated one, on the same source and the same
    decoder input (the intact model's own greedy output), so every position lines up. Per layer, over
    real tokens: mean ‖x_ablated − x_intact‖ / ‖x_intact‖ and mean cos(x_ablated, x_intact) of the
    layer's output stream. `intact_output` (the intact trace's output tokens) saves decoding again, and
    `intact` (layer_streams with the trained switches) the intact pass, which every ablation shares."""
    _eval_mode(model)
    inputs, rows = _shared_inputs(task, model, src_text, intact_output)
    if intact is None:
        intact = _streams(model, inputs, model.switches)
    changed = _streams(model, inputs, ablated)
    result: dict = {"decoder_input": rows}
    for stack in _stack_names(model):
        result[stack] = []
        for i in range(model.config.n_layers(stack)):
            a, b = intact[f"{stack}.{i}.hook_resid_post"], changed[f"{stack}.{i}.hook_resid_post"]
            relative = (b - a).norm(dim=-1) / (a.norm(dim=-1) + _EPS)
            result[stack].append({"relative": _r(relative.mean().item()),
                                  "cosine": _r(torch.cosine_similarity(a, b, dim=-1).mean().item())})
    return result
