"""The 2-D Brusselator steady state of SciMLBenchmarks.jl (``NonlinearProblem/bruss``), N = 8 .. 128.

    OPENBLAS_NUM_THREADS=1 python -m benchmarks.brusselator [--quick] [--sizes 8,16,32,64,128]
        [--repeats 3] [--no-blocks] [--json PATH]

The problem (``problems/bruss.py``: constants, grid, forcing disc and start as published; source
URL there) has ``n = 2 N^2`` unknowns and 6 Jacobian nonzeros per row. Every solver stops at
``max|F| <= 1e-8`` (SciPy's ``f_tol`` is that norm; steadysolve's default norm is ``"max"``), and
a run counts as solved only if ``max|F| <= 1e-8`` recomputed at the returned point.

Rows, measured in one process (median of ``--repeats``, after one warm-up up to N = 32):

* ``reference``: sparse Newton written here: the analytic Jacobian (``scipy.sparse``), SuperLU
  (``splu`` with SciPy's default ordering, and a second row with ``MMD_AT_PLUS_A``, the ordering
  steadysolve's sparse LU picks for structurally symmetric matrices) and an Armijo backtracking
  line search on ``|F|^2 / 2``. Every ratio is against the first of the two.
* SciPy ``newton_krylov`` (``f_tol=1e-8``), plain and with ``inner_M`` an ILU (``spilu``) of the
  Jacobian at the start, kept for the whole solve;
* SciPy ``root(method="hybr")`` (dense MINPACK, finite-difference Jacobian) up to N = 16
  (``n = 512``; at N = 32 it builds 2,048-column dense Jacobians: minutes);
* optimistix ``Newton`` (dense JAX Jacobian by ``jacfwd``, lineax LU, jitted; compile time
  excluded) up to N = 16 (beyond, the dense ``n x n`` Jacobian and its LU dominate: N = 32 needs
  2,048 JVPs and a 2,048^3 LU per step);
* steadysolve today: ``solve(prob)`` (the default chain) and ``NewtonKrylov()``;
* steadysolve's sparse Newton family: ``solve(prob)`` given only ``sparsity=`` (finite differences
  over the colouring) or the analytic sparse ``jac`` (the issue's targets: <= 1.2x and <= 1.1x the
  reference at N = 64, 128; time ~ n^k with k <= 1.3 over N = 32 .. 128), and ``NewtonRaphson``,
  ``TrustRegion``, ``LevenbergMarquardt`` (normal equations or LSMR, up to N = 64) by name.
* preconditioned ``NewtonKrylov`` (issue 28, a table of its own): ``precond=ILU()`` / ``AMG()`` set
  up from the pattern's finite-difference colouring (matrix-free ``F``), refreshed at every Newton
  step or on Krylov growth, against SciPy's ``newton_krylov`` with the ILU of ``J(u0)`` (ILU rows)
  and the reference (AMG rows); the default ``NewtonKrylov()`` against SciPy's plain
  ``newton_krylov``; ``GMRES(restart=100)`` for the Newton iterations of an ample Krylov budget;

Columns: time, Newton iterations, evaluations of F (finite-difference JVPs included: every call
is counted by a wrapper), Jacobians, factorisations; then the fitted growth exponent
``time ~ n^k`` over N = 32 .. 128. A second table ("building blocks") times the sparse pieces on
the same problem: the colouring (colours, seconds, both engines), a finite-difference sparse
Jacobian from the colouring against the analytic one, SuperLU orderings, and the damped normal
equations of Levenberg-Marquardt (SuperLU, CHOLMOD when scikit-sparse is installed, LSMR).
"""

from __future__ import annotations

import argparse
import math
import time
from typing import NamedTuple, Optional

from benchmarks._common import Counted, print_table, single_thread, timed, write_results

single_thread()

import numpy as np  # noqa: E402
import scipy.optimize as so  # noqa: E402
import scipy.sparse.linalg as sla  # noqa: E402
from benchmarks.problems import bruss  # noqa: E402

import steadysolve as ss  # noqa: E402
from steadysolve import _backend as backend, sparse  # noqa: E402
from steadysolve.linear import sparse as sparse_linalg  # noqa: E402

ABSTOL = 1e-8
REFERENCE = "reference (analytic J, splu, Armijo)"
HYBR_MAX_N = 16
OPTIMISTIX_MAX_N = 16


