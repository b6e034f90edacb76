"""Stage 2: frozen inference over augmented views, decoded, un-augmented, gathered as candidates.

Every test input under every view runs all `halt_max_steps` ACT segments (or, asked, stops at
its first segment whose q_halt says halt). Each view's argmax
grid, mapped back through the inverse augmentation, is one vote carrying sigmoid(q_halt); a view
whose output holds no grid (nothing at the top left) casts none, unless `empty_votes` asks for
the official evaluator's counting: a vote for the empty grid, which can take a top-2 place and
is never right. Because
HRM predicts every cell at once, the log-probability of *any* candidate under *any* view is a
gather over that view's log-probabilities (under the distribution pretraining's loss fitted:
stablemax or softmax); summed over views it ranks candidates as a product of experts.

Memory stays flat in the number of views: views run one batch at a time, a first pass tallies
the votes, and a second pass re-runs the same (deterministic) batches to score every kept
candidate under every view. The second pass costs one more forward per view, a small part of
a run (benchmarks/README.md), where holding every view's log-probabilities would cost
canvas² x 12 values per view
(21.6 MB per test input at 1000 views in float16).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .data.dataset import View
from .data.encoding import decode_batch, encode_batch
from .data.tasks import Task
from .hrm_core.losses import LOG_PROBS
from .hrm_core.model import HRM, make_batch
from .hrm_core.tokens import IGNORE_LABEL, labels_from_tokens
from .predictions import EMPTY_GRID, Candidate
from .vote import VoteTally


@torch.no_grad()
def forward_all_segments(
    model: HRM,
    inputs: np.ndarray,
    puzzle_ids: np.ndarray,
    device: torch.device,
    stop_at_halt: bool = False,
) -> tuple[torch.Tensor, np.ndarray]:
    """One batch through its ACT segments: float32 logits (B, S, V) on `device`, and
    sigmoid(q_halt) (B,). Every row runs all halt_max_steps segments, as the official evaluator
    does; with `stop_at_halt`, each row stops at the first segment whose q_halt logit is
    positive, as training's ACT halts, and answers with it: only rows still going are run."""
    model.eval()
    batch = make_batch(inputs, puzzle_ids, device)
    carry = model.initial_carry(batch)
    segments = model.config.halt_max_steps
    if not stop_at_halt:
        for _ in range(segments):
            carry, output = model(carry, batch)
        return output.logits.float(), torch.sigmoid(output.q_halt_logits.float()).cpu().numpy()
    logits = q_halt = None
    going = torch.arange(len(inputs), device=device)  # the rows of `batch` still running
    for segment in range(segments):
        carry, output = model(carry, batch)
        if logits is None:
            logits = output.logits.new_empty((len(inputs), *output.logits.shape[1:]))
            q_halt = output.q_halt_logits.new_empty(len(inputs))
        done = (output.q_halt_logits > 0) | (segment == segments - 1)
        logits[going[done]] = output.logits[done].float()
        q_halt[going[done]] = output.q_halt_logits[done].float()
        if done.all():
            break
        going, carry = going[~done], carry.rows(~done)
        batch = {key: value[~done] for key, value in batch.items()}
    return logits, torch.sigmoid(q_halt).cpu().numpy()


def compiled(model: HRM, enabled: bool) -> HRM:
    """`model` under torch.compile when `enabled`. Dynamo caches compiled code by function, not
    by wrapper or module instance, so each adaptation group's copy of the model reuses it."""
    return torch.compile(model) if enabled else model


def candidate_logprob(
    grid: np.ndarray, views: Sequence[View], log_probs: torch.Tensor, canvas: int
) -> float:
    """Sum over `views` of log p(grid seen through the view).

    `log_probs` holds those views' log-probabilities (len(views), S, V) under the distribution
    the model was trained with (`LOG_PROBS[loss]`).
    """
    try:
        tokens = encode_batch([v.augmentation.apply(grid) for v in views], canvas)
    except ValueError:  # the grid does not fit the canvas: no view can express it
        return float("-inf")
    labels = torch.from_numpy(labels_from_tokens(tokens)).to(log_probs.device)  # (views, S)
    mask = labels != IGNORE_LABEL
    picked = log_probs.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((picked * mask).sum())


