"""Sparse Jacobians from one product per colour: compress, then decompress onto the pattern.

For a colouring of a pattern's columns (:mod:`._colour`), ``J d_c`` with the seed ``d_c`` (ones
on the columns of colour ``c``) holds ``J[i, j]`` at row ``i`` for the one column ``j`` of colour
``c`` that row ``i`` touches. :class:`ColumnGroups` is the plan for one pattern in one array
library: the seeds, and one gather index that reads all stored entries out of the stacked
products at once (``take`` from the array API; static indices, so it runs under ``jax.jit``).

Products per colour, on ``(batch, n)`` rows like every solver:

* :meth:`ColumnGroups.finite_differences`: ``(F(u + h * d_c) - F(u))`` with per-column steps
  ``h_j = sqrt(eps) max(|u_j|, typical)`` (the sign of ``u_j``; the step actually representable),
  the rule of the package's dense finite-difference Jacobian (``derivatives``), then entry
  ``(i, j)`` divided by its own column's ``h_j``. One evaluation of ``F`` per colour.
* :meth:`ColumnGroups.from_jvp`: any ``jvp(u, v, fu)`` (the problem's own, PyTorch forward-mode AD,
  ...), one per colour.
* :meth:`ColumnGroups.jax_jvp`: ``jax.jvp`` vmapped over the colours, one trace; jit-able.

The result is ``values`` of shape ``(batch, nnz)`` in the pattern's CSR order, in the solve's
array library and device; :meth:`ColumnGroups.to_library` wraps them as that library's sparse
matrix. Every element of a batch shares the colouring (the pattern is per element).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .. import _backend as backend

__all__ = ["ColumnGroups", "library_matrices"]


class ColumnGroups:
    """The compress/decompress plan of ``pattern`` for arrays of namespace ``xp`` (dtype, device)."""

    def __init__(self, xp, pattern, dtype, device=None, colours=None):
        self.xp = xp
        self.pattern = pattern
        self.colours = pattern.colouring if colours is None else np.asarray(colours, dtype=np.int64)
        n = pattern.n
        self.ncolours = int(self.colours.max()) + 1 if n else 0
        seeds = np.zeros((self.ncolours, n))
        seeds[self.colours, np.arange(n)] = 1.0
        self.seeds = backend.from_numpy(xp, seeds, dtype, device)  # (ncolours, n)
        m = pattern.m  # the products have m rows (a least-squares residual's; m = n otherwise)
        # entry k = (i, j) sits at row i of the product of colour[j]: flat index colour[j] * m + i
        gather = self.colours[pattern.indices] * m + pattern.rows
        index = xp.int32 if self.ncolours * max(m, n) < 2**31 else xp.int64  # (JAX without x64 has no int64)
        self._gather = backend.from_numpy(xp, gather, index, device)
        self._cols = backend.from_numpy(xp, np.asarray(pattern.indices), index, device)

    def decompress(self, products):
        """``(batch, ncolours, m)`` products -> ``(batch, nnz)`` values."""
        xp = self.xp
        B = products.shape[0]
        flat = xp.reshape(products, (B, self.ncolours * self.pattern.m))
        return xp.take(flat, self._gather, axis=1)

    def finite_differences(self, F: Callable, u, fu, typical: float = 1.0):
        """Values by forward differences: ``ncolours`` evaluations of ``F`` (``(batch, n)`` rows)."""
        xp = self.xp
        rel = float(xp.finfo(u.dtype).eps) ** 0.5
        h = rel * xp.maximum(xp.abs(u), xp.full_like(u, float(typical)))
        h = xp.where(u < 0, -h, h)
        h = (u + h) - u
        diffs = [F(u + h * self.seeds[c:c + 1, :]) - fu for c in range(self.ncolours)]
        values = self.decompress(xp.stack(diffs, axis=1))
        return values / xp.take(h, self._cols, axis=1)

    def from_jvp(self, jvp: Callable, u, fu):
        """Values from ``jvp(u, v, fu) = J(u) v`` on rows, one product per colour."""
        xp = self.xp
        B = u.shape[0]
        cols = [jvp(u, xp.broadcast_to(self.seeds[c:c + 1, :], (B, self.pattern.n)), fu)
                for c in range(self.ncolours)]
        return self.decompress(xp.stack(cols, axis=1))

    def jax_jvp(self, F: Callable, u):
        """Values by ``jax.jvp`` of ``F`` vmapped over the colours (one trace of ``F``; jit-able)."""
        import jax
        import jax.numpy as jnp

        B, n = u.shape

        def column(seed):
            return jax.jvp(F, (u,), (jnp.broadcast_to(seed, (B, n)),))[1]

        products = jax.vmap(column, out_axes=1)(self.seeds)  # (B, ncolours, n)
        return self.decompress(products)

    def to_library(self, values):
        """``values`` as the library's sparse matrices (:func:`library_matrices`)."""
        return library_matrices(self.xp, self.pattern, values)


def library_matrices(xp, p, values):
    """``values`` (``(batch, nnz)`` on pattern ``p``) as the library's sparse matrices: a list of
    ``scipy.sparse`` CSR matrices (NumPy), a batched sparse CSR tensor ``(batch, n, n)`` (PyTorch), a
    ``BCOO`` ``(batch, n, n)`` with one batch dimension (JAX)."""
    B = values.shape[0]
    if backend.is_torch(xp):
        import torch

        dev = values.device
        crow = torch.as_tensor(np.broadcast_to(p.indptr, (B, p.m + 1)).copy(), device=dev)
        col = torch.as_tensor(np.broadcast_to(p.indices, (B, p.nnz)).copy(), device=dev)
        return torch.sparse_csr_tensor(crow, col, values, size=(B, p.m, p.n), check_invariants=False)
    if backend.is_jax(xp):
        import jax.numpy as jnp
        from jax.experimental import sparse as jsparse

        idx = np.stack([p.rows, p.indices], axis=1).astype(np.int32)
        indices = jnp.broadcast_to(jnp.asarray(idx), (B, p.nnz, 2))
        return jsparse.BCOO((values, indices), shape=(B, p.m, p.n), indices_sorted=True, unique_indices=True)
    from ._formats import scipy_matrix

    host = backend.to_numpy(xp, values)
    return [scipy_matrix(p, host[b]) for b in range(B)]
