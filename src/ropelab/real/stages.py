"""Extend a real RoPE model from its trained length ``T`` to ``N``: predict, measure, decide, hand over.

1. :func:`predict`: from the config alone (:mod:`ropelab.analysis.wavelengths`), which pairs leave
   their trained arc past ``T``, the critical dimension, and the first position where a method is
   expected to break (the first position at which some pair meets an angle it never saw).
2. :func:`measure`: zero-shot, for the model as-is (``extrapolate``) and each method of
   :func:`ropelab.extension.extension_config` with ``factor = N / T`` (``original = T``): loss at
   every position over documents of ``N`` tokens, binned; perplexity per segment; passkey accuracy
   on a grid of lengths and depths.
3. :func:`verdict`: the measured break point (:func:`break_point`) next to the predicted one, and
   the method that keeps perplexity and passkey best at ``N``.
4. :func:`hf_config`: the model's config with the chosen ``rope_parameters``, for ``config.json``.

A model with a RoPE per layer type (a :class:`~ropelab.real.shipped.LayerTypeExtension`) has its one
long-range layer type extended; the prediction reads that layer type's RoPE, and sliding-window
layer types (window at most ``T``) keep theirs in every method and in the written config.

Definitions (stated once, used by the report):

- **in-context loss** of a method: its mean loss over positions ``[T/2, T)`` (past the early-token
  effect, inside the trained range);
- **measured break point** of a method: the start of the first bin at or after ``T`` such that its
  loss smoothed over 4 bins (1024 tokens), and the next bin's, exceed *that method's own* in-context
  loss by more than ``margin`` nats (default 0.5, i.e. perplexity x 1.65); ``None`` if no bin does up
  to the end of the documents. A method that costs perplexity everywhere (PI zero-shot) is therefore
  not read as "broken at T"; its **in-context cost** (its in-context loss minus the as-is model's) is
  reported separately. (A first version searched from ``T/2`` without smoothing: on one stdlib
  document a hard file inside ``T`` read as a "break" at 4864 for every method. A second compared
  every method with the as-is in-context loss, which read PI's everywhere-cost as a break at ``T``.)
- **predicted break point**: :func:`ropelab.analysis.breaks.predict_break` from the model's own q and
  k on ``min(2048, T)`` tokens (:mod:`ropelab.real.predict`), filled in by :func:`add_model_prediction`;
  the config rule (first position where a pair meets an angle it never met) stays beside it as
  ``first_unseen_angle``, a lower bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from ropelab.analysis.wavelengths import critical_dimension, out_of_range_pairs, pair_wavelengths
from ropelab.config import LayerTypeRope, RopeConfig
from ropelab.errors import RealModelError
from ropelab.real.evaluate import bin_losses, corpus_documents, precision, segment_perplexities, token_losses, use_rope
from ropelab.real.passkey import grid, passkey_records
from ropelab.real.shipped import AS_IS, METHODS, Shipped

__all__ = [
    "METHODS",
    "AS_IS",
    "Settings",
    "check_methods",
    "method_config",
    "predict",
    "break_point",
    "measure",
    "verdict",
    "add_model_prediction",
    "hf_config",
    "written_config_error",
    "transformers_form",
    "ppl_ranges",
    "forward_seconds",
]


def check_methods(names, shipped: Shipped | None = None, *, named: bool = True) -> tuple[str, ...]:
    """``("extrapolate", *names)`` with duplicates dropped; raises for an unknown name.

    With ``shipped``, a method that cannot start from the model's RoPE (:meth:`Shipped.refusal`) is refused
    if the user ``named`` it, and left out (the caller says so) if it came from the defaults.
    """
    names = [n.strip() for n in names if n.strip()]
    for name in names:
        if name not in METHODS and name not in (AS_IS, "as-is"):
            raise RealModelError(f"--methods {name!r} is unknown: expected some of {', '.join(METHODS)}")
    methods = tuple(dict.fromkeys(n for n in names if n not in (AS_IS, "as-is")))
    if shipped is not None:
        refused = {m: shipped.refusal(m) for m in methods if shipped.refusal(m)}
        if refused and named:
            raise RealModelError(next(iter(refused.values())))
        methods = tuple(m for m in methods if m not in refused)
    return (AS_IS, *methods)


@dataclass(frozen=True)
class Settings:
    """One run: target ``N``, methods, documents, bins, passkey grid. Validated by :meth:`check`."""

    target: int
    methods: tuple[str, ...] = (AS_IS,) + METHODS
    documents: int = 1
    bin_width: int = 256
    passkey_lengths: tuple[int, ...] = ()
    passkey_depths: tuple[float, ...] = (0.0, 0.5, 1.0)
    passkey_keys: int = 2
    margin: float = 0.5
    text: str | None = None
    seed: int = 0
    document_length: int | None = None  # tokens per document; default the target N
    dtype: str = "bfloat16"  # forwards under bfloat16 autocast (benchmarks/real_speed.py: ppl within 1% of float32)

    @property
    def length(self) -> int:
        return self.document_length or self.target

    def check(self, trained: int) -> None:
        if self.target <= trained:
            raise RealModelError(
                f"--to {self.target} is invalid: the target must be larger than the trained length T={trained}"
            )
        if self.document_length is not None and not trained < self.document_length <= self.target:
            raise RealModelError(
                f"document length {self.document_length} is invalid: expected T={trained} < length <= N={self.target}"
            )
        if self.documents < 1 or self.bin_width < 1 or self.passkey_keys < 0:
            raise RealModelError("--documents, --bin and --passkey-keys must be positive")
        if any(not 0 < n <= self.target for n in self.passkey_lengths):
            raise RealModelError(
                f"--passkey-lengths {list(self.passkey_lengths)} is invalid: expected lengths in (0, {self.target}]"
            )
        if any(not 0 <= d <= 1 for d in self.passkey_depths):
            raise RealModelError(
                f"--passkey-depths {list(self.passkey_depths)} is invalid: expected fractions in [0, 1]"
            )


def method_config(shipped: Shipped | RopeConfig, method: str, trained: int, target: int) -> RopeConfig | LayerTypeRope:
    """The RoPE ``method`` runs with to ``target`` tokens (:meth:`Shipped.method_config`: as shipped for
    ``AS_IS``; otherwise from the pretraining RoPE, replacing the shipped scaling). ``trained`` is ``T``,
    checked against the model's. A bare :class:`RopeConfig` is read as a model shipped with it."""
    if isinstance(shipped, RopeConfig):
        shipped = Shipped.from_rope(shipped)
    if trained != shipped.context:
        raise ValueError(f"trained={trained} is not the model's T={shipped.context}")
    return shipped.method_config(method, target)


