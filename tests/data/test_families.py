from collections import deque
from functools import cache

import numpy as np
import pytest

from hrm_arc.data.families import (
    FAMILIES,
    Family,
    family_puzzles,
    is_identifiable,
    parameter_split,
    parse_puzzle_id,
    shortest_path_tasks,
)
from hrm_arc.data.tasks import Pair


@cache
def puzzles(split: str, max_side: int = 8):
    # Enough puzzles per family to cycle through every parameter (recolour has 62 pretrain ones).
    return family_puzzles(split, puzzles_per_family=64, n_test=2, max_side=max_side, seed=3)


def grid(rows: str) -> np.ndarray:
    return np.array([[int(ch) for ch in row] for row in rows.split()], dtype=np.uint8)


# ------------------------------------------------------------------ parameter splits


def test_at_least_six_families():
    assert len(FAMILIES) >= 6
    assert all(isinstance(f, Family) and f.name == name for name, f in FAMILIES.items())


@pytest.mark.parametrize("name", FAMILIES)
def test_split_is_disjoint_complete_and_deterministic(name):
    pretrain, heldout = parameter_split(name)
    assert pretrain and heldout
    assert not set(pretrain) & set(heldout)
    assert sorted(pretrain + heldout, key=str) == sorted(FAMILIES[name].params, key=str)
    assert parameter_split(name) == (pretrain, heldout)


@pytest.mark.parametrize("name", FAMILIES)
def test_heldout_are_new_combinations_of_pretrained_ingredients(name):
    pretrain, heldout = parameter_split(name)
    for param in heldout:
        for position, value in enumerate(param):
            assert any(p[position] == value for p in pretrain), (name, param, position)


def test_unknown_family_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="unknown family"):
        parameter_split("nope")
    with pytest.raises(ValueError, match="split"):
        family_puzzles("train")
    with pytest.raises(ValueError, match="max_side"):
        family_puzzles("pretrain", max_side=4)
    with pytest.raises(ValueError, match="n_train"):
        family_puzzles("pretrain", n_train=0)


# ------------------------------------------------------------------ generated puzzles


def test_determinism_and_subset_stability():
    a = family_puzzles("heldout", puzzles_per_family=5, seed=7)
    b = family_puzzles("heldout", puzzles_per_family=5, seed=7)
    assert a.name == "families/heldout" and len(a) == 5 * len(FAMILIES)
    assert a.to_dict() == b.to_dict()
    assert a.to_dict() != family_puzzles("heldout", puzzles_per_family=5, seed=8).to_dict()
    # A puzzle depends only on (seed, split, family, index).
    few = family_puzzles("heldout", families=["gravity"], puzzles_per_family=3, seed=7)
    assert few.to_dict() == {i: a[i].to_dict() for i in few.ids}


@pytest.mark.parametrize("split", ["pretrain", "heldout"])
def test_puzzles_use_their_split_and_cover_it(split):
    tasks = puzzles(split)
    assert len(set(tasks.ids)) == len(tasks) == 64 * len(FAMILIES)
    used = {}
    for task in tasks:
        name, param = parse_puzzle_id(task.id)
        used.setdefault(name, set()).add(param)
        assert task.id.startswith(f"{name}-") and task.id[-4:].isdigit()
    for name in FAMILIES:
        assert used[name] == set(parameter_split(name)[split == "heldout"])


@pytest.mark.parametrize(("split", "max_side"), [("pretrain", 8), ("heldout", 8), ("heldout", 5)])
def test_grids_are_valid(split, max_side):
    for task in puzzles(split, max_side):
        assert len(task.train) == 4 and len(task.test) == 2
        for g in task.grids:
            assert g.dtype == np.uint8 and g.ndim == 2
            assert 1 <= min(g.shape) and max(g.shape) <= max_side
            assert g.max() <= 9


@pytest.mark.parametrize("split", ["pretrain", "heldout"])
def test_pairs_obey_the_rule_and_demos_identify_it(split):
    for task in puzzles(split):
        name, param = parse_puzzle_id(task.id)
        family = FAMILIES[name]
        pairs = task.train + task.test
        for pair in pairs:
            assert np.array_equal(family.apply(pair.input, param), pair.output), task.id
            same = pair.input.shape == pair.output.shape and (pair.input == pair.output).all()
            assert not same, f"{task.id}: degenerate pair"
        assert len({p.input.tobytes() + bytes(p.input.shape) for p in pairs}) == len(pairs)
        assert is_identifiable(family, param, task.train), task.id


def test_identifiability_check_catches_ambiguity():
    outline = FAMILIES["outline"]
    # In a 1x2 grid the 4- and 8-neighbourhoods coincide, so n4 and n8 cannot be told apart.
    assert not is_identifiable(outline, (2, "n8"), [Pair(grid("10"), grid("12"))])
    assert is_identifiable(outline, (2, "n8"), [Pair(grid("10 00"), grid("12 22"))])
    # Only recolour 1->5 maps this pair, though "paint everything 5" (another family) would too.
    assert is_identifiable(FAMILIES["recolour"], (1, 5), [Pair(grid("11 11"), grid("55 55"))])
    dihedral = FAMILIES["dihedral"]
    assert not is_identifiable(dihedral, (90, "noflip"), [Pair(grid("12 12"), grid("22 11"))])


