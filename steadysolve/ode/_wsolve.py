"""The linear solves of a Rosenbrock step: ``W U = rhs`` with ``W = I / (h gamma) - J``, one ``W`` per step.

A *W-solver* is a small frozen object with one class attribute and two methods:

* ``jacobian``: the form of ``J`` the caller builds for it -- ``"dense"``, a ``(B, n, n)`` array, or
  ``"sparse"``, a :class:`SparseRows` (``(B, nnz)`` values on one element's pattern, CSR order: what
  ``ctx.sparse_jacobians`` gives);
* ``factor(xp, J, hgamma) -> fact``: prepare ``W`` for the step (``hgamma`` is ``(B, 1)``, one step
  size per element), once per step: a step of an ``s``-stage method then makes ``s`` solves with it;
* ``solve(xp, fact, rhs) -> x``: ``x = W^-1 rhs`` for a ``(B, n)`` right-hand side.

``factorizations`` says how many factorisations ``factor`` counts (0 for a matrix-free solver).
The integrator never looks inside ``fact``.

:class:`DenseLU` factorises the dense ``W`` with the library's batched LU (``torch.linalg``,
``jax.scipy.linalg``, SciPy's ``lu_factor`` for NumPy; without SciPy, and on libraries without an LU,
the inverse from the standard ``linalg.inv``; JAX states of at most ``INVERSE_MAX_N`` unknowns get the
inverse from the LU, whose products are cheaper than XLA's small triangular solves). A singular ``W`` (``1 / (h gamma)`` an eigenvalue of
``J``) gives non-finite stages for that element only, so the step is rejected and retried with a
smaller ``h`` (a different ``W``) instead of raising; on the ``inv`` fallback a singular matrix
anywhere in the batch rejects the whole batch's step.

:class:`SparseLU` factorises ``W`` on the pattern of ``J`` plus its diagonal with SuperLU
(:class:`steadysolve.linear.sparse.SparseLU`, one matrix per element) for NumPy states; a ``W``
whose reverse Cuthill-McKee order is narrowly banded (a 1-D discretisation's) goes to LAPACK's
banded LU instead (``BAND_MAX``), which has no per-factorisation symbolic work. SuperLU
is a host library: on the other libraries (PyTorch, JAX, also under ``jax.jit``) the values are
made dense and :class:`DenseLU` factorises them, so the sparse Jacobian still saves its columns
(a colouring's few products instead of ``n``) but not the dense ``2 n^3 / 3`` factorisation.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import _backend as backend
from ..linear import sparse as _sparse_solve
from ..sparse import Pattern, library_matrices

__all__ = ["DenseLU", "SparseLU", "SparseRows", "dense_from_rows", "INVERSE_MAX_N"]

#: JAX states up to this many unknowns get ``W^-1`` (from the LU, one solve with the identity) and each
#: stage one matrix product: XLA's CPU triangular solves of small systems cost more than the product
#: (an LU and 8 solves took ~3x an LU, the inverse and 8 products at n = 50; equal at n = 128)
INVERSE_MAX_N = 64


@dataclass(frozen=True)
class DenseLU:
    """Dense LU factorisation of ``W = I / (h gamma) - J`` (batched, per element), for systems small
    enough for a dense Jacobian (the LU costs ``2 n^3 / 3`` per step, each stage's solve ``2 n^2``).

    Half-precision states are factorised in float32.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> from steadysolve.ode import DenseLU
    >>> J = np.array([[[-2.0, 1.0], [0.0, -3.0]]])
    >>> fact = DenseLU().factor(np, J, np.array([[0.5]]))
    >>> np.round(DenseLU().solve(np, fact, np.array([[4.0, 5.0]])), 6)    # (2 I - J) x = rhs
    array([[1.25, 1.  ]])
    """

    jacobian: ClassVar[str] = "dense"
    factorizations: ClassVar[int] = 1

    def factor(self, xp, J, hgamma):
        B, n = J.shape[0], J.shape[1]
        dtype = J.dtype
        if isinstance(hgamma, float):  # one NumPy system with a Python-float step (steadysolve._small)
            W = -J[0]
            W.flat[::n + 1] += 1.0 / hgamma
            lu = _scipy_lu(W[None])
            if lu is not None:
                return ("scipy",) + lu + (dtype,)
            hgamma = xp.full((1, 1), hgamma, dtype=dtype)
        work = backend.working_dtype(xp, dtype)
        eye = xp.reshape(xp.eye(n, dtype=work, device=backend.device_of(J)), (1, n, n))
        W = eye / xp.reshape(backend.cast(xp, hgamma, work), (B, 1, 1)) - backend.cast(xp, J, work)
        if backend.is_torch(xp):
            import torch

            LU, piv, _ = torch.linalg.lu_factor_ex(W)
            return ("torch", LU, piv, dtype)
        if backend.is_jax(xp):
            import jax.scipy.linalg as jsl

            lu = tuple(jsl.lu_factor(W))
            if n <= INVERSE_MAX_N:  # XLA's small triangular solves are slow: one matrix product per stage
                return ("inv", jsl.lu_solve(lu, xp.broadcast_to(eye, W.shape)), None, dtype)
            return ("jax",) + lu + (dtype,)
        if backend.is_numpy(xp):
            lu = _scipy_lu(W)
            if lu is not None:
                return ("scipy",) + lu + (dtype,)
        try:
            return ("inv", xp.linalg.inv(W), None, dtype)
        except (ValueError, RuntimeError):  # a singular W in the batch (NumPy's LinAlgError is a ValueError)
            return ("inv", xp.full_like(W, math.nan), None, dtype)

    def solve(self, xp, fact, rhs):
        kind, a, b, dtype = fact
        work = a.dtype
        r = backend.cast(xp, rhs, work)
        if kind == "torch":
            import torch

            x = torch.linalg.lu_solve(a, b, r[..., None])[..., 0]
        elif kind == "jax":
            import jax.scipy.linalg as jsl

            x = jsl.lu_solve((a, b), r[..., None])[..., 0]
        elif kind == "scipy":
            x = _scipy_solve(a, b, r)
        else:
            x = xp.reshape(a @ xp.reshape(r, (r.shape[0], r.shape[1], 1)), r.shape)
        return backend.cast(xp, x, dtype)


_SCIPY: list = []  # [scipy.linalg] once imported, [None] when SciPy is missing


def _linalg():
    if not _SCIPY:
        try:
            import scipy.linalg as sl
        except ImportError:  # pragma: no cover - SciPy is installed alongside the benchmarks and tests
            sl = None
        _SCIPY.append(sl)
    return _SCIPY[0]


def _scipy_lu(W):
    """SciPy's LU of the ``(B, n, n)`` NumPy stack (LAPACK's ``getrf`` for one element, the batched
    ``lu_factor`` otherwise), or None (no SciPy, or a SciPy without batched ``lu_factor``: the caller
    inverts instead)."""
    sl = _linalg()
    if sl is None:
        return None
    if W.shape[0] == 1:  # LAPACK directly: SciPy's wrappers cost more than the factorisation at small n
        getrf, getrs = sl.get_lapack_funcs(("getrf", "getrs"), (W,))
        lu, piv, _ = getrf(W[0], overwrite_a=True)  # info > 0 (singular): the solves say it (inf / nan)
        return lu, (piv, getrs)
    with warnings.catch_warnings():  # an exactly singular W: the non-finite stages say it
        warnings.simplefilter("ignore")
        try:
            return tuple(sl.lu_factor(W, check_finite=False))
        except ValueError:  # SciPy < 1.15: 2-D arrays only
            return None


def _scipy_solve(lu, piv, r):
    if lu.ndim == 2:
        piv, getrs = piv
        x, _ = getrs(lu, piv, r[0])
        return x[None]
    return _linalg().lu_solve((lu, piv), r[..., None], check_finite=False)[..., 0]


class SparseRows(NamedTuple):
    """A batch of sparse Jacobians: ``values`` ``(B, nnz)`` on one element's ``pattern`` (CSR order)."""

    values: Any
    pattern: Pattern


