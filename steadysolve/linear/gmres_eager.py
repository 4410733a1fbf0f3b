"""The eager GMRES driver (NumPy, array_api_strict, PyTorch, CuPy).

The products with the Krylov basis run on the device through the array API; the small
``(m+1) x m`` least-squares problem of each element runs on the host in float64 NumPy,
like the driver bookkeeping in ``_engine.driver``. Host copies only: no NumPy call ever
touches a user array.
"""

from __future__ import annotations

from .. import _backend as backend
from .._backend import fused
from .._backend import combine_rows, rows_dot
from .._backend.fused import l2
from .krylov import REORTH_KEEP, GMRESResult, result_codes, search_direction

__all__ = ["gmres_eager"]

np = backend.host_numpy()  # the least-squares problem's host arrays (float64), never a user array


def _scale_rows(xp, w, scale, dtype, device):
    """``w[b] * scale[b]`` with ``scale`` a host array; a zero scale gives a zero row even where
    ``w`` holds NaN/Inf (a failed element must not leak into the basis products)."""
    if scale.shape[0] == 1:  # one element: a host scalar, no transfer
        c = float(scale[0])
        return w * c if c != 0 else xp.zeros_like(w)
    s = fused.from_host(xp, scale[:, None], dtype, device)
    if np.all(scale != 0):
        return w * s
    return xp.where(s != 0, w * s, xp.zeros_like(w))


