"""Sparse LU, damped normal equations, LSMR and the dogleg pieces (steadysolve.linear.sparse) on known systems."""

import numpy as np
import pytest
import scipy.sparse as sp

from steadysolve.linear import sparse as sl
from benchmarks.problems import bruss


def _system(n=30, seed=0, symmetric_structure=True):
    rng = np.random.default_rng(seed)
    A = sp.random(n, n, density=4 / n, random_state=rng, format="csr")
    if symmetric_structure:
        A = A + A.T
    return (A + sp.diags(rng.uniform(3.0, 5.0, n))).tocsr()  # diagonally dominant: nonsingular


def test_lu_solves_each_element_and_counts_factorisations():
    mats = [_system(seed=s) for s in range(3)]
    x_true = np.random.default_rng(9).normal(size=(3, 30))
    rhs = np.stack([A @ x for A, x in zip(mats, x_true)])
    lu = sl.SparseLU(mats)
    np.testing.assert_allclose(lu.solve(rhs), x_true, rtol=1e-12, atol=1e-12)
    assert lu.nfact == 3 and not lu.failed.any()
    np.testing.assert_allclose(lu.solve(np.stack([A.T @ x for A, x in zip(mats, x_true)]), trans="T"), x_true,
                               rtol=1e-12, atol=1e-12)


def test_a_shared_matrix_is_factorised_once():
    A = _system()
    lu = sl.SparseLU([A, A, A])
    assert lu.nfact == 1
    b = np.ones((3, 30))
    x = lu.solve(b)
    np.testing.assert_allclose(x[0], x[2])
    np.testing.assert_allclose(A @ x[1], b[1], atol=1e-12)


def test_orderings_follow_the_structure():
    sym, general = _system(), _system(symmetric_structure=False)
    assert sl.structurally_symmetric(sym) and not sl.structurally_symmetric(general)
    for A in (sym, general):
        x = sl.SparseLU([A]).solve(np.ones((1, 30)))
        np.testing.assert_allclose(A @ x[0], np.ones(30), atol=1e-12)


def test_singular_and_non_finite_elements_fail_alone():
    good = _system()
    singular = good.tolil()
    singular[4, :] = 0.0  # a zero row: exactly singular
    nan = good.copy()
    nan.data[0] = np.nan
    lu = sl.SparseLU([good, singular.tocsr(), nan])
    assert lu.failed.tolist() == [False, True, True] and lu.nfact == 2  # the NaN matrix is never factorised
    x = lu.solve(np.ones((3, 30)))
    np.testing.assert_allclose(good @ x[0], np.ones(30), atol=1e-12)
    assert (x[1:] == 0).all()


def test_brusselator_newton_step():
    F, u0, p = bruss.problem(16)
    J = bruss.jacobian(u0, p)
    step = sl.SparseLU([J]).solve(-F(u0, p)[None, :])[0]
    np.testing.assert_allclose(J @ step, -F(u0, p), rtol=1e-9, atol=1e-9 * np.abs(F(u0, p)).max())


def _damped_reference(J, r, lam, d):
    A = J.toarray()
    return np.linalg.solve(A.T @ A + lam * np.diag(d ** 2), r)


ENGINES = ["superlu", pytest.param("cholmod", marks=pytest.mark.skipif(not sl.cholmod_available(),
                                                                           reason="scikit-sparse not installed"))]


@pytest.mark.parametrize("engine", ENGINES)
def test_damped_normal_equations(engine):
    rng = np.random.default_rng(3)
    mats = [_system(seed=1, symmetric_structure=False), _system(seed=2)]
    D = rng.uniform(0.5, 2.0, (2, 30))
    lam = np.array([0.1, 3.0])
    r = rng.normal(size=(2, 30))
    fac = sl.DampedNormal(mats, lam, D, engine=engine)
    assert fac.engine == engine and fac.nfact == 2
    s = fac.solve(r)
    for b in range(2):
        np.testing.assert_allclose(s[b], _damped_reference(mats[b], r[b], lam[b], D[b]), rtol=1e-10)
    unscaled = sl.DampedNormal(mats, 0.5, engine=engine).solve(r)
    np.testing.assert_allclose(unscaled[0], _damped_reference(mats[0], r[0], 0.5, np.ones(30)), rtol=1e-10)


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_damping_is_gauss_newton(engine):
    """``lam = 0``: the normal-equation step of a square nonsingular system is the Newton step."""
    J = _system(seed=4)
    fu = np.random.default_rng(4).normal(size=30)
    s = sl.DampedNormal([J], 0.0, engine=engine).solve(-(J.T @ fu)[None, :])[0]
    np.testing.assert_allclose(J @ s, -fu, rtol=1e-9, atol=1e-9)


def test_damped_normal_on_a_rank_deficient_system_without_damping_fails_honestly():
    J = sp.csr_matrix(np.diag([1.0, 2.0, 0.0]))
    fac = sl.DampedNormal([J], 0.0, engine="superlu")
    assert fac.failed.tolist() == [True]
    ok = sl.DampedNormal([J], 1e-3, engine="superlu")
    np.testing.assert_allclose(ok.solve(np.array([[1.0, 2.0, 0.0]])), [[1 / 1.001, 2 / 4.001, 0.0]])


@pytest.mark.skipif(not sl.cholmod_available(), reason="scikit-sparse not installed")
def test_cholmod_reuses_the_symbolic_analysis_for_a_new_damping():
    J = _system(seed=5)
    first = sl.DampedNormal([J], 1.0, engine="cholmod")
    again = sl.DampedNormal([J * 2.0], 0.1, engine="cholmod", analysis=first.analysis)
    assert again.analysis[0] is first.analysis[0]
    r = np.ones((1, 30))
    np.testing.assert_allclose(again.solve(r)[0], _damped_reference(J * 2.0, r[0], 0.1, np.ones(30)), rtol=1e-10)


def test_lsmr_damped_matches_the_normal_equations():
    rng = np.random.default_rng(6)
    mats = [_system(seed=6), _system(seed=7, symmetric_structure=False)]
    D = rng.uniform(0.5, 2.0, (2, 30))
    rhs = rng.normal(size=(2, 30))
    s, niter, failed = sl.lsmr_damped(mats, rhs, lam=0.2, D=D, atol=1e-14, btol=1e-14, maxiter=300)
    assert not failed.any() and (niter > 0).all()
    for b in range(2):  # min |J s - rhs|^2 + lam |D s|^2  <=>  (J^T J + lam D^2) s = J^T rhs
        np.testing.assert_allclose(s[b], _damped_reference(mats[b], mats[b].T @ rhs[b], 0.2, D[b]), rtol=1e-8)
    _, _, capped = sl.lsmr_damped(mats, rhs, lam=0.0, maxiter=2)
    assert capped.all()  # stopped by the iteration limit: reported, not returned as a step


def test_gradient_and_cauchy_step():
    J = _system(seed=8, symmetric_structure=False)
    fu = np.random.default_rng(8).normal(size=(1, 30))
    g, t = sl.cauchy([J], fu)
    np.testing.assert_allclose(g[0], J.toarray().T @ fu[0])
    np.testing.assert_allclose(sl.gradient([J], fu), g)
    # t minimises |F - t J g| along the steepest descent direction
    phi = [np.linalg.norm(fu[0] - tt * (J @ g[0])) for tt in (0.9 * t[0], t[0], 1.1 * t[0])]
    assert phi[1] < phi[0] and phi[1] < phi[2]
    _, t0 = sl.cauchy([sp.csr_matrix((30, 30))], fu)
    assert t0.tolist() == [0.0]
