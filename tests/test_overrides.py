"""Dotted-key overrides: typed parsing, clear errors, and new dataclasses as the result."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from hrm_arc.adapt import AdaptConfig
from hrm_arc.hrm_core.trainer import TrainConfig
from hrm_arc.overrides import apply_overrides, parse_value
from hrm_arc.presets import PRESETS


@dataclass
class Toy:
    count: int = 1
    rate: float = 0.5
    flag: bool = False
    name: str = "a"


def configs() -> dict:
    return {"model": PRESETS["tiny"].model, "train": TrainConfig(), "toy": Toy()}


def test_types_are_parsed_from_the_declared_field_types() -> None:
    out = apply_overrides(configs(), [
        "toy.count=12", "toy.rate=3e-4", "toy.flag=true", "toy.name=hello world",
        "model.hidden_size=32", "model.expansion=2", "train.compile=yes", "train.lr=1e-3",
        "model.pos_encodings=learned",
    ])
    toy = out["toy"]
    assert toy == Toy(count=12, rate=3e-4, flag=True, name="hello world")
    assert type(toy.count) is int and type(toy.rate) is float and type(toy.flag) is bool
    assert out["model"].hidden_size == 32 and out["model"].expansion == 2.0
    assert type(out["model"].expansion) is float
    assert out["model"].pos_encodings == "learned"
    assert out["train"].compile is True and out["train"].lr == 1e-3


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("True", True), ("1", True), ("yes", True),
    ("false", False), ("FALSE", False), ("0", False), ("no", False),
])
def test_bool_spellings(text: str, expected: bool) -> None:
    assert parse_value(text, bool, "toy.flag") is expected


def test_float_field_accepts_an_integer_and_int_field_refuses_a_float() -> None:
    assert parse_value("3", float, "k") == 3.0
    with pytest.raises(ValueError, match=r"toy\.count: expected int, got '1\.5'"):
        apply_overrides(configs(), ["toy.count=1.5"])


@pytest.mark.parametrize("item, message", [
    ("toy.count=many", r"toy\.count: expected int, got 'many'"),
    ("toy.rate=fast", r"toy\.rate: expected float, got 'fast'"),
    ("toy.flag=maybe", r"toy\.flag: expected true or false, got 'maybe'"),
    ("toy.flag=", r"toy\.flag: expected true or false, got ''"),
    ("toy.count=", r"toy\.count: expected int, got ''"),
])
def test_bad_values_name_the_key_and_the_value(item: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apply_overrides(configs(), [item])


def test_unknown_section_lists_the_sections() -> None:
    with pytest.raises(ValueError, match=r"unknown section 'trian'; "
                                         r"choose from \['model', 'toy', 'train'\]"):
        apply_overrides(configs(), ["trian.lr=1"])


def test_unknown_field_lists_the_fields() -> None:
    with pytest.raises(ValueError, match="toy has no field 'colour'") as info:
        apply_overrides(configs(), ["toy.colour=3"])
    assert "fields are count, rate, flag, name" in str(info.value)
    with pytest.raises(ValueError, match="train has no field 'learning_rate'") as info:
        apply_overrides(configs(), ["train.learning_rate=1e-3"])
    assert all(f.name in str(info.value) for f in dataclasses.fields(TrainConfig))


@pytest.mark.parametrize("item", ["toy.count", "count=3", "toy=3", "=3", ""])
def test_malformed_items_are_refused(item: str) -> None:
    with pytest.raises(ValueError, match="must look like section.field=value"):
        apply_overrides(configs(), [item])


def test_result_is_new_dataclasses_and_inputs_are_untouched() -> None:
    original = configs()
    snapshot = {k: dataclasses.replace(v) for k, v in original.items()}
    out = apply_overrides(original, ["toy.count=5"])
    assert set(out) == set(original)
    for name in original:
        assert out[name] is not original[name]  # even sections without changes
        assert original[name] == snapshot[name]
    assert out["toy"].count == 5 and original["toy"].count == 1
    assert out["train"] == original["train"] and out["model"] == original["model"]
    assert apply_overrides(original, []) == original


def test_later_items_win_and_whitespace_is_ignored() -> None:
    out = apply_overrides(configs(), ["toy.count=2", " toy.count = 3 "])
    assert out["toy"].count == 3


def test_values_are_validated_by_the_config() -> None:
    with pytest.raises(ValueError, match=r"TrainConfig\.steps must be >= 1, got 0"):
        apply_overrides(configs(), ["train.steps=0"])
    with pytest.raises(ValueError, match="hidden_size=33 must be divisible by num_heads=4"):
        apply_overrides(configs(), ["model.hidden_size=33"])
    with pytest.raises(ValueError, match="AdaptConfig.strategy must be one of"):
        apply_overrides({"adapt": AdaptConfig()}, ["adapt.strategy=everything"])
