"""Hierarchical Reasoning Model (arXiv:2506.21734) with adaptive computation time (ACT).

``HRMConfig.arch="trm"`` makes the same class a Tiny Recursive Model (arXiv:2510.04871,
SamsungSAILMontreal/TinyRecursiveModels ``models/recursive_reasoning/trm.py``): one network
updates both states, and the whole last round of a segment carries the gradient.

Ordered bottom-up: config and presets, recurrent state and outputs, the transformer block,
the H/L reasoning modules, then the model whose ``forward`` runs one ACT segment.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hrm_arc.hrm_core.checkpoint import CheckpointError, load_model_state, strict_config
from hrm_arc.hrm_core.layers import (
    Attention,
    Embedding,
    Linear,
    RotaryEmbedding,
    SwiGLU,
    rms_norm,
    trunc_normal_,
)
from hrm_arc.hrm_core.puzzle_embedding import PuzzleEmbedding
from hrm_arc.hrm_core.tokens import IGNORE_LABEL, labels_from_tokens

CosSin = tuple[Tensor, Tensor]


# ----------------------------------------------------------------------------- config


@dataclass
class HRMConfig:
    """Architecture and ACT settings of an HRM. Defaults are the paper's ARC model."""

    arch: str = "hrm"
    """"hrm": separate H and L modules, one-step gradient (last L and last H update).
    "trm": one network, the `L_level` module, does both updates; the whole last of the H_cycles
    rounds carries the gradient. Needs H_layers=0 (no H module is built) and
    q_learning="halt_only" (the official TRM's continue-target branch crashes when reached)."""
    seq_len: int = 900
    """Grid tokens per example on the full canvas (canvas * canvas). A batch may run on a
    smaller square canvas cut from its top-left corner (see `HRM.forward`)."""
    vocab_size: int = 12
    """PAD=0, EOS=1, colours 2..11."""
    num_puzzle_ids: int = 1
    """Rows of the puzzle-embedding table; id 0 is the blank puzzle."""
    puzzle_emb_ndim: int = 512
    """Width of a puzzle embedding; 0 disables them. Zero-padded to `puzzle_len` tokens."""
    puzzle_emb_len: int = 0
    """Prefix tokens the puzzle embedding is padded to (TRM's ARC setting: 16); 0 uses
    ceil(puzzle_emb_ndim / hidden_size), as HRM does."""
    hidden_size: int = 512
    num_heads: int = 8
    H_layers: int = 4
    """Transformer blocks in the slow, high-level module (0 under arch="trm")."""
    L_layers: int = 4
    """Transformer blocks in the fast, low-level module."""
    H_cycles: int = 2
    """H updates per ACT segment."""
    L_cycles: int = 2
    """L updates per H update."""
    expansion: float = 4.0
    """SwiGLU width factor: inner = round_up(2/3 * expansion * hidden, 256)."""
    mlp_t: bool = False
    """TRM's token-mixing MLP: each block mixes positions with a SwiGLU across the sequence
    axis (width puzzle_len + seq_len, applied to the transposed activations) in place of
    self-attention."""
    pos_encodings: str = "rope"
    """"rope" or "learned"."""
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    halt_max_steps: int = 16
    """Maximum ACT segments per example (all of them are run at evaluation)."""
    halt_exploration_prob: float = 0.1
    """Training only: chance that a row draws a random minimum number of segments."""
    q_learning: str = "full"
    """"full": q_halt and q_continue, the continue target from an extra no-grad forward.
    "halt_only": TRM-style, halt when q_halt > 0; no continue target, no extra forward."""
    forward_dtype: str = "auto"
    """Compute dtype of the layers (master weights stay float32): "auto" is bf16 autocast on
    CUDA and float32 on CPU; "bfloat16" is bf16 autocast on any device (on CPUs with AVX512-BF16
    or AMX it speeds up the matrix products); "float32" everywhere."""

    def __post_init__(self) -> None:
        for name in _POSITIVE_INTS:
            _check_int(name, getattr(self, name), minimum=1)
        for name in ("puzzle_emb_ndim", "puzzle_emb_len", "H_layers"):
            _check_int(name, getattr(self, name), minimum=0)
        if not isinstance(self.mlp_t, bool):
            raise ValueError(f"HRMConfig.mlp_t must be a bool, got {self.mlp_t!r}")
        for name in ("expansion", "rope_theta", "rms_norm_eps"):
            value = getattr(self, name)
            if not _is_number(value) or not 0 < value < math.inf:
                raise ValueError(f"HRMConfig.{name} must be a positive number, got {value!r}")
        prob = self.halt_exploration_prob
        if not _is_number(prob) or not 0.0 <= prob <= 1.0:
            raise ValueError(f"HRMConfig.halt_exploration_prob must be in [0, 1], got {prob!r}")
        for name, choices in _CHOICES.items():
            if getattr(self, name) not in choices:
                raise ValueError(
                    f"HRMConfig.{name} must be one of {choices}, got {getattr(self, name)!r}"
                )
        self._check_heads()
        self._check_arch()
        self._check_puzzle_tokens()

    def _check_arch(self) -> None:
        if self.arch == "hrm" and self.H_layers < 1:
            raise ValueError(f"HRMConfig.H_layers must be >= 1 for arch='hrm', got {self.H_layers}")
        if self.arch == "trm" and self.H_layers != 0:
            raise ValueError(
                f"HRMConfig.H_layers must be 0 for arch='trm' (one network, the L module, does "
                f"both updates), got {self.H_layers}"
            )
        if self.arch == "trm" and self.q_learning != "halt_only":
            raise ValueError(
                f"HRMConfig.q_learning must be 'halt_only' for arch='trm' (halt on q_halt > 0, "
                f"no continue target), got {self.q_learning!r}"
            )

    def _check_puzzle_tokens(self) -> None:
        if self.puzzle_emb_len and not self.puzzle_emb_ndim:
            raise ValueError(
                f"HRMConfig.puzzle_emb_len must be 0 without puzzle embeddings "
                f"(puzzle_emb_ndim=0), got {self.puzzle_emb_len}"
            )
        if self.puzzle_emb_len and self.puzzle_emb_len * self.hidden_size < self.puzzle_emb_ndim:
            raise ValueError(
                f"HRMConfig.puzzle_emb_len={self.puzzle_emb_len} tokens of hidden_size="
                f"{self.hidden_size} cannot hold puzzle_emb_ndim={self.puzzle_emb_ndim} values"
            )

    def _check_heads(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"HRMConfig.hidden_size={self.hidden_size} must be divisible by "
                f"num_heads={self.num_heads}"
            )
        if self.pos_encodings == "rope" and (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"HRMConfig: RoPE needs an even head dim, got hidden_size={self.hidden_size} / "
                f"num_heads={self.num_heads}"
            )

    @property
    def canvas(self) -> int | None:
        """The full canvas's side (None when seq_len is not a square: no smaller canvas runs)."""
        side = math.isqrt(self.seq_len)
        return side if side * side == self.seq_len else None

    @property
    def puzzle_len(self) -> int:
        """Number of puzzle-embedding tokens prepended to the grid tokens."""
        return self.puzzle_emb_len or -(self.puzzle_emb_ndim // -self.hidden_size)  # ceil div


_POSITIVE_INTS = (
    "seq_len", "vocab_size", "num_puzzle_ids", "hidden_size", "num_heads",
    "L_layers", "H_cycles", "L_cycles", "halt_max_steps",
)  # fmt: skip
_CHOICES = {
    "arch": ("hrm", "trm"),
    "pos_encodings": ("rope", "learned"),
    "q_learning": ("full", "halt_only"),
    "forward_dtype": ("auto", "bfloat16", "float32"),
}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_int(name: str, value: object, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"HRMConfig.{name} must be an int >= {minimum}, got {value!r}")


# ----------------------------------------------------------------------------- state


@dataclass
class Carry:
    """Recurrent state held between ACT segments (P = puzzle tokens, S = grid tokens)."""

    z_H: Tensor
    """(B, P+S, hidden) float32 high-level state."""
    z_L: Tensor
    """(B, P+S, hidden) float32 low-level state."""
    steps: Tensor
    """(B,) int32 segments run so far on each row's current example."""
    halted: Tensor
    """(B,) bool; a halted row takes a fresh example at the next call."""
    batch: dict[str, Tensor]
    """The examples each row is currently working on (same keys as the input batch)."""

    def rows(self, keep: Tensor) -> Carry:
        """The carry of the rows `keep` (a bool mask or indices) selects."""
        batch = {key: value[keep] for key, value in self.batch.items()}
        return Carry(self.z_H[keep], self.z_L[keep], self.steps[keep], self.halted[keep], batch)


def make_batch(
    inputs: np.ndarray,
    puzzle_ids: np.ndarray,
    device: torch.device,
    labels: np.ndarray | None = None,
) -> dict[str, Tensor]:
    """The batch a model call takes, from token arrays: `labels` (tokens; PAD unsupervised)
    default to none supervised, as at inference."""
    targets = (
        torch.full(inputs.shape, IGNORE_LABEL, dtype=torch.long)
        if labels is None
        else torch.from_numpy(labels_from_tokens(labels))
    )
    return {
        "inputs": torch.from_numpy(np.asarray(inputs)).long().to(device),  # (B, S)
        "labels": targets.to(device),  # (B, S)
        "puzzle_ids": torch.from_numpy(np.asarray(puzzle_ids)).long().to(device),  # (B,)
    }


@dataclass
class HRMOutput:
    """Outputs of one ACT segment."""

    logits: Tensor
    """(B, S, vocab) float32, grid positions only."""
    q_halt_logits: Tensor
    """(B,) float32."""
    q_continue_logits: Tensor
    """(B,) float32."""
    target_q_continue: Tensor | None = None
    """(B,) float32 target for q_continue; only in training with q_learning="full"."""
    halted: Tensor | None = None
    """(B,) bool, the new carry's halted flags (which rows finished this segment)."""
    steps: Tensor | None = None
    """(B,) int32, the new carry's step counts."""


# ----------------------------------------------------------------------------- modules


class HRMBlock(nn.Module):
    """Post-norm transformer block: x = norm(x + attn(x)); x = norm(x + mlp(x)).

    With ``mlp_t`` the token mixer is an MLP across positions, as TRM's block has it: it and
    its norm act on the transposed (B, hidden, T) activations, so that norm runs over T.
    """

    def __init__(self, config: HRMConfig) -> None:
        super().__init__()
        # One of the two token mixers exists, under the official TRM's name.
        self.self_attn = self.mlp_t = None
        if config.mlp_t:
            self.mlp_t = SwiGLU(config.puzzle_len + config.seq_len, config.expansion)
        else:
            self.self_attn = Attention(config.hidden_size, config.num_heads)
        self.mlp = SwiGLU(config.hidden_size, config.expansion)
        self.eps = config.rms_norm_eps

    def forward(self, x: Tensor, cos_sin: CosSin | None) -> Tensor:
        if self.mlp_t is not None:
            x = x.transpose(1, 2)  # (B, hidden, T)
            x = rms_norm(x + self.mlp_t(x), self.eps).transpose(1, 2)  # (B, T, hidden)
            # The official norm keeps the (B, T, hidden) memory layout; so must ours, or the
            # next matmul takes another kernel and rounds differently from TRM's.
            x = x.contiguous()
        else:
            x = rms_norm(x + self.self_attn(x, cos_sin), self.eps)
        return rms_norm(x + self.mlp(x), self.eps)


class ReasoningModule(nn.Module):
    """A stack of blocks applied to ``state + injection`` (the H or the L module)."""

    def __init__(self, config: HRMConfig, num_layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(HRMBlock(config) for _ in range(num_layers))

    def forward(self, state: Tensor, injection: Tensor, cos_sin: CosSin | None) -> Tensor:
        x = state + injection
        for layer in self.layers:
            x = layer(x, cos_sin)
        return x


# ----------------------------------------------------------------------------- model


class HRM(nn.Module):
    """HRM with ACT: each ``forward`` call runs one segment on a rolling batch.

    Args:
        config: the architecture.
        batch_size_hint: not needed by this implementation (the puzzle embedding sizes its
            local copy per batch); accepted so callers may pass the training batch size.
    """

    def __init__(self, config: HRMConfig, batch_size_hint: int | None = None) -> None:
        super().__init__()
        self.config = config
        self.puzzle_len = config.puzzle_len
        hidden = config.hidden_size
        self.embed_scale = math.sqrt(hidden)
        # Embeddings start at std 1/sqrt(hidden) and are scaled by sqrt(hidden): unit scale.
        self.embed_tokens = Embedding(config.vocab_size, hidden, init_std=1 / self.embed_scale)
        self.puzzle_emb = None
        if config.puzzle_emb_ndim > 0:
            self.puzzle_emb = PuzzleEmbedding(config.num_puzzle_ids, config.puzzle_emb_ndim)
        self._init_positions()
        # TRM's one network is its L module (the official name), so a TRM has no H_level.
        if config.arch == "hrm":
            self.H_level = ReasoningModule(config, config.H_layers)
        self.L_level = ReasoningModule(config, config.L_layers)
        self.lm_head = Linear(hidden, config.vocab_size)
        self.q_head = Linear(hidden, 2, bias=True)  # (q_halt, q_continue)
        # Fixed (never trained) initial states, saved so a checkpoint restores them.
        self.register_buffer("H_init", trunc_normal_(torch.empty(hidden), std=1.0))
        self.register_buffer("L_init", trunc_normal_(torch.empty(hidden), std=1.0))
        with torch.no_grad():
            # Q starts near "do not halt" (sigmoid(-5)) so early training runs many segments.
            self.q_head.weight.zero_()
            self.q_head.bias.fill_(-5.0)

    def _init_positions(self) -> None:
        cfg = self.config
        total = cfg.seq_len + self.puzzle_len
        self.rotary = None
        self.embed_pos = None
        if cfg.pos_encodings == "rope":
            head_dim = cfg.hidden_size // cfg.num_heads
            self.rotary = RotaryEmbedding(head_dim, total, cfg.rope_theta)
        else:
            self.embed_pos = Embedding(total, cfg.hidden_size, init_std=1 / self.embed_scale)

    def reset_puzzle_embeddings(self, num_ids: int, init: Tensor | None = None) -> None:
        """Give the model a fresh table of ``num_ids`` puzzle embeddings (test-time adaptation).

        Also updates ``config.num_puzzle_ids`` so a saved config matches the saved table.
        """
        if self.puzzle_emb is None:
            raise ValueError("this model has no puzzle embeddings (puzzle_emb_ndim=0)")
        self.puzzle_emb.reset(num_ids, init)
        self.config = dataclasses.replace(self.config, num_puzzle_ids=num_ids)

    # -- inner step ------------------------------------------------------------------

    def _position_tables(self, length: int, device: torch.device) -> tuple:
        """RoPE tables (or None) and learned position embeddings (or None) for `length` grid
        tokens: the full canvas, or a square canvas cut from its top-left corner, whose cells
        keep their full-canvas positions (row * side + column), so that a model trained on one
        canvas runs on any."""
        cfg = self.config
        cos_sin = self.rotary() if self.rotary is not None else None
        learned = None if self.embed_pos is None else self.embed_pos.weight
        if length == cfg.seq_len:
            return cos_sin, learned
        side, full = math.isqrt(length), cfg.canvas
        if side * side != length or full is None or side > full or cfg.mlp_t:
            why = (
                "mlp_t mixes a fixed number of positions"
                if cfg.mlp_t
                else f"a smaller canvas must be a square of at most {cfg.seq_len} tokens"
            )
            raise ValueError(
                f"inputs have {length} tokens, config.seq_len is {cfg.seq_len} ({why})"
            )
        cells = torch.arange(side, device=device)
        grid = (cells[:, None] * full + cells[None, :]).reshape(-1)
        index = torch.cat((torch.arange(self.puzzle_len, device=device), self.puzzle_len + grid))
        if cos_sin is not None:
            cos_sin = (cos_sin[0][index], cos_sin[1][index])
        return cos_sin, None if learned is None else learned[index]

    def _input_embeddings(
        self, inputs: Tensor, puzzle_ids: Tensor | None, learned: Tensor | None
    ) -> Tensor:
        """Scaled token embeddings with the puzzle tokens prepended: (B, P+S, hidden)."""
        cfg = self.config
        x = self.embed_tokens(inputs)  # (B, S, hidden)
        if self.puzzle_emb is not None:
            if puzzle_ids is None:
                raise KeyError("batch needs 'puzzle_ids' when puzzle_emb_ndim > 0")
            pe = self.puzzle_emb(puzzle_ids)  # (B, ndim)
            pe = F.pad(pe, (0, self.puzzle_len * cfg.hidden_size - pe.shape[-1]))  # (B, P*hidden)
            pe = pe.view(-1, self.puzzle_len, cfg.hidden_size)  # (B, P, hidden)
            x = torch.cat((pe, x), dim=1)  # (B, P+S, hidden)
        if learned is not None:
            # Summing two equal-variance embeddings doubles the variance; 1/sqrt(2) undoes it.
            x = (x + learned) * (0.5**0.5)
        return x * self.embed_scale

    def _segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None
    ) -> tuple[Tensor, Tensor]:
        """H_cycles x L_cycles updates; only the last L and the last H update keep a graph
        (under arch="trm": the whole last round, see ``_trm_segment``).

        This is the one-step gradient approximation: memory is O(1) in the number of cycles.
        """
        cfg = self.config
        if cfg.arch == "trm":
            return self._trm_segment(z_H, z_L, x, cos_sin)
        num_l_updates = cfg.H_cycles * cfg.L_cycles
        with torch.no_grad():
            for i in range(num_l_updates - 1):
                z_L = self.L_level(z_L, z_H + x, cos_sin)
                if (i + 1) % cfg.L_cycles == 0:  # H updates after every L_cycles L updates
                    z_H = self.H_level(z_H, z_L, cos_sin)
        z_L = self.L_level(z_L, z_H + x, cos_sin)
        z_H = self.H_level(z_H, z_L, cos_sin)
        return z_H, z_L

    def _trm_segment(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None
    ) -> tuple[Tensor, Tensor]:
        """H_cycles rounds of L_cycles ``z_L`` updates then one ``z_H`` update, all by the one
        network; the first H_cycles-1 rounds run without a graph, the last with one, so memory
        grows with L_cycles but not H_cycles."""
        with torch.no_grad():
            for _ in range(self.config.H_cycles - 1):
                z_H, z_L = self._trm_round(z_H, z_L, x, cos_sin)
        return self._trm_round(z_H, z_L, x, cos_sin)

    def _trm_round(
        self, z_H: Tensor, z_L: Tensor, x: Tensor, cos_sin: CosSin | None
    ) -> tuple[Tensor, Tensor]:
        for _ in range(self.config.L_cycles):
            z_L = self.L_level(z_L, z_H + x, cos_sin)
        return self.L_level(z_H, z_L, cos_sin), z_L

    def _heads(self, z_H: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Grid logits (B, S, vocab) and Q logits (B,), (B,) from the first position."""
        logits = self.lm_head(z_H[:, self.puzzle_len :]).float()  # (B, S, vocab)
        q = self.q_head(z_H[:, 0]).float()  # (B, 2)
        return logits, q[:, 0], q[:, 1]

    # -- ACT -------------------------------------------------------------------------

    def initial_carry(self, batch: dict[str, Tensor]) -> Carry:
        """A carry whose rows are all halted, so the first ``forward`` takes ``batch``."""
        inputs = batch["inputs"]
        size, device = inputs.shape[0], inputs.device
        shape = (size, self.puzzle_len + inputs.shape[1], self.config.hidden_size)
        return Carry(
            z_H=torch.zeros(shape, device=device),
            z_L=torch.zeros(shape, device=device),
            steps=torch.zeros(size, dtype=torch.int32, device=device),
            halted=torch.ones(size, dtype=torch.bool, device=device),
            batch={k: torch.zeros_like(v) for k, v in batch.items()},
        )

    def _take_new_rows(
        self, carry: Carry, batch: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Reset halted rows to the initial states and give them the new batch's examples."""
        reset = carry.halted.view(-1, 1, 1)  # (B, 1, 1) broadcasts over (B, T, hidden)
        z_H = torch.where(reset, self.H_init, carry.z_H)
        z_L = torch.where(reset, self.L_init, carry.z_L)
        steps = torch.where(carry.halted, 0, carry.steps)
        data = {}
        for key, old in carry.batch.items():
            row_mask = carry.halted.view((-1,) + (1,) * (old.ndim - 1))  # (B, 1, ...)
            data[key] = torch.where(row_mask, batch[key], old)
        return z_H, z_L, steps, data

    def _autocast(self, device: torch.device) -> torch.autocast:
        """bf16 matrix products over float32 master weights. The residual stream and the carry
        stay float32, where the official casts them to bf16 as well: cast so, the tiny preset
        learned shortest paths slower per step (benchmarks/README.md)."""
        enabled = self.compute_dtype(device) == "bfloat16"
        device_type = "cuda" if device.type == "cuda" else "cpu"
        return torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=enabled)

    def compute_dtype(self, device: torch.device) -> str:
        """The matrix products' dtype on `device`: forward_dtype, "auto" being bf16 on CUDA."""
        dtype = self.config.forward_dtype
        bf16 = dtype == "bfloat16" or (dtype, device.type) == ("auto", "cuda")
        return "bfloat16" if bf16 else "float32"

    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write `config.json` and `model.safetensors` into `directory`: what prediction needs,
        in the layout model hubs ship (no optimiser state)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / PRETRAINED_CONFIG).write_bytes(pretrained_config(self.config))
        (directory / PRETRAINED_WEIGHTS).write_bytes(pretrained_weights(self.state_dict()))

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> HRM:
        """The model `save_pretrained` wrote into `directory`.

        Raises:
            CheckpointError: the folder lacks either file, or they are damaged or do not fit.
        """
        directory = Path(directory)
        config_path, weights_path = directory / PRETRAINED_CONFIG, directory / PRETRAINED_WEIGHTS
        for path in (config_path, weights_path):
            if not path.is_file():
                raise CheckpointError(f"{directory}: no {path.name} (not a saved model)")
        try:
            fields = json.loads(config_path.read_bytes())
            weights = safetensors.torch.load_file(weights_path)
        except (ValueError, UnicodeDecodeError) as e:  # JSON's errors and safetensors'
            raise CheckpointError(f"{directory}: a damaged model file ({e})") from None
        except Exception as e:  # safetensors' own error type for a truncated or foreign file
            raise CheckpointError(f"{weights_path}: cannot read the weights ({e})") from None
        model = cls(strict_config(HRMConfig, fields, config_path))
        load_model_state(model, weights, weights_path)
        return model.to(device)

    def forward(self, carry: Carry, batch: dict[str, Tensor]) -> tuple[Carry, HRMOutput]:
        """Run one ACT segment. Returns the new (detached) carry and this segment's outputs.

        The batch's inputs hold `seq_len` tokens, or the s*s tokens of a smaller square canvas
        (the full canvas's top-left s x s cells, row-major), each cell at its full-canvas
        position; the carry must have been made for the same canvas.
        """
        z_H, z_L, steps, data = self._take_new_rows(carry, batch)
        with self._autocast(z_H.device):
            cos_sin, learned = self._position_tables(data["inputs"].shape[1], z_H.device)
            x = self._input_embeddings(data["inputs"], data.get("puzzle_ids"), learned)
            z_H, z_L = self._segment(z_H, z_L, x, cos_sin)
            logits, q_halt, q_continue = self._heads(z_H)
            z_H, z_L, steps = z_H.detach(), z_L.detach(), steps + 1
            halted, target = self._halt(steps, q_halt, q_continue, z_H, z_L, x, cos_sin)
        new_carry = Carry(z_H=z_H, z_L=z_L, steps=steps, halted=halted, batch=data)
        output = HRMOutput(logits, q_halt, q_continue, target, halted=halted, steps=steps)
        return new_carry, output

    @torch.no_grad()
    def _halt(
        self,
        steps: Tensor,
        q_halt: Tensor,
        q_continue: Tensor,
        z_H: Tensor,
        z_L: Tensor,
        x: Tensor,
        cos_sin: CosSin | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Which rows halt after this segment, and the q_continue target (or None)."""
        cfg = self.config
        is_last = steps >= cfg.halt_max_steps
        # Evaluation always runs every segment so all rows of a batch finish together.
        if not self.training or cfg.halt_max_steps == 1:
            return is_last, None
        if cfg.q_learning == "full":
            wants_halt = q_halt > q_continue
        else:
            wants_halt = q_halt > 0
        # Exploration: some rows must first run a random number of segments in 2..max.
        explore = torch.rand_like(q_halt) < cfg.halt_exploration_prob
        min_steps = explore * torch.randint_like(steps, low=2, high=cfg.halt_max_steps + 1)
        halted = is_last | (wants_halt & (steps >= min_steps))
        if cfg.q_learning != "full":
            return halted, None
        # Bootstrapped target: the Q value of the next segment from the new state (no
        # replay buffer or target network; the many parallel rows play that role, as in PQN).
        _, next_halt, next_continue = self._heads(self._segment(z_H, z_L, x, cos_sin)[0])
        next_value = torch.where(is_last, next_halt, torch.maximum(next_halt, next_continue))
        return halted, torch.sigmoid(next_value)


PRETRAINED_CONFIG, PRETRAINED_WEIGHTS = "config.json", "model.safetensors"


def pretrained_config(config: HRMConfig) -> bytes:
    """`config.json` as `HRM.save_pretrained` writes it."""
    return json.dumps(dataclasses.asdict(config), indent=1).encode()


def pretrained_weights(weights: dict[str, Tensor]) -> bytes:
    """`model.safetensors` as `HRM.save_pretrained` writes it: weights and buffers by name (a
    memory-mapped table is read into these bytes, the one copy held in memory)."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in weights.items()}
    return safetensors.torch.save(tensors)


__all__ = [
    "HRM",
    "Carry",
    "HRMBlock",
    "HRMConfig",
    "HRMOutput",
    "ReasoningModule",
]
