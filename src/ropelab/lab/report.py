"""Write the lab's results: ``results.json``, ``results.csv`` and a self-contained ``report.html``.

Every file is written atomically (temporary file + ``os.replace``), so an interrupted or failed
run never leaves a half-written result next to a good one. Figures are PNGs embedded in the HTML
as base64 (and also saved under ``figures/``).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path
from string import Template

from ropelab.io import atomic_write_bytes
from ropelab.lab import LabError

__all__ = [
    "normalise",
    "check_claims",
    "write_results",
    "write_report",
    "render_report",
    "rewrite_report",
    "figures",
    "html_table",
    "held_mark",
    "figures_section",
    "PAGE",
    "STYLE",
    "SECTION",
    "NOTES",
    "task_stats",
    "check_task_claims",
    "mean_reciprocal_rank",
    "tasks_section",
    "write_tasks_report",
    "stored_tasks_section",
]


def normalise(results: dict) -> dict:
    """A JSON round trip: every mapping key becomes a string, as in ``results.json``."""
    return json.loads(json.dumps(results))


def _ppl(results: dict, encoding: str, multiple: int, protocol: str = "nonoverlap") -> float | None:
    entry = results["encodings"].get(encoding)
    if entry is None:
        return None
    return entry["ppl"][protocol].get(str(results["settings"]["length"] * multiple))


def _passkey_mean(results: dict, encoding: str, length: int) -> float | None:
    grid = results["encodings"].get(encoding, {}).get("passkey", {}).get(str(length))
    return None if not grid else sum(grid.values()) / len(grid)


# Thresholds for "retrieves" / "fails" in the passkey claim (our reading of the literature's wording).
RETRIEVES, FAILS = 0.8, 0.2


def check_claims(results: dict) -> list[dict]:
    """The lab's claims table, checked on this run's own numbers. ``held`` is None when a claim
    cannot be checked (an encoding or the extension was not run)."""
    L = results["settings"]["length"]
    claims = []

    def claim(name, check, value, held):
        claims.append({"claim": name, "check": check, "value": value, "held": held})

    sin1, sin4 = _ppl(results, "sinusoidal", 1), _ppl(results, "sinusoidal", 4)
    ali1, ali4 = _ppl(results, "alibi", 1), _ppl(results, "alibi", 4)
    rope1, rope4 = _ppl(results, "rope", 1), _ppl(results, "rope", 4)
    ok = lambda *xs: all(x is not None for x in xs)  # noqa: E731
    claim(
        "sinusoidal breaks past L",
        "ppl(4L) >= 2 x ppl(L), non-overlapping",
        f"{sin4:.2f} vs 2 x {sin1:.2f}" if ok(sin1, sin4) else "n/a",
        sin4 >= 2 * sin1 if ok(sin1, sin4) else None,
    )
    claim(
        "ALiBi holds",
        "ppl(4L) <= 1.1 x ppl(L)",
        f"{ali4:.2f} vs 1.1 x {ali1:.2f}" if ok(ali1, ali4) else "n/a",
        ali4 <= 1.1 * ali1 if ok(ali1, ali4) else None,
    )
    claim(
        "RoPE degrades",
        "RoPE ppl(4L) between sinusoidal's and ALiBi's",
        f"{ali4:.2f} < {rope4:.2f} < {sin4:.2f}" if ok(ali4, rope4, sin4) else "n/a",
        min(ali4, sin4) < rope4 < max(ali4, sin4) if ok(ali4, rope4, sin4) else None,
    )
    methods = results.get("extension", {}).get("methods", {})
    if methods and results["extension"]["factor"] == 4 and rope1 is not None:
        linear = methods.get("linear", {}).get("ppl", {})
        steps = [int(s) for s in linear if int(s) <= 200]
        best = linear[str(max(steps))] if steps else None
        claim(
            "interpolation rescues (fine-tuned)",
            f"PI at 4L after {max(steps) if steps else '-'} <= 200 steps <= 1.15 x RoPE ppl(L)",
            f"{best:.2f} vs 1.15 x {rope1:.2f}" if best else "n/a",
            best <= 1.15 * rope1 if best else None,
        )
        zero = {m: methods[m]["ppl"]["0"] for m in ("extrapolate", "yarn", "ntk") if m in methods}
        if "extrapolate" in zero and len(zero) > 1:
            better = min(v for m, v in zero.items() if m != "extrapolate")
            claim(
                "interpolation rescues (zero-shot)",
                "zero-shot YaRN or NTK ppl(4L) < zero-shot extrapolation ppl(4L)",
                ", ".join(f"{m} {v:.2f}" for m, v in zero.items()),
                better < zero["extrapolate"],
            )
        at_l, at_4l = _passkey_mean(results, "rope", L), _passkey_mean(results, "rope", 4 * L)
        tuned = methods.get("linear", {}).get("passkey", {}).get("finetuned")
        if ok(at_l, at_4l, tuned):
            claim(
                "passkey",
                f"RoPE retrieves at L (>= {RETRIEVES}), fails at 4L (<= {FAILS}); PI + fine-tune retrieves at 4L (>= {RETRIEVES})",
                f"{at_l:.2f} at L, {at_4l:.2f} at 4L, {tuned:.2f} after PI + fine-tune",
                at_l >= RETRIEVES and at_4l <= FAILS and tuned >= RETRIEVES,
            )
    return claims


def write_results(results: dict, out: Path) -> None:
    """``results.json`` (everything) and ``results.csv`` (one number per row)."""
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=1).encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["kind", "name", "protocol", "length", "depth_or_steps", "value"])
    for name, entry in results["encodings"].items():
        for protocol, table in entry["ppl"].items():
            for length, value in table.items():
                writer.writerow(["perplexity", name, protocol, length, "", f"{value:.6g}"])
        for length, grid in entry["passkey"].items():
            for depth, value in grid.items():
                writer.writerow(["passkey", name, "greedy exact match", length, depth, f"{value:.6g}"])
    for method, entry in results.get("extension", {}).get("methods", {}).items():
        for steps, value in entry["ppl"].items():
            writer.writerow(["extension", method, "nonoverlap", entry["length"], steps, f"{value:.6g}"])
        for when, value in entry["passkey"].items():
            writer.writerow(["extension passkey", method, when, entry["length"], "", f"{value:.6g}"])
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())


# ----------------------------------------------------------------------------- figures
def _figure_perplexity(results: dict):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator, ScalarFormatter

    L = results["settings"]["length"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, protocol in zip(axes, ("nonoverlap", "sliding")):
        for name, entry in results["encodings"].items():
            lengths = [int(n) for n in entry["ppl"][protocol]]
            ax.plot(lengths, list(entry["ppl"][protocol].values()), marker="o", label=name)
        ax.axvline(L, color="grey", ls=":", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="evaluation length", title=f"{protocol} windows")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(lengths, [f"{n // L}L\n{n}" for n in lengths])
        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(ScalarFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("perplexity (log scale)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Train short (L = {L}), test long")
    return fig


def _figure_loss_per_position(results: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    L = results["settings"]["length"]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = max(1, L // 4)
    for name, entry in results["encodings"].items():
        losses = np.asarray(entry["loss_per_position"])
        usable = len(losses) // width * width
        binned = losses[:usable].reshape(-1, width).mean(1)
        ax.plot(np.arange(len(binned)) * width + width / 2, binned, label=name, lw=1.5, marker=".")
    ax.axvline(L, color="grey", ls=":", lw=1)
    ax.text(L, ax.get_ylim()[1], " L", va="top", color="grey")
    ax.set(
        xlabel=f"position in a {len(losses)}-byte window (mean over bins of {width} positions)",
        ylabel="loss (nats/byte)",
        title="Loss at each position: where each encoding breaks",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def _figure_passkey(results: dict):
    import matplotlib.pyplot as plt
    import numpy as np

    names = [n for n, e in results["encodings"].items() if e["passkey"]]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(2.1 * len(names) + 1, 3.2), squeeze=False, sharey=True)
    for ax, name in zip(axes[0], names):
        grid = results["encodings"][name]["passkey"]
        lengths = list(grid)
        depths = list(next(iter(grid.values())))
        values = np.array([[grid[n][d] for n in lengths] for d in depths])
        image = ax.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="lower")
        ax.set_xticks(range(len(lengths)), lengths, fontsize=7)
        ax.set_yticks(range(len(depths)), [f"{float(d):.2f}" for d in depths], fontsize=7)
        for (row, col), value in np.ndenumerate(values):
            ax.text(
                col,
                row,
                f"{value:.1f}",
                ha="center",
                va="center",
                fontsize=6,
                color="white" if value < 0.5 else "black",
            )
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("total length", fontsize=8)
    axes[0][0].set_ylabel("key depth")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="accuracy")
    fig.suptitle("Passkey retrieval (exact match of greedy digits)")
    return fig


def _figure_extension(results: dict):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import ScalarFormatter

    methods = results.get("extension", {}).get("methods")
    if not methods:
        return None
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for method, entry in methods.items():
        steps = [int(s) for s in entry["ppl"]]
        ax.plot(steps, list(entry["ppl"].values()), marker="o", label=method)
    rope_l = _ppl(results, "rope", 1)
    if rope_l:
        ax.axhline(rope_l, color="black", lw=1, label="RoPE at L (no extension)")
        ax.axhline(1.15 * rope_l, color="black", lw=1, ls="--", label="1.15 x that")
    factor = results["extension"]["factor"]
    ax.set(
        yscale="log",
        xlabel="fine-tuning steps at L'",
        ylabel=f"perplexity at L' = {factor}L (log scale)",
        title=f"Extending RoPE from L to {factor}L",
    )
    ax.set_xticks(steps)
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return fig


def figures(results: dict) -> dict[str, bytes]:
    """``{file name: PNG bytes}`` for every figure the results support."""
    import matplotlib

    matplotlib.use("Agg")
    from ropelab.plots import figure_png

    makers = {
        "perplexity_vs_length.png": _figure_perplexity,
        "loss_vs_position.png": _figure_loss_per_position,
        "passkey_heatmap.png": _figure_passkey,
        "extension_vs_finetune_steps.png": _figure_extension,
    }
    out = {}
    for name, make in makers.items():
        fig = make(results)
        if fig is not None:
            out[name] = figure_png(fig)
    return out


# ----------------------------------------------------------------------------- html
def html_table(header: list[str], rows: list[list]) -> str:
    """A plain HTML table; ``header`` is escaped here, cells must be escaped (or be numbers) already."""
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _ppl_table(results: dict, protocol: str) -> str:
    L = results["settings"]["length"]
    names = list(results["encodings"])
    lengths = list(next(iter(results["encodings"].values()))["ppl"][protocol])
    rows = [[html.escape(n)] + [f"{results['encodings'][n]['ppl'][protocol][k]:.2f}" for k in lengths] for n in names]
    return html_table(["encoding"] + [f"{int(k) // L}L = {k}" for k in lengths], rows)


def held_mark(held) -> str:
    """A claim's result as HTML: held, did not hold, or not checked (``held`` is None)."""
    return {True: '<b class="ok">held</b>', False: '<b class="bad">did not hold</b>', None: "not checked"}[held]


