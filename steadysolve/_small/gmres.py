"""GMRES for one NumPy system: the Hessenberg work on Python floats.

With one element every scalar of the Arnoldi process (the Gram-Schmidt coefficients, the norms,
the Givens rotations, the residual estimate) reaches the host anyway, so it is cheaper to keep
them there as Python floats than to issue small array operations for them. The arrays do only
what scales with ``n``: the products with the preallocated basis (one matrix-vector product per
Gram-Schmidt pass), the new basis vector written in place, and the final combination.

The algorithm, its return codes and its counts are those of the generic GMRES
(:func:`steadysolve.linear.gmres.gmres_2d`): classical Gram-Schmidt with a second pass only when
needed (``REORTH_KEEP``), flexible GMRES with augmentation vectors in the first cycle, and the
same Givens update (:func:`~steadysolve.linear._arnoldi.givens`, :func:`~steadysolve.linear._arnoldi.rotate`,
on :data:`~steadysolve.linear._arnoldi.FLOATS`). The rotations are applied one after the other
instead of as an accumulated factor, which costs fewer Python operations.
"""

from __future__ import annotations

import math
from typing import Callable, Optional

from .. import _backend as backend
from ..linear._arnoldi import FLOATS, REORTH_KEEP, GMRESResult, givens, rotate
from ..retcodes import ReturnCode

__all__ = ["gmres_one"]

np = backend.host_numpy()  # the small triangular solve (float64), never a user array

_FAILED = ReturnCode.LinearSolveFailed.code
_MAXITERS = ReturnCode.MaxIters.code
_KEEP2 = REORTH_KEEP * REORTH_KEEP
#: beyond this many columns a compiled triangular solve is cheaper than Python arithmetic
_PY_SOLVE_MAX = 24


def _host_float(xp, v) -> float:
    """A Python float from a float or a one-element array."""
    if isinstance(v, (int, float)):
        return float(v)
    return float(xp.reshape(v, (-1,))[0])


def _back_substitute(R, g):
    """``y`` with ``R y = g`` for the upper-triangular ``R`` given by its columns (the diagonal
    is positive by construction); a non-finite entry of ``y`` becomes 0, as in the generic solve."""
    k = len(g)
    if k > _PY_SOLVE_MAX:
        Rm = np.zeros((k, k))
        for j, c in enumerate(R):
            Rm[:j + 1, j] = c
        with np.errstate(all="ignore"):
            y = np.linalg.solve(Rm, np.asarray(g))
        return np.where(np.isfinite(y), y, 0.0).tolist()
    y = list(g)
    for j in range(k - 1, -1, -1):
        c = R[j]
        yj = y[j] = y[j] / c[j]
        for i in range(j):
            y[i] -= c[i] * yj
    return [v if math.isfinite(v) else 0.0 for v in y]


