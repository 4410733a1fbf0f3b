"""The sparsity pattern of a per-element Jacobian: where ``J[i, j]`` may be nonzero.

A :class:`Pattern` is structure only, held on the host as the index arrays of a CSR matrix
(sorted column indices per row, no duplicates), whatever the array library of the solve: the
colouring and the decompression plan are computed from it once, on the host, and only the
plan's index arrays are copied to the solve's device. Indices refer to the element flattened in
C order (``u.reshape(-1)`` of one element), so an ``(N, N, 2)`` state has ``n = 2 N^2``.

:func:`as_pattern` turns what users pass as ``sparsity=`` into a :class:`Pattern`, checking it
at the boundary (types, dtype, shape, index range, the array library of the solve).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._formats import sparse_library, to_host_coo

__all__ = ["Pattern", "as_pattern", "ACCEPTED"]

ACCEPTED = ("a scipy.sparse matrix or array, a boolean dense array, a (rows, cols) pair of integer index arrays, "
            "a torch sparse tensor (PyTorch states), a jax.experimental.sparse.BCOO (JAX states), "
            "or 'detect' (JAX states)")


class Pattern:
    """An ``m x n`` sparsity pattern (``m = n`` but for a least-squares residual): CSR ``indptr``
    (``m + 1``) and ``indices`` (``nnz``) on the host.

    Immutable (the arrays are read-only) and shared: a batched solve uses one pattern, and so
    one colouring (:attr:`colouring`, computed on first use), for every element.
    """

    __slots__ = ("n", "m", "indptr", "indices", "_rows", "_colours", "_hash")

    def __init__(self, n: int, indptr, indices, m: Optional[int] = None):
        self.n = int(n)
        self.m = self.n if m is None else int(m)  # rows: the residuals of one element
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.indices = np.ascontiguousarray(indices, dtype=np.int64)
        self.indptr.setflags(write=False)
        self.indices.setflags(write=False)
        self._rows = None
        self._colours = None
        self._hash = None

    @classmethod
    def from_coo(cls, n: int, rows, cols, m: Optional[int] = None) -> "Pattern":
        """From row/column index arrays (duplicates merged, any order); ``m`` rows (default ``n``)."""
        m = n if m is None else int(m)
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        cols = np.asarray(cols, dtype=np.int64).reshape(-1)
        key = np.unique(rows * n + cols)  # sorted by row, then column; duplicates gone
        r, c = np.divmod(key, n)
        indptr = np.zeros(m + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=m), out=indptr[1:])
        return cls(n, indptr, c, m)

    @property
    def nnz(self) -> int:
        return int(self.indices.shape[0])

    @property
    def shape(self) -> tuple:
        return (self.m, self.n)

    @property
    def rows(self) -> np.ndarray:
        """Row index of each stored entry (CSR order)."""
        if self._rows is None:
            self._rows = np.repeat(np.arange(self.m, dtype=np.int64), np.diff(self.indptr))
            self._rows.setflags(write=False)
        return self._rows

    @property
    def cols(self) -> np.ndarray:
        return self.indices

    @property
    def colouring(self):
        """The column colouring (:func:`steadysolve.sparse.colour_columns`), computed once."""
        if self._colours is None:
            from ._colour import colour_columns

            self._colours = colour_columns(self)
        return self._colours

    def with_diagonal(self) -> "Pattern":
        """This pattern plus the diagonal (the residual ``g(u) - u`` of a fixed-point map ``g``)."""
        diag = np.arange(self.n, dtype=np.int64)
        return Pattern.from_coo(self.n, np.concatenate([self.rows, diag]), np.concatenate([self.indices, diag]))

    def to_scipy(self, values=None):
        """A ``scipy.sparse.csr_matrix``: booleans, or ``values`` (one per stored entry, CSR order)."""
        import scipy.sparse as sp

        data = np.ones(self.nnz, dtype=bool) if values is None else values
        return sp.csr_matrix((data, self.indices, self.indptr), shape=self.shape)

    def position(self, rows, cols) -> np.ndarray:
        """Index of each entry ``(rows[k], cols[k])`` among the stored entries, -1 where it is not stored."""
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        key = self.rows * self.n + self.indices  # sorted (CSR order with sorted columns)
        want = rows * self.n + cols
        pos = np.searchsorted(key, want)
        pos_c = np.minimum(pos, max(self.nnz - 1, 0))
        found = (pos < self.nnz) & (key[pos_c] == want) if self.nnz else np.zeros(want.shape, dtype=bool)
        return np.where(found, pos_c, -1)

    def check_size(self, n: int, where: str) -> "Pattern":
        """``self`` if it is ``n x n``, else a ``ValueError`` (``n``: the unknowns of one element)."""
        if self.n != int(n) or self.m != self.n:
            raise ValueError(f"{where}: sparsity has shape {self.shape} but one element has {n} unknowns; "
                             f"the pattern is that of one element's Jacobian, ({n}, {n})")
        return self

    def check_rectangular(self, m: int, n: int, where: str) -> "Pattern":
        """``self`` if it is ``m x n`` (a least-squares residual's Jacobian), else a ``ValueError``."""
        if (self.m, self.n) != (int(m), int(n)):
            raise ValueError(f"{where}: sparsity has shape {self.shape} but one element has {m} residuals and {n} "
                             f"unknowns; the pattern is that of one element's Jacobian, ({m}, {n})")
        return self

    def __eq__(self, other) -> bool:
        if not isinstance(other, Pattern):
            return NotImplemented
        return (self.n == other.n and self.m == other.m and np.array_equal(self.indptr, other.indptr)
                and np.array_equal(self.indices, other.indices))

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self.m, self.n, self.nnz, self.indptr.tobytes(), self.indices.tobytes()))
        return self._hash

    def __repr__(self) -> str:
        per_row = np.diff(self.indptr)
        top = int(per_row.max()) if self.m else 0
        shape = f"n={self.n}" if self.m == self.n else f"m={self.m}, n={self.n}"
        return f"Pattern({shape}, nnz={self.nnz}, max {top} per row)"


