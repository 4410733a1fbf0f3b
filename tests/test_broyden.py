"""Broyden: secant condition, finite termination on linear systems, resets, H-equation."""

import numpy as np
import pytest
from helpers import get_backend, slow_on
from benchmarks.problems.honesty import h_equation, h_reference

import steadysolve as ss
from steadysolve._backend.layout import Layout
from steadysolve.solve import build_context
from steadysolve.termination import get_norm


def _ctx(prob, bk):
    xp = bk.xp
    layout = Layout(xp, prob.u0.shape, None)
    fu0 = prob.residual(prob.u0, prob.p)
    return build_context(prob, prob.u0, layout, xp, fu0, 1e-12, 0.0, get_norm("max")), layout


@slow_on("jax")
def test_secant_condition_after_each_update(bk):
    rng = np.random.default_rng(3)
    n = 6
    M = bk.asarray(np.eye(n) * 2 + rng.normal(size=(n, n)) * 0.2)
    prob = ss.NonlinearProblem(lambda u, p: p @ u + 0.1 * u ** 3 - 1.0, bk.asarray(np.zeros(n)), M)
    ctx, layout = _ctx(prob, bk)
    alg = ss.Broyden(memory=10)
    state = alg.init(prob, layout.to_rows(prob.u0), ctx)
    for _ in range(5):
        s = -ss.Broyden.apply_inverse(bk.xp, state, state.fu)  # the trial step (accepted or not)
        y = ctx.F(state.u + s) - state.fu
        new = alg.step(prob, state, ctx)
        Hy = ss.Broyden.apply_inverse(bk.xp, new, y)
        np.testing.assert_allclose(bk.to_numpy(Hy), bk.to_numpy(s), rtol=1e-9, atol=1e-12)
        state = new
    assert int(state.nreset) == 0


def test_linear_system_in_at_most_2n_steps(bk):
    rng = np.random.default_rng(0)
    n = 5
    A = np.eye(n) * 3 + rng.normal(size=(n, n))
    b = rng.normal(size=n)
    Ab, bb = bk.asarray(A), bk.asarray(b)
    prob = ss.NonlinearProblem(lambda u, p: p[0] @ u - p[1], bk.asarray(np.zeros(n)), (Ab, bb))
    sol = ss.solve(prob, ss.Broyden(memory=2 * n), abstol=1e-9, reltol=0.0, maxiters=2 * n)
    assert sol.retcode is ss.ReturnCode.Success, sol
    assert sol.stats.niter <= 2 * n
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.linalg.solve(A, b), atol=1e-8)


def test_h_equation_and_counts():
    bk = get_backend("numpy")
    prob, kw = h_equation(bk.xp, n=200)
    sol = ss.solve(prob, "broyden", **kw)
    assert sol.successful
    np.testing.assert_allclose(sol.u, h_reference(200), atol=1e-9)
    assert sol.stats.nf == sol.stats.niter + 1 and sol.stats.njvp == 0
    assert sol.stats.nf <= 20


def test_bad_update_resets_instead_of_nan():
    # F is flat (0.5) on |u - 2| < 0.75: steps inside give y = 0, so s^T H y = 0.
    def f(u, p):
        return np.where(np.abs(u - 2.0) < 0.75, np.zeros_like(u) + 0.5, 1.0 - u)

    prob = ss.NonlinearProblem(f, np.array([1.5]))
    sol = ss.solve(prob, ss.Broyden(alpha=1.0), abstol=1e-12, reltol=0.0, maxiters=30)
    assert np.all(np.isfinite(sol.u)) and np.all(np.isfinite(sol.resid))
    assert sol.stats.nreset >= 1


@pytest.mark.slow
def test_ring_buffer_memory_smaller_than_iterations(bk):
    prob, kw = h_equation(bk.xp, n=50)
    sol = ss.solve(prob, ss.Broyden(memory=2), **kw)
    assert sol.successful
    np.testing.assert_allclose(bk.to_numpy(sol.u), h_reference(50), atol=1e-8)


def test_bad_options():
    with pytest.raises(ValueError, match="memory must be >= 1"):
        ss.Broyden(memory=0)
    with pytest.raises(TypeError, match="memory must be an int"):
        ss.Broyden(memory=2.5)
    with pytest.raises(ValueError, match="alpha"):
        ss.Broyden(alpha=-1.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.slow
def test_random_linear_20x20_that_scipy_broyden1_solves(bk, seed):
    # well conditioned (cond ~ 3-4) but J ~ +I while H_0 = -alpha I has the other sign: the plain
    # method diverged here; rejected trials still teach H, and the default memory covers 2n updates
    scipy_opt = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(seed)
    n = 20
    A = np.eye(n) + 0.5 * rng.standard_normal((n, n)) / np.sqrt(n)
    b = rng.standard_normal(n)
    ref = scipy_opt.broyden1(lambda x: A @ x - b, np.zeros(n), f_tol=1e-9, maxiter=1000)
    np.testing.assert_allclose(ref, np.linalg.solve(A, b), atol=1e-6)
    prob = ss.NonlinearProblem(lambda u, p: p[0] @ u - p[1], bk.asarray(np.zeros(n)), (bk.asarray(A), bk.asarray(b)))
    sol = ss.solve(prob, "broyden", abstol=1e-10, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.Success, sol
    assert sol.stats.nf == sol.stats.niter + 1 and sol.stats.nf <= 4 * n
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.linalg.solve(A, b), atol=1e-8)


def test_rejected_trial_keeps_iterate_and_updates_h():
    # a wrong-sign H_0 on F(u) = u - 1: the first trial doubles the residual norm beyond growth=1
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(3))
    sol = ss.solve(prob, ss.Broyden(growth=1.0), abstol=1e-12, reltol=0.0, maxiters=20)
    assert sol.retcode is ss.ReturnCode.Success and sol.stats.nreject >= 1
    np.testing.assert_allclose(sol.u, np.ones(3), atol=1e-12)


def test_growth_option_is_checked():
    with pytest.raises(ValueError, match="growth must be >= 1"):
        ss.Broyden(growth=0.5)


def test_for_iterations_keeps_the_iterates():
    # a ring no longer than the iterations gives the same iterates (no pair is ever overwritten)
    rng = np.random.default_rng(3)
    W = 0.3 * rng.standard_normal((12, 12)) / np.sqrt(12)
    prob = ss.FixedPointProblem(lambda u, p: np.tanh(W @ u + p), np.zeros(12), np.linspace(-1, 1, 12))
    alg = ss.Broyden()
    small = alg.for_iterations(7)
    assert small.memory == 7 and alg.for_iterations(100) is alg
    a = ss.solve(prob, alg, abstol=0.0, reltol=0.0, maxiters=7)
    b = ss.solve(prob, small, abstol=0.0, reltol=0.0, maxiters=7)
    assert a.stats.niter == b.stats.niter == 7
    np.testing.assert_array_equal(a.u, b.u)
