"""Inputs for the zoo sweep (``tests/hf_zoo.py``): what each tiny model's forward needs to run.

Generic first, from the forward signature and the config:

- ``input_ids`` (random text below the special tokens), ``decoder_input_ids`` for encoder-decoders,
  ``use_cache=False`` (the sweep compares one forward; some cache classes cannot be built from a
  composite config);
- a required argument the family table does not give is made from ``GENERIC`` by its name
  (``pixel_values``, ``input_features``, ``input_values``, ``past_values``, ...), its sizes read from
  the config.

A family whose ``forward`` the sweep cannot call with tensors alone (SAM 2 video tracks a video through
an inference session; ESMFold 2 folds from ten structure inputs) names ``"runner"``s instead: functions
in ``RUNNERS`` that call the submodules holding its rotary modules on tensors built from the config;
``inputs_for`` then returns a :class:`Run`, which the sweep calls with the model in place of
``model(**inputs)``.

Then per family, as data in ``FAMILY_INPUTS``: an entry maps an argument name to a ``Tensor`` spec
(kind and shape; a shape entry that is a string is read from the config, dotted into sub-configs)
or to a function of the config; the key ``"recipe"`` names one or more builders in ``RECIPES``, for
inputs whose parts must agree with each other (image placeholder tokens in the text and the patch
grid of the pixels, Qwen-VL's ``image_grid_thw``, audio tokens and feature frames, ...); the key
``"kwargs"`` names arguments the forward takes through ``**kwargs``. Every recipe sends its input
through the tower that holds a rotary embedding, which the sweep checks with forward hooks
(``hf_zoo.reach``).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

INPUT_LENGTH = 12
_TEXT_IDS = (3, 100)  # random text ids: above the usual pad/bos/eos, below the special tokens
_AUDIO_FRAMES = 64  # feature frames: a dozen positions after the usual 2x-4x subsampling
_SAMPLES = 24_000  # one second at 24 kHz: a dozen frames or more for every codec's hop length


@dataclass(frozen=True)
class Tensor:
    """A random input tensor: ``kind`` is ``"ids"`` (text ids), ``"randn"`` (floats) or ``"ones"``
    (a mask); ``shape`` entries are ints, config keys, or functions of the config (for sizes the
    config gives only as a product)."""

    kind: str
    shape: tuple[int | str | Callable, ...]


def config_value(config, dotted: str):
    """``config.a.b`` for ``"a.b"``; a bare key not on ``config`` is looked up in its sub-configs,
    depth first."""
    value = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    if value is None and "." not in dotted:
        for sub in vars(config).values():
            if hasattr(sub, "to_dict"):
                with contextlib.suppress(KeyError):
                    return config_value(sub, dotted)
    if value is None:
        raise KeyError(f"config has no {dotted!r}")
    return value


def _lookup(config, *keys: str):
    """The first of ``keys`` found in the config tree (see ``config_value``)."""
    for key in keys:
        with contextlib.suppress(KeyError):
            return config_value(config, key)
    raise KeyError(f"config has none of {keys}")


def make(spec: Tensor, config, seed: int = 0) -> torch.Tensor:
    shape = tuple(
        config_value(config, s) if isinstance(s, str) else s(config) if callable(s) else s for s in spec.shape
    )
    generator = torch.Generator().manual_seed(seed)
    if spec.kind == "ids":
        return torch.randint(*_TEXT_IDS, shape, generator=generator)
    if spec.kind == "randn":
        return torch.randn(shape, generator=generator)
    if spec.kind == "ones":
        return torch.ones(shape, dtype=torch.long)
    raise ValueError(f"unknown tensor kind {spec.kind!r}")


def text_ids(length: int = INPUT_LENGTH, seed: int = 0) -> torch.Tensor:
    return torch.randint(*_TEXT_IDS, (1, length), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- recipes: inputs whose parts must agree
RECIPES: dict[str, Callable[[Any, dict], None]] = {}  # name -> fn(model, inputs), completes inputs in place


def recipe(function):
    RECIPES[function.__name__] = function
    return function


@recipe
def codec_audio_in_text(model, inputs: dict) -> None:
    """CSM: audio frames encoded by the codec replace audio tokens in the text; labels on those
    positions run the depth decoder. ``hop`` samples make one codec frame."""
    config = model.config
    frames = 6
    hop = int(config.codec_config.sampling_rate / config.codec_config.frame_rate)
    audio = torch.full((1, frames), config.audio_token_id)
    text = inputs["input_ids"][:, : INPUT_LENGTH // 2]
    inputs["input_ids"] = torch.cat([text, audio, text], dim=1)
    inputs["input_values"] = torch.randn(1, 1, frames * hop, generator=torch.Generator().manual_seed(1))
    inputs["input_values_cutoffs"] = torch.tensor([[frames * hop]])
    inputs["labels"] = torch.where(inputs["input_ids"] == config.audio_token_id, config.audio_token_id, -100)


def _vision(config):
    return getattr(config, "vision_config", None) or config


def _first(config, *keys, default=None):
    """The first of ``keys`` that ``config`` itself sets (aliases across families)."""
    for key in keys:
        value = getattr(config, key, None)
        if value is not None:
            return value
    return default


def _merge(vision) -> int:
    merge = _first(vision, "spatial_merge_size", "merge_size", "merge_kernel_size", default=1)
    return merge[0] if isinstance(merge, (list, tuple)) else merge


def _patch_grid(model, inputs: dict, layout: str, row_tokens: bool = False, boundary: bool = True) -> None:
    """Qwen2-VL style: one image of ``grid`` x ``grid`` patches with ``image_grid_thw = [[1, h, w]]``;
    the text holds one image token per merged group of patches, between vision start and end tokens.
    The patches come flattened, ``[t * h * w, C * temporal_patch * patch * patch]`` (``layout="flat"``),
    or as small images, ``[t * h * w, C, patch, patch]`` (``layout="chw"``). With ``row_tokens``
    each row of merged patches ends with a separator, and the image with two boundary tokens unless
    not ``boundary``, all image tokens in the text (HunYuan-VL; HY-V4-VL without the boundary tokens)."""
    config = model.config
    vision = _vision(config)
    merge = _merge(vision)
    grid = 2 * merge
    channels = _first(vision, "in_channels", "num_channels", "in_chans", default=3)
    temporal = _first(vision, "temporal_patch_size", "patch_temporal", default=1)
    patch = vision.patch_size
    shape = (channels * temporal * patch * patch,) if layout == "flat" else (channels, patch, patch)
    inputs["pixel_values"] = torch.randn(grid * grid, *shape, generator=torch.Generator().manual_seed(1))
    inputs["image_grid_thw"] = torch.tensor([[1, grid, grid]])
    inputs["image_merge_sizes"] = torch.tensor([merge])
    side = grid // merge
    tokens = side * (side + 1) + 2 * boundary if row_tokens else side * side
    inputs["input_ids"] = _image_in_text(config, inputs["input_ids"], tokens)
    inputs["mm_token_type_ids"] = _modality(config, inputs["input_ids"])


@recipe
def patch_grid_image(model, inputs: dict) -> None:
    _patch_grid(model, inputs, "flat")


@recipe
def patch_grid_image_chw(model, inputs: dict) -> None:
    _patch_grid(model, inputs, "chw")


@recipe
def patch_grid_image_rows(model, inputs: dict) -> None:
    _patch_grid(model, inputs, "flat", row_tokens=True)


@recipe
def patch_grid_image_row_ends(model, inputs: dict) -> None:
    _patch_grid(model, inputs, "flat", row_tokens=True, boundary=False)


@recipe
def merged_patch_image(model, inputs: dict) -> None:
    """Inkling-2: one ``[patch * merge, patch * merge, C]`` tile per image token, the grid counted in
    image tokens (``image_grid_thw = [[1, 2, 2]]``)."""
    config = model.config
    vision = _vision(config)
    side = vision.patch_size * _merge(vision)
    inputs["pixel_values"] = torch.randn(4, side, side, vision.num_channels, generator=torch.Generator().manual_seed(1))
    inputs["image_grid_thw"] = torch.tensor([[1, 2, 2]])
    inputs["input_ids"] = _image_in_text(config, inputs["input_ids"], 4)


@recipe
def whole_image(model, inputs: dict) -> None:
    """One ``[1, C, size, size]`` image and as many image tokens in the text as the model's own
    ``get_image_features`` returns feature vectors. ``size`` is the vision config's, or 8 patches a
    side for a tower that takes any size (``image_sizes``)."""
    config = model.config
    vision = _vision(config)
    accepted = inspect.signature(model.get_image_features).parameters
    size = 8 * vision.patch_size if "image_sizes" in accepted else config_value(vision, "image_size")
    channels = _first(vision, "num_channels", "in_channels", default=3)
    inputs["pixel_values"] = torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(1))
    inputs["image_sizes"] = torch.tensor([[size, size]])
    image_inputs = {k: v for k, v in inputs.items() if k in accepted and (k == "pixel_values" or "image" in k)}
    with torch.no_grad():
        features = model.get_image_features(**image_inputs)
    inputs["input_ids"] = _image_in_text(
        config, inputs["input_ids"], _count(features, config.get_text_config().hidden_size)
    )


def _count(features, width: int) -> int:
    """How many ``width``-wide feature vectors a ``get_*_features`` output holds."""
    if not isinstance(features, (torch.Tensor, list, tuple)):
        features = next(f for f in (features.pooler_output, features.last_hidden_state) if f is not None)
    features = features if isinstance(features, (list, tuple)) else [features]
    return sum(f.numel() for f in features) // width


@recipe
def positioned_patches(model, inputs: dict) -> None:
    """Gemma 4: 6 x 6 patches ``[B, patches, C * patch * patch]`` with their (x, y) positions
    ``[B, patches, 2]``, pooled 3 x 3 into 4 image tokens."""
    config = model.config
    vision = _vision(config)
    side = 2 * vision.pooling_kernel_size
    width = 3 * vision.patch_size**2
    inputs["pixel_values"] = torch.rand(1, side * side, width, generator=torch.Generator().manual_seed(1))
    ys, xs = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    inputs["image_position_ids"] = torch.stack([xs.flatten(), ys.flatten()], dim=-1)[None]
    inputs["input_ids"] = _image_in_text(config, inputs["input_ids"], (side // vision.pooling_kernel_size) ** 2)


@recipe
def document_page_and_text(model, inputs: dict) -> None:
    """NeoMME: one encoder over text tokens and image patches, with two position axes (row, column).
    A batch of two rows of one length: a document page as ``NeoMMEProcessor`` lays it out (``<doc> <img>``,
    then ``h`` grid rows of ``w`` image tokens each closed by a ``<row>`` marker; its (row, column)
    positions from ``NeoMMEProcessor._image_positions``), and plain text with its index on both axes.
    Patches are ``[h * w, 3 * patch_size ** 2]``; ``position_ids`` ``[2, 2, S]``. The ``<row>`` id lives
    in the tokenizer, not the config: a text id stands in for it (the model treats it as text)."""
    from transformers.models.neomme.processing_neomme import NeoMMEProcessor

    config = model.config
    height, width = 3, 4
    specials = torch.tensor([config.image_token_id, config.document_token_id, config.pad_token_id])
    row_marker = next(i for i in range(*_TEXT_IDS) if i not in specials)
    grid = torch.tensor(([config.image_token_id] * width + [row_marker]) * height)
    page = torch.cat([torch.tensor([config.document_token_id, config.image_token_id]), grid])
    text = text_ids(len(page), seed=2)[0]
    text = text.masked_fill(torch.isin(text, specials), row_marker)  # no placeholder in the text row
    inputs["input_ids"] = torch.stack([page, text])
    inputs["pixel_values"] = torch.randn(height * width, config.patch_dim, generator=torch.Generator().manual_seed(1))
    page_positions = NeoMMEProcessor._image_positions(height, width).mT  # [2, S]: (row, column)
    text_positions = torch.arange(len(page)).expand(2, -1)
    inputs["position_ids"] = torch.stack([page_positions, text_positions], dim=1)  # [2 axes, 2 rows, S]


@recipe
def camera_prefix_and_action_chunk(model, inputs: dict) -> None:
    """PI0.5: one camera image ``[B, cameras, C, H, W]`` (``pixel_attention_mask`` ``[B, cameras]``) whose
    features replace as many image tokens in the text, the prefix its VLM caches; then the action expert's
    inputs, ``chunk_size`` action embeddings ``[B, chunk, H]`` and the timestep embedding ``[B, H]`` (what
    ``PI05ForConditionalGeneration.embed_action_time`` makes of noisy actions and a timestep)."""
    config = model.config
    vlm, width = config.vlm_config, config.dit_config.hidden_size
    size, channels = vlm.vision_config.image_size, vlm.vision_config.num_channels
    generator = torch.Generator().manual_seed(1)
    inputs["pixel_values"] = torch.randn(1, 1, channels, size, size, generator=generator)
    inputs["pixel_attention_mask"] = torch.ones(1, 1, dtype=torch.bool)
    with torch.no_grad():
        features = model.vlm.get_image_features(inputs["pixel_values"][0])
    inputs["input_ids"] = _image_in_text(vlm, inputs["input_ids"], _count(features, vlm.text_config.hidden_size))
    inputs["action_embeds"] = torch.randn(1, config.chunk_size, width, generator=generator)
    inputs["timestep_embeds"] = torch.randn(1, width, generator=generator)


def _audio_in_text(model, inputs: dict, frames_first: bool) -> None:
    """``frames`` feature frames (``[1, mel, frames]``, or ``[1, frames, mel]`` when ``frames_first``)
    with a full mask, and as many audio tokens in the text as ``get_audio_features`` returns vectors."""
    config = model.config
    mel = _lookup(config, "num_mel_bins", "feature_size")
    frames = _AUDIO_FRAMES
    shape = (1, frames, mel) if frames_first else (1, mel, frames)
    inputs["input_features"] = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    inputs["input_features_mask"] = torch.ones(1, frames, dtype=torch.long)
    with contextlib.suppress(KeyError):  # waveform samples behind the features (Dots3-Note)
        inputs["chunk_sample_lengths"] = torch.tensor([frames * config_value(config, "hop_length")])
    accepted = inspect.signature(model.get_audio_features).parameters
    if "input_ids" in accepted:
        # The features depend on where the audio tokens are (MusicFlamingo's time stamps): count
        # them from the tower's output lengths instead.
        lengths = model.audio_tower._get_feat_extract_output_lengths(inputs["input_features_mask"].sum(-1))
        count = int((lengths[-1] if isinstance(lengths, tuple) else lengths).sum())
    else:
        with torch.no_grad():
            features = model.get_audio_features(**{k: v for k, v in inputs.items() if k in accepted})
        count = _count(features, config.get_text_config().hidden_size)
    token = _first(config, "audio_token_id", "audio_token_index")
    ids = inputs["input_ids"]
    inputs["input_ids"] = torch.cat([ids[:, :2], torch.full((1, count), token), ids[:, 2:]], dim=1)


@recipe
def audio_in_text(model, inputs: dict) -> None:
    _audio_in_text(model, inputs, frames_first=False)


@recipe
def audio_in_text_frames_first(model, inputs: dict) -> None:
    _audio_in_text(model, inputs, frames_first=True)


def _modality(config, ids: torch.Tensor) -> torch.Tensor:
    """``mm_token_type_ids``: 1 on image tokens, 0 on text (the M-RoPE index reads image groups from it)."""
    return (ids == _first(config, "image_token_id", "image_token_index")).int()


def _image_in_text(config, ids: torch.Tensor, count: int) -> torch.Tensor:
    """``ids`` with ``count`` image tokens after the first two, wrapped in vision (or image, Ovis2.5)
    start / end tokens when the config has them."""
    image = torch.full((1, count), _first(config, "image_token_id", "image_token_index"), dtype=ids.dtype)
    parts = [ids[:, :2]]
    start = _first(config, "vision_start_token_id", "image_start_token_id")
    end = _first(config, "vision_end_token_id", "image_end_token_id")
    parts += [
        torch.tensor([[start]]) if start is not None else ids[:, :0],
        image,
        torch.tensor([[end]]) if end is not None else ids[:, :0],
        ids[:, 2:],
    ]
    return torch.cat(parts, dim=1)


# ---------------------------------------------------------------- runners: submodules in place of model(**inputs)
RUNNERS: dict[str, Callable[[Any], Any]] = {}  # name -> fn(model) -> output


def runner(function):
    RUNNERS[function.__name__] = function
    return function


@dataclass(frozen=True)
class Run:
    """What the sweep calls in place of ``model(**inputs)``: ``Run(names)(model)`` is the tuple of the
    outputs of the runners named, in order (each builds its tensors from the config, seeded)."""

    names: tuple[str, ...]

    def __call__(self, model):
        return tuple(RUNNERS[name](model) for name in self.names)


@runner
def memory_attention(model):
    """The memory attention of the SAM 2 video family alone: the current frame's features ``[HW, 1, C]``
    on the ``memory_attention_rope_feat_sizes`` grid (the positions its rotary module turns by) attend to
    2 memory frames and 2 object pointers, ``[M, 1, C_memory]``; the pointers are excluded from RoPE.
    An EdgeTAM memory frame is 2 latent tokens and a ``memory_attention_rope_k_sizes`` grid."""
    config = model.config
    attention = model.memory_attention
    width, height = config.memory_attention_rope_feat_sizes
    k_sizes = getattr(config, "memory_attention_rope_k_sizes", None)
    frame = width * height if k_sizes is None else 2 + k_sizes[0] * k_sizes[1]
    frames, pointers = 2, 2
    memory_width = attention.layers[0].cross_attn_image.k_proj.in_features
    generator = torch.Generator().manual_seed(1)
    current = [torch.randn(width * height, 1, config.memory_attention_hidden_size, generator=generator) for _ in "fp"]
    memory = [torch.randn(frames * frame + pointers, 1, memory_width, generator=generator) for _ in "fp"]
    extra = {} if k_sizes is None else {"num_spatial_memory_tokens": frames}
    return attention(
        current_vision_features=current[0],
        current_vision_position_embeddings=current[1],
        memory=memory[0],
        memory_posision_embeddings=memory[1],
        num_object_pointer_tokens=pointers,
        **extra,
    )


@runner
def image_features(model):
    """The vision encoder's features of one ``[1, C, size, size]`` image (``model.get_image_features``)."""
    vision = _vision(model.config)
    size = config_value(vision, "image_size")
    channels = _first(vision, "num_channels", default=3)
    return model.get_image_features(torch.randn(1, channels, size, size, generator=torch.Generator().manual_seed(1)))


