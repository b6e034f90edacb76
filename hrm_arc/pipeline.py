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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson
import torch

from .adapt import AdaptConfig, adapt_tasks, check_pretrained
from .data.augment import count_unique_variants
from .data.dataset import View, views_by_task
from .data.encoding import canvas_for
from .data.tasks import Task, TaskSet
from .files.jsonio import write_json_atomic
from .hrm_core.distributed import DistInfo
from .out_dir import (
    PREDICTIONS,
    SCORE,
    SUBMISSION,
    check_out_dir,
    claim_out_dir,
    model_digest,
    save_task,
    task_file,
)
from .predict import compiled, predict_task
from .predictions import Candidate, Predictions, load_predictions, save_predictions
from .pretrain import PretrainedRun
from .score import ScoreReport, score_submission
from .submission import submission_from_predictions
from .vote import rank_candidates, rank_predictions

log = logging.getLogger(__name__)


# Bumped when a change of hrm-arc changes what the same settings predict, so that a rerun does
# not mix old and new: 2 = candidates scored under the training loss's own distribution, and
# one demonstration per view left untranslated; 3 = a view whose output holds no grid casts no
# vote, and a group smaller than an adaptation batch is not drawn twice into one; 4 = equal
# evidence ranked in view order (each candidate's first vote, which a task's file now keeps).
METHOD_VERSION = 4


