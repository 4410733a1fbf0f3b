"""Many small systems: one batched steadysolve call against a Python loop of SciPy's ``hybr``.

``N`` independent 2-10-dimensional systems (Rosenbrock, Powell singular, helical valley,
Broyden tridiagonal), each started at a random perturbation of its standard start, are
solved in ONE call with ``batch_axis=0`` (NumPy, PyTorch, jitted JAX) and, as a user would
do it today, by ``scipy.optimize.root(method="hybr")`` in a loop. A system counts as solved
when ``max|F(u)| <= 1e-6`` recomputed on the returned point; a reported success above that
is a false success. Ratio = steadysolve time / loop time (lower is better; target <= 0.1).

    python -m benchmarks.many_small [--n 10000] [--quick] [--json results.json]
"""

from __future__ import annotations

import argparse
import time

from benchmarks._common import print_table, single_thread, write_results  # noqa: E402

single_thread()

import numpy as np  # noqa: E402


# --- the problems, written once on the last axis so a row and a (B, n) batch both work ---------
def rosenbrock(xp, x):
    return xp.stack([10.0 * (x[..., 1] - x[..., 0] ** 2), 1.0 - x[..., 0]], axis=-1)


def powell_singular(xp, x):
    a, b, c, d = x[..., 0], x[..., 1], x[..., 2], x[..., 3]
    return xp.stack([a + 10.0 * b, 5.0 ** 0.5 * (c - d), (b - 2.0 * c) ** 2, 10.0 ** 0.5 * (a - d) ** 2], axis=-1)


def helical_valley(xp, x):
    a, b, c = x[..., 0], x[..., 1], x[..., 2]
    theta = xp.atan(b / a) / (2.0 * np.pi) + xp.where(a < 0.0, 0.5, 0.0)  # MGH's branch
    r = xp.sqrt(a * a + b * b)
    return xp.stack([10.0 * (c - 10.0 * theta), 10.0 * (r - 1.0), c], axis=-1)


def broyden_tridiagonal(xp, x):
    n = x.shape[-1]
    cols = []
    for i in range(n):
        left = x[..., i - 1] if i > 0 else 0.0 * x[..., i]
        right = x[..., i + 1] if i < n - 1 else 0.0 * x[..., i]
        cols.append((3.0 - 2.0 * x[..., i]) * x[..., i] - left - 2.0 * right + 1.0)
    return xp.stack(cols, axis=-1)


PROBLEMS = [  # name, F, standard start
    ("rosenbrock (2)", rosenbrock, np.array([-1.2, 1.0])),
    ("powell singular (4)", powell_singular, np.array([3.0, -1.0, 0.0, 1.0])),
    ("helical valley (3)", helical_valley, np.array([-1.0, 0.0, 0.0])),
    ("broyden tridiagonal (10)", broyden_tridiagonal, -np.ones(10)),
]


def starts(x0, count, seed):
    rng = np.random.default_rng(seed)
    return x0 + 0.5 * rng.standard_normal((count, x0.size)) * np.maximum(np.abs(x0), 1.0)


def check(F, U):
    return np.max(np.abs(F(np, U)), axis=-1) <= 1e-6


def run_scipy(F, U0):
    from scipy.optimize import root

    t0 = time.perf_counter()
    out = [root(lambda x: F(np, x), u0, method="hybr", tol=1e-10) for u0 in U0]
    t = time.perf_counter() - t0
    U = np.stack([r.x for r in out])
    return t, U, np.array([r.success for r in out])


def run_ours(F, U0, backend, alg):
    import steadysolve as ss

    if backend == "numpy":
        prob = ss.NonlinearProblem(lambda u, p: F(np, u), U0.copy())
        t0 = time.perf_counter()
        sol = ss.solve(prob, alg, abstol=1e-10, maxiters=100, batch_axis=0)
        t = time.perf_counter() - t0
        return t, np.asarray(sol.u), np.asarray(sol.retcode_array) == 0
    if backend == "torch":
        import torch

        u0 = torch.from_numpy(U0.copy())
        prob = ss.NonlinearProblem(lambda u, p: F(torch, u), u0)
        # warm-up on two systems: torch.func's first use imports its transforms (seconds, once)
        ss.solve(ss.NonlinearProblem(prob.f, u0[:2].clone()), alg, maxiters=2, batch_axis=0)
        t0 = time.perf_counter()
        sol = ss.solve(prob, alg, abstol=1e-10, maxiters=100, batch_axis=0)
        t = time.perf_counter() - t0
        return t, sol.u.numpy(), np.asarray(sol.retcode_array) == 0
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)

    @jax.jit
    def solve(u0):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: F(jnp, u), u0), alg, abstol=1e-10, maxiters=100,
                       batch_axis=0)
        return sol.u, sol.retcode_array

    u0 = jnp.asarray(U0)
    t0 = time.perf_counter()
    jax.block_until_ready(solve(u0))  # compile (and one run) outside the timing; the compile column
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    u, rc = jax.block_until_ready(solve(u0))
    t = time.perf_counter() - t0
    run_ours.compile_s = max(first - t, 0.0)
    return t, np.asarray(u), np.asarray(rc) == 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=None, help="systems per problem (default 10,000; 1,000 with --quick)")
    ap.add_argument("--alg", default="newton", help="steadysolve algorithm name")
    ap.add_argument("--quick", action="store_true", help="1,000 systems per problem")
    ap.add_argument("--backends", default="numpy,torch,jax")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    count = args.n if args.n is not None else (1000 if args.quick else 10000)
    rows = []
    for k, (name, F, x0) in enumerate(PROBLEMS):
        U0 = starts(x0, count, seed=k)
        t_ref, U_ref, ok_ref = run_scipy(F, U0)
        solved_ref = check(F, U_ref)
        rows.append({"problem": name, "method": "scipy hybr loop", "time": t_ref, "solved": int(solved_ref.sum()),
                     "false": int((ok_ref & ~solved_ref).sum()), "ratio": 1.0})
        for backend in args.backends.split(","):
            run_ours.compile_s = None
            try:
                t, U, ok = run_ours(F, U0, backend, args.alg)
            except ImportError as e:
                print(f"skipping {backend}: {e}")
                continue
            solved = check(F, U)
            rows.append({"problem": name, "method": f"{args.alg} batched ({backend})", "time": t,
                         "solved": int(solved.sum()), "false": int((ok & ~solved).sum()), "ratio": t / t_ref,
                         "compile": run_ours.compile_s})
    print_table(rows, [("problem", "problem", ""), ("method", "method", ""), ("time", "time [s]", ".3f"),
                       ("solved", f"solved/{count}", "d"), ("false", "false success", "d"),
                       ("ratio", "ratio vs loop", ".3f"), ("compile", "jit compile [s]", ".2f")],
                title=f"{count} systems per problem, one batched call vs a loop of scipy.optimize.root(hybr)")
    if args.json:
        write_results(args.json, "many_small", rows, {"count": count, "alg": args.alg})
    return rows


if __name__ == "__main__":
    main()
