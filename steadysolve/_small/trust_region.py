"""``TrustRegion`` on ONE NumPy system: the dogleg and MINPACK's radius update on Python floats.

The generic :class:`~steadysolve.algorithms.trust_region.TrustRegion` computes the Newton point,
the Cauchy point and the segment between them for every element and picks one with ``where``; for
one system the choice is a Python branch, so the Cauchy point is computed only when the Newton point
is outside the region, and ``||F||^2``, the radius and the counters are Python numbers. The
decisions and constants are the generic ones (see the notes of ``trust_region.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..algorithms.base import PROGRESS_ITERS, no_progress
from ..algorithms.dense import ACCEPT_RHO
from ..algorithms.trust_region import TrustRegion, newton_point
from ..retcodes import ReturnCode
from .dense import jacobian, rated, regularised, start
from .floats import FLOATS
from .twin import Twin

__all__ = ["SmallTrustRegion", "SmallTrustRegionState", "dogleg"]

_STALLED = ReturnCode.Stalled.code


class SmallTrustRegionState(NamedTuple):
    u: Any  # (1, n)
    fu: Any  # (1, n)
    fn2: float  # ||F(u)||^2
    J: Any  # (1, n, n) Jacobian at u (valid when ``fresh``)
    fresh: bool  # J belongs to the current u
    D: Any  # (1, n) scaling, max over the iterations of the Jacobian's column norms
    radius: float  # trust-region radius (< 0: not set yet)
    nsuc: int  # successful (rho >= 0.1) steps in a row
    flag: Any  # (1,) int32 failure code
    nf: int
    njvp: int
    nvjp: int
    njac: int
    nreject: int
    nslow: int  # iterations without progress (``base.no_progress``)
    ref2: float  # ||F||^2 at the last progress
    eye: Any  # the (n, n) identity of the regularised Newton point


def dogleg(xp, J1, f1, D1, radius, A1):
    """:func:`~steadysolve.algorithms.trust_region.dogleg` of one system (1-D ``f1``, ``D1``; ``radius`` a
    float): ``(y, ||y||)`` in the scaled variables, ``y`` None when not usable. The Cauchy point only
    when needed."""
    pN = newton_point(xp, A1, -f1)
    yN = D1 * pN
    n2 = float(yN @ yN)
    newton_ok = math.isfinite(n2)
    nN = math.sqrt(n2) if newton_ok else math.inf
    if newton_ok and nN <= radius:
        return yN, nN
    g = (f1 @ J1) / D1  # scaled gradient D^-1 J^T F
    Jg = J1 @ (g / D1)
    jg2 = float(Jg @ Jg)
    yC = (-float(g @ g) / (jg2 if jg2 > 0 else 1.0)) * g
    nC = math.sqrt(float(yC @ yC))
    if not newton_ok or nC >= radius:
        y = min(1.0, radius / (nC if nC > 0 else 1.0)) * yC
    else:
        s = yN - yC
        a, b, c = float(s @ s), 2.0 * float(yC @ s), nC * nC - radius * radius
        sq = math.sqrt(max(b * b - 4.0 * a * c, 0.0))
        if b >= 0:
            tau = -2.0 * c / (b + sq if b + sq > 0 else 1.0)
        else:
            tau = (sq - b) / (2.0 * a if a > 0 else 1.0)
        y = yC + min(max(tau, 0.0), 1.0) * s
    yn2 = float(y @ y)
    if not math.isfinite(yn2):
        return None, 0.0
    return y, math.sqrt(yn2)


@dataclass(frozen=True)
class SmallTrustRegion(Twin):
    """The one-system twin of ``alg`` (a :class:`TrustRegion`)."""

    alg: TrustRegion

    def init(self, prob, u0, ctx):
        fu, fn2, J, D, eye = start(ctx, "TrustRegion", self.alg.max_size)
        return SmallTrustRegionState(
            u=u0, fu=fu, fn2=fn2, J=J, fresh=False, D=D, radius=-1.0, nsuc=0, flag=ctx.xp.zeros((1,), dtype=ctx.xp.int32),
            nf=1, njvp=0, nvjp=0, njac=0, nreject=0, nslow=0, ref2=fn2, eye=eye)

    def step(self, prob, state, ctx):
        xp, u, fu, factor = ctx.xp, state.u, state.fu, self.alg.factor
        J, D, dj, dl, failed = jacobian(ctx, state)
        if failed is not None:
            return failed
        J1, D1, f1, fn2 = J[0], D[0], fu[0], state.fn2
        du = D1 * u[0]
        dun = math.sqrt(float(du @ du))
        radius = state.radius
        if radius < 0:
            radius = dun * factor if dun * factor > 0 else factor
        y, ynorm = dogleg(xp, J1, f1, D1, radius, regularised(xp, J1, state.eye))
        if y is None:
            trial, ft, ftn2, rho, ok = u, fu, fn2, -1.0, False
            nf = state.nf
        else:
            trial, ft, ftn2, rho, ok, _ = rated(ctx, u, f1, fn2, J1, y / D1)
            nf = state.nf + 1
        accept = ok and rho > ACCEPT_RHO
        # MINPACK hybrd's radius update (as the generic step)
        if state.radius < 0:
            radius = min(radius, ynorm)
        poor = rho < 0.1
        nsuc = 0 if poor else state.nsuc + 1
        if poor:
            radius = 0.5 * radius
        elif rho >= 0.5 or nsuc > 1:
            radius = max(radius, 2.0 * ynorm)
        if not poor and abs(rho - 1.0) <= 0.1:
            radius = 2.0 * ynorm
        flag = state.flag
        nslow, ref2 = no_progress(FLOATS, accept, ftn2, state.nslow, state.ref2)
        finfo = xp.finfo(ctx.dtype)
        if nslow >= PROGRESS_ITERS or (not accept and radius <= 10.0 * float(finfo.eps) * dun
                                       + float(finfo.smallest_normal)):
            flag = xp.full((1,), _STALLED, dtype=xp.int32)
        if accept:
            u, fu, fn2 = trial, ft, ftn2
        return SmallTrustRegionState(u, fu, fn2, J, not accept, D, radius, nsuc, flag, nf + ctx.f_calls(dj),
                                     state.njvp + dj, state.nvjp, state.njac + dl, state.nreject + (not accept),
                                     nslow, ref2, state.eye)
