"""Procedurally generated ARC-format puzzles: transformation families and shortest-path boards.

A :class:`Family` is a transformation whose parameter is a tuple of *ingredients*, one value
per axis (gravity: direction x falling colour). A *puzzle* is one family with one parameter
tuple, packaged as a :class:`~hrm_arc.data.tasks.Task` whose demonstration and test pairs all obey
that rule. Every family's parameter space is split once, deterministically, into pretraining
and held-out tuples: a tuple is held out when the sum of its ingredient indices is a multiple of
the family's ``holdout_period``. Held-out tuples are therefore new combinations of ingredients
that pretraining shows in other combinations (recolour 2->7 held out, 2->x and y->7 seen), so a
network can only solve them by reading the rule off the demonstrations.

Every generated puzzle is checked: no pair has input == output, inputs are distinct, and the
demonstrations rule out every other parameter tuple of the family.

Task ids are ``<family>-<ingredient>-...-<index:04d>``, e.g. ``gravity-down-4-0007``
(family ``gravity``, falling direction ``down``, falling colour 4, puzzle 7 of its split);
:func:`parse_puzzle_id` inverts this.

:func:`shortest_path_tasks` builds the learning sanity check: maze boards whose output marks the
unique shortest path from start to end.
"""

from __future__ import annotations

import itertools
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from hrm_arc.data.tasks import MAX_SIDE, Pair, Task, TaskSet

Param = tuple
Grid = np.ndarray
Sampler = Callable[[np.random.Generator, Param, int], Grid]

MIN_SIDE = 3
MIN_MAX_SIDE = 5  # fill needs a 3x3 box inside a margin; shift by 3 needs 5 cells to show
COLOURS = tuple(range(1, 10))
SPLITS = ("pretrain", "heldout")
MAX_TRIES = 200  # redraws before a puzzle or pair is declared impossible (never hit in tests)

STEPS = {
    "up": (-1, 0),
    "down": (1, 0),
    "left": (0, -1),
    "right": (0, 1),
    "up_left": (-1, -1),
    "up_right": (-1, 1),
    "down_left": (1, -1),
    "down_right": (1, 1),
}
ORTHOGONAL = ("up", "down", "left", "right")
DIAGONAL = ("up_left", "up_right", "down_left", "down_right")


def _never(param: Param) -> bool:
    return False


@dataclass(frozen=True)
class Family:
    """A transformation family: ingredient axes, a rule and a sampler of rule-specific inputs."""

    name: str
    axes: tuple[tuple, ...]
    """Values of each ingredient; a parameter is one value per axis."""
    rule: Callable[[Grid, Param], Grid]
    """The transformation: (input grid, parameter) -> output grid."""
    sample: Sampler
    """(rng, parameter, max_side) -> a random input grid suited to the parameter."""
    holdout_period: int
    """A parameter is held out when the sum of its ingredient indices is a multiple of this."""
    excluded: Callable[[Param], bool] = _never
    """Ingredient combinations that are not puzzles (an identity, recolour c -> c)."""

    @property
    def params(self) -> list[Param]:
        """The whole parameter space in axis order."""
        return [p for p in itertools.product(*self.axes) if not self.excluded(p)]

    def is_heldout(self, param: Param) -> bool:
        index = sum(axis.index(value) for axis, value in zip(self.axes, param, strict=True))
        return index % self.holdout_period == 0

    def split(self) -> tuple[list[Param], list[Param]]:
        """(pretrain, heldout) parameters; raises if a held-out ingredient is never pretrained."""
        pretrain = [p for p in self.params if not self.is_heldout(p)]
        heldout = [p for p in self.params if self.is_heldout(p)]
        if not pretrain or not heldout:
            raise RuntimeError(f"family {self.name}: empty split")
        for position in range(len(self.axes)):
            unseen = {p[position] for p in heldout} - {p[position] for p in pretrain}
            if unseen:
                raise RuntimeError(f"family {self.name}: held-out ingredients {unseen} unseen")
        return pretrain, heldout

    def apply(self, grid: Grid, param: Param) -> Grid:
        return np.ascontiguousarray(self.rule(grid, param), dtype=np.uint8)

    def puzzle_id(self, param: Param, index: int) -> str:
        return "-".join([self.name, *map(str, param), f"{index:04d}"])


