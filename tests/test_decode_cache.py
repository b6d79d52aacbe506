"""The decode cache (ropelab.cache): cached results are bitwise the uncached ones, the byte bound and
LRU order hold, dynamic lengths do not collide, and the inference fast paths equal the chunked one.
No timing is asserted here: `benchmarks/bench_rotary.py` measures speed."""

from __future__ import annotations

import threading

import pytest
import torch

from ropelab import RopeConfig
from ropelab import cache as rope_cache
from ropelab.cache import bypass
from ropelab.rotary import (
    apply_rotary,
    cache_info,
    clear_cache,
    rope_cos_sin,
    rotate,
    rotate_qk,
    set_cache_limit,
)
from ropelab.rotary_eager import rotate_eager, rotate_small_half

CONFIGS = {
    "default": RopeConfig(head_dim=32, base=10000.0),
    "partial": RopeConfig(head_dim=32, rotary_dim=24, base=500000.0),
    "linear": RopeConfig(head_dim=32, rope_type="linear", factor=4.0),
    "yarn": RopeConfig(
        head_dim=32, rope_type="yarn", factor=8.0, original_max_position_embeddings=64, max_position_embeddings=512
    ),
    "llama3": RopeConfig(
        head_dim=32,
        base=500000.0,
        rope_type="llama3",
        factor=8.0,
        low_freq_factor=1.0,
        high_freq_factor=4.0,
        original_max_position_embeddings=64,
        max_position_embeddings=512,
    ),
    "dynamic": RopeConfig(head_dim=32, rope_type="dynamic", factor=4.0, max_position_embeddings=64),
    "longrope": RopeConfig(
        head_dim=32,
        rope_type="longrope",
        original_max_position_embeddings=64,
        max_position_embeddings=256,
        short_factor=tuple(1.0 + 0.1 * i for i in range(16)),
        long_factor=tuple(2.0 + 0.5 * i for i in range(16)),
    ),
}


@pytest.fixture(autouse=True)
def _fresh_cache():
    clear_cache()
    previous = set_cache_limit(rope_cache.DEFAULT_MAX_BYTES)
    yield
    set_cache_limit(previous)
    clear_cache()


def _positions(kind: str, batch: int, seq: int) -> torch.Tensor:
    if kind == "prefill":
        return torch.arange(seq)
    if kind == "decode":  # one position shared by the batch
        return torch.full((batch, seq), 1_000_003)
    starts = torch.tensor([5, 70_000, 2**31 + 7, 123])[:batch]  # per-row KV offsets
    return starts[:, None] + torch.arange(seq)


