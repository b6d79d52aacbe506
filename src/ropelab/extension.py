"""One scaled RoPE per context-extension method, for a model trained at ``T`` and run at ``factor * T``.

This is the single place that turns "extend this model ``factor`` times with method M" into a
:class:`~ropelab.config.RopeConfig`; the demo tables, the lab and the real-model extension all use it.

- ``extrapolate``: the unscaled frequencies (the baseline: positions past ``T`` are new angles);
- ``linear``: position interpolation, every ``theta_i / factor`` (Chen et al. 2023, eq. 4, sec. 2.3);
- ``ntk``: "NTK-aware" base change ``base * factor^(R / (R - 2))`` (bloc97 2023; Peng et al. 2023, sec. 3.1);
- ``dynamic``: NTK with the factor set by the current length; its ``max_position_embeddings`` must
  stay ``T``, or it scales nothing up to the new length (transformers issue #25306);
- ``yarn``: NTK-by-parts ramp and attention temperature (Peng et al. 2023);
- ``llama3``: wavelength-banded interpolation with Llama 3.1's band factors.
"""

from __future__ import annotations

from ropelab.config import _SCALING_KEYS, RopeConfig
from ropelab.errors import RopeConfigError

__all__ = ["EXTENSION_METHODS", "LLAMA3_LOW_FREQ_FACTOR", "LLAMA3_HIGH_FREQ_FACTOR", "extension_config"]

#: The context-extension methods :func:`extension_config` builds (``extrapolate`` is the model as it is).
EXTENSION_METHODS = ("extrapolate", "linear", "ntk", "dynamic", "yarn", "llama3")

# Llama 3.1's rope_scaling: low_freq_factor 1, high_freq_factor 4 (Meta, config.json of Llama-3.1-8B).
LLAMA3_LOW_FREQ_FACTOR = 1.0
LLAMA3_HIGH_FREQ_FACTOR = 4.0


def extension_config(base: RopeConfig, method: str, trained_length: int, factor: float) -> RopeConfig:
    """The RoPE of ``method`` for a model trained at ``trained_length`` tokens, extended ``factor`` times.

    The base's own scaling is dropped first, so ``base`` may already be scaled. The result's
    ``max_position_embeddings`` is the new length ``factor * trained_length`` (the trained length
    for ``dynamic``, whose scale starts there), so :meth:`RopeConfig.to_hf` hands over a config that
    transformers loads as is.

    Raises:
        RopeConfigError: ``method`` is not one of :data:`EXTENSION_METHODS`, or ``factor < 1``, or
            ``trained_length`` is not a positive integer.
    """
    if method not in EXTENSION_METHODS:
        raise RopeConfigError(f"method={method!r} is unknown: expected one of {', '.join(EXTENSION_METHODS)}")
    if not factor >= 1:
        raise RopeConfigError(f"factor={factor} is invalid: expected a number >= 1")
    if isinstance(trained_length, bool) or not isinstance(trained_length, int) or trained_length <= 0:
        raise RopeConfigError(f"trained_length={trained_length!r} is invalid: expected a positive integer")
    plain = base.replace(
        rope_type="default", max_position_embeddings=trained_length, **dict.fromkeys(_SCALING_KEYS)
    )  # every scaling field cleared
    if method == "extrapolate":
        return plain
    if method == "dynamic":
        return plain.replace(rope_type="dynamic", factor=factor)
    extended = plain.replace(factor=factor, max_position_embeddings=int(round(trained_length * factor)))
    if method in ("linear", "ntk"):
        return extended.replace(rope_type=method)
    if method == "yarn":
        return extended.replace(rope_type="yarn", original_max_position_embeddings=trained_length)
    return extended.replace(
        rope_type="llama3",
        original_max_position_embeddings=trained_length,
        low_freq_factor=LLAMA3_LOW_FREQ_FACTOR,
        high_freq_factor=LLAMA3_HIGH_FREQ_FACTOR,
    )
