"""Host side of the fused kernel: argument checks, the autograd Function, and the launch.

Everything here takes plain tensors (``inv_freq``, attention factor, positions, cos/sin) and
imports only torch and this package; triton itself is imported on the first launch
(:mod:`ropelab.kernels.triton_rope`), so importing this module never needs triton.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import torch

from ropelab.kernels.angles import turns_fixed_point
from ropelab.kernels.modes import LAYOUTS, CosSinMode

__all__ = ["interpreting", "triton_available", "rope_qk", "rotate_with_tables"]

_KERNEL_DTYPES = (torch.float16, torch.bfloat16, torch.float32)


@functools.lru_cache(maxsize=1)
def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def interpreting() -> bool:
    """True when Triton's CPU interpreter is requested (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_available(device: torch.device | str | None = None) -> bool:
    """Whether the fused kernel can run on ``device`` (CUDA with triton, or any device when interpreting)."""
    if not _triton_importable():
        return False
    if interpreting():
        return True
    return device is None or torch.device(device).type == "cuda"


def _kernel_module():
    from ropelab.kernels import triton_rope

    return triton_rope


@dataclass(frozen=True)
class _Source:
    """Where cos/sin come from (see :class:`~ropelab.kernels.modes.CosSinMode`)."""

    mode: CosSinMode
    cos: torch.Tensor | None = None  # table [B', S, R/2] or cache [T, R/2]
    sin: torch.Tensor | None = None
    positions: torch.Tensor | None = None  # [B', S] integer view, or [A, B', S] with axes
    turns: torch.Tensor | None = None  # int64 [R/2]
    scale: float = 1.0
    half: int = 0
    axes: torch.Tensor | None = None  # int32 [R/2]: the positions row each pair reads (multi-axis)

    def strides(self) -> tuple[int, int, int, int, int]:
        """``(c_sb, c_ss, p_sa, p_sb, p_ss)`` in elements (table batch/seq, or cache row; positions)."""
        c_sb, c_ss = 0, 0
        if self.mode == CosSinMode.TABLE:
            c_sb, c_ss = self.cos.stride(0), self.cos.stride(1)
        elif self.mode == CosSinMode.CACHE:
            c_ss = self.cos.stride(0)
        if self.positions is None:
            return c_sb, c_ss, 0, 0, 0
        p_sa = self.positions.stride(0) if self.axes is not None else 0
        return c_sb, c_ss, p_sa, self.positions.stride(-2), self.positions.stride(-1)


def _launch(q, k, q_out, k_out, src: _Source, layout: str, sign: float, copy_rest: bool) -> None:
    kernel = _kernel_module()
    dummy = q  # any tensor for pointer arguments the mode does not read
    kernel.launch(
        q,
        k,
        q_out,
        k_out,
        src.cos if src.cos is not None else dummy,
        src.sin if src.sin is not None else dummy,
        src.positions if src.positions is not None else dummy,
        src.turns if src.turns is not None else dummy,
        src.axes if src.axes is not None else dummy,
        strides=src.strides(),
        half=src.half,
        layout=layout,
        mode=int(src.mode),
        scale=src.scale,
        sign=sign,
        copy_rest=copy_rest,
        multi_axis=src.axes is not None,
    )


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _rotate_pair(q, k, src: _Source, layout: str, sign: float, inplace: bool):
    """Run the kernel on q, k ``[B, H, S, D]``; returns the outputs (the inputs themselves in place)."""
    if inplace:
        _launch(q, k, q, k, src, layout, sign, copy_rest=False)
        return q, k
    q_in, k_in = _last_dim_contiguous(q), _last_dim_contiguous(k)
    q_out = torch.empty_like(q_in, memory_format=torch.contiguous_format)
    k_out = torch.empty_like(k_in, memory_format=torch.contiguous_format)
    _launch(q_in, k_in, q_out, k_out, src, layout, sign, copy_rest=True)
    return q_out, k_out


class _FusedQK(torch.autograd.Function):
    """Fused rotation of (q, k); backward = the inverse rotation of (grad_q, grad_k), same launch."""

    @staticmethod
    def forward(ctx, q, k, src, layout, inplace):  # noqa: D401 (autograd signature)
        ctx.src, ctx.layout = src, layout
        q_out, k_out = _rotate_pair(q, k, src, layout, 1.0, inplace)
        if inplace:
            ctx.mark_dirty(q, k)
        return q_out, k_out

    @staticmethod
    def backward(ctx, grad_q, grad_k):
        grad_q, grad_k = _rotate_pair(grad_q, grad_k, ctx.src, ctx.layout, -1.0, inplace=False)
        return grad_q, grad_k, None, None, None


