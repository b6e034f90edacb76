"""`hrm-arc export`: a Kaggle submission.json from saved predictions."""

from __future__ import annotations

import click
from rich.markup import escape

from ..data.tasks import dataset_paths, load_tasks
from ..text import count
from ..vote import RANKINGS
from .common import escaped_list, reports_bad_input, safe_output, say, warn


@click.command()
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
    from ..files.jsonio import write_json_atomic
    from ..submission import export_submission

    datasets = dataset_paths(dataset) if dataset is not None else []
    safe_output(out, "--out", inputs=[predictions_path], datasets=datasets)
    tasks = load_tasks(dataset, find_solutions=False) if dataset is not None else None
    submission, filled = export_submission(predictions_path, tasks, rank)
    write_json_atomic(out, submission, named=True)
    if filled:
        warn(
            f"{count(filled, 'task')} had no predictions and get 1x1 zero attempts: "
            f"{escaped_list(filled)}"
        )
    n_tests = sum(len(entries) for entries in submission.values())
    say(
        f"wrote {escape(str(out))}: {count(submission, 'task')}, {count(n_tests, 'test input')}, "
        f"ranking {rank or 'as saved'}",
    )
