"""`hrm-arc pretrain`: an HRM trained on augmented ARC tasks, left in a run directory."""

from __future__ import annotations

import math
import signal
from pathlib import Path

import click
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..data.tasks import MAX_SIDE, dataset_paths
from ..events import PretrainStart, TrainingLog
from ..text import count
from .common import (
    SEED,
    ConfigFlag,
    DeferredHelp,
    Duration,
    config_flags,
    console,
    device_option,
    flag_values,
    in_demo,
    interrupted_exit,
    out_folder_option,
    plain_lines,
    reports_bad_input,
    safe_output,
    say,
    shown,
)

FLAGS = (
    ConfigFlag(("--augmentations", "-a"), "data.augmentations", "Unique augmented variants per "
               "task, the original among them, each its own puzzle identifier.",
               {"type": click.IntRange(min=1)}),
    ConfigFlag(("--canvas",), "data.canvas", "Canvas side in cells; none: the smallest that "
               "holds every demonstration grid and test input (test outputs count only with "
               "--train-test-pairs, which trains them).", {"type": click.IntRange(1, MAX_SIDE)}),
    ConfigFlag(("--crop/--full-canvas",), "data.crop", "Run each task on the smallest of a few "
               "canvases (multiples of 4, and the full one) that holds its grids, cut from the "
               "full canvas's corner, or every example on the full canvas, as the official "
               "code does.", {}),
    ConfigFlag(("--steps",), "train.steps", "Optimiser steps, one ACT segment each (paper-scale "
               "runs want --epochs).", {"type": click.IntRange(min=1)}),
    ConfigFlag(("--batch-size",), "train.batch_size", "Global batch, split across ranks.",
               {"type": click.IntRange(min=1)}),
    ConfigFlag(("--lr",), "train.lr", "Dense (Adam-atan2) learning rate.", {"type": float}),
    ConfigFlag(("--eval-every",), "train.eval_every", "Steps between held-out evaluations, the "
               "last step included; 0: never.", {"type": click.IntRange(min=0)}),
    ConfigFlag(("--checkpoint-every",), "train.checkpoint_every", "Steps between checkpoints; "
               "the last step is always saved; 0: only it.", {"type": click.IntRange(min=0)}),
    ConfigFlag(("--time-limit",), "train.time_limit_s", "Stop after this long (e.g. 25m, 11h), "
               "checkpointing as at the last step; 0: no limit.", {"type": Duration()}),
    ConfigFlag(("--seed",), "train.seed", "Picks the views, their translations, the initial "
               "weights and the batch order.", {"type": SEED}),
    ConfigFlag(("--compile",), "train.compile", "torch.compile the model.", {"is_flag": True}),
    ConfigFlag(("--train-test-pairs",), "data.train_test_pairs", "Also train the training "
               "tasks' test pairs, as the official data builder does (with --include-eval-demos, "
               "its split, less ConceptARC); none is held out for --eval-every.",
               {"is_flag": True}),
)  # fmt: skip


