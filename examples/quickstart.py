"""The DeepEquilibriumNetworks.jl README quickstart, in Python (PyTorch and JAX/Equinox).

    python examples/quickstart.py                  # both frameworks
    python examples/quickstart.py --framework jax  # one of them
    python examples/quickstart.py --quick          # same thing (it is already small)
    python examples/quickstart.py --out results/   # where quickstart.json (the gradient errors) goes

Model: ``Linear(2, 2)`` -> DEQ whose cell is the *sum* of two bias-free ``Linear(2, 2)`` layers,
one on the state ``z`` and one on the injection ``x`` (Lux's ``Parallel(+, ...)``), solved
continuously (``DynamicSS(Tsit5())``, abstol = reltol = 0.1, as in the README). On a random
input/target pair the script computes the squared error and its gradient with respect to every
parameter (implicit differentiation), then checks the gradient against central finite
differences of the same loss with the equilibrium solved tightly (float64): the implicit
gradient with ``DynamicSS(Tsit5())`` at 1e-10, the finite differences with Anderson at 1e-12
(the equilibrium is unique, so both see the same fixed point; Anderson reaches it in a few
iterations, where Tsit5 needs ~1,200 steps per solve at 1e-10).
"""

from __future__ import annotations

import os

import numpy as np

from _common import parse, script_parser, write_json

import steadysolve as ss

os.environ.setdefault("JAX_PLATFORMS", "cpu")
TIGHT = 1e-10
FD_TOL = 1e-12  # the finite-difference reference solves the equilibrium with Anderson to this tolerance


def run_torch(seed=0, verbose=True):
    """Returns (max relative gradient error vs FD at tight tolerance, gradient at README tolerance)."""
    import torch
    from torch import nn

    from steadysolve.adapters.torch import DEQ

    class SumCell(nn.Module):  # Parallel(+, Dense(2 => 2; use_bias=false), Dense(2 => 2; use_bias=false))
        def __init__(self):
            super().__init__()
            self.on_z, self.on_x = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False)

        def forward(self, z, x):
            return self.on_z(z) + self.on_x(x)

    torch.manual_seed(seed)
    cell = SumCell()

    def model_at(tol, solver=None):
        deq = DEQ(cell, solver=solver or ss.DynamicSS(ss.Tsit5()), abstol=tol, reltol=tol, maxiters=10_000,
                  on_failure="raise")
        return nn.Sequential(lin, deq)

    lin = nn.Linear(2, 2)
    lin.double(), cell.double()
    x, y = torch.rand(2, 1, dtype=torch.float64).T, torch.rand(2, 1, dtype=torch.float64).T
    params = list(lin.parameters()) + list(cell.parameters())

    def grads(tol):
        loss = (model_at(tol)(x) - y).pow(2).sum()
        g = torch.autograd.grad(loss, params)
        return float(loss.detach()), g

    loss, g_readme = grads(0.1)
    _, g_tight = grads(TIGHT)
    model = model_at(FD_TOL, ss.Anderson())
    worst = 0.0
    with torch.no_grad():
        for p, g in zip(params, g_tight):
            fd = torch.zeros_like(p)
            for i in range(p.numel()):
                h = 1e-6
                old = p.view(-1)[i].item()
                p.view(-1)[i] = old + h
                lp = float((model(x) - y).pow(2).sum())
                p.view(-1)[i] = old - h
                lm = float((model(x) - y).pow(2).sum())
                p.view(-1)[i] = old
                fd.view(-1)[i] = (lp - lm) / (2 * h)
            worst = max(worst, float((g - fd).abs().max() / fd.abs().max().clamp_min(1e-12)))
    if verbose:
        print(f"[torch] loss {loss:.6f}; gradients (DynamicSS(Tsit5()), abstol=reltol=0.1):")
        for (n, _), g in zip(list(lin.named_parameters()) + list(cell.named_parameters()), g_readme):
            print(f"    {n:12s} {np.array2string(g.numpy().ravel(), precision=4)}")
        print(f"[torch] max relative error of the implicit gradient vs finite differences: {worst:.2e}")
    return worst, [g.numpy() for g in g_readme]


