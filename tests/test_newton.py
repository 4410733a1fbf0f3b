"""Dense Newton-Raphson: user Jacobian vs assembled, quadratic convergence, size limit, failures."""

import numpy as np
import pytest
from helpers import get_backend, slow_on
from benchmarks.problems.honesty import h_equation_nonlinear, h_reference
from benchmarks.problems.mgh import by_name

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
    prob, kw = h_equation_nonlinear(np, n=50)
    sol = ss.solve(prob, ss.NewtonRaphson(), **kw)
    assert sol.successful
    np.testing.assert_allclose(sol.u, h_reference(50), atol=1e-9)


def test_size_limit_points_to_newton_krylov():
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(40))
    with pytest.raises(ValueError, match="n=40 unknowns.*max_size=30.*NewtonKrylov"):
        ss.solve(prob, ss.NewtonRaphson(max_size=30))
    assert ss.solve(prob, ss.NewtonRaphson(max_size=40)).successful


# the user's u ** 2 overflows at the huge step the solver then rejects
@pytest.mark.filterwarnings("ignore:overflow encountered in square:RuntimeWarning:test_newton")
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


@slow_on("jax")
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


# --- the line search's watchdog (steadysolve/algorithms/newton_base.py) --------------------------

def _rosenbrock(bk):
    xp = bk.xp
    return ss.NonlinearProblem(lambda u, p: xp.stack([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0]]),
                               bk.asarray([-1.2, 1.0]))


@pytest.mark.parametrize("alg", [ss.NewtonRaphson(), ss.NewtonKrylov()])
@slow_on("jax")
def test_watchdog_solves_rosenbrock_in_a_few_steps(bk, alg):
    # The full Newton step from (-1.2, 1) raises ||F|| tenfold (u0 becomes exact, u1 overshoots to
    # -3.84); the next one lands on the root. A monotone search backtracks there for 26 iterations.
    sol = ss.solve(_rosenbrock(bk), alg, abstol=1e-10)
    assert sol.retcode is ss.ReturnCode.Success
    assert int(sol.stats.niter) <= 10, sol.stats
    np.testing.assert_allclose(bk.to_numpy(sol.u), [1.0, 1.0], atol=1e-9)


def test_monotone_armijo_is_still_available():
    bk = get_backend("numpy")
    watch = ss.solve(_rosenbrock(bk), ss.NewtonRaphson(), abstol=1e-10)
    mono = ss.solve(_rosenbrock(bk), ss.NewtonRaphson(linesearch="armijo"), abstol=1e-10)
    assert watch.successful and mono.successful
    assert mono.stats.nbacktrack > 0 and int(mono.stats.niter) >= 20  # the monotone search: 26
    assert ss.NewtonRaphson().linesearch == "watchdog" and ss.NewtonKrylov().linesearch == "watchdog"


def test_watchdog_under_jit():
    jax = pytest.importorskip("jax")  # (x64 is on for the whole session: conftest.py)
    import jax.numpy as jnp

    f = lambda u, p: jnp.stack([10.0 * (u[1] - u[0] ** 2), p - u[0]])  # noqa: E731

    @jax.jit
    def run(p):
        sol = ss.solve(ss.NonlinearProblem(f, jnp.array([-1.2, 1.0]), p), "newton", abstol=1e-10)
        return sol.u, sol.stats.niter

    u, niter = run(1.0)
    np.testing.assert_allclose(np.asarray(u), [1.0, 1.0], atol=1e-9)
    assert int(niter) <= 10


@pytest.mark.parametrize("alg", ["newton", "newton_krylov"])
def test_watchdog_ends_honestly_without_a_root(bk, alg):
    # arctan(u) + 2 has no root (|arctan| < pi/2 < 2); u^2 + 1 has its minimum of ||F|| at 0, not a root.
    xp = bk.xp
    for f, u0 in [(lambda u, p: xp.atan(u) + 2.0, [3.0, -0.5]), (lambda u, p: u * u + 1.0, [0.7, -2.0])]:
        prob = ss.NonlinearProblem(f, bk.asarray(u0))
        sol = ss.solve(prob, alg, abstol=1e-10, maxiters=300)
        assert not sol.successful, sol.retcode
        u = bk.to_numpy(sol.u)
        assert np.all(np.isfinite(u))
        np.testing.assert_allclose(bk.to_numpy(sol.resid), bk.to_numpy(f(sol.u, None)), rtol=1e-12)


