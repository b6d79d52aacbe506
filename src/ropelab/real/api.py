"""``ropelab.real.extend(model, target=..., methods=..., finetune=...)``: the whole extension study of a
real RoPE model as one call that returns a typed :class:`ExtendResult`; the CLI and the demo are thin
shells over it.

The stages, each in its own module: *plan* (:mod:`ropelab.real.plan`, from the config, before any
weight loads), *load* (:mod:`ropelab.real.load`: the model as shipped, :mod:`ropelab.real.shipped`),
*predict* (:mod:`ropelab.real.predict`, :func:`ropelab.real.stages.predict`), *measure*
(:func:`ropelab.real.stages.measure`), *fine-tune* (:mod:`ropelab.real.finetune`), *verdict*
(:func:`ropelab.real.stages.verdict`) and *hand over* (:mod:`ropelab.real.handover`).

Every argument and the model's config are checked before any weight loads, and the report is written
at the end, atomically: bad input raises :class:`~ropelab.errors.RealModelError` (the CLI prints it as
one line, exit 2) and writes nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ropelab.errors import RealModelError
from ropelab.real.finetune import DEFAULT_FINETUNE_STEPS, DEFAULT_FINETUNE_WINDOW, FinetuneSettings, LoraSettings

__all__ = [
    "ExtendOptions",
    "ExtendResult",
    "Verdict",
    "extend",
    "run",
    "print_prediction",
    "DEFAULT_FINETUNE_STEPS",
    "DEFAULT_FINETUNE_WINDOW",
]

#: The methods a run measures when none are named (each where it can start from the model's RoPE).
DEFAULT_METHODS = ("linear", "yarn")


@dataclass(frozen=True)
class ExtendOptions:
    """Every setting of one run; the CLI's flags carry the same names and take these defaults
    (``ropelab extend --help``; ``quiet`` aside: the command line shows progress unless ``--quiet``).

    ``methods=None`` takes :data:`DEFAULT_METHODS`, leaving out (with a note) those that cannot start from
    this model's RoPE; methods named explicitly are refused instead
    (:meth:`ropelab.real.shipped.Shipped.refusal`).
    """

    model: str | None = None
    target: int | None = None
    methods: tuple[str, ...] | None = None
    text: str | None = None
    documents: int = 1
    document_length: int | None = None
    bin_width: int = 256
    passkey_lengths: tuple[int, ...] | None = None
    passkey_depths: tuple[float, ...] | None = None
    passkey_keys: int = 5
    budget_minutes: float = 30.0
    margin: float = 0.5
    dtype: str = "bfloat16"
    finetune: str = "none"
    finetune_methods: tuple[str, ...] | None = None
    finetune_steps: int = DEFAULT_FINETUNE_STEPS
    finetune_window: int | None = None
    finetune_batch: int = FinetuneSettings.batch  # the fine-tune's own options: finetune.add_finetune_arguments
    finetune_lr: float = FinetuneSettings.lr
    finetune_weights: str = "full"
    lora_rank: int = LoraSettings.rank
    lora_alpha: float = LoraSettings.alpha
    lora_targets: tuple[str, ...] = LoraSettings.targets
    lora_trainable: tuple[str, ...] = LoraSettings.trainable
    gradient_checkpointing: bool = False
    write_config: str | None = None
    write_gguf: str | None = None
    gguf_type: str = "auto"
    force: bool = False
    out: str | None = "ropelab-out/extend"
    device: str = "cpu"
    device_memory: float | None = None  # GiB the plan may use (default: what the device has free)
    plan_only: bool = False
    threads: int | None = 2
    seed: int = 0
    quiet: bool = True

    @classmethod
    def from_namespace(cls, namespace) -> ExtendOptions:
        """The options of a parsed ``ropelab extend`` command line (flags named as the fields)."""
        return cls(**{f.name: getattr(namespace, f.name) for f in fields(cls) if hasattr(namespace, f.name)})


@dataclass(frozen=True)
class Verdict:
    """The method to ship and why (:func:`ropelab.real.stages.verdict`)."""

    best: str
    reason: str
    in_context_ppl: float
    methods: dict
    definition: str


@dataclass
class ExtendResult:
    """What :func:`extend` found, for a notebook to inspect and plot.

    Attributes:
        model: the model's name; ``shipped``: its RoPE as shipped (``shipped.describe()``).
        trained_length: ``T``, the context it ships for; ``target``: ``N``.
        plan: the memory and time plan made before any weight loaded.
        prediction: per method, the predicted break and what the method starts from.
        measurements: per method, loss bins, perplexity per range, passkey grid and records.
        verdict: the method to ship and the reason; ``None`` for a plan-only run.
        finetune: the PoSE study (loss curves, Table-3 rows), or ``None``.
        handover: the written model folder and its load lines, or ``None``.
        report: the report.html path, or ``None``.
        results: everything above as the JSON written to results.json.
    """

    model: str
    shipped: Any
    trained_length: int
    target: int
    plan: Any
    prediction: dict = field(default_factory=dict)
    measurements: dict = field(default_factory=dict)
    verdict: Verdict | None = None
    finetune: dict | None = None
    handover: dict | None = None
    report: Path | None = None
    results: dict = field(default_factory=dict)

    def loss_curve(self, method: str) -> tuple[list[int], list[float]]:
        """``(bin starts, mean loss per bin)`` of ``method``'s loss per position, for plotting."""
        entry = self.measurements["methods"][method]
        width = self.results["settings"]["bin_width"]
        return [i * width for i in range(len(entry["bins"]))], list(entry["bins"])

    def ppl(self, method: str) -> dict[str, float]:
        """Perplexity of ``method`` over ``[0, T/2)``, ``[T/2, T)`` and ``[T, N)``."""
        return dict(self.measurements["methods"][method]["ppl_ranges"])


