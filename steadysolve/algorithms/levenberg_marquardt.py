"""Levenberg-Marquardt on the dense Jacobian, with Moré's column scaling and Nielsen's damping update.

Every driver iteration evaluates ``F`` once, at ``u + delta`` with
``(J^T J + mu D^2) delta = -J^T F``, where the damping ``mu = lam ||F(u)|| / ||F(u0)||``
shrinks with the residual (Fan and Yuan's ``mu_k = lam_k ||F_k||``, made scale-free): at
a root with a nonsingular Jacobian the steps become Newton steps and converge
quadratically, where a damping bounded below would leave linear convergence. The gain
ratio ``rho`` (actual over predicted reduction of ``||F||^2``) accepts the step when
``rho > 1e-4``; ``lam`` then shrinks by ``max(1/3, 1 - (2 rho - 1)^3)`` (and ``nu = 2``), a
rejection multiplies it by ``nu`` and doubles ``nu``. The Jacobian is rebuilt only after accepted steps. One
eager NumPy system runs the twin of the small-system engine (``steadysolve._small.levenberg_marquardt``),
the same step with ``||F||^2``, ``lam``, ``nu`` and ``fresh`` as Python numbers.
An element stops with ``Stalled`` at a stationary point of ``||F||`` that is not a root (``gtol``),
when the damping passes 1e16, or after 20 iterations without progress (``base.no_progress``).
Bounds ``lb <= u <= ub`` are honoured by a projected active-set step (``algorithms._bounds``).
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
from .dense import ACCEPT_RHO, rated_trial, refuse_large, scaled_jacobian, sparse_scaled_jacobian, take_accepted
from .trust_region import _SPARSE_BOUNDS, first_jacobian
from ._bounds import bound_flag, bounded, free_variables, masked, project
from ._least_squares import gradient, is_rectangular, minimum_flag, predicted_reduction

__all__ = ["LevenbergMarquardt", "LMState"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code


class LMState(NamedTuple):
    u: Any
    fu: Any
    fn2: Any  # (B,) ||F(u)||_2^2
    J: Any  # (B, n, n) Jacobian at u (valid where ``fresh``)
    fresh: Any  # (B,) bool
    D: Any  # (B, n) scaling (running max of the column norms)
    lam: Any  # (B,) damping factor (the damping is lam * ||F|| / ||F(u0)||)
    nu: Any  # (B,) growth factor of the damping after a rejection
    flag: Any  # (B,) int32 failure code
    nf: Any
    njvp: Any
    nvjp: Any
    njac: Any
    nreject: Any
    fn20: Any = None  # (B,) ||F(u0)||_2^2: the damping is lam * ||F|| / ||F(u0)||
    nslow: Any = 0  # (B,) int32: iterations without progress (``base.no_progress``)
    ref2: Any = None  # (B,) ||F||^2 at the last progress
    nfact: Any = 0  # 0-d: factorisations of the damped system


@register("levenberg_marquardt")
@dataclass(frozen=True)
class LevenbergMarquardt(Algorithm):
    """Dense Levenberg-Marquardt: ``(J^T J + mu D^2) delta = -J^T F``, ``mu = lam ||F|| / ||F(u0)||``.

    A least-squares method: it converges to a minimum of ``||F||_2`` even when that is
    not a root, and then stops honestly with ``Stalled`` (the scaled gradient
    ``max_j |(J^T F)_j| / (||J e_j|| ||F||)`` below ``gtol``, or the damping above
    ``1e16`` with no step accepted) instead of reporting success. On a
    :class:`~steadysolve.NonlinearLeastSquaresProblem` (``m >= n`` residuals, Jacobian ``m x n``)
    such a minimum is the answer: ``LeastSquaresMinimum`` (see ``algorithms._least_squares``).

    With a sparse Jacobian (``sparsity=`` or a sparse ``jac``, as ``NewtonRaphson``) the damped step
    solves the same equations without a dense matrix, per element: the normal equations factorised
    (CHOLMOD through scikit-sparse when installed, else SuperLU on ``J^T J + mu D^2``; one
    factorisation per step, ``stats.nfact``) or LSMR on ``J`` (``sparse_solver="lsmr"``, no
    factorisation, an inexact step). ``max_size`` does not apply. The same holds for a least-squares
    problem's rectangular ``m x n`` Jacobian (``NonlinearLeastSquaresProblem(..., sparsity=)``).

    Bounds (``lb=`` / ``ub=`` on the problem) are honoured: the damped step moves the variables that the
    gradient does not hold at a bound, and the trial point is projected into the box, so no iterate leaves
    it (see the guide "Bounds"); a minimum of ``||F||`` on a bound that is not a root ends with
    ``BoundConstrained`` (a ``LeastSquaresMinimum`` of a least-squares problem).

    Parameters
    ----------
    damping
        First damping ``lam`` relative to ``D^2`` (Nielsen's ``tau``, default 1e-3).
    gtol
        Cosine between ``F`` and the Jacobian's columns under which a non-root
        stationary point is declared (default 1e-10).
    max_size
        Largest ``n`` accepted for a dense Jacobian (default 1000, as ``NewtonRaphson``).
    sparse_solver
        The damped step on a sparse Jacobian: ``"normal"`` (default; exact) or ``"lsmr"`` (cheaper
        per step on large systems: ``J^T J`` fills in several times more than ``J``).

    Raises
    ------
    ValueError
        An invalid option (``damping <= 0``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> ok = ss.solve(ss.NonlinearProblem(lambda u, p: u**2 - 4.0, np.ones(1)), ss.LevenbergMarquardt())
    >>> bad = ss.solve(ss.NonlinearProblem(lambda u, p: u**2 + 1.0, np.ones(1)), ss.LevenbergMarquardt())
    >>> ok.retcode.name, np.round(ok.u, 6), bad.retcode.name   # no root: an honest failure
    ('Success', array([2.]), 'Stalled')
    """

    damping: float = 1e-3
    gtol: float = 1e-10
    max_size: int = 1000
    sparse_solver: str = "normal"
    honours_bounds: ClassVar[bool] = True
    least_squares: ClassVar[bool] = True

    def __post_init__(self):
        if self.sparse_solver not in ("normal", "lsmr"):
            raise ValueError(f"LevenbergMarquardt: sparse_solver must be 'normal' or 'lsmr', got {self.sparse_solver!r}")
        check_positive("LevenbergMarquardt", "damping", self.damping)
        check_positive("LevenbergMarquardt", "gtol", self.gtol)
        check_int("LevenbergMarquardt", "max_size", self.max_size, 1)

    def cost(self, n: int) -> int:  # one evaluation and a dense Jacobian after an accepted step
        return 1 + n

    def init(self, prob, u0, ctx):
        if sparse_steps(ctx, u0, "LevenbergMarquardt", self.max_size) is None:
            refuse_large("LevenbergMarquardt", ctx.n, self.max_size)
        elif bounded(ctx):
            raise ValueError(_SPARSE_BOUNDS.format("LevenbergMarquardt"))
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        fu = ctx.fu0
        ones = xp.ones((B,), dtype=ctx.dtype, device=ctx.device)
        fn2 = xp.sum(fu * fu, axis=1)
        J, fresh, D, nf, njvp, njac, flag = first_jacobian(ctx, u0, fu, "LevenbergMarquardt", self.max_size)
        return LMState(
            u=u0, fu=fu, fn2=fn2, J=J, fresh=fresh, D=D,
            lam=self.damping * ones, nu=2.0 * ones, flag=flag,
            nf=nf, njvp=njvp, nvjp=ctx.counter(0),
            njac=njac, nreject=ctx.counter(0), fn20=fn2,
            nslow=xp.zeros((B,), dtype=xp.int32, device=ctx.device), ref2=fn2, nfact=ctx.counter(0))

    def step(self, prob, state, ctx):
        xp, B, n = ctx.xp, ctx.batch, ctx.n
        need = ~state.fresh
        steps = sparse_steps(ctx, state.u, "LevenbergMarquardt", self.max_size)
        fu, lam = state.fu, state.lam
        pos = state.fn20 > 0
        one = xp.ones_like(lam)
        eps = float(xp.finfo(ctx.dtype).eps)  # (a floor: an exact root never leaves J^T J undamped)
        damp = lam * xp.maximum(xp.sqrt(xp.where(pos, state.fn2 / xp.where(pos, state.fn20, one), one)), eps * one)
        free = None
        if steps is None:
            J, D, finite_j, dj, dl = scaled_jacobian(ctx, state.u, state.fu, state.J, state.D, need)
            Jm = J
            if bounded(ctx):  # the step of the free variables (the held ones' columns zeroed: a zero step)
                free = free_variables(ctx, state.u, gradient(xp, J, fu))
                Jm = masked(xp, J, free)
            g = gradient(xp, Jm, fu)  # J^T F (projected on a bounded problem)
            JtJ = xp.matmul(xp.permute_dims(Jm, (0, 2, 1)), Jm)
            eye = xp.reshape(xp.eye(n, dtype=ctx.dtype, device=ctx.device), (1, n, n))
            A = JtJ + xp.reshape(damp, (B, 1, 1)) * xp.reshape(D * D, (B, 1, n)) * eye
            delta = -xp.reshape(backend.solve_small(xp, A, xp.reshape(g, (B, n, 1))), (B, n))
            if free is not None:
                delta = project(ctx, state.u + delta) - state.u
            Jmv, nfact, failed = None, 1, xp.zeros((B,), dtype=xp.bool, device=ctx.device)
        else:  # the damped normal equations factorised (or LSMR) on the host, per element
            J, D, finite_j, dj, dl = sparse_scaled_jacobian(steps, state.u, state.fu, state.J, state.D, need)
            g = steps.rmatvec(J, fu)
            lsmr = self.sparse_solver == "lsmr"
            delta, failed, nfact = steps.damped(J, fu if lsmr else g, damp, D, self.sparse_solver)

            def Jmv(v):
                return steps.matvec(J, v)
        usable = xp.all(xp.isfinite(delta), axis=1) & finite_j & ~failed
        delta = xp.where(xp.reshape(usable, (B, 1)), delta, xp.zeros_like(delta))
        trial, ft, ftn2, rho, ok = rated_trial(ctx, state.u, fu, state.fn2, J, delta, usable, Jmv)
        accept = ok & (rho > ACCEPT_RHO)
        shrink = xp.maximum(xp.full_like(rho, 1.0 / 3.0), 1.0 - (2.0 * rho - 1.0) ** 3)
        lam_new = xp.where(accept, lam * shrink, lam * state.nu)
        nu = xp.where(accept, 2.0 * one, 2.0 * state.nu)
        # Non-root stationary point of ||F||: the scaled gradient vanishes while F does not.
        fnorm = xp.sqrt(state.fn2)
        cosine = xp.max(xp.abs(g) / D, axis=1) / xp.where(fnorm > 0, fnorm, one)
        stationary = (fnorm > 0) & (cosine <= self.gtol)
        stuck = ~accept & (lam_new > 1e16)
        nslow, ref2 = no_progress(xp, accept, ftn2, state.nslow, state.ref2)
        flag = xp.where(stationary | stuck | (nslow >= PROGRESS_ITERS), xp.full_like(state.flag, _STALLED), state.flag)
        if free is not None and not is_rectangular(ctx):  # a minimum of ||F|| on a bound
            flag = bound_flag(ctx, flag, g, D, state.fn2, free, stuck | (nslow >= PROGRESS_ITERS), self.gtol)
        if is_rectangular(ctx):  # least squares: a minimum with a nonzero residual is the answer, not a stall;
            # slow progress is no stall either (at a flat minimum it is expected; maxiters bounds the rest)
            flag = xp.where(stationary | stuck, xp.full_like(state.flag, _STALLED), state.flag)
            pred = xp.where(usable, predicted_reduction(xp, J, fu, delta, Jmv), -one)
            flag = minimum_flag(ctx, flag, g, D, state.fn2, ftn2, pred, self.gtol,
                                stuck=stuck | (nslow >= PROGRESS_ITERS), J=J)
        flag = xp.where(~finite_j, xp.full_like(flag, _LSF), flag)
        u, fu, fn2, nrej = take_accepted(xp, accept, trial, ft, ftn2, state.u, fu, state.fn2)
        return LMState(u, fu, fn2, J, ~accept, D, lam_new, nu, flag, state.nf + 1 + ctx.f_calls(dj), state.njvp + dj,
                       state.nvjp, state.njac + dl, state.nreject + nrej, state.fn20, nslow, ref2, state.nfact + nfact)

    def extra_stats(self, state) -> dict:
        out = {"njac": state.njac, "nreject": state.nreject}
        if getattr(state.J, "ndim", 3) == 2:  # a sparse Jacobian's values: its factorisations are counted
            out["nfact"] = state.nfact
        return out
