"""Pretraining: tasks -> augmented views -> token examples -> HRM, and the run directory it leaves.

A run directory holds `checkpoint.pt` (everything a later stage needs: weights, embedding table,
optimiser and RNG states, configs, canvas and the identifier map), `config.json` (the resolved
configuration, for people) and `metrics.jsonl`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .data.augment import Augmentation
from .data.dataset import View, make_views, view_examples, views_by_task
from .data.encoding import VOCAB_SIZE, canvas_for
from .data.tasks import Task, TaskSet
from .errors import DatasetError
from .files.atomic import remove_cut_writes_in
from .files.jsonio import read_json, write_json_atomic
from .hrm_core import HRM, PRESETS, HRMConfig
from .hrm_core.checkpoint import CheckpointError, load_checkpoint, load_model_state
from .hrm_core.distributed import DistInfo
from .hrm_core.losses import LOSSES
from .hrm_core.sampling import Examples, epoch_size, steps_for_epochs
from .hrm_core.trainer import (
    CHECKPOINT,
    METRICS,
    TRAIN_PRESETS,
    TrainConfig,
    Trainer,
    stop_on_signals,
)
from .overrides import apply_overrides
from .predict import vote_task
from .score import score_submission
from .submission import submission_from_predictions
from .text import changed_fields, count
from .vote import rank_candidates

log = logging.getLogger(__name__)
CONFIG = "config.json"
RUN_FILES = (CHECKPOINT, CONFIG, METRICS)
# Views per task: the official 1000 at paper scale; on a CPU few views learn faster (DESIGN §3).
PRESET_AUGMENTATIONS = {"paper": 1000, "small": 8, "tiny": 8}


@dataclass
class PretrainData:
    views: list[View]
    examples: Examples
    canvas: int
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
    examples = view_examples(views, by_id, "train", canvas, rng)
    heldout, eval_tasks = scorable(train_tasks), scorable(eval_demo_tasks)
    return PretrainData(
        views, examples, canvas, heldout, eval_tasks, test_pairs_trained, demo_digests
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
            per_test = vote_task(model, task, grouped[task.id], data.canvas, batch_size, device)
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
        "datasets": specs,
        "views": [(v.task_id, v.augmentation.name, v.puzzle_id) for v in data.views],
        "examples_digest": data.examples.digest(),
        "test_pairs_trained": data.test_pairs_trained,
        "demo_digests": data.demo_digests,
    }


def check_resumes(state: dict, path: Path, extra: dict, model_config: HRMConfig) -> None:
    """Refuse a checkpoint that trained other data or another model than this run would."""
    try:
        views = [tuple(v) for v in state.get("views", [])]
        canvas = int(state.get("canvas", extra["canvas"]))
        changed = changed_fields(state["model_config"], dataclasses.asdict(model_config), "model.")
    except (TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({e!r})") from None
    if not isinstance(state.get("train_config"), dict):
        raise CheckpointError(f"{path}: checkpoint metadata is damaged (train_config)")
    same_specs = state.get("datasets") == extra["datasets"]
    if views == extra["views"] and same_specs and canvas != extra["canvas"]:  # examples differ
        raise CheckpointError(
            f"{path}: it trained on a {canvas}x{canvas} canvas, this run's is "
            f"{extra['canvas']}x{extra['canvas']}: resume with --canvas {canvas}"
        )
    digest = extra["examples_digest"]
    if views != extra["views"] or state.get("examples_digest", digest) != digest:
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


def pretrain(
    run_dir: str | Path,
    model_config: HRMConfig,
    train_config: TrainConfig,
    data: PretrainData,
    dist: DistInfo,
    specs: dict,
    resume: bool = False,
    on_log: Callable[[int, dict], None] | None = None,
    evaluate: Callable[[HRM], dict] | None = None,
) -> Trainer:
    """Train (or resume) and leave a complete run directory.

    SIGINT and SIGTERM end training at the next step boundary with a checkpoint, as the time
    limit does (the trainer's `stop_reason` says which), so `resume` loses nothing.
    """
    run_dir = Path(run_dir)
    torch.manual_seed(train_config.seed)
    model = HRM(model_config)
    extra = run_extra_state(data, specs)
    trainer = Trainer(model, train_config, data.examples, dist, run_dir, extra_state=extra)
    checkpoint = run_dir / CHECKPOINT
    if resume and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        check_resumes(state, checkpoint, extra, model_config)
        trainer.load_state_dict(state, checkpoint)
        now = dataclasses.asdict(train_config) | {"time_limit_s": None}  # a limit is per run
        before = state["train_config"] | {"time_limit_s": None}  # a dict: check_resumes saw to it
        changed = changed_fields(before, now, "train.")
        if changed and dist.is_main:  # meant (a longer run, a lower rate) or not: say so
            log.warning(
                "%s: resumed with other training settings: %s", checkpoint, "; ".join(changed)
            )
    elif checkpoint.exists():  # on every rank, so a refusal ends them all alike
        raise CheckpointError(
            f"{checkpoint} exists: pass --resume to continue it, or choose another --out"
        )
    else:
        refuse_foreign_logs(run_dir)
    if trainer.step >= train_config.steps:
        return trainer  # nothing to train: leave the run as it is
    if dist.is_main:
        remove_cut_writes_in(run_dir, RUN_FILES)  # the folder is this run's alone (CLI-locked)
        write_json_atomic(
            run_dir / CONFIG,
            {
                "model": dataclasses.asdict(model_config),
                "train": dataclasses.asdict(train_config),
                **extra | {"views": len(data.views)},
            },
        )
    trainer.trim_metrics()
    with stop_on_signals(announce=dist.is_main) as stop_requested:
        trainer.fit(on_log, evaluate if dist.is_main else None, stop_requested)
    if not train_config.checkpoint_every:  # else fit saved the last step already
        trainer.save()
    return trainer


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
    model: HRM
    canvas: int
    views: list[View]
    state: dict

    @property
    def train_config(self) -> dict:
        """How pretraining trained, which adaptation follows (its loss, its embedding step)."""
        return self.state["train_config"]

    @property
    def loss(self) -> str:
        return self.train_config["loss"]


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether `run_dir` holds a checkpoint to resume or adapt from."""
    return (Path(run_dir) / CHECKPOINT).exists()


def load_run(run_dir: str | Path, device: torch.device) -> PretrainedRun:
    """Rebuild the model and identifier map from a run directory's checkpoint."""
    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path)
    try:
        config = HRMConfig(**state["model_config"])
        views = [View(t, Augmentation.from_name(a), i) for t, a, i in state["views"]]
        canvas = int(state["canvas"])
        LOSSES[state["train_config"]["loss"]]  # adaptation trains with pretraining's loss
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({e!r})") from None
    model = HRM(config)
    # The weight average, when pretraining kept one, is what evaluation measured.
    averaged = state.get("model_averaged") or {}
    dense = {name for name, p in model.named_parameters() if p.requires_grad}
    if averaged and set(averaged) != dense:
        raise CheckpointError(f"{path}: its weight average does not cover the network's weights")
    load_model_state(model, {**state["model"], **averaged}, path)
    return PretrainedRun(model.to(device), canvas, views, state)


