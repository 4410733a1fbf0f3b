"""The small-system engine's twins against the generic algorithms they stand in for, on ONE NumPy system.

    python -m benchmarks.small_engine [--repeats 15] [--json PATH]

``solve()`` runs one eager float64 NumPy system through the twin of an algorithm in
``steadysolve._small`` where it has one; the same solve with the engine switched off
(``small_twin`` -> identity) runs the generic ``step``. A twin stays only where it pays: this
script measures the best time per solve both ways on small Moré–Garbow–Hillstrom problems (2–4
unknowns, ``abstol=1e-8``), interleaved in one process. Ratio = twin / generic (below 1: the twin
is faster); the iterations must agree (the parity suite, ``tests/test_small_engine.py``, checks
counts and iterates on all 69 pairs).
"""

from __future__ import annotations

import argparse
import importlib
import time
import warnings

from benchmarks._common import print_table, single_thread, write_results  # noqa: E402

single_thread()

import numpy as np  # noqa: E402
from benchmarks.problems import mgh  # noqa: E402

import steadysolve as ss  # noqa: E402

_solve_module = importlib.import_module("steadysolve.solve")
PROBLEMS = ["rosenbrock", "powell_badly_scaled", "helical_valley", "powell_singular", "wood"]
ALGS = {"newton": ss.NewtonRaphson(), "newton_krylov": ss.NewtonKrylov(), "trust_region": ss.TrustRegion(),
        "levenberg_marquardt": ss.LevenbergMarquardt(), "broyden": ss.Broyden()}
COLUMNS = [("algorithm", "algorithm", "s"), ("problem", "problem", "s"), ("niter", "niter", "d"),
           ("twin_ms", "twin ms", ".3f"), ("generic_ms", "generic ms", ".3f"), ("ratio", "twin / generic", ".2f")]


def best_times(prob, alg, repeats):
    """Best wall time of the twin and of the generic solve (interleaved), and the iterations of each."""
    real = _solve_module.small_twin
    ways = {"twin": real, "generic": lambda a, ctx: a}
    best, niter = {k: np.inf for k in ways}, {}
    for _ in range(repeats):
        for key, choose in ways.items():
            _solve_module.small_twin = choose
            try:
                t0 = time.perf_counter()
                sol = ss.solve(prob, alg, abstol=1e-8)
                best[key] = min(best[key], time.perf_counter() - t0)
            finally:
                _solve_module.small_twin = real
            niter[key] = int(sol.stats.niter)
    return best, niter


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        for name, alg in ALGS.items():
            for pname in PROBLEMS:
                p = mgh.by_name(pname)
                prob = ss.NonlinearProblem(lambda u, _, F=p.F: F(u), p.x0.copy())
                best, niter = best_times(prob, alg, args.repeats)
                assert niter["twin"] == niter["generic"], (name, pname, niter)
                rows.append({"algorithm": name, "problem": f"{pname} ({p.n})", "niter": niter["twin"],
                             "twin_ms": 1e3 * best["twin"], "generic_ms": 1e3 * best["generic"],
                             "ratio": best["twin"] / best["generic"]})
    print_table(rows, COLUMNS, title="one NumPy system: the small-system twin vs the generic step (best of "
                                     f"{args.repeats})")
    if args.json:
        write_results(args.json, "small_engine", rows)


if __name__ == "__main__":
    main()
