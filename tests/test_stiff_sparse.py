"""Sparse linear solves of the stiff methods: the Rosenbrock W-solver ``ode.SparseLU`` and
``PseudoTransient(linsolve="sparse")`` on the problem's sparse Jacobian (``sparsity=`` or a sparse ``jac``).

On NumPy ``W = I / (h gamma) - J`` is factorised by SuperLU on the pattern of ``J`` plus the
diagonal: the steps are the dense W-solver's up to rounding. Other libraries make the values dense
(documented), and the Jacobian still comes from the colouring's few products."""

import numpy as np
import pytest
import scipy.sparse as sps
from helpers import Backend, assert_honest, slow_on

import steadysolve as ss
from steadysolve.ode import DenseLU, SparseLU, SparseRows
from steadysolve.sparse import Pattern

from benchmarks.problems import stiff as stiff_set

RC = ss.ReturnCode


def _bruss(N):
    P = stiff_set.brusselator(N)
    pattern = stiff_set.brusselator_pattern(N)
    return P, pattern


def _stats(sol):
    st = sol.stats
    return (st.niter, int(st.naccept), int(st.nreject), st.nf, st.njac, st.nfact, st.nsolve)


def test_the_w_solver_solves_with_i_over_h_gamma_minus_j():
    """One factorisation, solves for several right-hand sides, against the dense solve; a batch of two
    elements with their own step sizes; a singular W gives NaN rows for that element only."""
    rng = np.random.default_rng(3)
    n = 12
    A = sps.random(n, n, density=0.25, random_state=4, format="csr") - 3.0 * sps.identity(n, format="csr")
    pattern = Pattern.from_coo(n, *A.nonzero())
    entries = np.asarray(A[pattern.rows, pattern.cols]).reshape(-1)
    vals = np.stack([entries, 2.0 * entries])
    J = SparseRows(vals, pattern)
    hg = np.array([[0.5], [0.1]])
    fact = SparseLU().factor(np, J, hg)
    rhs = rng.normal(size=(2, n))
    x = SparseLU().solve(np, fact, rhs)
    for b, scale in enumerate((1.0, 2.0)):
        np.testing.assert_allclose((np.eye(n) / hg[b, 0] - scale * A.toarray()) @ x[b], rhs[b], atol=1e-12)
    dense = np.stack([A.toarray(), 2.0 * A.toarray()])
    np.testing.assert_allclose(x, DenseLU().solve(np, DenseLU().factor(np, dense, hg), rhs), rtol=1e-12)
    # W = I - J singular for the first element (J = I on the diagonal): NaN there, the second solved
    eye = Pattern.from_coo(2, [0, 1], [0, 1])
    x = SparseLU().solve(np, SparseLU().factor(np, SparseRows(np.array([[1.0, 1.0], [2.0, 2.0]]), eye),
                                                np.array([[1.0], [1.0]])), np.ones((2, 2)))
    assert np.isnan(x[0]).all() and np.allclose(x[1], -1.0)


def test_the_w_solver_on_a_structurally_symmetric_pattern():
    """A structurally symmetric W (a discretised PDE's) is permuted once by its minimum-degree order and
    each step factorises it in that order: the solves agree with the dense ones, and a non-finite J or a
    singular W gives NaN rows for that element only."""
    from steadysolve.ode._wsolve import _plan

    rng = np.random.default_rng(5)
    n = 30
    S = sps.random(n, n, density=0.1, random_state=6, format="csr")
    S = (S + S.T + sps.identity(n)).tocsr()
    pattern = Pattern.from_coo(n, *S.nonzero())
    assert _plan(pattern).ordered is not None
    vals = rng.normal(size=(4, pattern.nnz))  # unsymmetric values on the symmetric structure
    vals[2, 0] = np.nan
    dense = np.zeros((4, n, n))
    for b in range(4):
        dense[b, pattern.rows, pattern.cols] = vals[b]
    hg = np.array([[0.5], [0.05], [0.1], [1.0]])
    vals[3] = 0.0
    vals[3, pattern.rows == pattern.cols] = 1.0  # J = I: W = I / 1 - J = 0
    fact = SparseLU().factor(np, SparseRows(vals, pattern), hg)
    rhs = rng.normal(size=(4, n))
    x = SparseLU().solve(np, fact, rhs)
    for b in range(2):
        np.testing.assert_allclose((np.eye(n) / hg[b, 0] - dense[b]) @ x[b], rhs[b], atol=1e-10)
    assert np.isnan(x[2]).all()
    assert np.isnan(x[3]).all()


