"""Norms, the convergence test and the per-element verdict of every iteration.

Inside the solvers every array is 2-D, ``(batch, n)``; norms reduce over axis 1 and return
one value per batch element.

Safe termination
----------------
The test is SciML's: success when ``norm(F) <= abstol`` or ``norm(F) <= reltol * norm(u)``.
The relative half alone would call a *runaway* a root: on a problem without one the iterate
may grow without bound while the residual stays put, until ``reltol * norm(u)`` overtakes it
(``arctan(u) + 2``, ``du/dt = 1``). So, per element, with ``u0`` and ``F0`` the start:

* the iterate has *grown* when ``norm(u) > RUNAWAY_GROWTH * max(norm(u0), 1)``; the residual
  has *dropped* when ``norm(F) <= RUNAWAY_DROP * norm(F0)``;
* the relative test counts only if the iterate has not grown or the residual has dropped
  (a genuine root far from the start, say at 1e8 from 0, shrinks the residual by many
  orders of magnitude on the way);
* an element that has grown without its residual dropping stops with ``Diverged`` when the
  relative test would have passed, when its residual has also grown by ``RUNAWAY_GROWTH``,
  or when its iterate passes ``HUGE_GROWTH`` times its start or the square root of the
  largest float (no success is possible up there: the residual is lost in cancellation);
* ``Diverged`` also when the residual grows by ``DIVERGENCE_FACTOR`` over its start.

The verdict (:func:`judge`) is written against a small namespace ``ns`` so that the eager
driver runs it on host scalars or NumPy (after the iteration's one device-to-host transfer)
and the JAX driver in ``jax.numpy`` inside ``lax.while_loop``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

from .checks import suggest
from .retcodes import RUNNING, ReturnCode

__all__ = ["get_norm", "converged", "NORMS", "default_tolerance", "Book", "Verdict", "start", "judge", "judge_host",
           "ScalarBook",
           "SCALARS", "array_namespace", "HOST_NORMS", "DIVERGENCE_FACTOR", "RUNAWAY_GROWTH", "RUNAWAY_DROP", "HUGE_GROWTH"]

DIVERGENCE_FACTOR = 1e10
RUNAWAY_GROWTH = 1e2
RUNAWAY_DROP = 1e-3
HUGE_GROWTH = 1e12

_SUCCESS = ReturnCode.Success.code
_NONFINITE = ReturnCode.NonFinite.code
_DIVERGED = ReturnCode.Diverged.code
_STALLED = ReturnCode.Stalled.code


def max_norm(xp, x):
    return xp.max(xp.abs(x), axis=1)


def l2_norm(xp, x):
    return xp.sqrt(xp.sum(x * x, axis=1))


def rms_norm(xp, x):
    return xp.sqrt(xp.mean(x * x, axis=1))


NORMS: dict[str, Callable] = {"max": max_norm, "inf": max_norm, "l2": l2_norm, "rms": rms_norm}


def _host_max(x) -> float:
    return float(abs(x).max())


def _host_l2(x) -> float:
    x = x.reshape(-1)
    return math.sqrt(float(x @ x))


def _host_rms(x) -> float:
    x = x.reshape(-1)
    return math.sqrt(float(x @ x) / x.size)


#: the built-in norms of one host (NumPy) row as a Python float, in two or three ndarray methods
#: (the unbatched eager driver's per-iteration norms: no wrapper layers, no 1-element arrays)
HOST_NORMS: dict[Callable, Callable] = {max_norm: _host_max, l2_norm: _host_l2, rms_norm: _host_rms}


def get_norm(norm) -> Callable:
    """Resolve ``norm`` into ``f(xp, x2d) -> per-row norms``.

    ``norm`` is one of ``"max"`` (alias ``"inf"``), ``"l2"``, ``"rms"``, or a callable
    ``norm(x)`` that maps a 2-D array ``(batch, n)`` to its per-row norms ``(batch,)``.
    """
    if callable(norm):
        def user_norm(xp, x):
            return norm(x)

        user_norm.user = True
        return user_norm
    if isinstance(norm, str) and norm in NORMS:
        return NORMS[norm]
    close = suggest(str(norm), list(NORMS))
    hint = f" (did you mean {close!r}?)" if close else ""
    raise ValueError(f"unknown norm {norm!r}{hint}; valid norms: 'max', 'l2', 'rms' or a callable")


def default_tolerance(xp, dtype) -> float:
    """SciML's default, ``eps ** (4/5)`` of the working precision (3e-13 in float64, 3e-6 in float32)."""
    return float(xp.finfo(dtype).eps) ** 0.8


