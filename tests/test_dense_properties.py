"""Properties of the dense-Jacobian methods and their shared helpers; TR / LM as forward solvers of
the adapters (gradients vs finite differences); the finite-difference and AD Jacobians."""

import numpy as np
import pytest
from helpers import get_backend

import steadysolve as ss
from steadysolve.algorithms.dense import regularised
from steadysolve._backend.derivatives import Products
from steadysolve._backend.layout import Layout
from steadysolve.solve import build_context
from steadysolve.termination import get_norm


def _ctx(prob, bk):
    xp = bk.xp
    layout = Layout(xp, prob.u0.shape, None)
    fu0 = prob.residual(prob.u0, prob.p)
    return build_context(prob, prob.u0, layout, xp, fu0, 1e-12, 0.0, get_norm("max")), layout


def _mild(bk):
    """A mildly nonlinear 4 x 4 system and its exact Jacobian (NumPy)."""
    xp = bk.xp
    rng = np.random.default_rng(4)
    A = np.eye(4) * 3 + rng.normal(size=(4, 4)) * 0.3
    An = bk.asarray(A)
    f = lambda u, p: xp.matmul(An, u) + 0.1 * u ** 3 - 1.0  # noqa: E731
    jac = lambda u: A + np.diag(0.3 * u ** 2)  # noqa: E731
    return f, jac, A


@pytest.mark.slow
def test_lm_with_zero_damping_is_a_gauss_newton_step(bk):
    f, jac, _ = _mild(bk)
    u0 = np.array([0.3, -0.2, 0.1, 0.4])
    prob = ss.NonlinearProblem(f, bk.asarray(u0))
    ctx, layout = _ctx(prob, bk)
    alg = ss.LevenbergMarquardt()
    state = alg.init(prob, layout.to_rows(prob.u0), ctx)
    state = state._replace(lam=state.lam * 0.0)  # no damping: (J^T J) delta = -J^T F
    new = alg.step(prob, state, ctx)
    F0 = bk.to_numpy(f(bk.asarray(u0), None))
    gn = -np.linalg.solve(jac(u0), F0)  # square, full rank: Gauss-Newton = Newton
    np.testing.assert_allclose(bk.to_numpy(new.u)[0] - u0, gn, rtol=1e-6, atol=1e-10)  # FD Jacobian
    assert int(new.nreject) == 0


@pytest.mark.parametrize("alg,most", [("levenberg_marquardt", 8), ("newton", 2), ("trust_region", 3)])
def test_linear_system_in_a_few_steps(bk, alg, most):
    rng = np.random.default_rng(7)
    A = rng.normal(size=(6, 6)) + 6 * np.eye(6)
    b = rng.normal(size=6)
    An, bn, xp = bk.asarray(A), bk.asarray(b), bk.xp
    prob = ss.NonlinearProblem(lambda u, p: xp.matmul(An, u) - bn, bk.asarray(np.zeros(6)))
    sol = ss.solve(prob, alg, abstol=1e-11, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.Success
    assert int(sol.stats.niter) <= most, sol.stats
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.linalg.solve(A, b), atol=1e-10)


def test_regularisation_is_relative_to_each_row_and_column():
    xp = get_backend("numpy").xp
    J = np.array([[[1e33, 0.0], [0.0, 1e-30]]])
    A = regularised(xp, J)
    # a global eps * max|J| = 2e17 shift would swamp the 1e-30 entry; the local one does not
    assert A[0, 1, 1] == pytest.approx(1e-30, rel=1e-12)
    x = np.linalg.solve(A[0], np.array([1e33, 1e-30]))
    np.testing.assert_allclose(x, [1.0, 1.0], rtol=1e-12)
    Z = regularised(xp, np.zeros((1, 2, 2)))  # a zero Jacobian still gives a finite (huge) step
    assert np.all(np.isfinite(np.linalg.solve(Z[0], np.ones(2))))


def test_fd_jacobian_uses_per_component_steps():
    xp = get_backend("numpy").xp
    F = lambda u: u ** 2  # noqa: E731
    u = np.array([[1e6, 1.0, -1e-8]])
    J, nj = Products(xp, F).jacobian(u, F(u))
    # one step sqrt(eps) ||u|| = 0.015 would give 2 + 0.015 for the middle column
    np.testing.assert_allclose(np.diagonal(J[0]), 2 * u[0], rtol=1e-6, atol=1e-7)
    assert nj == 3


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_ad_jacobian_where_the_backend_has_ad(name):
    bk = get_backend(name)
    xp = bk.xp
    F = lambda u: u ** 3 + xp.sin(u)  # noqa: E731
    u0 = np.array([[0.3, -1.2, 2.0]])
    P = Products(xp, F)
    assert P.jvp_kind == "ad" and not P.jvp_costs_f
    u = bk.asarray(u0)
    J, _ = P.jacobian(u, F(u))
    np.testing.assert_allclose(np.diagonal(bk.to_numpy(J)[0]), 3 * u0[0] ** 2 + np.cos(u0[0]), rtol=1e-14)


def _coupled(torch, u):
    """A per-row residual with a full Jacobian: F_i = u_i^3 + sin(u_{i+1}) - u_0 u_i (cyclic)."""
    return u ** 3 + torch.sin(torch.roll(u, -1, dims=1)) - u[:, :1] * u


