"""AdamATan2 and the sparse sign-SGD puzzle-embedding optimizer against their update rules."""

from __future__ import annotations

import copy
import math
import os
import tempfile

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hrm_arc.hrm_core.optimizer import AdamATan2, SignSGD
from hrm_arc.hrm_core.puzzle_embedding import PuzzleEmbedding

# ----------------------------------------------------------------------------- AdamATan2


def test_adam_atan2_matches_hand_computed_updates() -> None:
    """The adam-atan2 package's rule: 1 - beta1^t divides the step, outside atan2."""
    lr, beta1, beta2, wd = 0.1, 0.9, 0.95, 0.1
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = AdamATan2([param], lr=lr, betas=(beta1, beta2), weight_decay=wd)
    grads = [[0.5, -1.0], [-0.25, 2.0], [1.0, 0.0]]
    expected, m, v = [1.0, -2.0], [0.0, 0.0], [0.0, 0.0]
    for t, grad in enumerate(grads, start=1):
        param.grad = torch.tensor(grad)
        opt.step()
        for i, g in enumerate(grad):
            m[i] = beta1 * m[i] + (1 - beta1) * g
            v[i] = beta2 * v[i] + (1 - beta2) * g * g
            step_size = lr / (1 - beta1**t)
            denominator = math.sqrt(v[i] / (1 - beta2**t))
            expected[i] = expected[i] * (1 - lr * wd) - step_size * math.atan2(m[i], denominator)
        torch.testing.assert_close(param.detach(), torch.tensor(expected))


def test_adam_atan2_first_step_is_nearly_lr_for_any_gradient_scale() -> None:
    # At t=1, m = (1 - beta1) g and the corrected denominator is |g|, so the step is
    # lr / (1 - beta1) * atan(1 - beta1) = 0.9967 lr at beta1 = 0.9, whatever the scale of g.
    param = torch.nn.Parameter(torch.zeros(3))
    opt = AdamATan2([param], lr=1.0, weight_decay=0.0)
    param.grad = torch.tensor([1e-8, -3.0, 1e6])
    opt.step()
    step = math.atan(0.1) / 0.1
    torch.testing.assert_close(param.detach(), torch.tensor([-1.0, 1.0, -1.0]) * step)


def test_adam_atan2_defaults_and_state_dict_round_trip() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(4))
    opt = AdamATan2([a], lr=1e-2)
    assert opt.defaults["betas"] == (0.9, 0.95) and opt.defaults["weight_decay"] == 0.1
    for _ in range(2):
        a.grad = torch.randn(4)
        opt.step()
    b = torch.nn.Parameter(a.detach().clone())
    opt_b = AdamATan2([b], lr=1e-2)
    # deepcopy stands in for save/load: load_state_dict may share the moment tensors.
    opt_b.load_state_dict(copy.deepcopy(opt.state_dict()))
    grad = torch.randn(4)
    a.grad, b.grad = grad.clone(), grad.clone()
    opt.step()
    opt_b.step()
    assert torch.equal(a, b)


def test_adam_atan2_rejects_bad_hyperparameters() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    with pytest.raises(ValueError, match="lr"):
        AdamATan2([param], lr=-1.0)
    with pytest.raises(ValueError, match="betas"):
        AdamATan2([param], betas=(0.9, 1.0))


# ----------------------------------------------------------------------------- SignSGD


def backward_through_rows(emb: PuzzleEmbedding, ids: list[int], coeffs: torch.Tensor) -> None:
    """Training lookup of ``ids`` and a loss whose gradient wrt row i is ``coeffs[i]``."""
    emb.train()
    rows = emb(torch.tensor(ids))
    (rows * coeffs).sum().backward()


