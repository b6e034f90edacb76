"""Tokens: EOS placement, offsets, round trips on every bundled grid, garbage-proof decoding."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from hrm_arc.data.augment import Augmentation, random_augmentation
from hrm_arc.data.encoding import (
    COLOUR_OFFSET,
    DEFAULT_CANVAS,
    EOS,
    PAD,
    VOCAB_SIZE,
    canvas_for,
    decode_batch,
    decode_grid,
    encode_batch,
    encode_grid,
    encode_views,
)
from hrm_arc.data.tasks import Pair, Task, load_tasks
from hrm_arc.hrm_core.tokens import IGNORE_LABEL, labels_from_tokens

SETS = ("arc-agi-1/training", "arc-agi-1/evaluation", "arc-agi-2/training", "arc-agi-2/evaluation")


@cache
def all_grids() -> list[np.ndarray]:
    return [g for name in SETS for task in load_tasks(name) for g in task.grids]


def reference_encode(grid: np.ndarray, canvas: int, offset=(0, 0)) -> np.ndarray:
    """Cell by cell, straight from the official builder's rule (corner below-right stays PAD)."""
    r0, c0 = offset
    h, w = grid.shape
    board = [[PAD] * canvas for _ in range(canvas)]
    for r in range(h):
        for c in range(w):
            board[r0 + r][c0 + c] = int(grid[r, c]) + COLOUR_OFFSET
    for c in range(w):
        if r0 + h < canvas:
            board[r0 + h][c0 + c] = EOS
    for r in range(h):
        if c0 + w < canvas:
            board[r0 + r][c0 + w] = EOS
    return np.array(board, dtype=np.uint8).reshape(-1)


def test_constants():
    assert (PAD, EOS, COLOUR_OFFSET, VOCAB_SIZE, IGNORE_LABEL, DEFAULT_CANVAS) == (
        0, 1, 2, 12, -100, 30,
    )  # fmt: skip


# ---------------------------------------------------------------- EOS placement and offsets


