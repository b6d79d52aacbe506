"""A real model's RoPE exactly as its config ships it, the context ``T`` it ships for, and what each
extension method starts from.

**As-is** is the model as shipped: its own ``rope_parameters`` (default, linear, dynamic, yarn, llama3,
longrope, one per layer type) and its NoPE layers. Nothing is dropped.

**The rule for T** (the context the model ships for): ``max_position_embeddings``, or, for a YaRN
scaling, ``factor * original_max_position_embeddings`` when that is larger (Qwen2.5's model card adds a
YaRN block with factor 4 over 32,768 tokens to a config whose ``max_position_embeddings`` stays 32,768:
it ships for 131,072; YaRN's factor is the ratio of the extended to the original context, Peng et al.
2023, sec. 3.2). A llama3 factor is not such a ratio (Llama 3.2: factor 32 over 8,192, shipped for
131,072), so llama3 and the other types read ``max_position_embeddings``. Where the config states a shorter
pretraining length (``original_max_position_embeddings``), both lengths are reported.

**What a method starts from.** Every extension method replaces the shipped scaling and starts from the
pretraining RoPE: the shipped base with its scaling removed, at the pretraining length ``T0``, scaled by
``N / T0`` (:func:`ropelab.extension.extension_config`). ``T0`` is ``original_max_position_embeddings``
where stated, and ``T`` for the default RoPE. A ``linear`` or ``ntk`` scaling that states no pretraining
length (Gemma 3's full-attention layers) has no known ``T0`` (:attr:`RopeConfig.trained_length` says why
``T / factor`` is not it); then only the shipped type itself can extend it, by composing factors:
linear ``k`` then ``N / T`` is linear ``k N / T`` (Chen et al. 2023, eq. 4: every ``theta_i`` divided by
both), NTK ``k`` then ``N / T`` is NTK ``k N / T`` (the base change ``b k^(R/(R-2))`` multiplies). Any
other method is refused for such a model, by name, with that reason. A LongRoPE scaling (Phi-3) has
per-pair factors searched for its own context (Ding et al. 2024, arXiv 2402.13753); linear composes
with it (every long factor times ``N / T``) and is the one method offered.

A model with a RoPE per layer type (Gemma 3) has one long-range layer type extended; sliding-window
layer types whose window is at most ``T`` keep their RoPE, since a window of ``W`` positions only meets
relative distances below ``W`` and the RoPE score depends on the relative distance alone (RoFormer,
arXiv 2104.09864, eq. 16).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import RealModelError
from ropelab.extension import EXTENSION_METHODS, extension_config

__all__ = [
    "AS_IS",
    "METHODS",
    "SLIDING_LAYER_TYPE",
    "LayerTypeExtension",
    "Shipped",
    "read_shipped",
    "layer_type_extension",
]

AS_IS = "extrapolate"  # the model as shipped, run past T
METHODS = tuple(m for m in EXTENSION_METHODS if m != AS_IS)  # linear, ntk, dynamic, yarn, llama3
COMPOSABLE = ("linear", "ntk")  # static factors that compose with themselves (module docstring)

# The layer type name transformers gives sliding-window attention (its window: config.sliding_window).
SLIDING_LAYER_TYPE = "sliding_attention"


@dataclass(frozen=True)
class LayerTypeExtension:
    """A model with a RoPE per layer type, as ``ropelab extend`` extends it.

    Attributes:
        rope: the RoPE of every layer type, as the config gives it.
        extended: the layer type whose RoPE the methods replace (the layers that attend past ``T``).
        kept: the sliding-window layer types that keep their RoPE, each with its window.
    """

    rope: LayerTypeRope
    extended: str
    kept: tuple[tuple[str, int], ...] = ()

    @property
    def long(self) -> RopeConfig:
        """The RopeConfig of the extended layer type."""
        return self.rope[self.extended]

    def with_extended(self, cfg: RopeConfig) -> LayerTypeRope:
        """Every layer type's RoPE with ``cfg`` for the extended one. The others keep theirs and take
        ``cfg``'s ``max_position_embeddings`` (transformers keeps one; their tables do not read it)."""
        configs = {
            name: None
            if old is None
            else cfg
            if name == self.extended
            else old.replace(max_position_embeddings=cfg.max_position_embeddings)
            for name, old in self.rope.items()
        }
        return LayerTypeRope(configs, self.rope.layer_types, self.rope.source)


