"""The pieces the dense methods need for a rectangular ``(B, m, n)`` Jacobian (a
:class:`~steadysolve.NonlinearLeastSquaresProblem`, ``m >= n``), shared by ``GaussNewton``,
``LevenbergMarquardt`` and ``TrustRegion``.

* :func:`gradient`: ``J^T F``, the gradient of ``0.5 ||F||^2``;
* :func:`gauss_newton_point`: the minimiser of the linear model ``||F + J p||``, by a QR
  factorisation of ``J`` (the normal equations would square its condition number);
* :func:`minimum_flag`: the stopping test that tells a least-squares minimum with a nonzero
  residual (``ReturnCode.LeastSquaresMinimum``) from the iterations before it. A zero residual is
  the driver's verdict (``Success``), which overrides the flag.

The stopping test (as MINPACK's ``lmder``, per element): the scaled gradient is at most ``gtol``,
``max_j |(J^T F)_j| / (D_j ||F||) <= gtol`` (the cosine of the angle between ``F`` and the columns of
``J``; ``D`` the running maximum of the column norms), or both the actual and the predicted
reduction of ``||F||^2`` by the step are at most ``4 eps`` times ``||F||^2`` (the linear model and
the function agree that no step can improve the fit beyond rounding), or the method can make no
progress (its trust region collapsed, its line search failed, ``||F||^2`` has not dropped by 0.1 % in
20 iterations) and the cosine is below ``sqrt(eps)``:
with a finite-difference Jacobian, whose columns carry errors of order ``sqrt(eps)``, the gradient
``J^T F`` at the minimum is only that small (for such a Jacobian ``gtol`` is raised to ``sqrt(eps)``
at once). The tests look at the current iterate ``u``, the step's trial only through the change of
``||F||^2``.

A point where some column of ``J`` vanishes (below ``eps`` times the largest scaling ``D``) is never a
minimum: the residuals do not depend on that parameter there (a saturated exponential, as NIST's
BoxBOD from its first start, whose rate runs to 115 and leaves the model constant), so the point is a
plateau of the model, not a fit; the method then ends ``Stalled``. A model with parameters that only
act together (rank-deficient but no zero column) keeps its minimum.
"""

from __future__ import annotations

from .. import _backend as backend
from ..retcodes import ReturnCode
from .dense import regularised

__all__ = ["gradient", "gauss_newton_point", "minimum_flag", "minimum_tolerances", "at_minimum", "predicted_reduction",
           "residual_size", "is_rectangular", "identifiable", "GTOL", "FTOL"]

_MINIMUM = ReturnCode.LeastSquaresMinimum.code
#: default cosine between ``F`` and the Jacobian's columns below which a minimum is declared
GTOL = 1e-10
#: relative reduction of ``||F||^2`` (actual and predicted), in units of the dtype's ``eps``, below which a
#: minimum is declared: the rounding level of ``||F||^2``, so the test stops only where no step can help
FTOL = 4.0


def is_rectangular(ctx) -> bool:
    """Whether the solve is a least-squares problem (its Jacobian ``(B, m, n)``; ``m = n`` included)."""
    return ctx.kind == "least_squares"


def residual_size(ctx) -> int:
    """``m``, the residuals per element (``n`` for the square problems)."""
    return int(ctx.fu0.shape[1])


def gradient(xp, J, fu):
    """``J^T F`` per element: ``(B, n)`` from ``J`` ``(B, m, n)`` and ``F`` ``(B, m)``."""
    B, m = fu.shape
    return xp.sum(J * xp.reshape(fu, (B, m, 1)), axis=1)


def gauss_newton_point(xp, J, fu):
    """``p`` minimising ``||F + J p||_2`` per element: ``J = QR`` (reduced), ``R p = -Q^T F``, with ``R``
    shifted by ``eps`` relative to its rows and columns (``dense.regularised``) so that a rank-deficient
    ``J`` gives a huge step that the globalisation cuts back instead of an exception."""
    B, m = fu.shape
    n = J.shape[2]
    dtype = J.dtype
    if backend.is_half(xp, dtype):  # no half-precision QR (PyTorch): factorise in float32
        J, fu = xp.astype(J, xp.float32), xp.astype(fu, xp.float32)
    Q, R = xp.linalg.qr(J)
    c = xp.sum(Q * xp.reshape(fu, (B, m, 1)), axis=1)  # Q^T F (B, n)
    p = -xp.reshape(backend.solve_small(xp, regularised(xp, R), xp.reshape(c, (B, n, 1))), (B, n))
    return xp.astype(p, dtype) if p.dtype != dtype else p


