"""The `hrm-arc` command line: thin click commands that parse, call the library and print."""

from __future__ import annotations

import functools
import sys

import click
from rich.console import Console

from . import __version__
from .tasks import DatasetError, load_tasks

console = Console()
err_console = Console(stderr=True)

BAD_INPUT = 2  # exit code for bad input data, as click uses for bad usage


def reports_bad_input(command):
    """Turn a DatasetError (or another ValueError raised on user data) into a message and exit 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except DatasetError as e:
            err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
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
    Typical run:
      hrm-arc show --dataset arc-agi-1/evaluation          # check the data loads
      hrm-arc pretrain --dataset arc-agi-1/training --out runs/a
      hrm-arc adapt-and-predict runs/a --dataset arc-agi-1/evaluation --out preds/a
      hrm-arc score preds/a/submission.json --dataset arc-agi-1/evaluation
    """


if __name__ == "__main__":
    main()