def extend(model: str | None = None, *, echo=print, **options) -> ExtendResult:
    """Predict, measure, fine-tune (optionally), decide and hand over an extension of ``model``.

    Args:
        model: a transformers folder, a ``.gguf`` file, a hub id, or ``None`` for the embedded SmolLM2-135M.
        echo: where progress lines go (``print``; ``lambda line: None`` for silence).
        **options: the fields of :class:`ExtendOptions` (``target``, ``methods``, ``finetune="pose"``, ...).

    Returns:
        :class:`ExtendResult`.

    Raises:
        RealModelError: bad input, an unsupported model, or a plan that does not fit (one line each).
    """
    unknown = set(options) - {f.name for f in fields(ExtendOptions)}
    if unknown:
        raise RealModelError(f"extend() got unknown option(s) {', '.join(sorted(unknown))}: see ExtendOptions")
    return run(ExtendOptions(model=model, **options), echo)


def _writable(methods, config, shipped, target: int, named: bool, echo) -> tuple[str, ...]:
    """``methods`` whose config.json transformers accepts for this family; one it refuses is refused if
    named, left out (said so) if it came from the defaults."""
    from ropelab.real.stages import written_config_error

    kept = []
    for method in methods:
        error = written_config_error(config, shipped.method_config(method, target))
        if error and (named or method == "extrapolate"):
            raise RealModelError(f"--methods {method!r} cannot be handed over for this model: {error}")
        if error:
            echo(f"  left out: {method} (its config cannot be handed over: {error})")
        else:
            kept.append(method)
    return tuple(kept)


