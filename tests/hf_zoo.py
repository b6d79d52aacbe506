"""Sweep every model family in the installed transformers that defines a rotary embedding.

A family is a folder ``transformers/models/<name>/`` whose ``modeling_<name>.py`` defines a class
named ``*RotaryEmbedding``, ``*RotaryPositionalEmbedding`` or ``*RopePositionEmbedding`` (the names
:func:`ropelab.integrations.hf.patch` replaces, ``hf.ROTARY_CLASS_NAME``), or ``*Rope*Attention``
(RoPE computed inside the attention, V-JEPA 2: reported as refused, with that reason). Each is built tiny from its own config class (``hf_zoo_configs``: random
weights, rope settings left at the family's defaults), run on inputs that reach every tower holding a
rotary module (``hf_zoo_inputs``: text, and pixels or audio where the family has them), patched with
:func:`ropelab.integrations.hf.patch`, and run again. Outcomes:

- ``identical``: every output tensor of the patched model is within ``TOLERANCE`` of the original's,
  and RoPE really is exercised: doubling the angles of any one patched rotary module moves the
  output, and so does giving every patched rotation another base;
- ``not exercised``: the patch matched, but some patched rotary module is not reached by the inputs,
  or changing its rotation does not move the output;
- ``mismatch``: patch accepted the model and the output differs (a silent error: a test failure);
- ``patched forward fails``: patch accepted the model and the forward then raises (a test failure);
- ``refused``: patch raised :class:`~ropelab.errors.PatchError` (loud; the reason is kept);
- ``patch crashed``: patch raised something other than a ropelab error (a test failure);
- ``tables only``: the model builds but the sweep cannot run it; patch accepted it, so its cos/sin
  matched at patch time, but no forward was compared;
- ``not buildable``: the sweep could not build the original model (the reason is kept).

Before patching, each rotary module's angles are doubled in turn (a forward hook on its output,
``double_angles``) on the original model; the towers whose rotation then moves the output are
reported as "towers exercised" (text, vision, audio, protein), so the inputs are checked even for a
family that patch refuses. Rotary modules that the forward cannot exercise by construction are
exempt, each with its reason (``EXEMPT_ROTARY``). Weights are random, except that zero-initialised
gates and projections and all-zero codebooks, which would hide a tower from the output, get values.

Run as a script to print the table, with a section on what remains refused or unbuildable grouped
by cause (``CAUSES``), and write ``benchmarks/results/hf_zoo.md``; name families to run only those
(the file is then not written unless ``--out`` is given). ``--against TABLE`` (after ``--out``) adds
a section listing the families whose outcome differs from that earlier table's (``make test-latest``
compares the newest transformers with the pinned one).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import re
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import hf_zoo_configs
import hf_zoo_inputs
import torch
import transformers
from transformers.cache_utils import Cache

from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import PatchError, RopelabError
from ropelab.integrations import hf
from ropelab.integrations.hf.adapters import _exact_sin_cos_table
from ropelab.integrations.hf.patching import _ROPE_IN_ATTENTION

TOLERANCE = 1e-4
MOVED = 1e-3  # a changed rotation must move the output by more than this (relative to its scale)
SHRINK_STD = hf_zoo_configs.SHRINK["initializer_range"]
FAILING = ("mismatch", "patched forward fails", "patch crashed")
ORDER = (
    "identical",
    "not exercised",
    "tables only",
    "mismatch",
    "patched forward fails",
    "refused",
    "patch crashed",
    "not buildable",
)
TOWERS = ("text", "vision", "audio", "protein")
_TEXT = re.compile(r"language_model|text_model|text_encoder")
_VISION = re.compile(r"vision|visual|image|patch_positional|pixel", re.IGNORECASE)
_AUDIO = re.compile(r"audio|acoustic|speech|asr|diariz|codec|mimi", re.IGNORECASE)

# Families whose model is not what AutoModel builds from their config (no base model in the auto
# mappings, or a mapping AutoModel does not resolve).
MODEL_CLASSES: dict[str, str] = {
    "eomt_dinov3": "EomtDinov3ForUniversalSegmentation",
    "esmfold2": "EsmFold2Model",
    "evolla": "EvollaModel",
}

# Families built from one sub-config because the whole model needs a package the test extras cannot
# install; the towers left out hold no rotary module. Gemma 3n's vision tower is a timm MobileNet, and
# timm needs torchvision, whose PyPI wheel is built against CUDA torch and does not load with the CPU build.
TOWER_ONLY: dict[str, str] = {"gemma3n": "text_config"}

# Rotary modules that the family's forward cannot exercise, whatever its inputs (``*`` stands for a
# layer index). They are left out of the per-module check and named, with the reason, in the result.
EXEMPT_ROTARY: dict[str, dict[str, str]] = {
    "granite_swa": {"rotary_emb": "built by the parent class and unused: rotary_embs hold the per-layer bases"},
    "granitemoe_swa": {"rotary_emb": "built by the parent class and unused: rotary_embs hold the per-layer bases"},
    "idefics": {
        "gated_cross_attn_layers.*.cross_attn.rotary_emb": "built in every attention layer, applied only in self-attention"
    },
    "neucodec": {
        "acoustic_decoder.rotary_emb": "rotates by head index, the same angle for q and k at every step, so it cancels in q.k"
    },
    "xcodec2": {
        "acoustic_decoder.rotary_emb": "rotates by head index, the same angle for q and k at every step, so it cancels in q.k"
    },
    "csm": {
        "codec_model.decoder.decoder_transformer.rotary_emb": "the codec decodes audio only in generate(); the mimi family exercises it"
    },
    "blt": {
        "patcher.rotary_emb": "the patcher's entropies reach the output only as discrete patch boundaries, "
        "which need not move when its rotation does"
    },
    # PE Audio-Video's forward runs its joint audio-video encoder; its audio and video sub-models (the
    # pe_audio and pe_video families, which exercise them) run only in get_audio_embeds / get_video_embeds.
    **{
        "pe_audio_video": {
            f"{model}.{part}.rotary_emb": "a contrastive sub-model that forward() does not run; "
            f"the {family} family exercises it"
            for model, family, parts in (
                ("audio_model", "pe_audio", ("text_model", "audio_encoder")),
                ("video_model", "pe_video", ("text_model", "video_encoder")),
            )
            for part in parts
        }
    },
    "nemotron3_5_transcribe": {
        "word_timestamp_encoder.rotary_emb": "runs only in get_word_timestamp_hidden_states(), not in forward()"
    },
}

# Towers the path and class name do not tell.
TOWER_OF: dict[str, dict[str, str]] = {
    "eomt_dinov3": {"rope_embeddings": "vision"},  # DINOv3 ViT backbone of a segmenter
    "musicflamingo": {"pos_emb": "audio"},  # rotary time embedding of the audio features
    "pe_video": {"video_encoder.rotary_emb": "vision"},  # over video frames
    "pe_audio_video": {
        "audio_video_encoder.embedder.video_encoder.rotary_emb": "vision",
        "audio_video_encoder.rotary_emb": "audio",
    },  # the joint encoder, audio first
    "evolla": {"protein_encoder.model.rotary_embeddings": "protein"},  # SaProt protein encoder
    "efficientloftr": {"rotary_emb": "vision"},  # 2D rotation of the coarse image features
    "esmfold2": {
        "input_embedder.atom_encoder.rotary_emb": "protein",  # 3D rotation of atom coordinates
        "structure_head.atom_encoder.rotary_emb": "protein",
        "esmc.rotary_emb": "protein",
    },
    "dinov3_vit": {"rope_embeddings": "vision"},  # patch-centre RoPE of a ViT
    "sapiens2": {"rope_embeddings": "vision"},
}
# Rotary modules that serve several towers: one encoder over text tokens and image patches.
SHARED_TOWERS: dict[str, dict[str, tuple[str, ...]]] = {
    "neomme": {"rotary_emb": ("text", "vision")},  # patches at (row, column) positions, text on both axes
}


@dataclass
class Result:
    family: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0
    towers: tuple[str, ...] = ()  # towers whose rotary module moves the unpatched output
    missed: tuple[str, ...] = ()  # rotary modules the inputs do not exercise
    error: str = ""  # the whole message of the refusal or build failure (detail is cut short)


def rotary_families() -> list[str]:
    """Folders under ``transformers/models`` whose modeling file defines a rotary class (see the module
    docstring): one ``hf.ROTARY_CLASS_NAME`` names, or an attention computing RoPE itself."""
    root = Path(transformers.__file__).parent / "models"
    rotary = f"(?:{hf.ROTARY_CLASS_NAME.pattern}|{_ROPE_IN_ATTENTION.pattern})"
    pattern = re.compile(rf"^class {rotary}\(", re.MULTILINE)
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(pattern.search(f.read_text(encoding="utf-8")) for f in folder.glob("modeling_*.py")):
            found.append(folder.name)
    return found


def build(family: str):
    """A tiny random-weight model of ``family`` (its base ``AutoModel``), and its inputs."""
    config = hf_zoo_configs.tiny_config(family)
    if family in TOWER_ONLY:
        config = getattr(config, TOWER_ONLY[family])
    torch.manual_seed(0)
    if family in MODEL_CLASSES:
        model = getattr(transformers, MODEL_CLASSES[family])._from_config(config, attn_implementation="eager")
    else:
        model = transformers.AutoModel.from_config(config, attn_implementation="eager")
    model.eval()
    _fill_empty_codebooks(model)
    _wake_zero_parameters(model)
    return model, hf_zoo_inputs.inputs_for(family, model)


def _wake_zero_parameters(model) -> None:
    """Parameters some families initialise to zero, so that a block starts as the identity (output
    projections, Flamingo-style tanh gates, a qk-norm temperature): with random weights elsewhere
    they would hide the attention, and its rotation, from the output. Give them random values (gates
    and other single numbers: 1). Biases stay zero, and so do a rotary module's own parameters (Mistral
    Large 4's learned frequency scales, transformers >= 5.25): they would change the rotation itself,
    which patch refuses (tests/test_hf_models.py checks that refusal)."""
    generator = torch.Generator().manual_seed(0)
    rotary = tuple(
        f"{name}." for name, module in model.named_modules() if hf.ROTARY_CLASS_NAME.fullmatch(type(module).__name__)
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("bias") or not parameter.is_floating_point() or parameter.any() or name.startswith(rotary):
                continue
            if parameter.numel() == 1:
                parameter.fill_(1.0)
            else:
                parameter.copy_(SHRINK_STD * torch.randn(parameter.shape, generator=generator))


def _fill_empty_codebooks(model) -> None:
    """Random centroids for vector quantizers that start as zeros (the trained ones come from a
    checkpoint). With all-zero centroids every frame gets code 0, the decoder sees the same vector at
    every position, and no rotation can change its output."""
    generator = torch.Generator().manual_seed(0)
    for name, buffer in model.named_buffers():
        if name.endswith("codebook.embed_sum") and buffer.is_floating_point() and not buffer.any():
            buffer.copy_(torch.randn(buffer.shape, generator=generator))


# ---------------------------------------------------------------- running and comparing
def _tensors(output) -> list[torch.Tensor]:
    """Every floating-point tensor of a model output, in order (nested tuples and dicts included;
    caches left out)."""
    if isinstance(output, Cache):
        return []
    if isinstance(output, torch.Tensor):
        return [output] if output.is_floating_point() else []
    if isinstance(output, dict):
        output = output.values()
    if isinstance(output, (list, tuple)) or hasattr(output, "__iter__") and not isinstance(output, (str, bytes)):
        with contextlib.suppress(TypeError):
            return [t for item in output for t in _tensors(item)]
    return []


def _run(model, inputs) -> list[torch.Tensor]:
    """The float output tensors of ``model(**inputs)``, or of ``inputs(model)`` for a family's runners
    (``hf_zoo_inputs.Run``)."""
    torch.manual_seed(0)  # a forward that samples (noise, dropout-like routing) samples the same
    with torch.no_grad():
        found = [t.float() for t in _tensors(inputs(model) if callable(inputs) else model(**inputs))]
    if not found:
        raise TypeError("the output holds no floating-point tensor")
    return found


def _distance(got: list[torch.Tensor], want: list[torch.Tensor]) -> float:
    """Largest absolute difference of an output tensor, relative to that tensor's largest value (at
    least 1), over all output tensors; ``inf`` when the shapes differ."""
    if [t.shape for t in got] != [t.shape for t in want]:
        return float("inf")
    return max(((g - w).abs().max() / w.abs().max().clamp(min=1.0)).item() for g, w in zip(got, want) if w.numel())


# ---------------------------------------------------------------- is RoPE exercised?
def rotary_modules(model) -> list[str]:
    """Qualified names of the model's rotary modules (classes ``hf.ROTARY_CLASS_NAME`` names)."""
    return [name for name, m in model.named_modules() if name and hf.ROTARY_CLASS_NAME.fullmatch(type(m).__name__)]


