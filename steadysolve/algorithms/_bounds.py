"""Bounds ``lb <= u <= ub`` for the dense methods that honour them (``TrustRegion``, ``LevenbergMarquardt``):
a projected active-set method (Bertsekas' projected Newton, in the trust-region / damped form).

Per element and iteration, with ``g = J^T F`` the gradient of ``0.5 ||F||^2``:

* a variable is *held* when it sits on a bound and the gradient pushes it outwards
  (``u_i = lb_i`` and ``g_i > 0``, or ``u_i = ub_i`` and ``g_i < 0``), and so is one fixed by
  ``lb_i = ub_i`` (whose derivative finite differences cannot see); the others are *free*
  (:func:`free_variables`);
* the step is the method's step for the free variables alone, the held ones kept: the Jacobian's held
  columns are zeroed (:func:`masked`), so Levenberg-Marquardt's damped system gives them a zero step,
  and the Gauss-Newton point of the trust region minimises ``||F + J p||`` over the free variables
  (:func:`free_gauss_newton_point`: the QR factorisation of ``J`` stacked on the held variables' rows
  of the identity, which pins them to 0 exactly and keeps the matrix of full rank);
* the trial point is projected onto the box (:func:`project`) and rated with the step actually taken
  (``project(u + delta) - u``), so the usual acceptance test and radius / damping updates apply; a
  rejected step shrinks towards the projected steepest descent, which decreases ``||F||`` for small
  enough steps. Every iterate, trial points included, lies in the box;
* stationarity is measured on the *projected* gradient (the free variables' components of ``g``):
  zero at a minimum of ``||F||`` on the box. There, with a nonzero residual and a bound active, a
  ``NonlinearProblem`` stops with ``ReturnCode.BoundConstrained`` (a root, if any, lies outside the
  bounds: :func:`bound_flag`), a ``NonlinearLeastSquaresProblem`` with ``LeastSquaresMinimum`` (the
  solution of the bounded problem). ``Success`` is the driver's verdict on a residual within the
  tolerance, at an iterate inside the box.
"""

from __future__ import annotations

from .. import _backend as backend
from ..retcodes import ReturnCode
from ._least_squares import gauss_newton_point

__all__ = ["bounded", "project", "free_variables", "masked", "free_gauss_newton_point", "bound_flag",
           "projected_gradient", "BOUND_METHODS"]

_BOUND = ReturnCode.BoundConstrained.code
#: the algorithms that honour bounds, for the message of the others' refusal
BOUND_METHODS = "TrustRegion, LevenbergMarquardt or the default (Auto)"


def bounded(ctx) -> bool:
    """Whether the solve has bounds (a static fact of the problem: no array is read)."""
    return ctx.lb is not None


def project(ctx, x):
    """``x`` clipped into the box, per row."""
    xp = ctx.xp
    return xp.minimum(xp.maximum(x, ctx.lb), ctx.ub)


def free_variables(ctx, u, g):
    """``(B, n)`` bool: the variables not held at a bound by the gradient ``g`` (see the module notes)."""
    held = ((u <= ctx.lb) & (g > 0)) | ((u >= ctx.ub) & (g < 0)) | (ctx.lb == ctx.ub)  # (lb = ub: fixed)
    return ~held


def masked(xp, J, free):
    """``J`` ``(B, m, n)`` with the held variables' columns zeroed."""
    B, n = free.shape
    return J * xp.reshape(xp.astype(free, J.dtype), (B, 1, n))


def projected_gradient(xp, g, free):
    """The components of ``g`` of the free variables (0 for the held ones)."""
    return xp.where(free, g, xp.zeros_like(g))


def free_gauss_newton_point(xp, Jf, fu, free):
    """``p`` minimising ``||F + Jf p||`` over the free variables with ``p = 0`` on the held ones: the
    Gauss-Newton point of ``[Jf; E]`` and ``[F; 0]``, ``E`` the held variables' rows of the identity
    (the held columns of ``Jf`` are zero, so the objective in ``p_j`` is ``p_j^2``)."""
    B, n = free.shape
    eye = xp.reshape(xp.eye(n, dtype=Jf.dtype, device=_device(Jf)), (1, n, n))
    E = eye * xp.reshape(xp.astype(~free, Jf.dtype), (B, 1, n))
    A = xp.concat((Jf, E), axis=1)
    b = xp.concat((fu, xp.zeros((B, n), dtype=fu.dtype, device=_device(fu))), axis=1)
    return gauss_newton_point(xp, A, b)


def bound_flag(ctx, flag, gf, D, fn2, free, stuck, gtol):
    """``flag`` set to ``BoundConstrained`` where a square problem's element is at a minimum of ``||F||`` on
    the box with a bound active and a nonzero residual: the projected gradient ``gf`` (scaled by the column
    scaling ``D``, relative to ``||F||``) is at most ``gtol`` (at least ``sqrt(eps)`` for a finite-difference
    Jacobian, whose gradient is no more accurate), or the method is ``stuck`` and it is at most ``sqrt(eps)``."""
    xp = ctx.xp
    coarse = float(xp.finfo(fn2.dtype).eps) ** 0.5
    if ctx.products.jacobian_by_differences:
        gtol = max(gtol, coarse)
    one = xp.ones_like(fn2)
    fnorm = xp.sqrt(fn2)
    cosine = xp.max(xp.abs(gf) / D, axis=1) / xp.where(fnorm > 0, fnorm, one)
    active = xp.any(~free, axis=1)
    at_bound = (fnorm > 0) & active & ((cosine <= gtol) | (stuck & (cosine <= coarse)))
    return xp.where(at_bound, xp.full_like(flag, _BOUND), flag)


def _device(x):
    return backend.device_of(x)