def _check_qk(q: torch.Tensor, k: torch.Tensor, layout: str, inplace: bool) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is invalid: expected one of {', '.join(LAYOUTS)}")
    for name, t in (("q", q), ("k", k)):
        if t.dim() != 4:
            raise ValueError(f"{name}.shape={tuple(t.shape)} is invalid: expected [batch, heads, seq, head_dim]")
        if t.dtype not in _KERNEL_DTYPES:
            raise TypeError(f"{name}.dtype={t.dtype} is invalid: expected one of float16, bfloat16, float32")
        if inplace and t.stride(-1) != 1:
            raise ValueError(f"{name}.stride(-1)={t.stride(-1)} is invalid for inplace=True: expected 1")
    if (q.shape[0], q.shape[2], q.shape[3]) != (k.shape[0], k.shape[2], k.shape[3]):
        raise ValueError(f"q.shape={tuple(q.shape)} and k.shape={tuple(k.shape)} must agree in batch, seq and head_dim")
    if q.dtype != k.dtype or q.device != k.device:
        raise ValueError(f"q ({q.dtype}, {q.device}) and k ({k.dtype}, {k.device}) must share dtype and device")


def _check_integer_positions(positions: torch.Tensor) -> None:
    if not isinstance(positions, torch.Tensor) or positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise TypeError(
            f"positions={getattr(positions, 'dtype', type(positions))} is invalid: expected an integer tensor"
        )


