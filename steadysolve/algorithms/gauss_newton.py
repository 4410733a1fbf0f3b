"""Gauss-Newton with an Armijo line search on ``0.5 ||F||^2``, for least-squares problems.

Every driver iteration evaluates ``F`` once. In a Gauss-Newton iteration (``nback == 0``) the
Jacobian ``J`` (``m x n``) is built at ``u`` and the direction ``d`` minimises ``||F + J d||``
(a QR factorisation of ``J``, ``_least_squares.gauss_newton_point``); the full step ``u + d`` is
tried. A trial is accepted when ``||F(u + lam d)||^2 <= ||F(u)||^2 + c lam s`` with the slope
``s = 2 (J^T F) . d < 0`` (Armijo, ``c = 1e-4``): the test is against the gradient of the least-squares
objective, not against ``||F||`` itself, so steps near a minimum with a nonzero residual (where
``||F||`` barely changes) are accepted. A rejection backtracks along ``d`` (safeguarded quadratic
interpolation in ``[0.1, 0.5] lam``; ``0.25 lam`` after a non-finite trial); the Jacobian is not
rebuilt while backtracking.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

from .._checks import check_int, check_positive
from ..registry import register
from ..retcodes import ReturnCode
from .base import PROGRESS_ITERS, Algorithm, no_progress
from ..linear._sparse_steps import sparse_steps
from .dense import refuse_large, scaled_jacobian, sparse_scaled_jacobian
from ._least_squares import GTOL, gauss_newton_point, gradient, minimum_flag, predicted_reduction, residual_size

__all__ = ["GaussNewton", "GaussNewtonState", "ARMIJO_C", "next_length"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code
ARMIJO_C = 1e-4  # the sufficient decrease of the Armijo test, relative to the slope


def next_length(ns, fn2, ftn2, slope, lam, finite, one):
    """The step length after a rejected trial at ``lam``: the minimiser of the quadratic model of
    ``phi(l) = ||F(u + l d)||^2`` through ``phi(0) = fn2``, ``phi'(0) = slope`` and ``phi(lam) = ftn2``,
    safeguarded to ``[0.1, 0.5] lam`` (``0.25 lam`` after a non-finite trial). Written on a namespace
    ``ns`` (``where``, ``clip``): an array namespace on ``(B,)`` arrays (``one`` an array of ones), or the
    one-system engine's Python floats (``steadysolve._small.floats.FLOATS``, ``one = 1.0``)."""
    den = 2.0 * (ftn2 - fn2 - slope * lam)
    pos = den > 0
    lam_q = ns.where(pos, -slope * lam * lam / ns.where(pos, den, one), 0.5 * lam)
    return ns.where(finite, ns.clip(lam_q, 0.1 * lam, 0.5 * lam), 0.25 * lam)


class GaussNewtonState(NamedTuple):
    u: Any
    fu: Any
    fn2: Any  # (B,) ||F(u)||_2^2
    J: Any  # (B, m, n) Jacobian at u
    D: Any  # (B, n) column scaling (running max of the column norms)
    d: Any  # (B, n) Gauss-Newton direction at u
    slope: Any  # (B,) d/dlam ||F(u + lam d)||^2 at 0
    lam: Any  # (B,) step length of the next trial
    nback: Any  # (B,) int32 rejected trials along d
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    njac: Any  # 0-d: Jacobians built
    nbacktrack: Any  # 0-d: rejected trials
    nslow: Any  # (B,) int32 iterations without progress
    ref2: Any  # (B,) ||F||^2 at the last progress
    fresh: Any = None  # (B,) bool: a sparse Jacobian built at u by init (None: dense)
    nfact: Any = 0  # 0-d: factorisations of a sparse J^T J


