"""``python -m steadysolve demo`` / the ``steadysolve`` console script."""

from __future__ import annotations

import sys


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: steadysolve demo [--quick] [--out DIR] [--epochs N] [--solver NAME] [--data-dir DIR] [--checkpoint FILE]\n\n"
              "commands:\n  demo    train a small MNIST DEQ and write its pictures (see: steadysolve demo --help)")
        return 0
    if argv[0] != "demo":
        print(f"steadysolve: unknown command {argv[0]!r}; the only command is 'demo'", file=sys.stderr)
        return 2
    from .demo import main as demo_main

    return demo_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
