"""Atomic file writes: a crash leaves the old file or the new one, never half of either."""

from __future__ import annotations

import errno
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable
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


def remove_cut_writes_in(folder: str | os.PathLike, names: Iterable[str]) -> None:
    """Delete the temporary files that writes to the files `names` in `folder` left when a hard
    kill cut them short (gigabytes for a large checkpoint); only while no other process may be
    writing there (a folder that a run holds locked). Other files, hidden or ending in .tmp, are
    left alone. A file the user names (`write_named`) gets no such clean-up: no lock keeps
    other processes from writing beside it.
    """
    folder = Path(folder)
    affixes = [_temporary_affixes(folder / name) for name in names]
    if not affixes or not folder.is_dir():
        return
    with os.scandir(folder) as entries:
        files = [e for e in entries if e.is_file(follow_symlinks=False)]
    cut = [e.path for e in files if any(_is_temporary(e.name, *pair) for pair in affixes)]
    for tmp in cut:
        Path(tmp).unlink(missing_ok=True)


def _is_temporary(name: str, prefix: str, suffix: str) -> bool:
    """Whether `name` is a temporary file named by `prefix` and `suffix` (`_temporary_affixes`):
    mkstemp's random part between them holds no dot, so that the temporary of NAME.bak,
    `.NAME.bak.<random>.tmp`, is not taken for one of NAME's."""
    middle = name[len(prefix) : len(name) - len(suffix)]
    return (
        len(name) > len(prefix) + len(suffix)
        and name.startswith(prefix)
        and name.endswith(suffix)
        and "." not in middle
    )


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
