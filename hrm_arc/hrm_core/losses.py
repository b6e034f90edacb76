"""Token losses and the ACT (deep-supervision + Q-learning) loss for HRM outputs."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from hrm_arc.hrm_core.model import HRMOutput
from hrm_arc.hrm_core.tokens import IGNORE_LABEL

TokenLoss = Callable[..., Tensor]
"""``(logits (B,S,V), labels (B,S), ignore_index) -> per-token loss (B,S), 0 where ignored``."""


def _stablemax_s(x: Tensor) -> Tensor:
    # s(x) = x + 1 for x >= 0, 1 / (1 - x) for x < 0: positive, monotone, and only linear
    # in x, so it does not overflow where exp would. The clamp keeps the unused branch finite.
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def log_stablemax(logits: Tensor) -> Tensor:
    """log p_i under stablemax over the last dim, p_i = s(x_i) / sum_j s(x_j); in float64."""
    s = _stablemax_s(logits.to(torch.float64))
    return torch.log(s / s.sum(dim=-1, keepdim=True))


def stablemax_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_LABEL
) -> Tensor:
    """Cross-entropy under stablemax, p_i = s(x_i) / sum_j s(x_j); computed in float64.

    Returns the per-token loss (B, S) as float32, 0 at ignored positions.
    """
    log_probs = log_stablemax(logits)
    valid = labels != ignore_index
    safe_labels = torch.where(valid, labels, 0).long()
    picked = log_probs.gather(-1, safe_labels.unsqueeze(-1)).squeeze(-1)  # (B, S)
    return torch.where(valid, -picked, 0.0).float()


def softmax_cross_entropy(
    logits: Tensor, labels: Tensor, ignore_index: int = IGNORE_LABEL
) -> Tensor:
    """Ordinary cross-entropy in float32; per-token loss (B, S), 0 at ignored positions."""
    flat = logits.float().reshape(-1, logits.shape[-1])  # (B*S, V)
    loss = F.cross_entropy(
        flat, labels.long().reshape(-1), ignore_index=ignore_index, reduction="none"
    )
    return loss.view(labels.shape)  # (B, S)


LOSSES: dict[str, TokenLoss] = {
    "stablemax": stablemax_cross_entropy,
    "softmax": softmax_cross_entropy,
}

LOG_PROBS: dict[str, Callable[[Tensor], Tensor]] = {
    "stablemax": log_stablemax,
    "softmax": lambda logits: torch.log_softmax(logits.float(), dim=-1),
}
"""Each loss's own token distribution, as log-probabilities over the last dim."""


def act_loss(output: HRMOutput, labels: Tensor, loss_type: str) -> tuple[Tensor, dict[str, Tensor]]:
    """Loss of one ACT segment and its metrics.

    loss = mean over rows of [LM loss + 0.5 * (BCE(q_halt, exact) + BCE(q_continue, target))],
    where a row's LM loss is the mean token loss over its supervised tokens and ``exact`` is
    whether every supervised token is predicted right. The q_continue term is present only
    when ``output.target_q_continue`` is set.

    Normalisation: the official code sums these terms over the batch and the trainer divides
    by the global batch size. Taking the mean over the local batch here gives the same
    gradient once data-parallel training averages gradients over equally sized rank batches,
    and keeps the loss scale independent of batch size on one device.

    Args:
        output: the model's output for the segment.
        labels: (B, S) labels of the rows' current examples (``carry.batch["labels"]``),
            ``IGNORE_LABEL`` where unsupervised.
        loss_type: a key of ``LOSSES``.

    Returns:
        The scalar loss and a metrics dict. "count", "accuracy", "exact_accuracy",
        "q_halt_accuracy" and "steps" are *sums* over the rows that halted this segment and
        have supervised tokens (all rows if ``output.halted`` is None); divide by "count"
        (see ``summarize_metrics``) after summing over batches. "lm_loss", "q_halt_loss"
        and "q_continue_loss" are this batch's mean losses, detached.
    """
    if loss_type not in LOSSES:
        raise ValueError(f"unknown loss_type {loss_type!r}; valid: {sorted(LOSSES)}")
    mask = labels != IGNORE_LABEL
    counts = mask.sum(-1)  # (B,)
    divisor = counts.clamp_min(1).unsqueeze(-1)  # (B, 1); rows with no labels add 0, not NaN
    with torch.no_grad():
        correct = mask & (output.logits.argmax(-1) == labels)
        exact = correct.sum(-1) == counts  # (B,)
    token_loss = LOSSES[loss_type](output.logits, labels, ignore_index=IGNORE_LABEL)
    lm_loss = (token_loss / divisor).sum(-1).mean()
    q_halt_loss = F.binary_cross_entropy_with_logits(output.q_halt_logits, exact.float())
    q_continue_loss = torch.zeros((), device=labels.device)
    if output.target_q_continue is not None:
        q_continue_loss = F.binary_cross_entropy_with_logits(
            output.q_continue_logits, output.target_q_continue
        )
    loss = lm_loss + 0.5 * (q_halt_loss + q_continue_loss)
    metrics = _segment_metrics(output, correct, exact, counts)
    metrics.update(
        lm_loss=lm_loss.detach(),
        q_halt_loss=q_halt_loss.detach(),
        q_continue_loss=q_continue_loss.detach(),
    )
    return loss, metrics


@torch.no_grad()
def _segment_metrics(
    output: HRMOutput, correct: Tensor, exact: Tensor, counts: Tensor
) -> dict[str, Tensor]:
    """Sums over rows whose example finished this segment (their final answer)."""
    rows = counts > 0
    if output.halted is not None:
        rows = rows & output.halted
    steps = output.steps if output.steps is not None else torch.zeros_like(counts)
    token_acc = correct.sum(-1) / counts.clamp_min(1)  # (B,)
    q_halt_right = (output.q_halt_logits >= 0) == exact
    return {
        "count": rows.sum(),
        "accuracy": torch.where(rows, token_acc, 0.0).sum(),
        "exact_accuracy": (rows & exact).sum(),
        "q_halt_accuracy": (rows & q_halt_right).sum(),
        "steps": torch.where(rows, steps, 0).sum(),
    }


_SUMMED = ("accuracy", "exact_accuracy", "q_halt_accuracy", "steps")
MEAN_METRICS = ("lm_loss", "q_halt_loss", "q_continue_loss")
"""act_loss's batch means; the rest of its metrics are sums over the batch's finished rows."""


def summarize_metrics(metrics: list[dict[str, Tensor]]) -> dict[str, float]:
    """Average the metrics of several ``act_loss`` calls.

    Summed metrics are divided by the total "count" (NaN when nothing halted); loss metrics
    are averaged over calls.
    """
    if not metrics:
        raise ValueError("summarize_metrics needs at least one metrics dict")
    count = sum(float(m["count"]) for m in metrics)
    summary = {"count": count}
    for key in _SUMMED:
        total = sum(float(m[key]) for m in metrics)
        summary[key] = total / count if count else float("nan")
    for key in MEAN_METRICS:
        summary[key] = sum(float(m[key]) for m in metrics) / len(metrics)
    return summary


__all__ = [
    "LOG_PROBS",
    "LOSSES",
    "act_loss",
    "log_stablemax",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
    "summarize_metrics",
]
