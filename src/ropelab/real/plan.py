"""The memory and time plan of an ``extend`` run, made from the config alone, before any weight loads.

Parameters are counted on a meta-device build of the model from its config (no memory, no weights;
tied embeddings counted once), so every family transformers builds is counted exactly. The bytes:

- **weights**: ``P x b`` in the run's weight dtype (float32 master weights when fully fine-tuning);
- **fine-tune weights, gradients and optimizer state** as :mod:`ropelab.real.finetune` holds them
  (:func:`finetune_bytes`; AdamW as torch implements it, Loshchilov & Hutter 2019: two moments in the
  parameter's dtype and a float32 step count per parameter tensor): full ``P b`` + ``P b`` +
  ``2 P b + 4 n``; LoRA (Hu et al. 2021, eq. 3) with LongLoRA's trained embeddings and norms (Chen et al.
  2024, arXiv 2309.12307, sec. 3.3): float32 adapters ``A = sum r (d_in + d_out)`` beside the model,
  gradients and moments of ``A`` and of those ``F`` parameters; FSDP2 over ``k`` processes: float32 shards
  of ``ceil(d0 / k)`` rows per parameter (rank 0's), the bfloat16 parameters gathered outside the layers
  and two gathered layers, beside the loaded model every rank holds;
- **activations** of one forward of ``S`` tokens in inference (the largest live set, one layer at a time):
  ``S (4 H + 3 I + 2 (Hq + 2 Hkv) Dh) b``, plus ``Hq S^2 b`` score matrices where attention is eager; of a
  training step of ``S`` tokens per process, what the fine-tune keeps for backward, measured
  (``PER_TOKEN_LAYER``): ``L S (c_H H + c_I I + 4 Hkv Dh + 4 Hq + 8)``, or with gradient checkpointing
  every layer's input (``L S 4 H``, ``2 H`` under FSDP) and one layer's tensors; the bfloat16 copies that
  autocast keeps of the float32 linear weights in one process (``2`` bytes each); the logits
  ``S V (2 + 4 + 4)`` (:func:`training_activation_parts`);
- **logits**: one chunk of ``C`` positions over the vocabulary (``ropelab.real.evaluate.LOSS_CHUNK``),
  in the run's dtype and float32, and cross-entropy's float32 copy: ``C V (b + 8)``;
- **KV cache** of the passkey prefill: ``2 L Hkv Dh S b`` (full layers: sliding ones are cropped back);
- **runtime**: on the CPU the process's resident memory when the plan is made (torch and transformers
  imported); a GGUF's dequantised float32 copy ``4 P`` lives only while it loads, so it is a phase of its
  own beside the forward's activations, not added to them.

Time: ``2 P`` FLOPs per token forward plus ``2 L Hq Dh S`` for causal attention (Kaplan et al. 2020,
sec. 2.1), three times that for a training step, at the device's measured matmul rate: a lower bound,
refined after the model loads by a probe forward (:mod:`ropelab.real.cli`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

from ropelab.errors import RealModelError

__all__ = [
    "Plan",
    "ModelShape",
    "model_shape",
    "plan_run",
    "plan_bytes",
    "finetune_bytes",
    "training_activation_parts",
    "FinetuneBytes",
    "available_memory",
    "matmul_rate",
    "GIB",
    "DTYPE_BYTES",
]

GIB = 1024**3
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
LOSS_CHUNK = 1024  # :data:`ropelab.real.evaluate.LOSS_CHUNK` (not imported: the plan needs no torch model code)


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model: counts from a meta-device build, sizes from its config."""

    parameters: int
    embedding_parameters: int  # input (and untied output) embeddings
    norm_parameters: int
    layers: int
    hidden: int
    intermediate: int
    q_heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    lora_targets: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # name -> (count, d_in, d_out)
    # what the fine-tune's bytes are counted from (ropelab.real.finetune's implementation):
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # every parameter once (tied ones once), name and shape
    linears: tuple[tuple[str, int, int], ...] = ()  # every linear layer: (name, d_in, d_out)
    layer_parameters: int = 0  # the largest decoder layer's parameters (one FSDP unit)
    layer_linear_weights: int = 0  # the largest decoder layer's linear weights
    linear_weights: int = 0  # every linear layer's weights (what bfloat16 autocast casts for its matmuls)


