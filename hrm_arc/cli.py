"""The `hrm-arc` command line: thin click commands that parse, call the library and print."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import logging
import math
import re
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from . import __version__
from .data.summary import summarize
from .data.tasks import MAX_SIDE, TaskSet, dataset_paths, load_tasks, merge_task_sets
from .errors import DatasetError
from .hrm_core.signals import signal_handlers
from .text import count, printable
from .vote import RANKINGS

console = Console()
err_console = Console(stderr=True)

BAD_INPUT = 2  # exit code for bad input data, as click uses for bad usage
SEED = click.IntRange(min=0)  # the configs refuse seeds past their MAX_SEED


def interrupted_exit(signum: int = signal.SIGINT) -> NoReturn:
    """Exit as the shell reports a job ended by a signal: 130 for Ctrl-C, 143 for SIGTERM."""
    sys.exit(128 + signum)


def say(text: str, err: bool = False) -> None:
    """Print a message (no highlighting, no wrapping inside paths or ids; control characters
    written out, as a quoted file name may hold them)."""
    (err_console if err else console).print(printable(text), highlight=False, soft_wrap=True)


class Terminated(KeyboardInterrupt):
    """A signal other than Ctrl-C's, interrupting as Ctrl-C does."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def interrupt(signum, frame):
    """A signal handler that interrupts as Ctrl-C does, remembering the signal."""
    raise Terminated(signum)


def listed(ids: list[str], most: int = 10) -> str:
    """The first `most` ids, escaped for rich markup (an id may read like a tag)."""
    return escape(", ".join(ids[:most])) + (" ..." if len(ids) > most else "")


def refuse_to_overwrite(
    out: str,
    option: str,
    inputs: Sequence[str | Path] = (),
    datasets: Sequence[str | Path] = (),
    emptied: str | None = None,
    written: Sequence[str] = (),
) -> None:
    """Refuse an output path that cannot be written (under a file), or where writing would
    replace, mix into or delete what the command reads: one of its `inputs` or `datasets`, a
    path inside a dataset folder (read back as a task next time), a dataset file named as one
    of the files `written` into an output folder, or an output folder whose `emptied`
    subfolder (which --restart clears) holds a dataset."""

    def refuse(message: str) -> NoReturn:  # click prints it: control characters written out
        raise click.BadParameter(printable(message), param_hint=option)

    target = Path(out).resolve()
    blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:  # found now, not after the model is loaded or data built
        refuse(f"{blocker} is a file, not a folder")
    for source in [*inputs, *datasets]:
        if target == Path(source).resolve():
            refuse(f"{out} is the input this reads; write elsewhere")
    for source in datasets:
        path = Path(source).resolve()
        if path in target.parents:
            refuse(
                f"{out} is inside {source}, a dataset this reads: what is written there would "
                "be read as tasks; write elsewhere"
            )
        if clash := next((n for n in written if (target / n).resolve() == path), None):
            refuse(f"the dataset {source} is where this writes its {clash}; write elsewhere")
        if emptied is not None and (target / emptied).resolve() in (path, *path.parents):
            refuse(
                f"the dataset {source} lies in {out}/{emptied}/, where this writes (and "
                "--restart deletes) its task files; write elsewhere"
            )


# What to change when a command runs out of (GPU) memory.
OUT_OF_MEMORY_HINTS = {
    "pretrain": "lower --batch-size, the global batch over all ranks (the paper preset's 768 "
    "is the official 8 GPUs x 96); --resume continues from the last checkpoint",
    "adapt_and_predict_command": "lower --group-size or --set adapt.batch_size=N; the same "
    "command continues after the tasks already saved",
}


