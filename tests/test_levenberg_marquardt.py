"""LevenbergMarquardt: hard MINPACK problems, batching, honest Stalled at a non-root minimum."""

import numpy as np
import pytest
from helpers import get_backend, slow_on
from test_trust_region import helical_valley, powell_badly_scaled, rosenbrock

import steadysolve as ss


@pytest.mark.parametrize("name,make,u0,root", [
    ("powell_badly_scaled", powell_badly_scaled, [0.0, 1.0], [1.098159329699759e-05, 9.106146739867318]),
    ("helical_valley", helical_valley, [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    ("rosenbrock_far", rosenbrock, [-12.0, 10.0], [1.0, 1.0]),
])
@slow_on("jax")
def test_hard_problems(bk, name, make, u0, root):
    prob = ss.NonlinearProblem(make(bk.xp), bk.asarray(np.array(u0)))
    sol = ss.solve(prob, ss.LevenbergMarquardt(), abstol=1e-10, reltol=0.0, maxiters=500)
    assert sol.retcode is ss.ReturnCode.Success, f"{name}: {sol!r}"
    u = bk.to_numpy(sol.u)
    assert np.max(np.abs(make(get_backend("numpy").xp)(u, None))) <= 1e-10
    # Powell's problem is badly scaled: |F| <= 1e-10 pins x2 only to ~1e-6 (dF2/dx2 ~ 1e-4)
    np.testing.assert_allclose(u, root, rtol=1e-6, atol=1e-8)


def test_non_root_minimum_stalls(bk):
    # ||F||^2 = (u0^2 + 1)^2 + (u1 - 2)^2 has its minimum 1 at (0, 2), which is no root.
    xp = bk.xp

    def f(u, p):
        return xp.concat([u[0:1] ** 2 + 1.0, u[1:2] - 2.0])

    sol = ss.solve(ss.NonlinearProblem(f, bk.asarray(np.array([3.0, 0.0]))), "levenberg_marquardt",
                   abstol=1e-10, reltol=0.0, maxiters=300)
    assert sol.retcode is ss.ReturnCode.Stalled
    np.testing.assert_allclose(bk.to_numpy(sol.u), [0.0, 2.0], atol=1e-6)
    assert int(sol.stats.niter) < 100  # stopped by the gradient test, not by patience or maxiters


@slow_on("jax")
def test_batched(bk):
    starts = np.array([[-1.2, 1.0], [-12.0, 10.0], [2.0, 2.0]])
    prob = ss.NonlinearProblem(rosenbrock(bk.xp), bk.asarray(starts))
    sol = ss.solve(prob, "levenberg_marquardt", batch_axis=0, abstol=1e-10, reltol=0.0, maxiters=500)
    assert sol.retcode is ss.ReturnCode.Success
    np.testing.assert_allclose(bk.to_numpy(sol.u), np.ones((3, 2)), atol=1e-9)


def test_bad_options():
    for kw in (dict(damping=0.0), dict(gtol=-1.0), dict(max_size=0)):
        with pytest.raises(ValueError, match=next(iter(kw))):
            ss.LevenbergMarquardt(**kw)
    prob = ss.NonlinearProblem(lambda u, p: u - 1.0, np.zeros(40))
    with pytest.raises(ValueError, match="n=40 unknowns.*max_size=30.*NewtonKrylov"):
        ss.solve(prob, ss.LevenbergMarquardt(max_size=30))
