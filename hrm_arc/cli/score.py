"""`hrm-arc score`: a Kaggle submission scored by the ARC Prize rule."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from ..data.tasks import dataset_paths, load_tasks
from ..text import printable
from .common import console, dataset_option, reports_bad_input, safe_output, say, solutions_option


@click.command()
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
    from ..files.jsonio import write_json_atomic
    from ..score import score_file

    if json_out is not None:
        datasets = dataset_paths(dataset, solutions)
        safe_output(json_out, "--json", inputs=[submission_path], datasets=datasets)
    tasks = load_tasks(dataset, solutions)
    report, title = score_file(submission_path, tasks, only_submitted)
    print_score(report, title)
    if json_out is not None:
        write_json_atomic(json_out, report.to_dict(), indent=True, named=True)
        say(f"wrote {escape(str(json_out))}")


def print_score(report, title: str) -> None:
    """The per-task table and the overall line (shared with adapt-and-predict)."""
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
