"""Write a real-model extension run: ``results.json``, ``results.csv``, ``figures/*.png`` and a
self-contained ``report.html`` (figures embedded as base64). Every file is written atomically.

The claims about a real model past T are checked on the run's own numbers (:func:`check_claims`); a claim whose
numbers were not measured is "not checked", never "held".
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
from pathlib import Path

from ropelab.io import atomic_write_bytes
from ropelab.lab.report import FAILS, NOTES, PAGE, RETRIEVES, STYLE, figures_section, held_mark, html_table, normalise

__all__ = ["check_claims", "figures", "write_report", "loss_figure"]

LABELS = {
    "extrapolate": "as-is",
    "linear": "PI",
    "linear+pose": "PI + PoSE fine-tune",
    "yarn+pose": "YaRN + PoSE fine-tune",
}


def _label(method: str) -> str:
    return LABELS.get(method, method)


def _segments(entry: dict) -> list[tuple[int, int, float]]:
    return [(int(k.split("-")[0]), int(k.split("-")[1]), v) for k, v in entry["ppl_segments"].items()]


def _passkey_mean(entry: dict, keep) -> float | None:
    values = [v for length, row in entry["passkey"].items() if keep(int(length)) for v in row.values()]
    return sum(values) / len(values) if values else None


def check_claims(results: dict) -> list[dict]:
    """The claims about the run, each ``{"claim", "check", "value", "held"}`` (``held`` None: not measured)."""
    T, N = results["trained_length"], results["target"]
    methods = results["measure"]["methods"]
    verdict = results["verdict"]
    as_is = methods["extrapolate"]
    in_ppl = math.exp(as_is["in_context_loss"])
    claims = []

    def claim(name, check, value, held):
        claims.append({"claim": name, "check": check, "value": value, "held": held})

    last = _segments(as_is)[-1]
    claim(
        "as-is blows up past T",
        f"as-is ppl of the last segment [{last[0]}, {last[1]}) >= 5 x in-context ppl (as-is, [T/2, T))",
        f"{last[2]:.2f} vs 5 x {in_ppl:.2f}",
        last[2] >= 5 * in_ppl,
    )
    if "yarn" in methods:
        worst = max(v for start, _, v in _segments(methods["yarn"]) if start >= T // 2)
        claim(
            "YaRN holds zero-shot",
            f"every YaRN (factor {N / T:g}) segment ppl from T/2 to {last[1]} <= 1.3 x in-context ppl "
            "(the first segment is left out: its early tokens have little context for every method)",
            f"max {worst:.2f} vs 1.3 x {in_ppl:.2f}",
            worst <= 1.3 * in_ppl,
        )
    if "linear" in methods:
        lin = methods["linear"]
        lin_last, lin_in = _segments(lin)[-1][2], math.exp(lin["in_context_loss"])
        claim(
            "PI zero-shot: no blow-up, pays inside T",
            "linear last-segment ppl < 5 x in-context ppl, and linear ppl on [T/2, T) > as-is's",
            f"last {lin_last:.2f} vs 5 x {in_ppl:.2f}; inside T {lin_in:.2f} vs {in_ppl:.2f}",
            lin_last < 5 * in_ppl and lin_in > in_ppl,
        )
    _finetune_claims(results, claim, in_ppl)
    _passkey_claim(results, claim)
    end = results["measure"]["length"]
    rows, held = [], []
    for name, entry in verdict["methods"].items():
        pred, meas = entry["predicted_break"], entry["measured_break"]
        # right: within 15% of the measured break (the break validation's tolerance), or no break predicted where none was measured
        ok = (pred is None and meas is None) or (
            pred is not None and meas is not None and abs(pred - meas) <= 0.15 * meas
        )
        rows.append(
            f"{_label(name)} predicted {pred if pred is not None else f'none up to {N}'}, measured "
            f"{meas if meas is not None else f'none up to {end}'} (first unseen angle {entry.get('first_unseen_angle')})"
        )
        held.append(ok)
    claim(
        "predicted vs measured break",
        "for every method: the model-based prediction (far attention mass of its own q/k) within 15% "
        f"of the measured break, or no break predicted and none measured (documents end at {end})",
        "; ".join(rows),
        all(held) if held else None,
    )
    return claims


def _finetune_claims(results: dict, claim, in_ppl: float) -> None:
    """The fine-tune claims on the run's Table 3 (``results["finetune"]``); not checked without one."""
    tuning = results.get("finetune")
    if not tuning:
        claim("PI fine-tuned rescues", "PoSE fine-tune of PI (--finetune pose)", "not run", None)
        return
    table, k = tuning["table"], str(tuning["steps"])
    end = results["measure"]["length"]
    past = f"[T, {end})"
    if "linear" in table and k in table["linear"]:
        zero, tuned = table["linear"]["0"]["[T/2, T)"], table["linear"][k]["[T/2, T)"]
        claim(
            "PI fine-tuned closes half the in-context gap",
            f"PI ppl on [T/2, T) after {k} steps <= as-is + half of (PI zero-shot - as-is)",
            f"{tuned:.2f} vs {in_ppl:.2f} + 0.5 x ({zero:.2f} - {in_ppl:.2f}) = {in_ppl + 0.5 * (zero - in_ppl):.2f}",
            tuned <= in_ppl + 0.5 * (zero - in_ppl),
        )
        far = table["linear"][k][past]
        claim(
            "PI fine-tuned holds past T",
            f"PI ppl on {past} after {k} steps <= 1.3 x as-is in-context ppl",
            f"{far:.2f} vs 1.3 x {in_ppl:.2f}",
            far <= 1.3 * in_ppl,
        )
    if "yarn" in table and k in table["yarn"]:
        rows = {r: (table["yarn"]["0"][r], table["yarn"][k][r]) for r in table["yarn"]["0"]}
        claim(
            "YaRN fine-tuned no worse than zero-shot",
            f"YaRN ppl after {k} steps <= zero-shot on every range",
            "; ".join(f"{r} {b:.2f} vs {a:.2f}" for r, (a, b) in rows.items()),
            all(b <= a for a, b in rows.values()),
        )


