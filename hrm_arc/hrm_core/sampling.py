"""The order training examples are drawn in: task by task as the official HRM trainer draws
them, or uniformly over every example.

A sampler yields, step after step, this rank's slice of the next global batch (indices into
`Examples`), deterministically from its seed, and saves its state so a resumed run draws the
same batches as an uninterrupted one. Where examples run on canvases of several sizes, each
batch holds examples of one size: the units drawn wait in a queue per size until one fills.
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
    sides: np.ndarray | None = None
    """(N,) the side of the square canvas each example runs on, cut from the top-left corner
    of the full one (S = side * side); None: every example runs on the full canvas."""

    def __len__(self) -> int:
        return len(self.puzzle_ids)

    def task_of_each(self) -> np.ndarray:
        return self.puzzle_ids if self.tasks is None else self.tasks

    def side_of_each(self) -> np.ndarray:
        """(N,) each example's canvas side; 0 for the full canvas."""
        return np.zeros(len(self), np.int64) if self.sides is None else self.sides

    def without(self, dropped: np.ndarray) -> Examples:
        """These examples less those the (N,) bool mask `dropped` marks."""
        keep = ~dropped
        pick = lambda array: None if array is None else array[keep]  # noqa: E731
        return Examples(self.inputs[keep], self.labels[keep], self.puzzle_ids[keep],
                        pick(self.tasks), pick(self.sides))  # fmt: skip

    def side_of(self, indices: np.ndarray) -> int:
        """The canvas side the examples `indices` share (0: the full canvas)."""
        if self.sides is None:
            return 0  # no per-example array to build: this runs every training step
        sides = np.unique(self.sides[indices])
        if len(sides) > 1:
            raise ValueError(f"a batch must run on one canvas, got sides {sides.tolist()}")
        return int(sides[0]) if len(sides) else 0

    def take(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and labels of `indices`, which share one canvas, on that canvas."""
        inputs, labels = self.inputs[indices], self.labels[indices]
        side = self.side_of(indices)
        return (crop(inputs, side), crop(labels, side)) if side else (inputs, labels)

    def digest(self) -> str:
        """A digest of every array: whether a resumed run trains on the same examples."""
        digest = hashlib.blake2b(digest_size=16)
        arrays = (self.inputs, self.labels, self.puzzle_ids, self.task_of_each())
        for array in arrays + (() if self.sides is None else (self.sides,)):
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).data)
        return digest.hexdigest()


def crop(tokens: np.ndarray, side: int) -> np.ndarray:
    """(B, canvas*canvas) tokens cut to the (B, side*side) of their top-left corner."""
    canvas = math.isqrt(tokens.shape[1])
    return tokens.reshape(-1, canvas, canvas)[:, :side, :side].reshape(len(tokens), -1)


class _Sampler:
    """Shared by both orders: a seeded permutation of `units`, walked and reshuffled each epoch,
    a queue per canvas size, and the global batch cut into rank slices."""

    def __init__(self, units: int, sides: np.ndarray, batch_size: int, seed: int,
                 dist_info: DistInfo):  # fmt: skip
        if units == 0:
            raise ValueError("no training examples")
        self.batch_size, self.dist, self.sides = batch_size, dist_info, sides
        self.rng = np.random.default_rng(seed)
        self.order = self.rng.permutation(units)
        self.position = 0
        self.epoch = 0
        self.queues: dict[int, np.ndarray] = {}
        """Example indices drawn, waiting for their canvas's batch to fill, by side."""

    def next_indices(self) -> np.ndarray:
        while (side := self._full_queue()) is None:
            for size, chunk in self._by_side(self._take()):
                self.queues[size] = np.concatenate((self.queues.get(size, chunk[:0]), chunk))
            if self.position == len(self.order):
                self.order, self.position = self.rng.permutation(len(self.order)), 0
                self.epoch += 1
        indices = self.queues.pop(side)  # (global_batch,)
        return np.array_split(indices, self.dist.world_size)[self.dist.rank]

    def _full_queue(self) -> int | None:
        return next((s for s, q in self.queues.items() if len(q) == self.batch_size), None)

    def _room(self, side: int) -> int:
        return self.batch_size - len(self.queues.get(side, ()))

    def _by_side(self, chunk: np.ndarray) -> list[tuple[int, np.ndarray]]:
        sides = self.sides[chunk]
        return [(int(s), chunk[sides == s]) for s in dict.fromkeys(sides.tolist())]

    def _take(self) -> np.ndarray:
        """Example indices from the units at `position` on, moving past them; never more than
        their canvas's queue has room for."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "order": self.order.copy(),
            "position": self.position,
            "epoch": self.epoch,
            "queues": {side: q.copy() for side, q in self.queues.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        order, position = np.asarray(state["order"]), int(state["position"])
        units = np.arange(len(self.order))
        # A sampler of one canvas never holds a queue between batches.
        saved = state.get("queues", {})
        queues = {int(s): np.asarray(q, dtype=np.int64) for s, q in saved.items()}
        if not np.array_equal(np.sort(order), units) or not 0 <= position <= len(order):
            # Some units would never be drawn, or none ever again.
            raise ValueError(
                f"sampler state drawn over other data: {len(order)} units, walked to "
                f"{position}, where this run has {len(self.order)}"
            )
        for side, queue in queues.items():
            if len(queue) >= self.batch_size or not np.all(self.sides[queue] == side):
                raise ValueError(f"sampler state queued examples of another canvas than {side}")
        self.rng.bit_generator.state = state["rng"]
        self.order, self.position, self.epoch = order, position, state["epoch"]
        self.queues = queues


class ExampleSampler(_Sampler):
    """Every example once per epoch, in a fresh random order each epoch."""

    def __init__(self, examples: Examples, batch_size: int, seed: int, dist_info: DistInfo):
        sides = examples.side_of_each()
        super().__init__(len(examples), sides, batch_size, seed, dist_info)

    def _take(self) -> np.ndarray:
        need = min(map(self._room, self.queues or [0]))  # so that no queue overfills
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
        sides = examples.side_of_each()
        task_sides = np.unique(np.stack((examples.task_of_each(), sides)), axis=1)
        if len(np.unique(task_sides[0])) < task_sides.shape[1]:  # a view must fit one batch
            raise ValueError("the examples of a task must share one canvas")
        super().__init__(tasks, sides, batch_size, seed, dist_info)

    def _take(self) -> np.ndarray:
        views = self.task_views[self.order[self.position]]
        self.position += 1
        view = views[self.rng.integers(len(views))]
        drawn = self.rng.permutation(self.view_examples[view])
        return drawn[: self._room(int(self.sides[drawn[0]]))]


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
