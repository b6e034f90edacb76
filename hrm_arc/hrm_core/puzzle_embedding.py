"""Per-puzzle-identifier embedding table, trained sparsely outside the dense optimizer.

At paper scale the table has ~876k rows x 512 floats, so it must never get a dense gradient
or dense optimizer state. It is a buffer; in training each forward copies the rows the
batch uses into a small leaf tensor that requires grad. After backward, only that local
copy holds a gradient, and ``SignSGD`` (optimizer.py) writes the update back to
the touched rows.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["PuzzleEmbedding"]


class PuzzleEmbedding(nn.Module):
    """A ``num_ids x ndim`` float32 table of puzzle embeddings, zero-initialised.

    Attributes:
        weights: the table (a persistent buffer, so it is saved with the model but is not
            in ``parameters()``).
        local_weights: (B, ndim) rows read by the last training forward; a leaf tensor
            whose ``.grad`` the sparse optimizer consumes. None before any training forward.
        local_ids: (B,) the puzzle ids those rows came from.
    """

    def __init__(self, num_ids: int, ndim: int) -> None:
        super().__init__()
        if num_ids < 1 or ndim < 1:
            raise ValueError(
                f"PuzzleEmbedding needs num_ids >= 1 and ndim >= 1, got {num_ids}, {ndim}"
            )
        self.register_buffer("weights", torch.zeros(num_ids, ndim, dtype=torch.float32))
        self.local_weights: Tensor | None = None
        self.local_ids: Tensor | None = None

    @property
    def num_ids(self) -> int:
        return self.weights.shape[0]

    @property
    def ndim(self) -> int:
        return self.weights.shape[1]

    def forward(self, ids: Tensor) -> Tensor:
        """Rows for ``ids`` (B,) -> (B, ndim); differentiable only through the local copy."""
        if not self.training:
            return self._rows(ids)
        return self._local_copy(ids)

    # Read eagerly: traced, the table's size becomes a guard of the compiled model, and test-time
    # adaptation gives every group of tasks a table of another size, so each group recompiled.
    @torch.compiler.disable
    def _rows(self, ids: Tensor) -> Tensor:
        return self.weights[ids]

    # Creating a fresh leaf that requires grad is not something dynamo can trace; running
    # this small copy eagerly keeps the rest of the model compilable.
    @torch.compiler.disable
    def _local_copy(self, ids: Tensor) -> Tensor:
        with torch.no_grad():
            rows = self.weights[ids].clone()  # (B, ndim)
        self.local_weights = rows.requires_grad_(True)
        self.local_ids = ids.detach().clone()
        return self.local_weights

    def reset(self, num_ids: int, init: Tensor | None = None) -> None:
        """Replace the table with ``num_ids`` fresh rows (zeros, or a copy of ``init``).

        Used by test-time adaptation, which learns new rows for unseen puzzle variants.
        Drops any pending local copy. ``SignSGD`` reads the current table at every step,
        so its optimizer need not be rebuilt.
        """
        if num_ids < 1:
            raise ValueError(f"num_ids must be >= 1, got {num_ids}")
        device = self.weights.device
        if init is None:
            table = torch.zeros(num_ids, self.ndim, dtype=torch.float32, device=device)
        else:
            if tuple(init.shape) != (num_ids, self.ndim):
                raise ValueError(
                    f"init must have shape ({num_ids}, {self.ndim}), got {tuple(init.shape)}"
                )
            table = init.detach().to(device=device, dtype=torch.float32).clone()
        self.weights = table  # re-registers the buffer under the same name
        self.local_weights = None
        self.local_ids = None

    def extra_repr(self) -> str:
        return f"num_ids={self.num_ids}, ndim={self.ndim}"
