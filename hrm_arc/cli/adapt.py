"""`hrm-arc adapt-and-predict`: two-stage test-time adaptation, voting, a submission and a score."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import click
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..data.tasks import dataset_paths
from ..events import BudgetCut, Skip, TaskDone, TaskEvent, TaskResumed, TaskSkipped
from ..hrm_core.signals import signal_handlers
from ..text import count
from ..vote import RANKINGS
from .common import (
    SEED,
    ConfigFlag,
    Duration,
    config_flags,
    console,
    dataset_option,
    device_option,
    escaped_list,
    flag_values,
    interrupt,
    interrupted_exit,
    out_folder_option,
    plain_lines,
    reports_bad_input,
    safe_output,
    say,
    shown,
    solutions_option,
    warn,
)
from .score import print_score

FLAGS = (
    ConfigFlag(("--augmentations", "-a"), "adapt.augmentations", "Unique views per task, each "
               "with a fresh embedding.", {"type": click.IntRange(min=1)}),
    ConfigFlag(("--epochs",), "adapt.epochs", "Times each demonstration of each view is drawn "
               "into a batch; 0 fits nothing (with --init zero, the blank-embedding baseline).",
               {"type": float}),
    ConfigFlag(("--lr",), "adapt.puzzle_emb_lr", "Embedding (SignSGD) step size; the weight "
               "decay follows pretraining's too.", {"type": float}),
    ConfigFlag(("--strategy",), "adapt.strategy", "embedding: the paper's procedure, network "
               "frozen; embedding+full: then fine-tune the network; pretrained: no adaptation, "
               "use the views pretraining learned (the official combined setup, after pretrain "
               "--include-eval-demos).", {}),
    ConfigFlag(("--full-epochs",), "adapt.full_epochs", "Whole-network epochs after the "
               "embedding ones, at pretraining's step size (--set adapt.full_lr=...); required "
               "by embedding+full.", {"type": float}),
    ConfigFlag(("--replay",), "adapt.replay", "embedding+full: views of the tasks pretraining "
               "trained (--replay-from), with their pretrained embeddings, fine-tuned beside "
               "each adapted view, as the combined setup learns the demonstrations beside them; "
               "each full epoch then costs (1 + this) times as much.", {"type": float}),
    ConfigFlag(("--init",), "adapt.init", "Fresh embeddings start at the pretrained table's "
               "mean (mean), or at zero (zero: the paper's start).", {}),
    ConfigFlag(("--rank",), "predict.rank", "votes (official: count, then mean q_halt, then the "
               "earliest view), logprob (summed log-probability over views: product of "
               "experts) or combined (count, then log-probability).",
               {"type": click.Choice(list(RANKINGS))}),
    ConfigFlag(("--empty-grid-votes",), "predict.empty_grid_votes", "A view whose output holds "
               "no grid votes for the empty grid, as the official evaluator counts it (it can "
               "take a top-2 place, submitted as a 1x1 zero grid, and is never right); without "
               "it such a view casts no vote.", {"is_flag": True}),
    ConfigFlag(("--stop-at-halt",), "predict.stop_at_halt", "Stage 2 stops each view at its "
               "first ACT segment whose q_halt says halt, as training does, instead of running "
               "every segment as the official evaluator does.", {"is_flag": True}),
    ConfigFlag(("--crop/--full-canvas",), "adapt.crop", "Run each task's views, in both "
               "stages, on the smallest of a few canvases that holds its grids, or on the "
               "run's full canvas.", {}),
    ConfigFlag(("--group-size",), "predict.group_size", "Tasks adapted together: more is faster "
               "per task, and takes more memory. The tasks of a group share adaptation batches, "
               "so candidates differ slightly with it.", {"type": click.IntRange(min=1)}),
    ConfigFlag(("--time-budget",), "predict.time_budget_s", "Wall-clock budget for this call, "
               "e.g. 11h or 90m. Each group of tasks gets an equal share of the time left: its "
               "fitting stops at its share less the measured cost of predicting, and its epochs "
               "shrink to what that buys at the measured pace. Tasks no time is left to predict "
               "get 1x1 zero attempts, are named at the end, and a rerun tries them.",
               {"type": Duration()}),
    ConfigFlag(("--compile",), "adapt.compile", "torch.compile the model: on a GPU about twice "
               "the pace, after some compiling. A rerun may continue with or without it.",
               {"is_flag": True}),
    ConfigFlag(("--seed",), "adapt.seed", "Picks the views, their translations and the batch "
               "order.", {"type": SEED}),
)  # fmt: skip


def default(key: str) -> str:
    """A flag's default as its help shows it."""
    from ..adapt import AdaptConfig
    from ..pipeline import PredictConfig
    from ..presets import per_preset, plain

    if key == "adapt.puzzle_emb_lr":
        return f"pretraining's: {per_preset('train.puzzle_emb_lr')}"
    if key == "adapt.crop":
        return "as the run was pretrained; an imported official checkpoint: full canvas"
    section, _, field = key.partition(".")
    return plain(getattr(AdaptConfig() if section == "adapt" else PredictConfig(), field))


