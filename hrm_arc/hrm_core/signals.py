"""Signal handlers installed for the span of a `with` block."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def signal_handlers(handler: Callable, *signums: int) -> Iterator[None]:
    """While inside, `handler` handles `signums`; the previous handlers come back after.

    Signals reach the main thread only, so elsewhere (a thread, as in some test runners)
    nothing is installed and the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in signums}
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


@contextlib.contextmanager
def held_signals(*signums: int) -> Iterator[None]:
    """While inside, `signums` wait; after, each one that came is raised again for the handlers
    outside to act on. A write that must not be cut short (a checkpoint: torch.save turns an
    interrupt inside it into a RuntimeError) finishes first."""
    held: list[int] = []
    try:
        with signal_handlers(lambda signum, frame: held.append(signum), *signums):
            yield
    finally:  # a failed write must not swallow a stop request either
        for signum in dict.fromkeys(held):  # each once, in order of arrival
            signal.raise_signal(signum)