# --- what users pass as sparsity= -----------------------------------------------------------------------


def _library(x) -> Optional[str]:
    from .. import _backend as backend

    return backend.library_name(x) if backend.is_array(x) else None


def _index_array(x, name: str, where: str, lib: str) -> np.ndarray:
    """One of the ``(rows, cols)`` arrays as host int64 (any integer dtype, 1-D)."""
    other = _library(x)
    if other not in (None, "numpy", lib):
        raise TypeError(f"{where}: sparsity {name} is a {other} array for a {lib} u0; "
                        f"give index arrays of NumPy or {lib}")
    arr = np.asarray(_host(x))
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        if arr.size == 0 and not isinstance(x, np.ndarray):
            arr = arr.astype(np.int64)
        else:
            raise TypeError(f"{where}: sparsity {name} must be integer indices, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{where}: sparsity {name} must be 1-D, got shape {arr.shape}")
    return arr.astype(np.int64)


def _host(x):
    from .. import _backend as backend

    if not backend.is_array(x) or type(x) is np.ndarray:
        return x
    if backend.library_name(x) == "torch":  # directly: backend.to_numpy widens bool tensors to float32
        return x.detach().cpu().numpy()
    return backend.to_numpy(backend.namespace(("x", x)), x)


def _from_pair(obj, n: Optional[int], where: str, lib: str) -> Pattern:
    rows = _index_array(obj[0], "rows", where, lib)
    cols = _index_array(obj[1], "cols", where, lib)
    if rows.shape != cols.shape:
        raise ValueError(f"{where}: sparsity rows and cols differ in length ({rows.size} and {cols.size})")
    if n is None:
        raise ValueError(f"{where}: a (rows, cols) sparsity needs the number of unknowns")
    for name, idx in (("rows", rows), ("cols", cols)):
        bad = np.flatnonzero((idx < 0) | (idx >= n))
        if bad.size:
            raise ValueError(f"{where}: sparsity {name} index {int(idx[bad[0]])} (position {int(bad[0])}) is out of "
                             f"range for {n} unknowns (valid: 0 .. {n - 1}); {bad.size} such indices")
    return Pattern.from_coo(n, rows, cols)


def _square(shape, where: str, rectangular: bool = False) -> tuple:
    """``(m, n)`` of a 2-D pattern (square unless ``rectangular``)."""
    shape = tuple(int(s) for s in shape)
    if rectangular:
        if len(shape) != 2:
            raise ValueError(f"{where}: sparsity must be an (m, n) pattern (m residuals, n unknowns), got shape {shape}")
        return shape
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{where}: sparsity must be a square (n, n) pattern, got shape {shape}")
    return shape


def as_pattern(obj: Any, where: str, *, n: Optional[int] = None, lib: str = "numpy",
               rectangular: bool = False) -> Pattern:
    """Normalise ``sparsity=``: a :class:`Pattern` of ``n x n`` (``n`` checked when given); with
    ``rectangular`` (a least-squares problem) any ``m x n`` (a scipy.sparse matrix or a boolean array).

    ``lib`` is the array library of the solve (``"numpy"``, ``"torch"``, ``"jax"``, ...): host
    patterns (SciPy, NumPy, index lists) suit every library; a torch or JAX object only its own.
    """
    if isinstance(obj, Pattern):
        return obj if n is None else obj.check_size(n, where)
    kind = sparse_library(obj)
    if kind is not None:
        if kind != "scipy" and kind != lib:
            raise TypeError(f"{where}: sparsity is a {kind} sparse matrix but u0 is a {lib} array; give a pattern "
                            f"of {lib} or a library-neutral one (scipy.sparse, a NumPy boolean array, index arrays)")
        m, size = _square(obj.shape, where, rectangular)
        rows, cols = to_host_coo(obj, kind)
        pattern = Pattern.from_coo(size, rows, cols, m)
    elif isinstance(obj, (tuple, list)):
        if len(obj) != 2:
            raise ValueError(f"{where}: a sparsity given as a tuple must be a (rows, cols) pair of index arrays, got "
                             f"{len(obj)} items")
        pattern = _from_pair(obj, n, where, lib)
    elif _library(obj) is not None:
        other = _library(obj)
        if other not in ("numpy", lib):
            raise TypeError(f"{where}: sparsity is a {other} array but u0 is a {lib} array; give a NumPy or {lib} "
                            "boolean array, or a scipy.sparse matrix")
        arr = np.asarray(_host(obj))
        if arr.dtype != bool:
            raise TypeError(f"{where}: a dense sparsity must be a boolean array (True where the Jacobian may be "
                            f"nonzero), got dtype {arr.dtype}; pass e.g. J != 0")
        m, size = _square(arr.shape, where, rectangular)
        rows, cols = np.nonzero(arr)
        pattern = Pattern.from_coo(size, rows, cols, m)
    else:
        raise TypeError(f"{where}: sparsity must be {ACCEPTED}; got {type(obj).__name__}")
    return pattern if n is None else pattern.check_size(n, where)
