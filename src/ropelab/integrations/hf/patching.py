"""Replace a model's rotary modules with ropelab adapters (:func:`~ropelab.integrations.hf.patching.patch`) and put them
back (:func:`~ropelab.integrations.hf.patching.unpatch`).

:func:`patch` walks the model: every rotary module (``ROTARY_CLASS_NAME``) gets the adapter of its
family (:mod:`ropelab.integrations.hf.families`) or, for the generic ``forward(x, position_ids[,
layer_type]) -> (cos, sin)`` modules, an :class:`HFRotaryAdapter` whose table layout, dtype and
layer types are read from the module itself (:func:`_adapter_for`); GPT-J style ``embed_positions``
sin|cos tables are overwritten with ropelab's exact table. Each replacement is checked against the
original first (:mod:`ropelab.integrations.hf.verify`) unless ``verify=False``.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import PatchError, RopeConfigError
from ropelab.integrations.hf.adapters import HFRotaryAdapter, _exact_sin_cos_table
from ropelab.integrations.hf.families import _named_adapter, _read_config, _read_rope, _special_adapter
from ropelab.integrations.hf.verify import _probe, _table_dtype, _table_layout, _token_shape, _verify_against, _what

# Class names of the modules patch replaces: transformers' *RotaryEmbedding, and the families that
# name theirs otherwise (transformers 5.23): *RotaryPositionalEmbedding (Wav2Vec2-Conformer,
# Wav2Vec2-BERT, SeamlessM4T's conformer, CLVP) and *RopePositionEmbedding (DINOv3 ViT, Sapiens2).
ROTARY_CLASS_NAME = re.compile(r"\w*(RotaryEmbedding|RotaryPositionalEmbedding|RopePositionEmbedding)")
# Attention modules that compute RoPE themselves, with no rotary module (V-JEPA 2's VJEPA2RopeAttention).
_ROPE_IN_ATTENTION = re.compile(r"\w*Rope\w*Attention")

_ORIGINALS_ATTR = "_ropelab_originals"
# Plain attributes of the replaced module that model code reads from it (LFM3 iterates
# `rotary_emb.layer_types`); the adapter keeps them. `config` is kept separately (see HFRotaryAdapter).
_KEPT_ATTRIBUTES = ("layer_types", "rope_type")


def _is_rotary_module(module: nn.Module) -> bool:
    return bool(ROTARY_CLASS_NAME.fullmatch(type(module).__name__)) and not isinstance(module, HFRotaryAdapter)


def _module_rope(
    cfg: RopeConfig | LayerTypeRope | None, config: Any, name: str, module: nn.Module
) -> tuple[RopeConfig | LayerTypeRope, list[str | None]]:
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
    layouts = {
        kind: _table_layout(cfg_of(kind), config, probes[kind][1].shape[-1], _what(name, module, kind))
        for kind in kinds
    }
    if len(set(layouts.values())) > 1:
        raise PatchError(
            f"cannot patch {name} ({type(module).__name__}): its layer types lay their tables out "
            f"differently ({layouts}); one adapter serves one layout"
        )
    first = kinds[0]
    positions, cos = probes[first][:2]
    leading_one = tuple(cos.shape[:-1]) != _token_shape(cfg_of(first), positions)
    orders = {probe[3] for probe in probes.values()}
    if len(orders) > 1:
        raise PatchError(
            f"cannot patch {name} ({type(module).__name__}): its layer types return (cos, sin) "
            "in different orders; one adapter serves one order"
        )
    adapter = HFRotaryAdapter(
        held,
        layouts[first],
        getattr(module, "config", None),
        table_dtype=_table_dtype(module, positions, first),
        leading_one=leading_one,
        sin_first=orders.pop(),
    )
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
            if verify:
                _refuse_learned_rotation(module, name)
            module_config = getattr(module, "config", None) or model_config
            adapter = (
                _named_adapter(model, module, name, cfg, verify)
                or _special_adapter(module, name, cfg, module_config, verify)
                or _adapter_for(module, name, cfg, module_config, verify)
            )
            _put(model, name, adapter)
            originals.setdefault(name, module)
            patched += 1
        elif _has_sin_cos_table(module):
            table = _exact_table_for(module, name, cfg, model_config)
            originals.setdefault(f"{name}.embed_positions", module.embed_positions)
            module.embed_positions = table
            patched += 1
    if not patched:
        raise _nothing_to_patch(model)
    setattr(model, _ORIGINALS_ATTR, originals)
    return model


def unpatch(model: nn.Module) -> nn.Module:
    """Restore the modules and tables that :func:`patch` replaced."""
    for name, original in getattr(model, _ORIGINALS_ATTR, {}).items():
        _put(model, name, original)
    if hasattr(model, _ORIGINALS_ATTR):
        delattr(model, _ORIGINALS_ATTR)
    return model


def _put(model: nn.Module, name: str, value: Any) -> None:
    """Set the submodule or attribute ``name`` (dotted, relative to ``model``) to ``value``."""
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, value)


def _refuse_learned_rotation(module: nn.Module, name: str) -> None:
    """A PatchError for a rotary module whose own trained parameters change its rotation: a config
    holds no learned values. Mistral Large 4's per-pair frequency scales ``exp(alpha)`` are one
    (a buffer of zeros, ignored) up to transformers 5.23 and an ``nn.Parameter`` from 5.25 on; at
    zero, as initialised, they change nothing, and the patch-time check decides as for any module."""
    learned = [key for key, parameter in module.named_parameters() if parameter.is_floating_point() and parameter.any()]
    if learned:
        raise PatchError(
            f"cannot patch {name} ({type(module).__name__}): it holds trained parameters "
            f"({', '.join(learned)}) that change its rotation (learned frequency scales, e.g. "
            "Mistral Large 4's alpha, a Parameter since transformers 5.25); ropelab reproduces the "
            "RoPE a config describes"
        )


def _has_sin_cos_table(module: nn.Module) -> bool:
    """A GPT-J style attention layer: a fixed ``embed_positions`` sin|cos table and a ``rotary_dim``."""
    return isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim")


def _exact_table_for(
    module: nn.Module, name: str, cfg: RopeConfig | LayerTypeRope | None, model_config: Any
) -> torch.Tensor:
    """ropelab's exact table in place of ``module.embed_positions`` (same size, dtype and device)."""
    if isinstance(cfg, LayerTypeRope):
        raise PatchError(
            f"cannot patch {name}: GPT-J style embed_positions tables take one RopeConfig, not a LayerTypeRope"
        )
    module_cfg = cfg or _read_config(model_config, name, module)
    table = module.embed_positions
    if table.shape[-1] != module_cfg.rotary_dim:
        raise PatchError(
            f"cannot patch {name}: embed_positions has {table.shape[-1]} channels, "
            f"expected rotary_dim={module_cfg.rotary_dim}"
        )
    return _exact_sin_cos_table(module_cfg, table.shape[0], table)


def _nothing_to_patch(model: nn.Module) -> PatchError:
    """Why ``model`` has nothing :func:`patch` replaces: RoPE computed inside attention, or no RoPE found."""
    inside = next(
        ((n, type(m).__name__) for n, m in model.named_modules() if _ROPE_IN_ATTENTION.fullmatch(type(m).__name__)),
        None,
    )
    if inside:
        return PatchError(
            f"cannot patch {type(model).__name__}: RoPE inside attention, no module to replace "
            f"(computed within {inside[1]}, e.g. {inside[0]}); ropelab replaces rotary modules "
            "and embed_positions tables"
        )
    return PatchError(f"no rotary embedding found in {type(model).__name__}")
