"""Optimizers: Adam-atan2 for the dense weights, sign-SGD for the sparse puzzle embeddings."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.distributed as dist
from torch import Tensor

from hrm_arc.hrm_core.puzzle_embedding import PuzzleEmbedding


class AdamATan2(torch.optim.Optimizer):
    """Adam with the division replaced by atan2 (Everett et al. 2024, "Scaling Exponents
    Across Parameterizations and Optimizers"), with the update rule of the ``adam-atan2``
    package the official HRM trains with.

    Per step t, the first moment's bias correction scales the step and the second's corrects
    the denominator:
        p <- p * (1 - lr * weight_decay) - lr / (1 - beta1^t) * atan2(m, sqrt(v / (1 - beta2^t)))
    Correcting m inside atan2 instead would shrink the early steps (the first to pi/4 of lr,
    where this rule gives 0.997 lr). atan2 is bounded and scale invariant, so no epsilon is
    needed and tiny second moments cannot blow up the step.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.95),
        weight_decay: float = 0.1,
    ) -> None:
        if lr < 0:
            raise ValueError(f"AdamATan2 lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamATan2 betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"AdamATan2 weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": betas, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: Tensor, group: dict) -> None:
        lr, wd = group["lr"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        state = self.state[param]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(param)
            state["exp_avg_sq"] = torch.zeros_like(param)
        state["step"] += 1
        step, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        grad = param.grad
        m.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denominator = (v / (1 - beta2**step)).sqrt()
        param.mul_(1 - lr * wd)  # decoupled weight decay (AdamW style)
        param.add_(torch.atan2(m, denominator), alpha=-lr / (1 - beta1**step))


class SignSGD(torch.optim.Optimizer):
    """Sign-SGD with decoupled weight decay on the rows of a ``PuzzleEmbedding`` a batch used.

    After backward, the local copy's gradients are summed per puzzle id (gathered from every
    rank first when torch.distributed is initialised), and each touched row becomes
        row <- row * (1 - lr * weight_decay) - lr * sign(grad).
    Untouched rows do not change. With very sparse gradients Adam behaves like sign-SGD, and
    sign-SGD needs no per-row state, which a table of ~1M rows could not afford.

    ``param_groups`` exists (one group with "lr" and "weight_decay") so learning-rate
    schedules work as for any optimizer; the update always reads ``embedding.weights``, so
    it stays valid after ``embedding.reset``. Data-parallel use needs the same local batch
    size on every rank; ``gather=False`` keeps each rank's updates to itself.
    """

    def __init__(
        self,
        embedding: PuzzleEmbedding,
        lr: float = 1e-2,
        weight_decay: float = 0.1,
        gather: bool = True,
    ) -> None:
        if lr < 0:
            raise ValueError(f"SignSGD lr must be >= 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"SignSGD weight_decay must be >= 0, got {weight_decay}")
        # The base class wants a parameter list; the table stands in for it (see docstring).
        super().__init__([embedding.weights], {"lr": lr, "weight_decay": weight_decay})
        self.embedding = embedding
        # False when ranks train independent tables (test-time adaptation shards tasks).
        self.gather = gather

    def zero_grad(self, set_to_none: bool = True) -> None:
        local = self.embedding.local_weights
        if local is not None and local.grad is not None:
            if set_to_none:
                local.grad = None
            else:
                local.grad.zero_()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        local, ids = self.embedding.local_weights, self.embedding.local_ids
        if local is None or ids is None or local.grad is None:
            raise RuntimeError(
                "SignSGD.step() needs a training-mode forward and a backward first "
                "(the puzzle embedding's local copy has no gradient)"
            )
        grad = local.grad
        if self.gather:
            ids, grad = _gather_across_ranks(ids, grad)
        group = self.param_groups[0]
        _signsgd_rows(self.embedding.weights, ids, grad, group["lr"], group["weight_decay"])
        return loss


def _gather_across_ranks(ids: Tensor, grad: Tensor) -> tuple[Tensor, Tensor]:
    """All ranks' (ids (N,), grads (N, D)) concatenated: (world*N,), (world*N, D)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return ids, grad
    world = dist.get_world_size()
    all_ids = [torch.empty_like(ids) for _ in range(world)]
    all_grads = [torch.empty_like(grad) for _ in range(world)]
    dist.all_gather(all_ids, ids.contiguous())
    dist.all_gather(all_grads, grad.contiguous())
    return torch.cat(all_ids), torch.cat(all_grads)


def _signsgd_rows(table: Tensor, ids: Tensor, grad: Tensor, lr: float, weight_decay: float) -> None:
    """In place: sign-SGD + decoupled decay on the rows of ``table`` named in ``ids``."""
    unique_ids, inverse = ids.long().unique(return_inverse=True)  # (U,), (N,)
    summed = torch.zeros(len(unique_ids), grad.shape[-1], dtype=grad.dtype, device=grad.device)
    summed.index_add_(0, inverse, grad)  # (U, D): one gradient per puzzle id
    rows = table[unique_ids]  # (U, D) copy
    rows.mul_(1 - lr * weight_decay).sub_(lr * torch.sign(summed.to(rows.dtype)))
    table[unique_ids] = rows


__all__ = ["AdamATan2", "SignSGD"]
