"""The drivers: one eager Python loop and one ``jax.lax.while_loop``, over the same init/step.

The driver owns iteration, termination, ``maxiters``, the non-finite check, the
per-element freeze, the best iterate and the counters. Algorithms never loop
over iterations themselves.

Per-element bookkeeping (all ``(B,)`` arrays): ``codes`` (``RUNNING`` = -1 until
an element stops, then a ``ReturnCode`` code), ``best_norm``, ``since_best`` (for
``Stalled``), ``niter`` (iterations each element took part in).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from . import backend
from .solution import RUNNING, ReturnCode
from .termination import converged

__all__ = ["run", "DriverResult"]

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


class _Step(NamedTuple):
    """What one iteration decides, computed identically by both drivers."""

    ok: Any  # active and finite and not flagged: take the new state
    improved: Any  # take the new iterate as the best one
    codes: Any
    since_best: Any
    niter_el: Any
    fnorm: Any


def _judge(xp, ctx, alg, new, codes, best_norm, since_best, niter_el, fnorm0):
    """Classify every element after a step (no host sync)."""
    active = codes == RUNNING
    fn = ctx.norm(new.fu)
    un = ctx.norm(new.u)
    finite = xp.isfinite(fn) & xp.isfinite(un)
    flag = getattr(new, "flag", None)
    flagged = (flag != 0) if flag is not None else xp.zeros_like(active)
    conv = active & finite & converged(fn, un, ctx.abstol, ctx.reltol)
    ok = active & finite & (conv | ~flagged)
    improved = ok & ((fn < best_norm) | conv)
    one = xp.ones_like(since_best)
    since_best = xp.where(improved, xp.zeros_like(since_best), since_best + one)
    running = xp.full_like(codes, RUNNING)
    new_codes = xp.where(active & ~finite, xp.full_like(codes, _NONFINITE), running)
    if flag is not None:
        new_codes = xp.where(active & finite & flagged & ~conv, xp.astype(flag, codes.dtype), new_codes)
    diverged = ok & ~conv & (fn > DIVERGENCE_FACTOR * fnorm0)
    new_codes = xp.where(diverged, xp.full_like(codes, _DIVERGED), new_codes)
    if alg.stall_patience is not None:
        stalled = ok & ~conv & (since_best >= alg.stall_patience)
        new_codes = xp.where(stalled, xp.full_like(codes, _STALLED), new_codes)
    new_codes = xp.where(conv, xp.full_like(codes, _SUCCESS), new_codes)
    codes = xp.where(active, new_codes, codes)
    niter_el = niter_el + xp.astype(active, niter_el.dtype)
    return _Step(ok, improved, codes, since_best, niter_el, fn)


def _start(xp, ctx, state):
    fn = ctx.norm(state.fu)
    un = ctx.norm(state.u)
    finite = xp.isfinite(fn) & xp.isfinite(un)
    conv = finite & converged(fn, un, ctx.abstol, ctx.reltol)
    B = ctx.batch
    codes = xp.full((B,), RUNNING, dtype=xp.int32, device=ctx.device)
    codes = xp.where(finite, codes, xp.full_like(codes, _NONFINITE))
    codes = xp.where(conv, xp.full_like(codes, _SUCCESS), codes)
    inf = xp.full_like(fn, float("inf"))
    best_norm = xp.where(finite, fn, inf)
    tiny = xp.full_like(fn, float(xp.finfo(ctx.dtype).smallest_normal))
    fnorm0 = xp.maximum(xp.where(finite, fn, inf), xp.maximum(tiny, xp.full_like(fn, ctx.abstol)))
    zeros = xp.zeros((B,), dtype=xp.int32, device=ctx.device)
    return codes, best_norm, fnorm0, zeros, zeros, fn


def run(alg, prob, ctx, u0, *, maxiters: int, store_trace: bool, callback, use_jax: bool,
        to_user=None) -> DriverResult:
    if use_jax:
        return _run_jax(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace)
    return _run_eager(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace,
                      callback=callback, to_user=to_user)


def _run_eager(alg, prob, ctx, u0, *, maxiters, store_trace, callback, to_user):
    xp, B = ctx.xp, ctx.batch
    state = alg.init(prob, u0, ctx)
    codes, best_norm, fnorm0, since_best, niter_el, fn = _start(xp, ctx, state)
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    n_active = backend.host_ints(xp, xp.reshape(xp.sum(xp.astype(codes == RUNNING, xp.int32)), (1,)))[0]
    it = 0
    while n_active > 0 and it < maxiters:
        new = alg.step(prob, state, ctx)
        it += 1
        j = _judge(xp, ctx, alg, new, codes, best_norm, since_best, niter_el, fnorm0)
        codes, since_best, niter_el = j.codes, j.since_best, j.niter_el
        counts = xp.stack([
            xp.sum(xp.astype(j.ok, xp.int32)),
            xp.sum(xp.astype(codes == RUNNING, xp.int32)),
            xp.sum(xp.astype(j.improved, xp.int32)),
        ])
        n_ok, n_active, n_improved = backend.host_ints(xp, counts)  # the one sync per iteration
        state = new if n_ok == B else _tree_where(xp, j.ok, new, state)
        if n_improved == B:
            best_u, best_fu, best_norm = new.u, new.fu, j.fnorm
        elif n_improved > 0:
            best_u = _tree_where(xp, j.improved, new.u, best_u)
            best_fu = _tree_where(xp, j.improved, new.fu, best_fu)
            best_norm = xp.where(j.improved, j.fnorm, best_norm)
        if store_trace:
            trace.append(xp.where(j.ok, j.fnorm, ctx.norm(state.fu)))
        if callback is not None:
            callback(it, to_user(state.u) if to_user else state.u, j.fnorm)
    codes = xp.where(codes == RUNNING, xp.full_like(codes, _MAXITERS), codes)
    tr = xp.stack(trace) if store_trace else None
    return DriverResult(best_u, best_fu, codes, it, niter_el, state, tr)


def _run_jax(alg, prob, ctx, u0, *, maxiters, store_trace):
    import jax
    import jax.numpy as jnp

    xp = ctx.xp
    state = alg.init(prob, u0, ctx)
    codes, best_norm, fnorm0, since_best, niter_el, fn = _start(xp, ctx, state)
    if store_trace:
        trace = jnp.full((maxiters + 1,) + fn.shape, jnp.nan, dtype=fn.dtype).at[0].set(fn)
    else:
        trace = None
    carry = (state, codes, best_norm, since_best, niter_el, state.u, state.fu,
             jnp.asarray(0, dtype=jnp.int32), trace)

    def cond(c):
        return jnp.any(c[1] == RUNNING) & (c[7] < maxiters)

    def body(c):
        state, codes, best_norm, since_best, niter_el, best_u, best_fu, it, trace = c
        new = alg.step(prob, state, ctx)
        j = _judge(xp, ctx, alg, new, codes, best_norm, since_best, niter_el, fnorm0)
        state = _tree_where(xp, j.ok, new, state)
        best_u = _tree_where(xp, j.improved, new.u, best_u)
        best_fu = _tree_where(xp, j.improved, new.fu, best_fu)
        best_norm = jnp.where(j.improved, j.fnorm, best_norm)
        if trace is not None:
            trace = trace.at[it + 1].set(jnp.where(j.ok, j.fnorm, ctx.norm(state.fu)))
        return (state, j.codes, best_norm, j.since_best, j.niter_el, best_u, best_fu, it + 1, trace)

    state, codes, _, _, niter_el, best_u, best_fu, it, trace = jax.lax.while_loop(cond, body, carry)
    codes = jnp.where(codes == RUNNING, _MAXITERS, codes)
    return DriverResult(best_u, best_fu, codes, it, niter_el, state, trace)
