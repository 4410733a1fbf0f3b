"""The drivers: one eager Python loop and one ``jax.lax.while_loop``, over the same init/step.

The driver owns iteration, termination, ``maxiters``, the non-finite check, the
per-element freeze, the best iterate and the counters. Algorithms never loop
over iterations themselves.

Per element (``(B,)`` arrays) the driver keeps a ``verdict.Book`` (codes, best
residual, iterations since the best, iterations taken, the start's scales); one function,
``verdict.judge``, decides all of them after every step (the safe test: a runaway
iterate is ``Diverged``, never ``Success``). The eager driver runs it on the host after
the one device-to-host transfer of the iteration (the residual and iterate norms, and the
step's ``flag``); the JAX driver runs it in ``jnp`` inside the loop.
"""

from __future__ import annotations

import numpy as np

from .. import _backend as backend
from .._backend import fused
from .traced import run_jax
from .rows import TRACE_ROWS, DriverResult, WorkingSet, gatherable, index_array, take_rows, tree_where
from ..retcodes import RUNNING, ReturnCode
from .verdict import (RUNAWAY_GROWTH, SCALARS, array_namespace, judge, settle, start, terms_norm, tolerances,
                      wants_terms)

__all__ = ["run", "DriverResult", "TRACE_ROWS"]

_SUCCESS = ReturnCode.Success.code
_MAXITERS = ReturnCode.MaxIters.code

_NumPy = array_namespace(np)

#: the eager batched driver continues on the running rows alone once at most this share of the
#: current rows is running (and the solve allows it: see ``_engine.rows``)
NARROW_AT = 0.5
#: relative slack of a bound on norm(u) (rounding in the step and the norm)
_SLACK = 1e-6


def run(alg, prob, ctx, u0, *, maxiters: int, store_trace: bool, callback, use_jax: bool,
        to_user=None, narrow=None, scales=None, limit=None) -> DriverResult:
    """One solve by ``alg`` from ``u0`` (rows). ``narrow(ctx, local_index) -> ctx`` (batched solves of
    row-wise problems) lets the driver continue on the running rows alone (under JAX tracing: on
    a compacted batch of static size, ``_engine.compaction``). ``scales``: the start's scales of an earlier
    attempt of a chain (``DriverResult.scales``), against which this one is judged; ``limit``: under
    JAX tracing, a traced bound on the iterations besides ``maxiters`` (a chain's budget left)."""
    if use_jax:
        return run_jax(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace, narrow=narrow,
                       scales=scales, limit=limit)
    return _run_eager(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace,
                      callback=callback, to_user=to_user, narrow=narrow, scales=scales)


def _host_norms(xp, ctx, state, scalar):
    """Residual norm, iterate norm (and the step's flag) per element, moved to the host at once."""
    flag = getattr(state, "flag", None)
    host = None if ctx.host_arrays else fused.host_norms(xp, ctx.norm, state.fu, state.u, flag)
    if host is not None:  # PyTorch, a built-in norm: both norms (and the flag) in four kernels and one copy
        if scalar:
            return float(host[0, 0]), float(host[1, 0]), (int(host[2, 0]) if flag is not None else None)
        return host[0], host[1], (host[2].astype(np.int32) if flag is not None else None)
    parts = [ctx.norm(state.fu), ctx.norm(state.u)]
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
    if backend.is_torch(xp):  # from the host array itself, far cheaper than through a Python list
        return fused.from_host(xp, np.ascontiguousarray(mask, dtype=bool).reshape(-1), xp.bool, ctx.device)
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


def _host_terms(ns, ctx, alg, state, fn, un, book, tol, scalar, spent, flag=None):
    """``norm(J_F(u) u)`` on the host where the verdict wants it (0 elsewhere); ``spent``: the
    ``[njvp, nf]`` the measurements cost, updated."""
    want = wants_terms(ns, fn, un, book, tol, flag=flag)
    if want is None or not (want if scalar else want.any()):
        return 0.0
    t, nf = terms_norm(ctx, alg, state)
    spent[0] += 1
    spent[1] += nf
    if scalar:
        return float(backend.to_numpy(ctx.xp, t).reshape(-1)[0])
    return np.where(want, backend.to_numpy(ctx.xp, t).astype(np.float64).reshape(-1), 0.0)


def _gnorm(ctx, state, scalar):
    """``norm(g(u0))`` of a fixed-point map's start (None for the other problems)."""
    if ctx.kind != "fixed_point":
        return None
    g = ctx.norm(state.u + state.fu)
    host = backend.to_numpy(ctx.xp, g).astype(np.float64).reshape(-1)
    return float(host[0]) if scalar else host