def _passkey_claim(results: dict, claim) -> None:
    """As-is retrieves inside T and fails past its break; PI fine-tuned and YaRN retrieve at N."""
    T, N = results["trained_length"], results["target"]
    methods = results["measure"]["methods"]
    if not any(e["passkey"] for e in methods.values()):
        claim(
            "passkey",
            "as-is retrieves inside T, fails past its break; PI fine-tuned and YaRN retrieve at N",
            "not measured in this run",
            None,
        )
        return
    brk = results["verdict"]["methods"]["extrapolate"]["measured_break"] or T
    as_is = methods["extrapolate"]
    inside = _passkey_mean(as_is, lambda n: n <= T)
    past = _passkey_mean(as_is, lambda n: n > brk)
    wanted = [m for m in ("linear+pose", "yarn", "yarn+pose") if m in methods and methods[m]["passkey"]]
    at_n = {m: _passkey_mean(methods[m], lambda n: n == N) for m in wanted}
    ok = inside is not None and past is not None and at_n and all(v is not None for v in at_n.values())
    claim(
        "passkey",
        f"as-is >= {RETRIEVES} at lengths <= T and <= {FAILS} past its break ({brk}); "
        f"at N = {N}: {', '.join(_label(m) for m in wanted) or 'PI fine-tuned and YaRN'} >= {RETRIEVES}",
        (
            f"as-is {inside:.2f} inside T, {past:.2f} past break; at N: "
            + ", ".join(f"{_label(m)} {v:.2f}" for m, v in at_n.items())
        )
        if ok
        else "n/a (a length inside T, one past the break and N are needed)",
        (inside >= RETRIEVES and past <= FAILS and all(v >= RETRIEVES for v in at_n.values())) if ok else None,
    )