@click.command()
@click.option(
    "--dataset",
    "-d",
    "datasets",
    multiple=True,
    required=True,
    metavar="SPEC",
    help="Training tasks; repeat to train on several sets. Their test pairs are held "
    "out to measure progress (unless --train-test-pairs).",
)
@out_folder_option(
    "run_dir",
    "Run directory: model/ (what prediction needs), checkpoint.pt (to resume), config.json, "
    "metrics.jsonl.",
)
@click.option(
    "--preset",
    default="tiny",
    show_default=True,
    cls=DeferredHelp,
    help_text=lambda: "Model, training and augmentation settings, one of "
    f"{', '.join(presets().PRESETS)}: tiny and small for a CPU, paper for the paper's 27M "
    "model, trm for TRM's 7M recursive model.",
)
@config_flags(FLAGS, lambda key: presets().per_preset(key))
@click.option(
    "--epochs",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Alternative to --steps: epochs of the preset's train.sampling; with tasks (paper), "
    "counted as the official trainer counts, an epoch gives every task one random variant's "
    "pairs; with examples (tiny, small), every pair of every variant.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any config field after the options, e.g. --set model.hidden_size=256 "
    "--set train.lr=3e-4 (sections model, train, data).",
)
@click.option(
    "--include-eval-demos",
    "eval_demos",
    multiple=True,
    metavar="SPEC",
    help="Also train the demonstration pairs of these evaluation tasks (repeatable), each "
    "variant with its own identifier: the official 'combined' setup. --eval-every then scores "
    "their test pairs too (up to 32 tasks, 8 views each), as the official run does.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@device_option
@reports_bad_input
def pretrain(datasets, run_dir, preset, epochs, overrides, eval_demos, resume, device, **flags):
    """Pretrain an HRM on augmented ARC tasks (CPU, one GPU, or several under torchrun).

    \b
    Examples:
      hrm-arc pretrain -d arc-agi-1/training --out runs/tiny --steps 2000
      hrm-arc pretrain -d arc-agi-1/training --out runs/tiny --steps 2000 --resume
      torchrun --nproc-per-node 8 -m hrm_arc.cli pretrain -d arc-agi-1/training \\
          --include-eval-demos arc-agi-1/evaluation --train-test-pairs --preset paper \\
          -a 1000 --epochs 100000 --eval-every 10000 --checkpoint-every 2000 --out runs/paper
    """
    from .. import pretraining as library
    from ..data.tasks import load_tasks, merge_task_sets
    from ..hrm_core.distributed import init_distributed, shutdown_distributed
    from ..run_dir import RUN_FILES, has_checkpoint

    specs = [*datasets, *eval_demos]
    datasets_read = [p for spec in specs for p in dataset_paths(spec)]
    safe_output(run_dir, "--out", datasets=datasets_read, written=RUN_FILES)
    config = configured(preset, flag_values(FLAGS, flags), overrides, epochs)  # before the data
    tasks = merge_task_sets([load_tasks(spec) for spec in datasets])
    demo_tasks = merge_task_sets([load_tasks(spec) for spec in eval_demos]) if eval_demos else None
    dist = init_distributed(device)
    display = PretrainDisplay(preset, resume, run_dir)
    recorded = {"train": list(datasets), "eval_demos": list(eval_demos),
                "train_test_pairs": config.data.train_test_pairs}  # fmt: skip
    try:
        with shown(display.progress, dist.is_main):
            result = library.pretrain(
                run_dir, tasks, config, eval_demo_tasks=demo_tasks, epochs=epochs, resume=resume,
                dist=dist, specs=recorded, on_event=display.on_event if dist.is_main else None,
            )  # fmt: skip
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training began
        if dist.is_main:
            saved = has_checkpoint(run_dir)
            then = "--resume continues from the last checkpoint" if saved else "no checkpoint yet"
            say(f"stopped at once; {then}", err=True)
        interrupted_exit(signal.SIGINT)
    shutdown_distributed()
    if dist.is_main:
        report_end(run_dir, result)
    elif result.stop_signal:  # every rank exits as the signal that stopped them all
        interrupted_exit(result.stop_signal)


def configured(preset: str, values: dict, overrides: tuple[str, ...], epochs: float | None):
    """The preset with the options' values, then the `--set` overrides, applied."""
    keys = {item.partition("=")[0].strip() for item in overrides}
    if epochs is not None and not 0 < epochs < math.inf:
        raise ValueError(f"--epochs must be a positive number, got {epochs}")
    if epochs is not None and "train.steps" in values:
        raise ValueError("give --steps or --epochs, not both")
    if epochs is not None and "train.steps" in keys:
        raise ValueError("give --epochs or --set train.steps, not both")
    return presets().get_preset(preset).configured(values, list(overrides))


def presets():
    """The presets module, imported when needed: it loads torch."""
    from .. import presets

    return presets


def number(value: float | None) -> str:
    """Three decimals, or '-' for an average over nothing (no example finished yet)."""
    return "-" if value is None or value != value else f"{value:.3f}"


class PretrainDisplay:
    """What pretraining shows: its plan, then a progress bar (or lines, in a log) of its steps."""

    def __init__(self, preset: str, resume: bool, run_dir: str) -> None:
        self.preset, self.resume, self.run_dir = preset, resume, run_dir
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.bar = None
        self.line = plain_lines(every_s=30)

    def on_event(self, event: PretrainStart | TrainingLog) -> None:
        if isinstance(event, PretrainStart):
            self.start(event)
        else:
            self.log(event)

    def start(self, run: PretrainStart) -> None:
        demos = f" + the demos of {count(run.eval_demo_tasks, 'evaluation task')}"
        canvas = f"a {run.canvas}x{run.canvas} canvas"
        if run.crop:
            canvas = f"canvases of up to {run.canvas}x{run.canvas}, each task on its smallest"
        self.progress.console.print(
            f"{count(run.tasks, 'task')}{demos if run.eval_demo_tasks else ''}, "
            f"{count(run.views, 'view')}, {count(run.examples, 'example')} on {canvas}; "
            f"preset {self.preset}, "
            f"{count(run.steps, 'step')} of batch {run.batch_size} on {run.world_size} x "
            f"{run.device}"
        )
        if self.resume and not run.resuming:
            say(f"no checkpoint in {escape(str(self.run_dir))} yet: starting a new run")
        self.bar = self.progress.add_task("pretrain", total=run.steps, stats="")

    def log(self, log: TrainingLog) -> None:
        stats = (
            f"loss {number(log.loss)} acc {number(log.accuracy)} "
            f"exact {number(log.exact_accuracy)} {log.examples_per_s:.0f} ex/s "
            f"{log.segments_per_s:.0f} seg/s"
        )
        if log.heldout_score is not None:
            stats += f" | held-out ARC {log.heldout_score:.3f}"
        if log.eval_tasks_score is not None:
            stats += f" | evaluation tasks ARC {log.eval_tasks_score:.3f}"
        self.progress.update(self.bar, completed=log.step, stats=stats)
        self.line(f"pretrain step {log.step}/{log.steps} {stats}", last=log.last)


def report_end(run_dir: str, result) -> None:
    """What the run left and, if it stopped early, how it continues (exits as the signal)."""
    from ..run_dir import MODEL, RUN_FILES

    names = (f"{MODEL}/", *RUN_FILES)
    saved = [n for n in names if (Path(run_dir) / n.rstrip("/")).exists()]
    say(f"run saved in [bold]{escape(str(run_dir))}[/] ({', '.join(saved)})")
    if result.stop_reason is not None:
        why = signal.Signals(result.stop_signal).name if result.stop_signal else result.stop_reason
        again = "rerunning the demo" if in_demo() else "the same command with --resume"
        say(f"stopped at step {result.step} of {result.steps} ({why}); {again} continues it")
    elif result.start_step >= result.steps:
        say(f"already at step {result.start_step} of {result.steps}: nothing to train")
    if result.stop_signal:
        interrupted_exit(result.stop_signal)
