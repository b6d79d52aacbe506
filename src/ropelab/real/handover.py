"""Hand a (fine-tuned) real model over as a folder that plain transformers loads.

:func:`write_model_folder` writes, into a new or empty folder (or any folder with ``force``):

- ``model.safetensors``: the weights (ropelab's RoPE patch holds none, so they are the model's own);
- ``config.json``: the model's config with the chosen ``rope_parameters`` in a rope type transformers
  implements (:func:`ropelab.real.stages.hf_config`);
- the tokenizer files and ``generation_config.json``.

Everything is first written to a scratch folder beside the target and moved in at the end, so an
interrupted hand-over leaves no half-written folder. ``AutoModelForCausalLM.from_pretrained(folder)``
then computes the same logits as ropelab's evaluation with that RoPE (checked by the tests).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ropelab.errors import RealModelError

__all__ = ["check_output_folder", "write_model_folder", "load_lines"]


def check_output_folder(folder: str | os.PathLike, force: bool) -> Path:
    """``folder`` as a Path if it may be written; raises :class:`RealModelError` (one line) if it is a
    file, or a non-empty folder without ``force``."""
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise RealModelError(f"--write-config {str(path)!r} is invalid: it is a file, expected a folder")
    if path.is_dir() and any(path.iterdir()) and not force:
        raise RealModelError(f"--write-config {str(path)!r} is not empty: pass --force to replace its files")
    return path


def load_lines(folder: str | os.PathLike) -> list[str]:
    """The two lines a user runs to load the folder with plain transformers."""
    return [
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        f"model = AutoModelForCausalLM.from_pretrained({str(folder)!r}); "
        f"tokenizer = AutoTokenizer.from_pretrained({str(folder)!r})",
    ]


def write_model_folder(model, tokenizer, config_dict: dict, folder: str | os.PathLike, *, force: bool = False) -> Path:
    """Write weights, ``config_dict`` as ``config.json``, tokenizer and generation config into ``folder``.

    Args:
        model: a transformers causal LM (patched by ropelab or not: the weights are the same).
        config_dict: the full config (:func:`ropelab.real.stages.hf_config`).
    Returns:
        ``folder``.
    """
    target = check_output_folder(folder, force)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    # a model read from GGUF carries transformers' GGUF quantizer, which refuses to save, although its
    # weights are already dequantized to plain tensors: save them as what they are
    quantizer = getattr(model, "hf_quantizer", None)
    try:
        if quantizer is not None and type(quantizer).__name__ == "GgufHfQuantizer":
            model.hf_quantizer = None
        # ropelab's patch holds no weights, so the state dict is the model's own
        model.save_pretrained(scratch, safe_serialization=True)
        model.hf_quantizer = quantizer
        (scratch / "config.json").write_text(json.dumps(config_dict, indent=2))
        tokenizer.save_pretrained(scratch)
        if getattr(model, "generation_config", None) is not None:
            model.generation_config.save_pretrained(scratch)
        target.mkdir(exist_ok=True)
        for item in scratch.iterdir():
            destination = target / item.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(item, destination)
    finally:
        model.hf_quantizer = quantizer
        shutil.rmtree(scratch, ignore_errors=True)
    return target
