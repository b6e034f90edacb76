"""Stage 2: votes and log-probabilities of candidates, batch by batch, equal a brute-force count."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from hrm_arc import predict
from hrm_arc.data.dataset import make_views
from hrm_arc.data.encoding import PAD, decode_batch, encode_batch
from hrm_arc.data.tasks import Pair, Task
from hrm_arc.hrm_core.losses import LOSSES
from hrm_arc.hrm_core.model import HRM
from hrm_arc.hrm_core.tokens import labels_from_tokens
from hrm_arc.predict import forward_all_segments, predict_task, vote_task
from hrm_arc.presets import make_config

CANVAS = 6
CPU = torch.device("cpu")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def setup():
    rng = np.random.default_rng(0)
    grids = [rng.integers(0, 4, size=(3, 4), dtype=np.uint8) for _ in range(4)]
    task = Task("t", (Pair(grids[0], grids[1]),), (Pair(grids[2]), Pair(grids[3])))
    views = make_views([task], 12, seed=0)
    torch.manual_seed(0)
    config = make_config(
        "tiny", seq_len=CANVAS * CANVAS, num_puzzle_ids=len(views) + 1, hidden_size=32,
        puzzle_emb_ndim=32, expansion=2, halt_max_steps=2,
    )
    model = HRM(config)
    # Distinct random embeddings make the views disagree, so there are several candidates.
    model.reset_puzzle_embeddings(len(views) + 1, torch.randn(len(views) + 1, 32) * 3)
    return model, task, views


def brute_force(model, task, views, loss):
    """Every view at once; votes per grid, and its logprob as minus the training loss's own
    cross-entropy summed over views (so a candidate is scored as the loss scored it)."""
    expected = []
    for pair in task.test:
        inputs = encode_batch([v.augmentation.apply(pair.input) for v in views], CANVAS)
        logits, q = forward_all_segments(model, inputs, [v.puzzle_id for v in views], CPU)
        grids = decode_batch(logits.argmax(-1).numpy(), CANVAS, blank_failures=False)
        per_grid = {}
        for view, grid, q_halt in zip(views, grids, q.tolist()):
            if grid is None:  # no grid: no vote
                continue
            grid = view.augmentation.invert(grid)
            per_grid.setdefault(grid.tobytes() + bytes(grid.shape), (grid, []))[1].append(q_halt)
        result = {}
        for key, (grid, qs) in per_grid.items():
            labels = torch.from_numpy(labels_from_tokens(
                encode_batch([v.augmentation.apply(grid) for v in views], CANVAS)))
            logprob = -LOSSES[loss](logits, labels).double().sum()
            result[key] = (len(qs), math.fsum(qs) / len(qs), float(logprob))
        expected.append(result)
    return expected


@pytest.mark.parametrize(("batch_size", "loss"), [(1, "stablemax"), (5, "softmax"),
                                                  (256, "stablemax")])  # fmt: skip
def test_batched_prediction_equals_brute_force(setup, batch_size, loss):
    model, task, views = setup
    expected = brute_force(model, task, views, loss)
    per_test = predict_task(model, task, views, CANVAS, batch_size, CPU, loss)
    assert len(per_test) == len(task.test)
    assert sum(len(c) for c in per_test) > len(task.test)  # the views really disagree
    for candidates, want in zip(per_test, expected):
        got = {c.grid.tobytes() + bytes(c.grid.shape): c for c in candidates}
        assert got.keys() == want.keys()
        for key, (votes, q_halt, logprob) in want.items():
            assert got[key].votes == votes
            assert got[key].q_halt == pytest.approx(q_halt, abs=1e-6)
            assert got[key].logprob == pytest.approx(logprob, rel=1e-5)
        assert sum(c.votes for c in candidates) == sum(n for n, _, _ in want.values())


def test_a_view_whose_output_holds_no_grid_casts_no_vote(setup, monkeypatch):
    """Half the views predict a 2x2 grid, the other half all PAD: those vote for nothing (not for
    a 1x1 stand-in that could take a place in the top 2)."""
    model, task, views = setup
    grid = torch.from_numpy(encode_batch([np.ones((2, 2), dtype=np.uint8)], CANVAS)[0]).long()
    real = predict.view_batches

    def half_blank(*args):
        for chunk, logits, q_halt in real(*args):
            logits = torch.zeros_like(logits)
            logits[0::2, :, PAD] = 1
            logits[1::2] = torch.nn.functional.one_hot(grid, logits.shape[-1]).float()
            yield chunk, logits, q_halt

    monkeypatch.setattr(predict, "view_batches", half_blank)
    per_test = vote_task(model, task, views, CANVAS, 256, CPU)
    assert [sum(c.votes for c in cs) for cs in per_test] == [len(views) // 2] * 2
    assert all(c.grid.shape == (2, 2) for cs in per_test for c in cs)
    # Counted as the official evaluator counts them: every blank view votes for the empty grid.
    per_test = vote_task(model, task, views, CANVAS, 256, CPU, empty_votes=True)
    for candidates in per_test:
        assert sum(c.votes for c in candidates) == len(views)
        assert [c.votes for c in candidates if c.grid.shape == (0, 0)] == [len(views) // 2]


def test_grid_larger_than_canvas_scores_minus_infinity(setup):
    model, task, views = setup
    candidates = predict_task(model, task, views[:2], CANVAS, 4, CPU, "stablemax")[0]
    from hrm_arc.predict import candidate_logprob

    logits, _ = forward_all_segments(
        model, encode_batch([task.test[0].input], CANVAS), [views[0].puzzle_id], CPU
    )
    too_big = np.zeros((CANVAS + 1, 2), dtype=np.uint8)
    assert candidate_logprob(too_big, views[:1], logits.log_softmax(-1), CANVAS) == -math.inf
    assert all(math.isfinite(c.logprob) for c in candidates)


def test_inference_runs_every_act_segment_and_reads_the_last(setup):
    """Evaluation ignores Q: each row runs halt_max_steps segments (DESIGN §3), and the answer
    is the last segment's, checked against a hand-written loop."""
    model, task, views = setup
    inputs = encode_batch([task.test[0].input], CANVAS)
    ids = np.array([views[0].puzzle_id])
    calls = []
    hook = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        logits, q = forward_all_segments(model, inputs, ids, CPU)
    finally:
        hook.remove()
    assert len(calls) == model.config.halt_max_steps == 2
    batch = {"inputs": torch.from_numpy(inputs).long(), "puzzle_ids": torch.from_numpy(ids),
             "labels": torch.zeros(inputs.shape, dtype=torch.long)}  # fmt: skip
    carry = model.initial_carry(batch)
    with torch.no_grad():
        carry, first = model(carry, batch)
        _, second = model(carry, batch)
    assert torch.equal(logits, second.logits)
    assert not torch.equal(first.logits, second.logits)  # so the last one is told apart
    assert q.tolist() == pytest.approx(torch.sigmoid(second.q_halt_logits).tolist())