# ----------------------------------------------------------------------------- figures
def _finetune_figure(results: dict):
    """Training loss against step, one curve per fine-tuned method (a running mean over 10 steps)."""
    import matplotlib.pyplot as plt

    tuning = results.get("finetune")
    if not tuning:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for method, losses in tuning["loss"].items():
        smooth = [sum(losses[max(0, i - 9) : i + 1]) / len(losses[max(0, i - 9) : i + 1]) for i in range(len(losses))]
        ax.plot(range(1, len(losses) + 1), losses, alpha=0.25, lw=0.8)
        ax.plot(
            range(1, len(losses) + 1),
            smooth,
            lw=1.8,
            label=f"{_label(method)} (mean of 10)",
            color=ax.lines[-1].get_color(),
        )
    ax.set(
        xlabel="step",
        ylabel="training loss (nats/token)",
        title=f"PoSE fine-tune: windows of {tuning['settings']['window']} tokens, positions over [0, {results['target']})",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def loss_figure(results: dict):
    """Loss (binned) against position, one curve per method, ``T`` and the break points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T, width = results["trained_length"], results["settings"]["bin_width"]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for method, entry in results["measure"]["methods"].items():
        bins = entry["bins"]
        x = [i * width + width / 2 for i in range(len(bins))]
        ax.plot(x, bins, label=_label(method), lw=2.2 if method == "extrapolate" else 1.4, marker=".", ms=3)
    ax.axvline(T, color="black", ls=":", lw=1.2)
    ax.text(T, 0.98, " T (trained)", transform=ax.get_xaxis_transform(), va="top", fontsize=9)
    ref = results["verdict"]["in_context_loss"] + results["settings"]["margin"]
    ax.axhline(
        ref, color="grey", ls="--", lw=1, label=f"break threshold (in-context + {results['settings']['margin']} nats)"
    )
    measured = results["verdict"]["methods"]["extrapolate"]["measured_break"]
    if measured is not None:
        ax.axvline(measured, color="red", ls="--", lw=1, label=f"as-is measured break ({measured})")
    ax.set(
        xlabel=f"position (mean loss over bins of {width} tokens)",
        ylabel="loss (nats/token)",
        title=f"{results['model']}: loss against position, zero-shot, T = {T}, N = {results['target']}, "
        f"{results['measure']['documents']} document(s) of {results['measure']['length']} tokens",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def _passkey_figure(results: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    methods = {m: e for m, e in results["measure"]["methods"].items() if e["passkey"]}
    if not methods:
        return None
    fig, axes = plt.subplots(1, len(methods), figsize=(2.3 * len(methods) + 1, 3.2), squeeze=False, sharey=True)
    for ax, (method, entry) in zip(axes[0], methods.items()):
        grid = entry["passkey"]
        lengths, depths = list(grid), list(next(iter(grid.values())))
        values = np.array([[grid[n][d] for n in lengths] for d in depths])
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(lengths)), lengths, fontsize=7)
        ax.set_yticks(range(len(depths)), depths, fontsize=7)
        for (row, col), value in np.ndenumerate(values):
            ax.text(
                col,
                row,
                f"{value:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if value < 0.5 else "black",
            )
        ax.set_title(_label(method), fontsize=9)
        ax.set_xlabel("total tokens", fontsize=8)
    axes[0][0].set_ylabel("key depth")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
    fig.suptitle(
        f"Passkey retrieval, greedy exact match ({results['settings']['passkey_keys']} key(s) per cell)", y=1.06
    )
    return fig


def _prediction_figure(results: dict):
    import matplotlib.pyplot as plt

    verdict = results["verdict"]["methods"]
    names = list(verdict)
    N, end = results["target"], results["measure"]["length"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(names) + 1.5))
    for i, name in enumerate(names):
        pred, meas = verdict[name]["predicted_break"], verdict[name]["measured_break"]
        first = verdict[name].get("first_unseen_angle")
        if first is not None:
            ax.plot([first], [i - 0.25], marker="x", color="grey", ms=7)
        ax.plot([pred if pred is not None else N], [i - 0.1], marker="o" if pred is not None else ">", color="C0", ms=8)
        ax.plot(
            [meas if meas is not None else end], [i + 0.1], marker="s" if meas is not None else ">", color="C3", ms=8
        )
    ax.plot([], [], "o", color="C0", label="predicted (far attention mass of the model's q/k)")
    ax.plot([], [], "x", color="grey", label="first unseen angle (config; a lower bound)")
    ax.plot([], [], "s", color="C3", label="measured (loss threshold)")
    ax.axvline(results["trained_length"], color="black", ls=":", lw=1)
    ax.set_yticks(range(len(names)), [_label(n) for n in names])
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlim(0, N * 1.05)
    ax.set(
        xlabel=f"position (triangle: no break predicted up to N = {N} / measured up to the documents' end {end})",
        title="Break point: predicted from the model's q/k (no forward past T) vs measured",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def figures(results: dict) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for every figure the results support."""
    import matplotlib

    matplotlib.use("Agg")
    from ropelab.plots import figure_png

    out = {}
    for name, make in (
        ("loss_vs_position.png", loss_figure),
        ("passkey_heatmaps.png", _passkey_figure),
        ("break_points.png", _prediction_figure),
        ("finetune_loss.png", _finetune_figure),
    ):
        fig = make(results)
        if fig is not None:
            out[name] = figure_png(fig, dpi=100)
    return out


# ----------------------------------------------------------------------------- files
def _csv(results: dict) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["kind", "method", "start", "end_or_depth", "value"])
    width = results["settings"]["bin_width"]
    for method, entry in results["measure"]["methods"].items():
        for i, value in enumerate(entry["bins"]):
            writer.writerow(["loss_bin", _label(method), i * width, (i + 1) * width, f"{value:.6g}"])
        for start, end, value in _segments(entry):
            writer.writerow(["ppl_segment", _label(method), start, end, f"{value:.6g}"])
        for length, row in entry["passkey"].items():
            for depth, value in row.items():
                writer.writerow(["passkey", _label(method), length, depth, f"{value:.6g}"])
    for method, entry in results["verdict"]["methods"].items():
        writer.writerow(["break_predicted", _label(method), entry["predicted_break"], "", ""])
        writer.writerow(["break_measured", _label(method), entry["measured_break"], "", ""])
    return buffer.getvalue().encode()


