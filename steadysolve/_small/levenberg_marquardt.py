"""``LevenbergMarquardt`` on ONE NumPy system: the damping, the gain ratio and the stops on Python floats.

The step and its decisions are those of the generic
:class:`~steadysolve.algorithms.levenberg_marquardt.LevenbergMarquardt` (see the notes of
``levenberg_marquardt.py``); ``||F||^2``, ``lam``, ``nu`` and the counters are Python numbers, and
the stationarity test runs only after a new Jacobian (``J^T F`` changes only with one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from .. import _backend as backend
from ..algorithms.base import PROGRESS_ITERS, no_progress
from ..algorithms.dense import ACCEPT_RHO
from ..algorithms.levenberg_marquardt import LevenbergMarquardt
from ..retcodes import ReturnCode
from .dense import finite, jacobian, rated, start
from .floats import FLOATS
from .twin import Twin

__all__ = ["SmallLevenbergMarquardt", "SmallLMState"]

_STALLED = ReturnCode.Stalled.code


class SmallLMState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, n)
    fn2: float  # ||F(u)||^2
    J: Any  # (1, n, n) Jacobian at u (valid when ``fresh``)
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
        nf, accept, rho = state.nf, False, -1.0
        if finite(xp, delta):
            trial, ft, ftn2, rho, ok = rated(ctx, u, f1, fn2, J1, delta)
            nf, accept = nf + 1, ok and rho > ACCEPT_RHO
        if accept:
            lam_new, nu = lam * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3), 2.0
        else:
            lam_new, nu = lam * state.nu, 2.0 * state.nu
        # a non-root stationary point of ||F||: the scaled gradient vanishes while F does not (g and F
        # only change with a new Jacobian: a rejected step's iteration would find the same)
        fnorm = math.sqrt(fn2)
        stationary = False
        if dl:
            stationary = fnorm > 0 and float(xp.max(xp.abs(g) / D1)) <= self.alg.gtol * fnorm
        flag = state.flag
        nslow, ref2 = no_progress(FLOATS, accept, ftn2 if accept else fn2, state.nslow, state.ref2)
        if stationary or (not accept and lam_new > 1e16) or nslow >= PROGRESS_ITERS:
            flag = xp.full((1,), _STALLED, dtype=xp.int32)
        if accept:
            u, fu, fn2 = trial, ft, ftn2
        return SmallLMState(u, fu, fn2, J, not accept, D, lam_new, nu, flag, nf + ctx.f_calls(dj), state.njvp + dj,
                            state.nvjp, state.njac + dl, state.nreject + (not accept), state.fn20, nslow, ref2,
                            state.eye)
