"""The modules that :func:`~ropelab.integrations.hf.patch` puts in place of transformers' rotary modules.

Each adapter holds a :class:`~ropelab.config.RopeConfig` (``cfg``, or a
:class:`~ropelab.config.LayerTypeRope` for modules keyed by layer type) and takes its numbers from
ropelab's exact float64 angles; only the arrangement of the output follows the replaced module.

:class:`HFRotaryAdapter` serves the generic ``forward(x, position_ids[, layer_type]) -> (cos, sin)``
modules. Its table layouts (``table_layout``) follow what each family's attention expects, which is
not always the channel layout of q and k:

- ``"half"``: ``[c, c]``, ``R`` wide (Llama and most others; also DeepSeek-V3 style ``rope_interleave``
  models, whose attention de-interleaves q and k in ``apply_rotary_pos_emb_interleave`` and so keeps
  half-split tables);
- ``"interleaved"``: ``[c0, c0, c1, c1, ...]``, ``R`` wide (Cohere);
- ``"pairs"``: ``[c]``, ``R/2`` wide, one value per pair (GPT-OSS, whose attention splits q and k in
  halves itself). :func:`~ropelab.integrations.hf.patch` reads which from the width of the original
  module's tables.

Multi-axis rotary modules take more than one position per token (see ``RopeConfig.pair_axes``):

- M-RoPE text towers (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, GLM-4V, Ernie 4.5-VL, ...) take ``position_ids``
  ``[3, B, S]`` (temporal, height, width) or ``[B, S]`` (the same on the three rows) and return
  ``[B, S, R]``; NeoMME's encoder, per layer type, takes two rows ``[2, B, S]`` (row, column) or
  ``[B, S]``; the composition of each family is data in :mod:`~ropelab.integrations.hf.dialects`;
- axial vision towers (``rope_type="axial"``: Qwen2-VL's, Pixtral's, Kimi-K2.5's, Step3p7's, ...)
  take ``[N, A]`` patch positions, axis last ((row, column); MiniMax-M3: (t, h, w)), and return
  ``[N, R]``; each family's axis order is data in :mod:`~ropelab.integrations.hf.dialects`.

Modules whose call or tables are not the generic ones each have an adapter subclass:

- complex ``freqs_cis`` ``[B, S, R/2]`` (DeepSeek-V2, Llama 4's text tower): :class:`HFComplexRotaryAdapter`;
- Llama 4's vision tower, which takes no positions and returns the ``freqs_cis`` of a fixed patch
  grid: :class:`HFFixedGridAdapter`;
- EfficientLoFTR, whose module takes the coarse feature map and returns the tables of its aggregated
  grid (1-based (row, column), pairs alternating axes over the whole hidden vector):
  :class:`HFFeatureGridAdapter`;
- EoMT-DINOv3, DINOv3 ViT and Sapiens2, whose modules take the pixels and rotate each patch by its
  centre in ``[-1, 1]`` (fractional (row, column) positions, times 2 pi): :class:`HFPatchCentreAdapter`;
- MusicFlamingo's rotary time embedding, ``forward(timestamps, seq_len)``: two axes (window index,
  time index) at fractional positions that the timestamps give: :class:`HFTimestampAdapter`;
- RoPE over physical coordinates, ``forward(coordinates, ids, dtype)`` (ESMFold 2's atom encoders:
  x, y, z and a per-atom space uid, float positions, a base per slot): :class:`HFCoordinateAdapter`;
- the conformer speech encoders' ``forward(hidden_states) -> torch.stack([cos, sin])``
  (Wav2Vec2-Conformer, Wav2Vec2-BERT, SeamlessM4T): :class:`HFStackedTableAdapter`; CLVP's table of
  angles: :class:`HFAngleTableAdapter`;
- tables that are not laid out per pair over the whole head: Gemma 4's vision tower (one ``[c, c]``
  half per axis, positions ``[B, N, 2]``) and HunYuan-VL's text tower (its ``mrope_section`` cuts the
  doubled ``[c, c]`` table, so the two channels of a pair can read different position rows; the core
  RopeConfig refuses that reading, the adapter reproduces the tables): :class:`HFChannelTableAdapter`.

Which module gets which adapter is :mod:`ropelab.integrations.hf.families`. Tables come back in the
dtype the original returns: the input's, or float32 for the modules that always return float32
(Qwen2-VL's vision tower, Ernie 4.5-VL's text tower, OLMo 3, BEAM, LFM3).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import PatchError
from ropelab.frequencies import rope_frequencies
from ropelab.reference import pairs_to_channels
from ropelab.rotary import rope_cos_sin
from ropelab.rotary_tables import fractional_cos_sin, index_tensor, rope_angles

_TABLE_LAYOUTS = ("half", "interleaved", "pairs")
# The config keys of the DINOv3-style training-mode augmentation of the patch centres
# (EomtDinov3RotaryEmbedding, DINOv3ViTRopePositionEmbedding, Sapiens2RopePositionEmbedding).
_PATCH_CENTRE_AUGMENTATION = ("pos_embed_shift", "pos_embed_jitter", "pos_embed_rescale")


class HFRotaryAdapter(nn.Module):
    """Drop-in for a transformers ``*RotaryEmbedding`` module.

    ``forward(x, position_ids, layer_type=None) -> (cos, sin)``, each ``[B, S, R]`` in ``x.dtype``
    (or ``table_dtype`` when the replaced module always returned that dtype: OLMo 3, BEAM and LFM3
    return float32 tables whatever ``x`` is), with the pairs laid out as ``table_layout`` says:
    ``"half"`` repeats the ``R/2`` values as ``[c, c]`` (transformers' Llama), ``"interleaved"`` as
    ``[c0, c0, c1, c1, ...]`` (Cohere), ``"pairs"`` keeps them once (``[B, S, R/2]``, GPT-OSS).
    Dynamic types see ``seq_len = max(position_ids) + 1``, as in transformers, but nothing is mutated.
    ``sin_first``: return ``(sin, cos)``, as the replaced module did (GPT-J and CodeGen, transformers >= 5.25).

    ``cfg`` is a :class:`RopeConfig`, or a :class:`LayerTypeRope` for a module keyed by layer type:
    then ``layer_type`` picks the RopeConfig (``R`` is that layer type's width) and is required.

    ``config`` is the replaced module's transformers config, kept because some attention code reads
    it from the rotary module (Granite SWA picks tables by ``rotary_emb.config.rope_parameters``);
    so are the replaced module's ``layer_types`` and ``rope_type`` attributes where it had them.

    Multi-axis ``cfg`` (``num_axes > 1``): M-RoPE ``position_ids`` are ``[A, B, S]`` or ``[B, S]``
    (the same on every row, as transformers expands them) and give ``[B, S, R]``; axial ones are
    ``[..., N, A]`` (axis last, as the vision towers pass them) and give ``[..., N, R]``.
    """

    def __init__(
        self,
        cfg: RopeConfig | LayerTypeRope,
        table_layout: str = "half",
        config: Any = None,
        *,
        table_dtype: torch.dtype | None = None,
        leading_one: bool = False,
        sin_first: bool = False,
    ):
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
        self.sin_first = sin_first

    def cfg_for(self, layer_type: str | None) -> RopeConfig:
        """The RopeConfig that answers a call for ``layer_type`` (ignored for a plain RopeConfig)."""
        cfg = self.cfg
        if isinstance(cfg, RopeConfig):
            return cfg
        if cfg.uniform:
            return next(iter(cfg.values()))
        if layer_type is None:
            raise PatchError(
                f"layer_type=None is invalid: this rotary module is keyed by layer type "
                f"({', '.join(cfg)}); call it as forward(x, position_ids, layer_type)"
            )
        found = cfg[layer_type]
        if found is None:
            raise PatchError(
                f"layer_type={layer_type!r} has no RoPE (its rope_parameters entry is None): "
                "the model must not ask for its cos/sin"
            )
        return found

    def forward(
        self, x: torch.Tensor, position_ids: torch.Tensor, layer_type: str | None = None, *args: Any, **kwargs: Any
    ):
        cfg = self.cfg_for(layer_type)
        dtype = self.table_dtype or x.dtype
        positions = _axis_rows(position_ids.to(x.device), cfg)
        cos, sin = (fractional_cos_sin if positions.dtype.is_floating_point else rope_cos_sin)(positions, cfg)
        if self.leading_one:
            cos, sin = cos[None], sin[None]
        cos, sin = _expand_both(cos, sin, self.table_layout, dtype)
        return (sin, cos) if self.sin_first else (cos, sin)

    def extra_repr(self) -> str:
        if isinstance(self.cfg, LayerTypeRope):
            kinds = ", ".join(
                f"{name}: " + ("none" if cfg is None else f"{cfg.rope_type} R={cfg.rotary_dim}")
                for name, cfg in self.cfg.items()
            )
            return f"layer types {{{kinds}}}, table_layout={self.table_layout!r}"
        axes = f", axes={self.cfg.num_axes}" if self.cfg.num_axes > 1 else ""
        order = ", returns (sin, cos)" if self.sin_first else ""
        return (
            f"rope_type={self.cfg.rope_type!r}, rotary_dim={self.cfg.rotary_dim}, "
            f"table_layout={self.table_layout!r}{axes}{order}"
        )


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


def _expand(table: torch.Tensor, table_layout: str) -> torch.Tensor:
    return table if table_layout == "pairs" else pairs_to_channels(table, table_layout)


def _expand_both(cos: torch.Tensor, sin: torch.Tensor, table_layout: str, dtype: torch.dtype):
    """``(cos, sin)`` laid out as ``table_layout`` (see :func:`_expand`), in ``dtype``."""
    return _expand(cos, table_layout).to(dtype), _expand(sin, table_layout).to(dtype)


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
    hidden vector (see ``dialects._AXIS_LADDER_FAMILIES``), channels interleaved.
    """

    def __init__(self, cfg: RopeConfig, config: Any):
        super().__init__(cfg, "interleaved", config)

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any):
        kernel, stride = self.config.q_aggregation_kernel_size, self.config.q_aggregation_stride
        rows, cols = ((size - kernel) // stride + 1 for size in x.shape[-2:])
        grid = torch.meshgrid(
            torch.arange(1, rows + 1, device=x.device), torch.arange(1, cols + 1, device=x.device), indexing="ij"
        )
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
        return _expand_both(cos, sin, self.table_layout, self.table_dtype)


class HFCoordinateAdapter(HFRotaryAdapter):
    """Drop-in for a rotary module over physical coordinates (ESMFold 2's ``EsmFold2RotaryEmbedding``).

    ``forward(coordinates, ids=None, dtype=None) -> (cos, sin)``, each ``[..., R]`` half-split ``[c, c]``
    in ``dtype`` (default ``coordinates.dtype``): ``coordinates`` ``[..., C]`` are axes ``0 .. C-1`` of
    ``cfg`` and ``ids`` ``[...]`` (ESMFold 2's per-atom space uid), when given, axis ``C``. Positions are
    taken as given, float or integer (float64 angles, :func:`~ropelab.rotary_tables.fractional_cos_sin`).
    """

    def __init__(self, cfg: RopeConfig, config: Any = None):
        super().__init__(cfg, "half", config)

    def forward(
        self,
        coordinates: torch.Tensor,
        ids: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
        *args: Any,
        **kwargs: Any,
    ):
        columns = [coordinates.to(torch.float64)] + ([] if ids is None else [ids.to(torch.float64)[..., None]])
        positions = torch.cat(columns, dim=-1)
        if positions.shape[-1] != self.cfg.num_axes:
            raise PatchError(
                f"coordinates.shape={tuple(coordinates.shape)} with ids={'none' if ids is None else 'one axis'} "
                f"is invalid: expected {self.cfg.num_axes} position axes in all (coordinates [..., "
                f"{self.cfg.num_axes - (ids is not None)}] plus the ids)"
            )
        cos, sin = fractional_cos_sin(positions.movedim(-1, 0), self.cfg)
        dtype = dtype or coordinates.dtype
        return _expand_both(cos, sin, self.table_layout, dtype)


class HFChannelTableAdapter(HFRotaryAdapter):
    """Drop-in for a module whose ``(cos, sin)`` tables put the pairs in an order of their own.

    ``forward(x, position_ids) -> (cos, sin)``, each ``[..., W]`` in ``x.dtype``: channel ``c`` holds
    pair ``channel_pairs[c]`` of ropelab's table. With ``channel_axes`` (``cfg`` one-axis), channel ``c``
    reads row ``channel_axes[c]`` of ``position_ids`` ``[A, B, S]`` (``A = position_rows``; ``[B, S]``:
    the same on every row), whatever pair it holds: HunYuan-VL's sections cut the doubled table, not
    the pairs.
    """

    def __init__(
        self,
        cfg: RopeConfig,
        channel_pairs: tuple[int, ...],
        config: Any = None,
        channel_axes: tuple[int, ...] | None = None,
        position_rows: int | None = None,
    ):
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
        pairs = index_tensor(self.channel_pairs, cos.device)
        axes = None if self.channel_axes is None else index_tensor(self.channel_axes, cos.device)
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
            raise PatchError(
                f"training-mode patch centre augmentation ({augment}) is not reproduced by the "
                "patched rotary module: call model.eval(), or unpatch(model) to train"
            )
        grid = [size // patch for size, patch in zip(pixel_values.shape[-2:], self.patch_size)]
        centres = [
            (torch.arange(n, dtype=torch.float64, device=pixel_values.device) + 0.5) * (2.0 / n) - 1.0 for n in grid
        ]
        positions = torch.stack(torch.meshgrid(*centres, indexing="ij")).flatten(1) * (2 * math.pi)  # [2, N]
        cos, sin = fractional_cos_sin(positions, self.cfg)
        return _expand_both(cos, sin, self.table_layout, pixel_values.dtype)


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
            raise PatchError(
                f"attention_factor={attention_factor:g} is invalid for {type(self).__name__}: "
                "expected 1 (the module returns angles, which cannot scale cos and sin)"
            )
        angles = rope_angles(torch.arange(hidden_states.shape[1], device=hidden_states.device), inv_freq)  # [S, R/2]
        return _expand(angles, "half")[None].to(self.table_dtype)


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


def _exact_sin_cos_table(cfg: RopeConfig, num_positions: int, like: torch.Tensor) -> torch.Tensor:
    """GPT-J's ``embed_positions`` layout: ``[num_positions, R]`` = ``[sin | cos]``."""
    cos, sin = rope_cos_sin(torch.arange(num_positions, device=like.device), cfg)
    return torch.cat((sin, cos), dim=-1).to(like.dtype)
