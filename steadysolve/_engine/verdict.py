"""The per-element verdict of every iteration: what ``Success`` means, written once.

``Success`` means a root: per element, the residual is within ``abstol``, or within ``reltol``
times a scale that cannot run away with the iterate. SciML's relative test
``norm(F) <= reltol * norm(u)`` alone would call a *runaway* a root: on a problem without one the
iterate can grow without bound while the residual flattens to a floor (``exp(u) + 1e-4``,
``arctan(u) + 2``), until ``reltol * norm(u)`` overtakes it. So the relative scale is:

* for a ``FixedPointProblem`` (residual ``g(u) - u``, a DEQ) the iterate itself, as torchdeq and
  SciML measure it, but capped: ``min(norm(u), RUNAWAY_GROWTH * uscale0)`` with ``uscale0`` the
  larger of ``norm(u0)``, ``norm(g(u0))`` and 1 (a genuine fixed point has the scale of the map's
  values, and the cap keeps an iterate that ran away from buying a looser test);
* for the other problems the size of ``F``'s terms at ``u``, ``terms = norm(J_F(u) (s * u))`` with ``s`` a
  fixed pseudo-random sign per unknown (:func:`terms_norm`): at a root
  the terms of ``F`` that depend on ``u`` cancel its constant part, so they have the size of what
  cancelled (``F = u - 1e8``: ``1e8``; ``F = atan(u - 1e8)``: ``1e8``, where rounding makes ``abstol``
  unreachable), while on a residual floor they vanish with the residual's slope
  (``exp(u) + 1e-4`` as ``u -> -inf``: ``|u| e^u -> 0``; ``atan(u) + 2``: ``|u| / (1 + u^2) -> 0``).
  The signs keep the terms of *different* unknowns from cancelling inside one component (the stencil
  of a discretised Laplacian applied to a smooth ``u`` nearly cancels, ``J u ~ norm(u)``, while every
  term has the size ``norm(u) / h^2`` and rounds at ``eps norm(u) / h^2``): with random signs the
  measurement is the root-sum-square size of the terms, the scale at which ``F`` rounds; for a
  diagonal Jacobian (one unknown per component) it equals ``norm(J_F(u) u)``.
  It costs one JVP, so the driver computes it only for elements that pass the cheap screen
  ``norm(F) <= reltol * max(norm(u), norm(F(u0)))`` and not ``abstol``, or that are about to end
  ``Stalled`` on a residual floor (:func:`wants_terms`):
  once at the end of a converging solve, never on a solve that meets ``abstol``, and after a
  refusal only once the residual has halved. An iterate that grew (below) and passes SciML's test
  while the size of its terms refuses it is ``Diverged`` (a residual floor far out).

A residual below the rounding level ``eps * norm(u)`` at an iterate where that level exceeds every
residual measured before is no measurement and never ``Success`` (a map with no fixed point whose
``g(z) - z`` rounds to zero far out). And a residual counts only if it was resolved: an iterate that *grew* (``norm(u) >
RUNAWAY_GROWTH * uscale0``) is a *runaway* unless its residual *dropped* measurably below the
start's (``max(norm(F), eps * norm(u)) <= max(RUNAWAY_DROP * norm(F(u0)), abstol)``: ``eps *
norm(u)`` is the rounding level of a residual at ``u``, so a residual that is exactly zero only
because ``g(u) - u`` rounds to zero at a huge ``u`` does not count as a drop). A runaway is never
``Success``; it ends ``Diverged`` once SciML's test would have passed, once its residual also grew
by ``RUNAWAY_GROWTH``, or once its iterate passed ``HUGE_GROWTH`` times its start or the square
root of the largest float. ``Diverged`` also when the residual grows by ``DIVERGENCE_FACTOR``.
The scales (``norm(F(u0))``, ``uscale0``) are those of the solve's start: the attempts of a chain
(:class:`~steadysolve.Auto`) are judged against the original start, not their restart point.

The verdict (:func:`start`, :func:`judge`) is written once against a small namespace ``ns`` and
used by every driver: on Python floats (one eager system), on NumPy host arrays (an eager batch,
after the iteration's one device-to-host transfer) and in ``jax.numpy`` inside ``lax.while_loop``.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple, Optional

from ..retcodes import RUNNING, ReturnCode

__all__ = ["Book", "Verdict", "Tolerances", "start", "settle", "judge", "wants_terms", "SCALARS", "array_namespace",
           "DIVERGENCE_FACTOR", "RUNAWAY_GROWTH", "RUNAWAY_DROP", "HUGE_GROWTH", "tolerances",
           "terms_norm", "huge_norm", "precision"]

DIVERGENCE_FACTOR = 1e10
RUNAWAY_GROWTH = 1e2
RUNAWAY_DROP = 1e-3
HUGE_GROWTH = 1e12
#: after the size of F's terms refused the relative test, it is measured again once the residual
#: is below this fraction of the refused one
RECHECK = 0.5
#: steps in a row without a new best residual after which a residual floor's terms are measured
STUCK = 3

_SUCCESS = ReturnCode.Success.code
_NONFINITE = ReturnCode.NonFinite.code
_DIVERGED = ReturnCode.Diverged.code
_STALLED = ReturnCode.Stalled.code


class Tolerances(NamedTuple):
    """What the verdict needs besides the per-element book: fixed for a solve."""

    abstol: float
    reltol: float
    patience: Optional[int]  # iterations without a new best residual before Stalled (None: never)
    huge: float  # the largest meaningful norm(u): beyond it residuals are lost in cancellation
    eps: float  # the working precision (the rounding level of a residual is eps * norm(u))
    fixed_point: bool  # relative to the (capped) iterate; else relative to the size of F's terms
    floors: bool = True  # measure the terms on a residual floor (not for least squares: a floor is its minimum)


class Book(NamedTuple):
    """The per-element bookkeeping of a solve, in namespace ``ns``."""

    codes: Any  # RUNNING until the element stops, then a ReturnCode code
    best_norm: Any  # smallest residual norm seen
    since_best: Any  # iterations since the best one (for Stalled)
    niter_el: Any  # iterations the element took part in
    fnorm0: Any  # residual norm at the start (floored)
    uscale0: Any  # max(norm(u0), 1), and norm(g(u0)) for a fixed-point map
    checked: Any  # the residual norm at which the size of F's terms last refused the relative test (inf)


class Verdict(NamedTuple):
    ok: Any  # take the new state (active, finite, not flagged)
    improved: Any  # take the new iterate as the best one
    finite: Any  # the new residual and iterate norms are finite


class _Scalars:
    """The namespace functions the verdict uses, on Python scalars (one eager system: cheaper than
    array calls on 1-element arrays)."""

    isfinite = staticmethod(math.isfinite)
    maximum = staticmethod(max)
    minimum = staticmethod(min)
    logical_not = staticmethod(operator.not_)

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
        minimum = staticmethod(mod.minimum)
        logical_not = staticmethod(mod.logical_not)
        where = staticmethod(mod.where)

        @staticmethod
        def as_codes(x):
            return x.astype(mod.int32)

        @staticmethod
        def zeros_like_int(x):
            return mod.zeros(x.shape, dtype=mod.int32)

    return _NS


def _runaway(ns, fn, un, book: Book, tol: Tolerances):
    """The iterate grew from its start while its residual did not drop measurably."""
    grown = un > RUNAWAY_GROWTH * book.uscale0
    resolved = ns.maximum(fn, tol.eps * un)  # a residual below the rounding level at u is not a measurement
    dropped = resolved <= ns.maximum(RUNAWAY_DROP * book.fnorm0, tol.abstol)
    return grown & ns.logical_not(dropped)


def _converged(ns, fn, un, book: Book, tol: Tolerances, terms, unresolved):
    """The success test (finiteness and the runaway screen aside; ``unresolved``: :func:`_unresolved`):
    see the module notes."""
    if tol.fixed_point:
        relative = fn <= tol.reltol * ns.minimum(un, RUNAWAY_GROWTH * book.uscale0)
    else:
        # terms: 0 where the driver did not measure them; a product that overflowed measured nothing
        relative = (fn <= tol.reltol * terms) & ns.isfinite(terms)
    return ((fn <= tol.abstol) | relative) & ns.logical_not(unresolved)


def _unresolved(fn, un, book: Book, tol: Tolerances):
    """A residual below the rounding level ``eps * norm(u)`` of an iterate whose rounding level exceeds
    every residual measured before: no measurement (``g(z) - z`` rounds to 0 far out, where nothing
    smaller than what was already seen can be resolved). Neither a root nor a new best iterate."""
    level = tol.eps * un
    return (fn < level) & (level > book.best_norm)


def wants_terms(ns, fn, un, book: Book, tol: Tolerances, runaway=None, flag=None):
    """The elements whose relative test needs ``terms`` (:func:`terms_norm`; see the module notes):
    running, finite, not within ``abstol``, not a runaway, and within the cheap screen
    ``reltol * max(norm(u), norm(F(u0)))`` or on a residual floor (below). Always false for a
    fixed-point map. ``runaway``: :func:`_runaway` when the caller has it; ``flag``: the step's
    per-element failure code (a flagged step would end the solve)."""
    if tol.fixed_point or tol.reltol <= 0:
        return None
    # measured again only once the residual has halved since the last refusal
    fresh = (fn > tol.abstol) & (fn < RECHECK * book.checked)
    screen = fresh & (fn <= tol.reltol * ns.maximum(un, book.fnorm0))
    # and where the residual sits on a floor: STUCK steps in a row without a new best once it fell by
    # RUNAWAY_DROP, or a step that ends the solve otherwise (out of patience, or flagged by the algorithm:
    # a line search that found no decrease). A floor above the screen may be the rounding level of an F
    # whose terms are much larger than u (a discretised Laplacian's u / h^2)
    if tol.floors:
        flat = fn >= book.best_norm
        screen = screen | (fresh & flat & (book.since_best + 1 >= STUCK) & (fn <= RUNAWAY_DROP * book.fnorm0))
        if tol.patience is not None:
            screen = screen | (fresh & flat & (book.since_best + 1 >= tol.patience))
        if flag is not None:
            screen = screen | (fresh & (flag != 0))
    return ((book.codes == RUNNING) & ns.isfinite(fn) & ns.isfinite(un) & (un <= tol.huge) & screen
            & ns.logical_not(_runaway(ns, fn, un, book, tol) if runaway is None else runaway))


def start(ns, fn, un, tol: Tolerances, *, gn=None, scales=None) -> Book:
    """The book of a solve's start (codes ``RUNNING``, or ``NonFinite``); :func:`settle` then stops the
    elements that are converged already. ``gn``: ``norm(g(u0))`` (a fixed-point map); ``scales =
    (fnorm0, uscale0)``: the start's scales of an earlier attempt (a chain judges every attempt
    against the original start)."""
    finite = ns.isfinite(fn) & ns.isfinite(un)
    if scales is None:
        fnorm0 = ns.maximum(ns.where(finite, fn, math.inf), max(tol.abstol, 1e-300))
        uscale0 = ns.maximum(ns.where(finite, un, 1.0), 1.0)
        if gn is not None:
            uscale0 = ns.maximum(uscale0, ns.where(ns.isfinite(gn), gn, 1.0))
    else:
        fnorm0, uscale0 = scales
    zeros = ns.zeros_like_int(fn)
    codes = ns.as_codes(ns.where(finite, RUNNING, _NONFINITE))
    return Book(codes, ns.where(finite, fn, math.inf), zeros, zeros, fnorm0, uscale0, ns.where(finite, math.inf, math.inf))


def settle(ns, fn, un, book: Book, tol: Tolerances, terms=0.0) -> Book:
    """The start's book with the elements that already meet the test stopped with ``Success``."""
    fresh = book._replace(best_norm=math.inf)  # nothing was measured before the start
    conv = ((book.codes == RUNNING) & (un <= tol.huge) & ns.logical_not(_runaway(ns, fn, un, book, tol))
            & _converged(ns, fn, un, fresh, tol, terms, _unresolved(fn, un, fresh, tol)))
    return book._replace(codes=ns.as_codes(ns.where(conv, _SUCCESS, book.codes)))


