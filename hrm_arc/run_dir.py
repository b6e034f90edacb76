"""What a pretraining run directory holds, and the run a later stage loads from it.

`checkpoint.pt` holds everything a later stage needs (weights, embedding table, optimiser and
RNG states, configs, canvas and the identifier map); `config.json` is the resolved
configuration, for people; `metrics.jsonl` one logged record a line.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .data.augment import Augmentation
from .data.dataset import View
from .errors import DatasetError
from .files.atomic import make_folder, write_atomic
from .files.jsonio import read_json
from .hrm_core.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    write_checkpoint,
)
from .hrm_core.losses import LOSSES
from .hrm_core.model import HRM, HRMConfig
from .hrm_core.signals import held_signals
from .hrm_core.trainer import TrainConfig

CHECKPOINT, CONFIG, METRICS = "checkpoint.pt", "config.json", "metrics.jsonl"
RUN_FILES = (CHECKPOINT, CONFIG, METRICS)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state`, stamped with the package version, so that a crash leaves the old
    checkpoint or the new one, never half of either; Ctrl-C or SIGTERM during the write takes
    effect once it is done."""
    stamped = {"version": __version__, **state}
    with held_signals(signal.SIGINT, signal.SIGTERM):
        write_atomic(path, lambda f: write_checkpoint(f, stamped))


class RunDirectory:
    """A run directory as the trainer's store: an atomic checkpoint, an appended metrics log."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def save(self, state: dict) -> None:
        save_checkpoint(self.path / CHECKPOINT, state)

    def log(self, record: dict) -> None:
        make_folder(self.path)
        # null, not NaN (not JSON), for averages over no finished example
        record = {k: None if v != v else v for k, v in record.items()}
        with open(self.path / METRICS, "a") as f:
            f.write(json.dumps(record) + "\n")

    def trim_log(self, step: int) -> None:
        path = self.path / METRICS
        if not path.exists():
            return
        kept = []
        for line in path.read_text(errors="replace").splitlines():
            try:
                if json.loads(line)["step"] <= step:
                    kept.append(line + "\n")
            except (ValueError, KeyError, TypeError):
                pass  # a line cut short by a crash
        write_atomic(path, lambda f: f.write("".join(kept).encode()))


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` holds a checkpoint to resume or adapt from."""
    return (Path(run_dir) / CHECKPOINT).exists()


def refuse_foreign_logs(run_dir: Path) -> None:
    """Refuse to start a run in a folder whose config.json or metrics.jsonl no run of ours
    wrote: the run would replace the one and cut the other down to its own steps. (Ours, from a
    run stopped before its first checkpoint, start over.)"""
    logs = [n for n in (CONFIG, METRICS) if (run_dir / n).exists()]
    if not logs:
        return
    try:
        config = read_json(run_dir / CONFIG, "run config")
    except DatasetError:
        config = None
    if not (isinstance(config, dict) and {"model", "train", "canvas"} <= config.keys()):
        raise ValueError(
            f"{run_dir} holds {' and '.join(logs)} of no pretraining run, which a run there "
            "would overwrite: choose another --out"
        )


@dataclass
class PretrainedRun:
    """A pretrained model with what adaptation needs to know of its pretraining."""

    model: HRM
    canvas: int
    views: list[View]
    """Every view pretraining trained, each with its row of the embedding table."""
    train_config: TrainConfig
    """How pretraining trained, which adaptation follows (its loss, its embedding step)."""
    test_pairs_trained: list[str] = field(default_factory=list)
    """Training tasks whose test pairs pretraining trained (their answers are not held out)."""
    demo_digests: dict[str, str] = field(default_factory=dict)
    """Each pretrained task's demonstrations digest, by id."""
    path: Path | None = None

    @property
    def loss(self) -> str:
        return self.train_config.loss


def load_run(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> PretrainedRun:
    """Rebuild the model and what pretraining recorded from a run directory's checkpoint; the
    weight average, where pretraining kept one, is what evaluation measured."""
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path)
    try:
        config = exactly(HRMConfig, state["model_config"])
        train = exactly(TrainConfig, state["train_config"])
        views = [View(t, Augmentation.from_name(a), i) for t, a, i in state["views"]]
        canvas = int(state["canvas"])
        trained = [str(t) for t in state["test_pairs_trained"]]
        digests = {str(k): str(v) for k, v in state["demo_digests"].items()}
        LOSSES[train.loss]  # adaptation trains with pretraining's loss
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({e!r})") from None
    model = HRM(config)
    averaged = state.get("model_averaged") or {}
    dense = {name for name, p in model.named_parameters() if p.requires_grad}
    if averaged and set(averaged) != dense:
        raise CheckpointError(f"{path}: its weight average does not cover the network's weights")
    load_model_state(model, {**state["model"], **averaged}, path)
    return PretrainedRun(
        model.to(device), canvas, views, train, trained, digests, path=Path(run_dir)
    )


def exactly(config_class: type, fields: dict) -> object:
    """`config_class(**fields)`, refusing fields missing or unknown (a damaged checkpoint's
    config must not fall back to defaults)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    if set(fields) != names:
        gone, extra = sorted(names - set(fields)), sorted(set(fields) - names)
        raise ValueError(f"{config_class.__name__} fields missing {gone}, unknown {extra}")
    return config_class(**fields)
