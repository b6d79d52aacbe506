"""Every error ropelab raises for bad user input, under one base class.

The top-level ``ropelab`` command catches :class:`RopelabError` once and prints it as one line with
exit code 2; library callers can catch the base class or the specific one. Each keeps the builtin
base it always had (``ValueError``, ``RuntimeError``), so ``except ValueError`` still works.

This module imports nothing, so every other module, :mod:`ropelab.config` included, can use it.
"""

from __future__ import annotations

__all__ = [
    "RopelabError",
    "CliError",
    "RopeConfigError",
    "UnknownPresetError",
    "UnknownLayerTypeError",
    "EncodingError",
    "PatchError",
    "LabError",
    "RealModelError",
]


class RopelabError(Exception):
    """A user error: the message names the offending key or argument and what is accepted."""


class CliError(RopelabError):
    """A bad command-line argument that no more specific error describes."""


class RopeConfigError(RopelabError, ValueError):
    """A RoPE description that cannot be used; the message names the key, the value and what is accepted."""


class UnknownPresetError(RopeConfigError):
    """A preset name that ropelab does not know; the message lists the known ones."""


class UnknownLayerTypeError(RopeConfigError, KeyError):
    """A layer type that a per-layer-type RoPE does not have; also a ``KeyError``, as a mapping lookup."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EncodingError(RopelabError, ValueError):
    """A position encoding used outside what it supports; the message names the argument."""


class PatchError(RopelabError, RuntimeError):
    """The model's RoPE cannot be replaced faithfully; the message says which module and why."""


class LabError(RopelabError, ValueError):
    """A user error in the lab (bad path, bad length, wrong or corrupt checkpoint); one clear line."""


class RealModelError(RopelabError, ValueError):
    """A user error with a real pretrained model: no RoPE, bad target, unknown method, missing or corrupt
    file, a text too short for the length; one clear line."""
