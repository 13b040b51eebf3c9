"""The encoder-decoder: encode(), decode(), forward(), greedy_decode().

`switches` can be given to any of them: a model trained with one set of switches can be run with
another (ablation). Without it, the switches the model was built (trained) with apply.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, partial

import torch
from torch import nn

from model.blocks import Block, LayerInputs
from model.config import ConfigError, ModelConfig, Switches, parse_sublayer_name, quoted
from model.hooks import HookedModule, HookPoint
from model.layers import Norm, PositionalEncoding, TokenEmbedding
from model.residuals import Residual, ResidualScheme, residual_scheme
from model.stacks import DECODER, ENCODER, ENCODER_DECODER, FAMILIES, StackSpec
from model.tasks import BOS, EOS, PAD


class Stack(nn.Module):
    """N identical layers registered as "0", "1", … (so hook names read encoder.1.hook_resid_pre)
    and the final norm that a Pre-LN stack needs."""

    def __init__(self, config: ModelConfig, spec: StackSpec, scheme: ResidualScheme):
        super().__init__()
        self.spec = spec
        n_layers = config.n_layers(spec.name)
        for i in range(n_layers):
            self.add_module(str(i), Block(config, spec, i, scheme))
        self.norm_final = Norm(config.d_model, eps=config.norm_eps)
        self.n_layers = n_layers

    def layers(self) -> list[nn.Module]:
        return [self._modules[str(i)] for i in range(self.n_layers)]


@dataclass
class EncoderOutput:
    final: torch.Tensor  # (B, S, D) what the decoder reads by default
    layer_outputs: list[torch.Tensor]  # (B, S, D) the stream after each encoder layer
    pad_mask: torch.Tensor  # (B, S) True at source padding
    final_norm: Callable[[torch.Tensor], torch.Tensor]  # the stack's final norm, without hooks

    @cached_property
    def per_layer(self) -> list[torch.Tensor]:
        """Memory for switches.memory == "same_depth", one per encoder layer, normalised as the final output is.
        Made only when something reads it: training with the default memory never does."""
        return [self.final_norm(o) for o in self.layer_outputs[:-1]] + [self.final]


class SwitchedModel(HookedModule):
    """What every family shares: the switches it was built (trained) with, the switches a call may give instead
    (an ablation), and the skip connections of a residual scheme it was not built with."""

    def __init__(self, config: ModelConfig, switches: Switches | None = None):
        super().__init__()
        self.config = config
        self.switches = switches or Switches()
        check_switches_fit(self.switches, config)
        self._other_skips: dict[tuple[str, str], Residual] = {}  # schemes switched to at inference, per stack

    def stack_spec(self, name: str) -> StackSpec:
        """The spec of one of this model's stacks (a GPT's decoder is not the 2017 decoder)."""
        return next(spec for spec in self.stacks if spec.name == name)

    def _switches(self, switches: Switches | None) -> Switches:
        if switches is None:
            return self.switches
        check_switches_fit(switches, self.config)
        if switches.residual_scheme != self.switches.residual_scheme:
            self._check_scheme(switches.residual_scheme)
        return switches

    def _check_scheme(self, name: str) -> None:
        if residual_scheme(name).learned:
            raise ConfigError("residual_scheme", f"{quoted(name)} learns weights with the model; this model was "
                                                 f"trained with {quoted(self.switches.residual_scheme)}")

    def _skip(self, switches: Switches, stack: str) -> Residual | None:
        """The skip connection of a residual scheme the model was not built with (None: its own)."""
        name = switches.residual_scheme
        if name == self.switches.residual_scheme:
            return None
        if (name, stack) not in self._other_skips:
            self._other_skips[name, stack] = residual_scheme(name).residual(self.config, stack,
                                                                            self.config.n_layers(stack))
        return self._other_skips[name, stack]

    def _final_norm_kind(self, switches: Switches) -> str:
        # Post-LN streams leave every layer already normalised; only Pre-LN needs a final norm.
        return switches.norm if switches.norm_position == "pre" else "none"

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


class Seq2Seq(SwitchedModel):
    def __init__(self, config: ModelConfig, switches: Switches | None = None):
        if config.arch != "encoder_decoder":
            raise ConfigError("arch", f"{quoted(config.arch)} is a one-stack model (model/families.py build_model)")
        super().__init__(config, switches)
        self.src_embed = TokenEmbedding(config.src_vocab_size, config.d_model)
        self.tgt_embed = TokenEmbedding(config.tgt_vocab_size, config.d_model)
        self.pos = PositionalEncoding(config.max_len, config.d_model)
        self.hook_src_embed = HookPoint()
        self.hook_src_pos = HookPoint()
        self.hook_tgt_embed = HookPoint()
        self.hook_tgt_pos = HookPoint()
        scheme = residual_scheme(self.switches.residual_scheme)
        self.stacks = ENCODER_DECODER  # the family: its stacks, in the order the data flows through them
        self.encoder = Stack(config, ENCODER, scheme)
        self.decoder = Stack(config, DECODER, scheme)
        self.unembed = nn.Linear(config.d_model, config.tgt_vocab_size)
        self.hook_logits = HookPoint()
        self.setup_hooks()

    def encode(self, src: torch.Tensor, switches: Switches | None = None) -> EncoderOutput:
        """src: (B, S) token ids, right-padded with PAD."""
        sw = self._switches(switches)
        pad_mask = src == PAD
        inputs = LayerInputs(sw, pad_mask, self_attention_mask(pad_mask, sw.causal_mask and ENCODER.causal),
                             skip=self._skip(sw, "encoder"))
        x = self.hook_src_embed(self.src_embed(src))
        pe = self.hook_src_pos(self.pos(src.size(1), sw.pos_encoding, src.size(0)))
        x = x + pe
        outputs = []
        for i, layer in enumerate(self.encoder.layers()):
            if i > 0 and sw.pos_every_layer:
                x = x + pe
            x = layer(x, inputs)
            outputs.append(x)
        kind = self._final_norm_kind(sw)
        final = self.encoder.norm_final(x, kind, pad_mask)
        return EncoderOutput(final, outputs, pad_mask, partial(self.encoder.norm_final.quiet, kind=kind,
                                                               pad_mask=pad_mask))

    def decode(self, tgt_in: torch.Tensor, memory: EncoderOutput, switches: Switches | None = None) -> torch.Tensor:
        """tgt_in: (B, T) BOS + target so far. Returns logits (B, T, tgt_vocab)."""
        sw = self._switches(switches)
        T = tgt_in.size(1)
        pad_mask = tgt_in == PAD
        inputs = LayerInputs(sw, pad_mask, self_attention_mask(pad_mask, sw.causal_mask and DECODER.causal),
                             cross_attn_mask=~memory.pad_mask[:, None, None, :], skip=self._skip(sw, "decoder"))
        x = self.hook_tgt_embed(self.tgt_embed(tgt_in))
        pe = self.hook_tgt_pos(self.pos(T, sw.pos_encoding, tgt_in.size(0)))
        x = x + pe
        for i, layer in enumerate(self.decoder.layers()):
            if i > 0 and sw.pos_every_layer:
                x = x + pe
            x = layer(x, inputs, self.memory_for_layer(memory, i, sw))
        x = self.decoder.norm_final(x, self._final_norm_kind(sw), pad_mask)
        return self.hook_logits(self.unembed(x))

    def memory_for_layer(self, memory: EncoderOutput, layer: int, switches: Switches) -> torch.Tensor:
        if switches.memory == "same_depth":
            return memory.per_layer[min(layer, len(memory.per_layer) - 1)]
        return memory.final

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, switches: Switches | None = None) -> torch.Tensor:
        return self.decode(tgt_in, self.encode(src, switches), switches)

    @torch.no_grad()
    def greedy_decode(self, src: torch.Tensor, max_new_tokens: int, switches: Switches | None = None) -> torch.Tensor:
        """One token at a time, each step reading only what was generated before it.
        Returns (B, ≤ max_new_tokens) generated ids (no BOS), PAD after each sequence's EOS."""
        return self.greedy_from(self.encode(src, switches), max_new_tokens, switches)

    @torch.no_grad()
    def greedy_from(self, memory: EncoderOutput, max_new_tokens: int, switches: Switches | None = None,
                    decode: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """greedy_decode() from an encoded source. `decode(ys)` -> logits replaces the plain decoder pass
        of each step (a trace records every step's hooks through it)."""
        decode = decode or (lambda ys: self.decode(ys, memory, switches))
        batch = memory.final.size(0)
        ys = torch.full((batch, 1), BOS, dtype=torch.long, device=memory.final.device)
        finished = torch.zeros(batch, dtype=torch.bool, device=memory.final.device)
        max_new_tokens = min(max_new_tokens, self.config.max_len - 1)
        for _ in range(max_new_tokens):
            next_token = decode(ys)[:, -1].argmax(-1)
            next_token = next_token.masked_fill(finished, PAD)
            ys = torch.cat([ys, next_token[:, None]], dim=1)
            finished |= next_token == EOS
            if finished.all():
                break
        return ys[:, 1:]

def self_attention_mask(pad_mask: torch.Tensor, causal: bool) -> torch.Tensor:
    """True where a query may look: every real token (B, 1, 1, T), and with `causal` only those up to its own
    position (B, 1, T, T)."""
    allowed = ~pad_mask[:, None, None, :]
    if causal:
        T = pad_mask.size(1)
        allowed = allowed & torch.ones(T, T, dtype=torch.bool, device=pad_mask.device).tril()
    return allowed


def check_switches_fit(switches: Switches, config: ModelConfig) -> None:
    """Per-layer residual overrides must name sublayers this model has (a GPT has no encoder, nor cross-attention)."""
    family = {spec.name: spec for spec in FAMILIES[config.arch]}
    for item in switches.residual_off:
        stack, layer, kind = parse_sublayer_name(item)
        if stack not in family:
            raise ConfigError("residual_off", f"{item!r}: this {config.arch} model has no {stack}")
        if kind not in family[stack].sublayers:
            raise ConfigError("residual_off", f"{item!r}: the layers of a {config.arch} {stack} have "
                                              f"{', '.join(family[stack].sublayers)}, no {kind}")
        if layer >= config.n_layers(stack):
            raise ConfigError("residual_off", f"{item!r}: the {stack} has layers 0..{config.n_layers(stack) - 1}")
