"""Pretraining: tasks -> augmented views -> token examples -> HRM, left in a run directory."""

from __future__ import annotations

import dataclasses
import gc
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .data.dataset import View, make_views, view_examples, views_by_task
from .data.encoding import canvas_for, task_canvas
from .data.tasks import MAX_SIDE, Task, TaskSet
from .errors import OutOfMemory
from .events import PretrainStart, TrainingLog
from .files.folder_lock import folder_lock
from .files.jsonio import write_json_atomic
from .hrm_core.checkpoint import CheckpointError, load_checkpoint
from .hrm_core.distributed import DistInfo, resolve_device
from .hrm_core.model import HRM, HRMConfig
from .hrm_core.sampling import Examples, epoch_size, steps_for_epochs
from .hrm_core.trainer import TrainConfig, Trainer, stop_on_signals
from .predict import vote_task
from .run_dir import CHECKPOINT, CONFIG, RunDirectory, pretraining_record, refuse_foreign_logs
from .score import score_submission
from .submission import submission_from_predictions
from .text import changed_fields, count
from .vote import rank_candidates

if TYPE_CHECKING:
    from .presets import Preset

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """How pretraining turns tasks into examples."""

    augmentations: int = 1000
    """Unique augmented views per task, the original among them, each its own puzzle id."""
    canvas: int | None = None
    """Canvas side in cells; None: the smallest that holds every grid pretraining trains."""
    train_test_pairs: bool = False
    """Also train the training tasks' test pairs, as the official data builder does."""
    translate: bool = True
    """Place each pair at a random offset on the canvas, as the official builder does."""
    crop: bool = True
    """Run each task's examples on the smallest of a few canvases (multiples of 4, and the
    full one) that holds its grids, cut from the full canvas's top-left corner, every cell at
    its full-canvas position; False: every example on the full canvas, as the official code."""

    def __post_init__(self) -> None:
        if self.augmentations < 1:
            raise ValueError(f"DataConfig.augmentations must be >= 1, got {self.augmentations}")
        if self.canvas is not None and not 1 <= self.canvas <= MAX_SIDE:
            raise ValueError(f"DataConfig.canvas must be in [1, {MAX_SIDE}], got {self.canvas}")


@dataclass
class PretrainData:
    views: list[View]
    examples: Examples
    canvas: int
    crop: bool
    """Each task runs on its `task_canvas` (else on `canvas`)."""
    heldout: TaskSet
    """Training tasks whose test pairs (never trained on) measure progress."""
    eval_tasks: TaskSet
    """Evaluation tasks of the combined setup with known test outputs: their test pairs (only
    the demonstrations are trained) give the score the official run reports."""
    test_pairs_trained: list[str]
    """Training tasks whose solved test pairs were trained (`train_test_pairs`): a task of the
    same id adapted to later is scored on answers pretraining saw."""
    demo_digests: dict[str, str]
    """Each task's `digest(with_tests=False)`, as given: the `pretrained` adaptation strategy
    refuses a task of the same id with other demonstrations."""


def build_pretraining_data(
    train_tasks: TaskSet,
    n_augmentations: int,
    seed: int,
    canvas: int | None = None,
    eval_demo_tasks: TaskSet | None = None,
    translate: bool = True,
    train_test_pairs: bool = False,
    crop: bool = False,
) -> PretrainData:
    """Views of the training tasks (and, for the official combined setup, of evaluation tasks,
    whose demonstration pairs alone are trained on); examples are demonstration pairs only.

    `train_test_pairs` trains the training tasks' solved test pairs too, as the official data
    builder does; none is then held out.
    """
    both = sorted(set(train_tasks.ids) & set(eval_demo_tasks.ids if eval_demo_tasks else []))
    if both:
        raise ValueError(
            f"{count(both, 'task')} in both the training and the evaluation-demonstration set "
            f"({', '.join(both[:5])}): each would be trained twice under two sets of identifiers"
        )
    given = [*train_tasks, *(eval_demo_tasks or [])]  # before their test pairs may join the demos
    demo_digests = {t.id: t.digest(with_tests=False) for t in given}
    test_pairs_trained = []
    if train_test_pairs:  # before sizing the canvas: the test outputs are trained too
        moved = TaskSet([test_pairs_as_demos(t) for t in train_tasks], train_tasks.name)
        test_pairs_trained = [
            t.id for t, m in zip(train_tasks, moved) if len(m.train) > len(t.train)
        ]
        train_tasks = moved
    every = [*train_tasks, *(eval_demo_tasks or [])]
    needed = canvas_for(every)
    if canvas is not None and canvas < needed:
        too_big = [t.id for t in every if canvas_for([t]) > canvas]
        raise ValueError(
            f"canvas {canvas} is smaller than a grid of {count(too_big, 'task')} "
            f"({', '.join(too_big[:5])}); the smallest canvas that holds them all is {needed}"
        )
    canvas = canvas or needed
    views = make_views(train_tasks, n_augmentations, seed)
    if eval_demo_tasks is not None:
        views += make_views(eval_demo_tasks, n_augmentations, seed, first_id=len(views) + 1)
    by_id = {t.id: t for t in every}
    rng = np.random.default_rng(seed) if translate else None
    examples = view_examples(views, by_id, "train", canvas, rng, crop)
    heldout, eval_tasks = scorable(train_tasks), scorable(eval_demo_tasks)
    return PretrainData(
        views, examples, canvas, crop, heldout, eval_tasks, test_pairs_trained, demo_digests
    )


