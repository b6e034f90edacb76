"""`hrm-arc import-checkpoint` and `export-checkpoint`: the official HRM and TRM layouts."""

from __future__ import annotations

import click
from rich.markup import escape

from .common import out_folder_option, reports_bad_input, safe_output, say


@click.command("import-checkpoint")
@click.argument("path", type=click.Path(exists=True))
@out_folder_option(
    "run_dir",
    "Run directory to write: model/ (config.json, model.safetensors, pretraining.json).",
)
@click.option(
    "--canvas",
    type=click.IntRange(1, 30),
    default=30,
    show_default=True,
    help="Canvas side the model was trained on: the official ARC data uses 30.",
)
@click.option(
    "--identifiers",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="The official data builder's identifiers.json for this checkpoint's table: maps its "
    "rows to tasks and augmentations, so --strategy pretrained can run.",
)
@reports_bad_input
def import_checkpoint(path, run_dir, canvas, identifiers):
    """Turn an official HRM or TRM checkpoint into a run adapt-and-predict takes.

    PATH is the state-dict file (`checkpoint`, `step_N`) or the folder holding it, with the
    official `all_config.yaml` beside it. Without --identifiers the run records no views (the
    released checkpoints' identifiers were not published), so adapt-and-predict fits fresh
    embeddings for every task, starting from the imported table's mean (`--init mean`) or zero
    (`--paper`).

    \b
    Examples:
      hrm-arc import-checkpoint HRM-checkpoint-ARC-2/checkpoint --out runs/hrm-arc2
      hrm-arc import-checkpoint trm_arc_prize_verification/arc_v1_public --out runs/trm-arc1
    """
    from ..official import import_checkpoint as read_official

    safe_output(run_dir, "--out", inputs=[path, *([identifiers] if identifiers else [])])
    config = read_official(path, run_dir, canvas, identifiers)
    say(
        f"imported a{'n' if config.arch == 'hrm' else ''} {config.arch.upper()} "
        f"({config.hidden_size} wide, {config.num_puzzle_ids - 1:,} puzzle rows) into "
        f"{escape(str(run_dir))}/model/"
    )


@click.command("export-checkpoint")
@click.argument("run_dir", type=click.Path(file_okay=False, exists=True))
@out_folder_option(
    "out",
    "Folder to write: checkpoint and all_config.yaml, as the official code reads them.",
)
@reports_bad_input
def export_checkpoint(run_dir, out):
    """Write a run's model in the official HRM or TRM layout, for the official evaluation.

    \b
    Example:
      hrm-arc export-checkpoint runs/a --out exported/a
    """
    from ..official import export_checkpoint as write_official

    safe_output(out, "--out", inputs=[run_dir])
    written = write_official(run_dir, out)
    say(f"wrote {escape(str(written))} and all_config.yaml beside it")
