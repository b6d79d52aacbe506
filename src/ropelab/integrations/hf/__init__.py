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

Rotary modules with another call or other tables (complex ``freqs_cis``, vision towers, patch
centres, timestamps, physical coordinates, modules named otherwise) get adapter subclasses of their
own. V-JEPA 2 computes RoPE inside its attention, with no module to replace: :func:`patch` refuses it
and says so. Every replacement is checked against the original module before the swap; a module
ropelab does not reproduce, or whose config it cannot read, is refused with a :class:`PatchError`
naming it.

Where each part lives:

- :mod:`~ropelab.integrations.hf.dialects`: transformers' config dialects (which model types are
  interleaved, M-RoPE and axial forms, head-width formulas, legacy per-layer-type keys) and
  :func:`~ropelab.integrations.hf.dialects.read_rope`, the reader behind ``RopeConfig.from_hf``;
- :mod:`~ropelab.integrations.hf.adapters`: the adapter modules and the table math they share
  (table layouts, multi-axis positions, each special case);
- :mod:`~ropelab.integrations.hf.families`: which adapter serves a module outside the generic
  path, the per-family data (model_types, class names, sizes) and its probe inputs;
- :mod:`~ropelab.integrations.hf.verify`: the patch-time probes and the comparison with the original;
- :mod:`~ropelab.integrations.hf.patching`: :func:`patch` and :func:`unpatch`, the generic path.
"""

from ropelab.errors import PatchError
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
from ropelab.integrations.hf.families import rotary_output_kind
from ropelab.integrations.hf.patching import ROTARY_CLASS_NAME, patch, unpatch

__all__ = [
    "HFAngleTableAdapter",
    "HFChannelTableAdapter",
    "HFComplexRotaryAdapter",
    "HFCoordinateAdapter",
    "HFFeatureGridAdapter",
    "HFFixedGridAdapter",
    "HFPatchCentreAdapter",
    "HFRotaryAdapter",
    "HFStackedTableAdapter",
    "HFTimestampAdapter",
    "PatchError",
    "ROTARY_CLASS_NAME",
    "patch",
    "rotary_output_kind",
    "unpatch",
]
