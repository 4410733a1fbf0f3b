"""Eager GMRES for a single system (a batch of one): the Hessenberg work on Python floats.

With one element every scalar of the Arnoldi process (the Gram-Schmidt coefficients, the
norms, the Givens rotations, the residual estimate) reaches the host anyway at the one sync
of each Krylov step, so it is cheaper to keep them there as Python floats than to issue small
array operations for them. The device does only what scales with ``n``: the products with
the preallocated basis (one mat-vec per Gram-Schmidt pass), the new basis vector written in
place, and the final combination. Same algorithm and return codes as ``gmres_eager`` (which
handles batches): classical Gram-Schmidt with a second pass only when needed (see
``krylov.REORTH_KEEP``), flexible GMRES with augmentation vectors in the first cycle.
"""

from __future__ import annotations

import math

from .. import _backend as backend
from ..retcodes import ReturnCode
from .krylov import REORTH_KEEP, GMRESResult

__all__ = ["gmres_one"]

np = backend.host_numpy()  # the small triangular solve (float64), never a user array

_FAILED = ReturnCode.LinearSolveFailed.code
_MAXITERS = ReturnCode.MaxIters.code
_KEEP2 = REORTH_KEEP * REORTH_KEEP


def _host_float(xp, v) -> float:
    """A Python float from a float or a one-element array (one host sync)."""
    if isinstance(v, (int, float)):
        return float(v)
    return float(xp.reshape(v, (-1,))[0])


def _back_substitute(R, g):
    """``y`` with ``R y = g`` for the upper-triangular ``R`` given by its columns (the diagonal
    is positive by construction); a non-finite entry of ``y`` becomes 0 (as in ``gmres_eager``)."""
    k = len(g)
    if k > 24:  # beyond a few dozen columns a compiled solve is cheaper than Python arithmetic
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


def gmres_one(xp, matvec, b, x0, *, m, reltol, abstol, maxiters, active, eps, aug=None) -> GMRESResult:
    """GMRES on ``b`` of shape ``(1, n)``; the arguments are those of ``gmres_2d``."""
    n = b.shape[1]
    fast = backend.is_numpy(xp)
    dtype, device = b.dtype, (None if fast else backend.device_of(b))

    def dot(a, c):
        return float(xp.vecdot(a, c))

    def floats(a):
        return a.tolist() if fast else backend.to_numpy(xp, a).tolist()

    def apply(v):  # the operator on 1-D vectors
        return xp.reshape(matvec(xp.reshape(v, (1, n))), (n,))

    def result(x, code, resid, nmv, k, ncycle):
        x = xp.zeros_like(b) if x is None else xp.reshape(x, (1, n))
        codes = xp.asarray([code], dtype=xp.int32, device=device)
        return GMRESResult(x, codes, xp.asarray([resid], dtype=dtype, device=device), nmv, k, ncycle)

    x = None if x0 is None else xp.reshape(x0, (n,))
    if active is not None and not bool(xp.any(active)):
        return result(x, 0, 0.0, 0, 0, 0)
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
            V = xp.zeros((m + 1, n), dtype=dtype, device=device)
        V = backend.set_at(xp, V, (0, slice(None)), r / resid)
        g = [resid]  # rotated right-hand side
        cs, sn = [], []  # the Givens rotations so far
        R = []  # the columns of the triangular factor
        aug_c = aug if ncycle == 1 else None
        if aug_c is not None:
            kaug = aug_c.shape[1]
            A = xp.reshape(aug_c, (kaug, n))
            anorm = [math.sqrt(a) for a in floats(xp.vecdot(A, A))]
            Z = xp.zeros((kaug, n), dtype=dtype, device=device)
            zrows = []  # the basis row used as the direction of each step past the augmentation ones
        p = ncols = 0
        for j in range(m):
            if k >= maxiters:
                break
            soft = False
            if aug_c is None:
                z = V[j, :]
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
                p += 0 if soft else 1
                if j < kaug:  # later directions are basis vectors: no copy, their row is remembered
                    Z = backend.set_at(xp, Z, (j, slice(None)), z)
                else:
                    zrows.append(vrow)
            w = apply(z)
            k += 1
            nmv += 1
            Vs = V[:j + 1, :]
            h = Vs @ w
            w1 = w - h @ Vs
            if fast:  # on the host: a second pass only when the first lost too much of the norm
                b2 = dot(w1, w1)
                if not b2 > _KEEP2 * dot(w, w):
                    h2 = Vs @ w1
                    w1 = w1 - h2 @ Vs
                    h = h + h2
                    b2 = dot(w1, w1)
                col = h.tolist()
            else:  # on a device that decision would cost another sync: always two passes, one transfer
                h2 = Vs @ w1
                w1 = w1 - h2 @ Vs
                col = floats(xp.concat([h + h2, xp.reshape(xp.vecdot(w1, w1), (1,))]))
                b2 = col.pop()
            beta = math.sqrt(b2) if b2 >= 0 else math.nan
            col.append(beta)
            hn = math.hypot(*col)
            for i in range(j):  # the earlier rotations, then a new one for rows (j, j + 1)
                c_, s_ = cs[i], sn[i]
                a_, b_ = col[i], col[i + 1]
                col[i], col[i + 1] = c_ * a_ + s_ * b_, c_ * b_ - s_ * a_
            a_ = col[j]
            rr = math.hypot(a_, beta)
            c_, s_ = (a_ / rr, beta / rr) if rr > 0 else (1.0, 0.0)
            finite = math.isfinite(rr) and all(map(math.isfinite, col))
            if not (finite and not rr <= (100.0 * eps) * hn):
                # breakdown or NaN/Inf; a dependent augmentation vector is no failure: the next
                # cycle restarts plainly from the true residual
                failed = failed or not (soft and finite)
                break
            cs.append(c_)
            sn.append(s_)
            col[j] = rr
            R.append(col[:j + 1])
            gj = g[j]
            g[j] = c_ * gj
            g.append(-s_ * gj)
            resid = abs(s_ * gj)
            ncols = j + 1
            if resid <= tol or j + 1 == m:
                break
            V = backend.set_at(xp, V, (j + 1, slice(None)), w1 / beta if beta > 0 else xp.zeros_like(w1))
        if ncols:  # y from the triangular system of the valid columns
            y = _back_substitute(R, g[:ncols])
            if aug_c is None:
                dx = xp.asarray(y, dtype=dtype, device=device) @ V[:ncols, :]
            else:  # x = Z y with Z = [augmentation-phase directions, basis rows]
                kz = min(ncols, kaug)
                dx = xp.asarray(y[:kz], dtype=dtype, device=device) @ Z[:kz, :]
                if ncols > kz:
                    c = [0.0] * ncols
                    for yj, row in zip(y[kz:], zrows):
                        c[row] += yj
                    dx = dx + xp.asarray(c, dtype=dtype, device=device) @ V[:ncols, :]
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
    return result(x, code, resid, nmv, k, ncycle)
