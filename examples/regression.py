"""Regression ``y = 2x`` with a continuous DEQ (the SciML DEQ-as-neural-ODE demonstration).

    python examples/regression.py                      # torch and JAX, 300 Adam steps each
    python examples/regression.py --framework jax --quick
    python examples/regression.py --out results/

The DEQ's cell is ``Chain(Linear(1, 5), Linear(5, 1))`` applied to ``z + x``; its equilibrium is
the steady state of the vector field ``du/dt = NN(u + x) - u``, found by ``DynamicSS(Tsit5())``
with abstol = reltol = 1e-2. Trained with Adam(0.05) on inputs 1..10 with targets 2x; the script
prints the prediction at x = -5 (about -10) and writes the loss curve (``regression_loss.png``).
"""

from __future__ import annotations

import os
import time

import numpy as np
from _common import parse, script_parser

import steadysolve as ss
from steadysolve.demo.cli import int_at_least

os.environ.setdefault("JAX_PLATFORMS", "cpu")
TOL = 1e-2


def train_torch(steps=300, seed=0):
    """Returns (cell, losses, prediction at -5). ``cell(z, x) = NN(z + x)``."""
    import torch
    from torch import nn

    from steadysolve.adapters.torch import DEQ

    class Cell(nn.Module):
        def __init__(self):
            super().__init__()
            self.nn = nn.Sequential(nn.Linear(1, 5), nn.Linear(5, 1))

        def forward(self, z, x):
            return self.nn(z + x)

    torch.manual_seed(seed)
    cell = Cell()
    # fixed-point form z = NN(z + x): DynamicSS integrates du/dt = NN(u + x) - u to its steady state
    deq = DEQ(cell, solver=ss.DynamicSS(ss.Tsit5()), abstol=TOL, reltol=TOL, maxiters=1000, on_failure="ignore")
    xs = torch.arange(1.0, 11.0).reshape(-1, 1)
    ys = 2 * xs
    opt = torch.optim.Adam(cell.parameters(), lr=0.05)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = (deq(xs) - ys).pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        pred = float(deq(torch.tensor([[-5.0]])))
    return cell, losses, pred


def train_jax(steps=300, seed=0):
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import optax

    from steadysolve.adapters.jax import DEQ

    class Cell(eqx.Module):
        nn: eqx.nn.Sequential

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.nn = eqx.nn.Sequential([eqx.nn.Linear(1, 5, key=k1), eqx.nn.Linear(5, 1, key=k2)])

        def __call__(self, z, x):
            return self.nn(z + x)

    model = DEQ(Cell(jax.random.PRNGKey(seed)), solver=ss.DynamicSS(ss.Tsit5()), abstol=TOL, reltol=TOL,
                maxiters=1000)
    xs = jnp.arange(1.0, 11.0).reshape(-1, 1)
    ys = 2 * xs
    opt = optax.adam(0.05)
    state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, state):
        loss, g = eqx.filter_value_and_grad(lambda m: jnp.mean((jax.vmap(m)(xs) - ys) ** 2))(model)
        upd, state = opt.update(g, state, eqx.filter(model, eqx.is_inexact_array))
        return eqx.apply_updates(model, upd), state, loss

    losses = []
    for _ in range(steps):
        model, state, loss = step(model, state)
        losses.append(float(loss))
    pred = float(model(jnp.array([-5.0]))[0])
    return model, losses, pred


def plot_losses(curves, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, ls in curves.items():
        ax.semilogy(ls, label=name)
    ax.set(xlabel="Adam step", ylabel="mean squared error", title="DEQ regression y = 2x")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None):
    ap = script_parser(__doc__)
    ap.add_argument("--framework", choices=["torch", "jax", "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="150 steps instead of 300")
    ap.add_argument("--steps", type=int_at_least(1), default=None, help="Adam steps (default 300, 150 with --quick)")
    args = parse(ap, argv)
    steps = args.steps or (150 if args.quick else 300)
    os.makedirs(args.out, exist_ok=True)
    curves, preds = {}, {}
    for fw, fn in (("torch", train_torch), ("jax", train_jax)):
        if args.framework in (fw, "both"):
            t0 = time.perf_counter()
            _, curves[fw], preds[fw] = fn(steps)
            print(f"[{fw}] {steps} steps in {time.perf_counter() - t0:.1f} s: final loss {curves[fw][-1]:.2e}, "
                  f"prediction at x = -5: {preds[fw]:.3f} (target -10)")
    path = os.path.join(args.out, "regression_loss.png")
    plot_losses(curves, path)
    print(f"wrote {path}")
    return preds, path


if __name__ == "__main__":
    main()
