"""A user's script, as a type checker sees it after the README's install (``pip install -e ".[test]"``).

``.ci/run`` and ``tests/test_typecheck.py`` run pyright on a copy of it outside the checkout (where a
user's own project lives): every import must resolve and every call must match the annotated
signatures. Not collected by pytest (no ``test_`` prefix); it also runs as a plain script.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

import steadysolve as ss
from steadysolve.adapters.jax import DEQ as JaxDEQ
from steadysolve.adapters.jax import fixed_point as jax_fixed_point
from steadysolve.adapters.torch import DEQ, Implicit


def residual(u: np.ndarray, p: np.ndarray) -> np.ndarray:
    return u - p * np.cos(u)


prob = ss.NonlinearProblem(residual, np.zeros(3), np.array([0.5, 1.0, 2.0]))
sol: ss.Solution = ss.solve(prob, ss.NewtonKrylov(linsolve=ss.GMRES(restart=20)), abstol=1e-10, maxiters=50)
if sol.successful:
    print(sol.u, sol.retcode.name, sol.stats.nf)
code: ss.ReturnCode = ss.solve(prob, "anderson", reltol=1e-8, batch_axis=None, store_trace=True).retcode
print(code, ss.available())

class Cell(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(0.5 * self.lin(z) + x)


deq = DEQ(Cell(), solver=ss.Anderson(memory=4), backward=Implicit(solver="gmres"), abstol=1e-6, max_nfe=60)
z = deq(torch.randn(2, 4))
z.sum().backward()

z_jax, stats = jax.jit(lambda a: jax_fixed_point(lambda z, a: 0.5 * jnp.tanh(z) + a, jnp.zeros(2), a))(jnp.ones(2))
print(z_jax, stats.retcode_array)
layer = JaxDEQ(lambda z, x: jnp.tanh(0.5 * z + x), "anderson", maxiters=30)
print(layer(jnp.ones(3)))

# scalar roots on an array of brackets
brackets = ss.IntervalNonlinearProblem(lambda x, p: x * x - p, (np.zeros(3), np.full(3, 2.0)), np.array([1.0, 2.0, 3.0]))
roots: ss.Solution = ss.solve(brackets, ss.ITP(n0=2), abstol=1e-12)
print(roots.u, roots.stats.niter_per_element, ss.available("bracketing"))
