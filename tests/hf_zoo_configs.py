"""Tiny configs for the zoo sweep (``tests/hf_zoo.py``): each family built small from its own config class.

The shrink is generic, in three passes over the family's default config tree (the config and its
sub-configs, three levels deep):

1. every key named in ``SHRINK`` is set to its small value (widths 64, 4 heads of 16, 2 layers, ...);
2. every other width-like key (``*hidden*``, ``*_dim``) whose default equals a width shrunk in pass 1
   takes the same small value, so sizes that must match still match (a vision tower's
   ``out_hidden_size`` and the text ``hidden_size``, an adapter's ``adapter_in_dim``, ...);
3. layer-kind lists keep one layer of each kind, token ids fit the small vocabulary, M-RoPE
   sections keep their proportions of the smaller head.

What the generic passes cannot know is data in ``CONFIG_OVERRIDES`` (family -> dotted key -> value):
switches that turn an optional RoPE on, layer-kind lists a family leaves empty by default, sizes a
validator ties together in another way. Each entry says why.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from pathlib import Path
from typing import Any

import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

# Pass 1: every key a config class has from this table is set to the small value.
SHRINK = {
    "hidden_size": 64,
    "d_model": 64,
    "n_embd": 64,
    "dim": 64,
    "embed_dim": 64,
    "model_dim": 64,
    "num_attention_heads": 4,
    "n_head": 4,
    "num_heads": 4,
    "n_heads": 4,
    "encoder_attention_heads": 4,
    "decoder_attention_heads": 4,
    "encoder_num_attention_heads": 4,
    "decoder_num_attention_heads": 4,
    "encoder_num_key_value_heads": 4,
    "decoder_num_key_value_heads": 4,
    "num_key_value_heads": 4,
    "n_kv_heads": 4,
    "num_kv_heads": 4,
    "multi_query_group_num": 4,
    "head_dim": 16,
    "kv_channels": 16,
    "intermediate_size": 64,
    "ffn_dim": 64,
    "d_ff": 64,
    "n_inner": 64,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "ffn_hidden_size": 64,
    "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32,
    "expert_intermediate_size": 32,
    "intermediate_size_mlp": 64,
    "num_hidden_layers": 2,
    "n_layer": 2,
    "num_layers": 2,
    "n_layers": 2,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "depth": 2,
    "initializer_range": 0.2,  # sharper attention than the default 0.02, so that positions matter
    "vocab_size": 256,
    "vocab_size_per_layer_input": 256,
    "hidden_size_per_layer_input": 16,
    "encoder_hash_byte_group_vocab": 256,
    "num_experts": 4,
    "num_local_experts": 4,
    "n_routed_experts": 4,
    "moe_num_experts": 4,
    "num_experts_per_tok": 2,
    "moe_topk": 2,
    "n_group": 1,
    "topk_group": 1,
    "n_shared_experts": 1,
    "kv_lora_rank": 16,
    "q_lora_rank": 32,
    "qk_rope_head_dim": 16,
    "qk_nope_head_dim": 16,
    "v_head_dim": 16,
}
WIDTH_KEYS = ("hidden_size", "d_model", "n_embd", "dim", "embed_dim", "model_dim")
_WIDTH_LIKE = re.compile(r"hidden|_dim$|_dims$|_groups$|(input|output|in|out|embed)_size$")
_TEXT_WIDTH_KEYS = ("out_hidden_size", "text_hidden_size")
_FALLBACK_SECTIONS = re.compile(r'get\("mrope_section", \[([\d, ]+)\]\)')
_TOKEN_ID = re.compile(r"token_(id|index|ids)$")
_LAYER_LISTS = ("layer_types", "mlp_layer_types", "block_types", "layers_block_type")
_DEPTH = 3  # sub-configs of sub-configs of sub-configs (an audio tower's diarization model's encoder)


def _default(dotted: str):
    """An override that copies a value of the family's default config (``rope_parameters.rope_theta``)."""

    def read(default):
        value = default
        for part in dotted.split("."):
            value = value[part] if isinstance(value, dict) else getattr(value, part)
        return value

    return read


