"""The ``steadysolve`` command (also ``python -m steadysolve``).

    steadysolve --version
    steadysolve demo [--quick] [--out DIR] ...     # see: steadysolve demo --help

Each command's options and usage text are argparse's, built from one set of argument definitions
that ``python -m steadysolve.demo`` uses too (:func:`steadysolve.demo.cli.add_arguments`).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .demo import cli as demo_cli


def build_parser() -> argparse.ArgumentParser:
    """The ``steadysolve`` parser: ``--version`` and one sub-command per tool."""
    ap = argparse.ArgumentParser(prog="steadysolve",
                                 description="steadysolve: steady-state, nonlinear and fixed-point solvers.")
    ap.add_argument("-V", "--version", action="version", version=f"steadysolve {__version__}")
    commands = ap.add_subparsers(title="commands", dest="command", metavar="COMMAND", required=True)
    demo = commands.add_parser("demo", help="train a small MNIST DEQ and draw what it does",
                               description=demo_cli.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    demo_cli.add_arguments(demo)
    demo.set_defaults(run=demo_cli.run, parser=demo)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args, args.parser)


if __name__ == "__main__":
    sys.exit(main())
