"""The trace of a one-stack model (model/families.py), in the shape of the encoder-decoder's (model/trace.py) so
every page reads it the same way: `stacks` names the one stack, whose rows are the tokens of `<sequence>_tokens`.

- A GPT reads the prompt, the separator (<bos>) and what it has written so far, as one sequence; it writes the
  answer one token at a time. Row t holds what it computed at position t when it wrote the token after it (with
  the causal mask on, one pass over the whole sequence computes exactly those rows; with it off, each writing
  step's pass is recorded, as for the 2017 decoder). The answer is written at rows P-1 … (P: prompt + separator),
  and the step-through walks those positions.
- A BERT reads the input once and answers at every position at once: one pass, one step per layer.

On a text (model/tasks/text.py) a GPT reads the typed line with no separator and writes up to CONTINUATION
characters after it; there is no right continuation, so no answer is marked right or wrong, and the gradients are
those of the line's own next characters. A BERT fills in each masked character of the line (its top guesses are
the output's `top` at those rows); nothing says what was hidden, so there are no gradients.
"""

from __future__ import annotations

import torch

from model.config import ModelConfig, Switches
from model.families import IGNORE, OneStack, gpt_prompt, tokens_to_write
from model.tasks import EOS, Task
from model.tasks.text import MASK_ID
from model.trace import (
    _cached,
    _embedding_summary,
    _eval_mode,
    _expected_ids,
    _norm_summary,
    _r,
    _stack_summary,
    _top_tokens,
    trace_stacks,
)


def _continue_with_cache(model: OneStack, prompt: list[int], max_new: int, switches: Switches):
    """Greedy continuation of the prompt, and the hooks of every position it read (see the module docstring)."""
    P = len(prompt)
    sequence = torch.tensor([prompt])
    if switches.causal_mask:
        generated = _greedy(model, sequence, max_new, switches)
        read = torch.tensor([prompt + generated[:-1]])
        return generated, _cached(model, lambda: model(read, switches))[1]
    steps: list[dict[str, torch.Tensor]] = []

    def recording(tokens: torch.Tensor) -> torch.Tensor:
        logits, cache = _cached(model, lambda: model(tokens, switches))
        steps.append(cache)
        return logits

    generated = _greedy(model, sequence, max_new, switches, forward=recording)
    return generated, _stitched(steps, P)


def _greedy(model: OneStack, sequence: torch.Tensor, max_new: int, switches: Switches, forward=None) -> list[int]:
    forward = forward or (lambda tokens: model(tokens, switches, last_only=True))
    generated: list[int] = []
    for _ in range(max_new):
        next_token = int(forward(sequence)[0, -1].argmax())
        generated.append(next_token)
        if next_token == EOS:
            break
        sequence = torch.cat([sequence, torch.tensor([[next_token]])], dim=1)
    return generated


def _stitched(steps: list[dict[str, torch.Tensor]], P: int) -> dict[str, torch.Tensor]:
    """Row t from the pass that wrote the token after position t: the prompt's rows from the first pass, answer
    row P-1+j from pass j. Attention rows are padded with 0 for keys that did not exist yet."""
    L = P - 1 + len(steps)
    out: dict[str, torch.Tensor] = {}
    for name in steps[0]:
        if name.split(".")[-1] in ("hook_q", "hook_k", "hook_v", "hook_z"):
            continue  # not summarised
        rows = []
        for t in range(L):
            value = steps[max(0, t - (P - 1))][name]
            if name.endswith(("hook_scores", "hook_pattern")):  # (H, Tq, Tk)
                rows.append(torch.nn.functional.pad(value[:, t], (0, L - value.size(-1))))
            elif value.dim() >= 2 and value.size(0) > t:  # (T, …)
                rows.append(value[t])
            else:  # per-feature statistics (batch norm) do not depend on t
                rows.append(value.reshape(-1))
        out[name] = torch.stack(rows, dim=-2 if name.endswith(("scores", "pattern")) else 0)
    return out


def _logit_lens(cache, model: OneStack, task: Task, switches: Switches, rows: slice) -> list[list[list]]:
    """Per layer, at the rows that answer: the top tokens if the model stopped after that layer."""
    kind = switches.norm if switches.norm_position == "pre" else "none"
    stack = model.spec.name
    lens = []
    for i in range(model.config.n_layers(stack)):
        stream = model.stack.norm_final.quiet(cache[f"{stack}.{i}.hook_resid_post"][None], kind)[0]
        lens.append(_top_tokens(torch.softmax(model.unembed(stream[rows]), dim=-1), task))
    return lens


