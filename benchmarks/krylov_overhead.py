"""Newton-Krylov's own time per Krylov step against one evaluation of the residual (issue 28, item 3).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.krylov_overhead [--N 128] [--repeats 3] [--profile] [--cpu]

The 2-D Brusselator (``problems/bruss.py``, ``n = 2 N^2``; N = 128: 32,768 unknowns) solved by the default
``NewtonKrylov()`` on one eager NumPy system, with every call of ``F`` timed. The solver's own time is the
wall time of the solve minus the time inside ``F`` (the finite-difference JVPs are calls of ``F``); per
Krylov step it is that divided by the Krylov steps (``nlinear``), and the target ratio is ``<= 1``
against ``t_F``, the median time of one evaluation of ``F`` at the start. ``--profile`` prints the
``cProfile`` lines of the solve (own time per function, the top 15). ``--cpu`` times everything with the
process's CPU time (``time.process_time``) instead of wall time: on a shared, loaded machine the wall time
of a memory-bound solve absorbs the time the process waits for a core.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time

from benchmarks._common import print_table, single_thread, write_results

single_thread()

import numpy as np  # noqa: E402
from benchmarks.problems import bruss  # noqa: E402

import steadysolve as ss  # noqa: E402


CLOCK = [time.perf_counter]  # --cpu: time.process_time


class TimedF:
    """``F`` with its calls counted and their wall time summed."""

    def __init__(self, F):
        self.F, self.n, self.t = F, 0, 0.0

    def __call__(self, u, p):
        clock = CLOCK[0]
        t0 = clock()
        out = self.F(u, p)
        self.t += clock() - t0
        self.n += 1
        return out


def t_eval(N, reps=200):
    F, u0, p = bruss.problem(N)
    clock = CLOCK[0]
    if clock is time.process_time:  # a coarse clock on some systems: the mean over the repetitions
        t0 = clock()
        for _ in range(reps):
            F(u0, p)
        return (clock() - t0) / reps
    ts = []
    for _ in range(reps):
        t0 = clock()
        F(u0, p)
        ts.append(clock() - t0)
    return statistics.median(ts)


#: (row name, algorithm, maxiters): the default (its Krylov budget grows to 4 x 30 steps on this problem: at
#: N = 128 as restart cycles of 32, see ``NewtonKrylov.max_restart``) and the fixed GMRES(30) cycle the issue
#: measured (capped: with a fixed budget Newton crawls for hundreds of iterations, and the per-step split is
#: what this measures)
ALGS = [("NewtonKrylov()", lambda: ss.NewtonKrylov(), 200),
        ("NewtonKrylov(krylov_growth=1), 40 iterations", lambda: ss.NewtonKrylov(krylov_growth=1), 40)]


def one(N, alg=None, profile=False, maxiters=200):
    F, u0, p = bruss.problem(N)
    Ft = TimedF(F)
    prob = ss.NonlinearProblem(Ft, u0, p)
    alg = alg or ss.NewtonKrylov()
    prof = cProfile.Profile() if profile else None
    t0 = CLOCK[0]()
    if prof:
        prof.enable()
    sol = ss.solve(prob, alg, abstol=1e-8, maxiters=maxiters)
    if prof:
        prof.disable()
    total = CLOCK[0]() - t0
    text = None
    if prof:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
        text = s.getvalue()
    return dict(total=total, in_f=Ft.t, nf=Ft.n, nlinear=int(sol.stats["nlinear"]), niter=int(sol.stats["niter"]),
                ok=sol.successful), text


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--N", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="time with the process's CPU time, not wall time")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.cpu:
        CLOCK[0] = time.process_time
    rows = []
    for _ in range(args.repeats):  # interleaved: t_F and the solves under the same load
        for name, make, cap in ALGS:
            tf = t_eval(args.N)
            r, _ = one(args.N, make(), maxiters=cap)
            own = (r["total"] - r["in_f"]) / r["nlinear"]
            rows.append(dict(case=f"N={args.N} | {name}", t_f_ms=1e3 * tf, total_s=r["total"],
                             in_f_s=r["in_f"], nf=r["nf"], nlinear=r["nlinear"], niter=r["niter"], own_ms=1e3 * own,
                             f_per_step_ms=1e3 * r["in_f"] / r["nlinear"], ratio=own / tf, target=1.0))
    print_table(rows, [("case", "case", "s"), ("niter", "Newton", "d"), ("nlinear", "Krylov steps", "d"),
                       ("nf", "F calls", "d"), ("total_s", "solve [s]", ".2f"), ("in_f_s", "in F [s]", ".2f"),
                       ("f_per_step_ms", "F per step [ms]", ".3f"), ("own_ms", "own per step [ms]", ".3f"),
                       ("t_f_ms", "t_F [ms]", ".3f"), ("ratio", "own / t_F", ".2f")],
                "Newton-Krylov on one NumPy system: the solver's own time per Krylov step (target <= 1.0 t_F; "
                + ("CPU time)" if args.cpu else "wall time)"))
    if args.profile:
        print(one(args.N, profile=True)[1])
    if args.json:
        write_results(args.json, "krylov_overhead", rows)


if __name__ == "__main__":
    main()
