"""Anderson acceleration (type II, difference form) with per-element histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Optional

from .. import _backend as backend
from .._backend import combine_rows, rows_dot, set_at, solve_small
from .._backend.fused import minus_combined, rows_dot2, set_row_diff, set_row_step
from ..registry import register
from .._checks import check_int, check_positive
from ..linear.small import spd_solve_unrolled
from .base import Algorithm, residual_scale


_TINY: dict = {}


def _dropping(A, b):
    """The Gram system of the eager step when the library finds it singular (nearly dependent pairs in
    low precision): the unrolled ``LDL^T`` solve, which drops the directions it does not determine."""
    xp = backend.namespace(("A", A))
    return spd_solve_unrolled(xp, A, b[:, :, 0])[:, :, None]
#: under ``jit`` the Gram system is solved by the unrolled ``LDL^T`` up to this memory
UNROLL_MAX = 8


class AndersonState(NamedTuple):
    u: Any
    fu: Any
    r: Any  # alpha * F(u): the fixed-point residual G(u) - u
    alpha: Any  # (B, 1) or None
    # Workspaces (allocated once per solve, written in place; see DESIGN section 3): a ring buffer
    # of m pairs, the newest in slot (k - 1) % m; unused slots are zero.
    dX: Any  # (B, m, n) differences of u + mixing * r (what the step extrapolates)
    dR: Any  # (B, m, n) differences of residuals r (what the least squares fits)
    gram: Any  # (B, m, m) dR dR^T with its diagonal already regularised; identity on unused slots
    rhs: Any  # (B, m) dR r (zero on unused slots)
    k: Any  # number of pairs pushed so far (int, or 0-d array under the JAX driver)
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
    memory
        Number of stored difference pairs (``m >= 1``).
    mixing
        The relaxation ``beta`` in ``(0, 1]``-ish (``1`` = undamped).
    regularization
        Relative Tikhonov weight: each diagonal entry of the Gram matrix
        ``dR dR^T`` is multiplied by ``1 + regularization`` (SciPy's ``anderson`` uses
        ``w0**2 = 1e-4``). Guards against nearly dependent differences.
    alpha
        Residual step scale on non-fixed-point problems (see
        ``FixedPointIteration``); ``None`` picks SciPy's automatic value.

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
        try:
            key = (id(ctx.xp), ctx.dtype)
            tiny = _TINY.get(key)
        except TypeError:  # an unhashable dtype object
            key = (id(ctx.xp), str(ctx.dtype))
            tiny = _TINY.get(key)
        if tiny is None:
            tiny = _TINY[key] = float(ctx.xp.finfo(ctx.dtype).smallest_normal) ** 0.5
        return tiny

    #: state leaves written in place: the driver does not mask them, it calls ``reject`` instead
    workspaces = ("dX", "dR", "gram")

    def reject(self, ctx, ok, state):
        """Drop the pair just pushed for the elements the driver rejected (``ok`` false, ``(B,)``).

        The driver has restored their ``u``, ``r`` and ``rhs``; clearing the one slot of the
        in-place histories (an O(n) write, not a copy of the histories) keeps every element's
        next extrapolation finite, so NaN/Inf never reaches ``F``."""
        xp, m, B = ctx.xp, self.memory, ok.shape[0]
        slot = (state.k - 1) % m
        okc = xp.reshape(ok, (B, 1))
        e = xp.astype(xp.reshape(xp.arange(m, device=backend.device_of(ok)) == slot, (1, m)), state.gram.dtype)
        zero = xp.zeros_like(state.rhs[:, :1])
        ws, ws3 = (slice(None), slot), (slice(None), slot, slice(None))
        dX = set_at(xp, state.dX, ws3, xp.where(okc, state.dX[ws3], zero))
        dR = set_at(xp, state.dR, ws3, xp.where(okc, state.dR[ws3], zero))
        if ctx.traced:  # the next step rebuilds the slot's Gram row from dR (zero)
            return state._replace(dX=dX, dR=dR)
        gram = set_at(xp, state.gram, ws3, xp.where(okc, state.gram[ws3], e))
        gram = set_at(xp, gram, (slice(None), slice(None), slot), xp.where(okc, gram[:, :, slot], e))
        rhs = set_at(xp, state.rhs, ws, xp.where(ok, state.rhs[ws], zero[:, 0]))
        return state._replace(dX=dX, dR=dR, gram=gram, rhs=rhs)

    def init(self, prob, u0, ctx):
        m, xp = self.memory, ctx.xp
        alpha = residual_scale(ctx, u0, ctx.fu0, self.alpha)
        r = ctx.fu0 if alpha is None else alpha * ctx.fu0
        B, n = ctx.batch, ctx.n
        gram = xp.broadcast_to(xp.eye(m, dtype=ctx.dtype, device=ctx.device), (B, m, m))
        gram = gram + ctx.zeros((B, m, m))  # an owned, writable copy
        return AndersonState(
            u=u0, fu=ctx.fu0, r=r, alpha=alpha,
            dX=ctx.zeros((B, m, n)), dR=ctx.zeros((B, m, n)), gram=gram, rhs=ctx.zeros((B, m)),
            k=ctx.counter(0), nf=ctx.counter(1), njvp=ctx.counter(0), nvjp=ctx.counter(0),
        )

    def step(self, prob, state, ctx):
        xp, m, B = ctx.xp, self.memory, ctx.batch
        k, dX, gram = state.k, state.dX, state.gram
        # u_{k+1} = u_k - dU gamma + mixing (r_k - dR gamma) = x_k - dX gamma, x = u + mixing r,
        # gamma solving the regularised normal equations (gram is stored regularised, and its
        # unused slots are identity rows with a zero right-hand side: gamma is zero there).
        x = state.u + (state.r if self.mixing == 1.0 else self.mixing * state.r)
        if not ctx.traced:  # eager: only the leading block of pairs pushed so far (k is a Python int)
            used = min(k, m)
            if used == 0:
                u = x
            else:
                A = gram if used == m else gram[:, :used, :used]
                rhs = state.rhs if used == m else state.rhs[:, :used]
                gamma = solve_small(xp, A, rhs[:, :, None], singular=_dropping)  # (B, used, 1)
                u = minus_combined(xp, x, xp.reshape(gamma, (B, used)), dX if used == m else dX[:, :used, :])
            return self._push(xp, ctx, state, u, k % m)
        return self._step_traced(state, ctx, x)  # traced: the full fixed-size system

    def _push(self, xp, ctx, state, u, slot: int):
        """The eager rest of a step: ``F(u)`` and the new pair in ``slot`` (what the traced branch
        does, with the differences written straight into the histories: ``fused``)."""
        fu = ctx.F(u)
        r = fu if state.alpha is None else state.alpha * fu
        dR, dr = set_row_diff(xp, state.dR, slot, r, state.r)
        dX = set_row_step(xp, state.dX, slot, u, state.u, dr, self.mixing)
        col, rhs = rows_dot2(xp, dR, dr, r)  # (B, m) each: dR_i . dr and dR_i . r
        gram = set_at(xp, state.gram, (slice(None), slot, slice(None)), col)
        gram = set_at(xp, gram, (slice(None), slice(None), slot), col)
        diag = col[:, slot] * (1.0 + self.regularization) + self._tiny(ctx)
        gram = set_at(xp, gram, (slice(None), slot, slot), diag)
        return AndersonState(u, fu, r, state.alpha, dX, dR, gram, rhs, state.k + 1,
                             state.nf + 1, state.njvp, state.nvjp)

    def _step_traced(self, state, ctx, x):
        """The step under the JAX driver (``jit``): the same arithmetic as the eager step, ordered so that
        XLA updates the histories in place without copying them. The Gram row and column of the newest
        pair (slot ``(k - 1) % m``) and the right-hand side ``dR r`` are brought up to date at the start
        of the step, from the histories as the previous step left them: every read of a history then
        precedes, by data dependence, the one in-place write after ``F`` (a read that XLA could not order
        before the write would make it copy the whole history every iteration). So ``gram`` and ``rhs``
        in a traced state lag one pair behind the histories. The Gram system is solved by an unrolled
        ``LDL^T`` (a few fused elementwise kernels instead of LAPACK calls and their pivoting loop)."""
        xp, m, B = ctx.xp, self.memory, ctx.batch
        k, dX, dR = state.k, state.dX, state.dR
        new = (k - 1) % m  # the newest pair's slot (none yet when k == 0)
        on = xp.reshape((xp.arange(m, device=backend.device_of(x)) == new) & (k > 0), (1, m))
        col = rows_dot(xp, dR, dR[:, new, :])  # (B, m): dR_i . dR_new
        rhs = rows_dot(xp, dR, state.r)
        # the newest pair's row and column; the diagonal scaled by 1 + regularization plus the tiny shift
        diag = xp.sum(xp.where(on, col, 0.0), axis=1) * (1.0 + self.regularization) + self._tiny(ctx)
        col = xp.where(on, xp.reshape(diag, (B, 1)), col)
        row, column = xp.reshape(on, (1, m, 1)), xp.reshape(on, (1, 1, m))
        gram = xp.where(row, xp.reshape(col, (B, 1, m)), xp.where(column, xp.reshape(col, (B, m, 1)), state.gram))
        if m <= UNROLL_MAX:
            gamma = spd_solve_unrolled(xp, gram, rhs)  # (B, m)
        else:  # the unrolled solve traces O(m^3) operations: a library solve beyond a handful
            gamma = xp.reshape(solve_small(xp, gram, rhs[:, :, None]), (B, m))
        c = combine_rows(xp, gamma, dX)
        u = x - c
        fu = ctx.F(u)
        r = fu if state.alpha is None else state.alpha * fu
        dr = r - state.r
        # (u - u_k) + mixing dr, without reading u_k after F (XLA would copy it to keep it alive)
        dx = (r if self.mixing == 1.0 else self.mixing * r) - c
        ws3 = (slice(None), k % m, slice(None))
        dX, dR = set_at(xp, dX, ws3, dx), set_at(xp, dR, ws3, dr)
        return AndersonState(u, fu, r, state.alpha, dX, dR, gram, rhs, k + 1,
                             state.nf + 1, state.njvp, state.nvjp)
