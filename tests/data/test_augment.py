"""Augmentations: exact inverses on every bundled task, variant counts, names, translation."""

from __future__ import annotations

from functools import cache
from itertools import permutations

import numpy as np
import pytest

from hrm_arc.data.augment import (
    DIHEDRAL_INVERSE,
    DIHEDRAL_NAMES,
    IDENTITY,
    Augmentation,
    count_unique_variants,
    dihedral,
    random_augmentation,
    random_offsets,
    translate,
    variants,
)
from hrm_arc.data.tasks import Pair, Task, load_tasks

SETS = ("arc-agi-1/training", "arc-agi-1/evaluation", "arc-agi-2/training", "arc-agi-2/evaluation")

NUMPY_DIHEDRAL = (
    lambda g: g,
    lambda g: np.rot90(g, 1),
    lambda g: np.rot90(g, 2),
    lambda g: np.rot90(g, 3),
    np.fliplr,
    np.flipud,
    lambda g: g.T,
    lambda g: np.fliplr(np.rot90(g, 1)),
)


@cache
def bundled(name: str) -> list[Task]:
    return list(load_tasks(name))


def grid(rows: list[list[int]]) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


def make_task(*pairs: tuple[list, list | None]) -> Task:
    """Last pair is the test pair; its output may be None."""
    made = [Pair(grid(i), None if o is None else grid(o)) for i, o in pairs]
    return Task("synthetic", tuple(made[:-1]), (made[-1],))


def content(task: Task, aug: Augmentation) -> tuple:
    return tuple((g.shape, g.tobytes()) for g in map(aug.apply, task.visible_grids))


def brute_force_count(task: Task, permute_background: bool = False) -> int:
    """Distinct contents over every dihedral x every injective map of the used colours."""
    used = sorted(set(np.concatenate([g.ravel() for g in task.visible_grids]).tolist()))
    movable = used if permute_background else [c for c in used if c != 0]
    targets = range(10) if permute_background else range(1, 10)
    seen = set()
    for d in range(8):
        for image in permutations(targets, len(movable)):
            mapping = dict(zip(movable, image, strict=True))
            free = iter(sorted(set(range(10)) - set(image)))
            colours = tuple(mapping[c] if c in mapping else next(free) for c in range(10))
            seen.add(content(task, Augmentation(d, colours)))
    return len(seen)


# One non-zero colour, no symmetry: 8 dihedral images x 9 colours.
ASYMMETRIC = make_task(([[0, 5, 0], [0, 0, 0]], [[5, 5], [0, 5], [0, 0]]), ([[5, 0]], None))


# ---------------------------------------------------------------- transforms and inverses


def test_views_do_not_depend_on_whether_the_test_outputs_are_known():
    # The answer adds a colour and breaks the demonstrations' symmetry; a hidden-answer copy of
    # the task must get the same views, or a set scores differently with --solutions given.
    answered = make_task(([[1, 1], [1, 1]], [[2, 2], [2, 2]]), ([[1, 1]], [[3, 0]]))
    blind = Task(answered.id, answered.train, (Pair(answered.test[0].input),))
    assert count_unique_variants(answered) == count_unique_variants(blind)
    assert variants(answered, 30, seed=0) == variants(blind, 30, seed=0)


def test_dihedral_ids_match_numpy_and_official_table():
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert len(DIHEDRAL_NAMES) == 8
    for d, reference in enumerate(NUMPY_DIHEDRAL):
        np.testing.assert_array_equal(dihedral(g, d), reference(g))
        np.testing.assert_array_equal(dihedral(dihedral(g, d), DIHEDRAL_INVERSE[d]), g)
    with pytest.raises(ValueError, match="dihedral"):
        dihedral(g, 8)


def test_all_dihedral_times_random_colours_invert():
    rng = np.random.default_rng(0)
    shapes = [(1, 1), (1, 7), (7, 1), (3, 5), (30, 30), (30, 1), (12, 29)]
    for shape in shapes:
        g = rng.integers(0, 10, size=shape).astype(np.uint8)
        for d in range(8):
            for permute_background in (False, True):
                base = random_augmentation(rng, permute_background)
                aug = Augmentation(d, base.colours)
                out = aug.apply(g)
                assert out.dtype == np.uint8 and out.flags.c_contiguous
                assert out.shape == (shape if d in (0, 2, 4, 5) else shape[::-1])
                np.testing.assert_array_equal(aug.invert(out), g)
                np.testing.assert_array_equal(aug.inverse.apply(out), g)
                lut = np.array(aug.colours)
                np.testing.assert_array_equal(out, NUMPY_DIHEDRAL[d](lut[g]))


