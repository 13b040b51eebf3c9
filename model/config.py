"""Model sizes (ModelConfig) and what is switched on or off (Switches).

Both are frozen dataclasses, validated on construction with messages that name the field and the
allowed values, so a bad URL or CLI flag fails before any tensor is made.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from functools import cache
from typing import Any, Literal, get_args, get_origin, get_type_hints

NormType = Literal["layer", "rms", "batch", "none"]
NormPosition = Literal["post", "pre"]
PosEncoding = Literal["sinusoidal", "learned", "none"]
Memory = Literal["final", "same_depth"]
InitScheme = Literal["default", "xavier", "small"]  # how weights start; see model.layers.initialize
SublayerKind = Literal["self_attn", "cross_attn", "ffn"]
Stack = Literal["encoder", "decoder"]

SUBLAYERS_OF: dict[str, tuple[str, ...]] = {
    "encoder": ("self_attn", "ffn"),
    "decoder": ("self_attn", "cross_attn", "ffn"),
}


class ConfigError(ValueError):
    """A field has a value outside what it allows; `field` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


def _check_literal(name: str, value: Any, annotation: Any) -> None:
    allowed = get_args(annotation)
    if value not in allowed:
        choices = " | ".join(str(a) for a in allowed)
        raise ConfigError(name, f"{value!r} is not allowed; choose one of {choices}")


@cache
def _field_annotations(cls: type) -> dict[str, Any]:
    # Resolved once per class: every switch change in the web app validates a new Switches.
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _check_types(obj: Any) -> None:
    # Literal fields are checked by value; bool/int fields by type (bool is not an int here).
    for name, annotation in _field_annotations(type(obj)).items():
        value = getattr(obj, name)
        if get_origin(annotation) is Literal:
            _check_literal(name, value, annotation)
        elif annotation is bool and not isinstance(value, bool):
            raise ConfigError(name, f"{value!r} is not a boolean (true/false)")
        elif annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(name, f"{value!r} is not a whole number")
        elif annotation is float and not isinstance(value, (int, float)):
            raise ConfigError(name, f"{value!r} is not a number")


class _Serializable:
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(unknown[0], f"unknown field; known fields: {', '.join(sorted(known))}")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))

    def short_hash(self) -> str:
        """8 hex chars, stable across runs and machines (for caches and shareable ids)."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:8]


@dataclass(frozen=True)
class ModelConfig(_Serializable):
    src_vocab_size: int  # source tokens, specials included
    tgt_vocab_size: int  # target tokens, specials included
    d_model: int = 64  # width of the residual stream
    n_heads: int = 4  # attention heads per attention sublayer; d_model must divide evenly
    d_ff: int = 128  # hidden width of each feed-forward sublayer
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    max_len: int = 32  # longest sequence (tokens incl. BOS/EOS) the positional table covers
    norm_eps: float = 1e-5

    def __post_init__(self) -> None:
        _check_types(self)
        limits = {
            "src_vocab_size": (4, 10_000),
            "tgt_vocab_size": (4, 10_000),
            "d_model": (4, 1024),
            "n_heads": (1, 64),
            "d_ff": (4, 8192),
            "n_encoder_layers": (1, 24),
            "n_decoder_layers": (1, 24),
            "max_len": (2, 1024),
        }
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ConfigError(name, f"{value} is outside {low}..{high}")
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"d_model {self.d_model} is not divisible by {self.n_heads} heads")
        if not 0 < self.norm_eps < 1:
            raise ConfigError("norm_eps", f"{self.norm_eps} is outside (0, 1)")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def n_layers(self, stack: str) -> int:
        return self.n_encoder_layers if stack == "encoder" else self.n_decoder_layers


@dataclass(frozen=True)
class Switches(_Serializable):
    """What is on or off. Applied at training (retrain) or at inference on any model (ablate)."""

    residual: bool = True  # master switch for every residual (skip) connection
    residual_self_attn: bool = True  # per sublayer kind; all must be on for a connection to be on
    residual_cross_attn: bool = True
    residual_ffn: bool = True
    residual_off: tuple[str, ...] = ()  # per-layer overrides: "encoder.1.ffn", "decoder.0.cross_attn"
    norm: NormType = "layer"
    norm_position: NormPosition = "post"  # post: LN(x + F(x)) as in the 2017 paper; pre: x + F(LN(x))
    pos_encoding: PosEncoding = "sinusoidal"
    pos_every_layer: bool = False  # add the positional encoding again at the input of every layer
    causal_mask: bool = True  # decoder self-attention sees only earlier positions
    memory: Memory = "final"  # what cross-attention reads: final encoder output or same-depth layer

    def __post_init__(self) -> None:
        if isinstance(self.residual_off, (list, str)):
            items = self.residual_off.split(",") if isinstance(self.residual_off, str) else self.residual_off
            object.__setattr__(self, "residual_off", tuple(sorted(i.strip() for i in items if i.strip())))
        _check_types(self)
        for item in self.residual_off:
            parse_sublayer_name(item)

    def residual_on(self, stack: str, layer: int, kind: str) -> bool:
        per_kind = getattr(self, f"residual_{kind}")
        return self.residual and per_kind and f"{stack}.{layer}.{kind}" not in self.residual_off

    def replace(self, **changes: Any) -> Switches:
        return Switches.from_dict({**self.to_dict(), **changes})

    def differences(self, other: Switches) -> dict[str, tuple[Any, Any]]:
        """{field: (self value, other value)} for fields that differ."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def parse_sublayer_name(item: str) -> tuple[str, int, str]:
    """'decoder.1.cross_attn' -> ('decoder', 1, 'cross_attn'), with a clear error otherwise."""
    parts = item.split(".")
    stack = parts[0] if parts else ""
    ok = len(parts) == 3 and stack in SUBLAYERS_OF and parts[1].isdigit() and parts[2] in SUBLAYERS_OF[stack]
    if not ok:
        raise ConfigError(
            "residual_off",
            f"{item!r} is not a sublayer; use encoder.<layer>.self_attn|ffn "
            "or decoder.<layer>.self_attn|cross_attn|ffn",
        )
    return stack, int(parts[1]), parts[2]
