"""The training lab's form, derived from the settings' one declaration in model/config.py.

Each form field names the setting it sets (`LabField`); its type, choices and help come from that
declaration, and this server adds its own default and policy limits (inside the declared ones: a
test checks). `RunForm` is the form as a FastAPI model (its docs list every field); `parse_run_request`
turns it into a typed RunSpec or a 4xx naming the field, and `build_spec` makes a RunSpec from typed
values (sweeps, precompute and lessons use it without going through strings).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, Field, create_model

from app.lab.runs import RunSpec
from app.switches import SWITCH_FIELDS, parse_switches, switch_controls, switch_doc
from app.web.errors import BadInput, quoted
from model.config import ConfigError, ModelConfig, Switches, TrainConfig, choices_of, help_of, type_of
from model.tasks import get_task
from model.train import model_config_for
from model.transformer import check_switches_fit


def _number_text(value: float) -> str:
    """1e-06 as 0.000001, 12 as 12: limits as a learner types them."""
    return f"{value:f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class LabField:
    """A form field: the declared setting it sets, and this server's default and limits for it."""

    declared_in: type | None  # ModelConfig or TrainConfig; None for the lab's own fields
    name: str  # the setting's name there
    default: Any
    limits: tuple[float, float] | None = None  # a classroom server's policy: refuses what would be slow here
    help: str = ""  # when the form's field means more than the setting's own help says

    @property
    def kind(self) -> Any:
        return int if self.declared_in is None else type_of(self.declared_in, self.name)

    @property
    def choices(self) -> tuple:
        if self.declared_in is None:
            return ()
        return choices_of(self.declared_in, self.name)

    def doc(self) -> str:
        text = self.help or help_of(self.declared_in, self.name)
        if self.choices:
            text += f": {' | '.join(self.choices)}"
        if self.limits:
            text += f" ({_number_text(self.limits[0])}..{_number_text(self.limits[1])})"
        return f"{text}; default {self.default}"


# Defaults that train to 99% in well under a minute here (see model/zoo/build.py).
FIELDS: dict[str, LabField] = {
    "task": LabField(TrainConfig, "task", "reverse"),
    "arch": LabField(ModelConfig, "arch", "encoder_decoder"),
    "layers": LabField(ModelConfig, "n_encoder_layers", 2, (1, 12),
                       help="layers per stack (the encoder's and the decoder's; a GPT's or a BERT's one stack)"),
    "d_model": LabField(ModelConfig, "d_model", 64, (8, 256)),
    "n_heads": LabField(ModelConfig, "n_heads", 4, (1, 16)),
    "d_ff": LabField(ModelConfig, "d_ff", 128, (8, 1024)),
    "steps": LabField(TrainConfig, "steps", 600, (10, 5000)),
    "lr": LabField(TrainConfig, "lr", 0.001, (1e-6, 0.1)),
    "warmup_steps": LabField(TrainConfig, "warmup_steps", 0, (0, 5000)),
    "seed": LabField(TrainConfig, "seed", 0, (0, 1_000_000)),
    "batch_size": LabField(TrainConfig, "batch_size", 64, (4, 256)),
    "init": LabField(TrainConfig, "init", "default"),
    "stop_at": LabField(TrainConfig, "stop_at", 0.0, (0, 1)),
    # trained together in one job; a curve is then the mean over seeds with their range as a band
    "seeds": LabField(None, "seeds", 3, (1, 5), help="how many seeds train together: seed, seed+1, …"),
}
DEFAULT_SWITCHES = Switches(norm_position="pre")
DEFAULTS: dict[str, Any] = {name: f.default for name, f in FIELDS.items()}
# B differs from A in exactly one setting, so the comparison says what that setting does.
AB_OPTIONS = ("residual=off", "norm=none", "norm=batch", "norm=rms", "norm_position=post", "norm_position=pre",
              "pos_encoding=none", "pos_encoding=learned", "pos_every_layer=on", "causal_mask=off",
              "memory=same_depth", "warmup_steps=200", "init=xavier", "init=small")

# The form as sent: raw text per field (parsed below, so errors say what was wrong in the lab's words).
RunForm = create_model(
    "RunForm",
    __config__=ConfigDict(extra="ignore"),
    **{name: (str | None, Field(None, description=f.doc())) for name, f in FIELDS.items()},
    **{name: (str | None, Field(None, description=switch_doc(name))) for name in SWITCH_FIELDS},
    ab=(str | None, Field(None, description=f"train a run B that differs in one setting: {' | '.join(AB_OPTIONS)}")),
    label=(str | None, Field(None, description="a name for the run (at most 60 characters)")),
)


_WHOLE = re.compile(r"[+-]?[0-9]+")  # ASCII digits only: int() also takes '²' and '١'


def field_value(name: str, raw: str | None) -> Any:
    """One form field, typed and within its limits; the lab's default when it is missing."""
    field = FIELDS[name]
    if raw is None:
        return field.default
    text = str(raw).strip()
    if field.choices:
        if text not in field.choices:
            raise BadInput(name, f"{quoted(text)} is not allowed; choose one of {' | '.join(field.choices)}")
        return text
    if field.kind is int:
        if not _WHOLE.fullmatch(text):
            raise BadInput(name, f"{quoted(text)} is not a whole number")
        # past 18 digits it is outside every limit (and int() refuses more than 4300 digits)
        value: float = int(text) if len(text) <= 19 else -math.inf if text.startswith("-") else math.inf
    else:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise BadInput(name, f"{quoted(text)} is not a number")
    low, high = field.limits
    if not low <= value <= high:
        shown = value if math.isfinite(value) else quoted(text)
        raise BadInput(name, f"{shown} is outside {_number_text(low)}..{_number_text(high)}")
    return value


