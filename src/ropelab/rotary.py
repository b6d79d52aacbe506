"""The functional core of RoPE: exact angles, cos/sin, and the rotation with its autograd.

RoFormer (Su et al. 2021, eq. 34) rotates pair ``i`` of a query or key at position ``m`` by the
angle ``m * theta_i``::

    out_a = x_a * cos(m theta_i) - x_b * sin(m theta_i)
    out_b = x_b * cos(m theta_i) + x_a * sin(m theta_i)

where ``(a, b) = (i, i + R/2)`` in the half-split layout and ``(2i, 2i + 1)`` in the interleaved
one. Angles are formed in float64 (``position * inv_freq`` is exact to ~1e-16 relative, so ~1e-9
rad at position 10**7) and only then rounded; the rotation runs in float32 at least and returns
the input dtype. The backward pass is the inverse rotation (the same formula with ``-sin``), so
autograd saves only cos and sin, never the activations.

The angles, frequencies and cos/sin tables (exact, and cached for the per-call decode path) come
from :mod:`ropelab.rotary_tables`; this module rotates with them. Inference calls (no grad needed)
skip the autograd Function.

Multi-axis variants (M-RoPE, axial; ``cfg.num_axes > 1``) take positions with one row per axis
(``[A, B, S]``, ``[A, S]``) or one per token for every axis (``[B, S]``, ``[S]``); pair ``i`` turns
by ``positions[cfg.pair_axes[i]] * inv_freq[i]`` (see :func:`ropelab.rotary_tables.axis_positions`).

Layering: this module computes the frequencies once (:mod:`ropelab.frequencies`) and hands plain
tensors down, to the eager paths (:mod:`ropelab.rotary_eager`) or to the fused kernel
(:mod:`ropelab.kernels`, which imports nothing above it). :mod:`ropelab.reference` holds the plain
torch rotation that both are tested against.
"""

from __future__ import annotations

import torch

from ropelab.cache import cache_info, clear_cache, set_cache_limit
from ropelab.config import LAYOUTS, RopeConfig
from ropelab.kernels import rope_qk, rotate_with_tables, triton_available
from ropelab.rotary_eager import CHUNK_ELEMENTS, rotate_eager, rotate_functional, rotate_small_full, rotate_small_half
from ropelab.rotary_tables import (
    _frequencies,
    _tables_for,
    axis_positions,
    cos_sin_cache,
    pair_axes_index,
    resolve_seq_len,
    rope_angles,
    rope_cos_sin,
)

__all__ = [
    "rope_angles",
    "rope_cos_sin",
    "resolve_seq_len",
    "apply_rotary",
    "rotate",
    "rotate_qk",
    "rotate_qk_fused",
    "cos_sin_cache",
    "axis_positions",
    "cache_info",
    "clear_cache",
    "set_cache_limit",
]


def _rotate_any(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Dispatch: the functional form under torch.compile, the fused Triton kernel for CUDA tensors
    (when triton is importable), the chunked eager path otherwise. Shapes as in :func:`apply_rotary`."""
    if torch.compiler.is_compiling():
        return rotate_functional(x, cos, sin, layout)
    if x.is_cuda and triton_available("cuda"):
        out = rotate_with_tables(x, cos, sin, layout)
        if out is not None:
            return out
    if layout == "half" and x.is_cpu and x.numel() <= CHUNK_ELEMENTS:
        return rotate_small_half(x, cos, sin)
    return rotate_eager(x, cos, sin, layout)


def _needs_autograd(x: torch.Tensor) -> bool:
    """True when the rotation must record a backward: grad mode on and ``x`` requires grad (or
    tracing, where the graph decides)."""
    return torch.compiler.is_compiling() or (x.requires_grad and torch.is_grad_enabled())


def _apply(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """:class:`_Rotate` when a backward is needed, else the rotation itself (no Function set-up)."""
    if _needs_autograd(x):
        return _Rotate.apply(x, cos, sin, layout)
    return _rotate_any(x, cos, sin, layout)


class _Rotate(torch.autograd.Function):
    """Rotation whose backward is the inverse rotation ``R(-theta) = R(theta)^T``: autograd keeps
    cos and sin (``[..., S, R/2]``), not the ``[..., S, D]`` activations."""

    @staticmethod
    def forward(ctx, x, cos, sin, layout):  # noqa: D401 (autograd signature)
        ctx.save_for_backward(cos, sin)
        ctx.layout = layout
        return _rotate_any(x, cos, sin, layout)

    @staticmethod
    def backward(ctx, grad_out):
        cos, sin = ctx.saved_tensors
        return _rotate_any(grad_out, cos, -sin, ctx.layout), None, None, None


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, layout: str = "half") -> torch.Tensor:
    """Rotate the leading ``2 * cos.shape[-1]`` channels of ``x`` (RoFormer eq. 34).

    Args:
        x: ``[..., S, D]`` (typically ``[B, H, S, D]``), float16/bfloat16/float32/float64.
        cos, sin: ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]`` (e.g. ``[B, 1, S, R/2]``),
            as from :func:`rope_cos_sin`; ``R <= D``.
        layout: ``"half"`` or ``"interleaved"``.

    Returns:
        A new tensor shaped and typed like ``x``; channels ``R:`` are copied bit for bit. The math
        runs in ``promote(x.dtype, float32)``. Differentiable in ``x`` (not in cos/sin).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    if 2 * cos.shape[-1] > x.shape[-1]:
        raise ValueError(f"rotary_dim={2 * cos.shape[-1]} is invalid: expected at most head_dim={x.shape[-1]}")
    if cos.shape != sin.shape:
        raise ValueError(f"cos.shape={tuple(cos.shape)} and sin.shape={tuple(sin.shape)} must match")
    return _apply(x, cos, sin, layout)