class Run(NamedTuple):
    u: np.ndarray
    niter: Optional[int]
    nf: int
    njac: Optional[int] = None
    nfact: Optional[int] = None
    note: str = ""


# --- the reference: sparse Newton with an analytic Jacobian -------------------------------------------


def reference(N, ordering=None, maxiter=100):
    F, u0, p = bruss.problem(N)
    Fc = Counted(lambda u: F(u, p))
    u, f = u0.copy(), Fc(u0)
    niter = njac = 0
    while np.abs(f).max() > ABSTOL and niter < maxiter:
        J = bruss.jacobian(u, p)
        njac += 1
        lu = sla.splu(J.tocsc()) if ordering is None else sla.splu(J.tocsc(), permc_spec=ordering)
        step = lu.solve(-f)
        phi0, t = 0.5 * (f @ f), 1.0
        for _ in range(30):  # Armijo on |F|^2/2: its slope along a Newton step is -|F|^2
            un = u + t * step
            fn = Fc(un)
            if 0.5 * (fn @ fn) <= (1.0 - 2e-4 * t) * phi0:
                break
            t *= 0.5
        u, f = un, fn
        niter += 1
    return Run(u, niter, Fc.n, njac, njac)


# --- SciPy ----------------------------------------------------------------------------------------------


def scipy_newton_krylov(N, ilu=False):
    F, u0, p = bruss.problem(N)
    Fc = Counted(lambda u: F(u, p))
    kw, iters = {}, []
    if ilu:  # right-hand preconditioner: an incomplete LU of J(u0), frozen
        ilu0 = sla.spilu(bruss.jacobian(u0, p).tocsc())
        kw["inner_M"] = sla.LinearOperator((u0.size, u0.size), matvec=ilu0.solve)
    try:
        u = so.newton_krylov(Fc, u0, f_tol=ABSTOL, maxiter=500, callback=lambda x, f: iters.append(1), **kw)
        note = ""
    except so.NoConvergence as e:
        u, note = np.asarray(e.args[0]), "NoConvergence"
    return Run(u, len(iters), Fc.n, 1 if ilu else 0, 1 if ilu else 0, note)


def scipy_hybr(N):
    F, u0, p = bruss.problem(N)
    Fc = Counted(lambda u: F(u, p))
    sol = so.root(Fc, u0, method="hybr", tol=1e-13)  # hybr has no residual test: a tight step test instead
    return Run(sol.x, None, Fc.n, getattr(sol, "njev", None), None, "")


# --- optimistix -----------------------------------------------------------------------------------------


_OPTX = {}


def optimistix_newton(N):
    import jax

    jax.config.update("jax_enable_x64", True)  # float64 like every other row (JAX's default is float32)
    import jax.numpy as jnp
    import optimistix as optx

    if N not in _OPTX:
        F, u0, p = bruss.problem(N, like=jnp.zeros(1))

        @jax.jit
        def run(y0):
            solver = optx.Newton(rtol=ABSTOL, atol=ABSTOL, norm=optx.max_norm)
            sol = optx.root_find(lambda y, args: F(y, p), solver, y0, max_steps=200, throw=False)
            return sol.value, sol.stats["num_steps"]

        _OPTX[N] = (run, u0)
    run, u0 = _OPTX[N]
    y, steps = run(u0)
    y = np.asarray(y.block_until_ready())
    steps = int(steps)
    return Run(y, steps, 0, steps, steps, "AD (jacfwd), no F count")


# --- steadysolve ----------------------------------------------------------------------------------------


def steadysolve_run(N, alg=None):
    F, u0, p = bruss.problem(N)
    Fc = Counted(F)
    prob = ss.NonlinearProblem(Fc, u0, p)
    sol = ss.solve(prob, alg, abstol=ABSTOL) if alg is not None else ss.solve(prob, abstol=ABSTOL)
    st = {k: sol.stats[k] for k in sol.stats.keys()}
    return Run(np.asarray(sol.u), st.get("niter"), Fc.n, st.get("njac"), st.get("nfact"), sol.retcode.name)


# --- steadysolve's sparse Newton family (issue 27, phase 2) ---------------------------------------------
#
# The problem states its structure and steadysolve factorises: ``sparsity=`` alone (Jacobians by
# finite differences over the pattern's 12 colours) or the analytic sparse ``jac``; ``solve(prob)``
# then runs sparse Newton first (Auto's sparse chain), and the Newton family can be asked by name.

