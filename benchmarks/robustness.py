"""Robustness on the 23 Moré–Garbow–Hillstrom / MINPACK-1 problems × starts x0, 10·x0, 100·x0.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.robustness [--quick] [--json PATH]
        [--abstol 1e-8] [--maxiters 1000] [--time-limit 5]

Runs every algorithm in steadysolve's registry (iterated from ``steadysolve.registry``, so
algorithms added later are picked up), ``ss.solve(prob)`` with the default polyalgorithm
(the ``default`` row; the registry's ``"auto"`` is the same and not run twice), and
``scipy.optimize.root`` with ``hybr``, ``lm``, ``krylov``, ``broyden1`` and ``anderson``, all in
one process. A run is *solved* only if ``max|F(u)| <= 1e-6`` recomputed on the returned point;
a reported success that is not solved is a *false success*; an exception is a *crash*; a run
that exceeds the wall-time limit is stopped (``F`` raises) and counted as a *timeout*.
``--quick`` uses the x0 starts only (23 pairs). The last lines compare the default's median
number of ``F`` evaluations with ``hybr``'s on the pairs both solve.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

from benchmarks._common import Counted, print_table, single_thread, write_results

single_thread()

import numpy as np  # noqa: E402
import scipy.optimize as so  # noqa: E402

from benchmarks.problems import mgh  # noqa: E402
import steadysolve as ss  # noqa: E402
from steadysolve import registry  # noqa: E402

SOLVED_TOL = 1e-6
SCIPY_METHODS = ("hybr", "lm", "krylov", "broyden1", "anderson")
COLUMNS = [("method", "method", "s"), ("solved", "solved", "s"), ("false", "false succ", "d"),
           ("crash", "crashes", "d"), ("timeout", "timeouts", "d"), ("ms", "median ms", ".2f"),
           ("nfev", "median nfev", ".0f")]


class _Timeout(Exception):
    pass


class _Limited(Counted):
    """Counts calls and raises ``_Timeout`` once the wall-time budget is spent."""

    def __init__(self, f, limit):
        super().__init__(f)
        self.deadline = time.perf_counter() + limit

    def __call__(self, *a, **k):
        if time.perf_counter() > self.deadline:
            raise _Timeout
        return super().__call__(*a, **k)


def _ours(alg, abstol, maxiters):
    def run(F, x0):
        prob = ss.NonlinearProblem(lambda u, p: F(u), x0)
        sol = ss.solve(prob, alg, abstol=abstol, maxiters=maxiters) if alg is not None else \
            ss.solve(prob, abstol=abstol, maxiters=maxiters)
        return np.asarray(sol.u, dtype=np.float64), bool(sol.successful)
    return run


def _scipy(method, abstol, maxiters):
    def run(F, x0):
        if method == "hybr":
            opts = {"xtol": 1e-12, "maxfev": 100 * maxiters}
        elif method == "lm":
            opts = {"xtol": 1e-12, "ftol": 1e-12, "maxiter": 100 * maxiters}
        else:
            opts = {"fatol": abstol, "maxiter": maxiters}
        r = so.root(F, x0, method=method, options=opts)
        return np.asarray(r.x, dtype=np.float64).reshape(x0.shape), bool(r.success)
    return run


def methods(abstol, maxiters):
    # "auto" is the default: run once, as the "default" row (ss.solve(prob) with no algorithm)
    out = [(name, "steadysolve", _ours(name, abstol, maxiters)) for name in registry.available() if name != "auto"]
    out.append(("default", "steadysolve", _ours(None, abstol, maxiters)))
    out += [(f"scipy:{m}", "scipy", _scipy(m, abstol, maxiters)) for m in SCIPY_METHODS]
    return out


def run_one(runner, prob, x0, limit):
    F = _Limited(prob.F, limit)
    t0 = time.perf_counter()
    status, reported = "fail", False
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            u, reported = runner(F, x0.copy())
            res = float(np.max(np.abs(prob.F(u)))) if u.shape == x0.shape else np.inf
        solved = bool(np.isfinite(res) and res <= SOLVED_TOL)
        status = "solved" if solved else ("false" if reported else "fail")
    except _Timeout:
        status, res = "timeout", np.inf
    except Exception as exc:  # noqa: BLE001 - a crash is a result here
        status, res = "crash", np.inf
        run_one.last_crash = f"{type(exc).__name__}: {exc}"[:200]
    return {"status": status, "reported": reported, "resid": res, "time": time.perf_counter() - t0, "nfev": F.n}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="x0 starts only (23 pairs)")
    ap.add_argument("--json", default=None, help="merge results into this JSON file")
    ap.add_argument("--abstol", type=float, default=1e-8)
    ap.add_argument("--maxiters", type=int, default=1000)
    ap.add_argument("--time-limit", type=float, default=5.0, help="wall seconds per run")
    ap.add_argument("--only", default=None, help="comma-separated method names to run")
    args = ap.parse_args()

    scales = (1.0,) if args.quick else mgh.SCALES
    pairs = list(mgh.pairs(scales))
    npairs = len(pairs)
    meths = methods(args.abstol, args.maxiters)
    if args.only:
        keep = set(args.only.split(","))
        meths = [m for m in meths if m[0] in keep]
    results = {}
    crashes = {}
    for name, lib, runner in meths:
        recs = []
        for prob, scale, x0 in pairs:
            run_one.last_crash = None
            r = run_one(runner, prob, x0, args.time_limit)
            r.update(problem=prob.name, scale=scale)
            if r["status"] == "crash":
                crashes.setdefault(name, []).append(f"{prob.name}@{scale:g}: {run_one.last_crash}")
            recs.append(r)
        results[name] = (lib, recs)

    rows = []
    for name, (lib, recs) in results.items():
        ok = [r for r in recs if r["status"] == "solved"]
        rows.append({"method": name, "library": lib, "solved": f"{len(ok)}/{npairs}", "nsolved": len(ok),
                     "false": sum(r["status"] == "false" for r in recs),
                     "crash": sum(r["status"] == "crash" for r in recs),
                     "timeout": sum(r["status"] == "timeout" for r in recs),
                     "ms": 1e3 * statistics.median(r["time"] for r in recs),
                     "nfev": statistics.median(r["nfev"] for r in recs)})
    print_table(rows, COLUMNS, title=f"MGH robustness: {npairs} pairs, abstol {args.abstol:g}, "
                                       f"maxiters {args.maxiters}, solved = max|F| <= {SOLVED_TOL:g}")

    def solved_by(lib):
        return {(r["problem"], r["scale"]) for _, (lb, recs) in results.items() if lb == lib
                for r in recs if r["status"] == "solved"}
    ours, theirs = solved_by("steadysolve"), solved_by("scipy")
    print(f"\npairs solved by any steadysolve method: {len(ours)}/{npairs}")
    print(f"pairs solved by any SciPy method:       {len(theirs)}/{npairs}")
    print(f"pairs solved by both libraries together: {len(ours | theirs)}/{npairs}  "
          f"(by both: {len(ours & theirs)}, only steadysolve: {len(ours - theirs)}, only SciPy: {len(theirs - ours)})")
    unsolved = sorted({(p.name, s) for p, s, _ in pairs} - ours - theirs)
    if unsolved:
        print("solved by nobody: " + ", ".join(f"{p}@{s:g}" for p, s in unsolved))
    if "default" in results and "scipy:hybr" in results:
        both = [(a["nfev"], b["nfev"], a["time"], b["time"]) for a, b in zip(results["default"][1], results["scipy:hybr"][1])
                if a["status"] == "solved" and b["status"] == "solved"]
        if both:
            print(f"on the {len(both)} pairs default and scipy:hybr both solve: median nfev "
                  f"{statistics.median(x[0] for x in both):.1f} (default) vs {statistics.median(x[1] for x in both):.1f} "
                  f"(hybr); median time ratio default/hybr {statistics.median(x[2] / x[3] for x in both):.1f}")
    for name, msgs in crashes.items():
        print(f"crashes of {name}: " + "; ".join(msgs[:3]) + (" ..." if len(msgs) > 3 else ""))
    if args.json:
        write_results(args.json, "robustness" + ("_quick" if args.quick else ""), rows,
                      {"runs": {n: recs for n, (_, recs) in results.items()},
                       "any_steadysolve": len(ours), "any_scipy": len(theirs), "union": len(ours | theirs)})


if __name__ == "__main__":
    main()
