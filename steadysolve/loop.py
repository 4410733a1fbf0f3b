"""The drivers: one eager Python loop and one ``jax.lax.while_loop``, over the same init/step.

The driver owns iteration, termination, ``maxiters``, the non-finite check, the
per-element freeze, the best iterate and the counters. Algorithms never loop
over iterations themselves.

Per element (``(B,)`` arrays) the driver keeps a ``termination.Book`` (codes, best
residual, iterations since the best, iterations taken, the start's scales); one function,
``termination.judge``, decides all of them after every step (the safe test: a runaway
iterate is ``Diverged``, never ``Success``). The eager driver runs it on the host after
the one device-to-host transfer of the iteration (the residual and iterate norms, and the
step's ``flag``); the JAX driver runs it in ``jnp`` inside the loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import math

import numpy as np

from . import backend
from .retcodes import RUNNING, ReturnCode
from .termination import SCALARS, ScalarBook, array_namespace, judge, start

__all__ = ["run", "DriverResult", "TRACE_ROWS"]

#: rows of the residual trace under jax.jit (shapes are static there): ``store_trace=True`` keeps
#: at most this many, ``store_trace=N`` N; later iterations overwrite the last row
TRACE_ROWS = 1024

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code

_NumPy = array_namespace(np)


class DriverResult(NamedTuple):
    u: Any  # (B, n) best iterate
    fu: Any  # (B, n) residual at u
    codes: Any  # (B,) int codes
    niter: Any  # int, or 0-d array under JAX tracing
    niter_el: Any  # (B,)
    state: Any  # the final algorithm state (for the counters)
    trace: Any  # (niter + 1, B) residual norms, or None


def _tree_where(xp, mask, new, old, workspaces=()):
    """Per-element select over an algorithm state: 0-d leaves are global and taken from ``new``, and
    so are the algorithm's ``workspaces`` (buffers written in place: an element the driver rejects
    has stopped, and masking them would copy whole histories every iteration)."""
    if hasattr(new, "_fields"):
        if workspaces:
            return type(new)(*(a if f in workspaces else _tree_where(xp, mask, a, b)
                               for f, a, b in zip(new._fields, new, old)))
        return type(new)(*(_tree_where(xp, mask, a, b) for a, b in zip(new, old)))
    if isinstance(new, (tuple, list)):
        return type(new)(_tree_where(xp, mask, a, b) for a, b in zip(new, old))
    if new is None or not hasattr(new, "ndim") or new.ndim == 0:
        return new
    m = xp.reshape(mask, (mask.shape[0],) + (1,) * (new.ndim - 1))
    return xp.where(m, new, old)


def _huge(xp, dtype) -> float:
    """The largest meaningful iterate norm: beyond it residuals are lost in cancellation."""
    return 1e-2 * float(xp.finfo(dtype).max)


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
    if ctx.host_arrays:  # NumPy: the arrays are on the host already, no stacking or copying
        if scalar:
            return float(parts[0][0]), float(parts[1][0]), (None if flag is None else int(flag[0]))
        return (parts[0].astype(np.float64, copy=False), parts[1].astype(np.float64, copy=False),
                None if flag is None else flag.astype(np.int32, copy=False))
    if flag is not None:
        parts.append(xp.astype(flag, parts[0].dtype))
    host = backend.to_numpy(xp, xp.stack(parts))
    if scalar:
        return float(host[0, 0]), float(host[1, 0]), (int(host[2, 0]) if flag is not None else None)
    host = host.astype(np.float64)
    return host[0], host[1], (host[2].astype(np.int32) if flag is not None else None)


def _device_mask(xp, ctx, mask):
    return xp.asarray(np.asarray(mask).reshape(-1).tolist(), dtype=xp.bool, device=ctx.device)


def _noted(e: BaseException, alg, where: str) -> None:
    """Add where an exception from the user's function happened (the exception itself propagates)."""
    if hasattr(e, "add_note"):  # Python >= 3.11
        e.add_note(f"(raised {where} of steadysolve.solve with {type(alg).__name__})")


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
    if ctx.batch == 1:
        return _run_scalar(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace, callback=callback,
                           to_user=to_user)
    xp, B = ctx.xp, ctx.batch
    ns = _NumPy
    huge = _huge(xp, ctx.dtype)
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    freeze = alg.freeze_converged
    workspaces = getattr(alg, "workspaces", ())
    state = _init(alg, prob, u0, ctx)
    step = _eager_step(alg, prob, ctx)
    fn, un, _ = _host_norms(xp, ctx, state, False)
    book = start(ns, fn, un, abstol, reltol)
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    it = 0
    while it < maxiters and (book.codes == RUNNING).any():
        try:
            new = step(state)
        except Exception as e:
            _noted(e, alg, f"in iteration {it + 1}")
            raise
        it += 1
        fn, un, flag = _host_norms(xp, ctx, new, False)  # the one device sync of the iteration
        book, v = judge(ns, fn, un, flag, book, abstol, reltol, patience, huge)
        # Elements that have converged ride along with the batch (their reported iterate is the
        # frozen best one, and masking the whole algorithm state every iteration would cost more
        # than the batched step itself); an element that stopped for any other reason keeps its
        # last good state, so that NaN/Inf never reaches f again (as does a converged element
        # whose ride-along iterate turns non-finite).
        take = v.ok if freeze else v.ok | ((book.codes == _SUCCESS) & v.finite)
        if take.all():
            state = new
        else:
            mask = _device_mask(xp, ctx, take)
            state = _tree_where(xp, mask, new, state, workspaces)
            if workspaces:
                state = alg.reject(xp, mask, state)
        if v.improved.all():
            best_u, best_fu = new.u, new.fu
        elif v.improved.any():
            m = _device_mask(xp, ctx, v.improved)
            best_u = _tree_where(xp, m, new.u, best_u)
            best_fu = _tree_where(xp, m, new.fu, best_fu)
        if store_trace:
            _trace_row(trace, ns.where(v.ok, fn, trace[-1]), store_trace)
        if callback is not None:
            u_cb, fn_cb = state.u, fn
            if not freeze:  # converged elements ride along: report their frozen answer
                done = book.codes == _SUCCESS
                if done.any():
                    u_cb = _tree_where(xp, _device_mask(xp, ctx, ~done), state.u, best_u)
                    fn_cb = np.where(done, book.best_norm, fn)
            callback(it, to_user(u_cb) if to_user else u_cb, fn_cb)
    codes = np.where(np.asarray(book.codes) == RUNNING, _MAXITERS, book.codes).astype(np.int32).reshape(-1)
    tr = np.asarray(trace, dtype=np.float64).reshape(len(trace), B) if store_trace else None
    niter_el = np.asarray(book.niter_el, dtype=np.int64).reshape(-1)
    return DriverResult(best_u, best_fu, codes.tolist(), it, niter_el, state, tr)