LM_MAX_N = 64  # Levenberg-Marquardt: J^T J fills in more than J and LSMR iterates more as cond(J) ~ N^2 grows


def _sparse_count(stats, key):
    """A counter of the run, summed over Auto's attempts."""
    if key in stats.keys():
        return stats[key]
    attempts = stats.extra.get("attempts", {}) if hasattr(stats, "extra") else {}
    vals = [s[key] for s in attempts.values() if key in s.keys()]
    return sum(vals) if vals else None


def steadysolve_sparse(N, alg=None, *, jac=False):
    F, u0, p = bruss.problem(N)
    Fc = Counted(F)
    structure = {"jac": lambda u, p: bruss.jacobian(u, p)} if jac else {"sparsity": bruss.sparsity(N)}
    prob = ss.NonlinearProblem(Fc, u0, p, **structure)
    sol = ss.solve(prob, alg, abstol=ABSTOL) if alg is not None else ss.solve(prob, abstol=ABSTOL)
    st = sol.stats
    return Run(np.asarray(sol.u), st.niter, Fc.n, _sparse_count(st, "njac"), _sparse_count(st, "nfact"),
               sol.retcode.name)


#: (name, function, largest N or None, target ratio at N >= 64 or None); the growth target is GROWTH_TARGET
SPARSE_METHODS = [
    ("steadysolve solve(prob), sparsity=", lambda N: steadysolve_sparse(N), None, 1.2),
    ("steadysolve solve(prob), analytic jac", lambda N: steadysolve_sparse(N, jac=True), None, 1.1),
    ("steadysolve NewtonRaphson(), sparsity=", lambda N: steadysolve_sparse(N, ss.NewtonRaphson()), None, None),
    ("steadysolve NewtonRaphson(), analytic jac", lambda N: steadysolve_sparse(N, ss.NewtonRaphson(), jac=True),
     None, None),
    ("steadysolve TrustRegion(), sparsity=", lambda N: steadysolve_sparse(N, ss.TrustRegion()), None, None),
    ("steadysolve LevenbergMarquardt(), sparsity=", lambda N: steadysolve_sparse(N, ss.LevenbergMarquardt()),
     LM_MAX_N, None),
    ("steadysolve LevenbergMarquardt(sparse_solver='lsmr'), sparsity=",
     lambda N: steadysolve_sparse(N, ss.LevenbergMarquardt(sparse_solver="lsmr")), LM_MAX_N, None),
]
#: time ~ n^k over N = 32 .. 128: the issue's target for solve(prob) with a sparse structure
GROWTH_TARGET = {SPARSE_METHODS[0][0]: 1.3, SPARSE_METHODS[1][0]: 1.3}


# (name, function, largest N or None, target ratio at N >= 64 or None)
METHODS = [
    (REFERENCE, lambda N: reference(N), None, None),
    ("reference, MMD_AT_PLUS_A ordering", lambda N: reference(N, "MMD_AT_PLUS_A"), None, None),
    ("scipy newton_krylov", lambda N: scipy_newton_krylov(N), None, None),
    ("scipy newton_krylov + ILU(J(u0))", lambda N: scipy_newton_krylov(N, ilu=True), None, None),
    ("scipy root(hybr)", scipy_hybr, HYBR_MAX_N, None),
    ("optimistix Newton (dense, jit)", optimistix_newton, OPTIMISTIX_MAX_N, None),
    ("steadysolve solve(prob)", lambda N: steadysolve_run(N), None, None),
    ("steadysolve NewtonKrylov()", lambda N: steadysolve_run(N, ss.NewtonKrylov()), None, None),
    *SPARSE_METHODS,
]


