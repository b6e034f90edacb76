"""JSON files: atomic writes (so a crash never leaves half a file) and reads with clear errors."""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import orjson

from ..errors import DatasetError
from .atomic import write_atomic, write_named


def write_json_atomic(
    path: str | os.PathLike, obj: object, indent: bool = False, named: bool = False
) -> None:
    """Write `obj` as JSON to `path`, replacing it atomically; parent directories are created.

    numpy arrays and scalars are serialised as lists and numbers. The data goes to a temporary
    file in the same directory, is flushed to disk, then renamed over `path`: readers see the
    old file or the new one, never a partial write. A path the user `named` is written as a
    shell redirection would (`write_named`: /dev/stdout, pipes, through links).
    """
    option = orjson.OPT_SERIALIZE_NUMPY | (orjson.OPT_INDENT_2 if indent else 0)
    data = orjson.dumps(obj, option=option)
    (write_named if named else write_atomic)(path, lambda f: f.write(data))


# Editors on Windows may save one; JSON parsers are allowed to ignore it.
UTF8_BOM = b"\xef\xbb\xbf"
# What Windows PowerShell 5's `>` writes, for one.
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_json(path: str | os.PathLike, what: str, unique_keys: bool = True) -> object:
    """Parse the JSON file at `path`; `what` names it in errors (e.g. "submission").
    `unique_keys`: refuse a key given twice in one object (a second parse; files this package
    wrote itself, which may be large, can skip it).

    Raises:
        DatasetError: the file is missing or unreadable, is not valid JSON, or (if
            `unique_keys`) holds a key twice in one object.
    """
    try:
        data = Path(path).read_bytes()
        if data.startswith(UTF16_BOMS):
            raise DatasetError(f"{path}: {what} is UTF-16 text; save it as UTF-8")
        data = data.removeprefix(UTF8_BOM)
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        if "not valid UTF-8" in str(e):
            raise DatasetError(f"{path}: {what} is not UTF-8 text; save it as UTF-8") from None
        raise DatasetError(f"{path}: {what} is not valid JSON ({e})") from None
    except OSError as e:
        raise DatasetError(f"{path}: cannot read {what} ({e.strerror})") from None
    if unique_keys:
        try:
            json.loads(data, object_pairs_hook=functools.partial(_unique_keys, path, what))
        except RecursionError:  # what orjson reads, the standard parser may not
            raise DatasetError(f"{path}: {what} nests too deep to be read") from None
    return parsed


def _unique_keys(path: str | os.PathLike, what: str, pairs: list[tuple[str, object]]) -> None:
    """Refuse an object holding a key twice, which parsers read as its last value alone: two
    tasks of one id in a challenges file, or two answers to one task in a submission."""
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise DatasetError(f"{path}: {what} holds {key!r} twice; JSON keeps only the last")
        seen.add(key)
