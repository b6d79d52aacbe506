"""The chunked eager rotation (the CPU fast path): same result as the one-expression form and as
the reference rotation, for every chunking, and no full-size temporary beyond the output."""

from __future__ import annotations

import pytest
import torch

from ropelab import rotary_eager
from ropelab.reference import apply_rotary_reference
from ropelab.rotary_eager import rotate_eager, rotate_functional

TOL = {torch.float32: 1e-6, torch.float64: 1e-12, torch.float16: 1e-3, torch.bfloat16: 8e-3}


@pytest.mark.parametrize("chunk", [64, 1000, 1 << 20])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(
    "x_shape, table_shape",
    [((2, 3, 7, 24), (7, 10)), ((2, 3, 7, 24), (2, 1, 7, 10)), ((5, 20), (5, 8)), ((4, 1, 16), (4, 1, 8))],
)
def test_chunked_eager_matches_functional(monkeypatch, chunk, layout, dtype, x_shape, table_shape):
    monkeypatch.setattr(rotary_eager, "CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(x_shape, generator=gen).to(dtype)
    angles = torch.rand(table_shape, generator=gen, dtype=torch.float64) * 6.3
    cos, sin = (
        torch.cos(angles).to(torch.promote_types(dtype, torch.float32)),
        torch.sin(angles).to(torch.promote_types(dtype, torch.float32)),
    )
    got = rotate_eager(x, cos, sin, layout)
    want = rotate_functional(x, cos, sin, layout)
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got.double(), want.double(), atol=TOL[dtype], rtol=TOL[dtype])
    reference = apply_rotary_reference(x, cos, sin, layout)
    for path in (got, want):
        torch.testing.assert_close(path.double(), reference.double(), atol=TOL[dtype], rtol=TOL[dtype])
    rotary_dim = 2 * table_shape[-1]
    assert torch.equal(got[..., rotary_dim:], x[..., rotary_dim:])


def test_strided_input_and_transposed_layout():
    x = torch.randn(2, 9, 4, 16).transpose(1, 2)  # [B, H, S, D] view of [B, S, H, D] memory
    cos, sin = torch.rand(9, 8), torch.rand(9, 8)
    for layout in ("half", "interleaved"):
        torch.testing.assert_close(rotate_eager(x, cos, sin, layout), rotate_functional(x, cos, sin, layout))
        torch.testing.assert_close(rotate_eager(x, cos, sin, layout), apply_rotary_reference(x, cos, sin, layout))


def _peak_bytes(fn) -> int:
    """Peak CPU bytes allocated while fn runs: allocations and frees of leaf ops, in time order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
        del out
    current = peak = 0
    leaves = [e for e in prof.events() if e.cpu_memory_usage != 0 and not e.cpu_children]
    for event in sorted(leaves, key=lambda e: e.time_range.start):
        current += event.cpu_memory_usage
        peak = max(peak, current)
    return peak


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("layout", ["half", "interleaved"])
def test_no_full_size_temporaries(dtype, layout):
    """Peak allocation = the output plus at most the two float32 chunk buffers."""
    x = torch.randn(1, 8, 2048, 128).to(dtype)  # 8 MiB in float32: several chunks
    cos, sin = torch.rand(2048, 64), torch.rand(2048, 64)
    peak = _peak_bytes(lambda: rotate_eager(x, cos, sin, layout))
    scratch = 0 if dtype == torch.float32 else 2 * 4 * rotary_eager.CHUNK_ELEMENTS
    table = 2 * cos.numel() * 8  # the complex table of the interleaved path
    assert peak <= x.numel() * x.element_size() + scratch + table + (1 << 16)