def judge(ns, fn, un, flag, book: Book, tol: Tolerances, terms=0.0) -> tuple:
    """Classify every element after a step: ``(book, Verdict)``. ``flag``: the step's per-element
    failure code (0: none) or None; ``terms``: :func:`terms_norm` where :func:`wants_terms` asked
    for it (0 elsewhere)."""
    active = book.codes == RUNNING
    finite = ns.isfinite(fn) & ns.isfinite(un)
    runaway = _runaway(ns, fn, un, book, tol)
    sane = un <= tol.huge
    unresolved = _unresolved(fn, un, book, tol)
    conv = active & finite & sane & ns.logical_not(runaway) & _converged(ns, fn, un, book, tol, terms, unresolved)
    want = wants_terms(ns, fn, un, book, tol, runaway, flag)
    refused = None if want is None else want & ns.logical_not(conv)
    if flag is None:
        ok = active & finite
    else:
        flagged = flag != 0
        ok = active & finite & (conv | ns.logical_not(flagged))
    improved = ok & (((fn < book.best_norm) & ns.logical_not(unresolved)) | conv)
    since_best = ns.where(improved, 0, book.since_best + 1)
    new = ns.where(finite, RUNNING, _NONFINITE)
    if flag is not None:
        new = ns.where(finite & flagged, flag, new)
    # a runaway ends Diverged once SciML's relative test would have called it a root
    diverged = (fn > DIVERGENCE_FACTOR * book.fnorm0) | ns.logical_not(sane) | (runaway & (
        (fn <= tol.reltol * un) | (fn > RUNAWAY_GROWTH * book.fnorm0) | (un > HUGE_GROWTH * book.uscale0)))
    if refused is not None:  # far out, SciML's test passes and the size of F's terms refuses it: a floor
        diverged = diverged | (refused & (un > RUNAWAY_GROWTH * book.uscale0) & (fn <= tol.reltol * un))
    new = ns.where(ok & diverged, _DIVERGED, new)
    if tol.patience is not None:
        new = ns.where(ok & (since_best >= tol.patience), _STALLED, new)
    new = ns.where(conv, _SUCCESS, new)
    book = Book(
        codes=ns.as_codes(ns.where(active, new, book.codes)),
        best_norm=ns.where(improved, fn, book.best_norm),
        since_best=since_best,
        niter_el=book.niter_el + active,
        fnorm0=book.fnorm0,
        uscale0=book.uscale0,
        checked=book.checked if refused is None else ns.where(refused, fn, book.checked),
    )
    return book, Verdict(ok, improved, finite)