def run_jax(seed=0, verbose=True):
    import jax

    jax.config.update("jax_enable_x64", True)
    import equinox as eqx
    import jax.numpy as jnp

    from steadysolve.adapters.jax import DEQ

    class SumCell(eqx.Module):
        on_z: eqx.nn.Linear
        on_x: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.on_z = eqx.nn.Linear(2, 2, use_bias=False, key=k1)
            self.on_x = eqx.nn.Linear(2, 2, use_bias=False, key=k2)

        def __call__(self, z, x):
            return self.on_z(z) + self.on_x(x)

    class Model(eqx.Module):
        lin: eqx.nn.Linear
        deq: DEQ

        def __call__(self, x):
            return self.deq(self.lin(x))

    k0, k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 4)
    lin, cell = eqx.nn.Linear(2, 2, key=k0), SumCell(k1)
    lin, cell = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64) if eqx.is_inexact_array(a) else a,
                                       (lin, cell))
    x, y = jax.random.uniform(k2, (2,), jnp.float64), jax.random.uniform(k3, (2,), jnp.float64)

    def make(tol, solver=None):
        return Model(lin, DEQ(cell, solver=solver or ss.DynamicSS(ss.Tsit5()), abstol=tol, reltol=tol,
                              maxiters=10_000))

    def loss(m):
        return jnp.sum((m(x) - y) ** 2)

    lval, g_readme = eqx.filter_jit(eqx.filter_value_and_grad(loss))(make(0.1))
    m_tight = make(TIGHT)
    g_tight = eqx.filter_jit(eqx.filter_grad(loss))(m_tight)
    params, static = eqx.partition(make(FD_TOL, ss.Anderson()), eqx.is_inexact_array)
    flat, unravel = jax.flatten_util.ravel_pytree(params)
    f = jax.jit(jax.vmap(lambda v: loss(eqx.combine(unravel(v), static))))  # all FD points in one call
    h = 1e-6
    eye = jnp.eye(flat.size, dtype=flat.dtype)
    fd = np.asarray((f(flat + h * eye) - f(flat - h * eye)) / (2 * h))
    ga = np.asarray(jax.flatten_util.ravel_pytree(eqx.filter(g_tight, eqx.is_inexact_array))[0])
    worst = float(np.abs(ga - fd).max() / max(np.abs(fd).max(), 1e-12))
    g_flat = np.asarray(jax.flatten_util.ravel_pytree(eqx.filter(g_readme, eqx.is_inexact_array))[0])
    if verbose:
        print(f"[jax]   loss {float(lval):.6f}; gradient (DynamicSS(Tsit5()), abstol=reltol=0.1), all "
              f"{g_flat.size} parameters: {np.array2string(g_flat, precision=4)}")
        print(f"[jax]   max relative error of the implicit gradient vs finite differences: {worst:.2e}")
    return worst, g_flat


def main(argv=None):
    ap = script_parser(__doc__)
    ap.add_argument("--framework", choices=["torch", "jax", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="accepted for symmetry; the example is already small")
    ap.add_argument("--seed", type=int, default=0)
    args = parse(ap, argv)
    errs = {}
    if args.framework in ("torch", "both"):
        errs["torch"] = run_torch(args.seed)[0]
    if args.framework in ("jax", "both"):
        import jax.flatten_util  # noqa: F401
        errs["jax"] = run_jax(args.seed)[0]
    bad = {k: v for k, v in errs.items() if not v < 1e-4}
    if bad:
        raise SystemExit(f"gradient check FAILED: {bad}")
    print("gradient check passed (relative error < 1e-4)")
    write_json(args, "quickstart.json", {"max_relative_gradient_error": errs, "seed": args.seed})
    return errs


if __name__ == "__main__":
    main()
