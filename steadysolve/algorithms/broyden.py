"""Limited-memory "good" Broyden on the inverse Jacobian, per-element histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..backend import combine_rows, rows_dot
from ..registry import register
from ..checks import check_int, check_positive
from .base import Algorithm, residual_scale


class BroydenState(NamedTuple):
    u: Any
    fu: Any
    h0: Any  # (B, 1) initial inverse Jacobian is -h0 * I
    A: Any  # (B, m, n) update vectors a_i
    Bv: Any  # (B, m, n) update vectors b_i:  H = -h0 I + sum_i a_i b_i^T
    k: Any  # (B,) int32: updates since the last reset (ring position = k % m)
    nf: Any
    njvp: Any
    nvjp: Any
    nreset: Any  # 0-d: history resets after a bad update


@register("broyden")
@dataclass(frozen=True)
class Broyden(Algorithm):
    """Broyden's good method with a limited-memory inverse Jacobian.

    ``H_k ~ J^{-1}`` is kept as ``H_0 + sum_i a_i b_i^T`` (``H_0 = -alpha I``) and
    updated so that the secant condition ``H_{k+1} y_k = s_k`` holds
    (``s = u_{k+1} - u_k``, ``y = F_{k+1} - F_k``)::

        H_{k+1} = H_k + (s - H_k y) s^T H_k / (s^T H_k y)

    Each step is ``u <- u - H F(u)``: one evaluation of ``F``, ``O(m n)`` work.
    Histories are per batch element. When the memory is full the oldest pair is
    overwritten. A *bad update* (``|s^T H y|`` tiny relative to ``||s|| ||H y||``,
    or a non-finite value) resets that element's history to ``H_0`` instead of
    producing NaN.

    Parameters
    ----------
    memory : number of rank-one updates kept (``>= 1``).
    alpha : ``H_0 = -alpha I``; ``None``: 1 for a FixedPointProblem (the first step
        is ``u <- g(u)``), otherwise SciPy's ``0.5 max(||u0||, 1) / ||F(u0)||``.
    reset_tol : a denominator ``|s^T H y| <= reset_tol * ||s|| ||H y||`` is a bad update.

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

    memory: int = 30
    alpha: Optional[float] = None
    reset_tol: float = 1e-10

    def __post_init__(self):
        check_int("Broyden", "memory", self.memory, 1)
        check_positive("Broyden", "alpha", self.alpha, allow_none=True)
        check_positive("Broyden", "reset_tol", self.reset_tol, allow_zero=True)

    def init(self, prob, u0, ctx):
        xp, B, n, m = ctx.xp, ctx.batch, ctx.n, self.memory
        h0 = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        if h0 is None:
            h0 = xp.ones((B, 1), dtype=ctx.dtype, device=ctx.device)
        return BroydenState(u0, ctx.fu0, h0, ctx.zeros((B, m, n)), ctx.zeros((B, m, n)),
                            xp.zeros((B,), dtype=xp.int32, device=ctx.device),
                            ctx.counter(1), ctx.counter(0), ctx.counter(0), ctx.counter(0))

    @staticmethod
    def apply_inverse(xp, state, v):
        """``H v`` for ``v`` of shape ``(B, n)``."""
        return -state.h0 * v + combine_rows(xp, rows_dot(xp, state.Bv, v), state.A)

    @staticmethod
    def apply_inverse_t(xp, state, v):
        """``H^T v``."""
        return -state.h0 * v + combine_rows(xp, rows_dot(xp, state.A, v), state.Bv)

    def step(self, prob, state, ctx):
        xp, B, m = ctx.xp, ctx.batch, self.memory
        s = -self.apply_inverse(xp, state, state.fu)
        u = state.u + s
        fu = ctx.F(u)
        y = fu - state.fu
        Hy = self.apply_inverse(xp, state, y)
        bvec = self.apply_inverse_t(xp, state, s)
        den = xp.sum(s * Hy, axis=1)
        sn = xp.sqrt(xp.sum(s * s, axis=1))
        hn = xp.sqrt(xp.sum(Hy * Hy, axis=1))
        finite = xp.isfinite(den) & xp.all(xp.isfinite(bvec), axis=1) & xp.all(xp.isfinite(Hy), axis=1)
        bad = ~finite | (xp.abs(den) <= self.reset_tol * sn * hn) | (den == 0)
        one = xp.ones_like(den)
        a = (s - Hy) / xp.reshape(xp.where(bad, one, den), (B, 1))
        idx = xp.arange(m, dtype=xp.int32, device=ctx.device)
        slot = xp.reshape(idx, (1, m)) == xp.reshape(state.k % m, (B, 1))  # (B, m)
        slot3 = xp.reshape(slot, (B, m, 1))
        A = xp.where(slot3, xp.reshape(a, (B, 1, -1)), state.A)
        Bv = xp.where(slot3, xp.reshape(bvec, (B, 1, -1)), state.Bv)
        badr = xp.reshape(bad, (B, 1, 1))
        A = xp.where(badr, xp.zeros_like(A), A)
        Bv = xp.where(badr, xp.zeros_like(Bv), Bv)
        k = xp.where(bad, xp.zeros_like(state.k), state.k + 1)
        nreset = state.nreset + xp.astype(xp.sum(xp.astype(bad, xp.int32)), xp.int32)
        return BroydenState(u, fu, state.h0, A, Bv, k, state.nf + 1, state.njvp, state.nvjp, nreset)

    def extra_stats(self, state) -> dict:
        return {"nreset": state.nreset}
