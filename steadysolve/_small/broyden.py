"""``Broyden`` on ONE NumPy system: the secant update with every scalar a Python float.

The state is the generic one (:class:`~steadysolve.algorithms.broyden.BroydenState`, from the
generic ``init``); the step is the generic step's arithmetic for one row: the history products
over the whole ring weighted by ``w``, inner products summed as the generic step sums them
(Broyden's outcomes on hard problems move with the last bits, so the twin must round exactly as
the generic step), the decisions as Python branches and the ring written by plain indexing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..algorithms.broyden import Broyden, BroydenState
from .twin import Twin

__all__ = ["SmallBroyden"]


@dataclass(frozen=True)
class SmallBroyden(Twin):
    """The one-system twin of ``alg`` (a :class:`Broyden`)."""

    alg: Broyden

    def init(self, prob, u0, ctx):
        return self.alg.init(prob, u0, ctx)

    def step(self, prob, state, ctx):
        alg, xp, A0, B0, w0 = self.alg, ctx.xp, state.A[0], state.Bv[0], state.w[0]
        h0 = float(state.h0[0, 0])
        fu = state.fu[0]
        s = h0 * fu - ((B0 @ fu) * w0) @ A0  # -H F(u)
        trial = state.u[0] + s
        n = trial.shape[0]
        ft = ctx.F(trial.reshape(1, n))[0]
        ftn = math.sqrt((ft * ft).sum())
        y = ft - fu
        sy, yy = float((s * y).sum()), float((y * y).sum())
        if math.isfinite(sy) and math.isfinite(yy) and sy != 0 and yy > 0 and not w0.any():
            h0 = -sy / yy  # a fresh history: H_0's scale and sign from the first secant pair
        Hy = ((B0 @ y) * w0) @ A0 - h0 * y
        bvec = ((A0 @ s) * w0) @ B0 - h0 * s
        den, hh = float((s * Hy).sum()), float((Hy * Hy).sum())
        # a non-finite Hy makes hh non-finite; a finite Hy whose hh overflows is a bad update either way
        bad = (not (math.isfinite(den) and math.isfinite(hh)) or den == 0 or not xp.all(xp.isfinite(bvec))
               or abs(den) <= alg.reset_tol * math.sqrt(float((s * s).sum())) * math.sqrt(hh))
        accept = math.isfinite(ftn) and ftn <= alg.growth * float(state.fn[0])
        nrej = 0 if accept else int(state.nrej[0]) + 1
        restart = nrej >= alg.max_reject
        pos = state.pos
        if bad or restart:  # a new history (the ring position moves on, as in the generic step)
            A0[pos], B0[pos], w0[:] = (0.0, 0.0, 0.0) if bad else ((s - Hy) / den, bvec, 0.0)
        else:
            A0[pos], B0[pos], w0[pos] = (s - Hy) / den, bvec, 1.0
        if restart:
            h0, nrej = 0.25 * h0, 0
        dt = ctx.dtype
        u, fu, fn = ((trial.reshape(1, n), ft.reshape(1, n), xp.asarray([ftn], dtype=dt)) if accept
                     else (state.u, state.fu, state.fn))
        return BroydenState(u, fu, fn, xp.asarray([[h0]], dtype=dt), state.A, state.Bv, state.w,
                            xp.asarray([nrej], dtype=xp.int32), (pos + 1) % alg.memory, state.nf + 1, state.njvp,
                            state.nvjp, state.nreset + int(bad or restart), state.nreject + int(not accept))
