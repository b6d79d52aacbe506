"""transformers' config dialects: how each model type's ``config.json`` states its RoPE, read into ropelab.

transformers keeps much of a model's RoPE outside the ``rope_parameters`` block: in the model_type (which
families rotate adjacent pairs, which M-RoPE composition and default sections a text tower uses, how a
vision tower lays out its axes), in head-width formulas, in the older flat keys of per-layer-type
families, and in class attributes absent from ``config.json``. That knowledge drifts with each
transformers release, so it lives here, each fact citing the transformers module it was read from,
beside the other per-family data of :mod:`ropelab.integrations.hf`.

:func:`read_rope` turns a transformers config object, a plain dict or a path to a ``config.json`` into a
:class:`~ropelab.config.LayerTypeRope`. :meth:`RopeConfig.from_hf <ropelab.config.RopeConfig.from_hf>`
and :meth:`RopeConfig.by_layer_type <ropelab.config.RopeConfig.by_layer_type>` call it through the
reader that ``import ropelab`` registers (``ropelab.config`` imports nothing above ``ropelab.errors``).
This module imports only the standard library, :mod:`ropelab.config` and :mod:`ropelab.errors`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from typing import Any

from ropelab.config import _SCALING_KEYS, ALL_LAYERS, AXIAL_ROPE_TYPE, LayerTypeRope, RopeConfig, _fail
from ropelab.errors import RopeConfigError

__all__ = ["read_rope"]

# ====================================================================== the dialects
# ----- one-axis and multi-axis families, by model_type
# model_type values whose attention rotates adjacent pairs (x[2i], x[2i+1]) rather than halves.
# GPT-J and CodeGen: transformers' rotate_every_two; Cohere, Cohere2, Cohere2-MoE and BLT (each of
# its four sub-models): repeat_interleave'd cos/sin with an interleaved rotate_half.
_INTERLEAVED_MODEL_TYPES = frozenset(
    {
        "gptj",
        "codegen",
        "cohere",
        "cohere2",
        "cohere2_moe",
        "blt",
        "blt_local_encoder",
        "blt_local_decoder",
        "blt_global_transformer",
        "blt_patcher",
        # Ergo (transformers 5.25, models/ergo/modeling_ergo.py): ErgoRotaryEmbedding repeat_interleave's its
        # tables, and its attention uses Cohere2-MoE's apply_rotary_pos_emb (interleaved rotate_half).
        "ergo",
        # M-RoPE text towers that rotate adjacent pairs with repeat_interleave'd tables (rotate_half_llm /
        # rotate_half_text): GLM-4V, GLM-OCR, Ernie 4.5-VL.
        "glm4v_text",
        "glm_ocr_text",
        "ernie4_5_vl_moe_text",
        # Axial vision towers with repeat_interleave'd tables and rotate_pairwise: Inkling2, SAM 3's ViT
        # (Sam3ViTRotaryEmbedding with apply_rotary_pos_emb_2d), and the memory attention of the SAM 2 video
        # family (Sam2VideoVisionRotaryEmbedding and its copies, with apply_rotary_pos_emb_2d*).
        "inkling2_vision",
        "sam3_vit_model",
        "sam2_video",
        "sam3_tracker_video",
        "edgetam_video",
    }
)

# M-RoPE text towers by model_type: (composition, the sections their rotary module uses when the
# config has none). Both live in each family's rotary module in transformers 5.23, not in its config
# (the `mrope_section` defaults of Qwen2VLRotaryEmbedding, Qwen3VLTextRotaryEmbedding,
# Glm4vTextRotaryEmbedding, Ernie4_5_VLMoeTextRotaryEmbedding, Qwen3_5TextRotaryEmbedding, ...).
_MROPE_FAMILIES = {
    **dict.fromkeys(
        ("qwen2_vl_text", "qwen2_5_vl_text", "qwen2_5_omni_text", "qwen2_5_omni_talker", "paddleocr_vl_text"),
        ("contiguous", (16, 24, 24)),
    ),
    **dict.fromkeys(("glm4v_text", "glm4v_moe_text", "glm_image_text", "glm_ocr_text"), ("contiguous", (8, 12, 12))),
    **dict.fromkeys(
        (
            "qwen3_vl_text",
            "qwen3_vl_moe_text",
            "qwen3_omni_moe_text",
            "qwen3_omni_moe_talker_text",
            "cosmos3_edge_text",
            "cohere_compass_text",
        ),
        ("interleaved", (24, 20, 20)),
    ),
    **dict.fromkeys(("qwen3_5_text", "qwen3_5_moe_text", "qwen4_exp_text"), ("interleaved", (11, 11, 10))),
    # HYV4VLRotaryEmbedding (transformers 5.25, models/hy_v4_vl/modeling_hy_v4_vl.py): Qwen3-VL's interleaved
    # recomposition; HYV4VLTextConfig.convert_rope_params_to_dict fills mrope_section with [12, 10, 10].
    "hy_v4_vl_text": ("interleaved", (12, 10, 10)),
    "ernie4_5_vl_moe_text": ("spatial_interleaved", (22, 22, 20)),
    # NeoMMERotaryEmbedding (transformers 5.23, models/neomme/modeling_neomme.py, recomposition_frequencies):
    # positions (row, column), even pairs read the row and odd pairs the column, per layer type. A number
    # A for the sections: A equal sections of each layer type's rotated pairs (its width differs per type).
    "neomme": ("interleaved", 2),
}
# HunYuan-VL splits the doubled [c, c] table, not the pairs, into sections: the two channels of one
# pair can read different position rows, which is not a rotation per pair (HunYuanVLRotaryEmbedding).
# RopeConfig refuses it; ropelab.integrations.hf reproduces the module's tables channel by channel.
_UNSUPPORTED_MROPE_MODEL_TYPES = frozenset({"hunyuan_vl_text"})
# Axial vision towers whose pairs differ from Qwen2-VL's [row block | column block], by model_type: the
# axial fields their rotary module implies (transformers 5.23; the module named in each comment). Positions
# are the columns the tower passes, (row, column) = (h, w) unless said otherwise.
_AXIAL_FAMILIES: dict[str, dict[str, Any]] = {
    # PixtralVisionRotaryEmbedding: inv_freq[0::2] for the row, inv_freq[1::2] for the column.
    "pixtral": {"axial_frequencies": "alternating"},
    # Step3p7VisionRotaryEmbedding: freq.flip(1) puts the column block first, [w | h].
    "step3p5_vision": {"axial_order": (1, 0)},
    # Inkling2VisionRotaryEmbedding: cat([freq_w, freq_h]), repeat_interleave'd (rotate_pairwise attention).
    "inkling2_vision": {"axial_order": (1, 0)},
    # Kimi_K25VisionRotaryEmbedding: freq.transpose(1, 2).flip(-1): pairs w, h, w, h, ... sharing one ladder entry.
    "kimi_k25_vision": {"axial_order": (1, 0), "axial_composition": "interleaved"},
    # MiniMaxM3VLVisionRotaryEmbedding: positions (t, h, w), each axis rotating 2 * ((head_dim // 3) // 2)
    # channels (the largest even share); the remaining channels pass through.
    "minimax_m3_vl_vision": {"axial_order": (0, 1, 2), "even_axis_share": True},
}
# Two-axis rotary modules whose config says rope_type "default" and whose partial_rotary_factor sizes each
# axis' ladder, not the rotated share of a head (transformers 5.23, the module named in each comment): each
# axis reads the ladder of a RoPE over L = int(head_dim * partial_rotary_factor) channels ("repeated"), and
# the tables rotate 2 * L channels of a vector `width` wide; model_type -> the config key of that width,
# whether the tables span all of it (`whole`), and the axial fields. Read by _axis_ladder_form.
_AXIS_LADDER_FAMILIES: dict[str, dict[str, Any]] = {
    # EfficientLoFTRRotaryEmbedding (compute_embeddings) and EfficientLoFTRAttention: the whole hidden_size
    # vector turns before it splits into heads, pairs alternating row, column of the aggregated feature
    # grid; the config's default partial_rotary_factor 4.0 over hidden_size / 8 heads gives hidden_size / 2.
    "efficientloftr": {"width": "hidden_size", "whole": True, "axial_composition": "interleaved"},
    # MusicFlamingoRotaryEmbedding and apply_rotary_time_emb: [window-index block | time-index block] over
    # the first channels of the audio features, head_dim = the audio tower's hidden_size (MusicFlamingoConfig).
    "musicflamingo": {"width": "head_dim", "whole": False},
}
# model_type values whose attention rotates adjacent pairs of q and k with half-split [c, c] tables, as
# DeepSeek-V3 does when its config says `rope_interleave` (apply_rotary_pos_emb_interleave): HY-V4-VL's
# text model, in its attention and its indexer (transformers 5.25, models/hy_v4_vl/modeling_hy_v4_vl.py).
_DEINTERLEAVING_MODEL_TYPES = frozenset({"hy_v4_vl_text"})
# model_type -> the config key of the rotated width, which is the rotary module's head_dim whatever
# config.json's head_dim says: HYV4VLTextConfig.__post_init__ (transformers 5.25) sets head_dim to it.
_ROTARY_HEAD_DIM_KEYS = {"hy_v4_vl_text": "qk_rope_head_dim"}
# Vision configs whose attention width is `embed_dim` (`hidden_size` is the merger's output there).
_EMBED_DIM_MODEL_TYPES = frozenset({"qwen2_vl_vision"})
# Rotary modules whose head width is neither head_dim nor hidden_size // num_attention_heads, by model_type:
# (width key, divisor keys), head_dim = data[width key] // product of data[divisor keys].
_HEAD_DIM_FORMULAS: dict[str, tuple[str, tuple[str, ...]]] = {
    # The memory attention of the SAM 2 video family: Sam2VideoVisionRotaryEmbedding.compute_axial_rope_parameters
    # (copied in Sam3TrackerVideo... and EdgeTamVideo...; transformers 5.23), axial over the (w, h) feature grid
    # with the default (repeated, contiguous) pairs.
    **dict.fromkeys(
        ("sam2_video", "sam3_tracker_video", "edgetam_video"),
        ("memory_attention_hidden_size", ("memory_attention_downsample_rate", "memory_attention_num_attention_heads")),
    ),
}
# Axial RoPE over physical coordinates whose config gives each slot of pairs its own size and base (the
# axial_pairs / axial_bases fields), by name: the (pairs key, base key) of each slot, in pair order. transformers
# 5.23 gives these sub-configs no model_type (''), so a config holding all the keys is read this way too.
_COORDINATE_FAMILIES: dict[str, tuple[tuple[str, str], ...]] = {
    # EsmFold2RotaryEmbedding (models/esmfold2/modeling_esmfold2.py) over ref_pos (x, y, z) and ref_space_uid:
    # pairs [x | y | z | uid | inactive], half-split [c, c] tables over the whole head; the pairs past the
    # uid slot have frequency 0 (its num_inactive_channels).
    "esmfold2_atom_encoder": (("num_spatial_rope_pairs_per_axis", "spatial_rope_base_frequency"),) * 3
    + (("num_uid_rope_pairs", "uid_rope_base_frequency"),),
}

# model_type values whose transformers config carries a `rotary_dim` that its rotary module ignores
# (it rotates int(head_dim * partial_rotary_factor) channels): MiniMax-M3-VL's text model.
_IGNORED_ROTARY_DIM_MODEL_TYPES = frozenset({"minimax_m3_vl_text"})

# ----- keys of a rope parameter block and of a config
# Keys that transformers keeps inside a rope parameter block but that no rotary module reads, so the
# cos/sin tables do not depend on them. Named one by one; any other unknown key is reported.
_OUTSIDE_TABLE_KEYS = {
    # Ministral 3: the attention scales queries by 1 + beta * log(1 + floor(pos / original)) after
    # the rotation; the rotary module ignores it.
    "llama_4_scaling_beta",
    # Ministral 3: a copy of the top-level max_position_embeddings (accepted only when the two agree).
    "max_position_embeddings",
}
# M-RoPE keys of a rope parameter block: the sections, and the interleaving flag as Qwen3-VL
# (mrope_interleaved) and Qwen3-Omni (interleaved) checkpoints spell it.
_MROPE_KEYS = ("mrope_section", "mrope_interleaved", "interleaved")

# Top-level keys that show a config describes the language model itself (else: read its text_config).
_HEAD_AND_ROPE_KEYS = (
    "rope_parameters",
    "rope_scaling",
    "rope_theta",
    "head_dim",
    "hidden_size",
    "num_attention_heads",
    "n_embd",
    "d_model",
)

# ----- per-layer-type families
# transformers 5.23 builds per-layer-type rope_parameters from the flat keys of older config.json
# files in each family's `convert_rope_params_to_dict` (Gemma3TextConfig, Gemma3nTextConfig,
# T5Gemma2TextConfig / T5Gemma2DecoderConfig, ModernBertConfig, ModernBertDecoderConfig,
# Olmo3Config): model_type -> ({layer type: (theta key, default theta)}, layer types rope_scaling joins).
_GEMMA3_LEGACY = (
    {"full_attention": ("rope_theta", 1_000_000.0), "sliding_attention": ("rope_local_base_freq", 10_000.0)},
    ("full_attention",),
)
_MODERNBERT_LEGACY = (
    {"full_attention": ("global_rope_theta", 160_000.0), "sliding_attention": ("local_rope_theta", 10_000.0)},
    ("full_attention", "sliding_attention"),
)
_LEGACY_LAYER_TYPE_ROPE = {
    "gemma3_text": _GEMMA3_LEGACY, "gemma3n_text": _GEMMA3_LEGACY,
    "t5gemma2_text": _GEMMA3_LEGACY, "t5gemma2_decoder": _GEMMA3_LEGACY,
    "modernbert": _MODERNBERT_LEGACY, "modernbert-decoder": _MODERNBERT_LEGACY,
    "olmo3": ({"full_attention": ("rope_theta", 500_000.0), "sliding_attention": ("rope_theta", 500_000.0)},
              ("full_attention",)),
}  # fmt: skip

# `_rope_type_labels` of the transformers configs that key rope_parameters by something other than
# their layer types (class attributes, so absent from config.json): LFM3's `conv` layers have no RoPE,
# DeepSeek-V4 keys it by "main" / "compress".
_ROPE_TYPE_LABELS = {"lfm3": ("full_attention", "sliding_attention"), "deepseek_v4": ("main", "compress")}

# Configs whose flat rope block (or flat rope_theta) is the RoPE of one layer type, the others having none:
# model_type -> (that layer type, the layer types without RoPE, the config class's default_theta).
# ErgoConfig.convert_rope_params_to_dict (transformers 5.25, models/ergo/configuration_ergo.py): the flat
# block is the sliding-attention layers'; the full-attention layers use no position embeddings.
_FLAT_BLOCK_LAYER_TYPE = {"ergo": ("sliding_attention", ("full_attention",), 1_000_000.0)}

# Configs whose `layer_types` list each decoder layer as two blocks, its attention's layer type then this
# entry (and count num_hidden_layers in blocks), as released config.json files and to_dict() write it:
# DoryConfig.__post_init__ (transformers 5.25, models/dory/configuration_dory.py) reads layer_types[::2]
# when "mlp" is among them, and its rotary module (Gemma3RotaryEmbedding) is keyed by those types.
_BLOCK_PAIR_LAYER_TYPES = {"dory": "mlp"}

# Gemma 4 family: config.json's `global_head_dim` (transformers default 512) is the head width of the
# full-attention layers (their configs' __post_init__ turns it into per_layer_config overrides).
_GLOBAL_HEAD_DIM_MODEL_TYPES = frozenset(
    {"gemma4_text", "gemma4_unified_text", "diffusion_gemma_text", "embedding_gemma2_text"}
)
_DEFAULT_GLOBAL_HEAD_DIM = 512

# Per-layer-type RoPE types whose missing original_max_position_embeddings transformers fills with
# max_position_embeddings (standardize_rope_params, nested case).
_NEEDS_ORIGINAL = ("llama3", "yarn", "longrope")


# ====================================================================== reading a config
def read_rope(obj: Any) -> LayerTypeRope:
    """The RoPE of every layer type of a transformers config object, a plain dict or a path to a
    ``config.json`` (what :meth:`RopeConfig.by_layer_type <ropelab.config.RopeConfig.by_layer_type>`
    returns): one entry per layer type for a per-layer-type config, else the single :data:`ALL_LAYERS`.

    Raises:
        RopeConfigError: ``obj`` is none of those, or a value is bad (the message names the key).
    """
    return _by_layer_type(*_hf_dict(obj))


def _hf_dict(obj: Any) -> tuple[dict[str, Any], str | None]:
    """A config object, dict or path as a plain dict plus where it came from."""
    source = None
    if isinstance(obj, (str, os.PathLike)):
        source = os.fspath(obj)
        data = _read_json(source)
    elif isinstance(obj, Mapping):
        data = dict(obj)
    elif hasattr(obj, "to_dict"):
        data = obj.to_dict()
        # transformers' attribute_map aliases (Zamba2: head_dim -> attention_head_dim; d_model /
        # n_heads spellings) resolve on attribute access, which the rotary modules use, but are
        # missing from to_dict(): read them the same way.
        for alias, target in (getattr(obj, "attribute_map", None) or {}).items():
            if data.get(alias) is None and data.get(target) is not None:
                data[alias] = data[target]
        # Class attributes that decide how transformers reads rope_parameters (see _by_layer_type).
        for key in ("_rope_type_labels", "default_rope_type"):
            if isinstance(getattr(type(obj), key, None), (str, tuple, list)):
                data.setdefault(key, getattr(type(obj), key))
        source = getattr(obj, "_name_or_path", None) or type(obj).__name__
    else:
        raise RopeConfigError(
            f"config={type(obj).__name__} is invalid: expected a transformers config, a dict or a path to config.json"
        )
    text = data.get("text_config")
    if isinstance(text, Mapping) and not any(data.get(key) is not None for key in _HEAD_AND_ROPE_KEYS):
        data = dict(text)  # a multimodal config.json: the language model's keys live there
    return data, source


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise RopeConfigError(f"config path={path!r} is invalid: no such file") from None
    except IsADirectoryError:
        raise RopeConfigError(f"config path={path!r} is invalid: expected a config.json file, got a folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RopeConfigError(f"config path={path!r} is invalid: not JSON ({error})") from None
    if not isinstance(data, dict):
        raise RopeConfigError(f"config path={path!r} is invalid: expected a JSON object, got {type(data).__name__}")
    return data


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _deinterleaves_in_attention(config: Any) -> bool:
    """Whether a transformers config (object or dict) describes interleaved q/k channels that its attention
    de-interleaves, so that its rotary module's tables stay half-split: DeepSeek-V2/V3 checkpoints say so
    with ``rope_interleave``, the families of :data:`_DEINTERLEAVING_MODEL_TYPES` always do."""
    read = config.get if isinstance(config, Mapping) else lambda key: getattr(config, key, None)
    return read("rope_interleave") is True or read("model_type") in _DEINTERLEAVING_MODEL_TYPES


def _integral(value: Any) -> Any:
    """A length written as a whole float (``2048.0``, seen in published configs) as an int; anything
    else unchanged, for RopeConfig to validate."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _fields_from_hf_dict(data: Mapping[str, Any]) -> dict[str, Any]:
    """Map a transformers config dict onto RopeConfig fields (validation happens in RopeConfig)."""
    if data.get("model_type") in _AXIS_LADDER_FAMILIES:
        data = _axis_ladder_form(data)
    coordinate_slots = _coordinate_slots(data)
    if coordinate_slots is not None:
        return _coordinate_fields(data, coordinate_slots)
    params = data.get("rope_parameters") or data.get("rope_scaling") or {}
    if not isinstance(params, Mapping):
        raise _fail("rope_parameters", params, "a JSON object")
    unknown = set(params) - set(_SCALING_KEYS) - {"rope_type", "type", "rope_theta", "partial_rotary_factor"}
    unknown -= _OUTSIDE_TABLE_KEYS | set(_MROPE_KEYS)
    if unknown:
        raise _fail(
            "rope_parameters",
            sorted(unknown),
            f"only the keys rope_type, type, rope_theta, "
            f"partial_rotary_factor, {', '.join(_SCALING_KEYS)}, {', '.join(sorted(_OUTSIDE_TABLE_KEYS))}, "
            f"{', '.join(_MROPE_KEYS)}",
        )
    top_max = _first(data, "max_position_embeddings", "n_positions", "n_ctx")
    if (
        params.get("max_position_embeddings") is not None
        and top_max is not None
        and params["max_position_embeddings"] != top_max
    ):
        raise _fail(
            "rope_parameters.max_position_embeddings",
            params["max_position_embeddings"],
            f"the top-level max_position_embeddings={top_max!r} (transformers reads only the top-level one)",
        )

    head_dim = _hf_head_dim(data)
    if head_dim is None:
        raise _fail("head_dim", None, "head_dim, or hidden_size and num_attention_heads")

    rotary_dim = None if data.get("model_type") in _IGNORED_ROTARY_DIM_MODEL_TYPES else data.get("rotary_dim")
    partial = _first(params, "partial_rotary_factor") or _first(data, "partial_rotary_factor", "rotary_pct")
    if partial is not None and not (0 < partial <= 1):
        raise _fail("partial_rotary_factor", partial, "a fraction in (0, 1]")
    rope_type = _first(params, "rope_type", "type") or "default"
    rotated_pairs = None
    if rope_type == "proportional":
        # p-RoPE keeps head_dim-wide tables and freezes the pairs past the proportion
        # (transformers `_compute_proportional_rope_parameters`: int(p * head_dim // 2) pairs turn).
        rotated_pairs = int((partial or 1.0) * head_dim // 2) if isinstance(head_dim, int) else None
        rotary_dim = partial = None
    if rotary_dim is None and partial is not None:
        rotary_dim = int(head_dim * partial)  # transformers truncates the same way

    if rope_type == "mrope":
        rope_type = "default"  # Qwen2-VL's original spelling: default frequencies, M-RoPE sections
    if rope_type == "default" and data.get("default_rope_type") not in (None, "default"):
        rope_type = data["default_rope_type"]  # transformers' standardize_rope_params does the same
    max_positions = _integral(top_max if top_max is not None else params.get("max_position_embeddings"))
    original = params.get("original_max_position_embeddings")
    if data.get("original_max_position_embeddings") is not None and rope_type in ("llama3", "yarn", "longrope"):
        # Phi-3 keeps the pretraining length at the top level; transformers gives it priority.
        original = data["original_max_position_embeddings"]
    original = _integral(original)

    layout = data.get("rope_layout")
    if layout is None:
        interleaved = data.get("model_type") in _INTERLEAVED_MODEL_TYPES or _deinterleaves_in_attention(data)
        layout = "interleaved" if interleaved else "half"

    fields: dict[str, Any] = {
        "head_dim": head_dim,
        "rotary_dim": rotary_dim,
        "base": _first(params, "rope_theta") or _first(data, "rope_theta", "rotary_emb_base") or 10000.0,
        "rope_type": rope_type,
        "layout": layout,
        "max_position_embeddings": max_positions,
    }
    if rotated_pairs is not None:
        fields["rotated_pairs"] = rotated_pairs
    for key in _SCALING_KEYS:
        if params.get(key) is not None:
            fields[key] = params[key]
    fields.update(_axes_from_hf(data, params, rope_type, (rotary_dim or head_dim) // 2))
    if (
        rope_type == AXIAL_ROPE_TYPE
        and rotary_dim is None
        and _AXIAL_FAMILIES.get(data.get("model_type"), {}).get("even_axis_share", False)
    ):
        axes = len(fields["axial_order"])
        fields["rotary_dim"] = axes * 2 * ((head_dim // axes) // 2)
    if original is not None:
        fields["original_max_position_embeddings"] = original
    if rope_type in ("longrope", "yarn") and fields.get("factor") is None and max_positions and original:
        # transformers infers the factor from the two lengths when the block omits it.
        fields["factor"] = max_positions / original
    return fields


def _hf_head_dim(data: Mapping[str, Any]) -> Any:
    """The head width a transformers config states or implies, else None: ``head_dim``; a
    :data:`_HEAD_DIM_FORMULAS` family's formula; else the hidden width (``hidden_size`` / ``n_embd`` /
    ``d_model``, ``embed_dim`` for :data:`_EMBED_DIM_MODEL_TYPES`) over the head count
    (``num_attention_heads`` / ``n_head`` / ``num_heads`` / ``n_heads``). None where either is missing
    or the head count is 0 (the caller reports it); the value is not validated (RopeConfig does that)."""
    head_dim = data.get(_ROTARY_HEAD_DIM_KEYS.get(data.get("model_type"), "head_dim"))
    if head_dim is not None:
        return head_dim
    if data.get("model_type") in _HEAD_DIM_FORMULAS:
        return _formula_head_dim(data, *_HEAD_DIM_FORMULAS[data["model_type"]])
    hidden = _first(data, "hidden_size", "n_embd", "d_model")
    if data.get("model_type") in _EMBED_DIM_MODEL_TYPES:
        hidden = data.get("embed_dim")
    heads = _first(data, "num_attention_heads", "n_head", "num_heads", "n_heads")
    if hidden is None or not heads:
        return None
    return hidden // heads


def _formula_head_dim(data: Mapping[str, Any], width_key: str, divisor_keys: tuple[str, ...]) -> int:
    """The head width of a family in :data:`_HEAD_DIM_FORMULAS`: ``data[width_key]`` over the product of
    ``data[divisor_keys]``, each key checked to be a positive integer."""
    formula = f"{width_key} // ({' * '.join(divisor_keys)})"
    values = {}
    for key in (width_key, *divisor_keys):
        value = _integral(data.get(key))
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise _fail(key, value, f"a positive integer ({data['model_type']}'s head size is {formula})")
        values[key] = value
    return values[width_key] // math.prod(values[key] for key in divisor_keys)


def _coordinate_slots(data: Mapping[str, Any]) -> tuple[tuple[str, str], ...] | None:
    """The (pairs key, base key) slots of a :data:`_COORDINATE_FAMILIES` config, else None: named by
    its model_type, or (no model_type) holding every key of one family."""
    named = _COORDINATE_FAMILIES.get(data.get("model_type") or "")
    if named is not None or data.get("model_type"):
        return named
    return next(
        (slots for slots in _COORDINATE_FAMILIES.values() if all(k in data for slot in slots for k in slot)), None
    )


def _coordinate_fields(data: Mapping[str, Any], slots: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    """RopeConfig fields of an axial RoPE over coordinates: one slot per (pairs key, base key), axes in
    slot order, half-split tables over the whole head (frozen pairs past the slots)."""
    for pairs_key, base_key in dict.fromkeys(slots):
        pairs, base = _integral(data.get(pairs_key)), data.get(base_key)
        if not isinstance(pairs, int) or isinstance(pairs, bool) or pairs <= 0:
            raise _fail(pairs_key, pairs, "a positive integer (pairs of rotary channels)")
        if not isinstance(base, (int, float)) or isinstance(base, bool) or not (math.isfinite(base) and base > 1):
            raise _fail(base_key, base, "a finite number > 1")
    head_dim = _hf_head_dim(data)  # its config's own default: hidden_size // num_attention_heads
    bases = tuple(data[base_key] for _, base_key in slots)
    return {
        "head_dim": head_dim,
        "base": bases[0],
        "rope_type": AXIAL_ROPE_TYPE,
        "layout": data.get("rope_layout") or "half",
        "axial_order": tuple(range(len(slots))),
        "axial_pairs": tuple(_integral(data[key]) for key, _ in slots),
        "axial_bases": bases,
    }


def _axes_from_hf(data: Mapping[str, Any], params: Mapping[str, Any], rope_type: str, pairs: int) -> dict[str, Any]:
    """The multi-axis fields: M-RoPE sections and composition, or the axial frequency layout
    (``pairs``: the rotated pairs, which a family's equal sections split)."""
    model_type = data.get("model_type")
    if rope_type == AXIAL_ROPE_TYPE:
        family = _AXIAL_FAMILIES.get(model_type, {})
        fields = {
            key: data.get(key) or family.get(key) for key in ("axial_frequencies", "axial_order", "axial_composition")
        }
        if isinstance(fields["axial_order"], list):
            fields["axial_order"] = tuple(fields["axial_order"])
        for key in ("axial_pairs", "axial_bases"):  # ropelab's own keys (see RopeConfig.to_hf)
            value = data.get(key)
            fields[key] = tuple(value) if isinstance(value, list) else value
        return fields
    composition, default_sections = _MROPE_FAMILIES.get(model_type, (None, None))
    if isinstance(default_sections, int):
        default_sections = (pairs // default_sections,) * default_sections
    sections = params.get("mrope_section") or default_sections
    if sections is None:
        return {}
    if model_type in _UNSUPPORTED_MROPE_MODEL_TYPES:
        raise _fail(
            "mrope_section",
            sections,
            f"a composition ropelab reproduces: {model_type}'s rotary module "
            "splits the doubled [c, c] table, so the two channels of a pair can read different position rows "
            "(ropelab.integrations.hf.patch reproduces its tables channel by channel)",
        )
    if composition is None and (params.get("mrope_interleaved") is True or params.get("interleaved") is True):
        composition = "interleaved"
    return {
        "mrope_section": _integral_list(sections),
        "mrope_composition": data.get("mrope_composition") or composition,
    }


def _axis_ladder_form(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config of a family in ``_AXIS_LADDER_FAMILIES`` in the keys RopeConfig reads: ``head_dim`` the
    width of the rotated vector, ``rotary_dim = 2 * L`` with ``L = int(head_dim * partial_rotary_factor)``
    (the head_dim its module reads: ``head_dim``, else ``hidden_size // num_attention_heads``), rope_type
    "axial" with the family's axial fields, interleaved channel pairs (both modules repeat_interleave
    their tables and rotate adjacent channels)."""
    model_type = data["model_type"]
    family = _AXIS_LADDER_FAMILIES[model_type]
    params = dict(data.get("rope_parameters") or data.get("rope_scaling") or {})
    rope_type = _first(params, "rope_type", "type") or "default"
    if rope_type != "default":
        raise _fail(
            "rope_type",
            rope_type,
            f"'default' for {model_type} (its rotary module is read as "
            "axial RoPE over the default frequencies; ropelab reads no scaled form of it)",
        )
    partial = params.pop("partial_rotary_factor", None) or data.get("partial_rotary_factor") or 1.0
    head_dim = _hf_head_dim(data)
    width = data.get(family["width"])
    if not isinstance(head_dim, int) or not isinstance(width, int):
        raise _fail(
            family["width"], width, f"the width of the vector {model_type}'s rotary module turns, with a head_dim"
        )
    ladder = int(head_dim * partial)
    if ladder <= 0 or ladder % 2 or (family["whole"] and 2 * ladder != width):
        need = f"{width // 2}, half of {family['width']}={width}" if family["whole"] else "a positive even number"
        raise _fail(
            "partial_rotary_factor",
            partial,
            f"a factor whose ladder int(head_dim={head_dim} * factor) is "
            f"{need} (each of the 2 axes of {model_type}'s rotary module reads that ladder)",
        )
    axial = {key: family[key] for key in ("axial_frequencies", "axial_order", "axial_composition") if key in family}
    params["rope_type"] = AXIAL_ROPE_TYPE
    return {
        **data,
        **axial,
        "head_dim": width,
        "rotary_dim": 2 * ladder,
        "rope_parameters": params,
        "partial_rotary_factor": None,
        "rope_layout": "interleaved",
    }


def _integral_list(values: Any) -> Any:
    """Section sizes written as whole floats (``16.0``) as ints; anything else unchanged, for RopeConfig to validate."""
    if isinstance(values, (list, tuple)):
        return tuple(_integral(v) for v in values)
    return values


# ====================================================================== per-layer-type RoPE
def _layer_type_head_dim(data: Mapping[str, Any], layer_type: str) -> Any:
    """The head width of ``layer_type``'s layers where the config sets one per layer (Gemma 4's
    full-attention layers); None where the top-level one applies."""
    layer_types = data.get("layer_types") or ()
    per_layer = data.get("per_layer_config")
    if isinstance(per_layer, Mapping) and layer_type in layer_types:
        widths = {
            (per_layer.get(i) or per_layer.get(str(i)) or {}).get("head_dim")
            for i, name in enumerate(layer_types)
            if name == layer_type
        }
        if len(widths) > 1:
            raise _fail(
                f"per_layer_config head_dim of the {layer_type} layers",
                sorted(widths, key=str),
                "one head_dim per layer type (transformers' per-layer-type rotary module needs one)",
            )
        return widths.pop()
    if layer_type == "full_attention" and data.get("model_type") in _GLOBAL_HEAD_DIM_MODEL_TYPES:
        return data.get("global_head_dim") or _DEFAULT_GLOBAL_HEAD_DIM
    return None


def _rope_labels(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The names rope_parameters may be keyed by when they are not the layer types, else None."""
    labels = data.get("_rope_type_labels") or _ROPE_TYPE_LABELS.get(data.get("model_type"))
    return tuple(labels) if labels else None


def _nested_rope_parameters(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """``rope_parameters`` keyed by layer type (``{layer type: block or None}``), or None for a flat config.

    As transformers' ``nested_rope_parameter_keys``: the keys are those named by the config's
    ``_rope_type_labels`` or ``layer_types``. A dict that names neither but whose values are all
    blocks (or None) is read as nested too. The older flat keys of the families in
    ``_LEGACY_LAYER_TYPE_ROPE`` are converted the way their transformers config does.
    """
    params = data.get("rope_parameters") or data.get("rope_scaling")
    if data.get("model_type") == "deepseek_v4" and not all(
        isinstance((params or {}).get(k), Mapping) for k in ("main", "compress")
    ):
        params = _deepseek_v4_blocks(data)
    if data.get("model_type") in _FLAT_BLOCK_LAYER_TYPE and not _all_blocks(params):
        params = _one_layer_type_blocks(data, *_FLAT_BLOCK_LAYER_TYPE[data["model_type"]])
    legacy = _LEGACY_LAYER_TYPE_ROPE.get(data.get("model_type"))
    if legacy is not None:
        thetas, scaled = legacy
        nested = params if _all_blocks(data.get("rope_parameters")) else None
        params = {name: None if block is None else dict(block) for name, block in (nested or {}).items()}
        for name, (key, default) in thetas.items():
            block = params.get(name) or {"rope_type": "default"}
            if (
                name in scaled
                and nested is None
                and isinstance(data.get("rope_parameters") or data.get("rope_scaling"), Mapping)
            ):
                block.update(data.get("rope_parameters") or data["rope_scaling"])  # one flat block: the scaled types
            block.setdefault("rope_theta", data[key] if data.get(key) is not None else default)
            params[name] = block
    if not isinstance(params, Mapping) or not params:
        return None
    labels = _rope_labels(data) or data.get("layer_types") or ()
    keys = [key for key in params if key in labels]
    if not keys and (legacy or _all_blocks(params)):
        keys = list(params)
    return {key: params[key] for key in keys} or None


def _all_blocks(params: Any) -> bool:
    """True for a non-empty mapping whose values are all parameter blocks or None (a nested form)."""
    return (
        isinstance(params, Mapping)
        and bool(params)
        and all(v is None or isinstance(v, Mapping) for v in params.values())
    )


def _one_layer_type_blocks(
    data: Mapping[str, Any], layer_type: str, nope: tuple[str, ...], default_theta: float
) -> dict[str, Any]:
    """A :data:`_FLAT_BLOCK_LAYER_TYPE` config's flat block (``rope_theta`` at the top level, else the
    class default) as the block of ``layer_type``, and no RoPE (None) for the ``nope`` layer types."""
    block = dict(data.get("rope_parameters") or data.get("rope_scaling") or {})
    block.setdefault("rope_type", block.pop("type", "default"))
    block.setdefault("rope_theta", data["rope_theta"] if data.get("rope_theta") is not None else default_theta)
    return {layer_type: block, **dict.fromkeys(nope)}


def _deepseek_v4_blocks(data: Mapping[str, Any]) -> dict[str, Any]:
    """DeepSeek-V4's flat config.json keys as transformers' DeepseekV4Config (5.23) turns them into
    ``main`` / ``compress`` blocks: plain RoPE at ``rope_theta`` for the main attention, the flat block
    (YaRN in the checkpoints, with ``attention_factor`` 1 unless given) at ``compress_rope_theta`` for
    the compressor; both rotate ``partial_rotary_factor`` of the head (default ``qk_rope_head_dim /
    head_dim``, else the class default 64 / 512)."""
    flat = dict(data.get("rope_parameters") or data.get("rope_scaling") or {})
    flat.setdefault("rope_type", flat.pop("type", "default"))
    head_dim = data.get("head_dim") or 512  # DeepseekV4Config default
    partial = data.get("partial_rotary_factor") or (
        data["qk_rope_head_dim"] / head_dim if data.get("qk_rope_head_dim") else 64 / 512
    )
    main = {"rope_type": "default", "rope_theta": data.get("rope_theta") or 10_000.0, "partial_rotary_factor": partial}
    compress = {**flat, "rope_theta": data.get("compress_rope_theta") or 160_000.0, "partial_rotary_factor": partial}
    if compress["rope_type"] == "yarn":
        compress.setdefault("attention_factor", 1.0)
    if compress["rope_type"] in _NEEDS_ORIGINAL:
        compress.setdefault(
            "original_max_position_embeddings",
            data.get("original_max_position_embeddings") or data.get("max_position_embeddings"),
        )
    return {"main": main, "compress": compress}


def _layer_type_config(data: Mapping[str, Any], layer_type: str, block: Mapping[str, Any], source: str) -> RopeConfig:
    """The RopeConfig of one layer type: its block, with the defaults transformers'
    ``standardize_rope_params`` fills from the top level, and the layer type's own head width."""
    if not isinstance(block, Mapping):
        raise _fail(f"rope_parameters[{layer_type!r}]", block, "a JSON object or null (a layer type without RoPE)")
    block = dict(block)
    block.setdefault("rope_type", block.get("type", "default"))
    if block["rope_type"] in _NEEDS_ORIGINAL and data.get("max_position_embeddings") is not None:
        block.setdefault("original_max_position_embeddings", data["max_position_embeddings"])
    flat = {
        key: value for key, value in data.items() if key not in ("rope_scaling", "original_max_position_embeddings")
    }
    flat["rope_parameters"] = block
    head_dim = _layer_type_head_dim(data, layer_type)
    if head_dim is not None:
        flat["head_dim"] = head_dim
    try:
        return RopeConfig(**_fields_from_hf_dict(flat), source=source)
    except RopeConfigError as error:
        raise RopeConfigError(f"layer type {layer_type!r}: {error}") from None


def _decoder_layer_types(data: Mapping[str, Any]) -> Any:
    """The config's ``layer_types``, one per decoder layer: for a :data:`_BLOCK_PAIR_LAYER_TYPES` family
    listing (layer type, block) pairs, every other entry, as its transformers config reads them."""
    layer_types = data.get("layer_types") or ()
    block = _BLOCK_PAIR_LAYER_TYPES.get(data.get("model_type"))
    if block is not None and isinstance(layer_types, (list, tuple)) and block in layer_types:
        return layer_types[::2]
    return layer_types


def _by_layer_type(data: Mapping[str, Any], source: str | None) -> LayerTypeRope:
    layer_types = _decoder_layer_types(data)
    data = {**data, "layer_types": layer_types}
    if not isinstance(layer_types, (list, tuple)) or not all(isinstance(name, str) for name in layer_types):
        raise _fail("layer_types", layer_types, "a list of layer type names")
    nested = _nested_rope_parameters(data)
    if nested is None:
        return LayerTypeRope({ALL_LAYERS: RopeConfig(**_fields_from_hf_dict(data), source=source)}, layer_types, source)
    missing = [name for name in dict.fromkeys(layer_types) if name not in nested]
    if missing and _rope_labels(data) is None:
        raise _fail(
            "layer_types",
            missing[0],
            f"a layer type with an entry in rope_parameters (it has "
            f"{', '.join(nested)}); write null there for a layer type without RoPE",
        )
    configs = {}
    for name, block in nested.items():
        label = f"{source or 'config'} [{name}]"
        configs[name] = None if block is None else _layer_type_config(data, name, block, label)
    return LayerTypeRope(configs, layer_types, source)