def _per_layer_type(text: str, *layer_types: str, sections: list[int] | None = None):
    """``rope_parameters`` as a per-layer-type dict (the form the modeling file indexes), built from
    the config class's ``default_theta``, with M-RoPE sections when its module reads them."""

    def read(default):
        flat = {"rope_type": "default", "rope_theta": type(getattr(default, text)).default_theta}
        if sections:
            flat["mrope_section"] = sections
        return {layer_type: dict(flat) for layer_type in layer_types}

    return read


def _rope_with(text: str, **extra):
    """The default ``rope_parameters`` of the sub-config ``text``, with ``extra`` keys."""

    def read(default):
        return {**getattr(default, text).rope_parameters, **extra}

    return read


# Per-family config values the generic shrink cannot infer. Dotted keys reach into sub-configs; a
# callable value is called with the family's default config.
CONFIG_OVERRIDES: dict[str, dict[str, Any]] = {
    # RoPE is optional in these families and off by default: turn it on, it is what the sweep checks.
    "esm": {"position_embedding_type": "rotary", "pad_token_id": 1},  # positions count from the pad id
    "granitemoehybrid": {"position_embedding_type": "rope", "layer_types": ["linear_attention", "full_attention"]},
    "zamba2": {"use_mem_rope": True},
    "wav2vec2_conformer": {"position_embeddings_type": "rotary"},
    "wav2vec2_bert": {"position_embeddings_type": "rotary"},
    # its speech encoder's sizes have keys of their own, which the generic shrink does not know
    "seamless_m4t": {
        "position_embeddings_type": "rotary",
        "speech_encoder_layers": 2,
        "speech_encoder_attention_heads": 4,
        "speech_encoder_intermediate_size": 64,
    },
    # One layer of each kind, where the default config has none of a kind or leaves the list empty
    # (the checkpoints' config.json fill it); the kinds are the strings the modeling file tests for.
    "bamba": {"attn_layer_indices": [1]},  # default: no attention layer at all
    "lfm2_moe": {"layer_types": ["conv", "full_attention"]},
    "molmo2": {
        "adapter_config.vision_feature_layer": [-1, -2],  # indices into the 2 vision layers
        "text_config.rope_scaling_layers": [0],
    },  # layer 0 scaled RoPE, layer 1 unscaled
    # Gemma 3n (text tower, see hf_zoo.TOWER_ONLY): one sliding and one full layer twice, none sharing
    # another's KV cache (the shrunk layer count leaves the default sharing without a source layer)
    # and no activation sparsity (its default pattern has one entry per default layer).
    "gemma3n": {
        "text_config.num_hidden_layers": 4,
        "text_config.num_kv_shared_layers": 0,
        "text_config.layer_types": ["sliding_attention", "full_attention"] * 2,
        "text_config.activation_sparsity_pattern": [0.0] * 4,
    },
    # PE Video's frame classifier is a timm model, and timm needs torchvision, whose PyPI wheel is built
    # for CUDA torch and does not load with the CPU build. Its encoder reads only the classifier's
    # logits (num_labels wide), one vector per frame, before the rotary frame encoder: a tiny ViT
    # classifier stands in, and the RoPE under test is untouched.
    "pe_video": {"video_config.vision_config": lambda _: _frame_classifier()},
    "pe_audio_video": {"audio_video_config.video_config.vision_config": lambda _: _frame_classifier()},
    # EoMT adds its queries before the last num_blocks layers: no more blocks than the shrunk layers.
    # A 6x6 patch grid (it predicts masks over the grid) with a few queries keeps it small.
    "eomt_dinov3": {"num_blocks": 1, "image_size": 96, "num_queries": 4},
    # Patch-centre ViTs: a 6 x 6 grid of 16-pixel patches.
    "dinov3_vit": {"image_size": 96},
    "sapiens2": {"image_size": 96},
    # CLVP rotates max(projection_dim // (2 * heads), 32) channels: 2 heads of 32 (projection_dim 64).
    "clvp": {"text_config.num_attention_heads": 2, "speech_config.num_attention_heads": 2},
    # V-JEPA 2: a clip of 4 frames of 32 x 32 pixels (2 x 2 x 2 tubelets), a small predictor.
    "vjepa2": {
        "crop_size": 32,
        "frames_per_clip": 4,
        "pred_hidden_size": 64,
        "pred_num_attention_heads": 4,
        "pred_num_hidden_layers": 2,
    },
    # Fields the modeling file needs and the default config leaves out (None, or not declared).
    "chameleon": {"vocabulary_map": {"<image>": 255}},  # from the tokenizer in the checkpoints
    "emu3": {"vocabulary_map": {"<image>": 255, "<|extra_200|>": 254}},
    "dbrx": {
        "attn_config.rope_theta": _default("rope_parameters.rope_theta"),
        "attn_config.clip_qkv": 1e4,
    },  # the forward clamps q, k, v unconditionally: a bound that never bites
    "moonshine_streaming": {"num_key_value_heads": 4},
    # PI0.5: 4 x 4 patches per camera image (16 image tokens) and a chunk of 8 actions instead of 50.
    "pi05": {"vlm_config.vision_config.image_size": 64, "chunk_size": 8},
    # Kolibri 1.1's indexer scores with at most the query heads of key head 0 (1 of the shrunk 4 / 4); a pool,
    # blocks and windows small enough that a dozen tokens go through the sparse selection, not around it.
    "kolibri1_1": {
        "index_num_heads": 1,
        "index_topk": 2,
        "index_pool_size": 8,
        "index_compression": 2,
        "index_num_local_tokens": 2,
        "index_num_sink_tokens": 1,
        "sliding_window": 4,
    },
    # Apertus 1.5's vocabulary holds the text ids, then the visual codes, then the audio codes (its validator
    # ties the offsets to the codebooks): both code ranges above the random text ids, inside the small vocabulary.
    "apertus1p5": {
        "image_token_offset": 128,
        "vision_config.codebook_size": 64,
        "audio_token_offset": 192,
        "audio_config.codebook_size": 64,
    },
    # Dory runs n_input_layers, then the recurrent section n_recurrent_loops times, then n_output_layers
    # (8, the rest and 8 by default): one layer in each section, the two layer kinds among them.
    "dory": {
        "num_hidden_layers": 3,
        "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
        "n_input_layers": 1,
        "n_recurrent_layers": 1,
        "n_output_layers": 1,
    },
    "diffusion_gemma": {
        "text_config.num_experts": 4,
        "text_config.top_k_experts": 2,  # every layer routes
        "text_config.moe_intermediate_size": 32,
    },
    "granite4_vision": {
        "deepstack_layer_map": [[-1, 0]],
        "spatial_target_layers": [0, 1, 0, 1],
        "downsample_rate": "1/4",
    },  # a rate its docstring gives as an example
    "qwen4_exp": {
        "text_config.indexer_n_heads": 4,
        "text_config.indexer_kv_heads": 1,  # the QSA indexer
        "text_config.indexer_head_dim": 16,
        "text_config.indexer_budget": 8,
        "text_config.indexer_compress_ratio": 4,
    },
    "step3p7": {
        "text_config.sliding_window": 8,  # sliding layers with no window
        "vision_config.image_size": 112,
        "vision_config.max_position_embeddings": 64,
    },  # 8 x 8 patches
    # The rotary module indexes rope_parameters by layer type and reads M-RoPE sections, which the
    # default config leaves empty (its fallback [24, 20, 20] is for a 128-wide head).
    "cohere_compass": {
        "text_config.rope_parameters": _per_layer_type("text_config", "full_attention", sections=[3, 2, 3])
    },
    # Image positions need M-RoPE axes, which the default config leaves out; 4 axes (position,
    # width, height, image index), as its docstring describes, over the 8 pairs of the small head.
    "hunyuan_vl": {"text_config.rope_parameters": _rope_with("text_config", mrope_section=[2, 2, 2, 2])},
    # Sizes tied to others in ways the generic passes do not see.
    "efficientloftr": {
        "out_features": [16, 16, 32, 64],  # hidden_size is the last entry
        # its 2D table is hidden_size / 2 wide: partial_rotary_factor=4 of a head of hidden_size / 8
        "num_attention_heads": 8,
        "num_key_value_heads": 8,
        # One RepVGG block per stage instead of 1, 2, 4, 14: each random block (batch-norm
        # weights ~ N(0, 0.2)) shrinks the features about 5x, so after 21 the coarse features
        # are ~1e-5, below the LayerNorm eps, the attention is uniform and no rotation shows.
        "stage_num_blocks": [1, 1, 1, 1],
    },
    "ernie4_5_vl_moe": {"text_config.moe_intermediate_size": [32, 32]},  # text and vision experts
    "esmfold2": {
        "atom_encoder.head_dim": 32,  # the 3D rotation packs 3 x 2 spatial and 10 id pairs
        "structure_head.diffusion_module.atom_encoder.head_dim": 32,
        "single_inputs_size": SHRINK["hidden_size"] + 2 * 33 + 1,
    },  # atom width + 2 x num_res_types + 1
    "llama4": {
        "vision_config.intermediate_size": 4 * SHRINK["hidden_size"],  # what the pixel shuffle makes
        "vision_config.projector_input_dim": SHRINK["hidden_size"],
        "vision_config.projector_output_dim": SHRINK["hidden_size"],
        "vision_config.vision_output_dim": SHRINK["hidden_size"],
        "vision_config.image_size": 112,
    },  # 8 x 8 patches
    "mimo_v2_flash": {
        "num_key_value_heads": 2,  # sliding layers double it; it must divide the heads
        "head_dim": 48,
    },  # 48 x 0.334: 16 rotated channels
    "mistral4": {"head_dim": 2 * SHRINK["qk_rope_head_dim"]},  # qk_nope_head_dim + qk_rope_head_dim
    "muse_glimmer": {"out_hidden_size": 4 * SHRINK["hidden_size"]},  # vision width x the 2 x 2 merge
    "muse_spark": {
        "out_hidden_size": 4 * SHRINK["hidden_size"],
        "audio_config.num_hidden_layers": 4,
    },  # one per stage of the audio pyramid
    "zaya": {"num_experts_per_tok": 1},  # the only value its validator accepts
    "csm": {"codec_config.codebook_size": 128},  # audio codes index the (small) audio vocabulary
    # The quantizer projects the concatenated semantic and acoustic features (twice the width).
    "neucodec": {"quantization_dim": 2 * SHRINK["hidden_size"], "encoder_hidden_size": 2},
    "xcodec2": {"quantization_dim": 2 * SHRINK["hidden_size"], "encoder_hidden_size": 2},
    # Smaller inputs, and convolutional codecs that start narrow (they double their channels at each
    # downsampling), so the sweep stays fast.
    "deepseek_ocr2": {
        "text_config.mlp_layer_types": ["dense", "sparse"],  # empty by default
        "vision_config.sam_config.image_size": 256,  # 16 x 16 patches, 16 image tokens
        # the SAM neck ends at the width of the vision encoder that follows it
        "vision_config.sam_config.downsample_channels": [32, SHRINK["hidden_size"]],
    },
    "mimi": {"num_filters": 8},
    "pocket_tts_audio_tokenizer": {"num_filters": 8},
    "musicflamingo": {"audio_config.max_source_positions": 32},  # Whisper-style: 2 x 32 feature frames
    "sam3": {
        "vision_config.backbone_config.image_size": 168,  # 12 x 12 patches instead of 72 x 72
        "vision_config.backbone_config.window_size": 6,
        "vision_config.backbone_feature_sizes": [[48, 48], [24, 24], [12, 12]],
    },
    # The SAM 2 video family's memory attention (run alone, see hf_zoo_inputs.RUNNERS): a 6 x 4 feature
    # grid instead of 64 x 64 (rows and columns of different lengths), and 2 heads of a width halved by
    # the downsample rate, so the head size is 64 // (2 * 2) = 16 by the family's own formula.
    "sam2_video": {
        "memory_attention_rope_feat_sizes": [6, 4],
        "memory_attention_num_attention_heads": 2,
        "memory_attention_downsample_rate": 2,
    },
    "edgetam_video": {
        "memory_attention_rope_feat_sizes": [6, 4],
        "memory_attention_num_attention_heads": 2,
        "memory_attention_downsample_rate": 2,
        "memory_attention_rope_k_sizes": [3, 2],
    },  # the memory frames' grid, 16 x 16 by default
    # Its image_size sets the feature grids (12 x 12 patches of its SAM 3 ViT, as in "sam3") and the memory
    # attention's grid with them (12 x 12).
    "sam3_tracker_video": {
        "image_size": 168,
        "vision_config.backbone_config.image_size": 168,
        "vision_config.backbone_config.window_size": 6,
        "memory_attention_num_attention_heads": 2,
        "memory_attention_downsample_rate": 2,
    },
    # Compressed attention emits one entry per compress_rate tokens (4 and 128 by default): a dozen
    # tokens must fill windows of both kinds, outside a sliding window short enough for the indexer
    # to have entries to choose among.
    "deepseek_v4": {
        "compress_rates": {"compressed_sparse_attention": 2, "heavily_compressed_attention": 4},
        "index_topk": 2,
        "sliding_window": 4,
    },
}