def one_stack_steps(model: OneStack, answer_rows: range, switches: Switches) -> list[dict]:
    """The forward pass as the step-through walks it: a GPT token by token while it writes the answer (a step's
    `position` counts the answer's tokens, as the 2017 decoder's does; answer token j is written at row
    answer_rows.start + j), a BERT once through its layers."""
    spec = model.spec
    steps: list[dict] = []

    def add(**step) -> None:
        steps.append({"index": len(steps), "position": None, "layer": None, "sublayer": None,
                      "stack": spec.name, **step})

    def one_pass(position: int | None) -> None:
        add(op="embed", position=position)
        add(op="pos", position=position)
        for layer in range(model.config.n_layers(spec.name)):
            for kind in spec.sublayers:
                add(layer=layer, sublayer=kind, op="sublayer", position=position)
                add(layer=layer, sublayer=kind, op="add_norm", position=position)
        add(op="output", position=position)

    for position in (range(len(answer_rows)) if spec.causal else [None]):
        one_pass(position)
    return steps


@torch.no_grad()
def trace_one_stack(model: OneStack, task: Task, src_text: str, switches: Switches | None = None,
                    expected: str | None = None, with_gradients: bool = True) -> dict:
    """As model.trace.trace, for a GPT or a BERT. Raises UnknownTokenError or ValueError for input the model
    cannot take."""
    switches = switches or model.switches
    _eval_mode(model)
    src_ids = task.src_tokenizer.encode(src_text)
    if not src_ids:
        raise ValueError("the input is empty")
    spec = model.spec
    gpt = spec.causal
    prompt = _prompt(model, task, src_ids)
    longest = max_input_tokens(model.config, task)
    if len(src_ids) > longest:
        raise ValueError(f"the input has {len(src_ids)} tokens; this model takes at most {longest}")
    expected_ids = None if task.reads_text else _expected_ids(task, src_text, expected)
    shown = task.src_tokenizer.shown
    src_tokens = [shown(c) for c in task.src_tokenizer.split(src_text)]
    masked_rows = None  # a BERT on a text: the rows it was asked to fill in
    if gpt:
        max_new = tokens_to_write(task, model.config.max_len, len(prompt))
        if expected_ids is not None:  # a model that never stops is shown a few tokens past the answer
            max_new = min(max_new, len(expected_ids) + 3)
        generated, cache = _continue_with_cache(model, prompt, max_new, switches)
        answer_rows = range(len(prompt) - 1, len(prompt) - 1 + len(generated))
        separator = [] if task.reads_text else ["<bos>"]
        tokens = src_tokens + separator + [shown(task.tgt_tokenizer.token(i)) for i in generated[:-1]]
        expected_ids_shown = expected_ids
    else:
        logits, cache = _cached(model, lambda: model(torch.tensor([prompt]), switches))
        generated = logits[0].argmax(-1).tolist()
        answer_rows = range(len(prompt))
        tokens = src_tokens
        if task.reads_text:
            masked_rows = [i for i, t in enumerate(src_ids) if t == MASK_ID]
        expected_ids_shown = None if expected_ids is None else expected_ids[:-1]  # an answer per position, no EOS
    rows = slice(answer_rows.start, answer_rows.stop)
    probs = torch.softmax(cache["hook_logits"][rows], dim=-1)
    output_tokens = [shown(task.tgt_tokenizer.token(i)) for i in generated]
    sequence = spec.sequence
    result = {
        "switches": switches.to_dict(),
        "trained_switches": model.switches.to_dict(),
        "ablated": switches.differences(model.switches),
        "config": model.config.to_dict(),
        "task": task.name,
        "input": src_text,
        "src_tokens": src_tokens,
        f"{sequence}_tokens": tokens,
        "answer_rows": [answer_rows.start, answer_rows.stop],
        "output_tokens": output_tokens,
        "output_text": _filled(task, src_ids, generated) if masked_rows is not None
        else task.tgt_tokenizer.decode(generated),
        "finished": (bool(generated) and generated[-1] == EOS) if gpt and not task.reads_text else True,
        "stacks": trace_stacks(model),
        "embedding": {sequence: _embedding_summary(cache["hook_embed"], cache["hook_pos"])},
        spec.name: _stack_summary(cache, model, spec.name, switches),
        f"{spec.name}_final_norm": _norm_summary(cache, f"{spec.name}.norm_final", model.stack.norm_final,
                                                 switches.norm),
        "output": {
            "chosen_prob": [_r(probs[j, g].item()) for j, g in enumerate(generated)],
            "top": _top_tokens(probs, task),
        },
        "logit_lens": _logit_lens(cache, model, task, switches, rows),
        "steps": one_stack_steps(model, answer_rows, switches),
        "masked_rows": masked_rows,
    }
    if expected_ids_shown is None:
        own = _own_next_characters(model, task, src_ids, switches) if with_gradients else None
        result.update(expected_tokens=None, correct=None, gradients=own)
    else:
        result.update(expected_tokens=[task.tgt_tokenizer.token(i) for i in expected_ids_shown],
                      correct=generated == expected_ids_shown,
                      gradients=one_stack_gradients(model, prompt, expected_ids_shown, switches)
                      if with_gradients else None)
    return result


