"""Which adapter serves a rotary module outside the generic path, read from its family.

transformers' generic rotary modules (``forward(x, position_ids[, layer_type]) -> (cos, sin)``) are
served by :class:`~ropelab.integrations.hf.adapters.HFRotaryAdapter` from their config alone
(:mod:`ropelab.integrations.hf.patching`). The others are recognised here, by class name or by
model_type, each with the data that sizes its adapter and the probe inputs it is checked on:

- :func:`_special_adapter`: complex ``freqs_cis`` modules, Llama 4's vision tower, ESMFold 2's
  coordinate modules, HunYuan-VL's text tower, Gemma 4's vision tower, the DINOv3-style patch-centre
  modules, EfficientLoFTR and MusicFlamingo;
- :func:`_named_adapter`: rotary modules named otherwise (``ROTARY_CLASS_NAME``), called as
  ``forward(hidden_states)`` for positions ``0 .. S-1``: the conformer speech encoders and CLVP,
  whose sizes are data keyed by model_type (``_NAMED_ROTARY_CONFIGS``).

It also reads a config into a RopeConfig, turning a refusal into a :class:`PatchError` that names
the module.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import PatchError, RopeConfigError
from ropelab.integrations.hf.adapters import (
    HFAngleTableAdapter,
    HFChannelTableAdapter,
    HFComplexRotaryAdapter,
    HFCoordinateAdapter,
    HFFeatureGridAdapter,
    HFFixedGridAdapter,
    HFPatchCentreAdapter,
    HFRotaryAdapter,
    HFStackedTableAdapter,
    HFTimestampAdapter,
)
from ropelab.integrations.hf.dialects import _UNSUPPORTED_MROPE_MODEL_TYPES
from ropelab.integrations.hf.verify import (
    _PROBE_POSITIONS,
    _probe_length,
    _probe_positions,
    _probe_rows,
    _verify_outputs,
)

# HunYuan-VL (HunYuanVLRotaryEmbedding.recomposition_frequencies): the doubled [c, c] table is cut
# into mrope_section * 2 channel blocks, block k reading position row k % len(mrope_section), so
# the two channels of one pair can read different rows (not a rotation per pair): the M-RoPE towers
# RopeConfig refuses, one fact kept in dialects.py.
_CHANNEL_SECTION_MODEL_TYPES = _UNSUPPORTED_MROPE_MODEL_TYPES

# Gemma 4's vision tower (Gemma4VisionRotaryEmbedding, apply_multidimensional_rope): positions
# [B, N, 2] (x, y), and each axis' block of pairs gets its own [c, c] half of the head.
_AXIS_HALF_MODEL_TYPES = frozenset({"gemma4_vision"})

# DINOv3-style towers (EomtDinov3RotaryEmbedding): forward(pixel_values), axial angles 2 pi * patch centre
# in [-1, 1] * inv_freq, [row block | column block], half-split (the config's training-mode augmentation
# keys: adapters._PATCH_CENTRE_AUGMENTATION).
# DINOv3ViTRopePositionEmbedding and Sapiens2RopePositionEmbedding are the same module (same keys).
_PATCH_CENTRE_MODEL_TYPES = frozenset({"eomt_dinov3", "dinov3_vit", "sapiens2"})

# Rotary modules over physical coordinates that keep their config values as attributes, not a config, by
# class name: {atom-config key: module attribute} (EsmFold2RotaryEmbedding.__init__, transformers 5.23).
_COORDINATE_MODULE_KEYS = {
    "EsmFold2RotaryEmbedding": {
        "num_spatial_rope_pairs_per_axis": "num_spatial_pairs_per_axis",
        "num_uid_rope_pairs": "num_uid_pairs",
        "spatial_rope_base_frequency": "spatial_rope_base_frequency",
        "uid_rope_base_frequency": "uid_rope_base_frequency",
    },
}

# Sizes of the `forward(hidden_states)` rotary modules, keyed by the model_type of the config that builds
# them (transformers 5.23, __init__ of the module named in each comment): "heads" is the config key that
# divides hidden_size into heads (D = hidden_size // config[heads]); "base" a config key or the number the
# module writes; "rotary_dim" (R, default D) a function of the config.
_NAMED_ROTARY_CONFIGS: dict[str, dict[str, Any]] = {
    # Wav2Vec2ConformerRotaryPositionalEmbedding
    "wav2vec2-conformer": {"heads": "num_attention_heads", "base": "rotary_embedding_base"},
    # Wav2Vec2BertRotaryPositionalEmbedding
    "wav2vec2-bert": {"heads": "num_attention_heads", "base": "rotary_embedding_base"},
    # SeamlessM4TConformerRotaryPositionalEmbedding: the heads of the speech encoder
    "seamless_m4t": {"heads": "speech_encoder_attention_heads", "base": "rotary_embedding_base"},
    # ClvpRotaryPositionalEmbedding: the leading max(projection_dim // (2 * heads), 32) channels, base 10000
    "clvp_encoder": {
        "heads": "num_attention_heads",
        "base": 10000.0,
        "rotary_dim": lambda c: max(c.projection_dim // (2 * c.num_attention_heads), 32),
    },
}

# What each of those modules returns: "stacked" torch.stack([cos, sin]) [2, S, 1, 1, D], "angles" [1, S, R].
_NAMED_OUTPUT_KINDS = {
    "Wav2Vec2ConformerRotaryPositionalEmbedding": "stacked",
    "Wav2Vec2BertRotaryPositionalEmbedding": "stacked",
    "SeamlessM4TConformerRotaryPositionalEmbedding": "stacked",
    "ClvpRotaryPositionalEmbedding": "angles",
}


def rotary_output_kind(module: nn.Module) -> str | None:
    """``"stacked"`` (one ``[2, ...]`` tensor of cos and sin), ``"angles"`` (a real table of angles) or
    None (``(cos, sin)`` tuples, complex ``freqs_cis``) for a rotary module, original or adapter."""
    return getattr(module, "output_kind", None) or _NAMED_OUTPUT_KINDS.get(type(module).__name__)


@contextlib.contextmanager
def _config_read_for(name: str, module: nn.Module):
    """Turn a RopeConfigError raised inside into a PatchError naming the module being patched."""
    try:
        yield
    except RopeConfigError as error:
        raise PatchError(
            f"cannot patch {name} ({type(module).__name__}): its config is not one ropelab reads: {error}"
        ) from error


def _read_config(config: Any, name: str, module: nn.Module) -> RopeConfig:
    with _config_read_for(name, module):
        return RopeConfig.from_hf(config)


def _read_rope(config: Any, name: str, module: nn.Module) -> LayerTypeRope:
    with _config_read_for(name, module):
        return RopeConfig.by_layer_type(config)


def _returns_complex(module: nn.Module, device: torch.device) -> bool:
    """True when ``module(x, position_ids)`` answers with a complex tensor (``freqs_cis``)."""
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, device=device), torch.arange(2, device=device)[None])
    except Exception:  # noqa: BLE001 (not callable that way: the generic path reports it)
        return False
    return isinstance(out, torch.Tensor) and out.is_complex()


def _llama4_vision_positions(config: Any) -> torch.Tensor:
    """The ``[g*g + 1, 2]`` (x + 1, y + 1) patch positions of ``Llama4VisionRotaryEmbedding._compute_freqs_ci``
    (``g = image_size // patch_size``, raster order), then its class token, whose angles it zeroes: (0, 0)."""
    side = config.image_size // config.patch_size
    index = torch.arange(side * side)
    patches = torch.stack([index % side + 1, index // side + 1], dim=-1)
    return torch.cat([patches, patches.new_zeros(1, 2)])


def _coordinate_module_config(module: nn.Module) -> dict[str, Any]:
    """The config keys a coordinate rotary module holds as attributes (:data:`_COORDINATE_MODULE_KEYS`),
    and its head width: ESMFold 2's ``head_dim // 2`` is its active pairs (``3 * spatial + uid``) plus
    ``num_inactive_channels``."""
    keys = {
        key: getattr(module, attribute) for key, attribute in _COORDINATE_MODULE_KEYS[type(module).__name__].items()
    }
    active = 3 * keys["num_spatial_rope_pairs_per_axis"] + keys["num_uid_rope_pairs"]
    return {**keys, "head_dim": 2 * (active + module.num_inactive_channels)}


def _coordinate_probe(cfg: RopeConfig, device: torch.device) -> tuple:
    """``(coordinates [1, L, A-1], ids [1, L], float32)``: fractional coordinates and integer ids,
    each axis a different shuffle (see :func:`_probe_positions`)."""
    rows = _probe_positions(cfg, _PROBE_POSITIONS, device)  # [L, A]
    return (rows[None, :, :-1].float() * 0.375, rows[None, :, -1], torch.float32)


def _section_channels(sections: list[int]) -> tuple[int, ...]:
    """HunYuan-VL: the position row of each channel of the doubled table, block ``k`` of ``2 * sections[k]``
    channels reading row ``k % len(sections)``."""
    return tuple(k % len(sections) for k, size in enumerate(sections) for _ in range(2 * size))


def _axis_half_channels(cfg: RopeConfig) -> tuple[int, ...]:
    """Each axis' block of ``P/A`` pairs as its own ``[c, c]`` (Gemma 4 vision: ``[x, x, y, y]``)."""
    block = cfg.num_pairs // cfg.num_axes
    return tuple(start + c % block for start in range(0, cfg.num_pairs, block) for c in range(2 * block))


def _patch_size(config: Any) -> tuple[int, int]:
    size = config.patch_size
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


def _feature_map_probe(config: Any, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """A ``[1, 1, H, W]`` feature map that EfficientLoFTR's query aggregation turns into ``rows x cols`` tokens."""
    kernel, stride = config.q_aggregation_kernel_size, config.q_aggregation_stride
    return torch.zeros(1, 1, (rows - 1) * stride + kernel, (cols - 1) * stride + kernel, device=device)


def _timestamp_probe(config: Any, windows: int, frames: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """MusicFlamingo's ``(timestamps [windows, frames], seq_len)`` for one sample of ``windows`` windows
    (as ``MusicFlamingoModel._build_audio_timestamps`` lays them out)."""
    index = torch.arange(windows * frames, device=device, dtype=torch.float32).view(windows, frames)
    return index * (4 * config.audio_frame_step), frames


def _special_adapter(
    module: nn.Module, name: str, cfg: RopeConfig | LayerTypeRope | None, config: Any, verify: bool
) -> HFRotaryAdapter | None:
    """The adapter of a module outside the generic path (see the module docstring), checked against
    the module on probe inputs if ``verify``; None for a generic module."""
    if isinstance(cfg, LayerTypeRope):
        if not cfg.uniform:
            return None  # one RoPE per layer type: the layer-typed path serves it or says why not
        cfg = next(iter(cfg.values()))
    device = next((b.device for b in module.buffers()), torch.device("cpu"))
    found = _special_adapter_and_probe(module, name, cfg, config, device)
    if found is None:
        return None
    adapter, probe = found
    adapter.train(module.training)  # the model's mode (an adapter may answer differently in training)
    if verify:
        _verify_outputs(module, adapter, name, probe)
    return adapter


def _special_adapter_and_probe(
    module: nn.Module, name: str, cfg: RopeConfig | None, config: Any, device: torch.device
) -> tuple[HFRotaryAdapter, tuple] | None:
    """The adapter of a module outside the generic path, recognised by class name or model_type (or,
    last, by answering with complex ``freqs_cis``), and the inputs to probe both with; None for a
    generic module. ``cfg`` imposes the RoPE; None reads it from ``config``."""
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    model_type = getattr(config, "model_type", None)
    if type(module).__name__ == "Llama4VisionRotaryEmbedding":
        # Its config says rope_type "default", but the module is 2D axial over (x, y), interleaved (complex).
        module_cfg = cfg or _read_config(config, name, module).replace(rope_type="axial", layout="interleaved")
        return HFFixedGridAdapter(module_cfg, _llama4_vision_positions(config), config), (dummy,)
    if type(module).__name__ in _COORDINATE_MODULE_KEYS:
        # It keeps no config (the model's is not the atom encoder's): read the keys it holds.
        module_cfg = cfg or _read_config(_coordinate_module_config(module), name, module)
        return HFCoordinateAdapter(module_cfg), _coordinate_probe(module_cfg, device)
    if model_type in _CHANNEL_SECTION_MODEL_TYPES and (config.rope_parameters or {}).get("mrope_section"):
        adapter = _section_table_adapter(module, name, cfg, config)
        rows = _probe_rows(len(adapter.mrope_section), _probe_length(adapter.cfg), device)
        return adapter, (dummy, rows)
    if model_type in _AXIS_HALF_MODEL_TYPES:
        module_cfg = cfg or _read_config(config, name, module)
        adapter = HFChannelTableAdapter(module_cfg, _axis_half_channels(module_cfg), config)
        return adapter, (dummy, _probe_positions(module_cfg, _PROBE_POSITIONS, device)[None])  # batched [1, N, A]
    if model_type in _PATCH_CENTRE_MODEL_TYPES:
        # Its config says rope_type "default"; the module is axial over (row, column) patch centres.
        module_cfg = cfg or _read_config(config, name, module).replace(rope_type="axial")
        adapter = HFPatchCentreAdapter(module_cfg, _patch_size(config), config)
        rows, cols = 5 * adapter.patch_size[0], 7 * adapter.patch_size[1]  # a 5 x 7 grid of patches
        return adapter, (torch.zeros(1, 3, rows, cols, device=device),)
    if type(module).__name__ == "EfficientLoFTRRotaryEmbedding":
        adapter = HFFeatureGridAdapter(cfg or _read_config(config, name, module), config)
        return adapter, (_feature_map_probe(config, 7, 5, device),)  # rows != columns: a transposed grid fails
    if type(module).__name__ == "MusicFlamingoRotaryEmbedding":
        adapter = HFTimestampAdapter(cfg or _read_config(config, name, module), config)
        return adapter, _timestamp_probe(config, 16, 32, device)  # up to 20 s: angles of tens of radians
    if _returns_complex(module, device):
        module_cfg = cfg or _read_config(config, name, module)
        positions = _probe_positions(module_cfg, _probe_length(module_cfg), device)
        return HFComplexRotaryAdapter(module_cfg, config), (dummy, positions)
    return None


def _section_table_adapter(module: nn.Module, name: str, cfg: RopeConfig | None, config: Any) -> HFChannelTableAdapter:
    """HunYuan-VL's text tower: one-axis tables whose channels read the position rows that its
    ``mrope_section`` assigns them (the RopeConfig is read without the sections, which it refuses)."""
    sections = list(config.rope_parameters["mrope_section"])
    params = {k: v for k, v in config.rope_parameters.items() if k != "mrope_section"}
    module_cfg = cfg or _read_config({**config.to_dict(), "rope_parameters": params}, name, module)
    half = tuple(c % module_cfg.num_pairs for c in range(module_cfg.rotary_dim))
    adapter = HFChannelTableAdapter(module_cfg, half, config, _section_channels(sections), len(sections))
    adapter.mrope_section = sections  # HunYuanVLModel counts its position rows from rotary_emb.mrope_section
    return adapter


def _owner_config(model: nn.Module, name: str) -> Any:
    """The config of the innermost module around ``name`` whose model_type has sizes in
    ``_NAMED_ROTARY_CONFIGS`` (CLVP's encoders hold their own config), else the model's."""
    parts = name.split(".")[:-1]
    for end in range(len(parts), -1, -1):
        config = getattr(model.get_submodule(".".join(parts[:end])), "config", None)
        if getattr(config, "model_type", None) in _NAMED_ROTARY_CONFIGS:
            return config
    return getattr(model, "config", None)


def _named_rope(config: Any, name: str, module: nn.Module) -> RopeConfig:
    """The RopeConfig of a named module, read from ``config`` as ``_NAMED_ROTARY_CONFIGS`` says."""
    model_type = getattr(config, "model_type", None)
    spec = _NAMED_ROTARY_CONFIGS.get(model_type)
    what = f"{name} ({type(module).__name__})"
    if spec is None:
        raise PatchError(
            f"cannot patch {what}: model_type={model_type!r} is not one whose sizes ropelab reads for "
            f"it: expected one of {', '.join(sorted(_NAMED_ROTARY_CONFIGS))}"
        )
    base = spec["base"] if not isinstance(spec["base"], str) else getattr(config, spec["base"])
    with _config_read_for(name, module):
        return RopeConfig(
            head_dim=config.hidden_size // getattr(config, spec["heads"]),
            base=base,
            rotary_dim=spec["rotary_dim"](config) if "rotary_dim" in spec else None,
            source=f"transformers {type(module).__name__} ({model_type})",
        )


def _named_adapter(
    model: nn.Module, module: nn.Module, name: str, cfg: RopeConfig | LayerTypeRope | None, verify: bool
) -> HFRotaryAdapter | None:
    """The adapter of a ``forward(hidden_states)`` module of ``_NAMED_OUTPUT_KINDS``, checked against it on a
    probe length if ``verify`` (its own cache is left as it was); None for any other module."""
    kind = _NAMED_OUTPUT_KINDS.get(type(module).__name__)
    if kind is None:
        return None
    if isinstance(cfg, LayerTypeRope):
        raise PatchError(
            f"cannot patch {name} ({type(module).__name__}): it has one RoPE, not one per layer type; pass a RopeConfig"
        )
    config = _owner_config(model, name)
    module_cfg = cfg or _named_rope(config, name, module)
    adapter = (HFStackedTableAdapter if kind == "stacked" else HFAngleTableAdapter)(module_cfg, config)
    adapter.train(module.training)
    if verify:
        device = next((b.device for b in module.buffers()), torch.device("cpu"))
        cached = {key: value for key, value in vars(module).items() if key.startswith("cached_")}
        try:
            _verify_outputs(module, adapter, name, (torch.zeros(1, _probe_length(module_cfg), 1, device=device),))
        finally:
            vars(module).update(cached)
    return adapter
