"""Transformer building blocks for HRM: init, linear, embeddings, RoPE, attention, SwiGLU, norm.

Weights are kept in float32 (the master copy); on CUDA the model runs these layers under bf16
autocast, which casts the weights per op, so no layer casts explicitly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def trunc_normal_(
    tensor: Tensor, std: float = 1.0, lower: float = -2.0, upper: float = 2.0
) -> Tensor:
    """Fill ``tensor`` in place from a normal truncated at [lower, upper] standard deviations.

    Unlike ``nn.init.trunc_normal_``, ``std`` is the standard deviation of the *truncated*
    distribution (the JAX/Flax convention the official HRM uses), so the scale is widened
    to make up for the mass cut off at the tails.
    """
    with torch.no_grad():
        if std == 0:
            return tensor.zero_()
        sqrt2 = math.sqrt(2.0)
        cdf_lo, cdf_hi = math.erf(lower / sqrt2), math.erf(upper / sqrt2)
        mass = (cdf_hi - cdf_lo) / 2
        pdf_lo = math.exp(-0.5 * lower**2) / math.sqrt(2 * math.pi)
        pdf_hi = math.exp(-0.5 * upper**2) / math.sqrt(2 * math.pi)
        # Variance of a standard normal truncated to [lower, upper].
        trunc_var = 1 - (upper * pdf_hi - lower * pdf_lo) / mass - ((pdf_hi - pdf_lo) / mass) ** 2
        scale = std / math.sqrt(trunc_var)
        # Inverse-CDF sampling: uniform in erf space, then erfinv maps back to a normal.
        tensor.uniform_(cdf_lo, cdf_hi).erfinv_().mul_(sqrt2 * scale)
        return tensor.clamp_(lower * scale, upper * scale)


def round_up(value: float, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= round(value)."""
    return -(round(value) // -multiple) * multiple


class Linear(nn.Module):
    """Bias-free (by default) linear layer with truncated LeCun-normal init."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__()
        weight = torch.empty(out_features, in_features)
        self.weight = nn.Parameter(trunc_normal_(weight, std=in_features**-0.5))
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)


class Embedding(nn.Module):
    """Token (or position) embedding table with truncated-normal init of a given std."""

    def __init__(self, num_embeddings: int, dim: int, init_std: float) -> None:
        super().__init__()
        weight = torch.empty(num_embeddings, dim)
        self.weight = nn.Parameter(trunc_normal_(weight, std=init_std))

    def forward(self, ids: Tensor) -> Tensor:
        return F.embedding(ids, self.weight)


class RotaryEmbedding(nn.Module):
    """Precomputed RoPE cos/sin tables for ``max_positions`` positions."""

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)  # (T, head_dim/2)
        # Half-split layout (pairs are (i, i + head_dim/2)), matching rotate_half below.
        angles = torch.cat((freqs, freqs), dim=-1)  # (T, head_dim)
        # Derived from the config, so not saved in checkpoints.
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.cos, self.sin


def _rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(q: Tensor, k: Tensor, cos: Tensor, sin: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate queries and keys of shape (B, T, heads, head_dim) by position.

    The rotation is done in the tables' dtype (float32) and cast back, so bf16 inputs
    do not lose the position signal.
    """
    dtype = q.dtype
    cos, sin = cos.unsqueeze(-2), sin.unsqueeze(-2)  # (T, 1, head_dim): broadcast over heads
    q, k = q.to(cos.dtype), k.to(cos.dtype)
    q_rot = q * cos + _rotate_half(q) * sin
    k_rot = k * cos + _rotate_half(k) * sin
    return q_rot.to(dtype), k_rot.to(dtype)


class Attention(nn.Module):
    """Non-causal multi-head self-attention with fused QKV projection and optional RoPE."""

    def __init__(self, hidden_size: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.qkv_proj = Linear(hidden_size, 3 * hidden_size)
        self.o_proj = Linear(hidden_size, hidden_size)

    def forward(self, x: Tensor, cos_sin: tuple[Tensor, Tensor] | None) -> Tensor:
        batch, length, hidden = x.shape
        qkv = self.qkv_proj(x).view(batch, length, 3, self.num_heads, self.head_dim)  # (B,T,3,h,d)
        q, k, v = qkv.unbind(dim=2)  # each (B, T, h, d)
        if cos_sin is not None:
            q, k = apply_rope(q, k, *cos_sin)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, h, T, d) as SDPA expects
        out = F.scaled_dot_product_attention(q, k, v, is_causal=False)  # (B, h, T, d)
        out = out.transpose(1, 2).reshape(batch, length, hidden)  # (B, T, h*d)
        return self.o_proj(out)


class SwiGLU(nn.Module):
    """Gated MLP: down(silu(gate(x)) * up(x)), inner width rounded up to a multiple of 256."""

    def __init__(self, hidden_size: int, expansion: float) -> None:
        super().__init__()
        # 2/3 keeps the parameter count of a plain 4x MLP; 256 keeps matmuls well aligned.
        inner = round_up(expansion * hidden_size * 2 / 3, 256)
        self.gate_up_proj = Linear(hidden_size, 2 * inner)
        self.down_proj = Linear(inner, hidden_size)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


def rms_norm(x: Tensor, eps: float) -> Tensor:
    """RMS normalisation over the last dim with no learned scale, computed in float32."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + eps)
    return x.to(dtype)


__all__ = [
    "Attention",
    "Embedding",
    "Linear",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rope",
    "rms_norm",
    "round_up",
    "trunc_normal_",
]
