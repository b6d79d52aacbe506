"""RopeConfig: one validated description of a RoPE variant.

A ``RopeConfig`` holds everything needed to turn positions into rotation angles: the head and
rotary widths, the base, the scaling type and its parameters, and the memory layout of the pairs.
Every value is validated at construction, so a bad value fails here with a message naming the
key, not later inside a forward pass.

:meth:`RopeConfig.from_hf` reads every form of the transformers ``config.json`` (``rope_parameters``,
the older ``rope_scaling``, the legacy ``type`` key, the top-level ``rope_theta`` / ``rotary_pct`` /
``rotary_dim`` / ``partial_rotary_factor`` keys, and what each model type implies) through the reader
of transformers' dialects, :func:`ropelab.integrations.hf.dialects.read_rope`, which ``import ropelab``
registers here: this module imports nothing from the package but :mod:`ropelab.errors`.

Some models use a different RoPE per kind of layer (Gemma 3: base 1e4 in sliding-window layers,
linear x8 over base 1e6 in full-attention layers); their ``rope_parameters`` is keyed by layer type.
:meth:`RopeConfig.from_hf` reads one of them (``layer_type=...``) and :meth:`RopeConfig.by_layer_type`
all of them, as a :class:`LayerTypeRope` (see the section at the end of this file).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ropelab.errors import RopeConfigError, UnknownLayerTypeError

__all__ = [
    "ALL_LAYERS",
    "AXIAL_COMPOSITIONS",
    "AXIAL_FREQUENCIES",
    "LAYOUTS",
    "MROPE_COMPOSITIONS",
    "ROPE_TYPES",
    "LayerTypeRope",
    "RopeConfig",
    "RopeConfigError",
]

#: The scaling types :func:`ropelab.frequencies.rope_frequencies` computes (``RopeConfig.rope_type``).
ROPE_TYPES = ("default", "linear", "ntk", "dynamic", "yarn", "longrope", "llama3", "proportional")
#: The memory layouts of the pairs, ``"half"`` (pair ``i`` is channels ``(i, i + R/2)``) and ``"interleaved"`` (``(2i, 2i + 1)``).
LAYOUTS = ("half", "interleaved")

# ----- multi-axis RoPE: each rotated pair i reads one row a(i) of the positions (see pair_axes)
# rope_type of 2D axial RoPE for image patches (transformers' "axial"): positions (row, column).
AXIAL_ROPE_TYPE = "axial"
#: How axial frequencies are laid out, pairs [0, P/2) reading the row and [P/2, P) the column:
#:
#: - ``"repeated"``: each axis gets the ladder of a RoPE over R/2 channels (Qwen2VLVisionRotaryEmbedding);
#: - ``"alternating"``: the ladder of a RoPE over R channels, even entries to the row and odd ones to the
#:   column (PixtralVisionRotaryEmbedding).
AXIAL_FREQUENCIES = ("repeated", "alternating")
#: How axial RoPE deals its pairs to the axes (the ladders above are per slot of ``axial_order``):
#:
#: - ``"contiguous"``: one block of P/A consecutive pairs per axis, in ``axial_order`` (Qwen2VLVisionRotaryEmbedding);
#: - ``"interleaved"``: the axes take pairs in turn, pair i reading ``axial_order[i % A]`` with entry ``i // A`` of
#:   its ladder (Kimi_K25VisionRotaryEmbedding: w, h, w, h, ...).
AXIAL_COMPOSITIONS = ("contiguous", "interleaved")
#: How M-RoPE (Qwen2-VL, arXiv 2409.12191 sec. 2.1) deals the pairs to positions (t, h, w), given ``mrope_section``:
#:
#: - ``"contiguous"``: section k is a block of consecutive pairs reading row k (Qwen2VLRotaryEmbedding);
#: - ``"interleaved"``: t, h, w, t, h, w, ... while h and w have sections left, then t (Qwen3VLTextRotaryEmbedding);
#: - ``"spatial_interleaved"``: sections are (h, w, t): h, w, h, w, ... for 2 * h pairs, then t (Ernie 4.5-VL,
#:   Ernie4_5_VLMoeTextRotaryEmbedding; needs equal h and w sections).
#:
#: Two sections are two axes, (row, column): ``"interleaved"`` then deals row, column, row, column, ...
#: (NeoMMERotaryEmbedding: row0-col0-row1-col1, its comment's ``mrope_section = [R // 4, R // 4]``).
MROPE_COMPOSITIONS = ("contiguous", "interleaved", "spatial_interleaved")

# Legacy and alternative spellings of rope types found in published config.json files.
_ROPE_TYPE_ALIASES = {"ntk-aware": "ntk", "dynamic-ntk": "dynamic"}

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


def _fail(key: str, value: Any, accepted: str) -> RopeConfigError:
    return RopeConfigError(f"{key}={value!r} is invalid: expected {accepted}")


# The reader of transformers configs (a config object, dict or config.json path -> LayerTypeRope):
# ropelab.integrations.hf.dialects.read_rope, registered by `import ropelab`. It sits above this module,
# which imports nothing from the package but ropelab.errors (tests/test_layering.py).
_hf_reader: Callable[[Any], LayerTypeRope] | None = None


def register_hf_reader(reader: Callable[[Any], LayerTypeRope]) -> None:
    """Make ``reader`` the function :meth:`RopeConfig.from_hf` and :meth:`RopeConfig.by_layer_type` read
    transformers configs with (``import ropelab`` registers :func:`ropelab.integrations.hf.dialects.read_rope`)."""
    global _hf_reader
    _hf_reader = reader


def _read_hf(obj: Any) -> LayerTypeRope:
    """Every layer type's RoPE of a transformers config, read by the registered reader."""
    if _hf_reader is None:  # only while the package itself is still being imported
        raise RuntimeError(
            "no reader of transformers configs is registered yet: RopeConfig.from_hf works once "
            "`import ropelab` has finished"
        )
    return _hf_reader(obj)


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
        rotated_pairs: ``rope_type="proportional"`` only (p-RoPE, Barbero et al. 2025, arXiv
            2410.06205): pairs ``0 .. rotated_pairs-1`` rotate with ``base ** (-2i / head_dim)``, the
            other ``head_dim/2 - rotated_pairs`` have frequency 0 and never rotate. The tables span
            the whole head (``rotary_dim == head_dim``). transformers derives it from
            ``partial_rotary_factor`` ``p`` as ``int(p * head_dim // 2)``; default: every pair.

    Multi-axis positions: pair ``i`` rotates by ``positions[pair_axes[i]] * inv_freq[i]``, with
    positions given per row (``[num_axes, ...]``, see :mod:`ropelab.rotary`).
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
                raise _fail(
                    "rotated_pairs",
                    self.rotated_pairs,
                    f"None for rope_type={self.rope_type!r} "
                    "(only 'proportional' leaves pairs unrotated; use rotary_dim for partial rotation)",
                )
            return
        if self.rotary_dim != self.head_dim:
            raise _fail(
                "rotary_dim",
                self.rotary_dim,
                f"head_dim={self.head_dim} for rope_type='proportional' "
                "(its tables span the head; rotated_pairs sets how many pairs turn)",
            )
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
            if (
                isinstance(sections, (str, bytes))
                or not hasattr(sections, "__len__")
                or len(sections) not in (2, 3)
                or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in sections)
            ):
                raise _fail(
                    "mrope_section",
                    sections,
                    "three non-negative integers (temporal, height, width pairs), or two (row, column pairs)",
                )
            set_("mrope_section", tuple(sections))
            if sum(sections) != self.num_pairs:
                # transformers splits the rotated pairs only: with partial rotation (GLM-4V) that is
                # int(head_dim * partial_rotary_factor) // 2, not head_dim // 2.
                raise _fail("mrope_section", list(sections), f"sections summing to rotary_dim // 2 = {self.num_pairs}")
            composition = self.mrope_composition or "contiguous"
            if composition not in MROPE_COMPOSITIONS:
                raise _fail("mrope_composition", composition, f"one of {', '.join(MROPE_COMPOSITIONS)}")
            if composition == "spatial_interleaved" and len(sections) != 3:
                raise _fail(
                    "mrope_section",
                    list(sections),
                    "three sections (height, width, temporal) for mrope_composition='spatial_interleaved'",
                )
            if composition == "spatial_interleaved" and sections[0] != sections[1]:
                raise _fail(
                    "mrope_section",
                    list(sections),
                    "equal height and width sections (the first two) for mrope_composition='spatial_interleaved'",
                )
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
        if (
            isinstance(order, (str, bytes))
            or not hasattr(order, "__len__")
            or any(not isinstance(a, int) or isinstance(a, bool) for a in order)
            or len(order) < 2
            or sorted(order) != list(range(len(order)))
        ):
            raise _fail("axial_order", order, "a permutation of 0 .. A-1 for A >= 2 axes, e.g. (0, 1) or (1, 0)")
        composition = self.axial_composition or "contiguous"
        if composition not in AXIAL_COMPOSITIONS:
            raise _fail("axial_composition", composition, f"one of {', '.join(AXIAL_COMPOSITIONS)}")
        if self.axial_pairs is None and self.num_pairs % len(order):
            raise _fail(
                "rotary_dim",
                self.rotary_dim,
                f"a multiple of {2 * len(order)} for rope_type='axial' "
                f"with {len(order)} axes (the pairs split evenly between the axes)",
            )
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
        if (
            isinstance(shares, (str, bytes))
            or not hasattr(shares, "__len__")
            or len(shares) != slots
            or any(not isinstance(n, int) or isinstance(n, bool) or n <= 0 for n in shares)
        ):
            raise _fail("axial_pairs", shares, f"{slots} positive integers, the pairs of each slot of axial_order")
        if sum(shares) > self.num_pairs:
            raise _fail("axial_pairs", list(shares), f"at most rotary_dim // 2 = {self.num_pairs} pairs in all")
        if (self.axial_frequencies, self.axial_composition) != ("repeated", "contiguous"):
            raise _fail(
                "axial_pairs",
                list(shares),
                "None unless axial_frequencies='repeated' and "
                "axial_composition='contiguous' (a block of pairs per slot, each with its own ladder)",
            )
        even = self.num_pairs // slots
        return None if tuple(shares) == (even,) * slots and even * slots == self.num_pairs else tuple(shares)

    def _slot_bases(self) -> tuple[float, ...] | None:
        """``axial_bases`` validated; None where every slot has ``base``."""
        bases, slots = self.axial_bases, len(self.axial_order)
        if bases is None:
            return None
        if (
            isinstance(bases, (str, bytes))
            or not hasattr(bases, "__len__")
            or len(bases) != slots
            or any(
                not isinstance(b, (int, float)) or isinstance(b, bool) or not (math.isfinite(b) and b > 1)
                for b in bases
            )
        ):
            raise _fail("axial_bases", bases, f"{slots} finite numbers > 1, the base of each slot of axial_order")
        if self.axial_frequencies != "repeated":
            raise _fail(
                "axial_bases",
                list(bases),
                "None unless axial_frequencies='repeated' (alternating frequencies deal one ladder to every axis)",
            )
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
        """How many position rows a token carries (one per M-RoPE section, 3 for t, h, w or 2 for row,
        column; ``len(axial_order)`` for axial; else 1)."""
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
        rope = _read_hf(obj)
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
                raise _fail(
                    "layer_type",
                    layer_type,
                    f"one of the config's layer_types ({listed}); the config has "
                    "one RoPE for every layer, read it with layer_type=None",
                )
            return rope[ALL_LAYERS]
        cfg = rope[layer_type]
        if cfg is None:
            raise _fail(
                "layer_type",
                layer_type,
                f"a layer type with RoPE: its rope_parameters entry is None (NoPE); "
                f"layer types with RoPE: {', '.join(rope.rope_layer_types) or 'none'}",
            )
        return cfg

    @classmethod
    def by_layer_type(cls, obj: Any) -> LayerTypeRope:
        """The RoPE of every layer type of ``obj`` (read as :meth:`from_hf` reads it).

        A per-layer-type config gives one entry per layer type (``None`` for a NoPE type); a flat
        config gives the single entry :data:`ALL_LAYERS` (``"all"``, ``uniform`` True). Either way
        ``layer_types`` is the config's per-layer list (empty when it names none).
        """
        return _read_hf(obj)

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
def _axial_pair_axes(
    pairs: int, order: tuple[int, ...], composition: str, shares: tuple[int, ...] | None = None
) -> tuple[int, ...]:
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