def measure(N, repeats):
    F, _, p = bruss.problem(N)
    rows, ref_time = [], None
    for name, fn, max_n, target in METHODS:
        row = {"case": f"N={N} (n={2 * N * N}) | {name}", "N": N, "n": 2 * N * N, "method": name,
               "target": target if N >= 64 else None}
        if max_n is not None and N > max_n:
            row["note"] = f"skipped above N={max_n}"
            rows.append(row)
            continue
        try:
            t, run = timed(lambda: fn(N), repeats=repeats, warmup=1 if N <= 32 else 0)
        except Exception as e:  # a peer that crashes is reported, not fatal
            row["note"] = f"{type(e).__name__}: {str(e)[:60]}"
            rows.append(row)
            continue
        resid = float(np.abs(F(run.u, p)).max())
        if name == REFERENCE:
            ref_time = t
        row.update(time=t, ms=1e3 * t, niter=run.niter, nf=run.nf, njac=run.njac, nfact=run.nfact,
                   resid=resid, solved=resid <= ABSTOL, note=run.note)
        rows.append(row)
    for row in rows:
        if row.get("time") is not None and ref_time:
            row.update(peer=REFERENCE, peer_time=ref_time, ratio=row["time"] / ref_time)
    return rows


def growth(rows, lo=32):
    """``k`` in ``time ~ n^k`` fitted over the sizes N >= ``lo`` (least squares on the logs)."""
    out = []
    for name, *_ in METHODS:
        pts = [(r["n"], r["time"]) for r in rows if r["method"] == name and r.get("time") and r["N"] >= lo]
        if len(pts) >= 2:
            x, y = np.log([q[0] for q in pts]), np.log([q[1] for q in pts])
            k = float(np.polyfit(x, y, 1)[0])
            out.append({"case": f"growth N={lo}..{max(r['N'] for r in rows)} | {name}", "method": name,
                        "exponent": k, "points": len(pts), "ratio": k, "metric": "exponent of time vs n",
                        "target": GROWTH_TARGET.get(name)})
    return out


# --- issue 28: preconditioned Newton-Krylov (its own rows and table) ------------------------------------


def steadysolve_precond(N, precond=None, **kw):
    """``NewtonKrylov(precond=...)`` on the matrix-free residual with ``sparsity=`` (the preconditioner's
    Jacobian comes from the pattern's colouring by finite differences, counted in F evals)."""
    F, u0, p = bruss.problem(N)
    Fc = Counted(F)
    prob = ss.NonlinearProblem(Fc, u0, p, sparsity=bruss.sparsity(N) if precond is not None else None)
    sol = ss.solve(prob, ss.NewtonKrylov(precond=precond, **kw), abstol=ABSTOL)
    st = {k: sol.stats[k] for k in sol.stats.keys()}
    note = f"{sol.retcode.name}, {st['nlinear']} Krylov steps"
    if "nprecond" in st:
        note += f", {st['nprecond']} setups"
    return Run(np.asarray(sol.u), st.get("niter"), Fc.n, st.get("nprecond"), st.get("nprecond"), note)


SCIPY_ILU = "scipy newton_krylov + ILU(J(u0))"
SCIPY_PLAIN = "scipy newton_krylov"
NK_DEFAULT = "steadysolve NewtonKrylov()"

# (name, function, peer the ratio is against, target ratio or None, sizes the target applies to)
PRECOND_METHODS = [
    ("NK precond=ILU()", lambda N: steadysolve_precond(N, ss.ILU()), SCIPY_ILU, 0.5, (64, 128)),
    ("NK precond=ILU(refresh=1)", lambda N: steadysolve_precond(N, ss.ILU(refresh=1)), SCIPY_ILU, 0.5, (64, 128)),
    ("NK precond=AMG()", lambda N: steadysolve_precond(N, ss.AMG()), REFERENCE, 1.0, (128,)),
    ("NK precond=AMG(refresh=1)", lambda N: steadysolve_precond(N, ss.AMG(refresh=1)), REFERENCE, 1.0, (128,)),
    ("NK GMRES(restart=100), fixed budget",
     lambda N: steadysolve_precond(N, None, linsolve=ss.GMRES(restart=100), krylov_growth=1), NK_DEFAULT, None, ()),
]