def reports_bad_input(command):
    """Turn a ValueError raised on user data (DatasetError, CheckpointError, a bad config value)
    or an OSError (an unwritable path) into a message and exit 2; running out of memory into
    what to lower and exit 1; an interrupt no command handled itself exits as the shell reports
    one (130, 143)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except RuntimeError as e:
            import torch  # here, so that --help need not load it

            if not isinstance(e, torch.cuda.OutOfMemoryError):
                raise
            what = escape(str(e).splitlines()[0] if str(e) else "out of memory")
            hint = OUT_OF_MEMORY_HINTS.get(command.__name__, "use smaller batches")
            say(f"[bold red]error:[/] {what}: {hint}", err=True)
            sys.exit(1)
        except ValueError as e:  # DatasetError, CheckpointError, bad config values
            # escape: user data quoted in a message (e.g. "[/x]") must not be read as markup
            message = escape(str(e))
        except OSError as e:  # an output path that cannot be written, a full disk
            message = escape(f"{e.filename or ''}: {e.strerror or e}")
        except KeyboardInterrupt as stop:  # one no command handles: the shell's status, not
            say("interrupted", err=True)  # click's "Aborted!" and 1
            interrupted_exit(getattr(stop, "signum", signal.SIGINT))
        say(f"[bold red]error:[/] {message}", err=True)
        sys.exit(BAD_INPUT)

    return wrapper


dataset_option = click.option(
    "--dataset",
    "-d",
    "dataset",
    required=True,
    metavar="SPEC",
    help="Bundled set (e.g. arc-agi-1/evaluation), a directory or file of ARC task JSON, "
    "or a Kaggle *_challenges.json.",
)
solutions_option = click.option(
    "--solutions",
    type=click.Path(dir_okay=False),
    default=None,
    help="Kaggle *_solutions.json, when it does not sit beside the challenges file.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hrm-arc")
def main():
    """Evaluate Hierarchical Reasoning Models on ARC with two-stage test-time adaptation.

    \b
    Try it first on generated puzzles (a few minutes on a CPU):
      hrm-arc demo
    \b
    A run on ARC (on a GPU: a CPU takes seconds a step on 30x30 canvases):
      hrm-arc show --dataset arc-agi-1/evaluation          # check the data loads
      hrm-arc pretrain --dataset arc-agi-1/training --preset small -a 300 \\
          --steps 20000 --out runs/a
      hrm-arc adapt-and-predict runs/a --dataset arc-agi-1/evaluation --out preds/a
      hrm-arc score preds/a/submission.json --dataset arc-agi-1/evaluation
    """
    library = logging.getLogger("hrm_arc")
    if not any(isinstance(h, SaidWarnings) for h in library.handlers):
        library.addHandler(SaidWarnings())


class SaidWarnings(logging.Handler):
    """The library's logged warnings, printed as the CLI's own (to the current stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        say(f"[yellow]warning:[/] {escape(record.getMessage())}", err=True)


ARC_COLOURS = (
    "#000000",
    "#0074D9",
    "#FF4136",
    "#2ECC40",
    "#FFDC00",
    "#AAAAAA",
    "#F012BE",
    "#FF851B",
    "#7FDBFF",
    "#870C25",
)


def grid_text(grid, cell_width: int = 2) -> Text:
    """A grid as coloured blocks (two characters per cell look square), or as its digits where
    the terminal shows no colour (piped, NO_COLOR)."""
    text = Text()
    for r, row in enumerate(grid):
        if r:
            text.append("\n")
        for cell in row:
            if console.no_color or console.color_system is None:
                text.append(str(int(cell)).ljust(cell_width))
            else:
                text.append(" " * cell_width, style=f"on {ARC_COLOURS[int(cell)]}")
    return text


def show_task(task) -> None:
    pairs = [*task.train, *task.test]
    wide_in = max(p.input.shape[1] for p in pairs)
    wide_out = max((p.output.shape[1] for p in pairs if p.output is not None), default=1)
    # Square two-character cells where they fit, else one character; the input above the
    # output where side by side does not fit. 28 columns go to the pair column and borders.
    layouts = [(2, False, wide_in + wide_out), (1, False, wide_in + wide_out),
               (2, True, max(wide_in, wide_out)), (1, True, max(wide_in, wide_out))]  # fmt: skip
    widths = [(cell, stacked, cell * cells + 28) for cell, stacked, cells in layouts]
    # Wider than the terminal rather than cut, where even one stacked column does not fit.
    cell, stacked, width = next((w for w in widths if w[2] <= console.width), widths[-1])
    title = escape(printable(f"{task.id}  ({task.source})"))
    table = Table(title=title, show_lines=True, title_justify="left")
    table.add_column("pair", no_wrap=True, min_width=14)
    for column in ("input / output",) if stacked else ("input", "output"):
        table.add_column(column, no_wrap=True)
    for split, pairs in (("train", task.train), ("test", task.test)):
        for i, pair in enumerate(pairs):
            out = Text("?") if pair.output is None else grid_text(pair.output, cell)
            shapes = f"{split} {i}\n{pair.input.shape[0]}x{pair.input.shape[1]}"
            if pair.output is not None:
                shapes += f" -> {pair.output.shape[0]}x{pair.output.shape[1]}"
            grids = [grid_text(pair.input, cell), out]
            table.add_row(shapes, *([Text("\n\n").join(grids)] if stacked else grids))
    terminal_width = console.width
    console.width = max(width, terminal_width)  # print(width=...) would be capped by it
    try:
        console.print(table)
    finally:
        console.width = terminal_width


def show_summary(tasks) -> None:
    rows = [summarize(t) for t in tasks]
    title = f"{escape(printable(tasks.name or 'tasks'))}: {count(tasks, 'task')}"
    table = Table(title=title, title_justify="left")
    for column in ("task", "train", "test", "max size", "colours", "unique augmentations"):
        table.add_column(column, justify="left" if column in ("task", "colours") else "right")
    for s in rows:
        colours = "".join(str(c) for c in s.colours)
        table.add_row(
            escape(s.id),
            str(s.n_train),
            str(s.n_test),
            f"{s.max_rows}x{s.max_cols}",
            colours,
            f"{s.unique_variants:,}",
        )
    console.print(table)
    variants = sorted(s.unique_variants for s in rows)
    console.print(
        f"{count(rows, 'task')}, {count(sum(s.n_train for s in rows), 'demonstration pair')}, "
        f"{count(sum(s.n_test for s in rows), 'test input')}, "
        f"solutions known for {sum(s.has_solutions for s in rows)}; "
        f"grids of up to {count(max(s.max_rows for s in rows), 'row')} and "
        f"{count(max(s.max_cols for s in rows), 'column')}; "
        f"unique augmentations per task: min {variants[0]:,}, "
        f"median {variants[len(variants) // 2]:,}, max {variants[-1]:,}"
    )


@main.command()
@dataset_option
@solutions_option
@click.argument("task_id", required=False)
@reports_bad_input
def show(dataset, solutions, task_id):
    """Summarise a task set, or draw one task in ARC colours.

    \b
    Examples:
      hrm-arc show --dataset arc-agi-1/evaluation
      hrm-arc show --dataset arc-agi-1/evaluation 00576224
      hrm-arc show --dataset my_tasks/          # check your own files load
    """
    tasks = load_tasks(dataset, solutions)
    if task_id is None:
        show_summary(tasks)
    elif task_id not in tasks:
        raise click.BadParameter(f"no task {task_id!r} in {dataset}", param_hint="TASK_ID")
    else:
        show_task(tasks[task_id])


@main.command()
@click.argument("predictions_path", metavar="PREDICTIONS", type=click.Path(dir_okay=False))
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the Kaggle submission JSON.",
)
@click.option(
    "--dataset",
    "-d",
    default=None,
    metavar="SPEC",
    help="Task set the submission is for: every task gets an entry (1x1 zero grids, "
    "with a warning, where predictions are missing).",
)
@click.option(
    "--rank",
    type=click.Choice(list(RANKINGS)),
    default=None,
    help="Re-rank candidates before taking the top two: votes (official), logprob "
    "(product of experts) or combined. Default: keep the saved order.",
)
@reports_bad_input
def export(predictions_path, out, dataset, rank):
    """Turn a predictions file into a Kaggle submission.json (top two candidates per test input).

    \b
    Example:
      hrm-arc export preds/a/predictions.json -o submission.json \\
          --dataset arc-agi-1/evaluation --rank combined
    """
    from .files.jsonio import write_json_atomic
    from .predictions import load_predictions
    from .submission import missing_tasks, submission_from_predictions
    from .vote import rank_predictions

    datasets = dataset_paths(dataset) if dataset is not None else []
    refuse_to_overwrite(out, "--out", [predictions_path], datasets)
    predictions, _meta = load_predictions(predictions_path)
    if rank is not None:
        predictions = rank_predictions(predictions, rank)
    tasks = load_tasks(dataset, find_solutions=False) if dataset is not None else None
    filled = missing_tasks(predictions, tasks) if tasks is not None else []
    try:
        submission = submission_from_predictions(predictions, tasks)
    except DatasetError as e:  # the predictions do not fit the tasks
        raise DatasetError(f"{predictions_path}: {e}") from None
    write_json_atomic(out, submission, named=True)
    if filled:
        say(
            f"[yellow]warning:[/] {count(filled, 'task')} had no predictions and get 1x1 zero "
            f"attempts: {listed(filled)}",
            err=True,
        )
    n_tests = sum(len(entries) for entries in submission.values())
    say(
        f"wrote {escape(str(out))}: {count(submission, 'task')}, {count(n_tests, 'test input')}, "
        f"ranking {rank or 'as saved'}",
    )


