"""The training lab's form: defaults, limits, and parsing into a RunSpec with clear 4xx errors."""

from __future__ import annotations

from app.lab.store import RunSpec
from app.playground.state import parse_switches
from app.web.errors import BadInput
from model.config import ConfigError, Switches, TrainConfig, choices_of
from model.tasks import TASKS, get_task
from model.train import model_config_for

# Defaults that train to 99% in well under a minute here (see model/zoo/build.py).
DEFAULTS = {"task": "reverse", "layers": 2, "d_model": 64, "n_heads": 4, "d_ff": 128, "steps": 600,
            "lr": 0.001, "warmup_steps": 0, "seed": 0, "batch_size": 64, "eval_every": 50, "init": "default",
            "switches": Switches(norm_position="pre")}
INIT_SCHEMES = choices_of(TrainConfig, "init")
# A classroom server's policy, inside the limits each field declares in model/config.py (a test checks that):
# the form refuses sizes that would be slow or large here; the configs refuse what is not valid at all.
LIMITS = {"layers": (1, 12), "d_model": (8, 256), "n_heads": (1, 16), "d_ff": (8, 1024), "steps": (10, 5000),
          "warmup_steps": (0, 5000), "seed": (0, 1_000_000), "batch_size": (4, 256)}


def _int(form: dict, name: str) -> int:
    raw = str(form.get(name, DEFAULTS[name])).strip()
    low, high = LIMITS[name]
    try:
        value = int(raw)
    except ValueError:
        raise BadInput(name, f"{raw!r} is not a whole number") from None
    if not low <= value <= high:
        raise BadInput(name, f"{value} is outside {low}..{high}")
    return value


def _lr(form: dict) -> float:
    raw = str(form.get("lr", DEFAULTS["lr"])).strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadInput("lr", f"{raw!r} is not a number") from None
    if not 1e-6 <= value <= 0.1:
        raise BadInput("lr", f"{value} is outside 0.000001..0.1")
    return value


def _stop_at(form: dict) -> float:
    raw = str(form.get("stop_at", 0)).strip()
    try:
        value = float(raw)
    except ValueError:
        raise BadInput("stop_at", f"{raw!r} is not a number") from None
    if not 0 <= value <= 1:
        raise BadInput("stop_at", f"{value} is outside 0..1 (0 = train every step)")
    return value


def _init(form: dict) -> str:
    value = str(form.get("init", DEFAULTS["init"])).strip()
    if value not in INIT_SCHEMES:
        raise BadInput("init", f"{value!r} is not allowed; choose one of {' | '.join(INIT_SCHEMES)}")
    return value


def parse_run_request(form: dict, settings) -> tuple[RunSpec, str]:
    task_name = form.get("task", DEFAULTS["task"])
    if task_name not in TASKS:
        raise BadInput("task", f"unknown task {task_name!r}; choose one of {' | '.join(TASKS)}")
    task = get_task(task_name)
    layers, d_model, heads = _int(form, "layers"), _int(form, "d_model"), _int(form, "n_heads")
    if layers > settings.max_layers:
        raise BadInput("layers", f"{layers} is more than this server allows ({settings.max_layers})")
    if d_model % heads:
        raise BadInput("n_heads", f"d_model {d_model} is not divisible by {heads} heads")
    steps = _int(form, "steps")
    if steps > settings.max_steps:
        raise BadInput("steps", f"{steps} is more than this server allows ({settings.max_steps})")
    switches = parse_switches(form, Switches())
    try:
        model_config = model_config_for(task, d_model=d_model, n_heads=heads, d_ff=_int(form, "d_ff"),
                                        n_encoder_layers=layers, n_decoder_layers=layers)
        train_config = TrainConfig(task=task_name, steps=steps, batch_size=_int(form, "batch_size"), lr=_lr(form),
                                   warmup_steps=_int(form, "warmup_steps"), seed=_int(form, "seed"),
                                   eval_every=max(10, min(50, steps // 12)), init=_init(form),
                                   stop_at=_stop_at(form))
    except ConfigError as error:
        raise BadInput(error.field, str(error).split(": ", 1)[1]) from None
    spec = RunSpec(task_name, model_config.to_dict(), switches.to_dict(), train_config.to_dict())
    label = str(form.get("label", "")).strip()[:60]
    return spec, label


# B differs from A in exactly one setting, so the comparison says what that setting does.
AB_OPTIONS = ("residual=off", "norm=none", "norm=batch", "norm=rms", "norm_position=post", "norm_position=pre",
              "pos_encoding=none", "pos_encoding=learned", "pos_every_layer=on", "causal_mask=off",
              "memory=same_depth", "warmup_steps=200", "init=xavier", "init=small")


def ab_option_label(option: str, t) -> str:
    """'norm=none' as the page's language says it: 'Normalization: none'."""
    name, value = option.split("=")
    if name == "warmup_steps":
        return f"{t('tr.warmup')} {value}"
    if name == "init":
        return f"{t('tr.init')}: {t('init.' + value)}"
    return f"{t('switch.' + name)}: {t('value.' + value)}"


def parse_ab(form: dict) -> tuple[dict, str] | None:
    """The form of run B (A's form with one change) and the change, or None for a single run."""
    change = str(form.get("ab", "")).strip()
    if not change:
        return None
    if change not in AB_OPTIONS:
        raise BadInput("ab", f"{change!r} is not allowed; choose one of {' | '.join(AB_OPTIONS)}")
    name, value = change.split("=")
    if str(form.get(name, "")) == value:
        raise BadInput("ab", f"A already has {change}: B would be the same run")
    return {**form, name: value}, change


def switch_controls_for(switches: Switches) -> list[dict]:
    from app.playground.view import switch_controls

    return switch_controls(switches, switches)