def tolerances(alg, ctx) -> Tolerances:
    """The verdict's fixed inputs for a solve by ``alg`` under ``ctx``."""
    return Tolerances(ctx.abstol, ctx.reltol, alg.stall_patience, huge_norm(ctx.xp, ctx.dtype),
                      precision(ctx.xp, ctx.dtype), ctx.kind == "fixed_point", ctx.kind != "least_squares")


def terms_norm(ctx, alg, state):
    """``(norm(J(u) (s * u)) per row, evaluations of f)``: the size of the residual's terms that depend on
    ``u`` (``s``: :func:`term_signs`), by one JVP of the algorithm's residual (``Algorithm.residual_jvp``)."""
    u = state.u
    jv, nf = alg.residual_jvp(ctx, state, u * term_signs(ctx.xp, u))
    return ctx.norm(jv), nf


def term_signs(xp, u):
    """A fixed pseudo-random +-1 per unknown of a row of ``u`` (the same for every row and every solve,
    so that the verdict is deterministic), in ``u``'s library, dtype and device."""
    from .. import _backend as backend

    shape = tuple(u.shape[1:])
    key = (shape, type(u), str(u.dtype), str(backend.device_of(u)))
    signs = _SIGNS.get(key)
    if signs is None:
        import numpy as np

        host = np.random.default_rng(20261207).integers(0, 2, size=shape) * 2.0 - 1.0
        signs = xp.asarray(host, dtype=u.dtype, device=backend.device_of(u))
        if not backend.is_traced(signs):
            _SIGNS[key] = signs
    return signs


_SIGNS: dict = {}


def huge_norm(xp, dtype) -> float:
    """The largest meaningful iterate norm: beyond it residuals are lost in cancellation."""
    return 1e-2 * _finfo(xp, dtype, "max")


def precision(xp, dtype) -> float:
    """``eps`` of ``dtype`` as a Python float."""
    return _finfo(xp, dtype, "eps")


def _finfo(xp, dtype, field: str) -> float:
    """``xp.finfo(dtype).<field>`` as a Python float, cached per dtype. The key leads with the dtype's
    type: dtypes of different libraries may hash alike, and comparing them is undefined by the standard
    (array_api_strict warns), so a lookup must never get as far as ``==`` between two libraries' dtypes."""
    key = (type(dtype), dtype, field)
    try:
        return _FINFO[key]
    except KeyError:
        value = _FINFO[key] = float(getattr(xp.finfo(dtype), field))
        return value
    except TypeError:  # an unhashable dtype object
        return float(getattr(xp.finfo(dtype), field))


_FINFO: dict = {}
