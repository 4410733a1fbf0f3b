"""The Newton family on sparse Jacobians (``sparsity=`` or a sparse ``jac``): sparse LU / dogleg / damped
steps that reproduce the dense methods' iterates, the size refusal for dense Jacobians only, ``Auto``'s
sparse chain, and the refusal under ``jax.jit`` for systems too large for the dense fallback."""

import array_api_compat
import numpy as np
import pytest
import scipy.sparse as sp

import steadysolve as ss
from steadysolve import sparse
from steadysolve.algorithms.trust_region import dogleg, dogleg_from
from steadysolve.linear._sparse_steps import SparseSteps

N = 12  # unknowns per element (a multiple of 3: the periodic tridiagonal pattern takes 3 colours)


def _F(u, p):
    """-u'' + u^3 = 1 on a periodic grid (scaled), three nonzeros per Jacobian row; batched over leading axes."""
    xp = array_api_compat.array_namespace(u)
    return 4.0 * (2.0 * u - xp.roll(u, 1, axis=-1) - xp.roll(u, -1, axis=-1)) + u ** 3 - p


def _pattern(n=N):
    eye = np.eye(n, dtype=bool)
    return eye | np.roll(eye, 1, axis=0) | np.roll(eye, -1, axis=0)


def _jac(u, p):
    u = np.asarray(u)
    n = u.shape[-1]
    lap = 4.0 * (2.0 * np.eye(n) - np.roll(np.eye(n), 1, axis=0) - np.roll(np.eye(n), -1, axis=0))
    return sp.csr_matrix(lap + np.diag(3.0 * u ** 2))


def _start(bk, batch=None):
    u0 = 0.3 + 0.5 * np.sin(np.linspace(0.0, 2 * np.pi, N, endpoint=False))
    if batch:
        u0 = np.stack([u0 * (1 + 0.5 * b) for b in range(batch)])
    return bk.asarray(u0), bk.asarray(np.ones(N))


@pytest.mark.parametrize("iters", [1, 2, 3])
@pytest.mark.slow
def test_sparse_newton_takes_the_dense_newton_iterates(bk, iters):
    u0, p = _start(bk)
    dense = ss.NonlinearProblem(_F, u0, p)
    sparse_prob = ss.NonlinearProblem(_F, u0, p, sparsity=_pattern())
    alg = ss.NewtonRaphson(linesearch=None)
    a = ss.solve(dense, alg, maxiters=iters, abstol=1e-300)
    b = ss.solve(sparse_prob, alg, maxiters=iters, abstol=1e-300)
    np.testing.assert_allclose(bk.to_numpy(b.u), bk.to_numpy(a.u), rtol=1e-12, atol=1e-14)
    assert b.stats["njac"] == b.stats["nfact"] == iters
    # the sparse Jacobian costs one product per colour (3), the dense one a product per column (12)
    assert b.stats.njvp == 3 * iters and a.stats.njvp == N * iters


def test_sparse_newton_solves_like_dense_newton_with_its_line_search(bk):
    u0, p = _start(bk)
    a = ss.solve(ss.NonlinearProblem(_F, 4.0 * u0, p), ss.NewtonRaphson(), abstol=1e-12)
    b = ss.solve(ss.NonlinearProblem(_F, 4.0 * u0, p, sparsity=_pattern()), ss.NewtonRaphson(), abstol=1e-12)
    assert a.retcode.name == b.retcode.name == "Success"
    assert (a.stats.niter, a.stats["nbacktrack"]) == (b.stats.niter, b.stats["nbacktrack"])
    np.testing.assert_allclose(bk.to_numpy(b.u), bk.to_numpy(a.u), rtol=1e-12)


@pytest.mark.parametrize("name", ["newton", "trust_region", "levenberg_marquardt"])
def test_a_batch_factorises_each_element_on_one_colouring(name):
    u0, p = _start(get_np(), batch=3)
    a = ss.solve(ss.NonlinearProblem(_F, 3.0 * u0, p), name, abstol=1e-12, batch_axis=0)
    b = ss.solve(ss.NonlinearProblem(_F, 3.0 * u0, p, sparsity=_pattern()), name, abstol=1e-12, batch_axis=0)
    assert a.retcodes == b.retcodes and all(r.name == "Success" for r in b.retcodes)
    assert list(a.stats.niter_per_element) == list(b.stats.niter_per_element)
    np.testing.assert_allclose(b.u, a.u, rtol=1e-10)
    assert b.stats["nfact"] >= b.stats["njac"]  # one factorisation per element that needed one


def get_np():
    from helpers import get_backend

    return get_backend("numpy")


