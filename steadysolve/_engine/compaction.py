"""Compaction under ``jax.jit``: the JAX driver's form of the eager working set (``_engine.rows``).

A ``lax.while_loop`` steps its whole batch until the slowest element stops, so a few stragglers
in a large batch cost whole-batch iterations. Shapes are static under ``jit``, so the running
rows are gathered into batches of fixed, smaller sizes (``levels``): the loop on ``b`` rows stops
once at most ``cap`` of them are running; ``jnp.nonzero(..., size=cap)`` picks them (padded with a
stopped row, whose results are dropped), the context is narrowed to them (the eager driver's
``narrow``, same rules: row-wise problems only), a loop on the ``cap`` rows continues (and may
compact again), and every per-element result is scattered back: the state's per-element leaves,
the book (codes, iterations per element), the best iterate and its residual; the global ones
(``it``, counters, the trace of the whole batch) continue in the smaller loop.

As in the eager driver, ``f`` on a smaller batch is checked once: its residuals must reproduce
the batch's (an ``f`` that couples rows, or captures per-element data, keeps the whole batch).
The check runs before the loop, on ``cap`` rows of the start, so that its verdict (a traced
boolean) only gates the loops: failing it, the first loop runs to the end and the compacted one
not at all, in the same compiled function (no second copy of the whole-batch loop). That
evaluation counts in ``nf`` (a call of ``f``, whatever its batch size, counts once).

The price is compile time: XLA compiles the step once per batch size (each compacted size costs
about as much again as the whole-batch loop); hence the floor ``MIN_BATCH`` and the second level
only for batches of ``MIN_BATCH * SHRINK`` rows. The levels were chosen on
``benchmarks/many_small.py`` (a batch where a few elements run to ``maxiters`` and nearly all stop
early); the timings are in docs/benchmarks.md.
"""

from __future__ import annotations

from .rows import take_rows
from ..retcodes import RUNNING

__all__ = ["levels", "check_rows", "run", "SHRINK", "MIN_BATCH"]

#: each level gathers the running rows into a batch ``SHRINK`` times smaller than the last
SHRINK = 16
#: no compaction of a batch smaller than this (another compiled loop body for little gain)
MIN_BATCH = 1024
#: at most this many levels (each compiles the loop body for one more batch size)
MAX_LEVELS = 2


