"""RopeConfig: one validated description of a RoPE variant.

A ``RopeConfig`` holds everything needed to turn positions into rotation angles: the head and
rotary widths, the base, the scaling type and its parameters, and the memory layout of the pairs.
It reads every form of the transformers ``config.json`` (``rope_parameters``, the older
``rope_scaling``, the legacy ``type`` key, and the top-level ``rope_theta`` / ``rotary_pct`` /
``rotary_dim`` / ``partial_rotary_factor`` keys) and validates the result, so a bad value fails
here with a message naming the key, not later inside a forward pass.

Some models use a different RoPE per kind of layer (Gemma 3: base 1e4 in sliding-window layers,
linear x8 over base 1e6 in full-attention layers); their ``rope_parameters`` is keyed by layer type.
:meth:`RopeConfig.from_hf` reads one of them (``layer_type=...``) and :meth:`RopeConfig.by_layer_type`
all of them, as a :class:`LayerTypeRope` (see the section at the end of this file).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ropelab.errors import RopeConfigError, UnknownLayerTypeError

__all__ = ["ALL_LAYERS", "AXIAL_COMPOSITIONS", "AXIAL_FREQUENCIES", "LAYOUTS", "MROPE_COMPOSITIONS", "ROPE_TYPES",
           "LayerTypeRope", "RopeConfig", "RopeConfigError"]

ROPE_TYPES = ("default", "linear", "ntk", "dynamic", "yarn", "longrope", "llama3", "proportional")
LAYOUTS = ("half", "interleaved")

# ----- multi-axis RoPE: each rotated pair i reads one row a(i) of the positions (see pair_axes)
# rope_type of 2D axial RoPE for image patches (transformers' "axial"): positions (row, column).
AXIAL_ROPE_TYPE = "axial"
# How axial frequencies are laid out, pairs [0, P/2) reading the row and [P/2, P) the column:
# "repeated": each axis gets the ladder of a RoPE over R/2 channels (Qwen2VLVisionRotaryEmbedding);
# "alternating": the ladder of a RoPE over R channels, even entries to the row and odd ones to the
# column (PixtralVisionRotaryEmbedding).
AXIAL_FREQUENCIES = ("repeated", "alternating")
# How axial RoPE deals its pairs to the axes (the ladders above are per slot of `axial_order`):
# "contiguous": one block of P/A consecutive pairs per axis, in `axial_order` (Qwen2VLVisionRotaryEmbedding);
# "interleaved": the axes take pairs in turn, pair i reading axial_order[i % A] with entry i // A of its
#     ladder (Kimi_K25VisionRotaryEmbedding: w, h, w, h, ...).
AXIAL_COMPOSITIONS = ("contiguous", "interleaved")
# How M-RoPE (Qwen2-VL, arXiv 2409.12191 sec. 2.1) deals the pairs to positions (t, h, w), given mrope_section:
# "contiguous": section k is a block of consecutive pairs reading row k (Qwen2VLRotaryEmbedding);
# "interleaved": t, h, w, t, h, w, ... while h and w have sections left, then t (Qwen3VLTextRotaryEmbedding);
# "spatial_interleaved": sections are (h, w, t): h, w, h, w, ... for 2 * h pairs, then t (Ernie 4.5-VL,
#     Ernie4_5_VLMoeTextRotaryEmbedding; needs equal h and w sections).
# Two sections are two axes, (row, column): "interleaved" then deals row, column, row, column, ...
# (NeoMMERotaryEmbedding: row0-col0-row1-col1, its comment's `mrope_section = [R // 4, R // 4]`).
MROPE_COMPOSITIONS = ("contiguous", "interleaved", "spatial_interleaved")

# Legacy and alternative spellings of rope types found in published config.json files.
_ROPE_TYPE_ALIASES = {"ntk-aware": "ntk", "dynamic-ntk": "dynamic"}

# model_type values whose attention rotates adjacent pairs (x[2i], x[2i+1]) rather than halves.
# GPT-J and CodeGen: transformers' rotate_every_two; Cohere, Cohere2, Cohere2-MoE and BLT (each of
# its four sub-models): repeat_interleave'd cos/sin with an interleaved rotate_half.
_INTERLEAVED_MODEL_TYPES = frozenset({
    "gptj", "codegen", "cohere", "cohere2", "cohere2_moe",
    "blt", "blt_local_encoder", "blt_local_decoder", "blt_global_transformer", "blt_patcher",
    # M-RoPE text towers that rotate adjacent pairs with repeat_interleave'd tables (rotate_half_llm /
    # rotate_half_text): GLM-4V, GLM-OCR, Ernie 4.5-VL.
    "glm4v_text", "glm_ocr_text", "ernie4_5_vl_moe_text",
    # Axial vision towers with repeat_interleave'd tables and rotate_pairwise: Inkling2, SAM 3's ViT
    # (Sam3ViTRotaryEmbedding with apply_rotary_pos_emb_2d), and the memory attention of the SAM 2 video
    # family (Sam2VideoVisionRotaryEmbedding and its copies, with apply_rotary_pos_emb_2d*).
    "inkling2_vision", "sam3_vit_model", "sam2_video", "sam3_tracker_video", "edgetam_video",
})

# M-RoPE text towers by model_type: (composition, the sections their rotary module uses when the
# config has none). Both live in each family's rotary module in transformers 5.23, not in its config
# (the `mrope_section` defaults of Qwen2VLRotaryEmbedding, Qwen3VLTextRotaryEmbedding,
# Glm4vTextRotaryEmbedding, Ernie4_5_VLMoeTextRotaryEmbedding, Qwen3_5TextRotaryEmbedding, ...).
_MROPE_FAMILIES = {
    **dict.fromkeys(("qwen2_vl_text", "qwen2_5_vl_text", "qwen2_5_omni_text", "qwen2_5_omni_talker",
                     "paddleocr_vl_text"), ("contiguous", (16, 24, 24))),
    **dict.fromkeys(("glm4v_text", "glm4v_moe_text", "glm_image_text", "glm_ocr_text"), ("contiguous", (8, 12, 12))),
    **dict.fromkeys(("qwen3_vl_text", "qwen3_vl_moe_text", "qwen3_omni_moe_text", "qwen3_omni_moe_talker_text",
                     "cosmos3_edge_text", "cohere_compass_text"), ("interleaved", (24, 20, 20))),
    **dict.fromkeys(("qwen3_5_text", "qwen3_5_moe_text", "qwen4_exp_text"), ("interleaved", (11, 11, 10))),
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
# Vision configs whose attention width is `embed_dim` (`hidden_size` is the merger's output there).
_EMBED_DIM_MODEL_TYPES = frozenset({"qwen2_vl_vision"})
# Rotary modules whose head width is neither head_dim nor hidden_size // num_attention_heads, by model_type:
# (width key, divisor keys), head_dim = data[width key] // product of data[divisor keys].
_HEAD_DIM_FORMULAS: dict[str, tuple[str, tuple[str, ...]]] = {
    # The memory attention of the SAM 2 video family: Sam2VideoVisionRotaryEmbedding.compute_axial_rope_parameters
    # (copied in Sam3TrackerVideo... and EdgeTamVideo...; transformers 5.23), axial over the (w, h) feature grid
    # with the default (repeated, contiguous) pairs.
    **dict.fromkeys(("sam2_video", "sam3_tracker_video", "edgetam_video"),
                    ("memory_attention_hidden_size",
                     ("memory_attention_downsample_rate", "memory_attention_num_attention_heads"))),
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

# Keys of a rope parameter block that RopeConfig understands (anything else is reported).
_SCALING_KEYS = (
    "factor",
    "original_max_position_embeddings",
    "low_freq_factor",
    "high_freq_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "attention_factor",
    "truncate",
    "short_factor",
    "long_factor",
)

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
_HEAD_AND_ROPE_KEYS = ("rope_parameters", "rope_scaling", "rope_theta", "head_dim", "hidden_size",
                       "num_attention_heads", "n_embd", "d_model")

# model_type values whose transformers config carries a `rotary_dim` that its rotary module ignores
# (it rotates int(head_dim * partial_rotary_factor) channels): MiniMax-M3-VL's text model.
_IGNORED_ROTARY_DIM_MODEL_TYPES = frozenset({"minimax_m3_vl_text"})


def _fail(key: str, value: Any, accepted: str) -> RopeConfigError:
    return RopeConfigError(f"{key}={value!r} is invalid: expected {accepted}")


@dataclass(frozen=True)
class RopeConfig:
    """A validated RoPE variant.

    Attributes:
        head_dim: channels per attention head, ``D``.
        rotary_dim: leading channels of each head that are rotated, ``R`` (even, ``R <= D``); the
            remaining ``D - R`` channels pass through unchanged (partial rotation).
        base: ``theta`` of RoFormer eq. (15), ``theta_i = base ** (-2i / R)``; ``rope_theta`` in transformers.
        rope_type: one of :data:`ROPE_TYPES`.
        layout: ``"half"`` (GPT-NeoX / HF Llama: pair ``i`` is channels ``(i, i + R/2)``) or
            ``"interleaved"`` (GPT-J / Meta Llama: pair ``i`` is channels ``(2i, 2i + 1)``).
        max_position_embeddings: the model's advertised context (used by ``dynamic`` and to infer
            a missing yarn / longrope ``factor``).
        factor, original_max_position_embeddings, low_freq_factor, high_freq_factor, beta_fast,
        beta_slow, mscale, mscale_all_dim, attention_factor, truncate, short_factor, long_factor:
            the scaling parameters, with the meaning of the same keys in transformers'
            ``rope_parameters``; ``None`` where the type does not use them.
        mrope_section: M-RoPE (Qwen2-VL, arXiv 2409.12191 sec. 2.1): pairs per position row, three
            non-negative integers summing to ``rotary_dim // 2``; ``None`` for one-axis RoPE.
        mrope_composition: how the sections deal pairs to rows, one of :data:`MROPE_COMPOSITIONS`
            (default ``"contiguous"`` when ``mrope_section`` is set).
        axial_frequencies: for ``rope_type="axial"``, one of :data:`AXIAL_FREQUENCIES` (default
            ``"repeated"``).
        axial_order: for ``rope_type="axial"``, the position column (axis) of each slot of pairs, a
            permutation of ``0 .. A-1`` (default ``(0, 1)``: the row, then the column); its length is
            the number of axes ``A``, which must divide ``rotary_dim // 2``.
        axial_composition: for ``rope_type="axial"``, one of :data:`AXIAL_COMPOSITIONS` (default
            ``"contiguous"``).
        axial_pairs: for ``rope_type="axial"`` with repeated frequencies and contiguous blocks, the pairs
            of each slot of ``axial_order`` (default: ``rotary_dim // 2`` split evenly); each slot's ladder
            is a RoPE over its own ``2 * axial_pairs[s]`` channels. Pairs past their sum have frequency 0
            and pass through (ESMFold 2's inactive channels); they read the last slot's axis.
        axial_bases: for ``rope_type="axial"`` with repeated frequencies, the base of each slot of
            ``axial_order`` (default: ``base`` for all), e.g. ESMFold 2's spatial and space-uid bases.

    Multi-axis positions: pair ``i`` rotates by ``positions[pair_axes[i]] * inv_freq[i]``, with
    positions given per row (``[num_axes, ...]``, see :mod:`ropelab.rotary`).
        rotated_pairs: ``rope_type="proportional"`` only (p-RoPE, Barbero et al. 2025, arXiv
            2410.06205): pairs ``0 .. rotated_pairs-1`` rotate with ``base ** (-2i / head_dim)``, the
            other ``head_dim/2 - rotated_pairs`` have frequency 0 and never rotate. The tables span
            the whole head (``rotary_dim == head_dim``). transformers derives it from
            ``partial_rotary_factor`` ``p`` as ``int(p * head_dim // 2)``; default: every pair.
    """

    head_dim: int
    rotary_dim: int | None = None
    base: float = 10000.0
    rope_type: str = "default"
    layout: str = "half"
    max_position_embeddings: int | None = None
    factor: float | None = None
    original_max_position_embeddings: int | None = None
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    beta_fast: float | None = None
    beta_slow: float | None = None
    mscale: float | None = None
    mscale_all_dim: float | None = None
    attention_factor: float | None = None
    truncate: bool | None = None
    short_factor: tuple[float, ...] | None = None
    long_factor: tuple[float, ...] | None = None
    mrope_section: tuple[int, ...] | None = None
    mrope_composition: str | None = None
    axial_frequencies: str | None = None
    rotated_pairs: int | None = None
    axial_order: tuple[int, ...] | None = None
    axial_composition: str | None = None
    axial_pairs: tuple[int, ...] | None = None
    axial_bases: tuple[float, ...] | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)
        rope_type = _ROPE_TYPE_ALIASES.get(self.rope_type, self.rope_type)
        set_("rope_type", rope_type)
        if rope_type not in (*ROPE_TYPES, AXIAL_ROPE_TYPE):
            raise _fail("rope_type", self.rope_type, f"one of {', '.join((*ROPE_TYPES, AXIAL_ROPE_TYPE))}")
        if self.layout not in LAYOUTS:
            raise _fail("layout", self.layout, f"one of {', '.join(LAYOUTS)}")
        if not isinstance(self.head_dim, int) or isinstance(self.head_dim, bool) or self.head_dim <= 0:
            raise _fail("head_dim", self.head_dim, "a positive integer")
        rotary_dim = self.head_dim if self.rotary_dim is None else self.rotary_dim
        if not isinstance(rotary_dim, int) or isinstance(rotary_dim, bool) or rotary_dim <= 0:
            raise _fail("rotary_dim", rotary_dim, "a positive even integer")
        if rotary_dim % 2:
            raise _fail("rotary_dim", rotary_dim, "an even integer (channels rotate in pairs)")
        if rotary_dim > self.head_dim:
            raise _fail("rotary_dim", rotary_dim, f"at most head_dim={self.head_dim}")
        set_("rotary_dim", rotary_dim)
        if not (isinstance(self.base, (int, float)) and math.isfinite(self.base) and self.base > 1):
            raise _fail("rope_theta", self.base, "a finite number > 1")
        set_("base", float(self.base))
        for key in ("max_position_embeddings", "original_max_position_embeddings"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise _fail(key, value, "a positive integer")
        for key in ("short_factor", "long_factor"):
            value = getattr(self, key)
            if value is not None:
                set_(key, tuple(float(v) for v in value))
        self._validate_scaling()
        self._validate_axes()

    def _validate_scaling(self) -> None:
        kind = self.rope_type
        if kind in ("linear", "ntk", "dynamic", "llama3") and self.factor is None:
            raise _fail("factor", None, f"a number >= 1 for rope_type={kind!r}")
        if self.factor is not None and not (math.isfinite(self.factor) and self.factor >= 1):
            raise _fail("factor", self.factor, "a number >= 1 (scaling only ever extends the context)")
        if kind in ("yarn", "llama3", "longrope") and self.original_max_position_embeddings is None:
            raise _fail(
                "original_max_position_embeddings", None, f"the pretraining context length for rope_type={kind!r}"
            )
        if kind == "dynamic" and self.max_position_embeddings is None:
            raise _fail("max_position_embeddings", None, "a positive integer for rope_type='dynamic'")
        if kind == "yarn" and self.factor is None and self.max_position_embeddings is None:
            raise _fail("factor", None, "a number >= 1, or max_position_embeddings to infer it, for rope_type='yarn'")
        if kind == "llama3":
            for key in ("low_freq_factor", "high_freq_factor"):
                if getattr(self, key) is None or getattr(self, key) <= 0:
                    raise _fail(key, getattr(self, key), "a positive number for rope_type='llama3'")
            if self.high_freq_factor <= self.low_freq_factor:
                raise _fail("high_freq_factor", self.high_freq_factor, f"> low_freq_factor={self.low_freq_factor}")
        if kind == "longrope":
            pairs = self.rotary_dim // 2
            for key in ("short_factor", "long_factor"):
                value = getattr(self, key)
                if value is None or len(value) != pairs:
                    got = None if value is None else f"a list of length {len(value)}"
                    raise _fail(key, got, f"a list of rotary_dim // 2 = {pairs} numbers")
                if any(not (math.isfinite(v) and v > 0) for v in value):
                    raise _fail(key, value, "positive finite numbers")
        if self.attention_factor is not None and not (self.attention_factor > 0):
            raise _fail("attention_factor", self.attention_factor, "a positive number")
        self._validate_proportional()

    def _validate_proportional(self) -> None:
        if self.rope_type != "proportional":
            if self.rotated_pairs is not None:
                raise _fail("rotated_pairs", self.rotated_pairs, f"None for rope_type={self.rope_type!r} "
                            "(only 'proportional' leaves pairs unrotated; use rotary_dim for partial rotation)")
            return
        if self.rotary_dim != self.head_dim:
            raise _fail("rotary_dim", self.rotary_dim, f"head_dim={self.head_dim} for rope_type='proportional' "
                        "(its tables span the head; rotated_pairs sets how many pairs turn)")
        pairs = self.head_dim // 2
        rotated = pairs if self.rotated_pairs is None else self.rotated_pairs
        if not isinstance(rotated, int) or isinstance(rotated, bool) or not 0 <= rotated <= pairs:
            raise _fail("rotated_pairs", rotated, f"an integer in [0, head_dim // 2 = {pairs}]")
        object.__setattr__(self, "rotated_pairs", rotated)

    def _validate_axes(self) -> None:
        """M-RoPE sections and axial frequencies (see :attr:`pair_axes`); normalises their defaults."""
        set_ = lambda name, value: object.__setattr__(self, name, value)
        axial = self.rope_type == AXIAL_ROPE_TYPE
        if self.mrope_section is not None:
            sections = self.mrope_section
            if isinstance(sections, (str, bytes)) or not hasattr(sections, "__len__") or len(sections) not in (2, 3) \
                    or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in sections):
                raise _fail("mrope_section", sections, "three non-negative integers (temporal, height, width pairs), "
                            "or two (row, column pairs)")
            set_("mrope_section", tuple(sections))
            if sum(sections) != self.num_pairs:
                # transformers splits the rotated pairs only: with partial rotation (GLM-4V) that is
                # int(head_dim * partial_rotary_factor) // 2, not head_dim // 2.
                raise _fail("mrope_section", list(sections), f"sections summing to rotary_dim // 2 = {self.num_pairs}")
            composition = self.mrope_composition or "contiguous"
            if composition not in MROPE_COMPOSITIONS:
                raise _fail("mrope_composition", composition, f"one of {', '.join(MROPE_COMPOSITIONS)}")
            if composition == "spatial_interleaved" and len(sections) != 3:
                raise _fail("mrope_section", list(sections), "three sections (height, width, temporal) for "
                            "mrope_composition='spatial_interleaved'")
            if composition == "spatial_interleaved" and sections[0] != sections[1]:
                raise _fail("mrope_section", list(sections), "equal height and width sections (the first two) "
                            "for mrope_composition='spatial_interleaved'")
            if axial:
                raise _fail("mrope_section", list(sections), "None for rope_type='axial' (two axes, no sections)")
            set_("mrope_composition", composition)
        elif self.mrope_composition is not None:
            raise _fail("mrope_composition", self.mrope_composition, "None without mrope_section")
        if axial:
            self._validate_axial()
        else:
            for key in ("axial_frequencies", "axial_order", "axial_composition", "axial_pairs", "axial_bases"):
                if getattr(self, key) is not None:
                    raise _fail(key, getattr(self, key), "None unless rope_type='axial'")

    def _validate_axial(self) -> None:
        """Axial frequencies, axis order and composition; normalises their defaults."""
        set_ = lambda name, value: object.__setattr__(self, name, value)
        frequencies = self.axial_frequencies or "repeated"
        if frequencies not in AXIAL_FREQUENCIES:
            raise _fail("axial_frequencies", frequencies, f"one of {', '.join(AXIAL_FREQUENCIES)}")
        order = (0, 1) if self.axial_order is None else self.axial_order
        if isinstance(order, (str, bytes)) or not hasattr(order, "__len__") \
                or any(not isinstance(a, int) or isinstance(a, bool) for a in order) \
                or len(order) < 2 or sorted(order) != list(range(len(order))):
            raise _fail("axial_order", order, "a permutation of 0 .. A-1 for A >= 2 axes, e.g. (0, 1) or (1, 0)")
        composition = self.axial_composition or "contiguous"
        if composition not in AXIAL_COMPOSITIONS:
            raise _fail("axial_composition", composition, f"one of {', '.join(AXIAL_COMPOSITIONS)}")
        if self.axial_pairs is None and self.num_pairs % len(order):
            raise _fail("rotary_dim", self.rotary_dim, f"a multiple of {2 * len(order)} for rope_type='axial' "
                        f"with {len(order)} axes (the pairs split evenly between the axes)")
        set_("axial_frequencies", frequencies)
        set_("axial_order", tuple(order))
        set_("axial_composition", composition)
        set_("axial_pairs", self._slot_pairs())
        set_("axial_bases", self._slot_bases())

    def _slot_pairs(self) -> tuple[int, ...] | None:
        """``axial_pairs`` validated; None where it is the even split (one spelling per config)."""
        shares, slots = self.axial_pairs, len(self.axial_order)
        if shares is None:
            return None
        if isinstance(shares, (str, bytes)) or not hasattr(shares, "__len__") or len(shares) != slots \
                or any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in shares):
            raise _fail("axial_pairs", shares, f"{slots} positive integers, the pairs of each slot of axial_order")
        if sum(shares) > self.num_pairs:
            raise _fail("axial_pairs", list(shares), f"at most rotary_dim // 2 = {self.num_pairs} pairs in all")
        if (self.axial_frequencies, self.axial_composition) != ("repeated", "contiguous"):
            raise _fail("axial_pairs", list(shares), "None unless axial_frequencies='repeated' and "
                        "axial_composition='contiguous' (a block of pairs per slot, each with its own ladder)")
        even = self.num_pairs // slots
        return None if tuple(shares) == (even,) * slots and even * slots == self.num_pairs else tuple(shares)

    def _slot_bases(self) -> tuple[float, ...] | None:
        """``axial_bases`` validated; None where every slot has ``base``."""
        bases, slots = self.axial_bases, len(self.axial_order)
        if bases is None:
            return None
        if isinstance(bases, (str, bytes)) or not hasattr(bases, "__len__") or len(bases) != slots or any(
                not isinstance(b, (int, float)) or isinstance(b, bool) or not (math.isfinite(b) and b > 1) for b in bases):
            raise _fail("axial_bases", bases, f"{slots} finite numbers > 1, the base of each slot of axial_order")
        if self.axial_frequencies != "repeated":
            raise _fail("axial_bases", list(bases), "None unless axial_frequencies='repeated' (alternating "
                        "frequencies deal one ladder to every axis)")
        return None if all(b == self.base for b in bases) else tuple(float(b) for b in bases)

    # ------------------------------------------------------------------ derived values
    @property
    def partial_rotary_factor(self) -> float:
        """Fraction of each head that is rotated, ``rotary_dim / head_dim``."""
        return self.rotary_dim / self.head_dim

    @property
    def num_pairs(self) -> int:
        """Number of rotated 2D planes, ``rotary_dim // 2``."""
        return self.rotary_dim // 2

    @property
    def num_axes(self) -> int:
        """Position rows a token carries: one per M-RoPE section (3: t, h, w; 2: row, column),
        ``len(axial_order)`` for axial (2: row, column), else 1."""
        if self.mrope_section is not None:
            return len(self.mrope_section)
        return len(self.axial_order) if self.rope_type == AXIAL_ROPE_TYPE else 1

    @property
    def pair_axes(self) -> tuple[int, ...]:
        """The position row each pair reads, ``[rotary_dim // 2]``: pair ``i`` rotates by
        ``positions[pair_axes[i]] * inv_freq[i]`` (all 0 for one-axis RoPE)."""
        if self.rope_type == AXIAL_ROPE_TYPE:
            return _axial_pair_axes(self.num_pairs, self.axial_order, self.axial_composition, self.axial_pairs)
        return _pair_axes(self.num_pairs, self.mrope_section, self.mrope_composition)

    @property
    def is_dynamic(self) -> bool:
        """True when the frequencies depend on the current sequence length."""
        return self.rope_type in ("dynamic", "longrope")

    @property
    def trained_length(self) -> int | None:
        """The context the unscaled frequencies were trained at (``original_max_position_embeddings``
        for scaled types, else ``max_position_embeddings``).

        A ``linear`` (or ``ntk``) config states no pretraining length, so this is then its
        ``max_position_embeddings``, which may be the extended length (:attr:`states_trained_length`
        is False). ``max_position_embeddings / factor`` is not derived: transformers reads no
        pretraining length for these types (``_validate_linear_rope_parameters`` takes ``factor``
        only), and Gemma 3 contradicts it: pretrained on 32K sequences, then scaled to 128K with a
        linear factor of 8 (Gemma 3 Technical Report, arXiv 2503.19786), its config gives
        131072 / 8 = 16384. State the length as ``original_max_position_embeddings`` to use it."""
        return self.original_max_position_embeddings or self.max_position_embeddings

    @property
    def states_trained_length(self) -> bool:
        """False when :attr:`trained_length` is only a guess: ``max_position_embeddings`` of a config
        scaled by a static factor (``linear``, ``ntk``) without ``original_max_position_embeddings``."""
        return self.rope_type not in ("linear", "ntk") or self.original_max_position_embeddings is not None

    def replace(self, **changes: Any) -> RopeConfig:
        """A copy with some fields changed (and validated again)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ transformers interop
    @classmethod
    def from_hf(cls, obj: Any, layer_type: str | None = None) -> RopeConfig:
        """Read a transformers config object, a plain dict, or a path to a ``config.json``.

        Both the ``rope_parameters`` (transformers >= 5) and ``rope_scaling`` forms are read, the
        legacy ``type`` key is an alias of ``rope_type``, and the top-level ``rope_theta``,
        ``head_dim``, ``partial_rotary_factor``, ``rotary_pct``, ``rotary_dim`` and
        ``max_position_embeddings`` are honoured. A multimodal ``config.json`` whose top level has
        no RoPE or head keys is read from its ``text_config``.

        Args:
            obj: the config.
            layer_type: for a config whose ``rope_parameters`` is keyed by layer type (Gemma 3,
                OLMo 3, ModernBERT, ...), the layer type to read, e.g. ``"sliding_attention"``;
                required there (:meth:`by_layer_type` reads them all). A flat config accepts a
                layer type it lists in ``layer_types`` (every layer has the same RoPE).

        Raises:
            RopeConfigError: a bad value; a per-layer-type config without ``layer_type`` (the
                message lists its layer types); a ``layer_type`` the config does not have, or one
                without RoPE (``None`` parameters: a NoPE layer type).
        """
        data, source = _hf_dict(obj)
        rope = _by_layer_type(data, source)
        if layer_type is None:
            if not rope.uniform:
                raise RopeConfigError(
                    f"rope_parameters is keyed by layer type ({', '.join(rope)}): pass "
                    f"RopeConfig.from_hf(config, layer_type=...) with one of them, or call "
                    f"RopeConfig.by_layer_type(config) for all"
                )
            return rope[ALL_LAYERS]
        if rope.uniform:
            if layer_type not in rope.layer_types:
                listed = ", ".join(dict.fromkeys(rope.layer_types)) or "none"
                raise _fail("layer_type", layer_type, f"one of the config's layer_types ({listed}); the config has "
                            "one RoPE for every layer, read it with layer_type=None")
            return rope[ALL_LAYERS]
        cfg = rope[layer_type]
        if cfg is None:
            raise _fail("layer_type", layer_type, f"a layer type with RoPE: its rope_parameters entry is None (NoPE); "
                        f"layer types with RoPE: {', '.join(rope.rope_layer_types) or 'none'}")
        return cfg

    @classmethod
    def by_layer_type(cls, obj: Any) -> LayerTypeRope:
        """The RoPE of every layer type of ``obj`` (read as :meth:`from_hf` reads it).

        A per-layer-type config gives one entry per layer type (``None`` for a NoPE type); a flat
        config gives the single entry :data:`ALL_LAYERS` (``"all"``, ``uniform`` True). Either way
        ``layer_types`` is the config's per-layer list (empty when it names none).
        """
        return _by_layer_type(*_hf_dict(obj))

    def to_hf(self) -> dict[str, Any]:
        """The transformers (>= 5) form: top-level keys plus a ``rope_parameters`` block.

        ``RopeConfig.from_hf(cfg.to_hf()) == cfg`` holds for every config.
        """
        params: dict[str, Any] = {"rope_type": self.rope_type, "rope_theta": self.base}
        if self.rotary_dim != self.head_dim:
            params["partial_rotary_factor"] = self.partial_rotary_factor
        if self.rope_type == "proportional" and self.rotated_pairs != self.num_pairs:
            params["partial_rotary_factor"] = _proportion_for(self.rotated_pairs, self.head_dim)
        for key in _SCALING_KEYS:
            value = getattr(self, key)
            if value is not None:
                params[key] = list(value) if isinstance(value, tuple) else value
        if self.mrope_section is not None:
            params["mrope_section"] = list(self.mrope_section)
            if self.mrope_composition == "interleaved":
                params["mrope_interleaved"] = True  # Qwen3-VL's spelling
        out: dict[str, Any] = {"head_dim": self.head_dim, "rope_parameters": params}
        # ropelab's own keys where transformers has none (the composition lives in the model code there).
        if self.mrope_composition not in (None, "contiguous"):
            out["mrope_composition"] = self.mrope_composition
        if self.axial_frequencies not in (None, "repeated"):
            out["axial_frequencies"] = self.axial_frequencies
        if self.axial_order not in (None, (0, 1)):
            out["axial_order"] = list(self.axial_order)
        if self.axial_composition not in (None, "contiguous"):
            out["axial_composition"] = self.axial_composition
        for key in ("axial_pairs", "axial_bases"):
            if getattr(self, key) is not None:
                out[key] = list(getattr(self, key))
        if self.rotary_dim != self.head_dim:
            out["rotary_dim"] = self.rotary_dim  # exact even where the fraction is not
        if self.max_position_embeddings is not None:
            out["max_position_embeddings"] = self.max_position_embeddings
        if self.layout == "interleaved":
            out["rope_layout"] = "interleaved"
        return out


@functools.lru_cache(maxsize=256)
def _pair_axes(pairs: int, sections: tuple[int, ...] | None, composition: str | None) -> tuple[int, ...]:
    """The position row of each of ``pairs`` pairs (see :attr:`RopeConfig.pair_axes`)."""
    if sections is None:
        return (0,) * pairs  # one axis (axial configs use _axial_pair_axes)
    if composition == "contiguous":
        return tuple(axis for axis, size in enumerate(sections) for _ in range(size))
    if composition == "interleaved":
        # transformers' rule: pair i reads h (w) when i % 3 == 1 (2) and i < 3 * h (3 * w), else t;
        # with sections (t, h, w) and h, w <= (t + h + w) / 3 each row gets exactly its section.
        # Two sections (row, column), the same rule with A = 2: odd pairs below 2 * column read the column.
        axes = len(sections)
        return tuple(i % axes if i % axes and i < axes * sections[i % axes] else 0 for i in range(pairs))
    # spatial_interleaved, sections (h, w, t): h, w, h, w, ... then t
    return tuple(1 + i % 2 if i < 2 * sections[0] else 0 for i in range(pairs))


@functools.lru_cache(maxsize=64)
def _axial_pair_axes(pairs: int, order: tuple[int, ...], composition: str,
                     shares: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The position column of each of ``pairs`` axial pairs (see :data:`AXIAL_COMPOSITIONS`); with
    ``shares`` (``axial_pairs``) slot ``s`` is a block of ``shares[s]`` pairs, and the frozen pairs
    after them read the last slot's axis."""
    axes = len(order)
    if shares is not None:
        blocks = tuple(axis for axis, size in zip(order, shares) for _ in range(size))
        return blocks + (order[-1],) * (pairs - len(blocks))
    if composition == "interleaved":
        return tuple(order[i % axes] for i in range(pairs))
    return tuple(order[i * axes // pairs] for i in range(pairs))


def _proportion_for(rotated_pairs: int, head_dim: int) -> float:
    """The ``partial_rotary_factor`` p that transformers turns back into ``rotated_pairs`` through
    ``int(p * head_dim // 2)``: ``2 k / D``, nudged up by half a channel where rounding would lose a
    pair or where it would be 0 (transformers wants p > 0)."""
    proportion = 2 * rotated_pairs / head_dim
    if proportion == 0 or int(proportion * head_dim // 2) != rotated_pairs:
        proportion = (2 * rotated_pairs + 0.5) / head_dim
    return proportion


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
        raise _fail("rope_parameters", sorted(unknown), f"only the keys rope_type, type, rope_theta, "
                    f"partial_rotary_factor, {', '.join(_SCALING_KEYS)}, {', '.join(sorted(_OUTSIDE_TABLE_KEYS))}, "
                    f"{', '.join(_MROPE_KEYS)}")
    top_max = _first(data, "max_position_embeddings", "n_positions", "n_ctx")
    if params.get("max_position_embeddings") is not None and top_max is not None \
            and params["max_position_embeddings"] != top_max:
        raise _fail("rope_parameters.max_position_embeddings", params["max_position_embeddings"],
                    f"the top-level max_position_embeddings={top_max!r} (transformers reads only the top-level one)")

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
        # DeepSeek-V2/V3 checkpoints flag interleaved q/k channels with `rope_interleave`.
        interleaved = data.get("model_type") in _INTERLEAVED_MODEL_TYPES or data.get("rope_interleave") is True
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
    if rope_type == AXIAL_ROPE_TYPE and rotary_dim is None \
            and _AXIAL_FAMILIES.get(data.get("model_type"), {}).get("even_axis_share", False):
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
    head_dim = data.get("head_dim")
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
    return next((slots for slots in _COORDINATE_FAMILIES.values() if all(k in data for slot in slots for k in slot)), None)


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
    return {"head_dim": head_dim, "base": bases[0], "rope_type": AXIAL_ROPE_TYPE, "layout": data.get("rope_layout") or "half",
            "axial_order": tuple(range(len(slots))), "axial_pairs": tuple(_integral(data[key]) for key, _ in slots),
            "axial_bases": bases}


def _axes_from_hf(data: Mapping[str, Any], params: Mapping[str, Any], rope_type: str, pairs: int) -> dict[str, Any]:
    """The multi-axis fields: M-RoPE sections and composition, or the axial frequency layout
    (``pairs``: the rotated pairs, which a family's equal sections split)."""
    model_type = data.get("model_type")
    if rope_type == AXIAL_ROPE_TYPE:
        family = _AXIAL_FAMILIES.get(model_type, {})
        fields = {key: data.get(key) or family.get(key) for key in ("axial_frequencies", "axial_order", "axial_composition")}
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
        raise _fail("mrope_section", sections, f"a composition ropelab reproduces: {model_type}'s rotary module "
                    "splits the doubled [c, c] table, so the two channels of a pair can read different position rows "
                    "(ropelab.integrations.hf.patch reproduces its tables channel by channel)")
    if composition is None and (params.get("mrope_interleaved") is True or params.get("interleaved") is True):
        composition = "interleaved"
    return {"mrope_section": _integral_list(sections), "mrope_composition": data.get("mrope_composition") or composition}


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
        raise _fail("rope_type", rope_type, f"'default' for {model_type} (its rotary module is read as "
                    "axial RoPE over the default frequencies; ropelab reads no scaled form of it)")
    partial = params.pop("partial_rotary_factor", None) or data.get("partial_rotary_factor") or 1.0
    head_dim = _hf_head_dim(data)
    width = data.get(family["width"])
    if not isinstance(head_dim, int) or not isinstance(width, int):
        raise _fail(family["width"], width, f"the width of the vector {model_type}'s rotary module turns, with a head_dim")
    ladder = int(head_dim * partial)
    if ladder <= 0 or ladder % 2 or (family["whole"] and 2 * ladder != width):
        need = f"{width // 2}, half of {family['width']}={width}" if family["whole"] else "a positive even number"
        raise _fail("partial_rotary_factor", partial, f"a factor whose ladder int(head_dim={head_dim} * factor) is "
                    f"{need} (each of the 2 axes of {model_type}'s rotary module reads that ladder)")
    axial = {key: family[key] for key in ("axial_frequencies", "axial_order", "axial_composition") if key in family}
    params["rope_type"] = AXIAL_ROPE_TYPE
    return {**data, **axial, "head_dim": width, "rotary_dim": 2 * ladder, "rope_parameters": params,
            "partial_rotary_factor": None, "rope_layout": "interleaved"}


def _integral_list(values: Any) -> Any:
    """Section sizes written as whole floats (``16.0``) as ints; anything else unchanged, for RopeConfig to validate."""
    if isinstance(values, (list, tuple)):
        return tuple(_integral(v) for v in values)
    return values


# ====================================================================== per-layer-type RoPE
ALL_LAYERS = "all"  # the one key of a LayerTypeRope read from a flat config

# transformers 5.23 builds per-layer-type rope_parameters from the flat keys of older config.json
# files in each family's `convert_rope_params_to_dict` (Gemma3TextConfig, Gemma3nTextConfig,
# T5Gemma2TextConfig / T5Gemma2DecoderConfig, ModernBertConfig, ModernBertDecoderConfig,
# Olmo3Config): model_type -> ({layer type: (theta key, default theta)}, layer types rope_scaling joins).
_GEMMA3_LEGACY = ({"full_attention": ("rope_theta", 1_000_000.0), "sliding_attention": ("rope_local_base_freq", 10_000.0)},
                  ("full_attention",))
_MODERNBERT_LEGACY = ({"full_attention": ("global_rope_theta", 160_000.0), "sliding_attention": ("local_rope_theta", 10_000.0)},
                      ("full_attention", "sliding_attention"))
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

# Gemma 4 family: config.json's `global_head_dim` (transformers default 512) is the head width of the
# full-attention layers (their configs' __post_init__ turns it into per_layer_config overrides).
_GLOBAL_HEAD_DIM_MODEL_TYPES = frozenset({"gemma4_text", "gemma4_unified_text", "diffusion_gemma_text",
                                          "embedding_gemma2_text"})
_DEFAULT_GLOBAL_HEAD_DIM = 512

# Per-layer-type RoPE types whose missing original_max_position_embeddings transformers fills with
# max_position_embeddings (standardize_rope_params, nested case).
_NEEDS_ORIGINAL = ("llama3", "yarn", "longrope")


@dataclass(frozen=True)
class LayerTypeRope(Mapping):
    """The RoPE of every layer type of one model, read-only: ``{layer_type: RopeConfig | None}``.

    ``None`` marks a layer type without RoPE (NoPE, e.g. BEAM's full-attention layers). Build it with
    :meth:`RopeConfig.by_layer_type`; a flat config gives the single entry :data:`ALL_LAYERS`.

    Attributes:
        configs: layer type -> :class:`RopeConfig` or ``None``, in the config's order.
        layer_types: the config's per-layer list (``layer_types[i]`` is layer ``i``'s type), ``()``
            when the config names none. It may name types without an entry (LFM3's ``conv`` layers
            have no attention), and DeepSeek-V4 keys its RoPE by labels (``main``, ``compress``)
            that are not layer types at all.
        source: where it was read from.
    """

    configs: Mapping[str, RopeConfig | None]
    layer_types: tuple[str, ...] = ()
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        configs = dict(self.configs)
        if not configs:
            raise _fail("configs", configs, "at least one layer type")
        for name, cfg in configs.items():
            if not isinstance(name, str) or not (cfg is None or isinstance(cfg, RopeConfig)):
                raise _fail(f"configs[{name!r}]", cfg, "a RopeConfig or None (no RoPE), keyed by a layer type name")
        object.__setattr__(self, "configs", MappingProxyType(configs))
        object.__setattr__(self, "layer_types", tuple(self.layer_types))

    def __reduce__(self):  # the read-only view does not pickle or deepcopy; rebuild from a plain dict
        return (type(self), (dict(self.configs), self.layer_types, self.source))

    def __getitem__(self, layer_type: str) -> RopeConfig | None:
        if layer_type not in self.configs:
            raise UnknownLayerTypeError(f"layer_type={layer_type!r} is invalid: expected one of {', '.join(self.configs)}")
        return self.configs[layer_type]

    def __iter__(self) -> Iterator[str]:
        return iter(self.configs)

    def __len__(self) -> int:
        return len(self.configs)

    def __hash__(self) -> int:
        return hash((tuple(self.configs.items()), self.layer_types))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LayerTypeRope):
            return NotImplemented
        return dict(self.configs) == dict(other.configs) and self.layer_types == other.layer_types

    @property
    def uniform(self) -> bool:
        """True when one RoPE serves every layer (read from a flat config)."""
        return tuple(self.configs) == (ALL_LAYERS,)

    @property
    def rope_layer_types(self) -> tuple[str, ...]:
        """The layer types that have RoPE (not None)."""
        return tuple(name for name, cfg in self.configs.items() if cfg is not None)

    def layers(self, layer_type: str) -> tuple[int, ...]:
        """Indices of the layers of ``layer_type`` (every layer for :data:`ALL_LAYERS`)."""
        self[layer_type]  # unknown names fail here
        if self.uniform:
            return tuple(range(len(self.layer_types)))
        return tuple(i for i, name in enumerate(self.layer_types) if name == layer_type)

    def replace(self, **changes: Any) -> LayerTypeRope:
        """A copy with ``changes`` applied to every layer type's RopeConfig (NoPE types stay None)."""
        configs = {name: None if cfg is None else cfg.replace(**changes) for name, cfg in self.configs.items()}
        return dataclasses.replace(self, configs=configs)

    def to_hf(self) -> dict[str, Any]:
        """The transformers (>= 5) form: ``rope_parameters`` keyed by layer type, ``layer_types``, and
        ``per_layer_config`` head widths where a layer type's head differs from the first one's.

        ``RopeConfig.by_layer_type(rope.to_hf()) == rope`` holds.
        """
        if self.uniform:
            return {**self[ALL_LAYERS].to_hf(), **({"layer_types": list(self.layer_types)} if self.layer_types else {})}
        present = [cfg for cfg in self.configs.values() if cfg is not None]
        out: dict[str, Any] = {"rope_parameters": {}, "layer_types": list(self.layer_types)}
        for key in ("max_position_embeddings", "layout"):
            values = {getattr(cfg, key) for cfg in present}
            if len(values) > 1:
                raise _fail(key, sorted(values, key=str), "one value for all layer types (transformers keeps it top-level)")
        for name, cfg in self.configs.items():
            flat = None if cfg is None else cfg.to_hf()
            out["rope_parameters"][name] = None if flat is None else flat.pop("rope_parameters")
            if flat and name in self.layer_types and flat["head_dim"] != present[0].head_dim:
                overrides = {i: {"head_dim": flat["head_dim"]} for i, t in enumerate(self.layer_types) if t == name}
                out.setdefault("per_layer_config", {}).update(overrides)
            elif flat and flat["head_dim"] != present[0].head_dim:
                raise _fail("layer_types", list(self.layer_types), f"a list naming {name!r}, whose head_dim "
                            f"{flat['head_dim']} differs from {present[0].head_dim} (per_layer_config is keyed by layer)")
            for key, value in (flat or {}).items():
                if key not in ("head_dim", "rotary_dim"):
                    out[key] = value
            partial = (out["rope_parameters"][name] or {}).get("partial_rotary_factor")
            if flat and "rotary_dim" in flat and int(flat["head_dim"] * partial) != flat["rotary_dim"]:
                raise _fail(f"{name}.rotary_dim", flat["rotary_dim"], "a partial rotation that partial_rotary_factor "
                            "states exactly (per-layer-type configs have no per-type rotary_dim key)")
        out["head_dim"] = present[0].head_dim if present else None
        return out


def _layer_type_head_dim(data: Mapping[str, Any], layer_type: str) -> Any:
    """The head width of ``layer_type``'s layers where the config sets one per layer (Gemma 4's
    full-attention layers); None where the top-level one applies."""
    layer_types = data.get("layer_types") or ()
    per_layer = data.get("per_layer_config")
    if isinstance(per_layer, Mapping) and layer_type in layer_types:
        widths = {(per_layer.get(i) or per_layer.get(str(i)) or {}).get("head_dim")
                  for i, name in enumerate(layer_types) if name == layer_type}
        if len(widths) > 1:
            raise _fail(f"per_layer_config head_dim of the {layer_type} layers", sorted(widths, key=str),
                        "one head_dim per layer type (transformers' per-layer-type rotary module needs one)")
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
    if data.get("model_type") == "deepseek_v4" and not all(isinstance((params or {}).get(k), Mapping) for k in ("main", "compress")):
        params = _deepseek_v4_blocks(data)
    legacy = _LEGACY_LAYER_TYPE_ROPE.get(data.get("model_type"))
    if legacy is not None:
        thetas, scaled = legacy
        nested = params if _all_blocks(data.get("rope_parameters")) else None
        params = {name: None if block is None else dict(block) for name, block in (nested or {}).items()}
        for name, (key, default) in thetas.items():
            block = params.get(name) or {"rope_type": "default"}
            if name in scaled and nested is None and isinstance(data.get("rope_parameters") or data.get("rope_scaling"), Mapping):
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
    return isinstance(params, Mapping) and bool(params) and all(v is None or isinstance(v, Mapping) for v in params.values())


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
        data["qk_rope_head_dim"] / head_dim if data.get("qk_rope_head_dim") else 64 / 512)
    main = {"rope_type": "default", "rope_theta": data.get("rope_theta") or 10_000.0, "partial_rotary_factor": partial}
    compress = {**flat, "rope_theta": data.get("compress_rope_theta") or 160_000.0, "partial_rotary_factor": partial}
    if compress["rope_type"] == "yarn":
        compress.setdefault("attention_factor", 1.0)
    if compress["rope_type"] in _NEEDS_ORIGINAL:
        compress.setdefault("original_max_position_embeddings",
                            data.get("original_max_position_embeddings") or data.get("max_position_embeddings"))
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
    flat = {key: value for key, value in data.items() if key not in ("rope_scaling", "original_max_position_embeddings")}
    flat["rope_parameters"] = block
    head_dim = _layer_type_head_dim(data, layer_type)
    if head_dim is not None:
        flat["head_dim"] = head_dim
    try:
        return RopeConfig(**_fields_from_hf_dict(flat), source=source)
    except RopeConfigError as error:
        raise RopeConfigError(f"layer type {layer_type!r}: {error}") from None


def _by_layer_type(data: Mapping[str, Any], source: str | None) -> LayerTypeRope:
    layer_types = data.get("layer_types") or ()
    if not isinstance(layer_types, (list, tuple)) or not all(isinstance(name, str) for name in layer_types):
        raise _fail("layer_types", layer_types, "a list of layer type names")
    nested = _nested_rope_parameters(data)
    if nested is None:
        return LayerTypeRope({ALL_LAYERS: RopeConfig(**_fields_from_hf_dict(data), source=source)}, layer_types, source)
    missing = [name for name in dict.fromkeys(layer_types) if name not in nested]
    if missing and _rope_labels(data) is None:
        raise _fail("layer_types", missing[0], f"a layer type with an entry in rope_parameters (it has "
                    f"{', '.join(nested)}); write null there for a layer type without RoPE")
    configs = {}
    for name, block in nested.items():
        label = f"{source or 'config'} [{name}]"
        configs[name] = None if block is None else _layer_type_config(data, name, block, label)
    return LayerTypeRope(configs, layer_types, source)