def test_the_size_refusal_is_for_dense_jacobians_only():
    u0, p = _start(get_np())
    with pytest.raises(ValueError, match=r"NewtonRaphson: the system has n=12 unknowns per element, above max_size=5"):
        ss.solve(ss.NonlinearProblem(_F, u0, p), ss.NewtonRaphson(max_size=5))
    for alg in (ss.NewtonRaphson(max_size=5), ss.TrustRegion(max_size=5), ss.LevenbergMarquardt(max_size=5)):
        sol = ss.solve(ss.NonlinearProblem(_F, u0, p, sparsity=_pattern()), alg, abstol=1e-12)
        assert sol.retcode.name == "Success" and np.abs(_F(sol.u, p)).max() <= 1e-12


@pytest.mark.slow
def test_a_large_sparse_system_is_solved_by_sparse_newton():
    n = 3000
    u0, p = np.full(n, 0.5), np.ones(n)
    sol = ss.solve(ss.NonlinearProblem(_F, u0, p, jac=_jac), ss.NewtonRaphson(), abstol=1e-10)
    assert sol.retcode.name == "Success" and np.abs(_F(sol.u, p)).max() <= 1e-10
    assert sol.stats["njac"] == sol.stats["nfact"] and sol.stats.njvp == 0


def _diag_jac(u, p):  # J = diag(2 u): exactly singular at u = 0
    return sp.diags(2.0 * np.asarray(u), format="csr")


def test_a_singular_sparse_jacobian_is_an_honest_linear_solve_failure():
    def f(u, p):
        return u ** 2 + 1.0

    prob = ss.NonlinearProblem(f, np.zeros(4), jac=_diag_jac, sparsity=np.eye(4, dtype=bool))
    sol = ss.solve(prob, ss.NewtonRaphson())
    assert sol.retcode.name == "LinearSolveFailed" and not sol.successful


@pytest.mark.slow
def test_sparse_trust_region_takes_the_dense_iterates(bk):
    u0, p = _start(bk)
    a = ss.solve(ss.NonlinearProblem(_F, 4.0 * u0, p), ss.TrustRegion(factor=0.1), abstol=1e-12)
    b = ss.solve(ss.NonlinearProblem(_F, 4.0 * u0, p, sparsity=_pattern()), ss.TrustRegion(factor=0.1), abstol=1e-12)
    assert a.retcode.name == b.retcode.name == "Success"
    assert (a.stats.niter, a.stats["nreject"], a.stats["njac"]) == (b.stats.niter, b.stats["nreject"], b.stats["njac"])
    np.testing.assert_allclose(bk.to_numpy(b.u), bk.to_numpy(a.u), rtol=1e-12)
    assert b.stats["nfact"] <= b.stats.niter  # a rejected step keeps J and its factors


def _steps(J, B=1):
    """A SparseSteps on NumPy over the pattern of ``J`` (values read from it)."""
    import types

    pattern = sparse.as_pattern(J != 0, "test")
    xp = array_api_compat.array_namespace(np.zeros(1))
    source = types.SimpleNamespace(pattern=pattern)
    ctx = types.SimpleNamespace(xp=xp, dtype=np.float64, device="cpu")
    values = np.stack([np.asarray(J[pattern.rows, pattern.indices]).ravel()] * B)
    return SparseSteps(ctx, source), values


@pytest.mark.parametrize("radius", [1e-3, 0.05, 0.3, 1e3])
def test_sparse_dogleg_equals_the_dense_one_and_stays_inside_the_region(radius):
    rng = np.random.default_rng(0)
    n = 30
    J = sp.random(n, n, density=0.1, random_state=1, format="csr") + sp.diags(2.0 + rng.random(n))
    steps, values = _steps(J)
    fu = rng.standard_normal((1, n))
    D = 0.5 + rng.random((1, n))
    r = np.array([radius])
    pN, failed, nfact = steps.newton(values, fu)
    sparse_step, ynorm, usable = dogleg_from(np, pN, steps.rmatvec(values, fu), lambda v: steps.matvec(values, v),
                                             D, r, ~failed)
    dense_step, ynorm_d, _ = dogleg(np, J.toarray()[None], fu, D, r)
    assert usable.all() and nfact == 1 and not failed.any()
    np.testing.assert_allclose(sparse_step, dense_step, rtol=1e-10, atol=1e-14)
    assert float(np.linalg.norm(D * sparse_step)) <= radius * (1 + 1e-12)
    np.testing.assert_allclose(ynorm, np.linalg.norm(D * sparse_step, axis=1), rtol=1e-12)
    if radius >= 1e3:  # the Newton point fits: the step is J^-1 (-F)
        np.testing.assert_allclose(sparse_step[0], np.linalg.solve(J.toarray(), -fu[0]), rtol=1e-10)