def plan_lines(plan: dict) -> list[str]:
    """The plan's printout from its results.json form."""
    from ropelab.real.plan import Plan

    return Plan(**{**plan, "advice": tuple(plan.get("advice", ()))}).lines()


def _finetune_section(results: dict) -> list[str]:
    """Chen et al. 2023 Table 3's shape (perplexity per range after 0 / k1 / k2 steps) and the hand-over lines."""
    parts = []
    tuning = results.get("finetune")
    if tuning:
        ranges = list(next(iter(next(iter(tuning["table"].values())).values())))
        rows = [
            [_label(m), k] + [f"{v[r]:.2f}" for r in ranges]
            for m, by_step in tuning["table"].items()
            for k, v in by_step.items()
        ]
        s = tuning["settings"]
        parts += [
            "<h2>Fine-tuning (PoSE)</h2>",
            f"<p>{html.escape(tuning['protocol'])}. {s['steps']} steps per method, one window of {s['window']} tokens per step, "
            f"AdamW lr {s['lr']:g}, betas {tuple(s['betas'])}, no weight decay, {s['warmup']} warm-up steps "
            f"(Chen et al. 2023 sec. 4.1; YaRN sec. 4.1), bfloat16 autocast over float32 weights: {s['autocast']}. "
            f"Training text: {html.escape(tuning['training_text'])}; evaluation text: "
            f"{html.escape(results['measure']['documents_source'])} (the validation files).</p>",
            html_table(["method", "steps"] + ranges, rows),
        ]
    if results.get("handover"):
        h = results["handover"]
        parts += [
            "<h2>Hand-over</h2>",
            f"<p>Model folder with {html.escape(_label(h['method']))}'s weights and rope_parameters: "
            f"<code>{html.escape(h['folder'])}</code>. Load it with plain transformers:</p>",
            "<pre>" + html.escape("\n".join(h["load"])) + "</pre>",
        ]
    return parts