def check_pretrain_options(preset: str, overrides: list[str], seed: int = 0) -> None:
    """Refuse an unknown preset, a bad override or seed before the data is built (minutes at
    -a 1000); what depends on the data is checked as the configs are sized to it."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    train = dataclasses.replace(TRAIN_PRESETS[preset], seed=seed)
    apply_overrides({"model": PRESETS[preset], "train": train}, list(overrides))


def resolve_pretrain_configs(
    preset: str,
    overrides: list[str],
    data: PretrainData,
    *,
    steps: int | None = None,
    epochs: float | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    eval_every: int | None = None,
    checkpoint_every: int | None = None,
    seed: int = 0,
    compile: bool = False,
    world_size: int = 1,
) -> tuple[HRMConfig, TrainConfig]:
    """Preset, then explicit options, then `--set` overrides; sized to the data at the end."""
    check_pretrain_options(preset, overrides, seed)
    model = dataclasses.replace(
        PRESETS[preset], seq_len=data.canvas**2, num_puzzle_ids=len(data.views) + 1
    )
    explicit = {
        "batch_size": batch_size,
        "lr": lr,
        "eval_every": eval_every,
        "checkpoint_every": checkpoint_every,
    }
    train = dataclasses.replace(
        TRAIN_PRESETS[preset],
        seed=seed,
        compile=compile,
        **{k: v for k, v in explicit.items() if v is not None},
    )
    if steps is not None and epochs is not None:
        raise ValueError("give --steps or --epochs, not both")
    if epochs is not None and not 0 < epochs < math.inf:
        raise ValueError(f"--epochs must be a positive number, got {epochs}")
    if epochs is not None and any(o.split("=")[0].strip() == "train.steps" for o in overrides):
        raise ValueError("give --epochs or --set train.steps, not both")
    if steps is not None:
        train = dataclasses.replace(train, steps=steps)
    configs = apply_overrides({"model": model, "train": train}, list(overrides))
    model, train = configs["model"], configs["train"]
    if epochs is not None:  # after the overrides, which may change the batch or the sampling
        per_epoch = epoch_size(data.examples, train.sampling)
        train = dataclasses.replace(
            train, steps=steps_for_epochs(per_epoch, train.batch_size, epochs)
        )
    if model.seq_len != data.canvas**2 or model.num_puzzle_ids != len(data.views) + 1:
        raise ValueError(
            "model.seq_len and model.num_puzzle_ids follow the data; "
            "use --canvas and --augmentations instead"
        )
    if model.vocab_size != VOCAB_SIZE:
        raise ValueError(f"model.vocab_size is the encoding's {VOCAB_SIZE} (pad, end, 10 colours)")
    if train.batch_size % world_size:
        raise ValueError(f"batch size {train.batch_size} does not split over {world_size} ranks")
    return model, train