@dataclass(frozen=True)
class Shipped:
    """A model's RoPE as shipped, the context it ships for, and where the extension methods start.

    Attributes:
        rope: the shipped RoPE (a :class:`LayerTypeExtension` for a RoPE per layer type).
        context: ``T``, the context the model ships for (the module docstring's rule).
        pretrained: ``T0``, the pretraining length the methods start from; ``None`` if the config does
            not state it (a linear / ntk scaling without ``original_max_position_embeddings``).
        rule: how ``T`` was read, for the report.
        nope_layers: indices of the layers without RoPE (SmolLM3's ``no_rope_layers``), kept by every method.
    """

    rope: RopeConfig | LayerTypeExtension
    context: int
    pretrained: int | None
    rule: str
    nope_layers: tuple[int, ...] = ()

    @classmethod
    def from_rope(cls, rope: RopeConfig) -> Shipped:
        """A model with one RoPE for all layers, shipped as ``rope`` says (its ``max_position_embeddings``)."""
        context, rule = shipped_context(rope, rope.max_position_embeddings)
        if context is None:
            raise RealModelError("the RoPE names no max_position_embeddings (the context it ships for)")
        return cls(rope, context, _pretrained(rope, context), rule)

    @property
    def long(self) -> RopeConfig:
        """The shipped RoPE of the layers that attend past ``T``."""
        return self.rope.long if isinstance(self.rope, LayerTypeExtension) else self.rope

    @property
    def as_is(self) -> RopeConfig | LayerTypeRope:
        """The model exactly as shipped (every layer type's RoPE for a RoPE per layer type)."""
        return self.rope.rope if isinstance(self.rope, LayerTypeExtension) else self.rope

    @property
    def pretrained_rope(self) -> RopeConfig | None:
        """The long-range RoPE without its scaling, at ``T0``; ``None`` when ``T0`` is unknown."""
        if self.pretrained is None:
            return None
        return extension_config(self.long, AS_IS, self.pretrained, 1.0)

    def _extended(self, cfg: RopeConfig) -> RopeConfig | LayerTypeRope:
        return self.rope.with_extended(cfg) if isinstance(self.rope, LayerTypeExtension) else cfg

    def method_config(self, method: str, target: int) -> RopeConfig | LayerTypeRope:
        """The RoPE ``method`` runs with to ``target`` tokens (``AS_IS``: as shipped).

        Raises:
            RealModelError: ``method`` cannot start from this model's RoPE (:meth:`refusal`).
        """
        if method == AS_IS:
            return self.as_is
        reason = self.refusal(method)
        if reason:
            raise RealModelError(reason)
        long = self.long
        if self.pretrained is None:  # compose with the shipped static factor
            cfg = long.replace(factor=long.factor * target / self.context, max_position_embeddings=target)
        elif long.rope_type == "longrope":  # PI on top of LongRoPE: every rescale factor times N/T
            scale = target / self.context
            cfg = long.replace(long_factor=tuple(f * scale for f in long.long_factor), max_position_embeddings=target)
        else:
            cfg = extension_config(self.pretrained_rope, method, self.pretrained, target / self.pretrained)
        return self._extended(cfg)

    def refusal(self, method: str) -> str | None:
        """Why ``method`` cannot start from this model's RoPE (one line), or ``None`` if it can."""
        if method == AS_IS:
            return None
        if method not in METHODS:
            return f"--methods {method!r} is unknown: expected some of {', '.join(METHODS)}"
        long = self.long
        if long.rope_type == "longrope" and method != "linear":
            return (
                f"--methods {method!r} cannot start from this model: its longrope scaling has per-pair factors "
                "searched for its own context (Ding et al. 2024), which only linear composes with (every factor "
                "times N/T); transformers' Phi-3 config accepts no other rope type"
            )
        if self.pretrained is None and method != long.rope_type:
            return (
                f"--methods {method!r} cannot start from this model: its {long.rope_type} x{long.factor:g} scaling "
                "states no pretraining length (original_max_position_embeddings), and transformers has no rope type "
                f"for {method} on top of {long.rope_type}; only {long.rope_type} composes with it"
            )
        return None

    def starts_from(self, method: str) -> str:
        """What ``method`` starts from and what it replaces, in one phrase."""
        long = self.long
        shipped = "the default RoPE" if long.rope_type == "default" else f"the shipped {long.rope_type} scaling"
        if method == AS_IS:
            return f"as shipped ({shipped}, base {long.base:g}), run past T = {self.context}"
        if long.rope_type == "longrope":
            return f"the shipped longrope at T = {self.context}, every long factor multiplied by N/T"
        if self.pretrained is None:
            return (
                f"the shipped {long.rope_type} x{long.factor:g} at T = {self.context} (no pretraining length stated), "
                f"its factor multiplied by N/T"
            )
        replaces = "" if long.rope_type == "default" else f", replacing {shipped}"
        return f"the pretraining RoPE (base {long.base:g}) at T0 = {self.pretrained}, scaled by N/T0{replaces}"

    def describe(self) -> str:
        """One line for the report: the shipped RoPE, ``T`` and its rule, ``T0``, the NoPE layers."""
        long = self.long
        scaled = (
            "" if long.rope_type == "default" else f" {long.rope_type}" + (f" x{long.factor:g}" if long.factor else "")
        )
        shape = "" if long.rotary_dim == long.head_dim else f", {long.rotary_dim} of {long.head_dim} channels rotated"
        shape += ", interleaved pairs" if long.layout == "interleaved" else ""
        text = f"ships{scaled} RoPE (base {long.base:g}{shape}) for T = {self.context} tokens ({self.rule})"
        if self.pretrained is not None and self.pretrained != self.context:
            text += f"; pretrained at T0 = {self.pretrained} (original_max_position_embeddings)"
        if self.pretrained is None:
            text += "; pretraining length not stated"
        if self.nope_layers:
            text += f"; layers {list(self.nope_layers)} have no RoPE (NoPE), in every method"
        return text