def dense_from_rows(xp, J: SparseRows):
    """The ``(B, n, n)`` dense Jacobians of a :class:`SparseRows` in the values' library."""
    B, n = J.values.shape[0], J.pattern.n
    M = library_matrices(xp, J.pattern, J.values)
    if backend.is_torch(xp):
        return M.to_dense()
    if backend.is_jax(xp):
        return M.todense()
    dense = np.stack([m.toarray() for m in M]).reshape(B, n, n)
    return dense if backend.is_numpy(xp) else backend.from_numpy(xp, dense, J.values.dtype, backend.device_of(J.values))


class _Ordered(NamedTuple):
    """``W`` symmetrically permuted by a fill-reducing order computed once per structure: the permuted
    matrix's CSC structure and where its entries sit among ``W``'s (CSR order)."""

    order: np.ndarray  # (n,) A = W[order][:, order]
    gather: np.ndarray  # (nnz_W,) A's CSC data = W's values[gather]
    indices: np.ndarray
    indptr: np.ndarray


class _WPlan(NamedTuple):
    """Where ``W = s I - J`` sits on the pattern of ``J`` plus the diagonal."""

    wide: Pattern  # J's pattern with the diagonal
    at_j: np.ndarray  # (nnz_J,) position of each entry of J in ``wide``
    at_diag: np.ndarray  # (n,) position of each diagonal entry in ``wide``
    permc_spec: str  # SuperLU's column ordering for this structure
    ordered: Any = None  # _Ordered for a structurally symmetric W, else None
    banded: Any = None  # _Banded when a bandwidth-reducing order makes W narrowly banded, else None