@main.command()
@click.argument("submission_path", metavar="SUBMISSION", type=click.Path(dir_okay=False))
@dataset_option
@solutions_option
@reports_bad_input
def validate(submission_path, dataset, solutions):
    """Check a Kaggle submission.json against a task set; list every problem (exit 2 if any).

    \b
    Example:
      hrm-arc validate submission.json --dataset arc-agi-1/evaluation
    """
    from .submission import load_submission, validate_submission

    tasks = load_tasks(dataset, solutions, find_solutions=False)
    submission = load_submission(submission_path)
    problems = validate_submission(submission, tasks)
    if problems:
        for problem in problems:
            say(f"  {escape(problem)}", err=True)
        say(
            f"[bold red]error:[/] {escape(str(submission_path))}: {count(problems, 'problem')}",
            err=True,
        )
        sys.exit(BAD_INPUT)
    n_tests = sum(len(t.test) for t in tasks)
    say(
        f"OK {escape(str(submission_path))}: {count(tasks, 'task')}, "
        f"{count(n_tests, 'test input')}, {2 * n_tests} attempts",
    )


@main.command()
@click.argument("submission_path", metavar="SUBMISSION", type=click.Path(dir_okay=False))
@dataset_option
@solutions_option
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write the full report (per task and overall) to this JSON file.",
)
@click.option(
    "--only-submitted",
    is_flag=True,
    help="Score only the set's tasks the submission holds (a run on part of a set); the score "
    "is then the mean over those tasks, not the whole set.",
)
@reports_bad_input
def score(submission_path, dataset, solutions, json_out, only_submitted):
    """Score a Kaggle submission.json by the ARC Prize rule, per task and overall.

    A test output counts if either attempt matches it exactly; a task scores the fraction of
    its test outputs right; the ARC score is the mean over tasks. Also printed: tasks solved
    outright (every test output right), pass@1 (attempt_1 alone) and a 95% bootstrap
    confidence interval of the score over tasks.

    \b
    Examples:
      hrm-arc score submission.json --dataset arc-agi-1/evaluation
      hrm-arc score submission.json -d arc-prize-2025/arc-agi_evaluation_challenges.json \\
          --solutions arc-prize-2025/arc-agi_evaluation_solutions.json --json score.json
    """
    from .files.jsonio import write_json_atomic
    from .score import score_submission
    from .submission import load_submission

    if json_out is not None:
        datasets = dataset_paths(dataset, solutions)
        refuse_to_overwrite(json_out, "--json", [submission_path], datasets)
    tasks = load_tasks(dataset, solutions)
    submission = load_submission(submission_path)  # its errors name the file
    title = f"{submission_path} on {tasks.name}"
    if only_submitted and isinstance(submission, dict):
        held = [t for t in tasks if t.id in submission]
        if not held:
            raise DatasetError(f"{submission_path}: holds none of {tasks.name}'s tasks")
        title += f" (the {len(held)} of its {count(tasks, 'task')} submitted)"
        tasks = TaskSet(held, name=tasks.name)
    try:
        report = score_submission(submission, tasks, where=str(submission_path))
    except DatasetError as e:
        lacking = isinstance(submission, dict) and any(t.id not in submission for t in tasks)
        hint = "\n(--only-submitted scores the tasks it holds)" if lacking else ""
        raise DatasetError(f"{e}{hint}") from None
    print_score(report, title)  # shared with adapt-and-predict
    if json_out is not None:
        write_json_atomic(json_out, report.to_dict(), indent=True, named=True)
        say(f"wrote {escape(str(json_out))}")


