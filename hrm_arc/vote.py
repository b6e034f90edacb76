"""Aggregate the (already inverse-augmented) predictions of many views and rank the candidates.

Three rankings, each a sort key over one candidate (smaller sorts first):

- ``votes``: the official HRM rule: most votes, then highest mean sigmoid(q_halt), then the
  earliest view's answer (the official sorts stably over views in order). Over the views that
  decode to a grid: the official also counts an empty grid, which can take a top-2 place and
  never be right (see predict.py).
- ``logprob``: product of experts: highest log-probability summed over all views.
- ``combined``: most votes, then highest summed logprob, then highest mean q_halt. Vote
  counts are the proven signal, so they stay first; among equal counts the summed logprob
  (the whole output distribution of every view) is a richer tie-breaker than q_halt (one
  scalar per voting view).

Every ranking then breaks ties by the first view that voted for each candidate, and last by the
grid's shape and bytes, so equal evidence yields one fixed order.

A candidate's log-probability covers its own cells and the end-of-grid frame around them (the
canvas beyond is never trained), so it is a sum over more tokens for a larger grid: where the
model is unsure of every cell, smaller grids score higher. ``logprob`` leans that way between
candidates of different shapes, and ``combined`` among equal vote counts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction

import numpy as np

from .predictions import EMPTY_GRID, Candidate, Predictions

SortKey = tuple


def _tie_key(c: Candidate) -> tuple:
    """The last tie-breakers: the first view that voted for it, then its shape and raw cells
    (which identify the grid exactly, for candidates made without view order)."""
    return (c.first_vote, c.grid.shape, c.grid.tobytes())


def _by_votes(c: Candidate) -> SortKey:
    return (-c.votes, -c.q_halt, _tie_key(c))


def _by_logprob(c: Candidate) -> SortKey:
    return (-c.logprob, -c.votes, -c.q_halt, _tie_key(c))


def _by_combined(c: Candidate) -> SortKey:
    return (-c.votes, -c.logprob, -c.q_halt, _tie_key(c))


RANKINGS: dict[str, Callable[[Candidate], SortKey]] = {
    "votes": _by_votes,
    "logprob": _by_logprob,
    "combined": _by_combined,
}


class VoteTally:
    """Votes gathered view by view: one entry per distinct grid, whatever the number of views.

    Each entry keeps its grid, its vote count and the exact sum of its voters' q_halt (a
    Fraction: exact, so the mean does not depend on the order the views came in); entries keep
    the order of their first votes.
    """

    def __init__(self) -> None:
        self._groups: dict[tuple, list] = {}

    def add(self, grid: np.ndarray, q_halt: float, view: int = 0) -> None:
        """Count one view's vote for `grid` (task frame) with its sigmoid(q_halt)."""
        grid = _check_grid(grid, view)
        if not 0.0 <= q_halt <= 1.0:  # also refuses NaN
            raise ValueError(
                f"view {view}: q_halt {q_halt} is not a probability; pass sigmoid(q_halt)"
            )
        entry = self._groups.setdefault((grid.shape, grid.tobytes()), [grid, 0, Fraction(0)])
        entry[1] += 1
        entry[2] += Fraction(float(q_halt))

    def candidates(
        self, logprob_fn: Callable[[np.ndarray], float] | None = None
    ) -> list[Candidate]:
        """One Candidate per distinct grid, in first-seen order (see `collect_candidates`)."""
        return [
            Candidate(
                grid,
                votes,
                float(q_sum / votes),
                float(logprob_fn(grid)) if logprob_fn is not None else 0.0,
                first,
            )
            for first, (grid, votes, q_sum) in enumerate(self._groups.values())
        ]


def collect_candidates(
    grids: Sequence[np.ndarray],
    q_halts: Sequence[float],
    logprob_fn: Callable[[np.ndarray], float] | None = None,
) -> list[Candidate]:
    """Group view predictions by exact grid content; each view is one vote.

    Args:
        grids: one predicted grid per view, already mapped back to the task's frame.
        q_halts: each view's sigmoid(q_halt), a probability in [0, 1].
        logprob_fn: returns a grid's log-probability summed over all views; without it every
            candidate's logprob is 0.0 (unscored, so the logprob ranking cannot tell them apart).

    Returns:
        One Candidate per distinct grid, in first-seen order (use `rank_candidates` to rank).
    """
    if len(grids) != len(q_halts):
        raise ValueError(f"{len(grids)} grids but {len(q_halts)} q_halt values")
    tally = VoteTally()
    for i, (grid, q) in enumerate(zip(grids, q_halts, strict=True)):
        tally.add(grid, q, i)
    return tally.candidates(logprob_fn)


def rank_candidates(candidates: Sequence[Candidate], rank: str = "votes") -> list[Candidate]:
    """Return the candidates best first under the ranking named `rank` (a key of RANKINGS)."""
    if rank not in RANKINGS:
        raise ValueError(f"unknown ranking {rank!r}; choose from {', '.join(RANKINGS)}")
    return sorted(candidates, key=RANKINGS[rank])


def rank_predictions(predictions: Predictions, rank: str) -> Predictions:
    """Re-rank every test input's candidates of every task under `rank`."""
    return {
        task_id: [rank_candidates(ranked, rank) for ranked in per_test]
        for task_id, per_test in predictions.items()
    }


def top2(ranked: Sequence[Candidate]) -> tuple[np.ndarray, np.ndarray]:
    """The two attempts to submit: the first repeated if alone, a 1x1 zero grid if none. The
    empty grid, which no submission may hold, is submitted as that 1x1 zero grid too (the
    official evaluator submits it as it is, which scores as wrong)."""
    blank = np.zeros((1, 1), dtype=np.uint8)
    grids = [c.grid if c.grid.size else blank for c in ranked[:2]]
    first = grids[0] if grids else blank
    return first, grids[1] if len(grids) > 1 else first


def _check_grid(grid: np.ndarray, i: int) -> np.ndarray:
    grid = np.asarray(grid)
    if grid.ndim != 2 or (grid.size == 0 and grid.shape != EMPTY_GRID.shape):
        raise ValueError(
            f"view {i}: grid must be a non-empty 2-D array or the empty grid (0, 0), got shape "
            f"{grid.shape}"
        )
    if grid.dtype != np.uint8:
        if not np.issubdtype(grid.dtype, np.integer) or grid.min() < 0 or grid.max() > 9:
            raise ValueError(f"view {i}: grid must hold integer colours 0-9, got {grid.dtype}")
        grid = grid.astype(np.uint8)
    # Contiguous copy: tobytes() of a transposed view is fine, but keep the stored grid compact.
    return np.ascontiguousarray(grid)