@runner
def atom_encoders(model):
    """ESMFold 2: each atom encoder (the trunk's input embedder's and the diffusion module's) over one
    structure of 6 tokens of 4 atoms, run as the trunk runs it: reference coordinates ``[1, N, 3]``
    (angstrom-sized), one-hot elements and atom names, each atom's token as its space uid."""
    from transformers.models.esmfold2.modeling_esmfold2 import EsmFold2AtomEncoder, EsmFold2AtomInputs

    config = model.config
    tokens, per_token = 6, 4
    atoms = tokens * per_token
    generator = torch.Generator().manual_seed(1)
    owner = torch.arange(atoms)[None] // per_token  # [1, N]: the token of each atom
    elements = torch.randint(1, config.max_atomic_number, (1, atoms), generator=generator)
    names = torch.randint(0, config.char_vocab_size, (1, atoms, config.max_chars), generator=generator)
    atom_inputs = EsmFold2AtomInputs(
        ref_pos=3.0 * torch.randn(1, atoms, 3, generator=generator),
        ref_charge=torch.zeros(1, atoms),
        atom_attention_mask=torch.ones(1, atoms, dtype=torch.bool),
        ref_element=torch.nn.functional.one_hot(elements, config.max_atomic_number).float(),
        ref_atom_name_chars=torch.nn.functional.one_hot(names, config.char_vocab_size).float(),
        ref_space_uid=owner,
        atom_to_token=owner,
    )
    outputs = []
    for encoder in (m for m in model.modules() if isinstance(m, EsmFold2AtomEncoder)):
        embeds, position_embeddings = encoder.embed_atoms(atom_inputs)
        mask = encoder.build_attention_mask(atom_inputs.atom_attention_mask, embeds)
        outputs.append(
            encoder(embeds, embeds, mask, position_embeddings, atom_inputs.atom_attention_mask, owner, tokens)
        )
    return tuple(outputs)


