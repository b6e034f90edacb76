"""One run at a time in an output folder: two runs writing there at once mix their files, and a
run can outlive its own launcher (torchrun's workers go on after a SIGKILL to it)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from ..hrm_core.distributed import DistInfo, from_main
from .atomic import make_folder

try:
    import fcntl
except ImportError:  # not on Windows: runs there go unguarded
    fcntl = None

LOCK = ".hrm-arc.lock"
# What flock gives on filesystems that do not lock (Lustre mounted without -o flock, some NFS).
UNLOCKABLE = {errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK}
log = logging.getLogger(__name__)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, dist: DistInfo) -> Iterator[None]:
    """Hold `folder` (made if missing) for this run while the block runs. The main rank takes an
    exclusive lock on a file there, which the system drops with the process however it ends;
    the file is removed as the block ends, and so are the folders this made that stayed empty
    (a run refused before it wrote).

    Raises:
        ValueError: on every rank, naming the process that holds the folder.
    """
    folder = Path(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    held, refusal = _lock(folder) if dist.is_main else (None, None)
    refusal = from_main(refusal, dist)
    if refusal is not None:
        raise ValueError(refusal)
    try:
        yield
    finally:
        if held is not None:
            Path(held.name).unlink(missing_ok=True)  # still held: no one can take it meanwhile
            held.close()
            with contextlib.suppress(OSError):  # a folder not empty, something came meanwhile
                for path in made:
                    path.rmdir()


def _lock(folder: Path) -> tuple[TextIO | None, str | None]:
    """The open, locked lock file, or why it could not be locked (for every rank to raise)."""
    if fcntl is None:
        return None, None
    try:
        return _take(folder), None
    except BlockingIOError:
        holder = ""
        with contextlib.suppress(OSError):
            holder = (folder / LOCK).read_text().strip()
        return None, (
            f"{folder} is in use by another run ({holder or 'another process'}): let it finish "
            "or stop it, or write elsewhere"
        )
    except OSError as e:
        if e.errno in UNLOCKABLE:
            log.warning("%s: cannot be locked here (%s); runs writing there are unguarded",
                        folder, e.strerror)  # fmt: skip
            return None, None
        return None, f"{e.filename or folder}: {e.strerror or e}"


def _take(folder: Path) -> TextIO:
    make_folder(folder)
    path = folder / LOCK
    while True:
        handle = open(path, "a+")  # not truncated before it is held: it names the holder
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass  # locked a file its holder removed as it let go: take the new one
        except BaseException:
            handle.close()
            raise
        handle.close()
    handle.truncate(0)
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    return handle
