"""How long the ``ropelab explore`` page takes to open in headless Chromium (reported, not asserted).

Usage: python benchmarks/explorer_load.py [--repeats 5] [--out benchmarks/results/explorer_load]

Writes the page once (:func:`ropelab.explain.explorer.write_explorer`, every preset in its picker), launches
the system Chromium through Playwright with the browser tests' flags (``tests/headless_chromium.py``),
then opens the page ``--repeats`` times, each in a fresh page, and times:

- **ready**: from ``page.goto`` until ``window.ropelab`` is defined (what the browser tests wait for
  before their first check), by the wall clock of this process;
- **DOMContentLoaded** and **load**: the browser's own Navigation Timing
  (``performance.getEntriesByType("navigation")``, milliseconds from the start of the navigation).

Writes ``table.md`` and ``results.json`` under ``--out``: the median, minimum and maximum of each, the
page's size, the time to write it and to launch the browser, the Chromium version and the CPU count.
Needs ``pip install -e '.[browser]'`` and the system Chromium (``apt-get install -y chromium``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ropelab.explain import explorer
from ropelab.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "explorer_load"
sys.path.insert(0, str(ROOT / "tests"))
from headless_chromium import CHROMIUM_ARGS, chromium_path  # noqa: E402

NAVIGATION_TIMING = """() => {
  const entry = performance.getEntriesByType("navigation")[0];
  return {dom_content_loaded: entry.domContentLoadedEventEnd, load: entry.loadEventEnd};
}"""


def open_once(browser, page_path: Path) -> dict[str, float]:
    """Open ``page_path`` in a fresh page: seconds until ``window.ropelab`` is defined, and the
    Navigation Timing of DOMContentLoaded and load (seconds)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    started = time.perf_counter()
    page.goto(page_path.resolve().as_uri())
    page.wait_for_function("window.ropelab !== undefined")
    ready = time.perf_counter() - started
    page.wait_for_load_state("load")
    timing = page.evaluate(NAVIGATION_TIMING)
    page.close()
    return {"ready": ready, **{name: milliseconds / 1000 for name, milliseconds in timing.items()}}


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def table(results: dict) -> str:
    lines = [
        f"# Explorer page load in headless Chromium {results['chromium']}",
        "",
        f"{results['repeats']} opens of a {results['page_bytes'] / 1e6:.2f} MB page on {results['cpus']} CPUs "
        f"(load average {results['load_average']:.1f} at the start). Written in {results['write_s']:.2f} s; "
        f"browser launched in {results['launch_s']:.2f} s.",
        "",
        "| measure | median s | min s | max s |",
        "|---|---|---|---|",
    ]
    names = {"ready": "ready (window.ropelab defined)", "dom_content_loaded": "DOMContentLoaded", "load": "load"}
    for key, name in names.items():
        row = results["seconds"][key]
        lines.append(f"| {name} | {row['median']:.3f} | {row['min']:.3f} | {row['max']:.3f} |")
    lines += ["", "Reproduce: `python benchmarks/explorer_load.py`", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats={args.repeats} is invalid: at least 1")
    chromium = chromium_path()
    if chromium is None:
        print("explorer_load: no Chromium found (apt-get install -y chromium, or set ROPELAB_CHROMIUM)")
        return 2
    from playwright.sync_api import sync_playwright

    load_average = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        page_path = explorer.write_explorer(None, Path(folder) / "explorer.html")
        write_s = time.perf_counter() - started
        with sync_playwright() as pw:
            started = time.perf_counter()
            browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            launch_s = time.perf_counter() - started
            opens = [open_once(browser, page_path) for _ in range(args.repeats)]
            version = browser.version
            browser.close()
        page_bytes = page_path.stat().st_size
    results = {
        "chromium": version,
        "cpus": os.cpu_count(),
        "load_average": load_average,
        "repeats": args.repeats,
        "page_bytes": page_bytes,
        "write_s": write_s,
        "launch_s": launch_s,
        "seconds": {key: spread([one[key] for one in opens]) for key in opens[0]},
        "opens": opens,
    }
    out = Path(args.out)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2) + "\n")
    text = table(results)
    atomic_write_text(out / "table.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