# The page and its pieces. Values are escaped (or formatted numbers) before they are substituted.
PAGE = Template(
    "<!doctype html><html><head><meta charset='utf-8'><title>$title</title><style>$style</style></head>"
    "<body>$body</body></html>"
)
STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child{text-align:left}img{max-width:100%}.ok{color:#080}.bad{color:#b00}figcaption{color:#555;font-size:90%}"
)
INTRO = Template(
    "<h1>ropelab lab: train short, test long</h1>"
    "<p>Byte-level decoder, $num_layers layers, width $dim, $num_heads heads, trained at "
    "<b>L = $length</b> bytes for $steps steps of $batch_size x $length bytes, seed $seed, "
    "same data and budget for every encoding. Corpus: $source "
    "($train_bytes train / $val_bytes validation bytes, split by file). "
    "Perplexity is measured on the first $eval_tokens validation bytes. Total time $minutes min.</p>"
)
SECTION = Template("<h2>$title</h2>$body")
FIGURE = Template(
    "<figure><img alt='$name' src='data:image/png;base64,$png'><figcaption>$caption</figcaption></figure>"
)
NOTES = Template("<h2>Notes</h2><ul>$items</ul>")
FOOTER = "<p>Numbers: results.json, results.csv (same folder).</p>"
CAPTIONS = {
    "perplexity_vs_length.png": "Perplexity against evaluation length (log y). Non-overlapping windows profit from the early-token effect; sliding windows give every byte at least 3T/4 of context.",
    "loss_vs_position.png": "Loss at each position of a 16L window (non-overlapping): flat past L means the encoding extrapolates; a rise at L is where it breaks.",
    "passkey_heatmap.png": "Passkey retrieval accuracy by total prompt length and key depth.",
    "extension_vs_finetune_steps.png": "RoPE extended to L' with each method: perplexity at L' zero-shot (0 steps) and after fine-tuning at L'.",
}


