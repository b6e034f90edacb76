"""Benchmark: build the official HRM ARC-AGI-1 augmented dataset (num_aug=1000) in memory.

Mirrors sapientinc/HRM ``dataset/build_arc_dataset.py`` (the ``test_examples_map`` version):

- every ARC-AGI-1 training and evaluation task gets its original plus 1000 unique variants
  (1001 views; fewer where a task admits fewer), each a dihedral transform and a permutation of
  colours 1-9, deduplicated over all pairs of the task;
- training tasks: all pairs (demonstration and test) go to the ``train`` split;
  evaluation tasks: demonstration pairs go to ``train``, test pairs to ``test``;
- in the ``train`` split every example is translated to a random top-left offset shared by its
  input and output, except one randomly chosen example per view; ``test`` is not translated;
- each example becomes an input and a label row of 30x30 = 900 uint8 tokens (PAD 0, EOS 1,
  colour + 2), plus puzzle identifiers (one per task view, shared by its splits), puzzle indices
  and group indices, as the official builder saves them.

Differences, on purpose: arrays stay in memory instead of being written as .npy files; views
are exactly unique (the official draws at most 5000 candidates and may stop short); within a
task, views are grouped by dihedral transform (identity first) so each group encodes as one
vectorised call. ConceptARC, which the official default also reads, is not bundled and not built.

Run: ``python benchmarks/bench_augment.py [--repeats 3] [--no-keep]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrm_arc.data.augment import NUM_DIHEDRAL, Augmentation, dihedral, variants
from hrm_arc.data.encoding import DEFAULT_CANVAS, encode_grid, encode_views
from hrm_arc.data.tasks import Pair, Task, load_tasks

OFFICIAL_SECONDS = 346.0  # the official builder's wall time, timed once (benchmarks/README.md)
NUM_AUG = 1000
CANVAS = DEFAULT_CANVAS
SETS = ("arc-agi-1/training", "arc-agi-1/evaluation")
RESULTS = Path(__file__).parent / "results" / "bench_augment.json"


@dataclass
class Part:
    """The pairs of one task bound for one split, with the task's views."""

    task_id: str
    pairs: tuple[Pair, ...]
    augs: list[Augmentation]
    ids: np.ndarray  # puzzle identifier per view
    translate: bool


@dataclass
class Split:
    """One output split, as the official builder saves it (arrays in memory)."""

    parts: list[Part] = field(default_factory=list)
    inputs: np.ndarray | None = None
    labels: np.ndarray | None = None
    puzzle_identifiers: np.ndarray | None = None
    puzzle_indices: np.ndarray | None = None
    group_indices: np.ndarray | None = None
    offsets: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)


def plan(tasks_by_set: dict[str, list[Task]], seed: int) -> dict[str, Split]:
    """Draw every task's unique views and assign its pairs to splits (official routing)."""
    splits = {"train": Split(), "test": Split()}
    next_id = 1  # 0 is the blank identifier
    for name, tasks in tasks_by_set.items():
        for i, task in enumerate(tasks):
            augs = variants(task, NUM_AUG + 1, seed=seed * 100_003 + i)
            augs.sort(key=lambda a: a.dihedral)  # stable: identity stays first
            ids = np.arange(next_id, next_id + len(augs), dtype=np.int32)
            next_id += len(augs)
            if name.endswith("training"):
                splits["train"].parts.append(Part(task.id, task.train + task.test, augs, ids, True))
            else:
                splits["train"].parts.append(Part(task.id, task.train, augs, ids, True))
                splits["test"].parts.append(Part(task.id, task.test, augs, ids, False))
    return splits


