"""The fused Triton kernel with multi-axis positions (M-RoPE, axial): each pair reads its own row.

Without CUDA the kernel runs through Triton's interpreter (``TRITON_INTERPRET=1``, set before the
kernel module is first imported), as in ``test_kernels.py``; shapes are tiny. The reference is the
float64 rotation by ``positions[pair_axes[i]] * inv_freq[i]``.
"""

from __future__ import annotations

import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel is decorated (first import)

from ropelab import RopeConfig, rope_frequencies  # noqa: E402
from ropelab.kernels import rope_qk  # noqa: E402
from ropelab.reference import apply_rotary_reference  # noqa: E402
from ropelab.rotary import cos_sin_cache, rotate_qk_fused  # noqa: E402
from ropelab.rotary_tables import pair_axes_index  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Without triton, or with neither CUDA nor the interpreter, every test here is skipped naming why;
# under CI=true each one fails instead (the conftest fixture).
pytestmark = pytest.mark.usefixtures("kernel_runs_here")

B, HQ, HK, S = 2, 3, 2, 5
CONFIGS = {
    "mrope-contiguous-partial": RopeConfig(head_dim=20, rotary_dim=16, mrope_section=(2, 3, 3)),
    "mrope-interleaved": RopeConfig(head_dim=16, mrope_section=(4, 2, 2), mrope_composition="interleaved"),
    "mrope-spatial-interleaved-layout": RopeConfig(
        head_dim=16, mrope_section=(3, 3, 2), mrope_composition="spatial_interleaved", layout="interleaved"
    ),
    "axial-alternating": RopeConfig(head_dim=16, rope_type="axial", axial_frequencies="alternating"),
    # Kimi-K2.5's vision tower: column and row alternate pair by pair, column first
    "axial-interleaved-column-first": RopeConfig(
        head_dim=16, rope_type="axial", axial_order=(1, 0), axial_composition="interleaved"
    ),
    # MiniMax-M3's vision tower: three axes over 18 of 20 channels
    "axial-three-axes-partial": RopeConfig(head_dim=20, rotary_dim=18, rope_type="axial", axial_order=(0, 1, 2)),
}


def _positions(cfg: RopeConfig, offset: int = 0) -> torch.Tensor:
    """``[A, B, S]`` with different values on every row and batch row."""
    steps = torch.arange(S)
    rows = [
        (steps * (2 * a + 1) + 3 * a + 11 * b + offset) % 23 + offset for a in range(cfg.num_axes) for b in range(B)
    ]
    return torch.stack(rows).view(cfg.num_axes, B, S).to(DEVICE)


def _reference(x: torch.Tensor, positions: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    inv_freq, _ = rope_frequencies(cfg)
    angles = torch.stack([positions[a].double().cpu() * inv_freq[i] for i, a in enumerate(cfg.pair_axes)], dim=-1)
    out = apply_rotary_reference(x.double().cpu(), torch.cos(angles)[:, None], torch.sin(angles)[:, None], cfg.layout)
    return out.float()


def _qk(head_dim: int):
    gen = torch.Generator().manual_seed(0)
    return (
        torch.randn(B, HQ, S, head_dim, generator=gen).to(DEVICE),
        torch.randn(B, HK, S, head_dim, generator=gen).to(DEVICE),
    )


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_angles_mode_reads_each_pairs_row(name):
    cfg = CONFIGS[name]
    q, k = _qk(cfg.head_dim)
    positions = _positions(cfg, offset=10**6)  # far out: the exact fixed-point reduction matters
    q_out, k_out = rotate_qk_fused(q, k, positions, cfg)
    torch.testing.assert_close(q_out.cpu(), _reference(q, positions, cfg), rtol=0, atol=2e-6)
    torch.testing.assert_close(k_out.cpu(), _reference(k, positions, cfg), rtol=0, atol=2e-6)
    rows_equal = positions[:1].expand_as(positions)
    assert (rotate_qk_fused(q, k, rows_equal, cfg)[0] - q_out).abs().max() > 1e-2  # the rows matter


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fused_cache_mode_reads_each_pairs_row(name):
    cfg = CONFIGS[name]
    q, k = _qk(cfg.head_dim)
    positions = _positions(cfg)
    cos, sin = cos_sin_cache(cfg, 32, device=DEVICE)
    q_out, k_out = rope_qk(q, k, positions, cos=cos, sin=sin, layout=cfg.layout, pair_axes=pair_axes_index(cfg))
    torch.testing.assert_close(q_out.cpu(), _reference(q, positions, cfg), rtol=0, atol=2e-6)
    torch.testing.assert_close(k_out.cpu(), _reference(k, positions, cfg), rtol=0, atol=2e-6)


def test_fused_multi_axis_takes_shared_and_per_token_positions_and_has_a_backward():
    cfg = CONFIGS["mrope-interleaved"]
    q, k = _qk(cfg.head_dim)
    per_axis = _positions(cfg)[:, :1]  # [A, 1, S]
    want = rotate_qk_fused(q, k, per_axis.expand(3, B, S).contiguous(), cfg)
    got = rotate_qk_fused(q, k, per_axis[:, 0], cfg)  # [A, S]
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    q.requires_grad_(True)
    q_out, _ = rotate_qk_fused(q, k, per_axis[:, 0], cfg)
    upstream = torch.randn_like(q_out)
    (grad,) = torch.autograd.grad(q_out, q, upstream)
    # the backward is the inverse rotation (angle -theta) of the upstream gradient, pair by pair
    torch.testing.assert_close(
        grad.cpu(), _inverse_reference(upstream, per_axis.expand(3, B, S), cfg), rtol=0, atol=2e-6
    )


def _inverse_reference(x: torch.Tensor, positions: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    inv_freq, _ = rope_frequencies(cfg)
    angles = torch.stack([positions[a].double().cpu() * inv_freq[i] for i, a in enumerate(cfg.pair_axes)], dim=-1)
    out = apply_rotary_reference(x.double().cpu(), torch.cos(angles)[:, None], -torch.sin(angles)[:, None], cfg.layout)
    return out.float()


def test_bad_multi_axis_kernel_arguments_are_named():
    cfg = CONFIGS["mrope-interleaved"]
    q, k = _qk(cfg.head_dim)
    inv_freq, _ = rope_frequencies(cfg)
    with pytest.raises(ValueError, match=r"positions\.shape"):
        rope_qk(
            q,
            k,
            torch.zeros(3, B, S + 1, dtype=torch.long, device=DEVICE),
            inv_freq=inv_freq,
            pair_axes=pair_axes_index(cfg),
        )
    with pytest.raises(ValueError, match="pair_axes"):
        rope_qk(q, k, _positions(cfg)[:2], inv_freq=inv_freq, pair_axes=pair_axes_index(cfg))  # rows 0-1, axes up to 2
    with pytest.raises(ValueError, match="pair_axes"):
        rope_qk(q, k, _positions(cfg), inv_freq=inv_freq, pair_axes=pair_axes_index(cfg)[:3])
