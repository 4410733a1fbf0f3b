"""Sparse direct and least-squares solves for the Newton family: one matrix per batch element.

A batch's Jacobians are a list of ``scipy.sparse`` matrices (element ``b`` is ``mats[b]``);
every function takes that list and ``(batch, n)`` host NumPy right-hand sides, and reports the
factorisations it made and the elements it could not solve (``failed``: an exactly singular
or non-finite matrix, or a non-finite solution), which the caller turns into
``LinearSolveFailed`` for those elements rather than a step. An element whose matrix is the
same object as the previous element's is factorised once.

* :class:`SparseLU`: SuperLU (``scipy.sparse.linalg.splu``) for Newton steps. The column
  ordering is ``MMD_AT_PLUS_A`` (minimum degree on ``A + A^T``) when the matrix's structure is
  symmetric, as discretised PDEs' are, and SciPy's default ``COLAMD`` otherwise: on a
  structurally symmetric matrix the former fills in about half as much (docs/sparse.md).
* :class:`DampedNormal`: ``(J^T J + lam D^2) s = r`` for Levenberg–Marquardt, factorised by
  CHOLMOD (``scikit-sparse``, optional: it factorises ``A A^T + beta I`` from ``A = (J D^-1)^T``
  without forming the product, and keeps the symbolic analysis for the next ``lam``) or else
  by SuperLU on the formed normal matrix. Normal equations square ``cond(J)``: for a
  Gauss-Newton step (``lam = 0``) on a square system use :class:`SparseLU` instead.
* :func:`lsmr_damped`: the same step without a factorisation, by LSMR on the column-scaled
  ``J D^-1`` with ``damp = sqrt(lam)`` (what SciPy's ``least_squares`` does for sparse ``J``).
* :func:`gradient` (``J^T v``) and :func:`cauchy` (steepest descent direction and its step
  length ``|g|^2 / |J g|^2``), the pieces of a dogleg step.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["SparseLU", "DampedNormal", "lsmr_damped", "gradient", "matvec", "cauchy", "structurally_symmetric",
           "cholmod_available"]


def structurally_symmetric(A) -> bool:
    """True when ``A`` and ``A^T`` have the same nonzero structure."""
    S = A.tocsr().copy()
    S.data = np.ones_like(S.data, dtype=np.int8)
    return (S != S.T).nnz == 0


def cholmod_available() -> bool:
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


def _finite(A) -> bool:
    return bool(np.isfinite(A.data).all()) if A.nnz else True


class _Batch:
    """Shared bookkeeping: per-element factors, ``failed`` flags, the count of factorisations."""

    def __init__(self, mats: Sequence):
        self.mats = list(mats)
        self.factors = [None] * len(self.mats)
        self.failed = np.zeros(len(self.mats), dtype=bool)
        self.nfact = 0

    def _each(self, factorise, errors=(RuntimeError,)):
        """``factors[b] = factorise(b, mats[b])``; ``errors`` (singular, not positive definite) mark ``failed``."""
        for b, A in enumerate(self.mats):
            if b and A is self.mats[b - 1]:
                self.factors[b], self.failed[b] = self.factors[b - 1], self.failed[b - 1]
                continue
            if not _finite(A):
                self.failed[b] = True
                continue
            self.nfact += 1
            try:
                self.factors[b] = factorise(b, A)
            except errors:  # SuperLU: RuntimeError("Factor is exactly singular")
                self.failed[b] = True

    def _solve_each(self, rhs, solve):
        rhs = np.asarray(rhs)
        out = np.zeros_like(rhs)
        for b, fac in enumerate(self.factors):
            if self.failed[b]:
                continue
            x = solve(fac, rhs[b])
            if np.isfinite(x).all():
                out[b] = x
            else:
                self.failed[b] = True
        return out


class SparseLU(_Batch):
    """SuperLU factorisations of ``mats`` (one per element; see the module docstring for the ordering).

    ``solve(rhs)`` returns ``x`` with ``mats[b] @ x[b] = rhs[b]`` (zeros where ``failed``).
    """

    def __init__(self, mats: Sequence, permc_spec: Optional[str] = None):
        super().__init__(mats)
        from scipy.sparse.linalg import splu

        def factorise(b, A):
            spec = permc_spec or ("MMD_AT_PLUS_A" if structurally_symmetric(A) else "COLAMD")
            return splu(A.tocsc(), permc_spec=spec)

        self._each(factorise)

    def solve(self, rhs, trans: str = "N"):
        return self._solve_each(rhs, lambda lu, r: lu.solve(r, trans=trans))


def _scaled(A, D):
    """``A D^-1`` (``D`` the diagonal of column scales, or ``None`` for the identity), CSR."""
    if D is None:
        return A.tocsr()
    import scipy.sparse as sp

    return (A @ sp.diags(1.0 / np.asarray(D, dtype=float))).tocsr()


class DampedNormal(_Batch):
    """Factorisations of ``J^T J + lam D^2`` per element (``lam`` a number or one per element; ``D``
    ``None`` or ``(batch, n)`` positive column scales). ``solve(r)`` returns ``s`` with
    ``(J^T J + lam D^2) s = r``. ``engine``: ``"cholmod"``, ``"superlu"`` or ``"auto"`` (CHOLMOD
    when installed). ``analysis`` (CHOLMOD only): the symbolic analyses of an earlier instance of
    the same patterns, reused (the refactorisation for a new ``lam`` is numeric only)."""

    def __init__(self, mats: Sequence, lam, D=None, engine: str = "auto", analysis=None):
        super().__init__(mats)
        B = len(self.mats)
        lam = np.broadcast_to(np.asarray(lam, dtype=float), (B,))
        scales = [None if D is None else np.asarray(D)[b] for b in range(B)]
        if engine == "auto":
            engine = "cholmod" if cholmod_available() else "superlu"
        if engine not in ("cholmod", "superlu"):
            raise ValueError(f"DampedNormal: unknown engine {engine!r}; valid: 'auto', 'cholmod', 'superlu'")
        self.engine = engine
        self.scales = scales
        self.analysis = list(analysis) if analysis is not None else [None] * B
        if engine == "cholmod":
            from sksparse.cholmod import CholmodNotPositiveDefiniteError, analyze_AAt

            def factorise(b, J):
                At = _scaled(J, scales[b]).T.tocsc()  # (J D^-1)^T: CHOLMOD factorises At At^T + lam I
                if self.analysis[b] is None:
                    self.analysis[b] = analyze_AAt(At)
                return self.analysis[b].cholesky_AAt(At, beta=float(lam[b]))

            self._each(factorise, (CholmodNotPositiveDefiniteError,))
        else:
            import scipy.sparse as sp
            from scipy.sparse.linalg import splu

            def factorise(b, J):
                Js = _scaled(J, scales[b])
                N = (Js.T @ Js + float(lam[b]) * sp.identity(J.shape[1], format="csr")).tocsc()
                return splu(N, permc_spec="MMD_AT_PLUS_A")

            self._each(factorise)

    def solve(self, rhs):
        """``s`` per element with ``(J^T J + lam D^2) s = rhs``."""
        rhs = np.asarray(rhs)
        out = np.zeros_like(rhs)
        for b, fac in enumerate(self.factors):
            if self.failed[b]:
                continue
            d = self.scales[b]
            r = rhs[b] if d is None else rhs[b] / d  # in y = D s: (D^-1 J^T J D^-1 + lam) y = D^-1 rhs
            y = fac(r) if self.engine == "cholmod" else fac.solve(r)
            s = y if d is None else y / d
            if np.isfinite(s).all():
                out[b] = s
            else:
                self.failed[b] = True
        return out


def lsmr_damped(mats: Sequence, rhs, lam=0.0, D=None, *, atol: float = 1e-10, btol: float = 1e-10,
                maxiter: Optional[int] = None):
    """``s`` per element minimising ``|J s - rhs|^2 + lam |D s|^2`` by LSMR (no factorisation).

    Returns ``(s, niter, failed)``: ``niter`` the LSMR iterations per element, ``failed`` where
    LSMR stopped at ``maxiter`` or produced non-finite values.
    """
    from scipy.sparse.linalg import lsmr

    rhs = np.asarray(rhs)
    B = len(mats)
    lam = np.broadcast_to(np.asarray(lam, dtype=float), (B,))
    out = np.zeros((B, mats[0].shape[1]) if B else (0, 0), dtype=rhs.dtype)
    niter = np.zeros(B, dtype=np.int64)
    failed = np.zeros(B, dtype=bool)
    for b, J in enumerate(mats):
        d = None if D is None else np.asarray(D)[b]
        if not _finite(J):
            failed[b] = True
            continue
        res = lsmr(_scaled(J, d), rhs[b], damp=float(np.sqrt(lam[b])), atol=atol, btol=btol, maxiter=maxiter)
        y, istop, niter[b] = res[0], res[1], res[2]
        s = y if d is None else y / d
        if istop == 7 or not np.isfinite(s).all():  # 7: the iteration limit
            failed[b] = True
        else:
            out[b] = s
    return out, niter, failed


def matvec(mats: Sequence, v):
    """``J v`` per element."""
    v = np.asarray(v)
    return np.stack([J @ v[b] for b, J in enumerate(mats)])


def gradient(mats: Sequence, v):
    """``J^T v`` per element (the gradient of ``|F|^2 / 2`` at ``v = F``)."""
    v = np.asarray(v)
    return np.stack([J.T @ v[b] for b, J in enumerate(mats)])


def cauchy(mats: Sequence, fu):
    """The steepest-descent pieces of a dogleg step per element: ``g = J^T F`` and the step length
    ``t = |g|^2 / |J g|^2`` minimising ``|F - t J g|`` (``t = 0`` where ``J g = 0``)."""
    g = gradient(mats, fu)
    Jg = matvec(mats, g)
    gg = np.einsum("bi,bi->b", g, g)
    jj = np.einsum("bi,bi->b", Jg, Jg)
    t = np.divide(gg, jj, out=np.zeros_like(gg), where=jj > 0)
    return g, t
