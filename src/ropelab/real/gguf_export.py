"""Hand a real model over as one GGUF file that llama.cpp runs at the extended length.

llama.cpp fixes a model's RoPE when it loads, from the GGUF's metadata and, for per-pair factors, a
small tensor. :func:`gguf_rope` turns a :class:`~ropelab.config.RopeConfig` into exactly what
llama.cpp reads (key names from gguf-py's ``constants.py``, read as ``src/llama-model.cpp`` and
``src/llama-context.cpp`` of the pinned llama-cpp-python read them):

========== ==================================================================================
method     what is written (``{arch}.`` prefixed keys; tensors are float32 ``[R/2]``)
========== ==================================================================================
as-is      ``rope.freq_base``, ``rope.scaling.type = none``, ``context_length = T``
linear     ``rope.scaling.type = linear``, ``rope.scaling.factor = s``
ntk        a base change: ``rope.freq_base = base * s^(R/(R-2))``, ``rope.scaling.type = none``
yarn       ``rope.scaling.type = yarn``, ``factor = s``, ``original_context_length = T``,
           ``rope.scaling.attn_factor = a / (1 + 0.1 ln s)`` (see below)
llama3     tensor ``rope_freqs`` (pair ``i``'s frequency is divided by it), ``scaling.type = none``
longrope   tensors ``rope_factors_long`` / ``rope_factors_short``, ``scaling.type = longrope``,
           ``original_context_length = T``, ``rope.scaling.attn_factor = a``
dynamic    refused: llama.cpp has no RoPE that changes with the current length
========== ==================================================================================

``context_length`` is the extended length ``N`` for every scaled method.

**YaRN's attention factor.** transformers (``_compute_yarn_parameters``) multiplies cos and sin by
``a`` = the config's ``attention_factor``, else ``get_mscale(s, mscale) / get_mscale(s,
mscale_all_dim)``, else ``0.1 ln s + 1`` (Peng et al. 2023, eq. 22). ggml's ``rope_yarn`` multiplies
them by ``attn_factor * (1 + 0.1 ln s)`` whenever YaRN's ramp is on. Before llama.cpp PR #17945 the
context's ``attn_factor`` was itself ``get_mscale(s)``, so the temperature was applied twice; since it,
the context divides ``get_mscale(s)`` by ``1 + 0.1 ln s`` (the PR's ``yarn_attn_factor_adjust``, now
in ``llama_context``'s constructor) and multiplies by the GGUF's ``rope.scaling.attn_factor``. So
llama.cpp computes ``rope.scaling.attn_factor * (1 + 0.1 ln s)``, and writing ``a / (1 + 0.1 ln s)``
(1 for plain YaRN) makes it equal transformers' ``a`` for every form of ``a``.

Every written RoPE is checked before anything is written: :func:`llama_cpp_frequencies` recomputes,
from the keys and tensors alone, the frequencies and magnitude llama.cpp will use (the formulas of
ggml's ``rope_yarn`` and ``ggml_rope_yarn_corr_dims``); a RoPE whose recomputation differs from
:func:`ropelab.frequencies.rope_frequencies` (a YaRN with ``truncate=False`` or non-default betas,
which llama.cpp's llama architecture does not read from a GGUF) is refused by name with the reason.

Weights: a zero-shot hand-over of a GGUF input copies the source's tensors byte for byte
(``dtype="source"``); otherwise the model's own tensors are written in F16, BF16, F32 or Q8_0
(norms and biases stay F32, as llama.cpp's converter keeps them), with q and k rows reordered from
transformers' half-split pairs to the interleaved pairs of llama.cpp's ``llama`` RoPE. The tokenizer
comes from the source GGUF, or from a byte-level BPE tokenizer (``tokenizer.ggml.model = gpt2``).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import RealModelError
from ropelab.frequencies import default_inv_freq, rope_frequencies
from ropelab.io import atomic_write, atomic_write_text

__all__ = [
    "ARCHITECTURES",
    "DTYPES",
    "GgufRope",
    "gguf_architecture",
    "gguf_rope",
    "llama_cpp_frequencies",
    "check_gguf_path",
    "check_gguf_handover",
    "write_gguf",
    "hand_over_gguf",
    "source_gguf_of",
    "write_modelfile",
    "serving_lines",
]

# transformers model_type -> llama.cpp GGUF architecture written here, with the RoPE layout llama.cpp
# applies to it: "interleaved" (LLAMA_ROPE_TYPE_NORM: q/k rows are reordered on writing) or "half" (NEOX).
ARCHITECTURES = {"llama": ("llama", "interleaved"), "mistral": ("llama", "interleaved"), "qwen2": ("qwen2", "half")}
DTYPES = ("source", "f16", "bf16", "f32", "q8_0")
# YaRN's ramp ends as llama.cpp's llama / qwen2 architectures fix them (llama_hparams defaults, not read
# from a GGUF); the same defaults as transformers and the YaRN paper (section 3.2: alpha=1, beta=32).
LLAMA_CPP_YARN_BETA_FAST = 32.0
LLAMA_CPP_YARN_BETA_SLOW = 1.0
# How close llama.cpp's frequencies (float32 in ggml) must be to ropelab's for a RoPE to be written.
FREQUENCY_RTOL = 1e-5
DYNAMIC_REASON = (
    "llama.cpp has no dynamic NTK: its RoPE is fixed when the model loads, while dynamic recomputes the base "
    "from the current length (write ntk for a static base change)"
)


@dataclass(frozen=True)
class GgufRope:
    """What a GGUF says about one RoPE.

    Attributes:
        keys: full key name (``llama.rope.freq_base``) -> ``(value, gguf type name)``.
        tensors: tensor name (``rope_freqs.weight``) -> float32 ``[R/2]``.
        context_length: ``{arch}.context_length`` (the length the model is served at).
    """

    keys: dict[str, tuple[Any, str]]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)
    context_length: int = 0

    def summary(self) -> dict[str, Any]:
        """The keys and tensors as plain JSON values (tensors by shape and type)."""
        return {
            **{key: value for key, (value, _) in self.keys.items()},
            **{name: f"F32 [{tensor.shape[0]}]" for name, tensor in self.tensors.items()},
        }


def gguf_architecture(config) -> str:
    """The GGUF architecture name ropelab writes for a transformers config.

    Raises:
        RealModelError: the model type has no GGUF architecture, or one that ropelab does not write.
    """
    import gguf

    model_type = getattr(config, "model_type", None)
    if model_type in ARCHITECTURES:
        if model_type == "mistral" and getattr(config, "sliding_window", None):
            raise RealModelError(
                f"--write-gguf is invalid for model_type='mistral' with sliding_window={config.sliding_window}: "
                "llama.cpp's llama architecture attends over the whole context"
            )
        if model_type == "qwen2" and getattr(config, "use_sliding_window", False):
            raise RealModelError(
                "--write-gguf is invalid for model_type='qwen2' with use_sliding_window=true: "
                "llama.cpp's qwen2 architecture attends over the whole context"
            )
        return ARCHITECTURES[model_type][0]
    written = ", ".join(sorted(ARCHITECTURES))
    if model_type in set(gguf.MODEL_ARCH_NAMES.values()):
        raise RealModelError(
            f"--write-gguf is invalid for model_type={model_type!r}: ropelab writes GGUFs for {written} "
            "(llama.cpp's convert_hf_to_gguf.py converts the written --write-config folder)"
        )
    raise RealModelError(
        f"--write-gguf is invalid for model_type={model_type!r}: llama.cpp's GGUF has no architecture of that "
        f"name (ropelab writes {written})"
    )


def _key(arch: str, template: str) -> str:
    return template.format(arch=arch)


def gguf_rope(cfg: RopeConfig | LayerTypeRope, arch: str = "llama") -> GgufRope:
    """The GGUF keys and factor tensors that make llama.cpp compute ``cfg`` (table in the module docstring).

    Raises:
        RealModelError: ``cfg`` is a RoPE llama.cpp cannot express (named, with the reason), or llama.cpp's
            reading of the keys (:func:`llama_cpp_frequencies`) differs from ``cfg``'s frequencies.
    """
    from gguf import Keys

    if isinstance(cfg, LayerTypeRope):
        if not cfg.uniform:
            raise RealModelError(
                "--write-gguf is invalid for a RoPE per layer type: llama.cpp's llama / qwen2 architectures "
                "have one RoPE for every layer"
            )
        cfg = next(one for one in cfg.values() if one is not None)
    kind = cfg.rope_type
    if kind == "dynamic":
        raise RealModelError(f"--write-gguf cannot write method 'dynamic': {DYNAMIC_REASON}")
    if kind not in ("default", "linear", "ntk", "yarn", "llama3", "longrope"):
        raise RealModelError(
            f"--write-gguf cannot write rope_type={kind!r}: llama.cpp's {arch} architecture has no form for it"
        )
    if cfg.layout != "half" or cfg.rotary_dim != cfg.head_dim or cfg.num_axes != 1:
        raise RealModelError(
            f"--write-gguf cannot write this RoPE (layout {cfg.layout}, rotary_dim {cfg.rotary_dim} of head_dim "
            f"{cfg.head_dim}, {cfg.num_axes} axes): llama.cpp's {arch} rotates whole heads, one position axis"
        )
    rope = lambda name: _key(arch, name)  # noqa: E731
    base = cfg.base
    keys: dict[str, tuple[Any, str]] = {}
    tensors: dict[str, np.ndarray] = {}
    scaling = "none"
    trained = cfg.original_max_position_embeddings or cfg.max_position_embeddings
    if kind == "ntk" and cfg.rotary_dim > 2:
        base = cfg.base * cfg.factor ** (cfg.rotary_dim / (cfg.rotary_dim - 2))  # the same base as ropelab's _ntk
    elif kind in ("linear", "ntk"):  # (one-pair NTK is linear)
        scaling = "linear"
        keys[rope(Keys.Rope.SCALING_FACTOR)] = (float(cfg.factor), "FLOAT32")
    elif kind == "yarn":
        _, magnitude = rope_frequencies(cfg)
        factor = cfg.factor if cfg.factor is not None else cfg.max_position_embeddings / trained
        scaling = "yarn"
        keys[rope(Keys.Rope.SCALING_FACTOR)] = (float(factor), "FLOAT32")
        keys[rope(Keys.Rope.SCALING_ORIG_CTX_LEN)] = (int(trained), "UINT32")
        keys[rope(Keys.Rope.SCALING_ATTN_FACTOR)] = (magnitude / (1.0 + 0.1 * math.log(factor)), "FLOAT32")
    elif kind == "llama3":
        inv_freq, _ = rope_frequencies(cfg)
        tensors["rope_freqs.weight"] = (default_inv_freq(cfg.rotary_dim, base) / inv_freq).numpy().astype(np.float32)
        keys[rope(Keys.Rope.SCALING_ORIG_CTX_LEN)] = (int(trained), "UINT32")
    elif kind == "longrope":
        trained = cfg.original_max_position_embeddings
        _, magnitude = rope_frequencies(cfg, trained + 1)
        scaling = "longrope"
        tensors["rope_factors_long.weight"] = np.asarray(cfg.long_factor, dtype=np.float32)
        tensors["rope_factors_short.weight"] = np.asarray(cfg.short_factor, dtype=np.float32)
        keys[rope(Keys.Rope.SCALING_ORIG_CTX_LEN)] = (int(trained), "UINT32")
        keys[rope(Keys.Rope.SCALING_ATTN_FACTOR)] = (float(magnitude), "FLOAT32")
    keys = {
        rope(Keys.Rope.FREQ_BASE): (float(base), "FLOAT32"),
        rope(Keys.Rope.SCALING_TYPE): (scaling, "STRING"),
        **keys,
    }
    context = int(cfg.max_position_embeddings or trained)
    keys[rope(Keys.LLM.CONTEXT_LENGTH)] = (context, "UINT32")
    written = GgufRope(keys, tensors, context)
    _check_llama_cpp_reading(cfg, written, arch)
    return written


def llama_cpp_frequencies(rope: GgufRope, rotary_dim: int, arch: str = "llama", context: int | None = None):
    """What llama.cpp computes from ``rope``: ``(inv_freq float64 [rotary_dim // 2], magnitude)``.

    ``magnitude`` multiplies cos and sin. The formulas are ggml's (``rope_yarn``: ``theta = theta_interp
    (1 - ramp) + theta_extrap ramp``, ``mscale *= 1 + 0.1 ln(1/freq_scale)`` when YaRN is on;
    ``ggml_rope_yarn_corr_dims``; a factor tensor divides ``theta``) with the context's attention factor
    (``llama_context``: ``get_mscale(s) / (1 + 0.1 ln s) * rope.scaling.attn_factor``). ``context`` is
    ``n_ctx`` (default the GGUF's ``context_length``): longrope's long factors apply past the original
    length. Computed in float64; ggml's float32 differs by about 1e-7 relative.
    """
    from gguf import Keys

    value = lambda name, default=None: rope.keys.get(_key(arch, name), (default,))[0]  # noqa: E731
    base = value(Keys.Rope.FREQ_BASE, 10000.0)
    scaling = value(Keys.Rope.SCALING_TYPE, "linear")
    factor = value(Keys.Rope.SCALING_FACTOR, 0.0) or 1.0
    scale = 1.0 if scaling == "none" else 1.0 / factor
    original = value(Keys.Rope.SCALING_ORIG_CTX_LEN, value(Keys.LLM.CONTEXT_LENGTH))
    attn_factor = value(Keys.Rope.SCALING_ATTN_FACTOR, 1.0)
    context = context or rope.context_length
    extrapolated = default_inv_freq(rotary_dim, base)
    if "rope_freqs.weight" in rope.tensors:
        extrapolated = extrapolated / torch.from_numpy(rope.tensors["rope_freqs.weight"]).double()
    elif scaling == "longrope":
        name = "rope_factors_long.weight" if context > original else "rope_factors_short.weight"
        extrapolated = extrapolated / torch.from_numpy(rope.tensors[name]).double()
    if scaling != "yarn":
        return extrapolated * scale, attn_factor
    low = math.floor(_corr_dim(rotary_dim, original, LLAMA_CPP_YARN_BETA_FAST, base))
    high = math.ceil(_corr_dim(rotary_dim, original, LLAMA_CPP_YARN_BETA_SLOW, base))
    low, high = max(0, low), min(rotary_dim - 1, high)
    pair = torch.arange(rotary_dim // 2, dtype=torch.float64)
    ramp = 1.0 - ((pair - low) / max(0.001, high - low)).clamp(0.0, 1.0)
    inv_freq = extrapolated * scale * (1 - ramp) + extrapolated * ramp
    mscale = 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0  # llama_context: get_mscale(s, 1)
    context_factor = mscale / (1.0 + 0.1 * math.log(factor)) * attn_factor
    return inv_freq, context_factor * (1.0 + 0.1 * math.log(1.0 / scale))


def _corr_dim(rotary_dim: int, original: int, rotations: float, base: float) -> float:
    return rotary_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))


def _check_llama_cpp_reading(cfg: RopeConfig, rope: GgufRope, arch: str) -> None:
    """Refuse ``cfg`` if llama.cpp's reading of ``rope`` (at its context length) differs from ropelab's."""
    ours, our_magnitude = rope_frequencies(cfg, rope.context_length)
    theirs, their_magnitude = llama_cpp_frequencies(rope, cfg.rotary_dim, arch)
    gap = ((theirs - ours).abs() / ours.abs().clamp_min(1e-300)).max().item()
    if gap > FREQUENCY_RTOL or abs(their_magnitude - our_magnitude) > FREQUENCY_RTOL * our_magnitude:
        extra = ""
        if cfg.rope_type == "yarn":
            extra = (
                f" (llama.cpp's {arch} architecture fixes beta_fast={LLAMA_CPP_YARN_BETA_FAST:g}, "
                f"beta_slow={LLAMA_CPP_YARN_BETA_SLOW:g} and rounds the ramp to whole pairs; this YaRN has "
                f"beta_fast={cfg.beta_fast}, beta_slow={cfg.beta_slow}, truncate={cfg.truncate})"
            )
        raise RealModelError(
            f"--write-gguf cannot write this {cfg.rope_type} RoPE: llama.cpp would compute frequencies off by "
            f"{gap:.1e} (relative) and magnitude {their_magnitude:.6g} instead of {our_magnitude:.6g}{extra}"
        )


def check_gguf_path(path: str | os.PathLike, force: bool, *, modelfile: bool = False) -> Path:
    """``path`` as a Path if a GGUF may be written there; raises :class:`RealModelError` (one line) if it
    does not end in ``.gguf``, its folder does not exist, it is a folder, or it (or, with ``modelfile``, the
    ``Modelfile`` beside it) exists and ``force`` is not set."""
    target = Path(path)
    if target.suffix != ".gguf":
        raise RealModelError(f"--write-gguf {str(target)!r} is invalid: expected a file name ending in .gguf")
    if not target.parent.is_dir():
        raise RealModelError(
            f"--write-gguf {str(target)!r} is invalid: the folder {str(target.parent)!r} does not exist"
        )
    if target.is_dir():
        raise RealModelError(f"--write-gguf {str(target)!r} is invalid: it is a folder, expected a file")
    if target.exists() and not force:
        raise RealModelError(f"--write-gguf {str(target)!r} exists: pass --force to replace it")
    beside = target.with_name("Modelfile")
    if modelfile and beside.exists() and not force:
        raise RealModelError(
            f"--write-gguf {str(target)!r}: {str(beside)!r} exists beside it: pass --force to replace it"
        )
    return target


def check_gguf_handover(
    path, force: bool, config, configs, *, dtype: str = "auto", source: dict | None = None, fine_tuning: bool = False
) -> Path:
    """Everything that can refuse a GGUF hand-over, checked before any model loads: the path
    (:func:`check_gguf_path`), the tensor type (``"source"`` needs a GGUF input and no fine-tune), the
    architecture (:func:`gguf_architecture`), and every RoPE in ``configs`` (the candidates for the
    hand-over; :func:`gguf_rope`)."""
    target = check_gguf_path(path, force, modelfile=True)
    if dtype != "auto" and dtype not in DTYPES:
        raise RealModelError(f"--gguf-type {dtype!r} is invalid: expected auto or one of {', '.join(DTYPES)}")
    if dtype == "source" and (source is None or source_gguf_of(source) is None):
        raise RealModelError("--gguf-type source is invalid: the model is not read from a GGUF")
    if dtype == "source" and fine_tuning:
        raise RealModelError("--gguf-type source is invalid with --finetune: the source tensors are the old weights")
    arch = gguf_architecture(config)
    for cfg in configs:
        gguf_rope(cfg, arch)
    return target


# ---- writing -------------------------------------------------------------------------------------------


def _interleave_rows(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """Rows of a q or k projection (``[heads * D, ...]``, pair ``i`` of a head in rows ``i`` and ``i + D/2``)
    reordered so pair ``i`` is rows ``2i, 2i + 1`` (llama.cpp's interleaved RoPE). Same shape."""
    shape = weight.shape
    return weight.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).transpose(1, 2).reshape(shape)


def _qtype(dtype: str, tensor: np.ndarray):
    from gguf import GGMLQuantizationType as Q

    if tensor.ndim == 1 or dtype == "f32":
        return Q.F32
    if dtype == "q8_0" and tensor.shape[-1] % 32 == 0:
        return Q.Q8_0
    return {"f16": Q.F16, "bf16": Q.BF16, "q8_0": Q.F16}[dtype]  # Q8_0 rows need 32 | width; else F16


FILE_TYPES = {"f32": 0, "f16": 1, "q8_0": 7, "bf16": 32}  # gguf LlamaFileType: ALL_F32, MOSTLY_F16, _Q8_0, _BF16


def _model_tensors(model, config, arch: str, dtype: str):
    """``(gguf name, array, quantization type)`` for every weight of ``model`` (transformers names)."""
    import gguf

    layout = ARCHITECTURES[config.model_type][1]
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, getattr(config, "num_key_value_heads", None)
    kv_heads = kv_heads or heads
    tied = bool(getattr(config, "tie_word_embeddings", False))
    out = []
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue  # llama.cpp reuses token_embd when output.weight is absent
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise RealModelError(f"--write-gguf: weight {name!r} has no GGUF name in llama.cpp's {arch} architecture")
        tensor = tensor.detach().float().cpu()
        if layout == "interleaved" and (".attn_q." in target or ".attn_k." in target):
            tensor = _interleave_rows(tensor, heads if ".attn_q." in target else kv_heads)
        array = tensor.numpy()
        qtype = _qtype(dtype, array)
        out.append((target, gguf.quants.quantize(array, qtype), qtype))
    return out


def _hparams(writer, config, arch: str, vocab: int) -> None:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(getattr(config, "num_key_value_heads", None) or config.num_attention_heads)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(vocab)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)


def _pre_tokenizer(spec: dict | None) -> str | None:
    """llama.cpp's ``tokenizer.ggml.pre`` for a tokenizer.json pre-tokenizer it splits the same way, else None."""
    if not spec:
        return None
    parts = spec.get("pretokenizers", []) if spec.get("type") == "Sequence" else [spec]
    byte_level = parts[-1].get("type") == "ByteLevel" and parts[-1].get("use_regex", True)
    byte_level = byte_level and not parts[-1].get("add_prefix_space", False)
    if byte_level and len(parts) == 1:
        return "gpt-2"  # the GPT-2 regex (llama-vocab.cpp's LLAMA_VOCAB_PRE_TYPE_GPT2)
    if byte_level and len(parts) == 2 and parts[0] == {"type": "Digits", "individual_digits": True}:
        return "smollm"  # each digit apart, then the GPT-2 regex (LLAMA_VOCAB_PRE_TYPE_SMOLLM)
    return None


def _add_hf_tokenizer(writer, tokenizer, vocab: int) -> list[str]:
    """Write a byte-level BPE tokenizer as llama.cpp's ``gpt2`` vocabulary; returns notes."""
    from gguf import TokenType

    backend = getattr(tokenizer, "backend_tokenizer", None)
    spec = json.loads(backend.to_str()) if backend is not None else {}
    model = spec.get("model", {})
    decoder = spec.get("decoder") or {}
    if model.get("type") != "BPE" or decoder.get("type") != "ByteLevel":
        raise RealModelError(
            f"--write-gguf: the tokenizer is {model.get('type', type(tokenizer).__name__)} with a "
            f"{decoder.get('type', 'no')} decoder; ropelab writes byte-level BPE vocabularies (llama.cpp's gpt2) "
            "or copies a GGUF's (llama.cpp's convert_hf_to_gguf.py converts the --write-config folder)"
        )
    size = len(tokenizer)
    if size > vocab:
        raise RealModelError(f"--write-gguf: the tokenizer has {size} tokens, the embedding only {vocab} rows")
    added = {item["id"]: item for item in spec.get("added_tokens", [])}
    tokens, types = [], []
    for token_id in range(vocab):
        if token_id >= size:
            tokens.append(f"[PAD{token_id}]")
            types.append(TokenType.UNUSED)
            continue
        tokens.append(tokenizer.convert_ids_to_tokens(token_id))
        item = added.get(token_id)
        types.append(
            TokenType.NORMAL if item is None else TokenType.CONTROL if item["special"] else TokenType.USER_DEFINED
        )
    merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges", [])]
    pre = _pre_tokenizer(spec.get("pre_tokenizer"))
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre or "default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for add, token_id in (
        (writer.add_bos_token_id, tokenizer.bos_token_id),
        (writer.add_eos_token_id, tokenizer.eos_token_id),
        (writer.add_unk_token_id, tokenizer.unk_token_id),
        (writer.add_pad_token_id, tokenizer.pad_token_id),
    ):
        if token_id is not None:
            add(int(token_id))
    writer.add_add_bos_token(bool(getattr(tokenizer, "add_bos_token", False)))
    if getattr(tokenizer, "chat_template", None):
        writer.add_chat_template(tokenizer.chat_template)
    if pre is None:
        return [
            "tokenizer.ggml.pre=default: ropelab does not recognise this tokenizer's pre-tokenizer, so llama.cpp may "
            "split text differently from transformers (token ids fed directly are unaffected)"
        ]
    return []


