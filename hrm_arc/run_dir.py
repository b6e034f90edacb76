"""What a pretraining run directory holds, and the run a later stage loads from it.

- `model/`: what prediction needs: `config.json` and `model.safetensors` (`HRM.save_pretrained`;
  the weight average where training kept one) and `pretraining.json` (what adaptation follows:
  the training config, the canvas, the views and their embedding rows);
- `checkpoint.pt`: the trainer's resumable state (weights, optimisers, sampler, RNG, carries);
- `config.json`: the resolved configuration, for people; `metrics.jsonl`: a logged record a line.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from . import __version__
from .data.dataset import View
from .data.tasks import Task
from .errors import DatasetError
from .files.atomic import make_folder, remove_cut_writes_in, write_atomic
from .files.jsonio import read_json
from .hrm_core.checkpoint import CheckpointError, strict_config, write_checkpoint
from .hrm_core.losses import LOSSES
from .hrm_core.model import (
    HRM,
    PRETRAINED_CONFIG,
    PRETRAINED_WEIGHTS,
    HRMConfig,
    pretrained_config,
    pretrained_weights,
)
from .hrm_core.signals import held_signals
from .hrm_core.trainer import TrainConfig

CHECKPOINT, CONFIG, METRICS, MODEL = "checkpoint.pt", "config.json", "metrics.jsonl", "model"
RUN_FILES = (CHECKPOINT, CONFIG, METRICS)
PRETRAINING = "pretraining.json"
MODEL_FILES = (PRETRAINED_CONFIG, PRETRAINED_WEIGHTS, PRETRAINING)


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Write `state`, stamped with the package version, so that a crash leaves the old
    checkpoint or the new one, never half of either; Ctrl-C or SIGTERM during the write takes
    effect once it is done."""
    stamped = {"version": __version__, **state}
    with held_signals(signal.SIGINT, signal.SIGTERM):
        write_atomic(path, lambda f: write_checkpoint(f, stamped))


def save_model(
    folder: str | os.PathLike, config: HRMConfig, weights: dict, pretraining: dict
) -> None:
    """Write a run's `model/` folder, each file atomically: the model as `save_pretrained`
    writes it, and `pretraining` (see `pretraining_record`)."""
    folder = Path(folder)
    record = json.dumps(pretraining | {"version": __version__}).encode()
    with held_signals(signal.SIGINT, signal.SIGTERM):
        write_atomic(folder / PRETRAINED_CONFIG, lambda f: f.write(pretrained_config(config)))
        write_atomic(folder / PRETRAINING, lambda f: f.write(record))
        write_atomic(folder / PRETRAINED_WEIGHTS, lambda f: f.write(pretrained_weights(weights)))


def pretraining_record(
    train: TrainConfig,
    canvas: int,
    views: list,
    test_pairs_trained=(),
    demo_digests=None,
    crop: bool = False,
) -> dict:
    """What adaptation needs to know of pretraining: how it trained (its loss, its embedding
    step), the canvas and whether tasks ran cropped, and each view's task, augmentation and
    embedding row."""
    return {
        "train": asdict(train),
        "canvas": canvas,
        "crop": crop,
        "views": [list(v) for v in views],
        "test_pairs_trained": list(test_pairs_trained),
        "demo_digests": dict(demo_digests or {}),
    }


class RunDirectory:
    """A run directory as the trainer's store: an atomic checkpoint, with the model beside it
    when the run's `pretraining` record is given, and an appended metrics log."""

    def __init__(self, path: str | os.PathLike, pretraining: dict | None = None) -> None:
        self.path, self.pretraining = Path(path), pretraining

    def save(self, state: dict) -> None:
        save_checkpoint(self.path / CHECKPOINT, state)
        if self.pretraining is not None:
            weights = state["model"] | (state.get("model_averaged") or {})
            config = HRMConfig(**state["model_config"])
            save_model(self.path / MODEL, config, weights, self.pretraining)

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

    def remove_cut_writes(self) -> None:
        """Delete what a killed run's writes left half done; only while the folder is locked."""
        remove_cut_writes_in(self.path, RUN_FILES)
        remove_cut_writes_in(self.path / MODEL, MODEL_FILES)


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether `run_dir` holds a checkpoint to resume."""
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
    crop: bool = False
    """Pretraining ran each task on its cropped canvas (`task_canvas`), which adaptation then
    does by default; False: on the full canvas."""
    tasks: list[Task] = field(default_factory=list)
    """Tasks pretraining trained, where given (`with_tasks`: a run records their views, not
    their grids), for fine-tuning to replay (`AdaptConfig.replay`)."""

    @property
    def loss(self) -> str:
        return self.train_config.loss

    def trained_alike(self, task: Task) -> bool:
        """Whether `task`'s demonstrations are those pretraining trained under its id (true
        where the run recorded none for it: runs before digests were recorded)."""
        recorded = self.demo_digests.get(task.id)
        return recorded is None or recorded == task.digest(with_tests=False)

    def with_tasks(self, tasks: Iterable[Task]) -> PretrainedRun:
        """This run, given those of `tasks` its pretraining trained: the same id and (where it
        recorded them) the same demonstrations. The others are left out.

        Raises:
            ValueError: the run records no views, or trained none of `tasks`.
        """
        if not self.views:
            raise ValueError(
                f"{self.path}: the run records no views, so none of its pretrained embeddings "
                "can be replayed (an imported official checkpoint: its identifiers were not "
                "published)"
            )
        trained, tasks = {v.task_id for v in self.views}, list(tasks)
        known = [t for t in tasks if t.id in trained and self.trained_alike(t)]
        if not known:
            raise ValueError(
                f"{self.path}: pretraining trained none of these {len(tasks)} tasks (by id and "
                "demonstrations): replay the tasks the run was pretrained on"
            )
        return replace(self, tasks=known)


def load_run(run_dir: str | os.PathLike, device: torch.device | str = "cpu") -> PretrainedRun:
    """The model in `run_dir/model/` and what its pretraining recorded there."""
    folder = Path(run_dir) / MODEL
    if not folder.is_dir():
        raise CheckpointError(f"{run_dir}: no {MODEL}/ folder here (not a run directory)")
    path = folder / PRETRAINING
    try:
        record = read_json(path, "pretraining record", unique_keys=False)
        train = strict_config(TrainConfig, record["train"], path)
        views = [View.from_record(v) for v in record["views"]]
        canvas = int(record["canvas"])
        trained = [str(t) for t in record["test_pairs_trained"]]
        digests = {str(k): str(v) for k, v in record["demo_digests"].items()}
        crop = record.get("crop", False)  # runs before cropping trained the full canvas
        if not isinstance(crop, bool):
            raise ValueError(f"crop must be true or false, got {crop!r}")
        LOSSES[train.loss]  # adaptation trains with pretraining's loss
    except DatasetError as e:
        raise CheckpointError(str(e)) from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: the pretraining record is damaged ({e!r})") from None
    model = HRM.from_pretrained(folder, device)
    return PretrainedRun(model, canvas, views, train, trained, digests, Path(run_dir), crop)