def test_segment_traces_record_every_segment_and_end_on_the_votes(setup):
    """The per-segment trace (the report's reasoning steps) has one answer and one q_halt per
    ACT segment, and its last segment is what voting counts."""
    model, task, views = setup
    traces = predict.segment_traces(model, task, views, CANVAS, CPU, test_index=1)
    assert [len(t.grids) for t in traces] == [model.config.halt_max_steps] * len(views)
    assert all(len(t.q_halt) == len(t.grids) and all(0 <= q <= 1 for q in t.q_halt)
               for t in traces)  # fmt: skip
    votes = {c.grid.tobytes() + bytes(c.grid.shape): c.votes for c in
             vote_task(model, task, views, CANVAS, batch_size=5, device=CPU)[1]}  # fmt: skip
    last = {}
    for t in traces:
        if t.grids[-1] is not None:
            key = t.grids[-1].tobytes() + bytes(t.grids[-1].shape)
            last[key] = last.get(key, 0) + 1
    assert last == votes


def test_stopping_at_halt_answers_each_row_with_its_first_halting_segment(setup) -> None:
    """Rows whose q_halt turns positive early answer with that segment, checked against every
    segment run for every row; the others run to the last segment."""
    model, task, views = setup
    model = HRM(dataclasses.replace(model.config, halt_max_steps=4)).eval()
    model.load_state_dict(setup[0].state_dict())
    inputs = encode_batch([v.augmentation.apply(task.test[0].input) for v in views], CANVAS)
    ids = np.array([v.puzzle_id for v in views])
    batch = {"inputs": torch.from_numpy(inputs).long(), "puzzle_ids": torch.from_numpy(ids),
             "labels": torch.zeros(inputs.shape, dtype=torch.long)}  # fmt: skip
    with torch.no_grad():
        # Halting depends on the row: q_halt's bias sits at the median of the first segment's
        # q_halt logits, so some rows halt there and others run on.
        torch.manual_seed(0)
        model.q_head.weight.normal_()  # zero at initialisation: every row alike
        _, first = model(model.initial_carry(batch), batch)
        model.q_head.bias[0] -= first.q_halt_logits.median()
        carry, every = model.initial_carry(batch), []
        for _ in range(4):
            carry, out = model(carry, batch)
            every.append(out)
    halts = torch.stack([o.q_halt_logits > 0 for o in every])  # (segments, rows)
    halts[-1] = True
    first_halt = halts.float().argmax(0)
    assert 0 < int((first_halt == 0).sum()) < len(views)  # both kinds of row are there
    logits, q = forward_all_segments(model, inputs, ids, CPU, stop_at_halt=True)
    for row, segment in enumerate(first_halt.tolist()):
        assert torch.allclose(logits[row], every[segment].logits[row], atol=1e-5)
        expected = torch.sigmoid(every[segment].q_halt_logits[row])
        assert q[row] == pytest.approx(float(expected), abs=1e-6)