@click.command("adapt-and-predict")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@dataset_option
@solutions_option
@out_folder_option(
    "out_dir",
    "Output directory: predictions.json, submission.json, score.json, tasks/ (one file a "
    "finished task), and settings.json (what a rerun must match to continue).",
)
@click.option(
    "--paper",
    is_flag=True,
    help="The paper's procedure as the official evaluator runs it: --strategy embedding "
    "--init zero -a 1000 --epochs 100 --rank votes --empty-grid-votes (options given beside it "
    "still apply).",
)
@config_flags(FLAGS, default)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any field after the options, e.g. --set adapt.batch_size=128 "
    "(sections adapt, predict).",
)
@click.option(
    "--replay-from",
    "replay_from",
    multiple=True,
    metavar="SPEC",
    help="The tasks the run was pretrained on (repeatable; e.g. arc-agi-1/training), for "
    "--replay to draw from; those pretraining did not train are left out.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Discard the predictions already in --out; without it a rerun continues them, and "
    "refuses if they were made with another checkpoint or other settings.",
)
@device_option
@reports_bad_input
def adapt_and_predict(run_dir, dataset, solutions, out_dir, paper, overrides, replay_from,
                      restart, device, **flags):  # fmt: skip
    """Two-stage test-time adaptation, then top-2 voting, a submission and (with solutions) a score.

    Stage 1 learns a fresh puzzle embedding for every augmented view of every task from its
    demonstration pairs (network frozen, unless --strategy embedding+full). Stage 2 runs the
    test inputs through every view, undoes each augmentation and votes. Finished tasks are
    saved as they go: rerun the same command after a crash and it continues. Tasks with a
    demonstration grid or test input larger than the run's canvas get 1x1 zero attempts, and
    are named at the end (if no task fits, it stops); a known test output larger than the
    canvas is warned of.

    \b
    Examples:
      hrm-arc adapt-and-predict runs/a -d arc-agi-1/evaluation --out preds/a
      hrm-arc adapt-and-predict runs/a -d kaggle_challenges.json --out preds/k --time-budget 11h
      hrm-arc adapt-and-predict runs/a -d arc-agi-1/evaluation --out preds/paper --paper
      hrm-arc adapt-and-predict runs/a -d arc-agi-1/evaluation --out preds/ft \\
          --strategy embedding+full --full-epochs 50 --replay 1 --replay-from arc-agi-1/training
    """
    from .. import pipeline
    from ..data.tasks import load_tasks, merge_task_sets
    from ..hrm_core.distributed import init_distributed, shutdown_distributed
    from ..out_dir import OUTPUTS, TASKS, count_saved
    from ..run_dir import load_run

    started = time.perf_counter()  # what --time-budget counts from
    datasets = [
        *dataset_paths(dataset, solutions),
        *(p for s in replay_from for p in dataset_paths(s)),
    ]
    safe_output(out_dir, "--out", inputs=[run_dir], datasets=datasets, emptied=TASKS,
                written=OUTPUTS)  # fmt: skip
    tasks = load_tasks(dataset, solutions)
    dist = init_distributed(device)
    run = load_run(run_dir, dist.device)
    if replay_from:
        run = run.with_tasks(merge_task_sets([load_tasks(spec) for spec in replay_from]))
    values = (pipeline.PAPER if paper else {}) | flag_values(FLAGS, flags)
    adapt, predict = pipeline.configure(run, values | {"predict.started": started}, overrides)
    if dist.is_main:
        describe(tasks, adapt, predict, dist)
    # Counted from the saved files, so that under torchrun it includes the other ranks' tasks.
    progress = TaskProgress(len(tasks), finished=lambda: count_saved(out_dir, tasks))
    try:
        # SIGTERM, what a scheduler sends before pre-empting a job, interrupts as Ctrl-C does.
        with signal_handlers(interrupt, signal.SIGTERM), shown(progress.bar, dist.is_main):
            report = pipeline.adapt_and_predict(
                run, tasks, out_dir, adapt, predict, dist,
                progress.on_event if dist.is_main else None, restart,
            )  # fmt: skip
            if dist.is_main:
                progress.catch_up()
    except KeyboardInterrupt as stop:
        if dist.is_main:  # under torchrun every rank is interrupted; one says so
            say_interrupted(count_saved(out_dir, tasks), tasks, out_dir, progress, restart)
        interrupted_exit(getattr(stop, "signum", signal.SIGINT))
    shutdown_distributed()
    if dist.is_main:
        report_end(out_dir, tasks, report, progress.skipped, run.canvas)