def _settings(options: ExtendOptions, config, shipped, echo):
    from ropelab.real.stages import METHODS, Settings, check_methods

    trained = shipped.context
    target = options.target or 2 * trained
    named = options.methods is not None
    asked = METHODS if tuple(options.methods or ()) == ("all",) else (options.methods or DEFAULT_METHODS)
    methods = check_methods(asked, shipped, named=named and tuple(options.methods) != ("all",))
    for method in asked:
        if method not in methods and shipped.refusal(method):
            echo(f"  left out: {shipped.refusal(method)}")
    methods = _writable(methods, config, shipped, target, named, echo)
    default_lengths = tuple(sorted({target // 4, target // 2, 3 * target // 4, target}))
    lengths = options.passkey_lengths if options.passkey_lengths is not None else default_lengths
    depths = options.passkey_depths if options.passkey_depths is not None else (0.0, 0.25, 0.5, 0.75, 1.0)
    settings = Settings(
        target=target,
        methods=methods,
        documents=options.documents,
        bin_width=options.bin_width,
        passkey_lengths=tuple(lengths) if options.passkey_keys > 0 else (),
        passkey_depths=tuple(depths),
        passkey_keys=options.passkey_keys,
        margin=options.margin,
        text=options.text,
        seed=options.seed,
        document_length=options.document_length,
        dtype=options.dtype,
    )
    settings.check(trained)
    return settings


def _tuning(options: ExtendOptions, shipped, target: int):
    """The fine-tune's settings and methods, checked (before anything runs); ``(None, ())`` without one."""
    from ropelab.real.finetune import finetune_settings_from_args

    tuning, methods = finetune_settings_from_args(options, shipped.context, target)
    if tuning is None:
        return None, ()
    named = options.finetune_methods is not None
    for method in methods:
        reason = shipped.refusal(method)
        if reason and named:
            raise RealModelError(reason.replace("--methods", "--finetune-methods"))
    methods = tuple(m for m in methods if not shipped.refusal(m))
    if not methods:
        raise RealModelError("--finetune pose has no method to fine-tune for this model: " + shipped.refusal("yarn"))
    return tuning, methods


def _model_prediction(model, tokenizer, shipped, settings, prediction: dict) -> str:
    """Rule (c) of :mod:`ropelab.analysis.breaks` from the model's q/k on <= T tokens, into ``prediction``;
    a RoPE per layer type keeps the config rule (labelled so). Returns a line saying which."""
    from ropelab.real.predict import PROBE_LENGTH, predict_real
    from ropelab.real.shipped import LayerTypeExtension
    from ropelab.real.stages import add_model_prediction

    if isinstance(shipped.rope, LayerTypeExtension):
        return "  (a RoPE per layer type: the breaks above are the config rule, a lower bound)"
    started = time.perf_counter()
    trained = shipped.context
    configs = {m: shipped.method_config(m, settings.target) for m in settings.methods}
    try:
        predictions = predict_real(
            model, tokenizer, shipped.long, configs, trained, settings.target, text=settings.text
        )
    except RealModelError as error:  # the model's q and k cannot be read: the config rule stands, said so
        return f"  (the config rule above stands, a lower bound: {error})"
    add_model_prediction(prediction, predictions)
    return (
        f"  (breaks predicted from the model's own q and k on {min(PROBE_LENGTH, trained)} tokens, nothing past T run, "
        f"in {time.perf_counter() - started:.0f} s; the first unseen angle is the config rule, a lower bound)"
    )


def _layer_types_text(shipped) -> str | None:
    """Which layer type the methods extend and which keep their RoPE (None for one RoPE for all layers)."""
    from ropelab.real.shipped import LayerTypeExtension

    rope = shipped.rope
    if not isinstance(rope, LayerTypeExtension):
        return None
    kept = "".join(
        f"; {name} keeps its RoPE (a window of {window} positions, within T = {shipped.context}, only meets "
        "distances seen in training)"
        for name, window in rope.kept
    )
    return f"Layer types: the methods extend {rope.extended}{kept}"


def _plan(options: ExtendOptions, config, source: dict, settings, tuning, tuned, shipped):
    """The run's plan (before any weight loads) and the weight dtype (:func:`run` refuses a plan that does
    not fit). The fine-tune's own LoRA settings and windows per step are planned, not the defaults."""
    from ropelab.real.distributed import world_size
    from ropelab.real.load import attention_implementation, causal_lm_class
    from ropelab.real.plan import GIB, plan_run

    weights_dtype = "float32" if tuned else options.dtype  # a fine-tune keeps float32 master weights
    forwards = len(settings.methods) * settings.documents + len(settings.passkey_lengths and settings.methods) * (
        settings.passkey_keys
    )
    plan = plan_run(
        config,
        device=options.device,
        weights_dtype=weights_dtype,
        evaluation_tokens=settings.length,
        evaluation_forwards=max(1, forwards),
        kv_tokens=max(settings.passkey_lengths, default=0),
        training=_training_kind(tuning) if tuned else "none",
        world_size=world_size(),
        lora=tuning.lora if tuning else None,
        batch=tuning.batch if tuning else 1,
        checkpointing=bool(tuning and tuning.gradient_checkpointing),
        window=tuning.window if tuning else 0,
        steps=tuning.steps * len(tuned) if tuning else 0,
        eager=attention_implementation(causal_lm_class(config, source["name"])) == "eager",
        gguf=bool(source.get("gguf_file")),
        available=int(options.device_memory * GIB) if options.device_memory else None,
    )
    return plan, weights_dtype


def _training_kind(tuning) -> str:
    """The plan's name for how the fine-tune trains: ``lora``, ``fsdp`` (under torchrun) or ``full``."""
    from ropelab.real.distributed import world_size

    return "lora" if tuning.lora is not None else "fsdp" if world_size() > 1 else "full"


def _silent(line: str) -> None:
    """An ``echo`` that prints nothing."""


def run(options: ExtendOptions, echo=print) -> ExtendResult:
    """:func:`extend` on an :class:`ExtendOptions`. Nothing is written before the end but the fine-tune's
    checkpoints (``out``/checkpoints, atomic, resumed from by a rerun). Under ``torchrun`` every process
    runs this: the fine-tune runs across all of them, rank 0 alone prints, measures and writes, and the
    other ranks return the result as planned (no measurements)."""
    import torch

    from ropelab.io import portable_path
    from ropelab.real.distributed import is_main_process, local_device
    from ropelab.real.handover import check_output_folder, load_lines, write_model_folder
    from ropelab.real.load import load_config, load_model, resolve
    from ropelab.real.report import write_report
    from ropelab.real.stages import hf_config, measure, predict, verdict

    started = time.perf_counter()
    if not is_main_process():  # under torchrun, rank 0 alone prints, measures and writes
        echo = _silent
    if options.threads:
        torch.set_num_threads(max(1, options.threads))
    if options.write_config:
        check_output_folder(options.write_config, options.force)
    if options.device.startswith("cuda") and not torch.cuda.is_available() and not options.plan_only:
        raise RealModelError(f"--device {options.device!r} is invalid: CUDA is not available here")
    if options.device_memory is not None and not options.device_memory > 0:
        raise RealModelError(f"--device-memory {options.device_memory} is invalid: expected GiB > 0")
    source = resolve(options.model)
    config, shipped = load_config(source)  # a model without RoPE fails here, --finetune or not
    trained = shipped.context
    echo(f"{source['name']}: {shipped.describe()}")
    settings = _settings(options, config, shipped, echo)
    tuning, tuned = _tuning(options, shipped, settings.target)
    plan, weights_dtype = _plan(options, config, source, settings, tuning, tuned, shipped)
    for line in plan.lines():
        echo(line)
    if options.write_gguf:  # the GGUF hand-over's path, architecture and every candidate RoPE, before any load
        from ropelab.real.gguf_export import check_gguf_handover

        candidates = {m for m in settings.methods if m != "extrapolate"} or {"extrapolate"}
        configs = [shipped.method_config(m, settings.target) for m in sorted(candidates | set(tuned))]
        check_gguf_handover(
            options.write_gguf,
            options.force,
            config,
            configs,
            dtype=options.gguf_type,
            source=source,
            fine_tuning=bool(tuned),
        )
    result = ExtendResult(source["name"], shipped, trained, settings.target, plan)
    if not plan.fits:
        raise RealModelError(
            f"the plan does not fit {options.device}: peak {plan.peak / 2**30:.1f} GiB against "
            f"{plan.available / 2**30:.1f} GiB available; {'; '.join(plan.advice)}"
        )
    if options.plan_only:
        return result
    prediction = predict(
        shipped, trained, settings.target, settings.methods + tuple(m for m in tuned if m not in settings.methods)
    )
    layer_types = _layer_types_text(shipped)
    if layer_types:
        echo(layer_types)
    loaded = load_model(options.model, local_device(options.device), weights_dtype)  # cuda:LOCAL_RANK under torchrun
    model, tokenizer = loaded.model, loaded.tokenizer
    from ropelab.real.evaluate import corpus_documents, passkey_tokens

    corpus_documents(tokenizer, settings.length, settings.documents, settings.text)  # a short text fails here
    for length in settings.passkey_lengths:  # so does a passkey length too short for the prompt
        passkey_tokens(tokenizer, length, 0.5, 12345)
    note = _model_prediction(model, tokenizer, shipped, settings, prediction)
    print_prediction(prediction, echo)
    echo(note)
    cost = _estimate(model, settings, config)
    settings, total = _thin_to_budget(options, settings, cost, echo, tuning, tuned)
    if tuned:  # LoRA targets and kept checkpoints, refused before any measurement
        from ropelab.real.finetune import check_finetune_run

        check_finetune_run(model, tokenizer, settings, tuning, tuned, Path(options.out or ".") / "checkpoints")
    cells = len(settings.passkey_lengths) * len(settings.passkey_depths)
    tuning_text = (
        f" + PoSE fine-tuning of {', '.join(tuned)}, {tuning.steps} steps of {tuning.window} tokens each"
        if tuned
        else ""
    )
    echo(
        f"Estimate: {len(settings.methods)} RoPE variants x ({settings.documents} document(s) of {settings.length} "
        f"tokens + passkey {cells} cells x {settings.passkey_keys} key(s), one haystack of "
        f"{max(settings.passkey_lengths, default=0)} tokens per key){tuning_text}: {total / 60:.1f} min on "
        f"{options.device} ({settings.dtype})"
    )

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=options.quiet or not is_main_process(),
        transient=False,
    ) as progress:
        bar = progress.add_task("extend", total=total)

        def tick(label, task):
            kind, tokens = task
            progress.update(
                bar,
                advance=cost(kind, tokens if tokens is not None else max(settings.passkey_lengths))
                / (len(settings.passkey_lengths) if kind == "passkey" else 1)
                * (_windows_per_step(tuning) if kind == "train" else 1),  # a step ticks once for its windows
                description=label,
            )

        # under torchrun the other ranks only train (the fine-tune is on there: refused otherwise)
        measured = measure(model, tokenizer, shipped, trained, settings, tick=tick) if is_main_process() else None
        finetune = study = None
        if tuned:
            from ropelab.real.finetune import finetune_study

            checkpoints = Path(options.out or ".") / "checkpoints"
            study = finetune_study(model, tokenizer, shipped, trained, settings, tuning, tuned, checkpoints, tick=tick)
            if not is_main_process():  # under torchrun, rank 0 measures and writes
                return result
            zero_shot = (
                measured["methods"]
                if all(m in measured["methods"] for m in tuned)
                else measure(
                    model, tokenizer, shipped, trained, replace_methods(settings, tuned, passkey=False), tick=tick
                )["methods"]
            )
            for method, entry in study["methods"].items():
                measured["methods"][f"{method}+pose"] = entry["checks"][tuning.steps]
                prediction["methods"][f"{method}+pose"] = prediction["methods"][method]
            finetune = {
                "protocol": "PoSE (Zhu et al. 2024): two chunks per window, skip-wise position ids over [0, N)",
                "settings": asdict(tuning),
                "methods": list(tuned),
                "training_text": study["training_text"],
                "loss": {m: e["losses"] for m, e in study["methods"].items()},
                "table": _finetune_rows(study, zero_shot),
                "steps": tuning.steps,
            }
    decided = verdict(prediction, measured, trained, settings)
    results = {
        "model": loaded.name,
        "source": {**loaded.source, "folder": portable_path(loaded.source["folder"])},
        "device": options.device,
        "shipped": shipped.describe(),
        "trained_length": trained,
        "pretrained_length": shipped.pretrained,
        "target": settings.target,
        "settings": asdict(settings),
        "plan": asdict(plan),
        "prediction": prediction,
        "measure": measured,
        "verdict": decided,
        "finetune": finetune,
        "timing": {"total_seconds": time.perf_counter() - started, "estimated_seconds": total},
        "notes": [
            f"As-is is the model as shipped: {shipped.describe()}. T is the context it ships for "
            "(max_position_embeddings, or factor x original_max_position_embeddings where that is larger).",
            *[f"{m} starts from {shipped.starts_from(m)}." for m in settings.methods if m != "extrapolate"],
            *([layer_types] if layer_types else []),
            "Documents are consecutive validation files of the corpus joined by blank lines, so a window spans "
            "several files; each starts with the tokenizer's own prefix (BOS where it adds one).",
            "dynamic is evaluated in one forward of the whole window, so every position sees the scale of the full "
            "length (as in transformers' dynamic module for a single forward), not the per-step scale of generation.",
            "Passkey: named keys in one haystack per trial (RULER's multi-key needle), asked on the KV cache at each "
            "length; greedy exact match decided teacher-forced. benchmarks/passkey_agreement.py compares it with the "
            "single-key prompt.",
        ],
    }
    _print_verdict(results, echo)
    path = write_report(results, Path(options.out)) if options.out else None  # safe before the hand-over
    best = decided["best"]
    method = best.removesuffix("+pose")  # the RoPE handed over, fine-tuned or not
    fine_tuned_best = study is not None and best.endswith("+pose")
    if fine_tuned_best and (options.write_config or options.write_gguf):
        model.load_state_dict(study["weights"][method])  # once, for every hand-over
    if options.write_config:
        folder = write_model_folder(
            model,
            tokenizer,
            hf_config(config, shipped.method_config(method, settings.target)),
            options.write_config,
            force=options.force,
        )
        results["handover"] = {"method": best, "folder": portable_path(folder), "load": load_lines(folder)}
        path = write_report(results, Path(options.out)) if options.out else None
        echo(f"wrote a model folder with {best}'s rope_parameters in {options.write_config}; load it with:")
        for line in results["handover"]["load"]:
            echo(f"  {line}")
    if options.write_gguf:
        from ropelab.real.gguf_export import hand_over_gguf

        gguf = hand_over_gguf(
            model,
            tokenizer,
            config,
            shipped.method_config(method, settings.target),
            options.write_gguf,
            source=loaded.source,
            fine_tuned=fine_tuned_best,
            dtype=options.gguf_type,
            force=options.force,
            folder=options.write_config,
            echo=echo,
        )
        gguf.update(method=best, path=portable_path(gguf["path"]), modelfile=portable_path(gguf["modelfile"]))
        results["gguf"] = gguf
        path = write_report(results, Path(options.out)) if options.out else None
    result.prediction, result.measurements, result.finetune = prediction, measured, finetune
    result.verdict = Verdict(
        decided["best"], decided.get("reason", ""), decided["in_context_ppl"], decided["methods"], decided["definition"]
    )
    result.handover, result.report, result.results = results.get("handover"), path, results
    return result


def print_prediction(prediction: dict, echo=print) -> None:
    T, N = prediction["trained_length"], prediction["target"]
    pairs = prediction["out_of_range_pairs"]
    echo(f"Prediction (nothing run past T): T = {T}, N = {N}, {prediction['pairs']} pairs, base {prediction['base']:g}")
    echo(
        f"  past T, {len(pairs)} of {prediction['pairs']} pairs leave their trained arc: {pairs}"
        f" (wavelengths {', '.join(f'{w:,.0f}' for w in prediction['out_of_range_wavelengths'][:3])}{' ...' if len(pairs) > 3 else ''})"
    )
    echo(f"  critical dimension {prediction['critical_dimension']} of {prediction['rotary_dim']}")
    for method, entry in prediction["methods"].items():
        where = f"to break at position {entry['break']}" if entry["break"] is not None else f"to hold up to {N}"
        first = entry.get("first_unseen_angle")
        echo(
            f"  {method:>11}: expected {where} (first unseen angle {first if first is not None else 'none'}; "
            f"{entry['out_of_range_at_target']} pairs out of range at N) [{entry.get('predictor', 'first unseen angle')}]"
        )


def _estimate(model, settings, config):
    """``cost(kind, tokens)``: seconds of one forward (``"loss"``, ``"prefill"``) or fine-tuning step
    (``"train"``) of ``tokens`` tokens, from a probe forward under the run's precision scaled by FLOPs."""
    import torch

    from ropelab.real.evaluate import precision, token_losses
    from ropelab.real.stages import forward_seconds

    probe = 1024
    ids = torch.randint(0, int(config.vocab_size), (probe + 1,))
    with torch.inference_mode(), precision(model, settings.dtype):
        token_losses(model, ids[:129])  # warm-up
        started = time.perf_counter()
        token_losses(model, ids)
    seconds = time.perf_counter() - started
    shape = dict(
        num_layers=config.num_hidden_layers,
        width=config.hidden_size,
        num_heads=config.num_attention_heads,
        head_dim=getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads,
        vocab=int(config.vocab_size),
    )
    # a training step: forward + backward (about twice the forward) + AdamW on every weight
    return lambda kind, length: (
        forward_seconds(length, seconds, probe, **shape) * (TRAIN_STEP_FORWARDS if kind == "train" else 1.0)
    )


TRAIN_STEP_FORWARDS = 3.5  # one fine-tuning step in forwards of its window (benchmarks/real_speed.py: ~3.4)


def _thin_to_budget(options, settings, cost, echo, tuning=None, tuned=()):
    """Thin the *default* passkey grid until the zero-shot estimate fits ``--budget-minutes``: keys per cell
    to 3, then 1, then the depths to (0, 0.5, 1), then the lengths to (N/2, N). Loss curves are never cut, a
    grid the user named is never changed, and a fine-tune (asked for by flag) is not counted against the
    budget. Returns the settings and the whole run's estimate in seconds."""
    from dataclasses import replace

    def seconds(s):  # the fine-tune is what --finetune asked for: the budget thins the zero-shot grid only
        return sum(cost(kind, n) for kind, n in _tasks(s))

    budget = options.budget_minutes * 60
    N = settings.target
    steps = []
    if options.passkey_lengths is None and options.passkey_depths is None:
        steps += [dict(passkey_keys=min(3, settings.passkey_keys)), dict(passkey_keys=1)]
    if options.passkey_depths is None:
        steps.append(dict(passkey_depths=(0.0, 0.5, 1.0)))
    if options.passkey_lengths is None:
        steps.append(dict(passkey_lengths=tuple(sorted({N // 2, N}))))
    for change in steps:
        if seconds(settings) <= budget or not settings.passkey_lengths:
            break
        settings = replace(settings, **change)
        echo(
            f"  estimate over --budget-minutes {options.budget_minutes:g}: passkey grid thinned to lengths "
            f"{list(settings.passkey_lengths)}, depths {list(settings.passkey_depths)}, {settings.passkey_keys} key(s) per cell"
        )
    if seconds(settings) > budget:
        echo(
            f"  warning: the estimate still exceeds --budget-minutes {options.budget_minutes:g} (fewer --methods, a shorter --to, "
            "or --device cuda would fit it)"
        )
    return settings, sum(cost(kind, n) for kind, n in _tasks(settings, tuning, tuned))


def _windows_per_step(tuning) -> int:
    """The fine-tuning windows this process trains in one step (``--finetune-batch`` split over torchrun's)."""
    from ropelab.real.distributed import world_size

    return max(1, tuning.batch // world_size())


def _tasks(settings, tuning=None, tuned=()) -> list[tuple[str, int]]:
    """Every forward-sized task of the run as ``(kind, tokens)``; a passkey trial is one prefill of the longest
    length, a fine-tuning step one ``"train"`` task per window this process trains."""
    loss = [("loss", settings.length)] * settings.documents
    passkey = [("prefill", max(settings.passkey_lengths))] * settings.passkey_keys if settings.passkey_lengths else []
    tasks = (loss + passkey) * len(settings.methods)
    for _ in tuned:
        train = [("train", tuning.window)] * (tuning.steps * _windows_per_step(tuning))
        tasks += train + loss * (2 if tuning.steps > 1 else 1) + passkey
    return tasks


def _finetune_rows(study: dict, zero_shot: dict) -> dict:
    """Chen et al. 2023 Table 3's shape: per method, perplexity per range after 0 / k1 / k2 steps."""
    return {
        method: {"0": zero_shot[method]["ppl_ranges"], **{str(k): e["ppl_ranges"] for k, e in m["checks"].items()}}
        for method, m in study["methods"].items()
    }


def replace_methods(settings, methods, passkey: bool = True):
    """``settings`` measuring only ``methods`` (and no passkey unless ``passkey``)."""
    from dataclasses import replace

    return replace(settings, methods=tuple(methods), **({} if passkey else {"passkey_lengths": ()}))


def _print_verdict(results: dict, echo=print) -> None:
    v = results["verdict"]
    echo(f"In-context ppl (as-is, positions [T/2, T)): {v['in_context_ppl']:.2f}")
    for method, entry in results["measure"]["methods"].items():
        segs = ", ".join(f"{k} {p:.2f}" for k, p in entry["ppl_segments"].items())
        pk = (
            "; passkey " + ", ".join(f"{n}: {sum(r.values()) / len(r):.2f}" for n, r in entry["passkey"].items())
            if entry["passkey"]
            else ""
        )
        m = v["methods"][method]
        echo(
            f"  {method:>15}: ppl per segment {segs}; break predicted {m['predicted_break']} (first unseen angle "
            f"{m.get('first_unseen_angle')}), measured {m['measured_break']}; in-context cost {m.get('in_context_cost', 0.0):+.3f} nats{pk}"
        )
    echo(f"Best at N = {results['target']}: {v['best']} ({v['reason']})")