def gmres_eager(xp, matvec, b, x, r, rnorm, active, failed, tol, m, maxiters, nmv0, eps, aug=None):
    """Eager GMRES with the small ``(m+1) x m`` Hessenberg work done on the host in NumPy.

    The eager loop syncs with the host once per Krylov step anyway (to stop the moment
    every element has converged); sending the new Hessenberg column along with that
    sync lets the Givens rotations, the residual estimates and the per-element
    bookkeeping run as a few float64 NumPy operations instead of dozens of small
    device operations. The device does only the products with the basis.
    """
    B, n = b.shape
    dtype, device = b.dtype, backend.device_of(b)
    host = backend.to_numpy(xp, xp.stack([rnorm, xp.astype(failed, rnorm.dtype), xp.astype(active, rnorm.dtype),
                                          tol]))
    host = np.asarray(host, dtype=np.float64)
    resid, failed_h, act0, tol_h = host[0], host[1] != 0, host[2] != 0, host[3]
    running = act0 & ~failed_h & ~(resid <= tol_h)
    k, nmv, ncycle = 0, nmv0, 0
    resident = fused.host_resident(xp, b)  # reading a value back is a plain memory read
    # Workspaces for the whole solve, written in place (DESIGN section 3): the Krylov basis and,
    # with augmentation, the search directions; step j reads the leading j + 1 rows (a view), all
    # written before (so ``empty``: zeroing a basis of restart + 1 rows most solves never reach
    # cost more than the whole Arnoldi work of a short DEQ adjoint).
    V = xp.empty((B, m + 1, n), dtype=dtype, device=device)
    Z = xp.empty((B, m, n), dtype=dtype, device=device) if aug is not None else None
    while k < maxiters and running.any():
        ncycle += 1
        g = np.zeros((B, m + 1))
        g[:, 0] = np.where(running, resid, 0.0)
        scale = np.where(running, 1.0 / np.where(running, resid, 1.0), 0.0)
        V = backend.set_at(xp, V, (slice(None), 0, slice(None)), _scale_rows(xp, r, scale, dtype, device))
        R = np.zeros((B, m, m))
        Q = np.zeros((B, m + 1, m + 1))  # accumulated Givens rotations: the identity, its rows set as reached
        Q[:, 0, 0] = 1.0
        valid = np.zeros((B, m), dtype=bool)
        act = running.copy()
        ncols = 0
        aug_c = aug if ncycle == 1 else None
        p = xp.zeros((B,), dtype=xp.int32, device=device) if aug_c is not None else None
        for j in range(m):
            if k >= maxiters:
                break
            soft = None
            if aug_c is None:
                z = V[:, j, :]
            else:
                z, soft, p = search_direction(xp, aug_c, j, V[:, 0, :], V[:, j, :], p, Z[:, :j, :] if j else None)
                Z = backend.set_at(xp, Z, (slice(None), j, slice(None)), z)
            w = matvec(z)
            k += 1
            nmv += 1
            Vs = V[:, :j + 1, :]  # classical Gram-Schmidt against the basis so far, applied twice (CGS2)
            h = rows_dot(xp, Vs, w)
            w1 = w - combine_rows(xp, h, Vs)
            beta = l2(xp, w1)
            # On the host (NumPy, CPU tensors) the second pass is skipped when the first one kept enough
            # of the norm (krylov.REORTH_KEEP); on a device deciding that would cost a second sync per step.
            if not (resident and fused.all_true(xp, beta > REORTH_KEEP * l2(xp, w))):
                h2 = rows_dot(xp, Vs, w1)
                w1 = w1 - combine_rows(xp, h2, Vs)
                h = h + h2
                beta = l2(xp, w1)
            w = w1
            parts = [h, beta[:, None]] + ([] if soft is None else [xp.astype(soft, beta.dtype)[:, None]])
            col = np.asarray(backend.to_numpy(xp, xp.concat(parts, axis=1)), dtype=np.float64)
            if soft is not None:
                soft, col = col[:, -1] != 0, col[:, :-1]
            hn = np.sqrt(np.sum(col * col, axis=1))
            bj = col[:, j + 1].copy()
            # the earlier rotations (one small product), then a new one for rows (j, j+1)
            Q[:, j + 1, j + 1] = 1.0  # row j + 1 of the identity (untouched by the rotations so far)
            col = np.matmul(Q[:, :j + 2, :j + 2], col[:, :, None])[:, :, 0]
            a_, b_ = col[:, j], col[:, j + 1]
            with np.errstate(invalid="ignore", over="ignore"):
                rr = np.hypot(a_, b_)
                pos = rr > 0
                cs = np.where(pos, a_ / np.where(pos, rr, 1.0), 1.0)
                sn = np.where(pos, b_ / np.where(pos, rr, 1.0), 0.0)
                finite = np.isfinite(rr) & np.isfinite(bj) & np.all(np.isfinite(col), axis=1)
                ok = act & finite & ~(rr <= (100.0 * eps) * hn)
                qj, qj1 = Q[:, j, :].copy(), Q[:, j + 1, :].copy()
                Q[:, j, :] = cs[:, None] * qj + sn[:, None] * qj1
                Q[:, j + 1, :] = -sn[:, None] * qj + cs[:, None] * qj1
                R[:, :j, j] = col[:, :j]
                R[:, j, j] = rr
                gj = g[:, j].copy()
                g[:, j] = cs * gj
                g[:, j + 1] = -sn * gj
                resid_new = np.abs(sn * gj)
            valid[:, j] = ok
            ncols = j + 1
            resid = np.where(ok, resid_new, resid)
            if soft is None:
                failed_h = failed_h | (act & ~ok)
            else:  # a dependent augmentation vector is no failure: the next cycle restarts plainly
                failed_h = failed_h | (act & ~ok & ~(soft & finite))
            act = ok & ~(resid_new <= tol_h)
            vscale = np.where(ok & (bj > 0), 1.0 / np.where(bj > 0, bj, 1.0), 0.0)
            V = backend.set_at(xp, V, (slice(None), j + 1, slice(None)), _scale_rows(xp, w, vscale, dtype, device))
            if not act.any():
                break
        if ncols:  # y from the valid prefix of each element's triangular system
            Rm = R[:, :ncols, :ncols]
            eye = np.eye(ncols)[None]
            vm = valid[:, :ncols]
            R_eff = np.where(vm[:, None, :], Rm, eye)
            rhs = np.where(vm, g[:, :ncols], 0.0)
            with np.errstate(all="ignore"):
                y = np.linalg.solve(R_eff, rhs[:, :, None])[:, :, 0]
            y = np.where(np.isfinite(y), y, 0.0)
            basis = (Z if aug_c is not None else V)[:, :ncols, :]
            x = x + combine_rows(xp, fused.from_host(xp, y, dtype, device), basis)
        running = act0 & ~failed_h & ~(resid <= tol_h)
        if k < maxiters and running.any():
            r = b - matvec(x)
            nmv += 1
            rn = np.asarray(backend.to_numpy(xp, l2(xp, r)), dtype=np.float64)
            bad = running & ~np.isfinite(rn)
            failed_h = failed_h | bad
            resid = np.where(running & ~bad, rn, resid)
            running = act0 & ~failed_h & ~(resid <= tol_h)
    resid_d = backend.from_numpy(xp, resid, rnorm.dtype, device)
    failed_d = backend.from_numpy(xp, failed_h, xp.bool, device)
    return GMRESResult(x, result_codes(xp, resid_d, tol, failed_d, active), resid_d, nmv, k, ncycle)
