"""steadysolve's core algorithms against SciPy, same process, same tolerance.

    python benchmarks/core_vs_scipy.py [--repeats 5] [--quick]

Every row solves one problem with one steadysolve algorithm and its SciPy peer
(or a plain Python loop), counts function evaluations with a wrapper, and prints
the median wall time of several repeats and the ratio ours / peer (< 1 is
faster). Tolerance: the max-norm of the residual (SciPy's ``f_tol``).
Rows for Newton-Krylov and Broyden come from ``_rows_newton.py`` when present.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

import steadysolve as ss  # noqa: E402
from helpers import _h_matrix, h_map, laplace_residual  # noqa: E402


class Counted:
    """Wraps a function and counts its calls."""

    def __init__(self, f):
        self.f = f
        self.n = 0

    def __call__(self, *a):
        self.n += 1
        return self.f(*a)


def timed(run, repeats):
    """Median wall time of ``run()`` over ``repeats`` calls (after one warm-up), and its last result."""
    out = run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _ours(make_prob, alg, tol, maxiters=5000):
    def run():
        prob = make_prob()
        sol = ss.solve(prob, alg, abstol=tol, reltol=0.0, maxiters=maxiters)
        return sol, prob.f.n
    return run


def row_h_anderson(n, repeats):
    M = _h_matrix(n, 0.9)
    F = lambda u: h_map(u, M) - u  # noqa: E731
    tol = 1e-10

    def make():
        return ss.NonlinearProblem(Counted(lambda u, p: F(u)), np.ones(n))

    t_ours, (sol, nf) = timed(_ours(make, ss.Anderson(memory=5), tol), repeats)

    def peer():
        from scipy.optimize import anderson
        cf = Counted(F)
        x = anderson(cf, np.ones(n), M=5, f_tol=tol)
        return x, cf.n

    t_peer, (x, nf_peer) = timed(peer, repeats)
    assert sol.successful and np.max(np.abs(F(x))) <= tol
    return dict(problem=f"H-equation n={n}", method="Anderson(m=5)", peer="scipy anderson M=5",
                nfev=nf, peer_nfev=nf_peer, time=t_ours, peer_time=t_peer)


def row_h_fixed_point(n, repeats):
    M = _h_matrix(n, 0.9)
    tol = 1e-10

    def make():
        return ss.FixedPointProblem(Counted(lambda u, p: h_map(u, M)), np.ones(n))

    t_ours, (sol, nf) = timed(_ours(make, ss.FixedPointIteration(), tol), repeats)

    def peer():  # the loop a user writes by hand
        g = Counted(lambda u: h_map(u, M))
        u = np.ones(n)
        gu = g(u)
        while np.max(np.abs(gu - u)) > tol:
            u = gu
            gu = g(u)
        return u, g.n

    t_peer, (u, nf_peer) = timed(peer, repeats)
    assert sol.successful
    return dict(problem=f"H-equation n={n}", method="FixedPointIteration", peer="plain loop u = g(u)",
                nfev=nf, peer_nfev=nf_peer, time=t_ours, peer_time=t_peer)


def row_laplace_anderson(coef, repeats, n=75):
    F = lambda P: laplace_residual(P, (coef, n))  # noqa: E731
    tol = 1e-6

    def make():
        return ss.NonlinearProblem(Counted(lambda P, p: F(P)), np.zeros((n, n)))

    t_ours, (sol, nf) = timed(_ours(make, ss.Anderson(memory=10), tol), repeats)

    def peer():
        from scipy.optimize import anderson
        cf = Counted(F)
        x = anderson(cf, np.zeros((n, n)), M=10, f_tol=tol, maxiter=5000)
        return x, cf.n

    t_peer, (x, nf_peer) = timed(peer, repeats)
    assert sol.successful
    variant = "docstring -10 cosh" if coef < 0 else "tutorial +5 cosh"
    return dict(problem=f"Laplace 75x75 ({variant})", method="Anderson(m=10)", peer="scipy anderson M=10",
                nfev=nf, peer_nfev=nf_peer, time=t_ours, peer_time=t_peer)


def core_rows(repeats, quick=False):
    rows = [row_h_anderson(100, repeats), row_h_fixed_point(100, repeats)]
    if not quick:
        rows += [row_h_anderson(1000, repeats), row_h_fixed_point(1000, repeats)]
    rows.append(row_laplace_anderson(-10.0, max(1, repeats // 2)))
    return rows


def print_table(rows):
    head = f"{'problem':34s} {'ours':22s} {'peer':24s} {'nfev':>6s} {'peer':>6s} {'ms':>9s} {'peer ms':>9s} {'ratio':>6s}"
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = r["time"] / r["peer_time"]
        print(f"{r['problem']:34s} {r['method']:22s} {r['peer']:24s} {r['nfev']:6d} {r['peer_nfev']:6d} "
              f"{1e3 * r['time']:9.2f} {1e3 * r['peer_time']:9.2f} {ratio:6.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="skip the n=1000 rows")
    args = ap.parse_args(argv)
    rows = core_rows(args.repeats, args.quick)
    try:
        import _rows_newton
    except ImportError:
        _rows_newton = None
    if _rows_newton is not None:
        rows += _rows_newton.rows(args.repeats)
    print_table(rows)


if __name__ == "__main__":
    main()
