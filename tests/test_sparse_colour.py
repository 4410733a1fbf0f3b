"""Column colourings: valid (no two columns of one colour share a row), few colours, one result whatever the engine."""

import numpy as np
import pytest
import scipy.sparse as sp

from steadysolve import sparse
from steadysolve.sparse._colour import greedy_colouring, intersection_graph
from benchmarks.problems import bruss


def _random_pattern(n, per_row, seed):
    A = sp.random(n, n, density=per_row / n, random_state=np.random.default_rng(seed), format="csr")
    return sparse.as_pattern(A + sp.identity(n), "test")


PATTERNS = [(60, 3, 0), (200, 5, 1), (500, 8, 2), (1000, 2, 3)]


@pytest.mark.parametrize("n, per_row, seed", PATTERNS)
@pytest.mark.parametrize("engine", ["pyamg", "python"])
def test_random_patterns_get_valid_colourings(n, per_row, seed, engine):
    if engine == "pyamg":
        pytest.importorskip("pyamg")
    P = _random_pattern(n, per_row, seed)
    colours = sparse.colour_columns(P, engine=engine)
    assert sparse.is_valid_colouring(P, colours)
    ncol = int(colours.max()) + 1
    assert int(np.diff(P.indptr).max()) <= ncol < n  # a row's columns all differ; far fewer than one per column
    assert set(colours.tolist()) == set(range(ncol))  # colours 0 .. ncol-1, none skipped


@pytest.mark.parametrize("n, per_row, seed", PATTERNS)
def test_both_engines_give_the_same_largest_first_colouring(n, per_row, seed):
    pytest.importorskip("pyamg")
    P = _random_pattern(n, per_row, seed)
    np.testing.assert_array_equal(sparse.colour_columns(P, engine="pyamg"), sparse.colour_columns(P, engine="python"))


def test_largest_first_order_and_greedy_rule():
    """Columns visited by decreasing degree, each taking the smallest colour its neighbours leave free."""
    # column 0 meets 1, 2, 3 (degree 3); 1 meets 0 and 2; 2 meets 0 and 1; 3 meets 0 only
    P = sparse.Pattern.from_coo(4, [0, 0, 0, 1, 1, 2], [0, 1, 2, 0, 3, 2])
    G = intersection_graph(P)
    assert np.diff(G.indptr).tolist() == [3, 2, 2, 1]
    assert sparse.colour_columns(P).tolist() == [0, 1, 2, 1]
    assert greedy_colouring(G, np.array([3, 2, 1, 0])).tolist() == [2, 1, 0, 0]  # another order, another colouring


@pytest.mark.parametrize("N", [8, 16, 32, 64])
def test_brusselator_needs_about_twelve_colours_whatever_its_size(N):
    P = sparse.as_pattern(bruss.sparsity(N), "test")
    colours = P.colouring
    assert sparse.is_valid_colouring(P, colours)
    assert 6 <= int(colours.max()) + 1 <= 12  # 6 entries per row; the Jacobian from <= 12 products, not 2 N^2


def test_extreme_patterns():
    n = 7
    diag = sparse.as_pattern(sp.identity(n, format="csr"), "test")
    assert sparse.colour_columns(diag).tolist() == [0] * n
    dense = sparse.as_pattern(np.ones((n, n), dtype=bool), "test")
    assert sorted(sparse.colour_columns(dense).tolist()) == list(range(n))
    empty_rows = sparse.Pattern.from_coo(n, [0], [3])
    assert sparse.colour_columns(empty_rows).tolist() == [0] * n


def test_invalid_colourings_are_detected():
    P = sparse.as_pattern(np.array([[1, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool), "test")
    assert sparse.is_valid_colouring(P, [0, 1, 0])
    assert not sparse.is_valid_colouring(P, [0, 0, 1])  # columns 0 and 1 share row 0
    assert not sparse.is_valid_colouring(P, [0, 1])  # one colour per column
    assert not sparse.is_valid_colouring(P, [0, -1, 0])


def test_unknown_engine():
    with pytest.raises(ValueError, match="unknown engine 'networkx'; valid: 'auto', 'pyamg', 'python'"):
        sparse.colour_columns(sparse.Pattern.from_coo(2, [0], [0]), engine="networkx")
