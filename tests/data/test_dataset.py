"""Views and their examples: identifiers, what is trained on, and where grids sit on the canvas."""

from __future__ import annotations

import numpy as np
import pytest

from hrm_arc.data.augment import IDENTITY
from hrm_arc.data.dataset import BLANK_ID, make_views, view_examples, views_by_task
from hrm_arc.data.encoding import COLOUR_OFFSET, canvas_sizes, encode_batch, task_canvas
from hrm_arc.data.tasks import Pair, Task, TaskSet
from hrm_arc.pretraining import build_pretraining_data

CANVAS = 10


def task(task_id: str, n_train: int = 3, solved: bool = True) -> Task:
    rng = np.random.default_rng(len(task_id) + n_train)

    def pair(output: bool = True) -> Pair:
        grid = rng.integers(0, 4, size=(2, 3), dtype=np.uint8)
        return Pair(grid, grid.T.copy() if output else None)

    return Task(task_id, tuple(pair() for _ in range(n_train)), (pair(solved),))


def top_left(board: np.ndarray) -> tuple[int, int]:
    """Where a grid starts on an encoded (canvas, canvas) board: its first colour cell."""
    rows, cols = np.nonzero(board >= COLOUR_OFFSET)
    return int(rows.min()), int(cols.min())


def test_views_are_numbered_from_1_identity_first_and_continue_where_told():
    tasks = [task("a"), task("bb")]
    views = make_views(tasks, 5, seed=0)
    assert [v.puzzle_id for v in views] == list(range(1, 11))  # 0 is the blank
    assert BLANK_ID == 0
    for group in views_by_task(views).values():
        assert group[0].augmentation == IDENTITY and len(group) == 5
    more = make_views([task("c")], 3, seed=0, first_id=11)
    assert [v.puzzle_id for v in more] == [11, 12, 13]


def test_examples_are_the_demonstrations_of_every_view_and_never_a_test_pair():
    tasks = [task("a", n_train=2), task("bb", n_train=4)]
    views = make_views(tasks, 3, seed=0)
    by_id = {t.id: t for t in tasks}
    examples = view_examples(views, by_id, "train", CANVAS)
    assert len(examples.inputs) == 3 * 2 + 3 * 4
    assert examples.puzzle_ids.tolist() == [v.puzzle_id for v in views
                                            for _ in by_id[v.task_id].train]  # fmt: skip
    tests = view_examples(views, by_id | {"bb": task("bb", 4, solved=False)}, "test", CANVAS)
    assert len(tests.inputs) == 3  # a test pair without an output cannot be supervised


def test_translation_shares_a_pairs_offset_and_keeps_one_pair_a_view_at_the_top_left():
    tasks = [task(f"t{i}", n_train=4) for i in range(30)]
    views = make_views(tasks, 2, seed=0)
    by_id = {t.id: t for t in tasks}
    still = view_examples(views, by_id, "train", CANVAS)
    assert {top_left(b) for b in still.inputs.reshape(-1, CANVAS, CANVAS)} == {(0, 0)}

    moved = view_examples(views, by_id, "train", CANVAS, np.random.default_rng(0))
    inputs = moved.inputs.reshape(-1, CANVAS, CANVAS)
    outputs = moved.labels.reshape(-1, CANVAS, CANVAS)
    starts = [top_left(b) for b in inputs]
    assert starts == [top_left(b) for b in outputs]  # input and output move together
    per_view: dict[int, list] = {}
    for view_id, start in zip(moved.puzzle_ids.tolist(), starts, strict=True):
        per_view.setdefault(view_id, []).append(start)
    assert all((0, 0) in s for s in per_view.values())  # where the test inputs sit
    # The other three of a view's four pairs spread over the 8x8 places where a 2x3 input and
    # its 3x2 output both fit (the top left among them, 1 in 64).
    assert sum(s != (0, 0) for s in starts) > 0.7 * len(starts)


def test_evaluation_demonstrations_get_identifiers_after_the_training_views():
    train, demos = TaskSet([task("a"), task("bb")]), TaskSet([task("ccc")])
    data = build_pretraining_data(train, 4, seed=0, eval_demo_tasks=demos)
    grouped = views_by_task(data.views)
    assert [v.puzzle_id for v in data.views] == list(range(1, len(data.views) + 1))
    assert min(v.puzzle_id for v in grouped["ccc"]) > max(
        v.puzzle_id for t in ("a", "bb") for v in grouped[t])  # fmt: skip
    assert data.heldout.ids == ["a", "bb"]  # the evaluation tasks' test pairs stay unseen
    with pytest.raises(ValueError, match="in both the training and the evaluation"):
        build_pretraining_data(train, 4, seed=0, eval_demo_tasks=TaskSet([task("a")]))


