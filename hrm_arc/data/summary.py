"""Per-task facts for `hrm-arc show`: pair counts, grid sizes, colours, unique augmentations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .augment import count_unique_variants
from .tasks import Task


@dataclass(frozen=True)
class TaskSummary:
    id: str
    n_train: int
    n_test: int
    max_rows: int
    max_cols: int
    colours: tuple[int, ...]
    unique_variants: int
    has_solutions: bool


def summarize(task: Task) -> TaskSummary:
    grids = task.grids
    colours = np.unique(np.concatenate([g.ravel() for g in grids]))
    return TaskSummary(
        id=task.id,
        n_train=len(task.train),
        n_test=len(task.test),
        max_rows=max(g.shape[0] for g in grids),
        max_cols=max(g.shape[1] for g in grids),
        colours=tuple(int(c) for c in colours),
        unique_variants=count_unique_variants(task),
        has_solutions=task.has_solutions,
    )
