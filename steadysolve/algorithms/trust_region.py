"""Trust-region Newton with Powell's dogleg on the dense Jacobian (MINPACK ``hybrd`` style).

Every driver iteration evaluates ``F`` once, at ``u + delta``, where ``delta`` is the
dogleg step of the model ``||F + J delta||^2`` inside the scaled region
``||D delta||_2 <= Delta``. The step is accepted when the ratio ``rho`` of actual
to predicted reduction of ``||F||^2`` exceeds ``1e-4``; ``Delta`` follows MINPACK's
``hybrd``: bounded by the first step, halved when ``rho < 0.1``, raised to twice the
step after a good ratio (``rho >= 0.5``) or a second success in a row, and set to twice
the step when the model is very good (``|rho - 1| <= 0.1``). The Jacobian is rebuilt only after an accepted step (a
rejected trial keeps ``u``, so the old ``J`` is still current): a host-side branch
eagerly, ``lax.cond`` under JAX tracing, as in ``NewtonRaphson``. One eager NumPy system runs the
twin of the small-system engine (``steadysolve._small.trust_region``), with the decisions on
Python floats and the Cauchy point computed only when the Newton point is outside.
An element stops with ``Stalled`` when its radius collapses or after 20 iterations without
progress (``base.no_progress``). Bounds ``lb <= u <= ub`` are honoured by a projected active-set dogleg
(``algorithms._bounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .. import _backend as backend
from .._checks import check_int, check_positive
from ..registry import register
from ..retcodes import ReturnCode
from .base import PROGRESS_ITERS, Algorithm, no_progress
from ..linear._sparse_steps import sparse_steps
from .dense import ACCEPT_RHO, rated_trial, regularised, scaled_jacobian, sparse_scaled_jacobian, take_accepted
from .dense import refresh_jacobian, refuse_large  # noqa: F401 - refresh_jacobian re-exported
from .dense import rows_dot as _rows
from ._least_squares import gauss_newton_point, gradient, is_rectangular, minimum_flag, predicted_reduction
from ._least_squares import residual_size, GTOL
from ._bounds import bound_flag, bounded, free_gauss_newton_point, free_variables, masked, project

__all__ = ["TrustRegion", "TrustRegionState", "dogleg", "dogleg_from", "newton_point", "refresh_jacobian"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code
_SPARSE_BOUNDS = ("{}: bounds (lb=, ub=) are honoured with a dense Jacobian only; this problem's Jacobian is sparse "
                  "(a sparse jac): return it dense, or drop the bounds")


class TrustRegionState(NamedTuple):
    u: Any
    fu: Any
    fn2: Any  # (B,) ||F(u)||_2^2
    J: Any  # (B, n, n) Jacobian at u (valid where ``fresh``)
    fresh: Any  # (B,) bool: J belongs to the current u
    D: Any  # (B, n) scaling, max over the iterations of the Jacobian's column norms
    radius: Any  # (B,) trust-region radius Delta (< 0: not set yet)
    nsuc: Any  # (B,) int32: successful (rho >= 0.1) steps in a row
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    njac: Any  # 0-d: dense Jacobians built
    nreject: Any  # 0-d: rejected trial points
    nslow: Any = 0  # (B,) int32: iterations without progress (``base.no_progress``)
    ref2: Any = None  # (B,) ||F||^2 at the last progress
    nfact: Any = 0  # 0-d: factorisations (a sparse J's are kept while J is)


def _safe(xp, x):
    return xp.where(x > 0, x, xp.ones_like(x))


def newton_point(xp, A, b):
    """Batched solve; an exactly singular ``A`` (despite the shift) gives the pseudo-inverse's
    least-squares point where the library reports it (NumPy, PyTorch: ``solve_small`` then raises
    nothing), NaN where it does not (JAX: the dogleg replaces it by the Cauchy step)."""
    return backend.solve_small(xp, A, b, singular=lambda A, b: xp.matmul(xp.linalg.pinv(A), b))


def dogleg(xp, J, fu, D, radius, shift=None, A=None, point=None):
    """Powell's dogleg step per row: ``(delta (B, n), ||D delta|| (B,), usable (B,) bool)``.

    ``J`` is ``(B, n, n)``, ``fu`` and ``D`` are ``(B, n)``, ``radius`` is ``(B,)``.
    In the scaled variables ``y = D delta`` the Gauss-Newton point ``y_N = D J^{-1}(-F)``
    is taken when inside the region; otherwise the Cauchy point ``y_C`` of the
    scaled steepest descent direction (cut to the boundary when outside), or the point
    where the segment ``y_C -> y_N`` leaves the region. A non-finite Newton solve
    (singular ``J``) leaves the Cauchy step alone. ``point``: the Gauss-Newton point when the caller
    has it (a rectangular ``J``, ``(B, m, n)``: ``_least_squares.gauss_newton_point``).
    """
    B, n = fu.shape[0], J.shape[2]
    if point is None and A is None:  # the matrix of the Newton point: J, J + shift I, or the caller's one
        A = J if shift is None else J + xp.reshape(shift, (B, 1, 1)) * xp.reshape(
            xp.eye(n, dtype=fu.dtype, device=backend.device_of(fu)), (1, n, n))
    pN = point if point is not None else xp.reshape(newton_point(xp, A, xp.reshape(-fu, (B, n, 1))), (B, n))
    return dogleg_from(xp, pN, gradient(xp, J, fu), lambda v: xp.sum(J * xp.reshape(v, (B, 1, n)), axis=2), D, radius)


def dogleg_from(xp, pN, JtF, Jmv, D, radius, newton_ok=None):
    """:func:`dogleg` from its pieces: the Newton point ``pN`` (``(B, n)``; usable where ``newton_ok``, by
    default where finite), the gradient ``J^T F`` and the product ``Jmv(v) = J v`` (a sparse Jacobian's)."""
    B = pN.shape[0]
    yN = D * pN
    nN = xp.sqrt(_rows(xp, yN, yN))
    finite = xp.all(xp.isfinite(pN), axis=1) & xp.isfinite(nN)
    newton_ok = finite if newton_ok is None else newton_ok & finite
    yN = xp.where(xp.reshape(newton_ok, (B, 1)), yN, xp.zeros_like(yN))
    g = JtF / D  # scaled gradient D^-1 J^T F
    Jg = Jmv(g / D)
    gn2 = _rows(xp, g, g)
    t = gn2 / _safe(xp, _rows(xp, Jg, Jg))
    yC = -xp.reshape(t, (B, 1)) * g
    nC = xp.sqrt(_rows(xp, yC, yC))
    cut = xp.minimum(xp.ones_like(nC), radius / _safe(xp, nC))
    y_cauchy = xp.reshape(cut, (B, 1)) * yC
    s = yN - yC
    a = _rows(xp, s, s)
    b = 2.0 * _rows(xp, yC, s)
    c = nC * nC - radius * radius  # < 0 where the segment is used
    sq = xp.sqrt(xp.maximum(b * b - 4.0 * a * c, xp.zeros_like(a)))
    tau_pos = -2.0 * c / _safe(xp, b + sq)
    tau_neg = (sq - b) / _safe(xp, 2.0 * a)
    tau = xp.where(b >= 0, tau_pos, tau_neg)
    tau = xp.minimum(xp.maximum(tau, xp.zeros_like(tau)), xp.ones_like(tau))
    y_seg = yC + xp.reshape(tau, (B, 1)) * s
    inside = newton_ok & (nN <= radius)
    use_cauchy = ~newton_ok | (nC >= radius)
    y = xp.where(xp.reshape(inside, (B, 1)), yN,
                 xp.where(xp.reshape(use_cauchy, (B, 1)), y_cauchy, y_seg))
    usable = xp.all(xp.isfinite(y), axis=1)
    y = xp.where(xp.reshape(usable, (B, 1)), y, xp.zeros_like(y))
    return y / D, xp.sqrt(_rows(xp, y, y)), usable


@register("trust_region")
@dataclass(frozen=True)
class TrustRegion(Algorithm):
    """Dense trust-region method: Powell's dogleg with MINPACK ``hybrd`` scaling.

    The region is ``||D delta||_2 <= Delta`` with ``D`` the running maximum of the
    Jacobian's column norms (zero columns count as 1), so the method is invariant
    to a rescaling of the unknowns. The first radius is
    ``factor * ||D u0||`` (``factor`` when that is 0). The Jacobian comes from the
    problem's ``jac``, else AD or finite differences (``n`` JVPs, counted in ``njvp``; by finite
    differences also ``n`` calls of ``F`` in ``nf``).
    The Newton point solves ``(J + S) p = -F`` with the diagonal shift ``S`` relative to
    each row and column (as ``NewtonRaphson``), so that a singular ``J`` gives a huge
    point that the dogleg cuts back. A non-finite Jacobian stops the
    element with ``LinearSolveFailed``; a radius collapsed to rounding level of
    ``||D u||`` stops it with ``Stalled`` (typical at a minimum of ``||F||`` that is
    not a root).

    With a sparse Jacobian (``sparsity=`` or a sparse ``jac``, as ``NewtonRaphson``) the Newton point is
    a SuperLU solve, factorised once per Jacobian (a rejected step keeps ``J`` and its factors), and the
    Cauchy point comes from the products ``J^T F`` and ``J g``: the same dogleg step, inside the same
    region, without a dense matrix (``stats.nfact`` counts the factorisations; ``max_size`` does not
    apply). An exactly singular sparse ``J`` leaves the Cauchy step alone.

    Bounds (``lb=`` / ``ub=`` on the problem) are honoured: the dogleg runs over the variables that the
    gradient does not hold at a bound and the trial point is projected into the box, so no iterate leaves
    it (see the guide "Bounds"); a minimum of ``||F||`` on a bound that is not a root ends with
    ``BoundConstrained`` (a ``LeastSquaresMinimum`` of a least-squares problem).

    Parameters
    ----------
    factor
        Scale of the first radius (MINPACK's ``factor``, default 100).
    max_size
        Largest ``n`` accepted for a dense Jacobian (default 1000, as ``NewtonRaphson``).

    Raises
    ------
    ValueError
        An invalid option (``factor <= 0``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> rosen = lambda u, p: np.stack([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0]])
    >>> sol = ss.solve(ss.NonlinearProblem(rosen, np.array([-1.2, 1.0])), ss.TrustRegion(), abstol=1e-10)
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([1., 1.]))
    """

    factor: float = 100.0
    max_size: int = 1000
    honours_bounds: ClassVar[bool] = True
    least_squares: ClassVar[bool] = True

    def __post_init__(self):
        check_positive("TrustRegion", "factor", self.factor)
        check_int("TrustRegion", "max_size", self.max_size, 1)

    def cost(self, n: int) -> int:  # one evaluation and a dense Jacobian after an accepted step
        return 1 + n

    def init(self, prob, u0, ctx):
        if sparse_steps(ctx, u0, "TrustRegion", self.max_size) is None:
            refuse_large("TrustRegion", ctx.n, self.max_size)
        elif bounded(ctx):
            raise ValueError(_SPARSE_BOUNDS.format("TrustRegion"))
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        fu = ctx.fu0
        J, fresh, D, nf, njvp, njac, flag = first_jacobian(ctx, u0, fu, "TrustRegion", self.max_size)
        return TrustRegionState(
            u=u0, fu=fu, fn2=xp.sum(fu * fu, axis=1), J=J, fresh=fresh, D=D,
            radius=-xp.ones((B,), dtype=ctx.dtype, device=ctx.device), nsuc=xp.zeros((B,), dtype=xp.int32, device=ctx.device),
            flag=flag, nf=nf, njvp=njvp, nvjp=ctx.counter(0),
            njac=njac, nreject=ctx.counter(0), nslow=xp.zeros((B,), dtype=xp.int32, device=ctx.device),
            ref2=xp.sum(fu * fu, axis=1), nfact=ctx.counter(0))

    def step(self, prob, state, ctx):
        xp = ctx.xp
        need = ~state.fresh
        steps = sparse_steps(ctx, state.u, "TrustRegion", self.max_size)
        if steps is None:
            J, D, finite_j, dj, dl = scaled_jacobian(ctx, state.u, state.fu, state.J, state.D, need)
        else:
            J, D, finite_j, dj, dl = sparse_scaled_jacobian(steps, state.u, state.fu, state.J, state.D, need)
        dun = xp.sqrt(_rows(xp, D * state.u, D * state.u))
        first = dun * self.factor
        first = xp.where(first > 0, first, xp.full_like(first, self.factor))
        radius = xp.where(state.radius < 0, first, state.radius)
        tiny = float(xp.finfo(ctx.dtype).smallest_normal)
        eps = float(xp.finfo(ctx.dtype).eps)
        free = None
        if steps is None and bounded(ctx):  # the dogleg over the free variables, projected into the box
            free = free_variables(ctx, state.u, gradient(xp, J, state.fu))
            Jf = masked(xp, J, free)
            delta, ynorm, usable = dogleg(xp, Jf, state.fu, D, radius,
                                          point=free_gauss_newton_point(xp, Jf, state.fu, free))
            delta = project(ctx, state.u + delta) - state.u
            ynorm = xp.sqrt(_rows(xp, D * delta, D * delta))
            Jmv, nfact = None, 1
        elif steps is None:
            if is_rectangular(ctx):
                delta, ynorm, usable = dogleg(xp, J, state.fu, D, radius, point=gauss_newton_point(xp, J, state.fu))
            else:
                delta, ynorm, usable = dogleg(xp, J, state.fu, D, radius, A=regularised(xp, J))
            Jmv, nfact = None, 1
        elif is_rectangular(ctx):  # sparse least squares: the Gauss-Newton point by LSMR (min ||F + J p||)
            zero = xp.zeros_like(state.fn2)
            pN, failed, nfact = steps.damped(J, state.fu, zero, D, "lsmr")

            def Jmv(v):
                return steps.matvec(J, v)

            delta, ynorm, usable = dogleg_from(xp, pN, steps.rmatvec(J, state.fu), Jmv, D, radius, ~failed)
        else:  # the Newton point by SuperLU (factorised once per Jacobian), the Cauchy point by products
            pN, failed, nfact = steps.newton(J, state.fu)

            def Jmv(v):
                return steps.matvec(J, v)

            delta, ynorm, usable = dogleg_from(xp, pN, steps.rmatvec(J, state.fu), Jmv, D, radius, ~failed)
        trial, ft, ftn2, rho, ok = rated_trial(ctx, state.u, state.fu, state.fn2, J, delta, finite_j & usable, Jmv)
        accept = ok & (rho > ACCEPT_RHO)
        # MINPACK hybrd's radius update: the first step bounds the radius; a poor ratio halves it;
        # a good one (or a second success in a row) lets it reach twice the step; a very good
        # model (rho ~ 1) sets it to twice the step
        radius = xp.where(state.radius < 0, xp.minimum(radius, ynorm), radius)
        poor = rho < 0.1
        nsuc = xp.where(poor, xp.zeros_like(state.nsuc), state.nsuc + 1)
        grow = ~poor & ((rho >= 0.5) | (nsuc > 1))
        radius = xp.where(poor, 0.5 * radius, xp.where(grow, xp.maximum(radius, 2.0 * ynorm), radius))
        radius = xp.where(~poor & (xp.abs(rho - 1.0) <= 0.1), 2.0 * ynorm, radius)
        nslow, ref2 = no_progress(xp, accept, ftn2, state.nslow, state.ref2)
        collapsed = ~accept & (radius <= 10.0 * eps * dun + tiny)
        flag = xp.where(collapsed | (nslow >= PROGRESS_ITERS), xp.full_like(state.flag, _STALLED), state.flag)
        # the gradient of 0.5 ||F||^2, projected (the free variables' components) on a bounded problem
        grad = (steps.rmatvec(J, state.fu) if steps is not None
                else gradient(xp, J if free is None else Jf, state.fu))
        if is_rectangular(ctx):  # least squares: a minimum with a nonzero residual is the answer, not a stall;
            # slow progress is no stall either (at a flat minimum it is expected; maxiters bounds the rest)
            flag = xp.where(collapsed, xp.full_like(state.flag, _STALLED), state.flag)
            pred = xp.where(usable, predicted_reduction(xp, J, state.fu, delta, Jmv), -xp.ones_like(rho))
            flag = minimum_flag(ctx, flag, grad, D, state.fn2, ftn2, pred,
                                stuck=collapsed | (nslow >= PROGRESS_ITERS), J=J)
        elif free is not None:  # a minimum of ||F|| on a bound: a root may lie outside the box
            flag = bound_flag(ctx, flag, grad, D, state.fn2, free, collapsed | (nslow >= PROGRESS_ITERS), GTOL)
        flag = xp.where(~finite_j, xp.full_like(flag, _LSF), flag)
        u, fu, fn2, nrej = take_accepted(xp, accept, trial, ft, ftn2, state.u, state.fu, state.fn2)
        return TrustRegionState(u, fu, fn2, J, ~accept, D, radius, nsuc, flag, state.nf + 1 + ctx.f_calls(dj),
                                state.njvp + dj,
                                state.nvjp, state.njac + dl, state.nreject + nrej, nslow, ref2, state.nfact + nfact)

    def extra_stats(self, state) -> dict:
        out = {"njac": state.njac, "nreject": state.nreject}
        if getattr(state.J, "ndim", 3) == 2:  # a sparse Jacobian's values: its factorisations are counted
            out["nfact"] = state.nfact
        return out


def first_jacobian(ctx, u0, fu0, owner: str, max_size: int):
    """The Jacobian leaves of a dense method's first state: ``(J, fresh, D, nf, njvp, njac, flag)``. Dense:
    zeros, built at the first step. Sparse (:func:`~steadysolve.linear._sparse_steps.sparse_steps`): the
    values at ``u0`` (their width is the pattern's, known once a sparse ``jac`` has been read) and the
    scaling from them."""
    xp, B, n = ctx.xp, ctx.batch, ctx.n
    zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
    steps = sparse_steps(ctx, u0, owner, max_size)
    no = xp.zeros((B,), dtype=xp.bool, device=ctx.device)
    if steps is None:
        return (ctx.zeros((B, residual_size(ctx), n)), no, ctx.zeros((B, n)), ctx.counter(1), ctx.counter(0),
                ctx.counter(0), zi)
    J, D, finite, dj, dl = sparse_scaled_jacobian(steps, u0, fu0, None, ctx.zeros((B, n)), ~no)
    flag = xp.where(finite, zi, xp.full_like(zi, _LSF))
    return J, ~no, D, ctx.counter(1 + ctx.f_calls(dj)), ctx.counter(dj), ctx.counter(dl), flag