@lru_cache(maxsize=8)
def _plan(pattern: Pattern) -> _WPlan:
    wide = pattern.with_diagonal()
    diag = np.arange(pattern.n, dtype=np.int64)
    at_diag = wide.position(diag, diag)
    at_j = wide.position(pattern.rows, pattern.indices)
    banded = _banding(wide)
    if banded is not None:
        return _WPlan(wide, at_j, at_diag, "NATURAL", None, banded)
    symmetric = _sparse_solve.structurally_symmetric(wide.to_scipy())
    spec = "MMD_AT_PLUS_A" if symmetric else "COLAMD"
    ordered = _ordering(wide, at_diag) if symmetric else None
    return _WPlan(wide, at_j, at_diag, spec, ordered)


#: ``W`` goes to LAPACK's banded LU (``gbtrf`` / ``gbtrs``) when the reverse Cuthill-McKee order of its
#: structure leaves at most this many sub- plus super-diagonals (a 1-D discretisation's few): the banded
#: LU then costs ``O(n kl (kl + ku))`` without SuperLU's per-factorisation symbolic work and its solves
#: are one LAPACK call; wider bands (a 2-D grid's ``~sqrt(n)``) fill in more than a minimum-degree order
BAND_MAX = 16
#: and only from this many unknowns (below, SuperLU's overhead is small anyway)
BAND_MIN_N = 64


class _Banded(NamedTuple):
    """``W`` symmetrically permuted by a bandwidth-reducing order, in LAPACK's banded storage: entry ``k`` of
    ``W`` (CSR order) sits at ``flat[k]`` of the ``(2 kl + ku + 1, n)`` array (Fortran order: ``gbtrf``'s
    layout, with ``kl`` rows of room for the pivoting's fill)."""

    order: np.ndarray  # (n,) A = W[order][:, order]
    flat: np.ndarray  # (nnz_W,) positions in the Fortran-ordered band storage
    kl: int
    ku: int


def _banding(wide: Pattern):
    """The :class:`_Banded` plan of ``W``'s structure, or None when its bandwidth (after reverse
    Cuthill-McKee) exceeds ``BAND_MAX`` or ``n < BAND_MIN_N``."""
    n = wide.n
    if n < BAND_MIN_N:
        return None
    try:
        from scipy.sparse.csgraph import reverse_cuthill_mckee
    except ImportError:  # pragma: no cover - SciPy is installed with the sparse extras
        return None
    S = wide.to_scipy(np.ones(wide.nnz))
    order = np.asarray(reverse_cuthill_mckee((S + S.T).tocsr(), symmetric_mode=True), dtype=np.int64)
    where = np.empty(n, dtype=np.int64)
    where[order] = np.arange(n, dtype=np.int64)  # new index of each old one
    r, c = where[wide.rows], where[wide.indices]
    kl, ku = int(max(0, np.max(r - c))), int(max(0, np.max(c - r)))
    if kl + ku > BAND_MAX:
        return None
    ldab = 2 * kl + ku + 1
    flat = (kl + ku + r - c) + ldab * c  # ab[kl + ku + i - j, j], Fortran order
    return _Banded(order, np.asarray(flat, dtype=np.int64), kl, ku)


