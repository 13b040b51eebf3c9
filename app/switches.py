"""The switches as requests give them and pages show them: on/off and named values parsed into Switches (a
BadInput naming the switch otherwise), each switch's documentation from its declaration in model/config.py,
and the controls that draw them. The playground, the lab and the lessons all read switches through here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from app.web.errors import BadInput, quoted
from model.config import ConfigError, Switches, choices_of, help_of, type_of

ON_OFF = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}
SWITCH_FIELDS = [f.name for f in fields(Switches)]


def switch_doc(name: str) -> str:
    """A switch's help and allowed values, from its declaration in model/config.py (for API docs)."""
    allowed = choices_of(Switches, name) or (("on", "off") if type_of(Switches, name) is bool else ())
    return help_of(Switches, name) + (f": {' | '.join(allowed)}" if allowed else "")


def _switch_value(name: str, raw: str):
    if type_of(Switches, name) is bool:
        if raw.lower() not in ON_OFF:
            raise BadInput(name, f"{quoted(raw)} is not allowed; use on or off")
        return ON_OFF[raw.lower()]
    return raw


def parse_switches(params: Mapping[str, str], base: Switches) -> Switches:
    """`base` with the switches the parameters name (URL values: on/off, a choice, a comma-separated list)."""
    return apply_switches(base, {name: _switch_value(name, params[name]) for name in SWITCH_FIELDS if name in params})


def apply_switches(base: Switches, changes: Mapping[str, Any]) -> Switches:
    """`base` with typed switch values (Switches' own field names and types); BadInput names a wrong one."""
    try:
        return base.replace(**changes)
    except ConfigError as error:
        raise BadInput(error.field, error.message) from error


def choices(name: str) -> tuple[str, ...]:
    """The allowed values of a Literal switch, for building selects."""
    return choices_of(Switches, name)


# Switches that mean nothing in a family, and why (a label key): the page keeps them, says so and greys them out.
NOT_IN_FAMILY = {
    "decoder_only": {"residual_cross_attn": "pg.na.no_cross_attn", "memory": "pg.na.no_cross_attn"},
    "encoder_only": {"residual_cross_attn": "pg.na.no_decoder", "memory": "pg.na.no_decoder",
                     "causal_mask": "pg.na.bidirectional"},
}


def family_notes() -> dict[str, dict[str, str]]:
    """Per switch: the families it does nothing in, each with the label key saying why (the lab's form, whose
    family can change while it is filled in)."""
    notes: dict[str, dict[str, str]] = {name: {} for name in Switches().values()}
    for arch, missing in NOT_IN_FAMILY.items():
        for name, key in missing.items():
            notes[name][arch] = key
    return notes


def switch_controls(switches: Switches, trained: Switches, arch: str = "encoder_decoder") -> list[dict]:
    """One control per switch: kind (toggle / select), value, choices, whether it differs from training, and
    (`not_applicable`, a label key) why it does nothing in this model's family."""
    controls = []
    for name, value in switches.values().items():
        if name == "residual_off" or (not isinstance(value, bool) and len(choices(name)) < 2):
            continue  # residual_off has its own field; a registry with one entry offers no choice
        trained_value = getattr(trained, name)
        # The per-sublayer residual switches do nothing while the master switch is off.
        overridden = name.startswith("residual_") and not switches.residual
        entry = {"name": name, "changed": value != trained_value, "overridden": overridden,
                 "not_applicable": NOT_IN_FAMILY.get(arch, {}).get(name)}
        if isinstance(value, bool):
            entry.update(kind="toggle", value="on" if value else "off", choices=("on", "off"),
                         trained="on" if trained_value else "off")
        else:
            entry.update(kind="select", value=value, choices=choices(name), trained=trained_value)
        controls.append(entry)
    return controls
