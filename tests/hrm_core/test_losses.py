"""Token losses and the ACT loss against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hrm_arc.hrm_core.losses import (
    LOG_PROBS,
    LOSSES,
    act_loss,
    softmax_cross_entropy,
    stablemax_cross_entropy,
    summarize_metrics,
)
from hrm_arc.hrm_core.model import HRMOutput


def test_stablemax_on_a_two_token_example() -> None:
    # Token 1: s = (3, 1, 1/2), label 0 -> p = 3 / 4.5 = 2/3.
    # Token 2: s = (1, 1/4, 2),  label 1 -> p = (1/4) / (13/4) = 1/13.
    logits = torch.tensor([[[2.0, 0.0, -1.0], [0.0, -3.0, 1.0]]])
    labels = torch.tensor([[0, 1]])
    loss = stablemax_cross_entropy(logits, labels)
    assert loss.dtype == torch.float32 and loss.shape == (1, 2)
    torch.testing.assert_close(loss, torch.tensor([[-math.log(2 / 3), math.log(13)]]))


def test_token_losses_are_zero_at_ignored_positions() -> None:
    logits = torch.randn(2, 3, 5)
    labels = torch.tensor([[1, -100, 4], [-100, -100, 0]])
    for fn in LOSSES.values():
        loss = fn(logits, labels, ignore_index=-100)
        assert loss.shape == (2, 3)
        assert torch.all(loss[labels == -100] == 0) and torch.all(loss[labels != -100] > 0)


def test_softmax_cross_entropy_hand_value() -> None:
    logits = torch.tensor([[[0.0, math.log(3.0)]]])  # softmax = (1/4, 3/4)
    loss = softmax_cross_entropy(logits, torch.tensor([[1]]))
    torch.testing.assert_close(loss, torch.tensor([[-math.log(0.75)]]))
    assert set(LOSSES) == {"stablemax", "softmax"}


@pytest.mark.parametrize("loss", sorted(LOSSES))
def test_log_probs_are_each_losss_own_distribution(loss) -> None:
    # What stage 2 scores candidates with: normalised, and minus the loss at every label.
    logits = torch.randn(2, 3, 5) * 4
    log_probs = LOG_PROBS[loss](logits)
    total = log_probs.exp().sum(-1).double()
    torch.testing.assert_close(total, torch.ones(2, 3, dtype=torch.float64))
    labels = torch.tensor([[1, 0, 4], [2, 3, 0]])
    picked = log_probs.gather(-1, labels[..., None])[..., 0]
    torch.testing.assert_close(-picked.float(), LOSSES[loss](logits, labels))


def make_output(halted: list[bool], target: list[float] | None) -> tuple[HRMOutput, torch.Tensor]:
    """Two rows, vocab 2: row 0 fully right (2 tokens), row 1 half right (1 token ignored)."""
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]], [[1.0, 0.0], [0.0, 0.0], [0, 3]]])
    labels = torch.tensor([[0, 1, -100], [1, -100, 1]])
    output = HRMOutput(
        logits=logits,
        q_halt_logits=torch.tensor([0.5, 0.2]),
        q_continue_logits=torch.tensor([-1.0, 1.0]),
        target_q_continue=None if target is None else torch.tensor(target),
        halted=torch.tensor(halted),
        steps=torch.tensor([3, 5], dtype=torch.int32),
    )
    return output, labels


def test_act_loss_matches_hand_computation() -> None:
    output, labels = make_output(halted=[True, False], target=[0.25, 0.75])
    loss, metrics = act_loss(output, labels, "stablemax")
    row0 = (-math.log(3 / 4) - math.log(2 / 3)) / 2  # s: (3, 1) and (1, 2)
    row1 = (-math.log(1 / 3) - math.log(4 / 5)) / 2  # s: (2, 1) and (1, 4), label 1 both
    lm = (row0 + row1) / 2  # mean over the batch of per-row means
    exact = torch.tensor([1.0, 0.0])
    q_halt = F.binary_cross_entropy_with_logits(output.q_halt_logits, exact)
    target = torch.tensor([0.25, 0.75])
    q_cont = F.binary_cross_entropy_with_logits(output.q_continue_logits, target)
    torch.testing.assert_close(loss, torch.tensor(lm) + 0.5 * (q_halt + q_cont))
    torch.testing.assert_close(metrics["lm_loss"], torch.tensor(lm))
    # Only row 0 halted: metrics are sums over that row alone.
    assert metrics["count"] == 1 and metrics["accuracy"] == 1.0
    assert metrics["exact_accuracy"] == 1 and metrics["steps"] == 3
    assert metrics["q_halt_accuracy"] == 1  # q_halt 0.5 >= 0 and the row is exact


def test_act_loss_without_target_has_no_continue_term() -> None:
    output, labels = make_output(halted=[True, True], target=None)
    loss, metrics = act_loss(output, labels, "softmax")
    assert metrics["q_continue_loss"] == 0
    lm = metrics["lm_loss"]
    exact = torch.tensor([1.0, 0.0])
    q_halt = F.binary_cross_entropy_with_logits(output.q_halt_logits, exact)
    torch.testing.assert_close(loss, lm + 0.5 * q_halt)
    assert metrics["count"] == 2 and metrics["accuracy"] == 1.5 and metrics["steps"] == 8
    assert metrics["q_halt_accuracy"] == 1  # row 1: q_halt 0.2 >= 0 but not exact


def test_act_loss_gradient_flows_to_logits_and_q() -> None:
    output, labels = make_output(halted=[True, True], target=[0.5, 0.5])
    for name in ("logits", "q_halt_logits", "q_continue_logits"):
        getattr(output, name).requires_grad_(True)
    loss, _ = act_loss(output, labels, "stablemax")
    loss.backward()
    assert output.logits.grad is not None and output.q_halt_logits.grad is not None
    assert output.q_continue_logits.grad is not None
    assert torch.all(output.logits.grad[0, 2] == 0)  # ignored token gets no gradient


def test_act_loss_unknown_type_and_summary() -> None:
    output, labels = make_output(halted=[True, False], target=None)
    with pytest.raises(ValueError, match="stablemax"):
        act_loss(output, labels, "focal")
    _, first = act_loss(output, labels, "stablemax")
    output.halted = torch.tensor([True, True])
    _, second = act_loss(output, labels, "stablemax")
    summary = summarize_metrics([first, second])
    assert summary["count"] == 3
    assert summary["accuracy"] == pytest.approx(2.5 / 3)
    assert summary["exact_accuracy"] == pytest.approx(2 / 3)
    assert summary["steps"] == pytest.approx(11 / 3)
