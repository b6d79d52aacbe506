"""Position encodings behind one interface (:class:`~ropelab.encodings.base.PositionEncoding`: embed / transform_qk / score_bias).

Build one by name::

    enc = build_encoding("alibi", dim=128, num_heads=4, max_positions=128)
    x = enc.embed(x, positions)                     # [B, S, C]
    q, k = enc.transform_qk(q, k, positions)        # [B, H, S, Dh]
    bias = enc.score_bias(positions, positions)     # [H, S, S] or None
"""

from __future__ import annotations

from ropelab.encodings.alibi import AlibiEncoding, alibi_slopes
from ropelab.encodings.base import EncodingError, PositionEncoding, relative_distance
from ropelab.encodings.learned import LearnedEncoding
from ropelab.encodings.nope import NoPositionEncoding
from ropelab.encodings.rope import RopeEncoding, rope_for_model
from ropelab.encodings.sinusoidal import SinusoidalEncoding, sinusoidal_table
from ropelab.encodings.t5 import T5BiasEncoding, t5_causal_bucket
from ropelab.encodings.xpos import XposEncoding, xpos_scale, xpos_zeta

__all__ = [
    "ENCODINGS",
    "ENCODING_CLASSES",
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
    "rope_for_model",
    "sinusoidal_table",
    "t5_causal_bucket",
    "xpos_scale",
    "xpos_zeta",
]

# The registry: name -> class; each class declares the options it accepts (``options``).
ENCODING_CLASSES: dict[str, type[PositionEncoding]] = {
    cls.name: cls
    for cls in (
        SinusoidalEncoding,
        LearnedEncoding,
        T5BiasEncoding,
        AlibiEncoding,
        NoPositionEncoding,
        RopeEncoding,
        XposEncoding,
    )
}
#: The encoding names :func:`build_encoding` accepts.
ENCODINGS = tuple(ENCODING_CLASSES)


def check_encoding_name(name: str) -> str:
    """Return ``name`` if it is a known encoding, else raise :class:`EncodingError` listing them."""
    if name not in ENCODING_CLASSES:
        raise EncodingError(f"encoding={name!r} is unknown: expected one of {', '.join(ENCODINGS)}")
    return name


def build_encoding(name: str, *, dim: int, num_heads: int, max_positions: int, **options: object) -> PositionEncoding:
    """An encoding for a model of width ``dim`` with ``num_heads`` heads trained at ``max_positions``.

    Args:
        name: one of :data:`ENCODINGS`.
        options: those the encoding declares in its ``options``:

            - ``rope`` (rope, xpos): the RoPE variant, a RopeConfig or its ``to_hf()`` dict;
              default plain RoPE, base 10000, over the whole head;
            - ``scale_base`` (xpos): the decay's scale base (512);
            - ``clamp`` (learned): reuse the last row past the table instead of raising;
            - ``num_buckets``, ``max_distance`` (t5);
            - ``base`` (sinusoidal): the wavelength base (10000).

    Raises:
        EncodingError: an unknown ``name``, or an option the encoding does not accept (the
            message names it and the accepted ones).
    """
    cls = ENCODING_CLASSES[check_encoding_name(name)]
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        accepted = f"one of {', '.join(cls.options)}" if cls.options else "no options"
        raise EncodingError(
            f"option {unknown[0]}={options[unknown[0]]!r} is unknown for encoding={name!r}: expected {accepted}"
        )
    return cls.from_model(dim=dim, num_heads=num_heads, max_positions=max_positions, **options)
