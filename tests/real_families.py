"""The model families users bring to ``ropelab extend``, as tiny random-weight builds of their published
configs (``tests/data/published_configs.json``), and one whole-pipeline run of each.

A build keeps every RoPE key of the published config (base, scaling type, factors, per-layer-type RoPE,
NoPE layers, sliding window) and shrinks the rest: 64-wide layers, a byte-level tokenizer, and every
length (``max_position_embeddings``, ``original_max_position_embeddings``, the sliding window) divided by
the family's ``shrink``. No weights are downloaded.

:func:`run_family` runs predict, measure, passkey, a 2-step PoSE fine-tune and the hand-over through
:func:`ropelab.real.extend`, then reloads the handed-over folder with plain ``from_pretrained`` and
measures it on the same document. ``python benchmarks/families.py`` writes the table.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from real_helpers import byte_tokenizer

PUBLISHED = json.loads((Path(__file__).parent / "data" / "published_configs.json").read_text())

TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
}
LENGTH_KEYS = ("max_position_embeddings", "original_max_position_embeddings", "sliding_window")

# name -> (published entry or transformers model_type for a zoo family, shrink, extra tiny settings)
FAMILIES = {
    "llama-3.1": ("llama-3.1-8b", 256, {"bos": True}),
    "llama-3.2": ("llama-3.2-1b", 256, {"bos": True}),
    "qwen2.5": ("qwen2.5-7b-instruct", 64, {}),
    "qwen2.5+yarn": ("qwen2.5-7b-instruct-yarn", 64, {}),
    "mistral-7b-v0.3": ("mistral-7b-v0.3", 64, {}),
    "gemma-3": ("gemma-3-12b", 256, {"num_hidden_layers": 6, "bos": True}),
    "phi-3-mini-128k": ("phi-3-mini-128k", 256, {"num_key_value_heads": 4}),
    "smollm3": ("smollm3-3b", 64, {"num_hidden_layers": 4}),
    "mixtral (MoE)": ("mixtral-8x7b", 64, {"num_local_experts": 4}),
    # common in transformers' model zoo: the config class's own defaults (the published form it ships)
    "qwen3": ("zoo:qwen3", None, {}),
    "olmo2": ("zoo:olmo2", None, {}),
    "granite": ("zoo:granite", None, {}),
    "stablelm (partial rotary)": ("zoo:stablelm", None, {}),
    "phi (partial rotary)": ("zoo:phi", None, {}),
    "cohere (interleaved)": ("zoo:cohere", None, {}),
    "gpt-neox (fused qkv)": ("zoo:gpt_neox", None, {}),
    "glm4": ("zoo:glm4", None, {}),
    # a GGUF file other than the embedded one: the Mistral build written by ropelab's GGUF writer (F32)
    "gguf file (llama arch)": ("gguf:mistral-7b-v0.3", None, {}),
}
ZOO_CONTEXT = 512  # zoo families: max_position_embeddings set to this (their defaults are 2k-128k)
WEIGHT_STD = 0.08  # random weights wide enough that the RoPE visibly moves the logits, small enough for float32 angles


def _shrunk(config: dict, shrink: int) -> dict:
    out = dict(config)
    for key in LENGTH_KEYS:
        if isinstance(out.get(key), int):
            out[key] = out[key] // shrink
    scaling = dict(out.get("rope_scaling") or {})
    for key in LENGTH_KEYS:
        if isinstance(scaling.get(key), int):
            scaling[key] = scaling[key] // shrink
    if scaling:
        out["rope_scaling"] = scaling
    return out


def family_config(name: str, vocab: int) -> tuple[object, str]:
    """The tiny transformers config of family ``name`` and the source it was shrunk from."""
    from transformers import CONFIG_MAPPING

    entry, shrink, extra = FAMILIES[name]
    if entry.startswith("gguf:"):
        inner = next(n for n, (e, _, _) in FAMILIES.items() if e == entry[5:])
        config, source = family_config(inner, vocab)
        return config, f"{source}, written as a GGUF"
    extra = {k: v for k, v in extra.items() if k != "bos"}
    if entry.startswith("zoo:"):
        model_type = entry[4:]
        source = f"transformers {type(CONFIG_MAPPING[model_type]()).__name__} defaults"
        data = {"max_position_embeddings": ZOO_CONTEXT}
    else:
        published = PUBLISHED[entry]
        data = _shrunk(published["config"], shrink)
        model_type, source = data.pop("model_type"), published["source"]
    data.update(TINY, vocab_size=vocab, pad_token_id=0, **extra)
    if model_type == "gpt_neox":  # GPT-NeoX names its widths differently
        data.pop("head_dim")
    if model_type == "phi3":  # longrope needs head_dim / 2 factors: a synthetic rising list (see the JSON's source)
        pairs = data["hidden_size"] // data["num_attention_heads"] // 2
        data.pop("head_dim")
        data["rope_scaling"] = {
            "type": "longrope",
            "short_factor": [1.0 + 0.05 * i for i in range(pairs)],
            "long_factor": [1.0 + 0.5 * i for i in range(pairs)],
        }
    if model_type == "gemma3_text":
        data.pop("sliding_window_pattern", None)
        data["layer_types"] = ["sliding_attention"] * 5 + ["full_attention"]
        data["sliding_window"] = max(4, data["sliding_window"])
    if model_type == "smollm3":
        interval = data.pop("no_rope_layer_interval")
        data["no_rope_layers"] = [int((i + 1) % interval != 0) for i in range(data["num_hidden_layers"])]
    return CONFIG_MAPPING[model_type](**data), source


def build_family(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a tiny random model of family ``name`` with its tokenizer in ``folder``; a GGUF family is
    that folder's model written as ``folder/model.gguf`` (the returned path)."""
    import torch
    from transformers import AutoModelForCausalLM

    entry, _, extra = FAMILIES[name]
    if entry.startswith("gguf:"):
        from ropelab.real.gguf_export import write_gguf
        from ropelab.real.load import load_model

        inner = next(n for n, (e, _, _) in FAMILIES.items() if e == entry[5:])
        loaded = load_model(str(build_family(inner, folder / "source", seed)))
        path, _ = write_gguf(
            loaded.model, loaded.tokenizer, loaded.model.config, loaded.rope.as_is, folder / "model.gguf", dtype="f32"
        )
        return path
    tokenizer = byte_tokenizer(folder, bos=extra.get("bos", False))
    config, _ = family_config(name, len(tokenizer) + 16)  # padded, as real vocabularies are
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():  # wide enough weights that the RoPE visibly matters
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0, WEIGHT_STD)
    model.save_pretrained(folder)
    return folder


