"""adapt-and-predict over a whole task set: groups of tasks adapted together, saved as they finish.

Each finished task is written to `OUT/tasks/<id>.json` at once, so a rerun after a crash skips
it, unless the checkpoint, the settings or the task changed (`out_dir`), which is refused rather
than mixed in. Under torchrun every rank takes every world_size-th group; rank 0 merges at the
end.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
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
from .data.encoding import canvas_for, task_canvas
from .data.tasks import Task, TaskSet
from .errors import OutOfMemory
from .events import BudgetCut, Skip, TaskDone, TaskEvent, TaskResumed, TaskSkipped
from .files.folder_lock import folder_lock
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
from .overrides import apply_overrides, set_values
from .predict import compiled, predict_task
from .predictions import Candidate, Predictions, load_predictions, save_predictions
from .run_dir import PretrainedRun
from .score import ScoreReport, score_submission
from .submission import submission_from_predictions
from .text import count, listed
from .vote import RANKINGS, rank_candidates, rank_predictions

log = logging.getLogger(__name__)


# Bumped when a change of hrm-arc changes what the same settings predict, so that a rerun does
# not mix the predictions of two versions.
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
    empty_grid_votes: bool = False
    """A view whose output holds no grid votes for the empty grid, as the official evaluator
    counts it (it can take a top-2 place and is never right); off, it casts no vote."""
    stop_at_halt: bool = False
    """Stage 2 stops each view at its first ACT segment whose q_halt says halt (logit > 0),
    as training halts, instead of running all halt_max_steps as the official evaluator."""

    def __post_init__(self) -> None:
        for name in ("group_size", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.time_budget_s is not None and not 0 < self.time_budget_s < math.inf:
            raise ValueError(f"the time budget must be positive, got {self.time_budget_s} s")
        if self.rank not in RANKINGS:
            raise ValueError(f"PredictConfig.rank must be one of {list(RANKINGS)}: {self.rank!r}")


# The paper's procedure as the official evaluator runs it, where the defaults differ.
PAPER = {
    "adapt.strategy": "embedding",
    "adapt.init": "zero",
    "adapt.augmentations": 1000,
    "adapt.epochs": 100.0,
    "predict.rank": "votes",
    "predict.empty_grid_votes": True,
}


def configure(
    run: PretrainedRun, values: dict[str, object] | None = None, items: Sequence[str] = ()
) -> tuple[AdaptConfig, PredictConfig]:
    """Adaptation following `run`'s pretraining and the default prediction settings, with the
    typed `values` ({"adapt.epochs": 10.0}) and then the `items` ("adapt.epochs=10") set."""
    sections = {"adapt": AdaptConfig.following(run.train_config), "predict": PredictConfig()}
    sections = apply_overrides(set_values(sections, values or {}), list(items))
    return following_run(sections["adapt"], run), sections["predict"]


def following_run(adapt: AdaptConfig, run: PretrainedRun) -> AdaptConfig:
    """`adapt` with its canvas choice made: as given, else as the run pretrained."""
    return adapt if adapt.crop is not None else dataclasses.replace(adapt, crop=run.crop)


@dataclass
class GroupPace:
    """What one group of tasks cost per row of work, so that a group of other tasks (more
    demonstrations, fewer unique views) can be priced."""

    fit_s_per_row: float
    """Fitting seconds per demonstration row drawn into a batch (either kind of epoch)."""
    fixed_s_per_row: float
    """Checking and predicting seconds per row run (see `group_rows`)."""
    time_limited: bool = False
    """Its fitting stopped at its time limit, short of its epochs."""


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


def outputs_beyond(tasks: Sequence[Task], canvas: int, crop: bool = False) -> list[str]:
    """The tasks that fit `canvas` but have a known test output larger than the canvas they
    run on (`task_canvas`), which no attempt can match (a canvas is sized by what a solver
    sees: test outputs are hidden)."""
    return [
        t.id
        for t in tasks
        if fits_canvas(t, canvas)
        and any(
            p.output is not None and max(p.output.shape) > task_canvas(t, canvas, crop)
            for p in t.test
        )
    ]


def prediction_settings(
    run: PretrainedRun, adapt: AdaptConfig, predict: PredictConfig, device: torch.device
) -> dict:
    """What a rerun must share to continue the saved tasks: the model, the canvas, the dtype
    it computes in on this device (a CPU and a GPU differ under "auto"), the adaptation
    settings, whether views without a grid vote, whether stage 2 stops at q_halt, and the
    method's version, and the tasks fine-tuning replays. Left out by choice:
    the time budget, the group size and compiling, which pace the run and size its memory (the
    group's tasks share adaptation batches, so the group size changes candidates slightly, but
    lowering it is how a run that ran out of memory goes on; each task's file records its own;
    compiled code rounds differently), and the ranking, which `finish` applies to every task
    afresh."""
    settings = {
        "model": model_digest(run.model),
        "canvas": run.canvas,
        "compute_dtype": run.model.compute_dtype(device),
        "adapt": {k: v for k, v in dataclasses.asdict(adapt).items() if k != "compile"},
        "empty_grid_votes": predict.empty_grid_votes,
        "stop_at_halt": predict.stop_at_halt,
        "method_version": METHOD_VERSION,
    }
    if adapt.replay:  # the tasks it draws from change what fine-tuning learns
        replayed = " ".join(f"{t.id}:{t.digest(with_tests=False)}" for t in run.tasks)
        settings["replay_tasks"] = hashlib.sha256(replayed.encode()).hexdigest()[:16]
    return orjson.loads(orjson.dumps(settings))  # as it reads back from settings.json


def placeholder(task: Task) -> list[list[Candidate]]:
    """No candidate for any test input: the export writes 1x1 zero attempts for it."""
    return [[] for _ in task.test]


def adapt_and_predict(
    run: PretrainedRun,
    tasks: TaskSet,
    out_dir: str | Path,
    adapt: AdaptConfig | None = None,
    predict: PredictConfig | None = None,
    dist: DistInfo | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
    restart: bool = False,
) -> ScoreReport | None:
    """Adapt every task of `tasks` not yet saved in `out_dir` and predict it, then (on the main
    rank) merge them into predictions.json and submission.json and score them when the
    solutions are known. Under torchrun each rank adapts its share; the main rank returns the
    score.

    Args:
        adapt: how to adapt; by default as pretraining trained (`AdaptConfig.following`).
        dist: this process's place under torchrun; one process on the run's device by default.
        on_event: told of each task as it is saved, resumed or skipped (main rank: every task
            not predicted for want of time is told at the end, whichever rank had it).
        restart: discard what an earlier run saved in `out_dir` instead of continuing it.

    Raises:
        ValueError: `out_dir` holds predictions made with another model or settings, or for
            other tasks of the same ids (unless `restart`).
        OutOfMemory: the device ran out of memory.
    """
    adapt = following_run(adapt or AdaptConfig.following(run.train_config), run)
    predict = predict or PredictConfig()
    dist = dist or DistInfo(0, 1, next(run.model.parameters()).device)
    if dist.is_main:
        warn_of_seen_tasks(run, tasks, adapt)
    with folder_lock(out_dir, dist):
        try:
            predict_tasks(run, tasks, out_dir, adapt, predict, dist, on_event, restart)
        except torch.cuda.OutOfMemoryError as e:
            advice = ("lower --group-size or --set adapt.batch_size=N; the same command "
                      "continues after the tasks already saved")  # fmt: skip
            raise OutOfMemory.advising(e, advice) from None
        if not dist.is_main:
            return None
        unpredicted = [t for t in tasks if not task_file(Path(out_dir), t.id).exists()]
        for task in unpredicted:  # every rank's, from the files
            if on_event:
                on_event(TaskSkipped(task.id, Skip.TIME_SPENT))
        meta = {
            "run": str(run.path),
            "dataset": tasks.name,
            "adapt": dataclasses.asdict(adapt),
            "rank": predict.rank,
        }
        return finish(out_dir, tasks, meta, predict.rank)


def warn_of_seen_tasks(run: PretrainedRun, tasks: TaskSet, adapt: AdaptConfig) -> None:
    """Warn of tasks whose scores are not held out (pretraining trained their test pairs, or
    their demonstrations) or that cannot be solved on the run's canvas."""
    # arc-agi-2/training holds 376 of arc-agi-1/evaluation's 400 tasks, for one.
    answered = sorted(set(run.test_pairs_trained) & set(tasks.ids))
    of = f"of {count(tasks, 'task')}"
    if answered:
        log.warning(
            "pretraining trained the test pairs (--train-test-pairs) of training tasks with the "
            "ids of %d %s, so their scores are not held out: %s", len(answered), of,
            listed(answered),
        )  # fmt: skip
    if beyond := outputs_beyond(tasks, run.canvas, adapt.crop):
        where = "its task's canvas" if adapt.crop else f"the run's {run.canvas}x{run.canvas} canvas"
        log.warning(
            "a test output larger than %s, which no attempt can match, belongs to %d %s: %s",
            where, len(beyond), of, listed(beyond),
        )  # fmt: skip
    trained = sorted({view.task_id for view in run.views} & set(tasks.ids) - set(answered))
    if trained and adapt.strategy != "pretrained":
        log.warning(
            "pretraining trained the demonstrations of %d %s, so they are not unseen: %s",
            len(trained), of, listed(trained),
        )  # fmt: skip


