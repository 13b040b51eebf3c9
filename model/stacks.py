"""The stacks a model is made of, as data: each stack's name (the prefix of its hooks), its sublayers in order and
the residual-stream hooks between them, whether its self-attention is causal, and which sequence it embeds. A model
family is a tuple of stacks: the 2017 encoder-decoder is ENCODER_DECODER, and FAMILIES names every family a
config's `arch` may ask for. Blocks (model/blocks.py), the trace, the training probes and the per-layer overrides
of `residual_off` all read these, so they never list sublayers of their own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StackSpec:
    name: str  # "encoder" | "decoder": hooks read <name>.<layer>.hook_resid_pre
    sublayers: tuple[str, ...]  # "self_attn" | "cross_attn" | "ffn", in the order the stream meets them
    streams: tuple[str, ...]  # the stream's hook before the first sublayer and after each one's add & norm
    causal: bool  # with the causal_mask switch on, self-attention sees only earlier positions
    sequence: str  # "src" | "tgt" | "seq" (GPT's one): the sequence it embeds; a trace's "<sequence>_tokens"

    def __post_init__(self) -> None:
        if len(self.streams) != len(self.sublayers) + 1:
            raise ValueError(f"stack {self.name!r}: one stream hook before the sublayers and one after each")

    def around(self, kind: str) -> tuple[str, str]:
        """The stream hooks before sublayer `kind` and after its add & norm."""
        i = self.sublayers.index(kind)
        return self.streams[i], self.streams[i + 1]


ENCODER = StackSpec("encoder", ("self_attn", "ffn"), ("hook_resid_pre", "hook_resid_mid", "hook_resid_post"),
                    causal=False, sequence="src")
DECODER = StackSpec("decoder", ("self_attn", "cross_attn", "ffn"),
                    ("hook_resid_pre", "hook_resid_mid", "hook_resid_mid_cross", "hook_resid_post"), causal=True,
                    sequence="tgt")
ENCODER_DECODER = (ENCODER, DECODER)
STACKS: dict[str, StackSpec] = {spec.name: spec for spec in ENCODER_DECODER}
# GPT's stack: the 2017 decoder without cross-attention, since there is no encoder whose memory it could read. It
# embeds one sequence, prompt and answer together ("seq": model/families.py one_sequence).
GPT_DECODER = StackSpec("decoder", ("self_attn", "ffn"), ("hook_resid_pre", "hook_resid_mid", "hook_resid_post"),
                        causal=True, sequence="seq")
FAMILIES: dict[str, tuple[StackSpec, ...]] = {
    "encoder_decoder": ENCODER_DECODER,  # the 2017 model (and T5)
    "decoder_only": (GPT_DECODER,),  # GPT, LLaMA
    "encoder_only": (ENCODER,),  # BERT
}
