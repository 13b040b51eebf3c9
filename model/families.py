"""One-stack Transformers beside the 2017 encoder-decoder, made of the same Block (model/blocks.py):

- decoder-only (GPT, LLaMA): one causal stack. No encoder, so no memory and no cross-attention; it reads one
  sequence and predicts each position's next token.
- encoder-only (BERT): one bidirectional stack with a head at every position (masked-token prediction).

Hooks keep the 2017 names (`decoder.{i}.…` for the GPT stack, `encoder.{i}.…` for the BERT stack), so a probe
written for one stack reads the same stack in any family. `build_model` makes the model a config's `arch` names.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from model.blocks import LayerInputs
from model.config import ConfigError, ModelConfig, Switches, quoted
from model.hooks import HookPoint
from model.layers import PositionalEncoding, TokenEmbedding
from model.residuals import residual_scheme
from model.stacks import FAMILIES
from model.tasks import BOS, EOS, PAD, Batch, Task
from model.tasks.text import CONTINUATION
from model.transformer import Seq2Seq, Stack, SwitchedModel, self_attention_mask


class OneStack(SwitchedModel):
    """A decoder-only or encoder-only Transformer: tokens (B, T) -> logits (B, T, vocab)."""

    def __init__(self, config: ModelConfig, switches: Switches | None = None):
        if len(FAMILIES[config.arch]) != 1:
            raise ConfigError("arch", f"{quoted(config.arch)} has {len(FAMILIES[config.arch])} stacks; build it "
                                      "with build_model")
        if config.arch == "decoder_only" and config.src_vocab_size != config.tgt_vocab_size:
            raise ConfigError("tgt_vocab_size", f"a GPT reads back what it writes: its {config.tgt_vocab_size} "
                                                f"output tokens must be its {config.src_vocab_size} input tokens")
        super().__init__(config, switches)
        (spec,) = self.stacks = FAMILIES[config.arch]
        self.spec = spec
        self.embed = TokenEmbedding(config.src_vocab_size, config.d_model)
        self.pos = PositionalEncoding(config.max_len, config.d_model)
        self.hook_embed = HookPoint()
        self.hook_pos = HookPoint()
        self.add_module(spec.name, Stack(config, spec, residual_scheme(self.switches.residual_scheme)))
        self.unembed = nn.Linear(config.d_model, config.tgt_vocab_size)
        self.hook_logits = HookPoint()
        self.setup_hooks()

    @property
    def stack(self) -> Stack:
        return self._modules[self.spec.name]

    def forward(self, tokens: torch.Tensor, switches: Switches | None = None, last_only: bool = False) -> torch.Tensor:
        """tokens: (B, T) ids, right-padded with PAD. A causal stack with the causal mask on lets position t
        read positions ≤ t only; otherwise every position reads every real token. `last_only`: the logits of the
        last position alone, (B, 1, V), as generation needs them (the unembedding of a large vocabulary at every
        position would cost more than the stack)."""
        sw = self._switches(switches)
        pad_mask = tokens == PAD
        inputs = LayerInputs(sw, pad_mask, self_attention_mask(pad_mask, self.spec.causal and sw.causal_mask),
                             skip=self._skip(sw, self.spec.name))
        x = self.hook_embed(self.embed(tokens))
        pe = self.hook_pos(self.pos(tokens.size(1), sw.pos_encoding, tokens.size(0)))
        x = x + pe
        for i, layer in enumerate(self.stack.layers()):
            if i > 0 and sw.pos_every_layer:
                x = x + pe
            x = layer(x, inputs)
        norm_final = self.stack.norm_final
        if last_only and not (self.training or norm_final.batch_statistics_at_eval):  # then it is per position
            x, pad_mask = x[:, -1:], pad_mask[:, -1:]
        x = norm_final(x, self._final_norm_kind(sw), pad_mask)
        logits = self.hook_logits(self.unembed(x))
        return logits[:, -1:] if last_only else logits


IGNORE = -100  # a target the loss skips (torch's cross_entropy ignore_index)


@dataclass
class OneSequence:
    """A source/target pair posed to a GPT as one sequence: the prompt, BOS as the separator (it marks where the
    answer starts, as it starts the 2017 decoder's input), the answer, EOS. `tokens` is what the model reads and
    `targets` the next token at each position, IGNORE except where the next token is part of the answer (its EOS
    included): the loss is on the answer only, as the encoder-decoder's is."""

    tokens: torch.Tensor  # (B, L): src, BOS, tgt, right-padded with PAD (without the last EOS: nothing follows it)
    targets: torch.Tensor  # (B, L): tokens shifted left; IGNORE on the prompt and on padding
    prompt_lengths: list[int]  # real source tokens + the BOS separator, per row (0 when every position answers)


def next_character(batch: Batch) -> OneSequence:
    """Windows of a corpus as a GPT reads them: every position predicts the character after it (the window's
    first `context` characters read, its last `context` the targets)."""
    window = batch.tgt_out[:, :-1]  # the window's ids (every window has the same length; EOS after it)
    return OneSequence(window[:, :-1], window[:, 1:].masked_fill(window[:, 1:] == PAD, IGNORE),
                       [0] * window.size(0))


def masked_characters(batch: Batch, mask_id: int) -> OneSequence:
    """Windows of a corpus as a BERT reads them: the window with some characters behind the mask, scored on those
    characters alone."""
    window = batch.tgt_out[:, :-1]
    return OneSequence(batch.src, window.masked_fill(batch.src != mask_id, IGNORE), [0] * window.size(0))


def one_sequence(batch: Batch) -> OneSequence:
    """A task's batch as GPT sequences, for a task whose source and target share one vocabulary (the digit
    tasks: copy, reverse, sort)."""
    rows, targets, prompts = [], [], []
    for src, tgt_out in zip(batch.src.tolist(), batch.tgt_out.tolist(), strict=True):
        prompt = [t for t in src if t != PAD] + [BOS]
        answer = [t for t in tgt_out if t != PAD]  # target ids + EOS
        sequence = prompt + answer
        rows.append(sequence[:-1])
        targets.append([IGNORE] * (len(prompt) - 1) + answer)
        prompts.append(len(prompt))
    width = max(len(r) for r in rows)
    return OneSequence(torch.tensor([r + [PAD] * (width - len(r)) for r in rows]),
                       torch.tensor([t + [IGNORE] * (width - len(t)) for t in targets]), prompts)


def per_position(batch: Batch) -> OneSequence:
    """A task's batch for BERT, where each answer token belongs to one input position (copy, reverse, sort: the
    answer is as long as the input): the model reads the input and predicts, at every position, the answer's token
    there. IGNORE on padding. ValueError for a batch whose answers are not as long as their inputs."""
    tokens, targets = [], []
    for src, tgt_out in zip(batch.src.tolist(), batch.tgt_out.tolist(), strict=True):
        prompt = [t for t in src if t != PAD]
        answer = [t for t in tgt_out if t not in (PAD, EOS)]
        if len(answer) != len(prompt):
            raise ValueError(f"an answer of {len(answer)} tokens to an input of {len(prompt)} has no token per "
                             "position; pose this task to BERT by masking instead")
        tokens.append(src)
        targets.append(answer + [IGNORE] * (len(src) - len(answer)))
    return OneSequence(torch.tensor(tokens), torch.tensor(targets), [0] * len(tokens))


def gpt_prompt(task: Task, src_ids: list[int]) -> list[int]:
    """What a GPT continues: the input and the separator (<bos>), or on a text the line alone."""
    return src_ids if task.reads_text else src_ids + [BOS]


def tokens_to_write(task: Task, max_len: int, prompt_len: int) -> int:
    """How many tokens a GPT writes after its prompt: the longest answer and its EOS, or on a text CONTINUATION
    characters; never past its positional table."""
    longest = CONTINUATION if task.reads_text else task.max_tgt_tokens + 1
    return min(longest, new_tokens_allowed(max_len, prompt_len))


def new_tokens_allowed(max_len: int, prompt_len: int) -> int:
    """How many tokens a GPT may write after a prompt: every token it reads has a position below max_len, and the
    last token it writes is not read."""
    return max_len - prompt_len + 1


@torch.no_grad()
def greedy_continue(model: OneStack, prompt: torch.Tensor, max_new_tokens: int,
                    switches: Switches | None = None) -> torch.Tensor:
    """A GPT continuing `prompt` (1, P) one token at a time, each step reading the sequence so far, until EOS or
    `max_new_tokens` (and never past the positional table: the last token written, at position max_len, is never
    read). Returns the new ids (1, ≤ max_new_tokens)."""
    sequence = prompt
    for _ in range(min(max_new_tokens, new_tokens_allowed(model.config.max_len, prompt.size(1)))):
        next_token = model(sequence, switches, last_only=True)[:, -1].argmax(-1, keepdim=True)
        sequence = torch.cat([sequence, next_token], dim=1)
        if next_token.item() == EOS:
            break
    return sequence[:, prompt.size(1):]


@torch.no_grad()
def sampled_continue(model: OneStack, prompt: torch.Tensor, max_new_tokens: int, temperature: float, seed: int,
                     switches: Switches | None = None, never: tuple[int, ...] = ()) -> torch.Tensor:
    """As greedy_continue, but each token drawn from softmax(logits / temperature), with its own generator seeded
    by `seed` (the same seed, the same text), and never a token of `never`. Temperature 0 is greedy."""
    if temperature == 0:
        return greedy_continue(model, prompt, max_new_tokens, switches)
    generator = torch.Generator().manual_seed(seed)
    sequence = prompt
    for _ in range(min(max_new_tokens, new_tokens_allowed(model.config.max_len, prompt.size(1)))):
        logits = model(sequence, switches, last_only=True)[:, -1]
        logits[:, list(never)] = -torch.inf
        # less the largest first: a tiny temperature then divides only ≤ 0 numbers, with no overflow to inf - inf
        probs = torch.softmax((logits - logits.max(-1, keepdim=True).values) / temperature, dim=-1)
        next_token = torch.multinomial(probs, 1, generator=generator)
        sequence = torch.cat([sequence, next_token], dim=1)
        if next_token.item() == EOS:
            break
    return sequence[:, prompt.size(1):]


def build_model(config: ModelConfig, switches: Switches | None = None) -> Seq2Seq | OneStack:
    """The model of the config's family (`arch`)."""
    return Seq2Seq(config, switches) if config.arch == "encoder_decoder" else OneStack(config, switches)