def test_the_w_solver_on_a_narrowly_banded_pattern():
    """A W whose reverse Cuthill-McKee order is narrowly banded (a 1-D discretisation's, here the Brusselator's
    [u; v] layout, bandwidth ~N before reordering) goes to LAPACK's banded LU: the solves agree with the
    dense ones with and without row interchanges (a diagonally dominant W, one that must pivot), and a
    non-finite J or a singular W gives NaN rows for that element only. A wide band keeps SuperLU."""
    from steadysolve.ode._wsolve import _plan

    N = 40
    pattern = Pattern.from_coo(2 * N, *np.nonzero(stiff_set.brusselator_pattern(N)))
    n = pattern.n
    plan = _plan(pattern)
    assert plan.banded is not None and plan.banded.kl + plan.banded.ku <= 6
    rng = np.random.default_rng(7)
    vals = rng.normal(size=(5, pattern.nnz))
    vals[1] *= 50.0  # |J| >> 1 / (h gamma): partial pivoting interchanges rows
    vals[2, 3] = np.inf
    vals[3] = 0.0
    vals[3, pattern.rows == pattern.cols] = 1.0  # J = I: W = I / 1 - J = 0
    dense = np.zeros((5, n, n))
    for b in range(5):
        dense[b, pattern.rows, pattern.cols] = vals[b]
    hg = np.array([[0.01], [1.0], [0.1], [1.0], [0.5]])
    fact = SparseLU().factor(np, SparseRows(vals, pattern), hg)
    assert fact[1].factors[0][1].ndim == 2 and fact[1].factors[1][1].ndim == 1  # tbsv / gbtrs paths
    rhs = rng.normal(size=(5, n))
    x = SparseLU().solve(np, fact, rhs)
    for b in (0, 1, 4):
        np.testing.assert_allclose((np.eye(n) / hg[b, 0] - dense[b]) @ x[b], rhs[b], atol=1e-9)
    assert np.isnan(x[2]).all() and np.isnan(x[3]).all()
    S = sps.random(100, 100, density=0.1, random_state=3, format="csr")  # no narrow band in any order
    assert _plan(Pattern.from_coo(100, *(S + S.T + sps.identity(100)).nonzero())).banded is None