def measure_precond(N, repeats, rows):
    """The rows of ``PRECOND_METHODS`` at ``N``, with ratios against peers measured by :func:`measure` in the
    same run (``rows``); plus the default ``NewtonKrylov()`` against SciPy's plain ``newton_krylov``."""
    F, _, p = bruss.problem(N)
    times = {r["method"]: r for r in rows if r["N"] == N and r.get("time") is not None}
    out = []
    for name, fn, peer, target, where in PRECOND_METHODS:
        row = {"case": f"N={N} (n={2 * N * N}) | {name}", "N": N, "n": 2 * N * N, "method": name,
               "target": target if N in where else None}
        try:
            t, run = timed(lambda: fn(N), repeats=repeats, warmup=1 if N <= 32 else 0)
        except Exception as e:
            row["note"] = f"{type(e).__name__}: {str(e)[:60]}"
            out.append(row)
            continue
        resid = float(np.abs(F(run.u, p)).max())
        row.update(time=t, ms=1e3 * t, niter=run.niter, nf=run.nf, njac=run.njac, resid=resid, solved=resid <= ABSTOL,
                   note=run.note)
        if peer in times:
            row.update(peer=peer, peer_time=times[peer]["time"], ratio=t / times[peer]["time"])
        out.append(row)
    if NK_DEFAULT in times and SCIPY_PLAIN in times:  # the default, no preconditioner: <= 1.0x SciPy at every N
        d = times[NK_DEFAULT]
        out.append({"case": f"N={N} (n={2 * N * N}) | {NK_DEFAULT} vs SciPy", "N": N, "n": 2 * N * N,
                    "method": f"{NK_DEFAULT} vs SciPy", "time": d["time"], "ms": d["ms"], "niter": d.get("niter"),
                    "nf": d.get("nf"), "peer": SCIPY_PLAIN, "peer_time": times[SCIPY_PLAIN]["time"],
                    "ratio": d["time"] / times[SCIPY_PLAIN]["time"], "target": 1.0, "note": d.get("note", "")})
    return out


def precond_growth(rows, lo=32):
    """``time ~ n^k`` over N >= ``lo`` of the preconditioned rows (target: k <= 1.3)."""
    out = []
    for name, *_ in PRECOND_METHODS[:4]:
        pts = [(r["n"], r["time"]) for r in rows if r["method"] == name and r.get("time") and r["N"] >= lo]
        if len(pts) >= 2:
            k = float(np.polyfit(np.log([q[0] for q in pts]), np.log([q[1] for q in pts]), 1)[0])
            out.append({"case": f"growth N={lo}..{max(r['N'] for r in rows)} | {name}", "method": name,
                        "exponent": k, "points": len(pts), "ratio": k, "metric": "exponent of time vs n",
                        "target": 1.3})
    return out


PRECOND_COLUMNS = [("method", "method", "s"), ("N", "N", "d"), ("ms", "ms", ".1f"), ("peer", "ratio against", "s"),
                   ("ratio", "ratio", ".2f"), ("target", "target", ""), ("niter", "iters", ""), ("nf", "F evals", ""),
                   ("resid", "max|F|", ".1e"), ("note", "note", "s")]


def precond_report(sizes, repeats, rows, json_path=None):
    """The preconditioning table (issue 28) after the main one."""
    prow = []
    for N in sizes:
        prow += measure_precond(N, repeats if N <= 32 else max(1, repeats - 2), rows)
    print_table(prow, PRECOND_COLUMNS, title="Preconditioned Newton-Krylov (matrix-free F, sparsity= for the "
                                             "preconditioner's Jacobian)")
    grow = precond_growth(prow) if max(sizes) >= 64 else []
    if grow:
        print_table(grow, [("method", "method", "s"), ("exponent", "time ~ n^k, k =", ".2f"), ("points", "sizes", "d")],
                    title="Growth with a preconditioner over N >= 32 (target k <= 1.3)")
    if json_path:
        write_results(json_path, "brusselator_precond", [r for r in prow if r.get("time") is not None] + grow)
    return prow


# --- issue 28 item 4: Newton-Krylov under jax.jit against the eager NumPy solve ----------------------------

JIT_METHODS = ("jax.jit(solve(prob, NewtonKrylov()))", "jax.jit(adapters.jax.root(solver=NewtonKrylov()))")


