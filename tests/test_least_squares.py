"""NonlinearLeastSquaresProblem: GaussNewton, LevenbergMarquardt and TrustRegion on m x n Jacobians,
the codes that tell a zero residual (Success) from a nonzero minimum (LeastSquaresMinimum), batches,
every backend, jax.jit, and the boundary checks."""

import numpy as np
import pytest
from helpers import get_backend, slow_on

import steadysolve as ss

LSQ = ("gauss_newton", "levenberg_marquardt", "trust_region")
MIN = ss.ReturnCode.LeastSquaresMinimum


def rosenbrock3(xp):
    """MGH 1 as residuals, padded with a third (zero) residual so that m = 3 > n = 2."""
    def f(u, p):
        return xp.stack([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0], 0.0 * u[0]])
    return f


def freudenstein_roth(xp):
    """MGH 2: a local least-squares minimum with ||F||^2 = 48.9842... at (11.41..., -0.8968...), no root there."""
    def f(u, p):
        return xp.stack([-13.0 + u[0] + ((5.0 - u[1]) * u[1] - 2.0) * u[1],
                         -29.0 + u[0] + ((u[1] + 1.0) * u[1] - 14.0) * u[1]])
    return f


FR_MIN = np.array([11.41277899, -0.896805253])  # MGH's local minimiser (f = 48.9842536)


def exp_data():
    t = np.linspace(0.0, 4.0, 12)
    noise = np.array([0.02, -0.01, 0.015, -0.02, 0.01, 0.0, -0.005, 0.012, -0.01, 0.004, -0.003, 0.006])
    return t, 2.5 * np.exp(-1.3 * t) + 0.5 + noise


def exp_model(xp, t, y):
    def f(u, p):
        return u[0] * xp.exp(-u[1] * t) + u[2] - y
    return f


@pytest.mark.parametrize("alg", LSQ)
@pytest.mark.slow
def test_rosenbrock_residuals_zero_residual_is_success(bk, alg):
    prob = ss.NonlinearLeastSquaresProblem(rosenbrock3(bk.xp), bk.asarray([-1.2, 1.0]))
    sol = ss.solve(prob, alg, abstol=1e-10, maxiters=300)
    assert sol.retcode is ss.ReturnCode.Success and sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.u), [1.0, 1.0], atol=1e-8)
    assert tuple(sol.resid.shape) == (3,)
    assert float(sol.stats.objective) <= 1e-18


@pytest.mark.parametrize("alg", ("levenberg_marquardt", "trust_region", None))
@pytest.mark.slow
def test_freudenstein_roth_nonzero_minimum_is_not_a_root(bk, alg):
    prob = ss.NonlinearLeastSquaresProblem(freudenstein_roth(bk.xp), bk.asarray([0.5, -2.0]))
    sol = ss.solve(prob, alg, maxiters=300)
    assert sol.retcode is MIN and sol.successful  # a least-squares solution, never reported as a root
    assert sol.retcode is not ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), FR_MIN, rtol=1e-6)
    np.testing.assert_allclose(float(sol.stats.objective), 0.5 * 48.9842536, rtol=1e-8)
    r = bk.to_numpy(sol.resid)
    np.testing.assert_allclose(float(r @ r) / 2, float(sol.stats.objective), rtol=1e-12)


def test_gauss_newton_on_rank_deficient_minimum_is_honest():
    # Freudenstein-Roth's Jacobian is singular at its minimum: Gauss-Newton may not get there, but it
    # never reports a success it did not reach
    xp = get_backend("numpy").xp
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(freudenstein_roth(xp), np.array([0.5, -2.0])), "gauss_newton")
    if sol.retcode is MIN:
        np.testing.assert_allclose(sol.u, FR_MIN, rtol=1e-5)
    else:
        assert not sol.successful


@pytest.mark.parametrize("alg", LSQ)
@pytest.mark.slow
def test_linear_least_squares_matches_lstsq(bk, alg):
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(10, 3)), rng.normal(size=10)
    Ab, bb = bk.asarray(A), bk.asarray(b)
    xp = bk.xp
    prob = ss.NonlinearLeastSquaresProblem(lambda u, p: xp.matmul(Ab, u) - bb, bk.asarray(np.zeros(3)),
                                           jac=lambda u, p: Ab)
    sol = ss.solve(prob, alg, maxiters=100)
    ref = np.linalg.lstsq(A, b, rcond=None)[0]
    assert sol.retcode is MIN
    np.testing.assert_allclose(bk.to_numpy(sol.u), ref, rtol=1e-8, atol=1e-10)  # gtol = 1e-10 on the cosine
    np.testing.assert_allclose(bk.to_numpy(sol.resid), A @ ref - b, atol=1e-10)


