"""The residual's sparse Jacobian at a point, for the sparse methods of one solve.

:class:`SparseJacobians` is what every sparse consumer asks (sparse Newton / trust region /
Levenberg–Marquardt, preconditioners, the W-solver of the Rosenbrock methods): ``at(u, fu)`` gives
the Jacobians of a batch as ``(batch, nnz)`` values on one :class:`Pattern` (CSR order), in the
solve's array library, and the Jacobian-vector products that cost; :meth:`matrices` wraps values
as the library's sparse matrices.

Where the values come from, in order:

* the problem's ``jac`` when it returns a sparse matrix: its entries read onto the pattern (the
  given ``sparsity=``, else the structure of the first Jacobian, widened when a later one stores
  entries outside it: without a stated pattern the structure is the Jacobian's own);
* else the pattern's column colouring: one product per colour (:class:`ColumnGroups`) by forward
  differences, the problem's ``jvp``, PyTorch forward-mode AD, or ``jax.jvp`` (jit-able).

A problem with neither a sparse ``jac`` nor ``sparsity=`` has no sparse Jacobian
(:func:`sparse_jacobians` returns ``None``).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from .. import _backend as backend
from ._assemble import ColumnGroups, library_matrices
from ._formats import sparse_library, to_host_coo
from ._jacobian import check_sparse_jacobian, is_sparse_jacobian, values_on
from ._pattern import Pattern

__all__ = ["SparseJacobians", "sparse_jacobians", "same_rows"]


class SparseJacobians:
    """The sparse Jacobians of one solve's residual on ``(batch, n)`` rows.

    Parameters
    ----------
    xp, dtype, device, batch, n : the solve's namespace and layout.
    pattern : the given pattern (``sparsity=``, one element's residual Jacobian), or ``None`` when
        the structure is read from ``jac``.
    jac : ``u -> J`` on rows returning the problem's (checked) sparse Jacobian, or ``None``.
    products : the solve's :class:`~steadysolve._backend.derivatives.Products` (for colouring).
    where : the name used in error messages.
    """

    def __init__(self, xp, dtype, device, batch: int, n: int, pattern: Optional[Pattern], jac: Optional[Callable],
                 products, where: str = "jac", m: Optional[int] = None):
        self.xp, self.dtype, self.device = xp, dtype, device
        self.batch, self.n = batch, n
        self.m = n if m is None else m  # residuals per element (a least-squares problem's m >= n)
        self._pattern, self._given = pattern, pattern is not None
        self._jac, self._products, self._where = jac, products, where
        self._groups: Optional[ColumnGroups] = None
        self._first = None  # (u, J): a Jacobian already computed at u

    @property
    def pattern(self) -> Pattern:
        """One element's pattern (read from ``jac`` at the first :meth:`at` when none was given)."""
        if self._pattern is None:
            raise RuntimeError("SparseJacobians.pattern: the structure of jac is known after the first at(u, fu)")
        return self._pattern

    @property
    def from_jac(self) -> bool:
        """True when the values come from the problem's ``jac`` (no products spent)."""
        return self._jac is not None

    @property
    def groups(self) -> ColumnGroups:
        """The colouring plan (``ncolours`` products per Jacobian)."""
        if self._groups is None:
            self._groups = ColumnGroups(self.xp, self.pattern, self.dtype, self.device)
        return self._groups

    def at(self, u, fu):
        """``(values (batch, nnz), products spent)`` of the residual's Jacobian at rows ``u``
        (``fu = F(u)``). Products are JVPs; with finite differences each is one call of ``F``."""
        if self._jac is not None:
            first, self._first = self._first, None
            return self._read(first[1] if first is not None and same_rows(self.xp, first[0], u) else self._jac(u), u), 0
        groups = self.groups
        products = self._products
        if products.jvp_kind == "fd":
            values = groups.finite_differences(products.F, u, fu, products.typical)
        elif products.jvp_kind == "ad" and backend.is_jax(self.xp):
            values = groups.jax_jvp(products.F, u)
        else:
            values = groups.from_jvp(products.jvp, u, fu)
        return values, groups.ncolours

    def matrices(self, values):
        """``values`` as the library's sparse matrices (:func:`library_matrices`)."""
        return library_matrices(self.xp, self.pattern, values)

    def _read(self, J, u):
        where = self._where
        J = check_sparse_jacobian(J, u, n=self.n, batch=self.batch, where=where, m=self.m)
        if self._pattern is None:
            self._pattern = _structure(J, self.n, self.m)
        try:
            return values_on(self._pattern, J, u, batch=self.batch, where=where)
        except ValueError:
            if self._given:
                raise
            # no stated pattern: the Jacobian's structure may grow (an entry exactly zero at the start)
            self._pattern = _union(self._pattern, _structure(J, self.n, self.m))
            self._groups = None
            return values_on(self._pattern, J, u, batch=self.batch, where=where)


def same_rows(xp, a, b) -> bool:
    """``a`` and ``b`` are the same rows (the object, or equal values: a driver may copy its start)."""
    if a is b:
        return True
    if backend.is_traced(a) or backend.is_traced(b) or tuple(a.shape) != tuple(b.shape):
        return False
    return backend.host_bool(xp.all(a == b))


def _structure(J, n: int, m: Optional[int] = None) -> Pattern:
    """The union over a batch of the stored entries of a checked sparse ``J``."""
    mats = J if isinstance(J, list) else [J]
    rows, cols = [], []
    for M in mats:
        kind = sparse_library(M)
        if kind != "scipy" and len(M.shape) == 3:  # a batched torch / BCOO: every element's entries
            for b in range(int(M.shape[0])):
                r, c = to_host_coo(M[b], kind)
                rows.append(r)
                cols.append(c)
            continue
        r, c = to_host_coo(M, kind)
        rows.append(r)
        cols.append(c)
    return Pattern.from_coo(n, np.concatenate(rows), np.concatenate(cols), m)


def _union(a: Pattern, b: Pattern) -> Pattern:
    return Pattern.from_coo(a.n, np.concatenate([a.rows, b.rows]), np.concatenate([a.indices, b.indices]), a.m)


def sparse_jacobians(ctx, pattern: Optional[Pattern], raw_jac: Optional[Callable], u, where: str,
                     m: Optional[int] = None):
    """The :class:`SparseJacobians` of a solve (context ``ctx``), or ``None`` when there is no pattern
    and no sparse ``jac``. ``raw_jac(u)`` on rows returns what the problem's ``jac`` returns; it is
    called once at rows ``u`` to see whether it is sparse, and that Jacobian serves the first
    :meth:`SparseJacobians.at` at ``u`` (the same array object). A dense ``jac`` with a pattern: the
    pattern's colouring gives the values (the dense methods use the dense ``jac``)."""
    jac, first = None, None
    if raw_jac is not None:
        J0 = raw_jac(u)
        if is_sparse_jacobian(J0):
            jac, first = raw_jac, (u, J0)
    if pattern is None and jac is None:
        return None
    out = SparseJacobians(ctx.xp, ctx.dtype, ctx.device, ctx.batch, ctx.n, pattern, jac, ctx.products, where=where,
                          m=m)
    out._first = first
    return out
