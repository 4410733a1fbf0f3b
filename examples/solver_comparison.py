"""Swap algorithms by name: the trained MNIST DEQ solved with every registered algorithm.

    python examples/solver_comparison.py [--quick] [--out DIR] [--tol 1e-3]

Trains the MNIST DEQ of ``mnist_deq.py`` (``dynamic_ss``), then solves its equilibrium for the
test digits with each name in ``steadysolve.available()`` (the registry is iterated, so new
algorithms appear automatically), with the same tolerance and iteration cap. Prints a markdown
table (NFE, time, accuracy, return code) and writes ``solvers.png`` (bars of NFE, time and
accuracy, and the residual vs iteration of each solver).
"""

from __future__ import annotations

import argparse
import os

from steadysolve.demo import build_model, compare_solvers, format_table, load_mnist, plot_solvers, train


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2,000 train digits, 1 epoch, 100 test digits")
    ap.add_argument("--tol", type=float, default=1e-3, help="absolute tolerance (max norm) for every solver")
    ap.add_argument("--maxiters", type=int, default=100)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=".")
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    data, _ = load_mnist(args.data_dir, *((2000, 300) if args.quick else (None, None)))
    model = build_model()
    train(model, data, epochs=1 if args.quick else 5, batch=32 if args.quick else 64)
    model.eval()
    n = 100 if args.quick else 1000
    rows = compare_solvers(model, data[2][:n], data[3][:n], maxiters=30 if args.quick else args.maxiters, abstol=args.tol)
    print(format_table(rows))
    path = os.path.join(args.out, "solvers.png")
    plot_solvers(rows, path)
    print(f"wrote {path}")
    return rows, path


if __name__ == "__main__":
    main()