def _uncached_qk(q, k, positions, cfg, **kw):
    with bypass():
        return rotate_qk(q, k, positions, cfg, **kw)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("layout", ["half", "interleaved"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("kind,batch,seq", [("prefill", 2, 9), ("decode", 3, 1), ("offsets", 4, 1), ("offsets", 2, 5)])
def test_cached_equals_uncached_bitwise(name, layout, dtype, kind, batch, seq):
    cfg = CONFIGS[name]
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(batch, 4, seq, 32, generator=gen).to(dtype)
    k = torch.randn(batch, 2, seq, 32, generator=gen).to(dtype)
    positions = _positions(kind, batch, seq)
    want_q, want_k = _uncached_qk(q, k, positions, cfg, layout=layout)
    for _ in range(3):  # fills the cache, then hits it, then hits the per-thread memo
        got_q, got_k = rotate_qk(q, k, positions, cfg, layout=layout)
        assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
    assert torch.equal(rotate(q, positions, cfg, layout=layout), want_q)
    # Rows are cached unless the positions span more rows than the bound (offsets up to 2**31).
    assert cache_info()["row_entries"] >= (0 if kind == "offsets" else 1) and cache_info()["freq_entries"] >= 1
    cos, sin = rope_cos_sin(positions, cfg, dtype=dtype)
    with bypass():
        want_cos, want_sin = rope_cos_sin(positions, cfg, dtype=dtype)
    assert torch.equal(cos, want_cos) and torch.equal(sin, want_sin)


def test_rope_cos_sin_returns_copies_not_views_of_the_cache():
    cfg = CONFIGS["default"]
    positions = torch.tensor([7])
    cos, sin = rope_cos_sin(positions, cfg)
    want = cos.clone()
    cos.fill_(5.0)
    sin.fill_(5.0)
    again, _ = rope_cos_sin(positions, cfg)
    assert torch.equal(again, want)


@pytest.mark.parametrize("shape", [(1, 32, 1, 128), (3, 5, 7, 20), (2, 3, 4, 6), (1, 1, 1, 2)])
@pytest.mark.parametrize("rotary_dim", ["full", "partial"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
@pytest.mark.parametrize("table", ["seq", "batch"])
def test_small_half_path_equals_chunked_eager_bitwise(shape, rotary_dim, dtype, table):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=gen).to(dtype)
    half = shape[-1] // 2 if rotary_dim == "full" else max(1, shape[-1] // 2 - 1)
    table_shape = (shape[-2], half) if table == "seq" else (shape[0], 1, shape[-2], half)
    angles = torch.randn(table_shape, generator=gen, dtype=torch.float64) * 100
    compute = torch.promote_types(dtype, torch.float32)
    cos, sin = angles.cos().to(compute), angles.sin().to(compute)
    assert torch.equal(rotate_small_half(x, cos, sin), rotate_eager(x, cos, sin, "half"))
    strided = torch.randn(shape[0], shape[2], shape[1], shape[3], generator=gen).to(dtype).transpose(1, 2)
    assert torch.equal(rotate_small_half(strided, cos, sin), rotate_eager(strided, cos, sin, "half"))


def test_inference_path_skips_autograd_but_training_path_keeps_it():
    cfg = CONFIGS["partial"]
    positions = torch.tensor([[40]])
    q = torch.randn(1, 4, 1, 32, requires_grad=True)
    k = torch.randn(1, 2, 1, 32)
    with torch.no_grad():
        out_q, _ = rotate_qk(q, k, positions, cfg)
    assert out_q.grad_fn is None
    out_q, _ = rotate_qk(q, k, positions, cfg)
    grad = torch.randn_like(out_q)
    (got,) = torch.autograd.grad(out_q, q, grad)
    with bypass():
        out_want, _ = rotate_qk(q, k, positions, cfg)
        (want,) = torch.autograd.grad(out_want, q, grad)
    assert torch.equal(out_q, out_want) and torch.equal(got, want)
    # The backward is the inverse rotation: rotating the gradient back by -theta.
    assert torch.allclose(rotate(got.detach(), positions, cfg), grad, atol=1e-5)


def test_dynamic_lengths_do_not_collide():
    cfg = CONFIGS["dynamic"]  # frequencies change once seq_len > 64
    q, k = torch.randn(1, 2, 4, 32), torch.randn(1, 1, 4, 32)
    positions = torch.arange(4)
    outs = {}
    for seq_len in (None, 8, 64, 65, 200, torch.tensor(200), 1000):
        got = rotate_qk(q, k, positions, cfg, seq_len=seq_len)
        want = _uncached_qk(q, k, positions, cfg, seq_len=seq_len)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
        outs[str(seq_len)] = got[0]
    assert torch.equal(outs["None"], outs["8"]) and torch.equal(outs["8"], outs["64"])  # below the trained length
    assert not torch.allclose(outs["64"], outs["65"]) and not torch.allclose(outs["200"], outs["1000"])
    # max(positions) + 1 past the trained length: the frequencies follow the positions.
    far = torch.arange(300, 304)
    assert torch.equal(rotate_qk(q, k, far, cfg)[0], _uncached_qk(q, k, far, cfg)[0])
    assert not torch.equal(rotate_qk(q, k, far, cfg)[0], rotate_qk(q, k, far, cfg, seq_len=64)[0])


def test_longrope_short_and_long_do_not_collide():
    cfg = CONFIGS["longrope"]
    q, k = torch.randn(1, 2, 3, 32), torch.randn(1, 1, 3, 32)
    positions = torch.arange(3)
    short = rotate_qk(q, k, positions, cfg)[0]
    long = rotate_qk(q, k, positions, cfg, seq_len=65)[0]
    assert not torch.allclose(short, long)
    assert torch.equal(long, _uncached_qk(q, k, positions, cfg, seq_len=65)[0])
    assert torch.equal(rotate_qk(q, k, positions, cfg)[0], short)


def test_bound_in_bytes_and_lru_eviction():
    row_bytes = 4 * 16 * 4  # (cos, cos) and (-sin, sin) rows of R = 32 float32 values
    set_cache_limit(3 * 64 * row_bytes + 1024)  # three 64-row windows and a few frequency entries
    configs = [RopeConfig(head_dim=32, base=1000.0 * (i + 1)) for i in range(4)]
    positions = torch.arange(64)
    q, k = torch.randn(1, 1, 64, 32), torch.randn(1, 1, 64, 32)

    def touch(cfg):
        return rotate_qk(q, k, positions, cfg)[0]

    for cfg in configs[:3]:
        touch(cfg)
    info = cache_info()
    assert info["row_entries"] == 3 and info["bytes"] <= info["max_bytes"]
    touch(configs[0])  # now most recently used: configs[1] is the oldest
    evictions = info["evictions"]
    touch(configs[3])
    info = cache_info()
    assert info["bytes"] <= info["max_bytes"] and info["evictions"] > evictions
    rows_keys = [key for key in rope_cache._STORE.entries if key[0] == "rows"]
    cached = {key[1][1] for key in rows_keys}
    assert configs[0] in cached and configs[3] in cached and configs[1] not in cached
    # Results after eviction are still the uncached ones.
    with bypass():
        want = touch(configs[1])
    assert torch.equal(touch(configs[1]), want)
    # Lowering the bound evicts at once; a table bigger than the bound is computed, not stored.
    set_cache_limit(64 * row_bytes // 2)
    assert cache_info()["bytes"] <= 64 * row_bytes // 2
    got = touch(configs[2])
    with bypass():
        assert torch.equal(got, touch(configs[2]))
    assert cache_info()["row_entries"] == 0 and cache_info()["bytes"] <= cache_info()["max_bytes"]


def test_decode_stream_grows_one_window_and_matches():
    cfg = CONFIGS["default"]
    q, k = torch.randn(2, 4, 1, 32), torch.randn(2, 2, 1, 32)
    start = 10**6 - 5
    for step in range(300):
        positions = torch.tensor([[start + step], [start + step - 40]])
        got = rotate_qk(q, k, positions, cfg)
        want = _uncached_qk(q, k, positions, cfg)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    info = cache_info()
    assert info["row_entries"] == 1 and 340 <= info["rows"] <= 2 * 512  # grown by doubling, not per token
    assert info["bytes"] == info["rows"] * 4 * 16 * 4 + info["freq_entries"] * 16 * 8


def test_memo_sees_in_place_writes_and_clears():
    cfg = CONFIGS["default"]
    q, k = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 1, 32)
    positions = torch.tensor([[100]])
    first = rotate_qk(q, k, positions, cfg)[0]
    positions.add_(1)  # same tensor object, new version
    assert torch.equal(rotate_qk(q, k, positions, cfg)[0], _uncached_qk(q, k, positions, cfg)[0])
    assert not torch.equal(rotate_qk(q, k, positions, cfg)[0], first)
    clear_cache()
    assert cache_info()["entries"] == 0
    assert torch.equal(rotate_qk(q, k, positions, cfg)[0], _uncached_qk(q, k, positions, cfg)[0])


def test_bypass_neither_reads_nor_fills():
    cfg = CONFIGS["yarn"]
    with bypass():
        rotate_qk(torch.randn(1, 1, 3, 32), torch.randn(1, 1, 3, 32), torch.arange(3), cfg)
    assert cache_info()["entries"] == 0


def test_set_cache_limit_rejects_bad_values_and_zero_disables():
    with pytest.raises(ValueError, match="max_bytes"):
        set_cache_limit(-1)
    with pytest.raises(ValueError, match="max_bytes"):
        set_cache_limit(1.5)
    set_cache_limit(0)
    q = torch.randn(1, 1, 2, 32)
    rotate(q, torch.arange(2), CONFIGS["default"])
    assert cache_info()["entries"] == 0


def test_threads_share_the_cache_safely():
    cfg = CONFIGS["llama3"]
    set_cache_limit(40_000)  # small: threads evict each other's windows
    errors = []

    def work(seed: int):
        gen = torch.Generator().manual_seed(seed)
        for step in range(60):
            offset = int(torch.randint(0, 10**7, (1,), generator=gen))
            positions = torch.tensor([[offset], [offset + step]])
            q, k = torch.randn(2, 2, 1, 32, generator=gen), torch.randn(2, 1, 1, 32, generator=gen)
            got = rotate_qk(q, k, positions, cfg)
            want = _uncached_qk(q, k, positions, cfg)
            if not (torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])):
                errors.append((seed, step))
        assert cache_info()["bytes"] <= 40_000

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert cache_info()["bytes"] <= 40_000


def test_apply_rotary_small_inputs_match_reference():
    from ropelab.reference import apply_rotary_reference

    x = torch.randn(2, 3, 1, 16)
    cos, sin = rope_cos_sin(torch.tensor([3]), RopeConfig(head_dim=16))
    torch.testing.assert_close(apply_rotary(x, cos, sin), apply_rotary_reference(x, cos, sin, "half"))


def test_compile_after_a_warm_cache():
    torch._dynamo.reset()
    cfg = CONFIGS["default"]
    q, k = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 1, 32)
    positions = torch.tensor([[12345]])
    eager = rotate_qk(q, k, positions, cfg)
    compiled = torch.compile(lambda q, k, p: rotate_qk(q, k, p, cfg), fullgraph=True, dynamic=True)
    got = compiled(q, k, positions)
    torch.testing.assert_close(got[0], eager[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got[1], eager[1], atol=1e-6, rtol=1e-6)


def test_memo_serves_alternating_positions_and_stays_bounded():
    from ropelab import rotary_tables

    cfg = CONFIGS["default"]
    q, k = torch.randn(1, 4, 1, 32), torch.randn(1, 2, 1, 32)
    tensors = [torch.tensor([[1000 + i]]) for i in range(12)]
    for _ in range(2):
        for positions in tensors:
            assert torch.equal(rotate_qk(q, k, positions, cfg)[0], _uncached_qk(q, k, positions, cfg)[0])
    assert len(rotary_tables._memo()) <= rotary_tables._MEMO_ENTRIES
