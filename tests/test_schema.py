"""Every switch and training setting is declared once (model/config.py); validation, the command line, the
API's docs and the lab's form read that declaration."""

from dataclasses import fields

import pytest

from app.lab.form import FIELDS
from app.playground.api import TraceQuery
from model.config import ConfigError, ModelConfig, Switches, TrainConfig, choices_of, help_of
from model.train.cli import build_parser


@pytest.mark.parametrize("cls", [ModelConfig, Switches, TrainConfig])
def test_every_field_is_declared_with_help(cls):
    for f in fields(cls):
        assert help_of(cls, f.name), f"{cls.__name__}.{f.name} has no help text"


def test_declared_limits_are_what_validation_enforces():
    for f in fields(TrainConfig):
        limits = f.metadata.get("limits")
        if limits and not (limits[2] or limits[3]) and f.type == "int":
            low, high = limits[:2]
            with pytest.raises(ConfigError, match=f.name):
                TrainConfig(**{f.name: high + 1})
            TrainConfig(**{f.name: high})
    with pytest.raises(ConfigError, match=r"lr: 0 is outside \(0, 1\]"):
        TrainConfig(lr=0)


def test_the_labs_limits_lie_inside_the_declared_ones():
    for name, lab_field in FIELDS.items():
        if lab_field.declared_in is None:  # the lab's own field (how many seeds), not a setting of a run
            continue
        declared = next(f for f in fields(lab_field.declared_in) if f.name == lab_field.name).metadata["limits"]
        if lab_field.limits:
            low, high = lab_field.limits
            assert declared[0] <= low <= high <= declared[1], name
        else:
            assert declared is None and lab_field.choices, name


def test_the_command_line_has_a_flag_for_every_switch_with_its_choices():
    actions = {a.dest: a for a in build_parser()._actions}
    for f in fields(Switches):
        assert f.name in actions, f.name
        if choices_of(Switches, f.name):
            assert tuple(actions[f.name].choices) == choices_of(Switches, f.name)
    assert tuple(actions["init"].choices) == choices_of(TrainConfig, "init") == ("default", "xavier", "small")


def test_the_trace_api_documents_every_switch_from_its_declaration():
    documented = TraceQuery.model_fields
    for f in fields(Switches):
        description = documented[f.name].description
        assert help_of(Switches, f.name) in description
        for choice in choices_of(Switches, f.name):
            assert choice in description