def draw_offsets(part: Part, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(views, examples) top-left offsets; one example per view stays at (0, 0)."""
    v, e = len(part.augs), len(part.pairs)
    if not part.translate:
        zeros = np.zeros((v, e), dtype=np.intp)
        return zeros, zeros.copy()
    # Largest side per example, after the view's dihedral transform (odd ones swap h and w).
    hw = np.array([np.maximum(p.input.shape, p.output.shape) for p in part.pairs])  # (e, 2)
    swap = np.array([a.dihedral in (1, 3, 6, 7) for a in part.augs])[:, None]  # (v, 1)
    h = np.where(swap, hw[None, :, 1], hw[None, :, 0])  # (v, e)
    w = np.where(swap, hw[None, :, 0], hw[None, :, 1])
    rows = rng.integers(0, CANVAS - h + 1)
    cols = rng.integers(0, CANVAS - w + 1)
    keep = rng.integers(0, e, size=v)
    rows[np.arange(v), keep] = 0
    cols[np.arange(v), keep] = 0
    return rows, cols


def encode_part(part: Part, rows: np.ndarray, cols: np.ndarray, inp: np.ndarray, lab: np.ndarray):
    """Encode all views x examples of a part into inp/lab, shaped (views, examples, 900)."""
    ds = np.array([a.dihedral for a in part.augs])
    maps = np.array([a.colours for a in part.augs], dtype=np.uint8)
    bounds = np.searchsorted(ds, np.arange(NUM_DIHEDRAL + 1))  # views are sorted by dihedral
    for d in range(NUM_DIHEDRAL):
        lo, hi = bounds[d], bounds[d + 1]
        if lo == hi:
            continue
        for e, pair in enumerate(part.pairs):
            offs = (rows[lo:hi, e], cols[lo:hi, e])
            encode_views(dihedral(pair.input, d), maps[lo:hi], CANVAS, offs, out=inp[lo:hi, e])
            encode_views(dihedral(pair.output, d), maps[lo:hi], CANVAS, offs, out=lab[lo:hi, e])


def build_split(split: Split, rng: np.random.Generator, keep: bool) -> int:
    """Fill a split's arrays; returns the number of examples."""
    sizes = [len(p.augs) * len(p.pairs) for p in split.parts]
    total = sum(sizes)
    biggest = max(sizes)
    rows_alloc = total if keep else biggest
    split.inputs = np.zeros((rows_alloc, CANVAS * CANVAS), dtype=np.uint8)
    split.labels = np.zeros((rows_alloc, CANVAS * CANVAS), dtype=np.uint8)
    split.offsets = []
    start = 0
    for part, size in zip(split.parts, sizes, strict=True):
        rows, cols = draw_offsets(part, rng)
        split.offsets.append((rows.astype(np.int8), cols.astype(np.int8)))
        at = start if keep else 0
        shape = (len(part.augs), len(part.pairs), CANVAS * CANVAS)
        inp = split.inputs[at : at + size].reshape(shape)
        lab = split.labels[at : at + size].reshape(shape)
        if not keep:
            inp[:] = 0  # the reused buffer must be PAD again
            lab[:] = 0
        encode_part(part, rows, cols, inp, lab)
        start += size
    per_view = np.concatenate([np.full(len(p.augs), len(p.pairs)) for p in split.parts])
    split.puzzle_indices = np.concatenate([[0], np.cumsum(per_view)]).astype(np.int32)
    split.puzzle_identifiers = np.concatenate([p.ids for p in split.parts])
    groups = np.cumsum([len(p.augs) for p in split.parts])
    split.group_indices = np.concatenate([[0], groups]).astype(np.int32)
    return total


def verify(splits: dict[str, Split], rng: np.random.Generator, per_part: int = 2) -> int:
    """Re-encode random examples the slow, obvious way and compare; returns rows checked."""
    checked = 0
    for split in splits.values():
        start = 0
        for part, (rows, cols) in zip(split.parts, split.offsets, strict=True):
            v, e = len(part.augs), len(part.pairs)
            for _ in range(per_part):
                i, j = int(rng.integers(v)), int(rng.integers(e))
                aug, pair, off = part.augs[i], part.pairs[j], (int(rows[i, j]), int(cols[i, j]))
                row = start + i * e + j
                expect_in = encode_grid(aug.apply(pair.input), CANVAS, off)
                expect_out = encode_grid(aug.apply(pair.output), CANVAS, off)
                if not (
                    np.array_equal(split.inputs[row], expect_in)
                    and np.array_equal(split.labels[row], expect_out)
                ):
                    raise AssertionError(f"{part.task_id} view {aug.name} pair {j}: mismatch")
                checked += 1
            start += v * e
    return checked


def run_once(tasks_by_set: dict[str, list[Task]], seed: int, keep: bool) -> dict:
    """One timed build; returns timings and counts."""
    t0 = time.perf_counter()
    splits = plan(tasks_by_set, seed)
    t1 = time.perf_counter()
    rng = np.random.default_rng(seed)
    examples = {name: build_split(split, rng, keep) for name, split in splits.items()}
    t2 = time.perf_counter()
    stats = {
        "seconds": t2 - t0,
        "variant_seconds": t1 - t0,
        "encode_seconds": t2 - t1,
        "views": sum(len(p.augs) for p in splits["train"].parts),
        "examples": examples,
    }
    stats["verified_rows"] = verify(splits, np.random.default_rng(seed + 1)) if keep else 0
    return stats


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--no-keep",
        dest="keep",
        action="store_false",
        help="reuse one buffer per split instead of keeping ~6 GB in memory",
    )
    args = parser.parse_args()
    tasks_by_set = {name: list(load_tasks(name)) for name in SETS}
    runs = [run_once(tasks_by_set, args.seed, args.keep) for _ in range(args.repeats)]
    seconds = [r["seconds"] for r in runs]
    med = statistics.median(seconds)
    best = runs[seconds.index(med)]
    n_examples = sum(best["examples"].values())
    tokens = 2 * n_examples * CANVAS * CANVAS  # inputs + labels
    n_tasks = sum(len(t) for t in tasks_by_set.values())
    rows = [
        ["sets", "tasks", "views", "examples", "tokens", "seconds", "examples/s", "vs 346 s"],
        [
            "+".join(s.split("/")[1] for s in SETS),
            str(n_tasks),
            f"{best['views']:,}",
            f"{n_examples:,}",
            f"{tokens:,}",
            f"{med:.1f}",
            f"{n_examples / med:,.0f}",
            f"{OFFICIAL_SECONDS / med:.1f}x",
        ],
    ]
    print(table(rows))
    print(
        f"variants {best['variant_seconds']:.1f} s + encoding {best['encode_seconds']:.1f} s; "
        f"runs {', '.join(f'{s:.1f}' for s in seconds)} s; "
        f"examples per split {best['examples']}; {best['verified_rows']} rows re-checked"
    )
    result = {
        "sets": list(SETS),
        "tasks": n_tasks,
        "num_aug": NUM_AUG,
        "views": best["views"],
        "examples": n_examples,
        "examples_per_split": best["examples"],
        "tokens": tokens,
        "bytes": tokens,  # uint8 tokens
        "seconds_median": med,
        "seconds_runs": seconds,
        "variant_seconds": best["variant_seconds"],
        "encode_seconds": best["encode_seconds"],
        "examples_per_second": n_examples / med,
        "official_seconds": OFFICIAL_SECONDS,
        "speedup_vs_official": OFFICIAL_SECONDS / med,
        "kept_in_memory": args.keep,
        "verified_rows": best["verified_rows"],
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