def _copy_source_keys(writer, reader, skip) -> None:
    """Every key of the source GGUF but the header, the architecture and the names in ``skip``."""
    for name, item in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in skip:
            continue
        kind = item.types[0]
        sub = item.types[-1] if len(item.types) > 1 else None
        writer.add_key_value(name, item.contents(), kind, sub_type=sub)


def write_gguf(
    model,
    tokenizer,
    config,
    rope: RopeConfig | LayerTypeRope,
    path: str | os.PathLike,
    *,
    dtype: str | None = None,
    source_gguf: str | os.PathLike | None = None,
    force: bool = False,
) -> tuple[Path, dict]:
    """Write ``model`` with the RoPE ``rope`` as one GGUF that llama.cpp loads; returns ``(path, record)``.

    Args:
        model: a transformers causal LM (ropelab's patch holds no weights; the state dict is the model's).
        config: its transformers config (architecture, sizes).
        rope: the RoPE to hand over (:func:`ropelab.real.stages.method_config`).
        dtype: ``"source"`` copies ``source_gguf``'s tensors unchanged (a zero-shot method: the weights are
            the source's); ``"f16"``, ``"bf16"``, ``"f32"`` or ``"q8_0"`` writes the model's tensors
            (fine-tuned weights). Default: ``"source"`` with a ``source_gguf``, else ``"f16"``.
        source_gguf: the GGUF ``model`` was read from: its tokenizer and metadata are copied.
    Returns:
        ``(path, record)``, the record being ``{"architecture", "dtype", "keys": {...}, "tensors": n, "notes": [...]}``.
    Raises:
        RealModelError: a bad path, architecture, RoPE or tokenizer (nothing is written).
    """
    import gguf

    target = check_gguf_path(path, force)
    arch = gguf_architecture(config)
    written = gguf_rope(rope, arch)
    dtype = dtype or ("source" if source_gguf else "f16")
    if dtype not in DTYPES:
        raise RealModelError(f"--gguf-type {dtype!r} is invalid: expected one of {', '.join(DTYPES)}")
    if dtype == "source" and source_gguf is None:
        raise RealModelError("--gguf-type source is invalid: the model was not read from a GGUF")
    reader = gguf.GGUFReader(source_gguf) if source_gguf else None
    if reader is not None:
        source_arch = reader.fields["general.architecture"].contents()
        if source_arch != arch:
            raise RealModelError(f"--write-gguf: the source GGUF is {source_arch!r}, the model {arch!r}")
    writer = gguf.GGUFWriter(None, arch)
    notes: list[str] = []
    rope_prefix = f"{arch}.rope.scaling."
    factor_names = ("rope_freqs.weight", "rope_factors_long.weight", "rope_factors_short.weight")
    if reader is not None:
        skip = set(written.keys) | {n for n in reader.fields if n.startswith(rope_prefix)}
        if dtype != "source":
            skip |= {"general.file_type", "general.quantization_version"}
        _copy_source_keys(writer, reader, skip)
    else:
        vocab = model.get_input_embeddings().weight.shape[0]
        writer.add_name(Path(str(getattr(config, "_name_or_path", "") or arch)).name)
        _hparams(writer, config, arch, vocab)
        notes += _add_hf_tokenizer(writer, tokenizer, vocab)
    for key, (value, kind) in written.keys.items():
        writer.add_key_value(key, value, gguf.GGUFValueType[kind])
    if dtype == "source":
        tensors = [(t.name, t.data, t.tensor_type) for t in reader.tensors if t.name not in factor_names]
    else:
        tensors = _model_tensors(model, config, arch, dtype)
        writer.add_file_type(FILE_TYPES[dtype])
        if dtype == "q8_0":
            writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    tensors += [(name, tensor, gguf.GGMLQuantizationType.F32) for name, tensor in written.tensors.items()]
    for name, data, qtype in tensors:
        writer.add_tensor(name, data, raw_dtype=qtype)

    def write(handle):
        writer.fout, writer.path = [handle], target  # GGUFWriter writes into our handle (see atomic_write)
        writer.state = gguf.gguf_writer.WriterState.EMPTY
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.flush()

    atomic_write(target, write)
    writer.fout = None
    record = {
        "architecture": arch,
        "dtype": dtype,
        "keys": written.summary(),
        "tensors": len(tensors),
        "context_length": written.context_length,
        "notes": notes,
    }
    return target, record


