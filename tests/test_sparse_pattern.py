"""``sparsity=`` on the problems: what it accepts, how it binds to one element, and the errors at the boundary."""

import numpy as np
import pytest
import scipy.sparse as sp

import steadysolve as ss
from steadysolve import sparse
from benchmarks.problems import bruss


def _f(u, p):
    return u


def _tridiagonal(n):
    return sp.diags([np.ones(n - 1), np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csr")


def _rows_cols(P):
    c = P.tocoo()
    return sorted(zip(c.row.tolist(), c.col.tolist()))


def _entries(pattern):
    return sorted(zip(pattern.rows.tolist(), pattern.cols.tolist()))


@pytest.mark.parametrize("form", ["scipy", "scipy_coo_values", "dense_bool", "pair_numpy", "pair_lists", "pattern"])
def test_every_accepted_form_gives_the_same_pattern(form):
    n = 6
    T = _tridiagonal(n)
    rows, cols = T.nonzero()
    given = {
        "scipy": T,
        "scipy_coo_values": sp.coo_matrix((np.arange(1.0, T.nnz + 1), (rows, cols)), shape=(n, n)),
        "dense_bool": T.toarray() != 0,
        "pair_numpy": (rows, cols),
        "pair_lists": (rows.tolist(), cols.tolist()),
        "pattern": sparse.Pattern.from_coo(n, rows, cols),
    }[form]
    prob = ss.NonlinearProblem(_f, np.ones(n), sparsity=given)
    pattern = prob.residual_sparsity(n)
    assert isinstance(pattern, sparse.Pattern)
    assert pattern.shape == (n, n) and pattern.nnz == 3 * n - 2
    assert _entries(pattern) == _rows_cols(T)


def test_duplicates_and_order_do_not_matter():
    prob = ss.NonlinearProblem(_f, np.ones(3), sparsity=(np.array([2, 0, 0, 2]), np.array([1, 0, 0, 1])))
    assert _entries(prob.residual_sparsity(3)) == [(0, 0), (2, 1)]


def test_torch_and_jax_patterns_for_their_own_states():
    import jax.numpy as jnp
    import torch
    from jax.experimental import sparse as jsparse

    T = _tridiagonal(5)
    dense = T.toarray()
    for u0, given in [(torch.ones(5, dtype=torch.float64), torch.as_tensor(dense).to_sparse_csr()),
                      (torch.ones(5, dtype=torch.float64), torch.as_tensor(dense != 0)),
                      (jnp.ones(5), jsparse.BCOO.fromdense(jnp.asarray(dense))),
                      (jnp.ones(5), jnp.asarray(dense != 0)),
                      (jnp.ones(5), T)]:  # a host (SciPy) pattern suits every library
        prob = ss.NonlinearProblem(_f, u0, sparsity=given)
        assert _entries(prob.residual_sparsity(5)) == _rows_cols(T)


def test_fixed_point_pattern_is_of_g_and_the_residual_adds_the_diagonal():
    n = 5
    shift = sp.csr_matrix((np.ones(n - 1), (np.arange(n - 1), np.arange(1, n))), shape=(n, n))  # g_i = u_{i+1}
    prob = ss.FixedPointProblem(_f, np.ones(n), sparsity=shift)
    residual = prob.residual_sparsity(n)
    assert _entries(residual) == sorted(_rows_cols(shift) + [(i, i) for i in range(n)])
    nl = ss.NonlinearProblem(_f, np.ones(n), sparsity=shift)
    assert _entries(nl.residual_sparsity(n)) == _rows_cols(shift)  # F's own pattern: no diagonal added


def test_batched_problem_binds_the_pattern_per_element():
    n, B = 4, 3
    prob = ss.NonlinearProblem(_f, np.ones((B, n)), sparsity=_tridiagonal(n))  # (n, n): one element's Jacobian
    assert prob.residual_sparsity(n).n == n
    with pytest.raises(ValueError, match=r"sparsity has shape \(4, 4\) but one element has 12 unknowns"):
        prob.residual_sparsity(B * n)
    pairs = ss.NonlinearProblem(_f, np.ones((B, n)), sparsity=([0, 3], [0, 3]))
    assert _entries(pairs.residual_sparsity(n)) == [(0, 0), (3, 3)]
    with pytest.raises(ValueError, match="out of range for 3 unknowns"):
        ss.NonlinearProblem(_f, np.ones((B, 3)), sparsity=([0, 3], [0, 3])).residual_sparsity(3)


def test_remake_keeps_the_pattern_and_checks_it_again():
    prob = ss.NonlinearProblem(_f, np.ones(4), sparsity=_tridiagonal(4))
    again = prob.remake(u0=np.zeros(4))
    assert again.residual_sparsity(4) == prob.residual_sparsity(4)
    with pytest.raises(ValueError, match="sparsity has shape"):
        prob.remake(u0=np.zeros(7))


def test_the_pattern_is_shared_and_coloured_once():
    P = sparse.as_pattern(bruss.sparsity(8), "test")
    first = P.colouring
    assert P.colouring is first  # cached on the pattern: every solve and element of a batch share it
    prob = ss.NonlinearProblem(bruss.residual, bruss.u0(8), bruss.params(8), sparsity=P)
    assert prob.residual_sparsity(128) is P


@pytest.mark.parametrize("given, error, message", [
    (np.ones((4, 4)), TypeError, r"a dense sparsity must be a boolean array .* got dtype float64; pass e.g. J != 0"),
    (np.ones((4, 3), dtype=bool), ValueError, r"must be a square \(n, n\) pattern, got shape \(4, 3\)"),
    (np.ones(4, dtype=bool), ValueError, r"square \(n, n\) pattern, got shape \(4,\)"),
    (sp.identity(5, format="csr"), ValueError,
     r"sparsity has shape \(5, 5\) but u0 \(shape \(2, 3\)\) has 6 unknowns \(2, 3 per element of a batch\)"),
    ((np.array([0, 1]), np.array([0])), ValueError, r"rows and cols differ in length \(2 and 1\)"),
    ((np.array([0, 6]), np.array([0, 1])), ValueError,
     r"sparsity rows index 6 \(position 1\) is out of range for 6 unknowns \(valid: 0 .. 5\)"),
    ((np.array([0, -1]), np.array([0, 1])), ValueError, r"rows index -1 \(position 1\) is out of range"),
    ((np.array([0.0, 1.0]), np.array([0, 1])), TypeError, r"sparsity rows must be integer indices, got dtype float64"),
    ((np.array([[0, 1]]), np.array([[0, 1]])), ValueError, r"sparsity rows must be 1-D, got shape \(1, 2\)"),
    ((np.array([0]), np.array([0]), np.array([0])), ValueError, r"\(rows, cols\) pair of index arrays, got 3 items"),
    ("dense", ValueError, r"unknown sparsity 'dense'; the only string is 'detect'"),
    (3.0, TypeError, r"sparsity must be a scipy.sparse matrix or array, a boolean dense array, .*; got float"),
])
def test_bad_patterns_are_refused_with_a_clear_message(given, error, message):
    with pytest.raises(error, match=message):
        ss.NonlinearProblem(_f, np.ones((2, 3)), sparsity=given)


@pytest.mark.slow
def test_patterns_from_the_wrong_library_are_refused():
    import jax.numpy as jnp
    import torch
    from jax.experimental import sparse as jsparse

    eye = np.eye(3)
    with pytest.raises(TypeError, match="sparsity is a torch sparse matrix but u0 is a numpy array"):
        ss.NonlinearProblem(_f, np.ones(3), sparsity=torch.as_tensor(eye).to_sparse_csr())
    with pytest.raises(TypeError, match="sparsity is a jax sparse matrix but u0 is a torch array"):
        ss.NonlinearProblem(_f, torch.ones(3, dtype=torch.float64), sparsity=jsparse.BCOO.fromdense(jnp.eye(3)))
    with pytest.raises(TypeError, match="sparsity is a torch array but u0 is a jax array"):
        ss.NonlinearProblem(_f, jnp.ones(3), sparsity=torch.eye(3) != 0)
    with pytest.raises(TypeError, match="sparsity rows is a jax array for a torch u0"):
        ss.NonlinearProblem(_f, torch.ones(3, dtype=torch.float64), sparsity=(jnp.arange(3), jnp.arange(3)))


def test_detect_is_for_jax_states_only():
    with pytest.raises(TypeError, match="sparsity='detect' reads the pattern from a JAX function's trace, but u0 is "
                                        "a numpy array"):
        ss.NonlinearProblem(_f, np.ones(3), sparsity="detect")


def test_detect_reads_the_brusselator_pattern_from_jax():
    import jax.numpy as jnp

    pytest.importorskip("asdex")
    N = 8
    F, u0, p = bruss.problem(N, like=jnp.zeros(1))
    prob = ss.NonlinearProblem(F, u0, p, sparsity="detect")
    assert prob.residual_sparsity(2 * N * N) == sparse.as_pattern(bruss.sparsity(N), "test")


def test_detect_includes_the_fixed_point_diagonal_and_over_approximates_traced_gathers():
    import jax.numpy as jnp

    pytest.importorskip("asdex")
    shift = ss.FixedPointProblem(lambda u, p: 0.5 * jnp.roll(u, 1), jnp.ones(4), sparsity="detect")
    assert _entries(shift.residual_sparsity(4)) == sorted([(i, i) for i in range(4)] + [(i, (i - 1) % 4)
                                                                                        for i in range(4)])
    gather = ss.NonlinearProblem(lambda u, p: u[jnp.argsort(u)], jnp.ones(4), sparsity="detect")
    assert gather.residual_sparsity(4).nnz == 16  # indices computed from u: every element may be read


def test_pattern_position_and_repr():
    P = sparse.Pattern.from_coo(4, [0, 1, 3], [2, 1, 0])
    np.testing.assert_array_equal(P.position([1, 3, 2, 0], [1, 0, 2, 2]), [1, 2, -1, 0])
    assert repr(P) == "Pattern(n=4, nnz=3, max 1 per row)"
    assert P.with_diagonal().nnz == 6
    assert not P.indices.flags.writeable
