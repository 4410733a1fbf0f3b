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

Then, for every registered solver name, the evaluations of f (JVPs counted) of one forward per
sample under the same budget of 50 (``--budget max_nfe`` or ``maxiters``).

    python -m benchmarks.deq_jax [--repeats 5] [--tol 1e-4] [--skip-dense] [--solvers all] [--budget max_nfe]

``--capped`` runs only the capped-regime training rows instead (:func:`capped_training`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

jax.config.update("jax_enable_x64", False)

import steadysolve as ss  # noqa: E402
from steadysolve.adapters import Implicit  # noqa: E402
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
    """One application of the cell under jit, as the slope of a ``fori_loop`` of 10 vs 60 of them
    (fastest runs).

    The weights are arguments of the jitted loop, as in the solvers (closed over as constants,
    XLA on CPU runs these products 2-3x slower and t_f would be overstated)."""
    def many(k):
        return jax.jit(lambda z, x, W1, W2: jax.lax.fori_loop(0, k, lambda i, z: cell(z, x, W1, W2), z))

    z0 = jnp.zeros_like(x)
    m10, m60 = many(10), many(60)
    t = interleaved({10: lambda: m10(z0, x, W1, W2), 60: lambda: m60(z0, x, W1, W2)}, 3 * repeats, min)
    return (t[60] - t[10]) / 50


def interleaved(runs: dict, repeats: int, stat=statistics.median) -> dict:
    """Median (or ``stat``) time of each ``runs[key]()`` (jitted, warmed up first), the runs alternating
    so that a shared, loaded machine slows all of them alike."""
    for fn in runs.values():
        jax.block_until_ready(fn())
    times = {k: [] for k in runs}
    for _ in range(max(repeats, 5)):
        for k, fn in runs.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[k].append(time.perf_counter() - t)
    return {k: stat(v) for k, v in times.items()}


def per_iteration(x, W1, W2, tf, repeats, lo=10, hi=40):
    """Anderson's cost per iteration beyond its one ``f``, under jit, as a multiple of ``t_f``:
    the slope of the forward time between ``lo`` and ``hi`` iterations (a tolerance that is never
    met, so every run takes exactly that many), minus ``t_f``. Same for jaxopt. Slopes and ``t_f``
    use the fastest of the runs (the intrinsic cost; medians on a loaded machine mix in its load)."""
    import jaxopt

    def ours(k):
        def fwd(x, W1, W2):
            z, st = fixed_point(cell, jnp.zeros_like(x), x, W1, W2, solver="anderson", abstol=1e-30,
                                reltol=0.0, maxiters=k)
            return z, st.niter
        return jax.jit(fwd)

    def theirs(k):
        solver = jaxopt.AndersonAcceleration(fixed_point_fun=cell, history_size=5, tol=0.0, maxiter=k,
                                             implicit_diff=True, jit=True)
        return jax.jit(lambda x, W1, W2: (lambda r: (r.params, r.state.iter_num))(
            solver.run(jnp.zeros_like(x), x, W1, W2)))

    def bare(k):  # k applications of f alone: t_f measured in the same rotation (same load)
        return jax.jit(lambda x, W1, W2: (jax.lax.fori_loop(0, k, lambda i, z: cell(z, x, W1, W2),
                                                            jnp.zeros_like(x)), jnp.asarray(k)))

    fns = {(name, k): mk(k) for name, mk in (("steadysolve", ours), ("jaxopt", theirs), ("f", bare))
           for k in (lo, hi)}
    iters = {key: int(np.max(np.asarray(fn(x, W1, W2)[1]))) for key, fn in fns.items()}
    t = interleaved({key: (lambda fn=fn: fn(x, W1, W2)) for key, fn in fns.items()}, 3 * repeats, min)
    tf = (t[("f", hi)] - t[("f", lo)]) / (hi - lo)
    out = {}
    for name in ("steadysolve", "jaxopt", "f"):
        di = iters[(name, hi)] - iters[(name, lo)]
        slope = (t[(name, hi)] - t[(name, lo)]) / max(di, 1)
        out[name] = (slope, (slope - tf) / tf, iters[(name, lo)], iters[(name, hi)])
    return out


def resid(z, x, W1, W2):
    return float(jnp.max(jnp.abs(cell(z, x, W1, W2) - z)))


def ours(x, W1, W2, tol, **kw):
    def fwd(x, W1, W2):
        z, st = fixed_point(cell, jnp.zeros_like(x), x, W1, W2, solver="anderson", abstol=tol, reltol=0.0,
                            maxiters=500, **kw)
        return z, st.nf

    def loss(W1, W2, x):
        return jnp.sum(fwd(x, W1, W2)[0])

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1))), lambda out: int(np.max(np.asarray(out[1])))


