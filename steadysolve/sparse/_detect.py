"""The Jacobian pattern of a JAX function, read from its jaxpr (``sparsity="detect"``).

The work is asdex's (``asdex.jacobian_sparsity``, by the author of Julia's
SparseConnectivityTracer): an abstract interpretation of the traced program that propagates,
for every element of every intermediate array, the set of input elements it depends on. No
derivative is evaluated and no dense Jacobian is built; the pattern is *global* (valid at every
point). It is exact for elementwise arithmetic, slicing, rolls and concatenation, reshapes and
transposes, ``.at[].set``, convolutions and products with constant operands (their zeros are
seen), comparisons and ``where`` (the union of both branches), and loops with a fixed trip
count. It over-approximates where the dependency is on values, not structure: gathers or
scatters at indices computed from ``u`` (every element read is a dependency), reductions
whose terms cancel (``u - sum(u)`` has a zero diagonal but every entry is reported), and
primitives asdex has no rule for (every output depends on every input: a dense pattern).
A larger pattern is still correct (the Jacobian is assembled exactly on it), only slower.

asdex is optional (``pip install "steadysolve[sparse-jax]"``, Python >= 3.11).
"""

from __future__ import annotations

from typing import Callable

from ._pattern import Pattern

__all__ = ["detect_jax", "detection_available"]

INSTALL = 'pip install "steadysolve[sparse-jax]" (asdex; Python >= 3.11)'


def detection_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("asdex") is not None


def detect_jax(F: Callable, u, where: str = "sparsity='detect'") -> Pattern:
    """The pattern of the Jacobian of ``F`` (a JAX function from arrays shaped like ``u`` to arrays of
    the same size, one element) with respect to its argument, as a :class:`Pattern`."""
    try:
        import asdex
    except ImportError:
        raise ImportError(f"{where}: detecting the sparsity of a JAX function needs asdex: {INSTALL}; "
                          "or give the pattern as sparsity=") from None
    import numpy as np

    sample = np.zeros(tuple(u.shape), dtype=np.dtype(u.dtype))  # only its shape and dtype are used
    found = asdex.jacobian_sparsity(F, sample)
    n = int(np.prod(u.shape, dtype=np.int64))
    if tuple(found.shape) != (n, n):
        raise ValueError(f"{where}: the function maps {n} unknowns to {found.shape[0]} values; a residual has one "
                         "value per unknown")
    return Pattern.from_coo(n, np.asarray(found.rows), np.asarray(found.cols))
