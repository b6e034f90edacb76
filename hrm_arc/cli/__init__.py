"""The `hrm-arc` command line: one module a command, each parsing, calling the library and
showing what it did."""

from __future__ import annotations

import logging

import click

from .. import __version__
from .adapt import adapt_and_predict
from .checkpoints import export_checkpoint, import_checkpoint
from .common import SaidWarnings
from .demo import demo
from .export import export
from .pretrain import pretrain
from .report import report
from .score import score
from .show import show
from .validate import validate


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


commands = (show, pretrain, adapt_and_predict, score, export, validate, report,
            import_checkpoint, export_checkpoint, demo)  # fmt: skip
for command in commands:
    main.add_command(command)
