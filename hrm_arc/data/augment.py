"""Task augmentations: 8 dihedral transforms x colour permutations, exact inverses, unique variants.

An :class:`Augmentation` recolours a grid (colour ``c`` -> ``colours[c]``) and then applies one of
the eight dihedral transforms, identically to every grid of a task. The ids follow the official
HRM code (``dataset/common.py``), so names such as ``t3.c0536172849`` mean the same thing there:

====  ===============  ===================================
 id   name             numpy
====  ===============  ===================================
 0    identity         ``g``
 1    rot90            ``np.rot90(g, 1)``
 2    rot180           ``np.rot90(g, 2)``
 3    rot270           ``np.rot90(g, 3)``
 4    flip_lr          ``np.fliplr(g)``
 5    flip_ud          ``np.flipud(g)``
 6    transpose        ``g.T``
 7    anti_transpose   ``np.fliplr(np.rot90(g, 1))``
====  ===============  ===================================

Unique variants. Two augmentations are the same variant when they produce identical grids, pair
by pair. Because a colour map is injective, ``p(d(task))`` is fixed by two things: the dihedral
image ``d(task)`` with its colours renamed in order of first appearance (its *shape*), and the
colours ``p`` gives to the used colours in that order. So dihedral transforms fall into classes
with the same shape, and the number of distinct variants is exactly
``classes x injective maps of the used colours`` (see :func:`count_unique_variants`). Variants are
deduplicated on that small key, which is exact and needs no hashing of whole grids.
"""

from __future__ import annotations

import math
import operator
import re
from dataclasses import dataclass
from functools import cached_property
from itertools import permutations

import numpy as np

from hrm_arc.data.tasks import NUM_COLOURS, Pair, Task

DIHEDRAL_NAMES = (
    "identity",
    "rot90",
    "rot180",
    "rot270",
    "flip_lr",
    "flip_ud",
    "transpose",
    "anti_transpose",
)
NUM_DIHEDRAL = len(DIHEDRAL_NAMES)
# DIHEDRAL_INVERSE[d] undoes d: rot90 and rot270 undo each other, the rest are involutions.
DIHEDRAL_INVERSE = (0, 3, 2, 1, 4, 5, 6, 7)

_ALL_COLOURS = list(range(NUM_COLOURS))
_NAME_RE = re.compile(r"t(\d)\.c(\d+)")


def dihedral(grid: np.ndarray, d: int) -> np.ndarray:
    """Dihedral transform ``d`` (0-7, see the module table) of a 2-D array, as a numpy view."""
    if d == 0:
        return grid
    if d in (1, 2, 3):
        return np.rot90(grid, d)
    if d == 4:
        return grid[:, ::-1]
    if d == 5:
        return grid[::-1]
    if d == 6:
        return grid.T
    if d == 7:
        return grid[::-1, ::-1].T  # == np.fliplr(np.rot90(grid, 1))
    raise ValueError(f"dihedral id must be 0-{NUM_DIHEDRAL - 1}, got {d!r}")


def _as_int(value: object) -> int | None:
    """value as a Python int if it is an integer (numpy integers included), else None."""
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def _as_int_tuple(values: object) -> tuple[int, ...] | None:
    """values as a tuple of Python ints, or None if it is not a sequence of integers."""
    try:
        ints = tuple(_as_int(v) for v in values)
    except TypeError:
        return None
    return None if None in ints else ints