def exempt(family: str, name: str) -> str | None:
    """Why the forward of ``family`` cannot exercise its rotary module ``name``, if it cannot."""
    for pattern, why in EXEMPT_ROTARY.get(family, {}).items():
        if re.fullmatch(re.escape(pattern).replace(r"\*", r"\d+"), name):
            return why
    return None


def tower(model, name: str, family: str = "") -> str:
    """The tower a rotary module sits in, read from its path (else its class name's last word)."""
    if name in TOWER_OF.get(family, {}):
        return TOWER_OF[family][name]
    for kind, pattern in (("text", _TEXT), ("vision", _VISION), ("audio", _AUDIO)):
        if pattern.search(name):
            return kind
    cls = type(model.get_submodule(name)).__name__
    if cls.endswith("VisionRotaryEmbedding"):
        return "vision"
    audio_input = getattr(model, "main_input_name", "") in ("input_values", "input_features")
    text_decoder = "decoder_input_ids" in inspect.signature(model.forward).parameters and name.startswith("decoder")
    if cls.endswith("AudioRotaryEmbedding") or audio_input and not text_decoder:
        return "audio"
    return "text"


def served_towers(model, name: str, family: str = "") -> tuple[str, ...]:
    """The towers a rotary module serves: its own (see ``tower``), or those of a shared encoder."""
    return SHARED_TOWERS.get(family, {}).get(name) or (tower(model, name, family),)


