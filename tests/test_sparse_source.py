"""``ctx.sparse_jacobians(u)``: the residual's sparse Jacobian of a solve, the same values whichever
way it is obtained (a sparse ``jac``, colouring by finite differences / JVPs / AD), on every backend."""

import array_api_compat
import numpy as np
import pytest
import scipy.sparse as sp
from helpers import get_backend

import steadysolve as ss
from steadysolve._backend.layout import Layout
from steadysolve.solve import build_context
from steadysolve.termination import get_norm

N = 10
A = (2.0 * np.eye(N) - 0.5 * (np.eye(N, k=1) + np.eye(N, k=-1)))


def _F(u, p):
    xp = array_api_compat.array_namespace(u)
    left = xp.concat([u[..., :1] * 0, u[..., :-1]], axis=-1)
    right = xp.concat([u[..., 1:], u[..., :1] * 0], axis=-1)
    return 2.0 * u - 0.5 * (left + right) + 0.1 * u ** 3 - p


def _dense_J(u):
    return A + np.diag(0.3 * np.asarray(u) ** 2)


def _ctx(prob, bk):
    layout = Layout(bk.xp, prob.u0.shape, None)
    fu0 = prob.residual(prob.u0, prob.p)
    return build_context(prob, prob.u0, layout, bk.xp, fu0, 1e-12, 0.0, get_norm("max"))


def _dense_of(bk, src, values):
    host = bk.to_numpy(values)
    return np.stack([src.pattern.to_scipy(host[b]).toarray() for b in range(host.shape[0])])


def test_colouring_gives_the_jacobian_on_every_backend(bk):
    u0 = np.linspace(-1.0, 1.0, N)
    prob = ss.NonlinearProblem(_F, bk.asarray(u0), 0.3, sparsity=A != 0)
    ctx = _ctx(prob, bk)
    u = bk.xp.reshape(prob.u0, (1, N))
    src = ctx.sparse_jacobians(u)
    values, nprod = src.at(u, ctx.F(u))
    assert nprod == src.groups.ncolours == 3
    tol = 1e-6 if ctx.products.jvp_kind == "fd" else 1e-12
    np.testing.assert_allclose(_dense_of(bk, src, values)[0], _dense_J(u0), atol=tol)
    assert ctx.sparse_jacobians(u) is src  # one per solve


def test_a_sparse_jac_is_read_without_products_and_its_structure_is_the_pattern():
    bk = get_backend("numpy")
    u0 = np.linspace(-1.0, 1.0, N)
    calls = []

    def jac(u, p):
        calls.append(1)
        return sp.csr_matrix(_dense_J(u))

    prob = ss.NonlinearProblem(_F, u0, 0.3, jac=jac)
    ctx = _ctx(prob, bk)
    u = u0.reshape(1, N)
    src = ctx.sparse_jacobians(u)
    values, nprod = src.at(u, ctx.F(u))
    assert nprod == 0 and len(calls) == 1  # the call that saw a sparse jac serves the first Jacobian
    assert src.pattern.nnz == 3 * N - 2
    np.testing.assert_allclose(src.matrices(values)[0].toarray(), _dense_J(u0))


def test_structure_of_a_sparse_jac_grows_when_no_pattern_was_given():
    bk = get_backend("numpy")
    u0 = np.zeros(N)  # the diagonal's 0.3 u^2 is an explicit zero SciPy drops ...

    def jac(u, p):
        J = sp.csr_matrix(_dense_J(u) - 2.0 * np.eye(N))
        J.eliminate_zeros()
        return J

    prob = ss.NonlinearProblem(_F, u0, 0.3, jac=jac)
    ctx = _ctx(prob, bk)
    src = ctx.sparse_jacobians(u0.reshape(1, N))
    src.at(u0.reshape(1, N), None)
    assert src.pattern.nnz == 2 * N - 2
    u1 = np.full((1, N), 0.5)  # ... and a nonzero later: the pattern widens instead of failing
    values, _ = src.at(u1, None)
    assert src.pattern.nnz == 3 * N - 2
    np.testing.assert_allclose(src.matrices(values)[0].toarray(), _dense_J(u1[0]) - 2.0 * np.eye(N))


def test_a_stated_pattern_that_misses_an_entry_of_jac_is_an_error():
    bk = get_backend("numpy")
    u0 = np.linspace(-1.0, 1.0, N)
    prob = ss.NonlinearProblem(_F, u0, 0.3, jac=lambda u, p: sp.csr_matrix(_dense_J(u)), sparsity=np.eye(N, dtype=bool))
    ctx = _ctx(prob, bk)
    u = u0.reshape(1, N)
    with pytest.raises(ValueError, match="misses nonzeros"):
        ctx.sparse_jacobians(u).at(u, None)


def test_no_pattern_and_a_dense_jac_means_no_sparse_jacobian():
    bk = get_backend("numpy")
    u0 = np.linspace(-1.0, 1.0, N)
    assert _ctx(ss.NonlinearProblem(_F, u0, 0.3), bk).sparse_jacobians(u0.reshape(1, N)) is None
    prob = ss.NonlinearProblem(_F, u0, 0.3, jac=lambda u, p: _dense_J(u))
    assert _ctx(prob, bk).sparse_jacobians(u0.reshape(1, N)) is None


def test_batched_elements_share_one_colouring():
    bk = get_backend("numpy")
    u0 = np.stack([np.linspace(-1.0, 1.0, N), np.linspace(0.0, 2.0, N)])
    prob = ss.NonlinearProblem(_F, u0, 0.3, sparsity=A != 0)
    layout = Layout(np, u0.shape, 0)
    ctx = build_context(prob, u0, layout, np, prob.residual(u0, 0.3), 1e-12, 0.0, get_norm("max"))
    src = ctx.sparse_jacobians(u0)
    values, nprod = src.at(u0, ctx.F(u0))
    assert nprod == 3 and values.shape == (2, 3 * N - 2)
    for b in range(2):
        np.testing.assert_allclose(src.matrices(values)[b].toarray(), _dense_J(u0[b]), atol=1e-6)
