"""Training loop for HRM-ACT: deep supervision over ACT segments with a rolling batch.

One `train_step` is one ACT segment for every row of the batch: rows that halted take a new
example, the others keep working on theirs (DESIGN §3). The same loop serves pretraining and
test-time adaptation; `freeze_network` leaves only the puzzle embeddings learning.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import math
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import CheckpointError, load_model_state
from .distributed import DistInfo, gather_to_main
from .losses import LOSSES, MEAN_METRICS, act_loss, summarize_metrics
from .model import HRM, Carry, make_batch
from .optimizer import AdamATan2, SignSGD
from .sampling import SAMPLERS, Examples
from .signals import held_signals, signal_handlers

log = logging.getLogger(__name__)
MAX_SEED = 2**32 - 1  # numpy's classic range; torch takes 64 bits, and each rank adds its rank


@dataclass
class TrainConfig:
    steps: int = 1000
    """Optimiser steps; each step is one ACT segment of the whole (global) batch."""
    batch_size: int = 768
    """Global batch, split evenly across ranks."""
    lr: float = 1e-4
    warmup_steps: int = 2000
    lr_min_ratio: float = 1.0
    """After warm-up, learning rates follow a half cosine from `lr` down to `lr * lr_min_ratio`
    at `steps` (the official schedule); 1 keeps them constant, as the paper trains: the cosine
    led early but ended lower in short CPU runs (benchmarks/README.md)."""
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    puzzle_emb_lr: float = 1e-2
    puzzle_emb_weight_decay: float = 0.1
    loss: str = "stablemax"
    sampling: str = "tasks"
    """"tasks": the official order (each epoch, every task gives one random view and all its
    examples); "examples": every example once per epoch, uniformly (see `sampling`)."""
    freeze_network: bool = False
    """Test-time adaptation: the dense network is frozen, only puzzle embeddings learn."""
    log_every: int = 10
    eval_every: int = 0
    checkpoint_every: int = 0
    seed: int = 0
    compile: bool = False
    time_limit_s: float = 0.0
    """Stop (logging, evaluating and checkpointing as at the last step) after this many
    seconds of training; 0 = no limit."""
    ema: float = 0.0
    """Decay of an exponential moving average of the dense weights, which evaluation uses and
    the run hands to later stages; 0 = off. The decay ramps up as (1 + t) / (10 + t), so early
    averages are not anchored to the random initialisation."""

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("warmup_steps", "log_every", "eval_every", "checkpoint_every", "time_limit_s"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("lr", "puzzle_emb_lr", "weight_decay", "puzzle_emb_weight_decay"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TrainConfig.{name} must be a finite number >= 0, got {value}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 <= self.lr_min_ratio <= 1.0:
            raise ValueError(f"TrainConfig.lr_min_ratio must be in [0, 1], got {self.lr_min_ratio}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"TrainConfig.seed must be in [0, {MAX_SEED}], got {self.seed}")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError(f"TrainConfig.ema must be in [0, 1), got {self.ema}")
        for name, choices in (("loss", LOSSES), ("sampling", SAMPLERS)):
            value = getattr(self, name)
            if value not in choices:
                raise ValueError(f"TrainConfig.{name} must be one of {sorted(choices)}: {value!r}")


def to_batch(examples: Examples, indices: np.ndarray, device: torch.device) -> dict:
    inputs, labels = examples.take(indices)
    return make_batch(inputs, examples.puzzle_ids[indices], device, labels)


def due(step: int, every: int, last: bool) -> bool:
    """Whether a periodic action (every 0 = never) happens at `step`; the last step always acts."""
    return bool(every) and (step % every == 0 or last)


@contextlib.contextmanager
def stop_on_signals(announce: bool = True) -> Iterator[Callable[[], int]]:
    """While inside, SIGINT and SIGTERM (what schedulers send before pre-empting a job) ask the
    caller to stop at a safe point instead of killing the process; a second SIGINT interrupts
    at once. Yields the check: the number of the first signal that asked, 0 until one does.
    Signals can only be caught on the main thread; elsewhere the check always gives 0.
    `announce`: say so when the first comes (under torchrun, one rank is enough)."""
    requested = 0

    def request(signum, frame) -> None:
        nonlocal requested
        if requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if not requested and announce:
            log.warning(
                "%s: stopping after this step, with a checkpoint (Ctrl-C again stops at once, "
                "unsaved)",
                signal.Signals(signum).name,
            )
        requested = requested or signum

    with signal_handlers(request, signal.SIGINT, signal.SIGTERM):
        yield lambda: requested


def data_parallel(model: torch.nn.Module, device: torch.device) -> DistributedDataParallel:
    """DDP over `model`, its buffers synced once from rank 0 and never again.

    Buffers (H_init, L_init, the puzzle table) must start as rank 0's; afterwards the table
    stays identical through its all-gathered updates, so syncing it every forward would cost
    as much as the table for nothing.
    """
    device_ids = [device] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters:
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)
    # Before torch 2.13, broadcast_buffers=False also skipped the sync at wrap time.
    for buffer in model.buffers():
        torch.distributed.broadcast(buffer, src=0)
    return DistributedDataParallel(model, device_ids=device_ids, broadcast_buffers=False)


def scheduled_lr(base: float, step: int, config: TrainConfig) -> float:
    """Linear warm-up to `base`, then a half cosine down to `base * lr_min_ratio` at `steps`.

    The rate of the 0-based `step` is the official schedule's at its count of steps taken
    (`step + 1`): the last warm-up step reaches `base`, the last step the floor.
    """
    taken = step + 1
    if taken < config.warmup_steps:
        return base * taken / config.warmup_steps
    progress = (taken - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    floor = config.lr_min_ratio
    return base * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


class RunStore(Protocol):
    """Where a trainer keeps its checkpoint and metrics (a run directory, say)."""

    def save(self, state: dict) -> None:
        """Keep `state` as the checkpoint, whole or not at all."""

    def log(self, record: dict) -> None:
        """Append one logged record."""

    def trim_log(self, step: int) -> None:
        """Drop logged records past `step`."""


class Trainer:
    """Owns the model, its two optimisers, the sampler and the rolling carries (one per canvas
    size: a batch's rows go on with the examples of their own canvas)."""

    def __init__(
        self,
        model: HRM,
        config: TrainConfig,
        examples: Examples,
        dist_info: DistInfo,
        store: RunStore | None = None,
        extra_state: dict | None = None,
    ):
        self.config, self.examples, self.dist = config, examples, dist_info
        self.store = store
        self.extra_state = extra_state or {}
        self.model = model.to(dist_info.device)
        self.sampler = SAMPLERS[config.sampling](
            examples, config.batch_size, config.seed, dist_info
        )
        self.step = 0
        self.start_step = 0
        """The step the last `fit` started from."""
        self.stop_reason: str | None = None
        """Why the last `fit` ended before `config.steps`: "time limit", "stop requested"."""
        self.stop_signal = 0
        """The number of the signal that stopped the last `fit` (the highest any rank's
        `should_stop` answered), else 0; the CLI exits with 128 + it."""
        self.carries: dict[int, Carry] = {}
        """The rolling carry of each canvas side the sampler has drawn (0: the full canvas)."""
        self.last_side: int | None = None
        dense = [p for p in self.model.parameters() if p.requires_grad]
        if config.freeze_network:
            self.model.requires_grad_(False)
            dense = []
        self.optimizer = (
            AdamATan2(
                dense,
                lr=config.lr,
                betas=(config.beta1, config.beta2),
                weight_decay=config.weight_decay,
            )
            if dense
            else None
        )
        self.embedding_optimizer = (
            None
            if self.model.puzzle_emb is None
            else SignSGD(
                self.model.puzzle_emb,
                lr=config.puzzle_emb_lr,
                weight_decay=config.puzzle_emb_weight_decay,
                gather=dist_info.enabled,
            )
        )
        self.dense = dense
        if dist_info.enabled:
            # Each rank draws its own exploration coins, as the official trainer seeds seed + rank
            # (the model was built from one seed, and DDP starts every rank from rank 0's).
            torch.manual_seed(config.seed + dist_info.rank)
        self.dense_names = [
            n for n, p in self.model.named_parameters() if any(p is d for d in dense)
        ]
        self.ema = [p.detach().clone() for p in dense] if config.ema and dense else None
        self.forward = self._wrap(self.model)

    def _wrap(self, model: HRM):
        if self.dist.enabled and self.optimizer is not None:
            model = data_parallel(model, self.dist.device)
        return torch.compile(model) if self.config.compile else model

    def train_step(self) -> dict[str, torch.Tensor]:
        """One ACT segment of the batch; returns act_loss's raw (summed) metrics and the loss."""
        indices = self.sampler.next_indices()
        batch = to_batch(self.examples, indices, self.dist.device)
        side = self.last_side = self.examples.side_of(indices)
        carry = self.carries.get(side) or self.model.initial_carry(batch)
        self.model.train()
        carry, output = self.forward(carry, batch)
        self.carries[side] = carry
        loss, metrics = act_loss(output, carry.batch["labels"], self.config.loss)
        loss.backward()
        self._set_hyperparameters()
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self._update_ema()
        if self.embedding_optimizer is not None:
            self.embedding_optimizer.step()
            self.embedding_optimizer.zero_grad()
        self.step += 1
        return {"loss": loss.detach(), **metrics}

    @property
    def carry(self) -> Carry | None:
        """The carry of the last step's canvas (None before the first step)."""
        return self.carries.get(self.last_side)

    def _update_ema(self) -> None:
        if self.ema is not None:
            decay = min(self.config.ema, (1 + self.step) / (10 + self.step))
            with torch.no_grad():
                for average, param in zip(self.ema, self.dense):
                    average.lerp_(param, 1 - decay)

    @contextlib.contextmanager
    def averaged_weights(self) -> Iterator[HRM]:
        """The model with its dense weights swapped for their moving average (if any)."""
        self._swap_average()
        try:
            yield self.model
        finally:
            self._swap_average()

    def _swap_average(self) -> None:
        for average, param in zip(self.ema or [], self.dense):
            param.data, average.data = average.data, param.data

    def _set_hyperparameters(self) -> None:
        """The config's values, set every step: the scheduled rates, and the decays and betas,
        which a resumed optimizer's saved groups would otherwise keep from the earlier run."""
        c = self.config
        if self.optimizer is not None:
            for group in self.optimizer.param_groups:
                group.update(
                    lr=scheduled_lr(c.lr, self.step, c),
                    betas=(c.beta1, c.beta2),
                    weight_decay=c.weight_decay,
                )
        if self.embedding_optimizer is not None:
            for group in self.embedding_optimizer.param_groups:
                group.update(
                    lr=scheduled_lr(c.puzzle_emb_lr, self.step, c),
                    weight_decay=c.puzzle_emb_weight_decay,
                )

    def fit(
        self,
        on_log: Callable[[int, dict], None] | None = None,
        evaluate: Callable[[HRM], dict] | None = None,
        should_stop: Callable[[], int] | None = None,
    ) -> list[dict]:
        """Train to `config.steps`, logging, evaluating and checkpointing at their intervals.

        Past the time limit, or once `should_stop()` says so, the current step is the last:
        logged, evaluated and checkpointed as the final one, with `stop_reason` set (left None
        when that step was the last anyway; `stop_signal` still names a signal).
        """
        c, history, window = self.config, [], []
        start, self.start_step, self.stop_reason = time.perf_counter(), self.step, None
        self.stop_signal, self._finished = 0, 0.0
        while self.step < c.steps:
            window.append(self.train_step())
            # Asked at the last step too, so that a signal then still ends the process as one;
            # but a run that reached its last step finished, whatever else stopped it there.
            stop = self._early_stop(start, should_stop)
            self.stop_reason = None if self.step == c.steps else stop
            last = self.step == c.steps or self.stop_reason is not None
            evaluating = evaluate is not None and due(self.step, c.eval_every, last)
            # The same steps on every rank: the summary is collective under torchrun.
            if due(self.step, c.log_every, last) or due(self.step, c.eval_every, last):
                record = self._summarise(window, start)
                window = []
                if self.stop_reason is not None:
                    record["stop_reason"] = self.stop_reason
                if evaluating:
                    with self.averaged_weights() as model:
                        record.update(evaluate(model))
                history.append(record)
                self._write_metrics(record)
                if on_log is not None:
                    on_log(self.step, record)
            if due(self.step, c.checkpoint_every, last):
                self.save()
            if last:
                break
        return history

    def _early_stop(self, start: float, should_stop: Callable[[], int] | None) -> str | None:
        """Why training must end at this step, if it must; the same answer on every rank."""
        checks = {}
        if self.config.time_limit_s:
            checks["time limit"] = time.perf_counter() - start > self.config.time_limit_s
        if should_stop is not None:
            checks["stop requested"] = should_stop()
        if not checks:
            return None
        flags = [float(v) for v in checks.values()]
        if self.dist.enabled:  # every rank must stop at the same step
            agreed = torch.tensor(flags, device=self.dist.device)
            torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MAX)
            flags = agreed.tolist()
        answers = dict(zip(checks, flags))
        self.stop_signal = int(answers.get("stop requested", 0))
        return next((reason for reason, f in answers.items() if f), None)

    def _summarise(self, window: list[dict], start: float) -> dict:
        elapsed = time.perf_counter() - start
        segments = (self.step - self.start_step) * self.config.batch_size
        window = self._over_ranks(window)
        mean = summarize_metrics(window) if window else {}
        if window:
            mean["loss"] = float(torch.stack([w["loss"] for w in window]).mean())
        self._finished += mean.get("count", 0.0)  # examples whose rows halted, all ranks
        return {
            "step": self.step,
            "epoch": self.sampler.epoch,
            **mean,
            "examples_per_s": self._finished / max(elapsed, 1e-9),
            "segments_per_s": segments / max(elapsed, 1e-9),
            "elapsed_s": elapsed,
        }

    def _over_ranks(self, window: list[dict]) -> list[dict]:
        """The window's metrics over the global batch, as the official trainer reduces them:
        sums added over ranks, batch means averaged. Collective under torchrun."""
        if not self.dist.enabled or not window:
            return window
        keys = list(window[0])
        table = torch.stack([torch.stack([w[k].float() for k in keys]) for w in window])
        torch.distributed.all_reduce(table)
        means = torch.tensor([k == "loss" or k in MEAN_METRICS for k in keys], device=table.device)
        table = torch.where(means, table / self.dist.world_size, table)
        return [dict(zip(keys, row)) for row in table]

    def _write_metrics(self, record: dict) -> None:
        if self.store is not None and self.dist.is_main:
            self.store.log(record)

    def trim_metrics(self) -> None:
        """Drop logged records past this trainer's step (logged after the checkpoint it resumed,
        or by an earlier run in a fresh start), so the log has each step once."""
        if self.store is not None and self.dist.is_main:
            self.store.trim_log(self.step)

    # --- state -------------------------------------------------------------------------
    def state_dict(self, ranks: list[dict] | None = None) -> dict:
        """Everything a resume needs. ``ranks``: every rank's carry and RNG state, as `save`
        gathers them; by default this process's alone (under torchrun, checkpoint through
        `save`, or the checkpoint resumes as one from another number of ranks)."""
        return {
            "model_config": dataclasses.asdict(self.model.config),
            "train_config": dataclasses.asdict(self.config),
            "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "embedding_optimizer": None
            if self.embedding_optimizer is None
            else self.embedding_optimizer.state_dict(),
            "sampler": self.sampler.state_dict(),
            "ranks": [self._rank_state()] if ranks is None else ranks,
            "step": self.step,
            "model_averaged": None
            if self.ema is None
            else {n: a.clone() for n, a in zip(self.dense_names, self.ema, strict=True)},
            **self.extra_state,
        }

    def load_state_dict(self, state: dict, path: str | Path = "checkpoint") -> None:
        """Resume from `state`; a damaged or mismatched one raises CheckpointError naming
        `path` (before anything trains on it)."""
        before = state.get("train_config") or {}
        drew = before.get("sampling")
        if drew != self.config.sampling:
            raise CheckpointError(
                f"{path}: it drew batches by {drew}, this run by {self.config.sampling}: resume "
                f"with train.sampling={drew}"
            )
        seed = before.get("seed", self.config.seed)
        if seed != self.config.seed:  # the batch order and draws go on from the checkpoint
            raise CheckpointError(
                f"{path}: it trained with seed {seed}, this run with {self.config.seed}: a "
                f"resumed run goes on with its own random state: resume with train.seed={seed}"
            )
        if self.optimizer is not None and state.get("optimizer") is None:
            raise CheckpointError(
                f"{path}: it holds no optimizer state for the network (trained with "
                "train.freeze_network?): resume with the same settings"
            )
        load_model_state(self.model, state["model"], path)
        try:
            self._load_states(state, path)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError) as e:
            raise CheckpointError(f"{path}: damaged checkpoint ({type(e).__name__}: {e})") from None

    def _load_states(self, state: dict, path: str | Path) -> None:
        if self.optimizer is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            check_state_shapes(self.optimizer)
        if self.embedding_optimizer is not None:
            self.embedding_optimizer.load_state_dict(state["embedding_optimizer"])
        self.sampler.load_state_dict(state["sampler"])
        self.step = self.start_step = int(state["step"])
        if self.step < 0:
            raise CheckpointError(f"{path}: damaged checkpoint (step {self.step})")
        if self.ema is not None:
            saved = state.get("model_averaged")
            if saved is None:
                raise CheckpointError(
                    f"{path}: it kept no weight average: resume with train.ema=0"
                )
            for name, average in zip(self.dense_names, self.ema, strict=True):
                average.copy_(saved[name])
        ranks = state["ranks"]
        rows = self.config.batch_size // self.dist.world_size
        if len(ranks) == self.dist.world_size and carry_rows(ranks[self.dist.rank]) in (0, rows):
            self._load_rank_state(ranks[self.dist.rank])
        elif self.dist.is_main:  # the batches still follow on exactly; said once, not per rank
            then = f"written by {_ranks(len(ranks))}"
            now = f"resumed on {_ranks(self.dist.world_size)}"
            batch = (state.get("train_config") or {}).get("batch_size")
            if batch != self.config.batch_size:
                then, now = f"{then} at batch {batch}", f"{now} at batch {self.config.batch_size}"
            log.warning(
                "%s: %s, %s: the rows start on fresh examples, with fresh random draws",
                path,
                then,
                now,
            )

    def _rank_state(self) -> dict:
        """What differs between ranks: the rolling carry and the RNG (exploration draws)."""
        device = self.dist.device
        # A copy on the CPU, where it is gathered and saved (asdict would first deep-copy every
        # carry tensor on the GPU).
        carries = {side: to_device(vars(c), "cpu", copy=True) for side, c in self.carries.items()}
        return {
            "carries": carries,
            "last_side": self.last_side,
            "rng": {
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            },
        }

    def _load_rank_state(self, state: dict) -> None:
        device = self.dist.device
        carries = saved_carries(state).items()
        self.carries = {int(side): Carry(**to_device(c, device)) for side, c in carries}
        self.last_side = state.get("last_side", 0)
        torch.set_rng_state(state["rng"]["torch"])
        cuda = state["rng"]["cuda"]  # None where that rank trained on the CPU
        if device.type == "cuda" and cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    def save(self) -> None:
        """Write the checkpoint. Collective under torchrun: every rank calls it at the same step,
        and the main rank writes every rank's carry and RNG state. Ctrl-C and SIGTERM wait
        until it is written (the last save runs after training has stopped listening)."""
        if self.store is None:
            return
        with held_signals(signal.SIGINT, signal.SIGTERM):
            ranks = gather_to_main(self._rank_state(), self.dist)
            if self.dist.is_main:
                self.store.save(self.state_dict(ranks))


