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
