"""Kaggle ``submission.json``: build it from predictions, load it, and check it against a task set.

Format: ``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}`` with one object per test
input in order, every task of the set present and both attempts always given. Grids are lists
of equal-length rows of ints 0-9, at most 30 x 30.
"""

from __future__ import annotations

import os

from .data.tasks import MAX_SIDE, NUM_COLOURS, TaskSet
from .errors import DatasetError
from .files.jsonio import read_json
from .predictions import FORMAT, Predictions, load_predictions
from .text import brief, count
from .vote import rank_predictions, top2

ATTEMPTS = ("attempt_1", "attempt_2")


def missing_tasks(predictions: Predictions, tasks: TaskSet) -> list[str]:
    """Ids of tasks in `tasks` that `predictions` has no entry for."""
    return [tid for tid in tasks.ids if tid not in predictions]


def submission_from_predictions(predictions: Predictions, tasks: TaskSet | None = None) -> dict:
    """Turn ranked predictions into a Kaggle submission (top two candidates per test input).

    With `tasks`, the submission covers exactly that set: a task without predictions gets 1x1
    zero attempts for each test input (`missing_tasks` lists them, for the caller to report), and
    predictions for tasks outside the set, or with the wrong number of test inputs, are refused.

    Raises:
        DatasetError: predictions that do not fit `tasks`.
    """
    if tasks is None:
        return {tid: [_entry(ranked) for ranked in predictions[tid]] for tid in sorted(predictions)}
    _check_fits(predictions, tasks)
    submission = {}
    for task in tasks:
        per_test = predictions.get(task.id, [[] for _ in task.test])
        submission[task.id] = [_entry(ranked) for ranked in per_test]
    return submission


def export_submission(
    predictions_path: str | os.PathLike, tasks: TaskSet | None = None, rank: str | None = None
) -> tuple[dict, list[str]]:
    """A Kaggle submission from a predictions file, its candidates re-ranked by `rank` when
    given; with `tasks`, covering that set. Also the ids of the set's tasks that had no
    predictions (given 1x1 zero attempts)."""
    predictions, _meta = load_predictions(predictions_path)
    if rank is not None:
        predictions = rank_predictions(predictions, rank)
    filled = missing_tasks(predictions, tasks) if tasks is not None else []
    try:
        return submission_from_predictions(predictions, tasks), filled
    except DatasetError as e:  # the predictions do not fit the tasks
        raise DatasetError(f"{predictions_path}: {e}") from None


def load_submission(path: str | os.PathLike) -> dict:
    """Read a submission file; its contents are checked by `validate_submission`.

    Raises:
        DatasetError: the file is unreadable, not JSON, or not a JSON object.
    """
    data = read_json(path, "submission")
    if not isinstance(data, dict):
        raise DatasetError(
            f"{path}: a submission must be an object {{task_id: [...]}}, got {brief(data)}"
        )
    if data.get("format") == FORMAT:
        raise DatasetError(
            f"{path}: this is an hrm-arc predictions file, not a submission; "
            "`hrm-arc export` makes a submission.json from it"
        )
    return data


def validate_submission(submission: object, tasks: TaskSet) -> list[str]:
    """Every problem that keeps `submission` from being a valid submission for `tasks`.

    Returns:
        One message per problem, naming the task id and test index; empty when valid.
    """
    if not isinstance(submission, dict):
        return [f"submission must be an object {{task_id: [...]}}, got {brief(submission)}"]
    problems = []
    for task in tasks:
        if task.id not in submission:
            problems.append(f"task {task.id}: missing")
        else:
            problems += _entries_problems(task.id, submission[task.id], len(task.test))
    name = tasks.name or "the dataset"
    problems += [f"task {tid}: not a task of {name}" for tid in submission if tid not in tasks]
    return problems


def grid_problems(value: object) -> list[str]:
    """What is wrong with one JSON grid (empty list when it is a valid ARC grid)."""
    if not isinstance(value, list) or not value:
        return [f"grid must be a non-empty list of rows, got {brief(value)}"]
    problems = []
    bad_rows = [r for r, row in enumerate(value) if not isinstance(row, list) or not row]
    if bad_rows:
        are = "is not a non-empty list" if len(bad_rows) == 1 else "are not non-empty lists"
        problems.append(f"{'row' if len(bad_rows) == 1 else 'rows'} {_few(bad_rows)} {are}")
    rows = [row for row in value if isinstance(row, list) and row]
    widths = sorted({len(row) for row in rows})
    if len(widths) > 1:
        problems.append(f"rows have different lengths {_few(widths)}")
    if len(value) > MAX_SIDE or (widths and widths[-1] > MAX_SIDE):
        w = widths[-1] if widths else 0
        problems.append(f"grid is {len(value)}x{w}, sides must be at most {MAX_SIDE}")
    bad_cells = [
        (r, c, cell)
        for r, row in enumerate(value)
        if isinstance(row, list)
        for c, cell in enumerate(row)
        if type(cell) is not int or not 0 <= cell < NUM_COLOURS
    ]
    if bad_cells:
        r, c, cell = bad_cells[0]
        more = f" (and {count(len(bad_cells) - 1, 'more bad cell')})" if len(bad_cells) > 1 else ""
        problems.append(f"cell ({r}, {c}) is {brief(cell)}, not an int 0-9{more}")
    return problems


def _entries_problems(task_id: str, entries: object, n_tests: int) -> list[str]:
    if not isinstance(entries, list):
        wanted = count(n_tests, "test entry", "test entries")
        return [f"task {task_id}: must be a list of {wanted}, got {brief(entries)}"]
    problems = []
    if len(entries) != n_tests:
        given = count(entries, "test entry", "test entries")
        problems.append(f"task {task_id}: {given}, the task has {n_tests}")
    for i, entry in enumerate(entries):
        where = f"task {task_id}, test {i}"
        if not isinstance(entry, dict):
            problems.append(
                f"{where}: entry must be an object with {' and '.join(ATTEMPTS)}, "
                f"got {brief(entry)}"
            )
            continue
        for attempt in ATTEMPTS:
            if attempt not in entry:
                problems.append(f"{where}: missing {attempt}")
            else:
                problems += [f"{where}, {attempt}: {p}" for p in grid_problems(entry[attempt])]
        extra = sorted(map(str, set(entry) - set(ATTEMPTS)))
        if extra:  # Kaggle's scorer reads two attempts; a third is a sign of a wrong format
            problems.append(f"{where}: unexpected keys {', '.join(extra)}")
    return problems


def _check_fits(predictions: Predictions, tasks: TaskSet) -> None:
    unknown = sorted(tid for tid in predictions if tid not in tasks)
    if unknown:
        name = tasks.name or "the dataset"
        raise DatasetError(
            f"predictions for {count(unknown, 'task')} not in {name} "
            f"(wrong --dataset?): {', '.join(unknown[:5])}"
        )
    for tid, per_test in predictions.items():
        if len(per_test) != len(tasks[tid].test):
            raise DatasetError(
                f"task {tid}: predictions for {count(per_test, 'test input')}, "
                f"the task has {len(tasks[tid].test)}"
            )


def _entry(ranked: list) -> dict:
    first, second = top2(ranked)
    return {"attempt_1": first.tolist(), "attempt_2": second.tolist()}


def _few(items: list) -> str:
    shown = ", ".join(str(x) for x in items[:5])
    return shown + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
