"""Conservation laws (issue 29, item 5): for a SteadyStateProblem the answer is the steady state the flow
reaches from u0. A closed reaction network has a line (or plane) of equilibria with the same zero
residual; root finders land anywhere on it, the flow-following methods keep the conserved quantity
and land on the one of u0. Every method the default chain may pick follows the flow."""

import math

import numpy as np
import pytest
from helpers import slow_on

import steadysolve as ss

from benchmarks.problems import stiff as stiff_set

RC = ss.ReturnCode

# A <-> B (rates 1, 2), 2A <-> C (rates 0.5, 0.3): a + b + 2c is conserved, the Jacobian singular everywhere
_K1, _K2, _K3, _K4 = 1.0, 2.0, 0.5, 0.3


def _network(xp):
    def f(u, p, t):
        a, b, c = u[..., 0], u[..., 1], u[..., 2]
        r1 = _K1 * a - _K2 * b
        r2 = _K3 * a * a - _K4 * c
        return xp.stack([-r1 - 2.0 * r2, r1, r2], axis=-1)
    return f


def _network_steady_state(total=1.0):
    """On a + b + 2c = total: b = a K1 / K2, c = a^2 K3 / K4, so (2 K3 / K4) a^2 + (1 + K1 / K2) a - total = 0."""
    qa, qb = 2 * _K3 / _K4, 1.0 + _K1 / _K2
    a = (-qb + math.sqrt(qb * qb + 4 * qa * total)) / (2 * qa)
    return np.array([a, a * _K1 / _K2, a * a * _K3 / _K4])


def _conserved(u):
    return u[..., 0] + u[..., 1] + 2.0 * u[..., 2]


def test_the_default_chain_follows_the_flow_only():
    """Auto on a SteadyStateProblem: DynamicSS (explicit, then Rosenbrock) and PseudoTransient, no root finder."""
    for n in (1, 3, 50, 100, 101, 5000):
        algs = [a for a, _ in ss.Auto().chain("steady_state", n)]
        assert algs and all(isinstance(a, (ss.DynamicSS, ss.PseudoTransient)) for a in algs), (n, algs)


def test_root_finders_land_elsewhere_on_the_line_of_equilibria():
    """Why it matters: a root finder returns a zero of f that the flow from u0 does not reach."""
    prob = ss.SteadyStateProblem(_network(np), np.array([1.0, 0.0, 0.0]))
    sol = ss.solve(prob, ss.LevenbergMarquardt(), abstol=1e-12)
    assert sol.retcode is RC.Success and abs(_conserved(sol.u) - 1.0) > 0.1


@slow_on("jax")
@pytest.mark.slow
def test_the_default_returns_the_flows_steady_state(bk):
    prob = ss.SteadyStateProblem(_network(bk.xp), bk.asarray([1.0, 0.0, 0.0]))
    sol = ss.solve(prob, abstol=1e-12)
    assert sol.retcode is RC.Success, sol
    u = bk.to_numpy(sol.u)
    assert abs(_conserved(u) - 1.0) < 1e-13
    np.testing.assert_allclose(u, _network_steady_state(), rtol=1e-10)


def _network_jac(u, p):
    a = u[0]
    return np.array([[-_K1 - 4 * _K3 * a, _K2, 2 * _K4], [_K1, -_K2, 0.0], [2 * _K3 * a, 0.0, -_K4]])


_DENSE = np.ones((3, 3), dtype=bool)
# (algorithm, problem options, how far the conserved sum may move)
LAW = {
    "tsit5": (ss.DynamicSS(), {}, 1e-13),
    "rodas5p_fd": (ss.DynamicSS(ss.Rodas5P()), {}, 1e-13),
    "rosenbrock23_jac": (ss.DynamicSS(ss.Rosenbrock23()), dict(jac=_network_jac), 1e-13),
    "rodas5p_sparse": (ss.DynamicSS(ss.Rodas5P(linsolve=ss.ode.SparseLU())), dict(sparsity=_DENSE), 1e-13),
    "ptc_jac": (ss.PseudoTransient(), dict(jac=_network_jac), 1e-13),
    "ptc_sparse_jac": (ss.PseudoTransient(linsolve="sparse"),
                       dict(jac=lambda u, p: __import__("scipy.sparse").sparse.csr_matrix(_network_jac(u, p))), 1e-13),
    # finite differences (a dense Jacobian, or GMRES's products) round c^T J v to O(sqrt(eps)) instead of 0,
    # and PTC's long steps (dt -> 1e12) carry that into c^T du: the law holds to ~1e-10 here, not to rounding
    "ptc_fd": (ss.PseudoTransient(), {}, 1e-9),
    "ptc_gmres_fd": (ss.PseudoTransient(linsolve=ss.GMRES()), {}, 1e-9),
}


@pytest.mark.parametrize("case", sorted(LAW))
def test_every_flow_following_method_keeps_the_law(case):
    """Each method of the chain (and its sparse / matrix-free variants) keeps the linear invariant:
    explicit stages are sums of f values; with W = I / (h gamma) - J and c^T f = 0 for all u, c^T J = 0
    for the exact J and every solve keeps c^T du = 0; GMRES's iterates lie in the Krylov space of f,
    whose vectors all satisfy c^T v = 0 (finite-difference products too, to rounding)."""
    alg, kw, tol = LAW[case]
    prob = ss.SteadyStateProblem(_network(np), np.array([1.0, 0.0, 0.0]), **kw)
    sol = ss.solve(prob, alg, abstol=1e-12)
    assert sol.retcode is RC.Success, sol
    assert abs(_conserved(sol.u) - 1.0) < tol
    np.testing.assert_allclose(sol.u, _network_steady_state(), rtol=10 * tol + 1e-10)


@pytest.mark.parametrize("name", ["robertson", "hires"])
def test_the_default_on_the_stiff_closed_networks(name):
    """Robertson (y1 + y2 + y3 = 1; a rank-1 Jacobian at (0, 0, 1)) and HIRES (y7 + y8 = 0.0057): the
    default keeps the law and lands on the flow's steady state, with the analytic jac and without."""
    P = stiff_set.by_name(name)
    f = P.f(np)
    for kw in (dict(jac=P.jac(np)), {}):
        sol = ss.solve(ss.SteadyStateProblem(f, P.u0.copy(), P.p, **kw), abstol=1e-10, reltol=0.0)
        assert sol.retcode is RC.Success, sol
        if name == "robertson":
            assert abs(sol.u.sum() - 1.0) < 1e-13
            # the approach is algebraic (y1 ~ 1 / t): |f| <= 1e-10 leaves y3 within ~1e-3 of 1
            np.testing.assert_allclose(sol.u, P.reference(), atol=1e-3)
        else:
            assert abs(sol.u[6] + sol.u[7] - 0.0057) < 1e-15
            np.testing.assert_allclose(sol.u, P.reference(), rtol=1e-8, atol=1e-14)