def intro_section(results: dict) -> str:
    """The title and one paragraph: model, training budget, corpus, evaluation, time."""
    s, corpus = results["settings"], results["corpus"]
    return INTRO.substitute(
        num_layers=s["num_layers"],
        dim=s["dim"],
        num_heads=s["num_heads"],
        length=s["length"],
        steps=s["steps"],
        batch_size=s["batch_size"],
        seed=s["seed"],
        source=html.escape(corpus["source"]),
        train_bytes=f"{corpus['train_bytes']:,}",
        val_bytes=f"{corpus['val_bytes']:,}",
        eval_tokens=f"{s['eval_tokens']:,}",
        minutes=f"{results['timing']['total_seconds'] / 60:.1f}",
    )


# What the quick run says instead of a claims table: its budget is too small for the shape to show.
SMOKE_TEST_TEXT = (
    "This is the smoke test (ropelab lab run --quick): every encoding, evaluation and extension runs end to end, "
    "but 150 training steps are too few for the literature's train-short-test-long shape to appear, so no claims "
    "are checked here. The claims table comes with the default settings: ropelab lab run --out lab-report "
    "(about 20-30 minutes on 2 CPU cores)."
)


def claims_section(results: dict) -> str:
    if results.get("smoke_test"):
        return SECTION.substitute(title="A smoke test, not evidence", body=f"<p>{html.escape(SMOKE_TEST_TEXT)}</p>")
    rows = [
        [html.escape(c["claim"]), html.escape(c["check"]), html.escape(c["value"]), held_mark(c["held"])]
        for c in results["claims"]
    ]
    return SECTION.substitute(
        title="Claims, checked on this run", body=html_table(["claim", "check", "measured", "result"], rows)
    )


