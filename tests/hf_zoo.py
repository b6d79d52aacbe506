"""Sweep every model family in the installed transformers that defines a rotary embedding.

A family is a folder ``transformers/models/<name>/`` whose ``modeling_<name>.py`` defines a class
named ``*RotaryEmbedding``. Each is built tiny from its own config class (random weights, rope
settings left at the family's defaults), run on a few token ids, patched with
:func:`ropelab.integrations.hf.patch`, and run again. Outcomes:

- ``identical``: the patched model's output is within ``TOLERANCE`` of the original's, and RoPE
  really is exercised: swapping every patched rotation for one with another base moves the output;
- ``not exercised``: the patch matched, but perturbing the rotation does not move the output (the
  text forward does not reach the patched rotary module, e.g. it sits in a vision tower);
- ``mismatch``: patch accepted the model and the output differs (a silent error: a test failure);
- ``patched forward fails``: patch accepted the model and the forward then raises (a test failure);
- ``refused``: patch raised :class:`~ropelab.errors.PatchError` (loud; the reason is kept);
- ``patch crashed``: patch raised something other than a ropelab error (a test failure);
- ``tables only``: the model builds but the sweep cannot run it on token ids (it needs pixels,
  audio, ...); patch accepted it, so its cos/sin matched at patch time, but no forward was compared;
- ``not buildable``: the sweep could not build the original model (the reason is kept).

Run as a script to print the table and write ``benchmarks/results/hf_zoo.md``.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers
from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES
from transformers.models.auto.modeling_auto import MODEL_MAPPING_NAMES

from ropelab.errors import PatchError, RopelabError
from ropelab.integrations import hf

TOLERANCE = 1e-4
MOVED = 1e-3  # the perturbed rotation must move the output by more than this
FAILING = ("mismatch", "patched forward fails", "patch crashed")
ORDER = ("identical", "not exercised", "tables only", "mismatch", "patched forward fails", "refused",
         "patch crashed", "not buildable")

# Generic shrink: every key a config class has from this table is set to the small value.
_SHRINK = {
    "hidden_size": 64, "d_model": 64, "n_embd": 64, "dim": 64, "embed_dim": 64, "model_dim": 64,
    "num_attention_heads": 4, "n_head": 4, "num_heads": 4, "n_heads": 4,
    "encoder_attention_heads": 4, "decoder_attention_heads": 4, "encoder_num_attention_heads": 4,
    "decoder_num_attention_heads": 4, "encoder_num_key_value_heads": 4, "decoder_num_key_value_heads": 4,
    "num_key_value_heads": 4, "n_kv_heads": 4, "num_kv_heads": 4, "multi_query_group_num": 4,
    "head_dim": 16, "kv_channels": 16,
    "intermediate_size": 64, "ffn_dim": 64, "d_ff": 64, "n_inner": 64, "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64, "ffn_hidden_size": 64, "moe_intermediate_size": 32,
    "shared_expert_intermediate_size": 32, "expert_intermediate_size": 32, "intermediate_size_mlp": 64,
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2, "encoder_layers": 2,
    "decoder_layers": 2, "depth": 2,
    "initializer_range": 0.2,  # sharper attention than the default 0.02, so that positions matter
    "vocab_size": 256, "vocab_size_per_layer_input": 256, "hidden_size_per_layer_input": 16,
    "encoder_hash_byte_group_vocab": 256,
    "num_experts": 4, "num_local_experts": 4, "n_routed_experts": 4, "moe_num_experts": 4,
    "num_experts_per_tok": 2, "moe_topk": 2, "n_group": 1, "topk_group": 1, "n_shared_experts": 1,
    "kv_lora_rank": 16, "q_lora_rank": 32, "qk_rope_head_dim": 16, "qk_nope_head_dim": 16, "v_head_dim": 16,
}
_INPUT_LENGTH = 12


@dataclass
class Result:
    family: str
    outcome: str
    detail: str = ""
    seconds: float = 0.0


def rotary_families() -> list[str]:
    """Folders under ``transformers/models`` whose modeling file defines a ``*RotaryEmbedding`` class."""
    root = Path(transformers.__file__).parent / "models"
    pattern = re.compile(r"^class \w+RotaryEmbedding\b", re.MULTILINE)
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if any(pattern.search(f.read_text(encoding="utf-8")) for f in folder.glob("modeling_*.py")):
            found.append(folder.name)
    return found


def _model_type(family: str) -> str | None:
    """The model_type of the family's main config: the one whose config class lives in the folder."""
    module = importlib.import_module(f"transformers.models.{family}")
    candidates = []
    for model_type, class_name in CONFIG_MAPPING_NAMES.items():
        cls = getattr(module, class_name, None)
        if cls is not None and cls.__module__.startswith(f"transformers.models.{family}.") \
                and model_type in MODEL_MAPPING_NAMES:
            candidates.append(model_type)
    if not candidates:
        return None
    for preferred in (family, family.replace("_", "-")):
        if preferred in candidates:
            return preferred
    return min(candidates, key=len)