def double_angles(output, kind: str | None = None):
    """The same rotary output for twice the angles: (cos, sin) by the double-angle formulas (also when
    ``kind`` is ``"stacked"``: one ``[2, ...]`` tensor of cos and sin, as ``hf.rotary_output_kind`` says),
    complex ``freqs_cis`` squared, a real angle table doubled. ``None`` for an output of another kind."""
    if kind == "stacked" and isinstance(output, torch.Tensor) and output.shape[:1] == (2,):
        return torch.stack(double_angles((output[0], output[1])))
    if (
        isinstance(output, tuple)
        and len(output) == 2
        and all(isinstance(t, torch.Tensor) for t in output)
        and output[0].shape == output[1].shape
        and not output[0].is_complex()
    ):
        cos, sin = output
        return cos * cos - sin * sin, 2 * sin * cos
    if isinstance(output, torch.Tensor) and output.is_complex():
        return output * output
    if isinstance(output, torch.Tensor) and output.is_floating_point():
        return 2 * output
    return None


def reach(model, inputs, want, name: str) -> tuple[int, float]:
    """(calls, relative move of the output) when the module ``name`` turns every pair twice as far."""
    calls = []

    def hook(module, args, output):
        changed = double_angles(output, hf.rotary_output_kind(module))
        calls.append(changed is not None)
        return changed

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        moved = _distance(_run(model, inputs), want)
    finally:
        handle.remove()
    return (len(calls) if all(calls) else -1), moved


