"""Output paths that never replace, mix into or delete what a command reads."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


class UnsafeOutput(ValueError):
    """An output path that cannot or must not be written."""


def check_output(
    out: str | os.PathLike,
    inputs: Sequence[str | os.PathLike] = (),
    datasets: Sequence[str | os.PathLike] = (),
    emptied: str | None = None,
    written: Sequence[str] = (),
) -> None:
    """Refuse an output path that cannot be written (under a file), or where writing would
    replace, mix into or delete what the command reads: one of its `inputs` or `datasets`, a
    path inside a dataset folder (read back as a task next time), a dataset file named as one
    of the files `written` into an output folder, or an output folder whose `emptied`
    subfolder (which a restart clears) holds a dataset."""
    target = Path(out).resolve()
    blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # found now, not after the model is loaded or data built
        raise UnsafeOutput(f"{blocker} is a file, not a folder")
    for source in [*inputs, *datasets]:
        if target == Path(source).resolve():
            raise UnsafeOutput(f"{out} is the input this reads; write elsewhere")
    for source in datasets:
        path = Path(source).resolve()
        if path in target.parents:
            raise UnsafeOutput(
                f"{out} is inside {source}, a dataset this reads: what is written there would "
                "be read as tasks; write elsewhere"
            )
        if clash := next((n for n in written if (target / n).resolve() == path), None):
            raise UnsafeOutput(
                f"the dataset {source} is where this writes its {clash}; write elsewhere"
            )
        if emptied is not None and (target / emptied).resolve() in (path, *path.parents):
            raise UnsafeOutput(
                f"the dataset {source} lies in {out}/{emptied}/, where this writes (and "
                "--restart deletes) its task files; write elsewhere"
            )