def _run_scalar(alg, prob, ctx, u0, *, maxiters, store_trace, callback, to_user):
    """The eager driver for one system (``batch == 1``): the verdict on Python floats, and on NumPy
    the norms straight to floats (``ctx.host_norm``). An element that is not ``ok`` has stopped, so
    the state is either the new one or the loop ends; nothing is masked."""
    xp = ctx.xp
    huge = _huge(xp, ctx.dtype)
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    state = _init(alg, prob, u0, ctx)
    step = _eager_step(alg, prob, ctx)
    hn = ctx.host_norm
    has_flag = "flag" in getattr(state, "_fields", ())
    if hn is not None:
        fn, un = hn(state.fu), hn(state.u)
    else:
        fn, un, _ = _host_norms(xp, ctx, state, True)
    book = ScalarBook(start(SCALARS, fn, un, abstol, reltol), abstol, reltol, patience, huge)
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    it = 0
    while it < maxiters and book.codes == RUNNING:
        try:
            new = step(state)
        except Exception as e:
            _noted(e, alg, f"in iteration {it + 1}")
            raise
        it += 1
        if hn is not None:  # the one device sync of the iteration (none at all on NumPy)
            fn, un, flag = hn(new.fu), hn(new.u), (int(new.flag[0]) if has_flag else None)
        else:
            fn, un, flag = _host_norms(xp, ctx, new, True)
        ok, improved = book.judge(fn, un, flag)
        if ok:
            state = new
            if improved:
                best_u, best_fu = new.u, new.fu
        if store_trace:
            _trace_row(trace, fn if ok else trace[-1], store_trace)
        if callback is not None:
            callback(it, to_user(state.u) if to_user else state.u, fn)
    code = _MAXITERS if book.codes == RUNNING else int(book.codes)
    tr = np.asarray(trace, dtype=np.float64).reshape(len(trace), 1) if store_trace else None
    return DriverResult(best_u, best_fu, [code], it, np.asarray([book.niter_el], dtype=np.int64), state, tr)


def _init(alg, prob, u0, ctx):
    try:
        return alg.init(prob, u0, ctx)
    except Exception as e:
        _noted(e, alg, "during the algorithm's setup (init)")
        raise


def _trace_row(trace, row, store_trace):
    if store_trace is not True and len(trace) >= store_trace:
        trace[-1] = row  # capped (store_trace=N): the last row keeps the latest
    else:
        trace.append(row)


def _run_jax(alg, prob, ctx, u0, *, maxiters, store_trace):
    import jax
    import jax.numpy as jnp

    xp = ctx.xp
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    workspaces = getattr(alg, "workspaces", ())
    state = alg.init(prob, u0, ctx)
    fn = ctx.norm(state.fu)
    jns = array_namespace(jnp)
    huge = _huge(xp, ctx.dtype)
    book = start(jns, fn, ctx.norm(state.u), abstol, reltol)
    cap = 0
    if store_trace:  # memory scales with the cap, not with maxiters: the last row keeps the latest
        cap = min(maxiters + 1, TRACE_ROWS if store_trace is True else int(store_trace))
        trace = jnp.full((cap,) + fn.shape, jnp.nan, dtype=fn.dtype).at[0].set(fn)
    else:
        trace = None
    carry = (state, book, state.u, state.fu, jnp.asarray(0, dtype=jnp.int32), trace)

    def cond(c):
        return jnp.any(c[1].codes == RUNNING) & (c[4] < maxiters)

    def body(c):
        state, book, best_u, best_fu, it, trace = c
        new = alg.step(prob, state, ctx)
        fn = ctx.norm(new.fu)
        book, v = judge(jns, fn, ctx.norm(new.u), getattr(new, "flag", None), book, abstol, reltol, patience, huge)
        state = _tree_where(xp, v.ok, new, state, workspaces)
        if workspaces:
            state = alg.reject(xp, v.ok, state)
        best_u = _tree_where(xp, v.improved, new.u, best_u)
        best_fu = _tree_where(xp, v.improved, new.fu, best_fu)
        if trace is not None:
            row = jnp.minimum(it + 1, cap - 1)
            trace = trace.at[row].set(jnp.where(v.ok, fn, trace[jnp.minimum(it, cap - 1)]))
        return (state, book, best_u, best_fu, it + 1, trace)

    state, book, best_u, best_fu, it, trace = jax.lax.while_loop(cond, body, carry)
    codes = jnp.where(book.codes == RUNNING, _MAXITERS, book.codes)
    return DriverResult(best_u, best_fu, codes, it, book.niter_el, state, trace)