# ---------------------------------------------------------------- input samplers


def _size(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int]:
    lo = min(lo, hi)
    return int(rng.integers(lo, hi + 1)), int(rng.integers(lo, hi + 1))


def _colours(rng: np.random.Generator, n: int, exclude: Sequence[int] = ()) -> list[int]:
    pool = [c for c in COLOURS if c not in exclude]
    return [int(c) for c in rng.choice(pool, size=n, replace=False)]


def _scatter(rng: np.random.Generator, shape: tuple[int, int], colours, density: float) -> Grid:
    """Random pixels: each cell non-zero with probability `density`, colour from `colours`."""
    mask = rng.random(shape) < density
    return np.where(mask, rng.choice(colours, size=shape), 0).astype(np.uint8)


def _put(rng: np.random.Generator, grid: Grid, colour: int, rows=None, cols=None) -> None:
    """Colour one random cell (within `rows`/`cols` ranges) so the colour surely appears."""
    r0, r1 = rows or (0, grid.shape[0])
    c0, c1 = cols or (0, grid.shape[1])
    grid[rng.integers(r0, r1), rng.integers(c0, c1)] = colour


# ---------------------------------------------------------------- families


def _recolour(grid: Grid, param: Param) -> Grid:
    src, dst = param
    return np.where(grid == src, dst, grid)


