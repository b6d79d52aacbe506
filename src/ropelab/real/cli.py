"""``ropelab extend --model M --to N [--methods ...]``: extend a real RoPE model (registered by :mod:`ropelab.cli`).

Every argument and the model's config are checked before anything runs, and every file is written
at the end, atomically: bad input (a model without RoPE, a target not past ``T``, an unknown
method, a missing or corrupt file, a text too short) exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from ropelab.cli_args import float_list, int_list, names
from ropelab.errors import RealModelError

__all__ = ["register", "demo", "run_extend"]

# PoSE defaults: about 8 minutes per method on 2 cores (benchmarks/real_speed.py: a 2048-token step takes
# 12.9 s under bfloat16 autocast, so a 1024-token one about 6 s), 16 minutes for PI and YaRN together
DEFAULT_FINETUNE_STEPS = 80
DEFAULT_FINETUNE_WINDOW = 1024


def register(subparsers) -> None:
    _add_explain_model(subparsers)
    p = subparsers.add_parser(
        "extend", help="extend a real RoPE model past its trained length: predict, measure, verdict, report"
    )
    p.add_argument(
        "--model", default=None, help="transformers folder, .gguf file or hub id (default: embedded SmolLM2-135M GGUF)"
    )
    p.add_argument("--to", type=int, default=None, dest="target", help="target length N in tokens (default 2T)")
    p.add_argument(
        "--methods",
        type=names,
        default=("linear", "yarn"),
        help="comma-separated: linear,ntk,dynamic,yarn,llama3, or all (the model as-is is always measured)",
    )
    p.add_argument(
        "--text", default=None, help="file or folder for the long documents (default: Python stdlib sources)"
    )
    p.add_argument("--documents", type=int, default=1, help="documents of N tokens for the loss curve")
    p.add_argument(
        "--doc-length",
        type=int,
        default=None,
        dest="document_length",
        help="tokens per document, T < length <= N (default N; shorter is cheaper, still past T)",
    )
    p.add_argument("--bin", type=int, default=256, dest="bin_width", help="positions per loss bin")
    p.add_argument(
        "--passkey-lengths", type=int_list, default=None, help="total lengths in tokens (default N/4,N/2,3N/4,N)"
    )
    p.add_argument(
        "--passkey-depths", type=float_list, default=None, help="key depths in [0, 1] (default 0,0.25,0.5,0.75,1)"
    )
    p.add_argument(
        "--passkey-keys", type=int, default=5, help="random keys per cell, one haystack each (0: no passkey)"
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=30.0,
        help="if the estimate exceeds this, the default passkey grid is thinned (never the loss curves)",
    )
    p.add_argument("--margin", type=float, default=0.5, help="nats above the in-context loss that count as broken")
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default="bfloat16",
        help="forwards under bfloat16 autocast (default; benchmarks/real_speed.py) or in float32",
    )
    p.add_argument(
        "--finetune",
        choices=("none", "pose"),
        default="none",
        help="pose: fine-tune each --finetune-methods RoPE on short windows (PoSE, Zhu et al. 2024) and measure it",
    )
    p.add_argument(
        "--finetune-methods", type=names, default=("linear", "yarn"), help="methods to fine-tune (default linear,yarn)"
    )
    p.add_argument(
        "--finetune-steps",
        type=int,
        default=DEFAULT_FINETUNE_STEPS,
        help=f"fine-tuning steps per method (default {DEFAULT_FINETUNE_STEPS}); measured after half and all",
    )
    p.add_argument(
        "--finetune-window",
        type=int,
        default=None,
        help=f"tokens per fine-tuning window, at most T (default min({DEFAULT_FINETUNE_WINDOW}, T))",
    )
    p.add_argument(
        "--write-config",
        default=None,
        metavar="DIR",
        help="write a model folder (weights, config.json, tokenizer) of the best method, fine-tuned if it was",
    )
    p.add_argument(
        "--write-gguf",
        default=None,
        metavar="FILE",
        help="also write the best method as one GGUF for llama.cpp / Ollama, with a Modelfile beside it",
    )
    p.add_argument(
        "--gguf-type",
        choices=("auto", "source", "f16", "bf16", "f32", "q8_0"),
        default="auto",
        help="GGUF tensors: auto = a GGUF input's own tensors for a zero-shot method, else f16",
    )
    p.add_argument("--force", action="store_true", help="let --write-config / --write-gguf replace files that exist")
    p.add_argument("--out", default="ropelab-out/extend", help="folder for results.json, results.csv, report.html")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_extend)


def _add_explain_model(subparsers) -> None:
    """Give ``ropelab explain`` (registered by :mod:`ropelab.explain.cli`, a layer below) ``--model``: the
    break predicted from a real model's weights and activations. Without ``--model`` it runs as before."""
    explain = subparsers.choices.get("explain")
    if explain is None:
        return
    explain.add_argument(
        "--model",
        default=None,
        metavar="DIR|.gguf",
        help="a real model (transformers folder, .gguf, hub id, or 'embedded' for the embedded SmolLM2): "
        "predict its break from its own q and k",
    )
    plain = explain.get_default("func")

    def run(args):
        return _explain_model(args) if args.model else plain(args)

    explain.set_defaults(func=run)


