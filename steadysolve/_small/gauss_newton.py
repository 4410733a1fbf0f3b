"""``GaussNewton`` on ONE NumPy least-squares system: the line search and the stops on Python floats.

The step and its decisions are those of the generic :class:`~steadysolve.algorithms.gauss_newton.GaussNewton`
(see the notes of ``gauss_newton.py``): the direction is the generic QR solve
(:func:`~steadysolve.algorithms._least_squares.gauss_newton_point`) of the ``(1, m, n)`` Jacobian, the
next trial length after a rejection the generic :func:`~steadysolve.algorithms.gauss_newton.next_length`
and the minimum test the generic :func:`~steadysolve.algorithms._least_squares.at_minimum`, both here on
Python floats. The direction is computed only where the generic step keeps it (a Gauss-Newton iteration,
not a backtracking one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..algorithms._least_squares import (at_minimum, identifiable, gauss_newton_point, gradient, minimum_tolerances,
                                         predicted_reduction)
from ..algorithms.base import PROGRESS_ITERS, no_progress
from ..algorithms.dense import scaled_jacobian
from ..algorithms.gauss_newton import ARMIJO_C, GaussNewton, next_length
from ..retcodes import ReturnCode
from .dense import finite, start
from .floats import FLOATS
from .twin import Twin

__all__ = ["SmallGaussNewton", "SmallGNState"]

_LSF = ReturnCode.LinearSolveFailed.code
_STALLED = ReturnCode.Stalled.code
_MINIMUM = ReturnCode.LeastSquaresMinimum.code


class SmallGNState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, m)
    fn2: float  # ||F(u)||^2
    J: Any  # (1, m, n) Jacobian at u
    D: Any  # (1, n) column scaling (running max of the column norms)
    d: Any  # (1, n) Gauss-Newton direction at u
    slope: float  # d/dlam ||F(u + lam d)||^2 at 0
    lam: float  # step length of the next trial
    nback: int  # rejected trials along d
    flag: Any  # (1,) int32 failure code
    nf: int
    njvp: int
    nvjp: int
    njac: int
    nbacktrack: int
    nslow: int  # iterations without progress (``base.no_progress``)
    ref2: float  # ||F||^2 at the last progress
    g: Any  # (1, n) J^T F at u
    cosine: float  # max_j |g_j| / (D_j ||F||) at u
    usable: bool  # the direction is finite (and the Jacobian was)
    pred: float  # the full step's predicted reduction of ||F||^2 (the minimum test's, on a Gauss-Newton iteration)


@dataclass(frozen=True)
class SmallGaussNewton(Twin):
    """The one-system twin of ``alg`` (a :class:`GaussNewton`) on a least-squares problem."""

    alg: GaussNewton

    def init(self, prob, u0, ctx):
        fu, _, J, D, _ = start(ctx, "GaussNewton", self.alg.max_size)
        fn2 = float(ctx.xp.sum(fu * fu, axis=1)[0])
        zero = ctx.zeros((1, ctx.n))
        return SmallGNState(
            u=u0, fu=fu, fn2=fn2, J=J, D=D, d=zero, slope=0.0, lam=1.0, nback=0,
            flag=ctx.xp.zeros((1,), dtype=ctx.xp.int32), nf=1, njvp=0, nvjp=0, njac=0, nbacktrack=0, nslow=0,
            ref2=fn2, g=zero, cosine=math.inf, usable=True, pred=-1.0)

    def step(self, prob, state, ctx):
        xp, u, fu, fn2 = ctx.xp, state.u, state.fu, state.fn2
        newton = state.nback == 0
        dj = dl = 0
        J, D, d, slope, g, cosine, usable = state.J, state.D, state.d, state.slope, state.g, state.cosine, state.usable
        lam, pred = state.lam, -1.0
        if newton:  # a new Jacobian, its scaling and the Gauss-Newton direction (as the generic step)
            # the generic refresh (also its layout of J: the reductions below round as the generic step's)
            J, D, ok_j, dj, dl = scaled_jacobian(ctx, u, fu, J, D, xp.ones((1,), dtype=xp.bool))
            finite_j = bool(ok_j[0])
            d = gauss_newton_point(xp, J, fu)
            usable = finite_j and finite(xp, d)
            if not usable:
                d = xp.zeros_like(d)
            # the generic step's reductions on (1, .) rows (the same rounding: the paths stay equal)
            g = gradient(xp, J, fu)
            slope, lam = 2.0 * float(xp.sum(g * d, axis=1)[0]), 1.0
            fnorm = math.sqrt(fn2)
            cosine = float(xp.max(xp.abs(g) / D)) / (fnorm if fnorm > 0 else 1.0)
            pred = float(predicted_reduction(xp, J, fu, d)[0])
        trial = u + lam * d
        ft = ctx.F(trial)
        ftn2 = float(xp.sum(ft * ft, axis=1)[0])
        ok = math.isfinite(ftn2)
        bad_dir = newton and not usable
        accept = ok and slope < 0 and not bad_dir and ftn2 <= fn2 + ARMIJO_C * lam * slope
        lam_q = next_length(FLOATS, fn2, ftn2, slope, lam, ok, 1.0)
        nback = 0 if accept else state.nback + 1
        nslow, ref2 = no_progress(FLOATS, accept, ftn2 if accept else fn2, state.nslow, state.ref2)
        stop = nback > self.alg.max_backtracks
        flag = state.flag
        if stop:
            flag = xp.full((1,), _STALLED, dtype=xp.int32)
        minimum = at_minimum(FLOATS, cosine, math.sqrt(fn2), fn2, ftn2, pred if newton and ok else -1.0,
                             minimum_tolerances(ctx, ctx.dtype, self.alg.gtol), stop or nslow >= PROGRESS_ITERS)
        if minimum and bool(identifiable(xp, J, D, ctx.dtype)[0]):  # (the zero-column test only at a minimum)
            flag = xp.full((1,), _MINIMUM, dtype=xp.int32)
        if bad_dir:
            flag = xp.full((1,), _LSF, dtype=xp.int32)
        if accept:
            u, fu, fn2 = trial, ft, ftn2
        return SmallGNState(u, fu, fn2, J, D, d, slope, 1.0 if accept else lam_q, nback, flag,
                            state.nf + 1 + ctx.f_calls(dj), state.njvp + dj, state.nvjp, state.njac + dl,
                            state.nbacktrack + (not accept), nslow, ref2, g, cosine, usable, pred)