@pytest.mark.parametrize("name", SETS)
def test_every_bundled_task_variants_invert_exactly(name):
    for i, task in enumerate(bundled(name)):
        augs = variants(task, 8, seed=i)
        assert augs[0] == IDENTITY
        assert len(augs) == 8  # every bundled task admits far more than 8
        assert len({content(task, a) for a in augs}) == len(augs)
        for aug in augs:
            moved = aug.apply_task(task)
            for before, after in zip(task.grids, moved.grids, strict=True):
                np.testing.assert_array_equal(aug.invert(after), before)


def test_apply_task_keeps_structure_and_unknown_outputs():
    aug = Augmentation(1, (0, 2, 3, 4, 5, 6, 7, 8, 9, 1))
    moved = aug.apply_task(ASYMMETRIC)
    assert moved.id == ASYMMETRIC.id and len(moved.train) == 1 and len(moved.test) == 1
    assert moved.test[0].output is None
    np.testing.assert_array_equal(moved.train[0].input, grid([[0, 0], [6, 0], [0, 0]]))


# ---------------------------------------------------------------- unique variants


def test_one_colour_asymmetric_task_has_exactly_72_variants():
    assert count_unique_variants(ASYMMETRIC) == 72
    augs = variants(ASYMMETRIC, 1000, 0)
    assert len(augs) == 72
    assert augs[0] == IDENTITY
    assert len({content(ASYMMETRIC, a) for a in augs}) == 72
    assert all(a.colours[0] == 0 for a in augs)


def test_permute_background_counts_and_moves_zero():
    assert count_unique_variants(ASYMMETRIC, permute_background=True) == 8 * 10 * 9
    augs = variants(ASYMMETRIC, 10_000, 0, permute_background=True)
    assert len(augs) == 720
    assert any(a.colours[0] != 0 for a in augs)
    assert len({content(ASYMMETRIC, a) for a in augs}) == 720


def test_symmetric_tasks_admit_fewer():
    # Every grid is invariant under all 8 transforms: only the colour matters.
    full = make_task(([[3, 3], [3, 3]], [[3]]), ([[3]], None))
    assert count_unique_variants(full) == 9
    # Every grid is symmetric under transpose, not all under more: 4 dihedral classes x 9.
    diag = make_task(([[1, 0], [0, 1]], [[1, 0], [0, 0]]), ([[1]], None))
    assert count_unique_variants(diag) == brute_force_count(diag) == 36
    # A checkerboard maps to itself under rot90 with its two colours swapped.
    board = make_task(([[1, 2], [2, 1]], [[1, 2], [2, 1]]), ([[2, 1], [1, 2]], None))
    assert count_unique_variants(board) == brute_force_count(board) == 72
    for task in (full, diag, board):
        augs = variants(task, 1000, 1)
        assert len(augs) == count_unique_variants(task)
        assert len({content(task, a) for a in augs}) == len(augs)


@pytest.mark.parametrize("permute_background", [False, True])
def test_images_equal_but_for_the_background_are_distinct_variants(permute_background):
    # Rotated, [[0, 1], [1, 0]] is itself with 0 and 1 swapped: the same image if 0 may move,
    # a second variant if it may not.
    for rows in ([[0, 1], [1, 0]], [[0, 1, 1], [0, 0, 1]]):
        task = make_task((rows, rows), (rows, None))
        expected = brute_force_count(task, permute_background)
        assert count_unique_variants(task, permute_background) == expected
        augs = variants(task, 10**4, 0, permute_background)
        assert len({content(task, a) for a in augs}) == len(augs) == expected
    assert count_unique_variants(make_task(([[0, 1, 1], [0, 0, 1]], [[1]]), ([[1]], None))) == 72


def random_small_task(rng: np.random.Generator, trial: int) -> Task:
    palette = rng.choice(10 if trial % 2 else 4, size=int(rng.integers(1, 4)), replace=False)

    def random_grid() -> np.ndarray:
        h, w = (int(x) for x in rng.integers(1, 4, size=2))
        if trial % 3 == 0:
            w = h
        g = rng.choice(palette, size=(h, w)).astype(np.uint8)
        return np.maximum(g, g.T) if trial % 5 == 0 and h == w else g  # some symmetric ones

    return Task("r", (Pair(random_grid(), random_grid()),), (Pair(random_grid(), None),))