def perplexity_sections(results: dict) -> str:
    return SECTION.substitute(
        title="Perplexity, non-overlapping windows", body=_ppl_table(results, "nonoverlap")
    ) + SECTION.substitute(
        title="Perplexity, sliding windows (stride T/4, last T/4 bytes of each window scored)",
        body=_ppl_table(results, "sliding"),
    )


def figures_section(pngs: dict[str, bytes], captions: dict[str, str] = CAPTIONS) -> str:
    """Every figure embedded as base64 PNG, with its caption (plain text, escaped here)."""
    return "".join(
        FIGURE.substitute(name=name, png=base64.b64encode(data).decode(), caption=html.escape(captions[name]))
        for name, data in pngs.items()
    )


def extension_section(results: dict) -> str:
    """Perplexity at L' after each number of fine-tuning steps, and passkey, per method ('' without extension)."""
    methods = results.get("extension", {}).get("methods", {})
    if not methods:
        return ""
    steps = list(next(iter(methods.values()))["ppl"])
    rows = [
        [m]
        + [f"{e['ppl'][k]:.2f}" for k in steps]
        + [f"{e['passkey']['zero_shot']:.2f}", f"{e['passkey']['finetuned']:.2f}"]
        for m, e in methods.items()
    ]
    header = ["method"] + [f"{k} steps" for k in steps] + ["passkey zero-shot", "passkey fine-tuned"]
    title = f"Extension of RoPE to {results['extension']['factor']}L: perplexity at L' after N fine-tuning steps"
    return SECTION.substitute(title=title, body=html_table(header, rows))


def training_section(results: dict) -> str:
    rows = [
        [
            n,
            f"{e['train']['final_loss']:.4f}",
            f"{e['train']['seconds']:.0f}",
            f"{e['train']['tokens_per_second']:,.0f}",
        ]
        for n, e in results["encodings"].items()
    ]
    return SECTION.substitute(
        title="Training", body=html_table(["encoding", "final train loss", "train s", "tokens/s"], rows)
    )


def notes_section(notes: list[str]) -> str:
    return NOTES.substitute(items="".join(f"<li>{html.escape(n)}</li>" for n in notes)) if notes else ""


def render_report(results: dict, pngs: dict[str, bytes], tasks: str = "") -> str:
    """The self-contained report page of normalised ``results`` (with ``claims`` and ``notes``);
    ``tasks`` is the synthetic-tasks section (:func:`tasks_section`), if any."""
    body = "".join(
        [
            intro_section(results),
            claims_section(results),
            perplexity_sections(results),
            figures_section(pngs),
            extension_section(results),
            training_section(results),
            tasks,
            notes_section(results["notes"]),
            FOOTER,
        ]
    )
    return PAGE.substitute(title="ropelab lab report", style=STYLE, body=body)


def write_report(results: dict, out: Path, notes: list[str] = ()) -> Path:
    """Write ``results.json``, ``results.csv``, ``figures/*.png`` and ``report.html`` into ``out``; return the report path."""
    results = normalise(results)
    results["notes"] = list(notes) or results.get("notes", [])
    results["claims"] = [] if results.get("smoke_test") else check_claims(results)
    write_results(results, out)
    pngs = figures(results)
    for name, data in pngs.items():
        atomic_write_bytes(out / "figures" / name, data)
    path = out / "report.html"
    atomic_write_bytes(path, render_report(results, pngs, stored_tasks_section(out)).encode())
    return path