def jit_rows(N, repeats, rows):
    """The default ``NewtonKrylov()`` compiled by ``jax.jit`` (float64): the core ``solve`` and
    ``adapters.jax.root``. ``ms`` is a compiled run; ``compile`` the first call minus a compiled run
    (tracing, XLA compilation); the ratio is against the eager NumPy ``NewtonKrylov()`` row of ``rows``."""
    import jax
    import jax.numpy as jnp

    from steadysolve.adapters.jax import root

    jax.config.update("jax_enable_x64", True)
    F, u0, _ = bruss.problem(N)
    uj = jnp.asarray(u0)
    pj = bruss.params(N, like=uj)

    def core(u):
        sol = ss.solve(ss.NonlinearProblem(F, u, pj), ss.NewtonKrylov(), abstol=ABSTOL)
        return sol.u, sol.stats["niter"], sol.stats["njvp"], sol.retcode_array

    def adapter(u):
        out, st = root(lambda v: F(v, pj), u, solver=ss.NewtonKrylov(), abstol=ABSTOL)
        return out, st.niter, st.njvp, st.retcode_array

    eager = {r["method"]: r for r in rows if r["N"] == N and r.get("time") is not None}.get(NK_DEFAULT)
    out = []
    for name, fn in zip(JIT_METHODS, (core, adapter)):
        f = jax.jit(fn)
        t0 = time.perf_counter()
        jax.block_until_ready(f(uj))
        first = time.perf_counter() - t0
        t, res = timed(lambda: jax.block_until_ready(f(uj)), repeats=repeats, warmup=0)
        u, niter, njvp, _ = (np.asarray(x) for x in res)
        resid = float(np.abs(F(u, bruss.params(N))).max())
        row = {"case": f"N={N} (n={2 * N * N}) | {name}", "N": N, "n": 2 * N * N, "method": name, "time": t,
               "ms": 1e3 * t, "compile": max(first - t, 0.0), "niter": int(niter), "njvp": int(njvp),
               "resid": resid, "solved": resid <= ABSTOL, "target": 1.2}
        if eager is not None:
            row.update(peer=NK_DEFAULT, peer_time=eager["time"], ratio=t / eager["time"],
                       note=f"eager NumPy: {1e3 * eager['time']:.0f} ms, {eager.get('niter')} iters, {eager.get('nf')} F evals")
        out.append(row)
    return out


JIT_COLUMNS = [("method", "method", "s"), ("N", "N", "d"), ("ms", "ms", ".1f"), ("compile", "compile [s]", ".1f"),
               ("ratio", "ratio vs eager NumPy", ".2f"), ("niter", "iters", ""), ("njvp", "JVPs", ""),
               ("resid", "max|F|", ".1e"), ("note", "note", "s")]


# --- the sparse building blocks on this problem ---------------------------------------------------------


def blocks(N):
    F, u0, p = bruss.problem(N)
    pattern = sparse.as_pattern(bruss.sparsity(N), "bruss")
    row = {"case": f"N={N} (n={2 * N * N}) | building blocks", "N": N, "n": 2 * N * N}
    for engine in ("python", "pyamg"):
        try:
            t, colours = timed(lambda: sparse.colour_columns(pattern, engine=engine), repeats=3, warmup=0)
        except ImportError:
            continue
        row[f"colour_{engine}_ms"] = 1e3 * t
        row["colours"] = int(colours.max()) + 1
    xp = backend.namespace(("u", u0))
    groups = sparse.ColumnGroups(xp, pattern, u0.dtype)
    u = u0[None, :]
    fu = F(u, p)
    row["fd_jac_ms"] = 1e3 * timed(lambda: groups.finite_differences(lambda x: F(x, p), u, fu), 3, 1)[0]
    row["analytic_jac_ms"] = 1e3 * timed(lambda: bruss.jacobian(u0, p), 3, 1)[0]
    row["f_ms"] = 1e3 * timed(lambda: F(u0, p), 5, 1)[0]
    J = bruss.jacobian(u0, p)
    for spec in ("COLAMD", "MMD_AT_PLUS_A"):
        row[f"splu_{spec}_ms"] = 1e3 * timed(lambda: sla.splu(J.tocsc(), permc_spec=spec), 3, 0)[0]
    lam = 1e-3 * float(abs(J).max()) ** 2
    row["normal_superlu_ms"] = 1e3 * timed(lambda: sparse_linalg.DampedNormal([J], lam, engine="superlu"), 1, 0)[0]
    if sparse_linalg.cholmod_available():
        first = sparse_linalg.DampedNormal([J], lam, engine="cholmod")
        row["normal_cholmod_ms"] = 1e3 * timed(lambda: sparse_linalg.DampedNormal([J], lam, engine="cholmod"), 1, 0)[0]
        row["normal_cholmod_numeric_ms"] = 1e3 * timed(
            lambda: sparse_linalg.DampedNormal([J], lam, engine="cholmod", analysis=first.analysis), 1, 0)[0]
    t, (s, niter, failed) = timed(lambda: sparse_linalg.lsmr_damped([J], -fu, lam, maxiter=5000), 1, 0)
    row["lsmr_ms"], row["lsmr_iterations"] = 1e3 * t, int(niter[0])
    return row


