"""``ropelab extend --model M --to N [--methods ...]``: extend a real RoPE model (registered by :mod:`ropelab.cli`).

Every argument and the model's config are checked before anything runs, and every file is written
at the end, atomically: bad input (a model without RoPE, a target not past ``T``, an unknown
method, a missing or corrupt file, a text too short) exits 2 with one line and writes nothing.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ropelab.cli_args import float_list, int_list, names
from ropelab.errors import RealModelError

__all__ = ["register", "demo"]


def register(subparsers) -> None:
    from ropelab.real.api import ExtendOptions as defaults
    from ropelab.real.finetune import add_finetune_arguments

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
        default=None,
        help="comma-separated: linear,ntk,dynamic,yarn,llama3, or all (default linear,yarn where they can start from "
        "the model's RoPE; the model as shipped is always measured)",
    )
    p.add_argument(
        "--text", default=None, help="file or folder for the long documents (default: Python stdlib sources)"
    )
    p.add_argument("--documents", type=int, default=defaults.documents, help="documents of N tokens for the loss curve")
    p.add_argument(
        "--doc-length",
        type=int,
        default=None,
        dest="document_length",
        help="tokens per document, T < length <= N (default N; shorter is cheaper, still past T)",
    )
    p.add_argument("--bin", type=int, default=defaults.bin_width, dest="bin_width", help="positions per loss bin")
    p.add_argument(
        "--passkey-lengths", type=int_list, default=None, help="total lengths in tokens (default N/4,N/2,3N/4,N)"
    )
    p.add_argument(
        "--passkey-depths", type=float_list, default=None, help="key depths in [0, 1] (default 0,0.25,0.5,0.75,1)"
    )
    p.add_argument(
        "--passkey-keys",
        type=int,
        default=defaults.passkey_keys,
        help="random keys per cell, one haystack each (0: no passkey)",
    )
    p.add_argument(
        "--budget-minutes",
        type=float,
        default=defaults.budget_minutes,
        help="if the estimate exceeds this, the default passkey grid is thinned (never the loss curves)",
    )
    p.add_argument(
        "--margin", type=float, default=defaults.margin, help="nats above the in-context loss that count as broken"
    )
    p.add_argument(
        "--dtype",
        choices=("bfloat16", "float32"),
        default=defaults.dtype,
        help="evaluation forwards under bfloat16 autocast (default; benchmarks/real_speed.py) or in float32; "
        "the fine-tune always computes under bfloat16 autocast over float32 master weights",
    )
    add_finetune_arguments(p)
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
        default=defaults.gguf_type,
        help="GGUF tensors: auto = a GGUF input's own tensors for a zero-shot method, else f16",
    )
    p.add_argument("--force", action="store_true", help="let --write-config / --write-gguf replace files that exist")
    p.add_argument("--out", default=defaults.out, help="folder for results.json, results.csv, report.html")
    p.add_argument("--device", default=defaults.device)
    p.add_argument(
        "--device-memory",
        type=float,
        default=None,
        metavar="GIB",
        help="memory the plan may use, in GiB (default: what the device has free; e.g. 80 to plan for an 80 GB GPU)",
    )
    p.add_argument(
        "--plan",
        action="store_true",
        dest="plan_only",
        help="print the plan (memory and time, from the config alone) and stop before any weight loads",
    )
    p.add_argument("--threads", type=int, default=defaults.threads)
    p.add_argument("--seed", type=int, default=defaults.seed)
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
    from ropelab.real.load import load_config, load_model, resolve
    from ropelab.real.predict import PROBE_LENGTH, predict_real

    torch.set_num_threads(2)
    spec = None if args.model == "embedded" else args.model
    source = resolve(spec)
    _, shipped = load_config(source)
    trained, rope = shipped.context, shipped.rope
    target = args.context or 2 * trained
    if target <= trained:
        raise RealModelError(f"--context {target} is invalid: expected more than the trained length T={trained}")
    if not isinstance(rope, RopeConfig):
        raise RealModelError(
            f"--model {args.model!r}: a RoPE per layer type; explain --model predicts one RoPE (use ropelab extend)"
        )
    started = time.perf_counter()
    loaded = load_model(spec)
    as_is = shipped.as_is
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
    from ropelab.real.api import ExtendOptions, run

    result = run(ExtendOptions.from_namespace(args))
    if result.report is not None:
        print(f"report: {result.report}")


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
    from ropelab.real.api import extend
    from ropelab.real.load import load_config, resolve

    out = Path(args.out) / "real"
    _, shipped = load_config(resolve(None))
    result = extend(
        None,
        methods=("yarn",),
        passkey_keys=0,
        document_length=shipped.context * 7 // 4,
        out=str(out),
        quiet=False,
    )
    path = result.report
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