def test_signsgd_updates_only_touched_rows_by_sign_and_decay() -> None:
    emb = PuzzleEmbedding(num_ids=5, ndim=3)
    init = torch.arange(15, dtype=torch.float32).view(5, 3) / 10
    emb.reset(5, init)
    lr, wd = 0.01, 0.1
    opt = SignSGD(emb, lr=lr, weight_decay=wd)
    # id 1 appears twice: its gradients are summed (3 - 1 = 2 > 0, -1 + 0.5 < 0, 1 - 1 = 0).
    coeffs = torch.tensor([[3.0, -1.0, 1.0], [-1.0, 0.5, -1.0], [-2.0, 0.0, 4.0]])
    backward_through_rows(emb, [1, 1, 3], coeffs)
    opt.step()
    expected = init.clone()
    expected[1] = init[1] * (1 - lr * wd) - lr * torch.tensor([1.0, -1.0, 0.0])
    expected[3] = init[3] * (1 - lr * wd) - lr * torch.tensor([-1.0, 0.0, 1.0])
    torch.testing.assert_close(emb.weights, expected)
    assert torch.equal(emb.weights[[0, 2, 4]], init[[0, 2, 4]])  # untouched rows unchanged


def test_signsgd_zero_grad_and_step_without_backward() -> None:
    emb = PuzzleEmbedding(num_ids=3, ndim=2)
    opt = SignSGD(emb)
    with pytest.raises(RuntimeError, match="backward"):
        opt.step()
    backward_through_rows(emb, [2], torch.ones(1, 2))
    opt.zero_grad()
    assert emb.local_weights.grad is None
    with pytest.raises(RuntimeError, match="backward"):
        opt.step()


def test_signsgd_follows_table_reset_and_lr_changes() -> None:
    emb = PuzzleEmbedding(num_ids=2, ndim=2)
    opt = SignSGD(emb, lr=0.5, weight_decay=0.0)
    emb.reset(4)  # test-time adaptation: fresh rows, same optimizer
    opt.param_groups[0]["lr"] = 0.25  # as a learning-rate schedule would
    backward_through_rows(emb, [3], torch.tensor([[1.0, -1.0]]))
    opt.step()
    assert torch.equal(emb.weights[3], torch.tensor([-0.25, 0.25]))
    assert torch.all(emb.weights[:3] == 0)


def test_signsgd_state_dict_round_trip() -> None:
    opt = SignSGD(PuzzleEmbedding(2, 2), lr=0.03, weight_decay=0.2)
    other = SignSGD(PuzzleEmbedding(2, 2))
    other.load_state_dict(opt.state_dict())
    assert other.param_groups[0]["lr"] == 0.03 and other.param_groups[0]["weight_decay"] == 0.2
    assert SignSGD(PuzzleEmbedding(1, 1)).defaults == {"lr": 1e-2, "weight_decay": 0.1}


def test_puzzle_embedding_eval_lookup_has_no_grad() -> None:
    emb = PuzzleEmbedding(3, 2).eval()
    out = emb(torch.tensor([0, 2]))
    assert out.shape == (2, 2) and not out.requires_grad and emb.local_weights is None


def _distributed_worker(rank: int, init_file: str, result_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    emb = PuzzleEmbedding(num_ids=4, ndim=2)
    opt = SignSGD(emb, lr=1.0, weight_decay=0.0)
    # Both ranks touch id 1 with gradients (-1, 1) and (3, -1): only the gathered sum (2, 0)
    # gives the step (-1, 0) on both ranks; rank 0 alone would step (+1, -1).
    if rank == 0:
        ids, coeff = [1, 0], [[-1.0, 1.0], [1.0, 1.0]]
    else:
        ids, coeff = [1, 2], [[3.0, -1.0], [0.0, -1.0]]
    backward_through_rows(emb, ids, torch.tensor(coeff))
    opt.step()
    torch.save(emb.weights, f"{result_file}.{rank}")
    dist.barrier()
    dist.destroy_process_group()


def test_signsgd_gathers_gradients_across_ranks() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        init_file, result_file = os.path.join(tmp, "init"), os.path.join(tmp, "table.pt")
        mp.spawn(_distributed_worker, args=(init_file, result_file), nprocs=2)
        tables = [torch.load(f"{result_file}.{rank}") for rank in range(2)]
    expected = torch.tensor([[-1.0, -1.0], [-1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    assert all(torch.equal(table, expected) for table in tables)  # ranks stay identical
