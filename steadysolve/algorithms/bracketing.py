"""Bracketing methods for :class:`~steadysolve.IntervalNonlinearProblem`: ITP (the default), Brent,
Bisection and Ridder, each written once against the array API for whole arrays of brackets.

The contract (the driver is ``loop_bracket``)::

    init(prob, n, p, fn, fp, book, ctx) -> State   # n, p: the ends with f(n) <= 0 <= f(p)
    step(prob, state, ctx) -> State                 # one iteration of every running element
    ends(state) -> (x0, x1, f0, f1)                 # the current bracket, in either order

``State`` is a ``NamedTuple`` whose ``book`` field is a :class:`Book` (per-element return code,
iterations, tolerance, and the step's ``bad`` flag: ``f`` was NaN at the element's new point). A
step evaluates ``f`` once (Ridder: twice) on the whole array, at a point inside the bracket for a
running element and at a point already evaluated for a stopped one (so ``f`` never sees a point
outside the user's brackets), and changes a running element's bracket only with a finite value:
an element whose ``f`` turned NaN keeps its last bracket, and the driver stops it with
``NonFinite``. The driver owns the verdict (``loop_bracket.judge``), the iteration and the counts.
Nothing here branches in Python on array values: choices are ``where`` (``ctx.select``, a bitwise
blend on NumPy and PyTorch's CPU, where ``where`` branches per entry).

Most methods keep the bracket by sign, ``n`` (``f(n) <= 0``) and ``p`` (``f(p) >= 0``), not by
position: the new point replaces the end of its own sign, the formulas hold for ``n > p`` as for
``n < p``, and a zero of ``f`` closes the bracket on itself (both ends become the root).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

from ..checks import check_int, check_positive, check_real
from ..registry import register
from ..retcodes import RUNNING

__all__ = ["Book", "BracketContext", "BracketingMethod", "ITP", "Brent", "Bisection", "Ridder"]

_GOLDEN = (1.0 + math.sqrt(5.0)) / 2.0


class Book(NamedTuple):
    """Per element: return code (``RUNNING`` while running), iterations, the tolerance on the bracket's
    width at its current ends, and whether ``f`` was NaN at the last step's new point."""

    code: Any
    niter: Any
    tol: Any
    bad: Any


@dataclass(frozen=True)
class BracketContext:
    """What a bracketing step needs from the solve: the namespace, ``f`` of one argument (``p`` bound),
    the effective tolerances (floats) and ``select(cond, pairs)`` (``fused.select`` on ``xp``)."""

    xp: Any
    f: Callable
    abstol: float
    reltol: float
    select: Callable


