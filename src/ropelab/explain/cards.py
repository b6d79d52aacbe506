"""A model card's RoPE as data: the numbers ``explain`` and ``compare`` show, and the verdict in words.

Nothing here prints or draws. :func:`card_summary` computes a :class:`CardSummary` from the
analysis functions; :func:`summary_rows`, :func:`compare_rows` and :func:`verdict` turn it into
strings that :mod:`ropelab.explain.cli` lays out.

A model with a RoPE per layer type (Gemma 3) gets one card per layer type: :func:`layer_groups`
says which layers each one serves (and which layer types have no RoPE at all), and
:func:`labelled_cards` spells them ``name:layer_type`` for ``compare``. p-RoPE (``proportional``)
cards, and axial cards whose ``axial_pairs`` leave pairs over (ESMFold 2), say which pairs never rotate.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ropelab.analysis.bounds import min_base_for_context
from ropelab.analysis.wavelengths import critical_dimension, out_of_range_pairs, pair_wavelengths, unscaled
from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.frequencies import rope_frequencies
from ropelab.presets import LAYER_TYPE_SEPARATOR, preset

__all__ = [
    "CardSummary",
    "LayerGroup",
    "axes_rows",
    "axes_text",
    "card_summary",
    "compare_rows",
    "labelled_cards",
    "layer_groups",
    "layers_text",
    "load_config",
    "scaling_text",
    "summary_rows",
    "verdict",
]

# Above this context the base bound is skipped: finding its narrow admissible windows exactly costs
# about L**2 (measured on 2 shared cores: ~7 s at 2**17, ~100 s at 2**18, ~11 min at 2**20).
_BASE_BOUND_LIMIT = 1 << 17

# Fields of a scaled config worth naming in one line, in this order.
_SCALING_KEYS = ("factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor",
                 "beta_fast", "beta_slow", "mscale", "mscale_all_dim", "attention_factor")  # fmt: skip


def load_config(spec: str) -> RopeConfig | LayerTypeRope:
    """A preset name or a path to a ``config.json``: a :class:`RopeConfig`, or a :class:`LayerTypeRope`
    for a model with a RoPE per layer type; ``spec:layer_type`` picks one layer type's RopeConfig.

    Raises :class:`ropelab.errors.UnknownPresetError` for an unknown name and
    :class:`ropelab.errors.RopeConfigError` (or ``FileNotFoundError``) for a bad file.
    """
    looks_like_path = spec.endswith(".json") or os.sep in spec or os.path.exists(spec)
    if not looks_like_path:
        return preset(spec)
    path, separator, layer_type = spec.rpartition(LAYER_TYPE_SEPARATOR)
    if separator and not os.path.exists(spec) and path.endswith(".json"):
        return RopeConfig.from_hf(path, layer_type=layer_type)
    rope = RopeConfig.by_layer_type(spec)
    return rope.configs[next(iter(rope))] if rope.uniform else rope


@dataclass(frozen=True)
class LayerGroup:
    """The layers of one layer type: their RoPE (``None``: no RoPE, NoPE) and their indices."""

    layer_type: str
    cfg: RopeConfig | None
    layers: tuple[int, ...]
    total_layers: int


def layer_groups(rope: LayerTypeRope) -> list[LayerGroup]:
    """One :class:`LayerGroup` per layer type of ``rope``, in its order."""
    return [LayerGroup(name, cfg, rope.layers(name), len(rope.layer_types)) for name, cfg in rope.items()]


def layers_text(layers: tuple[int, ...], total: int) -> str:
    """``"5, 11, 17 (3 of 18 layers)"`` with runs as ranges (``"0-4, 6-10"``); ``"layers not listed"``
    when the config names no per-layer list."""
    if not total:
        return "layers not listed in the config"
    runs: list[list[int]] = []
    for index in layers:
        if runs and index == runs[-1][-1] + 1:
            runs[-1].append(index)
        else:
            runs.append([index])
    spans = [f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]) for run in runs]
    return f"{', '.join(spans) or 'none'} ({len(layers)} of {total} layers)"


def labelled_cards(spec: str, rope: RopeConfig | LayerTypeRope) -> list[tuple[str, RopeConfig]]:
    """``(label, RopeConfig)`` per card: the spec itself, or ``spec:layer_type`` for every layer type
    with RoPE (layer types without RoPE have no card)."""
    if isinstance(rope, RopeConfig):
        return [(spec, rope)]
    return [(f"{spec}{LAYER_TYPE_SEPARATOR}{name}", rope[name]) for name in rope.rope_layer_types]


@dataclass(frozen=True)
class CardSummary:
    """The numbers ``explain`` prints for one config at one context length."""

    cfg: RopeConfig
    context: int
    trained_length: int | None
    attention_factor: float
    shortest_wavelength: float
    longest_wavelength: float
    critical_dimension: int | None
    out_of_range: int | None
    out_of_range_unscaled: int | None
    min_base: float | None
    frozen_pairs: int = 0  # pairs with frequency 0 (p-RoPE's, axial_pairs' leftovers): they never rotate


def card_summary(cfg: RopeConfig, context: int, *, with_base_bound: bool = True) -> CardSummary:
    """Everything ``explain`` reports for ``cfg`` at ``context`` tokens.

    ``out_of_range`` counts the pairs of ``cfg`` (scaling included) that leave the arc they met in
    the first ``trained_length`` positions; ``out_of_range_unscaled`` the same without scaling.
    The base bound (Men et al. 2024) is skipped above ``2**20`` tokens or when ``with_base_bound``
    is False.
    """
    _, attention_factor = rope_frequencies(cfg, context)
    wavelengths = pair_wavelengths(cfg, context)
    turning = wavelengths[wavelengths.isfinite()]  # frozen pairs (frequency 0) have an infinite wavelength
    frozen = cfg.num_pairs - turning.numel()
    trained = cfg.trained_length
    critical = critical_dimension(cfg.rotary_dim, cfg.base, trained) if trained else None
    if critical is not None and frozen:
        critical = min(critical, 2 * (cfg.num_pairs - frozen))  # frozen pairs are past it but never turn
    out, out_plain = None, None
    if trained:
        base_cfg = unscaled(cfg)
        out = out_of_range_pairs(base_cfg, context, trained_length=trained, target=cfg).count
        out_plain = out_of_range_pairs(base_cfg, context, trained_length=trained).count
    # The base bound reads one ladder along token positions; axial positions are patch coordinates.
    wants_bound = with_base_bound and context <= _BASE_BOUND_LIMIT and cfg.rope_type != "axial"
    return CardSummary(
        cfg=cfg,
        context=context,
        trained_length=trained,
        attention_factor=float(attention_factor),
        shortest_wavelength=float(turning.min()) if turning.numel() else float("inf"),
        longest_wavelength=float(turning.max()) if turning.numel() else float("inf"),
        critical_dimension=critical,
        out_of_range=out,
        out_of_range_unscaled=out_plain,
        min_base=min_base_for_context(context, cfg.rotary_dim) if wants_bound else None,
        frozen_pairs=frozen,
    )


# ----------------------------------------------------------------------------- table rows
def scaling_text(cfg: RopeConfig) -> str:
    """The rope type and its parameters in one line, e.g. ``llama3 (factor=8, ...)``."""
    parts = [f"{key}={getattr(cfg, key):g}" for key in _SCALING_KEYS if getattr(cfg, key) is not None]
    if cfg.short_factor is not None:
        parts.append(f"short_factor[{len(cfg.short_factor)}] {min(cfg.short_factor):.3g}..{max(cfg.short_factor):.3g}")
        parts.append(f"long_factor[{len(cfg.long_factor)}] {min(cfg.long_factor):.3g}..{max(cfg.long_factor):.3g}")
    return cfg.rope_type + (" (" + ", ".join(parts) + ")" if parts else "")


def _layout_text(cfg: RopeConfig) -> str:
    if cfg.layout == "half":
        return "half (pair i = channels i, i + R/2; GPT-NeoX / HF Llama)"
    return "interleaved (pair i = channels 2i, 2i+1; GPT-J / Meta Llama)"


# ----------------------------------------------------------------------------- multi-axis RoPE
def _axis_names(cfg: RopeConfig) -> tuple[str, ...]:
    """Position rows in the order the positions carry them (M-RoPE: Qwen2-VL sec. 2.1, or (row, column)
    with two sections as NeoMME's; axial: the (row, column) patch coordinates of transformers' vision
    towers, (t, row, column) with three axes as MiniMax-M3's)."""
    if cfg.rope_type != "axial":
        return ("temporal", "height", "width") if cfg.num_axes == 3 else ("row", "column")
    names = ("row", "column") if cfg.num_axes == 2 else ("temporal", "row", "column")
    return names if cfg.num_axes <= 3 else tuple(f"axis {a}" for a in range(cfg.num_axes))


def _axial_text(cfg: RopeConfig) -> str:
    """How axial pairs are dealt to the axes, e.g. ``repeated frequencies, column block first``."""
    names = _axis_names(cfg)
    text = f"{cfg.axial_frequencies} frequencies"
    if cfg.axial_composition == "interleaved":
        return text + ", " + ", ".join(names[a] for a in cfg.axial_order) + " in turn, pair by pair"
    if cfg.axial_order != tuple(range(cfg.num_axes)):
        text += ", blocks " + " | ".join(names[a] for a in cfg.axial_order)
    return text


def _runs(indices: list[int]) -> list[list[int]]:
    """``indices`` (ascending) cut into maximal arithmetic runs."""
    runs: list[list[int]] = []
    for i in indices:
        run = runs[-1] if runs else None
        if run and (len(run) == 1 or i - run[-1] == run[1] - run[0]):
            run.append(i)
        elif run and len(run) == 2:  # a pair is no run yet: restart from its second element
            runs[-1] = [run[0]]
            runs.append([run[1], i])
        else:
            runs.append([i])
    return runs


def _indices_text(indices: list[int]) -> str:
    """Pair indices compactly: ``0-15``, ``1, 4, ..., 58 (every 3rd)``, ``60, 61``."""
    parts = []
    for run in _runs(indices):
        step = run[1] - run[0] if len(run) > 1 else 1
        if len(run) <= 2:
            parts.append(", ".join(map(str, run)))
        elif step == 1:
            parts.append(f"{run[0]}-{run[-1]}")
        else:
            ordinal = {2: "2nd", 3: "3rd"}.get(step, f"{step}th")
            parts.append(f"{run[0]}, {run[1]}, ..., {run[-1]} (every {ordinal})")
    return "; ".join(parts) if parts else "none"


def axes_text(cfg: RopeConfig) -> str:
    """The position axes in one line: ``1``, or e.g. ``3: temporal 16, height 24, width 24 pairs (contiguous)``."""
    if cfg.num_axes == 1:
        return "1"
    counts = [cfg.pair_axes.count(axis) for axis in range(cfg.num_axes)]
    how = cfg.mrope_composition if cfg.mrope_section is not None else f"axial, {_axial_text(cfg)}"
    per_axis = ", ".join(f"{name} {count}" for name, count in zip(_axis_names(cfg), counts))
    return f"{cfg.num_axes}: {per_axis} pairs ({how})"


def axes_rows(cfg: RopeConfig, seq_len: int | None = None) -> list[tuple[str, str]]:
    """One ``(name, value)`` row per position axis: which pairs read it and their wavelengths (empty
    for one-axis RoPE). Pair ``i`` turns by ``positions[pair_axes[i]] * inv_freq[i]``."""
    if cfg.num_axes == 1:
        return []
    wavelengths = pair_wavelengths(cfg, seq_len)
    if cfg.mrope_section is not None:
        kind = (
            f"M-RoPE (Qwen2-VL, arXiv 2409.12191 sec. 2.1), sections {list(cfg.mrope_section)} {cfg.mrope_composition}"
        )
    else:
        kind = f"axial {cfg.num_axes}D RoPE over per-axis coordinates (patch rows and columns, or atom positions), {_axial_text(cfg)}"
    rows = [("position axes", f"{cfg.num_axes} per token: {kind}")]
    for axis, name in enumerate(_axis_names(cfg)):
        pairs = [i for i, a in enumerate(cfg.pair_axes) if a == axis]
        if not pairs:
            rows.append((f"{name} axis", "no pairs"))
            continue
        waves = wavelengths[pairs]
        turning = waves[waves.isfinite()]  # axial_pairs' leftover pairs read the last axis but never turn
        frozen = f" ({len(pairs) - turning.numel()} never turn)" if turning.numel() < len(pairs) else ""
        spread = (
            f"wavelengths {float(turning.min()):.4g} .. {float(turning.max()):.4g} positions"
            if turning.numel()
            else "none turn"
        )
        rows.append((f"{name} axis", f"{len(pairs)} pairs: {_indices_text(pairs)}; {spread}{frozen}"))
    return rows


def _optional(value, suffix: str = "", fmt: str = "{}") -> str:
    return "not computed" if value is None else fmt.format(value) + suffix


def _out_of_range_text(summary: CardSummary) -> str:
    if summary.out_of_range is None:
        return "unknown (no trained length)"
    text = f"{summary.out_of_range} of {summary.cfg.num_pairs}"
    if summary.cfg.rope_type != "default":
        text += f" (unscaled: {summary.out_of_range_unscaled})"
    return text


def _frozen_text(cfg: RopeConfig, frozen: int) -> str:
    """Which pairs never rotate (the last ``frozen``: p-RoPE's, or those past ``axial_pairs``), with
    their channels in the card's layout."""
    first, last = cfg.num_pairs - frozen, cfg.num_pairs - 1
    if cfg.layout == "half":
        channels = f"channels {first}..{last} and {first + cfg.num_pairs}..{cfg.rotary_dim - 1}"
    else:
        channels = f"channels {2 * first}..{cfg.rotary_dim - 1}"
    return f"pairs {first}..{last} ({channels}) have frequency 0 and never rotate"


def _unstated(cfg: RopeConfig) -> str:
    """Why the trained length is only max_position_embeddings (empty when the config states it)."""
    if cfg.states_trained_length:
        return ""
    return f"a {cfg.rope_type}-scaled config states no pretraining length, and max_position_embeddings may be the extended one"


def _pretraining(summary: CardSummary) -> str:
    """``the pretraining length T``, or ``the assumed trained length T`` when the config does not state it."""
    kind = "assumed trained" if _unstated(summary.cfg) else "pretraining"
    return f"the {kind} length {summary.trained_length:,}"


def _trained_text(summary: CardSummary) -> str:
    if not summary.trained_length:
        return "unknown"
    if _unstated(summary.cfg):
        return (
            f"{summary.trained_length:,} (assumed: max_position_embeddings; {summary.cfg.rope_type} configs state none)"
        )
    return f"{summary.trained_length:,}"


def summary_rows(summary: CardSummary) -> list[tuple[str, str]]:
    """The table rows of ``explain`` as (name, value) strings."""
    cfg, turning = summary.cfg, summary.cfg.num_pairs - summary.frozen_pairs
    if cfg.rope_type == "proportional":
        rotated = f"p-RoPE: {turning} of {cfg.num_pairs} pairs turn"
    elif summary.frozen_pairs:
        rotated = f"{turning} of {cfg.num_pairs} pairs turn"
    else:
        rotated = f"{cfg.partial_rotary_factor:.0%} rotated"
    frozen = [("pairs that never rotate", _frozen_text(cfg, summary.frozen_pairs))] if summary.frozen_pairs else []
    return [
        ("source", cfg.source or "-"),
        ("layout", _layout_text(cfg)),
        ("head_dim / rotary_dim", f"{cfg.head_dim} / {cfg.rotary_dim} ({rotated})"),
        *frozen,
        *axes_rows(cfg, summary.context),
        ("base (rope_theta)", f"{cfg.base:g}"),
        ("scaling", scaling_text(cfg)),
        ("trained length", _trained_text(summary)),
        ("extended length", f"{cfg.max_position_embeddings:,}" if cfg.max_position_embeddings else "unknown"),
        ("attention factor", f"{summary.attention_factor:.4g} at {summary.context:,} tokens"),
        ("shortest wavelength", f"{summary.shortest_wavelength:.4g} positions"),
        (
            "longest wavelength",
            f"{summary.longest_wavelength:.4g} positions"
            + (" (of the pairs that turn)" if summary.frozen_pairs else ""),
        ),
        ("critical dimension", _optional(summary.critical_dimension, f" of {cfg.rotary_dim} (Liu et al. 2023)")),
        (f"pairs out of range at {summary.context:,}", _out_of_range_text(summary)),
        (f"min base for {summary.context:,}", _optional(summary.min_base, " (Men et al. 2024)", fmt="{:.3g}")),
    ]


_COMPARE_FIELDS = (
    ("layout", lambda s: s.cfg.layout),
    ("head_dim", lambda s: s.cfg.head_dim),
    ("rotary_dim", lambda s: s.cfg.rotary_dim),
    ("position axes", lambda s: axes_text(s.cfg)),
    ("base", lambda s: f"{s.cfg.base:g}"),
    ("rope_type", lambda s: s.cfg.rope_type),
    ("pairs that never rotate", lambda s: s.frozen_pairs),
    ("scaling", lambda s: scaling_text(s.cfg)),
    ("trained length", lambda s: s.trained_length),
    ("extended length", lambda s: s.cfg.max_position_embeddings),
    ("attention factor", lambda s: f"{s.attention_factor:.4g}"),
    ("shortest wavelength", lambda s: f"{s.shortest_wavelength:.4g}"),
    ("longest wavelength", lambda s: f"{s.longest_wavelength:.4g}"),
    ("critical dimension", lambda s: s.critical_dimension),
)


def compare_rows(summaries: list[CardSummary]) -> list[tuple[str, list[str], bool]]:
    """(field, values per card, differs) for every compared field."""
    rows = []
    for name, get in _COMPARE_FIELDS:
        values = [str(get(s)) for s in summaries]
        rows.append((name, values, len(set(values)) > 1))
    return rows


# ----------------------------------------------------------------------------- the verdict
def _what_rope_means(summary: CardSummary) -> str:
    cfg, frozen = summary.cfg, summary.frozen_pairs
    partial = (
        ""
        if cfg.rotary_dim == cfg.head_dim
        else f" (only {cfg.rotary_dim} of {cfg.head_dim} channels; the rest carry no position)"
    )
    if cfg.rope_type == "proportional" and frozen:
        return (
            f"'RoPE' here means p-RoPE: of the {cfg.num_pairs} pairs in the {cfg.layout} layout only the first "
            f"{cfg.num_pairs - frozen} rotate (base {cfg.base:g} over the whole head width); {_frozen_text(cfg, frozen)}, "
            "so they carry no position at all."
        )
    pairs = f"the first {cfg.num_pairs - frozen} of {cfg.num_pairs} pairs" if frozen else f"{cfg.num_pairs} pairs"
    text = (
        f"'RoPE' here means: rotate {pairs}{partial} in the {cfg.layout} layout, "
        f"base {cfg.base:g}, frequencies {scaling_text(cfg)}."
    )
    if frozen:  # axial_pairs that leave pairs over (ESMFold 2)
        text += f" The other {frozen}: {_frozen_text(cfg, frozen)}, so they carry no position."
    return text + _axes_sentence(cfg)


def _axes_sentence(cfg: RopeConfig) -> str:
    """What the extra position rows of a multi-axis card mean (empty for one axis)."""
    if cfg.num_axes == 1:
        return ""
    counts = ", ".join(f"{name} {cfg.pair_axes.count(axis)}" for axis, name in enumerate(_axis_names(cfg)))
    if cfg.mrope_section is not None:
        spread = "height, width and time" if cfg.num_axes == 3 else "rows and columns"
        media = "images and videos" if cfg.num_axes == 3 else "images"
        number, every = ("three", "all three") if cfg.num_axes == 3 else ("two", "both")
        return (
            f" Each pair reads one of {number} positions of its token (M-RoPE: {counts} pairs, "
            f"{cfg.mrope_composition}); a text token carries the same position on {every}, so text alone "
            f"sees the one-axis RoPE, and {media} spread their tokens over {spread}."
        )
    if cfg.axial_pairs is not None or cfg.axial_bases is not None:  # coordinate RoPE (ESMFold 2's atoms), not a grid
        return (
            f" Each pair reads one of the {cfg.num_axes} coordinates of its token ({counts} pairs, "
            f"{_axial_text(cfg)}): angles follow those coordinates, not a token count."
        )
    names = _axis_names(cfg)
    axes = ", ".join(names[:-1]) + (" or the " if cfg.num_axes == 2 else " or ") + names[-1]  # the row or the column
    return (
        f" Each pair reads the {axes} of an image patch ({counts} pairs, {_axial_text(cfg)}): "
        f"angles follow the {cfg.num_axes}D grid, not a token count."
    )


def _within_training(summary: CardSummary) -> list[str]:
    if _unstated(summary.cfg):
        return [
            f"At {summary.context:,} tokens every position is within {_pretraining(summary)}; "
            "whether its pairs met these angles in pretraining the card alone cannot say."
        ]
    return [
        f"At {summary.context:,} tokens every position is within the pretraining length {summary.trained_length:,}: "
        "each pair only meets angles it saw in training. Nothing breaks and nothing needs rescuing."
    ]


def _scaling_keeps_pairs_in_range(summary: CardSummary) -> list[str]:
    cfg = summary.cfg
    if summary.out_of_range_unscaled == 0:  # nothing to rescue: every pair that turns has turned fully
        never = f" and the other {summary.frozen_pairs} never turn" if summary.frozen_pairs else ""
        return [
            f"At {summary.context:,} tokens (past {_pretraining(summary)}) no pair meets a "
            f"new angle: every pair that turns completes a full turn within training (longest wavelength "
            f"{summary.longest_wavelength:.4g} positions){never}."
        ]
    return [
        f"At {summary.context:,} tokens (past {_pretraining(summary)}) the {cfg.rope_type} "
        f"scaling keeps every pair inside its trained arc (without it {summary.out_of_range_unscaled} pairs would leave it)."
    ]


def _covered_by_long_context_training(summary: CardSummary) -> str:
    """The card's own claim of a longer context, when its scaling and stated length cover ``context``."""
    cfg = summary.cfg
    extended = cfg.max_position_embeddings
    if cfg.rope_type == "default" or not extended or summary.context > extended:
        return ""
    return (
        f" The card claims {extended:,} tokens after {cfg.rope_type} scaling, so these "
        "angles are expected to be covered by its long-context training."
    )


def _rescue(summary: CardSummary) -> str:
    factor, trained = summary.context / summary.trained_length, summary.trained_length
    return (
        f"Rescue: position interpolation (rope_type linear, factor {factor:g}) maps every position back "
        f"into the trained range (Chen et al. 2023: ~1000 fine-tuning steps); YaRN (factor {factor:g}, "
        f"original {trained:,}) interpolates only the slow pairs and works with little or no fine-tuning."
    )


def _pairs_leave_range(summary: CardSummary) -> list[str]:
    cfg, trained = summary.cfg, summary.trained_length
    claim = _covered_by_long_context_training(summary)
    sentences = [
        f"At {summary.context:,} tokens, {summary.out_of_range} of {cfg.num_pairs} pairs (the slowest, above the "
        f"critical dimension {summary.critical_dimension}) reach angles never seen in the first {trained:,} "
        f"positions: without long-context training, expect attention to degrade from position {trained + 1:,} on."
        + claim
    ]
    return sentences if claim else sentences + [_rescue(summary)]


def _extrapolation(summary: CardSummary) -> list[str]:
    """What happens at ``context`` relative to the trained length (which must be known)."""
    if summary.context <= summary.trained_length:
        return _within_training(summary)
    if summary.out_of_range == 0:
        return _scaling_keeps_pairs_in_range(summary)
    return _pairs_leave_range(summary)


def _base_bound(summary: CardSummary) -> list[str]:
    """Men et al. (2024)'s lower bound of the base against this card's base, if it was computed."""
    if summary.min_base is None:
        return []
    base, bound, context = summary.cfg.base, summary.min_base, summary.context
    if base >= bound:
        return [
            f"Its base {base:g} is above the {bound:.3g} that Men et al. (2024) require for "
            f"{context:,} tokens, so similar tokens stay distinguishable from random ones at every distance."
        ]
    return [
        f"Its base {base:g} is below the {bound:.3g} that Men et al. (2024) require for "
        f"{context:,} tokens: at some distances a similar token scores lower than a random one "
        "(a superficial long context), whatever the perplexity says."
    ]


def verdict(summary: CardSummary) -> str:
    """A plain-words paragraph: what this card's RoPE is, what breaks at the context, what rescues it."""
    sentences = [_what_rope_means(summary)]
    if not summary.trained_length:
        sentences.append("The config names no trained length, so nothing can be said about extrapolation.")
    else:
        sentences += _extrapolation(summary) + _base_bound(summary)
        if _unstated(summary.cfg):
            sentences.append(f"The trained length assumed is max_position_embeddings: {_unstated(summary.cfg)}.")
    return " ".join(sentences)
