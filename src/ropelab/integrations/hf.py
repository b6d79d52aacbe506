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
instead of silently producing other logits. A module that is not a ``(x, position_ids) -> (cos, sin)``
module of real tensors (complex ``freqs_cis`` in DeepSeek-V2 and Llama 4, vision towers called with
other arguments), or whose config ropelab cannot read, is refused with a :class:`PatchError` naming it.

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
  ``[B, S, R]``; the composition of each family is data in :mod:`ropelab.config`;
- axial vision towers (``rope_type="axial"``: Qwen2-VL's, Pixtral's, ...) take ``[N, 2]`` (row,
  column) patch positions, axis last, and return ``[N, R]``.

The probe then gives each row different positions, so that a wrong section mapping fails at patch
time. Tables come back in the dtype the original returns: the input's, or float32 for the modules
that always return float32 (Qwen2-VL's vision tower, Ernie 4.5-VL's text tower).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ropelab.config import RopeConfig
from ropelab.errors import PatchError, RopeConfigError
from ropelab.reference import pairs_to_channels
from ropelab.rotary import rope_cos_sin

__all__ = ["HFRotaryAdapter", "PatchError", "patch", "unpatch"]

_ORIGINALS_ATTR = "_ropelab_originals"
_PROBE_POSITIONS = 64
_TABLE_LAYOUTS = ("half", "interleaved", "pairs")
_PROBE_TOLERANCE = 1e-4  # transformers forms angles in float32: ~1e-5 rad apart from float64 at position 64
_PROBE_GRID_WIDTH = 8  # axial probe: patches of an 8-column grid, so that row and column differ


