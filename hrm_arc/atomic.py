"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def make_folder(folder: str | os.PathLike) -> None:
    """Create `folder` and its parents; one of them that is a file is named as such (mkdir says
    only "File exists")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        blocker = next((p for p in (folder, *folder.parents) if p.is_file()), None)
        if blocker is None:
            raise
        raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(blocker)) from e


def _is_stream(path: str | os.PathLike) -> bool:
    try:
        mode = os.stat(path).st_mode  # through links, as /dev/stdout is one
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path`.

    A link is written through to its target, not replaced by a file. A device or a pipe (say
    /dev/stdout) is written directly: no rename can replace one, and it holds nothing to lose.
    """
    if _is_stream(path):
        with open(path, "wb") as f:
            write(f)
        return
    path = Path(os.path.realpath(path))
    make_folder(path.parent)
    try:
        # Same directory as the target, so os.replace is a rename within one filesystem.
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:  # it names a temporary file the user never asked for
        raise OSError(e.errno, e.strerror, str(path)) from e
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from the group
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.filename == tmp:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
