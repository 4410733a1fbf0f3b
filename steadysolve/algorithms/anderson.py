"""Anderson acceleration (type II, difference form) with per-element histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..registry import register
from .base import Algorithm, check_int, check_positive, residual_scale


class AndersonState(NamedTuple):
    u: Any
    fu: Any
    r: Any  # alpha * F(u): the fixed-point residual G(u) - u
    alpha: Any  # (B, 1) or None
    dU: Any  # (B, m, n) differences of iterates
    dR: Any  # (B, m, n) differences of residuals r
    gram: Any  # (B, m, m) dR dR^T, updated one row/column per step
    k: Any  # 0-d: number of pairs pushed so far
    nf: Any
    njvp: Any
    nvjp: Any


@register("anderson")
@dataclass(frozen=True)
class Anderson(Algorithm):
    """Anderson acceleration of the fixed-point map ``G(u) = u + alpha F(u)``.

    Each step solves the small regularised least-squares problem
    ``min_gamma ||r_k - dR gamma||`` through its normal equations (a batched
    ``(B, m, m)`` solve, ``m = memory``) and moves to
    ``u_{k+1} = u_k - dU gamma + mixing (r_k - dR gamma)``.
    One evaluation of ``F`` per iteration.

    Parameters
    ----------
    memory : number of stored difference pairs (``m >= 1``).
    mixing : the relaxation ``beta`` in ``(0, 1]``-ish (``1`` = undamped).
    regularization : Tikhonov weight relative to the largest diagonal entry of the
        Gram matrix; ``None`` uses ``sqrt(eps)`` of the working dtype.
    alpha : residual step scale on non-fixed-point problems (see
        :class:`FixedPointIteration`); ``None`` picks SciPy's automatic value.
    """

    memory: int = 5
    mixing: float = 1.0
    regularization: Optional[float] = None
    alpha: Optional[float] = None

    def __post_init__(self):
        check_int("Anderson", "memory", self.memory, 1)
        check_positive("Anderson", "mixing", self.mixing)
        check_positive("Anderson", "regularization", self.regularization, allow_zero=True, allow_none=True)
        check_positive("Anderson", "alpha", self.alpha, allow_none=True)

    def init(self, prob, u0, ctx):
        xp, m = ctx.xp, self.memory
        alpha = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        r = ctx.fu0 if alpha is None else alpha * ctx.fu0
        B, n = ctx.batch, ctx.n
        return AndersonState(
            u=u0, fu=ctx.fu0, r=r, alpha=alpha,
            dU=ctx.zeros((B, m, n)), dR=ctx.zeros((B, m, n)), gram=ctx.zeros((B, m, m)),
            k=ctx.counter(0), nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0),
        )

    def step(self, prob, state, ctx):
        xp, m, B = ctx.xp, self.memory, ctx.batch
        reg = self.regularization
        if reg is None:
            reg = float(xp.finfo(ctx.dtype).eps) ** 0.5
        idx = xp.arange(m, dtype=xp.int32, device=ctx.device)
        valid = idx < state.k  # (m,)
        both = valid[:, None] & valid[None, :]
        eye = idx[:, None] == idx[None, :]
        # Regularised normal equations; unused slots become identity rows with zero rhs.
        diag_max = xp.max(xp.where(valid, xp.linalg.diagonal(state.gram), 0.0), axis=-1)
        lam = reg * diag_max + float(xp.finfo(ctx.dtype).smallest_normal) ** 0.5
        A = xp.where(both, state.gram, 0.0) + xp.astype(eye, ctx.dtype) * xp.where(
            valid, xp.reshape(lam, (B, 1, 1)), 1.0)
        rhs = xp.matmul(state.dR, state.r[:, :, None])  # (B, m, 1)
        rhs = xp.where(valid[:, None], rhs, 0.0)
        gamma_t = xp.matrix_transpose(xp.linalg.solve(A, rhs))  # (B, 1, m)
        du_hist = xp.reshape(xp.matmul(gamma_t, state.dU), (B, -1))
        dr_hist = xp.reshape(xp.matmul(gamma_t, state.dR), (B, -1))
        r_bar = state.r - dr_hist
        u = state.u - du_hist + (r_bar if self.mixing == 1.0 else self.mixing * r_bar)
        fu = ctx.F(u)
        r = fu if state.alpha is None else state.alpha * fu
        # Push the new difference pair into slot k mod m and update that Gram row/column.
        slot = idx == (state.k % m)
        dU = xp.where(slot[:, None], (u - state.u)[:, None, :], state.dU)
        dR = xp.where(slot[:, None], (r - state.r)[:, None, :], state.dR)
        col = xp.matmul(dR, (r - state.r)[:, :, None])  # (B, m, 1)
        gram = xp.where(slot[:, None], xp.matrix_transpose(col), state.gram)
        gram = xp.where(slot[None, :], col, gram)
        return AndersonState(u, fu, r, state.alpha, dU, dR, gram, state.k + 1,
                             state.nf + 1, state.njvp, state.nvjp)
