"""The layering of the package, read from its source: ``ropelab.kernels`` sits below the core.

Every ``import`` / ``from`` statement of ``src/ropelab/**/*.py`` counts, function-level (lazy) ones
included; relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import torch

import ropelab
from ropelab.config import LAYOUTS
from ropelab.kernels import launch, modes

PACKAGE_ROOT = Path(ropelab.__file__).parent
# What ropelab.kernels may import from the rest of the package (modules that import only torch).
KERNELS_MAY_IMPORT = ("ropelab.reference", "ropelab.errors")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Names of the modules ``path`` imports, anywhere in the file."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            target = ".".join(part for part in (base, node.module) if part)
            names.add(target)
            names.update(f"{target}.{alias.name}" for alias in node.names)  # `from pkg import module`
    return names


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_kernels_import_nothing_above_them():
    upward = {}
    for path in sorted((PACKAGE_ROOT / "kernels").rglob("*.py")):
        found = {
            name
            for name in _imports(path)
            if _within(name, "ropelab")
            and not _within(name, "ropelab.kernels")
            and not any(_within(name, allowed) for allowed in KERNELS_MAY_IMPORT)
        }
        if found:
            upward[_module_name(path)] = sorted(found)
    assert upward == {}


def test_the_walk_sees_the_core_importing_the_kernels():
    """The check above can fail: rotary does import kernels, function-level imports are seen."""
    assert "ropelab.kernels" in _imports(PACKAGE_ROOT / "rotary.py")
    assert "mpmath" in _imports(PACKAGE_ROOT / "kernels" / "angles.py")  # a function-level import


def test_only_the_jit_module_imports_triton_at_the_top():
    for path in sorted((PACKAGE_ROOT / "kernels").glob("*.py")):
        top_level = {
            alias.name
            for node in ast.parse(path.read_text()).body
            if isinstance(node, ast.Import)
            for alias in node.names
        }
        top_level |= {node.module for node in ast.parse(path.read_text()).body if isinstance(node, ast.ImportFrom)}
        assert ("triton" in top_level) == (path.name == "triton_rope.py"), path.name


def test_kernel_layout_names_agree_with_the_config():
    assert modes.LAYOUTS == LAYOUTS


def test_torch_path_works_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` now raises ImportError
    launch._triton_importable.cache_clear()
    try:
        assert not ropelab.kernels.triton_available("cuda")
        cfg = ropelab.RopeConfig(head_dim=8)
        q, k = torch.randn(1, 2, 3, 8), torch.randn(1, 1, 3, 8)
        out_q, out_k = ropelab.rotate_qk(q, k, torch.arange(3), cfg)
        assert out_q.shape == q.shape and out_k.shape == k.shape
    finally:
        launch._triton_importable.cache_clear()


# ---------------------------------------------------------------- the whole package: no import circle
def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports. A package's ``__init__`` only re-exports its children,
    so edges between a package and its own submodules are left out (they are not layers)."""
    paths = sorted(PACKAGE_ROOT.rglob("*.py"))
    modules = {_module_name(path) for path in paths}
    graph = {}
    for path in paths:
        module = _module_name(path)
        graph[module] = {
            name
            for name in _imports(path) & modules
            if name != module and not _within(name, module) and not _within(module, name)
        }
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as ``[a, b, ..., a]``, or None (depth-first search with an open stack)."""
    done: set[str] = set()
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        stack.append(module)
        for target in sorted(graph.get(module, ())):
            if target in stack:
                return stack[stack.index(target) :] + [target]
            if target not in done and (cycle := visit(target)):
                return cycle
        stack.pop()
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done and (cycle := visit(module)):
            return cycle
    return None


def test_find_cycle_finds_a_planted_circle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_has_no_import_circle():
    graph = import_graph()
    assert graph["ropelab.rotary"] >= {
        "ropelab.rotary_tables",
        "ropelab.kernels",
        "ropelab.config",
    }  # real edges are seen
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_errors_and_config_sit_at_the_bottom():
    graph = import_graph()
    assert graph["ropelab.errors"] == set()
    assert graph["ropelab.config"] == {"ropelab.errors"}


# ---------------------------------------------------------------- the reader of transformers configs
def test_the_dialects_reader_sits_just_above_the_config():
    """integrations.hf.dialects reads transformers configs for RopeConfig.from_hf: it imports the standard
    library, config and errors only (no torch, no transformers), so `import ropelab` can register it cheaply."""
    path = PACKAGE_ROOT / "integrations" / "hf" / "dialects.py"
    assert import_graph()["ropelab.integrations.hf.dialects"] == {"ropelab.config", "ropelab.errors"}
    outside = {name.split(".")[0] for name in _imports(path)} - {"ropelab"}
    assert outside <= set(sys.stdlib_module_names), sorted(outside - set(sys.stdlib_module_names))


def test_import_ropelab_alone_makes_from_hf_work_without_transformers():
    import subprocess

    code = (
        "import sys, ropelab; cfg = ropelab.RopeConfig.from_hf({'model_type': 'gptj', 'n_embd': 64, 'n_head': 4}); "
        "print(cfg.layout, cfg.head_dim, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["interleaved", "16", "False"]