def _coupled_jac(u):
    B, n = u.shape
    J = np.zeros((B, n, n))
    for b in range(B):
        for i in range(n):
            J[b, i, i] += 3 * u[b, i] ** 2 - u[b, 0]
            J[b, i, (i + 1) % n] += np.cos(u[b, (i + 1) % n])
            J[b, i, 0] -= u[b, i]
    return J


@pytest.mark.parametrize("n", [1, 3, 20])
def test_torch_jacobian_paths_are_exact(n):
    """PyTorch's dense Jacobian: reverse mode, one backward pass on stacked rows when the products may
    widen the batch, n backward passes when not (or when the stacked rows disagree with the batch),
    forward-mode vmap beyond 16 columns: the same exact Jacobian every way."""
    torch = pytest.importorskip("torch")
    xp = get_backend("torch").xp
    rng = np.random.default_rng(1)
    u0 = rng.uniform(-1.0, 1.0, (4, n))
    u = torch.from_numpy(u0)
    F = lambda v: _coupled(torch, v)  # noqa: E731
    want = _coupled_jac(u0)
    P = Products(xp, F)
    J, nj = P.jacobian(u, F(u))
    np.testing.assert_allclose(J.numpy(), want, rtol=1e-13, atol=1e-13)
    assert nj == n
    calls = []
    P.widen = lambda idx: (calls.append(idx.shape[0]), F)[1]  # a row-wise F takes any number of rows
    J, _ = P.jacobian(u, F(u))
    np.testing.assert_allclose(J.numpy(), want, rtol=1e-13, atol=1e-13)
    assert calls == ([4 * n] if 2 <= n <= 16 else [])
    P = Products(xp, F)
    P.widen = lambda idx: (lambda v: F(v) + v.shape[0])  # not F on each row: detected, dropped
    J, _ = P.jacobian(u, F(u))
    np.testing.assert_allclose(J.numpy(), want, rtol=1e-13, atol=1e-13)
    assert P.widen is None or not 2 <= n <= 16


def test_torch_batched_newton_on_per_element_data():
    """A batched torch Newton solve whose f closes over per-element data (stacked rows do not fit it)
    and one whose rows are independent: both solve every element."""
    torch = pytest.importorskip("torch")
    c = torch.linspace(0.5, 2.0, 6, dtype=torch.float64)[:, None]
    for f in (lambda u, p: u ** 3 - c, lambda u, p: u ** 3 - 2.0):
        sol = ss.solve(ss.NonlinearProblem(f, torch.ones(6, 3, dtype=torch.float64)), "newton", abstol=1e-12,
                       batch_axis=0)
        assert sol.successful
        want = (c if f(torch.zeros(1), None).shape[0] == 6 else torch.tensor(2.0, dtype=torch.float64)) ** (1 / 3)
        np.testing.assert_allclose(sol.u.numpy(), torch.broadcast_to(want, (6, 3)).numpy(), rtol=1e-10)


@pytest.mark.parametrize("solver", ["trust_region", "levenberg_marquardt", "auto"])
def test_torch_gradcheck_dense_forward_solvers(solver):
    torch = pytest.importorskip("torch")
    from steadysolve.adapters import Implicit
    from steadysolve.adapters.torch import fixed_point

    g = torch.Generator().manual_seed(0)
    W0 = torch.randn(3, 3, generator=g, dtype=torch.float64)
    W = (0.5 * W0 / torch.linalg.matrix_norm(W0, 2)).requires_grad_(True)
    x = torch.randn(2, 3, generator=g, dtype=torch.float64).requires_grad_(True)
    z0 = torch.zeros(2, 3, dtype=torch.float64)

    def fun(x, W):
        return fixed_point(lambda z, x, W: torch.tanh(z @ W.T + x), z0, x, W, solver=solver,
                           backward=Implicit(reltol=1e-12), abstol=1e-12, reltol=0.0, maxiters=500)[0]

    assert torch.autograd.gradcheck(fun, (x, W), fast_mode=True)


@pytest.mark.parametrize("solver", ["levenberg_marquardt"] + [pytest.param(a, marks=pytest.mark.slow)
                                                             for a in ("trust_region", "auto")])
@pytest.mark.slow
def test_jax_root_gradient_vs_finite_differences(solver):
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp
    from steadysolve.adapters.jax import root

    A = jnp.asarray(np.diag([1.0, 2.0, 3.0]) + 0.2)

    def u_star(c):
        u, _ = root(lambda u, c: A @ u + 0.1 * u ** 3 - c, jnp.zeros(3), c, solver=solver, abstol=1e-13, reltol=0.0)
        return u

    c = jnp.asarray([0.5, -0.3, 1.0])
    w = jnp.asarray([1.0, -2.0, 0.5])
    grad = jax.jit(jax.grad(lambda c: w @ u_star(c)))(c)
    h = 1e-6
    fd = np.array([(float(w @ u_star(c + h * e)) - float(w @ u_star(c - h * e))) / (2 * h) for e in jnp.eye(3)])
    np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-6, atol=1e-9)
