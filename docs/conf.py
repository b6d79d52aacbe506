"""Sphinx configuration for ropelab's documentation site (``make docs``; built strict in CI).

Pages are Markdown (MyST); the API reference is generated from the docstrings by autodoc, which reads
their reST roles (``:func:``, ``:class:``, ``:mod:``) as real cross-references, and napoleon, which reads
their Google-style sections (Args, Returns, Raises). ``make docs`` runs ``sphinx-build -W --keep-going -n``:
every warning, an unresolved cross-reference or a link to a missing file included, fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))  # document this checkout's sources, not an installed copy

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import ropelab  # noqa: E402

project = "ropelab"
author = "ropelab contributors"
copyright = "ropelab contributors, MIT licence"
release = version = ropelab.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "ropelab_xref",  # docs/_ext: one page per object, references resolved as Python resolves the name
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "_templates"]
templates_path = ["_templates"]

# MyST: heading anchors so that [text](page.md#a-heading) links are checked too.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence"]

# autodoc / autosummary: one page per module, generated at build time under api/generated/ (ignored by git).
autosummary_generate = True
autosummary_imported_members = False
# Each object is documented once, in the module that defines it (a package's re-exports link there).
autodoc_default_options = {"members": True, "undoc-members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True  # a dataclass's "Attributes:" section must not document its fields a second time

# Strict mode (-n) checks every cross-reference. Types from other libraries cannot be resolved without
# intersphinx, which would download their inventories at build time (the build stays offline).
nitpicky = True
# Private names (a leading underscore) are named in docstrings for readers of the source; they have no page.
nitpick_ignore_regex = [
    (r"py:.*", r"(torch|numpy|np|matplotlib|transformers|triton|argparse|collections|pathlib|os|types|typing)(\..*)?"),
    (r"py:.*", r"(.*\.)?_[A-Za-z0-9].*"),
    # The @triton.jit code needs triton at import and has no page (docs/_templates/autosummary/module.rst).
    (r"py:.*", r"(ropelab\.kernels\.)?triton_rope(\..*)?"),
    # torch.nn.Module.forward's own docstring, inherited by a module whose forward has none.
    ("py:class", "Module"),
]

# Unlabelled code blocks are command lines and console text, not Python.
highlight_language = "text"

html_theme = "furo"
html_title = f"ropelab {release}"
html_static_path: list[str] = []
