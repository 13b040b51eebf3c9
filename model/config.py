"""Model sizes (ModelConfig), what is switched on or off (Switches) and how a model is trained (TrainConfig).

The one declaration of every field: its type (a Literal's values are its choices), its default, its help
text and, for numbers, its limits (`setting`). Validation on construction, the command line's flags and the
API's parameter docs all read them (`choices_of`, `help_of`), so a bad URL or CLI flag fails, naming the
field and what it allows, before any tensor is made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from dataclasses import MISSING, asdict, dataclass, field, fields
from functools import cache
from typing import Any, Literal, get_args, get_origin, get_type_hints

from model.stacks import FAMILIES, STACKS

NormPosition = Literal["post", "pre"]
PosEncoding = Literal["sinusoidal", "learned", "none"]
Memory = Literal["final", "same_depth"]
InitScheme = Literal["default", "xavier", "small"]  # how weights start; see model.layers.initialize
SublayerKind = Literal["self_attn", "cross_attn", "ffn"]
Stack = Literal["encoder", "decoder"]

SUBLAYERS_OF: dict[str, tuple[str, ...]] = {spec.name: spec.sublayers for spec in STACKS.values()}


def setting(default: Any = MISSING, *, help: str, limits: tuple[float, float] | None = None,
            open_low: bool = False, open_high: bool = False, choices: Callable[[], Iterable[str]] | None = None,
            written_if_set: bool = False) -> Any:
    """A field declared once: default, help text and, for a number, its limits (inclusive unless open).

    choices: for a str field whose values are a registry (norm kinds, tasks) rather than a fixed Literal, a
    function returning the names registered now, so a kind added at run time is a valid value at once.
    written_if_set: for a field added after runs were stored, to_dict() leaves it out while it has its default,
    so every stored spec, its key and every hash stay what they were.
    """
    bounds = None if limits is None else (*limits, open_low, open_high)
    return field(default=default, metadata={"help": help, "limits": bounds, "choices": choices,
                                            "written_if_set": written_if_set})


def help_of(cls: type, name: str) -> str:
    return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)


def type_of(cls: type, name: str) -> Any:
    """A field's resolved type (bool, int, a Literal, …)."""
    return _field_annotations(cls)[name]


def choices_of(cls: type, name: str) -> tuple:
    """A Literal or registry field's allowed values, for selects, flags and docs (empty for other fields)."""
    registry = _field(cls, name).metadata.get("choices")
    if registry is not None:
        return tuple(registry())
    kind = _field_annotations(cls)[name]
    return get_args(kind) if get_origin(kind) is Literal else ()


def _field(cls: type, name: str):
    return _fields_by_name(cls)[name]


@cache
def _fields_by_name(cls: type) -> dict[str, Any]:
    return {f.name: f for f in fields(cls)}


def family_names() -> tuple[str, ...]:
    """The Transformer families (model/stacks.py FAMILIES)."""
    return tuple(FAMILIES)


def norm_kinds() -> tuple[str, ...]:
    """The norm kinds registered in model.norms (imported here when asked: model.norms needs torch)."""
    from model.norms import NORMS

    return tuple(NORMS)


def residual_schemes() -> tuple[str, ...]:
    from model.residuals import RESIDUAL_SCHEMES

    return tuple(RESIDUAL_SCHEMES)


def task_names() -> tuple[str, ...]:
    from model.tasks import TASKS

    return tuple(TASKS)


QUOTE_CHARS = 40  # an error message quotes at most this much of a value it refuses


def quoted(value: Any, limit: int = QUOTE_CHARS) -> str:
    """A refused value as an error message quotes it: its repr, cut to `limit` characters ('1234…')."""
    text = value if isinstance(value, str) else _safe_repr(value)
    cut = text[:limit] + "…" if len(text) > limit else text
    return repr(cut) if isinstance(value, str) else cut


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return f"<{type(value).__name__}>"


