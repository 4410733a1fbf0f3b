"""The PyTorch and JAX functional DEQs are one API: ``fixed_point(f, z0, *args, ...) -> (z, stats)``
with the same arguments in the same order and the same defaults (only the failure options differ:
PyTorch warns or raises eagerly and can fall back to a Jacobian-free gradient, JAX raises under
``jit``), and the same answer on the same problem."""

import inspect

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

from steadysolve.adapters.jax import fixed_point as jax_fixed_point  # noqa: E402
from steadysolve.adapters.torch import fixed_point as torch_fixed_point  # noqa: E402

def _params(fn):
    ps = list(inspect.signature(fn).parameters.values())
    assert ps[-1].kind is inspect.Parameter.VAR_KEYWORD  # unknown keywords get a clear error
    return [(p.name, p.kind, p.default) for p in ps[:-1]]


def test_both_fixed_points_take_the_same_arguments_in_the_same_order_with_the_same_defaults():
    shared = _params(torch_fixed_point)
    assert shared == _params(jax_fixed_point)
    names = [name for name, _, _ in shared]
    assert names == ["f", "z0", "args", "solver", "backward", "abstol", "reltol", "maxiters", "max_nfe", "norm",
                     "batch_axis", "on_failure", "failed_grad"]
    defaults = {name: d for name, _, d in shared}
    assert defaults["solver"] == "anderson" and defaults["backward"] == "implicit" and defaults["norm"] == "max"
    assert defaults["batch_axis"] is None and defaults["abstol"] is None and defaults["maxiters"] is None
    assert defaults["on_failure"] == "warn" and defaults["failed_grad"] == "implicit"


@pytest.mark.slow
def test_both_fixed_points_return_the_same_solution_and_stats_shape():
    rng = np.random.default_rng(3)
    W = 0.4 * rng.normal(size=(5, 5)) / np.sqrt(5)
    x = rng.normal(size=(2, 5))

    def cell_t(z, x, W):
        return torch.tanh(z @ W.T + x)

    def cell_j(z, x, W):
        return jnp.tanh(z @ W.T + x)

    # the defaults only: the same tolerances, norm, iteration cap and batch handling on both sides
    out_t = torch_fixed_point(cell_t, torch.zeros(2, 5, dtype=torch.float64), torch.tensor(x), torch.tensor(W))
    out_j = jax_fixed_point(cell_j, jnp.zeros((2, 5)), jnp.asarray(x), jnp.asarray(W))
    assert isinstance(out_t, tuple) and isinstance(out_j, tuple) and len(out_t) == len(out_j) == 2
    (zt, st), (zj, sj) = out_t, out_j
    assert tuple(zt.shape) == tuple(zj.shape) == (2, 5)
    np.testing.assert_allclose(zt.detach().numpy(), np.asarray(zj), atol=1e-10)
    np.testing.assert_allclose(np.tanh(np.asarray(zj) @ W.T + x), np.asarray(zj), atol=1e-10)  # a fixed point
    assert st.forward.successful and bool(sj.successful)
    assert int(st.forward.niter) == int(sj.niter)  # one problem, one solve: the same iterations