def _settable(cls, key: str) -> bool:
    return not isinstance(getattr(cls, key, None), property)


def _has(config, key: str) -> bool:
    try:
        getattr(config, key)
    except AttributeError:
        return False
    except Exception:  # noqa: BLE001 (heterogeneous per-layer configs refuse ambiguous reads: the key exists)
        return True
    return True


def _fit_layer_lists(default, cls, kwargs: dict) -> None:
    """One layer of each kind, in the order the kinds first appear, the same length in every list."""
    layer_keys = [k for k in ("num_hidden_layers", "num_layers", "n_layer") if k in kwargs]
    lists = {}
    for key in ("layer_types", "mlp_layer_types", "block_types", "layers_block_type"):
        value = vars(default).get(key)
        if layer_keys and isinstance(value, (list, tuple)) and value and _settable(cls, key):
            lists[key] = list(dict.fromkeys(value))[:4]
    if not lists:
        return
    layers = max(2, *(len(kinds) for kinds in lists.values()))
    for key, kinds in lists.items():
        kwargs[key] = kinds + [kinds[-1]] * (layers - len(kinds))
    for key in layer_keys:
        kwargs[key] = layers


def _shrunk_kwargs(cls, depth: int = 0) -> dict:
    default = cls()
    kwargs = {key: value for key, value in _SHRINK.items() if _has(default, key) and _settable(cls, key)}
    _fit_layer_lists(default, cls, kwargs)
    rotary_dim = vars(default).get("rotary_dim")
    if isinstance(rotary_dim, int) and "head_dim" not in kwargs and "hidden_size" in kwargs:
        # GPT-J / CodeGen: keep the rotated fraction of the head when the head shrinks.
        heads = vars(default).get("num_attention_heads") or vars(default).get("n_head")
        hidden = vars(default).get("hidden_size") or vars(default).get("n_embd")
        if heads and hidden:
            share = rotary_dim / (hidden // heads)
            kwargs["rotary_dim"] = max(2, 2 * round(share * _SHRINK["hidden_size"] // _SHRINK["num_attention_heads"] / 2))
    for key, value in vars(default).items():
        if key.endswith("_token_id") and isinstance(value, int) and value >= _SHRINK["vocab_size"]:
            kwargs[key] = _SHRINK["vocab_size"] - 1
        if key.endswith("_token_id") and isinstance(value, list):
            kwargs[key] = [min(v, _SHRINK["vocab_size"] - 1) for v in value if isinstance(v, int)]
    if depth < 2:
        for key, value in vars(default).items():
            if isinstance(value, transformers.PretrainedConfig):
                with contextlib.suppress(Exception):
                    kwargs[key] = _shrunk_kwargs(type(value), depth + 1)
    return kwargs


def _fit_mrope(config) -> None:
    """M-RoPE splits rotary_dim / 2 frequencies between t, h, w; keep the proportions when shrunk."""
    for sub in {id(c): c for c in (config, config.get_text_config())}.values():
        if "mrope_section" not in getattr(type(sub), "ignore_keys_at_rope_validation", ()) or not isinstance(
                getattr(sub, "rope_parameters", None), dict):
            continue
        head_dim = getattr(sub, "head_dim", None) or sub.hidden_size // sub.num_attention_heads
        partial = sub.rope_parameters.get("partial_rotary_factor") or getattr(sub, "partial_rotary_factor", 1.0)
        sections = sub.rope_parameters.get("mrope_section") or [16, 24, 24]
        sub.rope_parameters["mrope_section"] = _rescale(sections, int(head_dim * partial) // 2)


def _rescale(sections: list[int], total: int) -> list[int]:
    scaled = [max(1, round(s * total / sum(sections))) for s in sections]
    scaled[-1] += total - sum(scaled)
    return scaled


def build(family: str):
    """A tiny random-weight model of ``family`` (its base ``AutoModel``), and its inputs."""
    model_type = _model_type(family)
    if model_type is None:
        raise LookupError("no config class with a base model in the auto mappings")
    config_cls = transformers.AutoConfig.for_model(model_type).__class__
    config = config_cls(**_shrunk_kwargs(config_cls))
    _fit_mrope(config)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
    vocab = getattr(config.get_text_config(), "vocab_size", None) or 128
    ids = torch.randint(3, min(vocab, 100), (1, _INPUT_LENGTH), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids}
    if getattr(config, "is_encoder_decoder", False):
        inputs["decoder_input_ids"] = ids[:, : _INPUT_LENGTH // 2]
    return model, inputs


def _first_tensor(output) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if hasattr(output, "values") else output
    for value in values:
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            return value
    raise TypeError(f"no floating-point tensor in the output {type(output).__name__}")


def _run(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return _first_tensor(model(**inputs)).float()


def _perturb(model) -> int:
    """Give every patched rotation another base (in place); the number of rotations changed."""
    changed = 0
    for module in model.modules():
        if isinstance(module, hf.HFRotaryAdapter):
            module.cfg = module.cfg.replace(base=2.0)  # every pair turns about a radian per position
            changed += 1
        elif isinstance(getattr(module, "embed_positions", None), torch.Tensor) and hasattr(module, "rotary_dim"):
            cfg = hf.RopeConfig.from_hf(model.config).replace(base=2.0)
            module.embed_positions = hf._exact_sin_cos_table(cfg, module.embed_positions.shape[0],
                                                             module.embed_positions)
            changed += 1
    return changed


def _short(error: BaseException, limit: int = 160) -> str:
    text = f"{type(error).__name__}: {error}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sweep_one(family: str) -> Result:
    start = time.perf_counter()

    def done(outcome, detail=""):
        return Result(family, outcome, detail, time.perf_counter() - start)

    try:
        model, inputs = build(family)
    except Exception as error:  # noqa: BLE001 (every way a build can fail is a reason to report)
        return done("not buildable", _short(error))
    try:
        want = _run(model, inputs)
    except Exception as error:  # noqa: BLE001
        # The sweep cannot run it (pixel or audio inputs, ...), but patch can still check its tables.
        ran = _short(error, 100)
        try:
            hf.patch(model)
        except PatchError as refusal:
            return done("refused", _short(refusal) + f" (forward not run: {ran})")
        except Exception as crash:  # noqa: BLE001
            return done("patch crashed", _short(crash) + f" (forward not run: {ran})")
        return done("tables only", f"patch accepted, its cos/sin checked; forward not run: {ran}")
    try:
        hf.patch(model)
    except PatchError as error:
        return done("refused", _short(error))
    except RopelabError as error:
        return done("patch crashed", "not a PatchError: " + _short(error))
    except Exception as error:  # noqa: BLE001
        return done("patch crashed", _short(error))
    try:
        got = _run(model, inputs)
    except Exception as error:  # noqa: BLE001
        return done("patched forward fails", _short(error))
    scale = max(1.0, want.abs().max().item())
    if got.shape != want.shape:
        return done("mismatch", f"output shape {tuple(got.shape)} != {tuple(want.shape)}")
    error = (got - want).abs().max().item() / scale
    if not error <= TOLERANCE:
        return done("mismatch", f"max error {error:.2e} > {TOLERANCE:g}")
    _perturb(model)
    moved = (_run(model, inputs) - want).abs().max().item() / scale
    if not moved > MOVED:
        return done("not exercised", f"another base moves the output by only {moved:.1e}")
    return done("identical", f"error {error:.1e}, another base moves it {moved:.1e}")


def sweep(families: list[str] | None = None) -> list[Result]:
    results = []
    with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        transformers.logging.set_verbosity_error()
        for family in families or rotary_families():
            results.append(sweep_one(family))
    return results


def counts(results: list[Result]) -> dict[str, int]:
    return {outcome: sum(r.outcome == outcome for r in results) for outcome in ORDER}


def table(results: list[Result], seconds: float | None = None) -> str:
    lines = [f"# transformers {transformers.__version__}: {len(results)} families with a rotary embedding", ""]
    summary = ", ".join(f"{n} {outcome}" for outcome, n in counts(results).items() if n)
    lines += [summary + (f" (sweep: {seconds:.0f} s)" if seconds is not None else ""), ""]
    lines += ["| family | outcome | detail | s |", "|---|---|---|---|"]
    rank = {outcome: i for i, outcome in enumerate(ORDER)}
    for r in sorted(results, key=lambda r: (rank[r.outcome], r.family)):
        lines.append(f"| {r.family} | {r.outcome} | {r.detail} | {r.seconds:.1f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    args = sys.argv[1:]
    out = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "hf_zoo.md"
    if args[:1] == ["--out"]:
        out, args = Path(args[1]), args[2:]
    start = time.perf_counter()
    found = sweep(args or None)
    text = table(found, time.perf_counter() - start)
    print(text)
    if not args:
        out.write_text(text, encoding="utf-8")
