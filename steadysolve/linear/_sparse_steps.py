"""The linear-solver object of the sparse Newton family: one solve's sparse Jacobians, factorised on the host.

``NewtonRaphson``, ``TrustRegion`` and ``LevenbergMarquardt`` keep a sparse Jacobian as its values
``(batch, nnz)`` on one pattern (:class:`~steadysolve.sparse.SparseJacobians`, from the problem's
sparse ``jac`` or by colouring) and ask this object for what the dense methods get from dense linear
algebra: the Newton point (SuperLU), ``J^T v`` and ``J v`` (the dogleg's Cauchy point, the trust
region's predicted reduction), the column norms (MINPACK's scaling) and Levenberg–Marquardt's damped
step (normal equations, or LSMR). Every operation takes and returns arrays of the solve's library;
the factorisations are SciPy's, on host NumPy copies of the values (a view for NumPy and CPU PyTorch
arrays). That is eager work: under ``jax.jit`` a solve cannot call SciPy, and :func:`sparse_steps`
refuses there unless the dense method fits (see :func:`sparse_steps`).

Factorisations are counted (``nfact``), and the last SuperLU factors are kept while the Jacobian's
values stay the same array (a trust-region step rejected keeps ``J``: the next dogleg re-solves, it
does not refactorise).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import _backend as backend
from ..sparse import library_matrices
from . import sparse as _sp

__all__ = ["SparseSteps", "sparse_steps", "refuse_traced"]

_NP = backend.host_numpy()


def refuse_traced(owner: str, n: int, max_size: int) -> None:
    """``ValueError`` for a sparse problem too large for the dense method under ``jax.jit`` / ``vmap``."""
    raise ValueError(
        f"{owner}: the problem has a sparse Jacobian (sparsity= or a sparse jac) and n={n} unknowns per element, "
        f"above max_size={max_size} for a dense one; sparse factorisations (SciPy's SuperLU) run on the host and "
        "cannot run under jax.jit / vmap / grad. Use NewtonKrylov with a preconditioner "
        "(ss.NewtonKrylov(...), matrix-free, jit-able), or call solve outside the transformation")


def sparse_steps(ctx, u, owner: str, max_size: int) -> Optional["SparseSteps"]:
    """The solve's :class:`SparseSteps` (made once per context), or ``None`` for the dense method: the
    problem has no sparse Jacobian, or the solve is traced by JAX and ``n <= max_size`` (the dense
    Jacobian then serves, built from ``n`` products). A traced sparse problem above ``max_size`` is
    refused (:func:`refuse_traced`), as is a dense one (the caller's ``refuse_large``)."""
    steps = ctx.__dict__.get("_sparse_steps", False)
    if steps is not False:
        return steps
    source = ctx.sparse_jacobians(u)
    if source is not None and ctx.traced:
        if ctx.n > max_size:
            refuse_traced(owner, ctx.n, max_size)
        source = None
    steps = None if source is None else SparseSteps(ctx, source)
    ctx.__dict__["_sparse_steps"] = steps
    return steps


class SparseSteps:
    """Sparse linear algebra on the Jacobian values of one solve (see the module docstring)."""

    def __init__(self, ctx, source):
        self.xp, self.dtype, self.device = ctx.xp, ctx.dtype, ctx.device
        self.source = source
        self._mats = (None, None)  # (values, host matrices): the last values wrapped
        self._lu = (None, None, {})  # (values, SparseLU, element -> index of its factors)
        self._spec = None

    # --- the Jacobian -------------------------------------------------------------------------------------

    def jacobian(self, u, fu):
        """``(values (B, nnz), products spent)`` of the Jacobian at ``u`` (every element)."""
        return self.source.at(u, fu)

    def refresh(self, u, fu, old, need):
        """The Jacobian values where ``need`` (every element's, at the current ``u``: an element that does
        not need one has not moved since its own), else ``old``: ``(values, products, Jacobians built)``."""
        (values, nprod), ran = backend.when_any(self.xp, need, lambda a: self.jacobian(*a), lambda a: (old, 0), (u, fu))
        return values, nprod, ran

    def finite(self, values):
        """``(values with non-finite rows zeroed, finite (B,) bool)``."""
        xp = self.xp
        ok = xp.all(xp.isfinite(values), axis=1)
        return xp.where(xp.reshape(ok, (-1, 1)), values, xp.zeros_like(values)), ok

    def column_norms(self, values):
        """``(B, n)`` Euclidean norms of the Jacobian's columns."""
        p, host = self.source.pattern, self._host(values)
        out = _NP.stack([_NP.bincount(p.indices, weights=h * h, minlength=p.n) for h in host])
        return self._back(_NP.sqrt(out))

    # --- products ------------------------------------------------------------------------------------------

    def matvec(self, values, v):
        """``J v`` per element."""
        return self._back(_sp.matvec(self._matrices(values), self._host(v)))

    def rmatvec(self, values, v):
        """``J^T v`` per element."""
        return self._back(_sp.gradient(self._matrices(values), self._host(v)))

    # --- solves ----------------------------------------------------------------------------------------

    def newton(self, values, fu, need=None):
        """The Newton point ``d`` with ``J d = -F`` per element (SuperLU), where ``need`` (all when None):
        ``(d, failed (B,) bool, factorisations)``. A singular or non-finite ``J`` (or a non-finite ``d``)
        gives ``d = 0`` and ``failed``; elements not needed get ``d = 0``, not failed."""
        rhs = -self._host(fu)
        B = rhs.shape[0]
        idx = list(range(B)) if need is None else [int(b) for b in _NP.flatnonzero(backend.to_numpy(self.xp, need))]
        cached, lu, where = self._lu
        nfact = 0
        if cached is not values or not set(idx) <= set(where):
            mats = self._matrices(values)
            lu = _sp.SparseLU([mats[b] for b in idx], permc_spec=self._ordering())
            nfact, where = lu.nfact, {b: k for k, b in enumerate(idx)}  # element -> its factors
            self._lu = (values, lu, where)
        d = _NP.zeros_like(rhs)
        failed = _NP.zeros(B, dtype=bool)
        pos = [where[b] for b in idx]
        sub = _NP.zeros((len(lu.mats),) + rhs.shape[1:], dtype=rhs.dtype)
        sub[pos] = rhs[idx]
        x = lu.solve(sub)
        d[idx] = x[pos]
        failed[idx] = lu.failed[pos]
        return self._back(d), self._mask(failed), nfact

    def damped(self, values, g, damp, D, method: str = "normal"):
        """Levenberg–Marquardt's step ``delta`` with ``(J^T J + damp D^2) delta = -g`` per element (``g = J^T F``):
        ``"normal"``, the normal equations factorised (CHOLMOD when installed, else SuperLU), or
        ``"lsmr"``, LSMR on ``J`` (needs ``F``: pass ``g = F`` then; no factorisation). Returns
        ``(delta, failed (B,) bool, factorisations)``."""
        mats = self._matrices(values)
        lam, Dh = self._host(damp), self._host(D)
        if method == "lsmr":
            n = self.source.pattern.n  # (in exact arithmetic n iterations; rounding may ask for more)
            s, _, failed = _sp.lsmr_damped(mats, -self._host(g), lam, Dh, maxiter=4 * n + 100)
            return self._back(s), self._mask(failed), 0
        fac = _sp.DampedNormal(mats, lam, Dh)
        s = -fac.solve(self._host(g))
        return self._back(s), self._mask(fac.failed), fac.nfact

    # --- host conversions -------------------------------------------------------------------------------

    def _ordering(self) -> str:
        pattern = self.source.pattern  # (a jac's structure may still grow: an entry exactly zero at first)
        if self._spec is None or self._spec[0] is not pattern:  # one check per pattern, not per factorisation
            self._spec = (pattern, "MMD_AT_PLUS_A" if _sp.structurally_symmetric(pattern.to_scipy()) else "COLAMD")
        return self._spec[1]

    def _matrices(self, values):
        if self._mats[0] is not values:
            self._mats = (values, library_matrices(_NP, self.source.pattern, self._host(values)))
        return self._mats[1]

    def _host(self, x):
        return backend.to_numpy(self.xp, x)

    def _back(self, a):
        return backend.from_numpy(self.xp, a, self.dtype, self.device)

    def _mask(self, a):
        return backend.from_numpy(self.xp, _NP.asarray(a, dtype=bool), self.xp.bool, self.device)