def test_pairs_as_demos(task: Task) -> Task:
    """The task with its solved test pairs moved to the demonstrations."""
    solved = tuple(p for p in task.test if p.output is not None)
    unsolved = tuple(p for p in task.test if p.output is None)
    return dataclasses.replace(task, train=task.train + solved, test=unsolved)


def scorable(tasks: TaskSet | None) -> TaskSet:
    """The tasks whose test outputs are all known (none lacks one)."""
    tasks = tasks or TaskSet([])
    return TaskSet([t for t in tasks if t.test and t.has_solutions], name=tasks.name)


def heldout_evaluator(
    data: PretrainData,
    device: torch.device,
    max_tasks: int = 32,
    max_views: int = 8,
    batch_size: int = 256,
) -> Callable[[HRM], dict] | None:
    """Score the test pairs pretraining never trains on, through the tasks' own views: per-view
    exact accuracy and the voted score, `eval_*` for the training tasks' held-out pairs and
    `eval_tasks_*` for the combined setup's evaluation tasks. None when no test output is known
    (a Kaggle file without solutions)."""
    # An even spread over the (id-sorted) tasks, so every family or source is represented.
    scored = {
        prefix: tasks[:: max(1, len(tasks) // max_tasks)][:max_tasks]
        for prefix, tasks in (("eval", data.heldout), ("eval_tasks", data.eval_tasks))
        if tasks
    }
    if not scored:
        return None
    grouped = {k: v[:max_views] for k, v in views_by_task(data.views).items()}

    def score(model: HRM, tasks: TaskSet) -> tuple[float, float]:
        predictions, right, total = {}, 0, 0
        for task in tasks:
            canvas = task_canvas(task, data.canvas, data.crop)
            per_test = vote_task(model, task, grouped[task.id], canvas, batch_size, device)
            for pair, candidates in zip(task.test, per_test):
                right += sum(c.votes for c in candidates if np.array_equal(c.grid, pair.output))
                total += len(grouped[task.id])  # a view with no grid voted for none
            predictions[task.id] = [rank_candidates(c, "votes") for c in per_test]
        report = score_submission(submission_from_predictions(predictions), tasks)
        return right / max(total, 1), report.overall

    def evaluate(model: HRM) -> dict:
        metrics = {}
        for prefix, tasks in scored.items():
            view_exact, arc_score = score(model, tasks)
            metrics |= {f"{prefix}_view_exact": view_exact, f"{prefix}_arc_score": arc_score}
        model.train()
        return metrics

    return evaluate


def run_extra_state(data: PretrainData, specs: dict) -> dict:
    """What a later stage needs besides weights: canvas and the identifier map."""
    return {
        "canvas": data.canvas,
        "crop": data.crop,
        "datasets": specs,
        "views": [v.to_record() for v in data.views],
        "examples_digest": data.examples.digest(),
        "test_pairs_trained": data.test_pairs_trained,
        "demo_digests": data.demo_digests,
    }


def check_resumes(state: dict, path: Path, extra: dict, model_config: HRMConfig) -> None:
    """Refuse a checkpoint that trained other data or another model than this run would."""
    try:
        views = [tuple(v) for v in state["views"]]
        canvas = int(state["canvas"])
        changed = changed_fields(state["model_config"], dataclasses.asdict(model_config), "model.")
        digest = state["examples_digest"]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({e!r})") from None
    if not isinstance(state.get("train_config"), dict):
        raise CheckpointError(f"{path}: checkpoint metadata is damaged (train_config)")
    same_specs = state.get("datasets") == extra["datasets"]
    if views == extra["views"] and same_specs and canvas != extra["canvas"]:  # examples differ
        raise CheckpointError(
            f"{path}: it trained on a {canvas}x{canvas} canvas, this run's is "
            f"{extra['canvas']}x{extra['canvas']}: resume with --canvas {canvas}"
        )
    cropped = state.get("crop", False)  # checkpoints from before cropping trained full ones
    if cropped != extra["crop"]:
        then, now = ("cropped", "full") if cropped else ("full", "cropped")
        raise CheckpointError(
            f"{path}: it trained {then} canvases, this run would train {now} ones: resume "
            f"with {'--crop' if cropped else '--full-canvas'}"
        )
    if views != extra["views"] or digest != extra["examples_digest"]:
        what = (
            f"{count(views, 'task view')} where this run builds {len(extra['views'])}"
            if len(views) != len(extra["views"])
            else "other task views or pairs"
        )
        raise CheckpointError(
            f"{path}: it trained {what}; resume with the same --dataset, --include-eval-demos, "
            "--train-test-pairs, -a and --seed"
        )
    if changed:
        raise CheckpointError(
            f"{path}: model config differs from this run's ({'; '.join(changed)}): resume with "
            "the same preset, --canvas and overrides"
        )


def sized_configs(
    preset: Preset, data: PretrainData, epochs: float | None = None, world_size: int = 1
) -> tuple[HRMConfig, TrainConfig]:
    """The preset's model sized to the data (canvas, views), and its training to `epochs` of
    the data when given."""
    model = dataclasses.replace(
        preset.model, seq_len=data.canvas**2, num_puzzle_ids=len(data.views) + 1
    )
    if data.crop and model.mlp_t:
        raise ValueError(
            "model.mlp_t mixes a fixed number of positions, so it runs on the full canvas only: "
            "pretrain with --full-canvas (data.crop=false)"
        )
    train = preset.train
    if epochs is not None:
        if not 0 < epochs < math.inf:
            raise ValueError(f"epochs must be a positive number, got {epochs}")
        per_epoch = epoch_size(data.examples, train.sampling)
        train = dataclasses.replace(
            train, steps=steps_for_epochs(per_epoch, train.batch_size, epochs)
        )
    if train.batch_size % world_size:
        raise ValueError(
            f"train.batch_size {train.batch_size} does not split over {world_size} ranks"
        )
    return model, train


@dataclass(frozen=True)
class PretrainResult:
    """Where a pretraining call left its run."""

    step: int
    start_step: int
    """The step the call started from (a resumed checkpoint's, or 0)."""
    steps: int
    stop_reason: str | None
    """Why it ended before `steps` ("time limit", "stop requested"), or None."""
    stop_signal: int
    """The signal that stopped it, else 0 (a caller exits with 128 + it)."""


def pretrain(
    run_dir: str | Path,
    tasks: TaskSet,
    preset: Preset | str = "tiny",
    *,
    eval_demo_tasks: TaskSet | None = None,
    epochs: float | None = None,
    resume: bool = False,
    dist: DistInfo | None = None,
    specs: dict | None = None,
    on_event: Callable[[PretrainStart | TrainingLog], None] | None = None,
) -> PretrainResult:
    """Pretrain (or resume) on `tasks` under `preset`, leaving a complete run directory.

    Args:
        preset: a `Preset` (`PRESETS[name].configured(...)` for other settings) or its name.
        eval_demo_tasks: evaluation tasks whose demonstrations are trained too (the official
            combined setup).
        epochs: train for so many epochs of the data instead of `preset.train.steps`.
        dist: this process's place under torchrun; one process on the best device by default.
        specs: how the datasets were named, recorded so that a resume can be checked.
        on_event: told of the run's start (main rank) and of every logged step.

    SIGINT and SIGTERM end training at the next step boundary with a checkpoint, as the time
    limit does (`stop_reason` says which), so `resume` loses nothing.
    """
    from .presets import get_preset

    preset = get_preset(preset) if isinstance(preset, str) else preset
    dist = dist or DistInfo(0, 1, resolve_device())
    run_dir = Path(run_dir)
    d = preset.data
    data = build_pretraining_data(
        tasks, d.augmentations, preset.train.seed, d.canvas, eval_demo_tasks, d.translate,
        d.train_test_pairs, d.crop,
    )  # fmt: skip
    model_config, train_config = sized_configs(preset, data, epochs, dist.world_size)
    evaluate = heldout_evaluator(data, dist.device)
    if dist.is_main:
        warn_of_settings(train_config, evaluate is not None)
        if on_event:
            resuming = resume and (run_dir / CHECKPOINT).exists()
            on_event(start_event(tasks, eval_demo_tasks, data, train_config, dist, resuming))
    specs = specs or {
        "train": [tasks.name],
        "eval_demos": [eval_demo_tasks.name] if eval_demo_tasks else [],
        "train_test_pairs": d.train_test_pairs,
    }
    with folder_lock(run_dir, dist):
        try:
            trainer = train_run(
                run_dir, model_config, train_config, data, dist, specs, resume,
                on_event, evaluate,
            )  # fmt: skip
        except torch.cuda.OutOfMemoryError as e:
            advice = ("lower --batch-size, the global batch over all ranks (train.batch_size; "
                      "the paper preset's 768 is the official 8 GPUs x 96); --resume continues "
                      "from the last checkpoint")  # fmt: skip
            raise OutOfMemory.advising(e, advice) from None
        result = PretrainResult(
            trainer.step, trainer.start_step, train_config.steps, trainer.stop_reason,
            trainer.stop_signal,
        )  # fmt: skip
        # DDP's reducer must go before its process group: freed after it, at exit, gloo's
        # worker thread and the main thread can deadlock on the GIL.
        del trainer
        gc.collect()
    return result


def warn_of_settings(train: TrainConfig, evaluates: bool) -> None:
    """Warn of settings that run but do not do what they seem to."""
    if train.warmup_steps > train.steps:
        log.warning(
            "the learning-rate warm-up (%d steps) is not over by the last step (%d): the rates "
            "never reach their set values; give more --steps or --set train.warmup_steps=N",
            train.warmup_steps,
            train.steps,
        )
    if train.eval_every and not evaluates:
        log.warning(
            "no test pair with a known output is held out from training: --eval-every "
            "evaluates nothing"
        )


def train_run(
    run_dir: Path,
    model_config: HRMConfig,
    train_config: TrainConfig,
    data: PretrainData,
    dist: DistInfo,
    specs: dict,
    resume: bool,
    on_event: Callable[[PretrainStart | TrainingLog], None] | None,
    evaluate: Callable[[HRM], dict] | None,
) -> Trainer:
    """Build the trainer, resume it if asked and there is a checkpoint, train and save."""
    torch.manual_seed(train_config.seed)
    extra = run_extra_state(data, specs)
    record = pretraining_record(
        train_config, data.canvas, extra["views"], data.test_pairs_trained, data.demo_digests,
        data.crop,
    )  # fmt: skip
    store = RunDirectory(run_dir, record)
    trainer = Trainer(HRM(model_config), train_config, data.examples, dist, store, extra)
    checkpoint = run_dir / CHECKPOINT
    if resume and checkpoint.exists():
        resume_trainer(trainer, checkpoint, extra, model_config, dist)
    elif checkpoint.exists():  # on every rank, so a refusal ends them all alike
        raise CheckpointError(
            f"{checkpoint} exists: pass --resume to continue it, or choose another --out"
        )
    else:
        refuse_foreign_logs(run_dir)
    if trainer.step >= train_config.steps:
        return trainer  # nothing to train: leave the run as it is
    if dist.is_main:
        store.remove_cut_writes()  # the folder is this run's alone: it is locked
        configs = {"model": model_config, "train": train_config}
        config = {name: dataclasses.asdict(c) for name, c in configs.items()}
        write_json_atomic(run_dir / CONFIG, config | extra | {"views": len(data.views)})
    trainer.trim_metrics()

    def on_log(step: int, record: dict) -> None:
        if on_event and dist.is_main:
            on_event(TrainingLog.from_record(record, train_config.steps))
    with stop_on_signals(announce=dist.is_main) as stop_requested:
        trainer.fit(on_log, evaluate if dist.is_main else None, stop_requested)
    if not train_config.checkpoint_every:  # else fit saved the last step already
        trainer.save()
    return trainer


def resume_trainer(
    trainer: Trainer, checkpoint: Path, extra: dict, model_config: HRMConfig, dist: DistInfo
) -> None:
    """Load the checkpoint into `trainer`, refusing one of other data or another model, and
    warning of other training settings (meant, as a longer run or a lower rate, or not)."""
    state = load_checkpoint(checkpoint)
    check_resumes(state, checkpoint, extra, model_config)
    trainer.load_state_dict(state, checkpoint)
    now = dataclasses.asdict(trainer.config) | {"time_limit_s": None}  # a limit is per run
    before = state["train_config"] | {"time_limit_s": None}  # a dict: check_resumes saw to it
    changed = changed_fields(before, now, "train.")
    if changed and dist.is_main:
        log.warning("%s: resumed with other training settings: %s", checkpoint, "; ".join(changed))


def start_event(
    tasks: TaskSet,
    eval_demo_tasks: TaskSet | None,
    data: PretrainData,
    train: TrainConfig,
    dist: DistInfo,
    resuming: bool,
) -> PretrainStart:
    return PretrainStart(
        tasks=len(tasks),
        eval_demo_tasks=len(eval_demo_tasks or ()),
        views=len(data.views),
        examples=len(data.examples),
        canvas=data.canvas,
        crop=data.crop,
        steps=train.steps,
        batch_size=train.batch_size,
        warmup_steps=train.warmup_steps,
        world_size=dist.world_size,
        device=str(dist.device),
        resuming=resuming,
    )
