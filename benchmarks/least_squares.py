"""Nonlinear least squares on the 27 NIST StRD regression problems, from both certified starts (54 fits).

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.least_squares [--repeats 3] [--no-optx] [--only NAME ...]

Solvers: steadysolve's default (``Auto``: ``LevenbergMarquardt`` for least squares),
``LevenbergMarquardt``, ``GaussNewton`` and ``TrustRegion``; ``scipy.optimize.least_squares`` with
``method="trf"`` and ``"lm"``; optimistix's ``LevenbergMarquardt`` (``optx.least_squares``, jitted; timed
after its compilation, which is reported apart). Everyone runs with their default options (optimistix has
no default tolerances: ``rtol = atol = 1e-8``, SciPy's ``ftol`` / ``xtol``; ``max_steps=1000``, our
``maxiters``) and its own default Jacobian: forward differences for steadysolve and SciPy (``"2-point"``),
JAX's AD for optimistix (exact derivatives; its time excludes ``jit``).

A fit *solves* a problem when its parameters agree with NIST's certified values to at least 4
significant digits (``benchmarks.problems.nist.digits``); a *false success* is a fit its solver reports
as successful (steadysolve: ``sol.successful``; SciPy: ``res.success``; optimistix: ``RESULTS.successful``)
that does not. The time of a solver is the sum over the 54 fits of the median wall time per fit
(interleaved repeats); the table prints it per fit (ms) and as a ratio to the faster SciPy method.
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import print_table, single_thread, write_results

single_thread()

import numpy as np  # noqa: E402
import scipy.optimize as so  # noqa: E402
from benchmarks.problems import nist  # noqa: E402

import steadysolve as ss  # noqa: E402

_OURS = {"ss default": None, "ss LM": ss.LevenbergMarquardt(), "ss GN": ss.GaussNewton(),
         "ss TR": ss.TrustRegion()}
_SCIPY = ("trf", "lm")


def _ours(prob, b0, alg):
    def run():
        p = ss.NonlinearLeastSquaresProblem(lambda u, _: prob.residual(u), b0)
        sol = ss.solve(p, alg)
        return sol.u, bool(sol.successful), sol.retcode.name
    return run


def _scipy(prob, b0, method):
    def run():
        res = so.least_squares(prob.residual, b0, method=method)
        return res.x, bool(res.success), f"status {res.status}"
    return run


def _optx_solver():
    """``(make_run, compile_seconds_list)``, or ``None`` without optimistix."""
    try:
        import jax
        import jax.numpy as jnp
        import optimistix as optx
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    solver = optx.LevenbergMarquardt(rtol=1e-8, atol=1e-8)
    compile_s = []

    def make(prob, b0):
        x = jnp.asarray(prob.x)
        y = jnp.asarray(prob.y)
        model = prob.model

        def fn(b, args):
            # the NumPy model on JAX arrays: the formulas only use operators and ufuncs that dispatch
            return _jax_model(prob.name, model, x, b) - y

        @jax.jit
        def fit(b):
            sol = optx.least_squares(fn, solver, b, max_steps=1000, throw=False)
            return sol.value, sol.result == optx.RESULTS.successful

        b = jnp.asarray(b0)
        t = time.perf_counter()
        jax.block_until_ready(fit(b))
        compile_s.append(time.perf_counter() - t)

        def run():
            value, ok = jax.block_until_ready(fit(b))
            return np.asarray(value), bool(ok), "ok" if bool(ok) else "failed"
        return run
    return make, compile_s


def _jax_model(name, model, x, b):
    import jax.numpy as jnp

    # the models are written with np.exp / np.cos / ...; call them with JAX's functions in their place
    glob = model.__globals__
    saved = glob["np"]
    glob["np"] = jnp
    try:
        return model(x, b)
    finally:
        glob["np"] = saved


def _measure(run, repeats):
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-optx", action="store_true", help="skip optimistix (its compilation takes minutes)")
    ap.add_argument("--only", nargs="*", help="problem names (default: all 27)")
    ap.add_argument("--solvers", nargs="*", help="a subset of the solver labels")
    ap.add_argument("--detail", action="store_true", help="print every fit")
    ap.add_argument("--json", default=None, help="merge the summary into this results file")
    args = ap.parse_args(argv)

    solvers = {}
    for label, alg in _OURS.items():
        solvers[label] = lambda prob, b0, alg=alg: _ours(prob, b0, alg)
    for method in _SCIPY:
        solvers[f"scipy {method}"] = lambda prob, b0, method=method: _scipy(prob, b0, method)
    compile_s = []
    if not args.no_optx:
        made = _optx_solver()
        if made is not None:
            solvers["optx LM"], compile_s = made
    if args.solvers:
        solvers = {k: v for k, v in solvers.items() if k in args.solvers}

    stats = {k: {"solved": 0, "false": 0, "time": 0.0, "fits": 0} for k in solvers}
    detail = []
    with np.errstate(all="ignore"):
        for prob, k, b0 in nist.cases():
            if args.only and prob.name not in args.only:
                continue
            runs = {label: make(prob, b0) for label, make in solvers.items()}
            for run in runs.values():  # one warm-up each
                run()
            times = {label: [] for label in runs}
            outs = {}
            for _ in range(args.repeats):  # interleaved: machine load hits every solver alike
                for label, run in runs.items():
                    t = time.perf_counter()
                    outs[label] = run()
                    times[label].append(time.perf_counter() - t)
            row = {"problem": f"{prob.name}/{k}"}
            for label, (b, ok, code) in outs.items():
                dig = nist.digits(b, prob.certified)
                solved = dig >= nist.SOLVED_DIGITS
                st = stats[label]
                st["fits"] += 1
                st["solved"] += solved
                st["false"] += ok and not solved
                st["time"] += statistics.median(times[label])
                row[label] = f"{dig:4.1f}{'' if ok else '!'}{'' if ok or not solved else '?'}" + (
                    " FALSE" if ok and not solved else "")
            detail.append(row)

    if args.detail:
        print_table(detail, [("problem", "problem", "s")] + [(k, k, "s") for k in solvers],
                    title="digits per fit ('!': the solver reported failure; FALSE: a false success)")
    peers = [stats[f"scipy {m}"]["time"] for m in _SCIPY if f"scipy {m}" in stats]
    best = min(peers) if peers else None
    rows = []
    for label, st in stats.items():
        n = max(st["fits"], 1)
        rows.append({"solver": label, "solved": st["solved"], "fits": st["fits"], "false": st["false"],
                     "ms": 1e3 * st["time"] / n, "ratio": (st["time"] / best) if best else None})
    title = "NIST StRD nonlinear regression: solved (>= 4 digits), false successes, ms per fit, time / faster SciPy"
    print_table(rows, [("solver", "solver", "s"), ("solved", "solved", "d"), ("fits", "fits", "d"),
                       ("false", "false succ.", "d"), ("ms", "ms/fit", ".2f"), ("ratio", "vs SciPy", ".2f")],
                title=title)
    if compile_s:
        print(f"optimistix compilation: {sum(compile_s):.1f} s in total ({1e3 * statistics.median(compile_s):.0f} ms "
              "median per fit), not in its time")
    if args.json:
        write_results(args.json, "least_squares", rows)
    return rows


if __name__ == "__main__":
    main()
