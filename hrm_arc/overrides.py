"""Dotted-key overrides of config dataclasses: `model.hidden_size=256`, `train.lr=3e-4`.

Plain parsing against each field's declared type: an unknown key or a value of the wrong type
is an error naming the key and the choices, never a silent no-op.
"""

from __future__ import annotations

import dataclasses
import typing


def parse_value(text: str, kind: type, key: str):
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


def apply_overrides(configs: dict[str, object], items: list[str]) -> dict[str, object]:
    """Copies of `configs` (section name -> dataclass) with every `section.field=value` set."""
    changes: dict[str, dict] = {name: {} for name in configs}
    for item in items:
        key, sep, text = item.partition("=")
        section, dot, field = key.strip().partition(".")
        if not sep or not dot:
            raise ValueError(f"override {item!r} must look like section.field=value")
        if section not in configs:
            raise ValueError(
                f"override {item!r}: unknown section {section!r}; choose from {sorted(configs)}"
            )
        hints = typing.get_type_hints(type(configs[section]))
        names = [f.name for f in dataclasses.fields(configs[section])]
        if field not in names:
            raise ValueError(
                f"override {item!r}: {section} has no field {field!r}; "
                f"fields are {', '.join(names)}"
            )
        changes[section][field] = parse_value(text.strip(), hints[field], key)
    return {name: dataclasses.replace(cfg, **changes[name]) for name, cfg in configs.items()}
