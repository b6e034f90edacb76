"""Stage 2: frozen inference over augmented views, decoded, un-augmented, gathered as candidates.

Every test input under every view runs all `halt_max_steps` ACT segments. Each view's argmax
grid, mapped back through the inverse augmentation, is one vote carrying sigmoid(q_halt). Because
HRM predicts every cell at once, the log-probability of *any* candidate under *any* view is a
gather over logits already computed; summed over views it ranks candidates as a product of experts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .dataset import View
from .encoding import IGNORE_LABEL, decode_batch, encode_batch, labels_from_tokens
from .hrm_core import HRM
from .predictions import Candidate
from .tasks import Task
from .vote import collect_candidates


@torch.no_grad()
def run_views(
    model: HRM, inputs: np.ndarray, puzzle_ids: np.ndarray, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """Run every row for all ACT segments; return float16 log-probs (N, S, V) and q_halt probs."""
    model.eval()
    log_probs, q_halt = [], []
    for start in range(0, len(inputs), batch_size):
        sl = slice(start, start + batch_size)
        batch = {
            "inputs": torch.from_numpy(inputs[sl]).long().to(device),
            "labels": torch.full(inputs[sl].shape, IGNORE_LABEL, dtype=torch.long, device=device),
            "puzzle_ids": torch.from_numpy(puzzle_ids[sl]).long().to(device),
        }
        carry = model.initial_carry(batch)
        for _ in range(model.config.halt_max_steps):
            carry, output = model(carry, batch)
        log_probs.append(torch.log_softmax(output.logits.float(), -1).to("cpu", torch.float16))
        q_halt.append(torch.sigmoid(output.q_halt_logits.float()).cpu().numpy())
    return torch.cat(log_probs), np.concatenate(q_halt)


def candidate_logprob(
    grid: np.ndarray, views: Sequence[View], log_probs: torch.Tensor, canvas: int
) -> float:
    """Sum over views of log p(grid seen through the view), scored as the loss scores it."""
    try:
        tokens = encode_batch([v.augmentation.apply(grid) for v in views], canvas)
    except ValueError:  # the grid does not fit the canvas: no view can express it
        return float("-inf")
    labels = torch.from_numpy(labels_from_tokens(tokens))  # (views, S)
    mask = labels != IGNORE_LABEL
    picked = log_probs.float().gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float((picked * mask).sum())


def predict_task(
    model: HRM,
    task: Task,
    views: Sequence[View],
    canvas: int,
    batch_size: int,
    device: torch.device,
) -> list[list[Candidate]]:
    """Candidates (unranked) for each test input of `task`, from all its `views`."""
    n_views = len(views)
    inputs = encode_batch(
        [v.augmentation.apply(pair.input) for pair in task.test for v in views], canvas
    )  # (tests * views, S), test-major
    ids = np.tile([v.puzzle_id for v in views], len(task.test))
    log_probs, q_halt = run_views(model, inputs, ids, batch_size, device)
    grids = decode_batch(log_probs.argmax(-1).numpy(), canvas)
    per_test = []
    for t in range(len(task.test)):
        sl = slice(t * n_views, (t + 1) * n_views)
        restored = [v.augmentation.invert(g) for v, g in zip(views, grids[sl])]
        candidates = collect_candidates(restored, q_halt[sl].tolist())
        for c in candidates:
            c.logprob = candidate_logprob(c.grid, views, log_probs[sl], canvas)
        per_test.append(candidates)
    return per_test
