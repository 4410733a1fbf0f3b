"""What the MNIST examples (mnist_deq, feature_clusters, solver_comparison) share.

The data loader, model, training loop and checkpoints live in ``steadysolve.demo`` (the
``steadysolve demo`` command uses the same ones); this module holds the scripts' glue:
one argument parser with the common MNIST options, and the trained model it describes
(``--checkpoint FILE`` loads a model trained before, e.g. by ``mnist_deq.py --checkpoint FILE``,
instead of training again).
"""

from __future__ import annotations

import argparse
import os

from steadysolve.demo import add_mnist_arguments, trained_model

__all__ = ["parser", "trained", "out_path"]


def parser(doc: str, solver_help: str = "forward solver for training", out: bool = True) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` showing the script's docstring, with the shared MNIST options (and ``--out``)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_mnist_arguments(ap, solver_help)
    if out:
        ap.add_argument("--out", default=".", help="output folder (default: the current one)")
    return ap


def trained(args):
    """``(model, data, history, source)``: trained as the options say, or loaded from ``--checkpoint``."""
    return trained_model(args)


def out_path(args, name: str) -> str:
    """``name`` inside ``--out`` (created if needed)."""
    os.makedirs(args.out, exist_ok=True)
    return os.path.join(args.out, name)