class Duration(click.ParamType):
    """'90s', '15m', '11h', '1h30m' or plain seconds -> positive seconds."""

    name = "duration"
    _NUMBER = r"(\d+(?:\.\d+)?)"
    # Hours, minutes, seconds, each at most once and in that order; or a bare number of seconds.
    _FORM = re.compile(rf"(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?|{_NUMBER}")

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        text = str(value).strip()
        match = self._FORM.fullmatch(text)
        if not text or match is None:
            self.fail(f"{value!r} is not a duration like 90s, 15m, 1h30m or 11h", param, ctx)
        h, m, s, bare = (float(g) if g else 0.0 for g in match.groups())
        seconds = h * 3600 + m * 60 + s + bare
        if seconds <= 0:
            self.fail(f"{value!r} is no time at all", param, ctx)
        return seconds


def number(value: float | None) -> str:
    """Three decimals, or '-' for an average over nothing (no example finished yet)."""
    return "-" if value is None or value != value else f"{value:.3f}"


def training_progress(total: int, description: str):
    """A rich progress bar and the `on_log` callback that advances it."""
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[stats]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    bar = progress.add_task(description, total=total, stats="")
    line = plain_lines(every_s=30)

    def on_log(step: int, record: dict) -> None:
        stats = (
            f"loss {number(record.get('loss'))} acc {number(record.get('accuracy'))} "
            f"exact {number(record.get('exact_accuracy'))} {record['examples_per_s']:.0f} ex/s "
            f"{record['segments_per_s']:.0f} seg/s"
        )
        if "eval_arc_score" in record:
            stats += f" | held-out ARC {record['eval_arc_score']:.3f}"
        if "eval_tasks_arc_score" in record:
            stats += f" | evaluation tasks ARC {record['eval_tasks_arc_score']:.3f}"
        progress.update(bar, completed=step, stats=stats)
        line(
            f"{description} step {step}/{total} {stats}",
            last=step == total or "stop_reason" in record,
        )

    return progress, on_log