def _run_eager(alg, prob, ctx, u0, *, maxiters, store_trace, callback, to_user, narrow=None, scales=None):
    if ctx.batch == 1:
        return _run_scalar(alg, prob, ctx, u0, maxiters=maxiters, store_trace=store_trace, callback=callback,
                           to_user=to_user, scales=scales)
    xp, ns = ctx.xp, _NumPy
    tol = tolerances(alg, ctx)
    freeze = alg.freeze_converged
    workspaces = getattr(alg, "workspaces", ())
    state = _init(alg, prob, u0, ctx)
    step = _eager_step(alg, prob, ctx)
    fn, un, _ = _host_norms(xp, ctx, state, False)
    book = start(ns, fn, un, tol, gn=_gnorm(ctx, state, False), scales=scales)
    spent = [0, 0]
    book = settle(ns, fn, un, book, tol, _host_terms(ns, ctx, alg, state, fn, un, book, tol, False, spent))
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    # the running rows alone, once most have stopped (not with a callback, which sees the whole batch)
    ws = None
    can_narrow = narrow is not None and callback is None and not freeze and gatherable(state)
    it = 0
    while it < maxiters:
        running = book.codes == RUNNING
        nrun = int(running.sum())
        if nrun == 0:
            break
        if can_narrow and nrun <= NARROW_AT * running.shape[0] and running.shape[0] > 2:
            # at least two rows: a step may take another path for one system (the state's layout
            # was made by init for a batch), so a lone straggler keeps one stopped row beside it
            keep = np.flatnonzero(running) if nrun > 1 else np.sort(np.r_[np.flatnonzero(running)[:1],
                                                                          np.flatnonzero(~running)[:1]])
            sub = _narrowed(xp, narrow, ctx, (state, best_u, best_fu), keep, probe=ws is None)
            if sub is None:  # f does not take a smaller batch (per-element data outside p)
                can_narrow, state = False, state._replace(nf=state.nf + 1)  # the try counts
            else:
                ws = ws or WorkingSet(xp, ctx.device, book, best_u, best_fu)
                ws.retire(book, best_u, best_fu)
                ws.narrow(keep)
                ctx, state, best_u, best_fu = sub
                _widen(ctx, narrow)
                book = type(book)(*(a[keep] for a in book))
                step = _eager_step(alg, prob, ctx)
        new = _step(step, state, alg, it)
        it += 1
        fn, un, flag = _host_norms(xp, ctx, new, False)  # the one device sync of the iteration
        terms = _host_terms(ns, ctx, alg, new, fn, un, book, tol, False, spent, flag)
        book, v = judge(ns, fn, un, flag, book, tol, terms)
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
            state = tree_where(xp, mask, new, state, workspaces)
            if workspaces:
                state = alg.reject(ctx, mask, state)
        if v.improved.all():
            best_u, best_fu = new.u, new.fu
        elif v.improved.any():
            m = _device_mask(xp, ctx, v.improved)
            best_u = tree_where(xp, m, new.u, best_u)
            best_fu = tree_where(xp, m, new.fu, best_fu)
        if store_trace:
            last = trace[-1]
            row = ns.where(v.ok, fn, last if ws is None else last[ws.rows])
            _trace_row(trace, row if ws is None else ws.full_row(row, last), store_trace)
        if callback is not None:
            u_cb, fn_cb = state.u, fn
            if not freeze:  # converged elements ride along: report their frozen answer
                done = book.codes == _SUCCESS
                if done.any():
                    u_cb = tree_where(xp, _device_mask(xp, ctx, ~done), state.u, best_u)
                    fn_cb = np.where(done, book.best_norm, fn)
            callback(it, to_user(u_cb) if to_user else u_cb, fn_cb)
    if ws is not None:
        ws.retire(book, best_u, best_fu)
        book, best_u, best_fu = ws.book, ws.best_u, ws.best_fu
    codes = np.where(np.asarray(book.codes) == RUNNING, _MAXITERS, book.codes).astype(np.int32).reshape(-1)
    tr = np.asarray(trace, dtype=np.float64).reshape(len(trace), -1) if store_trace else None
    niter_el = np.asarray(book.niter_el, dtype=np.int64).reshape(-1)
    return DriverResult(best_u, best_fu, codes.tolist(), it, niter_el, state, tr, (book.fnorm0, book.uscale0), *spent)


