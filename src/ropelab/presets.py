"""The RoPE of named model families, with the values taken from their public configs.

Each preset is a :class:`~ropelab.config.RopeConfig` built from the rope-relevant keys of the
model's published ``config.json`` (or, where a key is absent there, the model card or paper named
in :attr:`Preset.source`). Nothing here is derived or guessed: a value that could not be found in a
public source is left out (the field keeps RopeConfig's default) and said so in :attr:`Preset.notes`.

A model with a different RoPE per layer type (Gemma 3) is a :class:`~ropelab.config.LayerTypeRope`:
``preset("gemma-3-12b-it")`` returns the whole model, ``preset("gemma-3-12b-it:full_attention")``
one layer type's RopeConfig, and :func:`preset_configs` every preset as RopeConfigs (layer types
spelled ``name:layer_type``) for code that handles one RoPE at a time.

Usage::

    cfg = ropelab.preset("llama-2-7b")                  # same as ropelab.presets.preset
    ropelab.presets.preset_names()                       # every known name
    ropelab.presets.PRESETS["phi-3-mini-128k-instruct"].source
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import UnknownPresetError

__all__ = ["Preset", "PRESETS", "UnknownPresetError", "preset", "preset_configs", "preset_names", "preset_info"]

LAYER_TYPE_SEPARATOR = ":"  # "gemma-3-12b-it:full_attention" names one layer type of a preset


@dataclass(frozen=True)
class Preset:
    """One model family's RoPE.

    Attributes:
        name: the preset's key (lower case, dashes).
        model_id: the public checkpoint the values describe.
        fields: keyword arguments of :class:`RopeConfig` (``source`` excluded); for a per-layer-type
            preset, the ones every layer type shares.
        source: where each value comes from (config.json, model card, paper section).
        notes: caveats a porter should know (layout conventions, values not found, ...).
        layer_fields: per-layer-type presets only: layer type -> the fields that differ from
            ``fields`` (``None``: a layer type without RoPE).
        layer_types: per-layer-type presets only: the type of each layer, in order.
    """

    name: str
    model_id: str
    fields: Mapping[str, Any]
    source: str
    notes: tuple[str, ...] = field(default=())
    layer_fields: Mapping[str, Mapping[str, Any] | None] | None = None
    layer_types: tuple[str, ...] = ()

    @property
    def per_layer_type(self) -> bool:
        """True when the model uses a different RoPE per layer type."""
        return self.layer_fields is not None

    def config(self) -> RopeConfig | LayerTypeRope:
        """The preset as a validated :class:`RopeConfig` (or, per layer type, a :class:`LayerTypeRope`)
        whose ``source`` names the preset."""
        source = f"preset:{self.name} ({self.model_id})"
        if self.layer_fields is None:
            return RopeConfig(**dict(self.fields), source=source)
        configs = {
            layer_type: None
            if extra is None
            else RopeConfig(**{**self.fields, **extra}, source=f"{source} [{layer_type}]")
            for layer_type, extra in self.layer_fields.items()
        }
        return LayerTypeRope(configs, self.layer_types, source)


def _every_nth_full(layers: int, period: int) -> tuple[str, ...]:
    """Gemma 3's pattern: layer ``i`` is full attention when ``(i + 1) % period == 0``, else a
    sliding-window layer (transformers' Gemma3TextConfig, from config.json's sliding_window_pattern)."""
    return tuple("full_attention" if (i + 1) % period == 0 else "sliding_attention" for i in range(layers))


# Phi-3-mini-128k-instruct, April 2024 release (config.json with rope_scaling type "su", which
# transformers reads as "longrope"). long_factor: quoted from that config.json in llama.cpp issue
# #6849 (2024-04-27) and identical to torchtune's early phi3_mini_128k builder (LONG_FACTORS);
# short_factor: torchtune's phi3_mini_128k builder (SHORT_FACTORS). Both lists have 48 = 96 / 2
# entries. The June 2024 update of the checkpoint (rope type renamed "longrope") changed both
# lists; those newer values could not be found verbatim and are NOT reproduced here.
_PHI3_MINI_128K_LONG_FACTOR = (
    1.0299999713897705, 1.0499999523162842, 1.0499999523162842, 1.0799999237060547,
    1.2299998998641968, 1.2299998998641968, 1.2999999523162842, 1.4499999284744263,
    1.5999999046325684, 1.6499998569488525, 1.8999998569488525, 2.859999895095825,
    3.68999981880188, 5.419999599456787, 5.489999771118164, 5.489999771118164,
    9.09000015258789, 11.579999923706055, 15.65999984741211, 15.769999504089355,
    15.789999961853027, 18.360000610351562, 21.989999771118164, 23.079999923706055,
    30.009998321533203, 32.35000228881836, 32.590003967285156, 35.56000518798828,
    39.95000457763672, 53.840003967285156, 56.20000457763672, 57.95000457763672,
    59.29000473022461, 59.77000427246094, 59.920005798339844, 61.190006256103516,
    61.96000671386719, 62.50000762939453, 63.3700065612793, 63.48000717163086,
    63.48000717163086, 63.66000747680664, 63.850006103515625, 64.08000946044922,
    64.760009765625, 64.80001068115234, 64.81001281738281, 64.81001281738281,
)  # fmt: skip
_PHI3_MINI_128K_SHORT_FACTOR = (
    1.05, 1.05, 1.05, 1.1, 1.1, 1.1500000000000001, 1.2000000000000002, 1.2500000000000002,
    1.3000000000000003, 1.3500000000000003, 1.5000000000000004, 2.000000000000001,
    2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
    2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
    2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
    2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
    2.000000000000001, 2.000000000000001, 2.000000000000001, 2.000000000000001,
    2.0500000000000007, 2.0500000000000007, 2.0500000000000007, 2.1000000000000005,
    2.1000000000000005, 2.1000000000000005, 2.1500000000000004, 2.1500000000000004,
    2.3499999999999996, 2.549999999999999, 2.5999999999999988, 2.5999999999999988,
    2.7499999999999982, 2.849999999999998, 2.849999999999998, 2.9499999999999975,
)  # fmt: skip

_LLAMA_LAYOUT_NOTE = (
    "layout 'half' is that of the transformers checkpoint: its conversion script permutes the q/k "
    "projection rows, while Meta's own reference code rotates adjacent pairs (interleaved)"
)

_PRESET_LIST = (
    Preset(
        "gpt-neox-20b",
        "EleutherAI/gpt-neox-20b",
        {"head_dim": 96, "rotary_dim": 24, "base": 10000.0, "layout": "half", "max_position_embeddings": 2048},
        "config.json: hidden_size 6144 / num_attention_heads 64 = head_dim 96, rotary_pct 0.25 -> "
        "rotary_dim 24, rotary_emb_base 10000, max_position_embeddings 2048 (also transformers "
        "GPTNeoXConfig defaults)",
        ("partial rotation: only the first quarter of each head is rotated; 72 channels carry no position",),
    ),
    Preset(
        "gpt-j-6b",
        "EleutherAI/gpt-j-6b",
        {"head_dim": 256, "rotary_dim": 64, "base": 10000.0, "layout": "interleaved", "max_position_embeddings": 2048},
        "config.json: n_embd 4096 / n_head 16 = head_dim 256, rotary_dim 64, n_positions 2048 (also "
        "transformers GPTJConfig defaults); no base key in config.json: transformers' GPT-J code hard-codes 10000; "
        "interleaved: transformers' rotate_every_two",
        ("partial rotation (64 of 256 channels), adjacent pairs (x[2i], x[2i+1])",),
    ),
    Preset(
        "llama-7b",
        "huggyllama/llama-7b",
        {"head_dim": 128, "base": 10000.0, "layout": "half", "max_position_embeddings": 2048},
        "config.json: hidden_size 4096 / num_attention_heads 32, max_position_embeddings 2048 "
        "(LLaMA paper, Touvron et al. 2023a: context 2048); no rope_theta key -> transformers default 10000",
        (_LLAMA_LAYOUT_NOTE,),
    ),
    Preset(
        "llama-2-7b",
        "meta-llama/Llama-2-7b-hf",
        {"head_dim": 128, "base": 10000.0, "layout": "half", "max_position_embeddings": 4096},
        "config.json: hidden_size 4096 / num_attention_heads 32, max_position_embeddings 4096; "
        "no rope_theta key -> transformers default 10000",
        (_LLAMA_LAYOUT_NOTE,),
    ),
    Preset(
        "code-llama-7b",
        "codellama/CodeLlama-7b-hf",
        {"head_dim": 128, "base": 1_000_000.0, "layout": "half", "max_position_embeddings": 16384},
        "Code Llama paper (Roziere et al. 2023, section 2.4 long context fine-tuning): base period "
        "10,000 -> 1,000,000, trained on 16,384-token sequences; config.json rope_theta 1000000, "
        "max_position_embeddings 16384",
        ("same Llama-2 architecture; only the base changed, the 'NTK by base' recipe", _LLAMA_LAYOUT_NOTE),
    ),
    Preset(
        "llama-3-8b",
        "meta-llama/Meta-Llama-3-8B",
        {"head_dim": 128, "base": 500_000.0, "layout": "half", "max_position_embeddings": 8192},
        "config.json: hidden_size 4096 / num_attention_heads 32, rope_theta 500000.0, max_position_embeddings 8192",
        (_LLAMA_LAYOUT_NOTE,),
    ),
    Preset(
        "llama-3.1-8b",
        "meta-llama/Llama-3.1-8B",
        {
            "head_dim": 128,
            "base": 500_000.0,
            "rope_type": "llama3",
            "layout": "half",
            "max_position_embeddings": 131072,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        "config.json: rope_theta 500000.0, max_position_embeddings 131072, rope_scaling {rope_type "
        "llama3, factor 8.0, low_freq_factor 1.0, high_freq_factor 4.0, original_max_position_embeddings 8192}",
        (_LLAMA_LAYOUT_NOTE,),
    ),
    Preset(
        "mistral-7b-v0.1",
        "mistralai/Mistral-7B-v0.1",
        {"head_dim": 128, "base": 10000.0, "layout": "half", "max_position_embeddings": 32768},
        "config.json: hidden_size 4096 / num_attention_heads 32, rope_theta 10000.0, "
        "max_position_embeddings 32768, sliding_window 4096",
        (
            "attention is windowed (sliding_window 4096): relative distances above 4096 never occur in one layer",
            "max_position_embeddings 32768 is the config value, not a documented training length",
        ),
    ),
    Preset(
        "falcon-7b",
        "tiiuae/falcon-7b",
        {"head_dim": 64, "base": 10000.0, "layout": "half", "max_position_embeddings": 2048},
        "config.json: hidden_size 4544 / num_attention_heads 71 = head_dim 64, no rope_theta key "
        "(transformers FalconConfig default 10000); sequence length 2048 from the model card",
        ("the model card gives the 2048 training length; the original config.json has no max_position key",),
    ),
    Preset(
        "gemma-7b",
        "google/gemma-7b",
        {"head_dim": 256, "base": 10000.0, "layout": "half", "max_position_embeddings": 8192},
        "config.json: head_dim 256, hidden_size 3072, num_attention_heads 16, rope_theta 10000.0, "
        "max_position_embeddings 8192 (also transformers GemmaConfig defaults)",
        ("head_dim (256) is not hidden_size / heads (192): it is read from its own key",),
    ),
    Preset(
        "qwen2-7b",
        "Qwen/Qwen2-7B",
        {"head_dim": 128, "base": 1_000_000.0, "layout": "half", "max_position_embeddings": 131072},
        "config.json: hidden_size 3584 / num_attention_heads 28 = head_dim 128, rope_theta 1000000.0, "
        "max_position_embeddings 131072",
        (
            "Qwen2-7B-Instruct's config.json has max_position_embeddings 32768 and no rope_scaling; its "
            "card suggests adding YaRN (factor 4, original 32768) by hand for longer inputs",
        ),
    ),
    Preset(
        "phi-3-mini-128k-instruct",
        "microsoft/Phi-3-mini-128k-instruct",
        {
            "head_dim": 96,
            "base": 10000.0,
            "rope_type": "longrope",
            "layout": "half",
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "factor": 131072 / 4096,
            "short_factor": _PHI3_MINI_128K_SHORT_FACTOR,
            "long_factor": _PHI3_MINI_128K_LONG_FACTOR,
        },
        "config.json of the April 2024 release: hidden_size 3072 / num_attention_heads 32 = 96, "
        "rope_theta 10000.0, max_position_embeddings 131072, original_max_position_embeddings 4096, "
        "rope_scaling type 'su' (= longrope) with 48 short/long factors (long_factor as quoted in "
        "llama.cpp issue #6849; short_factor as in torchtune's phi3_mini_128k builder)",
        (
            "factor 32 is inferred as max_position_embeddings / original_max_position_embeddings, as transformers does",
            "the June 2024 update of this checkpoint changed short_factor and long_factor; those lists "
            "were not found verbatim and are not reproduced",
        ),
    ),
    Preset(
        "deepseek-v3",
        "deepseek-ai/DeepSeek-V3",
        {
            "head_dim": 64,
            "base": 10000.0,
            "rope_type": "yarn",
            "layout": "interleaved",
            "max_position_embeddings": 163840,
            "factor": 40.0,
            "original_max_position_embeddings": 4096,
            "beta_fast": 32.0,
            "beta_slow": 1.0,
            "mscale": 1.0,
            "mscale_all_dim": 1.0,
        },
        "config.json: qk_rope_head_dim 64, rope_theta 10000, max_position_embeddings 163840, "
        "rope_scaling {type yarn, factor 40, original_max_position_embeddings 4096, beta_fast 32, "
        "beta_slow 1, mscale 1.0, mscale_all_dim 1.0}; interleaved: transformers DeepseekV3Config rope_interleave=True",
        (
            "multi-head latent attention: only the 64-channel decoupled RoPE part (qk_rope_head_dim) of "
            "each 192-channel q/k head rotates; head_dim here is that part",
            "mscale == mscale_all_dim makes the cos/sin attention factor 1; DeepSeek instead multiplies "
            "the softmax scale by yarn_mscale(40, 1.0)**2 = (0.1 ln 40 + 1)**2",
        ),
    ),
    Preset(
        "gemma-3-12b-it",
        "google/gemma-3-12b-it",
        {"head_dim": 256, "layout": "half", "max_position_embeddings": 131072},
        "config.json of google/gemma-3-12b-it (https://huggingface.co/google/gemma-3-12b-it/blob/main/config.json), "
        'text_config, as quoted verbatim (the unsloth re-save, "unsloth_fixed": true) in ostris/ai-toolkit '
        "extensions_built_in/diffusion_models/ltx2/ltx2.py: head_dim 256, num_hidden_layers 48, "
        "max_position_embeddings 131072, rope_local_base_freq 10000 (sliding-window layers), rope_theta 1000000 "
        "and rope_scaling {rope_type linear, factor 8.0} (full-attention layers, as transformers' Gemma3TextConfig "
        "applies them), sliding_window 1024, sliding_window_pattern 6 (layer i is full attention when "
        "(i + 1) % 6 == 0, transformers' Gemma3TextConfig)",
        (
            "the official config.json could not be read from here: the values are those of a verbatim public copy",
            "sliding-window layers attend to 1024 positions (sliding_window 1024): relative distances above 1024 "
            "never occur in them, so only the full-attention layers meet long-range angles",
            "linear scaling names no pretraining length, so the trained length shown is max_position_embeddings 131072 "
            "(marked as assumed); the Gemma 3 Technical Report (arXiv 2503.19786) pretrains on 32K sequences and "
            "reaches 128K with a RoPE scaling factor of 8, so 131072 / 8 = 16384 is not the pretraining length either: "
            "state it with original_max_position_embeddings 32768 in the full_attention block",
        ),
        layer_fields={
            "sliding_attention": {"base": 10_000.0},
            "full_attention": {"base": 1_000_000.0, "rope_type": "linear", "factor": 8.0},
        },
        layer_types=_every_nth_full(48, 6),
    ),
)

_QWEN25_VL_SOURCE = (
    "the checkpoint's config.json as quoted in NVIDIA/TensorRT-LLM "
    "tests/unittest/_torch/modeling/test_modeling_qwen2_5vl.py (QWEN2_5_VL_7B_CONFIG)"
)

_PRESET_LIST += (
    Preset(
        "qwen2.5-vl-7b-instruct",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        {
            "head_dim": 128,
            "base": 1_000_000.0,
            "layout": "half",
            "max_position_embeddings": 128000,
            "mrope_section": (16, 24, 24),
            "mrope_composition": "contiguous",
        },
        f"{_QWEN25_VL_SOURCE}: hidden_size 3584 / num_attention_heads 28 = head_dim 128, rope_theta 1000000.0, "
        "max_position_embeddings 128000, rope_scaling {type mrope, mrope_section [16, 24, 24]}; transformers reads "
        "type 'mrope' as the default frequencies with M-RoPE sections, dealt as contiguous blocks "
        "(Qwen2_5_VLRotaryEmbedding; Qwen2-VL paper, arXiv 2409.12191, sec. 2.1)",
        (
            "M-RoPE: pairs 0-15 read the temporal position, 16-39 the height, 40-63 the width; a text token "
            "carries the same position on all three rows, so text alone sees ordinary RoPE with base 1e6",
            "max_position_embeddings 128000 is the config value, not a documented training length",
            "the vision tower has its own RoPE, axial 2D over patch rows and columns: preset "
            "qwen2.5-vl-7b-instruct-vision",
        ),
    ),
    Preset(
        "qwen2.5-vl-7b-instruct-vision",
        "Qwen/Qwen2.5-VL-7B-Instruct",
        {"head_dim": 80, "base": 10000.0, "rope_type": "axial", "layout": "half"},
        f"{_QWEN25_VL_SOURCE}: vision_config hidden_size 1280 / num_heads 16 = head_dim 80. That vision_config has "
        "no rope_theta: the base 10000 is the default of the vision rotary module (Qwen2_5_VisionRotaryEmbedding("
        "dim, theta=10000.0) in transformers 4.x modeling_qwen2_5_vl.py; in transformers 5, "
        "RotaryEmbeddingConfigMixin.default_theta, read as rope_type 'axial'). Pairs 0-19 turn by the patch row, "
        "20-39 by the patch column, each with the ladder of a RoPE over 40 channels (Qwen2_5_VLVisionRotaryEmbedding)",
        (
            "positions are (row, column) patch coordinates, listed in 2 x 2 spatial-merge blocks (spatial_merge_size "
            "2); the tower has no trained length in tokens",
        ),
    ),
)

#: Every preset by name (:func:`preset` looks names up here).
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESET_LIST}


def preset_names() -> list[str]:
    """Every known preset name, in the order of :data:`PRESETS`."""
    return list(PRESETS)


def preset_configs() -> dict[str, RopeConfig]:
    """Every preset as RopeConfigs: flat presets by name, per-layer-type ones as one entry per layer
    type with RoPE, named ``name:layer_type`` (for code that handles one RoPE at a time)."""
    out: dict[str, RopeConfig] = {}
    for name, info in PRESETS.items():
        cfg = info.config()
        if isinstance(cfg, RopeConfig):
            out[name] = cfg
        else:
            out.update({f"{name}{LAYER_TYPE_SEPARATOR}{kind}": cfg[kind] for kind in cfg.rope_layer_types})
    return out


def _normalise(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def preset_info(name: str) -> Preset:
    """The :class:`Preset` record (values, source, notes) for ``name``.

    Names are case-insensitive and ``_`` may stand for ``-``. Raises :class:`UnknownPresetError`
    (a :class:`~ropelab.config.RopeConfigError`) listing the known names.
    """
    if not isinstance(name, str):
        raise UnknownPresetError(f"preset={name!r} is invalid: expected a name, one of {', '.join(PRESETS)}")
    key = _normalise(name.partition(LAYER_TYPE_SEPARATOR)[0])
    if key not in PRESETS:
        raise UnknownPresetError(f"preset={name!r} is unknown: expected one of {', '.join(PRESETS)}")
    return PRESETS[key]


def preset(name: str) -> RopeConfig | LayerTypeRope:
    """The RoPE of the named model family (see :data:`PRESETS`).

    A :class:`RopeConfig`, or for a model with a RoPE per layer type a :class:`LayerTypeRope`;
    ``"name:layer_type"`` (e.g. ``"gemma-3-12b-it:full_attention"``) picks one layer type's
    RopeConfig. An unknown layer type raises :class:`ropelab.errors.UnknownLayerTypeError`.
    """
    info = preset_info(name)
    _, separator, layer_type = name.partition(LAYER_TYPE_SEPARATOR)
    cfg = info.config()
    if not separator:
        return cfg
    if isinstance(cfg, RopeConfig):
        raise UnknownPresetError(
            f"preset={name!r} is invalid: {info.name} has one RoPE for every layer, "
            f"name it without {LAYER_TYPE_SEPARATOR}{layer_type}"
        )
    found = cfg[layer_type.strip()]
    if found is None:
        raise UnknownPresetError(f"preset={name!r} is invalid: its {layer_type} layers have no RoPE")
    return found
