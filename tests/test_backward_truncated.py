"""The DEQ modules' default adjoint: the Neumann series, truncated at ``TRUNCATE`` terms for the elements whose
residual contracts slower than ``CONTRACTION`` per term and whose forward solve failed
(``adapters/_implicit._truncated_series``). Where it
contracts fast the gradient is exact (finite differences, float64); where the series diverges it stops at the
truncation with a reported failure and a gradient on the incoming gradient's scale."""

import numpy as np
import pytest

from steadysolve.adapters import Implicit
from steadysolve.adapters.backward import CONTRACTION, DEQ_ADJOINT, TRUNCATE, resolve_backward


def test_truncation_is_the_deq_default_only():
    assert resolve_backward("DEQ", "implicit", 0.0, 1e-3, 50, DEQ_ADJOINT).truncate == TRUNCATE
    # a cap or a solver of the user's: their series / solver, run to their cap
    assert resolve_backward("DEQ", Implicit(maxiters=30), 0.0, 1e-3, 50, DEQ_ADJOINT).truncate == 0
    assert resolve_backward("DEQ", Implicit(solver="fixed_point"), 0.0, 1e-3, 50, DEQ_ADJOINT).truncate == 0
    assert resolve_backward("fixed_point", "implicit", 0.0, 1e-3, 50).truncate == 0  # GMRES elsewhere
    assert 0 < CONTRACTION < 1


def _torch_cell(torch, scale):
    g = torch.Generator().manual_seed(0)
    W = torch.randn(6, 6, generator=g, dtype=torch.float64)
    W = scale * W / torch.linalg.matrix_norm(W, 2)
    return lambda z, x: torch.tanh(z @ W.T + x)


def test_torch_contractive_gradient_is_exact_past_the_truncation():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    deq = DEQ(_torch_cell(torch, 0.5), abstol=1e-13, reltol=0.0, maxiters=200)
    x = torch.linspace(-1, 1, 18, dtype=torch.float64).reshape(3, 6).requires_grad_(True)
    c = torch.cos(torch.arange(18.0, dtype=torch.float64)).reshape(3, 6)
    (g,) = torch.autograd.grad((deq(x) * c).sum(), x)
    bs = deq.backward_stats
    assert bs.successful and bs.niter > TRUNCATE  # tolerance 1e-13 needs more terms than the truncation
    eps, fd = 1e-6, torch.zeros_like(x)
    with torch.no_grad():
        for i in range(3):
            for j in range(6):
                e = torch.zeros_like(x)
                e[i, j] = eps
                fd[i, j] = ((deq(x + e) - deq(x - e)) * c).sum() / (2 * eps)
    np.testing.assert_allclose(g.numpy(), fd.numpy(), rtol=1e-7, atol=1e-9)


def test_torch_divergent_series_stops_at_the_truncation_only_where_the_forward_failed():
    torch = pytest.importorskip("torch")
    from steadysolve.adapters.torch import DEQ

    # z = 1.5 z + x: Anderson finds the repelling fixed point z* = -2x, where sum_k 1.5^k g diverges; a
    # converged forward gets the series to its end (here: Diverged), a failed one (fixed-point iteration
    # runs away from it) its truncated sum
    x = torch.ones(2, 3, dtype=torch.float64, requires_grad=True)
    deq = DEQ(lambda z, x: 1.5 * z + x, abstol=1e-10, reltol=0.0, on_failure="ignore")
    (g,) = torch.autograd.grad(deq(x).sum(), x)
    bs = deq.backward_stats
    np.testing.assert_allclose(deq(x).detach().numpy(), -2.0, atol=1e-8)
    assert deq.forward_stats.successful and not bs.successful and bs.niter > TRUNCATE
    capped = DEQ(lambda z, x: 1.5 * z + x, solver="fixed_point", maxiters=30, abstol=1e-10, reltol=0.0,
                 on_failure="ignore")
    (g,) = torch.autograd.grad(capped(x).sum(), x)
    bs = capped.backward_stats
    assert not capped.forward_stats.successful and not bs.successful and bs.nfailed == 2 and bs.niter == TRUNCATE
    assert torch.isfinite(g).all() and float(g.abs().max()) <= 1.5 ** TRUNCATE


@pytest.mark.slow
def test_jax_contractive_gradient_is_exact_past_the_truncation():
    jax = pytest.importorskip("jax")
    eqx = pytest.importorskip("equinox")
    import jax.numpy as jnp

    from steadysolve.adapters.jax import DEQ

    W = np.random.default_rng(0).standard_normal((6, 6))
    W = jnp.asarray(0.5 * W / np.linalg.norm(W, 2))

    class Cell(eqx.Module):
        w: jnp.ndarray

        def __call__(self, z, x):
            return jnp.tanh(self.w @ z + x)

    deq = DEQ(Cell(W), latent_shape=(6,), abstol=1e-13, reltol=0.0, maxiters=200)
    x = jnp.linspace(-1.0, 1.0, 6)
    c = jnp.cos(jnp.arange(6.0))
    loss = lambda d, x: jnp.sum(d(x) * c)  # noqa: E731
    gx = jax.grad(loss, argnums=1)(deq, x)
    eps = 1e-6
    fd = np.array([(loss(deq, x.at[j].add(eps)) - loss(deq, x.at[j].add(-eps))) / (2 * eps) for j in range(6)])
    np.testing.assert_allclose(np.asarray(gx), fd, rtol=1e-7, atol=1e-9)
    # the jitted transpose (both phases traced) agrees with the eager one
    gj = eqx.filter_jit(jax.grad(loss, argnums=1))(deq, x)
    np.testing.assert_allclose(np.asarray(gj), np.asarray(gx), rtol=1e-10, atol=1e-12)