class BracketingMethod:
    """Base of the bracketing methods (frozen dataclasses registered under the ``"bracketing"`` kind)."""

    #: resolves only for an IntervalNonlinearProblem (``registry.resolve``)
    bracketing: ClassVar[bool] = True
    #: registered name (set by :func:`steadysolve.registry.register`)
    name: ClassVar[str] = ""
    #: evaluations of ``f`` per iteration (on the whole array)
    evals_per_step: ClassVar[int] = 1

    def init(self, prob, n, p, fn, fp, book, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def step(self, prob, state, ctx):  # pragma: no cover - interface
        raise NotImplementedError

    def ends(self, state):
        return state.n, state.p, state.fn, state.fp


class SignState(NamedTuple):
    """A bracket kept by sign: ``f(n) <= 0 <= f(p)``; ``aux``: the method's own arrays (or None)."""

    n: Any
    p: Any
    fn: Any
    fp: Any
    book: Book
    aux: Any = None


def _evaluate(ctx, running, x, safe):
    """``f`` at ``x`` for the running elements and at ``safe`` (a point already evaluated) for the
    others; returns ``(y, bad, ok)``: the values, NaN per element, and running with a usable value."""
    xp = ctx.xp
    (at,) = ctx.select(running, [(x, safe)])
    y = ctx.f(at)
    bad = xp.isnan(y) | xp.isnan(x)  # (x is ours and finite by construction: a NaN there would be a bug)
    return y, bad, running & ~bad


def _take(ctx, state, x, y, ok):
    """The bracket after ``f(x) = y``: ``x`` replaces the end of its sign (both ends when ``y == 0``)."""
    (n, fn), (p, fp) = ctx.select(ok & (y <= 0), [(x, state.n), (y, state.fn)]), \
        ctx.select(ok & (y >= 0), [(x, state.p), (y, state.fp)])
    return n, p, fn, fp


def _running(book):
    return book.code == RUNNING


@register("bisection", kind="bracketing")
@dataclass(frozen=True)
class Bisection(BracketingMethod):
    """Bisection: the midpoint of the bracket at every iteration.

    Halves the bracket per evaluation whatever ``f`` is (``log2(width / tol)`` iterations): the
    slowest method on smooth functions, the reference on wild ones (a discontinuous or noisy ``f``,
    or one whose values carry no information but their sign).

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: x**3 - 2.0, (np.ones(1), np.full(1, 2.0)))
    >>> sol = ss.solve(prob, "bisection", abstol=1e-9, reltol=0.0)
    >>> np.round(sol.u, 8), sol.stats.niter
    (array([1.25992105]), 30)
    """

    def init(self, prob, n, p, fn, fp, book, ctx):
        return SignState(n, p, fn, fp, book)

    def step(self, prob, state, ctx):
        running = _running(state.book)
        x = state.n + 0.5 * (state.p - state.n)
        y, bad, ok = _evaluate(ctx, running, x, state.n)
        n, p, fn, fp = _take(ctx, state, x, y, ok)
        return SignState(n, p, fn, fp, state.book._replace(bad=bad))


@register("itp", kind="bracketing")
@dataclass(frozen=True)
class ITP(BracketingMethod):
    """ITP, *Interpolate, Truncate and Project* (Oliveira & Takahashi, ACM TOMS 47(1), 2020): the default.

    Each iteration takes the regula falsi point, moves it towards the midpoint by
    ``delta = k1 * width**k2`` (the truncation), and projects it onto an interval around the
    midpoint that shrinks so that no element ever needs more than ``n0`` iterations beyond
    bisection's ``ceil(log2(width0 / (2 eps)))`` (``eps``: half the tolerance at the start). On
    smooth functions it converges superlinearly (order up to ``sqrt(k2)``, per evaluation).

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

    The truncation step is at least half the tolerance (as in Brent's method), so that the last
    iterations do not stall when ``k1 * width**k2`` falls below the rounding of the ends.

    Raises
    ------
    ValueError, TypeError
        An option out of range, at construction.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: x**3 - 2.0, (np.ones(1), np.full(1, 2.0)))
    >>> sol = ss.solve(prob, ss.ITP(n0=2))
    >>> np.round(sol.u, 12), sol.retcode.name, sol.stats.niter < 10
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
        running = _running(state.book)
        x = self._point(ctx.xp, state)
        y, bad, ok = _evaluate(ctx, running, x, state.n)
        n, p, fn, fp = _take(ctx, state, x, y, ok)
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


@register("ridder", kind="bracketing")
@dataclass(frozen=True)
class Ridder(BracketingMethod):
    """Ridders' method (1979): ``f`` at the midpoint, then at the root of the exponential through the
    three points; two evaluations per iteration.

    Converges quadratically per iteration (order ``sqrt(2)`` per evaluation) on smooth functions,
    and the new bracket never exceeds half the old one (the midpoint is one of its candidates), so
    it is never slower than bisection per iteration.

    Examples
    --------
    >>> import numpy as np, steadysolve as ss
    >>> prob = ss.IntervalNonlinearProblem(lambda x, p: np.exp(x) - p, (np.zeros(2), np.full(2, 3.0)),
    ...                                    np.array([2.0, 10.0]))
    >>> sol = ss.solve(prob, "ridder")
    >>> np.allclose(sol.u, np.log([2.0, 10.0]), rtol=1e-14), sol.stats.nf == 2 + 2 * sol.stats.niter
    (True, True)
    """

    evals_per_step: ClassVar[int] = 2

    def init(self, prob, n, p, fn, fp, book, ctx):
        return SignState(n, p, fn, fp, book)

    def step(self, prob, state, ctx):
        xp = ctx.xp
        running = _running(state.book)
        n, p, fn, fp = state.n, state.p, state.fn, state.fp
        half = 0.5 * (p - n)
        mid = n + half
        fm, bad_m, ok_m = _evaluate(ctx, running, mid, n)
        # x = mid + (mid - n) sign(fn - fp) fm / sqrt(fm^2 - fn fp), and sign(fn - fp) = -1; the
        # square root is >= |fm|, so x lies between the ends (up to rounding, clipped below)
        x = mid - half * (fm / xp.sqrt(fm * fm - fn * fp))
        x = xp.where(xp.isfinite(x), x, mid)  # f infinite at an end, or 0/0 at a closed bracket
        x = xp.minimum(xp.maximum(x, xp.minimum(n, p)), xp.maximum(n, p))
        y, bad_x, ok = _evaluate(ctx, ok_m, x, n)  # ok: running, and both values usable
        bad = bad_m | bad_x
        # the smallest bracket among n, mid, x, p: x replaces the end of its sign, else mid does
        (n1, fn1) = ctx.select(fm <= 0, [(mid, n), (fm, fn)])
        (p1, fp1) = ctx.select(fm >= 0, [(mid, p), (fm, fp)])
        (n2, fn2) = ctx.select(y <= 0, [(x, n1), (y, fn1)])
        (p2, fp2) = ctx.select(y >= 0, [(x, p1), (y, fp1)])
        (n, fn, p, fp) = ctx.select(ok, [(n2, state.n), (fn2, state.fn), (p2, state.p), (fp2, state.fp)])
        return SignState(n, p, fn, fp, state.book._replace(bad=bad))


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
    >>> np.round(sol.u, 12), sol.retcode.name
    (array([0.739085133215]), 'Success')
    """

    def init(self, prob, n, p, fn, fp, book, ctx):
        d = p - n
        return _brent_order(ctx, BrentState(n, p, n, fn, fp, fn, d, d, book))

    def ends(self, state):
        return state.b, state.c, state.fb, state.fc

    def step(self, prob, state, ctx):
        xp = ctx.xp
        running = _running(state.book)
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
        y, bad, ok = _evaluate(ctx, running, x, b)
        # a stopped element (or one with a NaN) keeps b: its bracket [b, c] is then unchanged by
        # _brent_order; a (the previous point) and the steps only feed the interpolation of running ones
        x, y = ctx.select(ok, [(x, b), (y, fb)])
        return _brent_order(ctx, BrentState(b, x, c, fb, y, fc, d_new, e_new, state.book._replace(bad=bad)))


def _brent_order(ctx, st):
    """Restore Brent's invariants after ``b`` moved: the bracket ``[b, c]`` holds a sign change (``c`` becomes
    the previous point ``a`` when ``b`` crossed), ``|f(b)| <= |f(c)|`` (swap), and a zero at ``b`` closes
    the bracket on it."""
    xp = ctx.xp
    a, b, c, fa, fb, fc, d, e, book = st
    crossed = (fb > 0) == (fc > 0)
    c, fc, d, e = ctx.select(crossed, [(a, c), (fa, fc), (b - a, d), (b - a, e)])
    swap = xp.abs(fc) < xp.abs(fb)
    a, b, c, fa, fb, fc = ctx.select(swap, [(b, a), (c, b), (b, c), (fb, fa), (fc, fb), (fb, fc)])
    zero = fb == 0  # (rare: a plain where)
    return BrentState(a, b, xp.where(zero, b, c), fa, fb, xp.where(zero, fb, fc), d, e, book)
