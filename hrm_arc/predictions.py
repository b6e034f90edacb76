"""The predictions file that `adapt-and-predict` writes and `export` reads.

Layout (JSON)::

    {"format": "hrm-arc-predictions", "version": 1, "meta": {...},
     "tasks": {task_id: [                       # one list per test input, in order
         [{"grid": [[...]], "votes": 12, "q_halt": 0.93, "logprob": -3.2, "first_vote": 0},
          ...],                                 # ranked
     ]}}

JSON has no infinity, so a logprob of -inf (a candidate some view cannot express) is stored
as null and read back as -inf.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from .data.tasks import parse_grid
from .errors import DatasetError
from .files.jsonio import read_json, write_json_atomic

FORMAT = "hrm-arc-predictions"
VERSION = 1


EMPTY_GRID = np.zeros((0, 0), dtype=np.uint8)
"""What a view whose output holds no grid votes for, where the official evaluator's counting is
asked for (`PredictConfig.empty_grid_votes`): it can take a top-2 place and is never right."""


@dataclass(eq=False)
class Candidate:
    """One distinct answer grid for a test input, with the evidence for it.

    Attributes:
        grid: the answer, a 2-D uint8 array in the task's own frame (augmentation undone).
        votes: how many augmented views predicted exactly this grid.
        q_halt: mean sigmoid(q_halt) over the views that voted for it, in [0, 1].
        logprob: the grid's log-probability summed over all views (product of experts);
            -inf when some view cannot express it (e.g. it does not fit that view's canvas).
        first_vote: how many other candidates of its test input were voted for before it, the
            views voting in view order: the official evaluator's stable sort leaves equal
            evidence in this order. Files written before it was kept read it as 0.
    """

    grid: np.ndarray
    votes: int
    q_halt: float
    logprob: float
    first_vote: int = 0

    def __post_init__(self) -> None:
        # Checked here because a NaN or a wrong dtype would silently scramble rankings later.
        grid = self.grid
        if not isinstance(grid, np.ndarray) or grid.ndim != 2 or grid.dtype != np.uint8:
            raise ValueError(f"Candidate.grid must be a 2-D uint8 array, got {_describe(grid)}")
        if self.votes < 0:
            raise ValueError(f"Candidate.votes must be >= 0, got {self.votes}")
        if self.first_vote < 0:
            raise ValueError(f"Candidate.first_vote must be >= 0, got {self.first_vote}")
        if not 0.0 <= self.q_halt <= 1.0:
            raise ValueError(f"Candidate.q_halt must be a probability in [0, 1], got {self.q_halt}")
        if math.isnan(self.logprob) or self.logprob == math.inf:
            raise ValueError(f"Candidate.logprob must be finite or -inf, got {self.logprob}")

    def __repr__(self) -> str:
        h, w = self.grid.shape
        return (
            f"<Candidate {h}x{w} | {self.votes} votes | q_halt {self.q_halt:.3f} | "
            f"logprob {self.logprob:.3f}>"
        )


# task id -> one list per test input (in order) -> candidates, best first.
Predictions = dict[str, list[list[Candidate]]]


def save_predictions(path: str | os.PathLike, predictions: Predictions, meta: dict) -> None:
    """Write `predictions` and free-form `meta` (config, checkpoint, timings) atomically."""
    if not isinstance(meta, dict):
        raise TypeError(f"meta must be a dict, got {type(meta).__name__}")
    tasks = {
        task_id: [[_candidate_to_json(c) for c in ranked] for ranked in per_test]
        for task_id, per_test in predictions.items()
    }
    write_json_atomic(path, {"format": FORMAT, "version": VERSION, "meta": meta, "tasks": tasks})


def is_predictions_file(path: str | os.PathLike) -> bool:
    """Whether `path` begins as `save_predictions` writes, read from its first bytes only (a
    run's folder of them may hold gigabytes)."""
    try:
        with open(path, "rb") as f:
            head = b"".join(f.read(64).split())
    except OSError:
        return False
    return head.startswith(b'{"format":"' + FORMAT.encode() + b'"')


def _is_submission(data: object) -> bool:
    """Whether `data` looks like {task_id: [{"attempt_1": ..., ...}, ...]}."""
    lists = [v for v in data.values() if isinstance(v, list)] if isinstance(data, dict) else []
    return any(isinstance(e, dict) and "attempt_1" in e for entries in lists for e in entries)


def load_predictions(path: str | os.PathLike) -> tuple[Predictions, dict]:
    """Read and check a predictions file; returns (predictions, meta).

    Raises:
        DatasetError: naming the file, task, test index and candidate that is wrong.
    """
    data = read_json(path, "predictions file", unique_keys=False)  # ours, maybe hundreds of MB
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = " (it reads as a Kaggle submission already)" if _is_submission(data) else ""
        raise DatasetError(
            f'{path}: not an hrm-arc predictions file (no "format": "{FORMAT}"){hint}'
        )
    if data.get("version") != VERSION:
        raise DatasetError(
            f"{path}: predictions format version {data.get('version')!r}, "
            f"this hrm-arc reads version {VERSION}"
        )
    meta, tasks = data.get("meta"), data.get("tasks")
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: 'meta' must be an object")
    if not isinstance(tasks, dict):
        raise DatasetError(f"{path}: 'tasks' must be an object {{task_id: [[candidate, ...]]}}")
    predictions = {tid: _parse_task(value, f"{path}, task {tid}") for tid, value in tasks.items()}
    return predictions, meta


def _candidate_to_json(c: Candidate) -> dict:
    # -inf is not JSON; null stands for it. orjson would also write NaN as null, so refuse NaN
    # here (logprob may have been set after construction) to keep null meaning only -inf.
    if math.isnan(c.logprob) or c.logprob == math.inf:
        raise ValueError(f"{c!r}: logprob must be finite or -inf to be saved")
    logprob = None if c.logprob == -math.inf else float(c.logprob)
    return {
        "grid": c.grid,
        "votes": int(c.votes),
        "q_halt": float(c.q_halt),
        "logprob": logprob,
        "first_vote": int(c.first_vote),
    }


def _parse_task(per_test: object, where: str) -> list[list[Candidate]]:
    if not isinstance(per_test, list) or not per_test:
        raise DatasetError(f"{where}: must be a non-empty list, one candidate list per test input")
    out = []
    for i, ranked in enumerate(per_test):
        if not isinstance(ranked, list):
            got = _describe(ranked)
            raise DatasetError(f"{where}, test {i}: candidates must be a list, got {got}")
        at = f"{where}, test {i}, candidate"
        out.append([_parse_candidate(c, f"{at} {k}") for k, c in enumerate(ranked)])
    return out


def _parse_candidate(value: object, where: str) -> Candidate:
    if not isinstance(value, dict):
        raise DatasetError(f"{where}: must be an object, got {_describe(value)}")
    missing = [k for k in ("grid", "votes", "q_halt", "logprob", "first_vote") if k not in value]
    if missing:
        raise DatasetError(f"{where}: missing {', '.join(missing)}")
    grid = EMPTY_GRID if value["grid"] == [] else parse_grid(value["grid"], f"{where} grid")
    votes, q_halt, logprob = value["votes"], value["q_halt"], value["logprob"]
    if type(votes) is not int or votes < 0:
        raise DatasetError(f"{where}: votes must be an int >= 0, got {votes!r}")
    if not _is_number(q_halt) or not 0.0 <= q_halt <= 1.0:
        raise DatasetError(f"{where}: q_halt must be a number in [0, 1], got {q_halt!r}")
    if logprob is None:
        logprob = -math.inf
    elif not _is_number(logprob):
        raise DatasetError(f"{where}: logprob must be a number or null (-inf), got {logprob!r}")
    first_vote = value["first_vote"]
    if type(first_vote) is not int or first_vote < 0:
        raise DatasetError(f"{where}: first_vote must be an int >= 0, got {first_vote!r}")
    return Candidate(grid, votes, float(q_halt), float(logprob), first_vote)


def _is_number(value: object) -> bool:
    return type(value) in (int, float)


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