def test_training_the_test_pairs_holds_none_out_and_keeps_the_evaluation_tasks_unseen():
    train = TaskSet([task("a", n_train=2), task("bb", n_train=3), task("u", solved=False)])
    demos = TaskSet([task("ccc"), task("dddd", solved=False)])
    plain = build_pretraining_data(train, 1, seed=0, eval_demo_tasks=demos, translate=False)
    both = build_pretraining_data(
        train, 1, seed=0, eval_demo_tasks=demos, translate=False, train_test_pairs=True
    )
    assert plain.heldout.ids == ["a", "bb"] and not both.heldout
    assert plain.eval_tasks.ids == both.eval_tasks.ids == ["ccc"]  # known test outputs only
    # The solved test pairs of the training tasks (2 of 3) join the examples, nothing else.
    assert len(both.examples) == len(plain.examples) + 2
    trained = {bytes(row) for row in both.examples.inputs}
    for t in ("a", "bb"):
        view = next(v for v in both.views if v.task_id == t)
        (board,) = view_examples([view], {t: train[t]}, "test", both.canvas).inputs
        assert bytes(board) in trained
    view = next(v for v in both.views if v.task_id == "ccc")  # an evaluation task's stays out
    (board,) = view_examples([view], {"ccc": demos["ccc"]}, "test", both.canvas).inputs
    assert bytes(board) not in trained
    # Each task is recorded by its demonstrations as given, whichever pairs then trained.
    given = {t.id: t.digest(with_tests=False) for t in [*train, *demos]}
    assert plain.demo_digests == both.demo_digests == given
    assert len(set(given.values())) == len(given)


def sized_task(task_id: str, side: int) -> Task:
    """Demonstrations of 2x2 grids and one of `side` x 1 cells."""
    rng = np.random.default_rng(side)
    small = rng.integers(0, 9, size=(2, 2), dtype=np.uint8)
    tall = rng.integers(0, 9, size=(side, 1), dtype=np.uint8)
    return Task(task_id, (Pair(small, small), Pair(tall, tall)), (Pair(small, small),))


def test_canvas_sizes_and_the_canvas_each_task_runs_on() -> None:
    assert canvas_sizes(30) == [4, 8, 12, 16, 20, 24, 28, 30]
    assert canvas_sizes(10) == [4, 8, 10] and canvas_sizes(3) == [3]
    # The tallest grid and its EOS row: 3 + 1 -> 4, 4 + 1 -> 8, 9 + 1 -> 10, 10 -> the canvas.
    assert [task_canvas(sized_task("t", s), 10) for s in (3, 4, 9, 10)] == [4, 8, 10, 10]
    assert task_canvas(sized_task("t", 3), 10, crop=False) == 10


def test_cropped_examples_are_the_encoding_on_the_task_s_own_canvas() -> None:
    tasks = [sized_task("short", 3), sized_task("tall", 6)]
    by_id = {t.id: t for t in tasks}
    views = make_views(tasks, 4, seed=0)
    rng = np.random.default_rng(0)
    cropped = view_examples(views, by_id, "train", CANVAS, np.random.default_rng(0), crop=True)
    full = view_examples(views, by_id, "train", CANVAS, rng)
    assert cropped.sides.tolist() == [4] * 8 + [8] * 8 and full.sides is None
    for side in (4, 8):
        rows = np.flatnonzero(cropped.sides == side)
        inputs, labels = cropped.take(rows)
        assert inputs.shape == (len(rows), side * side)
        # Translated inside the task's canvas: every colour cell sits in its corner (an EOS
        # past a grid touching its edge falls off, as on a canvas of that side).
        colours = cropped.inputs[rows].reshape(-1, CANVAS, CANVAS) >= COLOUR_OFFSET
        assert not colours[:, side:].any() and not colours[:, :, side:].any()
        expected = encode_batch(
            [v.augmentation.apply(p.output) for v in views for p in by_id[v.task_id].train
             if task_canvas(by_id[v.task_id], CANVAS) == side],
            side, [top_left(b) for b in labels.reshape(-1, side, side)],
        )  # fmt: skip
        assert np.array_equal(labels, expected)
    with pytest.raises(ValueError, match="one canvas"):
        cropped.take(np.array([0, 15]))
