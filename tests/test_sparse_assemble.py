"""Sparse Jacobians from one product per colour equal the dense Jacobians, on every backend that assembles;
a user's sparse ``jac`` is checked (library, shape, dtype, the pattern) and read onto the pattern."""

import numpy as np
import pytest
import scipy.sparse as sp

import steadysolve as ss
from steadysolve import _backend as backend, sparse
from steadysolve._backend.derivatives import Products
from benchmarks.problems import bruss


def _weights(n=40, per_row=4, seed=0):
    """A sparse weight matrix (with its diagonal): the pattern of the test map's Jacobian."""
    W = sp.random(n, n, density=per_row / n, random_state=np.random.default_rng(seed), format="csr")
    W = W + sp.diags(np.linspace(1.0, 2.0, n))
    W.data = np.where(np.arange(W.nnz) % 2 == 0, 1.0, -1.0) * (0.5 + W.data)
    return W.tocsr()


def _map(bk, W):
    """``F(u) = W sin(u) + 0.1 u^3`` on rows, and its exact Jacobian ``W diag(cos u) + diag(0.3 u^2)`` (NumPy)."""
    Wt = bk.asarray(W.toarray().T)

    def F(u):
        xp = backend.namespace(("u", u))
        return xp.sin(u) @ Wt + 0.1 * u ** 3

    def exact(u):
        return W.toarray() * np.cos(u)[None, :] + np.diag(0.3 * u ** 2)

    return F, exact


def _dense(values, pattern):
    out = []
    for row in np.asarray(values):
        out.append(pattern.to_scipy(row).toarray())
    return np.stack(out)


def _start(bk, n, B=3, seed=5):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-2.0, 2.0, (B, n))
    u[0, 0] = 0.0  # a zero component: its step is sqrt(eps) * typical
    return u, bk.asarray(u)


@pytest.mark.slow
def test_finite_differences_equal_the_dense_finite_difference_jacobian(bk):
    W = _weights()
    P = sparse.as_pattern(W, "test")
    F, exact = _map(bk, W)
    u_np, u = _start(bk, P.n)
    xp = backend.namespace(("u", u))
    fu = F(u)
    calls = []
    groups = sparse.ColumnGroups(xp, P, u.dtype, backend.device_of(u))
    values = groups.finite_differences(lambda x: calls.append(1) or F(x), u, fu)
    assert len(calls) == groups.ncolours < P.n  # one evaluation of F per colour (shared by the batch)
    got = _dense(bk.to_numpy(values), P)
    dense_fd, _ = Products(xp, F, ad=False).jacobian(u, fu)  # the package's dense rule: n evaluations
    np.testing.assert_allclose(got, bk.to_numpy(dense_fd), rtol=1e-12, atol=1e-12)
    for b in range(u_np.shape[0]):
        np.testing.assert_allclose(got[b], exact(u_np[b]), atol=1e-6)


def test_jvp_products_are_exact(bk):
    """Any ``jvp(u, v, fu)`` (here the exact one, written on the array API), one per colour."""
    W = _weights(seed=2)
    P = sparse.as_pattern(W, "test")
    F, exact = _map(bk, W)
    Wt = bk.asarray(W.toarray().T)
    u_np, u = _start(bk, P.n)
    xp = backend.namespace(("u", u))

    def jvp(u, v, fu):
        return (xp.cos(u) * v) @ Wt + 0.3 * u ** 2 * v

    groups = sparse.ColumnGroups(xp, P, u.dtype, backend.device_of(u))
    got = _dense(bk.to_numpy(groups.from_jvp(jvp, u, F(u))), P)
    for b in range(u_np.shape[0]):
        np.testing.assert_allclose(got[b], exact(u_np[b]), rtol=1e-13, atol=1e-13)


def _case(name, seed):
    """One library's test map with its pattern, a batch of 3 starts and the decompression plan."""
    bk = _backend(name)
    W = _weights(seed=seed)
    P = sparse.as_pattern(W, "test")
    F, exact = _map(bk, W)
    u_np, u = _start(bk, P.n)
    return P, F, exact, u_np, u, sparse.ColumnGroups(backend.namespace(("u", u)), P, u.dtype, backend.device_of(u))


