"""ropelab: rotary position embedding, exact and fast, explained, and tested in a lab.

Core API::

    cfg = ropelab.RopeConfig.from_hf("config.json")          # or a dict, or a transformers config
    rope = ropelab.RopeConfig.by_layer_type(config)          # LayerTypeRope: one RopeConfig per layer type
    inv_freq, attention_factor = ropelab.rope_frequencies(cfg, seq_len=None)
    q = ropelab.rotate(q, positions, cfg)                     # q [B, H, S, D], positions [S] or [B, S]
    q, k = ropelab.rotate_qk(q, k, positions, cfg)            # GQA: different head counts

Multi-axis RoPE (M-RoPE of Qwen2-VL and its relatives, 2D axial RoPE of vision towers): a config
with ``mrope_section`` or ``rope_type="axial"`` takes one position row per axis, ``[A, B, S]``, and
pair ``i`` turns by ``positions[cfg.pair_axes[i]] * inv_freq[i]``.
"""

from ropelab.config import LAYOUTS, ROPE_TYPES, LayerTypeRope, RopeConfig, register_hf_reader
from ropelab.errors import RopeConfigError, RopelabError
from ropelab.frequencies import rope_frequencies
from ropelab.integrations.hf.dialects import read_rope
from ropelab.modules import RotaryEmbedding
from ropelab.presets import preset
from ropelab.rotary import apply_rotary, rope_angles, rope_cos_sin, rotate, rotate_qk

# RopeConfig.from_hf / by_layer_type read transformers configs through the dialects of
# ropelab.integrations.hf, which sit above ropelab.config (config imports nothing but ropelab.errors).
register_hf_reader(read_rope)

__version__ = "0.2.0"

__all__ = [
    "LAYOUTS",
    "ROPE_TYPES",
    "LayerTypeRope",
    "RopeConfig",
    "RopeConfigError",
    "RopelabError",
    "RotaryEmbedding",
    "apply_rotary",
    "preset",
    "rope_angles",
    "rope_cos_sin",
    "rope_frequencies",
    "rotate",
    "rotate_qk",
]