@dataclass
class PredictConfig:
    rank: str = "combined"
    group_size: int = 16
    """Tasks adapted together in one batch of views."""
    batch_size: int = 256
    """Inference batch of stage 2."""
    time_budget_s: float | None = None
    """Wall-clock budget for the whole set, counted from `started`: each group's fitting stops
    at its share, epochs are sized from the measured pace, and groups no time is left to
    predict get 1x1 zero attempts (see `plan_group`)."""
    started: float | None = None
    """`time.perf_counter()` when the budget began (the CLI: as the command started, before
    loading the run and the tasks); None: as adaptation starts."""

    def __post_init__(self) -> None:
        for name in ("group_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s is not None and not 0 < self.time_budget_s < math.inf:
            raise ValueError(f"the time budget must be positive, got {self.time_budget_s} s")


@dataclass
class GroupPace:
    """What one group of tasks cost per row of work, so that a group of other tasks (more
    demonstrations, fewer unique views) can be priced."""

    fit_s_per_row: float
    """Fitting seconds per demonstration row drawn into a batch (either kind of epoch)."""
    fixed_s_per_row: float
    """Checking and predicting seconds per row run (see `group_rows`)."""


def view_counts(tasks: Sequence[Task], adapt: AdaptConfig, pretrained: Sequence[View]) -> list[int]:
    """How many views adaptation gives each task, as `adapt_tasks` makes them."""
    if adapt.strategy == "pretrained":
        grouped = views_by_task(pretrained)
        return [min(adapt.augmentations, len(grouped.get(t.id, ()))) for t in tasks]
    return [min(adapt.augmentations, count_unique_variants(t)) for t in tasks]


def group_rows(
    tasks: Sequence[Task], views: Sequence[int], saved: set[str] = frozenset()
) -> tuple[int, int]:
    """A group's demonstration rows (every view's pairs: one epoch of fitting) and the rows its
    check and prediction run (every view's demonstrations once, the test inputs of its tasks
    not `saved` twice), given each task's number of `views`."""
    demos = sum(v * len(t.train) for v, t in zip(views, tasks))
    tests = sum(v * len(t.test) for v, t in zip(views, tasks) if t.id not in saved)
    return demos, demos + 2 * tests


def fits_canvas(task: Task, canvas: int) -> bool:
    return canvas_for([task]) <= canvas


def outputs_beyond(tasks: Sequence[Task], canvas: int) -> list[str]:
    """The tasks that fit `canvas` but have a known test output larger than it, which no
    attempt can match (the canvas is sized by what a solver sees: test outputs are hidden)."""
    return [
        t.id
        for t in tasks
        if fits_canvas(t, canvas)
        and any(p.output is not None and max(p.output.shape) > canvas for p in t.test)
    ]


def prediction_settings(run: PretrainedRun, adapt: AdaptConfig, device: torch.device) -> dict:
    """What a rerun must share to continue the saved tasks: the model, the canvas, the dtype
    it computes in on this device (a CPU and a GPU differ under "auto"), the adaptation
    settings and the method's version. Left out by choice: the time budget, the group size and
    compiling, which pace the run and size its memory (the group's tasks share adaptation
    batches, so the group size changes candidates slightly, but lowering it is how a run that
    ran out of memory goes on; each task's file records its own; compiled code rounds
    differently), and the ranking, which `finish` applies to every task afresh."""
    settings = {
        "model": model_digest(run.model),
        "canvas": run.canvas,
        "compute_dtype": run.model.compute_dtype(device),
        "adapt": {k: v for k, v in dataclasses.asdict(adapt).items() if k != "compile"},
        "method_version": METHOD_VERSION,
    }
    return orjson.loads(orjson.dumps(settings))  # as it reads back from settings.json


# Why a task was not predicted, as its note says.
TOO_LARGE = "grid larger than canvas"
TIME_SPENT = "the time budget was spent"


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
) -> list[str]:
    """Adapt and predict every task not yet saved in `out_dir`; each rank does its share.
    Returns the tasks left unpredicted (a time budget spent), on every rank.

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
    if run.model.puzzle_emb is None and adapt.strategy != "pretrained":
        raise ValueError(
            f"the run has no puzzle embeddings (model.puzzle_emb_ndim=0), so strategy "
            f"{adapt.strategy!r} has no embedding to fit: pretrain with puzzle embeddings"
        )
    if adapt.strategy == "pretrained":  # refused now, not when its group comes
        fitting = [t for t in tasks if fits_canvas(t, run.canvas)]
        check_pretrained(fitting, run.views, run.state.get("demo_digests"))
    settings = prediction_settings(run, adapt, dist.device)
    # Read on every rank, so that a refusal ends them all alike, before anything is discarded.
    saved = {} if restart else check_out_dir(out_dir, settings, tasks)
    dist.barrier()  # every rank has read the saved tasks before the main one discards or records
    if dist.is_main:
        claim_out_dir(out_dir, settings, restart, tasks)
    fitting = sort_tasks(tasks, out_dir, run.canvas, dist, on_task, saved)
    # Groups are cut from every task that fits, saved or not, so that a run stopped part-way
    # through a group adapts each group again with the same tasks (and so the same seed,
    # translations and batches) as an uninterrupted run did; only a whole saved group is passed.
    size = predict.group_size
    groups = [fitting[i : i + size] for i in range(0, len(fitting), size)]
    mine = [
        group
        for g, group in enumerate(groups)
        if g % dist.world_size == dist.rank and any(t.id not in saved for t in group)
    ]
    run_groups(run, mine, out_dir, adapt, predict, dist, on_task, set(saved))
    dist.barrier()  # every rank's tasks are saved when this returns, for the main one to merge
    return [t.id for t in fitting if not task_file(out_dir, t.id).exists()]


def sort_tasks(
    tasks: TaskSet, out_dir: Path, canvas: int, dist: DistInfo, on_task, saved: dict[str, dict]
) -> list[Task]:
    """The tasks that fit the canvas, each task reported to `on_task` if an earlier run `saved`
    it; the main rank saves a placeholder for each task too large (a valid submission entry all
    the same)."""
    fitting, oversized = [], []
    for task in tasks:
        fits = fits_canvas(task, canvas)
        if fits:
            fitting.append(task)
        if (info := saved.get(task.id)) is not None:  # finished by an earlier run
            note = {"resumed": True} | ({"skipped": info["skipped"]} if "skipped" in info else {})
        elif not fits:
            note = {"skipped": f"{TOO_LARGE} {canvas}"}
            oversized.append((task, note))
        else:
            continue
        if on_task:
            on_task(task.id, note)
    dist.barrier()  # every rank has its task list, and the main one has claimed, before saves
    if dist.is_main:
        for task, note in oversized:
            save_task(out_dir, task, placeholder(task), note)
    return fitting


def run_groups(
    run: PretrainedRun,
    groups: list[list[Task]],
    out_dir: Path,
    adapt: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_task,
    saved: set[str],
) -> None:
    """This rank's groups in turn, each within its share of the time budget (if any)."""
    started = time.perf_counter() if predict.started is None else predict.started
    pace = None
    for i, group in enumerate(groups):
        config, fit_limit_s = adapt, None
        if predict.time_budget_s is not None:
            remaining = predict.time_budget_s - (time.perf_counter() - started)
            views = view_counts(group, adapt, run.views)
            config, fit_limit_s = plan_group(adapt, group, views, remaining, len(groups) - i, pace)
        if config is None:  # no time left: left unsaved, so a rerun tries it again
            for task in (t for t in group if t.id not in saved):
                if on_task:
                    on_task(task.id, {"skipped": TIME_SPENT})
            continue
        pace = run_group(run, group, out_dir, config, predict, dist, on_task, saved, fit_limit_s)


