"""The errors the library raises on what a user gave it, in a module of its own so all can."""

from __future__ import annotations


class DatasetError(ValueError):
    """Bad input data; the message names the file, task and pair."""


class OutOfMemory(RuntimeError):
    """A device ran out of memory; `advice` says which setting to lower."""

    def __init__(self, message: str, advice: str) -> None:
        super().__init__(message)
        self.advice = advice

    @classmethod
    def advising(cls, error: Exception, advice: str) -> OutOfMemory:
        """The device's error (its first line) with `advice`."""
        return cls(str(error).splitlines()[0] if str(error) else "out of memory", advice)
