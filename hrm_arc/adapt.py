"""Stage 1: test-time puzzle-embedding optimisation on each evaluation task's demonstration pairs.

The paper: "During evaluation, we first optimize the puzzle embeddings on the demonstration
examples using the same training procedure. We then freeze the embeddings and generate
predictions for the test examples." Every augmented view of every task gets a fresh embedding
row; the network is frozen and the same ACT training loop fits the rows to the view's
demonstration pairs, batched across tasks and views. The `embedding+full` strategy then also
fine-tunes the whole network on those demonstrations (embedding-only warm-up first).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .data.dataset import View, make_views, view_examples, views_by_task
from .data.tasks import Task
from .hrm_core.distributed import DistInfo
from .hrm_core.model import HRM
from .hrm_core.sampling import Examples, steps_for_epochs
from .hrm_core.tokens import PAD
from .hrm_core.trainer import MAX_SEED, TrainConfig, Trainer
from .predict import compiled, forward_all_segments
from .text import count

log = logging.getLogger(__name__)
STRATEGIES = ("embedding", "embedding+full", "pretrained")
INITS = ("zero", "mean")
INHERITED = {  # adaptation's settings from pretraining's (its names), unless given
    "puzzle_emb_lr": "puzzle_emb_lr",
    "puzzle_emb_weight_decay": "puzzle_emb_weight_decay",
    "full_lr": "lr",
}


@dataclass
class AdaptConfig:
    augmentations: int = 8
    """Unique views per task, each with its own fresh embedding."""
    epochs: float = 100.0
    """Times each demonstration pair of each view is drawn into a batch; 0 = no adaptation.
    Steps follow from it, so every embedding gets the same number of updates whatever the
    number of views or tasks in a group: a fixed step count starves the embeddings as the views
    grow (benchmarks/README.md)."""
    batch_size: int = 64
    puzzle_emb_lr: float = 3e-2
    puzzle_emb_weight_decay: float = 0.1
    warmup_steps: int = 0
    strategy: str = "embedding"
    full_epochs: float = 0.0
    """`embedding+full`: epochs of whole-network fine-tuning after the embedding warm-up."""
    full_lr: float = 1e-4
    """Step size of that fine-tuning; `following` takes pretraining's peak step, which fit the
    demonstrations best of three on both adaptation benchmarks (benchmarks/README.md)."""
    replay: float = 0.0
    """`embedding+full`: views of pretraining's tasks (`PretrainedRun.tasks`), with their
    pretrained embeddings, fine-tuned beside the demonstrations, per adapted view; 0: none. The
    combined setup learns the demonstrations beside the training tasks, as this does. None by
    default: it lifted generated puzzles, not real ARC (benchmarks/README.md). Each full epoch
    then draws (1 + replay) times the rows."""
    stop_fitted_every: float = 0.0
    """Every so many epochs, the views that predict all their demonstrations exactly, at this
    check and the one before, stop fitting (their embeddings are kept); 0: every view fits all
    its epochs. The views that never fit run on, so it saves the others' epochs."""
    init: str = "mean"
    """Fresh rows start at the pretrained table's mean or at zero (the paper's initialisation).
    The mean is ahead on unseen puzzle rules on average, within noise per run
    (benchmarks/README.md)."""
    translate: bool = True
    """Place demonstration pairs at random offsets, as pretraining did."""
    crop: bool | None = None
    """Run each task's views, in both stages, on the smallest of a few canvases that holds the
    task's grids (cut from the full canvas's corner; see `DataConfig.crop`); None: as the run
    was pretrained (an imported official checkpoint: the full canvas)."""
    seed: int = 0
    compile: bool = False
    """torch.compile the model for fitting, the demonstration check and prediction: on a GPU
    about twice the pace, after some compiling at the start (benchmarks/README.md; under a time
    budget, the first group's measured pace includes it, so the next groups are planned a little
    short). Candidates can differ by rounding, as with the group size, so a rerun may continue
    with or without it."""

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"AdaptConfig.strategy must be one of {STRATEGIES}, got {self.strategy!r}"
            )
        if self.init not in INITS:
            raise ValueError(f"AdaptConfig.init must be one of {INITS}, got {self.init!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"AdaptConfig.seed must be in [0, {MAX_SEED}], got {self.seed}")
        for name in ("augmentations", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"AdaptConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("epochs", "full_epochs", "warmup_steps", "puzzle_emb_lr", "full_lr",
                     "puzzle_emb_weight_decay", "stop_fitted_every", "replay"):  # fmt: skip
            if not 0 <= getattr(self, name) < math.inf:  # NaN and inf too
                raise ValueError(
                    f"AdaptConfig.{name} must be a finite number >= 0, got {getattr(self, name)}"
                )
        if self.strategy == "embedding+full" and not self.full_epochs:
            raise ValueError(
                "strategy 'embedding+full' fine-tunes the network for full_epochs: give "
                "full_epochs > 0 (--full-epochs)"
            )
        for name, flag in (("full_epochs", "--full-epochs"), ("replay", "--replay")):
            if getattr(self, name) and self.strategy != "embedding+full":
                raise ValueError(
                    f"{name} ({flag}) applies to strategy 'embedding+full' only, "
                    f"not {self.strategy!r}"
                )

    @classmethod
    def following(cls, pretraining: TrainConfig, **settings) -> AdaptConfig:
        """`settings` over pretraining's step sizes and embedding weight decay (``pretraining``:
        the run's train config): the paper adapts "using the same training procedure", so a
        `paper` run adapts at its 1e-2 and a `tiny` one at its 3e-2."""
        inherited = {mine: getattr(pretraining, theirs) for mine, theirs in INHERITED.items()}
        return cls(**inherited | settings)

    @property
    def fitting_epochs(self) -> float:
        """Epochs that fit something: embedding epochs, plus full-network ones if they run, each
        counted as the rows it draws (its replayed rows too)."""
        if self.strategy == "pretrained":
            return 0.0
        if self.strategy == "embedding":
            return self.epochs
        return self.epochs + self.full_epochs * (1 + self.replay)


@dataclass
class Adapted:
    """The adapted views of a group of tasks and how well they fit their demonstrations."""

    views: list[View]
    demo_exact: float
    """Share of (view, demonstration pair) predicted exactly after adaptation."""
    fit_s: float = 0.0
    """Seconds spent fitting (what more or fewer epochs would change)."""
    fit_rows: int = 0
    """Demonstration rows drawn while fitting (steps x batch), what `fit_s` bought."""
    time_limited: bool = False
    """Fitting stopped at its time limit, short of the configured epochs."""


def fresh_table(pretrained: torch.Tensor, n_rows: int, init: str) -> torch.Tensor:
    """Rows for the new views: zeros, or the mean of the pretrained (non-blank) rows."""
    if init == "zero" or pretrained.shape[0] < 2:
        return pretrained.new_zeros(n_rows, pretrained.shape[1])
    mean = pretrained[1:].mean(0, keepdim=True)
    table = mean.expand(n_rows, -1).clone()
    table[0] = 0  # the blank row stays blank
    return table


def adapt_tasks(
    model: HRM,
    tasks: Sequence[Task],
    canvas: int,
    config: AdaptConfig,
    dist: DistInfo,
    on_log: Callable[[int, dict], None] | None = None,
    pretrained: Sequence[View] = (),
    loss: str = "stablemax",
    time_limit_s: float | None = None,
    replay: Sequence[Task] = (),
) -> Adapted:
    """Fit fresh embeddings (and with `embedding+full`, the network) to the tasks' demonstrations.

    The model's embedding table is replaced by rows for these tasks' views. With the
    `pretrained` strategy nothing is fitted: the tasks' views from `pretrained` (the run's
    identifier map) are used as pretraining left them. `loss` should be pretraining's: the
    paper adapts "using the same training procedure". Fitting stops after `time_limit_s`.
    Fine-tuning replays `config.replay` views per adapted view, drawn from the `pretrained`
    views of the `replay` tasks (pretraining's, as it trained them) other than these.
    """
    by_id = {t.id: t for t in tasks}
    start = time.perf_counter()
    # Exploration draws from torch's RNG: seeded from the group itself, a group adapts alike in
    # any run, on any rank, after any other group.
    group_seed = config.seed + zlib.crc32(" ".join(by_id).encode())
    torch.manual_seed(group_seed)
    rows, limited = 0, False
    if config.strategy == "pretrained":
        views = pretrained_views(tasks, pretrained, config.augmentations)
    else:
        views = make_views(tasks, config.augmentations, config.seed)
        replayed, replay_by_id = [], {}
        if config.replay:  # embedding+full only, as the config checks
            replay_by_id = {t.id: t for t in replay if t.id not in by_id}
            pool = [v for v in pretrained if v.task_id in replay_by_id]
            wanted = round(config.replay * len(views))
            replayed = drawn(pool, wanted, np.random.default_rng(group_seed))
        rows, limited = fit_fresh_embeddings(
            model, views, by_id | replay_by_id, canvas, config, dist, on_log, loss,
            time_limit_s, replayed,
        )  # fmt: skip
    fit_s = time.perf_counter() - start
    model.requires_grad_(False)
    demo = view_examples(views, by_id, "train", canvas, crop=bool(config.crop))
    exact = demo_exact(compiled(model, config.compile), demo, config.batch_size * 4, dist.device)
    return Adapted(views, exact, fit_s, rows, limited)


def fit_fresh_embeddings(
    model: HRM,
    views: list[View],
    by_id: dict[str, Task],
    canvas: int,
    config: AdaptConfig,
    dist: DistInfo,
    on_log,
    loss: str = "stablemax",
    time_limit_s: float | None = None,
    replayed: Sequence[View] = (),
) -> tuple[int, bool]:
    """Replace the table by fresh rows for `views` and fit them (and maybe the network), for at
    most `time_limit_s`; return the rows drawn and whether the time limit stopped the fitting.
    The `replayed` views (pretrained ones; their tasks too are in `by_id`) keep their rows and
    join the network's fine-tuning."""
    pretrained = model.puzzle_emb.weights.detach()  # where it is: a GPU's table can be GBs
    table = fresh_table(pretrained, len(views) + 1, config.init)
    kept = pretrained[torch.tensor([v.puzzle_id for v in replayed], dtype=torch.long,
                                   device=pretrained.device)]  # fmt: skip
    model.reset_puzzle_embeddings(len(table) + len(kept), torch.cat([table, kept]))
    replayed = [dataclasses.replace(v, puzzle_id=len(table) + i) for i, v in enumerate(replayed)]
    rng = np.random.default_rng(config.seed) if config.translate else None
    # One encoding, replayed views last, so the demonstrations' translations are those of a
    # run without replay.
    tuning = view_examples([*views, *replayed], by_id, "train", canvas, rng, bool(config.crop))
    examples = tuning.without(tuning.puzzle_ids >= len(table))
    # A batch larger than the group would repeat its rows, which adds nothing to a row's signed
    # update: each view then got fewer updates than its epochs, the fewer the smaller the group.
    batch = min(config.batch_size, len(examples))
    steps = steps_for_epochs(len(examples), batch, config.epochs)
    start = time.perf_counter()
    base = TrainConfig(
        steps=steps,
        batch_size=batch,
        lr=0.0,
        warmup_steps=config.warmup_steps,
        puzzle_emb_lr=config.puzzle_emb_lr,
        puzzle_emb_weight_decay=config.puzzle_emb_weight_decay,
        freeze_network=True,
        loss=loss,
        # Every view's embedding is its own unknown: drawing each demonstration of each view once
        # an epoch updates them all alike, where one view per task an epoch would leave most
        # views of a task untouched for hundreds of steps.
        sampling="examples",
        log_every=max(steps // 10, 1),
        seed=config.seed,
        compile=config.compile,
        time_limit_s=time_limit_s or 0.0,  # 0: none
    )
    trainers, cut = [], False
    if config.epochs:
        demos = None  # built only where a check will read them
        if 0 < config.stop_fitted_every < config.epochs:
            demos = view_examples(views, by_id, "train", canvas, crop=bool(config.crop))
        trainers, cut = fit_until_fitted(model, base, examples, demos, config, dist, on_log,
                                         time_limit_s)  # fmt: skip
    left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - start)
    no_time_left = left is not None and left <= 0
    full = config.strategy == "embedding+full" and config.full_epochs > 0
    if full and not no_time_left:
        model.requires_grad_(True)
        batch = min(config.batch_size, len(tuning))
        fine_tuning = dataclasses.replace(
            base,
            steps=steps_for_epochs(len(tuning), batch, config.full_epochs),
            batch_size=batch,
            lr=config.full_lr,
            freeze_network=False,
            warmup_steps=0,
            time_limit_s=left or 0.0,
        )
        trainers.append(Trainer(model, fine_tuning, tuning, dist))
        trainers[-1].fit(on_log=on_log)
    limited = cut or (full and no_time_left) or any(t.step < t.config.steps for t in trainers)
    return sum(t.step * t.config.batch_size for t in trainers), limited


def fit_until_fitted(
    model: HRM,
    base: TrainConfig,
    examples: Examples,
    demos: Examples | None,
    config: AdaptConfig,
    dist: DistInfo,
    on_log,
    time_limit_s: float | None,
) -> tuple[list[Trainer], bool]:
    """Stage 1's embedding epochs, in rounds of `stop_fitted_every` epochs (one round when 0):
    after each, the views whose `demos` (their demonstrations, untranslated; None when one
    round holds every epoch, so nothing is checked) came out exact at this check and the last
    leave the examples. Returns each round's trainer, and whether the time limit cut a round."""
    every = config.stop_fitted_every or config.epochs
    trainers, done, exact_before, start = [], 0.0, set(), time.perf_counter()
    while done < config.epochs and len(examples):
        epochs = min(every, config.epochs - done)
        left = None if time_limit_s is None else time_limit_s - (time.perf_counter() - start)
        if left is not None and left <= 0:
            return trainers, True
        batch = min(base.batch_size, len(examples))  # fewer views left: no repeated rows
        round_config = dataclasses.replace(
            base,
            steps=steps_for_epochs(len(examples), batch, epochs),
            batch_size=batch,
            warmup_steps=base.warmup_steps if not trainers else 0,
            time_limit_s=left or 0.0,
        )
        trainers.append(Trainer(model, round_config, examples, dist))
        trainers[-1].fit(on_log=on_log)
        done += epochs
        if done >= config.epochs or trainers[-1].stop_reason is not None:
            break
        exact = exact_views(model, demos, base.batch_size * 4, dist.device)
        fitted, exact_before = sorted(exact & exact_before), exact
        examples = examples.without(np.isin(examples.puzzle_ids, fitted))
        demos = demos.without(np.isin(demos.puzzle_ids, fitted))
    return trainers, False


def drawn(views: Sequence[View], n: int, rng: np.random.Generator) -> list[View]:
    """`n` of `views` (all when fewer) at random, in their order."""
    picked = rng.choice(len(views), min(n, len(views)), replace=False)
    return [views[i] for i in sorted(picked)]


def pretrained_views(tasks: Sequence[Task], views: Sequence[View], n: int) -> list[View]:
    """Up to `n` views per task that pretraining trained (the official combined setup)."""
    grouped = check_pretrained(tasks, views)
    return [v for t in tasks for v in grouped[t.id][:n]]


def check_pretrained(
    tasks: Sequence[Task],
    views: Sequence[View],
    trained_alike: Callable[[Task], bool] = lambda task: True,
) -> dict[str, list[View]]:
    """Refuse a task pretraining gave no views, or one whose demonstrations are not those it
    trained under the task's id (`trained_alike`, as `PretrainedRun.trained_alike`), as another
    revision of a set may. Returns the views by task."""
    grouped = views_by_task(views)
    missing = [t.id for t in tasks if t.id not in grouped]
    if missing:
        raise ValueError(
            f"strategy 'pretrained' needs tasks whose demonstrations were pretrained "
            f"(pretrain --include-eval-demos); this run has no views of {missing[:5]}"
        )
    changed = [t.id for t in tasks if not trained_alike(t)]
    if changed:
        raise ValueError(
            f"strategy 'pretrained': the demonstrations of {count(changed, 'task')} "
            f"({', '.join(changed[:5])}) differ from those pretraining trained under the same "
            "ids, so their pretrained views answer another puzzle: adapt them with strategy "
            "embedding"
        )
    return grouped


def demo_exact(model: HRM, demo: Examples, batch_size: int, device: torch.device) -> float:
    """Share of examples whose every supervised token (colours and EOS) is predicted exactly."""
    return float(exact_examples(model, demo, batch_size, device).mean()) if len(demo) else 0.0


def exact_views(model: HRM, demo: Examples, batch_size: int, device: torch.device) -> set[int]:
    """The puzzle ids of the views whose every example `demo` holds is predicted exactly."""
    exact = exact_examples(model, demo, batch_size, device)
    return set(np.unique(demo.puzzle_ids).tolist()) - set(demo.puzzle_ids[~exact].tolist())


def exact_examples(model: HRM, demo: Examples, batch_size: int, device) -> np.ndarray:
    """(N,) whether each example's every supervised token (colours and EOS) comes out exact."""
    exact, sides = np.zeros(len(demo), dtype=bool), demo.side_of_each()
    for side in np.unique(sides):  # a batch runs on one canvas
        same = np.flatnonzero(sides == side)
        for start in range(0, len(same), batch_size):
            rows = same[start : start + batch_size]
            inputs, labels = demo.take(rows)
            logits, _ = forward_all_segments(model, inputs, demo.puzzle_ids[rows], device)
            predicted = logits.argmax(-1).cpu().numpy()
            exact[rows] = np.all((predicted == labels) | (labels == PAD), axis=1)
    return exact