@lru_cache(maxsize=8)
def _natural(n: int) -> np.ndarray:
    """``0, ..., n - 1``: SciPy's ``gbtrf`` pivots (0-based) when no rows were interchanged."""
    return np.arange(n, dtype=np.int32)


class _BandedLU:
    """LAPACK banded LU factorisations of the permuted ``W`` per element, with
    :class:`steadysolve.linear.sparse.SparseLU`'s interface (``solve(rhs)``, ``failed``)."""

    def __init__(self, W, banded: _Banded):
        sl = _linalg()
        self.banded = banded
        B, n = W.shape[0], banded.order.shape[0]
        kl, ku = banded.kl, banded.ku
        ldab = 2 * kl + ku + 1
        gbtrf, self.gbtrs = sl.get_lapack_funcs(("gbtrf", "gbtrs"), (W,))
        self.tbsv = sl.get_blas_funcs("tbsv", (W,))
        self.factors = [None] * B
        self.failed = np.zeros(B, dtype=bool)
        natural = _natural(n)
        for b in range(B):
            if not np.isfinite(W[b]).all():
                self.failed[b] = True
                continue
            ab = np.zeros((ldab, n), dtype=W.dtype, order="F")
            ab.reshape(-1, order="F")[banded.flat] = W[b]
            lu, piv, info = gbtrf(ab, kl, ku, overwrite_ab=True)
            if info != 0:  # info > 0: an exactly zero pivot, a singular W
                self.failed[b] = True
                continue
            # No row interchanges (W diagonally dominant by columns, the usual case for a long step's
            # I / (h gamma) - J): L and U are plain band matrices, solved by two BLAS tbsv calls, which cost
            # less than gbtrs's swap and rank-1 update per column
            plain = bool((piv == natural).all())
            self.factors[b] = (np.asfortranarray(lu[kl + ku:]), np.asfortranarray(lu[:kl + ku + 1])) if plain \
                else (lu, piv)

    def solve(self, rhs):
        bd = self.banded
        order, kl, ku = bd.order, bd.kl, bd.ku
        out = np.zeros_like(rhs)
        for b, fac in enumerate(self.factors):
            if self.failed[b]:
                continue
            if fac[1].ndim == 2:  # (L band, U band)
                x, info = self.tbsv(kl + ku, fac[1], self.tbsv(kl, fac[0], rhs[b][order], lower=1, diag=1,
                                                              overwrite_x=1), overwrite_x=1), 0
            else:
                x, info = self.gbtrs(fac[0], kl, ku, rhs[b][order], fac[1])
            if info == 0 and (math.isfinite(x.sum()) or np.isfinite(x).all()):  # the sum: one pass, no mask
                out[b, order] = x
            else:
                self.failed[b] = True
        return out


def _ordering(wide: Pattern, at_diag) -> _Ordered:
    """The minimum-degree order of ``W + W^T`` (SuperLU's ``MMD_AT_PLUS_A``, read from one factorisation of
    a diagonally dominant matrix on the structure; it depends on the structure only). SuperLU recomputes
    its ordering at every factorisation, about half of the cost of a banded ``W``'s: with ``W`` permuted
    once here, each step's factorisation takes the natural order (partial pivoting is kept)."""
    from scipy.sparse.linalg import splu

    vals = np.ones(wide.nnz)
    vals[at_diag] = wide.nnz + 1.0
    order = np.argsort(splu(wide.to_scipy(vals).tocsc(), permc_spec="MMD_AT_PLUS_A").perm_c)
    where = wide.to_scipy(np.arange(1, wide.nnz + 1, dtype=np.int64))[order][:, order].tocsc()
    where.sort_indices()
    return _Ordered(order, np.asarray(where.data - 1, dtype=np.int64), where.indices.copy(), where.indptr.copy())


