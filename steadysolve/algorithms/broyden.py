"""Limited-memory "good" Broyden on the inverse Jacobian, per-element histories, with a
nonmonotone acceptance test and restarts (its globalisation)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .. import _backend as backend
from .._backend import combine_rows, l2, rows_dot
from ..registry import register
from .._checks import check_int, check_positive
from .base import Algorithm, residual_scale


class BroydenState(NamedTuple):
    u: Any
    fu: Any
    fn: Any  # (B,) ||F(u)||_2
    h0: Any  # (B, 1) initial inverse Jacobian is -h0 * I
    A: Any  # (B, m, n) update vectors a_i (ring buffer, slot ``pos`` written next)
    Bv: Any  # (B, m, n) update vectors b_i:  H = -h0 I + sum_i w_i a_i b_i^T
    w: Any  # (B, m) 1 for the slots that belong to the element's current history, else 0
    nrej: Any  # (B,) int32: rejected trials in a row
    pos: Any  # 0-d: ring position (shared by the batch; per-element resets clear ``w``)
    nf: Any
    njvp: Any
    nvjp: Any
    nreset: Any  # 0-d: history resets (bad update, or too many rejected trials)
    nreject: Any  # 0-d: rejected trial points


@register("broyden")
@dataclass(frozen=True)
class Broyden(Algorithm):
    """Broyden's good method with a limited-memory inverse Jacobian and a globalisation.

    ``H_k ~ J^{-1}`` is kept as ``H_0 + sum_i a_i b_i^T`` (``H_0 = -alpha I``) and
    updated so that the secant condition ``H_{k+1} y_k = s_k`` holds
    (``s`` the trial step, ``y = F(u + s) - F(u)``)::

        H_{k+1} = H_k + (s - H_k y) s^T H_k / (s^T H_k y)

    Each iteration evaluates ``F`` once, at the trial point ``u - H F(u)``: ``O(m n)`` work.
    *Globalisation*: the trial is accepted when ``||F||_2`` does not grow beyond
    ``growth`` times the current value (non-finite never); a rejected trial keeps ``u`` but
    its secant pair still updates ``H`` (it is as valid as an accepted one), so the
    method learns the Jacobian instead of running away (e.g. when ``H_0`` has the wrong
    sign). The first pair after a (re)start sets ``H_0 = (s^T y / y^T y) I`` (scale and sign
    of the Jacobian's inverse along ``s``). After ``max_reject`` rejections in a row the
    element's history is reset and its ``H_0`` divided by 4. A *bad update* (``|s^T H y|`` tiny relative to
    ``||s|| ||H y||``, or a non-finite value) also resets the history instead of
    producing NaN. Histories are per batch element, in a ring buffer written in place
    (the oldest pair is overwritten when the memory is full).

    Parameters
    ----------
    memory
        Number of rank-one updates kept (``>= 1``, default 60: on a linear system the
        method terminates in at most ``2 n`` updates, so ``n <= 30`` keeps that property).
    alpha
        ``H_0 = -alpha I``; ``None``: 1 for a FixedPointProblem (the first step
        is ``u <- g(u)``), otherwise SciPy's ``0.5 max(||u0||, 1) / ||F(u0)||``.
    reset_tol
        A denominator ``|s^T H y| <= reset_tol * ||s|| ||H y||`` is a bad update.
    growth
        Largest accepted ratio ``||F(trial)|| / ||F(u)||`` (default 2; ``inf``: accept all).
    max_reject
        Rejected trials in a row before a restart (default 10).

    Raises
    ------
    ValueError
        An invalid option (``memory < 1``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.FixedPointProblem(lambda u, p: np.tanh(p @ u + 1.0), np.zeros(3), 0.2 * np.eye(3))
    >>> sol = ss.solve(prob, ss.Broyden(memory=10), abstol=1e-10)
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([0.822501, 0.822501, 0.822501]))
    """

    memory: int = 60
    alpha: Optional[float] = None
    reset_tol: float = 1e-10
    growth: float = 2.0
    max_reject: int = 10

    def __post_init__(self):
        check_int("Broyden", "memory", self.memory, 1)
        check_positive("Broyden", "alpha", self.alpha, allow_none=True)
        check_positive("Broyden", "reset_tol", self.reset_tol, allow_zero=True)
        check_positive("Broyden", "growth", self.growth, allow_inf=True)
        if self.growth < 1:
            raise ValueError(f"Broyden: growth must be >= 1, got {self.growth!r}")
        check_int("Broyden", "max_reject", self.max_reject, 1)

    def init(self, prob, u0, ctx):
        xp, B, n, m = ctx.xp, ctx.batch, ctx.n, self.memory
        h0 = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        if h0 is None:
            h0 = xp.ones((B, 1), dtype=ctx.dtype, device=ctx.device)
        fu = ctx.fu0
        return BroydenState(u0, fu, l2(xp, fu), h0, ctx.zeros((B, m, n)),
                            ctx.zeros((B, m, n)), ctx.zeros((B, m)),
                            xp.zeros((B,), dtype=xp.int32, device=ctx.device), ctx.counter(0),
                            ctx.counter(1), ctx.counter(0), ctx.counter(0), ctx.counter(0), ctx.counter(0))

    @staticmethod
    def apply_inverse(xp, state, v):
        """``H v`` for ``v`` of shape ``(B, n)``."""
        return -state.h0 * v + combine_rows(xp, rows_dot(xp, state.Bv, v) * state.w, state.A)

    @staticmethod
    def apply_inverse_t(xp, state, v):
        """``H^T v``."""
        return -state.h0 * v + combine_rows(xp, rows_dot(xp, state.A, v) * state.w, state.Bv)

    def step(self, prob, state, ctx):
        xp, B, m = ctx.xp, ctx.batch, self.memory
        s = -self.apply_inverse(xp, state, state.fu)
        trial = state.u + s
        ft = ctx.F(trial)
        ftn = l2(xp, ft)
        y = ft - state.fu
        # a fresh history takes the scale (and sign) of H_0 from the first secant pair (s.y / y.y)
        sy, yy = xp.sum(s * y, axis=1), xp.sum(y * y, axis=1)
        fresh = (xp.sum(state.w, axis=1) == 0) & xp.isfinite(sy) & xp.isfinite(yy) & (sy != 0) & (yy > 0)
        h0 = xp.where(xp.reshape(fresh, (B, 1)), xp.reshape(-sy / xp.where(yy > 0, yy, 1.0), (B, 1)), state.h0)
        state = state._replace(h0=h0)
        Hy = self.apply_inverse(xp, state, y)
        bvec = self.apply_inverse_t(xp, state, s)
        den = xp.sum(s * Hy, axis=1)
        snhn = l2(xp, s) * l2(xp, Hy)
        finite = xp.isfinite(den) & xp.all(xp.isfinite(bvec), axis=1) & xp.all(xp.isfinite(Hy), axis=1)
        bad = ~finite | (xp.abs(den) <= self.reset_tol * snhn) | (den == 0)
        accept = xp.isfinite(ftn) & (ftn <= self.growth * state.fn)
        nrej = xp.where(accept, 0, state.nrej + 1)
        restart = nrej >= self.max_reject
        reset = bad | restart
        b1 = xp.reshape(bad, (B, 1))
        a = xp.where(b1, 0.0, (s - Hy) / xp.reshape(xp.where(bad, 1.0, den), (B, 1)))
        pos = state.pos
        A = backend.set_at(xp, state.A, (slice(None), pos, slice(None)), a)
        Bv = backend.set_at(xp, state.Bv, (slice(None), pos, slice(None)), xp.where(b1, 0.0, bvec))
        w = backend.set_at(xp, state.w, (slice(None), pos), 1.0)
        w = xp.where(xp.reshape(reset, (B, 1)), 0.0, w)
        h0 = xp.where(xp.reshape(restart, (B, 1)), 0.25 * state.h0, state.h0)
        nrej = xp.where(restart, 0, nrej)
        ab = xp.reshape(accept, (B, 1))
        u = xp.where(ab, trial, state.u)
        fu = xp.where(ab, ft, state.fu)
        fn = xp.where(accept, ftn, state.fn)
        nreset = state.nreset + xp.astype(xp.sum(xp.astype(reset, xp.int32)), xp.int32)
        nreject = state.nreject + xp.astype(xp.sum(xp.astype(~accept, xp.int32)), xp.int32)
        return BroydenState(u, fu, fn, h0, A, Bv, w, nrej, (pos + 1) % m, state.nf + 1, state.njvp, state.nvjp,
                            nreset, nreject)

    def for_iterations(self, maxiters: int) -> "Broyden":
        # each iteration writes one slot of the ring: with at most ``maxiters`` of them no pair is ever
        # overwritten, so a ring of ``maxiters`` slots gives the same iterates, and every product with
        # the history (six per iteration) runs over fewer slots
        if maxiters >= self.memory:
            return self
        return dataclasses.replace(self, memory=max(1, int(maxiters)))

    def extra_stats(self, state) -> dict:
        return {"nreset": state.nreset, "nreject": state.nreject}