def view_batches(
    model: HRM,
    task: Task,
    views: Sequence[View],
    canvas: int,
    batch_size: int,
    device,
    stop_at_halt: bool = False,
) -> Iterator[tuple[list[tuple[int, View]], torch.Tensor, np.ndarray]]:
    """Every (test input, view) row of `task`, a batch at a time, run through the model."""
    rows = [(t, v) for t in range(len(task.test)) for v in views]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        inputs = encode_batch([v.augmentation.apply(task.test[t].input) for t, v in chunk], canvas)
        ids = np.array([v.puzzle_id for _, v in chunk])
        yield chunk, *forward_all_segments(model, inputs, ids, device, stop_at_halt)


def vote_task(
    model: HRM,
    task: Task,
    views: Sequence[View],
    canvas: int,
    batch_size: int,
    device: torch.device,
    empty_votes: bool = False,
    stop_at_halt: bool = False,
) -> list[list[Candidate]]:
    """Candidates (unranked, unscored: logprob 0.0) for each test input of `task`: every view's
    argmax grid, mapped back to the task's frame, is one vote carrying sigmoid(q_halt).

    A view whose output holds no grid (no colour at the top left) casts no vote, or with
    `empty_votes` a vote for the empty grid, as the official evaluator counts it.
    `stop_at_halt`: see `forward_all_segments`.
    """
    tallies = [VoteTally() for _ in task.test]
    batches = view_batches(model, task, views, canvas, batch_size, device, stop_at_halt)
    for chunk, logits, q_halt in batches:
        grids = decode_batch(logits.argmax(-1).cpu().numpy(), canvas, blank_failures=False)
        for (t, view), grid, q in zip(chunk, grids, q_halt.tolist()):
            if grid is not None:
                tallies[t].add(view.augmentation.invert(grid), q)
            elif empty_votes:
                tallies[t].add(EMPTY_GRID, q)
    return [tally.candidates() for tally in tallies]


def predict_task(
    model: HRM,
    task: Task,
    views: Sequence[View],
    canvas: int,
    batch_size: int,
    device: torch.device,
    loss: str,
    empty_votes: bool = False,
    stop_at_halt: bool = False,
) -> list[list[Candidate]]:
    """Candidates (unranked) for each test input of `task`, from all its `views`, each scored
    with its log-probability summed over every view.

    The log-probability is taken under `loss`'s token distribution (stablemax or softmax), the
    one the model was trained with; the argmax grids, and so the votes, are the same under both.
    """
    per_test = vote_task(model, task, views, canvas, batch_size, device, empty_votes, stop_at_halt)
    batches = view_batches(model, task, views, canvas, batch_size, device, stop_at_halt)
    for chunk, logits, _ in batches:
        log_probs = LOG_PROBS[loss](logits)
        for t in sorted({t for t, _ in chunk}):
            rows = [i for i, (row_test, _) in enumerate(chunk) if row_test == t]
            scored_views = [chunk[i][1] for i in rows]
            for candidate in per_test[t]:
                candidate.logprob += candidate_logprob(
                    candidate.grid, scored_views, log_probs[rows], canvas
                )
    return per_test


@dataclass
class SegmentTrace:
    """What one view answered after each ACT segment, for one test input (on request only:
    `predict_task` keeps no per-segment output, so its memory stays flat)."""

    view: View
    grids: list[np.ndarray | None]
    """Each segment's argmax grid in the task's own frame (view undone); None: no grid."""
    q_halt: list[float]
    """Each segment's sigmoid(q_halt): how sure the model was that it could stop there."""


@torch.no_grad()
def segment_traces(
    model: HRM, task: Task, views: Sequence[View], canvas: int, device, test_index: int = 0
) -> list[SegmentTrace]:
    """Run test input `test_index` of `task` through each of `views` and record every ACT
    segment's decoded answer and sigmoid(q_halt), as `forward_all_segments` runs them."""
    model.eval()
    source = task.test[test_index].input
    inputs = encode_batch([v.augmentation.apply(source) for v in views], canvas)
    batch = make_batch(inputs, np.array([v.puzzle_id for v in views]), device)
    carry = model.initial_carry(batch)
    traces = [SegmentTrace(v, [], []) for v in views]
    for _ in range(model.config.halt_max_steps):
        carry, output = model(carry, batch)
        tokens = output.logits.argmax(-1).cpu().numpy()  # (views, S): decoded now, not kept
        grids = decode_batch(tokens, canvas, blank_failures=False)
        q_halt = torch.sigmoid(output.q_halt_logits.float()).cpu().tolist()
        for trace, grid, q in zip(traces, grids, q_halt):
            trace.grids.append(None if grid is None else trace.view.augmentation.invert(grid))
            trace.q_halt.append(q)
    return traces
