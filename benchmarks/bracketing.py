"""Batched bracketing: N brackets in one call against a loop of ``scipy.optimize.brentq`` and against
``scipy.optimize.elementwise.find_root`` (SciPy >= 1.15), on the same brackets.

Six families of N scalar problems each (parameters or brackets drawn at random, seed fixed):
Kepler's equation ``E - e sin E - M`` over (e, M), and five Alefeld-Potra-Shi functions
(``benchmarks/_aps.py``). Every solver gets the same tolerances, brentq's defaults:
``xtol = abstol = 2e-12`` and ``rtol = reltol = 4 eps`` (find_root's ``xatol`` / ``xrtol``; its
``fatol`` / ``frtol`` left at their defaults, tiny and 0). Solvers:

* ``brentq loop``: one ``brentq`` call per bracket, the function on Python floats through ``math``
  (the cheapest way to call it); the reference of the roots;
* ``find_root``: one call on the NumPy arrays, the same function on arrays;
* steadysolve on NumPy: ``ITP`` (the default) and ``Brent``; and, for information, ITP on PyTorch
  (CPU) and on JAX (``jax.jit``, compiled outside the timing; the compile time is a column).

Columns: wall time (median of ``--repeats``, the loop once), ``vs loop`` = time / loop time (issue
31: ITP <= 0.02, i.e. >= 50x faster), ``vs find_root`` = time / find_root time (issue 31: <= 1),
the same two ratios in CPU time of the process (NumPy and the SciPy rows: one thread each; less
sensitive to a loaded machine than wall time), the largest per-element iteration count, the
elements reported solved, and ``agree``: those within ``2 (2e-12 + 4 eps |x|)`` of brentq's root
(both are within tolerance of the one root).

    python -m benchmarks.bracketing [--n 100000] [--quick] [--repeats 5] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import time

from benchmarks._common import print_table, single_thread, write_results

single_thread()

import numpy as np  # noqa: E402

from benchmarks.problems import aps as _aps  # noqa: E402

XTOL = 2e-12
RTOL = 4 * np.finfo(float).eps
TARGET_LOOP = 1 / 50
TARGET_FIND_ROOT = 1.0


def timed(run, repeats, warmup=1):
    """Median wall and CPU (process) time of ``run()`` over ``repeats`` calls, and its last result."""
    import statistics

    out = None
    for _ in range(warmup):
        out = run()
    walls, cpus = [], []
    for _ in range(max(1, repeats)):
        w0, c0 = time.perf_counter(), time.process_time()
        out = run()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus), out


def brentq_loop(fam, lo, hi, p):
    from scipy.optimize import brentq

    f = fam.on_floats()
    cols = [list(map(float, a)) for a in p]
    rows = list(zip(*cols)) if cols else [()] * len(lo)
    t, c, x = timed(lambda: [brentq(f, a, b, args=r, xtol=XTOL, rtol=RTOL)
                             for a, b, r in zip(lo.tolist(), hi.tolist(), rows)], 1, 0)
    return t, c, np.asarray(x), np.ones(len(lo), dtype=bool), None


def find_root(fam, lo, hi, p, repeats):
    from scipy.optimize.elementwise import find_root as fr

    fn = fam.fn

    def f(x, *a):
        return fn(np, x, a)

    t, c, res = timed(lambda: fr(f, (lo, hi), args=p, tolerances=dict(xatol=XTOL, xrtol=RTOL)), repeats, 1)
    return t, c, res.x, res.success, int(res.nit.max())


def ours_numpy(fam, lo, hi, p, repeats, method):
    import steadysolve as ss

    prob = ss.IntervalNonlinearProblem(fam.on_arrays(), (lo, hi), p)
    t, c, sol = timed(lambda: ss.solve(prob, method, abstol=XTOL, reltol=RTOL), repeats, 1)
    return t, c, sol.u, sol.retcode_array == 0, int(sol.stats.niter)


def ours_torch(fam, lo, hi, p, repeats):
    import torch

    import steadysolve as ss

    torch.set_num_threads(1)
    tl, th, tp = torch.from_numpy(lo), torch.from_numpy(hi), tuple(torch.from_numpy(a) for a in p)
    prob = ss.IntervalNonlinearProblem(fam.on_arrays(), (tl, th), tp)
    t, _, sol = timed(lambda: ss.solve(prob, "itp", abstol=XTOL, reltol=RTOL), repeats, 1)
    return t, None, sol.u.numpy(), sol.retcode_array.numpy() == 0, int(sol.stats.niter)


def ours_jax(fam, lo, hi, p, repeats):
    import jax
    import jax.numpy as jnp

    import steadysolve as ss

    jax.config.update("jax_enable_x64", True)
    f = fam.on_arrays()

    @jax.jit
    def run(lo, hi, p):
        sol = ss.solve(ss.IntervalNonlinearProblem(f, (lo, hi), p), "itp", abstol=XTOL, reltol=RTOL)
        return sol.u, sol.retcode_array, sol.stats.niter

    args = (jnp.asarray(lo), jnp.asarray(hi), tuple(jnp.asarray(a) for a in p))
    t0 = time.perf_counter()
    jax.block_until_ready(run(*args))
    first = time.perf_counter() - t0
    t, _, (u, rc, it) = timed(lambda: jax.block_until_ready(run(*args)), repeats, 0)
    ours_jax.compile_s = max(first - t, 0.0)
    return t, None, np.asarray(u), np.asarray(rc) == 0, int(it)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="brackets per family (default 100,000; 20,000 with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="20,000 brackets, 3 families (kepler, aps06, aps11), NumPy and JAX, 3 repeats")
    ap.add_argument("--repeats", type=int, default=None, help="timed repeats of the vectorised solvers (default 5)")
    ap.add_argument("--families", default=None, help="comma-separated name prefixes (default: all six)")
    ap.add_argument("--backends", default="numpy,torch,jax", help="steadysolve backends to time")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    count = args.n if args.n is not None else (20_000 if args.quick else 100_000)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    names = args.families or ("kepler,aps06,aps11" if args.quick else None)
    fams = _aps.FAMILIES if not names else [_aps.by_name(s.strip()) for s in names.split(",")]
    backends = (args.backends if not args.quick or args.backends != "numpy,torch,jax" else "numpy,jax").split(",")
    rows = []
    for k, fam in enumerate(fams):
        lo, hi, p = fam.sample(np.random.default_rng(1000 + k), count)
        t_loop, c_loop, ref, _, _ = brentq_loop(fam, lo, hi, p)
        close = 2 * (XTOL + RTOL * np.abs(ref))
        t_fr, c_fr, x_fr, ok_fr, it_fr = find_root(fam, lo, hi, p, repeats)
        runs = [("brentq loop", lambda: (t_loop, c_loop, ref, np.ones(count, bool), None)),
                ("find_root", lambda: (t_fr, c_fr, x_fr, ok_fr, it_fr))]
        if "numpy" in backends:
            runs += [("steadysolve ITP (numpy)", lambda: ours_numpy(fam, lo, hi, p, repeats, "itp")),
                     ("steadysolve Brent (numpy)", lambda: ours_numpy(fam, lo, hi, p, repeats, "brent"))]
        if "torch" in backends:
            runs.append(("steadysolve ITP (torch)", lambda: ours_torch(fam, lo, hi, p, repeats)))
        if "jax" in backends:
            runs.append(("steadysolve ITP (jax jit)", lambda: ours_jax(fam, lo, hi, p, repeats)))
        for method, run in runs:
            ours_jax.compile_s = None
            try:
                t, c, x, ok, it = run()
            except ImportError as e:
                print(f"skipping {method}: {e}")
                continue
            agree = np.abs(np.asarray(x, dtype=np.float64) - ref) <= close
            numpy_ours = method.startswith("steadysolve") and "(numpy)" in method
            row = {"problem": fam.name, "method": method, "time": t, "vs_loop": t / t_loop, "vs_fr": t / t_fr,
                   "cpu_vs_loop": None if c is None else c / c_loop, "cpu_vs_fr": None if c is None else c / c_fr,
                   "iters": it, "solved": int(np.sum(ok)), "agree": int(np.sum(agree & ok)),
                   "compile": ours_jax.compile_s}
            rows.append(row)
            print(f"  {fam.name:32s} {method:27s} {t * 1e3:9.1f} ms", flush=True)
            if numpy_ours:  # the two targets, as rows run_all.py / report.py understand
                row["case"] = f"{fam.name} | {method} vs brentq loop"
                row.update(peer="scipy brentq loop", peer_time=t_loop, ratio=t / t_loop, target=TARGET_LOOP)
                rows.append({"problem": fam.name, "method": method, "case": f"{fam.name} | {method} vs find_root",
                             "time": t, "peer": "scipy find_root", "peer_time": t_fr, "ratio": t / t_fr,
                             "cpu_ratio": c / c_fr, "target": TARGET_FIND_ROOT, "table": False})
    shown = [r for r in rows if r.get("table", True)]
    for r in shown:
        r["time_ms"] = r["time"] * 1e3
    print_table(shown, [("problem", "family", ""), ("method", "solver", ""), ("time_ms", "time [ms]", ".1f"),
                        ("vs_loop", "vs loop", ".4f"), ("vs_fr", "vs find_root", ".2f"),
                        ("cpu_vs_loop", "cpu vs loop", ".4f"), ("cpu_vs_fr", "cpu vs find_root", ".2f"), ("iters", "max iters", ""),
                        ("solved", f"solved/{count}", "d"), ("agree", "agree", "d"), ("compile", "jit compile [s]", ".2f")],
                title=f"{count} brackets per family; xtol = abstol = {XTOL:g}, rtol = reltol = 4 eps; "
                      f"targets: ITP (numpy) vs loop <= {TARGET_LOOP:g}, vs find_root <= {TARGET_FIND_ROOT:g}")
    if args.json:
        write_results(args.json, "bracketing", [r for r in rows if "target" in r],
                      {"count": count, "xtol": XTOL, "rtol": RTOL})
    return rows


if __name__ == "__main__":
    main()