# ====================================================================== per-layer-type RoPE
ALL_LAYERS = "all"  #: the one key of a LayerTypeRope read from a flat config


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
            raise UnknownLayerTypeError(
                f"layer_type={layer_type!r} is invalid: expected one of {', '.join(self.configs)}"
            )
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
                raise _fail(
                    key, sorted(values, key=str), "one value for all layer types (transformers keeps it top-level)"
                )
        for name, cfg in self.configs.items():
            flat = None if cfg is None else cfg.to_hf()
            out["rope_parameters"][name] = None if flat is None else flat.pop("rope_parameters")
            if flat and name in self.layer_types and flat["head_dim"] != present[0].head_dim:
                overrides = {i: {"head_dim": flat["head_dim"]} for i, t in enumerate(self.layer_types) if t == name}
                out.setdefault("per_layer_config", {}).update(overrides)
            elif flat and flat["head_dim"] != present[0].head_dim:
                raise _fail(
                    "layer_types",
                    list(self.layer_types),
                    f"a list naming {name!r}, whose head_dim "
                    f"{flat['head_dim']} differs from {present[0].head_dim} (per_layer_config is keyed by layer)",
                )
            for key, value in (flat or {}).items():
                if key not in ("head_dim", "rotary_dim"):
                    out[key] = value
            partial = (out["rope_parameters"][name] or {}).get("partial_rotary_factor")
            if flat and "rotary_dim" in flat and int(flat["head_dim"] * partial) != flat["rotary_dim"]:
                raise _fail(
                    f"{name}.rotary_dim",
                    flat["rotary_dim"],
                    "a partial rotation that partial_rotary_factor "
                    "states exactly (per-layer-type configs have no per-type rotary_dim key)",
                )
        out["head_dim"] = present[0].head_dim if present else None
        return out