@dataclass(frozen=True)
class Augmentation:
    """One dihedral transform and one colour permutation, applied colours first.

    Attributes:
        dihedral: dihedral transform id, 0-7 (see :data:`DIHEDRAL_NAMES`).
        colours: a permutation of 0-9; colour ``c`` becomes ``colours[c]``.
    """

    dihedral: int = 0
    colours: tuple[int, ...] = tuple(range(NUM_COLOURS))

    def __post_init__(self) -> None:
        d = _as_int(self.dihedral)
        if d is None or not 0 <= d < NUM_DIHEDRAL:
            raise ValueError(f"dihedral must be an int 0-{NUM_DIHEDRAL - 1}, got {self.dihedral!r}")
        colours = self.colours
        if not (type(colours) is tuple and all(type(c) is int for c in colours)):
            colours = _as_int_tuple(colours)  # the slow path, for numpy ints and bad input
        if colours is None or sorted(colours) != _ALL_COLOURS:
            raise ValueError(f"colours must be a permutation of 0-9, got {self.colours!r}")
        # Frozen dataclass: bypass __setattr__ to store the normalised values.
        object.__setattr__(self, "dihedral", d)
        object.__setattr__(self, "colours", colours)

    # Lookup tables are built on first use: variants() creates many augmentations that are
    # only named or recorded, never applied here.
    @cached_property
    def _lut(self) -> np.ndarray:
        return np.array(self.colours, dtype=np.uint8)

    @cached_property
    def _inv_lut(self) -> np.ndarray:
        inv = np.empty(NUM_COLOURS, dtype=np.uint8)
        inv[self._lut] = np.arange(NUM_COLOURS, dtype=np.uint8)
        return inv

    @property
    def name(self) -> str:
        """Stable printable name, e.g. ``t3.c0536172849`` (dihedral 3, colour table 0536172849)."""
        return f"t{self.dihedral}.c{''.join(map(str, self.colours))}"

    @classmethod
    def from_name(cls, name: str) -> Augmentation:
        """Parse a :attr:`name` back; a malformed name raises ValueError saying what is wrong."""
        match = _NAME_RE.fullmatch(name) if isinstance(name, str) else None
        if match is None:
            raise ValueError(
                f"augmentation name must look like 't<0-7>.c<10 digits>', e.g. 't3.c0536172849', "
                f"got {name!r}"
            )
        d, digits = match.groups()
        if len(digits) != NUM_COLOURS:
            raise ValueError(
                f"augmentation name {name!r}: colour table needs 10 digits, got {digits!r}"
            )
        try:
            return cls(int(d), tuple(int(c) for c in digits))
        except ValueError as e:
            raise ValueError(f"augmentation name {name!r}: {e}") from None

    @property
    def inverse(self) -> Augmentation:
        """The augmentation that undoes this one (its inverse colours, its inverse dihedral)."""
        return Augmentation(DIHEDRAL_INVERSE[self.dihedral], tuple(self._inv_lut.tolist()))

    @property
    def is_identity(self) -> bool:
        return self.dihedral == 0 and self.colours == tuple(range(NUM_COLOURS))

    def apply(self, grid: np.ndarray) -> np.ndarray:
        """Recolour, then transform, one grid; returns a new contiguous uint8 array."""
        # Recolouring is cell-wise, so it commutes with the dihedral view; indexing the view
        # through the table makes the copy (numpy keeps a transposed view's F order, hence
        # ascontiguousarray: callers hash and write these arrays).
        return np.ascontiguousarray(self._lut[dihedral(np.asarray(grid), self.dihedral)])

    def invert(self, grid: np.ndarray) -> np.ndarray:
        """Undo :meth:`apply` exactly: ``aug.invert(aug.apply(g))`` equals ``g``."""
        inverse = DIHEDRAL_INVERSE[self.dihedral]
        return np.ascontiguousarray(self._inv_lut[dihedral(np.asarray(grid), inverse)])

    def apply_task(self, task: Task) -> Task:
        """Apply to every grid of every pair; unknown test outputs stay None."""

        def pair(p: Pair) -> Pair:
            return Pair(self.apply(p.input), None if p.output is None else self.apply(p.output))

        return Task(
            task.id,
            tuple(pair(p) for p in task.train),
            tuple(pair(p) for p in task.test),
            task.source,
        )

    def __repr__(self) -> str:
        return f"Augmentation({self.name})"


IDENTITY = Augmentation()


def random_augmentation(rng: np.random.Generator, permute_background: bool = False) -> Augmentation:
    """A uniformly random dihedral transform and colour permutation (0 fixed unless asked)."""
    d = int(rng.integers(NUM_DIHEDRAL))
    if permute_background:
        colours = rng.permutation(NUM_COLOURS)
    else:
        colours = np.concatenate([[0], rng.permutation(np.arange(1, NUM_COLOURS))])
    return Augmentation(d, tuple(colours.tolist()))


