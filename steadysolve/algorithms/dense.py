"""Helpers shared by the dense-Jacobian methods (NewtonRaphson, TrustRegion, LevenbergMarquardt).

* :func:`refuse_large`: the size refusal, before iterating;
* :func:`refresh_jacobian`: rebuild the Jacobian only where needed (a host branch eagerly,
  ``lax.cond`` under JAX tracing);
* :func:`finite_jacobian`: zero a non-finite Jacobian (and say where);
* :func:`column_scale`, :func:`scale_update`: MINPACK's running maximum of the column norms;
* :func:`sparse_scaled_jacobian`: the same refresh for a sparse Jacobian (values on a pattern);
* :func:`regularised`: ``J`` plus a diagonal shift relative to each row and column;
* :func:`rated_trial`, :func:`take_accepted`: the trial step of TrustRegion and LevenbergMarquardt.
"""

from __future__ import annotations

from .. import _backend as backend

__all__ = ["refuse_large", "refresh_jacobian", "finite_jacobian", "column_scale", "scale_update", "regularised",
           "scaled_jacobian", "rated_trial", "take_accepted", "sparse_scaled_jacobian"]


def refuse_large(owner: str, n: int, max_size: int) -> None:
    """``ValueError`` for a system too large for a dense Jacobian."""
    if n > max_size:
        raise ValueError(
            f"{owner}: the system has n={n} unknowns per element, above max_size={max_size}; a dense "
            "Jacobian needs n*n memory and O(n^3) work per step. Use NewtonKrylov (matrix-free "
            f"Newton-Krylov, ss.NewtonKrylov()) or raise {owner}(max_size=...)")


def refresh_jacobian(ctx, u, fu, J_old, need):
    """The Jacobian ``(B, n, n)`` where ``need`` (else ``J_old``), the JVPs and Jacobians it cost.
    Nothing is built when no element needs it (a host branch eagerly, ``lax.cond`` under JAX)."""
    xp, B = ctx.xp, ctx.batch
    nb = xp.reshape(need, (B, 1, 1))
    def build(args):
        J, nj = ctx.jacobian(*args)
        return xp.where(nb, J, J_old), nj

    (J, nj), ran = backend.when_any(xp, need, build, lambda args: (J_old, 0), (u, fu))
    return J, nj, ran


def finite_jacobian(xp, J):
    """``(J with non-finite matrices zeroed, finite (B,) bool)``."""
    B, n = J.shape[0], J.shape[1]
    finite = xp.all(xp.isfinite(xp.reshape(J, (B, -1))), axis=1)  # (B, m, n) for least squares
    return xp.where(xp.reshape(finite, (B, 1, 1)), J, xp.zeros_like(J)), finite


def column_scale(xp, J, D_old, need):
    """MINPACK's scaling: the running maximum of the Jacobian's column norms (zero columns count
    as 1), updated where ``need`` (a new Jacobian), else ``D_old``."""
    return scale_update(xp, backend.l2(xp, J, axis=1), D_old, need)


def scale_update(xp, norms, D_old, need):
    """:func:`column_scale` from the column norms ``(B, n)`` (a sparse Jacobian's, say)."""
    D = xp.maximum(D_old, norms)
    D = xp.where(D > 0, D, xp.ones_like(D))
    return xp.where(xp.reshape(need, (-1, 1)), D, D_old)


def scaled_jacobian(ctx, u, fu, J_old, D_old, need):
    """Refresh the Jacobian where ``need``, zero non-finite ones, update the column scaling:
    ``(J, D, finite (B,), jvps, jacobians)``."""
    J, dj, dl = refresh_jacobian(ctx, u, fu, J_old, need)
    J, finite = finite_jacobian(ctx.xp, J)
    return J, column_scale(ctx.xp, J, D_old, need), finite, dj, dl


