"""The ``ropelab`` command.

Subcommands are registered by the package that owns them, so this file stays a thin router:

- ``ropelab types``    this module: a table of every rope type for one config;
- ``ropelab precision`` this module: angle error at long positions, ropelab vs float32 (transformers');
- ``ropelab explain / compare / tour``  :mod:`ropelab.explain.cli`;
- ``ropelab lab ...``  :mod:`ropelab.lab.cli`;
- ``ropelab explore``  :mod:`ropelab.explain.explorer` (the interactive page);
- ``ropelab demo``     everything a new user should see first.

Bad input exits with code 2 and one line on stderr, never a traceback: every user error is a
:class:`ropelab.errors.RopelabError`, caught here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ropelab.errors import CliError, RopelabError

__all__ = ["main", "CliError"]

# Modules that add subcommands: each exposes register(subparsers) and, optionally, demo(args).
_PLUGINS = (
    "ropelab.explain.cli",
    "ropelab.explain.explorer",
    "ropelab.real.cli",
    "ropelab.lab.cli",
)  # lab last: its report path ends the demo


def _plugins():
    for name in _PLUGINS:
        try:
            yield importlib.import_module(name)
        except ModuleNotFoundError as error:
            if error.name is None or not (name == error.name or name.startswith(error.name + ".")):
                raise  # a real missing dependency inside the plugin, not an absent plugin


def _types_table(args: argparse.Namespace) -> None:
    from ropelab.demo import print_types_table

    print_types_table(head_dim=args.head_dim, base=args.base, seq_len=args.seq_len)


def _precision(args: argparse.Namespace) -> None:
    from ropelab.demo import print_precision_table

    print_precision_table(head_dim=args.head_dim, base=args.base)


def _demo(args: argparse.Namespace) -> None:
    from ropelab.demo import print_precision_table, print_types_table

    print_types_table()
    print_precision_table()
    for plugin in _plugins():
        if hasattr(plugin, "demo"):
            plugin.demo(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ropelab", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)

    types = subparsers.add_parser("types", help="table of every rope type's frequencies for one config")
    types.add_argument("--head-dim", type=int, default=128)
    types.add_argument("--base", type=float, default=10000.0)
    types.add_argument("--seq-len", type=int, default=16384, help="length the dynamic types see")
    types.set_defaults(func=_types_table)

    precision = subparsers.add_parser("precision", help="angle error at long positions against float64")
    precision.add_argument("--head-dim", type=int, default=128)
    precision.add_argument("--base", type=float, default=500000.0)
    precision.set_defaults(func=_precision)

    demo = subparsers.add_parser("demo", help="what ropelab does, on embedded defaults (no download)")
    demo.add_argument("--out", default="ropelab-out", help="folder for figures and reports")
    demo.set_defaults(func=_demo)

    for plugin in _plugins():
        plugin.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (RopelabError, FileNotFoundError, NotADirectoryError) as error:
        print(f"ropelab {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"ropelab {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
