"""Benchmark rows: NewtonKrylov vs scipy.optimize.newton_krylov, Broyden vs scipy.optimize.broyden1.

``rows(repeats)`` returns dicts {"problem", "method", "peer", "nfev", "peer_nfev",
"time", "peer_time"}; times are medians over ``repeats`` runs in this process.
Both sides stop at the same max-norm residual tolerance (SciPy's ``f_tol`` is a
max-norm tolerance; ours is ``abstol`` with the default ``norm="max"``). Our nfev
is ``nf + njvp`` (each finite-difference JVP is one evaluation of F); SciPy's is
counted with a wrapper around F. Run alone: ``python benchmarks/_rows_newton.py``.
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import numpy as np
import scipy.optimize as so

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import steadysolve as ss  # noqa: E402
from helpers import _h_matrix, h_map, laplace_residual  # noqa: E402

F_TOL = 6e-6  # SciPy's default f_tol


def _problems():
    n = 75
    out = []
    for coef, label in ((5.0, "laplace 75x75 (+5 cosh, tutorial)"), (-10.0, "laplace 75x75 (-10 cosh, docstring)")):
        out.append((label, (lambda c: lambda P: laplace_residual(P, (c, n)))(coef), np.zeros((n, n))))
    for m in (100, 1000):
        M = _h_matrix(m)
        out.append((f"H-equation n={m}", (lambda M: lambda u: h_map(u, M) - u)(M), np.ones(m)))
    return out


def _ours(F, u0, alg):
    prob = ss.NonlinearProblem(lambda u, p: F(u), u0)
    t = time.perf_counter()
    sol = ss.solve(prob, alg, abstol=F_TOL, reltol=0.0)
    dt = time.perf_counter() - t
    assert sol.successful, sol
    assert np.max(np.abs(F(sol.u))) <= F_TOL
    return sol.stats.nf + sol.stats.njvp, dt


def _peer(F, u0, method):
    calls = [0]

    def Fc(x):
        calls[0] += 1
        return F(x)

    t = time.perf_counter()
    x = method(Fc, u0, f_tol=F_TOL)
    dt = time.perf_counter() - t
    assert np.max(np.abs(F(x))) <= F_TOL
    return calls[0], dt


def _row(problem, method, peer, F, u0, alg, peer_fn, repeats):
    _ours(F, u0, alg)  # warm-up (imports, caches, the matrix of the H-equation in cache)
    _peer(F, u0, peer_fn)
    ours, theirs = [], []
    for _ in range(repeats):  # interleaved, so that machine load hits both sides alike
        ours.append(_ours(F, u0, alg))
        theirs.append(_peer(F, u0, peer_fn))
    return {"problem": problem, "method": method, "peer": peer,
            "nfev": ours[0][0], "peer_nfev": theirs[0][0],
            "time": statistics.median(t for _, t in ours), "peer_time": statistics.median(t for _, t in theirs)}


def rows(repeats: int = 3) -> list[dict]:
    out = []
    probs = _problems()
    for label, F, u0 in probs:
        out.append(_row(label, "NewtonKrylov", "scipy newton_krylov", F, u0, ss.NewtonKrylov(),
                        so.newton_krylov, repeats))
    for label, F, u0 in probs:
        if label.startswith("H-equation"):
            out.append(_row(label, "Broyden", "scipy broyden1", F, u0, ss.Broyden(), so.broyden1, repeats))
    return out


if __name__ == "__main__":
    from core_vs_scipy import print_table

    print_table(rows(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