@pytest.mark.slow
def test_consistent_overdetermined_system_in_one_gauss_newton_step(bk):
    rng = np.random.default_rng(1)
    A = rng.normal(size=(8, 4))
    x = np.array([1.0, -2.0, 0.5, 3.0])
    Ab, bb, xp = bk.asarray(A), bk.asarray(A @ x), bk.xp
    prob = ss.NonlinearLeastSquaresProblem(lambda u, p: xp.matmul(Ab, u) - bb, bk.asarray(np.zeros(4)),
                                           jac=lambda u, p: Ab)
    sol = ss.solve(prob, ss.GaussNewton(), abstol=1e-10)
    assert sol.retcode is ss.ReturnCode.Success
    assert int(sol.stats.niter) == 1 and int(sol.stats.nf) == 2
    np.testing.assert_allclose(bk.to_numpy(sol.u), x, rtol=1e-12)


@pytest.mark.parametrize("alg", LSQ)
@pytest.mark.slow
def test_exponential_fit_matches_scipy(bk, alg):
    from scipy.optimize import least_squares

    t, y = exp_data()
    ref = least_squares(exp_model(np, t, y), [1.0, 1.0, 0.0], args=(None,), xtol=1e-15, ftol=1e-15, gtol=1e-15).x
    prob = ss.NonlinearLeastSquaresProblem(exp_model(bk.xp, bk.asarray(t), bk.asarray(y)), bk.asarray([1.0, 1.0, 0.0]))
    sol = ss.solve(prob, alg, maxiters=200)
    assert sol.retcode is MIN
    np.testing.assert_allclose(bk.to_numpy(sol.u), ref, rtol=1e-6)


# NIST's BoxBOD: y = b1 (1 - exp(-b2 x)); from NIST's first start (1, 1) the rate b2 runs off to ~115, where
# exp(-b2 x) underflows at every x and the model is the constant b1: J's second column is exactly zero
BOXBOD_X = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 10.0])
BOXBOD_Y = np.array([109.0, 149.0, 149.0, 191.0, 213.0, 224.0])
BOXBOD_B = np.array([2.1380940889e02, 5.4723748542e-01])  # NIST's certified values


@pytest.mark.parametrize("alg", LSQ + (None,))
@pytest.mark.slow
def test_a_plateau_where_a_parameter_has_no_effect_is_no_minimum(bk, alg):
    """A stationary point where the residuals do not depend on a parameter (a zero Jacobian column) is a
    plateau of the model, not a fit: never LeastSquaresMinimum; from a good start the same model is fitted."""
    xp = bk.xp
    x, y = bk.asarray(BOXBOD_X), bk.asarray(BOXBOD_Y)
    f = lambda b, p: b[..., 0:1] * (1.0 - xp.exp(-b[..., 1:2] * x)) - y  # noqa: E731
    with np.errstate(over="ignore"):
        sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, bk.asarray([1.0, 1.0])), alg, maxiters=200)
        if alg in ("levenberg_marquardt", None):  # these run onto the plateau (GN and TR find the fit)
            assert bk.to_numpy(sol.u)[1] > 50.0
        if sol.retcode is MIN:  # a minimum is only ever the fit
            np.testing.assert_allclose(bk.to_numpy(sol.u), BOXBOD_B, rtol=1e-5)
        else:
            assert not sol.successful and sol.retcode is ss.ReturnCode.Stalled, sol.retcode
        good = ss.solve(ss.NonlinearLeastSquaresProblem(f, bk.asarray([100.0, 0.75])), alg, maxiters=200)
    assert good.retcode is MIN
    np.testing.assert_allclose(bk.to_numpy(good.u), BOXBOD_B, rtol=1e-5)


@slow_on("jax")
def test_batched_fits_per_element(bk):
    from scipy.optimize import least_squares

    t, y = exp_data()
    scales = np.array([1.0, 2.0, 0.5])
    Y = scales[:, None] * y[None, :]  # three data sets, one per batch element
    xp, T, Yb = bk.xp, bk.asarray(t), bk.asarray(Y)

    def f(u, p):  # u (3, 3), residuals (3, 12)
        return u[:, 0:1] * xp.exp(-u[:, 1:2] * T) + u[:, 2:3] - p

    prob = ss.NonlinearLeastSquaresProblem(f, bk.asarray(np.ones((3, 3)) * np.array([1.0, 1.0, 0.0])), Yb)
    sol = ss.solve(prob, batch_axis=0, maxiters=200)
    assert [c for c in sol.retcodes] == [MIN] * 3 and sol.successful
    assert tuple(sol.resid.shape) == (3, 12) and tuple(sol.stats.objective.shape) == (3,)
    for k in range(3):
        ref = least_squares(exp_model(np, t, Y[k]), [1.0, 1.0, 0.0], args=(None,), xtol=1e-15, ftol=1e-15,
                            gtol=1e-15).x
        np.testing.assert_allclose(bk.to_numpy(sol.u)[k], ref, rtol=1e-6)


