"""The fused Triton kernel against the pure-torch path and the reference rotation.

Without CUDA the kernel runs on CPU tensors through Triton's interpreter (``TRITON_INTERPRET=1``,
set below before the kernel module is first imported); with CUDA the same tests run compiled on
the GPU, against the torch path run on CPU copies (on CUDA ``rotate_qk`` itself dispatches to the
kernel). Shapes are tiny: the interpreter executes every program instance in Python; the launch
configuration of real shapes (8 heads a program, 4 warps) is covered by one case under the
interpreter and all of them compiled. ``benchmarks/gpu_check.sh`` runs this file on a GPU.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernel is decorated (first import)

import ropelab  # noqa: E402
from ropelab.kernels import (  # noqa: E402
    cos_sin_fixed_point,
    rope_qk,
    rotate_with_tables,
    turns_fixed_point,
)
from ropelab.reference import apply_rotary_reference  # noqa: E402
from ropelab.rotary import cos_sin_cache, rope_cos_sin, rotate_qk_fused  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# Without triton, or with neither CUDA nor the interpreter, every test here is skipped naming why;
# under CI=true each one fails instead (the conftest fixture).
pytestmark = pytest.mark.usefixtures("kernel_runs_here")

DTYPES = [torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# (head_dim, rotary_dim): full, partial with a power-of-two half, and non-power-of-two widths.
DIMS = [(16, 16), (24, 16), (20, 12), (24, 20)]
B, HQ, HK, S = 2, 3, 2, 5


def _cfg(head_dim: int, rotary_dim: int, layout: str, **kw) -> ropelab.RopeConfig:
    return ropelab.RopeConfig(head_dim=head_dim, rotary_dim=rotary_dim, layout=layout, **kw)


def _qk(head_dim: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(B, HQ, S, head_dim, generator=gen).to(DEVICE, dtype)
    k = torch.randn(B, HK, S, head_dim, generator=gen).to(DEVICE, dtype)
    return q, k


def _positions(kind: str) -> torch.Tensor:
    """``shared``: ``[S]``; ``offsets``: per-row KV-cache offsets; ``packed``: restarts inside a row."""
    if kind == "shared":
        return torch.arange(S, device=DEVICE)
    if kind == "offsets":
        return torch.arange(S, device=DEVICE) + torch.tensor([[0], [11]], device=DEVICE)
    return torch.tensor([[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]], device=DEVICE)


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    tol = TOL[actual.dtype]
    torch.testing.assert_close(actual.float(), expected.float(), atol=tol, rtol=tol)


def _torch_qk(q, k, pos, cfg):
    """The expected rotation: :func:`ropelab.rotate_qk` on CPU copies (the torch path: on CUDA
    ``rotate_qk`` would dispatch to the kernel under test), returned on q's device."""
    out = ropelab.rotate_qk(q.detach().cpu(), k.detach().cpu(), pos.cpu(), cfg)
    return tuple(t.to(q.device) for t in out)


def _fused(q, k, pos, cfg, mode: str, **kw):
    if mode == "compute":
        return rotate_qk_fused(q, k, pos, cfg, **kw)
    cos, sin = cos_sin_cache(cfg, 2048 if mode == "cache-big" else 32, device=DEVICE)
    return rope_qk(q, k, pos, cos=cos, sin=sin, layout=cfg.layout, **kw)