@pytest.mark.parametrize("how", ["sparsity", "sparse jac"])
def test_sparse_w_takes_the_dense_steps(how):
    """The 1-D Brusselator (n = 40): Rodas5P with a sparse Jacobian (colouring from sparsity=, or the
    analytic sparse jac) takes the same steps as with the dense Jacobian and lands on the same state;
    the colouring builds each Jacobian from a few products instead of n."""
    P, pattern = _bruss(20)
    f = P.f(np)
    alg = ss.DynamicSS(ss.Rodas5P(autonomous=True))
    dense = ss.solve(ss.SteadyStateProblem(f, P.u0.copy(), P.p, jac=P.jac(np)), alg, abstol=1e-9, reltol=0.0)
    kw = dict(sparsity=pattern) if how == "sparsity" else dict(jac=P.sparse_jac)
    prob = ss.SteadyStateProblem(f, P.u0.copy(), P.p, **kw)
    sol = ss.solve(prob, alg, abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success and dense.retcode is RC.Success
    assert _stats(sol)[1:3] == _stats(dense)[1:3] and sol.stats.nfact == dense.stats.nfact
    np.testing.assert_allclose(sol.u, dense.u, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(sol.u, P.reference(), atol=1e-8)
    assert_honest(Backend("numpy"), prob, sol, 1e-9, 0.0)
    if how == "sparsity":
        ncolours = int(Pattern.from_coo(P.n, *np.nonzero(pattern)).colouring.max()) + 1
        assert ncolours < 8 and sol.stats.njvp == ncolours * sol.stats.njac
    else:
        assert sol.stats.njvp == 0


@slow_on("jax")
def test_every_backend_with_a_pattern(bk):
    """sparsity= on every library: SuperLU on NumPy, the values made dense elsewhere (same answer)."""
    P, pattern = _bruss(10)
    xp = bk.xp
    prob = ss.SteadyStateProblem(P.f(xp), bk.asarray(P.u0), bk.asarray(P.p), sparsity=pattern)
    sol = ss.solve(prob, ss.DynamicSS(ss.Rodas5P(autonomous=True)), abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success, sol
    np.testing.assert_allclose(bk.to_numpy(sol.u), P.reference(), atol=1e-8)
    assert sol.stats.njvp < 2 * P.n * sol.stats.njac / 4  # a few colours, not n columns


def test_batched_elements_keep_their_own_steps():
    """Two elements with their own W (own steps): each matches its solve alone."""
    P, pattern = _bruss(10)
    f = P.f(np)
    u0 = np.stack([P.u0, P.u0 * 1.2])
    alg = ss.DynamicSS(ss.Rodas5P(autonomous=True))
    sol = ss.solve(ss.SteadyStateProblem(f, u0, P.p, sparsity=pattern), alg, abstol=1e-9, reltol=0.0, batch_axis=0)
    assert sol.retcode is RC.Success
    for b in range(2):
        alone = ss.solve(ss.SteadyStateProblem(f, u0[b], P.p, sparsity=pattern), alg, abstol=1e-9, reltol=0.0)
        assert int(sol.stats.naccept[b]) == int(alone.stats.naccept)
        np.testing.assert_allclose(sol.u[b], alone.u, rtol=1e-10, atol=1e-13)


def test_explicit_choices_and_refusals():
    P, pattern = _bruss(5)
    f = P.f(np)
    plain = ss.SteadyStateProblem(f, P.u0.copy(), P.p)
    with pytest.raises(ValueError, match="needs a sparse Jacobian"):
        ss.solve(plain, ss.DynamicSS(ss.Rodas5P(linsolve=SparseLU())))
    with pytest.raises(ValueError, match="needs a sparse Jacobian"):
        ss.solve(plain, ss.PseudoTransient(linsolve="sparse"))
    with pytest.raises(ValueError, match="takes a dense Jacobian"):
        ss.integrate(lambda u, p, t: -u, np.ones(2), (0.0, 1.0), ss.Rodas5P(linsolve=SparseLU()))
    # DenseLU given: the pattern is not used for W (the dense Jacobian, n finite differences)
    sol = ss.solve(ss.SteadyStateProblem(f, P.u0.copy(), P.p, sparsity=pattern),
                   ss.DynamicSS(ss.Rodas5P(autonomous=True, linsolve=DenseLU())), abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success and sol.stats.njvp == P.n * sol.stats.njac


def test_pseudo_transient_sparse_matches_dense():
    """PTC with the sparse LU: the dense variant's iterates up to rounding; chosen by default on NumPy
    when the problem has a sparse Jacobian, even above the dense size (where it would take GMRES)."""
    P, pattern = _bruss(20)
    f = P.f(np)
    dense = ss.solve(ss.SteadyStateProblem(f, P.u0.copy(), P.p, jac=P.jac(np)), ss.PseudoTransient(linsolve="dense"),
                     abstol=1e-9, reltol=0.0)
    sol = ss.solve(ss.SteadyStateProblem(f, P.u0.copy(), P.p, jac=P.sparse_jac), ss.PseudoTransient(),
                   abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success and sol.stats.niter == dense.stats.niter and sol.stats.nkrylov == 0
    np.testing.assert_allclose(sol.u, dense.u, rtol=1e-10, atol=1e-13)
    P, pattern = _bruss(200)  # n = 400
    big = ss.solve(ss.SteadyStateProblem(P.f(np), P.u0.copy(), P.p, sparsity=pattern), ss.PseudoTransient(),
                   abstol=1e-8, reltol=0.0)
    assert big.retcode is RC.Success and big.stats.nkrylov == 0 and big.stats.njac == big.stats.niter
    np.testing.assert_allclose(big.u, P.reference(), atol=1e-7)


@slow_on("jax")
def test_pseudo_transient_sparse_on_every_backend(bk):
    P, pattern = _bruss(10)
    xp = bk.xp
    prob = ss.SteadyStateProblem(P.f(xp), bk.asarray(P.u0), bk.asarray(P.p), sparsity=pattern)
    sol = ss.solve(prob, ss.PseudoTransient(linsolve="sparse"), abstol=1e-9, reltol=0.0)
    assert sol.retcode is RC.Success, sol
    np.testing.assert_allclose(bk.to_numpy(sol.u), P.reference(), atol=1e-8)
    assert sol.stats.nkrylov == 0 and sol.stats.njvp < P.n * sol.stats.njac


def test_unstable_equilibrium_still_refused_with_a_sparse_jacobian():
    """The Brusselator past its Hopf point (B = 3.5 > 1 + A^2 = 2): long steps would converge to the
    unstable homogeneous state; the sparse path makes J dense for the guard (small n) and says Diverged."""
    N, A, B = 8, 1.0, 3.5
    c = 0.02 * (N + 1) ** 2

    def f(u, p, t):
        U, V = u[:N], u[N:]
        lu = np.concatenate([[A], U[:-1]]) - 2 * U + np.concatenate([U[1:], [A]])
        lv = np.concatenate([[B / A], V[:-1]]) - 2 * V + np.concatenate([V[1:], [B / A]])
        return np.concatenate([c * lu + A - (B + 1) * U + U * U * V, c * lv + B * U - U * U * V])

    u0 = np.concatenate([np.full(N, A), np.full(N, B / A)]) + 1e-3
    d = np.arange(2 * N)
    rows = np.concatenate([d, d[1:], d[:-1], d[:N], d[N:]])
    cols = np.concatenate([d, d[:-1], d[1:], d[N:], d[:N]])
    for alg in (ss.DynamicSS(ss.Rodas5P(autonomous=True)), ss.PseudoTransient()):
        sol = ss.solve(ss.SteadyStateProblem(f, u0, sparsity=(rows, cols)), alg, abstol=1e-10, maxiters=2000)
        assert sol.retcode is not RC.Success, (alg, sol)


@pytest.mark.slow
def test_under_jax_jit():
    """The whole solve under jax.jit: the colouring's products by jax.jvp, the values made dense for W."""
    import jax
    import jax.numpy as jnp

    P, pattern = _bruss(10)
    f = P.f(jnp)

    def run(u0, alg):
        sol = ss.solve(ss.SteadyStateProblem(f, u0, jnp.asarray(P.p), sparsity=pattern), alg, abstol=1e-9, reltol=0.0)
        return sol.u, sol.retcode_array

    for alg in (ss.DynamicSS(ss.Rodas5P(autonomous=True)), ss.PseudoTransient(linsolve="sparse")):
        u, code = jax.jit(lambda u0: run(u0, alg))(jnp.asarray(P.u0))
        assert int(np.asarray(code).reshape(-1)[0]) == RC.Success.code
        np.testing.assert_allclose(np.asarray(u), P.reference(), atol=1e-8)