def _filled(task: Task, src_ids: list[int], guesses: list[int]) -> str:
    """The typed line with each masked character replaced by the BERT's guess."""
    token = task.tgt_tokenizer.token  # every guess shown, even a special one an ablated model may pick
    return "".join(token(g if t == MASK_ID else t) for t, g in zip(src_ids, guesses, strict=True))


def _prompt(model: OneStack, task: Task, src_ids: list[int]) -> list[int]:
    """What a GPT continues (gpt_prompt); a BERT's input."""
    return gpt_prompt(task, src_ids) if model.spec.causal else src_ids


def max_input_tokens(config: ModelConfig, task: Task) -> int:
    """The longest input a one-stack model takes: a BERT its whole table; a GPT leaves room for its separator (not
    on a text) and to write at least two tokens after it."""
    if config.arch == "encoder_only":
        return config.max_len
    return config.max_len - (1 if task.reads_text else 2)


def _own_next_characters(model: OneStack, task: Task, src_ids: list[int], switches: Switches) -> dict | None:
    """A GPT on a text: the gradients of predicting each next character of the typed line (none for a single
    character, or for a BERT, whose hidden characters nobody has given)."""
    if not (task.reads_text and model.spec.causal and len(src_ids) > 1):
        return None
    return one_stack_gradients(model, src_ids[:1], src_ids[1:], switches)


def one_stack_expected_gradients(model: OneStack, task: Task, src_text: str, switches: Switches,
                                 expected: str | None = None) -> dict | None:
    """The `gradients` of trace_one_stack alone (None when the input has no expected answer; a GPT on a text: the
    line's own next characters)."""
    _eval_mode(model)
    src_ids = task.src_tokenizer.encode(src_text)
    if task.reads_text:
        return _own_next_characters(model, task, src_ids, switches)
    expected_ids = _expected_ids(task, src_text, expected)
    if expected_ids is None:
        return None
    answer = expected_ids if model.spec.causal else expected_ids[:-1]
    return one_stack_gradients(model, _prompt(model, task, src_ids), answer, switches)


def teacher_forced(model: OneStack, prompt: list[int], answer: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """What a GPT reads and the targets it is scored on for a known answer (as one_sequence poses a batch), or a
    BERT's input and its answer per position."""
    if model.spec.causal:
        return (torch.tensor([prompt + answer[:-1]]),
                torch.tensor([[IGNORE] * (len(prompt) - 1) + answer]))
    return torch.tensor([prompt]), torch.tensor([answer])


def one_stack_gradients(model: OneStack, prompt: list[int], answer: list[int], switches: Switches) -> dict:
    """‖∂loss/∂(input of layer i)‖ for the teacher-forced answer (claim R1), as layer_gradient_norms gives them."""
    tokens, targets = teacher_forced(model, prompt, answer)
    inputs: dict[str, torch.Tensor] = {}

    def keep(x: torch.Tensor, hook) -> None:
        inputs[hook.name] = x

    stack = model.spec.name
    with torch.enable_grad(), model.hooks([(lambda n: n.endswith("hook_resid_pre"), keep)]):
        logits = model(tokens, switches)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)
        names = [n for n, x in inputs.items() if x.requires_grad]
        grads = torch.autograd.grad(loss, [inputs[n] for n in names], allow_unused=True)
    norms = {n: (0.0 if g is None else g.norm().item()) for n, g in zip(names, grads, strict=True)}
    return {stack: [_r(norms.get(f"{stack}.{i}.hook_resid_pre", 0.0)) for i in range(model.config.n_layers(stack))],
            "loss": _r(loss.item())}
