"""Layer-level facts: RMS norm, RoPE, and attention against explicit formulas."""

from __future__ import annotations

import math

import pytest
import torch

from hrm_arc.hrm_core.layers import Attention, RotaryEmbedding, apply_rope, rms_norm


def test_rms_norm_matches_formula_and_keeps_dtype() -> None:
    x = torch.randn(3, 5, 16, dtype=torch.float64).float()
    expected = x / torch.sqrt(x.square().mean(dim=-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(rms_norm(x, 1e-5), expected)

    half = x.bfloat16()
    out = rms_norm(half, 1e-5)
    assert out.dtype == torch.bfloat16
    # Computed in float32, rounded once at the end.
    wide = half.float()
    reference = wide / torch.sqrt(wide.square().mean(dim=-1, keepdim=True) + 1e-5)
    torch.testing.assert_close(out, reference.bfloat16(), atol=0, rtol=0)


def test_rope_rotates_each_pair_by_position_times_frequency() -> None:
    head_dim, positions, theta = 8, 6, 10000.0
    rotary = RotaryEmbedding(head_dim, positions, theta)
    x = torch.randn(2, positions, 3, head_dim)  # (B, T, heads, head_dim)
    out = apply_rope(x, *rotary())
    half = head_dim // 2
    for pos in range(positions):
        for i in range(half):
            angle = pos * theta ** (-2 * i / head_dim)
            # Pair (i, i + half) as a complex number, turned by the angle.
            pair = torch.complex(x[:, pos, :, i], x[:, pos, :, i + half]) * complex(
                math.cos(angle), math.sin(angle)
            )
            torch.testing.assert_close(out[:, pos, :, i], pair.real)
            torch.testing.assert_close(out[:, pos, :, i + half], pair.imag)


def test_rope_scores_depend_only_on_relative_position() -> None:
    rotary = RotaryEmbedding(16, 12, 10000.0)
    q, k = torch.randn(16), torch.randn(16)

    def score(q_pos: int, k_pos: int) -> torch.Tensor:
        qs = torch.zeros(1, 12, 16).index_copy(1, torch.tensor([q_pos]), q.view(1, 1, 16))
        ks = torch.zeros(1, 12, 16).index_copy(1, torch.tensor([k_pos]), k.view(1, 1, 16))
        q_rot = apply_rope(qs.unsqueeze(2), *rotary())[0, q_pos, 0]
        k_rot = apply_rope(ks.unsqueeze(2), *rotary())[0, k_pos, 0]
        return q_rot @ k_rot

    torch.testing.assert_close(score(2, 5), score(6, 9))
    torch.testing.assert_close(score(7, 1), score(10, 4))


def _reference_attention(attn: Attention, x: torch.Tensor, rotary: RotaryEmbedding) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v in float64, written out."""
    batch, length, hidden = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    x = x.double()
    qkv = (x @ attn.qkv_proj.weight.double().T).view(batch, length, 3, heads, head_dim)
    cos, sin = (t.double() for t in rotary())
    qk = apply_rope(qkv[:, :, :2], cos, sin)
    q, k, v = (t.transpose(1, 2) for t in (qk[:, :, 0], qk[:, :, 1], qkv[:, :, 2]))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(batch, length, hidden)
    return out @ attn.o_proj.weight.double().T


def _kernels_run(fn) -> set[str]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return {event.key for event in prof.key_averages() if "scaled_dot_product" in event.key}


@pytest.mark.parametrize("length", [20, 300])  # either side of the CPU math-kernel cut-off
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_matches_formula_with_gradients(length: int, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    attn = Attention(hidden_size=32, num_heads=2)
    rotary = RotaryEmbedding(16, length, 10000.0)
    x = torch.randn(2, length, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        out = attn(x, rotary())
    (out.float() * torch.linspace(-1, 1, 32)).sum().backward()
    grad = x.grad
    x_ref = x.detach().clone().requires_grad_()
    expected = _reference_attention(attn, x_ref, rotary)
    (expected * torch.linspace(-1, 1, 32).double()).sum().backward()

    tol = {"atol": 2e-5, "rtol": 1e-4} if dtype == torch.float32 else {"atol": 5e-2, "rtol": 5e-2}
    torch.testing.assert_close(out.double(), expected, **tol)
    torch.testing.assert_close(grad.double(), x_ref.grad.double(), **tol)


def test_short_bf16_training_attention_on_cpu_takes_the_math_kernel() -> None:
    attn = Attention(hidden_size=32, num_heads=2)
    rotary = RotaryEmbedding(16, 300, 10000.0)

    def run(length: int, grad: bool) -> set[str]:
        x = torch.randn(2, length, 32)
        cos_sin = tuple(t[:length] for t in rotary())
        with torch.autocast("cpu", dtype=torch.bfloat16), torch.set_grad_enabled(grad):
            return _kernels_run(lambda: attn(x, cos_sin))

    math_kernel = "aten::_scaled_dot_product_attention_math"
    assert math_kernel in run(40, grad=True)
    # Inference and long sequences keep SDPA's own (flash) choice, faster there.
    assert math_kernel not in run(40, grad=False)
    assert math_kernel not in run(300, grad=True)