def predict_tasks(
    run: PretrainedRun,
    tasks: TaskSet,
    out_dir: str | Path,
    adapt: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_event: Callable[[TaskEvent], None] | None = None,
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
    if adapt.crop and run.model.config.mlp_t:
        raise ValueError(
            "the model mixes positions with an MLP (model.mlp_t), so it runs on the full canvas "
            "only: adapt with --full-canvas (adapt.crop=false)"
        )
    if run.model.puzzle_emb is None and adapt.strategy != "pretrained":
        raise ValueError(
            f"the run has no puzzle embeddings (model.puzzle_emb_ndim=0), so strategy "
            f"{adapt.strategy!r} has no embedding to fit: pretrain with puzzle embeddings"
        )
    if adapt.strategy == "pretrained" and not run.views:
        raise ValueError(
            f"{run.path}: the run records no views, so no embedding row can be mapped to a task "
            "(an imported official checkpoint: its identifiers were not published); adapt with "
            "--strategy embedding, which fits fresh embeddings"
        )
    if adapt.replay and not run.tasks:
        raise ValueError(
            "adapt.replay fine-tunes beside the tasks pretraining trained: give them "
            "(--replay-from DATASET; in Python, run.with_tasks(tasks))"
        )
    if adapt.strategy == "pretrained":  # refused now, not when its group comes
        fitting = [t for t in tasks if fits_canvas(t, run.canvas)]
        check_pretrained(fitting, run.views, run.trained_alike)
    settings = prediction_settings(run, adapt, predict, dist.device)
    # Read on every rank, so that a refusal ends them all alike, before anything is discarded.
    saved = {} if restart else check_out_dir(out_dir, settings, tasks)
    dist.barrier()  # every rank has read the saved tasks before the main one discards or records
    if dist.is_main:
        claim_out_dir(out_dir, settings, restart, tasks)
    fitting = sort_tasks(tasks, out_dir, run.canvas, dist, on_event, saved)
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
    run_groups(run, mine, out_dir, adapt, predict, dist, on_event, set(saved))
    dist.barrier()  # every rank's tasks are saved when this returns, for the main one to merge


def sort_tasks(
    tasks: TaskSet, out_dir: Path, canvas: int, dist: DistInfo, on_event, saved: dict[str, dict]
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
            skipped = Skip.from_note(info["skipped"]) if "skipped" in info else None
            event = TaskResumed(task.id, skipped)
        elif not fits:
            event = TaskSkipped(task.id, Skip.TOO_LARGE)
            oversized.append(task)
        else:
            continue
        if on_event:
            on_event(event)
    dist.barrier()  # every rank has its task list, and the main one has claimed, before saves
    if dist.is_main:
        note = {"skipped": f"{Skip.TOO_LARGE.value} {canvas}"}
        for task in oversized:
            save_task(out_dir, task, placeholder(task), note)
    return fitting


def run_groups(
    run: PretrainedRun,
    groups: list[list[Task]],
    out_dir: Path,
    adapt: AdaptConfig,
    predict: PredictConfig,
    dist: DistInfo,
    on_event,
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
            continue
        pace = run_group(run, group, out_dir, config, predict, dist, on_event, saved, fit_limit_s)
        if pace.time_limited or config.fitting_epochs < adapt.fitting_epochs:
            if on_event:
                planned = (adapt.epochs, adapt.full_epochs)
                on_event(BudgetCut(next(t.id for t in group if t.id not in saved), planned))


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
    on_event,
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
        replay=run.tasks,
    )
    grouped = views_by_task(adapted.views)
    demos, rows = group_rows(group, [len(grouped[t.id]) for t in group], saved)
    predictor = compiled(model, config.compile)
    for task in (t for t in group if t.id not in saved):
        t0 = time.perf_counter()
        canvas = task_canvas(task, run.canvas, bool(config.crop))
        per_test = predict_task(
            predictor, task, grouped[task.id], canvas, predict.batch_size, dist.device,
            run.loss, predict.empty_grid_votes, predict.stop_at_halt,
        )  # fmt: skip
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
        if on_event:
            on_event(TaskDone(task.id, adapted.demo_exact))
    fixed_s = time.perf_counter() - start - adapted.fit_s
    fit_pace = adapted.fit_s / max(adapted.fit_rows, 1)
    return GroupPace(fit_pace, fixed_s / max(rows, 1), adapted.time_limited)


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
        predictions[task.id] = placeholder(task)
        info[task.id] = {"skipped": Skip.TIME_SPENT.value}
    predictions = rank_predictions(predictions, rank)
    save_predictions(out_dir / PREDICTIONS, predictions, {**meta, "tasks": info})
    submission = submission_from_predictions(predictions, tasks)
    write_json_atomic(out_dir / SUBMISSION, submission)
    if not tasks.has_solutions:
        return None
    report = score_submission(submission, tasks)
    write_json_atomic(out_dir / SCORE, report.to_dict(), indent=True)
    return report