class HFRotaryAdapter(nn.Module):
    """Drop-in for a transformers ``*RotaryEmbedding`` module.

    ``forward(x, position_ids) -> (cos, sin)``, each ``[B, S, R]`` in ``x.dtype``, with the pairs
    laid out as ``table_layout`` says: ``"half"`` repeats the ``R/2`` values as ``[c, c]``
    (transformers' Llama), ``"interleaved"`` as ``[c0, c0, c1, c1, ...]`` (Cohere), ``"pairs"``
    keeps them once (``[B, S, R/2]``, GPT-OSS).
    Dynamic types see ``seq_len = max(position_ids) + 1``, as in transformers, but nothing is mutated.

    ``config`` is the replaced module's transformers config, kept because some attention code reads
    it from the rotary module (Granite SWA picks tables by ``rotary_emb.config.rope_parameters``).

    Multi-axis ``cfg`` (``num_axes > 1``): M-RoPE ``position_ids`` are ``[A, B, S]`` or ``[B, S]``
    (the same on every row, as transformers expands them) and give ``[B, S, R]``; axial ones are
    ``[..., N, A]`` (axis last, as the vision towers pass them) and give ``[..., N, R]``.
    ``table_dtype`` fixes the dtype of the tables (None: ``x.dtype``).
    """

    def __init__(self, cfg: RopeConfig, table_layout: str = "half", config: Any = None,
                 table_dtype: torch.dtype | None = None):
        super().__init__()
        if table_layout not in _TABLE_LAYOUTS:
            raise PatchError(f"table_layout={table_layout!r} is invalid: expected one of {', '.join(_TABLE_LAYOUTS)}")
        self.cfg = cfg
        self.table_layout = table_layout
        self.config = config
        self.table_dtype = table_dtype

    def forward(self, x: torch.Tensor, position_ids: torch.Tensor, *args: Any, **kwargs: Any):
        cos, sin = rope_cos_sin(_axis_rows(position_ids.to(x.device), self.cfg), self.cfg)
        dtype = self.table_dtype or x.dtype
        return _expand(cos, self.table_layout).to(dtype), _expand(sin, self.table_layout).to(dtype)

    def extra_repr(self) -> str:
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
    """Probe ``position_ids`` in the form the family's module takes: ``[1, L]``; axial ``[L, 2]``
    patches of a grid (row != column); M-RoPE ``[3, 1, L]`` with three different rows."""
    steps = torch.arange(length, device=device)
    if cfg.num_axes == 1:
        return steps[None]
    if cfg.rope_type == "axial":
        return torch.stack([steps // _PROBE_GRID_WIDTH, steps % _PROBE_GRID_WIDTH], dim=-1)
    rows = [steps, (steps * 5 + 3) % length, (steps * 11 + 7) % length][: cfg.num_axes]
    return torch.stack(rows)[:, None]


def _token_shape(cfg: RopeConfig, positions: torch.Tensor) -> tuple[int, ...]:
    """The shape of the tables (without their last dim) for probe ``positions``."""
    if cfg.num_axes == 1:
        return tuple(positions.shape)
    return tuple(positions.shape[:-1] if cfg.rope_type == "axial" else positions.shape[1:])


def _expand(table: torch.Tensor, table_layout: str) -> torch.Tensor:
    return table if table_layout == "pairs" else pairs_to_channels(table, table_layout)


def _is_rotary_module(module: nn.Module) -> bool:
    return type(module).__name__.endswith("RotaryEmbedding") and not isinstance(module, HFRotaryAdapter)


def _probe(original: nn.Module, cfg: RopeConfig, name: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Call the original module on short positions: ``(positions, cos, sin)``, or a PatchError when it
    is not a ``forward(x, position_ids) -> (cos, sin)`` module of real tensors.

    The probe stays below the trained length: there every type is static, and transformers'
    stateful dynamic modules reset to their original frequencies (their reset test is strict).
    """
    device = next((b.device for b in original.buffers()), torch.device("cpu"))
    length = max(1, min(_PROBE_POSITIONS, (cfg.trained_length or _PROBE_POSITIONS + 1) - 1))
    positions = _probe_positions(cfg, length, device)
    dummy = torch.zeros(1, device=device, dtype=torch.float32)
    what = f"{name} ({type(original).__name__})"
    try:
        with torch.no_grad():
            out = original(dummy, positions)
    except Exception as error:
        raise PatchError(f"cannot patch {what}: calling it as forward(x, position_ids) fails "
                         f"({type(error).__name__}: {error}); ropelab replaces modules that return (cos, sin)") from error
    if isinstance(out, torch.Tensor) and out.is_complex():
        raise PatchError(f"cannot patch {what}: it returns complex freqs_cis {tuple(out.shape)}, not a (cos, sin) "
                         f"pair; its attention multiplies by complex numbers, which ropelab does not replace")
    if not (isinstance(out, tuple) and len(out) == 2 and all(isinstance(t, torch.Tensor) for t in out)):
        raise PatchError(f"cannot patch {what}: it returns {type(out).__name__}, not a (cos, sin) pair of tensors")
    if any(t.is_complex() or tuple(t.shape[:-1]) != _token_shape(cfg, positions) for t in out):
        shapes = [f"{tuple(t.shape)} {t.dtype}" for t in out]
        raise PatchError(f"cannot patch {what}: it returns {shapes}, not real [B, S, R] cos/sin tables")
    return positions, out[0], out[1]


def _table_dtype(original: nn.Module, positions: torch.Tensor) -> torch.dtype | None:
    """float32 when ``original`` returns float32 tables for a bfloat16 input, else None (follows x)."""
    dummy = torch.zeros(1, device=positions.device, dtype=torch.bfloat16)
    try:
        with torch.no_grad():
            out = original(dummy, positions)
    except Exception:  # noqa: BLE001 (a module that only takes float32 inputs: keep following x)
        return None
    return torch.float32 if out[0].dtype == torch.float32 else None


def _table_layout(cfg: RopeConfig, config: Any, width: int, name: str, original: nn.Module) -> str:
    """How ``original`` lays its tables out (see the module docstring), checked against ``cfg``."""
    if width == cfg.rotary_dim // 2:
        return "pairs"
    if width != cfg.rotary_dim:
        raise PatchError(
            f"cannot patch {name} ({type(original).__name__}): ropelab's reading of the config "
            f"(rotary_dim={cfg.rotary_dim}, head_dim={cfg.head_dim}) does not reproduce its cos/sin: its tables "
            f"are {width} wide, expected {cfg.rotary_dim} (or {cfg.rotary_dim // 2}, one value per pair)"
        )
    if getattr(config, "rope_interleave", None) is True:
        return "half"  # q and k are de-interleaved by apply_rotary_pos_emb_interleave; the tables are half-split
    return cfg.layout


def _verify_against(original: nn.Module, adapter: HFRotaryAdapter, name: str, probe) -> None:
    """Check the adapter reproduces the original module's cos/sin on the probe positions."""
    cfg = adapter.cfg
    positions, want_cos, want_sin = probe
    dummy = torch.zeros(1, device=positions.device, dtype=torch.float32)
    with torch.no_grad():
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
        f"layout={cfg.layout}, tables={adapter.table_layout}, rotary_dim={cfg.rotary_dim}, base={cfg.base:g}"
        f"{_axes_text(cfg)}) "
        f"does not reproduce its cos/sin: {problem}; pass verify=False to impose a different RoPE on purpose"
    )


def _axes_text(cfg: RopeConfig) -> str:
    if cfg.mrope_section is not None:
        return f", mrope_section={list(cfg.mrope_section)} {cfg.mrope_composition}"
    return f", {cfg.axial_frequencies} axial frequencies" if cfg.rope_type == "axial" else ""


def _exact_sin_cos_table(cfg: RopeConfig, num_positions: int, like: torch.Tensor) -> torch.Tensor:
    """GPT-J's ``embed_positions`` layout: ``[num_positions, R]`` = ``[sin | cos]``."""
    cos, sin = rope_cos_sin(torch.arange(num_positions, device=like.device), cfg)
    return torch.cat((sin, cos), dim=-1).to(like.dtype)


def _read_config(config: Any, name: str, module: nn.Module) -> RopeConfig:
    try:
        return RopeConfig.from_hf(config)
    except RopeConfigError as error:
        raise PatchError(f"cannot patch {name} ({type(module).__name__}): its config is not one ropelab reads: {error}") from error


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
            module_config = getattr(module, "config", None) or model_config
            module_cfg = cfg or _read_config(module_config, name, module)
            probe = _probe(module, module_cfg, name)
            layout = _table_layout(module_cfg, module_config, probe[1].shape[-1], name, module)
            adapter = HFRotaryAdapter(module_cfg, layout, getattr(module, "config", None),
                                      _table_dtype(module, probe[0]))
            if verify:
                _verify_against(module, adapter, name, probe)
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, adapter)
            originals.setdefault(name, module)
            patched += 1
        elif isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim"):
            module_cfg = cfg or _read_config(model_config, name, module)
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
