"""The reasoning steps of one task: its answer after each ACT segment, and sigmoid(q_halt).

adapt-and-predict keeps no adapted embeddings, so the task is adapted again, alone, with the
settings its output folder recorded (settings.json) on the run that made it, and its test input
is then run through one chosen view, keeping every segment's decoded answer. Adapted alone, not
in its group of `--group-size` tasks, its fitting draws other batches, so the last segment can
differ from the view's vote in predictions.json; it shows how the model reasons, not a replay.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np

from ..data.colours import ARC_COLOURS, rgb
from ..data.dataset import views_by_task
from ..data.tasks import Task
from ..errors import DatasetError
from ..predict import SegmentTrace, segment_traces
from ..run_dir import PretrainedRun
from .page import grid_rows

CELL = 16  # GIF pixels per cell
CAPTION = 18  # GIF pixels under the grid for the segment and q_halt


def adapt_settings(out_dir: Path, run: PretrainedRun):
    """The adaptation `out_dir` was predicted with, refused when `run` is not its model."""
    from ..adapt import AdaptConfig
    from ..files.jsonio import read_json
    from ..out_dir import SETTINGS, model_digest

    path = Path(out_dir) / SETTINGS
    settings = read_json(path, "settings")
    if not isinstance(settings, dict) or not isinstance(settings.get("adapt"), dict):
        raise DatasetError(f"{path}: no adaptation settings recorded")
    if settings.get("model") != model_digest(run.model):
        raise DatasetError(f"{path}: predicted with another model than {run.path}'s")
    try:
        return AdaptConfig(**settings["adapt"])
    except TypeError as e:
        raise DatasetError(f"{path}: adaptation settings unknown here ({e})") from None


def trace_task(
    run: PretrainedRun, task: Task, adapt, view: int = 0, test_index: int = 0, device="cpu"
) -> SegmentTrace:
    """Adapt `task` alone as `adapt` says, on a copy of `run`'s model, and trace test input
    `test_index` through its view number `view` (0: the identity) segment by segment."""
    from ..adapt import adapt_tasks
    from ..data.encoding import task_canvas
    from ..hrm_core.distributed import DistInfo

    if not 0 <= test_index < len(task.test):
        raise DatasetError(f"task {task.id} has {len(task.test)} test inputs, no test {test_index}")
    model = copy.deepcopy(run.model)  # adaptation rewrites the embedding table
    adapt = dataclasses.replace(adapt, compile=False)  # one task: compiling would not pay
    dist = DistInfo(0, 1, next(model.parameters()).device)
    adapted = adapt_tasks(
        model, [task], run.canvas, adapt, dist, pretrained=run.views, loss=run.loss
    )
    views = views_by_task(adapted.views).get(task.id, [])
    if not 0 <= view < len(views):
        raise DatasetError(f"task {task.id} has {len(views)} views, no view {view}")
    canvas = task_canvas(task, run.canvas, bool(adapt.crop))
    return segment_traces(model, task, [views[view]], canvas, dist.device, test_index)[0]


def steps_data(trace: SegmentTrace, task: Task, view: int, test_index: int) -> dict:
    """The page's reasoning-steps section (see page.SCRIPT's `steps`)."""
    truth = task.test[test_index].output

    def right(grid) -> bool | None:
        if truth is None:
            return None
        return grid is not None and grid.shape == truth.shape and bool((grid == truth).all())

    return {
        "task": task.id,
        "view": view,
        "augmentation": trace.view.augmentation.name,
        "test_index": test_index,
        "input": grid_rows(task.test[test_index].input),
        "output": None if truth is None else grid_rows(truth),
        "segments": [
            {"grid": None if g is None else grid_rows(g), "q_halt": q, "right": right(g)}
            for g, q in zip(trace.grids, trace.q_halt)
        ],
    }


def write_gif(trace: SegmentTrace, path: str | Path, ms_per_frame: int = 800) -> None:
    """The steps as an animated GIF, one frame per ACT segment, captioned with sigmoid(q_halt)."""
    from PIL import Image, ImageDraw

    from ..files.atomic import write_atomic

    shapes = [g.shape for g in trace.grids if g is not None] or [(1, 1)]
    h, w = max(s[0] for s in shapes), max(s[1] for s in shapes)
    width = max(w * CELL, 160)  # room for the caption
    palette = np.array([rgb(c) for c in ARC_COLOURS], dtype=np.uint8)
    frames = []
    for k, (grid, q) in enumerate(zip(trace.grids, trace.q_halt)):
        frame = Image.new("RGB", (width, h * CELL + CAPTION), "white")
        if grid is not None:
            cells = palette[grid].repeat(CELL, 0).repeat(CELL, 1)  # (rows*CELL, cols*CELL, 3)
            frame.paste(Image.fromarray(cells), (0, 0))
        label = f"segment {k + 1}/{len(trace.grids)}  q_halt {q:.3f}"
        ImageDraw.Draw(frame).text((2, h * CELL + 3), label + ("" if grid is not None else
                                   "  (no grid)"), fill="black")  # fmt: skip
        frames.append(frame)

    def save(f) -> None:
        # Pillow merges identical frames; each caption names its segment, so none are, and the
        # GIF holds one frame per segment even where the answer does not change.
        frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                       duration=ms_per_frame, loop=0)  # fmt: skip

    write_atomic(Path(path), save)
