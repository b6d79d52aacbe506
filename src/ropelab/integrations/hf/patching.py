"""Make a transformers model use ropelab for its rotary embedding.

transformers models compute RoPE in one of two places:

- a ``*RotaryEmbedding`` module (Llama, Mistral, Qwen2, Gemma, Phi-3, GPT-NeoX, Cohere, ...) whose
  ``forward(x, position_ids)`` returns ``(cos, sin)``, each ``[B, S, R]``, that the attention
  layers apply. :func:`patch` swaps each for :class:`HFRotaryAdapter`, which returns ropelab's
  exact-angle tables (float64 angles, every scaling type, dynamic types without buffer mutation);
- a fixed ``embed_positions`` sin|cos table inside each attention layer (GPT-J, CodeGen), which
  :func:`patch` overwrites with ropelab's exact table.

Some families use a different RoPE per kind of layer (Gemma 3/4, OLMo 3, ModernBERT, ...): their
config's ``rope_parameters`` is keyed by layer type and their module's ``forward(x, position_ids,
layer_type)`` keeps one table per type. The adapter then holds a :class:`~ropelab.config.LayerTypeRope`
and answers each call with the RopeConfig of the layer type asked for; a layer type without RoPE
(``None``, NoPE) is never asked for by the model and raises if it is.

Before swapping, :func:`patch` calls the original module on short positions (once per layer type)
and checks that the adapter agrees with it, so a model family whose RoPE ropelab reads differently
fails loudly at patch time instead of silently producing other logits. A module that is not a
``(x, position_ids[, layer_type]) -> (cos, sin)`` module of real tensors and is none of the special
cases below (vision towers called with other arguments, modules that fold several position axes
into one table as M-RoPE does without saying so in their config), or whose config ropelab cannot
read, is refused with a :class:`PatchError` naming it.

Table layouts (``HFRotaryAdapter.table_layout``) follow what each family's attention expects, which
is not always the channel layout of q and k:

- ``"half"``: ``[c, c]``, ``R`` wide (Llama and most others; also DeepSeek-V3 style ``rope_interleave``
  models, whose attention de-interleaves q and k in ``apply_rotary_pos_emb_interleave`` and so keeps
  half-split tables);
- ``"interleaved"``: ``[c0, c0, c1, c1, ...]``, ``R`` wide (Cohere);
- ``"pairs"``: ``[c]``, ``R/2`` wide, one value per pair (GPT-OSS, whose attention splits q and k in
  halves itself). Read from the width of the original module's tables.

Multi-axis rotary modules take more than one position per token (see ``RopeConfig.pair_axes``):

- M-RoPE text towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, GLM-4V, Ernie 4.5-VL, ...) take ``position_ids``
  ``[3, B, S]`` (temporal, height, width) or ``[B, S]`` (the same on the three rows) and return
  ``[B, S, R]``; NeoMME's encoder, per layer type, takes two rows ``[2, B, S]`` (row, column) or
  ``[B, S]``; the composition of each family is data in :mod:`ropelab.config`;
- axial vision towers (``rope_type="axial"``: Qwen2-VL's, Pixtral's, Kimi-K2.5's, Step3p7's, ...)
  take ``[N, A]`` patch positions, axis last ((row, column); MiniMax-M3: (t, h, w)), and return
  ``[N, R]``; each family's axis order is data in :mod:`ropelab.config`.

Special cases, each with its own adapter subclass (same ``cfg``, exact float64 angles) and its own
probe, compared with the module's output before the swap:

- complex ``freqs_cis`` ``[B, S, R/2]`` (DeepSeek-V2, Llama 4's text tower): :class:`HFComplexRotaryAdapter`;
- Llama 4's vision tower, which takes no positions and returns the ``freqs_cis`` of a fixed patch
  grid: :class:`HFFixedGridAdapter`;
- EfficientLoFTR, whose module takes the coarse feature map and returns the tables of its aggregated
  grid (1-based (row, column), pairs alternating axes over the whole hidden vector):
  :class:`HFFeatureGridAdapter`;
- EoMT-DINOv3, whose module takes the pixels and rotates each patch by its centre in ``[-1, 1]``
  (fractional (row, column) positions, times 2 pi): :class:`HFPatchCentreAdapter`;
- MusicFlamingo's rotary time embedding, ``forward(timestamps, seq_len)``: two axes (window index,
  time index) at fractional positions that the timestamps give: :class:`HFTimestampAdapter`;
- RoPE over physical coordinates, ``forward(coordinates, ids, dtype)``: ESMFold 2's atom encoders
  (x, y, z and a per-atom space uid, float positions, a base per slot; its module keeps no config, so
  the adapter reads the atom-config keys the module holds as attributes): :class:`HFCoordinateAdapter`;
- rotary modules named otherwise (``ROTARY_CLASS_NAME``), called as ``forward(hidden_states)`` for
  positions ``0 .. S-1``: the conformer speech encoders' ``torch.stack([cos, sin])``
  (Wav2Vec2-Conformer, Wav2Vec2-BERT, SeamlessM4T): :class:`HFStackedTableAdapter`; CLVP's table of
  angles: :class:`HFAngleTableAdapter`; their sizes are data keyed by model_type
  (``_NAMED_ROTARY_CONFIGS``). DINOv3 ViT and Sapiens2 (``*RopePositionEmbedding``) are patch-centre
  modules, as EoMT-DINOv3's. V-JEPA 2 computes RoPE inside its attention (``VJEPA2RopeAttention``),
  with no module to replace: :func:`patch` refuses it and says so;
- tables that are not laid out per pair over the whole head: Gemma 4's vision tower (one ``[c, c]``
  half per axis, positions ``[B, N, 2]``) and HunYuan-VL's text tower (its ``mrope_section`` cuts the
  doubled ``[c, c]`` table, so the two channels of a pair can read different position rows; the core
  RopeConfig refuses that reading, the adapter reproduces the tables): :class:`HFChannelTableAdapter`.

The probe then gives each row different positions, so that a wrong section mapping fails at patch
time. Tables come back in the dtype the original returns: the input's, or float32 for the modules
that always return float32 (Qwen2-VL's vision tower, Ernie 4.5-VL's text tower, OLMo 3, BEAM, LFM3).
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch
from torch import nn

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import PatchError, RopeConfigError
from ropelab.frequencies import rope_frequencies
from ropelab.reference import pairs_to_channels
from ropelab.rotary import rope_cos_sin
from ropelab.rotary_tables import fractional_cos_sin, rope_angles

__all__ = ["HFAngleTableAdapter", "HFChannelTableAdapter", "HFComplexRotaryAdapter", "HFCoordinateAdapter",
           "HFFeatureGridAdapter", "HFFixedGridAdapter", "HFPatchCentreAdapter", "HFRotaryAdapter",
           "HFStackedTableAdapter", "HFTimestampAdapter", "PatchError", "ROTARY_CLASS_NAME", "patch",
           "rotary_output_kind", "unpatch"]

# Class names of the modules patch replaces: transformers' *RotaryEmbedding, and the families that
# name theirs otherwise (transformers 5.23): *RotaryPositionalEmbedding (Wav2Vec2-Conformer,
# Wav2Vec2-BERT, SeamlessM4T's conformer, CLVP) and *RopePositionEmbedding (DINOv3 ViT, Sapiens2).
ROTARY_CLASS_NAME = re.compile(r"\w*(RotaryEmbedding|RotaryPositionalEmbedding|RopePositionEmbedding)")
# Attention modules that compute RoPE themselves, with no rotary module (V-JEPA 2's VJEPA2RopeAttention).
_ROPE_IN_ATTENTION = re.compile(r"\w*Rope\w*Attention")

_ORIGINALS_ATTR = "_ropelab_originals"
_PROBE_POSITIONS = 64
_TABLE_LAYOUTS = ("half", "interleaved", "pairs")
_PROBE_TOLERANCE = 1e-4  # transformers forms angles in float32: ~1e-5 rad apart from float64 at position 64
# (stride, shift) of the probe positions of each axis: strides odd and coprime with 64 (permutations of 0..63)
_PROBE_AXIS_PERMUTATIONS = ((1, 0), (5, 3), (11, 7), (13, 5))
# Plain attributes of the replaced module that model code reads from it (LFM3 iterates
# `rotary_emb.layer_types`); the adapter keeps them. `config` is kept separately (see HFRotaryAdapter).
_KEPT_ATTRIBUTES = ("layer_types", "rope_type")


class HFRotaryAdapter(nn.Module):
    """Drop-in for a transformers ``*RotaryEmbedding`` module.

    ``forward(x, position_ids, layer_type=None) -> (cos, sin)``, each ``[B, S, R]`` in ``x.dtype``
    (or ``table_dtype`` when the replaced module always returned that dtype: OLMo 3, BEAM and LFM3
    return float32 tables whatever ``x`` is), with the pairs laid out as ``table_layout`` says:
    ``"half"`` repeats the ``R/2`` values as ``[c, c]`` (transformers' Llama), ``"interleaved"`` as
    ``[c0, c0, c1, c1, ...]`` (Cohere), ``"pairs"`` keeps them once (``[B, S, R/2]``, GPT-OSS).
    Dynamic types see ``seq_len = max(position_ids) + 1``, as in transformers, but nothing is mutated.

    ``cfg`` is a :class:`RopeConfig`, or a :class:`LayerTypeRope` for a module keyed by layer type:
    then ``layer_type`` picks the RopeConfig (``R`` is that layer type's width) and is required.

    ``config`` is the replaced module's transformers config, kept because some attention code reads
    it from the rotary module (Granite SWA picks tables by ``rotary_emb.config.rope_parameters``);
    so are the replaced module's ``layer_types`` and ``rope_type`` attributes where it had them.

    Multi-axis ``cfg`` (``num_axes > 1``): M-RoPE ``position_ids`` are ``[A, B, S]`` or ``[B, S]``
    (the same on every row, as transformers expands them) and give ``[B, S, R]``; axial ones are
    ``[..., N, A]`` (axis last, as the vision towers pass them) and give ``[..., N, R]``.
    """

    def __init__(self, cfg: RopeConfig | LayerTypeRope, table_layout: str = "half", config: Any = None,
                 *, table_dtype: torch.dtype | None = None, leading_one: bool = False):
        super().__init__()
        if table_layout not in _TABLE_LAYOUTS:
            raise PatchError(f"table_layout={table_layout!r} is invalid: expected one of {', '.join(_TABLE_LAYOUTS)}")
        if not isinstance(cfg, (RopeConfig, LayerTypeRope)):
            raise PatchError(f"cfg={type(cfg).__name__} is invalid: expected a RopeConfig or a LayerTypeRope")
        self.cfg = cfg
        self.table_layout = table_layout
        self.config = config
        self.table_dtype = table_dtype
        self.leading_one = leading_one

    def cfg_for(self, layer_type: str | None) -> RopeConfig:
        """The RopeConfig that answers a call for ``layer_type`` (ignored for a plain RopeConfig)."""
        cfg = self.cfg
        if isinstance(cfg, RopeConfig):
            return cfg
        if cfg.uniform:
            return next(iter(cfg.values()))
        if layer_type is None:
            raise PatchError(f"layer_type=None is invalid: this rotary module is keyed by layer type "
                             f"({', '.join(cfg)}); call it as forward(x, position_ids, layer_type)")
        found = cfg[layer_type]
        if found is None:
            raise PatchError(f"layer_type={layer_type!r} has no RoPE (its rope_parameters entry is None): "
                             "the model must not ask for its cos/sin")
        return found

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, layer_type: str | None = None,
                *args: Any, **kwargs: Any):
        cfg = self.cfg_for(layer_type)
        dtype = self.table_dtype or x.dtype
        positions = _axis_rows(position_ids.to(x.device), cfg)
        cos, sin = (fractional_cos_sin if positions.dtype.is_floating_point else rope_cos_sin)(positions, cfg)
        if self.leading_one:
            cos, sin = cos[None], sin[None]
        return _expand(cos, self.table_layout).to(dtype), _expand(sin, self.table_layout).to(dtype)

    def extra_repr(self) -> str:
        if isinstance(self.cfg, LayerTypeRope):
            kinds = ", ".join(f"{name}: " + ("none" if cfg is None else f"{cfg.rope_type} R={cfg.rotary_dim}")
                              for name, cfg in self.cfg.items())
            return f"layer types {{{kinds}}}, table_layout={self.table_layout!r}"
        axes = f", axes={self.cfg.num_axes}" if self.cfg.num_axes > 1 else ""
        return f"rope_type={self.cfg.rope_type!r}, rotary_dim={self.cfg.rotary_dim}, table_layout={self.table_layout!r}{axes}"


def _axis_rows(position_ids: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """transformers' ``position_ids`` as ropelab positions: unchanged for one axis; axial ``[..., A]``
    as ``[A, ...]``; M-RoPE ``[B, S]`` expanded to ``[A, B, S]`` (a 2-D tensor is always per token there)."""
    if cfg.num_axes == 1:
        return position_ids
    if cfg.rope_type == "axial":
        return position_ids.movedim(-1, 0)
    if position_ids.dim() == 2:
        return position_ids.expand(cfg.num_axes, *position_ids.shape)
    return position_ids


def _probe_positions(cfg: RopeConfig, length: int, device: torch.device) -> torch.Tensor:
    """Probe ``position_ids`` in the form the family's module takes: ``[1, L]``; axial ``[L, A]``
    (axis last); M-RoPE ``[A, 1, L]``. Every axis gets its own shuffle of ``0 .. L-1``, so a
    module that reads another axis, or another frequency, for some pair fails the probe."""
    steps = torch.arange(length, device=device)
    if cfg.num_axes == 1:
        return steps[None]
    rows = [(steps * stride + shift) % length for stride, shift in _PROBE_AXIS_PERMUTATIONS[: cfg.num_axes]]
    if cfg.rope_type == "axial":
        return torch.stack(rows, dim=-1)
    return torch.stack(rows)[:, None]


def _token_shape(cfg: RopeConfig, positions: torch.Tensor) -> tuple[int, ...]:
    """The shape of the tables (without their last dim) for probe ``positions``."""
    if cfg.num_axes == 1:
        return tuple(positions.shape)
    return tuple(positions.shape[:-1] if cfg.rope_type == "axial" else positions.shape[1:])


def _expand(table: torch.Tensor, table_layout: str) -> torch.Tensor:
    return table if table_layout == "pairs" else pairs_to_channels(table, table_layout)


def _is_rotary_module(module: nn.Module) -> bool:
    return bool(ROTARY_CLASS_NAME.fullmatch(type(module).__name__)) and not isinstance(module, HFRotaryAdapter)


def _probe_length(cfg: RopeConfig) -> int:
    """How many positions a probe uses: at most 64, below the trained length (see :func:`_probe`)."""
    return max(1, min(_PROBE_POSITIONS, (cfg.trained_length or _PROBE_POSITIONS + 1) - 1))


def _call(original: nn.Module, x: torch.Tensor, positions: torch.Tensor, layer_type: str | None):
    with torch.no_grad():
        return original(x, positions) if layer_type is None else original(x, positions, layer_type)


def _what(name: str, original: nn.Module, layer_type: str | None) -> str:
    return f"{name} ({type(original).__name__}" + (")" if layer_type is None else f", layer type {layer_type!r})")


def _probe(original: nn.Module, cfg: RopeConfig, name: str,
           layer_type: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Call the original module on short positions: ``(positions, cos, sin)``, or a PatchError when it
    is not a ``forward(x, position_ids[, layer_type]) -> (cos, sin)`` module of real tensors.

    The probe stays below the trained length: there every type is static, and transformers'
    stateful dynamic modules reset to their original frequencies (their reset test is strict).
    """
    device = next((b.device for b in original.buffers()), torch.device("cpu"))
    length = _probe_length(cfg)
    positions = _probe_positions(cfg, length, device)
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    what = _what(name, original, layer_type)
    call = "forward(x, position_ids)" if layer_type is None else "forward(x, position_ids, layer_type)"
    try:
        out = _call(original, dummy, positions, layer_type)
    except Exception as error:
        raise PatchError(f"cannot patch {what}: calling it as {call} fails "
                         f"({type(error).__name__}: {error}); ropelab replaces modules that return (cos, sin)") from error
    if isinstance(out, torch.Tensor) and out.is_complex():
        raise PatchError(f"cannot patch {what}: it returns complex freqs_cis {tuple(out.shape)} only when called "
                         f"as {call}; ropelab's complex adapter replaces forward(x, position_ids) -> [B, S, R/2] modules")
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise PatchError(f"cannot patch {what}: it returns {type(out).__name__}, not a (cos, sin) pair of tensors")
    tokens = _token_shape(cfg, positions)
    # axial towers may return one table for the whole batch with a leading 1 (SAM 3's ViT)
    accepted = (tokens, (1, *tokens)) if cfg.num_axes > 1 else (tokens,)
    if any(t.is_complex() or tuple(t.shape[:-1]) not in accepted for t in out):
        shapes = [f"{tuple(t.shape)} {t.dtype}" for t in out]
        raise PatchError(f"cannot patch {what}: it returns {shapes}, not real [B, S, R] cos/sin tables")
    if cfg.num_axes == 1:
        _refuse_folded_axes(original, positions, what, layer_type)
    return positions, out[0], out[1]


def _refuse_folded_axes(original: nn.Module, positions: torch.Tensor, what: str, layer_type: str | None) -> None:
    """A module that turns positions ``[2, B, S]`` into one ``[B, S, R]`` table mixes several position
    axes per table (M-RoPE style; NeoMME, when read without its sections): one-axis tables cannot
    replace it, even where its text positions (equal axes) give the same numbers."""
    axes = torch.stack((positions, positions.flip(-1)))  # [2, 1, S], two different axes
    dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
    try:
        out = _call(original, dummy, axes, layer_type)
    except Exception:  # noqa: BLE001 (a module that refuses extra axes does not fold them)
        return
    if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor) and out[0].shape[:-1] == positions.shape:
        raise PatchError(f"cannot patch {what}: it folds several position axes into one table (position_ids "
                         f"{tuple(axes.shape)} give cos {tuple(out[0].shape)}), as M-RoPE does; ropelab replaces "
                         "one-axis RoPE modules only")


def _table_dtype(original: nn.Module, positions: torch.Tensor, layer_type: str | None) -> torch.dtype | None:
    """The dtype ``original`` returns whatever ``x`` is (float32 in OLMo 3, BEAM, LFM3), or None when it
    follows ``x``."""
    dummy = torch.zeros(1, device=positions.device, dtype=torch.bfloat16)
    try:
        cos, _ = _call(original, dummy, positions[..., :2], layer_type)
    except Exception:  # noqa: BLE001 (a module that only takes float32 x: follow x)
        return None
    return None if cos.dtype == dummy.dtype else cos.dtype


def _table_layout(cfg: RopeConfig, config: Any, width: int, what: str) -> str:
    """How the original lays its tables out (see the module docstring), checked against ``cfg``."""
    if width == cfg.rotary_dim // 2:
        return "pairs"
    if width != cfg.rotary_dim:
        raise PatchError(
            f"cannot patch {what}: ropelab's reading of the config "
            f"(rotary_dim={cfg.rotary_dim}, head_dim={cfg.head_dim}) does not reproduce its cos/sin: its tables "
            f"are {width} wide, expected {cfg.rotary_dim} (or {cfg.rotary_dim // 2}, one value per pair)"
        )
    if getattr(config, "rope_interleave", None) is True:
        return "half"  # q and k are de-interleaved by apply_rotary_pos_emb_interleave; the tables are half-split
    return cfg.layout


def _verify_against(original: nn.Module, adapter: HFRotaryAdapter, name: str, probe,
                    layer_type: str | None = None) -> None:
    """Check the adapter reproduces the original module's cos/sin on the probe positions."""
    cfg = adapter.cfg_for(layer_type)
    positions, want_cos, want_sin = probe
    dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
    with torch.no_grad():
        got_cos, got_sin = adapter(dummy, positions, layer_type)
    if got_cos.shape != want_cos.shape:
        problem = f"table shape {tuple(got_cos.shape)} != {tuple(want_cos.shape)}"
    else:
        error = max((got_cos - want_cos.float()).abs().max().item(), (got_sin - want_sin.float()).abs().max().item())
        if error <= _PROBE_TOLERANCE:
            return
        problem = f"max abs error {error:.2e} > {_PROBE_TOLERANCE:g}"
    raise PatchError(
        f"cannot patch {_what(name, original, layer_type)}: ropelab's reading of the config ({cfg.rope_type}, "
        f"layout={cfg.layout}, tables={adapter.table_layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}"
        f"{_axes_text(cfg)}) "
        f"does not reproduce its cos/sin: {problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _axes_text(cfg: RopeConfig) -> str:
    if cfg.mrope_section is not None:
        return f", mrope_section={list(cfg.mrope_section)} {cfg.mrope_composition}"
    if cfg.rope_type != "axial":
        return ""
    slots = "".join(f", {key}={getattr(cfg, key)}" for key in ("axial_pairs", "axial_bases") if getattr(cfg, key))
    return f", {cfg.axial_frequencies} axial frequencies, axial_order={cfg.axial_order} {cfg.axial_composition}{slots}"


# ----------------------------------------------------------------------------- modules outside the generic path
# Rotary modules whose call or tables are not the generic ``(x, position_ids) -> (cos, sin)`` with
# half / interleaved / per-pair tables. Each gets its own adapter below; the adapters hold the same
# RopeConfig (``cfg``, perturbable like any HFRotaryAdapter) and take their numbers from ropelab's
# exact float64 angles; only the arrangement of the output follows the replaced module.

# HunYuan-VL (HunYuanVLRotaryEmbedding.recomposition_frequencies): the doubled [c, c] table is cut
# into mrope_section * 2 channel blocks, block k reading position row k % len(mrope_section), so
# the two channels of one pair can read different rows (not a rotation per pair; see config.py).
_CHANNEL_SECTION_MODEL_TYPES = frozenset({"hunyuan_vl_text"})
# Gemma 4's vision tower (Gemma4VisionRotaryEmbedding, apply_multidimensional_rope): positions
# [B, N, 2] (x, y), and each axis' block of pairs gets its own [c, c] half of the head.
_AXIS_HALF_MODEL_TYPES = frozenset({"gemma4_vision"})
# DINOv3-style towers (EomtDinov3RotaryEmbedding): forward(pixel_values), axial angles 2 pi * patch centre
# in [-1, 1] * inv_freq, [row block | column block], half-split; the config's augmentation keys.
# DINOv3ViTRopePositionEmbedding and Sapiens2RopePositionEmbedding are the same module (same keys).
_PATCH_CENTRE_MODEL_TYPES = frozenset({"eomt_dinov3", "dinov3_vit", "sapiens2"})
_PATCH_CENTRE_AUGMENTATION = ("pos_embed_shift", "pos_embed_jitter", "pos_embed_rescale")
# Rotary modules over physical coordinates that keep their config values as attributes, not a config, by
# class name: {atom-config key: module attribute} (EsmFold2RotaryEmbedding.__init__, transformers 5.23).
_COORDINATE_MODULE_KEYS = {
    "EsmFold2RotaryEmbedding": {"num_spatial_rope_pairs_per_axis": "num_spatial_pairs_per_axis",
                                "num_uid_rope_pairs": "num_uid_pairs",
                                "spatial_rope_base_frequency": "spatial_rope_base_frequency",
                                "uid_rope_base_frequency": "uid_rope_base_frequency"},
}


class HFComplexRotaryAdapter(HFRotaryAdapter):
    """Drop-in for a rotary module that returns complex ``freqs_cis`` (DeepSeek-V2's and Llama 4's
    text towers, whose attention views q and k as complex numbers over channel pairs (2i, 2i+1)).

    ``forward(x, position_ids) -> [*P, R/2]`` complex64: ``attention_factor * exp(i * angle)``, the
    cos and sin taken in float64 from the exact angles and rounded once (transformers forms the
    angles in float32 and calls ``torch.polar``).
    """

    def __init__(self, cfg: RopeConfig, config: Any = None):
        super().__init__(cfg, "pairs", config)
        self.table_layout = "complex"  # its own forward: no (cos, sin) tables

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return _freqs_cis(_axis_rows(position_ids.to(x.device), self.cfg), self.cfg)


class HFFixedGridAdapter(HFRotaryAdapter):
    """Drop-in for a vision rotary module that takes no positions and returns the complex
    ``freqs_cis`` of a fixed patch grid (Llama 4's ``Llama4VisionRotaryEmbedding``).

    ``forward(hidden_states) -> [N, 1, R/2]`` complex64 for the ``[N, A]`` ``positions`` read from
    the config at patch time (``hidden_states`` gives only the device).
    """

    def __init__(self, cfg: RopeConfig, positions: torch.Tensor, config: Any = None):
        super().__init__(cfg, "pairs", config)
        self.table_layout = "complex"  # its own forward: no (cos, sin) tables
        self.positions = positions

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        positions = self.positions.to(hidden_states.device)
        return _freqs_cis(_axis_rows(positions, self.cfg), self.cfg)[:, None]


class HFFeatureGridAdapter(HFRotaryAdapter):
    """Drop-in for ``EfficientLoFTRRotaryEmbedding``: ``forward(x) -> (cos, sin)``, each ``[1, h, w, R]``
    in ``x.dtype``, for the grid that the attention's query aggregation (a ``k x k`` convolution of
    stride ``s``, ``config.q_aggregation_kernel_size`` / ``_stride``) makes of the ``[..., H, W]``
    feature map ``x``: ``h = (H - k) // s + 1``, ``w`` likewise. Token ``(i, j)`` (raster order) sits
    at 1-based positions ``(i + 1, j + 1)``; ``cfg`` is axial with interleaved pairs over the whole
    hidden vector (see ``ropelab.config._AXIS_LADDER_FAMILIES``), channels interleaved.
    """

    def __init__(self, cfg: RopeConfig, config: Any):
        super().__init__(cfg, "interleaved", config)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        kernel, stride = self.config.q_aggregation_kernel_size, self.config.q_aggregation_stride
        rows, cols = ((size - kernel) // stride + 1 for size in x.shape[-2:])
        grid = torch.meshgrid(torch.arange(1, rows + 1, device=x.device), torch.arange(1, cols + 1, device=x.device),
                              indexing="ij")
        cos, sin = rope_cos_sin(torch.stack(grid), self.cfg)  # positions [2, h, w] -> [h, w, R/2]
        return _expand(cos, "interleaved")[None].to(x.dtype), _expand(sin, "interleaved")[None].to(x.dtype)


class HFTimestampAdapter(HFRotaryAdapter):
    """Drop-in for ``MusicFlamingoRotaryEmbedding``: ``forward(timestamps, seq_len) -> (cos, sin)``, each
    ``[N, T, R]`` float32 (what the module returns), channels interleaved.

    ``timestamps`` ``[N, T]`` are the seconds of encoder frame ``t`` of window ``n`` (``T == seq_len``).
    ``cfg`` is two-axis RoPE (window, time), each axis a ladder of ``R/4`` pairs; the positions are
    fractional, formed in float64 as the module forms them in float32 (``M = max_position_embeddings``,
    one encoder frame ``4 * audio_frame_step`` seconds), each times the phase ``-2 pi timestamp``:

    - window: ``round(timestamps[n, 0] / (4 * audio_frame_step * T)) / M`` (the window index);
    - time: ``2 pi t / M``.
    """

    def __init__(self, cfg: RopeConfig, config: Any):
        super().__init__(cfg, "interleaved", config, table_dtype=torch.float32)

    def forward(self, timestamps: torch.Tensor, seq_len: int, *args: Any, **kwargs: Any):
        seconds = timestamps.to(torch.float64)
        limit, frame = float(self.config.max_position_embeddings), 4 * self.config.audio_frame_step
        window = torch.round(seconds[:, :1] / (frame * seq_len)) / limit  # [N, 1]
        time = torch.arange(seq_len, device=seconds.device, dtype=torch.float64) * (2 * torch.pi / limit)  # [T]
        phase = -2 * torch.pi * seconds  # [N, T]
        positions = torch.stack((window * phase, time * phase))  # [2, N, T]
        cos, sin = fractional_cos_sin(positions, self.cfg)
        return _expand(cos, "interleaved").to(self.table_dtype), _expand(sin, "interleaved").to(self.table_dtype)


def _feature_map_probe(config: Any, rows: int, cols: int, device: torch.device) -> torch.Tensor:
    """A ``[1, 1, H, W]`` feature map that EfficientLoFTR's query aggregation turns into ``rows x cols`` tokens."""
    kernel, stride = config.q_aggregation_kernel_size, config.q_aggregation_stride
    return torch.zeros(1, 1, (rows - 1) * stride + kernel, (cols - 1) * stride + kernel, device=device)


def _timestamp_probe(config: Any, windows: int, frames: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """MusicFlamingo's ``(timestamps [windows, frames], seq_len)`` for one sample of ``windows`` windows
    (as ``MusicFlamingoModel._build_audio_timestamps`` lays them out)."""
    index = torch.arange(windows * frames, device=device, dtype=torch.float32).view(windows, frames)
    return index * (4 * config.audio_frame_step), frames
class HFCoordinateAdapter(HFRotaryAdapter):
    """Drop-in for a rotary module over physical coordinates (ESMFold 2's ``EsmFold2RotaryEmbedding``).

    ``forward(coordinates, ids=None, dtype=None) -> (cos, sin)``, each ``[..., R]`` half-split ``[c, c]``
    in ``dtype`` (default ``coordinates.dtype``): ``coordinates`` ``[..., C]`` are axes ``0 .. C-1`` of
    ``cfg`` and ``ids`` ``[...]`` (ESMFold 2's per-atom space uid), when given, axis ``C``. Positions are
    taken as given, float or integer (float64 angles, :func:`~ropelab.rotary_tables.fractional_cos_sin`).
    """

    def __init__(self, cfg: RopeConfig, config: Any = None):
        super().__init__(cfg, "half", config)

    def forward(self, coordinates: torch.Tensor, ids: torch.Tensor | None = None, dtype: torch.dtype | None = None,
                *args: Any, **kwargs: Any):
        columns = [coordinates.to(torch.float64)] + ([] if ids is None else [ids.to(torch.float64)[..., None]])
        positions = torch.cat(columns, dim=-1)
        if positions.shape[-1] != self.cfg.num_axes:
            raise PatchError(f"coordinates.shape={tuple(coordinates.shape)} with ids={'none' if ids is None else 'one axis'} "
                             f"is invalid: expected {self.cfg.num_axes} position axes in all (coordinates [..., "
                             f"{self.cfg.num_axes - (ids is not None)}] plus the ids)")
        cos, sin = fractional_cos_sin(positions.movedim(-1, 0), self.cfg)
        dtype = dtype or coordinates.dtype
        return _expand(cos, "half").to(dtype), _expand(sin, "half").to(dtype)


def _coordinate_module_config(module: nn.Module) -> dict[str, Any]:
    """The config keys a coordinate rotary module holds as attributes (:data:`_COORDINATE_MODULE_KEYS`),
    and its head width: ESMFold 2's ``head_dim // 2`` is its active pairs (``3 * spatial + uid``) plus
    ``num_inactive_channels``."""
    keys = {key: getattr(module, attribute) for key, attribute in _COORDINATE_MODULE_KEYS[type(module).__name__].items()}
    active = 3 * keys["num_spatial_rope_pairs_per_axis"] + keys["num_uid_rope_pairs"]
    return {**keys, "head_dim": 2 * (active + module.num_inactive_channels)}


def _coordinate_probe(cfg: RopeConfig, device: torch.device) -> tuple:
    """``(coordinates [1, L, A-1], ids [1, L], float32)``: fractional coordinates and integer ids,
    each axis a different shuffle (see :func:`_probe_positions`)."""
    rows = _probe_positions(cfg, _PROBE_POSITIONS, device)  # [L, A]
    return (rows[None, :, :-1].float() * 0.375, rows[None, :, -1], torch.float32)


class HFChannelTableAdapter(HFRotaryAdapter):
    """Drop-in for a module whose ``(cos, sin)`` tables put the pairs in an order of their own.

    ``forward(x, position_ids) -> (cos, sin)``, each ``[..., W]`` in ``x.dtype``: channel ``c`` holds
    pair ``channel_pairs[c]`` of ropelab's table. With ``channel_axes`` (``cfg`` one-axis), channel ``c``
    reads row ``channel_axes[c]`` of ``position_ids`` ``[A, B, S]`` (``A = position_rows``; ``[B, S]``:
    the same on every row), whatever pair it holds: HunYuan-VL's sections cut the doubled table, not
    the pairs.
    """

    def __init__(self, cfg: RopeConfig, channel_pairs: tuple[int, ...], config: Any = None,
                 channel_axes: tuple[int, ...] | None = None, position_rows: int | None = None):
        super().__init__(cfg, "pairs", config)
        self.table_layout = "channels"  # its own forward: the tables follow channel_pairs
        self.channel_pairs = tuple(channel_pairs)
        self.channel_axes = None if channel_axes is None else tuple(channel_axes)
        self.position_rows = position_rows or (None if channel_axes is None else max(channel_axes) + 1)

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any, **kwargs: Any):
        position_ids = position_ids.to(x.device)
        if self.channel_axes is not None:
            position_ids = position_ids.expand(self.position_rows, *position_ids.shape[-2:])
        cos, sin = rope_cos_sin(_axis_rows(position_ids, self.cfg), self.cfg)
        pairs = torch.tensor(self.channel_pairs, device=cos.device)
        axes = None if self.channel_axes is None else torch.tensor(self.channel_axes, device=cos.device)
        return _gather_channels(cos, pairs, axes).to(x.dtype), _gather_channels(sin, pairs, axes).to(x.dtype)

    def extra_repr(self) -> str:
        rows = "" if self.channel_axes is None else f", channel rows={len(set(self.channel_axes))}"
        return super().extra_repr() + f", channels={len(self.channel_pairs)}{rows}"


class HFPatchCentreAdapter(HFRotaryAdapter):
    """Drop-in for a DINOv3-style rotary module (EoMT-DINOv3's ``EomtDinov3RotaryEmbedding``) whose
    ``forward(pixel_values)`` rotates each patch by its centre, normalised to ``[-1, 1]`` per axis.

    ``forward(pixel_values [B, C, H, W]) -> (cos, sin)``, each ``[N, R]`` (``N = (H // ph) * (W // pw)``,
    raster order) in ``pixel_values.dtype``, half-split: pair ``i`` turns by ``2 pi * centre[axis(i)] *
    inv_freq[i]`` with ``cfg`` axial over (row, column) (transformers ``get_patches_center_coordinates``:
    centre ``2 (k + 1/2) / n - 1`` of patch ``k`` of ``n``). The centres are formed in float64.

    In training mode the original jitters the centres at random (``pos_embed_shift`` / ``_jitter`` /
    ``_rescale``); the adapter does not draw those, so it refuses to run in training mode when any is set.
    """

    def __init__(self, cfg: RopeConfig, patch_size: tuple[int, int], config: Any = None):
        super().__init__(cfg, "half", config)
        self.patch_size = tuple(patch_size)

    def forward(self, pixel_values: torch.Tensor, *args: Any, **kwargs: Any):
        augment = {key: getattr(self.config, key, None) for key in _PATCH_CENTRE_AUGMENTATION}
        if self.training and any(value is not None for value in augment.values()):
            raise PatchError(f"training-mode patch centre augmentation ({augment}) is not reproduced by the "
                             "patched rotary module: call model.eval(), or unpatch(model) to train")
        grid = [size // patch for size, patch in zip(pixel_values.shape[-2:], self.patch_size)]
        centres = [(torch.arange(n, dtype=torch.float64, device=pixel_values.device) + 0.5) * (2.0 / n) - 1.0 for n in grid]
        positions = torch.stack(torch.meshgrid(*centres, indexing="ij")).flatten(1) * (2 * math.pi)  # [2, N]
        cos, sin = fractional_cos_sin(positions, self.cfg)
        return _expand(cos, "half").to(pixel_values.dtype), _expand(sin, "half").to(pixel_values.dtype)


def _patch_size(config: Any) -> tuple[int, int]:
    size = config.patch_size
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)


def _freqs_cis(positions: torch.Tensor, cfg: RopeConfig) -> torch.Tensor:
    """complex64 ``[*P, R/2]``: ``cos + i sin`` of the exact angles (attention factor included)."""
    cos, sin = rope_cos_sin(positions, cfg, dtype=torch.float64)
    return torch.complex(cos, sin).to(torch.complex64)


def _gather_channels(table: torch.Tensor, pairs: torch.Tensor, axes: torch.Tensor | None) -> torch.Tensor:
    """``out[..., c] = table[..., pairs[c]]``; with ``axes``, ``table`` is ``[A, ..., P]`` and channel
    ``c`` comes from row ``axes[c]``."""
    table = table.index_select(-1, pairs)
    if axes is None:
        return table
    index = axes.view((1,) * (table.dim() - 1) + (-1,)).expand(1, *table.shape[1:])
    return table.gather(0, index).squeeze(0)


def _axis_half_channels(cfg: RopeConfig) -> tuple[int, ...]:
    """Each axis' block of ``P/A`` pairs as its own ``[c, c]`` (Gemma 4 vision: ``[x, x, y, y]``)."""
    block = cfg.num_pairs // cfg.num_axes
    return tuple(start + c % block for start in range(0, cfg.num_pairs, block) for c in range(2 * block))


def _section_channels(sections: list[int]) -> tuple[int, ...]:
    """HunYuan-VL: the position row of each channel of the doubled table, block ``k`` of ``2 * sections[k]``
    channels reading row ``k % len(sections)``."""
    return tuple(k % len(sections) for k, size in enumerate(sections) for _ in range(2 * size))


# ----------------------------------------------------------------------------- rotary modules named otherwise
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
    "clvp_encoder": {"heads": "num_attention_heads", "base": 10000.0,
                     "rotary_dim": lambda c: max(c.projection_dim // (2 * c.num_attention_heads), 32)},
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


class HFStackedTableAdapter(HFRotaryAdapter):
    """Drop-in for a conformer speech encoder's rotary module (``Wav2Vec2ConformerRotaryPositionalEmbedding``,
    ``Wav2Vec2BertRotaryPositionalEmbedding``, ``SeamlessM4TConformerRotaryPositionalEmbedding``).

    ``forward(hidden_states [B, S, H]) -> [2, S, 1, 1, R]`` in ``hidden_states.dtype``: ``[0]`` cos, ``[1]``
    sin of positions ``0 .. S-1``, half-split ``[c, c]`` (the attention's ``_apply_rotary_embedding``
    indexes them so). Unlike the original, it caches nothing between calls.
    """

    output_kind = "stacked"

    def __init__(self, cfg: RopeConfig, config: Any = None):
        super().__init__(cfg, "half", config)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        positions = torch.arange(hidden_states.shape[1], device=hidden_states.device)
        cos, sin = rope_cos_sin(positions, self.cfg)  # [S, R/2] each
        table = torch.stack((_expand(cos, "half"), _expand(sin, "half")))  # [2, S, R]
        return table[:, :, None, None].to(hidden_states.dtype)


class HFAngleTableAdapter(HFRotaryAdapter):
    """Drop-in for CLVP's ``ClvpRotaryPositionalEmbedding``.

    ``forward(hidden_states [B, S, H]) -> [1, S, R]`` float32 (what the original returns): the angles
    ``s * inv_freq[i]`` of positions ``s = 0 .. S-1``, half-split ``[f, f]``; the attention takes their
    cos and sin itself (``ClvpSelfAttention``), so ropelab's float64 angles are rounded once, to float32.
    An angle cannot carry an attention factor: a ``cfg`` with one is refused.
    """

    output_kind = "angles"

    def __init__(self, cfg: RopeConfig, config: Any = None):
        super().__init__(cfg, "half", config, table_dtype=torch.float32)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        inv_freq, attention_factor = rope_frequencies(self.cfg)
        if attention_factor != 1.0:
            raise PatchError(f"attention_factor={attention_factor:g} is invalid for {type(self).__name__}: "
                             "expected 1 (the module returns angles, which cannot scale cos and sin)")
        angles = rope_angles(torch.arange(hidden_states.shape[1], device=hidden_states.device), inv_freq)  # [S, R/2]
        return _expand(angles, "half")[None].to(self.table_dtype)


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
        raise PatchError(f"cannot patch {what}: model_type={model_type!r} is not one whose sizes ropelab reads for "
                         f"it: expected one of {', '.join(sorted(_NAMED_ROTARY_CONFIGS))}")
    base = spec["base"] if not isinstance(spec["base"], str) else getattr(config, spec["base"])
    try:
        return RopeConfig(head_dim=config.hidden_size // getattr(config, spec["heads"]), base=base,
                          rotary_dim=spec["rotary_dim"](config) if "rotary_dim" in spec else None,
                          source=f"transformers {type(module).__name__} ({model_type})")
    except RopeConfigError as error:
        raise PatchError(f"cannot patch {what}: its config is not one ropelab reads: {error}") from error


def _named_adapter(model: nn.Module, module: nn.Module, name: str, cfg: RopeConfig | LayerTypeRope | None,
                   verify: bool) -> HFRotaryAdapter | None:
    """The adapter of a ``forward(hidden_states)`` module of ``_NAMED_OUTPUT_KINDS``, checked against it on a
    probe length if ``verify`` (its own cache is left as it was); None for any other module."""
    kind = _NAMED_OUTPUT_KINDS.get(type(module).__name__)
    if kind is None:
        return None
    if isinstance(cfg, LayerTypeRope):
        raise PatchError(f"cannot patch {name} ({type(module).__name__}): it has one RoPE, not one per layer "
                         "type; pass a RopeConfig")
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


def _llama4_vision_positions(config: Any) -> torch.Tensor:
    """The ``[g*g + 1, 2]`` (x + 1, y + 1) patch positions of ``Llama4VisionRotaryEmbedding._compute_freqs_ci``
    (``g = image_size // patch_size``, raster order), then its class token, whose angles it zeroes: (0, 0)."""
    side = config.image_size // config.patch_size
    index = torch.arange(side * side)
    patches = torch.stack([index % side + 1, index // side + 1], dim=-1)
    return torch.cat([patches, patches.new_zeros(1, 2)])


def _probe_rows(count: int, length: int, device: torch.device) -> torch.Tensor:
    """``[count, 1, length]`` probe positions, every row a different shuffle of ``0 .. length-1``."""
    steps = torch.arange(length, device=device)
    return torch.stack([(steps * stride + shift) % length for stride, shift in _PROBE_AXIS_PERMUTATIONS[:count]])[:, None]


def _returns_complex(module: nn.Module, device: torch.device) -> bool:
    """True when ``module(x, position_ids)`` answers with a complex tensor (``freqs_cis``)."""
    try:
        with torch.no_grad():
            out = module(torch.zeros(1, device=device), torch.arange(2, device=device)[None])
    except Exception:  # noqa: BLE001 (not callable that way: the generic path reports it)
        return False
    return isinstance(out, torch.Tensor) and out.is_complex()


def _special_adapter(module: nn.Module, name: str, cfg: RopeConfig | LayerTypeRope | None, config: Any,
                     verify: bool) -> HFRotaryAdapter | None:
    """The adapter of a module outside the generic path (see the section comment), checked against
    the module on probe inputs if ``verify``; None for a generic module."""
    if isinstance(cfg, LayerTypeRope):
        if not cfg.uniform:
            return None  # one RoPE per layer type: the layer-typed path serves it or says why not
        cfg = next(iter(cfg.values()))
    device = next((b.device for b in module.buffers()), torch.device("cpu"))
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    model_type = getattr(config, "model_type", None)
    if type(module).__name__ == "Llama4VisionRotaryEmbedding":
        # Its config says rope_type "default", but the module is 2D axial over (x, y), interleaved (complex).
        module_cfg = cfg or _read_config(config, name, module).replace(rope_type="axial", layout="interleaved")
        adapter, probe = HFFixedGridAdapter(module_cfg, _llama4_vision_positions(config), config), (dummy,)
    elif type(module).__name__ in _COORDINATE_MODULE_KEYS:
        # It keeps no config (the model's is not the atom encoder's): read the keys it holds.
        module_cfg = cfg or _read_config(_coordinate_module_config(module), name, module)
        adapter, probe = HFCoordinateAdapter(module_cfg), _coordinate_probe(module_cfg, device)
    elif model_type in _CHANNEL_SECTION_MODEL_TYPES and (config.rope_parameters or {}).get("mrope_section"):
        sections = list(config.rope_parameters["mrope_section"])
        params = {k: v for k, v in config.rope_parameters.items() if k != "mrope_section"}
        module_cfg = cfg or _read_config({**config.to_dict(), "rope_parameters": params}, name, module)
        half = tuple(c % module_cfg.num_pairs for c in range(module_cfg.rotary_dim))
        adapter = HFChannelTableAdapter(module_cfg, half, config, _section_channels(sections), len(sections))
        adapter.mrope_section = sections  # HunYuanVLModel counts its position rows from rotary_emb.mrope_section
        length = _probe_length(module_cfg)
        probe = (dummy, _probe_rows(len(sections), length, device))
    elif model_type in _AXIS_HALF_MODEL_TYPES:
        module_cfg = cfg or _read_config(config, name, module)
        adapter = HFChannelTableAdapter(module_cfg, _axis_half_channels(module_cfg), config)
        probe = (dummy, _probe_positions(module_cfg, _PROBE_POSITIONS, device)[None])  # batched [1, N, A]
    elif model_type in _PATCH_CENTRE_MODEL_TYPES:
        # Its config says rope_type "default"; the module is axial over (row, column) patch centres.
        module_cfg = cfg or _read_config(config, name, module).replace(rope_type="axial")
        adapter = HFPatchCentreAdapter(module_cfg, _patch_size(config), config)
        probe = (torch.zeros(1, 3, 5 * adapter.patch_size[0], 7 * adapter.patch_size[1], device=device),)  # a 5 x 7 grid
    elif type(module).__name__ == "EfficientLoFTRRotaryEmbedding":
        adapter = HFFeatureGridAdapter(cfg or _read_config(config, name, module), config)
        probe = (_feature_map_probe(config, 7, 5, device),)  # rows != columns: a transposed grid fails
    elif type(module).__name__ == "MusicFlamingoRotaryEmbedding":
        adapter = HFTimestampAdapter(cfg or _read_config(config, name, module), config)
        probe = _timestamp_probe(config, 16, 32, device)  # up to 20 s: angles of tens of radians
    elif _returns_complex(module, device):
        module_cfg = cfg or _read_config(config, name, module)
        length = _probe_length(module_cfg)
        adapter, probe = HFComplexRotaryAdapter(module_cfg, config), (dummy, _probe_positions(module_cfg, length, device))
    else:
        return None
    adapter.train(module.training)  # the model's mode (an adapter may answer differently in training)
    if verify:
        _verify_outputs(module, adapter, name, probe)
    return adapter


def _verify_outputs(original: nn.Module, adapter: HFRotaryAdapter, name: str, inputs: tuple) -> None:
    """Call ``original`` and ``adapter`` on the same ``inputs``; a PatchError unless their outputs (a
    ``(cos, sin)`` pair or a complex tensor) have one shape and dtype kind and agree to the probe tolerance."""
    with torch.no_grad():
        want, got = original(*inputs), adapter(*inputs)
    if _kind(want) != _kind(got):
        problem = f"it returns {_kind(want)}, the adapter {_kind(got)}"
    elif any(w.shape != g.shape for w, g in zip(_parts(want), _parts(got))):
        problem = f"output shapes {[tuple(t.shape) for t in _parts(got)]} != {[tuple(t.shape) for t in _parts(want)]}"
    else:
        error = max((g.double() - w.double()).abs().max().item() for w, g in zip(_parts(want), _parts(got)))
        if error <= _PROBE_TOLERANCE:
            return
        problem = f"max abs error {error:.2e} > {_PROBE_TOLERANCE:g}"
    cfg = adapter.cfg
    raise PatchError(
        f"cannot patch {name} ({type(original).__name__}): ropelab's reading of the config ({cfg.rope_type}, "
        f"tables={adapter.table_layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}{_axes_text(cfg)}) "
        f"does not reproduce its output: {problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _kind(out: Any) -> str:
    if isinstance(out, torch.Tensor):
        return "complex freqs_cis" if out.is_complex() else "one real tensor"
    if isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out):
        return "a (cos, sin) pair"
    return type(out).__name__


def _parts(out: Any) -> tuple[torch.Tensor, ...]:
    """The real tensors of a module's output: (real, imag) of complex freqs_cis, else the tensors themselves."""
    if isinstance(out, torch.Tensor):
        return (out.real, out.imag) if out.is_complex() else (out,)
    return tuple(out)


def _exact_sin_cos_table(cfg: RopeConfig, num_positions: int, like: torch.Tensor) -> torch.Tensor:
    """GPT-J's ``embed_positions`` layout: ``[num_positions, R]`` = ``[sin | cos]``."""
    cos, sin = rope_cos_sin(torch.arange(num_positions, device=like.device), cfg)
    return torch.cat((sin, cos), dim=-1).to(like.dtype)


def _read_config(config: Any, name: str, module: nn.Module) -> RopeConfig:
    try:
        return RopeConfig.from_hf(config)
    except RopeConfigError as error:
        raise PatchError(f"cannot patch {name} ({type(module).__name__}): its config is not one ropelab reads: {error}") from error


def _read_rope(config: Any, name: str, module: nn.Module) -> LayerTypeRope:
    try:
        return RopeConfig.by_layer_type(config)
    except RopeConfigError as error:
        raise PatchError(f"cannot patch {name} ({type(module).__name__}): its config is not one ropelab reads: {error}") from error


def _module_rope(cfg: RopeConfig | LayerTypeRope | None, config: Any, name: str,
                 module: nn.Module) -> tuple[RopeConfig | LayerTypeRope, list[str | None]]:
    """What the adapter for ``module`` holds, and the layer types to probe (``[None]``: a module
    called without one)."""
    if isinstance(cfg, LayerTypeRope):
        return cfg, [None] if cfg.uniform else list(cfg.rope_layer_types)
    if cfg is None:
        rope = _read_rope(config, name, module)
        return (rope.configs[next(iter(rope))], [None]) if rope.uniform else (rope, list(rope.rope_layer_types))
    try:  # an imposed RopeConfig serves every layer type the module has
        rope = RopeConfig.by_layer_type(config)
    except RopeConfigError:
        return cfg, [None]
    return cfg, [None] if rope.uniform else list(rope.rope_layer_types)


def _served(module: nn.Module, kinds: list[str | None]) -> list[str | None]:
    """The layer types ``module`` has tables for: transformers' per-layer-type modules key ``rope_type``
    by them, and skip the ones no layer uses (LFM3 without sliding-window layers)."""
    served = getattr(module, "rope_type", None)
    if kinds == [None] or not isinstance(served, dict):
        return kinds
    return [kind for kind in kinds if kind in served] or kinds


def _adapter_for(module: nn.Module, name: str, cfg, config: Any, verify: bool) -> HFRotaryAdapter:
    """An adapter that reproduces ``module`` for every layer type it serves (checked if ``verify``)."""
    held, kinds = _module_rope(cfg, config, name, module)
    kinds = _served(module, kinds)

    def cfg_of(kind: str | None) -> RopeConfig:  # the RopeConfig that answers calls for `kind`
        if isinstance(held, RopeConfig):
            return held
        return held.configs[kind] if kind is not None else next(iter(held.values()))

    probes = {kind: _probe(module, cfg_of(kind), name, kind) for kind in kinds}
    layouts = {kind: _table_layout(cfg_of(kind), config, probes[kind][1].shape[-1], _what(name, module, kind))
               for kind in kinds}
    if len(set(layouts.values())) > 1:
        raise PatchError(f"cannot patch {name} ({type(module).__name__}): its layer types lay their tables out "
                         f"differently ({layouts}); one adapter serves one layout")
    first = kinds[0]
    positions, cos = probes[first][:2]
    leading_one = tuple(cos.shape[:-1]) != _token_shape(cfg_of(first), positions)
    adapter = HFRotaryAdapter(held, layouts[first], getattr(module, "config", None),
                              table_dtype=_table_dtype(module, positions, first), leading_one=leading_one)
    for attribute in _KEPT_ATTRIBUTES:
        if isinstance(getattr(module, attribute, None), (str, list, tuple, dict)):
            setattr(adapter, attribute, getattr(module, attribute))
    if verify:
        for kind in kinds:
            _verify_against(module, adapter, name, probes[kind], kind)
    return adapter


def patch(model: nn.Module, cfg: RopeConfig | LayerTypeRope | None = None, *, verify: bool = True) -> nn.Module:
    """Make ``model`` compute its rotary embedding with ropelab (in place; returns ``model``).

    Args:
        model: a transformers ``PreTrainedModel`` (or any module containing ``*RotaryEmbedding``
            submodules or GPT-J style ``embed_positions`` tables).
        cfg: the RoPE to use; default ``RopeConfig.by_layer_type`` of each rotary module's config
            (or the model's): one RopeConfig, or one per layer type for modules called with a
            ``layer_type``. A RopeConfig given here serves every layer type; a
            :class:`~ropelab.config.LayerTypeRope` must name the module's layer types. Its
            ``layout`` sets how the cos/sin tables are laid out for the model.
        verify: check, on positions below the trained length and for every layer type, that the
            replacement reproduces the original cos/sin; turn off to impose a different RoPE on
            purpose (e.g. context extension).

    Raises:
        PatchError: no rotary embedding found, or one that ropelab does not reproduce.
    """
    originals: dict[str, Any] = getattr(model, _ORIGINALS_ATTR, {})
    model_config = getattr(model, "config", None)
    patched = 0
    for name, module in list(model.named_modules()):
        if _is_rotary_module(module):
            module_config = getattr(module, "config", None) or model_config
            adapter = _named_adapter(model, module, name, cfg, verify) \
                or _special_adapter(module, name, cfg, module_config, verify) \
                or _adapter_for(module, name, cfg, module_config, verify)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, adapter)
            originals.setdefault(name, module)
            patched += 1
        elif isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim"):
            if isinstance(cfg, LayerTypeRope):
                raise PatchError(f"cannot patch {name}: GPT-J style embed_positions tables take one RopeConfig, "
                                 "not a LayerTypeRope")
            module_cfg = cfg or _read_config(model_config, name, module)
            table = module.embed_positions
            if table.shape[-1] != module_cfg.rotary_dim:
                raise PatchError(f"cannot patch {name}: embed_positions has {table.shape[-1]} channels, "
                                 f"expected rotary_dim={module_cfg.rotary_dim}")
            originals.setdefault(f"{name}.embed_positions", table)
            module.embed_positions = _exact_sin_cos_table(module_cfg, table.shape[0], table)
            patched += 1
    if not patched:
        inside = next(((n, type(m).__name__) for n, m in model.named_modules()
                       if _ROPE_IN_ATTENTION.fullmatch(type(m).__name__)), None)
        if inside:
            raise PatchError(f"cannot patch {type(model).__name__}: RoPE inside attention, no module to replace "
                             f"(computed within {inside[1]}, e.g. {inside[0]}); ropelab replaces rotary modules "
                             "and embed_positions tables")
        raise PatchError(f"no rotary embedding found in {type(model).__name__}")
    setattr(model, _ORIGINALS_ATTR, originals)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Restore the modules and tables that :func:`patch` replaced."""
    for name, original in getattr(model, _ORIGINALS_ATTR, {}).items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, original)
    if hasattr(model, _ORIGINALS_ATTR):
        delattr(model, _ORIGINALS_ATTR)
    return model
