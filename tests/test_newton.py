"""Dense Newton-Raphson: user Jacobian vs assembled, quadratic convergence, size limit, failures."""

import numpy as np
import pytest
from helpers import get_backend, h_equation_nonlinear, h_reference

import steadysolve as ss


def _prob(bk, with_jac):
    c = bk.asarray(np.array([1.0, -2.0, 0.5]))
    xp = bk.xp

    def f(u, p):
        return u ** 3 + 2 * u - p

    def jac(u, p):
        return xp.eye(3, dtype=u.dtype) * (3 * u ** 2 + 2)

    return ss.NonlinearProblem(f, bk.asarray(np.zeros(3)), c, jac=jac if with_jac else None)


@pytest.mark.parametrize("with_jac", [True, False])
def test_quadratic_convergence(bk, with_jac):
    prob = _prob(bk, with_jac)
    sol = ss.solve(prob, "newton", abstol=1e-13, reltol=0.0, store_trace=True)
    assert sol.retcode is ss.ReturnCode.Success
    tr = sol.trace if isinstance(sol.trace, np.ndarray) else bk.to_numpy(sol.trace)
    tr = tr[tr > 1e-10]
    assert np.all(tr[-2:][1:] / tr[-2:][:-1] ** 2 < 5.0)
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u ** 3 + 2 * u - np.array([1.0, -2.0, 0.5]), 0, atol=1e-12)
    if with_jac:
        assert sol.stats.njvp == 0 and sol.stats.njac == sol.stats.nlinsolve
    else:
        assert sol.stats.njvp == 3 * sol.stats.nlinsolve


def test_h_equation():
    prob, kw = h_equation_nonlinear(get_backend("numpy"), n=50)
    sol = ss.solve(prob, ss.NewtonRaphson(), **kw)
    assert sol.successful
    np.testing.assert_allclose(sol.u, h_reference(50), atol=1e-9)


def test_size_limit_points_to_newton_krylov():
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(40))
    with pytest.raises(ValueError, match="n=40 unknowns.*max_size=30.*NewtonKrylov"):
        ss.solve(prob, ss.NewtonRaphson(max_size=30))
    assert ss.solve(prob, ss.NewtonRaphson(max_size=40)).successful


def test_singular_jacobian_no_exception():
    # J = 0 at the start: the shifted solve gives a huge step, rejected; honest failure, finite u.
    prob = ss.NonlinearProblem(lambda u, p: u ** 2 + 1.0, np.zeros(2), jac=lambda u, p: np.diag(2 * u))
    sol = ss.solve(prob, "newton", maxiters=30)
    assert not sol.successful
    assert np.all(np.isfinite(sol.u))
    # NaN Jacobian -> LinearSolveFailed
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(2), jac=lambda u, p: np.full((2, 2), np.nan))
    sol = ss.solve(prob, "newton", maxiters=5)
    assert sol.retcode is ss.ReturnCode.LinearSolveFailed


def test_bad_options():
    with pytest.raises(ValueError, match="max_size must be >= 1"):
        ss.NewtonRaphson(max_size=0)
    with pytest.raises(ValueError, match="linesearch"):
        ss.NewtonRaphson(linesearch="backtrack")


def test_batched_fixed_point_user_jacobian(bk):
    # g(u) = 0.5 cos(u) + p per element; the user Jacobian of g is (B, n, n), and the residual
    # Jacobian J_g - I must broadcast the identity over the batch axis.
    xp = bk.xp
    p = bk.asarray(np.array([[0.1, 0.2, 0.3], [1.0, -1.0, 0.5]]))

    def g(u, p):
        return 0.5 * xp.cos(u) + p

    def jac(u, p):
        eye = xp.eye(3, dtype=u.dtype)
        return -0.5 * xp.sin(u)[:, :, None] * eye[None, :, :]

    prob = ss.FixedPointProblem(g, bk.asarray(np.zeros((2, 3))), p, jac=jac)
    sol = ss.solve(prob, "newton", batch_axis=0, abstol=1e-12, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.Success
    u = bk.to_numpy(sol.u)
    np.testing.assert_allclose(u, 0.5 * np.cos(u) + bk.to_numpy(p), atol=1e-11)
    assert sol.stats.njvp == 0 and sol.stats.njac >= 1


def test_regularisation_is_relative_to_each_row(bk):
    # One row of the Jacobian is 1e33, the others 1: a shift of eps*max|J| (2e17) on every diagonal
    # entry used to freeze the small rows (MaxIters after 1000 iterations). Each row's own scale
    # keeps the exact Newton step: two iterations.
    target = bk.asarray(np.array([1.0, 2.0, 3.0]))
    weight = bk.asarray(np.array([1e33, 1.0, 1.0]))
    prob = ss.NonlinearProblem(lambda u, p: weight * (u - target), bk.asarray(np.zeros(3)))
    sol = ss.solve(prob, "newton", abstol=1e-8, maxiters=20)
    assert sol.retcode is ss.ReturnCode.Success
    assert sol.stats.niter <= 3
    np.testing.assert_allclose(bk.to_numpy(sol.u), [1.0, 2.0, 3.0], rtol=1e-12)
