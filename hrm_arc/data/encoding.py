"""Grids <-> token sequences (DESIGN §3 Tokens), and decoding of model predictions.

A grid sits on a ``canvas x canvas`` board of PAD tokens at a top-left offset (0, 0 unless
translated), colour ``c`` becomes token ``c + 2``, and the board is flattened row-major. EOS
marks the grid's extent: the row just below the grid, across the grid's columns, and the column
just right of it, down the grid's rows. The corner cell diagonally below-right of the grid stays
PAD, exactly as in the official builder (sapientinc/HRM ``dataset/build_arc_dataset.py``, which
writes ``[eos_row, col:eos_col]`` and ``[row:eos_row, eos_col]``). An EOS row or column that
would fall outside the canvas is not written.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

from ..hrm_core.tokens import PAD
from .tasks import NUM_COLOURS, Task

EOS = 1
COLOUR_OFFSET = 2
VOCAB_SIZE = COLOUR_OFFSET + NUM_COLOURS  # 12
DEFAULT_CANVAS = 30


def _check_fits(grid: np.ndarray, canvas: int, offset: tuple[int, int] = (0, 0)) -> None:
    """Raise ValueError unless grid is a non-empty 2-D grid of colours 0-9 inside the canvas."""
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError(f"grid must be 2-D with at least one cell, got shape {grid.shape}")
    if grid.max() >= NUM_COLOURS:
        raise ValueError(f"grid colours must be 0-9, got {int(grid.max())}")
    h, w = grid.shape
    r, c = offset
    if r < 0 or c < 0 or r + h > canvas or c + w > canvas:
        raise ValueError(
            f"grid of {h}x{w} cells at offset ({r}, {c}) does not fit a {canvas}x{canvas} canvas"
        )


def encode_grid(
    grid: np.ndarray, canvas: int = DEFAULT_CANVAS, offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """One grid as a flat (canvas*canvas,) uint8 token array; see the module docstring."""
    grid = np.asarray(grid, dtype=np.uint8)
    _check_fits(grid, canvas, offset)
    r, c = offset
    h, w = grid.shape
    board = np.full((canvas + 1, canvas + 1), PAD, dtype=np.uint8)  # +1: room for a cut EOS
    board[r : r + h, c : c + w] = grid + COLOUR_OFFSET
    board[r + h, c : c + w] = EOS
    board[r : r + h, c + w] = EOS
    return np.ascontiguousarray(board[:canvas, :canvas]).reshape(-1)


def encode_views(
    grid: np.ndarray,
    colour_maps: np.ndarray,
    canvas: int = DEFAULT_CANVAS,
    offsets: tuple[np.ndarray, np.ndarray] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Encode one grid under n colour maps and n offsets at once (the augmentation fast path).

    Args:
        grid: (h, w) colours 0-9, already dihedrally transformed.
        colour_maps: (n, 10) ints; view i recolours c -> colour_maps[i, c].
        offsets: (rows, cols), each (n,) ints; None puts every view at the top left.
        out: optional (n, canvas, canvas) or (n, canvas*canvas) uint8 array of PAD to write
            into, e.g. a strided slice of a larger dataset array.

    Returns:
        (n, canvas*canvas) uint8 tokens (a view of `out` when given).
    """
    grid = np.asarray(grid, dtype=np.uint8)
    maps = np.asarray(colour_maps)
    n = maps.shape[0]
    rows, cols = _offsets(offsets, n)
    _check_fits(grid, canvas, (int(rows.max(initial=0)), int(cols.max(initial=0))))
    if out is None:
        out = np.zeros((n, canvas * canvas), dtype=np.uint8)
    if maps.shape != (n, NUM_COLOURS):
        raise ValueError(f"colour_maps must have shape (n, 10), got {maps.shape}")
    colour_tokens = (maps + COLOUR_OFFSET).astype(np.uint8)  # (n, 10)
    tokens = colour_tokens[:, grid]  # (n, h, w): one gather over the grid's cells only
    boards = out.reshape(n, canvas, canvas)
    if not np.may_share_memory(boards, out):
        raise ValueError("out must reshape to (n, canvas, canvas) without a copy")
    _place(boards, tokens, rows, cols)
    return boards.reshape(n, canvas * canvas)


def _offsets(offsets: tuple[np.ndarray, np.ndarray] | None, n: int) -> tuple[np.ndarray, ...]:
    if offsets is None:
        return np.zeros(n, dtype=np.intp), np.zeros(n, dtype=np.intp)
    rows, cols = (np.asarray(o, dtype=np.intp).reshape(-1) for o in offsets)
    if len(rows) != n or len(cols) != n:
        raise ValueError(f"need {n} row and column offsets, got {len(rows)} and {len(cols)}")
    if n and (rows.min() < 0 or cols.min() < 0):
        raise ValueError("offsets must be non-negative")
    return rows, cols


