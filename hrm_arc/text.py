"""Wording shared by messages: counts that agree with their nouns, values quoted briefly."""

from __future__ import annotations

import reprlib
from collections.abc import Sized

# A hostile file's value can nest thousands deep (repr would recurse out) or run to megabytes.
_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 3, 30, 30, 30


# C0 and C1 control characters but the newline, shown as escapes.
_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0)) if c != 0x0A}


def printable(text: str) -> str:
    """`text` with control characters (not newlines) written as escapes: a file name or id
    quoted in a message must not drive the terminal."""
    return text.translate(_CONTROL)


def count(items: Sized | int, noun: str, plural: str | None = None) -> str:
    """'1 task', '3 tasks', '2 test entries' (of a collection or a number)."""
    n = len(items) if isinstance(items, Sized) else int(items)
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def brief(value: object) -> str:
    """A value as a message quotes it: repr, cut to about 40 characters."""
    text = _SHORT.repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def changed_fields(before: dict, now: dict, prefix: str = "") -> list[str]:
    """`prefix.field: old -> new` for each field of `now` that differs from `before`."""
    return [
        f"{prefix}{k}: {before.get(k)!r} -> {v!r}" for k, v in now.items() if before.get(k) != v
    ]


def listed(ids: list[str], most: int = 10) -> str:
    """The first `most` ids, comma-separated, '...' after them if there are more."""
    return ", ".join(ids[:most]) + (" ..." if len(ids) > most else "")
