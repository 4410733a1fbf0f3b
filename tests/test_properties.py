"""Property tests (hypothesis): on random contractive maps every algorithm finds the same fixed point."""

import numpy as np
from helpers import slow_on
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import steadysolve as ss

SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _contraction(seed, n, rho):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A = rho * A / np.linalg.norm(A, 2)
    b = rng.normal(size=n)
    return A, b


@slow_on("array_api_strict", "torch", "jax")  # every algorithm on every example: NumPy in the fast loop
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 12), rho=st.floats(0.05, 0.8))
def test_affine_contraction_all_algorithms_agree(bk, seed, n, rho):
    A, b = _contraction(seed, n, rho)
    exact = np.linalg.solve(np.eye(n) - A, b)
    prob = ss.FixedPointProblem(lambda u, p: p[0] @ u + p[1], bk.asarray(np.zeros(n)), (bk.asarray(A), bk.asarray(b)))
    for alg in ss.available():
        sol = ss.solve(prob, alg, abstol=1e-10, reltol=0.0, maxiters=2000)
        assert sol.retcode is ss.ReturnCode.Success, (alg, sol)
        # |u - u*| <= |g(u) - u| / (1 - rho) for a contraction in the 2-norm
        np.testing.assert_allclose(bk.to_numpy(sol.u), exact, atol=1e-10 * np.sqrt(n) / (1 - rho) + 1e-12)


@slow_on("array_api_strict", "torch", "jax")  # every algorithm on every example: NumPy in the fast loop
@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 10), rho=st.floats(0.05, 0.8),
       scale=st.floats(0.1, 3.0))
def test_tanh_contraction_all_algorithms_agree(bk, seed, n, rho, scale):
    A, b = _contraction(seed, n, rho)
    b = scale * b
    xp = bk.xp
    prob = ss.FixedPointProblem(lambda u, p: xp.tanh(p[0] @ u + p[1]), bk.asarray(np.zeros(n)),
                                (bk.asarray(A), bk.asarray(b)))
    sols = {}
    for alg in ss.available():
        sol = ss.solve(prob, alg, abstol=1e-11, reltol=0.0, maxiters=2000)
        assert sol.retcode is ss.ReturnCode.Success, (alg, sol)
        sols[alg] = bk.to_numpy(sol.u)
    ref = sols["fixed_point"]
    for alg, u in sols.items():
        np.testing.assert_allclose(u, ref, atol=1e-9, err_msg=alg)