def rewrite_report(out: Path) -> Path:
    """Render ``out/report.html`` (and the CSV, figures) again from ``out/results.json``."""
    path = Path(out) / "results.json"
    try:
        results = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise LabError(f"--out {str(out)!r} is invalid: no readable results.json ({type(error).__name__})") from None
    return write_report(results, Path(out))


# ----------------------------------------------------------------------------- synthetic tasks
# (``ropelab lab tasks``: results of :func:`ropelab.lab.synthetic.run_tasks`, stored as tasks.json)
def task_stats(results: dict) -> dict:
    """``{name: {n: {"mean", "std", "min", "max"}}}`` of accuracy over the seeds (``std`` is the
    population standard deviation; 0 with one seed)."""
    import statistics

    stats = {}
    for name, seeds in results["runs"].items():
        lengths = next(iter(seeds.values()))["accuracy"]
        stats[name] = {}
        for n in lengths:
            values = [run["accuracy"][n] for run in seeds.values()]
            stats[name][n] = {
                "mean": statistics.fmean(values),
                "std": statistics.pstdev(values),
                "min": min(values),
                "max": max(values),
            }
    return stats


def _past_l(results: dict, name: str) -> float | None:
    """Mean accuracy over the test lengths past L (seeds averaged), or None if ``name`` was not run."""
    stats = task_stats(results).get(name)
    L = results["settings"]["length"]
    past = [v["mean"] for n, v in (stats or {}).items() if int(n) > L]
    return sum(past) / len(past) if past else None


def mean_reciprocal_rank(results: dict, names) -> dict[str, float]:
    """Kazemnejad et al. 2023's statistic (Figure 1) on this run: for every seed and every test length
    past L, rank ``names`` by accuracy (ties share the better rank); average ``1 / rank``."""
    L = results["settings"]["length"]
    names = [n for n in names if n in results["runs"]]
    total = {n: 0.0 for n in names}
    count = 0
    for seed in results["runs"][names[0]] if names else []:
        for n in results["runs"][names[0]][seed]["accuracy"]:
            if int(n) <= L:
                continue
            acc = {name: results["runs"][name][seed]["accuracy"][n] for name in names}
            for name in names:
                total[name] += 1.0 / (1 + sum(a > acc[name] for a in acc.values()))
            count += 1
    return {n: v / count for n, v in total.items()} if count else {}


def check_task_claims(results: dict) -> list[dict]:
    """The tasks' claims on this run's own numbers; ``held`` is None when a claim cannot be checked."""
    from ropelab.lab.literature import KAZEMNEJAD_FIGURE_1, KAZEMNEJAD_OURS

    L = results["settings"]["length"]
    stats = task_stats(results)
    encodings = [n for n in results["settings"]["encodings"] if n in stats]
    claims = []
    at_l = {n: stats[n][str(L)] for n in encodings}
    short = [f"{n} {v['mean']:.3f} (min {v['min']:.3f})" for n, v in at_l.items() if v["mean"] < 0.99]
    claims.append(
        {
            "claim": "every encoding reaches >= 99% at L",
            "check": f"mean accuracy over seeds at L = {L} >= 0.99",
            "value": "; ".join(short)
            if short
            else "lowest " + min((f"{v['mean']:.3f} ({n})" for n, v in at_l.items()), default="n/a"),
            "held": (not short) if at_l else None,
        }
    )
    theirs = [KAZEMNEJAD_OURS[k] for k in KAZEMNEJAD_FIGURE_1]  # their order, best first
    ours = {n: _past_l(results, n) for n in theirs}
    if all(v is not None for v in ours.values()):
        order = sorted(theirs, key=lambda n: -ours[n])
        claims.append(
            {
                "claim": "Kazemnejad et al.'s ranking past L (NoPE > T5 > ALiBi > RoPE > APE)",
                "check": "our order of mean accuracy over the test lengths past L",
                "value": " > ".join(f"{n} {ours[n]:.2f}" for n in order),
                "held": order == theirs,
            }
        )
    else:
        claims.append(
            {
                "claim": "Kazemnejad et al.'s ranking past L",
                "check": "needs nope, t5, alibi, rope, sinusoidal",
                "value": "n/a",
                "held": None,
            }
        )
    base = _past_l(results, "rope")
    rescued = {m: _past_l(results, f"rope+{m}") for m in results["settings"].get("zero_shot", [])}
    rescued = {m: v for m, v in rescued.items() if v is not None}
    claims.append(
        {
            "claim": "RoPE with PI or YaRN (zero-shot) beats RoPE extrapolated past L",
            "check": "mean accuracy over the test lengths past L",
            "value": ", ".join([f"extrapolated {base:.2f}"] + [f"{m} {v:.2f}" for m, v in rescued.items()])
            if base is not None and rescued
            else "n/a",
            "held": max(rescued.values()) > base if base is not None and rescued else None,
        }
    )
    return claims


