"""The token conventions the model trains under: PAD never supervised, and the label that says so.

Free of torch, so the data code that builds token arrays shares them without loading it.
"""

from __future__ import annotations

import numpy as np

PAD = 0
"""Token id of padding: never supervised, so labels mark it IGNORE_LABEL."""
IGNORE_LABEL = -100
"""Label of a position the loss skips (PyTorch's cross-entropy default)."""


def labels_from_tokens(tokens: np.ndarray) -> np.ndarray:
    """Training labels: the tokens as int64 with PAD -> IGNORE_LABEL (every other token
    supervised)."""
    labels = np.asarray(tokens).astype(np.int64)
    labels[labels == PAD] = IGNORE_LABEL
    return labels
