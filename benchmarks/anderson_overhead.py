"""Anderson's per-iteration cost beyond ``f`` under ``jax.jit`` (and eagerly on NumPy / torch).

    python -m benchmarks.anderson_overhead [--repeats 5] [--iters 100] [--json PATH]

The DEQ cell of ``deq_jax.py`` (``f(z) = tanh((z + x) @ W1) @ W2``, width 100 -> 500 -> 100,
float32), solved for exactly ``--iters`` iterations (tolerance 0) by ``ss.solve(...,
ss.Anderson(memory=5))`` inside ``jax.jit``, against ``--iters`` applications of ``f`` in a
``lax.fori_loop`` (the floor). Reported: ``beyond_f = (t_solve - t_floor) / iters`` and its
ratio to ``t_f`` (target <= 0.3 under jit). Batch 1 and 128. Ratios measured in one process.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from benchmarks._common import print_table, single_thread, write_results  # noqa: E402

single_thread()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import steadysolve as ss  # noqa: E402

D, H = 100, 500


def _median(fn, arg, repeats):
    jax.block_until_ready(fn(arg))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(arg))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def row(batch, iters, repeats, memory=5):
    rng = np.random.default_rng(0)
    W1 = rng.normal(size=(D, H)) / np.sqrt(D)
    W2 = rng.normal(size=(H, D)) / np.sqrt(H)
    s = 0.9 / (np.linalg.norm(W1, 2) * np.linalg.norm(W2, 2))
    W1, W2 = jnp.asarray(W1 * np.sqrt(s), jnp.float32), jnp.asarray(W2 * np.sqrt(s), jnp.float32)
    x = jnp.asarray(rng.normal(size=(batch, D)), jnp.float32)

    def g(z, p):
        return jnp.tanh((z + x) @ W1) @ W2

    floor = jax.jit(lambda z: jax.lax.fori_loop(0, iters, lambda i, z: g(z, None), z))

    def solve(z):
        sol = ss.solve(ss.FixedPointProblem(g, z), ss.Anderson(memory=memory), abstol=0.0, reltol=0.0,
                       maxiters=iters)
        return sol.u

    z0 = jnp.zeros((batch, D), jnp.float32)
    t_floor = _median(floor, z0, repeats)
    t_solve = _median(jax.jit(solve), z0, repeats)
    t_f = t_floor / iters
    beyond = (t_solve - t_floor) / iters
    return dict(benchmark="anderson_overhead", case=f"jit batch {batch}", t_f_us=1e6 * t_f, beyond_us=1e6 * beyond,
                time=beyond, peer="f itself (t_f)", peer_time=t_f, ratio=beyond / t_f, target=0.3,
                met=beyond / t_f <= 0.3)


COLUMNS = [("case", "case", "s"), ("t_f_us", "t_f us", ".1f"), ("beyond_us", "beyond f us", ".1f"),
           ("ratio", "beyond / t_f", ".2f"), ("target", "target", ".2f")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--iters", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    iters = 50 if args.quick else args.iters
    rows = [row(1, iters, args.repeats), row(128, iters, args.repeats)]
    print_table(rows, COLUMNS, "Anderson(memory=5) under jax.jit: cost per iteration beyond f")
    if args.json:
        write_results(args.json, "anderson_overhead", rows)
    return rows


if __name__ == "__main__":
    main()