def _unreached(model, inputs, want, names) -> dict[str, str]:
    """Rotary modules whose doubled angles do not move the output, each with why."""
    missed = {}
    for name in names:
        calls, moved = reach(model, inputs, want, name)
        if calls == 0:
            missed[name] = "not called"
        elif calls < 0:
            missed[name] = f"returns {type(model.get_submodule(name)).__name__} output of an unknown kind"
        elif not moved > MOVED:
            missed[name] = f"doubling its angles moves the output by only {moved:.1e}"
    return missed


def _holds_rope(value) -> bool:
    if isinstance(value, Mapping) and not isinstance(value, LayerTypeRope):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_rope(item) for item in value)
    return isinstance(value, (RopeConfig, LayerTypeRope))


def _rebased(value):
    """``value`` with every RopeConfig in it (alone, in a LayerTypeRope, or in a dict, list or tuple)
    given base 2."""
    if isinstance(value, RopeConfig):  # every pair turns about a radian per position (every slot's base too)
        return value.replace(base=2.0, axial_bases=value.axial_bases and (2.0,) * len(value.axial_bases))
    if isinstance(value, LayerTypeRope):
        return LayerTypeRope({name: _rebased(cfg) for name, cfg in value.configs.items()}, value.layer_types)
    if isinstance(value, dict):
        return {key: _rebased(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_rebased(item) for item in value)
    return value


def _perturb(model, replaced: list[tuple[torch.nn.Module, str, object]] | None = None) -> int:
    """Give every patched rotation another base (in place); the number of modules changed. Any module
    holding a RopeConfig (HFRotaryAdapter's ``cfg``, a LayerTypeRope, or a dict of them) is rebased,
    and a GPT-J style ``embed_positions`` table is rewritten by ropelab for base 2. Each replaced
    ``(module, attribute, old value)`` is appended to ``replaced`` when given (see :func:`rebased`)."""
    changed = 0
    for module in model.modules():
        if isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim"):
            cfg = RopeConfig.from_hf(model.config).replace(base=2.0)
            if replaced is not None:
                replaced.append((module, "embed_positions", module.embed_positions))
            module.embed_positions = _exact_sin_cos_table(cfg, module.embed_positions.shape[0], module.embed_positions)
            changed += 1
            continue
        names = [name for name, value in vars(module).items() if not name.startswith("_") and _holds_rope(value)]
        for name in names:
            if replaced is not None:
                replaced.append((module, name, getattr(module, name)))
            setattr(module, name, _rebased(getattr(module, name)))
        changed += bool(names)
    return changed


@contextlib.contextmanager
def rebased(model):
    """Inside the block every patched rotation of ``model`` has another base (:func:`_perturb`, whose
    count of changed modules it yields); on leaving, each replaced attribute gets its old value back."""
    replaced: list[tuple[torch.nn.Module, str, object]] = []
    try:
        yield _perturb(model, replaced)
    finally:
        for module, name, value in reversed(replaced):
            setattr(module, name, value)


# ---------------------------------------------------------------- one family
def _short(error: BaseException, limit: int = 160) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ").replace("|", "/")
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _collapse(names) -> str:
    """``layers.0.attn.rotary_emb, layers.1.attn.rotary_emb`` -> ``layers.*.attn.rotary_emb``."""
    return ", ".join(dict.fromkeys(re.sub(r"\.\d+\.", ".*.", n) for n in names))


def sweep_one(family: str) -> Result:
    start = time.perf_counter()
    towers: tuple[str, ...] = ()
    missed: dict[str, str] = {}

    def done(outcome, detail="", error: BaseException | None = None):
        full = f"{type(error).__name__}: {error}" if error is not None else detail
        if family in TOWER_ONLY:
            detail += f"; built from {TOWER_ONLY[family]} alone (the other towers need timm and hold no RoPE)"
        return Result(family, outcome, detail, time.perf_counter() - start, towers, tuple(missed), full)

    try:
        model, inputs = build(family)
    except Exception as error:  # noqa: BLE001 (every way a build can fail is a reason to report)
        return done("not buildable", _short(error), error)
    try:
        want = _run(model, inputs)
    except Exception as error:  # noqa: BLE001
        # The sweep cannot run it, but patch can still check its tables.
        ran = _short(error, 100)
        try:
            hf.patch(model)
        except PatchError as refusal:
            return done("refused", _short(refusal) + f" (forward not run: {ran})", refusal)
        except Exception as crash:  # noqa: BLE001
            return done("patch crashed", _short(crash) + f" (forward not run: {ran})")
        return done("tables only", f"patch accepted, its cos/sin checked; forward not run: {ran}")
    names = rotary_modules(model)
    exempt_names = {name: why for name in names if (why := exempt(family, name))}
    checked = [name for name in names if name not in exempt_names]
    missed = _unreached(model, inputs, want, checked)
    towers = tuple(t for t in TOWERS if any(t in served_towers(model, n, family) for n in checked if n not in missed))
    note = f"; inputs miss {_collapse(missed)} ({next(iter(missed.values()))})" if missed else ""
    try:
        hf.patch(model)
    except PatchError as error:
        return done("refused", _short(error) + note, error)
    except RopelabError as error:
        return done("patch crashed", "not a PatchError: " + _short(error))
    except Exception as error:  # noqa: BLE001
        return done("patch crashed", _short(error))
    try:
        got = _run(model, inputs)
    except Exception as error:  # noqa: BLE001
        return done("patched forward fails", _short(error))
    error = _distance(got, want)
    if error == float("inf"):
        return done("mismatch", f"output shapes {[tuple(t.shape) for t in got]} != {[tuple(t.shape) for t in want]}")
    if not error <= TOLERANCE:
        return done("mismatch", f"max error {error:.2e} > {TOLERANCE:g}")
    exempt_note = "".join(
        f"; {where} is exempt: {why}"
        for where, why in dict.fromkeys((_collapse([n]), why) for n, why in exempt_names.items())
    )
    missed_after = _unreached(model, inputs, want, checked)
    if missed_after:
        why = next(iter(missed_after.values()))
        return done("not exercised", f"patched {_collapse(missed_after)}: {why}{exempt_note}")
    if not _perturb(model) and checked:
        # No RopeConfig to rebase (a replacement that keeps its RoPE elsewhere): the per-module
        # check above is the evidence.
        return done(
            "identical",
            f"error {error:.1e}; each of {len(checked)} rotary modules moves it; "
            f"no RopeConfig found to rebase{exempt_note}",
        )
    moved = _distance(_run(model, inputs), want)
    if not moved > MOVED:
        return done("not exercised", f"another base moves the output by only {moved:.1e}{exempt_note}")
    return done(
        "identical",
        f"error {error:.1e}; each of {len(checked)} rotary modules moves it; "
        f"another base moves it {moved:.1e}{exempt_note}",
    )


def sweep(families: list[str] | None = None) -> list[Result]:
    results = []
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        for family in families or rotary_families():
            results.append(sweep_one(family))
    return results


# ---------------------------------------------------------------- the report
def counts(results: list[Result]) -> dict[str, int]:
    return {outcome: sum(r.outcome == outcome for r in results) for outcome in ORDER}


def table(results: list[Result], seconds: float | None = None) -> str:
    lines = [f"# transformers {transformers.__version__}: {len(results)} families with a rotary embedding", ""]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts(results).items() if n)
    lines += [summary + (f" (sweep: {seconds:.0f} s)" if seconds is not None else ""), ""]
    buildable = [r for r in results if r.outcome != "not buildable"]
    identical = sum(r.outcome == "identical" for r in buildable)
    lines += [
        f"Identical: {identical} of {len(buildable)} buildable families ({100 * identical / max(1, len(buildable)):.0f}%). "
        "Towers exercised: the towers (text, vision, audio, protein) whose rotary module, turned twice as "
        "far, moves the output of the unpatched model on the sweep's inputs.",
        "",
    ]
    lines += remains(results)
    lines += ["## All families", "", "| family | outcome | towers exercised | detail | s |", "|---|---|---|---|---|"]
    rank = {outcome: i for i, outcome in enumerate(ORDER)}
    for r in sorted(results, key=lambda r: (rank[r.outcome], r.family)):
        lines.append(f"| {r.family} | {r.outcome} | {', '.join(r.towers)} | {r.detail} | {r.seconds:.1f} |")
    return "\n".join(lines) + "\n"