def sparse_scaled_jacobian(steps, u, fu, J_old, D_old, need):
    """:func:`scaled_jacobian` for a sparse Jacobian (values on a pattern, ``steps`` the solve's
    :class:`~steadysolve.linear._sparse_steps.SparseSteps`): ``(J, D, finite (B,), jvps, jacobians)``.
    Kept values stay the same array (their factors are reused)."""
    xp = steps.xp
    J, dj, dl = steps.refresh(u, fu, J_old, need)
    if not dl:  # (eager only: the sparse methods do not run under jit)
        return J, D_old, xp.ones(need.shape, dtype=xp.bool, device=steps.device), dj, dl
    J, finite = steps.finite(J)
    return J, scale_update(xp, steps.column_norms(J), D_old, need), finite, dj, dl


def regularised(xp, J):
    """``J + diag(shift)`` with ``shift_i = eps * max(max_j |J_ij|, max_j |J_ji|) + tiny``: relative to
    each row and column (a global ``eps * max|J|`` would swamp rows far smaller than the largest);
    an all-zero row and column falls back to the global scale, so a zero Jacobian still gives a
    finite (huge) step."""
    B, n = J.shape[0], J.shape[1]
    absJ = xp.abs(J)
    local = xp.maximum(xp.max(absJ, axis=2), xp.max(absJ, axis=1))  # (B, n)
    scale = xp.max(local, axis=1, keepdims=True)
    eps, tiny = float(xp.finfo(J.dtype).eps), float(xp.finfo(J.dtype).smallest_normal)
    shift = eps * xp.where(local > 0, local, scale) + tiny
    eye = xp.eye(n, dtype=J.dtype, device=backend.device_of(J))
    return J + xp.reshape(shift, (B, n, 1)) * xp.reshape(eye, (1, n, n))


ACCEPT_RHO = 1e-4  # accept a trial whose actual reduction is at least this fraction of the predicted


def rows_dot(xp, a, b):
    """Per element ``a[b] . b[b]`` of two ``(B, n)`` arrays."""
    return xp.sum(a * b, axis=1)


def rated_trial(ctx, u, fu, fn2, J, delta, usable, Jmv=None):
    """``F`` at ``u + delta`` and the ratio ``rho`` of the actual to the predicted (linear model
    ``J``, or the product ``Jmv(v) = J v`` of a sparse one) reduction of ``||F||^2``; ``rho = -1`` where
    the step is not ``usable``, ``F`` is not finite there, or the model predicts no decrease. Returns
    ``(trial, ft, ||ft||^2, rho, ok)``."""
    xp, B, n = ctx.xp, ctx.batch, ctx.n
    trial = u + delta
    if ctx.lb is not None:  # a bounded problem (``_bounds``): delta is a projected step; rounding in
        # u + delta must not leave the box either
        trial = xp.minimum(xp.maximum(trial, ctx.lb), ctx.ub)
    ft = ctx.F(trial)
    ftn2 = rows_dot(xp, ft, ft)
    Jd = xp.sum(J * xp.reshape(delta, (B, 1, n)), axis=2) if Jmv is None else Jmv(delta)
    pred = -(2.0 * rows_dot(xp, fu, Jd) + rows_dot(xp, Jd, Jd))
    ok = xp.isfinite(ftn2) & (pred > 0) & usable
    one = xp.ones_like(pred)
    rho = xp.where(ok, (fn2 - ftn2) / xp.where(pred > 0, pred, one), -one)
    return trial, ft, ftn2, rho, ok


def take_accepted(xp, accept, trial, ft, ftn2, u, fu, fn2):
    """``(u, F(u), ||F(u)||^2)`` moved to the trial where ``accept``, and the 0-d count of rejections."""
    ab = xp.reshape(accept, (-1, 1))
    nrej = xp.astype(xp.sum(xp.astype(~accept, xp.int32)), xp.int32)
    return xp.where(ab, trial, u), xp.where(ab, ft, fu), xp.where(accept, ftn2, fn2), nrej