def jaxopt_anderson(x, W1, W2, tol):
    import jaxopt

    solver = jaxopt.AndersonAcceleration(fixed_point_fun=lambda z, x, W1, W2: cell(z, x, W1, W2), history_size=5,
                                         tol=tol, maxiter=500, implicit_diff=True, jit=True)

    def fwd(x, W1, W2):
        res = solver.run(jnp.zeros_like(x), x, W1, W2)
        return res.params, res.state.iter_num

    def loss(W1, W2, x):
        return jnp.sum(fwd(x, W1, W2)[0])

    return jax.jit(fwd), jax.jit(jax.grad(loss, argnums=(0, 1))), lambda out: int(out[1]) + 1


def optimistix_fp(x, W1, W2, tol, skip_dense):
    import optimistix as optx

    solver = optx.FixedPointIteration(rtol=0.0, atol=tol)

    def fwd(x, W1, W2):
        sol = optx.fixed_point(lambda z, a: cell(z, *a), solver, jnp.zeros_like(x), (x, W1, W2), max_steps=2000,
                               throw=False)
        return sol.value, sol.stats["num_steps"]

    def loss(W1, W2, x):
        return jnp.sum(fwd(x, W1, W2)[0])

    grad = None if skip_dense else jax.jit(jax.grad(loss, argnums=(0, 1)))
    return jax.jit(fwd), grad, lambda out: int(out[1]) + 1


def evaluations_per_solver(x, W1, W2, tol, names, budget, cap):
    """Evaluations of f (JVPs counted) of one jitted forward per sample (``batch_axis=0``) for each
    solver name under ``{budget: cap}``, from the solve's own counters; ``None`` for a solver the budget
    refuses (one iteration of a dense method costs a Jacobian of 100 JVPs)."""
    from steadysolve.adapters._budget import budgeted
    from steadysolve.registry import resolve

    out = {}
    for name in names:
        if budget == "max_nfe":
            try:
                budgeted("fixed_point", resolve(name), cap, D)
            except ValueError:
                out[name] = None
                continue

        def fwd(x, W1, W2, name=name):
            _, st = fixed_point(cell, jnp.zeros_like(x), x, W1, W2, solver=name, abstol=tol, reltol=0.0,
                                batch_axis=0, **{budget: cap})
            return st.nf + st.njvp, jnp.sum(st.retcode_array != 0)

        ev, nfailed = jax.jit(fwd)(x, W1, W2)
        out[name] = (int(ev), int(nfailed))
    return out