def model_type(family: str) -> str | None:
    """The model_type of the family's main config: the one whose config class lives in the folder."""
    module = importlib.import_module(f"transformers.models.{family}")
    candidates = []
    for name, class_name in CONFIG_MAPPING_NAMES.items():
        cls = getattr(module, class_name, None)
        if (
            cls is not None
            and cls.__module__.startswith(f"transformers.models.{family}.")
            and name in MODEL_MAPPING_NAMES
        ):
            candidates.append(name)
    if not candidates:
        return None
    for preferred in (family, family.replace("_", "-")):
        if preferred in candidates:
            return preferred
    return min(candidates, key=len)


def _settable(cls, key: str) -> bool:
    return not isinstance(getattr(cls, key, None), property)


def _has(config, key: str) -> bool:
    try:
        getattr(config, key)
    except AttributeError:
        return False
    except Exception:  # noqa: BLE001 (heterogeneous per-layer configs refuse ambiguous reads: the key exists)
        return True
    return True


def _switched_off(default, key: str) -> bool:
    """A size whose default is 0 switches a part off (no RoPE in DSA layers, no query LoRA): it stays off."""
    return vars(default).get(key, 1) == 0


def _fit_layer_lists(default, cls, kwargs: dict) -> None:
    """One layer of each kind, in the order the kinds first appear, the same length in every list."""
    layer_keys = [k for k in ("num_hidden_layers", "num_layers", "n_layer") if k in kwargs]
    lists = {}
    for key in _LAYER_LISTS:
        value = vars(default).get(key)
        if layer_keys and isinstance(value, (list, tuple)) and value and _settable(cls, key):
            lists[key] = list(dict.fromkeys(value))[:4]
    if not lists:
        return
    layers = max(2, *(len(kinds) for kinds in lists.values()))
    for key, kinds in lists.items():
        kwargs[key] = kinds + [kinds[-1]] * (layers - len(kinds))
    for key in layer_keys:
        kwargs[key] = layers


