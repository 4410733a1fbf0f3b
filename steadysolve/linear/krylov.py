"""The array-API building blocks of restarted GMRES: one Arnoldi step, one cycle's start and finish.

Every array is 2-D ``(batch, n)``: each batch element is an independent system with its own
Krylov space, and all the per-element work is batched (products with ``(batch, m + 1, n)``
bases, one ``(batch, m, m)`` triangular solve per cycle). The functions are straight-line
code over fixed-shape buffers, so the JAX driver (``gmres.py``) runs them inside
``lax.while_loop``; the eager driver (``gmres_eager.py``) reuses the search-direction logic.

The Arnoldi process uses classical Gram-Schmidt applied twice (CGS2: as stable as modified
Gram-Schmidt, but two batched matrix products per pass instead of a Python loop over the
basis). The Hessenberg matrix is reduced to triangular form on the fly with Givens
rotations, kept as an accumulated ``(m+1, m+1)`` orthogonal factor so that applying them is
one batched product, which gives the residual norm after every Krylov step for free.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import _backend as backend
from .._backend import combine_rows, rows_dot
from ..retcodes import ReturnCode

__all__ = ["REORTH_KEEP", "GMRESResult", "Cycle", "start_cycle", "arnoldi_step", "finish_cycle", "search_direction",
           "result_codes", "l2"]

#: The eager drivers orthogonalise a second time only when the first classical Gram-Schmidt pass
#: kept less than this fraction of the vector's norm. One pass loses orthogonality in proportion
#: to ||w|| / ||w - V V^T w|| (times eps), so this bounds the loss per step at 10 eps; the
#: classical DGKS bound 1/sqrt(2) re-orthogonalised most GMRES steps (each new A v lies mostly in
#: the Krylov space already) for no change in the iterates of the benchmark problems.
REORTH_KEEP = 0.1

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code
_FAILED = ReturnCode.LinearSolveFailed.code


class GMRESResult(NamedTuple):
    x: Any  # (B, n)
    codes: Any  # (B,) int32
    resid: Any  # (B,) residual 2-norm
    nmatvec: Any  # int (eager) or 0-d int32 array (JAX)
    niter: Any  # Krylov steps
    ncycle: Any  # restart cycles


class Cycle(NamedTuple):
    V: Any  # (B, m+1, n) Krylov basis, unused slots zero
    v: Any  # (B, n) current basis vector
    R: Any  # (B, m+1, m) rotated Hessenberg (upper triangular)
    Qt: Any  # (B, m+1, m+1) accumulated Givens rotations
    g: Any  # (B, m+1) rotated right-hand side beta * Qt e1
    valid: Any  # (B, m) column j holds a valid Krylov step
    active: Any  # (B,) still iterating in this cycle
    failed: Any  # (B,) broke down / non-finite
    resid: Any  # (B,) residual norm estimate
    j: Any  # step within the cycle
    k: Any  # total Krylov steps
    nmv: Any  # matvec calls
    Z: Any  # (B, m, n) search directions (flexible GMRES with augmentation) or None
    p: Any  # (B,) Krylov (non-augmentation) steps taken so far (augmented runs) or None


def l2(xp, x):
    return xp.sqrt(xp.sum(x * x, axis=-1))


def start_cycle(xp, r, rnorm, active, failed, k, nmv, m, dtype, device, aug=None, rows=None):
    B, n = r.shape
    rows = m + 1 if rows is None else rows  # the basis buffer's rows (a padded one for blocked products)
    one = xp.ones_like(rnorm)
    v0 = r / xp.reshape(xp.where(rnorm > 0, rnorm, one), (B, 1))
    v0 = xp.where(xp.reshape(active, (B, 1)), v0, xp.zeros_like(v0))
    slot0 = xp.reshape(xp.arange(rows, device=device) == 0, (1, rows, 1))
    V = xp.where(slot0, xp.reshape(v0, (B, 1, n)), xp.zeros((B, rows, n), dtype=dtype, device=device))
    e0 = xp.astype(xp.arange(m + 1, device=device) == 0, dtype)
    g = xp.reshape(rnorm, (B, 1)) * xp.reshape(e0, (1, m + 1))
    g = xp.where(xp.reshape(active, (B, 1)), g, xp.zeros_like(g))
    Qt = xp.broadcast_to(xp.eye(m + 1, dtype=dtype, device=device), (B, m + 1, m + 1))
    R = xp.zeros((B, m + 1, m), dtype=dtype, device=device)
    valid = xp.zeros((B, m), dtype=xp.bool, device=device)
    Z = p = None
    if aug is not None:
        Z = xp.zeros((B, m, n), dtype=dtype, device=device)
        p = xp.zeros((B,), dtype=xp.int32, device=device)
    return Cycle(V, v0, R, Qt, g, valid, active, failed, rnorm, 0, k, nmv, Z, p)


def search_direction(xp, aug, j, v0, v, p, Zs):
    """Flexible GMRES with augmentation: the search direction of step ``j``, per element.

    The first ``k = aug.shape[1]`` steps try the augmentation vectors (a zero row, or one
    nearly dependent on the directions ``Zs`` already used in this cycle, is skipped);
    otherwise the Krylov sequence of ``r0`` continues: ``v0 = r0 / ||r0||`` first, then
    the newest basis vector ``v``. Returns ``(z, used_aug, p)`` with ``p`` the number of
    Krylov (non-augmentation) steps taken so far.
    """
    B = v.shape[0]
    device = backend.device_of(v)
    kaug = aug.shape[1]
    vp = xp.where(xp.reshape(p == 0, (B, 1)), v0, v)
    if isinstance(j, int) and j >= kaug and Zs is not None:  # eager, past the augmentation steps: plain
        return vp, None, p + 1  # Krylov (``None``: no element tried an augmentation vector here)
    if isinstance(j, int):
        if j < kaug:
            a_j = aug[:, j, :]
            use_a = l2(xp, a_j) > 0
        else:
            a_j, use_a = vp, xp.zeros((B,), dtype=xp.bool, device=device)
    else:
        jj = xp.minimum(j, kaug - 1)
        sel = xp.reshape(xp.arange(kaug, device=device) == jj, (1, kaug, 1))
        a_j = xp.sum(xp.where(sel, aug, xp.zeros_like(aug)), axis=1)
        use_a = (j < kaug) & (l2(xp, a_j) > 0)
    if Zs is not None:  # orthogonalise against this cycle's directions before spending a matvec
        a_o = a_j - combine_rows(xp, rows_dot(xp, Zs, a_j), Zs)
        an, ao = l2(xp, a_j), l2(xp, a_o)
        use_a = use_a & (ao > 0.1 * an)
        a_j = a_o / xp.reshape(xp.where(ao > 0, ao, xp.ones_like(ao)), (B, 1))
    z = xp.where(xp.reshape(use_a, (B, 1)), a_j, vp)
    return z, use_a, p + xp.astype(~use_a, p.dtype)


def arnoldi_step(xp, matvec, c: Cycle, tol, m, eps, aug=None, project=None):
    """One Krylov step for every element (inactive ones are carried along unchanged in effect).

    Without ``aug`` this is plain Arnoldi (the search direction is the newest basis
    vector). With ``aug`` (``(B, k, n)``, unit or zero rows) it is flexible GMRES: the
    first ``k`` search directions are the augmentation vectors (a zero row is
    skipped), then the Krylov sequence of ``r0`` (``r0`` itself, then each newest
    basis vector, which is ``A`` times the previous one orthogonalised).
    ``project(V, w, j) -> (h, w_orth)`` replaces the full CGS2 products (``chunked``).
    """
    B, n = c.v.shape
    dtype = c.v.dtype
    device = backend.device_of(c.v)
    j = c.j
    idx = xp.arange(m + 1, device=device)
    ej = idx == j
    ej1 = idx == j + 1
    Z, p = c.Z, c.p
    soft = None
    if aug is None:
        z = c.v
    else:
        z, soft, p = search_direction(xp, aug, j, c.V[:, 0, :], c.v, p, Z)
        zslot = xp.reshape(xp.arange(m, device=device) == j, (1, m, 1))
        Z = xp.where(zslot, xp.reshape(z, (B, 1, n)), Z)
    w = matvec(z)
    # CGS2 against the current basis (unused buffer slots are zero and contribute nothing).
    V = c.V
    if project is None:
        h1 = rows_dot(xp, V, w)
        w = w - combine_rows(xp, h1, V)
        h2 = rows_dot(xp, V, w)
        w = w - combine_rows(xp, h2, V)
        h = h1 + h2
    else:
        h, w = project(V, w, j)
        h = h[:, :m + 1]
    beta = l2(xp, w)
    hcol = h + xp.reshape(beta, (B, 1)) * xp.astype(ej1, dtype)
    t = rows_dot(xp, c.Qt, hcol)
    fj, fj1 = xp.astype(ej, dtype), xp.astype(ej1, dtype)
    a = xp.sum(t * fj, axis=1)
    b = xp.sum(t * fj1, axis=1)
    r = xp.sqrt(a * a + b * b)
    one = xp.ones_like(r)
    rsafe = xp.where(r > 0, r, one)
    cs = xp.where(r > 0, a / rsafe, one)
    sn = xp.where(r > 0, b / rsafe, xp.zeros_like(r))
    finite = xp.isfinite(r) & xp.isfinite(beta) & xp.isfinite(l2(xp, t))
    hn = l2(xp, hcol)
    breakdown = r <= (100.0 * eps) * hn
    ok = c.active & finite & ~breakdown
    # Rotated column j of R and updated right-hand side.
    col = xp.where(ej, xp.reshape(r, (B, 1)), xp.where(ej1, xp.zeros_like(t), t))
    colmask = xp.reshape(xp.arange(m, device=device) == j, (1, 1, m))
    R = xp.where(colmask, xp.reshape(col, (B, m + 1, 1)), c.R)
    gj = xp.sum(c.g * fj, axis=1)
    csb, snb = xp.reshape(cs, (B, 1)), xp.reshape(sn, (B, 1))
    gjb = xp.reshape(gj, (B, 1))
    g = xp.where(ej, csb * gjb, xp.where(ej1, -snb * gjb, c.g))
    # Accumulate the rotation into Qt (rows j and j+1).
    ejr, ej1r = xp.reshape(ej, (1, m + 1, 1)), xp.reshape(ej1, (1, m + 1, 1))
    row_j = xp.sum(c.Qt * xp.reshape(fj, (1, m + 1, 1)), axis=1)
    row_j1 = xp.sum(c.Qt * xp.reshape(fj1, (1, m + 1, 1)), axis=1)
    new_j = csb * row_j + snb * row_j1
    new_j1 = csb * row_j1 - snb * row_j
    Qt = xp.where(ejr, xp.reshape(new_j, (B, 1, m + 1)), xp.where(ej1r, xp.reshape(new_j1, (B, 1, m + 1)), c.Qt))
    # Next basis vector (zero for elements that stop here, so that no NaN enters x).
    bsafe = xp.where(beta > 0, beta, one)
    okb = xp.reshape(ok & (beta > 0), (B, 1))
    v = xp.where(okb, w / xp.reshape(bsafe, (B, 1)), xp.zeros_like(w))
    V = backend.set_at(xp, V, (slice(None), j + 1, slice(None)), v)  # in place (a where would rewrite all of V)
    resid_new = xp.abs(sn * gj)
    resid = xp.where(ok, resid_new, c.resid)
    valid = xp.where(xp.reshape(colmask, (1, m)), xp.reshape(ok, (B, 1)), c.valid)
    if soft is None:
        failed = c.failed | (c.active & ~ok)
    else:
        # A dependent augmentation vector is no failure: this cycle stops for that
        # element and the next one (plain Krylov) continues from the true residual.
        failed = c.failed | (c.active & ~ok & ~(soft & finite))
    active = ok & ~(resid_new <= tol)
    return Cycle(V, v, R, Qt, g, valid, active, failed, resid, j + 1, c.k + 1, c.nmv + 1, Z, p)


def finish_cycle(xp, x, c: Cycle, m, dtype, device):
    B = x.shape[0]
    eye = xp.eye(m, dtype=dtype, device=device)
    Rm = c.R[:, :m, :]
    R_eff = xp.where(xp.reshape(c.valid, (B, 1, m)), Rm, xp.reshape(eye, (1, m, m)))
    rhs = xp.where(c.valid, c.g[:, :m], xp.zeros_like(c.g[:, :m]))
    y = xp.reshape(backend.solve_small(xp, R_eff, xp.reshape(rhs, (B, m, 1))), (B, m))
    basis = c.V[:, :m, :] if c.Z is None else c.Z
    dx = xp.reshape(xp.matmul(xp.reshape(y, (B, 1, y.shape[1])), basis), x.shape)
    return x + dx


def result_codes(xp, resid, tol, failed, active):
    codes = xp.full(resid.shape, _MAXITERS, dtype=xp.int32, device=backend.device_of(resid))
    codes = xp.where(resid <= tol, xp.zeros_like(codes), codes)
    codes = xp.where(failed, xp.full_like(codes, _FAILED), codes)
    return xp.where(active, codes, xp.zeros_like(codes))