class _OrderedLU:
    """SuperLU factorisations of the permuted ``W`` per element, with :class:`steadysolve.linear.sparse.SparseLU`'s
    interface (``solve(rhs)``, ``failed``: a non-finite or exactly singular ``W``, or a non-finite solution)."""

    def __init__(self, W, ordered: _Ordered):
        import scipy.sparse as sps
        from scipy.sparse.linalg import splu

        self.ordered = ordered
        B, n = W.shape[0], ordered.order.shape[0]
        self.factors = [None] * B
        self.failed = np.zeros(B, dtype=bool)
        for b in range(B):
            data = W[b][ordered.gather]
            if not np.isfinite(data).all():
                self.failed[b] = True
                continue
            A = sps.csc_matrix((data, ordered.indices, ordered.indptr), shape=(n, n))
            try:
                self.factors[b] = splu(A, permc_spec="NATURAL")
            except RuntimeError:  # "Factor is exactly singular"
                self.failed[b] = True

    def solve(self, rhs):
        order = self.ordered.order
        out = np.zeros_like(rhs)
        for b, lu in enumerate(self.factors):
            if self.failed[b]:
                continue
            x = lu.solve(rhs[b][order])
            if np.isfinite(x).all():
                out[b, order] = x
            else:
                self.failed[b] = True
        return out


def w_values(J: SparseRows, shift):
    """Host ``(B, nnz_W)`` values of ``W = shift I - J`` on :func:`_plan`'s widened pattern (``shift``
    ``(B, 1)`` host floats) and the plan."""
    plan = _plan(J.pattern)
    vals = np.asarray(J.values)
    W = np.zeros((vals.shape[0], plan.wide.nnz), dtype=vals.dtype)
    W[:, plan.at_diag] = shift
    W[:, plan.at_j] -= vals
    return W, plan


def superlu_factor(J: SparseRows, shift):
    """SuperLU factorisations of ``shift I - J`` per element (NumPy values; ``shift`` ``(B, 1)``)."""
    W, plan = w_values(J, np.asarray(shift, dtype=np.asarray(J.values).dtype))
    with np.errstate(all="ignore"):
        if plan.banded is not None and _linalg() is not None:
            return _BandedLU(W, plan.banded)
        if plan.ordered is not None:
            return _OrderedLU(W, plan.ordered)
        return _sparse_solve.SparseLU([plan.wide.to_scipy(W[b]) for b in range(W.shape[0])],
                                      permc_spec=plan.permc_spec)


def superlu_solve(lu, rhs):
    """``W^-1 rhs`` per element, NaN rows where SuperLU failed (a singular or non-finite ``W``)."""
    x = lu.solve(np.asarray(rhs))
    if lu.failed.any():
        x[lu.failed] = np.nan
    return x


@dataclass(frozen=True)
class SparseLU:
    """Sparse LU factorisation of ``W = I / (h gamma) - J`` with SuperLU, for large systems whose
    Jacobian is sparse (the problem's ``sparsity=`` or a sparse ``jac``): one factorisation per element
    and step on the pattern of ``J`` plus the diagonal (a banded ``J``: ``O(n)`` work per step). A
    pattern that some symmetric reordering makes narrowly banded (at most ``BAND_MAX`` sub- plus
    super-diagonals, from ``BAND_MIN_N`` unknowns) is factorised by LAPACK's banded LU, the others by
    SuperLU.

    NumPy states only factorise sparsely; PyTorch and JAX states (``jax.jit`` included) make the
    values dense and use :class:`DenseLU` (see the module notes). A problem with neither
    ``sparsity=`` nor a sparse ``jac`` has no sparse Jacobian: the solve refuses this W-solver.

    Examples
    --------
    >>> import numpy as np
    >>> from steadysolve.ode import SparseLU, SparseRows
    >>> from steadysolve.sparse import Pattern
    >>> J = SparseRows(np.array([[-2.0, 1.0, -3.0]]), Pattern.from_coo(2, [0, 0, 1], [0, 1, 1]))
    >>> fact = SparseLU().factor(np, J, np.array([[0.5]]))
    >>> np.round(SparseLU().solve(np, fact, np.array([[4.0, 5.0]])), 6)    # (2 I - J) x = rhs
    array([[1.25, 1.  ]])
    """

    jacobian: ClassVar[str] = "sparse"
    factorizations: ClassVar[int] = 1

    def factor(self, xp, J: SparseRows, hgamma):
        if backend.is_numpy(xp):
            return ("superlu", superlu_factor(J, 1.0 / hgamma))
        return ("dense", DenseLU().factor(xp, dense_from_rows(xp, J), hgamma))

    def solve(self, xp, fact, rhs):
        if fact[0] == "superlu":
            return superlu_solve(fact[1], rhs)
        return DenseLU().solve(xp, fact[1], rhs)