def _fit_rotary_dim(default, kwargs: dict) -> None:
    """GPT-J / CodeGen: keep the rotated fraction of the head when the head shrinks."""
    rotary_dim = vars(default).get("rotary_dim")
    if not (isinstance(rotary_dim, int) and "head_dim" not in kwargs and "hidden_size" in kwargs):
        return
    heads = vars(default).get("num_attention_heads") or vars(default).get("n_head")
    hidden = vars(default).get("hidden_size") or vars(default).get("n_embd")
    if heads and hidden:
        share = rotary_dim / (hidden // heads)
        kwargs["rotary_dim"] = max(2, 2 * round(share * SHRINK["hidden_size"] // SHRINK["num_attention_heads"] / 2))


def _token_ids(default, depth: int = 0):
    """(key, id) of every special token id in the config tree (image, video, bos, eos, ...)."""
    for key, value in vars(default).items():
        if isinstance(value, transformers.PretrainedConfig) and depth < _DEPTH:
            yield from _token_ids(value, depth + 1)
        elif _TOKEN_ID.search(key):
            for token in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(token, int) and not isinstance(token, bool):
                    yield key, token


def token_map(default) -> dict[int, int]:
    """Special token ids past the small vocabulary, moved to its top: distinct ids stay distinct,
    and the same id in two sub-configs (``image_token_id`` of the model and of its text config)
    stays the same. The random text uses ids below ``SHRINK["vocab_size"] // 2``."""
    last = SHRINK["vocab_size"] - 1
    large = sorted({token for _, token in _token_ids(default) if token > last})
    return {token: last - rank for rank, token in enumerate(large)}


def _fit_token_ids(default, kwargs: dict, tokens: dict[int, int]) -> None:
    for key, value in vars(default).items():
        if not _TOKEN_ID.search(key) or not _settable(type(default), key):
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value in tokens:
            kwargs[key] = tokens[value]
        elif isinstance(value, list):
            kwargs[key] = [tokens.get(v, v) for v in value if isinstance(v, int)]


def rescale_sections(sections: list[int], total: int) -> list[int]:
    """Integer sections in the same proportions, summing to ``total`` (each at least 1)."""
    scaled = [max(1, round(s * total / sum(sections))) for s in sections]
    scaled[-1] += total - sum(scaled)
    return scaled


def _fit_mrope_kwargs(default, kwargs: dict) -> None:
    """M-RoPE splits rotary_dim / 2 between t, h, w; some validators check it at construction."""
    rope = vars(default).get("rope_parameters")
    if not (isinstance(rope, dict) and isinstance(rope.get("mrope_section"), list)):
        return
    heads = kwargs.get("num_attention_heads") or vars(default).get("num_attention_heads")
    hidden = kwargs.get("hidden_size") or vars(default).get("hidden_size")
    head_dim = kwargs.get("head_dim") or (hidden // heads if hidden and heads else None)
    if not head_dim:
        return
    partial = rope.get("partial_rotary_factor") or vars(default).get("partial_rotary_factor") or 1.0
    kwargs["rope_parameters"] = {
        **rope,
        "mrope_section": rescale_sections(rope["mrope_section"], int(head_dim * partial) // 2),
    }


def _shrink(default, depth: int, widths: dict[int, int], tokens: dict[int, int]) -> dict:
    """Pass 1 and 3 for one config and (recursively) its sub-configs; records shrunk widths."""
    cls = type(default)
    kwargs = {
        key: value
        for key, value in SHRINK.items()
        if _has(default, key) and _settable(cls, key) and not _switched_off(default, key)
    }
    if depth and not _has(default, "initializer_range"):
        # A tower whose config has no initializer_range is initialised at 0.02 (transformers' fallback):
        # near-uniform attention, where a change of rotation hardly shows. Give it the same sharper init.
        kwargs["initializer_range"] = SHRINK["initializer_range"]
    for key in WIDTH_KEYS:
        original = vars(default).get(key)
        if key in kwargs and isinstance(original, int) and not isinstance(original, bool):
            widths.setdefault(original, kwargs[key])
    _fit_layer_lists(default, cls, kwargs)
    _fit_rotary_dim(default, kwargs)
    _fit_token_ids(default, kwargs, tokens)
    _fit_mrope_kwargs(default, kwargs)
    if depth < _DEPTH:
        for key, value in vars(default).items():
            if isinstance(value, transformers.PretrainedConfig):
                sub = _shrink(value, depth + 1, widths, tokens)
                if type(value).model_type:
                    sub["model_type"] = type(value).model_type  # a dict without it falls back to no type
                kwargs[key] = sub
    return kwargs


def _match_widths(default, kwargs: dict, widths: dict[int, int], depth: int) -> None:
    """Pass 2: a width-like key whose default is a shrunk width follows it; a tower's output width
    (``vision_config.out_hidden_size``, ``text_hidden_size``) is the text width, whatever its default."""
    cls = type(default)
    for key, value in vars(default).items():
        if isinstance(value, transformers.PretrainedConfig) and isinstance(kwargs.get(key), dict) and depth < _DEPTH:
            _match_widths(value, kwargs[key], widths, depth + 1)
        elif key in _TEXT_WIDTH_KEYS and depth > 0 and isinstance(value, int) and _settable(cls, key):
            kwargs[key] = SHRINK["hidden_size"]
        elif (
            key not in kwargs
            and _WIDTH_LIKE.search(key)
            and isinstance(value, int)
            and not isinstance(value, bool)
            and value in widths
            and _settable(cls, key)
        ):
            kwargs[key] = widths[value]


def _frame_classifier():
    """A tiny image classifier config (ViT, 32 x 32 pixels, 16 labels) for the PE Video encoders."""
    return transformers.ViTConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        image_size=32,
        patch_size=16,
        num_labels=16,
    )


def _apply_overrides(kwargs: dict, overrides: dict[str, Any], default) -> None:
    for dotted, value in overrides.items():
        value = value(default) if callable(value) else value
        *path, key = dotted.split(".")
        target = kwargs
        for part in path:
            target = target.setdefault(part, {})
        target[key] = value


def shrunk_kwargs(cls, family: str | None = None) -> dict:
    """Constructor kwargs for a tiny ``cls`` (sub-configs as dicts), with ``family``'s overrides."""
    default = cls()
    widths: dict[int, int] = {}
    kwargs = _shrink(default, 0, widths, token_map(default))
    _match_widths(default, kwargs, widths, 0)
    _apply_overrides(kwargs, CONFIG_OVERRIDES.get(family, {}), default)
    return kwargs


def module_sections(family: str) -> list[int] | None:
    """The M-RoPE sections the family's rotary module falls back to when its config has none, read
    from the modeling file (``rope_parameters.get("mrope_section", [16, 24, 24])``)."""
    path = Path(transformers.__file__).parent / "models" / family / f"modeling_{family}.py"
    found = _FALLBACK_SECTIONS.search(path.read_text(encoding="utf-8")) if path.exists() else None
    return [int(s) for s in found.group(1).split(",")] if found else None


def fit_mrope(config, family: str) -> None:
    """M-RoPE sections of the built config (text and main), rescaled to its real head size: its own
    sections, else the fallback of its rotary module."""
    for sub in {id(c): c for c in (config, config.get_text_config())}.values():
        rope = getattr(sub, "rope_parameters", None)
        if not isinstance(rope, dict) or "rope_type" not in rope:
            continue
        sections = rope.get("mrope_section") or module_sections(family)
        if not sections:
            continue
        head_dim = getattr(sub, "head_dim", None) or sub.hidden_size // sub.num_attention_heads
        partial = rope.get("partial_rotary_factor") or getattr(sub, "partial_rotary_factor", None) or 1.0
        rope["mrope_section"] = rescale_sections(sections, int(head_dim * partial) // 2)


def config_class(family: str):
    """The family's main config class: the one of its base model in the auto mappings, else the
    config class of the folder whose model_type is the family's name."""
    name = model_type(family)
    if name is not None:
        return transformers.AutoConfig.for_model(name).__class__
    module = importlib.import_module(f"transformers.models.{family}")
    for attribute in dir(module):
        cls = getattr(module, attribute)
        if isinstance(cls, type) and issubclass(cls, transformers.PretrainedConfig) and cls.model_type == family:
            return cls
    raise LookupError("no config class with a base model in the auto mappings, none named after the family")


def tiny_config(family: str):
    """The family's main config class, built tiny."""
    config_cls = config_class(family)
    config = config_cls(**shrunk_kwargs(config_cls, family))
    with contextlib.suppress(AttributeError):
        fit_mrope(config, family)
    return config