@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "trust_region", "levenberg_marquardt"])
@slow_on("jax")
@pytest.mark.slow
def test_a_local_minimum_of_the_residual_stops_stalled_early(bk, alg):
    # u^3 - 2u + 2: ||F|| has a local minimum 0.911 at u = sqrt(2/3) (not a root; the root is -1.769).
    # Newton settles at the minimum and makes no progress there: Stalled within ~30 iterations with
    # the minimum as its best iterate (Newton used to spend all of maxiters, the trust region 62
    # iterations until its radius collapsed), while the element that starts near the root
    # converges in the same batch.
    prob = ss.NonlinearProblem(lambda u, p: u ** 3 - 2.0 * u + 2.0, bk.asarray([[0.5], [-2.0], [1.5]]))
    sol = ss.solve(prob, alg, abstol=1e-10, maxiters=1000, batch_axis=0)
    assert [r.name for r in sol.retcodes] == ["Stalled", "Success", "Stalled"]
    assert int(np.max(np.asarray(sol.stats.niter_per_element))) <= 40
    np.testing.assert_allclose(bk.to_numpy(sol.u)[:, 0], [np.sqrt(2 / 3), -1.7692923542386314, np.sqrt(2 / 3)],
                               rtol=1e-5)
    one = ss.solve(prob.remake(u0=bk.asarray([0.5])), alg, abstol=1e-10, maxiters=1000)  # the one-system path
    assert one.retcode is ss.ReturnCode.Stalled and int(one.stats.niter) <= 40


def test_stalled_stragglers_stop_the_jitted_loop():
    jax = pytest.importorskip("jax")
    jnp = jax.numpy

    @jax.jit
    def run(u0):
        sol = ss.solve(ss.NonlinearProblem(lambda u, p: u ** 3 - 2.0 * u + 2.0, u0), "newton", abstol=1e-6,
                       maxiters=1000, batch_axis=0)
        return sol.retcode_array, sol.stats.niter

    codes, niter = run(jnp.asarray([[0.5], [-2.0]], dtype=jnp.float32))
    assert [int(c) for c in codes] == [ss.ReturnCode.Stalled.code, ss.ReturnCode.Success.code]
    assert int(niter) <= 40  # the while_loop ends when the last element stops


def test_failed_probe_returns_and_backtracks():
    # F is NaN for |u| > 5 and arctan inside: the full step from 1.5 lands at -1.69 (|F| grows a
    # little: a probe), the Newton step from there overshoots to 2.32 (no decrease against u0):
    # back to u0 and backtrack along the first direction. The answer is the root.
    def f(u, p):
        return np.where(np.abs(u) > 5, np.nan, np.arctan(u))

    sol = ss.solve(ss.NonlinearProblem(f, np.array([1.5])), ss.NewtonRaphson(), abstol=1e-12, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.Success and sol.stats.nbacktrack > 0
    np.testing.assert_allclose(sol.u, 0.0, atol=1e-12)


@pytest.mark.parametrize("alg", ["newton", "newton_krylov", "trust_region", "levenberg_marquardt"])
def test_host_step_matches_the_batched_step(alg):
    # The eager unbatched NumPy step decides on Python floats; a batch of two copies runs the
    # array (``where``) step. Both take the same iterations to the same answer.
    for name, scale in [("rosenbrock", 10.0), ("powell_singular", 1.0), ("helical_valley", 1.0), ("wood", 1.0)]:
        prob = by_name(name)
        x0 = prob.x0 * scale
        one = ss.solve(ss.NonlinearProblem(lambda u, p: prob.F(u), x0), alg, abstol=1e-9, maxiters=400)
        two = ss.solve(ss.NonlinearProblem(lambda U, p: np.stack([prob.F(u) for u in U]), np.stack([x0, x0])),
                       alg, abstol=1e-9, maxiters=400, batch_axis=0)
        assert one.retcodes[0] == two.retcodes[0] == two.retcodes[1], (name, one.retcodes, two.retcodes)
        assert int(one.stats.niter) == int(two.stats.niter_per_element[0]), (name, one.stats, two.stats)
        np.testing.assert_allclose(one.u, two.u[0], rtol=1e-6, atol=1e-9)