def _stated(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def shipped_context(cfg: RopeConfig, max_position_embeddings: int | None) -> tuple[int | None, str]:
    """``T`` for one RoPE and the rule that gave it (the module docstring)."""
    mpe = _stated(max_position_embeddings) or _stated(cfg.max_position_embeddings)
    original, factor = _stated(cfg.original_max_position_embeddings), cfg.factor
    if original and factor and cfg.rope_type == "yarn" and factor * original > (mpe or 0):
        return int(round(factor * original)), f"factor {factor:g} x original_max_position_embeddings {original}"
    return mpe, "max_position_embeddings"


def _pretrained(cfg: RopeConfig, context: int) -> int | None:
    """``T0``: the stated pretraining length, ``T`` for the default RoPE, ``None`` for an unstated linear / ntk."""
    if cfg.rope_type == "default":
        return context
    if cfg.rope_type in COMPOSABLE and not cfg.original_max_position_embeddings:
        return None
    return _stated(cfg.original_max_position_embeddings) or context  # dynamic: its scale starts at max_position


def _sliding_window(config: Any) -> int | None:
    try:
        window = getattr(config, "sliding_window", None)
    except Exception:  # noqa: BLE001 (transformers' per-layer configs refuse a global read)
        return None
    return _stated(window)


def _nope_layers(config: Any) -> tuple[int, ...]:
    """Layers without RoPE: SmolLM3's ``no_rope_layers`` (1 = RoPE, 0 = none)."""
    flags = getattr(config, "no_rope_layers", None)
    if not isinstance(flags, (list, tuple)):
        return ()
    return tuple(i for i, flag in enumerate(flags) if not flag)


def layer_type_extension(rope: LayerTypeRope, config: Any, name: str) -> LayerTypeExtension:
    """The layer type to extend: every layer type with RoPE except sliding-window ones must be one.

    Raises:
        RealModelError: none or several layer types would need extending.
    """
    window = _sliding_window(config)
    windowed = [t for t in rope.rope_layer_types if t == SLIDING_LAYER_TYPE and window is not None]
    long = [t for t in rope.rope_layer_types if t not in windowed]
    if len(long) != 1:
        raise RealModelError(
            f"--model {name!r} is unsupported by extend: its layer types {', '.join(rope.rope_layer_types)} "
            f"give {len(long)} RoPE to extend ({', '.join(long) or 'none'}); ropelab extend extends "
            "one layer type and keeps sliding-window ones"
        )
    return LayerTypeExtension(rope, long[0], tuple((t, window) for t in windowed))


def read_shipped(rope: LayerTypeRope, config: Any, name: str) -> Shipped:
    """The model's RoPE as shipped (``rope``: :meth:`RopeConfig.by_layer_type` of ``config``).

    Raises:
        RealModelError: the config names no context length, a RoPE per layer type that cannot be
            extended as one, or a sliding window longer than ``T``.
    """
    extension = rope[next(iter(rope))] if rope.uniform else layer_type_extension(rope, config, name)
    long = extension.long if isinstance(extension, LayerTypeExtension) else extension
    context, rule = shipped_context(long, getattr(config, "max_position_embeddings", None))
    if context is None:
        raise RealModelError(
            f"--model {name!r} is invalid: its config names no max_position_embeddings (the context it ships for)"
        )
    if isinstance(extension, LayerTypeExtension):
        window = _sliding_window(config)
        if extension.kept and window > context:
            raise RealModelError(
                f"--model {name!r} is unsupported by extend: its {SLIDING_LAYER_TYPE} window {window} exceeds "
                f"T={context}, so those layers would need extending too"
            )
    return Shipped(extension, context, _pretrained(long, context), rule, _nope_layers(config))
