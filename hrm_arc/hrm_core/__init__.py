"""HRM model core: config, model, losses, sparse puzzle embeddings and optimizers.

Knows token ids and puzzle ids only; ARC grids and JSON live elsewhere.
"""

from hrm_arc.hrm_core.losses import (
    IGNORE_INDEX,
    LOG_PROBS,
    LOSSES,
    act_loss,
    softmax_cross_entropy,
    stablemax_cross_entropy,
    summarize_metrics,
)
from hrm_arc.hrm_core.model import HRM, PRESETS, Carry, HRMConfig, HRMOutput, make_config
from hrm_arc.hrm_core.optimizer import AdamATan2, SignSGD
from hrm_arc.hrm_core.puzzle_embedding import PuzzleEmbedding

__all__ = [
    "HRM",
    "IGNORE_INDEX",
    "LOG_PROBS",
    "LOSSES",
    "PRESETS",
    "AdamATan2",
    "Carry",
    "HRMConfig",
    "HRMOutput",
    "PuzzleEmbedding",
    "SignSGD",
    "act_loss",
    "make_config",
    "softmax_cross_entropy",
    "stablemax_cross_entropy",
    "summarize_metrics",
]