def _long_config(cfg: RopeConfig | LayerTypeRope, shipped: Shipped) -> RopeConfig:
    """The long-range layer type's RoPE of a method's config."""
    return cfg[shipped.rope.extended] if isinstance(cfg, LayerTypeRope) else cfg


def _first_break(base: RopeConfig, cfg: RopeConfig, trained: int, target: int, steps: int) -> int | None:
    """First position ``p`` in ``[T, N)`` (on a grid of ``steps`` points) at which some pair of ``cfg``,
    run over positions ``0..p``, meets an angle beyond its trained arc."""
    step = max(1, (target - trained) // steps)
    for position in range(trained, target, step):
        if out_of_range_pairs(base, position + 1, trained_length=trained, target=cfg).count:
            return position
    return None


def predict(shipped: Shipped, trained: int, target: int, methods, steps: int = 512) -> dict:
    """What the config predicts, before running anything.

    Every pair's trained arc is the one the model as shipped covers over ``[0, T)``.

    Returns ``{"out_of_range_pairs": [...], "pairs": R/2, "critical_dimension": d, "rotary_dim": R,
    "longest_wavelength": ..., "methods": {method: {"out_of_range_at_target": k, "break": pos|None}}}``,
    where ``break`` is the first position in ``[T, N)`` (on a grid of ``steps``) at which some pair meets a new angle.
    A RoPE per layer type is predicted from its extended layer type (the others never pass ``T``).
    """
    base = shipped.long  # the RoPE the model was trained with up to T
    plain = out_of_range_pairs(base, target, trained_length=trained)
    wavelengths = pair_wavelengths(base)
    out = {
        "trained_length": trained,
        "pretrained_length": shipped.pretrained,
        "shipped": shipped.describe(),
        "target": target,
        "rotary_dim": base.rotary_dim,
        "pairs": base.num_pairs,
        "base": base.base,
        "critical_dimension": critical_dimension(base.rotary_dim, base.base, trained),
        "out_of_range_pairs": plain.indices,
        "out_of_range_wavelengths": [float(wavelengths[i]) for i in plain.indices],
        "methods": {},
    }
    for method in methods:
        cfg = _long_config(method_config(shipped, method, trained, target), shipped)
        count = out_of_range_pairs(base, target, trained_length=trained, target=cfg).count
        first = _first_break(base, cfg, trained, target, steps)
        out["methods"][method] = {
            "out_of_range_at_target": count,
            "first_unseen_angle": first,
            "break": first,
            "starts_from": shipped.starts_from(method),
            "predictor": "first unseen angle (config only; a lower bound)",
        }
    return out


def add_model_prediction(prediction: dict, predictions: dict) -> dict:
    """Put :class:`~ropelab.analysis.breaks.BreakPrediction` s (method -> prediction) into ``prediction``
    (from :func:`predict`): ``break`` becomes the model-based prediction; ``first_unseen_angle`` stays."""
    for method, p in predictions.items():
        entry = prediction["methods"][method]
        entry.update(
            {
                "break": p.position,
                "extrapolation_bound": p.extrapolation_bound,
                "excess_slope_per_T": p.slope,
                "predictor": f"far attention mass of the model's own q/k (threshold {p.far_threshold:g})",
                "mechanism": p.mechanism,
            }
        )
    return prediction


def break_point(
    bins: list[float], width: int, trained: int, reference: float, margin: float, smooth: int = 4
) -> int | None:
    """Start position of the first bin at or after ``T`` whose smoothed loss (mean of it and the next
    ``smooth - 1`` bins: a window of ``smooth * width`` positions starting there), and the next
    bin's, exceed ``reference + margin`` nats; ``None`` if none does (see the module docstring).

    The search starts at ``T``: inside the trained range a rise is content (one document's hard
    file), not position; the smoothing (``smooth`` bins, 1024 tokens at the default width) keeps one
    hard stretch of text from reading as a break.
    """

    def smoothed(i):
        window = bins[i : i + smooth]
        return sum(window) / len(window)

    first = -(-trained // width)  # first bin starting at or after T
    for i in range(first, len(bins)):
        following = smoothed(i + 1) if i + 1 < len(bins) else smoothed(i)
        if smoothed(i) > reference + margin and following > reference + margin:
            return i * width
    return None


def forward_seconds(
    length: int,
    probe_seconds: float,
    probe_length: int,
    num_layers: int,
    width: int,
    num_heads: int,
    head_dim: int,
    vocab: int = 0,
) -> float:
    """Estimated seconds of one forward of ``length`` tokens, scaled from a probe by FLOPs:
    ``12 layers width^2`` per token (projections and MLP, roughly), ``2 vocab width`` for the
    lm_head, plus ``2 layers heads head_dim L`` per token for causal attention."""

    def flops(n):
        return n * (12 * num_layers * width**2 + 2 * vocab * width + 2 * num_layers * num_heads * head_dim * n)

    return probe_seconds * flops(length) / flops(probe_length)


def measure(
    model,
    tokenizer,
    rope: Shipped,
    trained: int,
    settings: Settings,
    *,
    tick=lambda label, cost: None,
) -> dict:
    """Zero-shot measurements for every method in ``settings.methods`` (see the module docstring).

    ``tick(label, cost)`` is called after each forward-sized task (for a progress bar).
    Returns ``{"documents_source": ..., "methods": {method: {...}}}``.
    """
    N, width = settings.target, settings.bin_width
    docs, source = corpus_documents(tokenizer, settings.length, settings.documents, settings.text)
    segment = max(width, trained // 2)
    results = {}
    for method in settings.methods:
        cfg = method_config(rope, method, trained, N)
        use_rope(model, cfg)
        started = time.perf_counter()
        losses = []
        for i, doc in enumerate(docs):
            with torch.inference_mode(), precision(model, settings.dtype):
                losses.append(token_losses(model, doc).float().cpu())
            tick(f"{method}: loss, document {i + 1}/{len(docs)}", ("loss", settings.length))
        mean = torch.stack(losses).mean(0)
        records = []
        if settings.passkey_lengths and settings.passkey_keys:
            with precision(model, settings.dtype):
                records = passkey_records(
                    model,
                    tokenizer,
                    settings.passkey_lengths,
                    settings.passkey_depths,
                    settings.passkey_keys,
                    settings.seed,
                    tick=lambda label, method=method: tick(f"{method}: {label}", ("passkey", None)),
                )
        hf = cfg.to_hf()  # both forms carry max_position_embeddings top-level, when set
        results[method] = {
            "rope_parameters": hf["rope_parameters"],
            "max_position_embeddings": hf.get("max_position_embeddings"),
            "starts_from": rope.starts_from(method.removesuffix("+pose")),
            "bins": bin_losses(mean, width),
            "in_context_loss": mean[trained // 2 : trained].mean().item(),
            "ppl_segments": segment_perplexities(mean, segment),
            "ppl_ranges": ppl_ranges(mean, trained),
            "ppl_past_T": math.exp(mean[trained:].mean().item()),
            "ppl_all": math.exp(mean.mean().item()),
            "passkey": grid(records),
            "passkey_records": records,
            "seconds": time.perf_counter() - started,
        }
    return {
        "documents_source": source,
        "documents": len(docs),
        "length": settings.length,
        "segment": segment,
        "methods": results,
    }


def ppl_ranges(losses: torch.Tensor, trained: int) -> dict[str, float]:
    """Perplexity over ``[0, T/2)``, ``[T/2, T)`` and ``[T, end)`` (Chen et al. 2023, Table 3's columns
    are lengths; these are the ranges of one long evaluation)."""
    end = losses.numel()
    ranges = {"[0, T/2)": (0, trained // 2), "[T/2, T)": (trained // 2, trained), f"[T, {end})": (trained, end)}
    return {name: math.exp(losses[a:b].mean().item()) for name, (a, b) in ranges.items() if b > a}


def _passkey_at(entry: dict, length: int) -> float | None:
    row = entry["passkey"].get(str(length))
    return None if not row else sum(row.values()) / len(row)


def verdict(prediction: dict, measured: dict, trained: int, settings: Settings) -> dict:
    """Measured break point per method, next to the predicted one; the best method at ``N``.

    Best: among the methods (as-is excluded) whose mean passkey accuracy at the longest passkey
    length is within 0.1 of the best, the one with the lowest perplexity over ``[T, N)``.
    """
    methods = measured["methods"]
    reference = methods[AS_IS]["in_context_loss"]
    per_method = {}
    for name, entry in methods.items():
        per_method[name] = {
            "predicted_break": prediction["methods"][name]["break"],
            "first_unseen_angle": prediction["methods"][name].get("first_unseen_angle"),
            "measured_break": break_point(
                entry["bins"], settings.bin_width, trained, entry["in_context_loss"], settings.margin
            ),
            "in_context_cost": entry["in_context_loss"] - reference,
            "ppl_past_T": entry["ppl_past_T"],
            "passkey_at_longest": _passkey_at(entry, max(settings.passkey_lengths))
            if settings.passkey_lengths
            else None,
        }
    candidates = [m for m in methods if m != AS_IS] or [AS_IS]
    scores = [per_method[m]["passkey_at_longest"] for m in candidates]
    reason = ""
    if all(s is not None for s in scores):
        top = max(scores)
        kept = [m for m, s in zip(candidates, scores) if s >= top - 0.1]
        reason = f"passkey at {max(settings.passkey_lengths)} within 0.1 of the best ({top:.2f}): {', '.join(kept)}; "
        candidates = kept
    best = min(candidates, key=lambda m: per_method[m]["ppl_past_T"])
    among = " among them" if reason else ""
    reason += f"lowest perplexity over [T, N){among}: {best} ({per_method[best]['ppl_past_T']:.2f})"
    return {
        "reason": reason,
        "definition": f"first {settings.bin_width}-token bin at or after T whose loss smoothed over 4 bins, and the next "
        f"bin's, exceed the method's own in-context loss (mean over [T/2, T)) by more than {settings.margin} nats",
        "in_context_loss": reference,
        "in_context_ppl": math.exp(reference),
        "methods": per_method,
        "best": best,
    }


def transformers_form(cfg: RopeConfig) -> RopeConfig:
    """``cfg`` in a rope type transformers implements. Static NTK-aware scaling has no rope type in
    transformers (only ``dynamic``); it is the default RoPE with base ``base * factor^(R/(R-2))``
    (the same frequencies, bit for bit: :func:`ropelab.frequencies` computes NTK exactly so)."""
    if cfg.rope_type != "ntk" or cfg.rotary_dim == 2:
        return cfg
    base = cfg.base * cfg.factor ** (cfg.rotary_dim / (cfg.rotary_dim - 2))
    return cfg.replace(rope_type="default", base=base, factor=None)


def written_config_error(config, cfg: RopeConfig | LayerTypeRope) -> str | None:
    """Why transformers' config class for this family refuses ``cfg`` written into it (one line), or ``None``."""
    try:
        type(config)(**hf_config(config, cfg))
    except Exception as error:  # noqa: BLE001 (transformers' validators raise ValueError and their own kinds)
        text = str(error).strip().splitlines()
        return f"{type(config).__name__} refuses it ({type(error).__name__}: {text[-1] if text else ''})"[:300]
    return None


def hf_config(config, cfg: RopeConfig | LayerTypeRope) -> dict:
    """The model's transformers config as a dict, with ``cfg``'s ``rope_parameters`` (in a rope type
    transformers implements, :func:`transformers_form`; keyed by layer type for a :class:`LayerTypeRope`)
    and ``max_position_embeddings``: a ``config.json`` that plain transformers loads as is."""
    data = config.to_dict()
    if isinstance(cfg, LayerTypeRope):
        forms = {name: None if one is None else transformers_form(one) for name, one in cfg.items()}
        rope = LayerTypeRope(forms, cfg.layer_types, cfg.source).to_hf()
    else:
        rope = transformers_form(cfg).to_hf()
    data["rope_parameters"] = rope["rope_parameters"]
    data.pop("rope_scaling", None)
    data.pop("rope_theta", None)
    if rope.get("max_position_embeddings"):
        data["max_position_embeddings"] = rope["max_position_embeddings"]
    data.pop("gguf_file", None)
    quantization = data.get("quantization_config") or {}
    if str(quantization.get("quant_method", "")).lower().endswith("gguf"):  # read from GGUF, now plain float weights
        data.pop("quantization_config")
    return data