# ------------------------------------------------------------------ hand-checked rules


def test_rules_on_hand_examples():
    f = FAMILIES
    g = grid("100 020 003")
    assert np.array_equal(f["recolour"].apply(g, (2, 7)), grid("100 070 003"))
    assert np.array_equal(f["shift"].apply(g, ("right", 1)), grid("010 002 000"))
    assert np.array_equal(f["shift"].apply(g, ("up", 2)), grid("003 000 000"))
    assert np.array_equal(f["dihedral"].apply(grid("12 34"), (90, "noflip")), grid("24 13"))
    assert np.array_equal(f["dihedral"].apply(grid("12 34"), (0, "flip")), grid("21 43"))
    assert np.array_equal(f["scale"].apply(grid("12"), (2, 1)), grid("12 12"))


def test_gravity_stops_at_obstacles():
    g = grid("444 450 000 040")
    # Colour 4 falls; 5 is fixed and holds the 4 above it (down) or left of it (right).
    assert np.array_equal(FAMILIES["gravity"].apply(g, ("down", 4)), grid("040 050 400 444"))
    assert np.array_equal(FAMILIES["gravity"].apply(g, ("right", 4)), grid("444 450 000 004"))
    assert np.array_equal(FAMILIES["gravity"].apply(g, ("up", 4)), grid("444 450 040 000"))


def test_outline_fill_and_ray():
    g = grid("000 010 000")
    assert np.array_equal(FAMILIES["outline"].apply(g, (2, "n4")), grid("020 212 020"))
    assert np.array_equal(FAMILIES["outline"].apply(g, (2, "n8")), grid("222 212 222"))
    box = grid("00000 03330 03030 03330 00000")
    inside = FAMILIES["fill"].apply(box, (6, "inside"))
    outside = FAMILIES["fill"].apply(box, (6, "outside"))
    assert np.array_equal(inside, grid("00000 03330 03630 03330 00000"))
    assert np.array_equal(outside, grid("66666 63336 63036 63336 66666"))
    rays = FAMILIES["ray"].apply(grid("1000 0000 0020"), ("right", 7))
    assert np.array_equal(rays, grid("1777 0000 0027"))
    rays = FAMILIES["ray"].apply(grid("0000 0000 1020"), ("up_right", 7))
    assert np.array_equal(rays, grid("0070 0707 1020"))


# ------------------------------------------------------------------ shortest paths


def bfs(board: np.ndarray, start: tuple) -> dict:
    dist, queue = {start: 0}, deque([start])
    while queue:
        r, c = queue.popleft()
        for n in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            inside = 0 <= n[0] < board.shape[0] and 0 <= n[1] < board.shape[1]
            if inside and board[n] != 5 and n not in dist:
                dist[n] = dist[(r, c)] + 1
                queue.append(n)
    return dist


def count_shortest_paths(board: np.ndarray, start: tuple, end: tuple) -> int:
    # A cell lies on a shortest path iff d(start, cell) + d(cell, end) == d(start, end).
    ds, de = bfs(board, start), bfs(board, end)
    ways = {start: 1}
    for cell in sorted((c for c in ds if ds[c] + de.get(c, 1e9) == ds[end]), key=ds.get)[1:]:
        r, c = cell
        prev = [(r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)]
        ways[cell] = sum(ways.get(p, 0) for p in prev if ds.get(p) == ds[cell] - 1)
    return ways[end]


def test_shortest_paths_are_valid_minimal_and_unique():
    tasks = shortest_path_tasks(120, size=7, wall_prob=0.3, seed=1, min_length=2)
    assert tasks.ids == ["shortest-path"]
    task = tasks[0]
    assert len(task.train) == 96 and len(task.test) == 24
    boards = task.train + task.test
    assert len({p.input.tobytes() for p in boards}) == len(boards)
    for pair in boards:
        board, out = pair.input, pair.output
        assert board.shape == out.shape == (7, 7) and set(np.unique(board)) <= {0, 2, 3, 5}
        start, end = (tuple(map(int, np.argwhere(board == c)[0])) for c in (2, 3))
        assert (board == 2).sum() == (board == 3).sum() == 1
        changed = out != board
        assert (board[changed] == 0).all() and (out[changed] == 4).all()
        cells = {tuple(map(int, c)) for c in np.argwhere(out == 4)} | {start, end}
        # The marked cells alone connect start to end, in the fewest possible steps.
        dist = bfs(np.where(np.isin(out, [2, 3, 4]), 0, 5), start)
        shortest = bfs(board, start)[end]
        assert dist.get(end) == shortest == len(cells) - 1 >= 3
        assert count_shortest_paths(board, start, end) == 1


def test_shortest_path_determinism_and_arguments():
    a = shortest_path_tasks(10, seed=4).to_dict()
    assert a == shortest_path_tasks(10, seed=4).to_dict()
    assert a != shortest_path_tasks(10, seed=5).to_dict()
    with pytest.raises(ValueError, match="n_test"):
        shortest_path_tasks(1)
    with pytest.raises(ValueError, match="size"):
        shortest_path_tasks(10, size=2)