class ConfigError(ValueError):
    """A field has a value outside what it allows: `field` names it, `message` says what it allows."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self):  # raised in a worker process, it crosses back whole
        return ConfigError, (self.field, self.message)


def _check_choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        choices = " | ".join(str(a) for a in allowed)
        raise ConfigError(name, f"{quoted(value)} is not allowed; choose one of {choices}")


@cache
def _field_annotations(cls: type) -> dict[str, Any]:
    # Resolved once per class: every switch change in the web app validates a new Switches.
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _check_types(obj: Any) -> None:
    # Literal fields are checked by value; bool/int fields by type (bool is not an int here).
    for name, annotation in _field_annotations(type(obj)).items():
        value = getattr(obj, name)
        if get_origin(annotation) is Literal or _field(type(obj), name).metadata.get("choices"):
            _check_choice(name, value, choices_of(type(obj), name))
        elif annotation is bool and not isinstance(value, bool):
            raise ConfigError(name, f"{quoted(value)} is not a boolean (true/false)")
        elif annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ConfigError(name, f"{quoted(value)} is not a whole number")
        elif annotation is float and not isinstance(value, (int, float)):
            raise ConfigError(name, f"{quoted(value)} is not a number")
    for f in fields(obj):
        if f.metadata.get("limits"):
            _check_limits(f.name, getattr(obj, f.name), *f.metadata["limits"])


def _check_limits(name: str, value: float, low: float, high: float, open_low: bool, open_high: bool) -> None:
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    if not (above and below):
        span = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}" if open_low or open_high \
            else f"{low}..{high}"
        raise ConfigError(name, f"{quoted(value)} is outside {span}")


class _Serializable:
    def values(self) -> dict[str, Any]:
        """Every field, as to_dict() writes them but with the ones that are written only when set."""
        data = asdict(self)  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def to_dict(self) -> dict[str, Any]:
        data = self.values()
        for f in fields(self):  # type: ignore[arg-type]
            if f.metadata.get("written_if_set") and data[f.name] == f.default:
                del data[f.name]
        return data

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
    src_vocab_size: int = setting(help="source tokens, specials included", limits=(4, 10_000))
    tgt_vocab_size: int = setting(help="target tokens, specials included", limits=(4, 10_000))
    d_model: int = setting(64, help="width of the residual stream", limits=(4, 1024))
    n_heads: int = setting(4, help="attention heads per attention sublayer; d_model must divide evenly",
                           limits=(1, 64))
    d_ff: int = setting(128, help="hidden width of each feed-forward sublayer", limits=(4, 8192))
    n_encoder_layers: int = setting(2, help="encoder layers", limits=(1, 24))
    n_decoder_layers: int = setting(2, help="decoder layers", limits=(1, 24))
    max_len: int = setting(32, help="longest sequence (tokens incl. BOS/EOS) the positional table covers",
                           limits=(2, 1024))
    norm_eps: float = setting(1e-5, help="added to the variance before the square root", limits=(0, 1),
                              open_low=True, open_high=True)
    arch: str = setting("encoder_decoder", help="the family: encoder_decoder (2017), decoder_only (GPT), "
                        "encoder_only (BERT)", choices=family_names, written_if_set=True)

    def __post_init__(self) -> None:
        _check_types(self)
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", f"d_model {self.d_model} is not divisible by {self.n_heads} heads")

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def n_layers(self, stack: str) -> int:
        return self.n_encoder_layers if stack == "encoder" else self.n_decoder_layers

    @property
    def depth_text(self) -> str:
        """Layers per stack of the family, as pages show them: "4+4" for the 2017 model, "4" for a GPT or a BERT."""
        return "+".join(str(self.n_layers(spec.name)) for spec in FAMILIES[self.arch])


@dataclass(frozen=True)
class Switches(_Serializable):
    """What is on or off. Applied at training (retrain) or at inference on any model (ablate)."""

    residual: bool = setting(True, help="every residual (skip) connection")
    residual_self_attn: bool = setting(True, help="residual connections around self-attention")
    residual_cross_attn: bool = setting(True, help="residual connections around cross-attention")
    residual_ffn: bool = setting(True, help="residual connections around the feed-forward sublayers")
    residual_off: tuple[str, ...] = setting((), help="per-layer overrides, e.g. encoder.1.ffn,decoder.0.cross_attn")
    norm: str = setting("layer", help="the norm after (or before) each sublayer", choices=norm_kinds)
    norm_position: NormPosition = setting("post", help="post: LN(x + F(x)) as in the 2017 paper; pre: x + F(LN(x))")
    pos_encoding: PosEncoding = setting("sinusoidal", help="positional encoding added to the embeddings")
    pos_every_layer: bool = setting(False, help="add the positional encoding again at the input of every layer")
    causal_mask: bool = setting(True, help="decoder self-attention sees only earlier positions")
    memory: Memory = setting("final", help="what cross-attention reads: the final encoder output or the "
                                           "encoder layer at the same depth")
    residual_scheme: str = setting("plain", help="what the residual adds: plain x + F(x), or a registered scheme "
                                                 "(model/residuals.py)", choices=residual_schemes,
                                   written_if_set=True)

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
        mine, theirs = self.values(), other.values()
        return {k: (mine[k], theirs[k]) for k in mine if mine[k] != theirs[k]}


def parse_sublayer_name(item: str) -> tuple[str, int, str]:
    """'decoder.1.cross_attn' -> ('decoder', 1, 'cross_attn'), with a clear error otherwise."""
    parts = item.split(".")
    stack = parts[0] if parts else ""
    layer = parts[1] if len(parts) == 3 else ""
    # isdigit() alone also takes '²' and '١' (which int() refuses); a layer index has at most a few digits
    ok = (stack in SUBLAYERS_OF and layer.isascii() and layer.isdigit() and len(layer) <= 9
          and parts[2] in SUBLAYERS_OF[stack])
    if not ok:
        raise ConfigError(
            "residual_off",
            f"{quoted(item)} is not a sublayer; use encoder.<layer>.self_attn|ffn "
            "or decoder.<layer>.self_attn|cross_attn|ffn",
        )
    return stack, int(parts[1]), parts[2]


@dataclass(frozen=True)
class TrainConfig(_Serializable):
    """How one run trains (model.train); the seed is the run's own, the others are shared by its seeds."""

    task: str = setting("reverse", help="the toy task (model.tasks)", choices=task_names)
    steps: int = setting(600, help="the budget: a seed stops earlier when it reaches stop_at", limits=(1, 100_000))
    batch_size: int = setting(64, help="sequences per step and seed", limits=(1, 1024))
    lr: float = setting(1e-3, help="Adam's learning rate", limits=(0, 1), open_low=True)
    warmup_steps: int = setting(0, help="linear warm-up from 0 to lr; Post-LN may need it (claim N2)",
                                limits=(0, 100_000))
    seed: int = setting(0, help="same seed, same numbers", limits=(0, 2**31 - 1))
    eval_every: int = setting(50, help="held-out exact-sequence accuracy by greedy decoding every k steps",
                              limits=(1, 100_000))
    eval_size: int = setting(200, help="held-out inputs per evaluation", limits=(1, 10_000))
    grad_clip: float = setting(0.0, help="clip each seed's gradient norm to this; 0 = off, so that instabilities "
                                         "stay visible", limits=(0, 1e9))
    init: InitScheme = setting("default", help="default: PyTorch's; xavier: Glorot uniform; small: GPT-2's "
                                               "normal(0, 0.02) (claims N2 and N4 depend on it)")
    stop_at: float = setting(0.0, help="stop a seed once its held-out exact-sequence accuracy reaches this; "
                                       "0 = train every step", limits=(0, 1))

    def __post_init__(self) -> None:
        _check_types(self)  # the task among the tasks registered now (model.tasks)
        from model.tasks import get_task

        if self.stop_at and get_task(self.task).reads_text:
            raise ConfigError("stop_at", f"task {quoted(self.task)} is a text, with no whole answer to get right; "
                                         "train it for a number of steps (stop_at 0)")
