"""The order training examples are drawn in: task by task as the official HRM trainer draws
them, or uniformly over every example.

A sampler yields, step after step, this rank's slice of the next global batch (indices into
`Examples`), deterministically from its seed, and saves its state so a resumed run draws the
same batches as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from .distributed import DistInfo


@dataclass
class Examples:
    """Token arrays the trainer samples from (uint8 tokens; PAD labels are ignored)."""

    inputs: np.ndarray  # (N, S)
    labels: np.ndarray  # (N, S)
    puzzle_ids: np.ndarray  # (N,) the view (augmented task) each example belongs to
    tasks: np.ndarray | None = None
    """(N,) the task each example's view augments; None: every view is a task of its own."""

    def __len__(self) -> int:
        return len(self.puzzle_ids)

    def task_of_each(self) -> np.ndarray:
        return self.puzzle_ids if self.tasks is None else self.tasks

    def digest(self) -> str:
        """A digest of every array: whether a resumed run trains on the same examples."""
        digest = hashlib.blake2b(digest_size=16)
        for array in (self.inputs, self.labels, self.puzzle_ids, self.task_of_each()):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()


class _Sampler:
    """Shared by both orders: a seeded permutation of `units`, walked and reshuffled each epoch,
    and the global batch cut into rank slices."""

    def __init__(self, units: int, batch_size: int, seed: int, dist_info: DistInfo):
        if units == 0:
            raise ValueError("no training examples")
        self.batch_size, self.dist = batch_size, dist_info
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(units)
        self.position = 0
        self.epoch = 0

    def next_indices(self) -> np.ndarray:
        taken, need = [], self.batch_size
        while need:
            chunk = self._take(need)
            taken.append(chunk)
            need -= len(chunk)
            if self.position == len(self.order):
                self.order, self.position = self.rng.permutation(len(self.order)), 0
                self.epoch += 1
        indices = np.concatenate(taken)  # (global_batch,)
        return np.array_split(indices, self.dist.world_size)[self.dist.rank]

    def _take(self, need: int) -> np.ndarray:
        """At most `need` example indices from the units at `position` on, moving past them."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.copy(),
            "position": self.position,
            "epoch": self.epoch,
        }

    def load_state_dict(self, state: dict) -> None:
        order, position = np.asarray(state["order"]), int(state["position"])
        units = np.arange(len(self.order))
        if not np.array_equal(np.sort(order), units) or not 0 <= position <= len(order):
            # Some units would never be drawn, or none ever again.
            raise ValueError(
                f"sampler state drawn over other data: {len(order)} units, walked to "
                f"{position}, where this run has {len(self.order)}"
            )
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position, self.epoch = order, position, state["epoch"]


class ExampleSampler(_Sampler):
    """Every example once per epoch, in a fresh random order each epoch."""

    def __init__(self, examples: Examples, batch_size: int, seed: int, dist_info: DistInfo):
        super().__init__(len(examples), batch_size, seed, dist_info)

    def _take(self, need: int) -> np.ndarray:
        chunk = self.order[self.position : self.position + need]
        self.position += len(chunk)
        return chunk


class TaskSampler(_Sampler):
    """The official order: each epoch shuffles the tasks; each task in turn gives one of its
    views at random and all that view's examples, in random order, until the batch is full.

    So every task is drawn equally often whatever its number of views (a task of few colours
    has fewer unique augmentations), and a view's examples share a batch, where SignSGD sums
    their gradients. A view cut off by the end of a batch loses the rest of its examples, as
    officially; unlike the official loader, a batch may run on into the next epoch instead of
    being dropped, so a set smaller than one batch still trains.
    """

    def __init__(self, examples: Examples, batch_size: int, seed: int, dist_info: DistInfo):
        by_view = np.argsort(examples.puzzle_ids, kind="stable")
        view_starts = _run_starts(examples.puzzle_ids[by_view])
        self.view_examples = np.split(by_view, view_starts[1:])  # example indices per view
        view_tasks = examples.task_of_each()[by_view[view_starts]]  # (views,)
        by_task = np.argsort(view_tasks, kind="stable")
        self.task_views = np.split(by_task, _run_starts(view_tasks[by_task])[1:])
        tasks = len(self.task_views) if len(examples) else 0
        super().__init__(tasks, batch_size, seed, dist_info)

    def _take(self, need: int) -> np.ndarray:
        views = self.task_views[self.order[self.position]]
        self.position += 1
        view = views[self.rng.integers(len(views))]
        return self.rng.permutation(self.view_examples[view])[:need]


def _run_starts(sorted_keys: np.ndarray) -> np.ndarray:
    """Where each run of equal keys starts in a sorted array (nowhere in an empty one)."""
    return np.flatnonzero(np.r_[len(sorted_keys) > 0, sorted_keys[1:] != sorted_keys[:-1]])


SAMPLERS = {"tasks": TaskSampler, "examples": ExampleSampler}


def epoch_size(examples: Examples, sampling: str) -> float:
    """The examples an epoch counts: every example, or, task by task, as the official trainer
    counts (tasks x mean examples per view; about what one view per task draws, less the
    examples of views cut off at the end of a batch)."""
    if len(examples) == 0:
        raise ValueError("no training examples")
    if sampling == "examples":
        return len(examples)
    n_tasks = len(np.unique(examples.task_of_each()))
    return n_tasks * len(examples) / len(np.unique(examples.puzzle_ids))


def steps_for_epochs(epoch_examples: float, batch_size: int, epochs: float) -> int:
    """Steps that draw `epochs` epochs of `epoch_examples` examples (see `epoch_size`).

    A drawn example is only taken by rows that halted, so with ACT each example is trained on
    fewer times than this suggests; the count keeps runs comparable with the official one.
    """
    return max(1, math.ceil(epoch_examples * epochs / batch_size))


__all__ = [
    "SAMPLERS",
    "ExampleSampler",
    "Examples",
    "TaskSampler",
    "epoch_size",
    "steps_for_epochs",
]