@pytest.mark.parametrize("solver", ["normal", "lsmr"])
def test_sparse_levenberg_marquardt_at_zero_damping_is_gauss_newton(solver):
    u0, p = _start(get_np())
    prob = ss.NonlinearProblem(_F, u0, p, sparsity=_pattern())
    lm = ss.solve(prob, ss.LevenbergMarquardt(damping=1e-300, sparse_solver=solver), maxiters=1, abstol=1e-300)
    newton = ss.solve(prob, ss.NewtonRaphson(linesearch=None), maxiters=1, abstol=1e-300)
    np.testing.assert_allclose(lm.u, newton.u, rtol=1e-7 if solver == "lsmr" else 1e-10)
    assert lm.stats["nfact"] == (1 if solver == "normal" else 0)


def test_sparse_levenberg_marquardt_damped_step_solves_the_damped_normal_equations():
    rng = np.random.default_rng(2)
    n = 20
    J = sp.random(n, n, density=0.15, random_state=3, format="csr") + sp.identity(n)
    steps, values = _steps(J)
    fu, D, damp = rng.standard_normal((1, n)), 1.0 + rng.random((1, n)), np.array([0.3])
    g = steps.rmatvec(values, fu)
    Jd = J.toarray()
    expect = -np.linalg.solve(Jd.T @ Jd + 0.3 * np.diag(D[0] ** 2), Jd.T @ fu[0])
    for method, arg in (("normal", g), ("lsmr", fu)):
        delta, failed, _ = steps.damped(values, arg, damp, D, method)
        assert not failed.any()
        np.testing.assert_allclose(delta[0], expect, rtol=1e-6)


def test_column_norms_of_sparse_values():
    J = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [4.0, 0.0, 0.0]]))
    steps, values = _steps(J, B=2)
    np.testing.assert_allclose(steps.column_norms(values), np.linalg.norm(J.toarray(), axis=0)[None].repeat(2, 0))


@pytest.mark.parametrize("structure", ["sparsity", "jac"])
def test_auto_starts_with_sparse_newton_given_a_sparse_structure(structure):
    n = 600  # above Auto's dense_max: without a structure the chain is matrix-free
    u0, p = np.full(n, 0.5), np.ones(n)
    kw = {"sparsity": _pattern(n)} if structure == "sparsity" else {"jac": _jac}
    sol = ss.solve(ss.NonlinearProblem(_F, u0, p, **kw), abstol=1e-10)
    assert sol.retcode.name == "Success" and type(sol.alg) is ss.NewtonRaphson
    assert list(sol.stats["attempts"]) == ["newton"]
    assert sol.stats["attempts"]["newton"]["nfact"] >= 1
    plain = ss.solve(ss.NonlinearProblem(_F, u0, p), abstol=1e-10)
    assert type(plain.alg) is ss.NewtonKrylov
    assert [type(a).__name__ for a, _ in ss.Auto().chain("nonlinear", n, sparse=True)] == [
        "NewtonRaphson", "TrustRegion", "NewtonKrylov"]


def test_auto_falls_back_along_the_sparse_chain():
    def f(u, p):  # J = [[1, 1], [u1, u0]] is singular on u0 = u1: sparse Newton fails there, the dogleg's
        return np.stack([u[0] + u[1] - 2.0, u[0] * u[1] - 1.0])  # Cauchy steps reach the root (1, 1) on that line

    def jac(u, p):
        return sp.csr_matrix(np.array([[1.0, 1.0], [u[1], u[0]]]))

    sol = ss.solve(ss.NonlinearProblem(f, np.array([2.0, 2.0]), jac=jac), abstol=1e-10)
    assert sol.retcode.name == "Success" and np.abs(f(sol.u, None)).max() <= 1e-10
    assert list(sol.stats["attempts"])[:2] == ["newton", "trust_region"]
    assert sol.stats["attempts"]["newton"]["nfact"] >= 1


@pytest.mark.slow
def test_jax_jit_refuses_a_sparse_system_too_large_for_the_dense_fallback():
    import jax
    import jax.numpy as jnp

    u0, p = jnp.asarray(_start(get_np())[0]), jnp.ones(N)
    prob = ss.NonlinearProblem(_F, u0, p, sparsity=_pattern())

    def run(alg):
        return jax.jit(lambda u: ss.solve(ss.NonlinearProblem(_F, u, p, sparsity=_pattern()), alg, abstol=1e-12).u)(u0)

    with pytest.raises(ValueError, match="cannot run under jax.jit.*Use NewtonKrylov with a preconditioner"):
        run(ss.NewtonRaphson(max_size=5))
    u = run(ss.NewtonRaphson())  # n <= max_size: the dense Jacobian under jit
    eager = ss.solve(prob, ss.NewtonRaphson(), abstol=1e-12)  # eager JAX: the host factorisation
    assert float(jnp.abs(_F(u, p)).max()) <= 1e-12 and eager.retcode.name == "Success"
    np.testing.assert_allclose(np.asarray(u), np.asarray(eager.u), rtol=1e-10)