def test_batch_mixing_root_and_minimum():
    # element 0 has an exact fit (Success), element 1 does not (LeastSquaresMinimum)
    t = np.linspace(0.0, 1.0, 5)
    Y = np.stack([1.0 + 2.0 * t, 1.0 + 2.0 * t + np.array([0.1, -0.1, 0.1, -0.1, 0.1])])
    prob = ss.NonlinearLeastSquaresProblem(lambda u, p: u[:, 0:1] + u[:, 1:2] * t - p, np.zeros((2, 2)), Y)
    sol = ss.solve(prob, "gauss_newton", batch_axis=0, abstol=1e-10)
    assert sol.retcodes == [ss.ReturnCode.Success, MIN]
    assert sol.retcode is MIN and sol.successful and sol.nfailed == 0


@pytest.mark.parametrize("alg", LSQ)
@pytest.mark.slow
def test_jit(alg):
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    f = freudenstein_roth(jnp)

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.NonlinearLeastSquaresProblem(f, u0), alg, maxiters=300)
        return sol.u, sol.retcode_array, sol.stats.objective

    if alg == "gauss_newton":  # rank-deficient at Freudenstein-Roth's minimum: the exponential fit instead
        t, y = exp_data()
        f = exp_model(jnp, jnp.asarray(t), jnp.asarray(y))
        eager = ss.solve(ss.NonlinearLeastSquaresProblem(f, jnp.asarray([1.0, 1.0, 0.0])), alg, maxiters=300)
        u, code, _ = run(jnp.asarray([1.0, 1.0, 0.0]))
        assert int(code) == MIN.code
        np.testing.assert_allclose(np.asarray(u), np.asarray(eager.u), rtol=1e-10)
        return
    u, code, obj = run(jnp.asarray([0.5, -2.0]))
    assert int(code) == MIN.code
    np.testing.assert_allclose(np.asarray(u), FR_MIN, rtol=1e-6)
    np.testing.assert_allclose(float(obj), 0.5 * 48.9842536, rtol=1e-8)


@pytest.mark.parametrize("alg", ("newton", "newton_krylov", "broyden", "anderson", "fixed_point", "dynamic_ss",
                                 "pseudo_transient"))
def test_root_finders_refuse_a_least_squares_problem_before_any_work(alg):
    calls = []
    f = lambda u, p: calls.append(1) or np.array([u[0] - 1.0, u[1] - 2.0, u[0] + u[1] - 3.1])  # noqa: E731
    with pytest.raises(ValueError, match="m x n Jacobian.*use GaussNewton, LevenbergMarquardt, TrustRegion"):
        ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(2)), alg)
    with pytest.raises(ValueError, match="NewtonRaphson"):
        ss.solve(ss.NonlinearLeastSquaresProblem(f, np.zeros(2)), ss.Auto(algs=(ss.NewtonRaphson(), ss.TrustRegion())))
    assert not calls  # refused before f is evaluated


def test_boundary_errors():
    with pytest.raises(ValueError, match=r"returned 1 residuals .* for n = 2 unknowns; a least-squares problem "
                                         r"needs m >= n"):
        ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: u[:1] * 2.0, np.ones(2)))
    with pytest.raises(TypeError, match="returned dtype float32 but u0 has dtype float64"):
        ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: np.ones(3, dtype=np.float32), np.ones(2)))
    with pytest.raises(ValueError, match="must have the batch on the same axis"):
        ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: np.ones((3, 4)), np.ones((2, 2))), batch_axis=0)
    with pytest.raises(ValueError, match="norm must be 'l2' or 'rms'"):
        ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: np.concatenate([u, u]), np.ones(2)),
                 norm=lambda xp, x: xp.max(x, axis=1))
    with pytest.raises(ValueError, match="jac\\(u, p\\) returned shape \\(2, 2\\); expected \\(4, 2\\)"):
        ss.solve(ss.NonlinearLeastSquaresProblem(lambda u, p: np.concatenate([u, u]), np.ones(2),
                                                 jac=lambda u, p: np.eye(2)), "levenberg_marquardt")
    with pytest.raises(TypeError, match=r"sparsity must be the \(m, n\) pattern"):
        ss.NonlinearLeastSquaresProblem(lambda u, p: u, np.ones(2), sparsity="detect")