def _explain_model(args, echo=print) -> None:
    """``ropelab explain --model M [--context N]``: rules (a), (b) and the model-based prediction, as-is to ``N``."""
    import torch

    from ropelab.config import RopeConfig
    from ropelab.extension import extension_config
    from ropelab.real.load import load_config, load_model, resolve
    from ropelab.real.predict import PROBE_LENGTH, predict_real

    torch.set_num_threads(2)
    spec = None if args.model == "embedded" else args.model
    source = resolve(spec)
    _, rope, trained = load_config(source)
    target = args.context or 2 * trained
    if target <= trained:
        raise RealModelError(f"--context {target} is invalid: expected more than the trained length T={trained}")
    if not isinstance(rope, RopeConfig):
        raise RealModelError(
            f"--model {args.model!r}: a RoPE per layer type; explain --model predicts one RoPE (use ropelab extend)"
        )
    started = time.perf_counter()
    loaded = load_model(spec)
    as_is = extension_config(rope, "extrapolate", trained, 1.0)
    p = predict_real(loaded.model, loaded.tokenizer, as_is, {"as-is": as_is}, trained, target)["as-is"]
    echo(
        f"{loaded.name}: RoPE base {rope.base:g}, {rope.num_pairs} pairs, trained length T = {trained}; as-is up to {target}"
    )
    echo(
        f"  predicted break: {p.position if p.position is not None else f'none up to {target}'} "
        f"(far attention mass of the model's own q/k crosses {p.far_threshold:g}; q/k from {min(PROBE_LENGTH, trained)} tokens, "
        f"nothing past T run, {time.perf_counter() - started:.0f} s)"
    )
    echo(f"  first unseen angle: {p.first_unseen_angle} (config rule; a lower bound)")
    echo(f"  Liu et al. 2023 T_extra: {p.extrapolation_bound} (config rule; a lower bound)")
    if p.slope is not None:
        echo(f"  after the break the mean score excess rises {p.slope:.3f} nats per T")


def _extend(args) -> None:
    path = run_extend(args)
    print(f"report: {path}")


