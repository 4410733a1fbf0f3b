"""The JAX driver: ``jax.lax.while_loop`` over the same ``init`` / ``step`` as the eager loop, with the
per-element verdict (:func:`~steadysolve.termination.judge`) in ``jax.numpy`` inside the loop."""

from __future__ import annotations

from .loop_parts import TRACE_ROWS, DriverResult, huge_norm, tree_where
from .retcodes import RUNNING, ReturnCode
from .termination import array_namespace, judge, start

__all__ = ["run_jax"]

_MAXITERS = ReturnCode.MaxIters.code


def run_jax(alg, prob, ctx, u0, *, maxiters, store_trace):
    import jax
    import jax.numpy as jnp

    xp = ctx.xp
    abstol, reltol, patience = ctx.abstol, ctx.reltol, alg.stall_patience
    workspaces = getattr(alg, "workspaces", ())
    state = alg.init(prob, u0, ctx)
    fn = ctx.norm(state.fu)
    jns = array_namespace(jnp)
    huge = huge_norm(xp, ctx.dtype)
    book = start(jns, fn, ctx.norm(state.u), abstol, reltol)
    cap = 0
    if store_trace:  # memory scales with the cap, not with maxiters: the last row keeps the latest
        cap = min(maxiters + 1, TRACE_ROWS if store_trace is True else int(store_trace))
        trace = jnp.full((cap,) + fn.shape, jnp.nan, dtype=fn.dtype).at[0].set(fn)
    else:
        trace = None
    carry = (state, book, state.u, state.fu, jnp.asarray(0, dtype=jnp.int32), trace)

    B = state.u.shape[0]

    def norms(fu, u):  # per-row norms of both in one reduction (one kernel instead of two or three)
        if getattr(ctx.norm, "kind", None) is None:  # a user's norm may rely on the batch's size
            return ctx.norm(fu), ctx.norm(u)
        both = ctx.norm(xp.concat([fu, u], axis=0))
        return both[:B], both[B:]

    def cond(c):
        return jnp.any(c[1].codes == RUNNING) & (c[4] < maxiters)

    def body(c):
        state, book, best_u, best_fu, it, trace = c
        new = alg.step(prob, state, ctx)
        fn, un = norms(new.fu, new.u)
        book, v = judge(jns, fn, un, getattr(new, "flag", None), book, abstol, reltol, patience, huge)
        if B == 1 and not hasattr(new, "flag"):  # a rejected (non-finite) element has stopped, and alone
            state = new  # it ends the loop: its state is never stepped again (no select, no copy of u)
        else:  # (a flagged step's per-element statistics, e.g. DynamicSS's t, must stay those of its start)
            state = tree_where(xp, v.ok, new, state, workspaces)
            if workspaces:
                state = alg.reject(xp, v.ok, state)
        best_u = tree_where(xp, v.improved, new.u, best_u)
        best_fu = tree_where(xp, v.improved, new.fu, best_fu)
        if trace is not None:
            row = jnp.minimum(it + 1, cap - 1)
            trace = trace.at[row].set(jnp.where(v.ok, fn, trace[jnp.minimum(it, cap - 1)]))
        return (state, book, best_u, best_fu, it + 1, trace)

    state, book, best_u, best_fu, it, trace = jax.lax.while_loop(cond, body, carry)
    codes = jnp.where(book.codes == RUNNING, _MAXITERS, book.codes)
    return DriverResult(best_u, best_fu, codes, it, book.niter_el, state, trace)