def write_report(results: dict, out: Path) -> Path:
    """Write ``results.json``, ``results.csv``, ``figures/*.png`` and ``report.html`` into ``out``; return the report path."""
    out = Path(out)
    results = normalise(results)
    results["claims"] = check_claims(results)
    pngs = figures(results)
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
    atomic_write_bytes(out / "results.csv", _csv(results))
    for name, data in pngs.items():
        atomic_write_bytes(out / "figures" / name, data)
    T, N, end = results["trained_length"], results["target"], results["measure"]["length"]
    p, v, m = results["prediction"], results["verdict"], results["measure"]["methods"]
    segments = list(next(iter(m.values()))["ppl_segments"])
    rows = [
        [_label(name)] + [f"{e['ppl_segments'][s]:.2f}" for s in segments] + [f"{e['ppl_past_T']:.2f}"]
        for name, e in m.items()
    ]
    breaks = [
        [
            _label(n),
            e["predicted_break"] if e["predicted_break"] is not None else f"none up to {N}",
            e.get("first_unseen_angle") if e.get("first_unseen_angle") is not None else "none",
            e["measured_break"] if e["measured_break"] is not None else f"none up to {end}",
            f"{e.get('in_context_cost', 0.0):+.3f}",
            "-" if e["passkey_at_longest"] is None else f"{e['passkey_at_longest']:.2f}",
        ]
        for n, e in v["methods"].items()
    ]
    claims = html_table(
        ["claim", "check", "measured", "result"],
        [
            [html.escape(c["claim"]), html.escape(c["check"]), html.escape(c["value"]), held_mark(c["held"])]
            for c in results["claims"]
        ],
    )
    parts = [
        f"<h1>ropelab extend: {html.escape(results['model'])}, T = {T} to N = {N}</h1>",
        f"<p><b>The model as shipped:</b> {html.escape(results.get('shipped', ''))}. Each method replaces the shipped "
        "scaling; what it starts from is in the notes.</p>",
        *(["<pre>" + html.escape("\n".join(plan_lines(results["plan"]))) + "</pre>"] if results.get("plan") else []),
        f"<p>Zero-shot, weights unchanged; RoPE imposed through ropelab's exact tables. Loss over {results['measure']['documents']} "
        f"document(s) of {results['measure']['length']} tokens from {html.escape(results['measure']['documents_source'])}; perplexity per segment of "
        f"{results['measure']['segment']} tokens. Total time {results['timing']['total_seconds'] / 60:.1f} min on {html.escape(results['device'])}.</p>",
        "<h2>Prediction (before any forward past T)</h2>",
        f"<p>{len(p['out_of_range_pairs'])} of {p['pairs']} pairs leave their trained arc past T (pairs {p['out_of_range_pairs']}; "
        f"wavelengths {', '.join(f'{w:,.0f}' for w in p['out_of_range_wavelengths'][:4])}{' ...' if len(p['out_of_range_pairs']) > 4 else ''}); "
        f"critical dimension {p['critical_dimension']} of {p['rotary_dim']}. Expected break as-is: position {p['methods']['extrapolate']['break']} "
        f"({html.escape(p['methods']['extrapolate'].get('predictor', 'first unseen angle'))}; first unseen angle "
        f"{p['methods']['extrapolate'].get('first_unseen_angle')}).</p>",
        "<h2>Claims, checked on this run</h2>",
        claims,
        "<h2>Perplexity per segment</h2>",
        html_table(["method"] + segments + [f"[T, {end})"], rows),
        f"<h2>Break points</h2><p>Measured break: {html.escape(v['definition'])}. In-context ppl (as-is): {v['in_context_ppl']:.2f}.</p>",
        html_table(
            [
                "method",
                "predicted (model q/k)",
                "first unseen angle (lower bound)",
                "measured",
                "in-context cost (nats vs as-is)",
                "passkey at longest length",
            ],
            breaks,
        ),
        f"<p><b>Verdict:</b> best method for N = {N}: <b>{html.escape(_label(v['best']))}</b> "
        f"({html.escape(v.get('reason') or 'highest passkey at the longest length within 0.1, then lowest perplexity past T')}).</p>",
    ]
    parts += _finetune_section(results)
    captions = {
        "finetune_loss.png": "Training loss of the PoSE fine-tune against step.",
        "loss_vs_position.png": "Loss against position; T dotted; the dashed line is the break threshold. With few documents "
        "the curve follows their content (a hard file is a bump at any position); compare the methods "
        "with each other at the same position rather than one bin with another.",
        "passkey_heatmaps.png": "Passkey retrieval by total length (tokens) and key depth.",
        "break_points.png": "Predicted (share of attention the model's own q/k would put on unseen distances; "
        "cross: first position where a pair meets a new angle) vs measured break point, every method.",
    }
    parts.append(figures_section(pngs, captions))
    if results.get("notes"):
        parts.append(NOTES.substitute(items="".join(f"<li>{html.escape(n)}</li>" for n in results["notes"])))
    page = PAGE.substitute(title="ropelab extend", style=STYLE, body="".join(parts))
    return atomic_write_bytes(out / "report.html", page.encode())
