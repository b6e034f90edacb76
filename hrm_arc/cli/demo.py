"""`hrm-arc demo`: the whole pipeline on generated puzzles, in minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from .adapt import adapt_and_predict
from .common import console, device_option, reports_bad_input, say
from .pretrain import pretrain


@click.command()
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
    help="Pretraining steps [default: 1500, a few minutes on a CPU].",
)
@device_option
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
    from ..demo import DEMO, write_demo_data
    from ..run_dir import has_checkpoint

    out = Path(out_dir)
    pretrain_dir, heldout_dir = write_demo_data(out / "data", DEMO)
    say(f"[bold]1/3[/] puzzles written to {escape(str(pretrain_dir))} and "
        f"{escape(str(heldout_dir))}")  # fmt: skip
    ctx.invoke(
        pretrain,
        datasets=(str(pretrain_dir),),
        run_dir=str(out / "run"),
        preset=DEMO.preset,
        overrides=DEMO.pretrain_overrides,
        augmentations=DEMO.augmentations,
        steps=DEMO.steps if steps is None else steps,
        eval_every=DEMO.eval_every,
        checkpoint_every=DEMO.checkpoint_every,
        device=device,
        resume=has_checkpoint(out / "run"),
    )
    console.print("[bold]2/3[/] adapt and predict on held-out puzzles")
    ctx.invoke(
        adapt_and_predict,
        run_dir=str(out / "run"),
        dataset=str(heldout_dir),
        out_dir=str(out / "predictions"),
        augmentations=DEMO.adapt_augmentations,
        epochs=DEMO.adapt_epochs,
        rank="combined",
        group_size=64,
        restart=True,  # pretraining may have gone on since the last demo
        device=device,
    )
    say(f"[bold]3/3[/] done: run in {escape(str(out / 'run'))}, predictions, submission.json "
        f"and score.json in {escape(str(out / 'predictions'))}")  # fmt: skip