@register("gauss_newton")
@dataclass(frozen=True)
class GaussNewton(Algorithm):
    """Gauss-Newton for least squares: ``d = argmin ||F(u) + J d||``, ``u <- u + lam d`` (Armijo on ``||F||^2``).

    For a :class:`~steadysolve.NonlinearLeastSquaresProblem` (``m >= n`` residuals) or a square
    :class:`~steadysolve.NonlinearProblem` (where the direction is Newton's). Fast on problems with small
    residuals at the minimum and a well-conditioned ``J``; ``LevenbergMarquardt`` (the default for least
    squares) is more robust far from the minimum or when ``J`` loses rank. A least-squares problem ends with
    ``Success`` at a zero residual and ``LeastSquaresMinimum`` at a minimum whose residual is not zero
    (``gtol``, and the ``ftol`` test of ``steadysolve.algorithms._least_squares``); on a square problem such
    a point is ``Stalled``.

    Parameters
    ----------
    gtol
        Cosine between ``F`` and the Jacobian's columns under which a minimum is declared (default 1e-10).
    max_backtracks
        Rejected trials along one direction before the element stops with ``Stalled`` (default 20).
    max_size
        Largest ``n`` accepted for a dense Jacobian (default 1000).
    sparse_solver
        The direction on a sparse Jacobian (``sparsity=`` or a sparse ``jac``): ``"normal"`` (default;
        ``J^T J d = -J^T F`` factorised, CHOLMOD when installed, else SuperLU) or ``"lsmr"`` (LSMR on ``J``,
        no factorisation, an inexact direction). ``max_size`` does not apply then.

    Raises
    ------
    ValueError
        An invalid option, at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> rosen = lambda u, p: np.stack([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0], 0.0 * u[0]])  # m = 3, n = 2
    >>> sol = ss.solve(ss.NonlinearLeastSquaresProblem(rosen, np.array([-1.2, 1.0])), "gauss_newton")
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([1., 1.]))
    """

    least_squares: ClassVar[bool] = True

    gtol: float = GTOL
    max_backtracks: int = 20
    max_size: int = 1000
    sparse_solver: str = "normal"

    def __post_init__(self):
        if self.sparse_solver not in ("normal", "lsmr"):
            raise ValueError(f"GaussNewton: sparse_solver must be 'normal' or 'lsmr', got {self.sparse_solver!r}")
        check_positive("GaussNewton", "gtol", self.gtol)
        check_int("GaussNewton", "max_backtracks", self.max_backtracks, 1)
        check_int("GaussNewton", "max_size", self.max_size, 1)

    def cost(self, n: int) -> int:
        return 1 + n

    def init(self, prob, u0, ctx):
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        fu = ctx.fu0
        fn2 = xp.sum(fu * fu, axis=1)
        zi = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
        steps = sparse_steps(ctx, u0, "GaussNewton", self.max_size) if ctx.kind == "least_squares" else None
        if steps is not None:  # the sparse Jacobian at u0 (its width is the pattern's), used by the first step
            from .trust_region import first_jacobian

            J, fresh, D, nf, njvp, njac, flag = first_jacobian(ctx, u0, fu, "GaussNewton", self.max_size)
            return GaussNewtonState(
                u=u0, fu=fu, fn2=fn2, J=J, D=D, d=xp.zeros_like(u0), slope=ctx.zeros((B,)),
                lam=xp.ones((B,), dtype=ctx.dtype, device=ctx.device), nback=zi, flag=flag, nf=nf, njvp=njvp,
                nvjp=ctx.counter(0), njac=njac, nbacktrack=ctx.counter(0), nslow=zi, ref2=fn2, fresh=fresh,
                nfact=ctx.counter(0))
        refuse_large("GaussNewton", ctx.n, self.max_size)
        return GaussNewtonState(
            u=u0, fu=fu, fn2=fn2, J=ctx.zeros((B, residual_size(ctx), n)), D=ctx.zeros((B, n)),
            d=xp.zeros_like(u0), slope=ctx.zeros((B,)), lam=xp.ones((B,), dtype=ctx.dtype, device=ctx.device),
            nback=zi, flag=zi, nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0), njac=ctx.counter(0),
            nbacktrack=ctx.counter(0), nslow=zi, ref2=fn2, nfact=ctx.counter(0))

    def step(self, prob, state, ctx):
        xp, B = ctx.xp, ctx.batch
        newton = state.nback == 0
        steps = None if state.fresh is None else sparse_steps(ctx, state.u, "GaussNewton", self.max_size)
        Jmv, nfact = None, 0
        if steps is None:
            J, D, finite_j, dj, dl = scaled_jacobian(ctx, state.u, state.fu, state.J, state.D, newton)
            d_new = gauss_newton_point(xp, J, state.fu)
            g = gradient(xp, J, state.fu)
            failed = xp.zeros((B,), dtype=xp.bool, device=ctx.device)
        else:  # sparse: J^T J d = -J^T F factorised (or LSMR on J), per element on the host
            J, D, finite_j, dj, dl = sparse_scaled_jacobian(steps, state.u, state.fu, state.J, state.D,
                                                            newton & ~state.fresh)
            g = steps.rmatvec(J, state.fu)
            lsmr = self.sparse_solver == "lsmr"
            d_new, failed, nfact = steps.damped(J, state.fu if lsmr else g, xp.zeros_like(state.fn2), D,
                                                self.sparse_solver)

            def Jmv(v):
                return steps.matvec(J, v)
        nb = xp.reshape(newton, (B, 1))
        usable = finite_j & ~failed & xp.all(xp.isfinite(d_new), axis=1)
        d_new = xp.where(xp.reshape(usable, (B, 1)), d_new, xp.zeros_like(d_new))
        d = xp.where(nb, d_new, state.d)
        slope = xp.where(newton, 2.0 * xp.sum(g * d_new, axis=1), state.slope)
        one = xp.ones_like(state.lam)
        lam = xp.where(newton, one, state.lam)
        trial = state.u + xp.reshape(lam, (B, 1)) * d
        ft = ctx.F(trial)
        ftn2 = xp.sum(ft * ft, axis=1)
        finite = xp.isfinite(ftn2)
        bad_dir = newton & ~usable
        descent = slope < 0
        accept = finite & descent & ~bad_dir & (ftn2 <= state.fn2 + ARMIJO_C * lam * slope)
        lam_q = next_length(xp, state.fn2, ftn2, slope, lam, finite, one)
        nback = xp.where(accept, xp.zeros_like(state.nback), state.nback + 1)
        nslow, ref2 = no_progress(xp, accept, ftn2, state.nslow, state.ref2)
        stop = nback > self.max_backtracks
        if ctx.kind != "least_squares":  # near a flat least-squares minimum slow progress is expected
            stop = stop | (nslow >= PROGRESS_ITERS)
        flag = xp.where(stop, xp.full_like(state.flag, _STALLED), state.flag)
        if ctx.kind == "least_squares":  # the full step's prediction: at a minimum it and the change are ~0
            pred = xp.where(newton & finite, predicted_reduction(xp, J, state.fu, d_new, Jmv), -one)
            flag = minimum_flag(ctx, flag, g, D, state.fn2, ftn2, pred, self.gtol,
                                stuck=stop | (nslow >= PROGRESS_ITERS), J=J)
        flag = xp.where(bad_dir, xp.full_like(flag, _LSF), flag)
        ab = xp.reshape(accept, (B, 1))
        nrej = xp.astype(xp.sum(xp.astype(~accept, xp.int32)), xp.int32)
        return GaussNewtonState(
            xp.where(ab, trial, state.u), xp.where(ab, ft, state.fu), xp.where(accept, ftn2, state.fn2), J, D, d,
            slope, xp.where(accept, one, lam_q), nback, flag, state.nf + 1 + ctx.f_calls(dj), state.njvp + dj,
            state.nvjp, state.njac + dl, state.nbacktrack + nrej, nslow, ref2,
            None if state.fresh is None else xp.zeros_like(state.fresh), state.nfact + nfact)

    def extra_stats(self, state) -> dict:
        out = {"njac": state.njac, "nbacktrack": state.nbacktrack}
        if getattr(state, "fresh", None) is not None:  # a sparse Jacobian: its factorisations are counted
            out["nfact"] = state.nfact
        return out
