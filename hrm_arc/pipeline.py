"""adapt-and-predict over a whole task set: groups of tasks adapted together, saved as they finish.

Each finished task is written to `OUT/tasks/<id>.json` at once, so a rerun after a crash skips
it. Under torchrun every rank takes every world_size-th group; rank 0 merges at the end.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .adapt import AdaptConfig, adapt_tasks
from .dataset import views_by_task
from .hrm_core.distributed import DistInfo
from .jsonio import write_json_atomic
from .predict import predict_task
from .predictions import Candidate, Predictions, load_predictions, save_predictions
from .pretrain import PretrainedRun
from .score import ScoreReport, score_submission
from .submission import submission_from_predictions
from .tasks import Task, TaskSet
from .vote import rank_candidates

log = logging.getLogger(__name__)


@dataclass
class PredictConfig:
    rank: str = "combined"
    group_size: int = 16
    """Tasks adapted together in one batch of views."""
    batch_size: int = 256
    """Inference batch of stage 2."""
    time_budget_s: float | None = None
    """Wall-clock budget for the whole set; adaptation epochs are sized to fit it."""


def fits_canvas(task: Task, canvas: int) -> bool:
    return all(max(g.shape) <= canvas for g in task.grids)


def task_file(out_dir: Path, task_id: str) -> Path:
    return out_dir / "tasks" / f"{task_id}.json"


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
) -> None:
    """Adapt and predict every task not yet saved in `out_dir`; each rank does its share."""
    out_dir = Path(out_dir)
    todo = []
    for task in tasks:
        if task_file(out_dir, task.id).exists():
            note = {"resumed": True}  # finished by an earlier run
        elif not fits_canvas(task, run.canvas):
            note = {"skipped": f"grid larger than canvas {run.canvas}"}
            if dist.is_main:  # still a valid submission entry: no candidates
                save_task(out_dir, task, placeholder(task), note)
        else:
            todo.append(task)
            continue
        if on_task:
            on_task(task.id, note)
    groups = [todo[i : i + predict.group_size] for i in range(0, len(todo), predict.group_size)]
    started, seconds_per_epoch = time.perf_counter(), None
    for g, group in enumerate(groups):
        if g % dist.world_size != dist.rank:
            continue
        config = adapt
        if predict.time_budget_s is not None and seconds_per_epoch is not None:
            remaining = predict.time_budget_s - (time.perf_counter() - started)
            config = budgeted(adapt, remaining, len(groups) - g, dist.world_size, seconds_per_epoch)
        seconds_per_epoch = run_group(run, group, out_dir, config, predict, dist, on_task)


def budgeted(
    adapt: AdaptConfig,
    remaining_s: float,
    groups_left: int,
    world_size: int,
    seconds_per_epoch: float,
) -> AdaptConfig:
    """Fewer adaptation epochs when the measured pace would overrun the remaining budget.

    `seconds_per_epoch` is a group's whole cost (adaptation and prediction) per adaptation
    epoch, so prediction time is budgeted too.
    """
    per_group = remaining_s * world_size / max(groups_left, 1)
    epochs = per_group / seconds_per_epoch
    return dataclasses.replace(adapt, epochs=max(1.0, min(adapt.epochs, epochs)))


def run_group(
    run: PretrainedRun,
    group: list[Task],
    out_dir: Path,
    config: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_task,
) -> float:
    """Adapt and predict one group, saving each task; return its seconds per adaptation epoch."""
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
            model, task, grouped[task.id], run.canvas, predict.batch_size, dist.device
        )
        ranked = [rank_candidates(c, predict.rank) for c in per_test]
        info = {
            "group_demo_exact": adapted.demo_exact,
            "views": len(grouped[task.id]),
            "predict_s": time.perf_counter() - t0,
            "strategy": config.strategy,
            "adapt_epochs": 0 if config.strategy == "pretrained" else config.epochs,
        }
        save_task(out_dir, task, ranked, info)
        if on_task:
            on_task(task.id, info)
    return (time.perf_counter() - start) / max(config.epochs, 1.0)


def save_task(out_dir: Path, task: Task, per_test: list[list[Candidate]], info: dict) -> None:
    save_predictions(task_file(out_dir, task.id), {task.id: per_test}, info)


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


def finish(out_dir: str | Path, tasks: TaskSet, meta: dict) -> ScoreReport | None:
    """Merge per-task files into predictions.json and submission.json; score given solutions."""
    out_dir = Path(out_dir)
    predictions, info = collect_predictions(out_dir, tasks)
    save_predictions(out_dir / "predictions.json", predictions, {**meta, "tasks": info})
    submission = submission_from_predictions(predictions, tasks)
    write_json_atomic(out_dir / "submission.json", submission)
    if not tasks.has_solutions:
        return None
    report = score_submission(submission, tasks)
    write_json_atomic(out_dir / "score.json", report.to_dict(), indent=True)
    return report
