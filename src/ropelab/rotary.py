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

Layering: this module computes the frequencies once (:mod:`ropelab.frequencies`) and hands plain
tensors down, to the eager paths (:mod:`ropelab.rotary_eager`) or to the fused kernel
(:mod:`ropelab.kernels`, which imports nothing above it). :mod:`ropelab.reference` holds the plain
torch rotation that both are tested against.
"""

from __future__ import annotations

import torch

from ropelab.config import LAYOUTS, RopeConfig
from ropelab.frequencies import rope_frequencies
from ropelab.kernels import rope_qk, rotate_with_tables, triton_available
from ropelab.rotary_eager import rotate_eager, rotate_functional

__all__ = [
    "rope_angles",
    "rope_cos_sin",
    "resolve_seq_len",
    "apply_rotary",
    "rotate",
    "rotate_qk",
    "rotate_qk_fused",
    "cos_sin_cache",
]


def rope_angles(positions: torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """Exact rotation angles ``position * inv_freq``.

    Args:
        positions: integer tensor of any shape ``[*P]``.
        inv_freq: ``[R/2]`` frequencies (float64 for exactness).

    Returns:
        float64 ``[*P, R/2]``. float64 holds every integer position below 2**53 exactly, so the
        only rounding is the one of the product itself.
    """
    _check_positions(positions)
    return positions.to(torch.float64).unsqueeze(-1) * inv_freq.to(device=positions.device, dtype=torch.float64)


def resolve_seq_len(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """The sequence length the dynamic types see: ``seq_len`` if given, else ``max(positions) + 1``
    (transformers' convention). Kept a tensor so compiled graphs do not specialise on it."""
    if seq_len is not None or not cfg.is_dynamic:
        return seq_len
    return positions.max() + 1


def _frequencies(cfg: RopeConfig, positions: torch.Tensor, seq_len: int | torch.Tensor | None):
    """``(inv_freq [R/2] float64, attention_factor)`` at the length the dynamic types see."""
    return rope_frequencies(cfg, resolve_seq_len(cfg, positions, seq_len))


def _cos_sin(positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor, dtype: torch.dtype):
    """cos/sin ``[*P, R/2]`` of the exact angles ``positions * inv_freq``, times the attention factor,
    computed in float64 and rounded once to ``dtype``."""
    angles = rope_angles(positions, inv_freq)
    cos, sin = torch.cos(angles), torch.sin(angles)
    if attention_factor != 1.0:
        cos, sin = cos * attention_factor, sin * attention_factor
    return cos.to(dtype), sin.to(dtype)


def rope_cos_sin(
    positions: torch.Tensor,
    cfg: RopeConfig,
    *,
    seq_len: int | torch.Tensor | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the exact angles, scaled by the variant's attention factor.

    Args:
        positions: integer ``[*P]`` (e.g. ``[S]`` or ``[B, S]``).
        cfg: the RoPE variant.
        seq_len: current length for ``dynamic`` / ``longrope``; default ``max(positions) + 1``.
        dtype: dtype of the result (computed in float64, rounded once).

    Returns:
        ``(cos, sin)``, each ``[*P, R/2]`` of ``dtype`` on ``positions.device``.
    """
    return _cos_sin(positions, *_frequencies(cfg, positions, seq_len), dtype)


def cos_sin_cache(cfg: RopeConfig, max_positions: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 cache ``([T, R/2], [T, R/2])`` for positions ``0..T-1`` from exact float64 angles
    (the ``cos``/``sin`` of :func:`ropelab.kernels.rope_qk`)."""
    return rope_cos_sin(torch.arange(max_positions, device=device), cfg, seq_len=max_positions)


def _check_positions(positions: torch.Tensor) -> None:
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions={type(positions).__name__} is invalid: expected an integer torch.Tensor")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"positions.dtype={positions.dtype} is invalid: expected an integer dtype")


def _rotate_any(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor:
    """Dispatch: the functional form under torch.compile, the fused Triton kernel for CUDA tensors
    (when triton is importable), the chunked eager path otherwise. Shapes as in :func:`apply_rotary`."""
    if torch.compiler.is_compiling():
        return rotate_functional(x, cos, sin, layout)
    if x.is_cuda and triton_available("cuda"):
        out = rotate_with_tables(x, cos, sin, layout)
        if out is not None:
            return out
    return rotate_eager(x, cos, sin, layout)


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
    return _Rotate.apply(x, cos, sin, layout)


def _broadcast_tables(cos: torch.Tensor, sin: torch.Tensor, positions: torch.Tensor, x: torch.Tensor):
    """Insert the heads axis: positions ``[B, S]`` give tables ``[B, 1, S, R/2]``; ``[S]`` gives ``[S, R/2]``."""
    if x.dim() < 2 or positions.shape[-1] != x.shape[-2]:
        raise ValueError(
            f"positions.shape={tuple(positions.shape)} is invalid for x.shape={tuple(x.shape)}: "
            "expected [seq] or [batch, seq] with seq == x.shape[-2]"
        )
    if positions.dim() == 2:
        if x.dim() != 4 or positions.shape[0] not in (1, x.shape[0]):
            raise ValueError(
                f"positions.shape={tuple(positions.shape)} is invalid for x.shape={tuple(x.shape)}: "
                "[batch, seq] positions need x as [batch, heads, seq, head_dim]"
            )
        return cos.unsqueeze(-3), sin.unsqueeze(-3)
    if positions.dim() != 1:
        raise ValueError(f"positions.dim()={positions.dim()} is invalid: expected [seq] or [batch, seq]")
    return cos, sin


def _tables_for(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, attention_factor):
    """cos/sin for ``x`` ``[B, H, S, D]``, in the math dtype (float32, or float64 for float64
    inputs), with the heads axis inserted: ``[B, 1, S, R/2]`` or ``[S, R/2]``."""
    cos, sin = _cos_sin(positions, inv_freq, attention_factor, torch.promote_types(x.dtype, torch.float32))
    return _broadcast_tables(cos, sin, positions, x)


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
            packed sequences whose positions restart).
        cfg: the RoPE variant.
        seq_len: current length for ``dynamic`` / ``longrope``; default ``max(positions) + 1``.
        layout: ``"half"`` or ``"interleaved"``; default ``cfg.layout``.

    Returns:
        ``[B, H, S, D]`` in ``x.dtype``; the attention factor is folded into cos and sin, as in transformers.
    """
    _check_head_dim(x, cfg, "x")
    cos, sin = _tables_for(x, positions, *_frequencies(cfg, positions, seq_len))
    return apply_rotary(x, cos, sin, layout=layout or cfg.layout)


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
        q: ``[B, Hq, S, D]``; k: ``[B, Hk, S, D]`` (``Hq != Hk`` for grouped-query attention).
        positions, cfg, seq_len, layout: as in :func:`rotate`.

    Returns:
        ``(q_rotated, k_rotated)`` with the shapes and dtypes of ``q`` and ``k``.
    """
    _check_head_dim(q, cfg, "q")
    _check_head_dim(k, cfg, "k")
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(f"q has seq={q.shape[-2]} but k has seq={k.shape[-2]}: rotate them separately")
    layout = layout or cfg.layout
    inv_freq, attention_factor = _frequencies(cfg, positions, seq_len)
    if _fused_qk_applies(q, k):
        # One launch for q and k, angles reduced exactly in the kernel: no cos/sin table at all.
        return rope_qk(q, k, positions, inv_freq=inv_freq, attention_factor=float(attention_factor), layout=layout)
    cos, sin = _tables_for(q, positions, inv_freq, attention_factor)
    return apply_rotary(q, cos, sin, layout=layout), apply_rotary(k, cos, sin, layout=layout)


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
    positions ``[S]`` or ``[B, S]``); ``inplace`` overwrites q and k. Needs triton (see
    :func:`ropelab.kernels.triton_available`).
    """
    inv_freq, attention_factor = _frequencies(cfg, positions, seq_len)
    return rope_qk(q, k, positions, inv_freq=inv_freq, attention_factor=float(attention_factor),
                   layout=layout or cfg.layout, inplace=inplace)


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
