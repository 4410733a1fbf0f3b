"""Bounded least squares: steadysolve's projected LevenbergMarquardt / TrustRegion against SciPy's
``least_squares(method="trf", bounds=...)`` on small bounded fits, from the same start, NumPy,
finite-difference Jacobians on both sides.

Per problem: the objective ``0.5 ||F||^2`` each reaches (agreement: ours within ``1e-8`` relative of
SciPy's, or lower), the evaluations of ``f`` (ours: ``stats.nf``, Jacobian columns included; SciPy's
``nfev`` plus ``n`` per Jacobian, ``njev``), and the median time with the ratio ours / SciPy measured
in the same run. ``python -m benchmarks.bounds`` (``OPENBLAS_NUM_THREADS=1``).
"""

from __future__ import annotations

from benchmarks._common import print_table, ratio_rows, single_thread, timed

single_thread()

import numpy as np  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

import steadysolve as ss  # noqa: E402

T = np.linspace(0.0, 3.0, 20)
Y = 2.0 * np.exp(-1.3 * T) + 0.05 * np.sin(7.0 * T)
T2 = np.linspace(0.0, 10.0, 40)
Y2 = 3.0 * np.exp(-0.4 * T2) * np.cos(1.1 * T2) + 0.02 * np.cos(13.0 * T2)


def rosenbrock(u):
    return np.array([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0]])


def decay(u):
    return u[0] * np.exp(-u[1] * T) - Y


def damped_cosine(u):
    return u[0] * np.exp(-u[1] * T2) * np.cos(u[2] * T2) - Y2


def powell_singular(u):
    return np.array([u[0] + 10.0 * u[1], np.sqrt(5.0) * (u[2] - u[3]), (u[1] - 2.0 * u[2]) ** 2,
                     np.sqrt(10.0) * (u[0] - u[3]) ** 2])


INF = np.inf
PROBLEMS = [  # (name, f, x0, lb, ub)
    ("rosenbrock x1>=1.5", rosenbrock, [2.0, 2.0], [-INF, 1.5], [INF, INF]),
    ("rosenbrock box", rosenbrock, [-1.2, 1.0], [-1.5, -0.5], [0.9, 2.0]),
    ("decay a<=1.5", decay, [1.0, 2.0], [0.0, 0.0], [1.5, 5.0]),
    ("decay k>=1.5", decay, [1.0, 2.0], [0.0, 1.5], [10.0, 5.0]),
    ("damped cosine", damped_cosine, [1.0, 0.1, 1.0], [0.0, 0.0, 0.0], [2.5, 1.0, 2.0]),
    ("powell singular", powell_singular, [3.0, -1.0, 0.0, 1.0], [0.1, -INF, -INF, 0.5], [INF, INF, INF, INF]),
]


def main() -> None:
    rows = []
    for name, f, x0, lb, ub in PROBLEMS:
        x0, lb, ub = (np.asarray(v, dtype=float) for v in (x0, lb, ub))
        n = x0.size

        def peer():
            return least_squares(f, x0, bounds=(lb, ub), method="trf")

        t_peer, ref = timed(peer, repeats=7)
        peer_obj = float(ref.cost)
        peer_nf = int(ref.nfev) + n * int(ref.njev or 0)
        for alg in ("levenberg_marquardt", "trust_region"):
            prob = ss.NonlinearLeastSquaresProblem(lambda u, p: f(u), x0, lb=lb, ub=ub)
            t, sol = timed(lambda: ss.solve(prob, alg), repeats=7)
            obj = float(sol.stats.objective)
            rows.append(dict(problem=name, alg=alg, code=sol.retcode.name, obj=obj, peer_obj=peer_obj,
                             agree="yes" if obj <= peer_obj * (1 + 1e-8) + 1e-30 else "NO",
                             nf=int(sol.stats.nf), peer_nf=peer_nf, time=t * 1e3, peer_time=t_peer * 1e3))
    ratio_rows(rows)
    print_table(rows, [("problem", "problem", "s"), ("alg", "alg", "s"), ("code", "code", "s"),
                       ("obj", "0.5|F|^2", ".6g"), ("peer_obj", "scipy", ".6g"), ("agree", "agree", "s"),
                       ("nf", "nf", "d"), ("peer_nf", "scipy nf", "d"), ("time", "ms", ".2f"),
                       ("peer_time", "scipy ms", ".2f"), ("ratio", "ratio", ".2f")],
                title="Bounded least squares vs scipy.optimize.least_squares(method='trf')")


if __name__ == "__main__":
    main()