def _settings(args, trained: int):
    from ropelab.real.extend import METHODS, Settings, check_methods

    target = args.target or 2 * trained
    methods = check_methods(METHODS if tuple(args.methods) == ("all",) else args.methods)
    default_lengths = tuple(sorted({target // 4, target // 2, 3 * target // 4, target}))
    lengths = args.passkey_lengths if args.passkey_lengths is not None else default_lengths
    depths = args.passkey_depths if args.passkey_depths is not None else (0.0, 0.25, 0.5, 0.75, 1.0)
    settings = Settings(
        target=target,
        methods=methods,
        documents=args.documents,
        bin_width=args.bin_width,
        passkey_lengths=tuple(lengths) if args.passkey_keys > 0 else (),
        passkey_depths=tuple(depths),
        passkey_keys=args.passkey_keys,
        margin=args.margin,
        text=args.text,
        seed=args.seed,
        document_length=getattr(args, "document_length", None),
        dtype=getattr(args, "dtype", "bfloat16"),
    )
    settings.check(trained)
    return settings


def _tuning(args, trained: int, target: int):
    """The fine-tune's settings and methods, checked (before anything runs); ``(None, ())`` without ``--finetune``."""
    from ropelab.real.finetune import FinetuneSettings, check_finetune_methods

    if args.finetune_steps < 0:
        raise RealModelError(f"--finetune-steps {args.finetune_steps} is invalid: expected >= 0")
    if getattr(args, "finetune", "none") == "none":
        return None, ()
    window = args.finetune_window if args.finetune_window is not None else min(DEFAULT_FINETUNE_WINDOW, trained)
    tuning = FinetuneSettings(steps=args.finetune_steps, window=window, target=target, seed=args.seed)
    tuning.check(trained)
    return tuning, check_finetune_methods(args.finetune_methods)


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


def _model_prediction(model, tokenizer, rope, trained: int, settings, prediction: dict) -> str:
    """Rule (c) of :mod:`ropelab.analysis.breaks` from the model's q/k on <= T tokens, into ``prediction``;
    a RoPE per layer type keeps the config rule (labelled so). Returns a line saying which."""
    from ropelab.config import RopeConfig
    from ropelab.real.extend import add_model_prediction, method_config
    from ropelab.real.predict import PROBE_LENGTH, predict_real

    if not isinstance(rope, RopeConfig):
        return "  (a RoPE per layer type: the breaks above are the config rule, a lower bound)"
    started = time.perf_counter()
    configs = {m: method_config(rope, m, trained, settings.target) for m in settings.methods}
    add_model_prediction(
        prediction, predict_real(model, tokenizer, rope, configs, trained, settings.target, text=settings.text)
    )
    return (
        f"  (breaks predicted from the model's own q and k on {min(PROBE_LENGTH, trained)} tokens, nothing past T run, "
        f"in {time.perf_counter() - started:.0f} s; the first unseen angle is the config rule, a lower bound)"
    )


def _layer_types_text(rope, trained: int) -> str | None:
    """Which layer type the methods extend and which keep their RoPE (None for one RoPE for all layers)."""
    from ropelab.real.load import LayerTypeExtension

    if not isinstance(rope, LayerTypeExtension):
        return None
    kept = "".join(
        f"; {name} keeps its RoPE (a window of {window} positions, within T = {trained}, only meets distances seen in training)"
        for name, window in rope.kept
    )
    return f"Layer types: the methods extend {rope.extended}{kept}"


def _estimate(model, settings, config):
    """``cost(kind, tokens)``: seconds of one forward (``"loss"``, ``"prefill"``) or fine-tuning step
    (``"train"``) of ``tokens`` tokens, from a probe forward under the run's precision scaled by FLOPs."""
    import torch

    from ropelab.real.evaluate import precision, token_losses
    from ropelab.real.extend import forward_seconds

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


def _thin_to_budget(args, settings, cost, echo, tuning=None, tuned=()):
    """Thin the *default* passkey grid until the zero-shot estimate fits ``--budget-minutes``: keys per cell
    to 3, then 1, then the depths to (0, 0.5, 1), then the lengths to (N/2, N). Loss curves are never cut, a
    grid the user named is never changed, and a fine-tune (asked for by flag) is not counted against the
    budget. Returns the settings and the whole run's estimate in seconds."""
    from dataclasses import replace

    def seconds(s):  # the fine-tune is what --finetune asked for: the budget thins the zero-shot grid only
        return sum(cost(kind, n) for kind, n in _tasks(s))

    budget = args.budget_minutes * 60
    N = settings.target
    steps = []
    if args.passkey_lengths is None and args.passkey_depths is None:
        steps += [dict(passkey_keys=min(3, settings.passkey_keys)), dict(passkey_keys=1)]
    if args.passkey_depths is None:
        steps.append(dict(passkey_depths=(0.0, 0.5, 1.0)))
    if args.passkey_lengths is None:
        steps.append(dict(passkey_lengths=tuple(sorted({N // 2, N}))))
    for change in steps:
        if seconds(settings) <= budget or not settings.passkey_lengths:
            break
        settings = replace(settings, **change)
        echo(
            f"  estimate over --budget-minutes {args.budget_minutes:g}: passkey grid thinned to lengths "
            f"{list(settings.passkey_lengths)}, depths {list(settings.passkey_depths)}, {settings.passkey_keys} key(s) per cell"
        )
    if seconds(settings) > budget:
        echo(
            f"  warning: the estimate still exceeds --budget-minutes {args.budget_minutes:g} (fewer --methods, a shorter --to, "
            "or --device cuda would fit it)"
        )
    return settings, sum(cost(kind, n) for kind, n in _tasks(settings, tuning, tuned))


def _tasks(settings, tuning=None, tuned=()) -> list[tuple[str, int]]:
    """Every forward-sized task of the run as ``(kind, tokens)``; a passkey trial is one prefill of the longest length."""
    loss = [("loss", settings.length)] * settings.documents
    passkey = [("prefill", max(settings.passkey_lengths))] * settings.passkey_keys if settings.passkey_lengths else []
    tasks = (loss + passkey) * len(settings.methods)
    for _ in tuned:
        tasks += [("train", tuning.window)] * tuning.steps + loss * (2 if tuning.steps > 1 else 1) + passkey
    return tasks


def _finetune_rows(study: dict, zero_shot: dict) -> dict:
    """Chen et al. 2023 Table 3's shape: per method, perplexity per range after 0 / k1 / k2 steps."""
    return {
        method: {"0": zero_shot[method]["ppl_ranges"], **{str(k): e["ppl_ranges"] for k, e in m["checks"].items()}}
        for method, m in study["methods"].items()
    }


def run_extend(args, echo=print) -> Path:
    """The whole ``ropelab extend`` run; returns the report path. Nothing is written before the end but
    the fine-tune's checkpoints (``--out``/checkpoints, atomic, resumed from by a rerun)."""
    import torch

    from ropelab.io import portable_path
    from ropelab.real.extend import hf_config, measure, method_config, predict, verdict
    from ropelab.real.handover import check_output_folder, load_lines, write_model_folder
    from ropelab.real.load import load_config, load_model, resolve
    from ropelab.real.report import write_report

    started = time.perf_counter()
    torch.set_num_threads(max(1, args.threads))
    if args.write_config:
        check_output_folder(args.write_config, args.force)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise RealModelError(f"--device {args.device!r} is invalid: CUDA is not available here")
    source = resolve(args.model)
    config, rope, trained = load_config(source)  # a model without RoPE fails here, --finetune or not
    settings = _settings(args, trained)
    tuning, tuned = _tuning(args, trained, settings.target)
    if getattr(args, "write_gguf", None):  # the GGUF hand-over's path, architecture and every candidate RoPE
        from ropelab.real.extend import AS_IS, method_config
        from ropelab.real.gguf_export import check_gguf_handover

        candidates = {m for m in settings.methods if m != AS_IS} or {AS_IS}
        configs = [method_config(rope, m, trained, settings.target) for m in sorted(candidates | set(tuned))]
        check_gguf_handover(
            args.write_gguf, args.force, config, configs, dtype=args.gguf_type, source=source, fine_tuning=bool(tuned)
        )
    prediction = predict(
        rope, trained, settings.target, settings.methods + tuple(m for m in tuned if m not in settings.methods)
    )
    layer_types = _layer_types_text(rope, trained)
    if layer_types:
        echo(layer_types)
    loaded = load_model(args.model, args.device)
    model, tokenizer = loaded.model, loaded.tokenizer
    from ropelab.real.evaluate import corpus_documents, passkey_tokens

    corpus_documents(
        tokenizer, settings.length, settings.documents, settings.text
    )  # a short text fails here, before any forward
    for length in settings.passkey_lengths:  # so does a passkey length too short for the prompt
        passkey_tokens(tokenizer, length, 0.5, 12345)
    note = _model_prediction(model, tokenizer, rope, trained, settings, prediction)
    print_prediction(prediction, echo)
    echo(note)
    cost = _estimate(model, settings, config)
    settings, total = _thin_to_budget(args, settings, cost, echo, tuning, tuned)
    cells = len(settings.passkey_lengths) * len(settings.passkey_depths)
    tuning_text = (
        f" + PoSE fine-tuning of {', '.join(tuned)}, {tuning.steps} steps of {tuning.window} tokens each"
        if tuned
        else ""
    )
    echo(
        f"Plan: {len(settings.methods)} RoPE variants x ({settings.documents} document(s) of {settings.length} tokens + "
        f"passkey {cells} cells x {settings.passkey_keys} key(s), one haystack of {max(settings.passkey_lengths, default=0)} "
        f"tokens per key){tuning_text}: estimated {total / 60:.1f} min on {args.device} ({settings.dtype})"
    )

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=args.quiet,
        transient=False,
    ) as progress:
        bar = progress.add_task("extend", total=total)

        def tick(label, task):
            kind, tokens = task
            progress.update(
                bar,
                advance=cost(kind, tokens if tokens is not None else max(settings.passkey_lengths))
                / (len(settings.passkey_lengths) if kind == "passkey" else 1),
                description=label,
            )

        measured = measure(model, tokenizer, rope, trained, settings, tick=tick)
        finetune = study = None
        if tuned:
            from ropelab.real.finetune import finetune_study

            study = finetune_study(
                model, tokenizer, rope, trained, settings, tuning, tuned, Path(args.out) / "checkpoints", tick=tick
            )
            zero_shot = (
                measured["methods"]
                if all(m in measured["methods"] for m in tuned)
                else measure(
                    model, tokenizer, rope, trained, replace_methods(settings, tuned, passkey=False), tick=tick
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
        "device": args.device,
        "trained_length": trained,
        "target": settings.target,
        "settings": asdict(settings),
        "prediction": prediction,
        "measure": measured,
        "verdict": decided,
        "finetune": finetune,
        "timing": {"total_seconds": time.perf_counter() - started, "estimated_seconds": total},
        "notes": [
            *([layer_types] if layer_types else []),
            "Documents are consecutive validation files of the corpus joined by blank lines, so a window spans several files.",
            "dynamic is evaluated in one forward of the whole window, so every position sees the scale of the full length "
            "(as in transformers' dynamic module for a single forward), not the per-step scale of generation.",
            "Passkey: named keys in one haystack per trial (RULER's multi-key needle), asked on the KV cache at each length; "
            "greedy exact match decided teacher-forced. benchmarks/passkey_agreement.py compares it with the single-key prompt.",
        ],
    }
    _print_verdict(results, echo)
    path = write_report(results, Path(args.out))  # the measurements are safe before the hand-over starts
    if args.write_config:
        best = decided["best"]
        method = best.removesuffix("+pose")
        if study is not None and best.endswith("+pose"):
            model.load_state_dict(study["weights"][method])
        folder = write_model_folder(
            model,
            tokenizer,
            hf_config(config, method_config(rope, method, trained, settings.target)),
            args.write_config,
            force=args.force,
        )
        results["handover"] = {"method": best, "folder": portable_path(folder), "load": load_lines(folder)}
        path = write_report(results, Path(args.out))
        echo(
            f"wrote a model folder with {results['handover']['method']}'s rope_parameters in {args.write_config}; load it with:"
        )
        for line in results["handover"]["load"]:
            echo(f"  {line}")
    if getattr(args, "write_gguf", None):
        from ropelab.real.gguf_export import hand_over_gguf

        best = decided["best"]
        tuned_best = study is not None and best.endswith("+pose")
        if tuned_best:
            model.load_state_dict(study["weights"][best.removesuffix("+pose")])
        gguf = hand_over_gguf(
            model,
            tokenizer,
            config,
            method_config(rope, best.removesuffix("+pose"), trained, settings.target),
            args.write_gguf,
            source=loaded.source,
            fine_tuned=tuned_best,
            dtype=args.gguf_type,
            force=args.force,
            folder=args.write_config,
            echo=echo,
        )
        gguf.update(method=best, path=portable_path(gguf["path"]), modelfile=portable_path(gguf["modelfile"]))
        results["gguf"] = gguf
        path = write_report(results, Path(args.out))
    return path


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
    echo(f"Best at N = {results['target']}: {v['best']}")


def demo(args) -> None:
    """``ropelab demo``'s real-model section: the embedded SmolLM2 as-is against YaRN on one document
    of 1.75 T tokens (the measured cliff of SmolLM2 starts near 1.35 T); prints where it breaks and the rescue, writes a PNG."""
    from ropelab.real.load import embedded_gguf

    try:
        embedded_gguf()
    except RealModelError as error:
        print(f"\nReal model section skipped: {error}")
        return
    print(
        "\nA real model past its trained length: SmolLM2-135M (T = 8192) as-is vs YaRN (factor 2), zero-shot, "
        "one document of 1.75 T tokens (ropelab extend --methods yarn ...)"
    )
    out = Path(args.out) / "real"
    ns = argparse.Namespace(
        model=None,
        target=None,
        methods=("yarn",),
        text=None,
        documents=1,
        bin_width=256,
        passkey_lengths=(),
        passkey_depths=(0.5,),
        passkey_keys=0,
        margin=0.5,
        finetune="none",
        finetune_steps=0,
        finetune_window=None,
        finetune_methods=(),
        budget_minutes=30.0,
        dtype="bfloat16",
        write_config=None,
        write_gguf=None,
        gguf_type="auto",
        force=False,
        out=str(out),
        device="cpu",
        threads=2,
        seed=0,
        quiet=False,
        document_length=None,
    )
    from ropelab.real.load import load_config, resolve

    _, _, trained = load_config(resolve(None))
    ns.document_length = trained * 7 // 4
    path = run_extend(ns)
    results = json.loads((out / "results.json").read_text())
    v, end = results["verdict"]["methods"], results["measure"]["length"]

    def where(position):
        return f"at position {position}" if position is not None else f"nowhere up to {end}"

    asis, yarn = results["measure"]["methods"]["extrapolate"], results["measure"]["methods"]["yarn"]
    print(
        f"as-is: ppl {asis['ppl_past_T']:.2f} past T against {results['verdict']['in_context_ppl']:.2f} in context [T/2, T); "
        f"predicted to break {where(v['extrapolate']['predicted_break'])} (first unseen angle {v['extrapolate']['first_unseen_angle']}), "
        f"measured to break {where(v['extrapolate']['measured_break'])}"
    )
    print(
        f"yarn : ppl {yarn['ppl_past_T']:.2f} past T, {math.exp(yarn['in_context_loss']):.2f} in context; "
        f"predicted to break {where(v['yarn']['predicted_break'])}, measured to break {where(v['yarn']['measured_break'])}"
    )
    for c in results["claims"]:
        if c["claim"].startswith("predicted vs measured"):
            mark = {True: "held", False: "did not hold", None: "not checked"}[c["held"]]
            print(f"claim '{c['claim']}': {mark} ({c['value']})")
    print(f"figure: {out / 'figures' / 'loss_vs_position.png'}\nreport: {path}")