def plan_group(
    adapt: AdaptConfig,
    group: Sequence[Task],
    views: Sequence[int],
    remaining_s: float,
    groups_left: int,
    pace: GroupPace | None,
) -> tuple[AdaptConfig | None, float]:
    """The adaptation a group (its tasks with so many `views` each) can afford and the seconds
    its fitting may take: an equal share of the time left for each group this rank has left,
    less the estimated cost of checking and predicting (until a group has measured it, half the
    share is kept for it). None when the time left cannot pay for the group's prediction: it
    is left unpredicted."""
    share = remaining_s / groups_left
    if pace is None:
        return (adapt, share / 2) if remaining_s > 0 else (None, 0.0)
    demos, rows = group_rows(group, views)
    fixed_s = pace.fixed_s_per_row * rows
    if remaining_s <= fixed_s:
        return None, 0.0
    fit_s = max(0.0, share - fixed_s)
    return budgeted(adapt, fit_s / max(pace.fit_s_per_row * demos, 1e-9)), fit_s


def budgeted(adapt: AdaptConfig, affordable_epochs: float) -> AdaptConfig:
    """Fewer adaptation epochs when only `affordable_epochs` fit the time. Embedding and
    full-network epochs shrink by the same factor, never above the configured ones and never
    below one epoch of each (the fitting's time limit stops it short of that one if need be).
    """
    if not adapt.fitting_epochs:
        return adapt  # nothing to shorten
    scale = min(1.0, affordable_epochs / adapt.fitting_epochs)
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
    saved: set[str] = frozenset(),
    fit_limit_s: float | None = None,
) -> GroupPace:
    """Adapt one group and predict its tasks not in `saved`, saving each; return what it cost.
    Fitting stops after `fit_limit_s`."""
    # A copy, as adaptation rewrites the table (and maybe weights); the pretrained table itself
    # (GBs on a GPU at paper scale) is shared, not copied: adaptation swaps in a fresh table
    # before it writes one, and the pretrained strategy only reads it.
    emb = run.model.puzzle_emb
    model = copy.deepcopy(run.model, {} if emb is None else {id(emb.weights): emb.weights})
    local = DistInfo(0, 1, dist.device)  # groups are independent: no gradient sharing
    start = time.perf_counter()
    limit = None if fit_limit_s is None else max(fit_limit_s, 1e-6)  # 0 would mean none
    adapted = adapt_tasks(
        model,
        group,
        run.canvas,
        config,
        local,
        pretrained=run.views,
        loss=run.loss,
        time_limit_s=limit,
    )
    grouped = views_by_task(adapted.views)
    demos, rows = group_rows(group, [len(grouped[t.id]) for t in group], saved)
    predictor = compiled(model, config.compile)
    for task in (t for t in group if t.id not in saved):
        t0 = time.perf_counter()
        per_test = predict_task(
            predictor, task, grouped[task.id], run.canvas, predict.batch_size, dist.device, run.loss
        )
        ranked = [rank_candidates(c, predict.rank) for c in per_test]
        info = {
            "group_size": predict.group_size,
            "compiled": config.compile,
            "group_demo_exact": adapted.demo_exact,
            "views": len(grouped[task.id]),
            "predict_s": time.perf_counter() - t0,
            "strategy": config.strategy,
            "adapt_epochs": 0 if config.strategy == "pretrained" else config.epochs,
            "full_epochs": config.full_epochs if config.strategy == "embedding+full" else 0,
            "fit_time_limited": adapted.time_limited,
            "epochs_fitted": adapted.fit_rows / max(demos, 1),  # either kind, as they ran
        }
        save_task(out_dir, task, ranked, info)
        if on_task:
            on_task(task.id, info)
    fixed_s = time.perf_counter() - start - adapted.fit_s
    return GroupPace(adapted.fit_s / max(adapted.fit_rows, 1), fixed_s / max(rows, 1))


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
    ranked by `rank`; score given solutions. A task without a file (a time budget spent) is
    merged with no candidates, so predictions.json exports alone to a whole submission."""
    out_dir = Path(out_dir)
    predictions, info = collect_predictions(out_dir, tasks)
    for task in (t for t in tasks if t.id not in predictions):
        predictions[task.id], info[task.id] = placeholder(task), {"skipped": TIME_SPENT}
    predictions = rank_predictions(predictions, rank)
    save_predictions(out_dir / PREDICTIONS, predictions, {**meta, "tasks": info})
    submission = submission_from_predictions(predictions, tasks)
    write_json_atomic(out_dir / SUBMISSION, submission)
    if not tasks.has_solutions:
        return None
    report = score_submission(submission, tasks)
    write_json_atomic(out_dir / SCORE, report.to_dict(), indent=True)
    return report
