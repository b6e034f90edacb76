"""Turn ARC tasks into the token arrays the model trains on: one puzzle identifier per variant.

Every (task, augmentation) pair is a *puzzle view* with its own identifier, hence its own
learned embedding; identifier 0 is the blank. Demonstration pairs are what a view trains on;
test pairs are what it is evaluated on, never trained on.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..hrm_core.sampling import Examples
from .augment import Augmentation, translate, variants
from .encoding import encode_batch, task_canvas
from .tasks import Pair, Task

BLANK_ID = 0


@dataclass(frozen=True)
class View:
    """One augmented view of a task; `puzzle_id` indexes the embedding table."""

    task_id: str
    augmentation: Augmentation
    puzzle_id: int

    @property
    def name(self) -> str:
        return f"{self.task_id}|{self.augmentation.name}"

    def to_record(self) -> tuple[str, str, int]:
        """(task id, augmentation name, puzzle id), as a run records its views."""
        return self.task_id, self.augmentation.name, self.puzzle_id

    @classmethod
    def from_record(cls, record) -> View:
        task_id, augmentation, puzzle_id = record
        return cls(task_id, Augmentation.from_name(augmentation), int(puzzle_id))


def make_views(tasks: Iterable[Task], n_variants: int, seed: int, first_id: int = 1) -> list[View]:
    """Up to `n_variants` unique views per task (identity first), numbered from `first_id`.

    A task's views are drawn from a seed of its own id, not of its place in `tasks`, so it gets
    the same views in any group of tasks (a resumed or regrouped adaptation run included).
    """
    views = []
    for task in tasks:
        for aug in variants(task, n_variants, seed + zlib.crc32(task.id.encode())):
            views.append(View(task.id, aug, first_id + len(views)))
    return views


def view_examples(
    views: Sequence[View],
    tasks_by_id: dict[str, Task],
    split: str,
    canvas: int,
    rng: np.random.Generator | None = None,
    crop: bool = False,
) -> Examples:
    """Encode the `split` ("train" = demonstrations, "test") pairs of every view.

    With `rng`, the pairs are placed at random offsets on the canvas (training only), all but
    one random pair per view, which stays at the top left where test inputs sit (as the
    official builder does). Test pairs without a known output are skipped: they cannot be
    supervised. With `crop`, each task's examples run on its `task_canvas` (offsets stay
    inside it); the arrays still hold the full canvas.
    """
    inputs, outputs, ids, tasks, offsets, sides = [], [], [], [], [], []
    task_index: dict[str, int] = {}
    for view in views:
        side = task_canvas(tasks_by_id[view.task_id], canvas, crop)
        pairs: list[Pair] = [
            p for p in getattr(tasks_by_id[view.task_id], split) if p.output is not None
        ]
        anchored = rng.integers(len(pairs)) if rng is not None and pairs else -1
        for i, pair in enumerate(pairs):
            x, y = view.augmentation.apply(pair.input), view.augmentation.apply(pair.output)
            inputs.append(x)
            outputs.append(y)
            ids.append(view.puzzle_id)
            tasks.append(task_index.setdefault(view.task_id, len(task_index)))
            moved = rng is not None and i != anchored
            offsets.append(translate(x, y, side, rng) if moved else (0, 0))
            sides.append(side)
    return Examples(
        encode_batch(inputs, canvas, offsets),
        encode_batch(outputs, canvas, offsets),
        np.asarray(ids, dtype=np.int64),
        np.asarray(tasks, dtype=np.int64),
        np.asarray(sides, dtype=np.int64) if crop else None,
    )


def views_by_task(views: Iterable[View]) -> dict[str, list[View]]:
    grouped: dict[str, list[View]] = {}
    for v in views:
        grouped.setdefault(v.task_id, []).append(v)
    return grouped
