"""Swap algorithms by name: the trained MNIST DEQ solved with every registered algorithm.

    python examples/solver_comparison.py [--quick] [--out DIR] [--tol 1e-3] [--checkpoint FILE]

Trains the MNIST DEQ of ``mnist_deq.py`` (``dynamic_ss``; or loads it from ``--checkpoint``),
then solves its equilibrium for the test digits with each name in ``steadysolve.available()``
(the registry is iterated, so new algorithms appear automatically), with the same tolerance and
iteration cap, in the model's float32 (``--dtype float64`` for a float64 copy). Prints a markdown
table (NFE, time, accuracy, return code) and writes
``solvers.png`` (bars of NFE, time and accuracy, and the residual vs iteration of each solver).
"""

from __future__ import annotations

from _common import out_path, parse, parser, trained

from steadysolve.demo import compare_solvers, format_table, plot_solvers
from steadysolve.demo.cli import finite_real, int_at_least


def main(argv=None):
    ap = parser(__doc__)
    ap.add_argument("--tol", type=finite_real(True), default=1e-3, help="absolute tolerance (max norm) for every solver")
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                    help="precision of the comparison (default the model's float32)")
    ap.add_argument("--maxiters", type=int_at_least(1), default=100, help="iteration cap for every solver (30 with --quick)")
    args = parse(ap, argv, mnist=True)
    model, data, _, _ = trained(args)
    n = 100 if args.quick else 1000
    rows = compare_solvers(model, data[2][:n], data[3][:n], maxiters=30 if args.quick else args.maxiters,
                           abstol=args.tol, dtype=args.dtype)
    print(format_table(rows))
    path = out_path(args, "solvers.png")
    plot_solvers(rows, path)
    print(f"wrote {path}")
    return rows, path


if __name__ == "__main__":
    main()