# ---------------------------------------------------------------- unique variants


@dataclass(frozen=True)
class _Shape:
    """How a task's eight dihedral images relate (see the module docstring).

    classes[d]: class id of dihedral d (0 for d=0); two dihedrals share a class when their images
    are equal up to renaming colours (0 kept, unless the background is permuted). orders[d]:
    the used colours of d(task) in order of first appearance, shape (8, k). used: the sorted
    used colours.
    """

    classes: np.ndarray
    orders: np.ndarray
    used: np.ndarray

    @property
    def num_classes(self) -> int:
        return int(self.classes.max()) + 1


def _task_shape(task: Task, permute_background: bool) -> _Shape:
    grids = task.visible_grids  # so views never depend on whether the answers were loaded
    seen: dict[tuple, int] = {}
    classes, orders = [], []
    for d in range(NUM_DIHEDRAL):
        views = [dihedral(g, d) for g in grids]
        flat = np.concatenate([v.ravel() for v in views])
        values, first = np.unique(flat, return_index=True)
        order = values[np.argsort(first)]
        # A fixed background is no colour to rename: two images that differ by swapping 0 with a
        # colour are two variants, since no allowed permutation maps one onto the other.
        named = order if permute_background else np.concatenate([[0], order[order != 0]])
        relabel = np.zeros(NUM_COLOURS, dtype=np.uint8)
        relabel[named] = np.arange(len(named), dtype=np.uint8)
        # Shapes pin down where each grid starts and ends in the flat buffer.
        key = (tuple(v.shape for v in views), relabel[flat].tobytes())
        classes.append(seen.setdefault(key, len(seen)))
        orders.append(order)
    used = np.sort(orders[0])
    return _Shape(np.array(classes, dtype=np.int64), np.stack(orders), used)


def _colour_targets(used: np.ndarray, permute_background: bool) -> tuple[list[int], list[int]]:
    """(colours free to move, colours they may map to); 0 stays put unless permuting it."""
    if permute_background:
        return used.tolist(), list(range(NUM_COLOURS))
    return [c for c in used.tolist() if c != 0], list(range(1, NUM_COLOURS))


def count_unique_variants(task: Task, permute_background: bool = False) -> int:
    """The exact number of distinct variants of a task (identity included).

    Equal to (number of dihedral classes) x (number of injective maps of the used colours that
    may move into the colours allowed), e.g. 8 x 9 = 72 for one non-zero colour and no symmetry.
    """
    shape = _task_shape(task, permute_background)
    movable, targets = _colour_targets(shape.used, permute_background)
    return shape.num_classes * math.perm(len(targets), len(movable))


def _keys(shape: _Shape, ds: np.ndarray, perms: np.ndarray) -> np.ndarray:
    """Exact int64 variant keys for rows (ds[i], perms[i]): class and colours of used, in order."""
    k = shape.orders.shape[1]
    coloured = np.take_along_axis(perms, shape.orders[ds], axis=1).astype(np.int64)  # (m, k)
    return shape.classes[ds] * 10**k + coloured @ (10 ** np.arange(k, dtype=np.int64))


def _random_perms(rng: np.random.Generator, m: int, permute_background: bool) -> np.ndarray:
    """m random colour permutations, shape (m, 10)."""
    if permute_background:
        return rng.permuted(np.tile(np.arange(NUM_COLOURS), (m, 1)), axis=1)
    rest = rng.permuted(np.tile(np.arange(1, NUM_COLOURS), (m, 1)), axis=1)
    return np.concatenate([np.zeros((m, 1), dtype=rest.dtype), rest], axis=1)


