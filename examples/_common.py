"""What the example scripts share: the ``--out`` option and, for the MNIST examples (mnist_deq,
feature_clusters, solver_comparison), one argument parser with the common MNIST options and the
trained model it describes.

The data loader, model, training loop and checkpoints live in ``steadysolve.demo`` (the
``steadysolve demo`` command uses the same ones, and the same checks of its options);
``--checkpoint FILE`` loads a model trained before (e.g. by ``mnist_deq.py --checkpoint FILE``)
instead of training again. Every script takes ``--help``, ``--quick`` and ``--out DIR`` (default:
the current folder), and every bad option is an argparse error (usage, ``error:`` line, status 2)
before any work starts.
"""

from __future__ import annotations

import argparse
import json
import os

from steadysolve.demo import add_mnist_arguments, check_mnist_args, trained_model
from steadysolve.demo.cli import writable_folder_problem

__all__ = ["script_parser", "parser", "parse", "trained", "out_path", "write_json"]


def script_parser(doc: str) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` showing the script's docstring, with ``--out``."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".", metavar="DIR",
                    help="output folder, created if needed (default: the current folder)")
    return ap


def parser(doc: str, solver_help: str = "forward solver for training") -> argparse.ArgumentParser:
    """:func:`script_parser` with the shared MNIST options."""
    ap = script_parser(doc)
    add_mnist_arguments(ap, solver_help)
    return ap


def parse(ap: argparse.ArgumentParser, argv=None, mnist: bool = False) -> argparse.Namespace:
    """``ap.parse_args(argv)``, then the checks of what the options name (``--out``; with ``mnist``,
    the data, the checkpoint and the libraries: ``steadysolve.demo.check_mnist_args``)."""
    args = ap.parse_args(argv)
    if mnist:
        return check_mnist_args(ap, args)
    why = writable_folder_problem(args.out)
    if why:
        ap.error(f"argument --out: {why}")
    return args


def trained(args):
    """``(model, data, history, source)``: trained as the options say, or loaded from ``--checkpoint``."""
    return trained_model(args)


def out_path(args, name: str) -> str:
    """``name`` inside ``--out`` (created if needed)."""
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)


def write_json(args, name: str, data) -> str:
    """Write ``data`` as ``--out/name`` (indented JSON); returns the path."""
    path = out_path(args, name)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=1, default=float)
    print(f"wrote {path}")
    return path
