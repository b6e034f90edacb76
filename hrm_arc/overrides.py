"""Dotted-key overrides of config dataclasses: `model.hidden_size=256`, `train.lr=3e-4`.

Plain parsing against each field's declared type: an unknown key or a value of the wrong type
is an error naming the key and the choices, never a silent no-op.
"""

from __future__ import annotations

import dataclasses
import types
import typing


def parse_value(text: str, kind: object, key: str):
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # an optional field
        if text.lower() == "none":
            return None
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError(f"{key}: expected true or false, got {text!r}")
    try:
        return float(text) if kind is float else kind(text)
    except ValueError:
        raise ValueError(f"{key}: expected {kind.__name__}, got {text!r}") from None


def _field_type(configs: dict[str, object], key: str, item: str) -> object:
    """The declared type of `section.field`, refusing an unknown section or field."""
    section, dot, field = key.partition(".")
    if section not in configs:
        raise ValueError(
            f"override {item!r}: unknown section {section!r}; choose from {sorted(configs)}"
        )
    names = [f.name for f in dataclasses.fields(configs[section])]
    if field not in names:
        raise ValueError(
            f"override {item!r}: {section} has no field {field!r}; fields are {', '.join(names)}"
        )
    return typing.get_type_hints(type(configs[section]))[field]


def set_values(configs: dict[str, object], values: dict[str, object]) -> dict[str, object]:
    """Copies of `configs` (section name -> dataclass) with each typed `section.field` value."""
    changes: dict[str, dict] = {name: {} for name in configs}
    for key, value in values.items():
        _field_type(configs, key, key)
        section, _, field = key.partition(".")
        changes[section][field] = value
    return {name: dataclasses.replace(cfg, **changes[name]) for name, cfg in configs.items()}


def apply_overrides(configs: dict[str, object], items: list[str]) -> dict[str, object]:
    """Copies of `configs` (section name -> dataclass) with every `section.field=value` set."""
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        section, dot, field = key.partition(".")
        if not sep or not dot or not section or not field:
            raise ValueError(f"override {item!r} must look like section.field=value")
        values[key] = parse_value(text.strip(), _field_type(configs, key, item), key)
    return set_values(configs, values)
