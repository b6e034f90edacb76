"""`hrm-arc report`: an HTML page of an adapt-and-predict output, or a pretraining run's curves."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from ..errors import DatasetError
from .common import device_option, reports_bad_input, safe_output, say, solutions_option


@click.command()
@click.argument("folder", metavar="OUT_DIR|RUN_DIR", type=click.Path(path_type=Path))
@click.option(
    "--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="The HTML file to write. [default: report.html in the folder]",
)  # fmt: skip
@click.option(
    "--dataset", "-d", default=None, metavar="SPEC",
    help="The task set predicted (its demonstrations and ground truth). [default: the one "
    "predictions.json names]",
)  # fmt: skip
@solutions_option
@click.option(
    "--steps", "steps_task", default=None, metavar="TASK_ID",
    help="Also show this task's reasoning steps: it is adapted again, alone, as OUT_DIR's "
    "settings.json says (needs --run), and its answer after each ACT segment is recorded, "
    "as an animation in the page and a GIF beside it.",
)  # fmt: skip
@click.option(
    "--run", "run_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The pretraining run OUT_DIR was predicted with (for --steps).",
)  # fmt: skip
@click.option("--view", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which of the task's views --steps traces (0: the task as given).")  # fmt: skip
@click.option("--test", "test_index", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which test input of the task --steps traces.")  # fmt: skip
@device_option
@reports_bad_input
def report(folder, out, dataset, solutions, steps_task, run_dir, view, test_index, device):
    """Write a self-contained HTML report (no network; open it from disk).

    For an adapt-and-predict OUT_DIR: the score, and per task its demonstrations, each test
    input, both attempts beside the ground truth, the ranked candidates with votes and
    log-probabilities, with filters. For a pretraining RUN_DIR: loss, accuracy, exact accuracy
    and the held-out score over steps and time (also written as PNGs beside the page).

    \b
    Examples:
      hrm-arc report preds/a                       # preds/a/report.html
      hrm-arc report preds/a -o a.html --steps 00576224 --run runs/a --view 3
      hrm-arc report runs/a                        # runs/a/report.html and its PNGs
    """
    from ..report import folder_kind

    kind = folder_kind(folder)
    out = out or folder / "report.html"
    if kind == "run":
        if steps_task is not None:
            raise click.UsageError("--steps takes an adapt-and-predict OUT_DIR, not a run")
        safe_output(out, "--out", inputs=[folder / "metrics.jsonl"])
        from ..report.curves import run_report

        written = run_report(folder, out)
    else:
        written = output_report(folder, out, dataset, solutions, steps_task, run_dir, view,
                                test_index, device)  # fmt: skip
    say(f"wrote {', '.join(escape(str(p)) for p in written)}")


def output_report(folder, out, dataset, solutions, steps_task, run_dir, view, test_index, device):
    from ..data.tasks import dataset_paths, load_tasks
    from ..out_dir import PREDICTIONS, SUBMISSION
    from ..report.page import output_page, recorded_dataset, write_page

    if steps_task is not None and run_dir is None:
        raise click.UsageError("--steps needs --run RUN_DIR, the run OUT_DIR was predicted with")
    spec = dataset or recorded_dataset(folder)
    datasets = dataset_paths(spec, solutions)
    inputs = [folder / PREDICTIONS, folder / SUBMISSION]
    safe_output(out, "--out", inputs=inputs, datasets=datasets)
    try:
        tasks = load_tasks(spec, solutions)
    except DatasetError as e:
        if dataset is not None:
            raise
        raise DatasetError(f"{e} (the dataset {PREDICTIONS} names: give it with -d SPEC)") from None
    written, steps = [out], None
    if steps_task is not None:
        if steps_task not in tasks:
            raise click.BadParameter(f"no task {steps_task!r} in {spec}", param_hint="--steps")
        gif = out.with_name(f"{out.stem}-steps.gif")
        safe_output(gif, "--out", inputs=inputs, datasets=datasets)
        steps = traced_steps(folder, run_dir, tasks[steps_task], view, test_index, device, gif)
        written.append(gif)
    write_page(out, output_page(folder, tasks, steps), f"{spec}: {folder.resolve().name}")
    return written


def traced_steps(folder, run_dir, task, view, test_index, device, gif) -> dict:
    from ..hrm_core.distributed import resolve_device
    from ..report.steps import adapt_settings, steps_data, trace_task, write_gif
    from ..run_dir import load_run

    run = load_run(run_dir, resolve_device(device))
    say(f"adapting task {escape(task.id)} again to trace its steps")
    trace = trace_task(run, task, adapt_settings(folder, run), view, test_index)
    write_gif(trace, gif)
    return steps_data(trace, task, view, test_index)