@runner
def protein_language_model(model):
    """ESMFold 2's ESMC protein language model on a random sequence (its hidden states feed the trunk)."""
    return model.esmc(input_ids=text_ids())


# ---------------------------------------------------------------- generic arguments by name
GENERIC: dict[str, Tensor] = {
    "input_features": Tensor("randn", (1, _AUDIO_FRAMES, "num_mel_bins")),  # [B, frames, mel bins]
    "input_values": Tensor("randn", (1, _SAMPLES)),  # [B, samples]
    "past_values": Tensor("randn", (1, 64)),  # a time series of 64 steps
    "pixel_values": Tensor("randn", (1, "num_channels", "image_size", "image_size")),  # one image [B, C, H, W]
}

# ---------------------------------------------------------------- per family
FAMILY_INPUTS: dict[str, dict[str, Any]] = {
    # ---- vision towers with a rotary embedding
    # Qwen2-VL style patch grids, flattened or as small images
    **{
        family: {"recipe": "patch_grid_image"}
        for family in (
            "cohere_compass",
            "ernie4_5_vl_moe",
            "exaone4_5",
            "glm4v",
            "glm4v_moe",
            "glm5_next",
            "glm_ocr",
            "lfm3_vl",
            "llava_onevision1_5",
            "ovis2_5",
            "minimax_m3_vl",
            "muse_glimmer",
            "muse_spark",
            "qwen2_5_omni",
            "qwen2_5_vl",
            "qwen2_vl",
            "qwen3_5",
            "qwen3_5_moe",
            "qwen3_omni_moe",
            "qwen3_vl",
            "qwen3_vl_moe",
            "qwen4_exp",
            "video_llama_3",
        )
    },
    **{family: {"recipe": "patch_grid_image_chw"} for family in ("kimi_k25", "paddleocr_vl")},
    "hunyuan_vl": {"recipe": "patch_grid_image_rows"},
    "hy_v4_vl": {"recipe": "patch_grid_image_row_ends"},  # HYV4VLModel.get_image_features: a newline per merged row
    "inkling2": {"recipe": "merged_patch_image"},
    "diffusion_gemma": {"recipe": "positioned_patches", "kwargs": ("pixel_values", "image_position_ids")},
    # one encoder for text and image patches, two position axes (row, column)
    "neomme": {"recipe": "document_page_and_text"},
    **{family: {"recipe": "whole_image"} for family in ("deepseek_ocr2", "llama4", "mistral_large4", "step3p7")},
    # a vision tower alone, any image size: 8 x 8 patches
    "pixtral": {
        "pixel_values": Tensor("randn", (1, "num_channels", lambda c: 8 * c.patch_size, lambda c: 8 * c.patch_size)),
        "image_sizes": lambda c: torch.tensor([[8 * c.patch_size, 8 * c.patch_size]]),
    },
    # a pair of images to match, [B, 2, C, H, W]: 16 x 12 coarse features after the 8x downsampling,
    # 4 x 3 attention tokens after the 4 x 4 aggregation (more rows than columns: a transposed grid shows)
    "efficientloftr": {"pixel_values": Tensor("randn", (1, 2, 3, 128, 96))},
    # one image per text position may attend to it: pixels [B, images, C, H, W], mask [B, S, images]
    "idefics": {
        "pixel_values": Tensor("randn", (1, 1, "num_channels", "image_size", "image_size")),
        "image_attention_mask": Tensor("ones", (1, INPUT_LENGTH, 1)),
    },
    # ---- audio towers with a rotary embedding
    # audio features in place of audio tokens in the text
    "dots3_note": {"recipe": ("patch_grid_image", "audio_in_text")},
    "glmasr": {"recipe": "audio_in_text"},
    "musicflamingo": {"recipe": "audio_in_text"},
    "nemotron3_5_transcribe": {"recipe": "audio_in_text_frames_first"},
    "csm": {"recipe": "codec_audio_in_text"},
    # Whisper-style [B, mel, frames]; 8 frames per text token (conv stride 2, downsample_factor 4)
    "voxtral_realtime": {"input_features": Tensor("randn", (1, "num_mel_bins", 8 * INPUT_LENGTH))},
    # conformer speech encoders: stacked filter-bank frames [B, frames, 2 x 80 mel] (speech only: no text ids)
    "wav2vec2_bert": {"input_features": Tensor("randn", (1, _AUDIO_FRAMES, "feature_projection_input_dim"))},
    "seamless_m4t": {
        "input_ids": None,
        "input_features": Tensor("randn", (1, _AUDIO_FRAMES, "feature_projection_input_dim")),
    },
    # CLVP: text and the mel spectrogram [B, mel, frames] that conditions its speech decoder
    "clvp": {"input_features": Tensor("randn", (1, "decoder_config.feature_size", 32))},
    # text and audio embedded side by side (contrastive)
    "pe_audio": {"input_values": Tensor("randn", (1, 1, _SAMPLES))},
    # video frames [B, frames, C, H, W] for the tiny frame classifier (hf_zoo_configs._frame_classifier)
    "pe_video": {"pixel_values_videos": Tensor("randn", (1, INPUT_LENGTH, 3, 32, 32))},
    "pe_audio_video": {
        "input_values": Tensor("randn", (1, 1, _SAMPLES)),
        "pixel_values_videos": Tensor("randn", (1, INPUT_LENGTH, 3, 32, 32)),
    },
    # codecs take [B, channels, samples]
    "mimi": {"input_values": Tensor("randn", (1, 1, _SAMPLES))},
    "pocket_tts_audio_tokenizer": {"input_values": Tensor("randn", (1, 1, _SAMPLES))},
    # acoustic waveform at 16 kHz and the semantic encoder's stacked features [B, frames, 2 x 80 mel]
    "neucodec": {
        "input_values": Tensor("randn", (1, 1, 16_000)),
        "input_features": Tensor("randn", (1, 50, "semantic_model_config.feature_projection_input_dim")),
    },
    "xcodec2": {
        "input_values": Tensor("randn", (1, 1, 16_000)),
        "input_features": Tensor("randn", (1, 50, "semantic_model_config.feature_projection_input_dim")),
    },
    # text plus one token per audio codebook at every position: [B, S, 1 + num_codebooks]
    "kyutai_speech_to_text": {"input_ids": Tensor("ids", (1, INPUT_LENGTH, lambda c: c.num_codebooks + 1))},
    # audio codes of every channel at every position, [B, S, num_channels] (the 2-D form
    # [B * num_channels, S] is transposed and then viewed, which fails on its non-contiguous result)
    "dia": {"decoder_input_ids": Tensor("ids", (1, INPUT_LENGTH // 2, "decoder_config.num_channels"))},
    # ---- submodules in place of the forward (see RUNNERS)
    **dict.fromkeys(("sam2_video", "edgetam_video"), {"runner": "memory_attention"}),
    "sam3_tracker_video": {"runner": ("image_features", "memory_attention")},  # its ViT has RoPE too
    "esmfold2": {"runner": ("atom_encoders", "protein_language_model")},
    # ---- other inputs
    # a video clip [B, frames, C, H, W]
    "vjepa2": {"pixel_values_videos": Tensor("randn", (1, "frames_per_clip", "in_chans", "crop_size", "crop_size"))},
    # a vision-language prefix (the VLM's RoPE), then a chunk of actions after it (the action expert's)
    "pi05": {"recipe": "camera_prefix_and_action_chunk", "kwargs": ("timestep_embeds",)},
    # a protein sequence beside the text, read by cross-attention
    "evolla": {
        "protein_input_ids": Tensor("ids", (1, INPUT_LENGTH)),
        "protein_attention_mask": Tensor("ones", (1, INPUT_LENGTH)),
    },
    # a draft block of noise embeddings after the target model's hidden states of the accepted tokens
    "muse_glimmer_assistant": {
        "noise_embeds": Tensor("randn", (1, "block_size", "hidden_size")),
        "context_hidden_states": Tensor("randn", (1, INPUT_LENGTH, lambda c: c.hidden_size * len(c.target_layer_ids))),
    },
    # the compressors keep their windows in the cache: without one they do not run
    "deepseek_v4": {"use_cache": True},
}


def inputs_for(family: str, model) -> dict[str, Any] | Run:
    """Keyword arguments for ``model.forward`` (a tiny model of ``family``), or the :class:`Run` of the
    family's runners."""
    config = model.config
    spec = FAMILY_INPUTS.get(family, {})
    if "runner" in spec:
        return Run((spec["runner"],) if isinstance(spec["runner"], str) else tuple(spec["runner"]))
    params = inspect.signature(model.forward).parameters
    inputs: dict[str, Any] = {}
    if "input_ids" in params:
        inputs["input_ids"] = text_ids()
    if getattr(config, "is_encoder_decoder", False) and "decoder_input_ids" in params:
        inputs["decoder_input_ids"] = text_ids(INPUT_LENGTH // 2, seed=1)
    if "use_cache" in params:
        inputs["use_cache"] = False
    for name, value in spec.items():
        if name == "recipe":
            for one in (value,) if isinstance(value, str) else value:
                RECIPES[one](model, inputs)
        elif name == "kwargs":
            continue
        elif isinstance(value, Tensor):
            inputs[name] = make(value, config, seed=len(inputs))
        elif callable(value):
            inputs[name] = value(config)
        else:
            inputs[name] = value
    main = getattr(model, "main_input_name", None)
    for name, param in params.items():
        needed = param.default is inspect.Parameter.empty or name == main
        if needed and name not in inputs and name in GENERIC:
            inputs[name] = make(GENERIC[name], config, seed=len(inputs))
    # Keyword arguments the forward takes through **kwargs are passed when the family names them.
    passed = set(params) | set(spec.get("kwargs", ()))
    return {name: value for name, value in inputs.items() if value is not None and name in passed}
