"""``LevenbergMarquardt`` on ONE NumPy system: the damping, the gain ratio and the stops on Python floats.

The step and its decisions are those of the generic
:class:`~steadysolve.algorithms.levenberg_marquardt.LevenbergMarquardt` (see the notes of
``levenberg_marquardt.py``); ``||F||^2``, ``lam``, ``nu`` and the counters are Python numbers, and
the stationarity test runs only after a new Jacobian (``J^T F`` changes only with one).

On a :class:`~steadysolve.NonlinearLeastSquaresProblem` (``J`` is ``m x n``) the step is the same and the
stops are the generic ones for least squares: the test for a minimum
(:func:`~steadysolve.algorithms._least_squares.at_minimum`, shared, here on Python floats) after every
step, since it also looks at the trial's reduction of ``||F||^2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import _backend as backend
from ..algorithms.base import PROGRESS_ITERS, no_progress
from ..algorithms._least_squares import at_minimum, identifiable, is_rectangular, minimum_tolerances
from ..algorithms.dense import ACCEPT_RHO
from ..algorithms.levenberg_marquardt import LevenbergMarquardt
from ..retcodes import ReturnCode
from .dense import finite, jacobian, rated, start
from .floats import FLOATS
from .twin import Twin

__all__ = ["SmallLevenbergMarquardt", "SmallLMState"]

_STALLED = ReturnCode.Stalled.code
_MINIMUM = ReturnCode.LeastSquaresMinimum.code


class SmallLMState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, m)
    fn2: float  # ||F(u)||^2
    J: Any  # (1, m, n) Jacobian at u (valid when ``fresh``; m = n but for least squares)
    fresh: bool
    D: Any  # (1, n) scaling (running max of the column norms)
    lam: float  # damping factor (the damping is lam * ||F|| / ||F(u0)||)
    nu: float  # growth factor of the damping after a rejection
    flag: Any  # (1,) int32 failure code
    nf: int
    njvp: int
    nvjp: int
    njac: int
    nreject: int
    fn20: float  # ||F(u0)||^2
    nslow: int  # iterations without progress (``base.no_progress``)
    ref2: float  # ||F||^2 at the last progress
    eye: Any  # the (n, n) identity


@dataclass(frozen=True)
class SmallLevenbergMarquardt(Twin):
    """The one-system twin of ``alg`` (a :class:`LevenbergMarquardt`)."""

    alg: LevenbergMarquardt

    def init(self, prob, u0, ctx):
        fu, fn2, J, D, eye = start(ctx, "LevenbergMarquardt", self.alg.max_size)
        return SmallLMState(
            u=u0, fu=fu, fn2=fn2, J=J, fresh=False, D=D, lam=float(self.alg.damping), nu=2.0,
            flag=ctx.xp.zeros((1,), dtype=ctx.xp.int32), nf=1, njvp=0, nvjp=0, njac=0, nreject=0, fn20=fn2, nslow=0,
            ref2=fn2, eye=eye)

    def step(self, prob, state, ctx):
        xp, u, fu = ctx.xp, state.u, state.fu
        J, D, dj, dl, failed = jacobian(ctx, state)
        if failed is not None:
            return failed
        J1, D1, f1, fn2, lam = J[0], D[0], fu[0], state.fn2, state.lam
        g = f1 @ J1  # J^T F
        scale = max(math.sqrt(fn2 / state.fn20), float(xp.finfo(ctx.dtype).eps)) if state.fn20 > 0 else 1.0
        A = J1.T @ J1 + (lam * scale * D1 * D1) * state.eye
        delta = -backend.solve_small(xp, A, g)
        nf, accept, rho, pred = state.nf, False, -1.0, -1.0
        usable = finite(xp, delta)
        if usable:
            trial, ft, ftn2, rho, ok, pred = rated(ctx, u, f1, fn2, J1, delta)
            nf, accept = nf + 1, ok and rho > ACCEPT_RHO
        if accept:
            lam_new, nu = lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 2.0
        else:
            lam_new, nu = lam * state.nu, 2.0 * state.nu
        fnorm = math.sqrt(fn2)
        flag = state.flag
        nslow, ref2 = no_progress(FLOATS, accept, ftn2 if accept else fn2, state.nslow, state.ref2)
        stuck = not accept and lam_new > 1e16
        if is_rectangular(ctx):  # least squares: as the generic step, a minimum is the answer (every step:
            # the test looks at the trial's reduction too)
            cosine = float(xp.max(xp.abs(g) / D1)) / (fnorm if fnorm > 0 else 1.0)
            stationary = fnorm > 0 and cosine <= self.alg.gtol
            if stationary or stuck:
                flag = xp.full((1,), _STALLED, dtype=xp.int32)
            minimum = at_minimum(FLOATS, cosine, fnorm, fn2, ftn2 if usable else math.nan, pred if usable else -1.0,
                                 minimum_tolerances(ctx, ctx.dtype, self.alg.gtol), stuck or nslow >= PROGRESS_ITERS)
            if minimum and bool(identifiable(xp, J, D, ctx.dtype)[0]):  # (the zero-column test only at a minimum)
                flag = xp.full((1,), _MINIMUM, dtype=xp.int32)
        else:
            # a non-root stationary point of ||F||: the scaled gradient vanishes while F does not (g and F
            # only change with a new Jacobian: a rejected step's iteration would find the same)
            stationary = False
            if dl:
                stationary = fnorm > 0 and float(xp.max(xp.abs(g) / D1)) <= self.alg.gtol * fnorm
            if stationary or stuck or nslow >= PROGRESS_ITERS:
                flag = xp.full((1,), _STALLED, dtype=xp.int32)
        if accept:
            u, fu, fn2 = trial, ft, ftn2
        return SmallLMState(u, fu, fn2, J, not accept, D, lam_new, nu, flag, nf + ctx.f_calls(dj), state.njvp + dj,
                            state.nvjp, state.njac + dl, state.nreject + (not accept), state.fn20, nslow, ref2,
                            state.eye)
