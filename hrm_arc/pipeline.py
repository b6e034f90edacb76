"""adapt-and-predict over a whole task set: groups of tasks adapted together, saved as they finish.

Each finished task is written to `OUT/tasks/<id>.json` at once, so a rerun after a crash skips
it, unless the checkpoint, the settings or the task changed (`out_dir`), which is refused rather
than mixed in. Under torchrun every rank takes every world_size-th group; rank 0 merges at the
end.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch

from .adapt import AdaptConfig, adapt_tasks
from .dataset import views_by_task
from .encoding import canvas_for
from .hrm_core.distributed import DistInfo
from .jsonio import write_json_atomic
from .out_dir import (
    PREDICTIONS,
    SCORE,
    SUBMISSION,
    check_out_dir,
    claim_out_dir,
    model_digest,
    save_task,
    saved_info,
    task_file,
)
from .predict import predict_task
from .predictions import Candidate, Predictions, load_predictions, save_predictions
from .pretrain import PretrainedRun
from .score import ScoreReport, score_submission
from .submission import submission_from_predictions
from .tasks import Task, TaskSet
from .vote import rank_candidates, rank_predictions

log = logging.getLogger(__name__)


# Bumped when a change of hrm-arc changes what the same settings predict, so that a rerun does
# not mix old and new: 2 = candidates scored under the training loss's own distribution, and
# one demonstration per view left untranslated; 3 = a view whose output holds no grid casts no
# vote.
METHOD_VERSION = 3


@dataclass
class PredictConfig:
    rank: str = "combined"
    group_size: int = 16
    """Tasks adapted together in one batch of views."""
    batch_size: int = 256
    """Inference batch of stage 2."""
    time_budget_s: float | None = None
    """Wall-clock budget for the whole set, counted from the start of this call; after the
    first group, adaptation epochs are sized from the measured pace to fit it."""

    def __post_init__(self) -> None:
        for name in ("group_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s is not None and not 0 < self.time_budget_s < math.inf:
            raise ValueError(f"the time budget must be positive, got {self.time_budget_s} s")


@dataclass
class GroupPace:
    """What one group of tasks cost, split by what the adaptation epochs change."""

    fit_s_per_epoch: float
    """Fitting seconds per epoch (embedding and full-network epochs counted alike)."""
    fixed_s: float
    """Seconds the epochs do not change: the demonstration check and prediction."""


def fits_canvas(task: Task, canvas: int) -> bool:
    return canvas_for([task]) <= canvas


def prediction_settings(run: PretrainedRun, adapt: AdaptConfig, device: torch.device) -> dict:
    """What a rerun must share to continue the saved tasks: the model, the canvas, the dtype
    it computes in on this device (a CPU and a GPU differ under "auto"), the adaptation
    settings and the method's version. Left out by choice: the time budget and the group size,
    which pace the run and size its memory (the group's tasks share adaptation batches, so the
    group size changes candidates slightly, but lowering it is how a run that ran out of memory
    goes on; each task's file records its own), and the ranking, which `finish` applies to
    every task afresh."""
    settings = {
        "model": model_digest(run.model),
        "canvas": run.canvas,
        "compute_dtype": run.model.compute_dtype(device),
        "adapt": dataclasses.asdict(adapt),
        "method_version": METHOD_VERSION,
    }
    return orjson.loads(orjson.dumps(settings))  # as it reads back from settings.json


def placeholder(task: Task) -> list[list[Candidate]]:
    """No candidate for any test input: the export writes 1x1 zero attempts for it."""
    return [[] for _ in task.test]


def adapt_and_predict(
    run: PretrainedRun,
    tasks: TaskSet,
    out_dir: str | Path,
    adapt: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_task: Callable[[str, dict], None] | None = None,
    restart: bool = False,
) -> None:
    """Adapt and predict every task not yet saved in `out_dir`; each rank does its share.

    Raises:
        ValueError: `out_dir` holds predictions made with another model or settings, or for
            other tasks of the same ids (unless `restart`, which discards them).
    """
    out_dir = Path(out_dir)
    if not any(fits_canvas(task, run.canvas) for task in tasks):
        needed = min(canvas_for([task]) for task in tasks)
        raise ValueError(
            f"no task of {tasks.name} fits the run's {run.canvas}x{run.canvas} canvas (the "
            f"smallest needs side {needed}): pretrain with a larger --canvas"
        )
    settings = prediction_settings(run, adapt, dist.device)
    if not restart:
        check_out_dir(out_dir, settings)  # on every rank, so a refusal ends them all alike
    dist.barrier()  # every rank has checked before the main one discards or records
    if dist.is_main:
        claim_out_dir(out_dir, settings, restart)
    dist.barrier()  # no rank looks for finished tasks while the main one may discard them
    todo, oversized = [], []
    for task in tasks:
        if (info := saved_info(out_dir, task)) is not None:  # finished by an earlier run
            note = {"resumed": True} | ({"skipped": info["skipped"]} if "skipped" in info else {})
        elif not fits_canvas(task, run.canvas):
            note = {"skipped": f"grid larger than canvas {run.canvas}"}
            oversized.append((task, note))
        else:
            todo.append(task)
            continue
        if on_task:
            on_task(task.id, note)
    dist.barrier()  # every rank has its task list (and so the same groups) before any saves
    if dist.is_main:
        for task, note in oversized:  # still a valid submission entry: no candidates
            save_task(out_dir, task, placeholder(task), note)
    groups = [todo[i : i + predict.group_size] for i in range(0, len(todo), predict.group_size)]
    started, pace = time.perf_counter(), None
    for g, group in enumerate(groups):
        if g % dist.world_size != dist.rank:
            continue
        config = adapt
        if predict.time_budget_s is not None and pace is not None:
            remaining = predict.time_budget_s - (time.perf_counter() - started)
            config = budgeted(adapt, remaining, len(groups) - g, dist.world_size, pace)
        pace = run_group(run, group, out_dir, config, predict, dist, on_task)
    dist.barrier()  # every rank's tasks are saved when this returns, for the main one to merge


def budgeted(
    adapt: AdaptConfig, remaining_s: float, groups_left: int, world_size: int, pace: GroupPace
) -> AdaptConfig:
    """Fewer adaptation epochs when the measured pace would overrun the remaining budget.

    Each group left gets an equal share of the remaining time; its fixed cost comes off first
    and the rest buys epochs. Embedding and full-network epochs shrink by the same factor,
    never above the configured ones and never below one epoch of each.
    """
    if not adapt.fitting_epochs:
        return adapt  # nothing to shorten
    per_group = remaining_s * world_size / max(groups_left, 1)
    affordable = max(0.0, per_group - pace.fixed_s) / max(pace.fit_s_per_epoch, 1e-9)
    scale = min(1.0, affordable / adapt.fitting_epochs)
    return dataclasses.replace(
        adapt,
        epochs=max(min(1.0, adapt.epochs), adapt.epochs * scale),
        full_epochs=max(min(1.0, adapt.full_epochs), adapt.full_epochs * scale),
    )


def run_group(
    run: PretrainedRun,
    group: list[Task],
    out_dir: Path,
    config: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_task,
) -> GroupPace:
    """Adapt and predict one group, saving each task; return what it cost."""
    model = copy.deepcopy(run.model)  # adaptation rewrites the table (and maybe weights)
    local = DistInfo(0, 1, dist.device)  # groups are independent: no gradient sharing
    start = time.perf_counter()
    adapted = adapt_tasks(
        model, group, run.canvas, config, local, pretrained=run.views, loss=run.loss
    )
    grouped = views_by_task(adapted.views)
    for task in group:
        t0 = time.perf_counter()
        per_test = predict_task(
            model, task, grouped[task.id], run.canvas, predict.batch_size, dist.device, run.loss
        )
        ranked = [rank_candidates(c, predict.rank) for c in per_test]
        info = {
            "group_size": predict.group_size,
            "group_demo_exact": adapted.demo_exact,
            "views": len(grouped[task.id]),
            "predict_s": time.perf_counter() - t0,
            "strategy": config.strategy,
            "adapt_epochs": 0 if config.strategy == "pretrained" else config.epochs,
            "full_epochs": config.full_epochs if config.strategy == "embedding+full" else 0,
        }
        save_task(out_dir, task, ranked, info)
        if on_task:
            on_task(task.id, info)
    total_s = time.perf_counter() - start
    return GroupPace(adapted.fit_s / max(config.fitting_epochs, 1e-9), total_s - adapted.fit_s)


def collect_predictions(out_dir: str | Path, tasks: TaskSet) -> tuple[Predictions, dict]:
    """Merge the per-task files of every task in `tasks` (missing ones are left out)."""
    predictions, info = {}, {}
    for task in tasks:
        path = task_file(Path(out_dir), task.id)
        if path.exists():
            preds, meta = load_predictions(path)
            predictions.update(preds)
            info[task.id] = meta
    return predictions, info


def finish(out_dir: str | Path, tasks: TaskSet, meta: dict, rank: str) -> ScoreReport | None:
    """Merge per-task files into predictions.json and submission.json, every task's candidates
    ranked by `rank`; score given solutions."""
    out_dir = Path(out_dir)
    predictions, info = collect_predictions(out_dir, tasks)
    predictions = rank_predictions(predictions, rank)
    save_predictions(out_dir / PREDICTIONS, predictions, {**meta, "tasks": info})
    submission = submission_from_predictions(predictions, tasks)
    write_json_atomic(out_dir / SUBMISSION, submission)
    if not tasks.has_solutions:
        return None
    report = score_submission(submission, tasks)
    write_json_atomic(out_dir / SCORE, report.to_dict(), indent=True)
    return report
