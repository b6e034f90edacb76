"""Resident memory of this process on CPU, for benchmarks that report peak memory.

torch's CPU allocator is invisible to tracemalloc, and ``ru_maxrss`` survives execve (a child
would report its parent's peak), so peaks come from the kernel's VmHWM, which can be reset.
"""

from __future__ import annotations

import resource
from pathlib import Path


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_kib(reset_peak: bool) -> int:
    """Current RSS; with reset_peak, also restart the kernel's peak-RSS (VmHWM) counter."""
    if reset_peak:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # 5: reset VmHWM to current RSS
        except OSError:
            pass
    rss = _status_kib("VmRSS")
    return rss if rss is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kib() -> int:
    hwm = _status_kib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
