"""DEQ forward and forward+grad in JAX: steadysolve.adapters.jax vs jaxopt and optimistix.

Cell ``f(z) = tanh((z + x) @ W1) @ W2`` (width 100 -> 500 -> 100, batch 128, float32,
x64 off), with ``||W1|| ||W2|| = 0.9`` so that plain iteration converges too. Same
process, jit compile excluded (one warm-up call), median of ``--repeats`` runs.

* steadysolve: ``fixed_point`` (Anderson, memory 5), implicit backward by GMRES (default)
  or by an Anderson adjoint; whole batch as one problem and per element (``batch_axis=0``).
* jaxopt: ``AndersonAcceleration(history_size=5, implicit_diff=True)``.
* optimistix: ``fixed_point`` with ``FixedPointIteration`` and its default ``ImplicitAdjoint``
  (its backward materialises the 12,800 x 12,800 Jacobian: run once, ``--skip-dense`` skips).

Tolerance: max-norm of ``f(z) - z`` below ``--tol`` for steadysolve and optimistix
(atol=tol, rtol=0); jaxopt's test is on the 2-norm of the whole residual, so it is given
``tol`` too (stricter). The table reports the residual each one reached.

    python benchmarks/deq_jax.py [--repeats 5] [--tol 1e-4] [--skip-dense]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", False)

from steadysolve.adapters import Implicit
from steadysolve.adapters.jax import fixed_point  # noqa: E402

B, D, H = 128, 100, 500


def make_data(seed=0):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(D, H)) / np.sqrt(D)
    W2 = rng.normal(size=(H, D)) / np.sqrt(H)
    s = 0.9 / (np.linalg.norm(W1, 2) * np.linalg.norm(W2, 2))
    W1, W2 = W1 * np.sqrt(s), W2 * np.sqrt(s)
    x = rng.normal(size=(B, D))
    f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
    return f32(W1), f32(W2), f32(x)


def cell(z, x, W1, W2):
    return jnp.tanh((z + x) @ W1) @ W2


def timeit(fn, *args, repeats=5):
    out = fn(*args)
    jax.block_until_ready(out)  # compile + warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def time_f(x, W1, W2, repeats):
    k = 100

    @jax.jit
    def many(z):
        return jax.lax.fori_loop(0, k, lambda i, z: cell(z, x, W1, W2) * 0.5, z)

    t, _ = timeit(many, jnp.zeros_like(x), repeats=repeats)
    return t / k


def resid(z, x, W1, W2):
    return float(jnp.max(jnp.abs(cell(z, x, W1, W2) - z)))


def ours(x, W1, W2, tol, repeats, **kw):
    def fwd(x, W1, W2):
        z, st = fixed_point(cell, jnp.zeros_like(x), x, W1, W2, solver="anderson", abstol=tol, reltol=0.0,
                            maxiters=500, **kw)
        return z, st.nf

    def loss(W1, W2, x):
        z, _ = fwd(x, W1, W2)
        return jnp.sum(z)

    t_fwd, (z, nf) = timeit(jax.jit(fwd), x, W1, W2, repeats=repeats)
    t_grad, _ = timeit(jax.jit(jax.grad(loss, argnums=(0, 1))), W1, W2, x, repeats=repeats)
    return t_fwd, t_grad, int(np.max(np.asarray(nf))), resid(z, x, W1, W2)


def jaxopt_anderson(x, W1, W2, tol, repeats):
    import jaxopt

    solver = jaxopt.AndersonAcceleration(fixed_point_fun=lambda z, x, W1, W2: cell(z, x, W1, W2), history_size=5,
                                         tol=tol, maxiter=500, implicit_diff=True, jit=True)

    def fwd(x, W1, W2):
        res = solver.run(jnp.zeros_like(x), x, W1, W2)
        return res.params, res.state.iter_num

    def loss(W1, W2, x):
        return jnp.sum(fwd(x, W1, W2)[0])

    t_fwd, (z, it) = timeit(jax.jit(fwd), x, W1, W2, repeats=repeats)
    t_grad, _ = timeit(jax.jit(jax.grad(loss, argnums=(0, 1))), W1, W2, x, repeats=repeats)
    return t_fwd, t_grad, int(it) + 1, resid(z, x, W1, W2)


def optimistix_fp(x, W1, W2, tol, repeats, skip_dense):
    import optimistix as optx

    solver = optx.FixedPointIteration(rtol=0.0, atol=tol)

    def fwd(x, W1, W2):
        sol = optx.fixed_point(lambda z, a: cell(z, *a), solver, jnp.zeros_like(x), (x, W1, W2), max_steps=2000,
                               throw=False)
        return sol.value, sol.stats["num_steps"]

    def loss(W1, W2, x):
        return jnp.sum(fwd(x, W1, W2)[0])

    t_fwd, (z, it) = timeit(jax.jit(fwd), x, W1, W2, repeats=repeats)
    t_grad = float("nan")
    if not skip_dense:
        t_grad, _ = timeit(jax.jit(jax.grad(loss, argnums=(0, 1))), W1, W2, x, repeats=1)
    return t_fwd, t_grad, int(it) + 1, resid(z, x, W1, W2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--skip-dense", action="store_true", help="skip optimistix forward+grad (dense Jacobian)")
    a = ap.parse_args()
    W1, W2, x = make_data()
    tf = time_f(x, W1, W2, a.repeats)
    rows = [
        ("steadysolve anderson, GMRES adjoint", ours(x, W1, W2, a.tol, a.repeats)),
        ("steadysolve anderson, Anderson adjoint", ours(x, W1, W2, a.tol, a.repeats, backward=Implicit(solver="anderson"))),
        ("steadysolve anderson, batch_axis=0", ours(x, W1, W2, a.tol, a.repeats, batch_axis=0)),
        ("jaxopt AndersonAcceleration(5)", jaxopt_anderson(x, W1, W2, a.tol, a.repeats)),
        ("optimistix FixedPointIteration", optimistix_fp(x, W1, W2, a.tol, a.repeats, a.skip_dense)),
    ]
    best_peer = min(r[1][1] for r in rows[3:] if r[1][1] == r[1][1])
    print(f"DEQ cell 100->500->100, batch {B}, float32, tol {a.tol:g}; one f: {tf * 1e3:.3f} ms")
    print(f"{'method':42s} {'fwd ms':>8s} {'fwd+grad ms':>12s} {'NFE':>5s} {'overhead':>9s} "
          f"{'resid':>9s} {'grad/best peer':>15s}")
    for name, (t_fwd, t_grad, nfe, r) in rows:
        print(f"{name:42s} {t_fwd * 1e3:8.2f} {t_grad * 1e3:12.2f} {nfe:5d} {t_fwd / (nfe * tf):9.2f} "
              f"{r:9.2e} {t_grad / best_peer:15.2f}")


if __name__ == "__main__":
    main()
