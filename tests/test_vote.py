"""Vote aggregation and rankings: grouping, hand-computed means, deterministic tie-breaks."""

import math
import random

import numpy as np
import pytest

from hrm_arc.predictions import EMPTY_GRID, Candidate
from hrm_arc.vote import RANKINGS, collect_candidates, rank_candidates, rank_predictions, top2


def g(rows) -> np.ndarray:
    return np.array(rows, dtype=np.uint8)


A, B, C = g([[1, 2]]), g([[1], [2]]), g([[3]])  # A and B share bytes, differ in shape


def test_collect_groups_by_shape_and_cells():
    grids = [A, B, A.copy(), C, A.copy()]
    q = [0.9, 0.5, 0.6, 0.25, 0.3]
    cands = collect_candidates(grids, q)
    by_votes = {(c.grid.shape, c.grid.tobytes()): c for c in cands}
    assert len(cands) == 3
    a = by_votes[((1, 2), A.tobytes())]
    assert a.votes == 3 and a.q_halt == pytest.approx((0.9 + 0.6 + 0.3) / 3)
    b = by_votes[((2, 1), B.tobytes())]
    assert b.votes == 1 and b.q_halt == 0.5
    assert all(c.logprob == 0.0 for c in cands)  # unscored without logprob_fn


def test_collect_uses_logprob_fn_and_accepts_int_arrays():
    cands = collect_candidates(
        [np.array([[1, 2]]), np.array([[3]])],
        [0.5, 0.5],
        logprob_fn=lambda grid: -float(grid.sum()),
    )
    assert [c.grid.dtype for c in cands] == [np.uint8, np.uint8]
    assert [c.logprob for c in cands] == [-3.0, -3.0]


@pytest.mark.parametrize("q", [-5.0, 1.5, math.nan])
def test_collect_refuses_q_halt_that_is_not_a_probability(q):
    with pytest.raises(ValueError, match="sigmoid"):
        collect_candidates([A], [q])


def test_collect_refuses_mismatched_lengths_and_bad_grids():
    with pytest.raises(ValueError, match="2 grids but 1"):
        collect_candidates([A, B], [0.5])
    with pytest.raises(ValueError, match="colours 0-9"):
        collect_candidates([np.array([[10]])], [0.5])
    with pytest.raises(ValueError, match="2-D"):
        collect_candidates([np.array([1, 2])], [0.5])
    with pytest.raises(ValueError, match=r"or the empty grid \(0, 0\), got shape \(0, 3\)"):
        collect_candidates([np.zeros((0, 3), np.uint8)], [0.5])


def test_the_empty_grid_is_tallied_and_submitted_as_a_1x1_zero_grid():
    """The official evaluator's vote for a view with no grid: it ranks like any candidate, and
    no submission may hold an empty grid, so it is submitted as the blank attempt."""
    candidates = collect_candidates([EMPTY_GRID, A, EMPTY_GRID], [0.9, 0.5, 0.8])
    ranked = rank_candidates(candidates, "votes")
    assert [(c.grid.shape, c.votes) for c in ranked] == [((0, 0), 2), ((1, 2), 1)]
    assert [a.tolist() for a in top2(ranked)] == [[[0]], [[1, 2]]]
    assert [a.tolist() for a in top2(ranked[:1])] == [[[0]], [[0]]]


@pytest.mark.parametrize("rank", list(RANKINGS))
def test_equal_evidence_ranks_the_earliest_views_answer_first(rank):
    # As the official evaluator's stable sort over the views in order does. Ties everywhere:
    # equal counts, equal mean q_halt (0.1 + 0.2 + 0.3 sums differently by order in plain
    # floating point, so the means must be exact to tie), equal cells in different shapes.
    base = [A, A, A, B, B, B, C, g([[0]]), g([[0, 0]]), g([[0], [0]])]
    q = [0.1, 0.2, 0.3, 0.3, 0.2, 0.1, 0.7, 0.7, 0.7, 0.7]
    views = list(zip(base, q, strict=True))
    rng = random.Random(0)
    for _ in range(30):
        rng.shuffle(views)
        grids, qs = zip(*views, strict=True)
        ranked = rank_candidates(collect_candidates(list(grids), list(qs)), rank)
        first_seen = list(dict.fromkeys((x.shape, x.tobytes()) for x in grids))
        three = [k for k in first_seen if k in {(A.shape, A.tobytes()), (B.shape, B.tobytes())}]
        once = [k for k in first_seen if k not in three]  # 1 vote at 0.7 each
        assert [(c.grid.shape, c.grid.tobytes()) for c in ranked] == three + once
        assert {c.q_halt for c in ranked if c.votes == 3} == {0.2}


def test_full_ties_break_by_shape_then_cells():
    cands = [Candidate(grid, 1, 0.5, -1.0) for grid in (g([[2]]), g([[1, 1]]), g([[1]]), B)]
    for rank in RANKINGS:
        ranked = rank_candidates(cands, rank)
        # shapes (1, 1) < (1, 2) < (2, 1); among 1x1, cells b"\x01" < b"\x02"
        assert [c.grid.tolist() for c in ranked] == [[[1]], [[2]], [[1, 1]], [[1], [2]]]


def test_votes_and_logprob_rankings_differ():
    many_votes = Candidate(A, votes=5, q_halt=0.6, logprob=-12.0)
    likely = Candidate(B, votes=2, q_halt=0.9, logprob=-1.5)
    never = Candidate(C, votes=1, q_halt=0.99, logprob=-math.inf)
    cands = [never, likely, many_votes]
    assert rank_candidates(cands, "votes") == [many_votes, likely, never]
    assert rank_candidates(cands, "logprob") == [likely, many_votes, never]
    assert rank_candidates(cands, "combined") == [many_votes, likely, never]


def test_combined_breaks_vote_ties_by_logprob_not_q_halt():
    confident = Candidate(A, votes=3, q_halt=0.95, logprob=-8.0)
    probable = Candidate(B, votes=3, q_halt=0.40, logprob=-2.0)
    assert rank_candidates([probable, confident], "votes") == [confident, probable]
    assert rank_candidates([confident, probable], "combined") == [probable, confident]


def test_unknown_ranking_lists_choices():
    with pytest.raises(ValueError, match="votes, logprob, combined"):
        rank_candidates([], "best")


def test_rank_predictions_reranks_every_test_input():
    x, y = Candidate(A, 1, 0.5, -1.0), Candidate(B, 4, 0.5, -9.0)
    out = rank_predictions({"t": [[x, y], [y, x]]}, "votes")
    assert out == {"t": [[y, x], [y, x]]}


def test_top2():
    first, second = top2([])
    assert first.tolist() == [[0]] and second.tolist() == [[0]] and first.dtype == np.uint8
    only = Candidate(A, 2, 0.5, 0.0)
    assert [a.tolist() for a in top2([only])] == [[[1, 2]], [[1, 2]]]
    ranked = [only, Candidate(B, 1, 0.5, 0.0), Candidate(C, 1, 0.5, 0.0)]
    assert [a.tolist() for a in top2(ranked)] == [[[1, 2]], [[1], [2]]]


def test_candidate_refuses_bad_values():
    with pytest.raises(ValueError, match="uint8"):
        Candidate(np.array([[1]]), 1, 0.5, 0.0)
    with pytest.raises(ValueError, match="logprob"):
        Candidate(A, 1, 0.5, math.nan)
    with pytest.raises(ValueError, match="q_halt"):
        Candidate(A, 1, 2.0, 0.0)
