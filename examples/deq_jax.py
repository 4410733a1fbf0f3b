"""A Deep Equilibrium regression in JAX: learn y = 2x with a DEQ layer (Equinox + optax).

    python examples/deq_jax.py            # 400 Adam steps
    python examples/deq_jax.py --quick    # 150 steps
    python examples/deq_jax.py --out DIR  # where deq_jax.json (loss curve, prediction, solver counts) goes

The hidden state solves z* = tanh(A z* + B x + c) (Anderson acceleration, implicit
backward by GMRES); a linear head maps z* to y. After training, the model predicts
f(-5) ~ -10, and the solver statistics of the training inputs are printed.
"""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import equinox as eqx  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

from _common import parse, script_parser, write_json  # noqa: E402

from steadysolve.adapters.jax import DEQ  # noqa: E402
from steadysolve.demo.cli import int_at_least  # noqa: E402


class Cell(eqx.Module):
    """One application of the equilibrium map: z -> tanh(A z + B x + c)."""

    A: eqx.nn.Linear
    B: eqx.nn.Linear

    def __init__(self, width, key):
        ka, kb = jax.random.split(key)
        self.A = eqx.nn.Linear(width, width, use_bias=False, key=ka)
        self.B = eqx.nn.Linear(1, width, key=kb)

    def __call__(self, z, x):
        return jnp.tanh(0.5 * self.A(z) + self.B(x))


class Model(eqx.Module):
    deq: DEQ
    head: eqx.nn.Linear

    def __init__(self, key, width=16):
        k1, k2 = jax.random.split(key)
        self.deq = DEQ(Cell(width, k1), solver="anderson", latent_shape=(width,), abstol=1e-6)
        self.head = eqx.nn.Linear(width, 1, key=k2)

    def __call__(self, x):
        return self.head(self.deq(x))


def train(steps=400, log=print):
    """``(model, losses)`` after ``steps`` Adam steps on 64 points of y = 2x in [-6, 6]."""
    model = Model(jax.random.PRNGKey(0))
    xs = jnp.linspace(-6, 6, 64)[:, None]
    ys = 2 * xs
    opt = optax.adam(2e-2)
    opt_state = opt.init(eqx.filter(model, eqx.is_inexact_array))

    @eqx.filter_jit
    def step(model, opt_state):
        def loss(m):
            return jnp.mean((jax.vmap(m)(xs) - ys) ** 2)

        val, grads = eqx.filter_value_and_grad(loss)(model)
        updates, opt_state = opt.update(grads, opt_state)
        return eqx.apply_updates(model, updates), opt_state, val

    losses = []
    for i in range(steps):
        model, opt_state, val = step(model, opt_state)
        losses.append(float(val))
        if i % 100 == 0 or i == steps - 1:
            log(f"step {i:4d}  mse {losses[-1]:.2e}")
    return model, xs, losses


def main(argv=None):
    ap = script_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="150 Adam steps instead of 400")
    ap.add_argument("--steps", type=int_at_least(1), default=None, help="Adam steps (default 400, 150 with --quick)")
    args = parse(ap, argv)
    model, xs, losses = train(args.steps or (150 if args.quick else 400))
    # under vmap each sample has its own counters and return code: read the per-sample arrays
    _, stats = jax.vmap(lambda x: model.deq(x, return_stats=True))(xs)
    niter, codes = stats.niter, stats.retcode_array
    converged = int(jnp.sum(codes == 0))
    print(f"solver: iterations per sample {int(niter.min())}..{int(niter.max())}, "
          f"converged: {converged} of {len(codes)}")
    pred = float(model(jnp.array([-5.0]))[0])
    print(f"prediction at x = -5: {pred:.3f} (target -10)")
    write_json(args, "deq_jax.json", {"losses": losses, "prediction_at_minus_5": pred, "converged": converged,
                                      "samples": len(codes), "iterations": [int(niter.min()), int(niter.max())]})
    return pred, losses, converged


if __name__ == "__main__":
    main()
