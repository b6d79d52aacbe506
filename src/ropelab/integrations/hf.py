"""Make a transformers model use ropelab for its rotary embedding.

transformers models compute RoPE in one of two places:

- a ``*RotaryEmbedding`` module (Llama, Mistral, Qwen2, Gemma, Phi-3, GPT-NeoX, Cohere, ...) whose
  ``forward(x, position_ids)`` returns ``(cos, sin)``, each ``[B, S, R]``, that the attention
  layers apply. :func:`patch` swaps each for :class:`HFRotaryAdapter`, which returns ropelab's
  exact-angle tables (float64 angles, every scaling type, dynamic types without buffer mutation);
- a fixed ``embed_positions`` sin|cos table inside each attention layer (GPT-J, CodeGen), which
  :func:`patch` overwrites with ropelab's exact table.

Before swapping, :func:`patch` calls the original module once on short positions and checks that
the adapter agrees with it, so a model family whose RoPE ropelab reads differently fails loudly at patch time
instead of silently producing other logits.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ropelab.config import RopeConfig
from ropelab.errors import PatchError
from ropelab.reference import pairs_to_channels
from ropelab.rotary import rope_cos_sin

__all__ = ["patch", "unpatch", "HFRotaryAdapter", "PatchError"]

_ORIGINALS_ATTR = "_ropelab_originals"
_PROBE_POSITIONS = 64
_PROBE_TOLERANCE = 1e-4  # transformers forms angles in float32: ~1e-5 rad apart from float64 at position 64


class HFRotaryAdapter(nn.Module):
    """Drop-in for a transformers ``*RotaryEmbedding`` module.

    ``forward(x, position_ids) -> (cos, sin)``, each ``[B, S, R]`` in ``x.dtype``, with the pairs
    laid out as ``table_layout`` says: ``"half"`` repeats the ``R/2`` values as ``[c, c]``
    (transformers' Llama), ``"interleaved"`` as ``[c0, c0, c1, c1, ...]`` (Cohere).
    Dynamic types see ``seq_len = max(position_ids) + 1``, as in transformers, but nothing is mutated.
    """

    def __init__(self, cfg: RopeConfig, table_layout: str = "half"):
        super().__init__()
        self.cfg = cfg
        self.table_layout = table_layout

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any, **kwargs: Any):
        cos, sin = rope_cos_sin(position_ids.to(x.device), self.cfg)
        return _expand(cos, self.table_layout).to(x.dtype), _expand(sin, self.table_layout).to(x.dtype)

    def extra_repr(self) -> str:
        return f"rope_type={self.cfg.rope_type!r}, rotary_dim={self.cfg.rotary_dim}, table_layout={self.table_layout!r}"


def _expand(table: torch.Tensor, table_layout: str) -> torch.Tensor:
    return pairs_to_channels(table, table_layout)


def _is_rotary_module(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RotaryEmbedding") and not isinstance(module, HFRotaryAdapter)


def _verify_against(original: nn.Module, adapter: HFRotaryAdapter, name: str) -> None:
    """Call the original module on short positions and check the adapter reproduces its cos/sin.

    The probe stays below the trained length: there every type is static, and transformers'
    stateful dynamic modules reset to their original frequencies (their reset test is strict).
    """
    cfg = adapter.cfg
    device = next((b.device for b in original.buffers()), torch.device("cpu"))
    length = max(1, min(_PROBE_POSITIONS, (cfg.trained_length or _PROBE_POSITIONS + 1) - 1))
    positions = torch.arange(length, device=device)[None]
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    with torch.no_grad():
        want_cos, want_sin = original(dummy, positions)
        got_cos, got_sin = adapter(dummy, positions)
    if got_cos.shape != want_cos.shape:
        problem = f"table shape {tuple(got_cos.shape)} != {tuple(want_cos.shape)}"
    else:
        error = max((got_cos - want_cos.float()).abs().max().item(), (got_sin - want_sin.float()).abs().max().item())
        if error <= _PROBE_TOLERANCE:
            return
        problem = f"max abs error {error:.2e} > {_PROBE_TOLERANCE:g}"
    raise PatchError(
        f"cannot patch {name} ({type(original).__name__}): ropelab's reading of the config ({cfg.rope_type}, "
        f"layout={cfg.layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}) does not reproduce its cos/sin: "
        f"{problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _exact_sin_cos_table(cfg: RopeConfig, num_positions: int, like: torch.Tensor) -> torch.Tensor:
    """GPT-J's ``embed_positions`` layout: ``[num_positions, R]`` = ``[sin | cos]``."""
    cos, sin = rope_cos_sin(torch.arange(num_positions, device=like.device), cfg)
    return torch.cat((sin, cos), dim=-1).to(like.dtype)


def patch(model: nn.Module, cfg: RopeConfig | None = None, *, verify: bool = True) -> nn.Module:
    """Make ``model`` compute its rotary embedding with ropelab (in place; returns ``model``).

    Args:
        model: a transformers ``PreTrainedModel`` (or any module containing ``*RotaryEmbedding``
            submodules or GPT-J style ``embed_positions`` tables).
        cfg: the RoPE to use; default ``RopeConfig.from_hf`` of each rotary module's config (or the
            model's). Its ``layout`` sets how the cos/sin tables are laid out for the model.
        verify: check, on positions below the trained length, that the replacement reproduces the
            original cos/sin; turn off to impose a different RoPE on purpose (e.g. context extension).

    Raises:
        PatchError: no rotary embedding found, or one that ropelab does not reproduce.
    """
    originals: dict[str, Any] = getattr(model, _ORIGINALS_ATTR, {})
    model_config = getattr(model, "config", None)
    patched = 0
    for name, module in list(model.named_modules()):
        if _is_rotary_module(module):
            module_cfg = cfg or RopeConfig.from_hf(getattr(module, "config", None) or model_config)
            adapter = HFRotaryAdapter(module_cfg, module_cfg.layout)
            if verify:
                _verify_against(module, adapter, name)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, adapter)
            originals.setdefault(name, module)
            patched += 1
        elif isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim"):
            module_cfg = cfg or RopeConfig.from_hf(model_config)
            table = module.embed_positions
            if table.shape[-1] != module_cfg.rotary_dim:
                raise PatchError(f"cannot patch {name}: embed_positions has {table.shape[-1]} channels, "
                                 f"expected rotary_dim={module_cfg.rotary_dim}")
            originals.setdefault(f"{name}.embed_positions", table)
            module.embed_positions = _exact_sin_cos_table(module_cfg, table.shape[0], table)
            patched += 1
    if not patched:
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