def _sample_variants(
    shape: _Shape, n: int, rng: np.random.Generator, permute_background: bool
) -> list[Augmentation]:
    """Rejection-sample distinct variants; only used when the space holds at least 2n."""
    seen = {int(_keys(shape, np.zeros(1, np.int64), np.arange(NUM_COLOURS)[None])[0])}
    out = [IDENTITY]
    while len(out) < n:
        m = max(64, 2 * (n - len(out)))  # a batch amortises numpy overhead; few repeats expected
        ds = rng.integers(NUM_DIHEDRAL, size=m)
        perms = _random_perms(rng, m, permute_background)
        for i, key in enumerate(_keys(shape, ds, perms).tolist()):
            if key not in seen:
                seen.add(key)
                out.append(Augmentation(int(ds[i]), tuple(perms[i].tolist())))
                if len(out) == n:
                    break
    return out


def _complete(mapping: dict[int, int]) -> tuple[int, ...]:
    """Extend a partial injective colour map to a permutation of 0-9 (rest in ascending order)."""
    sources = [c for c in range(NUM_COLOURS) if c not in mapping]
    targets = sorted(set(range(NUM_COLOURS)) - set(mapping.values()))
    full = dict(mapping) | dict(zip(sources, targets, strict=True))
    return tuple(full[c] for c in range(NUM_COLOURS))


def _enumerate_variants(
    shape: _Shape, n: int, rng: np.random.Generator, permute_background: bool
) -> list[Augmentation]:
    """Every distinct variant once (identity first), then a random n-subset of the rest."""
    movable, targets = _colour_targets(shape.used, permute_background)
    representatives = [int(np.argmax(shape.classes == c)) for c in range(shape.num_classes)]
    maps = list(permutations(targets, len(movable)))
    # Identity is class 0 (dihedral 0) with the identity map, which is in `maps`.
    identity_map = tuple(movable)
    rest = [(d, m) for d in representatives for m in maps if (d, m) != (0, identity_map)]
    picked = rng.permutation(len(rest))[: n - 1]
    chosen = [rest[i] for i in picked]
    return [IDENTITY] + [
        Augmentation(d, _complete(dict(zip(movable, m, strict=True)))) for d, m in chosen
    ]


def variants(task: Task, n: int, seed: int, permute_background: bool = False) -> list[Augmentation]:
    """Up to n distinct variants of a task, identity first, deterministic for a seed.

    Distinct means the augmented grids differ somewhere (the visible grids: demonstrations and
    test inputs, so a set's views are the same with its answers loaded or not). Tasks with
    fewer than n distinct variants return all of them (see :func:`count_unique_variants`).
    Small spaces (at most 2n variants) are enumerated and subsampled; larger ones are sampled at
    random with exact deduplication, which then needs few redraws.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    shape = _task_shape(task, permute_background)
    movable, targets = _colour_targets(shape.used, permute_background)
    total = shape.num_classes * math.perm(len(targets), len(movable))
    rng = np.random.default_rng(seed)
    if total <= 2 * n:
        return _enumerate_variants(shape, n, rng, permute_background)
    return _sample_variants(shape, n, rng, permute_background)


# ---------------------------------------------------------------- translation


def random_offsets(
    shapes: list[tuple[int, int]], canvas: int, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """n random top-left offsets (rows, cols) at which every one of `shapes` fits the canvas.

    As in the official builder, offsets are uniform over the positions where the largest grid
    still fits; an EOS row or column that would fall off the canvas is simply not written.
    """
    h = max(s[0] for s in shapes)
    w = max(s[1] for s in shapes)
    if h > canvas or w > canvas:
        raise ValueError(f"grid of {h}x{w} cells does not fit a {canvas}x{canvas} canvas")
    return rng.integers(0, canvas - h + 1, size=n), rng.integers(0, canvas - w + 1, size=n)


def translate(
    grid_input: np.ndarray, grid_output: np.ndarray | None, canvas: int, rng: np.random.Generator
) -> tuple[int, int]:
    """A random top-left offset shared by a pair's input and output (training data only)."""
    shapes = [grid_input.shape] + ([] if grid_output is None else [grid_output.shape])
    rows, cols = random_offsets(shapes, canvas, 1, rng)
    return int(rows[0]), int(cols[0])
