"""Anderson acceleration (type II, difference form) with per-element histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from ..backend import rows_dot, solve_small
from ..registry import register
from ..checks import check_int, check_positive
from .base import Algorithm, residual_scale


class AndersonState(NamedTuple):
    u: Any
    fu: Any
    r: Any  # alpha * F(u): the fixed-point residual G(u) - u
    alpha: Any  # (B, 1) or None
    dX: Any  # (B, m, n) differences of u + mixing * r (what the step extrapolates), oldest first
    dR: Any  # (B, m, n) differences of residuals r (what the least squares fits), oldest first
    gram: Any  # (B, m, m) dR dR^T, shifted and given one new row/column per step
    rhs: Any  # (B, m) dR r, updated in O(n) per step
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
    ``u_{k+1} = u_k - dU gamma + mixing (r_k - dR gamma)`` (stored as one history of
    differences of ``u + mixing r``, so the step costs one product with the history).
    One evaluation of ``F`` per iteration.

    Parameters
    ----------
    memory : number of stored difference pairs (``m >= 1``).
    mixing : the relaxation ``beta`` in ``(0, 1]``-ish (``1`` = undamped).
    regularization : relative Tikhonov weight: each diagonal entry of the Gram matrix
        ``dR dR^T`` is multiplied by ``1 + regularization`` (SciPy's ``anderson`` uses
        ``w0**2 = 1e-4``). Guards against nearly dependent differences.
    alpha : residual step scale on non-fixed-point problems (see
        :class:`FixedPointIteration`); ``None`` picks SciPy's automatic value.

    Raises
    ------
    ValueError
        An invalid option (``memory < 1``, ``regularization < 0``, ...), at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.FixedPointProblem(lambda u, p: np.cos(u), np.zeros(2))
    >>> sol = ss.solve(prob, ss.Anderson(memory=3), abstol=1e-10)
    >>> sol.retcode.name, np.round(sol.u, 6)
    ('Success', array([0.739085, 0.739085]))
    """

    sign_sensitive = True

    memory: int = 5
    mixing: float = 1.0
    regularization: float = 1e-4
    alpha: Optional[float] = None

    def __post_init__(self):
        check_int("Anderson", "memory", self.memory, 1)
        check_positive("Anderson", "mixing", self.mixing)
        check_positive("Anderson", "regularization", self.regularization, allow_zero=True)
        check_positive("Anderson", "alpha", self.alpha, allow_none=True)

    @staticmethod
    def _tiny(ctx):
        # keeps an all-zero Gram row (a converged or frozen element) solvable
        return float(ctx.xp.finfo(ctx.dtype).smallest_normal) ** 0.5

    def init(self, prob, u0, ctx):
        m = self.memory
        alpha = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        r = ctx.fu0 if alpha is None else alpha * ctx.fu0
        B, n = ctx.batch, ctx.n
        return AndersonState(
            u=u0, fu=ctx.fu0, r=r, alpha=alpha,
            dX=ctx.zeros((B, m, n)), dR=ctx.zeros((B, m, n)), gram=ctx.zeros((B, m, m)), rhs=ctx.zeros((B, m)),
            k=ctx.counter(0), nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0),
        )

    def step(self, prob, state, ctx):
        xp, m, B = ctx.xp, self.memory, ctx.batch
        # Regularised normal equations (each diagonal entry scaled by 1 + regularization, as
        # SciPy's w0**2); unused slots become identity rows with a zero right-hand side.
        diag = xp.linalg.diagonal(state.gram)[:, None, :]  # (B, 1, m)
        if isinstance(state.k, int) and state.k >= m:  # eager and the history is full: no masks
            eye = xp.eye(m, dtype=ctx.dtype, device=ctx.device)
            A = state.gram + eye * (self.regularization * diag + self._tiny(ctx))
            rhs = state.rhs[:, :, None]
        else:
            idx = xp.arange(m, dtype=xp.int32, device=ctx.device)
            valid = idx >= m - state.k  # (m,): the newest min(k, m) pairs sit at the end
            both = valid[:, None] & valid[None, :]
            eye = xp.astype(idx[:, None] == idx[None, :], ctx.dtype)
            A = xp.where(both, state.gram, 0.0) + eye * xp.where(valid, self.regularization * diag + self._tiny(ctx),
                                                                 1.0)
            rhs = xp.where(valid, state.rhs, 0.0)[:, :, None]  # (B, m, 1)
        gamma_t = xp.matrix_transpose(solve_small(xp, A, rhs))  # (B, 1, m)
        # u_{k+1} = u_k - dU gamma + mixing (r_k - dR gamma) = x_k - dX gamma, x = u + mixing r
        x = state.u + (state.r if self.mixing == 1.0 else self.mixing * state.r)
        u = x - xp.reshape(xp.matmul(gamma_t, state.dX), (B, -1))
        fu = ctx.F(u)
        r = fu if state.alpha is None else state.alpha * fu
        # Shift the histories by one (drop the oldest pair, append the new one: a plain copy,
        # several times cheaper than a masked ring-buffer write on PyTorch CPU); the Gram
        # matrix shifts the same way and gains one row/column, the right-hand side dR r
        # too (old pairs: += dR_i . dr; new pair: dr . r).
        dr = r - state.r
        dx = u - state.u + (dr if self.mixing == 1.0 else self.mixing * dr)
        dX = xp.concat([state.dX[:, 1:, :], dx[:, None, :]], axis=1)
        dR = xp.concat([state.dR[:, 1:, :], dr[:, None, :]], axis=1)
        col = rows_dot(xp, dR, dr)  # (B, m): dR_i . dr
        top = xp.concat([state.gram[:, 1:, 1:], col[:, :-1, None]], axis=2)  # (B, m-1, m)
        gram = xp.concat([top, col[:, None, :]], axis=1)
        new_rhs = xp.concat([state.rhs[:, 1:] + col[:, :-1], xp.sum(dr * r, axis=1)[:, None]], axis=1)
        return AndersonState(u, fu, r, state.alpha, dX, dR, gram, new_rhs, state.k + 1,
                             state.nf + 1, state.njvp, state.nvjp)