def _positions_2d(positions: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """positions ``[S]`` or ``[B or 1, S]`` as a ``[B, S]`` view (stride 0 where broadcast)."""
    _check_integer_positions(positions)
    batch, _, seq, _ = q.shape
    if positions.dim() == 1:
        positions = positions.unsqueeze(0)
    if positions.dim() != 2 or positions.shape[-1] != seq or positions.shape[0] not in (1, batch):
        raise ValueError(f"positions.shape={tuple(positions.shape)} is invalid: expected [{seq}] or [{batch}, {seq}]")
    return positions.to(q.device).expand(batch, seq)


def _positions_3d(positions: torch.Tensor, pair_axes: torch.Tensor, q: torch.Tensor, half: int):
    """Multi-axis positions ``[A, S]`` or ``[A, B or 1, S]`` as an ``[A, B, S]`` view, and
    ``pair_axes`` (``[R/2]`` integers below ``A``) as int32 on q's device."""
    _check_integer_positions(positions)
    batch, _, seq, _ = q.shape
    if positions.dim() == 2:
        positions = positions.unsqueeze(1)
    if positions.dim() != 3 or positions.shape[-1] != seq or positions.shape[1] not in (1, batch):
        raise ValueError(
            f"positions.shape={tuple(positions.shape)} is invalid with pair_axes: expected "
            f"[axes, {seq}] or [axes, {batch}, {seq}]"
        )
    if pair_axes.dim() != 1 or pair_axes.numel() != half:
        raise ValueError(f"pair_axes.shape={tuple(pair_axes.shape)} is invalid: expected [{half}] (one per pair)")
    # Values are checked where that costs no device sync (ropelab.rotary passes a config's own axes).
    if (
        pair_axes.is_cpu
        and pair_axes.numel()
        and not (0 <= int(pair_axes.min()) and int(pair_axes.max()) < positions.shape[0])
    ):
        raise ValueError(f"pair_axes={pair_axes.tolist()} is invalid for {positions.shape[0]} position rows")
    axes = pair_axes.to(device=q.device, dtype=torch.int32)
    return positions.to(q.device).expand(positions.shape[0], batch, seq), axes


def _check_cache(cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> int:
    if cos.shape != sin.shape or cos.dim() != 2:
        raise ValueError(
            f"cos.shape={tuple(cos.shape)}, sin.shape={tuple(sin.shape)} are invalid: expected equal [T, R/2]"
        )
    if 2 * cos.shape[-1] > head_dim:
        raise ValueError(f"rotary_dim={2 * cos.shape[-1]} is invalid: expected at most head_dim={head_dim}")
    return cos.shape[-1]


def rope_qk(
    q: torch.Tensor,
    k: torch.Tensor,
    positions: torch.Tensor,
    *,
    inv_freq: torch.Tensor | None = None,
    attention_factor: float = 1.0,
    cos: torch.Tensor | None = None,
    sin: torch.Tensor | None = None,
    layout: str = "half",
    inplace: bool = False,
    pair_axes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate q and k in one kernel launch.

    Args:
        q: ``[B, Hq, S, D]``; k: ``[B, Hk, S, D]``; fp16/bf16/fp32, any strides with ``stride(-1) == 1``
            (others are copied first; in place needs it).
        positions: integer ``[S]`` or ``[B, S]`` (per-row offsets, packed sequences with restarts).
        inv_freq: ``[R/2]`` float64 frequencies (e.g. from :func:`ropelab.rope_frequencies`): cos/sin
            are computed in the kernel, exactly reduced; no cache. ``attention_factor`` scales both.
        cos, sin: instead of ``inv_freq``, a cache ``[T, R/2]`` (row ``p`` for position ``p``,
            attention factor already folded in), e.g. from :func:`ropelab.rotary.cos_sin_cache`.
        layout: ``"half"`` or ``"interleaved"``.
        inplace: overwrite q and k (channels ``R:`` untouched) instead of allocating outputs.
        pair_axes: multi-axis RoPE (M-RoPE, axial): integer ``[R/2]``, the row of ``positions`` each
            pair reads; ``positions`` is then ``[A, S]`` or ``[A, B, S]`` and pair ``i`` of token
            ``(b, s)`` turns by ``positions[pair_axes[i], b, s] * inv_freq[i]`` (or reads that row of the cache).

    Returns:
        ``(q_rot, k_rot)`` shaped and typed like q and k; differentiable in q and k.
    """
    _check_qk(q, k, layout, inplace)
    if (inv_freq is None) == (cos is None or sin is None):
        raise ValueError("pass either inv_freq (cos/sin computed in the kernel) or cos and sin (a cache), not both")
    if inv_freq is not None:
        half = inv_freq.shape[-1]
        if inv_freq.dim() != 1 or 2 * half > q.shape[-1]:
            raise ValueError(
                f"inv_freq.shape={tuple(inv_freq.shape)} is invalid: expected [R/2] with R <= {q.shape[-1]}"
            )
    else:
        half = _check_cache(cos, sin, q.shape[-1])
    axes = None
    if pair_axes is None:
        pos = _positions_2d(positions, q)
    else:
        pos, axes = _positions_3d(positions, pair_axes, q, half)
    if inv_freq is not None:
        turns = turns_fixed_point(inv_freq).to(q.device)
        src = _Source(CosSinMode.ANGLES, positions=pos, turns=turns, scale=attention_factor, half=half, axes=axes)
    else:
        src = _Source(
            CosSinMode.CACHE,
            cos=_last_dim_contiguous(cos.to(q.device)),
            sin=_last_dim_contiguous(sin.to(q.device)),
            positions=pos,
            half=half,
            axes=axes,
        )
    return _FusedQK.apply(q, k, src, layout, inplace)


def _as_4d(t: torch.Tensor) -> torch.Tensor | None:
    """``[..., S, D]`` with at most 4 dims as ``[B, H, S, D]`` (views), else None."""
    if t.dim() > 4 or t.dim() < 2:
        return None
    return t.reshape((1,) * (4 - t.dim()) + tuple(t.shape)) if t.dim() < 4 else t


def rotate_with_tables(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, layout: str) -> torch.Tensor | None:
    """Out-of-place rotation of one tensor by per-token tables; None when the kernel does not apply.

    Args:
        x: ``[..., S, D]`` (at most 4 dims), fp16/bf16/fp32.
        cos, sin: ``[..., S, R/2]`` broadcastable against ``x[..., :R/2]`` and equal across heads
            (as :func:`ropelab.apply_rotary` receives them).

    Returns:
        ``x`` rotated (channels ``R:`` copied), or None for shapes/dtypes the kernel does not take
        (the caller then uses the torch path).
    """
    half = cos.shape[-1]
    if x.dtype not in _KERNEL_DTYPES or x.numel() == 0 or half == 0:
        return None
    x4 = _as_4d(x)
    if x4 is None:
        return None
    cos4 = _as_4d(cos.expand(*x.shape[:-1], half))
    sin4 = _as_4d(sin.expand(*x.shape[:-1], half))
    if cos4.stride(1) != 0 and cos4.shape[1] != 1 or sin4.stride() != cos4.stride() or cos4.stride(-1) != 1:
        return None
    src = _Source(CosSinMode.TABLE, cos=cos4[:, 0], sin=sin4[:, 0], half=half)
    x4 = _last_dim_contiguous(x4)
    out = torch.empty_like(x4, memory_format=torch.contiguous_format)
    empty = x4[:, :0]  # k with no heads: the launch rotates q only
    _launch(x4, empty, out, empty, src, layout, 1.0, copy_rest=True)
    return out.reshape(x.shape)