def describe(tasks, adapt, predict, dist) -> None:
    """What the run will do, the settings it took from pretraining included."""
    fits = ""
    if adapt.strategy != "pretrained":
        fits = f", {adapt.epochs:g} epochs at embedding lr {adapt.puzzle_emb_lr:g}"
    if adapt.strategy == "embedding+full":
        fits += f", then {adapt.full_epochs:g} of the network at lr {adapt.full_lr:g}"
        if adapt.replay:
            fits += f" beside {adapt.replay:g} replayed view(s) each"
    say(
        f"{count(tasks, 'task')}, up to {count(adapt.augmentations, 'view')} each; "
        f"strategy {adapt.strategy}{fits}; ranked by {predict.rank}; groups of "
        f"{predict.group_size} on {dist.world_size} x {dist.device}"
        + (", compiled" if adapt.compile else "")
    )


def say_interrupted(saved: int, tasks, out_dir: str, progress: TaskProgress, restart: bool):
    where = f"{saved} of {count(tasks, 'task')} saved in {escape(str(out_dir))}"
    if too_large := progress.skipped.get(Skip.TOO_LARGE):
        where += f" ({count(too_large, 'placeholder')} for tasks too large for the canvas)"
    say(f"interrupted: {where}" + ("" if restart else "; the same command continues"))


def report_end(out_dir, tasks, report, skipped: dict[Skip, list[str]], canvas: int) -> None:
    """The files written, the tasks not predicted (by reason) and the score (or why none)."""
    written = "predictions.json, submission.json" + (" and score.json" if report else "")
    say(f"wrote {escape(str(out_dir))}/: {written}")
    because = {
        Skip.TOO_LARGE: f"a grid larger than the run's {canvas}x{canvas} canvas",
        Skip.TIME_SPENT: Skip.TIME_SPENT.value,
    }
    for reason, ids in ((r, ids) for r, ids in skipped.items() if ids):
        warn(
            f"{len(ids)} of {count(tasks, 'task')} not predicted ({because[reason]}): "
            f"{escaped_list(ids)}"
        )
    if report is not None:
        print_score(report, f"{out_dir} on {tasks.name}")
    else:
        unsolved = [t.id for t in tasks if not t.has_solutions]
        say(
            f"not scored: {count(unsolved, 'task')} of the set "
            f"{'lacks' if len(unsolved) == 1 else 'lack'} test outputs "
            f"({escaped_list(unsolved, 5)}); for a Kaggle file, give --solutions",
        )


class TaskProgress:
    """A progress bar over tasks, advanced by the pipeline's events; it keeps which tasks were
    not predicted, by reason, and says once when a time budget first cut the fitting."""

    def __init__(self, total: int, finished: Callable[[], int] = lambda: 0) -> None:
        self.bar = Progress(
            TextColumn("[bold]adapt+predict"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.total, self.done, self.finished = total, 0, finished
        self.skipped: dict[Skip, list[str]] = {}
        self._bar_task = self.bar.add_task("tasks", total=total, last="")
        self._budget_said = False
        self._lines = plain_lines(every_s=0)

    def on_event(self, event: TaskEvent) -> None:
        if isinstance(event, BudgetCut):
            self._say_budget(event)
            return
        self.done += 1
        if isinstance(event, TaskDone):  # counted from the files: other ranks' tasks too
            self.done = max(self.done, self.finished())
            last = f"group demo exact {event.group_demo_exact:.2f}"
        elif isinstance(event, TaskResumed):
            last = "done earlier"
            if event.skipped is not None:
                self.skipped.setdefault(event.skipped, []).append(event.task_id)
        elif isinstance(event, TaskSkipped):
            last = f"skipped ({event.reason.value})"
            self.skipped.setdefault(event.reason, []).append(event.task_id)
        last = f"{escape(event.task_id)}: {last}"
        self.bar.update(self._bar_task, completed=self.done, last=last)
        self._lines(f"adapt+predict {self.done}/{self.total} {last}")

    def catch_up(self) -> None:
        """Count the tasks other ranks saved after this rank's last one."""
        if (done := self.finished()) > self.done:
            self.done = done
            self.bar.update(self._bar_task, completed=done, last="the other ranks' tasks")
            self._lines(f"adapt+predict {done}/{self.total} the other ranks' tasks")

    def _say_budget(self, cut: BudgetCut) -> None:
        if self._budget_said:  # nearly every group fits its own share: said once
            return
        self._budget_said = True
        planned = "/".join(f"{e:g}" for e in cut.planned)
        self.bar.console.print(
            f"time budget: adaptation fits fewer than its {planned} epochs (embedding/full) "
            f"from task {escape(cut.task_id)} on; each task's file records the epochs it "
            "fitted (epochs_fitted)"
        )