# Why a family is not identical, read from its result: (outcome, pattern in the detail, cause). First match wins.
CAUSES: tuple[tuple[str, str, str], ...] = (
    ("refused", r"complex freqs_cis", "complex freqs_cis: the attention multiplies by complex numbers"),
    ("refused", r"RoPE inside attention", "RoPE inside attention, no module to replace"),
    (
        "refused",
        r"calling it as forward\(x, position_ids\) fails",
        "rotary module with another call signature (not forward(x, position_ids) -> (cos, sin))",
    ),
    ("refused", r"head_dim=None is invalid", "rotary module whose config gives no head size ropelab can read"),
    ("refused", r"partial_rotary_factor=\d", "partial_rotary_factor above 1"),
    ("refused", r"", "other refusals"),
    (
        "not buildable",
        r"requires the (\w+) library",
        "needs timm, which needs torchvision (its PyPI wheel does not load with CPU torch)",
    ),
    ("not buildable", r"", "other build failures"),
    ("tables only", r"missing \d+ required positional arguments", "forward needs inputs the sweep does not build"),
    ("tables only", r"", "forward fails on the sweep's inputs"),
    ("not exercised", r"cancels in q.k", "RoPE by head index, which cancels in q.k"),
    ("not exercised", r"", "a rotary module the inputs do not reach"),
)


