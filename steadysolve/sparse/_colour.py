"""Column colouring of a sparsity pattern: columns of one colour share no row.

Then ``J @ d_c``, with ``d_c`` the sum of the unit vectors of colour ``c``, holds every entry of
those columns untouched by the others (Curtis, Powell & Reid, 1974), so one JVP or one finite
difference per colour gives the whole Jacobian. This is a colouring of the columns'
intersection graph (columns adjacent when they share a row; ``P^T P`` for a pattern ``P``),
equivalently a distance-2 colouring of the bipartite row/column graph.

The order is *largest first* (Welsh & Powell; Coleman & Moré 1983 measured it among the best
orderings for this problem): columns by decreasing degree in the intersection graph, ties by
index, each given the smallest colour none of its coloured neighbours has. On the
SciMLBenchmarks Brusselator this gives 11 or 12 colours at every grid size (12 from N = 32 on).

Engine: PyAMG's ``pyamg.graph.vertex_coloring(G, "MIS")`` (C++) when PyAMG is installed, run on
the graph permuted into largest-first order (its MIS colouring gives colour ``k`` to a maximal
independent set of the still uncoloured vertices taken in index order, which is exactly the
sequential greedy colouring in that order); otherwise the same greedy in Python. The two give
identical colours (a test checks it); PyAMG's is several times faster on large patterns
(docs/sparse.md has the measurements and the libraries that were not chosen: NetworkX's
``greedy_color`` and igraph build their graphs too slowly, PyAMG's ``"JP"`` / ``"LDF"`` draw from
NumPy's global random state, SciPy's ``group_columns`` is private).
"""

from __future__ import annotations

import numpy as np

__all__ = ["colour_columns", "intersection_graph", "is_valid_colouring", "greedy_colouring"]


def intersection_graph(pattern):
    """The columns' intersection graph as a symmetric CSR matrix without diagonal (``P^T P``)."""
    import scipy.sparse as sp

    P = sp.csr_matrix((np.ones(pattern.nnz, dtype=np.int32), pattern.indices, pattern.indptr), shape=pattern.shape)
    G = (P.T @ P).tocsr()
    G.setdiag(0)
    G.eliminate_zeros()
    G.sort_indices()
    return G


def _largest_first(G) -> np.ndarray:
    return np.argsort(-np.diff(G.indptr), kind="stable")


def greedy_colouring(G, order) -> np.ndarray:
    """Sequential greedy colouring of graph ``G`` (CSR) visiting vertices in ``order``."""
    n = G.shape[0]
    indptr, indices = G.indptr.tolist(), G.indices.tolist()
    colour = [-1] * n
    seen = [-1] * (n + 1)  # seen[c] == v: colour c is taken by a neighbour of v
    for v in order.tolist():
        for k in range(indptr[v], indptr[v + 1]):
            c = colour[indices[k]]
            if c >= 0:
                seen[c] = v
        c = 0
        while seen[c] == v:
            c += 1
        colour[v] = c
    return np.asarray(colour, dtype=np.int64)


def _pyamg_colouring(G, order) -> np.ndarray:
    from pyamg.graph import vertex_coloring

    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    Gp = G[order][:, order].tocsr()  # vertex k of Gp is vertex order[k] of G
    Gp.sort_indices()
    colours = np.asarray(vertex_coloring(Gp, method="MIS"), dtype=np.int64)
    return colours[inverse]


def colour_columns(pattern, engine: str = "auto") -> np.ndarray:
    """Colour of each column (``n`` ints from 0): columns of one colour share no row.

    ``engine``: ``"pyamg"``, ``"python"`` or ``"auto"`` (PyAMG when installed); all give the
    same colours. Needs SciPy (the intersection graph is a sparse product).
    """
    if pattern.n == 0:
        return np.zeros(0, dtype=np.int64)
    G = intersection_graph(pattern)
    order = _largest_first(G)
    if engine == "auto":
        try:
            import pyamg.graph  # noqa: F401
            engine = "pyamg"
        except ImportError:
            engine = "python"
    if engine == "pyamg":
        colours = _pyamg_colouring(G, order)
    elif engine == "python":
        colours = greedy_colouring(G, order)
    else:
        raise ValueError(f"colour_columns: unknown engine {engine!r}; valid: 'auto', 'pyamg', 'python'")
    colours.setflags(write=False)
    return colours


def is_valid_colouring(pattern, colours) -> bool:
    """True when no two columns of one colour share a row of ``pattern``."""
    colours = np.asarray(colours)
    if colours.shape != (pattern.n,) or (pattern.n and colours.min() < 0):
        return False
    key = pattern.rows * (int(colours.max()) + 1 if pattern.n else 1) + colours[pattern.indices]
    return np.unique(key).size == key.size  # each (row, colour) pair holds one column at most
