"""Sparse nonlinear least squares: a regularised 1-D fit (m = 2n residuals) at n = 1000, 2000, 5000.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.least_squares_sparse [--repeats 3] [--sizes 1000 2000 5000]

Residuals ``u + 0.1 u^3 - y`` (n), ``0.5 (u_{j+1} - u_j)`` (n - 1) and ``0.5 (u_0 - y_0)`` (1): a nonzero
residual at the minimum. Solvers, all from ``u = 0`` with the Jacobian pattern given (``sparsity=`` /
``jac_sparsity=``, forward differences by column colouring: 2 colours here): steadysolve's default
(``LevenbergMarquardt``, the damped normal equations factorised), ``LevenbergMarquardt(sparse_solver="lsmr")``
and ``GaussNewton``; ``scipy.optimize.least_squares(method="trf", jac_sparsity=pattern)`` (its sparse
path: LSMR inside a reflective trust region). Each row gives the median wall time (interleaved repeats),
the ratio to SciPy's, and the largest difference of the answer from SciPy's (tight tolerances on both).
"""

from __future__ import annotations

import argparse
import time

from benchmarks._common import print_table, single_thread

single_thread()

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import steadysolve as ss  # noqa: E402


def problem(n):
    t = np.linspace(0.0, 1.0, n)
    y = np.sin(2 * np.pi * t) + 0.1 * np.cos(17 * t)
    D = sp.diags([-np.ones(n - 1), np.ones(n - 1)], [0, 1], shape=(n - 1, n), format="csr")
    e0 = sp.csr_matrix(([1.0], ([0], [0])), shape=(1, n))

    def f(u, p=None):
        return np.concatenate([u + 0.1 * u ** 3 - y, 0.5 * (D @ u), 0.5 * (u[:1] - y[:1])])

    return f, (sp.vstack([sp.identity(n), D, e0]).tocsr() != 0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", type=int, nargs="*", default=[1000, 2000, 5000])
    args = ap.parse_args(argv)
    rows = []
    for n in args.sizes:
        f, P = problem(n)
        u0 = np.zeros(n)
        runs = {
            "scipy trf": lambda: least_squares(f, u0, jac_sparsity=P, method="trf", ftol=1e-12, xtol=1e-12,
                                               gtol=1e-12).x,
            "ss default (LM normal)": lambda: ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, sparsity=P)).u,
            "ss LM lsmr": lambda: ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, sparsity=P),
                                           ss.LevenbergMarquardt(sparse_solver="lsmr")).u,
            "ss GaussNewton": lambda: ss.solve(ss.NonlinearLeastSquaresProblem(f, u0, sparsity=P),
                                               ss.GaussNewton()).u,
        }
        times = {k: [] for k in runs}
        answers = {}
        for _ in range(args.repeats):
            for k, run in runs.items():
                t0 = time.perf_counter()
                answers[k] = run()
                times[k].append(time.perf_counter() - t0)
        ref = float(np.median(times["scipy trf"]))
        for k in runs:
            med = float(np.median(times[k]))
            rows.append(dict(n=n, solver=k, ms=1e3 * med, ratio=med / ref,
                             diff=float(np.abs(answers[k] - answers["scipy trf"]).max())))
    print_table(rows, [("solver", "solver", "s"), ("n", "n", "d"), ("ms", "ms", ".1f"),
                       ("ratio", "/ scipy", ".2f"), ("diff", "max |u - u_scipy|", ".1e")],
                title="Sparse least squares (m = 2n), pattern given, forward differences by colouring")


if __name__ == "__main__":
    main()