@pytest.mark.parametrize("mode", ["cache", "compute"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_forward_matches_torch(layout, dims, dtype, mode):
    cfg = _cfg(*dims, layout)
    q, k = _qk(dims[0], dtype)
    pos = _positions("offsets")
    expected = _torch_qk(q, k, pos, cfg)
    got = _fused(q, k, pos, cfg, mode)
    for a, e, x in zip(got, expected, (q, k)):
        _close(a, e)
        assert torch.equal(a[..., dims[1] :], x[..., dims[1] :])  # pass-through copied bit for bit


@pytest.mark.parametrize("kind", ["shared", "offsets", "packed"])
@pytest.mark.parametrize("mode", ["cache", "compute"])
def test_positions_shapes(kind, mode):
    cfg = _cfg(24, 20, "half")
    q, k = _qk(24, torch.float32, seed=1)
    pos = _positions(kind)
    for a, e in zip(_fused(q, k, pos, cfg, mode), _torch_qk(q, k, pos, cfg)):
        _close(a, e)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("mode", ["cache", "compute"])
def test_inplace(layout, dtype, mode):
    cfg = _cfg(24, 20, layout)
    q, k = _qk(24, dtype, seed=2)
    pos = _positions("packed")
    expected = _torch_qk(q, k, pos, cfg)
    q_in, k_in = q.clone(), k.clone()
    q_ptr, k_ptr = q_in.data_ptr(), k_in.data_ptr()
    got = _fused(q_in, k_in, pos, cfg, mode, inplace=True)
    assert got[0].data_ptr() == q_ptr and got[1].data_ptr() == k_ptr
    for a, e, x in zip(got, expected, (q, k)):
        _close(a, e)
        assert torch.equal(a[..., 20:], x[..., 20:])  # untouched


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("inplace", [False, True])
def test_backward_is_inverse_rotation(layout, dtype, inplace):
    cfg = _cfg(20, 12, layout, attention_factor=1.25, rope_type="yarn", factor=2.0, original_max_position_embeddings=8)
    q0, k0 = _qk(20, dtype, seed=3)
    pos = _positions("offsets")
    gq, gk = _qk(20, dtype, seed=4)

    def grads(fn, device=DEVICE):
        q, k = (t.detach().to(device).clone().requires_grad_() for t in (q0, k0))
        qq, kk = (q * 1, k * 1) if inplace else (q, k)  # in place needs non-leaf inputs
        out = fn(qq, kk)
        torch.autograd.backward(out, (gq.to(device), gk.to(device)))
        return q.grad.to(DEVICE), k.grad.to(DEVICE)

    expected = grads(lambda q, k: ropelab.rotate_qk(q, k, pos.cpu(), cfg), device="cpu")  # the torch path
    got = grads(lambda q, k: rotate_qk_fused(q, k, pos, cfg, inplace=inplace))
    for a, e in zip(got, expected):
        _close(a, e)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_strided_inputs(layout):
    """q/k as [B, S, H, D] memory viewed as [B, H, S, D] (a projection's natural layout)."""
    cfg = _cfg(24, 16, layout)
    q, k = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in _qk(24, torch.float16, seed=5))
    pos = _positions("offsets")
    for mode in ("cache", "compute"):
        for a, e in zip(_fused(q, k, pos, cfg, mode), _torch_qk(q, k, pos, cfg)):
            _close(a, e)


@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_table_mode_matches_apply_rotary(layout, dtype):
    """The path apply_rotary dispatches CUDA tensors to: per-token tables [B or 1, 1, S, R/2], against the reference."""
    cfg = _cfg(20, 12, layout)
    q, _ = _qk(20, dtype, seed=6)
    pos = _positions("offsets")
    cos, sin = rope_cos_sin(pos, cfg)
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    got = rotate_with_tables(q, cos, sin, layout)
    _close(got, apply_rotary_reference(q, cos, sin, layout))
    shared_cos, shared_sin = rope_cos_sin(_positions("shared"), cfg)  # [S, R/2] and 3-D x
    _close(
        rotate_with_tables(q[0], shared_cos, shared_sin, layout),
        apply_rotary_reference(q[0], shared_cos, shared_sin, layout),
    )


def test_table_mode_declines_what_it_cannot_take():
    q, _ = _qk(16, torch.float32)
    cos, sin = rope_cos_sin(_positions("shared"), _cfg(16, 16, "half"))
    assert rotate_with_tables(q.double(), cos, sin, "half") is None  # float64 stays on the torch path
    per_head = cos.expand(HQ, S, 8).contiguous()
    assert rotate_with_tables(q, per_head, per_head, "half") is None


@pytest.mark.parametrize("base", [10000.0, 500000.0])
def test_in_kernel_angles_exact_at_long_positions(base):
    """Positions around 2**20, 2**24 and 2**31: the in-kernel cos/sin stay within ~1e-7 of float64."""
    cfg = _cfg(16, 16, "half", base=base)
    starts = torch.tensor([[2**20], [2**24 - 3]], device=DEVICE)
    pos = torch.cat([starts + torch.arange(S, device=DEVICE), torch.full((1, S), 2**31 - 1, device=DEVICE)])
    q = torch.zeros(3, 1, S, 16, device=DEVICE)
    q[..., :8] = 1.0  # a = 1, b = 0: the output holds (cos, sin)
    out, _ = rotate_qk_fused(q, q[:, :0], pos, cfg)
    inv_freq, _ = ropelab.rope_frequencies(cfg)
    angles = pos.cpu().double().unsqueeze(-1) * inv_freq
    got = out[:, 0].cpu().double()
    assert (got[..., :8] - torch.cos(angles)).abs().max() < 3e-7
    assert (got[..., 8:] - torch.sin(angles)).abs().max() < 3e-7
    ref_cos, ref_sin = cos_sin_fixed_point(pos.cpu(), turns_fixed_point(inv_freq))
    torch.testing.assert_close(got[..., :8].float(), ref_cos, atol=2e-7, rtol=0)
    torch.testing.assert_close(got[..., 8:].float(), ref_sin, atol=2e-7, rtol=0)


# --- every cos/sin source at long positions, and the block configuration of real shapes ------------

# With pytest-xdist's --dist loadgroup the 2**31 - 1 cases share one worker, so one process holds the 16 GiB cache.
LONG_TOPS = [
    pytest.param(2**24, id="2^24"),
    pytest.param(2**31 - 1, id="2^31-1", marks=pytest.mark.xdist_group("long_cache")),
]
LONG_DIMS = (6, 2)  # one pair, four channels copied: a cache of 2**31 rows is 16 GiB of float32


def _long_positions(kind: str, top: int) -> torch.Tensor:
    """``shared``: ``[S]`` ending at ``top``; ``offsets``: ``[B, S]``, a run ending at ``top`` and a
    packed row with restarts that reaches ``top - 1``."""
    run = top - S + 1 + torch.arange(S)
    if kind == "shared":
        return run.to(DEVICE)
    return torch.stack([run, torch.tensor([0, 1, 2**20, top - 1, 3])]).to(DEVICE)


@pytest.fixture(scope="module")
def long_cache():
    """A float32 cos/sin cache ``[top + 1, 1]`` per top, cos and sin as the two columns of one
    buffer ``[T, 2]`` (row stride 2), poisoned with NaN; each test writes the rows it reads."""
    caches = {}

    def get(top: int):
        if top not in caches:
            caches.clear()  # one at a time: 16 GiB at 2**31 - 1
            buf = torch.full((top + 1, 2), float("nan"), device=DEVICE)
            caches[top] = (buf[:, :1], buf[:, 1:])
        return caches[top]

    yield get
    caches.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@pytest.mark.parametrize("top", LONG_TOPS)
@pytest.mark.parametrize("kind", ["shared", "offsets"])
@pytest.mark.parametrize("mode", ["table", "cache", "compute"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_every_mode_at_long_positions(layout, dtype, mode, kind, top, long_cache):
    """Table, cache and in-kernel angles at positions up to 2**24 and 2**31 - 1 (int64 addressing of
    a cache row, exact in-kernel reduction), positions ``[S]`` and ``[B, S]``, against the torch path."""
    if mode == "cache" and top >= 2**31 - 1 and DEVICE != "cuda":
        pytest.skip("a cache of 2**31 rows (16 GiB) is checked on CUDA only")
    cfg = _cfg(*LONG_DIMS, layout, base=500000.0)
    q, k = _qk(LONG_DIMS[0], dtype, seed=8)
    pos = _long_positions(kind, top)
    expected = _torch_qk(q, k, pos, cfg)
    if mode == "table":
        cos, sin = rope_cos_sin(pos.cpu(), cfg)  # [S, R/2] or [B, S, R/2], exact angles
        if pos.dim() == 2:
            cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        cos, sin = cos.to(DEVICE), sin.to(DEVICE)
        got = (rotate_with_tables(q, cos, sin, layout), rotate_with_tables(k, cos, sin, layout))
    elif mode == "cache":
        cos, sin = long_cache(top)
        rows = pos.reshape(-1).unique()
        row_cos, row_sin = rope_cos_sin(rows.cpu(), cfg)
        cos[rows], sin[rows] = row_cos.to(DEVICE), row_sin.to(DEVICE)
        got = rope_qk(q, k, pos, cos=cos, sin=sin, layout=layout)
    else:
        got = rotate_qk_fused(q, k, pos, cfg)
    for a, e, x in zip(got, expected, (q, k)):
        _close(a, e)
        assert torch.equal(a[..., 2:], x[..., 2:])


# Real shapes launch BLOCK_H = 8 heads per program (B * S >= 256 rows) and 4 warps (8 * R/2 >= 256):
# (head_dim, rotary_dim) with a non-power-of-two R/2 each, partial; q heads not a multiple of 8.
BIG_DIMS = [(40, 24), (136, 120)]
BIG_B, BIG_HQ, BIG_HK, BIG_S = 2, 9, 3, 130


def _big_case_runs(layout, dtype, dims, mode) -> bool:
    """All combinations compiled on CUDA; under the interpreter (~8 ms a program, 2,340 programs a
    case) only interleaved bf16 from the cache."""
    return DEVICE == "cuda" or (layout, dtype, dims, mode) == ("interleaved", torch.bfloat16, BIG_DIMS[0], "cache")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["table", "cache", "compute"])
@pytest.mark.parametrize("dims", BIG_DIMS, ids=["40-24", "136-120"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_block_configuration_of_real_shapes(layout, dtype, dims, mode):
    """Forward (out of place and in place) and backward at ``B * S >= 256`` rows: the launch
    configuration real shapes get, against the torch path on CPU."""
    if not _big_case_runs(layout, dtype, dims, mode):
        pytest.skip("interpreter: one case of 36 (all of them compiled on CUDA)")
    head_dim, rotary_dim = dims
    cfg = _cfg(head_dim, rotary_dim, layout)
    gen = torch.Generator().manual_seed(9)
    q, k, gq, gk = (
        torch.randn(BIG_B, h, BIG_S, head_dim, generator=gen).to(DEVICE, dtype)
        for h in (BIG_HQ, BIG_HK, BIG_HQ, BIG_HK)
    )
    pos = (torch.arange(BIG_S) + torch.tensor([[0], [1000]])).to(DEVICE)
    cos, sin = rope_cos_sin(pos.cpu(), cfg)  # tables [B, 1, S, R/2]
    cos, sin = cos.unsqueeze(1).to(DEVICE), sin.unsqueeze(1).to(DEVICE)

    def run(q, k, inplace=False):
        if mode == "table":  # what apply_rotary runs on CUDA tensors, forward (sin) and backward (-sin)
            return tuple(rotate_with_tables(x, cos, sin, layout) for x in (q, k))
        return _fused(q, k, pos, cfg, "compute" if mode == "compute" else "cache-big", inplace=inplace)

    expected = _torch_qk(q, k, pos, cfg)
    for a, e, x in zip(run(q, k), expected, (q, k)):
        _close(a, e)
        assert torch.equal(a[..., rotary_dim:], x[..., rotary_dim:])
    if mode != "table":
        q_in, k_in = q.clone(), k.clone()
        for a, e in zip(run(q_in, k_in, inplace=True), expected):
            _close(a, e)
    # backward: the gradient of <out, g> is the inverse rotation of g
    ref = [t.detach().cpu().requires_grad_() for t in (q, k)]
    torch.autograd.backward(ropelab.rotate_qk(*ref, pos.cpu(), cfg), (gq.cpu(), gk.cpu()))
    if mode == "table":
        grads = tuple(rotate_with_tables(g, cos, -sin, layout) for g in (gq, gk))
    else:
        leaves = [t.detach().clone().requires_grad_() for t in (q, k)]
        torch.autograd.backward(run(*leaves), (gq, gk))
        grads = tuple(leaf.grad for leaf in leaves)
    for got, r in zip(grads, ref):
        _close(got, r.grad.to(DEVICE))


@pytest.mark.parametrize("mode", ["cache", "compute"])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_proportional_frozen_pairs_pass_through_the_kernel(layout, mode):
    """p-RoPE: pairs 3.. have frequency 0 (turns 0 in the kernel); they come out bit for bit unchanged."""
    cfg = _cfg(16, 16, layout, rope_type="proportional", rotated_pairs=3, base=1e6)
    q, k = _qk(16, torch.float32, seed=7)
    pos = _positions("offsets")  # within the 32-row cache of mode "cache"
    got = _fused(q, k, pos, cfg, mode)
    frozen = [c for p in range(3, 8) for c in ((p, p + 8) if layout == "half" else (2 * p, 2 * p + 1))]
    for a, e, x in zip(got, _torch_qk(q, k, pos, cfg), (q, k)):
        _close(a, e)
        assert torch.equal(a[..., frozen], x[..., frozen])
        assert not torch.equal(a, x)


def test_turns_fixed_point_values():
    turns = turns_fixed_point(torch.tensor([1.0, math.pi, 2 * math.pi, 0.0], dtype=torch.float64))
    assert abs(turns[0].item() - 2**64 / (2 * math.pi)) < 2**12  # one radian: 1 / (2 pi) of a turn
    half_turn = (turns[1].item() - 2**63) % 2**64  # pi is half a turn, up to float64's rounding of pi
    assert min(half_turn, 2**64 - half_turn) < 2**12
    assert abs(turns[2].item()) < 2**12 and turns[3].item() == 0


def test_bad_arguments_name_the_argument():
    q, k = _qk(16, torch.float32)
    pos = _positions("shared")
    inv_freq = torch.ones(8, dtype=torch.float64)
    with pytest.raises(ValueError, match="layout"):
        rope_qk(q, k, pos, inv_freq=inv_freq, layout="bogus")
    with pytest.raises(TypeError, match="q.dtype"):
        rope_qk(q.double(), k.double(), pos, inv_freq=inv_freq)
    with pytest.raises(ValueError, match="positions.shape"):
        rope_qk(q, k, pos[:3], inv_freq=inv_freq)
    with pytest.raises(ValueError, match="inv_freq"):
        rope_qk(q, k, pos)
    with pytest.raises(ValueError, match="inv_freq.shape"):
        rope_qk(q, k, pos, inv_freq=torch.ones(9, dtype=torch.float64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_dispatch_and_large_shape(dtype):
    """On a GPU: apply_rotary/rotate_qk pick the kernel and agree with the CPU torch path at a real shape."""
    cfg = _cfg(128, 128, "half")
    q = torch.randn(2, 32, 1024, 128, device="cuda", dtype=dtype)
    k = torch.randn(2, 8, 1024, 128, device="cuda", dtype=dtype)
    pos = torch.arange(1024, device="cuda") + torch.tensor([[0], [2**20]], device="cuda")
    expected = ropelab.rotate_qk(q.cpu(), k.cpu(), pos.cpu(), cfg)
    for got in (ropelab.rotate_qk(q, k, pos, cfg), rotate_qk_fused(q, k, pos, cfg)):
        for a, e in zip(got, expected):
            _close(a.cpu(), e)
