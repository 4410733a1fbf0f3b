"""Brent's bracketing method (see ``bracketing`` for the contract)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from ..registry import register
from .bracketing import Book, BracketingMethod, evaluate, is_running

__all__ = ["Brent"]


class BrentState(NamedTuple):
    """Brent's state: ``b`` the best point (``|f(b)| <= |f(c)|``), ``c`` the other end of the bracket,
    ``a`` the previous best point, ``d`` / ``e`` the last two steps."""

    a: Any
    b: Any
    c: Any
    fa: Any
    fb: Any
    fc: Any
    d: Any
    e: Any
    book: Book


@register("brent", kind="bracketing")
@dataclass(frozen=True)
class Brent(BracketingMethod):
    """Brent's method (1973; SciPy's ``brentq``): inverse quadratic or secant interpolation, bisection
    whenever the interpolated step would not shrink the bracket fast enough.

    Superlinear on smooth functions, and at most about ``(log2(width / tol))**2`` evaluations in the
    worst case. Each step moves at least half the tolerance.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: np.cos(x) - x, (np.zeros(1), np.ones(1)))
    >>> sol = ss.solve(prob, "brent")
    >>> sol.u, sol.retcode.name, bool(abs(sol.u[0] - 0.7390851332151607) < 1e-12)
    (array([0.73908513]), 'Success', True)
    """

    def init(self, prob, n, p, fn, fp, book, ctx):
        d = p - n
        return _brent_order(ctx, BrentState(n, p, n, fn, fp, fn, d, d, book), True)

    def ends(self, state):
        return state.b, state.c, state.fb, state.fc

    def step(self, prob, state, ctx):
        xp = ctx.xp
        running = is_running(state.book)
        a, b, c, fa, fb, fc, d, e = state[:8]
        tol1 = 0.5 * state.book.tol
        xm = 0.5 * (c - b)
        # interpolation: secant when a == c (two distinct points), inverse quadratic otherwise;
        # the unused variant may divide by zero: it is discarded by the select
        s = fb / fa
        q_ = fa / fc
        r = fb / fc
        pq, qq = ctx.select(a == c, [(2.0 * xm * s, s * (2.0 * xm * q_ * (q_ - r) - (b - a) * (r - 1.0))),
                                     (1.0 - s, (q_ - 1.0) * (r - 1.0) * (s - 1.0))])
        (qq,) = ctx.select(pq > 0, [(-qq, qq)])
        pq = xp.abs(pq)
        accept = (xp.abs(e) >= tol1) & (xp.abs(fa) > xp.abs(fb)) & \
            (2.0 * pq < xp.minimum(3.0 * xm * qq - xp.abs(tol1 * qq), xp.abs(e * qq)))
        d_new, e_new = ctx.select(accept, [(pq / qq, xm), (d, xm)])
        (step,) = ctx.select(xp.abs(d_new) > tol1, [(d_new, xp.copysign(tol1, xm))])
        x = b + step
        y, bad, ok = evaluate(ctx, running, x, b)
        # a stopped element (or one with a NaN) keeps b, and _brent_order keeps its c: its bracket [b, c] is
        # frozen; a (the previous point) and the steps only feed the interpolation of running ones
        x, y = ctx.select(ok, [(x, b), (y, fb)])
        return _brent_order(ctx, BrentState(b, x, c, fb, y, fc, d_new, e_new, state.book._replace(bad=bad)), ok)


def _brent_order(ctx, st, moved):
    """Restore Brent's invariants where ``b`` ``moved``: the bracket ``[b, c]`` holds a sign change (``c``
    becomes the previous point ``a`` when ``b`` crossed), ``|f(b)| <= |f(c)|`` (swap), and a zero at ``b``
    closes the bracket on it. (Elsewhere the state already holds them, or the element has no sign change
    and keeps its ends.)"""
    xp = ctx.xp
    a, b, c, fa, fb, fc, d, e, book = st
    crossed = ((fb > 0) == (fc > 0)) & moved
    c, fc, d, e = ctx.select(crossed, [(a, c), (fa, fc), (b - a, d), (b - a, e)])
    swap = xp.abs(fc) < xp.abs(fb)
    a, b, c, fa, fb, fc = ctx.select(swap, [(b, a), (c, b), (b, c), (fb, fa), (fc, fb), (fb, fc)])
    zero = fb == 0  # (rare: a plain where)
    return BrentState(a, b, xp.where(zero, b, c), fa, fb, xp.where(zero, fb, fc), d, e, book)