def cause(result: Result) -> str | None:
    for outcome, pattern, why in CAUSES:
        if result.outcome == outcome and re.search(pattern, result.error or result.detail):
            return why
    return None


def remains(results: list[Result]) -> list[str]:
    """Markdown lines: what remains refused, unbuildable or not compared, grouped by cause."""
    groups: dict[str, list[Result]] = {}
    for result in results:
        if (why := cause(result)) is not None:
            groups.setdefault(why, []).append(result)
    lines = ["## What remains refused or unbuildable, and why", ""]
    for why, members in sorted(groups.items(), key=lambda item: (item[1][0].outcome, -len(item[1]))):
        outcome = members[0].outcome
        names = ", ".join(sorted(r.family for r in members))
        lines.append(f"- **{why}** ({outcome}, {len(members)}): {names}")
    missed = sorted(r.family for r in results if r.missed and r.outcome != "not exercised")
    if missed:
        lines.append(
            f"- **inputs that miss a rotary module** (before patch; see the detail column): {', '.join(missed)}"
        )
    not_run = sorted(r.family for r in results if "forward not run" in r.detail)
    if not_run:
        lines.append(
            f"- **forward not run by the sweep** (its inputs are not built; see the detail column): "
            f"{', '.join(not_run)}"
        )
    return lines + [""]


