"""The drivers: one eager Python loop and one ``jax.lax.while_loop``, over the same init/step.

The driver owns iteration, termination, ``maxiters``, the non-finite check, the
per-element freeze, the best iterate and the counters. Algorithms never loop
over iterations themselves.

Per element (``(B,)`` arrays) the driver keeps ``codes`` (``RUNNING`` = -1 until
the element stops, then a ``ReturnCode`` code), ``best_norm``, ``since_best``
(for ``Stalled``) and ``niter`` (iterations the element took part in). One
function, :func:`_judge`, decides all of them after every step; it is written
against a namespace ``ns`` so that the eager driver runs it in NumPy on the host
(after the one device-to-host transfer of the iteration: the residual and
iterate norms, and the step's ``flag``), and the JAX driver runs it in ``jnp``
inside the loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import math

import numpy as np

from . import backend
from .solution import RUNNING, ReturnCode
from .termination import converged

__all__ = ["run", "DriverResult", "DIVERGENCE_FACTOR"]

DIVERGENCE_FACTOR = 1e10

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code
_NONFINITE = ReturnCode.NonFinite.code
_DIVERGED = ReturnCode.Diverged.code
_STALLED = ReturnCode.Stalled.code


class DriverResult(NamedTuple):
    u: Any  # (B, n) best iterate
    fu: Any  # (B, n) residual at u
    codes: Any  # (B,) int codes
    niter: Any  # int, or 0-d array under JAX tracing
    niter_el: Any  # (B,)
    state: Any  # the final algorithm state (for the counters)
    trace: Any  # (niter + 1, B) residual norms, or None


class _Book(NamedTuple):
    """The per-element bookkeeping, in namespace ``ns``."""

    codes: Any
    best_norm: Any
    since_best: Any
    niter_el: Any
    fnorm0: Any


class _Verdict(NamedTuple):
    ok: Any  # take the new state (active, finite, not flagged)
    improved: Any  # take the new iterate as the best one
    finite: Any  # the new residual and iterate norms are finite


def _tree_where(xp, mask, new, old):
    """Per-element select over an algorithm state: 0-d leaves are global and taken from ``new``."""
    if hasattr(new, "_fields"):
        return type(new)(*(_tree_where(xp, mask, a, b) for a, b in zip(new, old)))
    if isinstance(new, (tuple, list)):
        return type(new)(_tree_where(xp, mask, a, b) for a, b in zip(new, old))
    if new is None or not hasattr(new, "ndim") or new.ndim == 0:
        return new
    m = xp.reshape(mask, (mask.shape[0],) + (1,) * (new.ndim - 1))
    return xp.where(m, new, old)


class _Scalars:
    """The few namespace functions :func:`_judge` uses, on Python scalars (unbatched eager solves:
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


def _array_ns(mod):
    """The functions :func:`_judge` uses, from an array module (NumPy on the host, or jax.numpy)."""

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


_NumPy = _array_ns(np)


def _jax_ns():
    import jax.numpy as jnp

    return _array_ns(jnp)


def _start(ns, fn, un, abstol, reltol) -> _Book:
    finite = ns.isfinite(fn) & ns.isfinite(un)
    conv = finite & converged(fn, un, abstol, reltol)
    codes = ns.as_codes(ns.where(conv, _SUCCESS, ns.where(finite, RUNNING, _NONFINITE)))
    best = ns.where(finite, fn, math.inf)
    fnorm0 = ns.maximum(best, max(abstol, 1e-300))
    zeros = ns.zeros_like_int(fn)
    return _Book(codes, best, zeros, zeros, fnorm0)


def _judge(ns, fn, un, flag, book: _Book, abstol, reltol, patience):
    """Classify every element after a step; returns the new book and what to take."""
    active = book.codes == RUNNING
    finite = ns.isfinite(fn) & ns.isfinite(un)
    conv = active & finite & converged(fn, un, abstol, reltol)
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
    new = ns.where(ok & (fn > DIVERGENCE_FACTOR * book.fnorm0), _DIVERGED, new)
    if patience is not None:
        new = ns.where(ok & (since_best >= patience), _STALLED, new)
    new = ns.where(conv, _SUCCESS, new)
    codes = ns.where(active, new, book.codes)
    book = _Book(
        codes=ns.as_codes(codes),
        best_norm=ns.where(improved, fn, book.best_norm),
        since_best=since_best,
        niter_el=book.niter_el + active,
        fnorm0=book.fnorm0,
    )
    return book, _Verdict(ok, improved, finite)


def run(alg, prob, ctx, u0, *, maxiters: int, store_trace: bool, callback, use_jax: bool,
        to_user=None) -> DriverResult:
    if use_jax:
        return _run_jax(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace)
    return _run_eager(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace,
                      callback=callback, to_user=to_user)


def _host_norms(xp, ctx, state, scalar):
    """Residual norm, iterate norm (and the step's flag) per element, moved to the host at once."""
    parts = [ctx.norm(state.fu), ctx.norm(state.u)]
    flag = getattr(state, "flag", None)
    if flag is not None:
        parts.append(xp.astype(flag, ctx.dtype))
    host = backend.to_numpy(xp, xp.stack(parts))
    if scalar:
        return float(host[0, 0]), float(host[1, 0]), (int(host[2, 0]) if flag is not None else None)
    host = host.astype(np.float64)
    return host[0], host[1], (host[2].astype(np.int32) if flag is not None else None)


def _all(x):
    return x if isinstance(x, bool) else bool(x.all())


def _any(x):
    return x if isinstance(x, bool) else bool(x.any())


def _device_mask(xp, ctx, mask):
    return xp.asarray(np.asarray(mask).reshape(-1).tolist(), dtype=xp.bool, device=ctx.device)


def _eager_step(alg, prob, ctx):
    """``state -> alg.step(prob, state, ctx)``; with concrete JAX arrays and an algorithm that asks
    for it (``compile_jax``), compiled once per solve (falling back to op-by-op execution when
    the user's function cannot be traced)."""

    def plain(state):
        return alg.step(prob, state, ctx)

    if not (backend.is_jax(ctx.xp) and getattr(alg, "compile_jax", False)):
        return plain
    import jax

    compiled = jax.jit(plain)
    failed = []
    errors = (jax.errors.ConcretizationTypeError, jax.errors.TracerArrayConversionError,
              jax.errors.TracerBoolConversionError, jax.errors.TracerIntegerConversionError)

    def step(state):
        if not failed:
            try:
                return compiled(state)
            except errors:
                failed.append(True)
        return plain(state)

    return step


def _run_eager(alg, prob, ctx, u0, *, maxiters, store_trace, callback, to_user):
    xp, B = ctx.xp, ctx.batch
    scalar = B == 1
    ns = _Scalars if scalar else _NumPy
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    freeze = alg.freeze_converged
    state = alg.init(prob, u0, ctx)
    step = _eager_step(alg, prob, ctx)
    fn, un, _ = _host_norms(xp, ctx, state, scalar)
    book = _start(ns, fn, un, abstol, reltol)
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    it = 0
    while it < maxiters and _any(book.codes == RUNNING):
        new = step(state)
        it += 1
        fn, un, flag = _host_norms(xp, ctx, new, scalar)  # the one device sync of the iteration
        book, v = _judge(ns, fn, un, flag, book, abstol, reltol, patience)
        # Elements that have converged ride along with the batch (their reported iterate is the
        # frozen best one, and masking the whole algorithm state every iteration would cost more
        # than the batched step itself); an element that stopped for any other reason keeps its
        # last good state, so that NaN/Inf never reaches f again (as does a converged element
        # whose ride-along iterate turns non-finite).
        take = v.ok if scalar or freeze else v.ok | ((book.codes == _SUCCESS) & v.finite)
        if _all(take):
            state = new
        elif not scalar:  # an unbatched element that is not ok has stopped: keep the old state
            state = _tree_where(xp, _device_mask(xp, ctx, take), new, state)
        if _all(v.improved):
            best_u, best_fu = new.u, new.fu
        elif _any(v.improved):
            m = _device_mask(xp, ctx, v.improved)
            best_u = _tree_where(xp, m, new.u, best_u)
            best_fu = _tree_where(xp, m, new.fu, best_fu)
        if store_trace:
            trace.append(ns.where(v.ok, fn, trace[-1]))
        if callback is not None:
            u_cb, fn_cb = state.u, fn
            if not scalar and not freeze:  # converged elements ride along: report their frozen answer
                done = book.codes == _SUCCESS
                if _any(done):
                    u_cb = _tree_where(xp, _device_mask(xp, ctx, ~done), state.u, best_u)
                    fn_cb = np.where(done, book.best_norm, fn)
            callback(it, to_user(u_cb) if to_user else u_cb, fn_cb)
    codes = np.where(np.asarray(book.codes) == RUNNING, _MAXITERS, book.codes).astype(np.int32).reshape(-1)
    tr = np.asarray(trace, dtype=np.float64).reshape(len(trace), B) if store_trace else None
    niter_el = np.asarray(book.niter_el, dtype=np.int64).reshape(-1)
    return DriverResult(best_u, best_fu, codes.tolist(), it, niter_el, state, tr)


def _run_jax(alg, prob, ctx, u0, *, maxiters, store_trace):
    import jax
    import jax.numpy as jnp

    xp = ctx.xp
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    state = alg.init(prob, u0, ctx)
    fn = ctx.norm(state.fu)
    jns = _jax_ns()
    book = _start(jns, fn, ctx.norm(state.u), abstol, reltol)
    if store_trace:
        trace = jnp.full((maxiters + 1,) + fn.shape, jnp.nan, dtype=fn.dtype).at[0].set(fn)
    else:
        trace = None
    carry = (state, book, state.u, state.fu, jnp.asarray(0, dtype=jnp.int32), trace)

    def cond(c):
        return jnp.any(c[1].codes == RUNNING) & (c[4] < maxiters)

    def body(c):
        state, book, best_u, best_fu, it, trace = c
        new = alg.step(prob, state, ctx)
        fn = ctx.norm(new.fu)
        book, v = _judge(jns, fn, ctx.norm(new.u), getattr(new, "flag", None), book, abstol, reltol, patience)
        state = _tree_where(xp, v.ok, new, state)
        best_u = _tree_where(xp, v.improved, new.u, best_u)
        best_fu = _tree_where(xp, v.improved, new.fu, best_fu)
        if trace is not None:
            trace = trace.at[it + 1].set(jnp.where(v.ok, fn, trace[it]))
        return (state, book, best_u, best_fu, it + 1, trace)

    state, book, best_u, best_fu, it, trace = jax.lax.while_loop(cond, body, carry)
    codes = jnp.where(book.codes == RUNNING, _MAXITERS, book.codes)
    return DriverResult(best_u, best_fu, codes, it, book.niter_el, state, trace)