def levels(B: int, maxiters: int) -> tuple:
    """The static sizes of the compacted batches of a batch of ``B`` rows (empty: no compaction)."""
    caps, b = [], B
    while b >= MIN_BATCH and len(caps) < MAX_LEVELS and maxiters > 1:
        b = max(2, b // SHRINK)  # at least two rows (the eager driver's rule: a step's layout is a batch's)
        caps.append(b)
    return tuple(caps)


def check_rows(ctx, narrow, state, book, cap, rowwise):
    """Whether ``f`` is row-wise, checked on ``cap`` rows of the start (spread over the batch, the
    last included): ``(ok, state)`` with ``ok`` a traced boolean (``f`` on those rows alone gives
    their residuals; evaluated, and counted in ``state.nf``, when an element is running at all);
    ``(True, state)`` without the evaluation when the problem says ``rowwise=True``; None when ``f``
    or the norm does not even take a batch of ``cap`` rows (a closure over per-element data)."""
    import jax
    import jax.numpy as jnp

    B = state.u.shape[0]
    idx = (B - 1) - jnp.arange(cap, dtype=jnp.int32) * (B // cap)
    u, fu = jnp.take(state.u, idx, axis=0), jnp.take(state.fu, idx, axis=0)
    go = jnp.any(book.codes == RUNNING)
    try:
        sub = narrow(ctx, idx)
        if tuple(sub.norm(u).shape) != (cap,):
            return None
        ok = jax.lax.cond(go, lambda: _reproduces(jnp, sub.F(u), fu), lambda: jnp.asarray(False))
    except Exception:  # f or the norm does not take the smaller batch
        return None
    if rowwise:
        return True, state
    return ok, state._replace(nf=state.nf + go.astype(jnp.int32))


def _nrun(c):
    import jax.numpy as jnp

    return jnp.sum((c.book.codes == RUNNING).astype(jnp.int32))


def run(loop, carry, ctx, narrow, caps, ok):
    """The whole solve: the batch until at most ``caps[0]`` rows run (or to the end when ``f`` is
    not row-wise: ``ok`` false), then those rows alone (compacting again at ``caps[1:]``)."""
    import jax
    import jax.numpy as jnp

    B = carry.best_u.shape[0]
    gate = jnp.asarray(ok)
    c = jax.lax.while_loop(lambda k: loop.cond(k) & (jnp.logical_not(gate) | (_nrun(k) > caps[0])),
                           loop.body(ctx, B), carry)
    return _stage(loop, c, ctx, narrow, B, None, gate & loop.cond(c), caps, B)


def _level(loop, c, ctx, narrow, b, rows, gate, caps, B):
    """The loop on a compacted batch of ``b`` rows (``gate``: it runs at all), compacting again at ``caps``."""
    import jax

    if caps:
        c = jax.lax.while_loop(lambda k: gate & loop.cond(k) & (_nrun(k) > caps[0]), loop.body(ctx, b, rows), c)
        return _stage(loop, c, ctx, narrow, b, rows, gate & loop.cond(c), caps, B)
    return jax.lax.while_loop(lambda k: gate & loop.cond(k), loop.body(ctx, b, rows), c)


def _stage(loop, c, ctx, narrow, b, rows, go, caps, B):
    """Gather the running rows of ``c`` (``b`` rows) into ``caps[0]``, run them, scatter them back."""
    import jax.numpy as jnp

    cap, xp = caps[0], ctx.xp
    running = c.book.codes == RUNNING
    local = jnp.nonzero(running, size=cap, fill_value=b)[0].astype(jnp.int32)
    pad = local == b
    idx = jnp.where(pad, jnp.argmin(running).astype(jnp.int32), local)  # padding: a stopped row
    whole = jnp.where(pad, B, idx if rows is None else jnp.take(rows, idx))  # the rows' indices in the batch
    sub_ctx = narrow(ctx, idx)
    state, book, best_u, best_fu = take_rows(xp, (c.state, c.book, c.best_u, c.best_fu), idx)
    sub = c._replace(state=state, book=book, best_u=best_u, best_fu=best_fu)
    sub = _level(loop, sub, sub_ctx, narrow, cap, whole, go, caps[1:], B)
    back = _scatter((c.state, c.book, c.best_u, c.best_fu), (sub.state, sub.book, sub.best_u, sub.best_fu), local)
    return c._replace(state=back[0], book=back[1], best_u=back[2], best_fu=back[3], it=sub.it, trace=sub.trace,
                      spent=sub.spent)


def _reproduces(jnp, fu, ref):
    """``f`` on the gathered rows gives their residuals (the eager check's tolerance)."""
    if tuple(fu.shape) != tuple(ref.shape):  # (the problem's own check raises first)
        raise ValueError("f changed the shape of a smaller batch")
    tol = float(jnp.finfo(ref.dtype).eps) ** 0.5
    atol = tol * jnp.maximum(1.0, jnp.max(jnp.where(jnp.isfinite(ref), jnp.abs(ref), 0.0)))
    return jnp.all(jnp.isclose(fu, ref, rtol=tol, atol=atol, equal_nan=True))


def _scatter(full, part, idx):
    """``full`` with rows ``idx`` of every per-element leaf from ``part`` (an index out of range, a
    padding row, is dropped); 0-d leaves (counters) from ``part``."""
    if hasattr(full, "_fields"):
        return type(full)(*(_scatter(a, p, idx) for a, p in zip(full, part)))
    if isinstance(full, (tuple, list)):
        return type(full)(_scatter(a, p, idx) for a, p in zip(full, part))
    if full is None or not hasattr(full, "ndim") or full.ndim == 0:
        return part
    return full.at[idx].set(part, mode="drop")
