"""`hrm-arc validate`: every problem in a Kaggle submission.json."""

from __future__ import annotations

import sys

import click
from rich.markup import escape

from ..data.tasks import load_tasks
from ..text import count
from .common import BAD_INPUT, dataset_option, reports_bad_input, say, solutions_option


@click.command()
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
    from ..submission import load_submission, validate_submission

    tasks = load_tasks(dataset, solutions, find_solutions=False)
    problems = validate_submission(load_submission(submission_path), tasks)
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
