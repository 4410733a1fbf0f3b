"""TrustRegion (Powell dogleg): the step stays in the region, classic hard problems, batching, no root."""

import math

import numpy as np
import pytest
from helpers import get_backend, slow_on

import steadysolve as ss
from steadysolve._backend import quiet_host
from steadysolve.algorithms.trust_region import dogleg


def _split(xp, u, k):
    return [u[..., j:j + 1] for j in range(k)]


def powell_badly_scaled(xp):
    def f(u, p):
        x1, x2 = _split(xp, u, 2)
        return xp.concat([1e4 * x1 * x2 - 1.0, xp.exp(-x1) + xp.exp(-x2) - 1.0001], axis=-1)
    return f


def helical_valley(xp):
    def f(u, p):
        x1, x2, x3 = _split(xp, u, 3)
        theta = xp.atan2(x2, x1) / (2 * math.pi)
        theta = theta + xp.where((x1 < 0) & (x2 < 0), xp.ones_like(theta), xp.zeros_like(theta))
        r = xp.sqrt(x1 * x1 + x2 * x2)
        return xp.concat([10.0 * (x3 - 10.0 * theta), 10.0 * (r - 1.0), x3], axis=-1)
    return f


def rosenbrock(xp):
    def f(u, p):
        x1, x2 = _split(xp, u, 2)
        return xp.concat([10.0 * (x2 - x1 * x1), 1.0 - x1], axis=-1)
    return f


def test_dogleg_step_never_leaves_region():
    xp = get_backend("numpy").xp
    rng = np.random.default_rng(0)
    worst = 0.0
    kinds = {"newton": 0, "boundary": 0}
    for trial in range(300):
        n = int(rng.integers(1, 7))
        B = 4
        J = rng.standard_normal((B, n, n)) * 10.0 ** rng.uniform(-3, 3, size=(B, 1, n))
        if trial % 7 == 0:  # singular Jacobians
            J[:, :, 0] = 0.0
        if trial % 11 == 0:
            J[:, 0, :] = J[:, 1 % n, :]
        fu = rng.standard_normal((B, n)) * 10.0 ** rng.uniform(-4, 4)
        D = np.maximum(np.sqrt((J * J).sum(axis=1)), 10.0 ** rng.uniform(-2, 2, size=(B, n)))
        radius = 10.0 ** rng.uniform(-6, 4, size=B)
        shift = 2.2e-16 * np.abs(J).max(axis=(1, 2)) + 1e-300  # as the algorithm does
        with quiet_host():  # as inside solve(): a singular J's Newton point overflows, and is set aside
            delta, ynorm, usable = dogleg(xp, J, fu, D, radius, shift=shift)
        assert np.all(usable)
        dn = np.linalg.norm(D * delta, axis=1)
        np.testing.assert_allclose(dn, ynorm, rtol=1e-12, atol=1e-300)
        assert np.all(dn <= radius * (1 + 1e-10)), (dn, radius)
        worst = max(worst, float(np.max(dn / radius)))
        # a descent direction of ||F + J delta||^2 whenever the gradient is nonzero
        g = np.einsum("bij,bi->bj", J, fu)
        assert np.all(np.einsum("bj,bj->b", g, delta) <= 1e-12 * np.abs(g).sum(1) * np.abs(delta).sum(1))
        inside = dn < 0.999 * radius
        kinds["newton"] += int(inside.sum())
        kinds["boundary"] += int((~inside).sum())
    assert kinds["newton"] > 50 and kinds["boundary"] > 50
    assert worst <= 1 + 1e-10


def test_dogleg_takes_newton_point_inside():
    xp = get_backend("numpy").xp
    J = np.array([[[2.0, 0.0], [0.0, 4.0]]])
    fu = np.array([[2.0, -4.0]])
    delta, ynorm, _ = dogleg(xp, J, fu, np.ones((1, 2)), np.array([10.0]))
    np.testing.assert_allclose(delta, [[-1.0, 1.0]], rtol=1e-14)
    # a tiny radius: the scaled steepest-descent direction cut to the boundary
    delta, ynorm, _ = dogleg(xp, J, fu, np.ones((1, 2)), np.array([1e-3]))
    g = np.array([4.0, -16.0])
    np.testing.assert_allclose(delta[0], -1e-3 * g / np.linalg.norm(g), rtol=1e-12)


