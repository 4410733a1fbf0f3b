"""Stiff steady states: DynamicSS with a Rosenbrock integrator against SciPy's BDF / Radau and diffrax's
Kvaerno5, each run until a steady-state event fires.

Problems (benchmarks/problems/stiff.py): HIRES (n = 8), Robertson (n = 3), a stiff linear system
with eigenvalues over six decades (n = 50), the 1-D Brusselator with fast kinetics (n = 2 N), and
OREGO (a limit cycle: no stable steady state; reported, not timed against the peers).

Everyone gets the same information and the same tolerances: the analytic Jacobian (dense; the
Brusselator's as a SciPy CSR matrix on NumPy, so steadysolve factorises ``W`` with its sparse LU and
SciPy's BDF / Radau with ``splu``), local error tolerances ``RTOL`` / ``ATOL``, and the stop
``max|f(u)| <= TOL``:

* steadysolve: ``solve(SteadyStateProblem(f, u0, p, jac=jac), DynamicSS(Rodas5P(autonomous=True),
  controller=PIController(reltol=RTOL, abstol=ATOL)), abstol=TOL, reltol=0)`` (and Rosenbrock23), on
  NumPy, and the same solve under ``jax.jit`` (dense Jacobian); also the default ``solve(prob)`` (Auto:
  on a SteadyStateProblem only flow-following methods, DynamicSS and PseudoTransient);
* SciPy: ``solve_ivp(method="BDF" | "Radau", jac=jac, rtol=RTOL, atol=ATOL)`` with a terminal event
  ``max|f(y)| - TOL`` (it fires: status 1 is asserted), ``t_span = (0, 1e12)``;
* diffrax: ``Kvaerno5`` (its VeryChord Newton with rtol/atol, Jacobian by ``jax.jacfwd``: it takes no
  user Jacobian) with a PID controller and ``Event(steady_state_event(rtol=0, atol=TOL, norm=max))``,
  jitted, compile excluded.

Columns: median wall time, evaluations of f (SciPy's event and diffrax's event each cost one f per
step; steadysolve's test reuses its step's f), Jacobians, LU factorisations, steps (attempted),
``max|f|`` at the end and the distance to the reference steady state. Ratios: steadysolve NumPy
against the faster of BDF / Radau (target <= 0.5), jitted steadysolve against diffrax (target <= 1.0).

``--cpu`` times with the process's CPU time (``time.process_time``, all its threads) instead of wall
time: on a shared, loaded machine the other processes then drop out of every row alike.

Run: python -m benchmarks.stiff [--quick] [--repeats 3] [--cpu] [--json results.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_ENABLE_X64", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import steadysolve as ss  # noqa: E402

from benchmarks._common import print_table, write_results  # noqa: E402
from benchmarks.problems import stiff as sp  # noqa: E402

RTOL, ATOL, TOL = 1e-6, 1e-10, 1e-8
T_END = 1e12


class Counter:
    def __init__(self, fn):
        self.fn, self.n = fn, 0

    def __call__(self, *a):
        self.n += 1
        return self.fn(*a)


CLOCK = [time.perf_counter]  # --cpu: time.process_time


def timed(run, repeats):
    out, times = None, []
    clock = CLOCK[0]
    for _ in range(max(1, repeats)):
        t0 = clock()
        out = run()
        times.append(clock() - t0)
    return statistics.median(times), out


def _row(prob, solver, t, nf, njac, nfact, steps, u, code, f_np):
    ref = prob.reference()
    resid = float(np.max(np.abs(f_np(np.asarray(u), prob.p, 0.0))))
    err = None if ref is None else float(np.max(np.abs(np.asarray(u) - ref)))
    return {"problem": prob.name, "method": solver, "time": t, "ms": 1e3 * t, "nf": nf, "njac": njac,
            "nfact": nfact, "steps": steps, "resid": resid, "err": err, "code": code}


def _numpy_jac(prob):
    return prob.sparse_jac if prob.sparse_jac is not None else prob.jac(np)


def run_steadysolve(prob, method, repeats, default=False, maxiters=20_000):
    f, jac = prob.f(np), _numpy_jac(prob)
    problem = ss.SteadyStateProblem(f, prob.u0.copy(), prob.p, jac=jac)
    if default:
        def go():
            return ss.solve(problem, abstol=TOL, reltol=0.0, maxiters=maxiters)
        label = "steadysolve solve(prob) (Auto)"
    else:
        alg = ss.DynamicSS(method, controller=ss.PIController(reltol=RTOL, abstol=ATOL))

        def go():
            return ss.solve(problem, alg, abstol=TOL, reltol=0.0, maxiters=maxiters)
        label = f"steadysolve DynamicSS({type(method).__name__})"
    t, sol = timed(go, repeats)
    st = sol.stats
    return _row(prob, label, t, int(st.nf), st.extra.get("njac"), st.extra.get("nfact"), int(st.niter), sol.u,
                sol.retcode.name, f)


def run_scipy(prob, method, repeats):
    f, jac = prob.f(np), _numpy_jac(prob)
    fun = Counter(lambda t, y: f(y, prob.p, t))
    jfun = Counter(lambda t, y: jac(y, prob.p))

    def event(t, y):
        return float(np.max(np.abs(fun(t, y)))) - TOL

    event.terminal = True
    event.direction = -1

    def go():
        fun.n = jfun.n = 0
        return solve_ivp(fun, (0.0, T_END), prob.u0.copy(), method=method, jac=jfun, rtol=RTOL, atol=ATOL,
                         events=event)

    t, res = timed(go, repeats)
    code = "Success" if res.status == 1 else f"status {res.status}: {res.message}"
    return _row(prob, f"scipy {method}+event", t, fun.n, jfun.n, res.nlu, len(res.t) - 1, res.y[:, -1], code, f)


def jax_runners(prob):
    """(steadysolve jitted, diffrax Kvaerno5 jitted) as functions of (u0, p) returning (u, nf, steps, code)."""
    import diffrax
    import jax
    import jax.numpy as jnp
    import optimistix as optx

    f, jac = prob.f(jnp), prob.jac(jnp)
    alg = ss.DynamicSS(ss.Rodas5P(autonomous=True), controller=ss.PIController(reltol=RTOL, abstol=ATOL))

    @jax.jit
    def ours(u0, p):
        s = ss.solve(ss.SteadyStateProblem(f, u0, p, jac=jac), alg, abstol=TOL, reltol=0.0, maxiters=20_000)
        return s.u, s.stats.nf, s.stats.niter, s.retcode_array, s.stats.njac, s.stats.nfact

    term = diffrax.ODETerm(lambda t, y, args: f(y, args, t))
    solver = diffrax.Kvaerno5(root_finder=diffrax.VeryChord(rtol=RTOL, atol=ATOL))
    ctrl = diffrax.PIDController(rtol=RTOL, atol=ATOL)
    event = diffrax.Event(diffrax.steady_state_event(rtol=0.0, atol=TOL, norm=optx.max_norm))

    @jax.jit
    def theirs(u0, p):
        sol = diffrax.diffeqsolve(term, solver, t0=0.0, t1=T_END, dt0=None, y0=u0, args=p, stepsize_controller=ctrl,
                                  event=event, max_steps=20_000, saveat=diffrax.SaveAt(t1=True))
        return sol.ys[-1], sol.stats["num_steps"], sol.result._value

    return ours, theirs


_DIFFRAX = {0: "Success", 11: "Success"}  # diffrax.RESULTS: successful, event_occurred


def run_jax(prob, repeats):
    import jax
    import jax.numpy as jnp

    ours, theirs = jax_runners(prob)
    u0 = jnp.asarray(prob.u0)
    p = jax.tree_util.tree_map(jnp.asarray, prob.p)
    t0 = time.perf_counter()
    jax.block_until_ready(ours(u0, p))
    c_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(theirs(u0, p))
    c_theirs = time.perf_counter() - t0
    t_o, o = timed(lambda: jax.block_until_ready(ours(u0, p)), repeats)
    t_d, d = timed(lambda: jax.block_until_ready(theirs(u0, p)), repeats)
    f = prob.f(np)
    code = {rc.code: rc.name for rc in ss.ReturnCode}[int(np.asarray(o[3]).reshape(-1)[0])]
    rows = [_row(prob, "steadysolve jax.jit DynamicSS(Rodas5P)", t_o, int(o[1]), int(o[4]), int(o[5]), int(o[2]),
                 np.asarray(o[0]), code, f),
            _row(prob, "diffrax Kvaerno5+event (jit)", t_d, None, None, None, int(d[1]), np.asarray(d[0]),
                 _DIFFRAX.get(int(d[2]), f"result {int(d[2])}"), f)]
    rows[0]["compile_s"], rows[1]["compile_s"] = c_ours, c_theirs
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="Brusselator N = 200, one repeat, no Brusselator under jit")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--N", type=int, default=None, help="Brusselator grid points per species (default 1000)")
    ap.add_argument("--only", default="", help="problems whose name contains this text")
    ap.add_argument("--no-jax", action="store_true")
    ap.add_argument("--json", default=None, help="merge the rows into this results file")
    ap.add_argument("--cpu", action="store_true", help="time with the process's CPU time, not wall time")
    args = ap.parse_args(argv)
    if args.cpu:
        CLOCK[0] = time.process_time
    repeats = 1 if args.quick else args.repeats
    N = args.N or (200 if args.quick else 1000)
    problems = [sp.hires, sp.robertson, sp.stiff_linear, sp.brusselator(N), sp.orego]
    rows = []
    for prob in problems:
        if args.only not in prob.name:
            continue
        reps = 1 if prob.n > 200 else repeats  # multi-second solves: one run
        ours = [run_steadysolve(prob, ss.Rodas5P(autonomous=True), reps),
                run_steadysolve(prob, ss.Rosenbrock23(autonomous=True), reps),
                run_steadysolve(prob, None, reps, default=True)]
        if not prob.stable:  # no steady state to reach: only say what each solver reports
            for r in ours:
                r.pop("time")
            rows += ours
            continue
        peers = [run_scipy(prob, "BDF", reps), run_scipy(prob, "Radau", reps)]
        best = min(peers, key=lambda r: r["time"])
        for r in ours:
            r.update(peer=best["method"], peer_time=best["time"], ratio=r["time"] / best["time"], target=0.5)
            if r["err"] is not None and r["err"] > 10 * best["err"] + 1e-6:  # another equilibrium than the flow's
                r.update(met=False, note="not the steady state the flow reaches from u0")
        rows += ours + peers
        if not args.no_jax and not (args.quick and prob.n > 200):
            jrows = run_jax(prob, reps)
            jrows[0].update(peer=jrows[1]["method"], peer_time=jrows[1]["time"], ratio=jrows[0]["time"] / jrows[1]["time"],
                            target=1.0)
            rows += jrows
    cols = [("problem", "problem", "s"), ("method", "solver", "s"), ("ms", "ms", ".1f"), ("nf", "nf", "d"),
            ("njac", "jac", "d"), ("nfact", "LU", "d"), ("steps", "steps", "d"), ("resid", "max|f|", ".1e"),
            ("err", "err", ".1e"), ("ratio", "ratio", ".2f"), ("code", "code", "s"), ("note", "note", "s")]
    clock = "CPU time" if args.cpu else "wall time"
    print(f"local rtol={RTOL}, atol={ATOL}; stop at max|f| <= {TOL}; median of {repeats} ({clock}); compile excluded")
    print_table(rows, cols)
    if args.json:
        write_results(args.json, "stiff", rows)


if __name__ == "__main__":
    main()