def test_eos_row_and_column_corner_is_pad():
    g = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    expected = [
        [3, 4, 5, 1, 0],
        [6, 7, 8, 1, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_array_equal(encode_grid(g, 5).reshape(5, 5), expected)
    np.testing.assert_array_equal(encode_grid(g, 5), reference_encode(g, 5))


def test_grid_touching_canvas_edges():
    g = np.array([[0, 9, 0]], dtype=np.uint8)
    # Touches the right edge: no EOS column, EOS row below.
    np.testing.assert_array_equal(
        encode_grid(g, 3).reshape(3, 3), [[2, 11, 2], [1, 1, 1], [0, 0, 0]]
    )
    # Touches the bottom edge through its offset: EOS column only.
    np.testing.assert_array_equal(
        encode_grid(g, 4, (3, 0)).reshape(4, 4),
        [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [2, 11, 2, 1]],
    )
    # Fills the canvas: no EOS at all.
    full = np.full((30, 30), 7, dtype=np.uint8)
    assert (encode_grid(full) == 9).all()


def test_offsets_move_grid_and_eos():
    g = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    expected = [
        [0, 0, 0, 0, 0],
        [0, 0, 3, 4, 1],
        [0, 0, 5, 6, 1],
        [0, 0, 1, 1, 0],
        [0, 0, 0, 0, 0],
    ]
    np.testing.assert_array_equal(encode_grid(g, 5, (1, 2)).reshape(5, 5), expected)


def test_random_grids_and_offsets_match_reference():
    rng = np.random.default_rng(0)
    grids, offsets = [], []
    for _ in range(300):
        canvas = 12
        h, w = (int(x) for x in rng.integers(1, canvas + 1, size=2))
        grids.append(rng.integers(0, 10, size=(h, w)).astype(np.uint8))
        offsets.append((int(rng.integers(0, canvas - h + 1)), int(rng.integers(0, canvas - w + 1))))
    batch = encode_batch(grids, 12, offsets)
    for g, off, row in zip(grids, offsets, batch, strict=True):
        expected = reference_encode(g, 12, off)
        np.testing.assert_array_equal(encode_grid(g, 12, off), expected)
        np.testing.assert_array_equal(row, expected)


def test_grid_larger_than_canvas_or_bad_offset_raises():
    g = np.zeros((11, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="does not fit"):
        encode_grid(g, 10)
    with pytest.raises(ValueError, match="does not fit"):
        encode_batch([np.zeros((2, 2), np.uint8), g], 10)
    with pytest.raises(ValueError, match="does not fit"):
        encode_grid(np.zeros((2, 2), np.uint8), 10, (9, 0))
    with pytest.raises(ValueError, match="does not fit"):
        encode_grid(np.zeros((2, 2), np.uint8), 10, (-1, 0))
    with pytest.raises(ValueError, match="non-negative"):
        encode_batch([np.zeros((2, 2), np.uint8)], 10, [(0, -1)])
    with pytest.raises(ValueError, match="colours must be 0-9"):
        encode_batch([np.zeros((2, 2), np.uint8), np.full((2, 2), 10, np.uint8)], 10)
    with pytest.raises(ValueError, match="2-D"):
        encode_grid(np.zeros((2, 2, 2), np.uint8), 10)


def test_encode_views_matches_one_by_one():
    rng = np.random.default_rng(1)
    g = rng.integers(0, 10, size=(7, 4)).astype(np.uint8)
    augs = [Augmentation(0, random_augmentation(rng).colours) for _ in range(64)]
    maps = np.array([a.colours for a in augs])
    rows, cols = rng.integers(0, 30 - 7 + 1, 64), rng.integers(0, 30 - 4 + 1, 64)
    # Write into a strided slice of a bigger array, as a dataset builder does.
    big = np.zeros((64, 3, 900), dtype=np.uint8)
    views = encode_views(g, maps, 30, (rows, cols), out=big[:, 1])
    assert views.shape == (64, 900)
    assert not big[:, 0].any() and not big[:, 2].any()
    for i, aug in enumerate(augs):
        expected = encode_grid(aug.apply(g), 30, (int(rows[i]), int(cols[i])))
        np.testing.assert_array_equal(big[i, 1], expected)


# ---------------------------------------------------------------- round trips and labels


def test_round_trip_every_bundled_grid():
    grids = all_grids()
    assert len(grids) > 10_000
    decoded = decode_batch(encode_batch(grids))
    for g, d in zip(grids, decoded, strict=True):
        assert d.dtype == np.uint8
        np.testing.assert_array_equal(d, g)


def test_round_trip_small_canvas():
    rng = np.random.default_rng(2)
    for h, w in [(1, 1), (10, 10), (3, 10), (10, 1)]:
        g = rng.integers(0, 10, size=(h, w)).astype(np.uint8)
        np.testing.assert_array_equal(decode_grid(encode_grid(g, 10), 10), g)


def test_labels_ignore_pad_only():
    tokens = encode_grid(np.array([[3]], dtype=np.uint8), 3)
    labels = labels_from_tokens(tokens)
    assert labels.dtype == np.int64
    assert labels.reshape(3, 3).tolist() == [[5, 1, -100], [1, -100, -100], [-100] * 3]
    assert labels_from_tokens(np.zeros((2, 9), np.uint8)).tolist() == [[-100] * 9] * 2


# ---------------------------------------------------------------- decoding predictions


def test_decode_takes_largest_top_left_colour_rectangle():
    b = np.zeros((5, 5), dtype=np.int64)
    b[:4, :4] = 5  # a 4x4 block of colour 3 ...
    b[1, 3] = EOS  # ... whose second row stops after 3 cells
    b[3, 1] = 0  # ... and whose fourth row after 1: best is 3 rows x 3 = 9 > 4 x 1
    np.testing.assert_array_equal(decode_grid(b.reshape(-1), 5), np.full((3, 3), 3))
    tie = np.zeros((4, 4), dtype=np.int64)
    tie[0, :2] = 2  # row 0: 2 wide; rows 0-1 would be 2 x 1: tie at area 2, the first wins
    tie[1, :1] = 2
    np.testing.assert_array_equal(decode_grid(tie.reshape(-1), 4), np.zeros((1, 2)))


def test_decode_garbage_never_raises():
    rng = np.random.default_rng(3)
    n = 900
    batches = [
        np.zeros((4, n), dtype=np.uint8),  # all PAD
        np.ones((4, n), dtype=np.int32),  # all EOS
        rng.integers(0, VOCAB_SIZE, size=(500, n)),
        rng.integers(-(2**40), 2**40, size=(200, n)),
        rng.integers(-128, 128, size=(200, n)).astype(np.int8),
        rng.integers(0, 2**16, size=(200, n)).astype(np.uint16),
        np.full((3, n), 2**63 - 1, dtype=np.int64),
        np.full((3, n), 11, dtype=np.uint64),  # all colour 9: the whole canvas
        np.where(rng.random((200, n)) < 0.97, 7, rng.integers(0, 20, size=(200, n))),
    ]
    for batch in batches:
        for g in decode_batch(batch):
            assert g.ndim == 2 and g.dtype == np.uint8 and g.size >= 1
            assert g.max() <= 9 and g.shape[0] <= 30 and g.shape[1] <= 30
        single = decode_grid(batch[0])
        assert single.ndim == 2 and single.dtype == np.uint8
    assert decode_grid(np.zeros(n, dtype=np.int64)).tolist() == [[0]]  # empty -> 1x1 of colour 0
    assert decode_batch(np.zeros((1, n), dtype=np.int64), blank_failures=False) == [None]
    assert decode_grid(np.full(n, 11, dtype=np.uint64)).shape == (30, 30)


def test_decode_rejects_wrong_length_or_dtype():
    with pytest.raises(ValueError, match="shape"):
        decode_grid(np.zeros(899, dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        decode_grid(np.zeros(900, dtype=np.float32))


# ---------------------------------------------------------------- canvas size


def test_canvas_for():
    def task(*shapes: tuple[int, int]) -> Task:
        pairs = tuple(Pair(np.zeros(s, np.uint8), np.zeros(s[::-1], np.uint8)) for s in shapes)
        return Task("t", pairs, (Pair(np.zeros((1, 1), np.uint8)),))

    assert canvas_for([task((2, 3)), task((7, 1))]) == 7
    hidden = Task("h", task((2, 3)).train, (Pair(np.zeros((1, 1), np.uint8), np.zeros((9, 9),
                                                                              np.uint8)),))
    assert canvas_for([hidden]) == 3  # a test output is what the model must find, not read
    assert canvas_for([task((2, 3))], margin=1) == 4
    assert canvas_for(load_tasks("arc-agi-1/training")) == 30
    with pytest.raises(ValueError, match="at least one"):
        canvas_for([])
    with pytest.raises(ValueError, match="margin"):
        canvas_for([task((2, 2))], margin=-1)