def _place(boards: np.ndarray, grids: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
    """Write grid tokens grids[i] (h, w) at (rows[i], cols[i]) of PAD boards[i], with EOS.

    Each write is one fancy assignment through a strided view of every top-left window of the
    boards (no per-view Python loop). EOS goes where it fits: the row below falls off
    the canvas exactly when the grid touches the bottom edge, the column when it touches the right.
    """
    n, canvas, _ = boards.shape
    h, w = grids.shape[1:]
    s0, s1, s2 = boards.strides

    def windows(bh: int, bw: int) -> np.ndarray:  # (n, canvas-bh+1, canvas-bw+1, bh, bw)
        shape = (n, canvas - bh + 1, canvas - bw + 1, bh, bw)
        return as_strided(boards, shape=shape, strides=(s0, s1, s2, s1, s2))

    views = np.arange(n)
    windows(h, w)[views, rows, cols] = grids
    below = np.flatnonzero(rows + h < canvas)
    windows(1, w)[below, rows[below] + h, cols[below]] = EOS
    right = np.flatnonzero(cols + w < canvas)
    windows(h, 1)[right, rows[right], cols[right] + w] = EOS


def encode_batch(
    grids: Sequence[np.ndarray],
    canvas: int = DEFAULT_CANVAS,
    offsets: Sequence[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Encode grids of any shapes as (n, canvas*canvas) uint8 tokens, vectorised per shape."""
    n = len(grids)
    out = np.zeros((n, canvas * canvas), dtype=np.uint8)
    offs = np.zeros((n, 2), dtype=np.intp) if offsets is None else np.asarray(offsets, np.intp)
    if offs.shape != (n, 2):
        raise ValueError(f"offsets must be {n} (row, col) pairs, got shape {offs.shape}")
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for i, g in enumerate(grids):
        by_shape.setdefault(np.shape(g), []).append(i)
    for shape, members in by_shape.items():
        if len(shape) != 2:
            raise ValueError(f"grid {members[0]} is not 2-D: shape {shape}")
        idx = np.array(members)
        rows, cols = _offsets((offs[idx, 0], offs[idx, 1]), len(idx))
        stack = np.stack([np.asarray(grids[i], dtype=np.uint8) for i in members])
        # The cell-wise max stands for the whole stack: same shape, same largest colour.
        _check_fits(stack.max(axis=0), canvas, (int(rows.max()), int(cols.max())))
        sub = np.zeros((len(idx), canvas, canvas), dtype=np.uint8)
        _place(sub, stack + COLOUR_OFFSET, rows, cols)
        out[idx] = sub.reshape(len(idx), -1)
    return out


def decode_batch(
    tokens: np.ndarray, canvas: int = DEFAULT_CANVAS, blank_failures: bool = True
) -> list[np.ndarray | None]:
    """Decode (n, canvas*canvas) token rows of any int dtype; never raises on bad values.

    The grid is the largest-area top-left rectangle of colour tokens, found as the official
    evaluator does: scanning down the rows, the width is the run of colour tokens at the start
    of the row, shrunk to the narrowest run so far; the row count with the largest
    rows x width wins (the first on ties). A prediction with no colour token at the top-left
    (all PAD, all EOS, garbage) decodes to a 1x1 grid of colour 0, so callers always get a valid
    ARC grid (which simply scores as wrong); to None with `blank_failures=False`, for callers
    that must tell a failure from a real 1x1 grid of colour 0.
    """
    tok = np.asarray(tokens)
    if tok.ndim != 2 or tok.shape[1] != canvas * canvas:
        raise ValueError(f"expected tokens of shape (n, {canvas * canvas}), got {tok.shape}")
    if not np.issubdtype(tok.dtype, np.integer):
        raise ValueError(f"tokens must be integers, got dtype {tok.dtype}")
    board = tok.reshape(-1, canvas, canvas)
    colour = (board >= COLOUR_OFFSET) & (board < VOCAB_SIZE)  # (n, canvas, canvas)
    run = np.where(colour.all(axis=2), canvas, colour.argmin(axis=2))  # leading run per row
    width = np.minimum.accumulate(run, axis=1)  # (n, canvas): width of the first r+1 rows
    area = width * np.arange(1, canvas + 1)
    height = area.argmax(axis=1) + 1
    width = width[np.arange(len(board)), height - 1]
    grids = []
    for b, h, w in zip(board, height.tolist(), width.tolist(), strict=True):
        if w == 0:
            grids.append(np.zeros((1, 1), dtype=np.uint8) if blank_failures else None)
        else:
            grids.append((b[:h, :w] - COLOUR_OFFSET).astype(np.uint8))
    return grids


def decode_grid(tokens: np.ndarray, canvas: int = DEFAULT_CANVAS) -> np.ndarray:
    """Decode one (canvas*canvas,) token array; see :func:`decode_batch`."""
    return decode_batch(np.asarray(tokens).reshape(1, -1), canvas)[0]


CANVAS_STEP = 4


def canvas_sizes(canvas: int) -> list[int]:
    """The few canvases a task may run on when cropped: multiples of CANVAS_STEP below
    `canvas`, and `canvas` itself (eight sizes at 30, so few compiled shapes)."""
    return [*range(CANVAS_STEP, canvas, CANVAS_STEP), canvas]


def task_canvas(task: Task, canvas: int, crop: bool = True) -> int:
    """The smallest of `canvas_sizes(canvas)` that holds every grid of `task` the model reads
    or writes with its EOS row and column (or that is the full canvas): each of its views runs
    there, cut from the full canvas's top-left corner, so every supervised token stays.
    Without `crop`, the full canvas."""
    if not crop:
        return canvas
    needed = min(canvas_for([task], margin=1), canvas)
    return next(side for side in canvas_sizes(canvas) if side >= needed)


def canvas_for(tasks: Iterable[Task], margin: int = 0) -> int:
    """The smallest canvas that holds every grid the model reads or writes (demonstrations and
    test inputs, never the test outputs, which a hidden-answer set does not show), plus `margin`.

    A grid touching the canvas edge simply has no EOS there (the edge marks its extent), so the
    largest side suffices (margin=0). Pass margin=1 to leave room for the EOS row and column of
    every grid, so that the model always sees an explicit end marker.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    sides = [max(g.shape) for task in tasks for g in task.visible_grids]
    if not sides:
        raise ValueError("canvas_for needs at least one task with a grid")
    return max(sides) + margin