def converged(fnorm, unorm, abstol: float, reltol: float):
    """The plain test, per element: ``norm(resid) <= abstol`` or ``norm(resid) <= reltol * norm(u)``."""
    return (fnorm <= abstol) | (fnorm <= reltol * unorm)


# ---------------------------------------------------------------------------------------
# The per-element verdict
# ---------------------------------------------------------------------------------------

class Book(NamedTuple):
    """The per-element bookkeeping of a solve, in namespace ``ns``."""

    codes: Any  # RUNNING until the element stops, then a ReturnCode code
    best_norm: Any  # smallest residual norm seen
    since_best: Any  # iterations since the best one (for Stalled)
    niter_el: Any  # iterations the element took part in
    fnorm0: Any  # residual norm at the start (floored)
    uscale0: Any  # max(norm(u0), 1)


class Verdict(NamedTuple):
    ok: Any  # take the new state (active, finite, not flagged)
    improved: Any  # take the new iterate as the best one
    finite: Any  # the new residual and iterate norms are finite


class _Scalars:
    """The namespace functions the verdict uses, on Python scalars (unbatched eager solves:
    cheaper than NumPy calls on 1-element arrays)."""

    isfinite = staticmethod(math.isfinite)
    maximum = staticmethod(max)
    logical_not = staticmethod(lambda x: not x)

    @staticmethod
    def where(c, a, b):
        return a if c else b

    @staticmethod
    def as_codes(x):
        return int(x)

    @staticmethod
    def zeros_like_int(x):
        return 0


SCALARS = _Scalars


def array_namespace(mod):
    """The namespace functions the verdict uses, from an array module (NumPy or jax.numpy)."""

    class _NS:
        isfinite = staticmethod(mod.isfinite)
        maximum = staticmethod(mod.maximum)
        logical_not = staticmethod(mod.logical_not)
        where = staticmethod(mod.where)

        @staticmethod
        def as_codes(x):
            return x.astype(mod.int32)

        @staticmethod
        def zeros_like_int(x):
            return mod.zeros(x.shape, dtype=mod.int32)

    return _NS


def start(ns, fn, un, abstol, reltol) -> Book:
    """The book after ``init``: elements already converged (plain test) stop with ``Success``."""
    finite = ns.isfinite(fn) & ns.isfinite(un)
    conv = finite & converged(fn, un, abstol, reltol)
    codes = ns.as_codes(ns.where(conv, _SUCCESS, ns.where(finite, RUNNING, _NONFINITE)))
    best = ns.where(finite, fn, math.inf)
    fnorm0 = ns.maximum(best, max(abstol, 1e-300))
    uscale0 = ns.maximum(ns.where(finite, un, 1.0), 1.0)
    zeros = ns.zeros_like_int(fn)
    return Book(codes, best, zeros, zeros, fnorm0, uscale0)


def judge(ns, fn, un, flag, book: Book, abstol, reltol, patience, huge) -> tuple:
    """Classify every element after a step (``huge``: the largest meaningful ``norm(u)``)."""
    active = book.codes == RUNNING
    finite = ns.isfinite(fn) & ns.isfinite(un)
    grown = un > RUNAWAY_GROWTH * book.uscale0
    dropped = fn <= RUNAWAY_DROP * book.fnorm0
    runaway = grown & ns.logical_not(dropped)
    relative = fn <= reltol * un
    sane = un <= huge
    conv = active & finite & sane & ((fn <= abstol) | (relative & ns.logical_not(runaway)))
    if flag is None:
        ok = active & finite
    else:
        flagged = flag != 0
        ok = active & finite & (conv | ns.logical_not(flagged))
    improved = ok & ((fn < book.best_norm) | conv)
    since_best = ns.where(improved, 0, book.since_best + 1)
    new = ns.where(finite, RUNNING, _NONFINITE)
    if flag is not None:
        new = ns.where(finite & flagged, flag, new)
    diverged = (fn > DIVERGENCE_FACTOR * book.fnorm0) | ns.logical_not(sane) | (
        runaway & (relative | (fn > RUNAWAY_GROWTH * book.fnorm0) | (un > HUGE_GROWTH * book.uscale0)))
    new = ns.where(ok & diverged, _DIVERGED, new)
    if patience is not None:
        new = ns.where(ok & (since_best >= patience), _STALLED, new)
    new = ns.where(conv, _SUCCESS, new)
    codes = ns.where(active, new, book.codes)
    book = Book(
        codes=ns.as_codes(codes),
        best_norm=ns.where(improved, fn, book.best_norm),
        since_best=since_best,
        niter_el=book.niter_el + active,
        fnorm0=book.fnorm0,
        uscale0=book.uscale0,
    )
    return book, Verdict(ok, improved, finite)