def _label(name: str) -> str:
    return {"rope+linear": "rope + PI (zero-shot)", "rope+yarn": "rope + YaRN (zero-shot)"}.get(name, name)


def _figure_tasks(results: dict):
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator

    L = results["settings"]["length"]
    stats = task_stats(results)
    fig, ax = plt.subplots(figsize=(10, 5))
    for name, table in stats.items():
        lengths = [int(n) for n in table]
        mean = [v["mean"] for v in table.values()]
        dashed = "+" in name
        (line,) = ax.plot(lengths, mean, marker="o", ls="--" if dashed else "-", label=_label(name), lw=1.6)
        ax.fill_between(
            lengths,
            [v["min"] for v in table.values()],
            [v["max"] for v in table.values()],
            color=line.get_color(),
            alpha=0.15,
            lw=0,
        )
    ax.axvline(L, color="grey", ls=":", lw=1)
    ax.axhline(1.0 / results["settings"]["vocab"], color="grey", lw=1, ls="-.", label="chance (1 / vocab)")
    ax.set(
        xscale="log",
        xlabel="test length (tokens)",
        ylabel="accuracy of the retrieved token",
        ylim=(-0.02, 1.02),
        title=f"{results['settings']['task']}: trained at L = {L}, tested longer "
        f"(line: mean of {results['settings']['seeds']} seed(s); band: min to max)",
    )
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(lengths, [f"{n // L}L\n{n}" for n in lengths])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    return fig


def _task_table(results: dict) -> str:
    L = results["settings"]["length"]
    stats = task_stats(results)
    lengths = list(next(iter(stats.values())))
    rows = [
        [html.escape(_label(name))] + [f"{table[n]['mean']:.3f} &plusmn; {table[n]['std']:.3f}" for n in lengths]
        for name, table in stats.items()
    ]
    return html_table(["encoding"] + [f"{int(n) // L}L = {n}" for n in lengths], rows)


def _steps_table(results: dict) -> str:
    """Steps each (encoding, seed) trained, and whether it stopped at the validation target or at the cap."""
    s = results["settings"]
    rows = []
    for name in s["encodings"]:
        records = [run["train"] for run in results["runs"].get(name, {}).values() if "train" in run]
        if records:
            cells = ", ".join(
                f"{r.get('steps', s['steps'])}{'' if r.get('stopped_early') else ' (cap)'}" for r in records
            )
            reached = sum(bool(r.get("stopped_early")) for r in records)
            rows.append(
                [
                    html.escape(name),
                    cells,
                    f"{reached} of {len(records)}",
                    f"{sum(r.get('seconds', 0.0) for r in records):.0f}",
                ]
            )
    return html_table(
        ["encoding", "steps per seed", "seeds that reached the validation target", "training seconds"], rows
    )


def _ablation_table(results: dict) -> str:
    """One knob at a time (benchmarks/lab_tasks_ablation.py), when the results carry an ``ablation`` list."""
    rows = results.get("ablation") or []
    if not rows:
        return ""
    multiples = list(rows[0]["accuracy"])
    body = [
        [html.escape(r["encoding"]), html.escape(r["row"]), html.escape(", ".join(map(str, r["steps"])))]
        + [f"{100 * r['accuracy'][m]:.1f}" for m in multiples]
        + [f"{r['wall_seconds']:.0f} / {r['cpu_seconds']:.0f}"]
        for r in rows
    ]
    return (
        "<h3>Why our shape differs from the papers': one knob at a time</h3>"
        f"<p>{html.escape(results.get('ablation_note', ''))}</p>"
        + html_table(
            ["encoding", "change from the default recipe", "steps"]
            + [f"{m}L (%)" for m in multiples]
            + ["wall / CPU s"],
            body,
        )
    )