def source_gguf_of(source: dict) -> Path | None:
    """The GGUF file a :func:`ropelab.real.load.resolve` source names, or None for a folder or hub model."""
    return Path(source["folder"]) / source["gguf_file"] if source.get("gguf_file") else None


def hand_over_gguf(
    model,
    tokenizer,
    config,
    rope: RopeConfig | LayerTypeRope,
    path: str | os.PathLike,
    *,
    source: dict,
    fine_tuned: bool,
    dtype: str = "auto",
    force: bool = False,
    folder: str | os.PathLike | None = None,
    echo=print,
) -> dict:
    """``ropelab extend --write-gguf``: the GGUF (:func:`write_gguf`), its Modelfile, and the serving lines.

    ``dtype="auto"`` copies the source GGUF's tensors for a zero-shot method of a GGUF input and writes
    F16 otherwise (fine-tuned weights, a folder or hub model). Returns the record of :func:`write_gguf`
    with ``"path"``, ``"modelfile"`` and ``"serve"`` (the lines) added; paths as written.
    """
    check_gguf_path(path, force, modelfile=True)
    gguf_file = source_gguf_of(source)
    if dtype == "auto":
        dtype = "source" if gguf_file is not None and not fine_tuned else "f16"
    if dtype == "source" and fine_tuned:
        raise RealModelError(
            "--gguf-type source is invalid for fine-tuned weights: the source tensors are the old ones"
        )
    target, record = write_gguf(model, tokenizer, config, rope, path, dtype=dtype, source_gguf=gguf_file, force=force)
    modelfile = write_modelfile(target, record["context_length"])
    record.update(
        path=str(target), modelfile=str(modelfile), serve=serving_lines(target, record["context_length"], folder)
    )
    keys = ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in record["keys"].items())
    echo(
        f"wrote {target} ({record['architecture']}, {record['dtype']} tensors; {keys}) and {modelfile}; serve it with:"
    )
    for line in record["serve"]:
        echo(f"  {line}")
    for note in record["notes"]:
        echo(f"  note: {note}")
    return record