def test_count_matches_brute_force_on_random_small_tasks():
    rng = np.random.default_rng(1)
    for trial in range(40):
        task = random_small_task(rng, trial)
        permute_background = trial % 4 == 0
        expected = brute_force_count(task, permute_background)
        assert count_unique_variants(task, permute_background) == expected
        augs = variants(task, 10**6, trial, permute_background)
        assert len(augs) == expected
        assert len({content(task, a) for a in augs}) == expected


def test_variants_deterministic_distinct_and_sized():
    task = bundled("arc-agi-1/training")[0]
    a, b = variants(task, 300, seed=7), variants(task, 300, seed=7)
    assert a == b and len(a) == 300 and a[0] == IDENTITY
    assert variants(task, 300, seed=8) != a
    assert len({content(task, x) for x in a}) == 300
    assert variants(task, 1, seed=0) == [IDENTITY]
    with pytest.raises(ValueError, match="n must be"):
        variants(task, 0, seed=0)


def test_small_spaces_enumerated_exactly_on_bundled_tasks():
    small = [t for t in bundled("arc-agi-1/training") if count_unique_variants(t) <= 600]
    assert small  # single-colour tasks exist
    for task in small[:5]:
        augs = variants(task, 2000, seed=0)
        assert len(augs) == count_unique_variants(task)
        assert len({content(task, x) for x in augs}) == len(augs)
        # Asking for fewer than the space still gives exactly n distinct ones.
        few = variants(task, len(augs) // 2, seed=3)
        assert len(few) == len(augs) // 2 and len(set(few)) == len(few)


# ---------------------------------------------------------------- names and validation


def test_name_round_trip():
    rng = np.random.default_rng(2)
    assert IDENTITY.name == "t0.c0123456789"
    assert Augmentation(3, (0, 5, 3, 6, 1, 7, 2, 8, 4, 9)).name == "t3.c0536172849"
    for _ in range(200):
        aug = random_augmentation(rng, permute_background=True)
        assert Augmentation.from_name(aug.name) == aug
        assert hash(Augmentation.from_name(aug.name)) == hash(aug)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "t0",
        "t0.c012345678",
        "t0.c01234567890",
        "t8.c0123456789",
        "t0.c0123456788",
        "t01.c0123456789",
        "x0.c0123456789",
        "t0.c0123456789 ",
        "t0_c0123456789",
    ],
)
def test_bad_names_raise(name):
    with pytest.raises(ValueError, match="augmentation name"):
        Augmentation.from_name(name)


def test_bad_values_raise():
    for d in (-1, 8, 1.0, True, "1", None):
        with pytest.raises(ValueError, match="dihedral"):
            Augmentation(d)
    for colours in (
        (0,) * 10,
        tuple(range(9)),
        tuple(range(11)),
        (*range(9), 9.0),
        5,
        "0123456789",
    ):
        with pytest.raises(ValueError, match="colours"):
            Augmentation(0, colours)
    assert Augmentation(np.int64(2), tuple(np.arange(10))) == Augmentation(2)


def test_random_augmentation_keeps_background_unless_asked():
    rng = np.random.default_rng(3)
    draws = [random_augmentation(rng) for _ in range(200)]
    assert all(a.colours[0] == 0 for a in draws)
    assert {a.dihedral for a in draws} == set(range(8))
    assert any(random_augmentation(rng, True).colours[0] != 0 for _ in range(200))


# ---------------------------------------------------------------- translation


def test_translate_keeps_pair_inside_canvas():
    rng = np.random.default_rng(4)
    a, b = np.zeros((3, 7), np.uint8), np.zeros((5, 2), np.uint8)
    seen = set()
    for _ in range(500):
        r, c = translate(a, b, 10, rng)
        assert 0 <= r <= 10 - 5 and 0 <= c <= 10 - 7
        seen.add((r, c))
    assert len(seen) == 6 * 4  # every position is reachable
    assert translate(np.zeros((30, 30), np.uint8), None, 30, rng) == (0, 0)
    with pytest.raises(ValueError, match="does not fit"):
        translate(np.zeros((11, 2), np.uint8), b, 10, rng)
    rows, cols = random_offsets([(3, 7), (5, 2)], 10, 1000, np.random.default_rng(5))
    assert rows.max() == 5 and cols.max() == 3 and rows.min() == cols.min() == 0
