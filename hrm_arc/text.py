"""Wording shared by messages: counts that agree with their nouns."""

from __future__ import annotations

from collections.abc import Sized


def count(items: Sized | int, noun: str, plural: str | None = None) -> str:
    """'1 task', '3 tasks', '2 test entries' (of a collection or a number)."""
    n = len(items) if isinstance(items, Sized) else int(items)
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