def _attribute(config, *names, default=None):
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj")  # LongLoRA: the attention projections


def model_shape(config) -> ModelShape:
    """Count ``config``'s parameters on a meta-device build (exact; nothing allocated).

    Raises:
        RealModelError: transformers cannot build a causal LM from ``config`` (one line).
    """
    import torch
    from transformers import AutoModelForCausalLM

    try:
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config)
    except Exception as error:  # noqa: BLE001 (transformers raises ValueError, KeyError, ...)
        raise RealModelError(
            f"cannot plan this model: transformers cannot build it ({type(error).__name__}: {error})"
        ) from None
    seen, total, embeddings, norms = set(), 0, 0, 0
    targets: dict[str, tuple[int, int, int]] = {}
    shapes, linears, linear_ids = [], [], set()
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in linear_ids:
            linear_ids.add(id(module.weight))
            linears.append((name, module.in_features, module.out_features))
        for key, param in module.named_parameters(recurse=False):
            if id(param) in seen:
                continue
            seen.add(id(param))
            shapes.append((f"{name}.{key}" if name else key, tuple(param.shape)))
            total += param.numel()
            if isinstance(module, torch.nn.Embedding) or name.endswith("lm_head"):
                embeddings += param.numel()
            elif "norm" in type(module).__name__.lower() or "norm" in name.rsplit(".", 1)[-1]:
                norms += param.numel()
        leaf = name.rsplit(".", 1)[-1]
        if leaf in LORA_TARGETS and isinstance(module, torch.nn.Linear):
            count, d_in, d_out = targets.get(leaf, (0, module.in_features, module.out_features))
            targets[leaf] = (count + 1, d_in, d_out)
    q_heads = _attribute(config, "num_attention_heads")
    hidden = _attribute(config, "hidden_size")
    units = set(getattr(model, "_no_split_modules", None) or ())
    layers = [m for m in model.modules() if type(m).__name__ in units] or [model]
    return ModelShape(
        parameters=total,
        embedding_parameters=embeddings,
        norm_parameters=norms,
        layers=_attribute(config, "num_hidden_layers"),
        hidden=hidden,
        intermediate=_attribute(config, "intermediate_size", "moe_intermediate_size", default=4 * hidden),
        q_heads=q_heads,
        kv_heads=_attribute(config, "num_key_value_heads", default=q_heads),
        head_dim=_attribute(config, "head_dim", default=hidden // q_heads),
        vocab=_attribute(config, "vocab_size"),
        lora_targets=targets,
        shapes=tuple(shapes),
        linears=tuple(linears),
        layer_parameters=max(sum(p.numel() for p in layer.parameters()) for layer in layers),
        layer_linear_weights=max(
            sum(m.weight.numel() for m in layer.modules() if isinstance(m, torch.nn.Linear)) for layer in layers
        ),
        linear_weights=sum(d_in * d_out for _, d_in, d_out in linears),
    )


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def available_memory(device: str) -> int:
    """Bytes free for the run on ``device``: CUDA's free memory, or the host's MemAvailable."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise RealModelError(f"--device {device} is not on this machine: pass --device-memory GIB to plan for it")
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def resident_bytes() -> int:
    """This process's resident memory (Linux ``/proc/self/statm``; 0 where unreadable)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def matmul_rate(device: str, dtype: str, size: int = 1024) -> float:
    """Measured FLOP/s of a square matmul in ``dtype`` on ``device`` (best of 3)."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(size, size, device=device).to(dt)
    b = torch.randn(size, size, device=device).to(dt)
    best = math.inf
    for _ in range(3):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        a @ b
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


@dataclass(frozen=True)
class Plan:
    """Bytes and seconds of one run (module docstring). ``peak`` is the largest of the evaluation's and the
    fine-tune's peaks; ``fits`` compares it with ``available``."""

    device: str
    weights_dtype: str
    parameters: int
    trainable: int
    weights: int
    training_state: int  # gradients + optimizer moments (+ float32 copies of LoRA-trained weights)
    activations: int  # one evaluation forward of the longest sequence
    training_activations: int
    logits: int
    kv_cache: int
    runtime: int
    peak_evaluation: int
    peak_training: int
    available: int
    seconds: float
    training: str  # "none", "full", "lora" or "fsdp"
    world_size: int = 1
    advice: tuple[str, ...] = ()

    @property
    def peak(self) -> int:
        return max(self.peak_evaluation, self.peak_training)

    @property
    def fits(self) -> bool:
        return self.peak <= self.available

    def lines(self) -> list[str]:
        """The printout: one figure a line, in GiB."""

        def gib(n):
            return f"{n / GIB:.2f} GiB"

        per = f" per process ({self.world_size} processes)" if self.world_size > 1 else ""
        out = [
            f"Plan on {self.device} ({self.weights_dtype} weights), before any weight is loaded:",
            f"  parameters {self.parameters:,} (trained: {self.trainable:,}, {self.training})",
            f"  weights {gib(self.weights)}{per}",
            f"  optimizer state and gradients {gib(self.training_state)}{per}",
            f"  activations: evaluation {gib(self.activations)}, fine-tune step {gib(self.training_activations)}",
            f"  logits chunk {gib(self.logits)}; KV cache {gib(self.kv_cache)}; runtime {gib(self.runtime)}",
            f"  peak: evaluation {gib(self.peak_evaluation)}, fine-tune {gib(self.peak_training)}; "
            f"available {gib(self.available)}: {'fits' if self.fits else 'does NOT fit'}",
            f"  time: at least {self.seconds / 60:.1f} min at the measured matmul rate"
            if math.isfinite(self.seconds)
            else "  time: not estimated (the device is not on this machine)",
        ]
        return out + [f"  {line}" for line in self.advice]


def _activations(shape: ModelShape, tokens: int, b: int, eager: bool) -> int:
    per_token = 4 * shape.hidden + 3 * shape.intermediate + 2 * (shape.q_heads + 2 * shape.kv_heads) * shape.head_dim
    scores = shape.q_heads * tokens * tokens * b if eager else 0
    return tokens * per_token * b + scores


# Bytes a training step keeps for backward, per token and decoder layer, in ropelab.real.finetune under
# bfloat16 autocast with SDPA: measured with torch.autograd.graph.saved_tensors_hooks on Llama-shaped models
# (tests/test_real_finetune_plan.py checks them on a shape they were not fitted on). One process keeps
# float32 weights (the residual stream stays float32: ``FULL``), LoRA does not keep the frozen layers'
# inputs (``LORA``), FSDP's bfloat16 parameters make a bfloat16 residual stream (``BF16``). Each adds
# 4 bytes per key/value channel, 4 per query head and 8; LoRA 8 per rank (its adapters' inner outputs).
PER_TOKEN_LAYER = {"full": (32, 8), "lora": (28, 6), "fsdp": (22, 8)}  # (per H, per I) bytes
CHECKPOINT_BOUNDARY = {"full": 4, "lora": 4, "fsdp": 2}  # bytes per H: a checkpointed layer's saved input
# outside the layers, per token: the final norm's and output layer's inputs (bytes per H, without and with
# checkpointing) and the rotary cos/sin tables (bytes per Dh: float32, or bfloat16 under FSDP)
HEAD_BYTES = {"full": (10, 8, 8), "lora": (8, 6, 8), "fsdp": (8, 7, 4)}


def _layer_bytes_per_token(shape: ModelShape, training: str, lora_rank: int) -> int:
    per_h, per_i = PER_TOKEN_LAYER[training]
    kv = shape.kv_heads * shape.head_dim
    return (
        per_h * shape.hidden
        + per_i * shape.intermediate
        + 4 * kv
        + 4 * shape.q_heads
        + 8
        + (8 * lora_rank if training == "lora" else 0)
    )


def training_activation_parts(
    shape: ModelShape,
    tokens: int,
    training: str,
    eager: bool = False,
    checkpointing: bool = False,
    lora_rank: int = 8,
    adapters: int = 0,
) -> dict[str, int]:
    """What one fine-tuning step of ``tokens`` tokens (this process's windows) holds for backward, in parts:

    - ``saved``: kept by the forward: every layer's tensors (with gradient checkpointing: every layer's
      input), the final norm's and the output layer's inputs and the rotary tables (``HEAD_BYTES``,
      about ``S (10 H + 8 Dh)``), cross-entropy's float32 log-softmax ``4 S V``, and, in one process, the
      bfloat16 copies autocast makes of the float32 linear weights (2 bytes each; with checkpointing only
      the output layer's);
    - ``recompute``: with checkpointing, one layer's tensors and weight copies while backward recomputes it;
    - ``logits``: the bfloat16 logits and their float32 copy beside the log-softmax, ``6 S V``.
    """
    layer = tokens * _layer_bytes_per_token(shape, training, lora_rank if training == "lora" else 0)
    scores = shape.q_heads * tokens * tokens * 2 if eager else 0
    one_process = training in ("full", "lora")
    layer_copies = 2 * (shape.layer_linear_weights + adapters // max(1, shape.layers)) if one_process else 0
    all_copies = 2 * (shape.linear_weights + adapters) if one_process else 0
    plain, checkpointed, rotary = HEAD_BYTES[training]
    per_h = checkpointed if checkpointing else plain
    head = tokens * (per_h * shape.hidden + rotary * shape.head_dim + 12 + 4 * shape.vocab)
    if checkpointing:
        boundary = shape.layers * tokens * CHECKPOINT_BOUNDARY[training] * shape.hidden
        saved = boundary + head + all_copies - shape.layers * layer_copies
        recompute = layer + scores + layer_copies
    else:
        saved, recompute = shape.layers * (layer + scores) + head + all_copies, 0
    return {"saved": saved, "recompute": recompute, "logits": tokens * shape.vocab * 6}


def _training_activations(shape: ModelShape, tokens: int, training: str, eager: bool, checkpointing: bool, *rest):
    return sum(training_activation_parts(shape, tokens, training, eager, checkpointing, *rest).values())


@dataclass(frozen=True)
class FinetuneBytes:
    """The fine-tune's bytes per process, as ropelab.real.finetune holds them (module docstring)."""

    trainable: int  # parameters AdamW updates
    trained_tensors: int
    weights: int  # every parameter this process holds (and the FSDP shards and gathered layers)
    gradients: int
    optimizer: int  # AdamW's two moments (the parameter's dtype) and one float32 step count per tensor


def _shard_rows(shape: tuple[int, ...], world_size: int) -> int:
    """Elements of rank 0's FSDP2 shard of a parameter: ``ceil(d0 / k)`` rows of the first dimension."""
    rows = -(-shape[0] // world_size) if shape else 1
    rest = math.prod(shape[1:]) if len(shape) > 1 else 1
    return rows * rest


def finetune_bytes(
    shape: ModelShape, training: str, *, world_size: int = 1, lora=None, weights_dtype: str = "float32"
) -> FinetuneBytes:
    """Parameter, gradient and optimizer bytes per process of a fine-tune (rank 0, the largest shard):

    - ``full``: the model in ``weights_dtype`` (float32 master weights), gradients in the same dtype,
      AdamW's two moments in it and a float32 step count per parameter tensor: ``P b``, ``P b``, ``2 P b + 4 n``;
    - ``lora`` (``lora``: :class:`~ropelab.real.finetune.LoraSettings`): the model plus float32 adapters
      ``A = sum r (d_in + d_out)`` over the target layers; gradients and moments of the adapters and of the
      parameters named by ``lora.trainable`` (``F``, in the model's dtype): ``P b + 4 A``, ``4 A + F b``,
      ``8 A + 2 F b + 4 n_t``;
    - ``fsdp`` over ``k`` processes: the loaded model (every rank holds it), float32 shards of
      ``ceil(d0 / k)`` rows per parameter (``S`` elements on rank 0), the bfloat16 parameters gathered
      outside the decoder layers (kept from forward to backward) and two decoder layers (the one computing
      and the one prefetched): ``P b + 4 S + 2 (P - L P_layer) + 4 P_layer``, ``4 S``, ``8 S + 4 n``.
    """
    from ropelab.real.finetune import LoraSettings

    b = DTYPE_BYTES[weights_dtype]
    P, n = shape.parameters, len(shape.shapes)
    if training == "full":
        return FinetuneBytes(P, n, P * b, P * b, 2 * P * b + 4 * n)
    if training == "lora":
        lora = lora or LoraSettings()
        targets = [(d_in, d_out) for name, d_in, d_out in shape.linears if name.rpartition(".")[2] in lora.targets]
        adapters = sum(lora.rank * (d_in + d_out) for d_in, d_out in targets)
        full = [math.prod(s) for name, s in shape.shapes if any(word in name for word in lora.trainable)]
        tensors = 2 * len(targets) + len(full)
        F = sum(full)
        return FinetuneBytes(
            adapters + F, tensors, P * b + 4 * adapters, 4 * adapters + F * b, 8 * adapters + 2 * F * b + 4 * tensors
        )
    if training == "fsdp":
        shard = sum(_shard_rows(s, world_size) for _, s in shape.shapes)
        gathered = 2 * (P - shape.layers * shape.layer_parameters) + 2 * 2 * shape.layer_parameters
        return FinetuneBytes(P, n, P * b + 4 * shard + gathered, 4 * shard, 8 * shard + 4 * n)
    raise RealModelError(f"training={training!r} is invalid: expected full, lora or fsdp")


def plan_run(config, **options) -> Plan:
    """The plan of a run (:func:`plan_bytes`'s arguments) and, when it does not fit, one line per option
    that would: a shorter window, bfloat16, gradient checkpointing, LoRA, FSDP over more processes."""
    options.setdefault("shape", model_shape(config))
    if options.get("rate") is None and options["device"].startswith("cuda") and not _cuda_available():
        options["rate"] = math.nan  # planning for a device that is not here: no time estimate
    if options.get("rate") is None:
        options["rate"] = matmul_rate(
            options["device"],
            "float32"
            if options.get("weights_dtype") == "float32" and options.get("training", "none") == "none"
            else "bfloat16",
        )
    plan = plan_bytes(config, **options)
    return plan if plan.fits else _with_advice(plan, config, options)


def plan_bytes(
    config,
    *,
    device: str,
    weights_dtype: str,
    evaluation_tokens: int,
    evaluation_forwards: int,
    kv_tokens: int = 0,
    training: str = "none",
    window: int = 0,
    steps: int = 0,
    world_size: int = 1,
    lora_rank: int = 8,
    lora=None,
    batch: int = 1,
    checkpointing: bool = False,
    eager: bool = False,
    gguf: bool = False,
    available: int | None = None,
    shape: ModelShape | None = None,
    rate: float | None = None,
) -> Plan:
    """The bytes and seconds of a run (module docstring).

    Args:
        evaluation_tokens: the longest evaluation forward (``N``, or the document length).
        evaluation_forwards: how many forwards of that length the run makes (for the time).
        kv_tokens: the longest passkey prefill kept in a KV cache (0: none).
        training: ``"none"``, ``"full"`` (one process), ``"lora"`` or ``"fsdp"`` (``world_size`` processes).
        window, steps: the fine-tune's window and steps.
        eager: the family's attention is eager (score matrices are materialised).
        gguf: the weights load from a GGUF (dequantised to float32 while loading).
        available: bytes free on the device (default: :func:`available_memory`).
    """
    if training not in ("none", "full", "lora", "fsdp"):
        raise RealModelError(f"training={training!r} is invalid: expected none, full, lora or fsdp")
    if weights_dtype not in DTYPE_BYTES:
        raise RealModelError(f"--dtype {weights_dtype!r} is invalid: expected {', '.join(DTYPE_BYTES)}")
    shape = shape or model_shape(config)
    rate = rate or matmul_rate(device, "float32" if weights_dtype == "float32" and training == "none" else "bfloat16")
    b = DTYPE_BYTES[weights_dtype] if training == "none" else 2  # fine-tunes run under bfloat16 autocast
    if training == "none":
        trainable, weights, state, adapters = 0, shape.parameters * DTYPE_BYTES[weights_dtype], 0, 0
    else:
        from ropelab.real.finetune import LoraSettings

        lora = lora or LoraSettings(rank=lora_rank)
        # a fine-tune loads the model in float32 (its master weights; ropelab.real.api), whatever --dtype says
        held = finetune_bytes(shape, training, world_size=world_size, lora=lora, weights_dtype="float32")
        trainable, weights, state = held.trainable, held.weights, held.gradients + held.optimizer
        adapters = (held.weights - shape.parameters * 4) // 4 if training == "lora" else 0
    activations = _activations(shape, evaluation_tokens, b, eager)
    logits = min(LOSS_CHUNK, evaluation_tokens) * shape.vocab * (b + 8)
    kv = 2 * shape.layers * shape.kv_heads * shape.head_dim * kv_tokens * b
    on_host = not device.startswith("cuda")
    runtime = resident_bytes() if on_host else 0
    # a GGUF is dequantised to float32 while it loads, then freed: a phase of its own, before any forward
    loading = shape.parameters * 4 if gguf and on_host else 0
    peak_evaluation = runtime + weights + max(loading, activations + logits, kv + _activations(shape, 1024, b, eager))
    tokens = window * max(1, batch // max(1, world_size))  # this process's windows of one step
    training_activations = (
        _training_activations(
            shape, tokens, training, eager, checkpointing, lora.rank if training == "lora" else 0, adapters
        )
        if training != "none"
        else 0
    )
    peak_training = runtime + weights + state + training_activations if training != "none" else 0
    available = available if available is not None else available_memory(device)
    flops_per_token = 2 * shape.parameters + 2 * shape.layers * shape.q_heads * shape.head_dim * evaluation_tokens
    seconds = evaluation_forwards * evaluation_tokens * flops_per_token / rate
    seconds += steps * 3 * window * batch * (2 * shape.parameters) / rate / max(1, world_size)
    plan = Plan(
        device=device,
        weights_dtype=weights_dtype if training == "none" else "float32 master" if training != "lora" else "float32",
        parameters=shape.parameters,
        trainable=trainable,
        weights=weights,
        training_state=state,
        activations=activations,
        training_activations=training_activations,
        logits=logits,
        kv_cache=kv,
        runtime=runtime,
        peak_evaluation=peak_evaluation,
        peak_training=peak_training,
        available=available,
        seconds=seconds,
        training=training,
        world_size=world_size,
    )
    return plan


def _with_advice(plan: Plan, config, options: dict) -> Plan:
    """``plan`` with one line per option that would fit (:func:`plan_run`)."""
    from dataclasses import replace

    def fits(**change) -> bool:
        return plan_bytes(config, **{**options, **change}).fits

    advice = []
    tokens, kv = options["evaluation_tokens"], options.get("kv_tokens", 0)
    if plan.peak_evaluation > plan.available:
        shorter = tokens
        while shorter > 1024 and not fits(evaluation_tokens=shorter, kv_tokens=min(kv, shorter)):
            shorter //= 2
        if shorter < tokens and fits(evaluation_tokens=shorter, kv_tokens=min(kv, shorter)):
            advice.append(
                f"would fit: evaluation windows of {shorter} tokens (--to / --doc-length / --passkey-lengths)"
            )
    if options.get("weights_dtype") == "float32" and fits(weights_dtype="bfloat16"):
        advice.append("would fit: --dtype bfloat16")
    if options.get("training", "none") == "full":
        if fits(checkpointing=True):
            advice.append("would fit: gradient checkpointing")
        if fits(training="lora"):
            advice.append(
                f"would fit: LoRA (rank {options.get('lora_rank', 8)}, attention projections + embeddings and norms)"
            )
        for k in (2, 4, 8, 16, 32, 64):
            if fits(training="fsdp", world_size=k):
                advice.append(
                    f"would fit: FSDP over {k} processes (torchrun --nproc-per-node {k}, --finetune-batch a multiple "
                    f"of {k})"
                )
                break
    if not advice:
        advice.append("nothing tried fits: a device with more memory is needed")
    return replace(plan, advice=tuple(advice))