@pytest.mark.slow
def test_linear_system_few_steps(bk):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((5, 5)) + 5 * np.eye(5)
    b = rng.standard_normal(5)
    An, bn = bk.asarray(A), bk.asarray(b)
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: xp.matmul(An, u) - bn, bk.asarray(np.zeros(5)))
    sol = ss.solve(prob, ss.TrustRegion(), abstol=1e-12, reltol=0.0)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.linalg.solve(A, b), atol=1e-10)
    assert int(sol.stats.niter) <= 3
    assert int(sol.stats.njac) <= 3


@pytest.mark.parametrize("name,make,u0,root", [
    ("powell_badly_scaled", powell_badly_scaled, [0.0, 1.0], [1.098159329699759e-05, 9.106146739867318]),
    ("helical_valley", helical_valley, [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ("rosenbrock_far", rosenbrock, [-12.0, 10.0], [1.0, 1.0]),
])
@pytest.mark.slow
def test_hard_problems(bk, name, make, u0, root):
    prob = ss.NonlinearProblem(make(bk.xp), bk.asarray(np.array(u0)))
    sol = ss.solve(prob, "trust_region", abstol=1e-10, reltol=0.0, maxiters=500)
    assert sol.retcode is ss.ReturnCode.Success, f"{name}: {sol!r}"
    u = bk.to_numpy(sol.u)
    f = make(get_backend("numpy").xp)(u, None)
    assert np.max(np.abs(f)) <= 1e-8
    np.testing.assert_allclose(u, root, rtol=1e-8, atol=1e-8)


@slow_on("jax")
def test_batched_rosenbrock(bk):
    starts = np.array([[-1.2, 1.0], [-12.0, 10.0], [2.0, 2.0], [1.0, 1.0]])
    prob = ss.NonlinearProblem(rosenbrock(bk.xp), bk.asarray(starts))
    sol = ss.solve(prob, ss.TrustRegion(), batch_axis=0, abstol=1e-10, reltol=0.0, maxiters=500)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.ones((4, 2)), atol=1e-9)
    # every element alone needs no more iterations than in the batch
    for k in range(4):
        one = ss.solve(ss.NonlinearProblem(rosenbrock(bk.xp), bk.asarray(starts[k])), "trust_region",
                       abstol=1e-10, reltol=0.0, maxiters=500)
        assert one.successful
        np.testing.assert_allclose(bk.to_numpy(one.u), bk.to_numpy(sol.u)[k], atol=1e-9)


def test_no_root_honest(bk):
    xp = bk.xp
    prob = ss.NonlinearProblem(lambda u, p: xp.atan(u) + 2.0, bk.asarray(np.zeros(3)))
    sol = ss.solve(prob, ss.TrustRegion(), abstol=1e-8, reltol=0.0, maxiters=300)
    assert sol.retcode is not ss.ReturnCode.Success
    assert isinstance(sol.retcode, ss.ReturnCode)
    assert np.all(np.isfinite(bk.to_numpy(sol.u)))


def test_user_jacobian_counts():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((3, 3)) + 4 * np.eye(3)
    prob = ss.NonlinearProblem(lambda u, p: A @ u + 0.1 * u ** 3 - 1.0, np.zeros(3),
                               jac=lambda u, p: A + np.diag(0.3 * u ** 2))
    sol = ss.solve(prob, "trust_region", abstol=1e-12, reltol=0.0)
    assert sol.successful and sol.stats.njvp == 0
    # the Jacobian is rebuilt only after accepted steps
    assert 1 <= sol.stats.njac <= sol.stats.niter - sol.stats.nreject + 1


def test_bad_options():
    with pytest.raises(ValueError, match="factor"):
        ss.TrustRegion(factor=0.0)
    with pytest.raises(ValueError, match="max_size"):
        ss.TrustRegion(max_size=0)
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(40))
    with pytest.raises(ValueError, match="n=40 unknowns.*max_size=30.*NewtonKrylov"):
        ss.solve(prob, ss.TrustRegion(max_size=30))
