"""Bracketing methods for :class:`~steadysolve.IntervalNonlinearProblem`: the contract, its shared
pieces, Bisection and Ridder (ITP, the default, and Brent have modules of their own), each written
once against the array API for whole arrays of brackets.

The contract (the driver is ``_engine.bracket``)::

    init(prob, n, p, fn, fp, book, ctx) -> State   # n, p: the ends with f(n) <= 0 <= f(p)
    step(prob, state, ctx) -> State                 # one iteration of every running element
    ends(state) -> (x0, x1, f0, f1)                 # the current bracket, in either order

``State`` is a ``NamedTuple`` whose ``book`` field is a :class:`Book` (per-element return code,
iterations, tolerance, and the step's ``bad`` flag: ``f`` was NaN at the element's new point). A
step evaluates ``f`` once (Ridder: twice) on the whole array, at a point inside the bracket for a
running element and at a point already evaluated for a stopped one (so ``f`` never sees a point
outside the user's brackets), and changes a running element's bracket only with a finite value:
an element whose ``f`` turned NaN keeps its last bracket, and the driver stops it with
``NonFinite``. The driver owns the verdict (``_engine.bracket.judge``), the iteration and the counts.
Nothing here branches in Python on array values: choices are ``where`` (``ctx.select``, a bitwise
blend on NumPy and PyTorch's CPU, where ``where`` branches per entry).

Most methods keep the bracket by sign, ``n`` (``f(n) <= 0``) and ``p`` (``f(p) >= 0``), not by
position: the new point replaces the end of its own sign, the formulas hold for ``n > p`` as for
``n < p``, and a zero of ``f`` closes the bracket on itself (both ends become the root).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, NamedTuple

from ..registry import register
from ..retcodes import RUNNING

__all__ = ["Book", "BracketContext", "BracketingMethod", "SignState", "Bisection", "Ridder", "evaluate",
           "take", "is_running"]

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


def evaluate(ctx, running, x, safe):
    """``f`` at ``x`` for the running elements and at ``safe`` (a point already evaluated) for the
    others; returns ``(y, bad, ok)``: the values, NaN per element, and running with a usable value."""
    xp = ctx.xp
    (at,) = ctx.select(running, [(x, safe)])
    y = ctx.f(at)
    bad = xp.isnan(y) | xp.isnan(x)  # (x is ours and finite by construction: a NaN there would be a bug)
    return y, bad, running & ~bad


def take(ctx, state, x, y, ok):
    """The bracket after ``f(x) = y``: ``x`` replaces the end of its sign (both ends when ``y == 0``)."""
    (n, fn), (p, fp) = ctx.select(ok & (y <= 0), [(x, state.n), (y, state.fn)]), \
        ctx.select(ok & (y >= 0), [(x, state.p), (y, state.fp)])
    return n, p, fn, fp


def is_running(book):
    """Per element: still running."""
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
        running = is_running(state.book)
        x = state.n + 0.5 * (state.p - state.n)
        y, bad, ok = evaluate(ctx, running, x, state.n)
        n, p, fn, fp = take(ctx, state, x, y, ok)
        return SignState(n, p, fn, fp, state.book._replace(bad=bad))


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
        running = is_running(state.book)
        n, p, fn, fp = state.n, state.p, state.fn, state.fp
        half = 0.5 * (p - n)
        mid = n + half
        fm, bad_m, ok_m = evaluate(ctx, running, mid, n)
        # x = mid + (mid - n) sign(fn - fp) fm / sqrt(fm^2 - fn fp), and sign(fn - fp) = -1; the
        # square root is >= |fm|, so x lies between the ends (up to rounding, clipped below)
        x = mid - half * (fm / xp.sqrt(fm * fm - fn * fp))
        x = xp.where(xp.isfinite(x), x, mid)  # f infinite at an end, or 0/0 at a closed bracket
        x = xp.minimum(xp.maximum(x, xp.minimum(n, p)), xp.maximum(n, p))
        y, bad_x, ok = evaluate(ctx, ok_m, x, n)  # ok: running, and both values usable
        bad = bad_m | bad_x
        # the smallest bracket among n, mid, x, p: x replaces the end of its sign, else mid does
        (n1, fn1) = ctx.select(fm <= 0, [(mid, n), (fm, fn)])
        (p1, fp1) = ctx.select(fm >= 0, [(mid, p), (fm, fp)])
        (n2, fn2) = ctx.select(y <= 0, [(x, n1), (y, fn1)])
        (p2, fp2) = ctx.select(y >= 0, [(x, p1), (y, fp1)])
        (n, fn, p, fp) = ctx.select(ok, [(n2, state.n), (fn2, state.fn), (p2, state.p), (fp2, state.fp)])
        return SignState(n, p, fn, fp, state.book._replace(bad=bad))
