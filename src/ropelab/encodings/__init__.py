"""Position encodings behind one interface (:class:`PositionEncoding`: embed / transform_qk / score_bias).

Build one by name::

    enc = build_encoding("alibi", dim=128, num_heads=4, max_positions=128)
    x = enc.embed(x, positions)                     # [B, S, C]
    q, k = enc.transform_qk(q, k, positions)        # [B, H, S, Dh]
    bias = enc.score_bias(positions, positions)     # [H, S, S] or None
"""

from __future__ import annotations

from ropelab.config import RopeConfig
from ropelab.encodings.alibi import AlibiEncoding, alibi_slopes
from ropelab.encodings.base import EncodingError, PositionEncoding, relative_distance
from ropelab.encodings.learned import LearnedEncoding
from ropelab.encodings.nope import NoPositionEncoding
from ropelab.encodings.rope import RopeEncoding
from ropelab.encodings.sinusoidal import SinusoidalEncoding, sinusoidal_table
from ropelab.encodings.t5 import T5BiasEncoding, t5_causal_bucket
from ropelab.encodings.xpos import XposEncoding, xpos_scale, xpos_zeta

__all__ = [
    "ENCODINGS",
    "AlibiEncoding",
    "EncodingError",
    "LearnedEncoding",
    "NoPositionEncoding",
    "PositionEncoding",
    "RopeEncoding",
    "SinusoidalEncoding",
    "T5BiasEncoding",
    "XposEncoding",
    "alibi_slopes",
    "build_encoding",
    "check_encoding_name",
    "relative_distance",
    "sinusoidal_table",
    "t5_causal_bucket",
    "xpos_scale",
    "xpos_zeta",
]

ENCODINGS = ("sinusoidal", "learned", "t5", "alibi", "nope", "rope", "xpos")


def check_encoding_name(name: str) -> str:
    """Return ``name`` if it is a known encoding, else raise :class:`EncodingError` listing them."""
    if name not in ENCODINGS:
        raise EncodingError(f"encoding={name!r} is unknown: expected one of {', '.join(ENCODINGS)}")
    return name


def build_encoding(
    name: str,
    *,
    dim: int,
    num_heads: int,
    max_positions: int,
    rope: RopeConfig | dict | None = None,
    clamp: bool = False,
    num_buckets: int = 32,
    max_distance: int = 128,
    **_: object,
) -> PositionEncoding:
    """An encoding for a model of width ``dim`` with ``num_heads`` heads trained at ``max_positions``.

    Args:
        name: one of :data:`ENCODINGS`.
        rope: the RoPE variant for ``rope`` / ``xpos`` (a RopeConfig or its ``to_hf()`` dict);
            default: plain RoPE, base 10000, over the whole head.
        clamp: learned only: reuse the last row past the table instead of raising.
        num_buckets, max_distance: t5 only.
    """
    check_encoding_name(name)
    head_dim = dim // num_heads
    if name == "sinusoidal":
        return SinusoidalEncoding(dim)
    if name == "learned":
        return LearnedEncoding(dim, max_positions, clamp=clamp)
    if name == "t5":
        return T5BiasEncoding(num_heads, num_buckets, max_distance)
    if name == "alibi":
        return AlibiEncoding(num_heads)
    if name == "nope":
        return NoPositionEncoding()
    if isinstance(rope, dict):
        rope = RopeConfig.from_hf(rope)
    cfg = rope or RopeConfig(head_dim=head_dim, max_position_embeddings=max_positions)
    if cfg.head_dim != head_dim:
        raise EncodingError(f"rope head_dim={cfg.head_dim} is invalid: expected dim // num_heads = {head_dim}")
    return RopeEncoding(cfg) if name == "rope" else XposEncoding(cfg)
