"""Which hardware gave a benchmark's figures, for its results file."""

from __future__ import annotations

import torch


def device_name(device: torch.device | str) -> str:
    """The GPU's name on CUDA (an H100 and an H200 pace differently), else "cpu"."""
    device = torch.device(device)
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
