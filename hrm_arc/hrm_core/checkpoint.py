"""Checkpoints that need nothing else to load, read with clear errors (the caller writes them
atomically: see `hrm_arc.run_dir`)."""

from __future__ import annotations

import dataclasses
import os
import pickle
import re
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

FORMAT = "hrm-arc-checkpoint"
REQUIRED_KEYS = ("format", "model_config", "train_config", "model", "step")
COMPILE_PREFIX = "_orig_mod."  # torch.compile wraps the module and prefixes every key


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt or does not fit what loads it."""


def write_checkpoint(file: BinaryIO, state: dict) -> None:
    """Write `state` into an open file, marked as a checkpoint `load_checkpoint` reads."""
    torch.save({"format": FORMAT, **state}, file)


# What a checkpoint holds besides tensors and plain data: numpy arrays (the batch order's state).
_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array reconstructor
NUMPY_GLOBALS = [
    # Under the names numpy 1 and numpy 2 pickle it by, so a checkpoint written under either
    # loads under the other.
    (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    (_RECONSTRUCT, "numpy._core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    *{type(np.dtype(code)) for code in "?" + np.typecodes["AllInteger"] + np.typecodes["AllFloat"]},
]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint from `write_checkpoint`; raise CheckpointError naming what is wrong."""
    state = load_checkpoint_file(path, map_location)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an hrm-arc checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    state["model"] = strip_compile_prefix(state["model"])
    return state


def load_checkpoint_file(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", mmap: bool = False
) -> object:
    """What `torch.save` wrote at `path` (memory-mapped with `mmap`: tensors are read as they
    are used); raise CheckpointError naming what is wrong.

    Only tensors, numpy arrays and plain data are unpickled: a checkpoint from elsewhere cannot
    run code as it loads."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint file here")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: cannot read checkpoint (the file is empty)")
    try:
        with torch.serialization.safe_globals(NUMPY_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        found = re.search(r"(Unsupported global: [^\n]+|Can only build [^\n]+)", str(e))
        if found is None:  # a damaged file, not a forbidden object: torch's advice to load
            why = "damaged, or another kind of file"  # it unsafely does not apply
            raise CheckpointError(f"{path}: cannot read checkpoint ({why})") from None
        raise CheckpointError(
            f"{path}: holds objects other than tensors, numpy arrays and plain data "
            f"({found.group(1).strip()}), which hrm-arc does not unpickle: loading them "
            "could run code"
        ) from None
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(f"{path}: cannot read checkpoint ({type(e).__name__}: {e})") from None


def strict_config(config_class: type, fields: object, where: str | os.PathLike) -> object:
    """`config_class(**fields)`, refusing fields missing or unknown: a damaged or foreign
    config must not fall back to defaults."""
    names = {f.name for f in dataclasses.fields(config_class)}
    if not isinstance(fields, dict) or set(fields) != names:
        got = set(fields) if isinstance(fields, dict) else set()
        gone, extra = sorted(names - got), sorted(got - names)
        raise CheckpointError(
            f"{where}: not a {config_class.__name__} (missing {gone}, unknown {extra})"
        )
    try:
        return config_class(**fields)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def strip_compile_prefix(model_state: dict) -> dict:
    return {k.removeprefix(COMPILE_PREFIX): v for k, v in model_state.items()}


def load_model_state(model: torch.nn.Module, model_state: dict, path: str | os.PathLike) -> None:
    """Load weights strictly, turning a shape or key mismatch into a CheckpointError."""
    try:
        model.load_state_dict(strip_compile_prefix(model_state), strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: checkpoint does not fit this model ({e})") from None