def capped_training(names, epochs=8, seed=0, cap=50, ftol=1e-3):
    """The capped regime, trained: the digits DEQ of ``deq_torch --data digits`` (64-wide cell, batch 128,
    Adam 1e-3, the same initial weights and batches) as an Equinox ``DEQ`` with torchdeq's test
    (``abstol=ftol, reltol=0, norm="l2"``, per sample) and ``max_nfe=cap`` for every solver name, against
    torchdeq (Anderson, ``f_max_iter=cap``, IFT), trained in the same run by ``deq_torch`` (a subprocess).
    Rows: test accuracy, ms per step (jitted step, compile excluded), mean evaluations of f per forward."""
    import subprocess
    import sys

    import equinox as eqx
    import optax
    import torch

    from benchmarks.problems.digits import load_digits
    from steadysolve.adapters.jax import DEQ

    Xtr, ytr, Xte, yte = load_digits(seed)
    torch.manual_seed(seed)  # deq_torch's initial weights: its layers are created in this order
    lins = dict(inp=torch.nn.Linear(64, 64), out=torch.nn.Linear(64, 10), a=torch.nn.Linear(64, 320),
                b=torch.nn.Linear(320, 64))
    params0 = {k: (jnp.asarray(v.weight.detach().numpy()).T, jnp.asarray(v.bias.detach().numpy()))
               for k, v in lins.items()}
    batches = []
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        perm = torch.randperm(len(Xtr), generator=g)
        batches += [perm[i:i + 128].numpy() for i in range(0, len(Xtr), 128)]
    Xtr_j, ytr_j, Xte_j = (jnp.asarray(v) for v in (Xtr, ytr, Xte))
    rows = {}

    def f(z, xin, p):
        return jnp.tanh((z + xin) @ p["a"][0] + p["a"][1]) @ p["b"][0] + p["b"][1]

    for name in names:
        deq = DEQ(lambda z, xp: f(z, *xp), solver=name, abstol=ftol, reltol=0.0, norm="l2", batch_axis=0,
                  max_nfe=cap)

        def logits(p, X, deq=deq):
            xin = X @ p["inp"][0] + p["inp"][1]
            z, st = deq((xin, p), z0=jnp.zeros_like(xin), return_stats=True)
            return z @ p["out"][0] + p["out"][1], st

        def loss(p, X, y, logits=logits):
            lg, st = logits(p, X)
            return optax.softmax_cross_entropy_with_integer_labels(lg, y).mean(), st

        opt = optax.adam(1e-3)

        @eqx.filter_jit
        def step(p, s, X, y, loss=loss, opt=opt):
            (val, st), grads = jax.value_and_grad(loss, has_aux=True)(p, X, y)
            upd, s = opt.update(grads, s, p)
            return optax.apply_updates(p, upd), s, st.nf + st.njvp

        p = params0
        s = opt.init(p)
        jax.block_until_ready(step(p, s, Xtr_j[batches[0]], ytr_j[batches[0]]))  # compile
        times, evals = [], []
        for b in batches:
            t = time.perf_counter()
            p, s, ne = step(p, s, Xtr_j[b], ytr_j[b])
            jax.block_until_ready(p)
            times.append(time.perf_counter() - t)
            evals.append(int(ne))
        acc = float(jnp.mean(jnp.argmax(eqx.filter_jit(logits)(p, Xte_j)[0], axis=1) == jnp.asarray(yte)))
        rows[f"steadysolve {name}"] = (acc, 1e3 * statistics.median(times), float(np.mean(evals)))
    out = subprocess.run([sys.executable, "-m", "benchmarks.deq_torch", "--data", "digits", "--capped", "--only",
                          "torchdeq", "--solvers", "none", "--epochs", str(epochs), "--seed", str(seed), "--ftol",
                          str(ftol), "--btol", str(ftol), "--maxiters", str(cap)],
                         capture_output=True, text=True, check=True).stdout
    row = next(line.split() for line in out.splitlines() if line.startswith("torchdeq "))
    rows["torchdeq (torch)"] = (float(row[-1]), float(row[1]), float(row[4]))
    print(f"\ncapped regime, digits DEQ (64-wide), seed {seed}, {epochs} epochs, abstol={ftol:g} (l2, per sample), reltol=0, "
          f"max_nfe={cap} (torchdeq: f_max_iter={cap}):")
    print(f"  {'':28s} {'test acc':>8s} {'ms/step':>8s} {'evals/fwd':>9s}  acc vs torchdeq (target >= -0.01)")
    ref = rows["torchdeq (torch)"][0]
    for name, (acc, ms, ev) in rows.items():
        print(f"  {name:28s} {acc:8.3f} {ms:8.2f} {ev:9.1f}  {acc - ref:+.3f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--solvers", default="all", help="comma-separated names for the evaluations-per-forward "
                    "rows ('all': every registered solver; 'none': skip them)")
    ap.add_argument("--budget", choices=["max_nfe", "maxiters"], default="max_nfe",
                    help="the per-solver rows' cap of 50: evaluations of f or iterations")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--skip-dense", action="store_true", help="skip optimistix forward+grad (dense Jacobian)")
    ap.add_argument("--capped", action="store_true", help="only the capped-regime training rows (digits DEQ, "
                    "torchdeq's test, max_nfe=50, every name in --solvers) against torchdeq")
    ap.add_argument("--epochs", type=int, default=8, help="--capped: training epochs")
    ap.add_argument("--seed", type=int, default=0, help="--capped: the seed of the split, initial weights and "
                    "batches (deq_torch's --seed)")
    a = ap.parse_args()
    if a.capped:
        names = (["anderson", "broyden", "fixed_point", "newton_krylov", "dynamic_ss"] if a.solvers == "all"
                 else [n for n in a.solvers.split(",") if n and n != "none"])
        capped_training(names, a.epochs, a.seed)
        return
    W1, W2, x = make_data()
    names = ss.available() if a.solvers == "all" else [n for n in a.solvers.split(",") if n and n != "none"]
    evals = evaluations_per_solver(x, W1, W2, a.tol, names, a.budget, 50)
    tf = time_f(x, W1, W2, a.repeats)
    per_it = per_iteration(x, W1, W2, tf, a.repeats)
    methods = [
        ("steadysolve anderson, GMRES adjoint", ours(x, W1, W2, a.tol)),
        ("steadysolve anderson, Anderson adjoint", ours(x, W1, W2, a.tol, backward=Implicit(solver="anderson"))),
        ("steadysolve anderson, batch_axis=0", ours(x, W1, W2, a.tol, batch_axis=0)),
        ("jaxopt AndersonAcceleration(5)", jaxopt_anderson(x, W1, W2, a.tol)),
    ]
    try:
        methods.append(("optimistix FixedPointIteration", optimistix_fp(x, W1, W2, a.tol, a.skip_dense)))
    except ImportError:
        pass
    runs = {}
    for name, (fwd, grad, _) in methods:
        runs[(name, "fwd")] = lambda fwd=fwd: fwd(x, W1, W2)
        if grad is not None:
            if "optimistix" in name:  # dense 12,800^2 Jacobian in its backward: once, outside the rotation
                continue
            runs[(name, "grad")] = lambda grad=grad: grad(W1, W2, x)
    t = interleaved(runs, a.repeats)
    rows = []
    for name, (fwd, grad, nfe_of) in methods:
        out = fwd(x, W1, W2)
        t_grad = t.get((name, "grad"), float("nan"))
        if grad is not None and "optimistix" in name:
            t_grad, _ = timeit(grad, W1, W2, x, repeats=1)
        rows.append((name, (t[(name, "fwd")], t_grad, nfe_of(out), resid(out[0], x, W1, W2))))
    best_peer = min(r[1][1] for r in rows if "steadysolve" not in r[0] and r[1][1] == r[1][1])
    print(f"DEQ cell 100->500->100, batch {B}, float32, tol {a.tol:g}; one f: {tf * 1e3:.3f} ms "
          f"(runs interleaved, median of {max(a.repeats, 5)})")
    print(f"{'method':42s} {'fwd ms':>8s} {'fwd+grad ms':>12s} {'NFE':>5s} {'overhead':>9s} "
          f"{'resid':>9s} {'grad/best peer':>15s}")
    for name, (t_fwd, t_grad, nfe, r) in rows:
        print(f"{name:42s} {t_fwd * 1e3:8.2f} {t_grad * 1e3:12.2f} {nfe:5d} {t_fwd / (nfe * tf):9.2f} "
              f"{r:9.2e} {t_grad / best_peer:15.2f}")
    print("\nper Anderson iteration under jit (slope between fixed iteration counts; target beyond f <= 0.3 t_f):")
    for name, (slope, beyond, i_lo, i_hi) in per_it.items():
        label = "bare f loop" if name == "f" else name
        print(f"  {label:12s} {slope * 1e3:7.3f} ms per iteration = t_f + {beyond:5.2f} t_f "
              f"(iterations {i_lo} -> {i_hi})")
    if evals:
        print(f"\nevaluations of f per forward (JVPs counted), batch_axis=0, {a.budget}=50, tol {a.tol:g}:")
        for name, v in evals.items():
            print(f"  {name:20s} " + ("refused: one iteration exceeds the budget" if v is None else
                                      f"{v[0]:6d}   ({v[1]} of {B} samples not converged)"))


if __name__ == "__main__":
    main()