def _ppl_ranges(model, tokenizer, length: int, trained: int) -> dict[str, float]:
    import torch

    from ropelab.real.evaluate import corpus_documents, token_losses
    from ropelab.real.stages import ppl_ranges

    doc = corpus_documents(tokenizer, length, 1)[0][0]
    with torch.inference_mode():
        return ppl_ranges(token_losses(model, doc), trained)


def _context(config) -> int:
    from ropelab.config import RopeConfig
    from ropelab.real.shipped import read_shipped

    return read_shipped(RopeConfig.by_layer_type(config), config, "family").context


def run_family(name: str, folder: Path, steps: int = 2) -> dict:
    """One family through the whole pipeline; the row of the families table.

    Returns ``{"family", "source", "rope", "T", "T0", "status", "reason", "methods", "best",
    "reload_max_rel", "seconds"}``; ``status`` is ``"ran"`` or ``"refused"`` (with the one-line reason).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ropelab.errors import RopelabError
    from ropelab.real import extend

    started = time.perf_counter()
    model_folder = build_family(name, folder / "model")
    tokenizer_folder = model_folder.parent / "source" if model_folder.suffix == ".gguf" else model_folder
    config, source = family_config(name, len(AutoTokenizer.from_pretrained(tokenizer_folder)) + 16)
    context = _context(config)
    row = {"family": name, "source": source}
    try:
        result = extend(
            str(model_folder),
            finetune="pose",
            finetune_steps=steps,
            passkey_keys=1,
            passkey_lengths=(2 * context,),
            passkey_depths=(0.5,),
            dtype="float32",
            bin_width=32,
            write_config=str(folder / "handover"),
            out=str(folder / "out"),
            echo=lambda line: None,
        )
    except RopelabError as error:
        return {**row, "status": "refused", "reason": str(error), "seconds": time.perf_counter() - started}
    shipped = result.shipped
    row.update(rope=shipped.describe(), T=shipped.context, T0=shipped.pretrained, status="ran")
    row.update(methods=sorted(result.measurements["methods"]), best=result.verdict.best)
    reloaded = AutoModelForCausalLM.from_pretrained(folder / "handover", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder / "handover")
    theirs = _ppl_ranges(reloaded, tokenizer, result.results["measure"]["length"], shipped.context)
    ours = result.measurements["methods"][result.verdict.best]["ppl_ranges"]
    row["reload_ppl"] = {"ropelab": ours, "from_pretrained": theirs}
    row["reload_max_rel"] = max(abs(theirs[k] / ours[k] - 1) for k in ours)
    row["seconds"] = time.perf_counter() - started
    assert math.isfinite(row["reload_max_rel"])
    return row