_HOST_NS: dict = {}


def judge_host(np, fn, un, flag, book: Book, abstol, reltol, patience, huge) -> tuple:
    """:func:`judge` on NumPy host arrays (the eager batched driver), the rare verdicts screened out
    first: when every element is finite, sane, not grown, below the divergence threshold, short of
    ``patience`` and unflagged (no flag, or all zero), only convergence and improvement can change, and
    the verdict is the same as :func:`judge`'s in half the array calls (microseconds each, cold)."""
    plain = ((flag is None or not flag.any()) and np.isfinite(fn).all() and np.isfinite(un).all()
             and un.max() <= huge
             and (un <= RUNAWAY_GROWTH * book.uscale0).all() and (fn <= DIVERGENCE_FACTOR * book.fnorm0).all()
             and (patience is None or book.since_best.max() < patience - 1))
    if not plain:
        ns = _HOST_NS.get(np) or _HOST_NS.setdefault(np, array_namespace(np))
        return judge(ns, fn, un, flag, book, abstol, reltol, patience, huge)
    active = book.codes == RUNNING
    conv = active & ((fn <= abstol) | (fn <= reltol * un))
    improved = active & ((fn < book.best_norm) | conv)
    book = Book(codes=np.where(conv, _SUCCESS, book.codes).astype(np.int32),
                best_norm=np.where(improved, fn, book.best_norm), since_best=np.where(improved, 0, book.since_best + 1),
                niter_el=book.niter_el + active, fnorm0=book.fnorm0, uscale0=book.uscale0)
    return book, Verdict(active, improved, np.ones_like(active))


class ScalarBook:
    """The :class:`Book` of one element on Python floats (the unbatched eager driver), updated in
    place by :meth:`judge`: the decisions of :func:`judge`, spelled as plain branches (well under a
    microsecond instead of tens of array calls)."""

    __slots__ = ("codes", "best_norm", "since_best", "niter_el", "fnorm0", "uscale0", "_opts")

    def __init__(self, book: Book, abstol, reltol, patience, huge):
        self.codes, self.best_norm, self.since_best, self.niter_el, self.fnorm0, self.uscale0 = book
        self._opts = (abstol, reltol, patience, huge)

    def judge(self, fn: float, un: float, flag) -> tuple:
        """Classify the element after a step: ``(ok, improved)`` (see :class:`Verdict`)."""
        self.since_best += 1
        if self.codes != RUNNING:  # stopped earlier: nothing changes but the counter above
            return False, False
        self.niter_el += 1
        if not (math.isfinite(fn) and math.isfinite(un)):
            self.codes = _NONFINITE
            return False, False
        abstol, reltol, patience, huge = self._opts
        fnorm0, uscale0 = self.fnorm0, self.uscale0
        runaway = un > RUNAWAY_GROWTH * uscale0 and not fn <= RUNAWAY_DROP * fnorm0
        relative = fn <= reltol * un
        sane = un <= huge
        conv = sane and (fn <= abstol or (relative and not runaway))
        flagged = flag is not None and flag != 0
        ok = conv or not flagged
        improved = ok and (conv or fn < self.best_norm)
        if improved:
            self.since_best, self.best_norm = 0, fn
        new = flag if flagged else RUNNING
        if conv:
            new = _SUCCESS
        elif ok:
            if (fn > DIVERGENCE_FACTOR * fnorm0 or not sane
                    or (runaway and (relative or fn > RUNAWAY_GROWTH * fnorm0 or un > HUGE_GROWTH * uscale0))):
                new = _DIVERGED
            if patience is not None and self.since_best >= patience:
                new = _STALLED
        self.codes = new
        return ok, improved