def _sample_recolour(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    src, _ = param
    # Other colours (the target may be among them) show that only `src` changes.
    others = _colours(rng, int(rng.integers(1, 3)), exclude=(src,))
    grid = _scatter(rng, _size(rng, MIN_SIDE, max_side), [src, *others], rng.uniform(0.3, 0.6))
    _put(rng, grid, src)
    _put(rng, grid, others[0])
    return grid


def _translate(grid: Grid, dy: int, dx: int) -> Grid:
    """Move the content by (dy, dx); what leaves the grid is lost, what is vacated is 0."""
    h, w = grid.shape
    out = np.zeros_like(grid)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = grid[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def _shift(grid: Grid, param: Param) -> Grid:
    direction, distance = param
    dy, dx = STEPS[direction]
    return _translate(grid, dy * distance, dx * distance)


def _sample_shift(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    direction, distance = param
    dy, dx = STEPS[direction]
    h, w = _size(rng, MIN_SIDE, max_side)
    # Room along the shift axis so that the moved content stays visible.
    h = max(h, min(distance + 2, max_side)) if dy else h
    w = max(w, min(distance + 2, max_side)) if dx else w
    grid = _scatter(rng, (h, w), _colours(rng, int(rng.integers(1, 3))), rng.uniform(0.15, 0.35))
    rows = (max(-dy * distance, 0), h - max(dy * distance, 0))
    cols = (max(-dx * distance, 0), w - max(dx * distance, 0))
    _put(rng, grid, int(rng.choice(COLOURS)), rows, cols)  # one pixel that survives the move
    return grid


def _dihedral(grid: Grid, param: Param) -> Grid:
    degrees, flip = param
    # Flip left-right first, then rotate counter-clockwise.
    grid = grid[:, ::-1] if flip == "flip" else grid
    return np.rot90(grid, degrees // 90)


def _sample_dense(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    grid = _scatter(rng, _size(rng, MIN_SIDE, max_side), _colours(rng, 2), rng.uniform(0.3, 0.6))
    _put(rng, grid, int(rng.choice(COLOURS)))
    return grid


def _fall_down(grid: Grid, colour: int) -> Grid:
    """Cells of `colour` fall down; other non-zero cells are fixed and stop them."""
    h, w = grid.shape
    out = grid.copy()
    for c in range(w):
        bottom = h  # exclusive end of the current segment between fixed cells
        for r in range(h - 1, -2, -1):
            if r >= 0 and grid[r, c] in (0, colour):
                continue
            n = int(np.count_nonzero(grid[r + 1 : bottom, c] == colour))
            out[r + 1 : bottom, c] = 0
            out[bottom - n : bottom, c] = colour
            bottom = r
    return out


# np.rot90 turns that bring each direction to "down" (counter-clockwise quarter turns).
_TO_DOWN = {"down": 0, "up": 2, "left": 1, "right": 3}


def _gravity(grid: Grid, param: Param) -> Grid:
    direction, colour = param
    k = _TO_DOWN[direction]
    return np.rot90(_fall_down(np.rot90(grid, k), colour), -k)


def _sample_gravity(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    _, colour = param
    shape = _size(rng, MIN_SIDE, max_side)
    fixed = _colours(rng, 1, exclude=(colour,))[0]
    grid = _scatter(rng, shape, [colour], rng.uniform(0.15, 0.3))
    obstacles = _scatter(rng, shape, [fixed], rng.uniform(0.05, 0.15))
    grid = np.where(obstacles > 0, obstacles, grid)
    _put(rng, grid, colour)
    return grid


def _outline(grid: Grid, param: Param) -> Grid:
    colour, neighbourhood = param
    h, w = grid.shape
    filled = grid != 0
    padded = np.pad(filled, 1)
    offsets = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    if neighbourhood == "n4":
        offsets = [(dy, dx) for dy, dx in offsets if dy == 0 or dx == 0]
    near = np.zeros_like(filled)
    for dy, dx in offsets:
        near |= padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
    return np.where(near & ~filled, colour, grid)


def _sample_outline(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    colour, _ = param
    colours = _colours(rng, int(rng.integers(1, 3)), exclude=(colour,))
    grid = _scatter(rng, _size(rng, MIN_SIDE, max_side), colours, rng.uniform(0.05, 0.15))
    _put(rng, grid, colours[0])
    return grid


def _outside(grid: Grid) -> np.ndarray:
    """Zero cells 4-connected through zero cells to the grid's border."""
    h, w = grid.shape
    seen = np.zeros((h, w), dtype=bool)
    queue = deque((r, c) for r in range(h) for c in range(w) if r in (0, h - 1) or c in (0, w - 1))
    while queue:
        r, c = queue.popleft()
        if not (0 <= r < h and 0 <= c < w) or seen[r, c] or grid[r, c] != 0:
            continue
        seen[r, c] = True
        queue.extend(((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)))
    return seen


def _fill(grid: Grid, param: Param) -> Grid:
    colour, region = param
    outside = _outside(grid)
    target = outside if region == "outside" else (grid == 0) & ~outside
    return np.where(target, colour, grid)


def _sample_fill(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    colour, _ = param
    h, w = _size(rng, MIN_MAX_SIDE, max_side)
    border, noise = _colours(rng, 2, exclude=(colour,))
    grid = _scatter(rng, (h, w), [noise], rng.uniform(0.0, 0.08))
    for _ in range(int(rng.integers(1, 3))):  # hollow boxes, each with an inside
        bh, bw = int(rng.integers(3, h)), int(rng.integers(3, w))
        r, c = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
        grid[r : r + bh, c : c + bw] = border
        grid[r + 1 : r + bh - 1, c + 1 : c + bw - 1] = 0
    return grid


def _ray(grid: Grid, param: Param) -> Grid:
    direction, colour = param
    dy, dx = STEPS[direction]
    h, w = grid.shape
    out = grid.copy()
    # Rays stop at cells non-zero in the input, so their order does not matter.
    for r, c in np.argwhere(grid != 0):
        r, c = r + dy, c + dx
        while 0 <= r < h and 0 <= c < w and grid[r, c] == 0:
            out[r, c] = colour
            r, c = r + dy, c + dx
    return out


def _sample_ray(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    _, colour = param
    h, w = _size(rng, MIN_SIDE, max_side)
    grid = np.zeros((h, w), dtype=np.uint8)
    n = int(rng.integers(1, 4))
    cells = rng.choice(h * w, size=n, replace=False)
    grid.flat[cells] = rng.choice([c for c in COLOURS if c != colour], size=n)
    return grid


def _scale(grid: Grid, param: Param) -> Grid:
    fy, fx = param
    return np.repeat(np.repeat(grid, fy, axis=0), fx, axis=1)


def _sample_scale(rng: np.random.Generator, param: Param, max_side: int) -> Grid:
    fy, fx = param
    hi_h, hi_w = max_side // fy, max_side // fx
    h = int(rng.integers(min(2, hi_h), hi_h + 1))
    w = int(rng.integers(min(2, hi_w), hi_w + 1))
    grid = _scatter(rng, (h, w), _colours(rng, 2), rng.uniform(0.4, 0.7))
    _put(rng, grid, int(rng.choice(COLOURS)))
    return grid


FAMILIES: dict[str, Family] = {
    f.name: f
    for f in (
        # src -> dst; the other colours stay.
        Family("recolour", (COLOURS, COLOURS), _recolour, _sample_recolour, 6,
               excluded=lambda p: p[0] == p[1]),
        # The whole grid moves; content pushed out is lost, vacated cells become 0.
        Family("shift", (ORTHOGONAL, (1, 2, 3)), _shift, _sample_shift, 3),
        # Flip left-right (or not), then rotate counter-clockwise by the given degrees.
        Family("dihedral", ((0, 90, 180, 270), ("noflip", "flip")), _dihedral, _sample_dense, 3,
               excluded=lambda p: p == (0, "noflip")),
        # Cells of one colour fall in a direction; all other colours are fixed obstacles.
        Family("gravity", (ORTHOGONAL, COLOURS), _gravity, _sample_gravity, 4),
        # Background cells next to any object (4- or 8-neighbourhood) take the colour.
        Family("outline", (COLOURS, ("n4", "n8")), _outline, _sample_outline, 3),
        # Background inside closed shapes, or outside all of them, takes the colour.
        Family("fill", (COLOURS, ("inside", "outside")), _fill, _sample_fill, 3),
        # From every pixel a ray of the colour runs to the border, stopped by other pixels.
        Family("ray", (ORTHOGONAL + DIAGONAL, COLOURS), _ray, _sample_ray, 5),
        # Every cell becomes a rows-factor x cols-factor block.
        Family("scale", ((1, 2, 3), (1, 2, 3)), _scale, _sample_scale, 3,
               excluded=lambda p: p == (1, 1)),
    )
}  # fmt: skip


# ---------------------------------------------------------------- puzzles


def parameter_split(family: str) -> tuple[list, list]:
    """(pretrain parameters, held-out parameters) of a family; disjoint and deterministic."""
    return _family(family).split()


def parse_puzzle_id(task_id: str) -> tuple[str, Param]:
    """(family name, parameter) of a task id made by :func:`family_puzzles`."""
    name, *values, _ = task_id.split("-")
    for param in _family(name).params:
        if list(map(str, param)) == values:
            return name, param
    raise ValueError(f"{task_id!r}: no parameter {values} in family {name}")


def family_puzzles(
    split: str,
    families: Sequence[str] | None = None,
    puzzles_per_family: int = 64,
    n_train: int = 4,
    n_test: int = 1,
    max_side: int = 8,
    seed: int = 0,
) -> TaskSet:
    """Puzzles of the `split` ("pretrain" or "heldout") parameters of each family.

    Each family's parameters are shuffled (seeded) and cycled, so a family with at least as many
    puzzles as parameters covers them all (the default 64 covers every split of every family;
    fewer may leave some ingredient of a held-out parameter out of pretraining). A puzzle
    depends only on (seed, split, family, index): asking for fewer families or puzzles gives
    the same puzzles under the same ids.

    Args:
        families: family names (default all of :data:`FAMILIES`).
        n_train, n_test: demonstration and test pairs per puzzle.
        max_side: largest grid side, inputs and outputs (5..30).
    """
    _check_args(split, puzzles_per_family, n_train, n_test, max_side, seed)
    names = list(FAMILIES) if families is None else list(families)
    tasks = []
    for name in names:
        family = _family(name)
        params = family.split()[SPLITS.index(split)]
        order = _rng(seed, split, name).permutation(len(params))
        for i in range(puzzles_per_family):
            param = params[order[i % len(params)]]
            rng = _rng(seed, split, name, i)
            task_id = family.puzzle_id(param, i)
            pairs = _puzzle_pairs(family, param, n_train, n_test, max_side, rng, task_id)
            tasks.append(Task(task_id, pairs[:n_train], pairs[n_train:], f"families/{split}"))
    return TaskSet(tasks, name=f"families/{split}")


def is_identifiable(family: Family, param: Param, pairs: Sequence[Pair]) -> bool:
    """Whether the pairs rule out every other parameter of the family."""
    return not any(
        all(_same(family.apply(p.input, other), p.output) for p in pairs)
        for other in family.params
        if other != param
    )


def _puzzle_pairs(family, param, n_train, n_test, max_side, rng, task_id) -> tuple[Pair, ...]:
    for _ in range(MAX_TRIES):
        pairs = _draw_pairs(family, param, n_train + n_test, max_side, rng)
        if is_identifiable(family, param, pairs[:n_train]):
            return pairs
    raise RuntimeError(f"{task_id}: no identifiable demonstrations in {MAX_TRIES} draws")


def _draw_pairs(family, param, n, max_side, rng) -> tuple[Pair, ...]:
    """`n` pairs with distinct inputs, each changed by the rule and within `max_side`."""
    pairs: list[Pair] = []
    seen: set[bytes] = set()
    for _ in range(MAX_TRIES * n):
        grid = family.sample(rng, param, max_side)
        out = family.apply(grid, param)
        key = grid.tobytes() + bytes(grid.shape)
        if key in seen or _same(grid, out) or max(out.shape) > max_side or min(out.shape) < 1:
            continue
        seen.add(key)
        pairs.append(Pair(grid, out))
        if len(pairs) == n:
            return tuple(pairs)
    raise RuntimeError(f"{family.name} {param}: cannot draw {n} distinct non-trivial pairs")


def _same(a: Grid, b: Grid) -> bool:
    return a.shape == b.shape and bool(np.array_equal(a, b))


def _rng(seed: int, split: str, *keys: str | int) -> np.random.Generator:
    """A generator keyed by stable integers (crc32 of names), independent of other puzzles."""
    ints = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in (split, *keys)]
    return np.random.default_rng([seed, *ints])


def _family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def _check_args(split, puzzles_per_family, n_train, n_test, max_side, seed) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for field, value, lo in (
        ("puzzles_per_family", puzzles_per_family, 1),
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
        ("seed", seed, 0),
    ):
        if value < lo:
            raise ValueError(f"{field} must be >= {lo}, got {value}")
    if not MIN_MAX_SIDE <= max_side <= MAX_SIDE:
        raise ValueError(f"max_side must be in {MIN_MAX_SIDE}..{MAX_SIDE}, got {max_side}")


# ---------------------------------------------------------------- shortest paths

FLOOR, START, END, PATH, WALL = 0, 2, 3, 4, 5
NEIGHBOURS = ((1, 0), (-1, 0), (0, 1), (0, -1))


def shortest_path_tasks(
    n_boards: int,
    size: int = 6,
    wall_prob: float = 0.3,
    seed: int = 0,
    n_test: int | None = None,
    min_length: int = 2,
) -> TaskSet:
    """One task, ``shortest-path``, of distinct maze boards with a unique shortest path.

    Input: floor 0, walls 5, start 2, end 3 on a `size` x `size` grid. Output: the same with the
    shortest 4-neighbour path's cells between start and end coloured 4. Boards whose shortest
    path is absent, not unique, or has fewer than `min_length` cells between start and end are
    redrawn (unique paths are mostly short; `min_length` keeps trivial boards out).

    The one task holds every board: the last `n_test` boards (default a fifth, at least one) are
    its test pairs, the other ``n_boards - n_test`` its train pairs. There is one rule and no
    parameter, so train on the train pairs under one puzzle id and evaluate on the test pairs.
    """
    n_test = max(1, n_boards // 5) if n_test is None else n_test
    if not 1 <= n_test < n_boards:
        raise ValueError(f"need 1 <= n_test < n_boards, got n_test={n_test}, n_boards={n_boards}")
    if not MIN_SIDE <= size <= MAX_SIDE:
        raise ValueError(f"size must be in {MIN_SIDE}..{MAX_SIDE}, got {size}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    if not 0.0 <= wall_prob < 1.0:
        raise ValueError(f"wall_prob must be in [0, 1), got {wall_prob}")
    rng = _rng(seed, "shortest-path", size)
    boards: dict[bytes, Pair] = {}
    for _ in range(MAX_TRIES * n_boards):
        pair = _path_board(rng, size, wall_prob, min_length)
        if pair is not None:
            boards.setdefault(pair.input.tobytes(), pair)
        if len(boards) == n_boards:
            pairs = tuple(boards.values())
            split = n_boards - n_test
            task = Task("shortest-path", pairs[:split], pairs[split:], "shortest-path")
            return TaskSet([task], name="shortest-path")
    raise RuntimeError(f"only {len(boards)} of {n_boards} distinct boards found; enlarge size?")


def _path_board(
    rng: np.random.Generator, size: int, wall_prob: float, min_length: int
) -> Pair | None:
    grid = np.where(rng.random((size, size)) < wall_prob, WALL, FLOOR).astype(np.uint8)
    floor = np.argwhere(grid == FLOOR)
    if len(floor) < 3:
        return None
    start, end = (tuple(int(v) for v in floor[i]) for i in rng.choice(len(floor), 2, False))
    grid[start], grid[end] = START, END
    path = unique_shortest_path(grid, start, end)
    if path is None or len(path) < min_length + 2:
        return None
    out = grid.copy()
    for cell in path[1:-1]:
        out[cell] = PATH
    return Pair(grid, out)


def unique_shortest_path(grid: Grid, start: tuple, end: tuple) -> list[tuple] | None:
    """Cells of the shortest 4-neighbour path avoiding walls, start to end; None if not unique."""
    dist, count = _bfs(grid, start)
    if end not in dist or count[end] != 1:
        return None
    path = [end]
    while path[-1] != start:
        r, c = path[-1]
        # With exactly one shortest path, exactly one neighbour is one step closer.
        path.append(next(n for n in _moves(grid, r, c) if dist.get(n) == dist[(r, c)] - 1))
    return path[::-1]


def _bfs(grid: Grid, start: tuple) -> tuple[dict, dict]:
    """Distances and shortest-path counts (capped at 2) from `start` over non-wall cells."""
    dist, count = {start: 0}, {start: 1}
    queue = deque([start])
    while queue:
        cell = queue.popleft()
        for n in _moves(grid, *cell):
            if n not in dist:
                dist[n], count[n] = dist[cell] + 1, 0
                queue.append(n)
            if dist[n] == dist[cell] + 1:
                count[n] = min(2, count[n] + count[cell])
    return dist, count


def _moves(grid: Grid, r: int, c: int) -> list[tuple[int, int]]:
    h, w = grid.shape
    return [
        (r + dy, c + dx)
        for dy, dx in NEIGHBOURS
        if 0 <= r + dy < h and 0 <= c + dx < w and grid[r + dy, c + dx] != WALL
    ]