def predicted_reduction(xp, J, fu, delta, Jmv=None):
    """The reduction of ``||F||^2`` the linear model predicts for the step ``delta``: ``-(2 F.Jd + |Jd|^2)``
    (``Jd`` from the dense ``J``, or the product ``Jmv(v) = J v`` of a sparse one)."""
    B, n = delta.shape
    Jd = xp.sum(J * xp.reshape(delta, (B, 1, n)), axis=2) if Jmv is None else Jmv(delta)
    return -(2.0 * xp.sum(fu * Jd, axis=1) + xp.sum(Jd * Jd, axis=1))


def minimum_tolerances(ctx, dtype, gtol=GTOL):
    """``(gtol, coarse, ftol)`` of the minimum test for ``dtype``: ``gtol`` raised to ``coarse = sqrt(eps)``
    for a finite-difference Jacobian (whose gradient is only that accurate), ``ftol = FTOL * eps``."""
    eps = float(ctx.xp.finfo(dtype).eps)
    coarse = eps ** 0.5
    if ctx.products.jacobian_by_differences:
        gtol = max(gtol, coarse)
    return gtol, coarse, FTOL * eps


def identifiable(xp, J, D, dtype):
    """``(B,)``: True where every column of the dense ``(B, m, n)`` Jacobian ``J`` is nonzero relative to
    ``D`` (the running maximum of the column norms), so the residuals depend on every parameter at ``u``."""
    cols = xp.sqrt(xp.sum(J * J, axis=1))
    return xp.min(cols, axis=1) > float(xp.finfo(dtype).eps) * xp.max(D, axis=1)


def at_minimum(ns, cosine, fnorm, fn2, ftn2, pred, tolerances, stuck=None, ident=None):
    """Where the element is at a least-squares minimum (see the module docstring), from the cosine
    ``max_j |(J^T F)_j| / (D_j ||F||)``, ``fnorm = ||F(u)||``, ``fn2``, the trial's ``ftn2``, the predicted
    reduction ``pred`` and :func:`minimum_tolerances`. Written on a namespace ``ns`` of elementwise
    functions (``isfinite``, ``abs``): an array namespace on ``(B,)`` arrays, or
    :data:`steadysolve._small.floats.FLOATS` on one system's Python floats (the operators ``& |`` serve both).
    ``ident``: :func:`identifiable` (None: not checked, a sparse Jacobian's values)."""
    gtol, coarse, ftol = tolerances
    stationary = (fnorm > 0) & (cosine <= gtol)
    if stuck is not None:
        stationary = stationary | (stuck & (fnorm > 0) & (cosine <= coarse))
    flat = ((fn2 > 0) & ns.isfinite(ftn2) & (ns.abs(fn2 - ftn2) <= ftol * fn2)
            & (pred >= 0) & (pred <= ftol * fn2))
    hit = stationary | flat
    return hit if ident is None else hit & ident


def minimum_flag(ctx, flag, g, D, fn2, ftn2, pred, gtol=GTOL, stuck=None, J=None):
    """``flag`` set to ``LeastSquaresMinimum`` where the element is at a least-squares minimum (see the
    module docstring): ``g = J^T F`` at ``u``, ``D`` the column scaling, ``fn2 = ||F(u)||^2``, ``ftn2`` the
    trial's ``||F||^2`` and ``pred`` the model's predicted reduction (negative where not computed);
    ``stuck``: where the method makes no progress (a collapsed trust region, an exhausted line search,
    a damping beyond bounds, or ``base.no_progress``), which is a minimum when the cosine is below
    ``sqrt(eps)`` (the accuracy of a finite-difference Jacobian's gradient) and a stall otherwise. With a
    finite-difference Jacobian the cosine cannot go below about ``sqrt(eps)``: ``gtol`` is raised to that.
    ``J``: the dense Jacobian at ``u``, for the zero-column check (:func:`identifiable`)."""
    xp = ctx.xp
    one = xp.ones_like(fn2)
    fnorm = xp.sqrt(fn2)
    cosine = xp.max(xp.abs(g) / D, axis=1) / xp.where(fnorm > 0, fnorm, one)
    ident = identifiable(xp, J, D, fn2.dtype) if J is not None and J.ndim == 3 else None
    hit = at_minimum(xp, cosine, fnorm, fn2, ftn2, pred, minimum_tolerances(ctx, fn2.dtype, gtol), stuck, ident)
    return xp.where(hit, xp.full_like(flag, _MINIMUM), flag)
