"""argparse types for comma-separated lists, shared by the ``ropelab`` subcommands.

A bad value raises ``argparse.ArgumentTypeError`` with the text and what is accepted, which argparse
prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse

__all__ = ["names", "int_list", "non_negative_int_list", "float_list"]


def names(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: blanks and empty items dropped."""
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _numbers(text: str, kind: type, what: str) -> tuple:
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected comma-separated {what}") from None


def int_list(text: str) -> tuple[int, ...]:
    """``"0,50,100"`` -> ``(0, 50, 100)``."""
    return _numbers(text, int, "integers")


def non_negative_int_list(text: str) -> tuple[int, ...]:
    """:func:`int_list`, refusing negative values."""
    values = int_list(text)
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} is invalid: expected non-negative integers")
    return values


def float_list(text: str) -> tuple[float, ...]:
    """``"0,0.5,1"`` -> ``(0.0, 0.5, 1.0)``."""
    return _numbers(text, float, "numbers")