# ---------------------------------------------------------------- drift between two runs
_TITLE = re.compile(r"^# transformers (\S+):")
_ROW = re.compile(r"^\| (\w+) \| ([a-z ]+) \|")


def read_table(text: str) -> tuple[str, dict[str, str]]:
    """The transformers version and ``{family: outcome}`` of a table written by :func:`table`."""
    lines = text.splitlines()
    title = _TITLE.match(lines[0]) if lines else None
    if title is None:
        raise ValueError("not a zoo table: its first line does not name the transformers version")
    rows = (_ROW.match(line) for line in lines[lines.index("## All families") :])
    return title.group(1), {row.group(1): row.group(2) for row in rows if row and row.group(1) != "family"}


def drift(pinned_text: str, results: list[Result]) -> list[str]:
    """Markdown lines: the families whose outcome on this run differs from the pinned table's (a family
    only one of the two versions has counts as ``absent`` in the other)."""
    version, pinned = read_table(pinned_text)
    now = {r.family: r.outcome for r in results}
    changed = sorted(f for f in pinned.keys() | now.keys() if pinned.get(f) != now.get(f))
    lines = [f"## Drift: transformers {transformers.__version__} against the pinned {version}", ""]
    if not changed:
        return lines + [f"Every family has the outcome it has on transformers {version}.", ""]
    lines += [f"| family | on {version} | on {transformers.__version__} |", "|---|---|---|"]
    lines += [f"| {f} | {pinned.get(f, 'absent')} | {now.get(f, 'absent')} |" for f in changed]
    return lines + [""]


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    out = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "hf_zoo.md"
    explicit = args[:1] == ["--out"]
    if explicit:
        out, args = Path(args[1]), args[2:]
    against = None
    if args[:1] == ["--against"]:  # the pinned run's table, to list what changed
        against, args = Path(args[1]).read_text(encoding="utf-8"), args[2:]
    start = time.perf_counter()
    found = sweep(args or None)
    text = table(found, time.perf_counter() - start)
    if against is not None:
        text += "\n" + "\n".join(drift(against, found))
    print(text)
    if explicit or not args:
        out.write_text(text, encoding="utf-8")
