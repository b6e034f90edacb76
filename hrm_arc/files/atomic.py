"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import glob
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def make_folder(folder: str | os.PathLike) -> None:
    """Create `folder` and its parents; one of them that is a file, or a link to nothing, is
    named as such (mkdir says only "File exists")."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as e:
        chain = (folder, *folder.parents)
        if blocker := next((p for p in chain if p.is_symlink() and not p.exists()), None):
            why = f"a link to {os.readlink(blocker)}, which does not exist"
            raise FileNotFoundError(errno.ENOENT, why, str(blocker)) from e
        if blocker := next((p for p in chain if p.is_file()), None):
            raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(blocker)) from e
        raise


# /dev/stdout, /dev/fd/1 and /proc/self/fd/1 name this process's open descriptor 1.
_DESCRIPTOR = re.compile(r"/(?:dev|proc/(self|\d+))/fd/(\d+)")
_STDIO = {"/dev/stdout": 1, "/dev/stderr": 2}


def _descriptor(path: str | os.PathLike) -> int | None:
    """The open descriptor of this process that `path` names, through any links, or None."""
    path = os.path.abspath(path)
    for _ in range(40):  # the kernel's own limit on links followed
        if path in _STDIO:
            return _STDIO[path]
        if match := _DESCRIPTOR.fullmatch(path):
            owner = match.group(1)
            return int(match.group(2)) if owner in (None, "self", str(os.getpid())) else None
        if not os.path.islink(path):
            return None
        path = os.path.normpath(os.path.join(os.path.dirname(path), os.readlink(path)))
    return None


def _is_stream(path: str | os.PathLike) -> bool:
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def write_named(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Write a file the user named (`--json`, `-o`) as a shell redirection would: into the
    descriptor /dev/stdout names (where it goes, appended or not: reopening would truncate a
    file it points to), straight into a device or pipe, through a link to its target;
    otherwise atomically (`write_atomic`)."""
    fd = _descriptor(path)
    if fd is not None:
        sys.stdout.flush()  # what was printed before stays before
        sys.stderr.flush()
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
    elif _is_stream(path):
        with open(path, "wb") as f:
            write(f)
    else:
        write_atomic(os.path.realpath(path), write)


def remove_cut_writes(path: str | os.PathLike) -> None:
    """Delete what writes to `path` that a hard kill cut short left behind (their temporary
    files, gigabytes for a large checkpoint); only while no other process may be writing it."""
    path = Path(path)
    prefix, suffix = _temporary_affixes(path)
    for tmp in path.parent.glob(f"{glob.escape(prefix)}*{suffix}"):
        tmp.unlink(missing_ok=True)


def _temporary_affixes(path: Path) -> tuple[str, str]:
    """How `write_atomic` names its temporary file beside `path`: hidden, marked as temporary."""
    return f".{path.name}.", ".tmp"


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Call `write(file)` on a temporary file beside `path`, then rename it over `path` (a link
    there is replaced: files in a run's folder are that run's own)."""
    path = Path(path)
    make_folder(path.parent)
    try:
        # Same directory as the target, so os.replace is a rename within one filesystem.
        prefix, suffix = _temporary_affixes(path)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
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
        # torch.save reports a full disk as a RuntimeError raised while handling the OSError.
        cause = (e.__cause__ or e.__context__) if isinstance(e, RuntimeError) else e
        if isinstance(cause, OSError) and cause.filename in (tmp, None):
            raise OSError(cause.errno, cause.strerror, str(path)) from e
        raise