def gmres_one(xp, matvec: Callable, b, x0=None, *, restart: int = 30, reltol=1e-5, abstol: float = 0.0,
              maxiters: Optional[int] = None, aug=None, precond=None, work=None) -> GMRESResult:
    """GMRES on ``b`` of shape ``(1, n)`` (NumPy); the arguments are those of ``gmres_2d``, and ``work``: a
    ``(rows, n)`` array of ``b``'s dtype used as the basis when it has the ``m + 1`` rows a cycle needs
    (a caller that solves many systems, as Newton-Krylov, allocates it once: the first write of every
    page of a new array faults, which costs as much as several Krylov steps)."""
    n = b.shape[1]
    m = restart if aug is None else restart + aug.shape[1]
    maxiters = maxiters if maxiters is not None else max(10 * n, m)
    eps = float(xp.finfo(b.dtype).eps)
    dtype = b.dtype

    def dot(a, c):  # ``@``: BLAS on NumPy, ~10x faster than ``vecdot``'s generic broadcast at n = 32,768
        return float(a @ c)

    def apply(v):  # the operator on 1-D vectors
        return xp.reshape(matvec(xp.reshape(v, (1, n))), (n,))

    def pre(v):  # the right preconditioner on 1-D vectors (the identity without one)
        return v if precond is None else xp.reshape(precond(xp.reshape(v, (1, n))), (n,))

    x = None if x0 is None else xp.reshape(x0, (n,))
    b1 = xp.reshape(b, (n,))
    resid = bn = math.sqrt(dot(b1, b1))
    tol = max(_host_float(xp, reltol) * bn, abstol)
    nmv = 0
    r = b1
    if x is not None:
        r = b1 - apply(x)
        nmv = 1
        resid = math.sqrt(dot(r, r))
    failed = not math.isfinite(resid)
    if failed:
        resid, x = math.inf, None
    k = ncycle = 0
    V = Z = None
    while k < maxiters and not failed and not resid <= tol:
        ncycle += 1
        if V is None:  # workspaces for the whole solve, written in place (DESIGN section 3)
            usable = work is not None and work.shape[0] >= m + 1 and work.shape[1] == n and work.dtype == dtype
            V = work[:m + 1, :] if usable else xp.zeros((m + 1, n), dtype=dtype)
        V = backend.set_at(xp, V, (0, slice(None)), r / resid)
        g = [resid]  # rotated right-hand side
        cs, sn = [], []  # the Givens rotations so far
        R = []  # the columns of the triangular factor
        aug_c = aug if ncycle == 1 else None
        if aug_c is not None:
            kaug = aug_c.shape[1]
            A = xp.reshape(aug_c, (kaug, n))
            anorm = [math.sqrt(a) for a in xp.vecdot(A, A).tolist()]
            Z = xp.zeros((kaug, n), dtype=dtype)
            zrows = []  # the basis row used as the direction of each step past the augmentation ones
        p = ncols = 0
        for j in range(m):
            if k >= maxiters:
                break
            soft = False
            if aug_c is None:
                z = pre(V[j, :])
            else:
                vrow = 0 if p == 0 else j
                z = V[vrow, :]
                if j < kaug and anorm[j] > 0:  # try the augmentation vector, orthogonalised against Z
                    a = A[j, :]
                    an = ao = anorm[j]
                    if j:
                        Zs = Z[:j, :]
                        a = a - (Zs @ a) @ Zs
                        ao = math.sqrt(dot(a, a))
                    if ao > 0.1 * an:
                        z, soft = (a / ao if j else a), True
                if not soft:
                    z = pre(z)
                p += 0 if soft else 1
                if j < kaug:  # later directions are basis vectors: no copy, their row is remembered
                    Z = backend.set_at(xp, Z, (j, slice(None)), z)
                else:
                    zrows.append(vrow)
            w = apply(z)
            k += 1
            nmv += 1
            # Classical Gram-Schmidt as two BLAS matrix-vector products, the result written into the
            # basis row it becomes (no temporaries: at n ~ 1e4 and beyond each costs as much as a read
            # of the vector). ||w||^2 = ||h||^2 + ||w1||^2 by Pythagoras: no pass over w for the test.
            Vs = V[:j + 1, :]
            w1 = V[j + 1, :]
            h = Vs @ w
            np.matmul(h, Vs, out=w1)
            np.subtract(w, w1, out=w1)
            b2 = dot(w1, w1)
            col = h.tolist()
            if not b2 > _KEEP2 * (b2 + dot(h, h)):  # a second pass only when the first lost too much
                h2 = Vs @ w1
                w1 -= h2 @ Vs
                h = h + h2
                b2 = dot(w1, w1)
                col = h.tolist()
            beta = math.sqrt(b2) if b2 >= 0 else math.nan
            col.append(beta)
            hn = math.hypot(*col)
            for i in range(j):  # the earlier rotations, then a new one for rows (j, j + 1)
                col[i], col[i + 1] = rotate(cs[i], sn[i], col[i], col[i + 1])
            rr, c_, s_, gj, gj1, resid_new, kept = givens(FLOATS, col[j], beta, g[j], hn, eps)
            finite = math.isfinite(rr) and all(map(math.isfinite, col))
            if not (finite and kept):
                # breakdown or NaN/Inf; a dependent augmentation vector is no failure: the next
                # cycle restarts plainly from the true residual
                failed = failed or not (soft and finite)
                break
            cs.append(c_)
            sn.append(s_)
            col[j] = rr
            R.append(col[:j + 1])
            g[j] = gj
            g.append(gj1)
            resid = resid_new
            ncols = j + 1
            if resid <= tol or j + 1 == m:
                break
            np.multiply(w1, 1.0 / beta if beta > 0 else 0.0, out=w1)  # the basis row, normalised in place
        if ncols:  # y from the triangular system of the valid columns
            y = _back_substitute(R, g[:ncols])
            if aug_c is None:
                dx = pre(xp.asarray(y, dtype=dtype) @ V[:ncols, :])
            else:  # x = Z y with Z = [augmentation-phase directions, basis rows]
                kz = min(ncols, kaug)
                dx = xp.asarray(y[:kz], dtype=dtype) @ Z[:kz, :]
                if ncols > kz:
                    c = [0.0] * ncols
                    for yj, row in zip(y[kz:], zrows):
                        c[row] += yj
                    dx = dx + pre(xp.asarray(c, dtype=dtype) @ V[:ncols, :])
            if precond is not None and not bool(xp.all(xp.isfinite(dx))):
                dx = xp.zeros_like(dx)  # no step from a non-finite M: the failure is reported, x stays finite
            x = dx if x is None else x + dx
        if k < maxiters and not failed and not resid <= tol and x is not None:  # (x = 0: r = b as it was)
            r = b1 - apply(x)
            nmv += 1
            rn = math.sqrt(dot(r, r))
            if math.isfinite(rn):
                resid = rn
            else:
                failed = True
    code = _FAILED if failed else 0 if resid <= tol else _MAXITERS
    x = xp.zeros_like(b) if x is None else xp.reshape(x, (1, n))
    return GMRESResult(x, xp.asarray([code], dtype=xp.int32), xp.asarray([resid], dtype=dtype), nmv, k, ncycle)
