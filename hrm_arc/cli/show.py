"""`hrm-arc show`: a task set's summary, or one task drawn in ARC colours."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..data.colours import ARC_COLOURS
from ..data.summary import summarize
from ..data.tasks import load_tasks
from ..text import count, printable
from .common import console, dataset_option, reports_bad_input, solutions_option


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


@click.command()
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
