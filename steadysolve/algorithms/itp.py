"""ITP, the default bracketing method (see ``bracketing`` for the contract)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .._checks import check_int, check_positive, check_real
from ..registry import register
from .bracketing import BracketingMethod, SignState, evaluate, is_running, take

__all__ = ["ITP"]

_GOLDEN = (1.0 + math.sqrt(5.0)) / 2.0


@register("itp", kind="bracketing")
@dataclass(frozen=True)
class ITP(BracketingMethod):
    """ITP, *Interpolate, Truncate and Project* (Oliveira & Takahashi, ACM TOMS 47(1), 2020): the default.

    Each iteration takes the regula falsi point, moves it towards the midpoint by
    ``delta = kappa_1 * width**k2`` (the truncation), and projects it onto an interval around the
    midpoint that shrinks so that no element ever needs more than ``n0`` iterations beyond
    bisection's ``ceil(log2(width0 / (2 eps)))`` (``eps``: half the tolerance at the start). On
    smooth functions it converges superlinearly (order up to ``sqrt(k2)``, per evaluation). The
    truncation step is at least half the tolerance (as in Brent's method), so that the last
    iterations do not stall when ``kappa_1 * width**k2`` falls below the rounding of the ends.

    Parameters
    ----------
    k1 : float
        Truncation size, scale-free: the paper's ``kappa_1`` is ``k1 * width0 ** (1 - k2)`` per
        element, ``width0`` the initial bracket's width (default 0.2: NonlinearSolve.jl's
        ``scaled_k1``, the paper's ``0.2 / (b - a)`` for ``k2 = 2``). ``> 0``.
    k2 : float
        Truncation exponent, ``1 <= k2 < 1 + golden ratio`` (default 2).
    n0 : int
        Slack: iterations allowed beyond bisection's count, ``>= 0`` (default 10, NonlinearSolve.jl's;
        with 0 the worst case is bisection's, and the interpolation has little room to pay off).

    Raises
    ------
    ValueError, TypeError
        An option out of range, at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: x**3 - 2.0, (np.ones(1), np.full(1, 2.0)))
    >>> sol = ss.solve(prob, ss.ITP(n0=2))
    >>> sol.u, sol.retcode.name, sol.stats.niter < 10
    (array([1.25992105]), 'Success', True)
    """

    k1: float = 0.2
    k2: float = 2.0
    n0: int = 10

    def __post_init__(self):
        check_positive("ITP", "k1", self.k1)
        k2 = check_real("ITP", "k2", self.k2)
        if not 1.0 <= k2 < 1.0 + _GOLDEN:
            raise ValueError(f"ITP: k2 must be in [1, 1 + golden ratio) = [1, {1.0 + _GOLDEN:.6f}), got {self.k2!r}")
        check_int("ITP", "n0", self.n0, 0)

    def init(self, prob, n, p, fn, fp, book, ctx):
        xp = ctx.xp
        w0 = xp.abs(p - n)
        # eps: half the tolerance at the start, at the smaller end's magnitude (0 when the bracket
        # holds 0, where the relative part cannot help), as the paper's fixed epsilon
        straddle = (n < 0) != (p < 0)
        m0 = xp.where(straddle, 0.0, xp.minimum(xp.abs(n), xp.abs(p)))
        eps = 0.5 * (ctx.abstol + ctx.reltol * m0)
        # s = eps * 2**(n_half + n0), with n_half = ceil(log2(w0 / (2 eps))), computed without
        # overflowing 2**n_half: w0/2 times 2**(the rounding-up of the logarithm) times 2**n0
        lg = xp.maximum(xp.log2(w0) - xp.log2(2.0 * eps), 0.0)  # (a difference: w0 / eps may overflow)
        s = (2.0 ** self.n0) * (0.5 * w0) * (2.0 ** (xp.ceil(lg) - lg))
        # delta = kappa_1 width**k2, kappa_1 = k1 width0**(1 - k2): for k2 = 2 kappa_1 itself (finite, as
        # width0 is at least the smallest normal number for a running element), else k1 width0 times
        # (width / width0)**k2, which cannot overflow
        c = self.k1 / w0 if self.k2 == 2.0 else self.k1 * w0
        return SignState(n, p, fn, fp, book, (s, c, w0))

    def step(self, prob, state, ctx):
        running = is_running(state.book)
        x = self._point(ctx.xp, state)
        y, bad, ok = evaluate(ctx, running, x, state.n)
        n, p, fn, fp = take(ctx, state, x, y, ok)
        s, c, w0 = state.aux
        return SignState(n, p, fn, fp, state.book._replace(bad=bad), (0.5 * s, c, w0))  # (s: stopped ones unused)

    def _point(self, xp, state):
        """The ITP point of every bracket. Written for few live temporaries (each freed as soon as it
        is used, augmented assignments on our own temporaries, a rebinding on JAX): NumPy's and
        PyTorch's allocator return the freed top of the heap to the system, and fresh pages cost a
        fault each when touched again."""
        n, p, fn, fp = state.n, state.p, state.fn, state.fp
        s, c, w0 = state.aux
        d = p - n
        t = fn / (fn - fp)  # regula falsi, as a fraction of d from n (fn <= 0 <= fp: in [0, 1])
        t = xp.where(xp.isnan(t), 0.5, t)  # f infinite at n (or 0 at both ends: a closed bracket)
        to_mid = 0.5 - t  # from the regula falsi point to the midpoint
        del t
        to_mid *= d
        w = xp.abs(d)
        mid = 0.5 * d
        del d
        mid += state.n
        if self.k2 == 2.0:
            delta = w * w
        else:
            delta = w / w0
            if self.k2 != 1.0:
                delta = delta ** self.k2
        delta *= c
        delta = xp.maximum(delta, 0.5 * state.book.tol)
        r = -0.5 * w  # the projection's radius around the midpoint
        del w
        r += s
        # truncation: the regula falsi point moved towards the midpoint by delta (the midpoint if
        # closer), at distance gap from it; projection: at most r from the midpoint (min / max, no select)
        gap = xp.abs(to_mid)
        gap -= delta
        del delta
        gap = xp.minimum(xp.maximum(gap, 0.0), xp.maximum(r, 0.0))
        del r
        mid -= xp.copysign(gap, to_mid)
        return mid
