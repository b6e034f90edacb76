"""Process-group set-up for torchrun: NCCL on CUDA, gloo on CPU, a no-op for one process."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

# Ranks wait for each other over uneven work: rank 0 evaluating or writing a checkpoint, an
# idle rank at the end of adaptation while another finishes a group of tasks (hours at paper
# scale). torch's defaults (NCCL 10 min, gloo 30) would end such a run.
COLLECTIVE_TIMEOUT = timedelta(hours=12)

# Pickled objects (every rank's carry at a checkpoint, ~350 MB a rank at paper scale) travel
# through a gloo group of their own, on the CPU where they were made: NCCL would stage them
# all on rank 0's GPU. The same group serves CPU runs, so tests run this path too.
_objects: dist.ProcessGroup | None = None


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (nothing to wait for in one process)."""
        if self.enabled:
            dist.barrier()


def gather_to_main(obj: object, info: DistInfo) -> list | None:
    """Every rank's picklable ``obj`` in rank order on the main rank, None on the others.
    Collective: every rank must call it."""
    if not info.enabled:
        return [obj]
    gathered = [None] * info.world_size if info.is_main else None
    dist.gather_object(obj, gathered, dst=0, group=_objects)
    return gathered


def from_main(obj: object, info: DistInfo) -> object:
    """The main rank's picklable ``obj``, on every rank. Collective: every rank must call it."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_objects)
    return box[0]


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available here")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if device.type == "cuda" and (device.index or 0) >= gpus:
        raise ValueError(f"device {name!r}: this machine has {gpus} GPU{'' if gpus == 1 else 's'}")
    if device.type == "cuda" and device.index is None:  # which one, as set_device needs
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def init_distributed(device_name: str = "auto") -> DistInfo:
    """Join the torchrun process group when launched by torchrun, else run as one process."""
    device = resolve_device(device_name)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and device.type == "cuda":  # one GPU a process
        device = resolve_device(f"cuda:{os.environ['LOCAL_RANK']}")
    if device.type == "cuda":  # what runs on "the current device" (contexts, kernels) runs here
        torch.cuda.set_device(device)
    if world_size == 1:
        return DistInfo(0, 1, device)
    global _objects
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        dist.init_process_group(
            backend="nccl" if cuda else "gloo",
            timeout=COLLECTIVE_TIMEOUT,
            device_id=device if cuda else None,  # binds NCCL's barriers to this rank's GPU
        )
        _objects = dist.new_group(backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    return DistInfo(dist.get_rank(), dist.get_world_size(), device)


def shutdown_distributed() -> None:
    global _objects
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()  # every group, the objects' too
        _objects = None
