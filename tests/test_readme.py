"""The README is a front page whose numbers come from committed results and whose links resolve.

- its headline table (the embedded SmolLM2-135M taken to 2T), and the same table on the documentation's
  home page, are read back from ``benchmarks/results/real/results.json``, cell by cell, at their precision;
- every relative link and image in it names a file of this checkout;
- it stays a front page: at most 200 lines.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS_HOME = ROOT / "docs" / "index.md"
FRONT_PAGE_LINES = 200
REAL_RESULTS = ROOT / "benchmarks" / "results" / "real" / "results.json"

# README row label -> the method's key in results.json
ROWS = {
    "as-is": "extrapolate",
    "PI (linear x2), zero-shot": "linear",
    "YaRN x2, zero-shot": "yarn",
    "PI + 80 PoSE steps": "linear+pose",
    "YaRN + 80 PoSE steps": "yarn+pose",
}


def _headline_rows(page: Path) -> dict[str, list[str]]:
    """The cells of the page's table under 'What ropelab found', keyed by the row label."""
    text = page.read_text()
    section = text.split("## What ropelab found", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] in ROWS:
            rows[cells[0]] = cells[1:]
    return rows


def _break_cell(entry: dict) -> str:
    measured, predicted = entry["measured_break"], entry["predicted_break"]
    if measured is None:
        return "no break" if predicted is None else f"no break (predicted {predicted})"
    return f"{measured} (predicted {predicted})" if predicted is not None else str(measured)


@pytest.mark.parametrize("page", [README, DOCS_HOME], ids=["README", "docs-home"])
def test_headline_table_is_read_from_the_committed_real_results(page):
    results = json.loads(REAL_RESULTS.read_text())
    measured = results["measure"]["methods"]
    verdict = results["verdict"]["methods"]
    target = str(results["target"])
    rows = _headline_rows(page)
    assert set(rows) == set(ROWS), f"{page.name} headline rows {sorted(rows)} != {sorted(ROWS)}"
    for label, key in ROWS.items():
        ranges = measured[key]["ppl_ranges"]
        passkey_at_target = measured[key]["passkey"][target]
        expected = [
            f"{ranges['[T/2, T)']:.2f}",
            f"{ranges[f'[T, {target})']:.2f}",
            _break_cell(verdict[key]),
            f"{sum(passkey_at_target.values()) / len(passkey_at_target):.2f}",
        ]
        assert rows[label] == expected, f"{page.name} row {label!r}: {rows[label]} != results.json {expected}"


def test_readme_links_name_files_of_this_checkout():
    links = re.findall(r"\]\(([^)\s]+)\)", README.read_text())
    local = [link.split("#", 1)[0] for link in links if not re.match(r"[a-z]+://", link)]
    assert local, "the README links into the documentation"
    missing = [link for link in local if link and not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_is_a_front_page():
    lines = README.read_text().count("\n")
    assert lines <= FRONT_PAGE_LINES, f"README.md has {lines} lines; the front page keeps to {FRONT_PAGE_LINES}"
