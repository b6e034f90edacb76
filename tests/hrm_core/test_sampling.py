"""Samplers: the official task-by-task order and the uniform one, per seed, rank and resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrm_arc.hrm_core.distributed import DistInfo
from hrm_arc.hrm_core.sampling import (
    Examples,
    ExampleSampler,
    TaskSampler,
    epoch_size,
    steps_for_epochs,
)

SINGLE = DistInfo(0, 1, torch.device("cpu"))


def examples(puzzle_ids, tasks=None) -> Examples:
    n = len(puzzle_ids)
    tokens = np.zeros((n, 4), dtype=np.uint8)
    tasks = None if tasks is None else np.asarray(tasks, dtype=np.int64)
    return Examples(tokens, tokens, np.asarray(puzzle_ids, dtype=np.int64), tasks)


def draw(sampler, steps: int) -> list[np.ndarray]:
    return [sampler.next_indices() for _ in range(steps)]


# ----------------------------------------------------------------------------- examples


def test_example_sampler_covers_every_example_once_per_epoch() -> None:
    n, batch = 10, 4  # batches straddle epoch boundaries
    sampler = ExampleSampler(examples(range(n)), batch, seed=3, dist_info=SINGLE)
    batches = draw(sampler, 10)
    assert all(len(b) == batch for b in batches)
    flat = np.concatenate(batches)  # 40 indices = 4 epochs
    for epoch in range(4):
        assert sorted(flat[epoch * n : (epoch + 1) * n]) == list(range(n)), epoch
    assert sampler.epoch == 4
    assert not np.array_equal(flat[:n], flat[n : 2 * n])  # each epoch is reshuffled


# ----------------------------------------------------------------------------- tasks


def two_tasks() -> Examples:
    """Task 0: one view (id 1) of 3 examples. Task 1: five views (ids 2-6) of 2 examples."""
    ids = [1, 1, 1] + [v for v in range(2, 7) for _ in range(2)]
    return examples(ids, [0] * 3 + [1] * 10)


def test_task_sampler_draws_every_task_once_per_epoch_with_one_whole_view() -> None:
    data = two_tasks()
    sampler = TaskSampler(data, 5, seed=0, dist_info=SINGLE)  # 3 + 2 examples: one epoch
    for _ in range(20):
        batch = sampler.next_indices()
        ids = data.puzzle_ids[batch]
        assert sorted(ids[:3].tolist() + ids[3:].tolist()) == sorted(ids.tolist())
        # one whole view of each task: task 0's three examples, and both of one task-1 view
        assert sorted(batch[ids == 1].tolist()) == [0, 1, 2]
        other = ids[ids != 1]
        assert len(other) == 2 and other[0] == other[1]
    assert sampler.epoch == 20


def test_task_sampler_weighs_tasks_equally_whatever_their_views() -> None:
    data = two_tasks()
    seen = np.concatenate(draw(TaskSampler(data, 1, seed=1, dist_info=SINGLE), 4000))
    from_task_0 = np.mean(data.tasks[seen] == 0)
    # Each epoch: task 0 gives 3 examples, task 1 gives 2; but a batch of 1 cuts each view to
    # its first example, so each task gives one draw an epoch.
    assert from_task_0 == pytest.approx(0.5, abs=0.03)
    # Uniform sampling would give task 0 only 3 of the 13 examples.
    uniform = np.concatenate(draw(ExampleSampler(data, 1, seed=1, dist_info=SINGLE), 4000))
    assert np.mean(data.tasks[uniform] == 0) == pytest.approx(3 / 13, abs=0.03)


def test_task_sampler_visits_every_view_of_a_task() -> None:
    data = two_tasks()
    seen = np.concatenate(draw(TaskSampler(data, 5, seed=2, dist_info=SINGLE), 200))
    assert set(data.puzzle_ids[seen].tolist()) == {1, 2, 3, 4, 5, 6}


def test_without_tasks_every_view_is_a_task() -> None:
    data = examples([1, 1, 2, 3, 3, 3])
    sampler = TaskSampler(data, 6, seed=0, dist_info=SINGLE)
    assert sorted(sampler.next_indices().tolist()) == list(range(6))  # one epoch = all views


# ----------------------------------------------------------------------------- both

SAMPLERS = [ExampleSampler, TaskSampler]


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_is_deterministic_per_seed(sampler) -> None:
    data = two_tasks()
    a = np.concatenate(draw(sampler(data, 4, 7, SINGLE), 9))
    b = np.concatenate(draw(sampler(data, 4, 7, SINGLE), 9))
    c = np.concatenate(draw(sampler(data, 4, 8, SINGLE), 9))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_state_dict_continues_the_same_sequence(sampler) -> None:
    first = sampler(two_tasks(), 4, 1, SINGLE)
    draw(first, 3)
    state = first.state_dict()
    expected = draw(first, 5)
    other = sampler(two_tasks(), 4, 99, SINGLE)
    other.load_state_dict(state)
    assert all(np.array_equal(x, y) for x, y in zip(draw(other, 5), expected))


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_a_sampler_state_drawn_over_other_data_is_refused(sampler) -> None:
    first = sampler(two_tasks(), 4, 1, SINGLE)
    draw(first, 3)
    state = first.state_dict()
    bigger = examples([1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    with pytest.raises(ValueError, match="drawn over other data"):
        sampler(bigger, 4, 1, SINGLE).load_state_dict(state)  # units never drawn
    state["position"] = len(state["order"]) + 1  # past the end: none ever drawn again
    with pytest.raises(ValueError, match="drawn over other data"):
        sampler(two_tasks(), 4, 1, SINGLE).load_state_dict(state)


@pytest.mark.parametrize("sampler", SAMPLERS)
@pytest.mark.parametrize("n", [12, 10])  # 10: global batches straddle epoch boundaries
def test_rank_slices_partition_the_global_batch(sampler, n: int) -> None:
    world, data = 3, examples(range(n))
    glob = draw(sampler(data, 6, 5, SINGLE), 8)
    ranks = [draw(sampler(data, 6, 5, DistInfo(r, world, SINGLE.device)), 8) for r in range(world)]
    for step, global_batch in enumerate(glob):
        parts = [ranks[r][step] for r in range(world)]
        assert [len(p) for p in parts] == [2, 2, 2]
        assert np.array_equal(np.concatenate(parts), global_batch)
        if n % 6 == 0:  # within one epoch every example appears once: slices are disjoint
            assert len(set(np.concatenate(parts).tolist())) == 6


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_sampler_refuses_an_empty_dataset(sampler) -> None:
    with pytest.raises(ValueError, match="no training examples"):
        sampler(examples([]), 4, 0, SINGLE)
    with pytest.raises(ValueError, match="no training examples"):
        epoch_size(examples([]), "tasks")


def test_epochs_count_as_the_official_trainer_counts() -> None:
    data = two_tasks()  # 2 tasks, 6 views, 13 examples
    assert epoch_size(data, "examples") == 13
    assert epoch_size(data, "tasks") == pytest.approx(2 * 13 / 6)  # tasks x examples per view
    assert steps_for_epochs(100, 8, 1) == 13
    assert steps_for_epochs(100, 8, 0.01) == 1


# ----------------------------------------------------------------------------- canvases


def sized(puzzle_ids, sides, tasks=None) -> Examples:
    data = examples(puzzle_ids, tasks)
    return Examples(data.inputs, data.labels, data.puzzle_ids, data.tasks,
                    np.asarray(sides, dtype=np.int64))  # fmt: skip


def test_example_sampler_batches_one_canvas_at_a_time_and_draws_every_example_alike() -> None:
    n, batch = 12, 3
    sides = [2, 4, 4, 2, 3, 4, 2, 2, 3, 4, 4, 2]
    sampler = ExampleSampler(sized(range(n), sides), batch, seed=5, dist_info=SINGLE)
    batches = draw(sampler, 40)  # 120 rows: 10 epochs
    assert all(len(b) == batch and len({sides[i] for i in b}) == 1 for b in batches)
    # Every example is drawn once an epoch; those drawn but not yet batched wait in a queue.
    waiting = [*sampler.queues.values()]
    taken = np.bincount(np.concatenate(batches + waiting), minlength=n)
    this_epoch = np.isin(np.arange(n), sampler.order[: sampler.position])
    assert np.array_equal(taken, sampler.epoch + this_epoch)
    assert all(len(q) < batch for q in waiting)


def test_task_sampler_keeps_a_view_in_one_batch_on_its_task_s_canvas() -> None:
    # Task 0 (view 1, 3 examples) on side 2; task 1 (views 2-6, 2 examples each) on side 4.
    data = two_tasks()
    sides = np.where(data.task_of_each() == 0, 2, 4)
    sampler = TaskSampler(sized(data.puzzle_ids, sides, data.tasks), 3, 0, SINGLE)
    for batch in draw(sampler, 30):
        assert len(set(sides[batch])) == 1
        views = set(data.puzzle_ids[batch].tolist())
        assert views == {1} if sides[batch[0]] == 2 else len(views) <= 2  # 2 + a cut 1


def test_task_sampler_refuses_a_task_spread_over_two_canvases() -> None:
    with pytest.raises(ValueError, match="examples of a task must share one canvas"):
        TaskSampler(sized([1, 1, 2], [2, 4, 4], [0, 0, 1]), 2, 0, SINGLE)


@pytest.mark.parametrize("sampler_type", [ExampleSampler, TaskSampler])
def test_a_resumed_sampler_with_waiting_queues_draws_the_same_batches(sampler_type) -> None:
    data = sized(range(10), [2, 4] * 5)
    first = sampler_type(data, 3, seed=1, dist_info=SINGLE)
    draw(first, 7)
    state = first.state_dict()
    assert state["queues"]  # something waits for its batch
    resumed = sampler_type(data, 3, seed=1, dist_info=SINGLE)
    resumed.load_state_dict(state)
    assert all(np.array_equal(a, b) for a, b in zip(draw(first, 9), draw(resumed, 9)))


def test_a_sampler_state_queuing_examples_of_another_canvas_is_refused() -> None:
    data = sized(range(6), [2, 4] * 3)
    state = ExampleSampler(data, 4, seed=1, dist_info=SINGLE).state_dict()
    state["queues"] = {2: np.array([1])}  # example 1 runs on side 4
    with pytest.raises(ValueError, match="queued examples of another canvas than 2"):
        ExampleSampler(data, 4, seed=1, dist_info=SINGLE).load_state_dict(state)
