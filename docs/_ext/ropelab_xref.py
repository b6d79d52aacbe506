"""Cross-references in ropelab's docstrings, resolved as Python resolves the name.

Each object is documented once, in the module that defines it (``ignore-module-all`` in conf.py), but a
docstring names objects as its own module sees them: ``:class:`RopeConfig``` in a module that imports
it, ``:func:`ropelab.rotate``` for a re-export. A reference Sphinx cannot find is resolved from the
docstring's module the way Python would resolve it, and the object found is linked under the module
and name that define it. A name that resolves outside ropelab (torch, the standard library) renders as
code without a link, and so does a private helper (no page of its own); one that resolves nowhere, or
to a public ropelab object without a page, is left to Sphinx, which reports it (``-W`` fails the build).
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

PACKAGE = "ropelab"


def _resolve_python(path: str) -> object:
    """The object a dotted path names: the longest importable module prefix, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise AttributeError(path)


def _canonical(obj: object, path: str) -> str | None:
    """Where ``obj`` (reached through ``path``) is defined: ``module.qualname``; None for a value
    without one (a constant), which is then looked up by identity among the documented objects."""
    if isinstance(obj, ModuleType):
        return obj.__name__
    if isinstance(obj, property):
        obj = obj.fget
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str) and not inspect.isbuiltin(obj):
        return f"{module}.{qualname}"
    return None


def _candidates(target: str, module: str | None, klass: str | None) -> list[str]:
    """The dotted paths a name in a docstring can mean, nearest scope first."""
    paths = []
    if module and klass:
        paths.append(f"{module}.{klass}.{target}")
    if module:
        paths.append(f"{module}.{target}")
    paths.append(target)
    return paths


def resolve_by_python(app, env, node, contnode):
    """missing-reference: rule 2."""
    if node.get("refdomain") != "py":
        return None
    target = node["reftarget"].lstrip("~.")
    domain = env.get_domain("py")
    objects = domain.objects
    for path in _candidates(target, node.get("py:module"), node.get("py:class")):
        try:
            obj = _resolve_python(path)
        except (AttributeError, ImportError, ValueError):
            # a dataclass field or instance attribute: the class is importable, the name is not
            owner, _, attr = path.rpartition(".")
            try:
                owner_name = _canonical(_resolve_python(owner), owner) if owner else None
            except (AttributeError, ImportError, ValueError):
                continue
            if owner_name and f"{owner_name}.{attr}" in objects:
                return _refnode(app, env, node, contnode, f"{owner_name}.{attr}")
            continue
        canonical = _canonical(obj, path)
        if canonical is None:  # a constant: the documented name that holds this very object
            last = path.rpartition(".")[2]
            for name in objects:
                if name.rpartition(".")[2] == last and name.startswith(PACKAGE + "."):
                    try:
                        if _resolve_python(name) is obj:
                            canonical = name
                            break
                    except (AttributeError, ImportError, ValueError):
                        continue
        if canonical is None:
            continue
        if canonical in objects:
            return _refnode(app, env, node, contnode, canonical)
        if canonical.split(".")[0] != PACKAGE:
            return contnode  # torch, the standard library: shown as code, not linked
        if canonical.rpartition(".")[2].startswith("_") or "._" in canonical:
            return contnode  # a private helper: named for readers of the source, no page of its own
    return None


def _refnode(app, env, node, contnode, canonical: str):
    domain = env.get_domain("py")
    return domain.resolve_xref(env, node["refdoc"], app.builder, "obj", canonical, node, contnode)


def setup(app):
    app.connect("missing-reference", resolve_by_python)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