def _run_scalar(alg, prob, ctx, u0, *, maxiters, store_trace, callback, to_user, scales=None):
    """The eager driver for one system (``batch == 1``): the verdict on Python floats, and on NumPy
    the norms straight to floats (``ctx.host_norm``). An element that is not ``ok`` has stopped, so
    the state is either the new one or the loop ends; nothing is masked."""
    xp, ns = ctx.xp, SCALARS
    tol = tolerances(alg, ctx)
    state = _init(alg, prob, u0, ctx)
    step = _eager_step(alg, prob, ctx)
    hn = ctx.host_norm
    has_flag = "flag" in getattr(state, "_fields", ())
    if hn is not None:
        fn, un = hn(state.fu), hn(state.u)
    else:
        fn, un, _ = _host_norms(xp, ctx, state, True)
    if scales is not None:
        scales = tuple(float(np.asarray(s).reshape(-1)[0]) for s in scales)
    book = start(ns, fn, un, tol, gn=_gnorm(ctx, state, True), scales=scales)
    spent = [0, 0]
    book = settle(ns, fn, un, book, tol, _host_terms(ns, ctx, alg, state, fn, un, book, tol, True, spent))
    # norm(u) bounded by the triangle inequality when the step allows it: computed only where a
    # decision could depend on it (the runaway, sanity and relative tests; the bound is never below it)
    scale = alg.host_step_scale(state) if hn is not None else None
    if scale is not None:
        limit = min(RUNAWAY_GROWTH * book.uscale0, tol.huge) / (1 + _SLACK)
        rtol, rfloor = tol.reltol * (1 + _SLACK), (0.0 if tol.fixed_point else book.fnorm0)
    best_u, best_fu = state.u, state.fu
    trace = [fn] if store_trace else None
    it = 0
    while it < maxiters and book.codes == RUNNING:
        new = _step(step, state, alg, it)
        it += 1
        if hn is not None:  # the one device sync of the iteration (none at all on NumPy)
            bound, fn, flag = (None if scale is None else un + scale * fn), hn(new.fu), (
                int(new.flag[0]) if has_flag else None)
            un = bound if bound is not None and bound <= limit and rtol * max(bound, rfloor) < fn else hn(new.u)
        else:
            fn, un, flag = _host_norms(xp, ctx, new, True)
        terms = _host_terms(ns, ctx, alg, new, fn, un, book, tol, True, spent, flag)
        book, v = judge(ns, fn, un, flag, book, tol, terms)
        if v.ok:
            state = new
            if v.improved:
                best_u, best_fu = new.u, new.fu
        else:  # the element has stopped on this step: its state stays, the step's work counts
            state = _counters_from(new, state)
        if store_trace:
            _trace_row(trace, fn if v.ok else trace[-1], store_trace)
        if callback is not None:
            callback(it, to_user(state.u) if to_user else state.u, fn)
    code = _MAXITERS if book.codes == RUNNING else int(book.codes)
    tr = np.asarray(trace, dtype=np.float64).reshape(len(trace), 1) if store_trace else None
    return DriverResult(best_u, best_fu, [code], it, np.asarray([book.niter_el], dtype=np.int64), state, tr,
                        (book.fnorm0, book.uscale0), *spent)


def _counters_from(new, old):
    """``old`` with its counters (integer leaves: Python ints, integer arrays) from ``new``: the work of
    a step that the driver does not take still counts (its ``t``, radius ... stay old). For one system
    only (``_run_scalar``), where a per-element ``(1,)`` counter and a Python int are the same count."""
    if hasattr(new, "_fields"):
        return type(new)(*(_counters_from(a, b) for a, b in zip(new, old)))
    if isinstance(new, (tuple, list)):
        return type(new)(_counters_from(a, b) for a, b in zip(new, old))
    if isinstance(new, int) or (hasattr(new, "ndim") and "int" in str(new.dtype)):
        return new
    return old


def _widen(ctx, narrow):
    """Once the driver has narrowed (f checked row-wise by the probe): let the context's products
    evaluate ``F`` on other rows of the batch (a small batch's dense Jacobian in one backward pass)."""
    if narrow is not None and ctx.products.widen is None and backend.is_torch(ctx.xp):
        ctx.products.widen = lambda idx: narrow(ctx, idx).F


def _narrowed(xp, narrow, ctx, carry, keep, probe):
    """``(ctx, state, best_u, best_fu)`` of the rows ``keep`` (host indices) of ``carry = (state, best_u,
    best_fu)``; None when, the first time (``probe``), ``f`` on those rows alone fails or differs from
    its residuals on the whole batch (that evaluation counts in ``nf`` either way)."""
    idx = index_array(xp, keep, ctx.device)
    sub, (rows, best_u, best_fu) = narrow(ctx, idx), take_rows(xp, carry, idx)
    if probe:
        try:
            fu = backend.to_numpy(xp, sub.F(rows.u))
        except Exception:
            return None
        ref = backend.to_numpy(xp, rows.fu)
        tol = float(np.finfo(ref.dtype).eps) ** 0.5
        if fu.shape != ref.shape or not np.allclose(fu, ref, rtol=tol, atol=tol * max(1.0, float(np.abs(ref).max()))):
            return None
        rows = rows._replace(nf=rows.nf + 1)
    return sub, rows, best_u, best_fu


def _step(step, state, alg, it):
    try:
        return step(state)
    except Exception as e:
        _noted(e, alg, f"in iteration {it + 1}")
        raise


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