@main.command()
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
@click.option(
    "--out",
    "-o",
    "run_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Run directory: checkpoint.pt, config.json, metrics.jsonl.",
)
@click.option(
    "--preset",
    default="tiny",
    show_default=True,
    help="Model preset: tiny and small for CPU, paper for the paper's 27M model.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config field, e.g. --set model.hidden_size=256 --set train.lr=3e-4.",
)
@click.option(
    "--augmentations",
    "-a",
    default=None,
    type=click.IntRange(min=1),
    help="Unique augmented variants per task, the original among them, each its own puzzle "
    "identifier [default: the official setting's 1000 for paper, 8 for tiny and small].",
)
@click.option(
    "--canvas",
    type=click.IntRange(1, MAX_SIDE),
    default=None,
    help="Canvas side in cells; default: the smallest that holds every demonstration grid "
    "and test input (test outputs count only with --train-test-pairs, which trains them).",
)
@click.option(
    "--steps",
    type=click.IntRange(min=1),
    default=None,
    help="Optimiser steps, one ACT segment each [default: the preset's: tiny 1000, small "
    "3000, paper 1000, a smoke test: paper runs want --epochs].",
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Alternative to --steps: epochs of the preset's train.sampling; with tasks (paper), "
    "counted as the official trainer counts, an epoch gives every task one random variant's "
    "pairs; with examples (tiny, small), every pair of every variant.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=None,
    help="Global batch, split across ranks [default: the preset's: tiny 64, small 128, paper 768].",
)
@click.option(
    "--lr",
    type=float,
    default=None,
    help="Dense (Adam-atan2) learning rate [default: the preset's: 1e-3 for tiny and small, "
    "1e-4 for paper].",
)
@click.option(
    "--eval-every",
    type=click.IntRange(min=0),
    default=None,
    help="Steps between held-out evaluations, the last step included [default: 0, never].",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=0),
    default=None,
    help="Steps between checkpoints; the last step is always saved [default: 0, only it].",
)
@click.option(
    "--time-limit",
    default=None,
    type=Duration(),
    help="Stop after this long (e.g. 25m, 11h), checkpointing as at the last step.",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Picks the views, their translations, the initial weights and the batch order.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--compile", "use_compile", is_flag=True, help="torch.compile the model.")
@click.option(
    "--include-eval-demos",
    "eval_demos",
    multiple=True,
    metavar="SPEC",
    help="Also train the demonstration pairs of these evaluation tasks (repeatable), each "
    "variant with its own identifier: the official 'combined' setup. --eval-every then scores "
    "their test pairs too (up to 32 tasks, 8 views each), as the official run does.",
)
@click.option(
    "--train-test-pairs",
    is_flag=True,
    help="Also train the training tasks' test pairs, as the official data builder does "
    "(with --include-eval-demos, its split, less ConceptARC); none is held out for --eval-every.",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@reports_bad_input
def pretrain(
    datasets,
    run_dir,
    preset,
    overrides,
    augmentations,
    canvas,
    steps,
    epochs,
    batch_size,
    lr,
    eval_every,
    checkpoint_every,
    time_limit,
    seed,
    device,
    use_compile,
    eval_demos,
    train_test_pairs,
    resume,
):
    """Pretrain an HRM on augmented ARC tasks (CPU, one GPU, or several under torchrun).

    \b
    Examples:
      hrm-arc pretrain -d arc-agi-1/training --out runs/tiny --steps 2000
      hrm-arc pretrain -d arc-agi-1/training --out runs/tiny --steps 2000 --resume
      torchrun --nproc-per-node 8 -m hrm_arc.cli pretrain -d arc-agi-1/training \\
          --include-eval-demos arc-agi-1/evaluation --train-test-pairs --preset paper \\
          -a 1000 --epochs 100000 --eval-every 10000 --checkpoint-every 2000 --out runs/paper
    """
    from .files.folder_lock import folder_lock
    from .hrm_core.distributed import init_distributed, shutdown_distributed
    from .pretrain import (
        PRESET_AUGMENTATIONS,
        RUN_FILES,
        build_pretraining_data,
        check_pretrain_options,
        has_checkpoint,
        heldout_evaluator,
        resolve_pretrain_configs,
    )
    from .pretrain import pretrain as run_pretrain

    specs = [*datasets, *eval_demos]
    refuse_to_overwrite(
        run_dir, "--out", datasets=[p for s in specs for p in dataset_paths(s)], written=RUN_FILES
    )
    check_pretrain_options(preset, overrides, seed)  # before the data, which may take minutes
    tasks = merge_task_sets([load_tasks(spec) for spec in datasets])
    demo_tasks = merge_task_sets([load_tasks(spec) for spec in eval_demos]) if eval_demos else None
    dist = init_distributed(device)
    augmentations = augmentations or PRESET_AUGMENTATIONS.get(preset, 8)
    data = build_pretraining_data(
        tasks, augmentations, seed, canvas, demo_tasks, train_test_pairs=train_test_pairs
    )
    if time_limit is not None:
        overrides = [*overrides, f"train.time_limit_s={time_limit}"]
    model_config, train_config = resolve_pretrain_configs(
        preset,
        overrides,
        data,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
        compile=use_compile,
        world_size=dist.world_size,
    )
    evaluate = heldout_evaluator(data, dist.device)
    if dist.is_main:
        describe_pretraining(tasks, demo_tasks, data, preset, train_config, dist)
        if resume and not has_checkpoint(run_dir):
            say(f"no checkpoint in {escape(str(run_dir))} yet: starting a new run")
        if evaluate is None and train_config.eval_every:
            say(
                "[yellow]warning:[/] no test pair with a known output is held out from "
                "training: --eval-every evaluates nothing",
                err=True,
            )
    click.get_current_context().with_resource(folder_lock(run_dir, dist))  # once all is checked
    progress, on_log = training_progress(train_config.steps, "pretrain")
    specs = {
        "train": list(datasets),
        "eval_demos": list(eval_demos),
        "train_test_pairs": train_test_pairs,
    }
    try:
        with shown(progress, dist.is_main):
            trainer = run_pretrain(
                run_dir,
                model_config,
                train_config,
                data,
                dist,
                specs,
                resume,
                on_log=on_log if dist.is_main else None,
                evaluate=evaluate,
            )
    except KeyboardInterrupt:  # a second Ctrl-C, or one before training began
        if dist.is_main:
            saved = has_checkpoint(run_dir)
            then = "--resume continues from the last checkpoint" if saved else "no checkpoint yet"
            say(f"stopped at once; {then}", err=True)
        interrupted_exit(signal.SIGINT)
    ended = (trainer.step, trainer.start_step, trainer.stop_reason, trainer.stop_signal)
    # DDP's reducer must go before its process group: freed after it, at exit, gloo's worker
    # thread and the main thread deadlocked on the GIL (1 run in 20-30 under torchrun).
    del trainer
    gc.collect()
    shutdown_distributed()
    if dist.is_main:
        report_pretraining_end(run_dir, train_config.steps, *ended)
    elif ended[-1]:  # every rank exits as the signal that stopped them all
        interrupted_exit(ended[-1])


def describe_pretraining(tasks, demo_tasks, data, preset, train_config, dist) -> None:
    """The run in one line, and a warning if its learning rates never warm up fully."""
    console.print(
        f"{count(tasks, 'task')}"
        + (f" + the demos of {count(demo_tasks, 'evaluation task')}" if demo_tasks else "")
        + f", {count(data.views, 'view')}, "
        f"{count(data.examples, 'example')} on a {data.canvas}x{data.canvas} canvas; "
        f"preset {preset}, "
        f"{count(train_config.steps, 'step')} of batch {train_config.batch_size} on "
        f"{dist.world_size} x {dist.device}"
    )
    if train_config.warmup_steps > train_config.steps:
        say(
            f"[yellow]warning:[/] the learning-rate warm-up ({train_config.warmup_steps} "
            f"steps) is not over by the last step ({train_config.steps}): the rates never "
            "reach their set values; give more --steps or --set train.warmup_steps=N",
            err=True,
        )


def report_pretraining_end(
    run_dir, steps: int, step: int, start_step: int, stop_reason, stop_signal
) -> None:
    """What the run left and, if it stopped early, how it continues (exits as the signal)."""
    from .pretrain import RUN_FILES

    saved = [n for n in RUN_FILES if (Path(run_dir) / n).exists()]
    say(f"run saved in [bold]{escape(str(run_dir))}[/] ({', '.join(saved)})")
    if stop_reason is not None:
        in_demo = click.get_current_context().find_root().invoked_subcommand == "demo"
        why = signal.Signals(stop_signal).name if stop_signal else stop_reason
        say(
            f"stopped at step {step} of {steps} ({why}); "
            f"{'rerunning the demo' if in_demo else 'the same command with --resume'} continues it"
        )
    elif start_step >= steps:
        say(f"already at step {start_step} of {steps}: nothing to train")
    if stop_signal:
        interrupted_exit(stop_signal)


def print_score(report, title: str) -> None:
    table = Table(title=escape(printable(title)), title_justify="left")
    for column in ("task", "tests", "correct", "score"):
        table.add_column(column, justify="left" if column == "task" else "right")
    for row in report.rows:
        table.add_row(
            escape(row.task_id), str(row.n_tests), str(row.correct), f"{row.fraction:.2f}"
        )
    console.print(table)
    say(
        f"ARC score {report.overall:.2%} (95% CI {report.ci_low:.2%}-{report.ci_high:.2%}) | "
        f"strict solved {report.strict_solved}/{report.n_tasks} | pass@1 {report.pass_at_1:.2%}",
    )


@main.command("adapt-and-predict")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@dataset_option
@solutions_option
@click.option(
    "--out",
    "-o",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False),
    help="Output directory: predictions.json, submission.json, score.json, tasks/ (one file a "
    "finished task), and settings.json (what a rerun must match to continue).",
)
@click.option(
    "--augmentations",
    "-a",
    default=None,
    type=click.IntRange(min=1),
    help="Unique views per task, each with a fresh embedding [default: 8].",
)
@click.option(
    "--epochs",
    default=None,
    type=float,
    help="Times each demonstration of each view is drawn into a batch [default: 100]; "
    "0 fits nothing (with --init zero, the blank-embedding baseline).",
)
@click.option(
    "--lr",
    "emb_lr",
    default=None,
    type=float,
    help="Embedding (SignSGD) step size [default: pretraining's: 3e-2 for the tiny and small "
    "presets, 1e-2 for paper]; the weight decay follows pretraining's too.",
)
@click.option(
    "--strategy",
    default=None,
    help="embedding: the paper's procedure, network frozen [default]; embedding+full: then "
    "fine-tune the network; pretrained: no adaptation, use the views pretraining learned (the "
    "official combined setup, after pretrain --include-eval-demos).",
)
@click.option(
    "--full-epochs",
    default=None,
    type=float,
    help="Whole-network epochs after the embedding ones; required by embedding+full.",
)
@click.option(
    "--init",
    type=click.Choice(["zero", "mean"]),
    default=None,
    help="Fresh embeddings start at the pretrained table's mean [default] or at zero.",
)
@click.option(
    "--rank",
    type=click.Choice(list(RANKINGS)),
    default="combined",
    show_default=True,
    help="votes (official: count, then mean q_halt, then the earliest view; only a view that "
    "decodes to no grid casts no vote, where the official counts an empty grid), logprob "
    "(summed log-probability over views: product of experts) or combined (count, then "
    "log-probability).",
)
@click.option(
    "--group-size",
    default=16,
    show_default=True,
    type=click.IntRange(min=1),
    help="Tasks adapted together: more is faster per task, and takes more memory. The tasks "
    "of a group share adaptation batches, so candidates differ slightly with it.",
)
@click.option(
    "--time-budget",
    default=None,
    type=Duration(),
    help="Wall-clock budget for this call, e.g. 11h or 90m. Each group of tasks gets an equal "
    "share of the time left: its fitting stops at its share less the measured cost of "
    "predicting, and its epochs shrink to what that buys at the measured pace. Tasks no time "
    "is left to predict get 1x1 zero attempts, are named at the end, and a rerun tries them.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override any adaptation field, e.g. --set adapt.batch_size=128.",
)
@click.option(
    "--restart",
    is_flag=True,
    help="Discard the predictions already in --out; without it a rerun continues them, and "
    "refuses if they were made with another checkpoint or other settings.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--compile",
    "use_compile",
    is_flag=True,
    help="torch.compile the model: on a GPU about twice the pace, after a minute or so of "
    "compiling. A rerun may continue with or without it.",
)
@click.option(
    "--seed",
    type=SEED,
    default=0,
    show_default=True,
    help="Picks the views, their translations and the batch order.",
)
@reports_bad_input
def adapt_and_predict_command(
    run_dir,
    dataset,
    solutions,
    out_dir,
    augmentations,
    epochs,
    emb_lr,
    strategy,
    full_epochs,
    init,
    rank,
    group_size,
    time_budget,
    overrides,
    restart,
    device,
    use_compile,
    seed,
):
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
    """
    from .adapt import AdaptConfig
    from .files.folder_lock import folder_lock
    from .hrm_core.distributed import init_distributed, shutdown_distributed
    from .out_dir import OUTPUTS, TASKS, count_saved
    from .overrides import apply_overrides
    from .pipeline import TIME_SPENT, TOO_LARGE, PredictConfig, adapt_and_predict, finish
    from .pretrain import load_run

    started = time.perf_counter()  # what --time-budget counts from
    datasets = dataset_paths(dataset, solutions)
    refuse_to_overwrite(out_dir, "--out", [run_dir], datasets, emptied=TASKS, written=OUTPUTS)
    tasks = load_tasks(dataset, solutions)
    dist = init_distributed(device)
    explicit = {
        "augmentations": augmentations,
        "epochs": epochs,
        "puzzle_emb_lr": emb_lr,
        "strategy": strategy,
        "full_epochs": full_epochs,
        "init": init,
        "compile": use_compile,
    }
    run = load_run(run_dir, dist.device)
    given = {k: v for k, v in explicit.items() if v is not None}
    adapt = AdaptConfig.following(run.train_config, seed=seed, **given)
    adapt = apply_overrides({"adapt": adapt}, list(overrides))["adapt"]
    predict = PredictConfig(
        rank=rank, group_size=group_size, time_budget_s=time_budget, started=started
    )
    if dist.is_main:
        describe_adaptation(run, tasks, adapt, predict, dist)
    click.get_current_context().with_resource(folder_lock(out_dir, dist))  # once all is checked
    # Counted from the saved files, so that under torchrun it includes the other ranks' tasks.
    progress = TaskProgress(len(tasks), finished=lambda: count_saved(out_dir, tasks))
    try:
        # SIGTERM, what a scheduler sends before pre-empting a job, interrupts as Ctrl-C does.
        sigterm = signal_handlers(interrupt, signal.SIGTERM)
        with sigterm, shown(progress.bar, dist.is_main):
            on_task = progress.on_task if dist.is_main else None
            unpredicted = adapt_and_predict(
                run, tasks, out_dir, adapt, predict, dist, on_task, restart
            )
            if dist.is_main:
                progress.catch_up()
    except KeyboardInterrupt as stop:
        if dist.is_main:  # under torchrun every rank is interrupted; one says so
            saved = count_saved(out_dir, tasks)
            where = f"{saved} of {count(tasks, 'task')} saved in {escape(str(out_dir))}"
            if too_large := progress.skipped.get(TOO_LARGE):
                where += f" ({count(too_large, 'placeholder')} for tasks too large for the canvas)"
            say(f"interrupted: {where}" + ("" if restart else "; the same command continues"))
        interrupted_exit(getattr(stop, "signum", signal.SIGINT))
    shutdown_distributed()
    if dist.is_main:
        report = finish(
            out_dir,
            tasks,
            {
                "run": str(run_dir),
                "dataset": dataset,
                "adapt": dataclasses.asdict(adapt),
                "rank": rank,
            },
            rank,
        )
        skipped = {**progress.skipped, TIME_SPENT: unpredicted}  # every rank's, from the files
        report_adaptation_end(out_dir, tasks, report, skipped, run.canvas)


def describe_adaptation(run, tasks, adapt, predict, dist) -> None:
    """What the run will do, the settings it took from pretraining included, and a warning if
    some tasks are not unseen or cannot be solved on the run's canvas."""
    from .pipeline import outputs_beyond

    fits = ""
    if adapt.strategy != "pretrained":
        fits = f", {adapt.epochs:g} epochs at embedding lr {adapt.puzzle_emb_lr:g}"
    if adapt.strategy == "embedding+full":
        fits += f", then {adapt.full_epochs:g} of the network at lr {adapt.full_lr:g}"
    say(
        f"{count(tasks, 'task')}, up to {count(adapt.augmentations, 'view')} each; "
        f"strategy {adapt.strategy}{fits}; ranked by {predict.rank}; groups of "
        f"{predict.group_size} on {dist.world_size} x {dist.device}"
        + (", compiled" if adapt.compile else "")
    )
    # arc-agi-2/training holds 376 of arc-agi-1/evaluation's 400 tasks, for one.
    answered = sorted(set(run.state.get("test_pairs_trained", ())) & set(tasks.ids))
    if answered:
        say(
            f"[yellow]warning:[/] pretraining trained the test pairs (--train-test-pairs) of "
            f"training tasks with the ids of {len(answered)} of {count(tasks, 'task')}, so "
            f"their scores are not held out: {listed(answered)}",
            err=True,
        )
    if beyond := outputs_beyond(tasks, run.canvas):
        say(
            f"[yellow]warning:[/] a test output larger than the run's {run.canvas}x{run.canvas} "
            f"canvas, which no attempt can match, belongs to {len(beyond)} of "
            f"{count(tasks, 'task')}: {listed(beyond)}",
            err=True,
        )
    trained = sorted({view.task_id for view in run.views} & set(tasks.ids) - set(answered))
    if trained and adapt.strategy != "pretrained":
        say(
            f"[yellow]warning:[/] pretraining trained the demonstrations of {len(trained)} of "
            f"{count(tasks, 'task')}, so they are not unseen: {listed(trained)}",
            err=True,
        )


def report_adaptation_end(out_dir, tasks, report, skipped: dict, canvas: int) -> None:
    """The files written, the tasks not predicted (by reason) and the score (or why none)."""
    from .pipeline import TOO_LARGE

    written = "predictions.json, submission.json" + (" and score.json" if report else "")
    say(f"wrote {escape(str(out_dir))}/: {written}")
    because = {TOO_LARGE: f"a grid larger than the run's {canvas}x{canvas} canvas"}
    for reason, ids in ((r, ids) for r, ids in skipped.items() if ids):
        say(
            f"[yellow]warning:[/] {len(ids)} of {count(tasks, 'task')} not predicted "
            f"({because.get(reason, reason)}): {listed(ids)}",
            err=True,
        )
    if report is not None:
        print_score(report, f"{out_dir} on {tasks.name}")
    else:
        unsolved = [t.id for t in tasks if not t.has_solutions]
        say(
            f"not scored: {count(unsolved, 'task')} of the set "
            f"{'lacks' if len(unsolved) == 1 else 'lack'} test outputs "
            f"({listed(unsolved, 5)}); for a Kaggle file, give --solutions",
        )


class TaskProgress:
    """A progress bar over tasks and the `on_task` callback that advances it; it keeps which
    tasks were skipped, and says when a time budget first cut the fitting."""

    def __init__(self, total: int, finished: Callable[[], int] = lambda: 0) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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
        self.skipped: dict[str, list[str]] = {}  # task ids by why they were not predicted
        self._bar_task = self.bar.add_task("tasks", total=total, last="")
        self._epochs: tuple[float, float] | None = None  # the first adapted task's
        self._budget_said = False
        self._lines = plain_lines(every_s=0)

    def on_task(self, task_id: str, info: dict) -> None:
        self.done += 1
        if not info.get("resumed") and not info.get("skipped"):  # listed ones count one by one
            self.done = max(self.done, self.finished())
        if info.get("skipped"):
            from .pipeline import TOO_LARGE

            reason = TOO_LARGE if info["skipped"].startswith(TOO_LARGE) else info["skipped"]
            self.skipped.setdefault(reason, []).append(task_id)
        if info.get("resumed"):
            last = "done earlier"
        elif info.get("skipped"):
            last = f"skipped ({info['skipped']})"
        else:
            last = f"group demo exact {info['group_demo_exact']:.2f}"
            self._note_budget(task_id, info)
        self.bar.update(self._bar_task, completed=self.done, last=f"{escape(task_id)}: {last}")
        self._lines(f"adapt+predict {self.done}/{self.total} {escape(task_id)}: {last}")

    def catch_up(self) -> None:
        """Count the tasks other ranks saved after this rank's last one."""
        if (done := self.finished()) > self.done:
            self.done = done
            self.bar.update(self._bar_task, completed=done, last="the other ranks' tasks")
            self._lines(f"adapt+predict {done}/{self.total} the other ranks' tasks")

    def _note_budget(self, task_id: str, info: dict) -> None:
        # Only --time-budget cuts the fitting short or changes the (embedding, full-network)
        # epochs between groups; under it nearly every group fits its own share, so say it once.
        epochs = (info["adapt_epochs"], info["full_epochs"])
        self._epochs = self._epochs or epochs
        cut = info.get("fit_time_limited") or epochs != self._epochs
        if cut and not self._budget_said:
            self._budget_said = True
            planned = "/".join(f"{e:g}" for e in self._epochs)
            self.bar.console.print(
                f"time budget: adaptation fits fewer than its {planned} epochs "
                f"(embedding/full) from task {escape(task_id)} on; each task's file "
                "records the epochs it fitted (epochs_fitted)"
            )


@contextlib.contextmanager
def shown(progress, on: bool = True) -> Iterator[None]:
    """Draw the rich `progress` while the block runs (only where `on`: the main rank). A block
    that stops before the bar moved takes it away, so a refusal is not printed under an empty
    bar."""
    if not on:
        yield
        return
    with progress:
        try:
            yield
        except BaseException:
            if not any(task.completed for task in progress.tasks):
                for task in progress.tasks:
                    progress.update(task.id, visible=False)
            raise


def plain_lines(every_s: float):
    """Where no live bar can be drawn (output to a file or a pipe, as in a scheduler's log),
    a function that prints a progress line, at most one every `every_s` seconds unless `last`;
    on a terminal it prints nothing (the bar shows it)."""
    import time

    printed = -math.inf

    def line(text: str, last: bool = False) -> None:
        nonlocal printed
        if console.is_terminal or not (last or time.monotonic() - printed >= every_s):
            return
        printed = time.monotonic()
        say(text)

    return line


@main.command()
@click.option(
    "--out",
    "-o",
    "out_dir",
    default="hrm-arc-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Everything the demo makes goes here.",
)
@click.option(
    "--steps",
    default=None,
    type=click.IntRange(min=1),
    help="Pretraining steps [default: 1500, 3-4 minutes on 2 idle CPU cores].",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.pass_context
@reports_bad_input
def demo(ctx, out_dir, steps, device):
    """The whole pipeline on generated puzzles, in minutes on a CPU.

    Generates ARC-format puzzle families, pretrains a tiny HRM on them, then runs the two-stage
    test-time adaptation on held-out puzzles whose rules (parameter combinations) pretraining
    never showed, votes, writes a Kaggle submission and scores it. Rerun, it continues the
    pretraining it finds in --out and adapts afresh.

    \b
    Examples:
      hrm-arc demo
      hrm-arc demo --out /tmp/demo --steps 300      # a quicker, weaker run
    """
    from .demo import DEMO, write_demo_data
    from .pretrain import has_checkpoint

    out = Path(out_dir)
    pretrain_dir, heldout_dir = write_demo_data(out / "data", DEMO)
    say(
        f"[bold]1/3[/] puzzles written to {escape(str(pretrain_dir))} and "
        f"{escape(str(heldout_dir))}"
    )
    ctx.invoke(
        pretrain,
        datasets=(str(pretrain_dir),),
        run_dir=str(out / "run"),
        preset=DEMO.preset,
        overrides=DEMO.pretrain_overrides,
        augmentations=DEMO.augmentations,
        canvas=None,
        steps=DEMO.steps if steps is None else steps,
        epochs=None,
        batch_size=None,
        lr=None,
        eval_every=DEMO.eval_every,
        checkpoint_every=DEMO.checkpoint_every,
        time_limit=None,
        seed=0,
        device=device,
        use_compile=False,
        eval_demos=(),
        resume=has_checkpoint(out / "run"),
    )
    console.print("[bold]2/3[/] adapt and predict on held-out puzzles")
    ctx.invoke(
        adapt_and_predict_command,
        run_dir=str(out / "run"),
        dataset=str(heldout_dir),
        solutions=None,
        out_dir=str(out / "predictions"),
        augmentations=DEMO.adapt_augmentations,
        epochs=DEMO.adapt_epochs,
        emb_lr=None,
        strategy=None,
        full_epochs=None,
        init=None,
        rank="combined",
        group_size=64,
        time_budget=None,
        overrides=(),
        restart=True,  # pretraining may have gone on since the last demo
        device=device,
        seed=0,
    )
    say(
        f"[bold]3/3[/] done: run in {escape(str(out / 'run'))}, predictions, submission.json "
        f"and score.json in {escape(str(out / 'predictions'))}"
    )


if __name__ == "__main__":
    main()