def test_square_problem_codes_unchanged():
    # on a NonlinearProblem a non-root minimum stays Stalled: LeastSquaresMinimum is for least squares only
    sol = ss.solve(ss.NonlinearProblem(lambda u, p: u ** 2 + 1.0, np.ones(1)), ss.GaussNewton(), maxiters=200)
    assert sol.retcode is ss.ReturnCode.Stalled and not sol.successful


def _fd_gradient(t, y, weights, h=1e-4):
    """d(weights . u*(y))/dy by central differences of tightly converged NumPy solves."""
    def uopt(yy):
        sol = ss.solve(ss.NonlinearLeastSquaresProblem(exp_model(np, t, yy), np.array([1.0, 1.0, 0.0]),
                                                       jac=_exp_jac(t)), ss.LevenbergMarquardt(gtol=1e-14),
                       maxiters=500)
        assert sol.retcode is MIN
        return weights @ sol.u
    g = np.zeros_like(y)
    for i in range(y.size):
        e = np.zeros_like(y)
        e[i] = h
        g[i] = (uopt(y + e) - uopt(y - e)) / (2 * h)
    return g


def _exp_jac(t):
    return lambda u, p: np.stack([np.exp(-u[1] * t), -u[0] * t * np.exp(-u[1] * t), np.ones_like(t)], axis=1)


WEIGHTS = np.array([1.0, -2.0, 0.5])


def test_torch_implicit_gradient_matches_finite_differences():
    import torch
    from steadysolve.adapters.torch import least_squares

    t, y = exp_data()
    T = torch.as_tensor(t)
    Y = torch.as_tensor(y).requires_grad_(True)
    u, sol = least_squares(lambda u, yy: u[0] * torch.exp(-u[1] * T) + u[2] - yy, torch.tensor([1.0, 1.0, 0.0],
                           dtype=torch.float64), Y)
    assert sol.retcode is MIN
    (torch.as_tensor(WEIGHTS) @ u).backward()
    np.testing.assert_allclose(Y.grad.numpy(), _fd_gradient(t, y, WEIGHTS), rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_jax_implicit_gradient_matches_finite_differences_under_jit():
    import jax
    import jax.numpy as jnp
    from steadysolve.adapters.jax import least_squares

    jax.config.update("jax_enable_x64", True)
    t, y = exp_data()
    T = jnp.asarray(t)

    @jax.jit
    def loss(yy):
        u, sol = least_squares(lambda u, d: u[0] * jnp.exp(-u[1] * T) + u[2] - d, jnp.asarray([1.0, 1.0, 0.0]), yy)
        return jnp.asarray(WEIGHTS) @ u, sol.retcode_array

    (val, code), g = jax.value_and_grad(loss, has_aux=True)(jnp.asarray(y))
    assert int(code) == MIN.code
    np.testing.assert_allclose(np.asarray(g), _fd_gradient(t, y, WEIGHTS), rtol=1e-5, atol=1e-7)


def test_gauss_newton_hessian_would_be_wrong_here():
    # the exact Hessian matters: with J^T J alone the gradient of this nonzero-residual fit is off
    t, y = exp_data()
    fd = _fd_gradient(t, y, WEIGHTS)
    sol = ss.solve(ss.NonlinearLeastSquaresProblem(exp_model(np, t, y), np.array([1.0, 1.0, 0.0]),
                                                   jac=_exp_jac(t)), maxiters=500)
    J = _exp_jac(t)(sol.u, None)
    w = np.linalg.solve(J.T @ J, WEIGHTS)
    approx = J @ w  # -(dG/dy)^T w with G = J^T (F) and dF/dy = -I, Hessian J^T J
    assert np.max(np.abs(approx - fd)) > 1e-3 * np.max(np.abs(fd))


@pytest.mark.slow
def test_throw_accepts_a_least_squares_minimum_and_rejects_a_stall():
    import jax
    import jax.numpy as jnp

    prob = ss.NonlinearLeastSquaresProblem(freudenstein_roth(np), np.array([0.5, -2.0]))
    assert ss.solve(prob, throw=True).retcode is MIN  # a success of its own kind: no exception
    with pytest.raises(ss.ConvergenceError):
        ss.solve(prob, maxiters=2, throw=True)
    jax.config.update("jax_enable_x64", True)
    run = jax.jit(lambda u0: ss.solve(ss.NonlinearLeastSquaresProblem(freudenstein_roth(jnp), u0), throw=True).u)
    np.testing.assert_allclose(np.asarray(run(jnp.asarray([0.5, -2.0]))), FR_MIN, rtol=1e-6)
