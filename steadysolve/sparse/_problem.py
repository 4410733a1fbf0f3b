"""A problem's ``sparsity=``: checked when the problem is made, bound to one element's size at solve time.

The pattern is that of one element's Jacobian (``n x n``, ``n`` the unknowns of one element):
``n = u0.size`` for an unbatched solve, ``u0.size / batch`` with ``batch_axis``. Which of the two
is known only at ``solve``, so the problem checks that the pattern fits one of them and
:func:`residual_pattern` checks the exact size. For a :class:`~steadysolve.FixedPointProblem`
the pattern is that of the map ``g`` (as ``jac`` is ``g``'s Jacobian); the residual
``g(u) - u`` adds the diagonal.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import numpy as np

from ._pattern import Pattern, _from_pair, _index_array, as_pattern

__all__ = ["problem_sparsity", "residual_pattern", "IndexPairs", "least_squares_sparsity"]


class IndexPairs(NamedTuple):
    """``(rows, cols)`` host index arrays whose ``n`` is set when the solve knows the element size."""
    rows: np.ndarray
    cols: np.ndarray


def _sizes(u0) -> list:
    """The possible unknowns per element: all of ``u0``, or ``u0`` less one (batch) axis."""
    total = int(np.prod(tuple(u0.shape), dtype=np.int64))
    return sorted({total} | {total // int(s) for s in u0.shape if int(s) > 0})


def problem_sparsity(sparsity: Any, u0, where: str):
    """Check ``sparsity=`` against ``u0``: ``None``, ``"detect"``, a :class:`Pattern` or :class:`IndexPairs`."""
    if sparsity is None:
        return None
    from .. import _backend as backend

    lib = backend.library_name(u0)
    if isinstance(sparsity, str):
        if sparsity != "detect":
            raise ValueError(f"{where}: unknown sparsity {sparsity!r}; the only string is 'detect' (JAX states), "
                             "otherwise give the pattern")
        if lib != "jax":
            raise TypeError(f"{where}: sparsity='detect' reads the pattern from a JAX function's trace, but u0 is a "
                            f"{lib} array; give the pattern (a scipy.sparse matrix, a boolean array or (rows, cols))")
        from ._detect import INSTALL, detection_available

        if not detection_available():
            raise ImportError(f"{where}: sparsity='detect' needs asdex: {INSTALL}; or give the pattern")
        return "detect"
    sizes = _sizes(u0)
    if isinstance(sparsity, (tuple, list)) and len(sparsity) == 2:
        rows = _index_array(sparsity[0], "rows", where, lib)
        cols = _index_array(sparsity[1], "cols", where, lib)
        if rows.shape != cols.shape:
            raise ValueError(f"{where}: sparsity rows and cols differ in length ({rows.size} and {cols.size})")
        _from_pair((rows, cols), sizes[-1], where, lib)  # index checks against the largest possible size
        return IndexPairs(rows, cols)
    pattern = as_pattern(sparsity, where, lib=lib)
    if pattern.n not in sizes:
        shape = tuple(int(s) for s in u0.shape)
        raise ValueError(f"{where}: sparsity has shape {pattern.shape} but u0 (shape {shape}) has {sizes[-1]} unknowns"
                         + (f" ({', '.join(str(s) for s in sizes[:-1])} per element of a batch)" if len(sizes) > 1
                            else "") + "; the pattern is one element's Jacobian, (n, n)")
    return pattern


def residual_pattern(prob, n: int) -> Optional[Pattern]:
    """The pattern of the residual ``F``'s Jacobian for elements of ``n`` unknowns (``None`` without
    ``sparsity=``); detected patterns are cached on the problem."""
    given = prob.sparsity
    if given is None:
        return None
    where = type(prob).__name__
    cache = prob.__dict__.setdefault("_residual_patterns", {})
    if n in cache:
        return cache[n]
    if isinstance(given, str):  # "detect": the residual itself is traced, so a fixed point's diagonal is in it
        total = int(np.prod(tuple(prob.u0.shape), dtype=np.int64))
        if n != total:
            raise NotImplementedError(f"{where}: sparsity='detect' reads one element's pattern from an unbatched "
                                      "problem; for a batch, detect it on one element and pass the Pattern")
        from ._detect import detect_jax

        pattern = detect_jax(lambda u: prob.residual(u, prob.p), prob.u0, where)
    else:
        if isinstance(given, IndexPairs):
            pattern = _from_pair(given, n, where, "numpy")
        else:
            pattern = given.check_size(n, where)
        if prob.kind == "fixed_point":
            pattern = pattern.with_diagonal()
    cache[n] = pattern
    return pattern


def least_squares_sparsity(sparsity: Any, u0, where: str) -> Optional[Pattern]:
    """Check a least-squares problem's ``sparsity=``: ``None``, or an ``(m, n)`` :class:`Pattern` whose ``n``
    fits ``u0`` (all of it, or one element of a batch); ``m`` is checked against the residuals at solve."""
    if sparsity is None:
        return None
    from .. import _backend as backend

    lib = backend.library_name(u0)
    if isinstance(sparsity, (str, tuple, list)):
        raise TypeError(f"{where}: sparsity must be the (m, n) pattern of one element's Jacobian, as a scipy.sparse "
                        f"matrix, a boolean array or a Pattern; got {type(sparsity).__name__}")
    pattern = as_pattern(sparsity, where, lib=lib, rectangular=True)
    sizes = _sizes(u0)
    if pattern.n not in sizes:
        shape = tuple(int(s) for s in u0.shape)
        raise ValueError(f"{where}: sparsity has shape {pattern.shape} but u0 (shape {shape}) has {sizes[-1]} unknowns"
                         + (f" ({', '.join(str(s) for s in sizes[:-1])} per element of a batch)" if len(sizes) > 1
                            else "") + "; the pattern is one element's Jacobian, (m residuals, n unknowns)")
    if pattern.m < pattern.n:
        raise ValueError(f"{where}: sparsity has shape {pattern.shape}: fewer rows (residuals) than columns "
                         "(unknowns); a least-squares problem has m >= n")
    return pattern