def _depth_table(results: dict) -> str:
    """Accuracy per needle-depth bin (seeds averaged), one cell per test length: 'b1 / b2 / ...'."""
    import math

    L = results["settings"]["length"]
    rows = []
    for name, seeds in results["runs"].items():
        runs = list(seeds.values())
        cells = []
        for n in runs[0]["by_depth"]:
            bins = zip(*(run["by_depth"][n] for run in runs))
            means = [sum(b) / len(b) for b in bins]
            cells.append(" / ".join("-" if math.isnan(v) else f"{v:.2f}" for v in means))
        rows.append([html.escape(_label(name))] + cells)
    lengths = list(next(iter(results["runs"].values())).values())[0]["by_depth"]
    return html_table(["encoding"] + [f"{int(n) // L}L" for n in lengths], rows)


def _papers_tables(results: dict) -> str:
    from ropelab.lab.literature import (
        KAZEMNEJAD_FIGURE_1,
        KAZEMNEJAD_OURS,
        KAZEMNEJAD_SOURCE,
        MAMBA_OURS,
        MAMBA_SOURCE,
        MAMBA_TABLE_11,
    )

    L = results["settings"]["length"]
    stats = task_stats(results)
    multiples = sorted(
        {m for row in MAMBA_TABLE_11.values() for m in row} | {int(n) // L for n in next(iter(stats.values()))}
    )
    rows = []
    for theirs, ours in MAMBA_OURS.items():
        rows.append(
            [html.escape(f"{theirs} (Mamba)")]
            + [f"{MAMBA_TABLE_11[theirs][m]:.1f}" if m in MAMBA_TABLE_11[theirs] else "" for m in multiples]
        )
        for name in ours:
            table = stats.get(name, {})
            rows.append(
                [html.escape(f"{name} (ours)")]
                + [f"{100 * table[str(m * L)]['mean']:.1f}" if str(m * L) in table else "" for m in multiples]
            )
    mamba = html_table(["model"] + [f"{m}L" for m in multiples], rows)
    mrr = mean_reciprocal_rank(results, list(KAZEMNEJAD_OURS.values()))
    past = {n: _past_l(results, n) for n in KAZEMNEJAD_OURS.values()}
    krows = [
        [
            html.escape(k),
            f"{v:.2f}",
            html.escape(KAZEMNEJAD_OURS[k]),
            f"{mrr[KAZEMNEJAD_OURS[k]]:.2f}" if KAZEMNEJAD_OURS[k] in mrr else "",
            f"{past[KAZEMNEJAD_OURS[k]]:.3f}" if past[KAZEMNEJAD_OURS[k]] is not None else "",
        ]
        for k, v in KAZEMNEJAD_FIGURE_1.items()
    ]
    kazemnejad = html_table(["theirs", "their MRR", "ours", "our MRR", "our mean accuracy past L"], krows)
    return (
        f"<p>Accuracy (%) by test length / training length. Theirs: {html.escape(MAMBA_SOURCE)}. "
        f"Ours: this run, mean over seeds, task {html.escape(results['settings']['task'])} at L = {L}.</p>{mamba}"
        f"<p>Ranking. Theirs: {html.escape(KAZEMNEJAD_SOURCE)}. Ours: the same statistic over every seed and test "
        f"length past L, on this one task.</p>{kazemnejad}"
    )


TASKS_INTRO = Template(
    "<p>Task <b>$task</b>: $what Decoder of $num_layers layers, width $dim, $num_heads heads, token table initialised "
    "with standard deviation $embedding_std, trained from scratch at <b>L = $length</b> tokens in batches of "
    "$batch_size sequences (AdamW, lr $lr constant after warm-up), $seeds seed(s) per encoding, $vocab content "
    "symbols. <b>Stopping rule, fixed before the run:</b> every $check_every steps the accuracy at L is measured on "
    "$valid_rows sequences of a validation seed stream; training stops at the first check at or above $target, "
    "else at the cap of $steps steps (the steps each model used are in the table below). The reported accuracies "
    "are scored on fresh sequences of a third seed stream, used neither for training nor for stopping (at least "
    "$min_rows sequences per length). RoPE is also run past L with PI and YaRN for the factor n / L, zero-shot "
    "(ropelab.extension). Wall time $minutes min.</p>"
)
TASK_WHAT = {
    "recall": "4 needles (key, value) hidden in random filler, the 4 keys asked again at the end (8 keys, distinct per "
    "sequence); the model must output each value. Retrieval in the sense of induction heads (Olsson et al. "
    "2022) and the associative recall of the H3 and Mamba synthetic setups (Gu &amp; Dao 2023, sec. 4.1.2).",
    "induction": "random content tokens, one trigger token (outside the content vocabulary) followed by the answer, "
    "the trigger again at the end; the model must output the token that followed the first trigger. The "
    "induction-heads task of Gu &amp; Dao 2023 (Mamba), sec. 4.1.2, after Olsson et al. 2022.",
    "copy": "a random string, a separator, the string again; every copied token is scored (Kazemnejad et al. 2023, "
    "sec. 3, Table 1).",
}
TASKS_SMOKE_TEXT = (
    "This is the smoke test (ropelab lab tasks --quick: 2 encodings, 1 seed, a low step cap): it shows the pipeline runs "
    "end to end, and its accuracies carry no claim. The claims are checked by the default run: "
    "ropelab lab tasks --out lab-report (at most 20 minutes on 2 CPU cores)."
)


def tasks_section(results: dict, png: bytes | None) -> str:
    """The report section of a tasks run (normalised results; claims added by :func:`write_tasks_report`)."""
    s = results["settings"]
    intro = TASKS_INTRO.substitute(
        task=html.escape(s["task"]),
        what=TASK_WHAT.get(s["task"], ""),
        num_layers=s["num_layers"],
        dim=s["dim"],
        num_heads=s["num_heads"],
        length=s["length"],
        steps=s["steps"],
        batch_size=s["batch_size"],
        lr=s["lr"],
        seeds=s["seeds"],
        vocab=s["vocab"],
        min_rows=s["min_rows"],
        embedding_std=f"{s.get('embedding_std', 0.02):.3g}",
        check_every=s.get("check_every", "-"),
        valid_rows=s.get("valid_rows", "-"),
        target=s.get("target", "-"),
        minutes=f"{results['timing'].get('wall_seconds', results['timing']['total_seconds']) / 60:.1f}",
    )
    figure = figures_section({"tasks_accuracy.png": png}, {"tasks_accuracy.png": TASKS_CAPTION}) if png else ""
    if results.get("smoke_test"):
        claims = f"<p><b>A smoke test, not evidence.</b> {html.escape(TASKS_SMOKE_TEXT)}</p>"
    else:
        rows = [
            [html.escape(c["claim"]), html.escape(c["check"]), html.escape(c["value"]), held_mark(c["held"])]
            for c in results["claims"]
        ]
        claims = "<h3>Claims, checked on this run</h3>" + html_table(["claim", "check", "measured", "result"], rows)
    body = (
        intro
        + figure
        + claims
        + "<h3>Accuracy by test length (mean &plusmn; standard deviation over seeds)</h3>"
        + _task_table(results)
        + "<h3>Training steps used (stopping rule above)</h3>"
        + _steps_table(results)
        + "<h3>Beside the papers</h3>"
        + _papers_tables(results)
        + _ablation_table(results)
        + f"<h3>Accuracy by depth of the needle ({s['depth_bins']} bins from the start of the context to just "
        "before the query; seeds averaged)</h3>"
        + _depth_table(results)
        + notes_section(results.get("notes", [])).replace("<h2>Notes</h2>", "<h3>Notes</h3>")
    )
    return SECTION.substitute(title="Retrieval from scratch: synthetic tasks past the training length", body=body)


TASKS_CAPTION = (
    "Accuracy against test length, one line per encoding (mean over seeds; band: lowest to highest seed). "
    "Dashed: the trained RoPE models run zero-shot with PI or YaRN for the factor n / L."
)


def write_tasks_report(results: dict, out: Path) -> Path:
    """Write tasks.json and figures/tasks_accuracy.png into ``out``, then report.html: the lab's full
    report with this section when ``out/results.json`` exists, else a page of this section alone."""
    import matplotlib

    matplotlib.use("Agg")
    from ropelab.plots import figure_png

    out = Path(out)
    results = normalise(results)
    results["claims"] = [] if results.get("smoke_test") else check_task_claims(results)
    atomic_write_bytes(out / "tasks.json", json.dumps(results, indent=1).encode())
    png = figure_png(_figure_tasks(results))
    atomic_write_bytes(out / "figures" / "tasks_accuracy.png", png)
    if (out / "results.json").exists():
        return rewrite_report(out)
    path = out / "report.html"
    atomic_write_bytes(
        path,
        PAGE.substitute(
            title="ropelab lab report",
            style=STYLE,
            body="<h1>ropelab lab: train short, test long</h1>" + tasks_section(results, png),
        ).encode(),
    )
    return path


def stored_tasks_section(out: Path) -> str:
    """The tasks section of ``out/tasks.json`` ('' when there is none or it is unreadable)."""
    path = Path(out) / "tasks.json"
    figure = Path(out) / "figures" / "tasks_accuracy.png"
    try:
        results = json.loads(path.read_text())
        return tasks_section(results, figure.read_bytes() if figure.exists() else None)
    except (OSError, json.JSONDecodeError, KeyError):
        return ""
