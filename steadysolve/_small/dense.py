"""The dense-Jacobian arithmetic of ONE NumPy system: the pieces the twins of NewtonRaphson,
TrustRegion and LevenbergMarquardt share (the generic forms live in
:mod:`steadysolve.algorithms.dense`), each deciding on Python floats."""

from __future__ import annotations

import math

from ..algorithms._least_squares import residual_size
from ..algorithms.dense import refuse_large
from ..retcodes import ReturnCode

__all__ = ["start", "finite", "jacobian", "regularised", "rated"]

_LSF = ReturnCode.LinearSolveFailed.code


def start(ctx, owner: str, max_size: int):
    """The start of a dense twin, after the generic ``init``'s size check: ``(F(u0), ||F(u0)||^2, J, D, I)``
    with a zero Jacobian ``(1, m, n)`` (``m = n`` but for least squares) and scaling ``(1, n)`` (not built
    yet) and the ``(n, n)`` identity."""
    refuse_large(owner, ctx.n, max_size)
    fu, n = ctx.fu0, ctx.n
    return (fu, float(fu[0] @ fu[0]), ctx.zeros((1, residual_size(ctx), n)), ctx.zeros((1, n)),
            ctx.xp.eye(n, dtype=ctx.dtype))


def finite(xp, x) -> bool:
    """All entries of a host array finite (one sum in the common case)."""
    return math.isfinite(float(xp.sum(x))) or bool(xp.all(xp.isfinite(x)))


def jacobian(ctx, state):
    """The Jacobian of a step of the TrustRegion / LevenbergMarquardt twin: the state's when it is fresh,
    else a new one with MINPACK's column scaling (:func:`~steadysolve.algorithms.dense.scaled_jacobian`).
    Returns ``(J (1, n, n), D, jvps, jacobians, failed)``; ``failed`` is the state to return when the
    new Jacobian is not finite."""
    if state.fresh:
        return state.J, state.D, 0, 0, None
    xp = ctx.xp
    J, nj = ctx.jacobian(state.u, state.fu)
    cn = xp.sum(J * J, axis=1)
    if not (math.isfinite(float(xp.sum(cn))) or bool(xp.all(xp.isfinite(J)))):  # (a finite sum: all finite)
        flag = xp.full((1,), _LSF, dtype=xp.int32)
        return None, state.D, nj, 1, state._replace(flag=flag, nf=state.nf + ctx.f_calls(nj), njvp=state.njvp + nj,
                                                    njac=state.njac + 1)
    D = xp.maximum(state.D, xp.sqrt(cn))
    if not float(xp.min(D)) > 0:
        D = xp.where(D > 0, D, xp.ones_like(D))
    return J, D, nj, 1, None


def regularised(xp, J1, eye):
    """:func:`~steadysolve.algorithms.dense.regularised` of one ``(n, n)`` matrix, given ``eye`` (the
    ``(n, n)`` identity)."""
    absJ = xp.abs(J1)
    local = xp.maximum(xp.max(absJ, axis=1), xp.max(absJ, axis=0))
    if not float(xp.min(local)) > 0:
        local = xp.where(local > 0, local, xp.max(local) * xp.ones_like(local))
    eps, tiny = float(xp.finfo(J1.dtype).eps), float(xp.finfo(J1.dtype).smallest_normal)
    return J1 + (eps * local + tiny) * eye


def rated(ctx, u, f1, fn2, J1, delta1):
    """:func:`~steadysolve.algorithms.dense.rated_trial` of one system (``delta1`` usable, 1-D):
    ``(trial, ft, ||ft||^2 (float), rho (float), ok, pred)`` (``pred`` the predicted reduction of ``||F||^2``)."""
    trial = u + delta1
    ft = ctx.F(trial)
    ft1 = ft[0]
    t2 = float(ft1 @ ft1)
    Jd = J1 @ delta1
    pred = -(2.0 * float(f1 @ Jd) + float(Jd @ Jd))
    ok = math.isfinite(t2) and pred > 0
    return trial, ft, t2, ((fn2 - t2) / pred if ok else -1.0), ok, pred
