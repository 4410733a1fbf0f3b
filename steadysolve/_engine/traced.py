"""The JAX driver: ``jax.lax.while_loop`` over the same ``init`` / ``step`` as the eager loop, with the
per-element verdict (:func:`~steadysolve._engine.verdict.judge`) in ``jax.numpy`` inside the loop. A batch
whose last running elements are few continues on those rows alone (``_engine.compaction``)."""

from __future__ import annotations

from typing import Any, NamedTuple

from . import compaction, trace as _trace
from .rows import TRACE_ROWS, DriverResult, gatherable, tree_where
from ..retcodes import RUNNING, ReturnCode
from .verdict import array_namespace, judge, settle, start, terms_norm, tolerances, wants_terms

__all__ = ["run_jax", "Carry"]

_MAXITERS = ReturnCode.MaxIters.code


class Carry(NamedTuple):
    """The ``while_loop`` carry: the algorithm state, the book and best iterate of its rows, the
    iteration count, the residual trace (of the whole batch: ``(rows, B)``, or None) and the JVPs the
    verdict spent (``verdict.wants_terms``)."""

    state: Any
    book: Any
    best_u: Any
    best_fu: Any
    it: Any
    trace: Any
    spent: Any  # (njvp, nf) of the verdict's measurements


class _Loop:
    """The loop's condition and its body for a batch of ``b`` rows under a given context."""

    def __init__(self, alg, prob, maxiters, tcap, limit=None):
        import jax.numpy as jnp

        if limit is not None:  # a traced budget besides the static cap
            maxiters = jnp.minimum(jnp.asarray(maxiters, dtype=jnp.int32), jnp.asarray(limit).astype(jnp.int32))
        self.alg, self.prob, self.maxiters, self.tcap, self.jnp = alg, prob, maxiters, tcap, jnp
        self.jns = array_namespace(jnp)

    def cond(self, c):
        return self.jnp.any(c.book.codes == RUNNING) & (c.it < self.maxiters)

    def body(self, ctx, b, rows=None):
        """``rows`` (a compacted batch): each row's index in the whole batch (``B``: a padding row)."""
        alg, prob, jnp, jns, tcap = self.alg, self.prob, self.jnp, self.jns, self.tcap
        xp = ctx.xp
        tol = tolerances(alg, ctx)
        workspaces = getattr(alg, "workspaces", ())

        def norms(fu, u):  # per-row norms of both in one reduction (one kernel instead of two or three)
            if getattr(ctx.norm, "kind", None) is None:  # a user's norm may rely on the batch's size
                return ctx.norm(fu), ctx.norm(u)
            both = ctx.norm(xp.concat([fu, u], axis=0))
            return both[:b], both[b:]

        def body(c):
            state, book, best_u, best_fu, it, trace, spent = c
            new = alg.step(prob, state, ctx)
            fn, un = norms(new.fu, new.u)
            flag = getattr(new, "flag", None)
            terms, spent = traced_terms(jns, ctx, alg, new, fn, un, book, tol, spent, flag)
            book, v = judge(jns, fn, un, flag, book, tol, terms)
            if _trace.active() is not None:  # solve(..., verbose=True): a line per iteration, at run time
                _trace.active().traced_line(it + 1, fn, new.u - state.u)
            if b == 1 and not hasattr(new, "flag"):  # a rejected (non-finite) element has stopped, and alone
                state = new  # it ends the loop: its state is never stepped again (no select, no copy of u)
            else:  # (a flagged step's per-element statistics, e.g. DynamicSS's t, must stay those of its start)
                state = tree_where(xp, v.ok, new, state, workspaces)
                if workspaces:
                    state = alg.reject(ctx, v.ok, state)
            best_u = tree_where(xp, v.improved, new.u, best_u)
            best_fu = tree_where(xp, v.improved, new.fu, best_fu)
            if trace is not None:
                last = trace[jnp.minimum(it, tcap - 1)]
                if rows is None:
                    row = jnp.where(v.ok, fn, last)
                else:  # the rows stepped here get theirs, the others (and no padding row) keep their last
                    row = last.at[rows].set(jnp.where(v.ok, fn, jnp.take(last, rows, mode="clip")), mode="drop")
                trace = trace.at[jnp.minimum(it + 1, tcap - 1)].set(row)
            return Carry(state, book, best_u, best_fu, it + 1, trace, spent)

        return body


def traced_terms(jns, ctx, alg, state, fn, un, book, tol, spent, flag=None):
    """``(terms, spent)`` under tracing: ``norm(J_F(u) u)`` where the verdict wants it, computed only when
    some element does (``lax.cond``), 0 elsewhere; ``spent = (njvp, nf)`` of the measurements, updated."""
    import jax
    import jax.numpy as jnp

    want = wants_terms(jns, fn, un, book, tol, flag=flag)
    if want is None:
        return 0.0, spent

    def measure():
        t, nf = terms_norm(ctx, alg, state)
        return t.astype(fn.dtype), jnp.asarray(nf, dtype=jnp.int32)

    go = jnp.any(want)
    t, nf = jax.lax.cond(go, measure, lambda: (jnp.zeros_like(fn), jnp.asarray(0, dtype=jnp.int32)))
    return jnp.where(want, t, 0.0), (spent[0] + go.astype(jnp.int32), spent[1] + nf)


def run_jax(alg, prob, ctx, u0, *, maxiters, store_trace, narrow=None, scales=None, limit=None):
    """One solve under JAX tracing. ``narrow(ctx, idx) -> ctx`` (row-wise batched problems) allows
    compaction: see ``_engine.compaction``; ``scales``: see ``driver.run``."""
    import jax
    import jax.numpy as jnp

    jns, tol = array_namespace(jnp), tolerances(alg, ctx)
    state = alg.init(prob, u0, ctx)
    fn, un = ctx.norm(state.fu), ctx.norm(state.u)
    gn = ctx.norm(state.u + state.fu) if ctx.kind == "fixed_point" else None
    book = start(jns, fn, un, tol, gn=gn, scales=scales)
    zero = jnp.asarray(0, dtype=jnp.int32)
    terms, spent = traced_terms(jns, ctx, alg, state, fn, un, book, tol, (zero, zero))
    book = settle(jns, fn, un, book, tol, terms)
    tcap = 0
    if store_trace:  # memory scales with the cap, not with maxiters: the last row keeps the latest
        tcap = min(maxiters + 1, TRACE_ROWS if store_trace is True else int(store_trace))
        trace = jnp.full((tcap,) + fn.shape, jnp.nan, dtype=fn.dtype).at[0].set(fn)
    else:
        trace = None
    carry = Carry(state, book, state.u, state.fu, jnp.asarray(0, dtype=jnp.int32), trace, spent)
    loop = _Loop(alg, prob, maxiters, tcap, limit)
    B = state.u.shape[0]
    caps = ()
    if narrow is not None and not alg.freeze_converged and gatherable(state):
        caps = compaction.levels(B, maxiters)
    checked = compaction.check_rows(ctx, narrow, state, book, caps[0], prob.rowwise) if caps else None
    if checked is not None:
        ok, state = checked
        carry = compaction.run(loop, carry._replace(state=state), ctx, narrow, caps, ok)
    else:
        carry = jax.lax.while_loop(loop.cond, loop.body(ctx, B), carry)
    state, book, best_u, best_fu, it, trace, spent = carry
    codes = jnp.where(book.codes == RUNNING, _MAXITERS, book.codes)
    return DriverResult(best_u, best_fu, codes, it, book.niter_el, state, trace, (book.fnorm0, book.uscale0), *spent)