def _ranks(n: int) -> str:
    return f"{n} rank" + ("" if n == 1 else "s")


def carry_rows(rank_state: dict) -> int:
    """The rows of a rank's saved carries (0 when it saved none, before its first step)."""
    carries = saved_carries(rank_state).values()  # every canvas's carry has the rank's rows
    return next((len(carry["halted"]) for carry in carries), 0)


def saved_carries(rank_state: dict) -> dict:
    """A rank's saved carries by canvas side; a checkpoint from before canvases were cropped
    holds one full-canvas `carry` (or None), which is side 0's."""
    if "carries" in rank_state:
        return rank_state["carries"]
    carry = rank_state["carry"]
    return {} if carry is None else {0: carry}


def check_state_shapes(optimizer: torch.optim.Optimizer) -> None:
    """Every per-parameter state tensor has its parameter's shape (a checkpoint of another
    model would fail only at the first step, after the run directory was rewritten)."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.dim() and value.shape != param.shape:
                    raise ValueError(
                        f"optimizer state {name} has shape {tuple(value.shape)} for a "
                        f"parameter of shape {tuple(param.shape)}"
                    )


def to_device(tree: object, device: str | torch.device, copy: bool = False) -> object:
    """``tree`` with every tensor in it (through nested dicts) moved to ``device`` (copied even
    where it is already there, if ``copy``)."""
    if isinstance(tree, torch.Tensor):
        return tree.to(device, copy=copy)
    if isinstance(tree, dict):
        return {key: to_device(value, device, copy) for key, value in tree.items()}
    return tree