def test_torch_forward_mode_ad():
    import torch

    from steadysolve._backend.torch_ops import torch_jvp

    P, F, exact, u_np, u, groups = _case("torch", 3)
    J = groups.to_library(groups.from_jvp(torch_jvp(F), u, F(u)))
    assert J.layout == torch.sparse_csr and tuple(J.shape) == (3, P.n, P.n)
    for b in range(3):
        np.testing.assert_allclose(J.to_dense()[b].numpy(), exact(u_np[b]), rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("jit", [False, True])
@pytest.mark.slow
def test_jax_vmapped_jvp_eager_and_jitted(jit):
    import jax

    P, F, exact, u_np, u, groups = _case("jax", 4)
    assemble = jax.jit(lambda x: groups.jax_jvp(F, x)) if jit else (lambda x: groups.jax_jvp(F, x))
    J = groups.to_library(assemble(u))
    assert type(J).__name__ == "BCOO" and J.shape == (3, P.n, P.n)
    dense = np.asarray(J.todense())
    for b in range(3):
        np.testing.assert_allclose(dense[b], exact(u_np[b]), rtol=1e-13, atol=1e-13)


def test_jax_finite_differences_under_jit():
    import jax

    P, F, exact, u_np, u, groups = _case("jax", 6)
    values = jax.jit(lambda x: groups.finite_differences(F, x, F(x)))(u)
    got = _dense(np.asarray(values), P)
    for b in range(3):
        np.testing.assert_allclose(got[b], exact(u_np[b]), atol=1e-6)


@pytest.mark.slow
def test_brusselator_by_colour_on_every_backend(bk):
    N = 8
    F, u0_np, p = bruss.problem(N)
    u_np = np.stack([u0_np, u0_np + 0.25])
    u = bk.asarray(u_np)
    xp = backend.namespace(("u", u))
    P = sparse.as_pattern(bruss.sparsity(N), "test")
    groups = sparse.ColumnGroups(xp, P, u.dtype, backend.device_of(u))
    assert groups.ncolours <= 12

    def rows(x):
        return F(x, p)

    fu = rows(u)
    fd = _dense(bk.to_numpy(groups.finite_differences(rows, u, fu)), P)
    dense_fd, _ = Products(xp, rows, ad=False).jacobian(u, fu)
    np.testing.assert_allclose(fd, bk.to_numpy(dense_fd), rtol=1e-12, atol=1e-9)
    for b in range(2):
        exact = bruss.jacobian(u_np[b], p).toarray()
        np.testing.assert_allclose(fd[b], exact, atol=2e-6 * np.abs(exact).max())
        if bk.name in ("torch", "jax"):  # automatic differentiation where the library has it
            ad = Products(xp, rows).jvp if bk.name == "torch" else None
            vals = groups.from_jvp(ad, u, fu) if ad else groups.jax_jvp(rows, u)
            np.testing.assert_allclose(_dense(bk.to_numpy(vals), P)[b], exact, rtol=1e-12, atol=1e-9)


def test_to_library_on_numpy_gives_one_scipy_matrix_per_element():
    W = _weights(n=12, seed=7)
    P = sparse.as_pattern(W, "test")
    groups = sparse.ColumnGroups(backend.namespace(("u", np.zeros(1))), P, np.float64)
    values = np.arange(2 * P.nnz, dtype=float).reshape(2, P.nnz)
    mats = groups.to_library(values)
    assert len(mats) == 2 and all(sp.issparse(m) and m.format == "csr" for m in mats)
    np.testing.assert_array_equal(mats[1].toarray(), P.to_scipy(values[1]).toarray())


# --- a user's sparse jac ---------------------------------------------------------------------------------


def _backend(name):
    from helpers import get_backend

    return get_backend(name)


def _tri(n=5, dtype=np.float64):
    return sp.diags([np.full(n - 1, -1.0), np.full(n, 2.0), np.full(n - 1, -1.0)], [-1, 0, 1], format="csr",
                    dtype=dtype)


def _as_library(name, M, batch=None):
    import jax.numpy as jnp
    import torch
    from jax.experimental import sparse as jsparse

    dense = M.toarray() if batch is None else np.stack([M.toarray()] * batch)
    if name == "numpy":
        return M if batch is None else [M] * batch
    if name == "torch":
        t = torch.as_tensor(dense)
        return t.to_sparse_csr() if batch is None else t.to_sparse_coo()
    return jsparse.BCOO.fromdense(jnp.asarray(dense), n_batch=0 if batch is None else 1)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.slow
def test_values_on_the_pattern_and_the_check_of_missing_nonzeros(name):
    bk = _backend(name)
    n = 5
    T = _tri(n)
    u = bk.asarray(np.ones(n))
    wide = sparse.as_pattern(sp.diags([np.ones(n - 2)] * 2 + [np.ones(n - 1)] * 2 + [np.ones(n)],
                                      [-2, 2, -1, 1, 0], format="csr"), "test")
    J = sparse.check_sparse_jacobian(_as_library(name, T), u, n=n)
    got = bk.to_numpy(sparse.values_on(wide, J, u))
    np.testing.assert_array_equal(wide.to_scipy(got[0]).toarray(), T.toarray())  # zeros where J has no entry
    narrow = sparse.as_pattern(sp.identity(n, format="csr"), "test")
    with pytest.raises(ValueError, match=r"jac: the sparsity pattern misses nonzeros of jac at \(0, 1\), \(1, 0\), "
                                         r"\(1, 2\), \(2, 1\), \(2, 3\) \(8 entries in all\); add them"):
        sparse.values_on(narrow, J, u)


def test_stored_zeros_outside_the_pattern_are_not_nonzeros():
    n = 4
    J = sp.csr_matrix((np.array([1.0, 0.0]), (np.array([0, 0]), np.array([0, 3]))), shape=(n, n))
    P = sparse.as_pattern(sp.identity(n, format="csr"), "test")
    np.testing.assert_array_equal(sparse.values_on(P, J, np.ones(n)), [[1.0, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.slow
def test_batched_sparse_jacobians(name):
    bk = _backend(name)
    n, B = 4, 3
    T = _tri(n)
    u = bk.asarray(np.ones((B, n)))
    P = sparse.as_pattern(T, "test")
    J = sparse.check_sparse_jacobian(_as_library(name, T, batch=B), u, n=n, batch=B)
    got = bk.to_numpy(sparse.values_on(P, J, u, batch=B))
    assert got.shape == (B, P.nnz)
    for b in range(B):
        np.testing.assert_array_equal(P.to_scipy(got[b]).toarray(), T.toarray())


def test_block_diagonal_scipy_jacobian_for_a_batch():
    n, B = 3, 2
    T = _tri(n)
    blocks = sp.block_diag([T, 2 * T], format="csr")
    J = sparse.check_sparse_jacobian(blocks, np.ones((B, n)), n=n, batch=B)
    assert len(J) == 2
    np.testing.assert_array_equal(J[1].toarray(), 2 * T.toarray())
    coupled = blocks.tolil()
    coupled[0, n] = 1.0
    with pytest.raises(ValueError, match=r"not block-diagonal \(rows of element 0 reach other elements\)"):
        sparse.check_sparse_jacobian(coupled.tocsr(), np.ones((B, n)), n=n, batch=B)


def test_wrong_library_shape_and_dtype_are_refused():
    import array_api_strict
    import jax.numpy as jnp
    import torch

    n = 5
    T = _tri(n)
    with pytest.raises(TypeError, match=r"jac returned a scipy.sparse matrix for a torch u0; return a torch sparse "
                                        r"CSR or COO tensor \(or a dense array\)"):
        sparse.check_sparse_jacobian(T, torch.ones(n, dtype=torch.float64), n=n)
    with pytest.raises(TypeError, match="jac returned a torch sparse tensor for a numpy u0; return a scipy.sparse"):
        sparse.check_sparse_jacobian(_as_library("torch", T), np.ones(n), n=n)
    with pytest.raises(TypeError, match=r"JAX sparse \(BCOO\) matrix for a torch u0; return a torch sparse"):
        sparse.check_sparse_jacobian(_as_library("jax", T), torch.ones(n, dtype=torch.float64), n=n)
    with pytest.raises(TypeError, match="jac returned a scipy.sparse matrix for a jax u0; return a "
                                        "jax.experimental.sparse.BCOO"):
        sparse.check_sparse_jacobian(T, jnp.ones(n), n=n)
    with pytest.raises(TypeError, match="sparse Jacobians are supported for NumPy, PyTorch and JAX states; u0 is a "
                                        "array_api_strict array"):
        sparse.check_sparse_jacobian(T, array_api_strict.ones(n), n=n)
    with pytest.raises(ValueError, match=r"jac returned a sparse matrix of shape \(5, 5\); one element has 4 "
                                         r"unknowns: expected \(4, 4\)"):
        sparse.check_sparse_jacobian(T, np.ones(4), n=4)
    with pytest.raises(ValueError, match=r"shape \(5, 5\); one element has 5 unknowns, 2 elements: expected "
                                         r"\(2, 5, 5\) or \(10, 10\)"):
        sparse.check_sparse_jacobian(T, np.ones((2, 5)), n=5, batch=2)
    with pytest.raises(TypeError, match="jac returned a sparse matrix of dtype float32 but u0 has dtype float64"):
        sparse.check_sparse_jacobian(_tri(n, np.float32), np.ones(n), n=n)
    with pytest.raises(TypeError, match="jac returned a list of 3 items; a sequence is how a batch of NumPy elements "
                                        r"gives one scipy.sparse matrix each \(2 here\)"):
        sparse.check_sparse_jacobian([T] * 3, np.ones((2, n)), n=n, batch=2)


@pytest.mark.parametrize("name", ["numpy", "torch", "jax"])
@pytest.mark.slow
def test_fixed_point_residual_jacobian_of_a_sparse_jac_is_j_minus_identity(name):
    bk = _backend(name)
    n = 5
    T = _tri(n)
    prob = ss.FixedPointProblem(lambda u, p: u, bk.asarray(np.ones(n)), jac=lambda u, p: _as_library(name, T))
    R = prob.residual_jac(prob.u0, None)
    assert sparse.sparse_library(R) == {"numpy": "scipy"}.get(name, name)
    dense = R.toarray() if name == "numpy" else bk.to_numpy(R.to_dense() if name == "torch" else R.todense())
    np.testing.assert_array_equal(dense, T.toarray() - np.eye(n))
    batched = sparse.minus_identity(_as_library(name, T, batch=2))
    if name == "numpy":
        assert [m.toarray().tolist() for m in batched] == [(T.toarray() - np.eye(n)).tolist()] * 2
    else:
        dense = bk.to_numpy(batched.to_dense() if name == "torch" else batched.todense())
        np.testing.assert_array_equal(dense, np.stack([T.toarray() - np.eye(n)] * 2))