def write_modelfile(path: str | os.PathLike, context: int) -> Path:
    """An Ollama ``Modelfile`` beside the GGUF at ``path`` (``FROM ./NAME``, ``PARAMETER num_ctx N``)."""
    gguf_path = Path(path)
    return atomic_write_text(
        gguf_path.with_name("Modelfile"), f"FROM ./{gguf_path.name}\nPARAMETER num_ctx {context}\n"
    )


def serving_lines(path: str | os.PathLike, context: int, folder: str | os.PathLike | None = None) -> list[str]:
    """The lines a user runs to serve the GGUF at ``path`` with ``context`` tokens (and the transformers
    ``folder`` with vLLM, when one was written). ``llama-perplexity`` scores the second half of each
    ``context``-token chunk, i.e. ``[T, N)`` at ``N = 2T``."""
    gguf_path = Path(path)
    name = gguf_path.stem.lower().replace("_", "-")
    lines = [
        f"llama-server -m {gguf_path} -c {context}",
        f"llama-perplexity -m {gguf_path} -c {context} -f TEXT_FILE",
        f"ollama create {name} -f {gguf_path.with_name('Modelfile')} && ollama run {name}",
        f"python -c \"from llama_cpp import Llama; Llama('{gguf_path}', n_ctx={context})\"",
    ]
    if folder is not None:
        lines.append(f"vllm serve {folder} --max-model-len {context}")
    return lines