def build_spec(values: Mapping[str, Any], switches: Switches, settings=None, check_layers: bool = True) -> RunSpec:
    """A RunSpec from typed values (missing ones take the lab's defaults), checked against this server's
    settings when given (the app's own precomputed runs are not a learner's request). The per-layer switches
    must name layers the model has, unless `check_layers` is off (a sweep checks them at each of its depths)."""
    values = {**DEFAULTS, **values}
    if settings and values["layers"] > settings.max_layers:
        raise BadInput("layers", f"{values['layers']} is more than this server allows ({settings.max_layers})")
    if settings and values["steps"] > settings.max_steps:
        raise BadInput("steps", f"{values['steps']} is more than this server allows ({settings.max_steps})")
    if values["d_model"] % values["n_heads"]:
        raise BadInput("n_heads", f"d_model {values['d_model']} is not divisible by {values['n_heads']} heads")
    try:
        model_config = model_config_for(get_task(values["task"]), d_model=values["d_model"],
                                        n_heads=values["n_heads"], d_ff=values["d_ff"],
                                        n_encoder_layers=values["layers"], n_decoder_layers=values["layers"],
                                        arch=values["arch"])
        if check_layers:
            check_switches_fit(switches, model_config)
        train_config = TrainConfig(**{FIELDS[k].name: v for k, v in values.items()
                                      if FIELDS[k].declared_in is TrainConfig},
                                   eval_every=max(10, min(50, values["steps"] // 12)))
    except ConfigError as error:
        raise BadInput(error.field, error.message) from None
    return RunSpec(model_config, switches, train_config)


TEXT_STEP_BYTES = 2**30  # a text run's logits, their log-softmax and their gradient in one step, at most


def check_text_step_fits(spec: RunSpec, seeds: int) -> None:
    """A text's vocabulary makes every position's logits large (the poems: 2,582 characters): a run whose step would
    need more than TEXT_STEP_BYTES is refused here, not killed by the machine's memory later."""
    task = get_task(spec.task)
    if not task.reads_text:
        return
    per_sequence = 3 * task.max_src_tokens * task.tgt_tokenizer.size * 4
    batch = spec.train.batch_size
    if batch * seeds * per_sequence > TEXT_STEP_BYTES:
        most = max(1, TEXT_STEP_BYTES // (seeds * per_sequence))
        raise BadInput("batch_size", f"{batch} sequences × {seeds} seed(s) of {task.name}, whose "
                                     f"{task.tgt_tokenizer.size - 3:,} characters each position scores, need about "
                                     f"{batch * seeds * per_sequence / 2**30:.1f} GB per step; this server allows "
                                     f"{TEXT_STEP_BYTES / 2**30:.0f} GB: at most {most} sequences per seed")


def seeds_of(form: Mapping[str, Any]) -> tuple[int, ...]:
    """The seeds a lab request trains: `seeds` of them, from `seed` on."""
    first, count = field_value("seed", form.get("seed")), field_value("seeds", form.get("seeds"))
    return tuple(range(first, first + count))


def parse_run_request(form: Mapping[str, Any], settings, check_layers: bool = True) -> tuple[RunSpec, str]:
    """The lab's form (raw text per field) as a typed RunSpec (of the first seed) and the run's label."""
    values = {name: field_value(name, form.get(name)) for name in FIELDS}
    switches = parse_switches({k: str(v) for k, v in form.items() if k in SWITCH_FIELDS}, Switches())
    return build_spec(values, switches, settings, check_layers), str(form.get("label") or "").strip()[:60]


def ab_option_label(option: str, t) -> str:
    """'norm=none' as the page's language says it: 'Normalization: none'."""
    name, value = option.split("=")
    if name == "warmup_steps":
        return f"{t('tr.warmup')} {value}"
    if name == "init":
        return f"{t('tr.init')}: {t('init.' + value)}"
    return f"{t('switch.' + name)}: {t('value.' + value)}"


def parse_ab(form: Mapping[str, Any]) -> tuple[dict, str] | None:
    """The form of run B (A's form with one change) and the change, or None for a single run."""
    change = str(form.get("ab") or "").strip()
    if not change:
        return None
    if change not in AB_OPTIONS:
        raise BadInput("ab", f"{quoted(change)} is not allowed; choose one of {' | '.join(AB_OPTIONS)}")
    name, value = change.split("=")
    if str(form.get(name, "")) == value:
        raise BadInput("ab", f"A already has {change}: B would be the same run")
    return {**form, name: value}, change


def input_limits(settings) -> dict[str, dict[str, str]]:
    """min/max of the page's number inputs, from the same limits the server checks."""
    server_max = {"layers": settings.max_layers, "steps": settings.max_steps}
    return {name: {"min": _number_text(low), "max": _number_text(min(high, server_max.get(name, math.inf)))}
            for name, f in FIELDS.items() if f.limits for low, high in [f.limits]}


def switch_controls_for(switches: Switches) -> list[dict]:
    return switch_controls(switches, switches)
