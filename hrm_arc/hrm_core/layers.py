"""Transformer building blocks for HRM: init, linear, embeddings, RoPE, attention, SwiGLU, norm.

Weights are kept in float32 (the master copy); in bf16 (forward_dtype="bfloat16", or "auto" on
CUDA) the model runs these layers under autocast, which casts the weights per op, so no layer
casts explicitly.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel


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
    """Precomputed RoPE cos/sin tables for ``max_positions`` positions.

    Pairs are (i, i + head_dim/2). The sign of the rotation is folded into ``sin`` (negative in
    the first half), so rotating is ``x * cos + x.roll(head_dim/2) * sin``: one shuffle, no
    negation.
    """

    def __init__(self, head_dim: int, max_positions: int, theta: float) -> None:
        super().__init__()
        inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
        positions = torch.arange(max_positions, dtype=torch.float32)
        freqs = torch.outer(positions, inv_freq)  # (T, head_dim/2)
        # Derived from the config, so not saved in checkpoints.
        cos, sin = freqs.cos(), freqs.sin()
        self.register_buffer("cos", torch.cat((cos, cos), dim=-1), persistent=False)
        self.register_buffer("sin", torch.cat((-sin, sin), dim=-1), persistent=False)

    def forward(self) -> tuple[Tensor, Tensor]:
        return self.cos, self.sin


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate ``x`` of shape (B, T, ..., head_dim) by position T (tables from RotaryEmbedding).

    Done in the tables' dtype (float32) and cast back, so bf16 inputs keep the position signal.
    Queries and keys go through together, as one (B, T, 2, heads, head_dim) view.
    """
    dtype = x.dtype
    table_shape = (cos.shape[0],) + (1,) * (x.ndim - 3) + (cos.shape[1],)  # (T, 1, ..., head_dim)
    cos, sin = cos.view(table_shape), sin.view(table_shape)
    x = x.to(cos.dtype)
    return (x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin).to(dtype)


# Up to about this length, SDPA's CPU flash kernel has a slow bf16 backward, so the math kernel
# trains faster (benchmarks/README.md).
_CPU_BF16_MATH_MAX_LEN = 256


def sdpa_kernel_for(q: Tensor) -> contextlib.AbstractContextManager:
    """The SDPA kernel for ``q`` (B, h, T, d): the math one for short bf16 sequences on CPU that
    need a backward pass, otherwise SDPA's own choice."""
    short_bf16_grad_on_cpu = (
        q.device.type == "cpu"
        and q.dtype == torch.bfloat16
        and q.requires_grad
        and q.shape[-2] <= _CPU_BF16_MATH_MAX_LEN
    )
    return sdpa_kernel(SDPBackend.MATH) if short_bf16_grad_on_cpu else contextlib.nullcontext()


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
        qk, v = qkv[:, :, :2], qkv[:, :, 2]  # (B, T, 2, h, d), (B, T, h, d)
        if cos_sin is not None:
            qk = apply_rope(qk, *cos_sin)
        q, k = qk.unbind(dim=2)  # each (B, T, h, d)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (B, h, T, d) as SDPA expects
        with sdpa_kernel_for(q):
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
    return F.rms_norm(x.float(), x.shape[-1:], eps=eps).to(x.dtype)


__all__ = [
    "Attention",
    "Embedding",
    "Linear",
    "RotaryEmbedding",
    "SwiGLU",
    "apply_rope",
    "rms_norm",
    "round_up",
    "sdpa_kernel_for",
    "trunc_normal_",
]