COLUMNS = [("method", "method", "s"), ("N", "N", "d"), ("ms", "ms", ".1f"), ("ratio", "ratio", ".2f"),
           ("niter", "iters", ""), ("nf", "F evals", ""), ("njac", "Jacobians", ""), ("nfact", "factor.", ""),
           ("resid", "max|F|", ".1e"), ("solved", "solved", ""), ("note", "note", "s")]
BLOCK_COLUMNS = [("N", "N", "d"), ("n", "n", "d"), ("colours", "colours", "d"), ("colour_python_ms", "colour py ms", ".1f"),
                 ("colour_pyamg_ms", "colour pyamg ms", ".1f"), ("f_ms", "F ms", ".2f"), ("fd_jac_ms", "FD J ms", ".1f"),
                 ("analytic_jac_ms", "analytic J ms", ".1f"), ("splu_COLAMD_ms", "splu COLAMD ms", ".1f"),
                 ("splu_MMD_AT_PLUS_A_ms", "splu MMD ms", ".1f"), ("normal_superlu_ms", "normal SuperLU ms", ".1f"),
                 ("normal_cholmod_ms", "normal CHOLMOD ms", ".1f"),
                 ("normal_cholmod_numeric_ms", "CHOLMOD numeric ms", ".1f"), ("lsmr_ms", "LSMR ms", ".1f"),
                 ("lsmr_iterations", "LSMR its", "d")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="N = 8, 16, 32 only")
    ap.add_argument("--sizes", default=None, help="comma-separated N (default 8,16,32,64,128)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-blocks", action="store_true", help="skip the building-blocks table")
    ap.add_argument("--no-precond", action="store_true", help="skip the preconditioned Newton-Krylov table")
    ap.add_argument("--jit", action="store_true", help="add the jax.jit Newton-Krylov table (issue 28 item 4)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else [8, 16, 32] if args.quick else list(bruss.SIZES)
    rows = []
    for N in sizes:
        t0 = time.perf_counter()
        rows += measure(N, args.repeats if N <= 32 else max(1, args.repeats - 2))
        print(f"N={N}: {time.perf_counter() - t0:.1f} s", flush=True)
    print_table(rows, COLUMNS, title=f"Brusselator (SciMLBenchmarks NonlinearProblem/bruss), max|F| <= {ABSTOL:g}; "
                                     f"ratio = time / {REFERENCE}")
    grow = growth(rows) if max(sizes) >= 64 else []
    if grow:
        print_table(grow, [("method", "method", "s"), ("exponent", "time ~ n^k, k =", ".2f"), ("points", "sizes", "d")],
                    title="Growth of the time with n = 2 N^2 over N >= 32")
    if not args.no_precond:
        precond_report(sizes, args.repeats, rows, args.json)
    if args.jit:
        jrows = []
        for N in sizes:
            jrows += jit_rows(N, args.repeats if N <= 32 else max(1, args.repeats - 2), rows)
        print_table(jrows, JIT_COLUMNS, title="NewtonKrylov() under jax.jit (float64) against the eager NumPy solve "
                                              "(target <= 1.2)")
        if args.json:
            write_results(args.json, "brusselator_jit", jrows)
    block_rows = [] if args.no_blocks else [blocks(N) for N in sizes]
    if block_rows:
        print_table(block_rows, BLOCK_COLUMNS, title="Sparse building blocks on the Brusselator")
    if args.json:
        out = [r for r in rows if r.get("time") is not None] + grow
        false_success = [r["case"] for r in rows if r["method"].startswith("steadysolve") and r.get("note") == "Success"
                         and not r.get("solved")]
        write_results(args.json, "brusselator", out, {"false_successes": false_success})
        if block_rows:
            write_results(args.json, "brusselator_blocks", block_rows)
    if any(math.isnan(r.get("resid", 0.0)) for r in rows):
        print("note: a non-finite residual above")


if __name__ == "__main__":
    main()