def _rotate_tables(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, form: str, layout: str) -> torch.Tensor:
    """Rotate ``x`` with tables from :func:`_tables_for`: the three-op path for small CPU
    inference calls in the half layout, else the plain tables through :func:`_apply`."""
    if form == "plain":
        return _apply(x, cos, sin, layout)
    if layout == "half" and x.is_cpu and x.numel() <= CHUNK_ELEMENTS and not _needs_autograd(x):
        return rotate_small_full(x, cos, sin)
    half = cos.shape[-1] // 2
    return _apply(x, cos.narrow(-1, 0, half), sin.narrow(-1, half, half), layout)


def _check_layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    return layout


def _check_head_dim(x: torch.Tensor, cfg: RopeConfig, name: str) -> None:
    if x.shape[-1] != cfg.head_dim:
        raise ValueError(f"{name}.shape[-1]={x.shape[-1]} is invalid: expected head_dim={cfg.head_dim}")


def rotate(
    x: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
) -> torch.Tensor:
    """Apply RoPE to queries or keys.

    Args:
        x: ``[B, H, S, D]`` with ``D == cfg.head_dim``; fp16, bf16, fp32 or fp64.
        positions: integer ``[S]`` or ``[B, S]`` (per-row offsets for a KV cache, left padding, or
            packed sequences whose positions restart); for a multi-axis ``cfg`` (``num_axes == A > 1``)
            also ``[A, S]`` or ``[A, B, S]``, one row per axis.
        cfg: the RoPE variant.
        seq_len: current length for ``dynamic`` / ``longrope``; default ``max(positions) + 1``.
        layout: ``"half"`` or ``"interleaved"``; default ``cfg.layout``.

    Returns:
        ``[B, H, S, D]`` in ``x.dtype``; the attention factor is folded into cos and sin, as in transformers.
    """
    _check_head_dim(x, cfg, "x")
    layout = _check_layout(layout or cfg.layout)
    tables = _tables_for(x, positions, cfg, seq_len)
    return _rotate_tables(x, *tables, layout)


def rotate_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply RoPE to queries and keys in one call, sharing one cos/sin table.

    Args:
        q, k: ``[B, Hq, S, D]`` and ``[B, Hk, S, D]`` (``Hq != Hk`` for grouped-query attention).
        positions, cfg, seq_len, layout: as in :func:`rotate`.

    Returns:
        ``(q_rotated, k_rotated)`` with the shapes and dtypes of ``q`` and ``k``.
    """
    _check_head_dim(q, cfg, "q")
    _check_head_dim(k, cfg, "k")
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"q has seq={q.shape[-2]} but k has seq={k.shape[-2]}: rotate them separately")
    layout = _check_layout(layout or cfg.layout)
    if _fused_qk_applies(q, k):
        # One launch for q and k, angles reduced exactly in the kernel: no cos/sin table at all.
        return rotate_qk_fused(q, k, positions, cfg, seq_len=seq_len, layout=layout)
    tables = _tables_for(q, positions, cfg, seq_len)
    return _rotate_tables(q, *tables, layout), _rotate_tables(k, *tables, layout)


def rotate_qk_fused(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    layout: str | None = None,
    inplace: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`rotate_qk` in one kernel launch with cos/sin computed in the kernel (no cache).

    Args and returns as in :func:`rotate_qk` (q ``[B, Hq, S, D]``, k ``[B, Hk, S, D]``,
    positions ``[S]`` or ``[B, S]``, multi-axis also ``[A, S]`` / ``[A, B, S]``); ``inplace``
    overwrites q and k. Needs triton (see :func:`ropelab.kernels.triton_available`).
    """
    positions, axes = _kernel_positions(positions, cfg, q)
    inv_freq, attention_factor = _frequencies(cfg, positions, seq_len)
    return rope_qk(
        q,
        k,
        positions,
        inv_freq=inv_freq,
        attention_factor=float(attention_factor),
        layout=layout or cfg.layout,
        inplace=inplace,
        pair_axes=axes,
    )


def _kernel_positions(positions: torch.Tensor, cfg: RopeConfig, q: torch.Tensor):
    """``(positions, pair_axes)`` for :func:`ropelab.kernels.rope_qk`: unchanged and None for one
    axis; multi-axis positions as ``[A, S]`` / ``[A, B, S]`` rows and the int64 ``[R/2]`` axes."""
    if cfg.num_axes == 1:
        return positions, None
    batch = q.shape[0] if q.dim() == 4 else None
    return axis_positions(positions, cfg.num_axes, batch), pair_axes_index(cfg, q.device)


def _fused_qk_applies(q: torch.Tensor, k: torch.Tensor) -> bool:
    """CUDA q and k of one kernel dtype, outside torch.compile, with triton importable."""
    return (
        q.is_cuda
        and k.is_cuda
        and q.dtype == k.dtype
        and q.dtype in (torch.float16, torch.bfloat16, torch.float32)
        and q.dim() == 4
        and not torch.compiler.is_compiling()
        and triton_available("cuda")
    )
